package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The heartbeat lane: a node's HTTP/1.1 keep-alive connections that carry
// only heartbeats (load balancers, server-side clients, benchmarks) are
// served by a small loop of their own instead of net/http's. net/http
// spends on every request what a heartbeat does not need: a background
// read goroutine (to cancel the request's context if the client goes),
// five or six deadline changes, its request, header and response objects,
// and its chunk writer. The lane reads a request that is complete in its
// buffer, runs the very same handler (serveHeartbeat: the middlewares,
// the error handler), and writes the answer as net/http writes it (the
// same status line, headers in the same order, Date and Content-Length).
//
// It serves a strict subset of HTTP/1.1 and hands everything else to
// net/http, with the bytes read so far: a connection whose request is not
// `POST /v1/heartbeat HTTP/1.1` with a Host, a Content-Length body of at
// most MaxBodyBytes and ordinary headers, or whose request is not whole in
// one 4 KiB read, goes to net/http for the rest of its life. So every
// other route, WebSocket upgrades, chunked or split bodies, Expect,
// duplicate or malformed headers and HTTP/1.0 are net/http's exactly as
// before.
//
// Differences, by design: the request's context is not cancelled when the
// client goes away mid-request (a heartbeat is bounded by the store's call
// timeout), and the idle and write deadlines are moved at most once a
// second (so an idle connection is closed 119 to 120 s after its last
// request instead of 120 s).

// LaneConfig configures a Lane: the http.Server timeouts it stands in for.
type LaneConfig struct {
	// HeaderTimeout bounds the wait for a new connection's first request.
	HeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request.
	IdleTimeout time.Duration
	// WriteTimeout bounds the writing of an answer.
	WriteTimeout time.Duration
}

// laneBufSize is the lane's read buffer per connection, and so the largest
// request it serves itself. It must not exceed net/http's own first read
// (its 4 KiB bufio.Reader), so that a connection handed over has no bytes
// left in the lane after net/http's first read (see laneHandoff).
const laneBufSize = 4 << 10

// Lane is a net.Listener for http.Server.Serve that serves heartbeat-only
// connections itself (see above) and hands the others to the server.
type Lane struct {
	s   *Server
	ln  net.Listener
	cfg LaneConfig
	// base is every request's template: its context is cancelled by
	// CloseAll.
	base *http.Request

	cancel  context.CancelFunc
	handoff chan net.Conn
	done    chan struct{} // closed when the accept loop ended
	err     error         // why it ended

	mu    sync.Mutex
	conns map[*laneConn]struct{}
	idle  sync.Cond // signalled when a connection ends
	// closing is set by Shutdown and CloseAll: connections close once idle.
	closing atomic.Bool

	served, handed atomic.Int64
}

// Served is the number of requests the lane answered itself; HandedOver
// the number of connections it gave to net/http.
func (l *Lane) Served() int64 { return l.served.Load() }

// HandedOver is the number of connections the lane gave to net/http.
func (l *Lane) HandedOver() int64 { return l.handed.Load() }

// NewLane starts accepting connections on ln. Serve the returned Lane with
// the node's http.Server, and call Shutdown (or Close) with the server's.
func (s *Server) NewLane(ln net.Listener, cfg LaneConfig) *Lane {
	ctx, cancel := context.WithCancel(context.Background())
	base, _ := http.NewRequestWithContext(ctx, http.MethodPost, heartbeatPath, nil)
	l := &Lane{s: s, ln: ln, cfg: cfg, base: base, cancel: cancel,
		handoff: make(chan net.Conn), done: make(chan struct{}), conns: map[*laneConn]struct{}{}}
	l.idle.L = &l.mu
	go l.acceptLoop()
	return l
}

// Accept returns the next connection for net/http.
func (l *Lane) Accept() (net.Conn, error) {
	select {
	case c := <-l.handoff:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Addr is the listener's address.
func (l *Lane) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting (http.Server.Shutdown and Close call it).
// Connections already accepted are Shutdown's and CloseAll's.
func (l *Lane) Close() error { return l.ln.Close() }

func (l *Lane) acceptLoop() {
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.err = err
				return
			}
			// As net/http does: wait and try again (out of files, …).
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		lc := &laneConn{l: l, nc: c}
		l.mu.Lock()
		if l.closing.Load() {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		go lc.serve()
	}
}

// Shutdown closes the lane's idle connections and waits until the others
// have answered their request and closed, or ctx ends (then it closes
// them). Connections handed over meanwhile are closed.
func (l *Lane) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing.Store(true)
	for lc := range l.conns {
		if lc.idle.Load() {
			lc.nc.Close()
		}
	}
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.idle.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	for len(l.conns) > 0 && ctx.Err() == nil {
		l.idle.Wait()
	}
	l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		l.CloseAll()
		return err
	}
	return nil
}

