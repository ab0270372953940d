package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/prometheus/client_golang/prometheus"
)

// Kinds of the items on a socket's reply queue.
const (
	kindReply    = iota // a reply; written as is
	kindSnapshot        // joined/watching: sets the client's version of the room
	kindLeft            // left/unwatched: the client forgets the room
	kindUsers           // watchingUsers: the states the client now has
	kindCount           // watching in count mode: sets the client's counts of the room
)

// item is a reply the reader queued for the writer.
type item struct {
	kind    int
	room    presence.RoomRef
	version int64
	data    []byte
	users   []presence.UserPresence // kindUsers
	// joined (kindCount): the client also joined the room, whose events go
	// on; uncount: the client no longer watches the room in count mode.
	joined, uncount bool
}

// maxReplies is how many replies a socket queues before its reader waits
// for the client to read.
const maxReplies = 16

// socket is one WebSocket connection: a reader (the socket's goroutine) that
// decodes the client's commands and runs them on the real-time core, and a
// writer that encodes and sends replies, events and syncs. The writer is a
// goroutine only while something is queued: an idle socket is one goroutine
// blocked in a read, and its queues hold nothing.
type socket struct {
	srv  *Server
	conn *websocket.Conn
	rt   *presence.Conn
	// ctx carries the client's identity to its commands. It is never
	// cancelled (a cancellable context costs an idle socket memory): a
	// socket ends by closing its connection, which ends its reads and writes.
	ctx context.Context

	mu       sync.Mutex
	replies  []item              // replies; the reader waits while maxReplies are queued
	events   []*presence.Update  // events and syncs (shared by all sockets of a room); never waited for
	overflow bool                // events were dropped: sync every room
	writing  bool                // a writer goroutine runs
	closed   bool                // no writer starts any more
	space    chan struct{}       // closed when a reply was taken (the reader may be waiting)
	idle     chan struct{}       // closed when the writer stops (the close waits for it)
	seq      *presence.Sequencer // the writer's (one writer at a time)
	// counts holds the version of the counts the client has of each room it
	// watches in count mode (the writer's).
	counts map[presence.RoomRef]int64

	// lastRead is when the client last sent anything (unix ns): the node
	// pings only sockets that have been quiet for a ping interval.
	lastRead atomic.Int64
	pinging  atomic.Bool

	// limiter counts the client's messages and ping frames (reader goroutine
	// only); pingLimited is set once pings went over it.
	limiter     *rateLimiter
	pingLimited bool
	idleWait    idleWaiter
}

// Push hands an event or sync to the socket without waiting
// (presence.Sink). When WSQueue updates are queued, the socket drops them
// all: its writer sends a sync of each of its rooms instead once it
// catches up.
func (s *socket) Push(u *presence.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || s.overflow:
		return
	case len(s.events) >= s.srv.cfg.WSQueue:
		s.overflow, s.events = true, nil
		s.srv.met.overflows.Inc()
	default:
		s.events = append(s.events, u)
	}
	s.startWriterLocked()
}

// SessionEnded tells the client that its session in room was ended by
// someone else (presence.Sink). It never waits: with the reply queue full
// the notice is dropped (the client learns it from the room's events).
func (s *socket) SessionEnded(room presence.RoomRef) {
	b, _ := json.Marshal(replyMsg{Type: "left", RoomID: room.RoomID, Reason: "ended"})
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && len(s.replies) < maxReplies {
		s.replies = append(s.replies, item{kind: kindReply, data: b})
		s.startWriterLocked()
	}
}

// reply queues a reply; it waits while the client does not read.
func (s *socket) reply(it item) {
	it.data = validText(it.data)
	s.mu.Lock()
	for len(s.replies) >= maxReplies && !s.closed {
		if s.space == nil {
			s.space = make(chan struct{})
		}
		space := s.space
		s.mu.Unlock()
		<-space // closed when a reply is taken, or the socket closes
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.replies = append(s.replies, it)
	s.startWriterLocked()
}

// closeLocked lets no writer start any more, drops what is queued and
// wakes a reader waiting to queue a reply.
func (s *socket) closeLocked() {
	s.closed, s.replies, s.events = true, nil, nil
	if s.space != nil {
		close(s.space)
		s.space = nil
	}
}

func (s *socket) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *socket) startWriterLocked() {
	if !s.writing && !s.closed {
		s.writing = true
		go s.writeLoop()
	}
}

