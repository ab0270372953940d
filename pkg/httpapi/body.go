package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
)

// bufferBody reads the whole body of an API request (at most MaxBodyBytes+1
// bytes) within BodyTimeout, before limitInFlight: a request takes a slot
// only once it is ready to run, so clients that send their bodies slowly
// cannot hold the slots. The handler reads the buffered copy. A body that
// does not arrive in time gets 400 and the connection is closed. Requests
// without a body pass straight through.
func (s *Server) bufferBody() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
				return next(c)
			}
			if p := c.Path(); !strings.HasPrefix(p, "/v1/") || p == "/v1/ws" {
				return next(c)
			}
			// The deadline stays set if the body is not read to its end
			// (over the limit, or an error), so that what net/http reads of
			// it after the handler is bounded too; at the end of the body
			// net/http clears it itself (the connection's background read).
			// Without a connection (a ResponseRecorder) the body is read
			// with no deadline.
			setReadDeadline(c.Response(), time.Now().Add(s.cfg.BodyTimeout))
			bb := bodyBuffers.Get().(*bodyBuffer)
			if err := bb.fill(r.Body, r.ContentLength, s.cfg.MaxBodyBytes+1); err != nil {
				bb.release()
				c.Response().Header().Set(echo.HeaderConnection, "close")
				var ne net.Error
				if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
					return presence.Errorf(presence.EINVALID, "the request body did not arrive in time")
				}
				return presence.Errorf(presence.EINVALID, "could not read the request body")
			}
			orig := r.Body
			r.Body = bb
			defer func() {
				r.Body = orig
				bb.release()
			}()
			return next(c)
		}
	}
}

// setReadDeadline is http.NewResponseController(w).SetReadDeadline(t)
// without the controller, which escapes to the heap where bufferBody is
// inlined: it unwraps w (echo.Response has Unwrap) down to net/http's
// response, which sets the deadline on the connection.
func setReadDeadline(w http.ResponseWriter, t time.Time) error {
	for {
		switch x := w.(type) {
		case interface{ SetReadDeadline(time.Time) error }:
			return x.SetReadDeadline(t)
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return http.ErrNotSupported
		}
	}
}

// bodyBuffer is a request body read in full: the io.ReadCloser the handler
// reads instead of the connection. Pooled, so that the hot path (a
// heartbeat of a few hundred bytes) allocates nothing here.
type bodyBuffer struct {
	buf []byte
	rd  bytes.Reader
}

var bodyBuffers = sync.Pool{New: func() any { return new(bodyBuffer) }}

// maxPooledBody is the largest buffer kept for reuse; bigger ones (rare:
// member data is at most 60 KB) go to the garbage collector.
const maxPooledBody = 16 << 10

// fill reads body: its contentLength bytes when known (>= 0), else up to
// EOF, and in both cases at most limit bytes.
func (b *bodyBuffer) fill(body io.Reader, contentLength, limit int64) error {
	if contentLength >= 0 {
		n := min(contentLength, limit)
		if int64(cap(b.buf)) < n {
			b.buf = make([]byte, n)
		}
		b.buf = b.buf[:n]
		m, err := io.ReadFull(body, b.buf)
		b.buf = b.buf[:m]
		if err != nil {
			return err
		}
	} else {
		b.buf = b.buf[:0]
		for int64(len(b.buf)) < limit {
			if len(b.buf) == cap(b.buf) {
				b.buf = append(b.buf, 0)[:len(b.buf)] // grow
			}
			m, err := body.Read(b.buf[len(b.buf):min(int64(cap(b.buf)), limit)])
			b.buf = b.buf[:len(b.buf)+m]
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	b.rd.Reset(b.buf)
	return nil
}

// bufferedBody returns the unread part of a body that bufferBody read,
// without copying it: valid until the handler returns. ok is false for a
// body bufferBody did not read.
func bufferedBody(r *http.Request) (b []byte, ok bool) {
	bb, ok := r.Body.(*bodyBuffer)
	if !ok {
		return nil, false
	}
	return bb.buf[len(bb.buf)-bb.rd.Len():], true
}

func (b *bodyBuffer) Read(p []byte) (int, error)         { return b.rd.Read(p) }
func (b *bodyBuffer) WriteTo(w io.Writer) (int64, error) { return b.rd.WriteTo(w) }
func (b *bodyBuffer) Close() error                       { return nil }

// release returns b to the pool; it must not be used after.
func (b *bodyBuffer) release() {
	b.rd.Reset(nil)
	if cap(b.buf) > maxPooledBody {
		b.buf = nil
	}
	bodyBuffers.Put(b)
}