// CloseAll closes the lane's connections at once and cancels their
// requests.
func (l *Lane) CloseAll() {
	l.mu.Lock()
	l.closing.Store(true)
	for lc := range l.conns {
		lc.nc.Close()
	}
	l.mu.Unlock()
	l.cancel()
}

func (l *Lane) forget(lc *laneConn) {
	l.mu.Lock()
	delete(l.conns, lc)
	l.idle.Broadcast()
	l.mu.Unlock()
}

// give hands c to net/http, or closes it if the lane is shutting down.
func (l *Lane) give(c net.Conn) {
	select {
	case l.handoff <- c:
	case <-l.done:
		c.Close()
	}
}

var lanePool = sync.Pool{New: func() any { return new(laneState) }}

// laneState is a connection's reusable request and answer, pooled.
type laneState struct {
	buf  [laneBufSize]byte
	req  http.Request
	url  url.URL
	body laneBody
	w    laneWriter
	out  bytes.Buffer
	seen []string // header keys of the request being read
}

type laneConn struct {
	l    *Lane
	nc   net.Conn
	idle atomic.Bool // waiting for a request, with nothing buffered
	st   *laneState
	r, w int // unread bytes: st.buf[r:w]
	// rdl and wdl are the read and write deadlines set last.
	rdl, wdl time.Time
	remote   string
}

func (lc *laneConn) serve() {
	st := lanePool.Get().(*laneState)
	lc.st = st
	defer func() {
		lc.st = nil
		lanePool.Put(st)
		lc.l.forget(lc)
	}()
	if lc.l.cfg.HeaderTimeout > 0 {
		lc.setReadDeadline(time.Now().Add(lc.l.cfg.HeaderTimeout))
	}
	first := true
	for {
		if lc.r == lc.w {
			lc.r, lc.w = 0, 0
			// Idle: Shutdown closes the connection (it sets closing
			// first, then looks at idle; this sets idle, then looks at
			// closing).
			lc.idle.Store(true)
			if lc.l.closing.Load() {
				lc.nc.Close()
				return
			}
			if !first {
				lc.refreshReadDeadline(lc.l.cfg.IdleTimeout)
			}
			n, _ := lc.nc.Read(st.buf[:])
			lc.idle.Store(false)
			if n == 0 {
				lc.nc.Close()
				return
			}
			lc.w = n
		}
		first = false
		n, ok := lc.parse()
		if !ok {
			lc.handOver()
			return
		}
		keep := lc.answer()
		lc.r += n
		if !keep {
			lc.nc.Close()
			return
		}
	}
}

// setReadDeadline sets the read deadline to t.
func (lc *laneConn) setReadDeadline(t time.Time) {
	lc.rdl = t
	lc.nc.SetReadDeadline(t)
}

// refreshReadDeadline moves the read deadline to now+d, unless it is
// within a second of that already.
func (lc *laneConn) refreshReadDeadline(d time.Duration) {
	if d <= 0 {
		if !lc.rdl.IsZero() {
			lc.setReadDeadline(time.Time{})
		}
		return
	}
	if t := time.Now().Add(d); t.Sub(lc.rdl) > time.Second || lc.rdl.After(t) {
		lc.setReadDeadline(t)
	}
}

// refreshWriteDeadline is refreshReadDeadline for writes.
func (lc *laneConn) refreshWriteDeadline(d time.Duration) {
	if d <= 0 {
		return
	}
	if t := time.Now().Add(d); t.Sub(lc.wdl) > time.Second || lc.wdl.After(t) {
		lc.wdl = t
		lc.nc.SetWriteDeadline(t)
	}
}

// handOver gives the connection, with the bytes buffered, to net/http.
func (lc *laneConn) handOver() {
	pending := bytes.Clone(lc.st.buf[lc.r:lc.w])
	lc.l.handed.Add(1)
	lc.l.give(&laneHandoff{Conn: lc.nc, pending: pending})
}

var (
	laneRequestLine = []byte("POST " + heartbeatPath + " HTTP/1.1\r\n")
	crlfcrlf        = []byte("\r\n\r\n")
)