// stopWriter lets no writer start any more and waits for the running one
// (the socket's context is done: its writes end at once).
func (s *socket) stopWriter() {
	s.mu.Lock()
	s.closeLocked()
	var idle chan struct{}
	if s.writing {
		s.idle = make(chan struct{})
		idle = s.idle
	}
	s.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

func (s *socket) replyJSON(v any) {
	b, _ := json.Marshal(v)
	s.reply(item{kind: kindReply, data: b})
}

func (s *socket) replyError(id json.RawMessage, err error) {
	code := presence.ErrorCode(err)
	if code == presence.EINTERNAL {
		s.srv.log.Error("websocket command failed", "err", err)
	}
	s.replyJSON(errorMsg{Type: "error", ID: id, Code: code, Message: presence.ErrorMessage(err)})
}

// writeLoop sends what is queued, replies first (they answer the client's
// own commands), in the order the socket's Sequencer decides (each version
// at most once and in order; a gap gets a sync), and stops when nothing is
// left. A write that fails (the client is gone, or took longer than
// WSWriteTimeout) closes the connection.
func (s *socket) writeLoop() {
	for {
		s.mu.Lock()
		var it item
		var u *presence.Update
		resyncAll := false
		switch {
		case len(s.replies) > 0:
			it = s.replies[0]
			s.replies[0] = item{}
			if s.replies = s.replies[1:]; len(s.replies) == 0 {
				s.replies = nil // an idle socket holds no buffer
			}
			if s.space != nil {
				close(s.space)
				s.space = nil
			}
		case s.overflow:
			s.overflow, resyncAll = false, true
		case len(s.events) > 0:
			u = s.events[0]
			s.events[0] = nil
			if s.events = s.events[1:]; len(s.events) == 0 {
				s.events = nil
			}
		default:
			s.writing = false
			if s.idle != nil {
				close(s.idle)
			}
			s.mu.Unlock()
			return
		}
		if s.seq == nil {
			s.seq = presence.NewSequencer()
		}
		s.mu.Unlock()
		var err error
		switch {
		case resyncAll:
			for _, room := range s.seq.Rooms() {
				if err = s.resync(room, 0); err != nil {
					break
				}
			}
			for room := range s.counts {
				if n, ok := s.rt.Recount(s.ctx, room); ok && err == nil {
					s.counts[room] = n.Version
					err = s.write(encodeCount("count", nil, n))
				}
			}
			for _, p := range s.rt.ResyncUsers(s.ctx) {
				if err == nil && s.rt.PassUser(p) {
					err = s.write(encodeUser(p))
				}
			}
		case u != nil:
			err = s.writeUpdate(u)
		default:
			err = s.writeReply(it)
		}
		if err != nil {
			s.conn.CloseNow()
			s.mu.Lock()
			s.closeLocked()
			s.writing = false
			if s.idle != nil {
				close(s.idle)
			}
			s.mu.Unlock()
			return
		}
	}
}

// write sends one text frame. Every frame is valid UTF-8 (validText):
// shared updates are checked once when encoded, replies when queued.
func (s *socket) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.WSWriteTimeout)
	defer cancel()
	return s.conn.Write(ctx, websocket.MessageText, b)
}

// resync sends the client the room's state afresh, at least at version
// want.
func (s *socket) resync(room presence.RoomRef, want int64) error {
	l, ok := s.rt.Resync(s.ctx, room, want)
	if !ok {
		return nil
	}
	s.seq.Snapshot(room, l.Version)
	return s.write(encodeSync(l))
}

func (s *socket) writeReply(it item) error {
	if it.uncount {
		delete(s.counts, it.room)
	}
	switch it.kind {
	case kindCount:
		if !it.joined {
			s.seq.Forget(it.room) // no events of the room any more
		}
		if s.counts == nil {
			s.counts = map[presence.RoomRef]int64{}
		}
		s.counts[it.room] = it.version
	case kindSnapshot:
		want := s.seq.Snapshot(it.room, it.version)
		if err := s.write(it.data); err != nil || want == 0 {
			return err
		}
		return s.resync(it.room, want)
	case kindLeft:
		s.seq.Forget(it.room)
	case kindUsers:
		s.rt.SentUsers(it.users)
	}
	return s.write(it.data)
}

