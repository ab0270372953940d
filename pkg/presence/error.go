package presence

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in httpapi.
const (
	EINVALID      = "invalid_argument"  // 400
	EUNAUTHORIZED = "unauthenticated"   // 401
	EFORBIDDEN    = "permission_denied" // 403
	ENOTFOUND     = "not_found"         // 404
	ECONFLICT     = "conflict"          // 409
	ETOOLARGE     = "payload_too_large" // 413
	ERATELIMITED  = "rate_limited"      // 429
	EUNAVAILABLE  = "unavailable"       // 503
	ELIMIT        = "limit_exceeded"    // WebSocket only
	EINTERNAL     = "internal"          // 500, never caused by input
)

// Error is an error with a code that clients can act upon. Message is safe to
// show to the caller.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("presence error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic message for internal errors (their detail is logged, not shown).
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}