// parse reads the request at st.buf[r:w] into st.req. It returns the
// request's length, or false if the lane does not serve it (not whole in
// the buffer, or not a plain heartbeat: see Lane).
func (lc *laneConn) parse() (int, bool) {
	st := lc.st
	b := st.buf[lc.r:lc.w]
	if !bytes.HasPrefix(b, laneRequestLine) {
		return 0, false
	}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return 0, false
	}
	head := b[len(laneRequestLine) : end+2]
	req := &st.req
	if req.Header == nil {
		req.Header = http.Header{}
	}
	h := req.Header
	st.seen = st.seen[:0]
	host := req.Host
	length, haveHost, haveLength := -1, false, false
	for len(head) > 0 {
		i := bytes.Index(head, crlf)
		line := head[:i]
		head = head[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validName(name) || !validValue(value) {
			return 0, false
		}
		switch {
		case equalFold(name, "Host"):
			if haveHost {
				return 0, false
			}
			haveHost = true
			if host != string(value) {
				host = string(value)
			}
			continue
		case equalFold(name, "Content-Length"):
			if haveLength {
				return 0, false
			}
			haveLength = true
			length = parseLength(value)
		case equalFold(name, "Connection"):
			if !equalFold(value, "close") && !equalFold(value, "keep-alive") {
				return 0, false
			}
		case equalFold(name, "Transfer-Encoding"), equalFold(name, "Expect"), equalFold(name, "Upgrade"), equalFold(name, "Trailer"):
			return 0, false
		}
		key := canonicalKey(name)
		if slices.Contains(st.seen, key) {
			return 0, false // repeated: net/http joins them
		}
		st.seen = append(st.seen, key)
		if v := h[key]; len(v) != 1 || v[0] != string(value) {
			h[key] = []string{string(value)}
		}
	}
	if !haveHost || !validHost(host) || length <= 0 || int64(length) > lc.l.s.cfg.MaxBodyBytes {
		return 0, false
	}
	total := end + 4 + length
	if total > len(b) {
		return 0, false
	}
	for k := range h {
		if !slices.Contains(st.seen, k) {
			delete(h, k)
		}
	}
	req.Host = host
	st.body.b, st.body.i = b[end+4:total], 0
	return total, true
}

// answer serves the parsed request and writes its answer as net/http would.
// It reports whether the connection stays open.
func (lc *laneConn) answer() bool {
	st := lc.st
	if lc.remote == "" {
		lc.remote = lc.nc.RemoteAddr().String()
	}
	shutting := lc.l.closing.Load()
	wantsClose := false
	if c := st.req.Header["Connection"]; len(c) == 1 && equalFold(c[0], "close") {
		wantsClose = true
	}
	req := &st.req
	st.url = url.URL{Path: heartbeatPath, RawPath: heartbeatPath}
	header, host := req.Header, req.Host
	*req = *lc.l.base
	req.URL, req.Header, req.Host, req.RemoteAddr = &st.url, header, host, lc.remote
	req.Body, req.ContentLength, req.Close = &st.body, int64(len(st.body.b)), wantsClose
	req.RequestURI = heartbeatPath
	w := &st.w
	if w.h == nil {
		w.h = http.Header{}
	}
	clear(w.h)
	w.status, w.body = 0, w.body[:0]
	lc.l.s.serveHeartbeat(w, req)

	code := w.status
	if code == 0 {
		code = http.StatusOK
	}
	out := &st.out
	out.Reset()
	out.WriteString("HTTP/1.1 ")
	if text := http.StatusText(code); text != "" {
		out.Write(strconv.AppendInt(out.AvailableBuffer(), int64(code), 10))
		out.WriteByte(' ')
		out.WriteString(text)
	} else {
		out.WriteString(strconv.Itoa(code) + " status code " + strconv.Itoa(code))
	}
	out.WriteString("\r\n")
	hasBody := code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	if !hasBody {
		for _, k := range []string{"Content-Type", "Content-Length", "Transfer-Encoding"} {
			delete(w.h, k)
		}
	}
	// Connection, as net/http decides it.
	hc := w.h.Get("Connection")
	close := wantsClose || shutting || hc == "close"
	extraClose := close && (shutting || !hasToken(hc, "close"))
	if extraClose {
		delete(w.h, "Connection")
	}
	w.h.Write(out)
	if _, ok := w.h["Date"]; !ok {
		out.WriteString("Date: ")
		out.Write(appendDate(out.AvailableBuffer()))
		out.WriteString("\r\n")
	}
	if _, ok := w.h["Content-Length"]; !ok && hasBody {
		out.WriteString("Content-Length: ")
		out.Write(strconv.AppendInt(out.AvailableBuffer(), int64(len(w.body)), 10))
		out.WriteString("\r\n")
	}
	if _, ok := w.h["Content-Type"]; !ok && hasBody && len(w.body) > 0 && w.h.Get("Content-Encoding") == "" {
		out.WriteString("Content-Type: " + http.DetectContentType(w.body) + "\r\n")
	}
	if extraClose {
		out.WriteString("Connection: close\r\n")
	}
	out.WriteString("\r\n")
	if hasBody {
		out.Write(w.body)
	}
	lc.l.served.Add(1) // before the client can see the answer
	lc.refreshWriteDeadline(lc.l.cfg.WriteTimeout)
	if _, err := lc.nc.Write(out.Bytes()); err != nil {
		return false
	}
	if out.Cap() > 64<<10 {
		st.out = bytes.Buffer{} // do not keep a large answer's buffer
	}
	return !close
}

