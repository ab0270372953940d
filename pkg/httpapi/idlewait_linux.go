package httpapi

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/coder/websocket"
)

// An idle socket is mostly its reader goroutine's stack, and the garbage
// collector never shrinks a stack back to its 2 KB start. So the goroutine
// an idle socket keeps waits in the idle waiter, a shallow call, and each
// message is read by a short-lived goroutine (readLoop). The library's
// Read returns only with a data message: after a control frame (the pong
// to the node's ping, every ping interval) it would read on and keep its
// goroutine. So when all the client sent is one whole ping or pong, the
// waiter lets the library read exactly that frame and then an empty text
// frame that the connection makes up (the synthetic frame), which ends the
// library's Read; readOne skips it.

// idleWaiter blocks an idle socket's reader until the client sends
// something, without reading it: the library's reader then finds the bytes
// waiting. It peeks at the connection (MSG_PEEK) from the runtime's poller,
// so the wait holds no buffer and a shallow stack.
type idleWaiter struct {
	raw syscall.RawConn // nil: no waiting (not a TCP connection)
	br  *bufio.Reader   // the library's reader: bytes buffered there need no wait
	pc  *controlConn
}

// controlConn is the connection as the library reads it: it can end a
// control frame with the synthetic frame.
type controlConn struct {
	net.Conn
	// left is how many bytes of the control frame the library still reads
	// before the synthetic frame; -1: no control frame is pending. (Atomic:
	// the library's close handshake may read on another goroutine.)
	left atomic.Int32
	// synthetic is set when the synthetic frame was handed to the library
	// (read by readOne, on the goroutine that read the frame).
	synthetic atomic.Bool

	// closing is set (under mu) before the node starts a close handshake,
	// which reads the library's reader on the closing goroutine: the waiter
	// looks at that reader only under mu and before closing is set.
	mu      sync.Mutex
	closing bool

	// peeked is the length of the control frame peekFn found; peekFn is
	// made once (a func value made at each wait would be garbage).
	peeked int
	peekFn func(fd uintptr) bool
}

// syntheticFrame is an empty, final, masked (as a client's must be) text
// frame.
var syntheticFrame = [6]byte{0x81, 0x80, 0, 0, 0, 0}

func (c *controlConn) Read(p []byte) (int, error) {
	left := int(c.left.Load())
	switch {
	case left < 0:
		return c.Conn.Read(p)
	case left > 0:
		n, err := c.Conn.Read(p[:min(len(p), left)])
		c.left.Add(int32(-n))
		return n, err
	}
	c.left.Store(-1)
	c.synthetic.Store(true)
	return copy(p, syntheticFrame[:]), nil
}

// wrapConn returns the connection the library is to read and write, and
// the waiter that goes with it.
func wrapConn(c net.Conn) (net.Conn, func(*bufio.Reader) idleWaiter) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, func(*bufio.Reader) idleWaiter { return idleWaiter{} }
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c, func(*bufio.Reader) idleWaiter { return idleWaiter{} }
	}
	pc := &controlConn{Conn: c}
	pc.left.Store(-1)
	pc.peekFn = func(fd uintptr) bool {
		var ok bool
		pc.peeked, ok = peekControl(fd)
		return ok
	}
	return pc, func(br *bufio.Reader) idleWaiter { return idleWaiter{raw: raw, br: br, pc: pc} }
}

// wait returns once bytes are buffered or can be read from the connection,
// or the connection ended or failed (the read that follows reports it).
func (w idleWaiter) wait() {
	if w.raw == nil {
		return
	}
	w.pc.mu.Lock()
	buffered := w.pc.closing || w.br.Buffered() > 0
	w.pc.mu.Unlock()
	if buffered {
		return // the library's read goes first
	}
	w.pc.peeked = 0
	w.raw.Read(w.pc.peekFn)
	if n := w.pc.peeked; n > 0 {
		w.pc.left.Store(int32(n))
	}
}

// closeHandshake closes the connection with a close frame, from any
// goroutine.
func (w idleWaiter) closeHandshake(c *websocket.Conn, code websocket.StatusCode, reason string) {
	if w.pc != nil {
		w.pc.mu.Lock()
		w.pc.closing = true
		w.pc.mu.Unlock()
	}
	c.Close(code, reason)
}

// sawSynthetic reports (once) whether the library's last read ended with
// the synthetic frame.
func (w idleWaiter) sawSynthetic() bool {
	return w.pc != nil && w.pc.synthetic.Swap(false)
}

// peekControl reports whether the socket has a byte to read, its end, or an
// error (false: nothing yet, the poller waits), and the length of the one
// whole ping or pong frame that is all it has (0 otherwise).
func peekControl(fd uintptr) (int, bool) {
	var b [2 + 4 + 125 + 1]byte // the longest control frame, and one byte more
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, false
		case err != nil || n < 6:
			return 0, true
		}
		// FIN and the opcode of a ping (9) or pong (10), no extension
		// bits; masked, with a 7-bit length.
		if (b[0] == 0x89 || b[0] == 0x8A) && b[1]&0x80 != 0 && int(b[1]&0x7F) <= 125 && n == 6+int(b[1]&0x7F) {
			return n, true
		}
		return 0, true
	}
}
