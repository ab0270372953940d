//go:build !linux

package httpapi

import (
	"bufio"
	"net"

	"github.com/coder/websocket"
)

// idleWaiter is a no-op off Linux: the reader waits inside the library.
type idleWaiter struct{}

func wrapConn(c net.Conn) (net.Conn, func(*bufio.Reader) idleWaiter) {
	return c, func(*bufio.Reader) idleWaiter { return idleWaiter{} }
}

func (idleWaiter) wait() {}

func (idleWaiter) sawSynthetic() bool { return false }

func (idleWaiter) closeHandshake(c *websocket.Conn, code websocket.StatusCode, reason string) {
	c.Close(code, reason)
}