func (s *socket) writeUpdate(u *presence.Update) error {
	if u.User != nil {
		if !s.rt.PassUser(*u.User) {
			return nil // the client has it already
		}
		return s.write(u.Encoded(encodeUpdate))
	}
	if u.Count != nil {
		// Counts are not sequenced: the newest is all the client needs.
		v, ok := s.counts[u.Room]
		if !ok || (u.Version <= v && !u.CountReset) {
			return nil // not (yet) counted, or the client has it already
		}
		s.counts[u.Room] = u.Version
		return s.write(u.Encoded(encodeUpdate))
	}
	if u.Sync != nil {
		if !s.seq.Sync(u.Room, u.Version) {
			return nil // not (yet) the client's room
		}
		return s.write(u.Encoded(encodeUpdate))
	}
	step := presence.Skip
	if u.Batch != nil {
		step = s.seq.Batch(u.Room, u.Batch.FromVersion, u.Version)
	} else {
		step = s.seq.Event(u.Room, u.Version)
	}
	switch step {
	case presence.Write:
		return s.write(u.Encoded(encodeUpdate))
	case presence.Resync:
		return s.resync(u.Room, u.Version)
	}
	return nil
}

// serveWS upgrades the connection and runs the WebSocket protocol (README: GET /v1/ws).
func (s *Server) serveWS(c echo.Context) error {
	if s.rt == nil {
		return presence.Errorf(presence.EUNAVAILABLE, "realtime is not enabled on this node")
	}
	r := c.Request()
	id, err := s.identify(r)
	if err != nil {
		return err
	}
	if s.draining.Load() {
		return presence.Errorf(presence.EUNAVAILABLE, "the node is shutting down")
	}
	// Reserve the socket's place before the handshake, so that concurrent
	// upgrades cannot exceed the limit.
	if n := s.sockets.Add(1); s.cfg.MaxSockets > 0 && n > int64(s.cfg.MaxSockets) {
		s.sockets.Add(-1)
		return presence.Errorf(presence.EUNAVAILABLE, "the node has reached its socket limit")
	}
	reserved := true
	defer func() {
		if reserved {
			s.sockets.Add(-1)
		}
	}()
	// The server's read/write timeouts guard plain requests; a socket lives
	// on, so they are lifted before the upgrade (liveness is checked by pings).
	rc := http.NewResponseController(c.Response().Writer)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	if origin := r.Header.Get("Origin"); origin != "" && !s.origins.allowed(origin) && !sameOrigin(r, origin) {
		return presence.Errorf(presence.EFORBIDDEN, "origin %q is not allowed", origin)
	}
	sock := &socket{srv: s, limiter: newRateLimiter(s.cfg.WSMessagesPerSecond)}
	hj := &smallBuffers{ResponseWriter: c.Response()}
	conn, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		// The origin was checked above, by the same rule as HTTP CORS.
		InsecureSkipVerify: true,
		OnPingReceived:     sock.onPing,
	})
	if err != nil {
		return nil // Accept has answered the client
	}
	sock.conn = conn
	sock.idleWait = hj.waiter
	reserved = false // serveSocket owns the place now
	// The connection is hijacked: the handler may return. The socket lives
	// on a fresh goroutine, whose small stack is not the one the handler's
	// request processing grew (an idle socket is mostly its stacks).
	go s.serveSocket(sock, id)
	return nil
}

// Buffer sizes of a socket after the handshake. net/http hands a hijacked
// connection 4 KB for reading and 4 KB for writing, which an idle socket
// would keep for good; client messages are small JSON, and the library
// reads a frame's payload past the buffer straight from the connection. A
// frame larger than the write buffer is written in two calls (header, then
// payload); the presence frames of a room's events fit.
const (
	socketReadBuffer  = 256
	socketWriteBuffer = 1024
)

