package client

import (
	"errors"
	"fmt"
)

// Error is an error answered by the server: a non-2xx HTTP answer, or an
// "error" message on the WebSocket.
type Error struct {
	// Status is the HTTP status; 0 for an error sent on a WebSocket.
	Status int
	// Code is the contract's error code ("invalid_argument", "conflict",
	// "not_found", "limit_exceeded", ...); empty when the answer was not the
	// contract's error JSON (a proxy's error page, say).
	Code string
	// Message is the server's human-readable message.
	Message string
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("presence: %s (%d): %s", e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("presence: %s: %s", e.Code, e.Message)
}

var (
	// ErrClosed is returned by the calls of a Conn that was closed (Close,
	// Abandon) and by Conn.Err after Close or Abandon.
	ErrClosed = errors.New("presence: connection closed")
	// ErrDisconnected is returned by a call whose connection was lost
	// before its reply came. The request may or may not have taken effect.
	ErrDisconnected = errors.New("presence: connection lost before the reply")
)
