package httpapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
)

// codes maps error codes to HTTP statuses (README: Errors).
var codes = map[string]int{
	presence.EINVALID:      http.StatusBadRequest,
	presence.EUNAUTHORIZED: http.StatusUnauthorized,
	presence.EFORBIDDEN:    http.StatusForbidden,
	presence.ENOTFOUND:     http.StatusNotFound,
	presence.ECONFLICT:     http.StatusConflict,
	presence.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	presence.ERATELIMITED:  http.StatusTooManyRequests,
	presence.EUNAVAILABLE:  http.StatusServiceUnavailable,
	presence.EINTERNAL:     http.StatusInternalServerError,
}

// ErrorStatus returns the HTTP status of an error code.
func ErrorStatus(code string) int {
	if s, ok := codes[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// handleError is the one Echo error handler: coded errors become the
// contract's error JSON; Echo's own errors (unknown route, body too large)
// are mapped to codes; only internal errors are logged.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	status, code, msg := 0, "", ""
	if errors.As(err, &he) {
		status = he.Code
		switch he.Code {
		case http.StatusNotFound:
			code, msg = presence.ENOTFOUND, "no such route"
		case http.StatusMethodNotAllowed:
			code, msg = presence.EINVALID, "method not allowed"
		case http.StatusRequestEntityTooLarge:
			code, msg = presence.ETOOLARGE, "request body too large"
		case http.StatusUnauthorized:
			code, msg = presence.EUNAUTHORIZED, "authentication required"
		case http.StatusForbidden:
			code, msg = presence.EFORBIDDEN, "forbidden"
		default:
			if he.Code >= 500 {
				code, msg = presence.EINTERNAL, "internal error"
			} else {
				code, msg = presence.EINVALID, http.StatusText(he.Code)
			}
		}
	} else {
		code, msg = presence.ErrorCode(err), presence.ErrorMessage(err)
		status = ErrorStatus(code)
	}
	switch code {
	case presence.EINTERNAL:
		s.log.Error("internal error", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	case presence.EUNAVAILABLE:
		s.log.Warn("store unavailable", "path", c.Request().URL.Path, "err", err)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, msg
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	c.JSON(status, body)
}