// smallBuffers hands the WebSocket library small buffers when it hijacks
// the connection, instead of net/http's (which are released). It keeps the
// connection and the reader it handed over (for the idle wait).
type smallBuffers struct {
	http.ResponseWriter
	waiter idleWaiter
}

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	tcp, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	conn, waiter := wrapConn(tcp)
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	// Bytes the client sent after its handshake request are read first:
	// they must be in the new buffer (the library resets its reader onto
	// the connection, keeping only what is buffered).
	r := bufio.NewReaderSize(conn, socketReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), max(socketReadBuffer, n))
		r.Peek(n) // from the bytes.Reader: never waits for the connection
	}
	w.waiter = waiter(r)
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, socketWriteBuffer)), nil
}

func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// onPing counts a client's WebSocket ping frame like a message: past the
// rate limit it gets no pong, and the socket is closed with 1008. It runs on
// the socket's reader goroutine (inside conn.Read), as the limiter wants.
func (s *socket) onPing(context.Context, []byte) bool {
	now := time.Now()
	s.lastRead.Store(now.UnixNano())
	if s.limiter.allow(now) {
		return true
	}
	if !s.pingLimited {
		s.pingLimited = true
		s.srv.met.rateLimited.Inc()
		go s.idleWait.closeHandshake(s.conn, websocket.StatusPolicyViolation, "rate limit exceeded")
	}
	return false
}

func (s *Server) serveSocket(sock *socket, id *presence.Identity) {
	ctx := presence.NewContextWithIdentity(context.Background(), id)
	conn := sock.conn
	conn.SetReadLimit(s.cfg.WSMaxMessageBytes)
	sock.ctx = ctx
	sock.rt = s.rt.Connect(sock)
	s.register(sock)
	s.met.sockets.Inc()
	defer func() {
		s.sockets.Add(-1)
		s.met.sockets.Dec()
		s.unregister(sock)
	}()

	sock.lastRead.Store(time.Now().UnixNano())
	closeFrame := sock.readLoop(ctx)
	// A close frame ends the sessions now; a lost connection or a node
	// shutting down leaves them to their deadline (resume).
	sock.rt.Close(closeFrame && !s.draining.Load())
	conn.CloseNow() // a write in progress ends at once
	sock.stopWriter()
}

// readLoop runs the client's commands until the connection ends. It reports
// whether the client closed it with a close frame.
//
// An idle socket is mostly its reader goroutine's stack, so that goroutine
// stays shallow: it waits for the client in the idle waiter, and each
// message is read and run on a short-lived goroutine of its own while it
// waits. The library's frame reader and a command's deep calls (JSON, Redis)
// then never grow the stack an idle socket keeps (the garbage collector
// does not shrink a stack back to its 2 KB start).
func (s *socket) readLoop(ctx context.Context) bool {
	res := make(chan readResult, 1)
	for {
		s.idleWait.wait()
		go func() { res <- s.readOne(ctx) }()
		if r := <-res; r != readMore {
			return r == readClosed
		}
	}
}

// readResult tells the reader what came of one message.
type readResult uint8

const (
	readMore   readResult = iota // the message was handled: read on
	readClosed                   // the client sent a close frame
	readEnded                    // the connection ended otherwise
)

// readOne reads and runs one client message.
func (s *socket) readOne(ctx context.Context) readResult {
	// No deadline and no cancellation: a socket ends by closing its
	// connection (and a cancellable context would cost memory).
	typ, r, err := s.conn.Reader(context.Background())
	if err == nil && s.idleWait.sawSynthetic() {
		return readMore // the end of a ping or pong: an empty frame, not read
	}
	var b []byte
	if err == nil {
		b, err = io.ReadAll(r)
	}
	if err != nil {
		if websocket.CloseStatus(err) != -1 {
			return readClosed
		}
		return readEnded
	}
	s.lastRead.Store(time.Now().UnixNano())
	if typ != websocket.MessageText {
		// The protocol is JSON in text frames; a binary frame is refused
		// with 1003 (unsupported data), its sessions left to their
		// deadline like any socket closed by the node.
		s.conn.Close(websocket.StatusUnsupportedData, "binary frames are not supported: send JSON text frames")
		return readEnded
	}
	if !s.limiter.allow(time.Now()) {
		s.srv.met.rateLimited.Inc()
		s.replyError(nil, presence.Errorf(presence.ERATELIMITED, "more than %d messages per second", s.srv.cfg.WSMessagesPerSecond))
		s.flush()
		s.conn.Close(websocket.StatusPolicyViolation, "rate limit exceeded")
		return readEnded
	}
	s.command(ctx, b)
	return readMore
}