// laneBody is a request body read in full.
type laneBody struct {
	b []byte
	i int
}

func (b *laneBody) Read(p []byte) (int, error) {
	if b.i >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.i:])
	b.i += n
	return n, nil
}

func (b *laneBody) Close() error { return nil }

// laneWriter is the lane's http.ResponseWriter: the answer is kept until
// the handler returns, then written in one go.
type laneWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *laneWriter) Header() http.Header { return w.h }

func (w *laneWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *laneWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// SetReadDeadline is bufferBody's: the body is in memory already.
func (w *laneWriter) SetReadDeadline(time.Time) error { return nil }

// laneHandoff is a connection handed to net/http: it reads the bytes the
// lane buffered first.
type laneHandoff struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
}

func (c *laneHandoff) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// SyscallConn gives the socket to the WebSocket idle waiter (which peeks at
// it) once net/http has read what the lane buffered.
func (c *laneHandoff) SyscallConn() (syscall.RawConn, error) {
	c.mu.Lock()
	left := len(c.pending)
	c.mu.Unlock()
	sc, ok := c.Conn.(syscall.Conn)
	if left > 0 || !ok {
		return nil, errors.New("httpapi: no raw connection")
	}
	return sc.SyscallConn()
}

// CloseWrite is net/http's graceful close.
func (c *laneHandoff) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var crlf = []byte("\r\n")

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validName: an RFC 9110 token.
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validValue: visible ASCII, spaces and tabs (anything else: net/http).
func validValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

// validHost: a Host of letters, digits and . - _ : [ ] (anything else:
// net/http, which refuses a malformed one).
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := range len(h) {
		switch c := h[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length of 1 to 9 digits, or returns -1.
func parseLength(b []byte) int {
	if len(b) == 0 || len(b) > 9 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// hasToken reports whether the comma-separated list v has token t,
// ignoring case.
func hasToken(v, t string) bool {
	for len(v) > 0 {
		var f string
		if i := strings.IndexByte(v, ','); i >= 0 {
			f, v = v[:i], v[i+1:]
		} else {
			f, v = v, ""
		}
		if equalFold(textproto.TrimString(f), t) {
			return true
		}
	}
	return false
}

// equalFold reports whether b equals the ASCII string s, ignoring case.
func equalFold[T string | []byte](b T, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 || (c|0x20 < 'a' || c|0x20 > 'z') && c != d {
			return false
		}
	}
	return true
}

// canonicalKeys maps the header names a lane has seen, as sent, to their
// canonical form (http.CanonicalHeaderKey without an allocation per
// request). Bounded: a client sending ever new names is served, uncached.
var canonicalKeys sync.Map

func canonicalKey(name []byte) string {
	if k, ok := canonicalKeys.Load(string(name)); ok {
		return k.(string)
	}
	k := http.CanonicalHeaderKey(string(name))
	if canonicalCount.Add(1) <= 1024 {
		canonicalKeys.Store(string(name), k)
	}
	return k
}

var canonicalCount atomic.Int64

// appendDate appends the current time as net/http's Date header has it,
// formatted once per second.
func appendDate(b []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	if d := laneDate.Load(); d != nil && d.sec == sec {
		return append(b, d.text...)
	}
	d := &dateText{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	laneDate.Store(d)
	return append(b, d.text...)
}

type dateText struct {
	sec  int64
	text []byte
}

var laneDate atomic.Pointer[dateText]