// command decodes and runs one client message.
func (s *socket) command(ctx context.Context, b []byte) {
	m, err := decodeClientMessage(b)
	if err != nil {
		var id json.RawMessage
		if m != nil {
			id = m.ID
		}
		s.replyError(id, err)
		return
	}
	if err := s.handle(ctx, m); err != nil {
		s.replyError(m.ID, err)
	}
}

// flush waits (briefly) until the queued replies are written.
func (s *socket) flush() {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		done := len(s.replies) == 0 && !s.writing
		s.mu.Unlock()
		if done {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *socket) handle(ctx context.Context, m *clientMessage) error {
	switch m.Type {
	case "ping":
		s.replyJSON(replyMsg{Type: "pong", ID: m.ID})
		return nil
	case "join":
		return s.join(ctx, m)
	case "leave":
		return s.leave(ctx, m)
	case "update":
		return s.update(ctx, m)
	case "watch":
		switch m.Mode {
		case "", "members":
			return s.watch(ctx, m)
		case "count":
			return s.watchCount(ctx, m)
		}
		return presence.Errorf(presence.EINVALID, `mode must be "members" or "count"`)
	case "unwatch":
		return s.unwatch(m)
	case "watchUsers":
		return s.watchUsers(ctx, m)
	case "unwatchUsers":
		if len(m.UserIDs) == 0 {
			return presence.Errorf(presence.EINVALID, "userIds must list at least one user")
		}
		s.rt.UnwatchUsers(m.UserIDs)
		s.replyJSON(replyMsg{Type: "unwatchedUsers", ID: m.ID})
		return nil
	}
	return presence.Errorf(presence.EINVALID, "unknown message type %q", m.Type)
}

func (s *socket) join(ctx context.Context, m *clientMessage) error {
	interval, err := presence.IntervalMillis(m.Interval)
	if err != nil {
		return err
	}
	j, err := s.rt.Join(ctx, presence.HeartbeatInput{RoomID: m.RoomID, SessionID: m.SessionID, Interval: interval,
		Data: m.Data, UserID: m.UserID, Name: m.Name, Image: m.Image, Invisible: m.Invisible, HideLastSeen: m.HideLastSeen})
	if err != nil {
		return err
	}
	l := j.Snapshot
	b, _ := json.Marshal(snapshotMsg{Type: "joined", ID: m.ID, RoomID: j.Room.RoomID, RoomToken: j.RoomToken,
		SessionToken: j.SessionToken, Version: l.Version, Members: l.Members})
	s.reply(item{kind: kindSnapshot, room: j.Room, version: l.Version, data: b})
	return nil
}

func (s *socket) leave(ctx context.Context, m *clientMessage) error {
	left, err := s.rt.Leave(ctx, m.RoomID)
	if left != nil {
		s.replyLeft(left, m.ID, "left")
	}
	return err
}

// replyLeft answers a leave or an unwatch.
func (s *socket) replyLeft(left *presence.Left, id json.RawMessage, typ string) {
	kind := kindReply
	if left.Dropped {
		kind = kindLeft
	}
	b, _ := json.Marshal(replyMsg{Type: typ, ID: id, RoomID: left.Room.RoomID})
	s.reply(item{kind: kind, room: left.Room, data: b, uncount: typ == "unwatched"})
}

func (s *socket) update(ctx context.Context, m *clientMessage) error {
	if err := s.rt.Update(ctx, m.RoomID, m.Data); err != nil {
		return err
	}
	s.replyJSON(replyMsg{Type: "updated", ID: m.ID, RoomID: m.RoomID})
	return nil
}

func (s *socket) watch(ctx context.Context, m *clientMessage) error {
	room, l, err := s.rt.Watch(ctx, m.RoomToken)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(snapshotMsg{Type: "watching", ID: m.ID, RoomID: room.RoomID, Version: l.Version, Members: l.Members})
	s.reply(item{kind: kindSnapshot, room: room, version: l.Version, data: b, uncount: true})
	return nil
}

// watchCount watches a room in count mode: its counts instead of its events.
func (s *socket) watchCount(ctx context.Context, m *clientMessage) error {
	room, n, joined, err := s.rt.WatchCount(ctx, m.RoomToken)
	if err != nil {
		return err
	}
	s.reply(item{kind: kindCount, room: room, version: n.Version, data: encodeCount("watching", m.ID, n), joined: joined})
	return nil
}

func (s *socket) watchUsers(ctx context.Context, m *clientMessage) error {
	users, err := s.rt.WatchUsers(ctx, m.UserIDs)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(usersMsg{Type: "watchingUsers", ID: m.ID, Users: users})
	s.reply(item{kind: kindUsers, data: b, users: users})
	// Changes that came while the answer was read follow it.
	s.rt.RecheckUsers(ctx)
	return nil
}

func (s *socket) unwatch(m *clientMessage) error {
	left, err := s.rt.Unwatch(m.RoomID)
	if err != nil {
		return err
	}
	s.replyLeft(left, m.ID, "unwatched")
	return nil
}

// rateLimiter is a token bucket: n per second, bursts of n.
type rateLimiter struct {
	rate   float64
	tokens float64
	last   time.Time
}

func newRateLimiter(n int) *rateLimiter {
	return &rateLimiter{rate: float64(n), tokens: float64(n)}
}

func (l *rateLimiter) allow(now time.Time) bool {
	if !l.last.IsZero() {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// wsMetrics are the realtime metrics of a node.
type wsMetrics struct {
	sockets     prometheus.Gauge
	overflows   prometheus.Counter
	rateLimited prometheus.Counter
	overloaded  prometheus.Counter
}

func newWSMetrics(reg prometheus.Registerer, rt *presence.Realtime) *wsMetrics {
	m := &wsMetrics{
		sockets:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "presence_websockets", Help: "Open WebSockets."}),
		overflows:   prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_socket_overflows_total", Help: "Times a slow socket's queue overflowed."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_ws_rate_limited_total", Help: "Sockets closed for exceeding the message rate."}),
		overloaded:  prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_http_overloaded_total", Help: "Requests refused because MaxInFlight were being served."}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.sockets, m.overflows, m.rateLimited, m.overloaded)
	if rt != nil {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "presence_events_delivered_total", Help: "Events handed to local sockets."},
				func() float64 { return float64(rt.Delivered()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "presence_syncs_sent_total", Help: "Sync messages sent to sockets."},
				func() float64 { return float64(rt.Synced()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "presence_batches_delivered_total", Help: "Batches (a room's events coalesced in a storm) handed to local sockets."},
				func() float64 { return float64(rt.Batched()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "presence_sessions_kept_alive", Help: "Sessions this node keeps alive for its sockets."},
				func() float64 { return float64(rt.Keeper().Len()) }),
		)
	}
	return m
}

// pingIdle pings, a few at a time, the sockets whose client has sent
// nothing for a ping interval (clients that ping themselves are never
// pinged); one that does not answer within the interval is gone, without a
// close frame: its sessions wait for their deadline. One loop per node
// instead of a goroutine per socket keeps an idle socket cheap.
func (s *Server) pingIdle(ctx context.Context) {
	interval := s.cfg.WSPingInterval
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	sem := make(chan struct{}, 64)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		quiet := time.Now().Add(-interval).UnixNano()
		s.sockMu.Lock()
		var due []*socket
		for sock := range s.sockSet {
			if sock.lastRead.Load() < quiet && !sock.pinging.Load() {
				due = append(due, sock)
			}
		}
		s.sockMu.Unlock()
		if len(due) == 0 {
			continue
		}
		// The pings of one round share a context (one per ping would be
		// garbage every ping interval for every idle socket); a round
		// sends its pings within milliseconds.
		pctx, cancel := context.WithTimeout(context.Background(), interval)
		var wg sync.WaitGroup
		for _, sock := range due {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				cancel()
				return
			}
			sock.pinging.Store(true)
			wg.Add(1)
			go func() {
				defer func() { <-sem; sock.pinging.Store(false); wg.Done() }()
				if err := sock.conn.Ping(pctx); err != nil && !sock.isClosed() {
					sock.conn.CloseNow()
					return
				}
				sock.lastRead.Store(time.Now().UnixNano())
			}()
		}
		go func() { wg.Wait(); cancel() }()
	}
}
