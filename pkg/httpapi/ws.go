package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/prometheus/client_golang/prometheus"
)

// Item kinds on a socket's queues.
const (
	kindReply    = iota // a reply; written as is
	kindSnapshot        // joined/watching: sets the socket's version of the room
	kindLeft            // left/unwatched: forgets the socket's version of the room
	kindEvent           // a presence event: written if it is the next version
	kindSync            // a sync from the hub: always written, sets the version
)

type item struct {
	kind    int
	room    presence.RoomRef
	version int64
	data    []byte
}

// socket is one WebSocket connection: a reader (the handler goroutine) that
// runs the client's commands, and a writer that sends replies and events.
type socket struct {
	srv  *Server
	conn *websocket.Conn
	id   *presence.Identity
	ctx  context.Context

	replies  chan item  // replies; the reader waits for room in it
	events   chan *item // events and syncs (shared by all sockets of a room); never waited for: on overflow, dropped
	overflow atomic.Bool
	wake     chan struct{}

	// Used by the reader goroutine only (and at close, after it ended).
	joined map[presence.RoomRef]*presence.Owned
	// watched holds the rooms watched with a room token: true while the
	// token's epoch is the room's, false once the room was removed (the
	// token sees nothing of the room's new life).
	watched map[presence.RoomRef]bool

	mu    sync.Mutex
	ended []*presence.Owned // sessions ended by someone else, to clean up
	// frozen are the rooms the socket follows only through the token of a
	// removed room: no event, sync or snapshot of the room's new life.
	frozen map[presence.RoomRef]bool

	// lastRead is when the client last sent anything (unix ns): the node
	// pings only sockets that have been quiet for a ping interval.
	lastRead atomic.Int64
	pinging  atomic.Bool

	// limiter counts the client's messages and ping frames (reader goroutine
	// only); pingLimited is set once pings went over it.
	limiter     *rateLimiter
	pingLimited bool
}

func (s *socket) uses(room presence.RoomRef) bool {
	_, watched := s.watched[room]
	return s.joined[room] != nil || watched
}

func (s *socket) roomCount() int {
	n := len(s.joined)
	for r := range s.watched {
		if s.joined[r] == nil {
			n++
		}
	}
	return n
}

// enqueue hands an event or sync to the socket without waiting. When the
// queue is full, the socket is marked: its writer drops what is queued and
// sends a sync of each of its rooms once it catches up.
func (s *socket) enqueue(it *item) {
	select {
	case s.events <- it:
	default:
		if !s.overflow.Swap(true) {
			s.srv.met.overflows.Inc()
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// reply queues a reply; it waits while the client does not read.
func (s *socket) reply(it item) {
	select {
	case s.replies <- it:
	case <-s.ctx.Done():
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

// writeLoop sends the socket's queued items until ctx is done. It keeps,
// per room, the last version the client has, so that each version is sent
// at most once and in order; a gap (dropped or missed events) gets a sync.
func (s *socket) writeLoop(ctx context.Context) error {
	versions := map[presence.RoomRef]int64{}
	early := map[presence.RoomRef]int64{} // events of a room before its snapshot
	write := func(b []byte) error {
		if !utf8.Valid(b) {
			// Never reached with what the node builds (inputs are checked,
			// stored data is repaired when read); a browser would close the
			// socket on an invalid text frame, so it is checked once more.
			b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
		}
		wctx, cancel := context.WithTimeout(ctx, s.srv.cfg.WSWriteTimeout)
		defer cancel()
		return s.conn.Write(wctx, websocket.MessageText, b)
	}
	syncRoom := func(room presence.RoomRef) error {
		if s.isFrozen(room) {
			return nil // a removed room's token: nothing of its new life
		}
		l, err := s.srv.svc.Store().List(ctx, room, presence.ListQuery{Limit: snapshotLimit})
		if err != nil {
			return nil // the store is away; the hub syncs everyone when it is back
		}
		b, _ := json.Marshal(snapshotMsg{Type: "sync", RoomID: room.RoomID, Version: l.Version, Members: l.Members})
		versions[room] = l.Version
		s.srv.met.syncs.Inc()
		return write(b)
	}
	handle := func(it item) error {
		switch it.kind {
		case kindReply:
			return write(it.data)
		case kindSnapshot, kindSync:
			if it.kind == kindSync {
				if _, ok := versions[it.room]; !ok {
					return nil // not (yet) the socket's room
				}
			}
			versions[it.room] = it.version
			if err := write(it.data); err != nil {
				return err
			}
			// An event newer than the snapshot came first (the socket
			// follows the room from before its snapshot was read) and was
			// dropped: a sync brings it.
			newer := early[it.room] > it.version
			delete(early, it.room)
			if newer {
				return syncRoom(it.room)
			}
			return nil
		case kindLeft:
			delete(versions, it.room)
			delete(early, it.room)
			return write(it.data)
		case kindEvent:
			v, ok := versions[it.room]
			switch {
			case !ok:
				early[it.room] = max(early[it.room], it.version)
				return nil
			case it.version <= v:
				return nil
			case it.version > v+1:
				return syncRoom(it.room)
			}
			versions[it.room] = it.version
			return write(it.data)
		}
		return nil
	}
	for {
		// Replies first: they answer the client's own commands.
		select {
		case it := <-s.replies:
			if err := handle(it); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case it := <-s.replies:
			if err := handle(it); err != nil {
				return err
			}
		case it := <-s.events:
			if s.overflow.Load() {
				continue // dropped: a sync follows
			}
			if err := handle(*it); err != nil {
				return err
			}
		case <-s.wake:
			if !s.overflow.Load() {
				continue
			}
			// Drop what is queued, then send every room afresh.
			for drained := false; !drained; {
				select {
				case <-s.events:
				default:
					drained = true
				}
			}
			s.overflow.Store(false)
			for room := range versions {
				if err := syncRoom(room); err != nil {
					return err
				}
			}
		}
	}
}

// serveWS upgrades the connection and runs the WebSocket protocol (README: GET /v1/ws).
func (s *Server) serveWS(c echo.Context) error {
	if s.hub == nil {
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
	conn, err := websocket.Accept(c.Response(), r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		// The origin was checked above, by the same rule as HTTP CORS.
		InsecureSkipVerify: true,
		OnPingReceived:     sock.onPing,
	})
	if err != nil {
		return nil // Accept has answered the client
	}
	sock.conn = conn
	reserved = false // serveSocket owns the place now
	// The connection is hijacked: the handler may return. The socket lives
	// on a fresh goroutine, whose small stack is not the one the handler's
	// request processing grew (an idle socket is mostly its stacks).
	go s.serveSocket(sock, id)
	return nil
}

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
		go s.conn.Close(websocket.StatusPolicyViolation, "rate limit exceeded")
	}
	return false
}

func (s *Server) serveSocket(sock *socket, id *presence.Identity) {
	ctx, cancel := context.WithCancel(presence.NewContextWithIdentity(context.Background(), id))
	defer cancel()
	conn := sock.conn
	conn.SetReadLimit(s.cfg.WSMaxMessageBytes)
	sock.id, sock.ctx = id, ctx
	sock.replies = make(chan item, 16)
	sock.events = make(chan *item, s.cfg.WSQueue)
	sock.wake = make(chan struct{}, 1)
	sock.joined = map[presence.RoomRef]*presence.Owned{}
	sock.watched = map[presence.RoomRef]bool{}
	s.register(sock)
	s.met.sockets.Inc()
	defer func() {
		s.sockets.Add(-1)
		s.met.sockets.Dec()
		s.unregister(sock)
	}()

	sock.lastRead.Store(time.Now().UnixNano())
	writeDone := make(chan error, 1)
	go func() { writeDone <- sock.writeLoop(ctx) }()

	closeFrame := sock.readLoop(ctx)

	// A close frame (or a leave) ends the sessions now; a lost connection or
	// a node shutting down leaves them to their deadline, so the client can
	// resume them, on any node, without a leave and a join.
	ectx, ecancel := context.WithTimeout(context.Background(), 2*time.Second)
	for room, o := range sock.joined {
		if closeFrame && !s.draining.Load() {
			if err := s.endHeld(ectx, o); err != nil {
				s.log.Warn("end session on close: left to its deadline", "room", room.RoomID, "err", err)
			}
		} else {
			s.keeper.Release(ectx, o) // to its ordinary deadline: resume works
		}
	}
	ecancel()
	for room := range sock.joined {
		s.hub.detach(room, sock)
		s.hub.release(room)
	}
	for room := range sock.watched {
		if sock.joined[room] == nil {
			s.hub.detach(room, sock)
			s.hub.release(room)
		}
	}
	cancel()
	<-writeDone
	conn.CloseNow()
}

// readLoop runs the client's commands until the connection ends. It reports
// whether the client closed it with a close frame.
func (s *socket) readLoop(ctx context.Context) bool {
	for {
		typ, b, err := s.conn.Read(ctx)
		if err != nil {
			return websocket.CloseStatus(err) != -1
		}
		s.lastRead.Store(time.Now().UnixNano())
		s.cleanupEnded()
		if typ != websocket.MessageText {
			// The protocol is JSON in text frames; a binary frame is refused
			// with 1003 (unsupported data), its sessions left to their
			// deadline like any socket closed by the node.
			s.conn.Close(websocket.StatusUnsupportedData, "binary frames are not supported: send JSON text frames")
			return false
		}
		if !s.limiter.allow(time.Now()) {
			s.srv.met.rateLimited.Inc()
			s.replyError(nil, presence.Errorf(presence.ERATELIMITED, "more than %d messages per second", s.srv.cfg.WSMessagesPerSecond))
			s.flush()
			s.conn.Close(websocket.StatusPolicyViolation, "rate limit exceeded")
			return false
		}
		m, err := decodeClientMessage(b)
		if err != nil {
			var id json.RawMessage
			if m != nil {
				id = m.ID
			}
			s.replyError(id, err)
			continue
		}
		if err := s.handle(ctx, m); err != nil {
			s.replyError(m.ID, err)
		}
	}
}

// flush waits (briefly) until the queued replies are written.
func (s *socket) flush() {
	deadline := time.Now().Add(time.Second)
	for len(s.replies) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
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
		return s.watch(ctx, m)
	case "unwatch":
		return s.unwatch(m)
	}
	return presence.Errorf(presence.EINVALID, "unknown message type %q", m.Type)
}

func (s *socket) join(ctx context.Context, m *clientMessage) error {
	room, err := s.srv.svc.Room(ctx, m.RoomID)
	if err != nil {
		return err
	}
	prev := s.joined[room]
	if !s.uses(room) && s.roomCount() >= s.srv.cfg.WSMaxRooms {
		return presence.Errorf(presence.ELIMIT, "at most %d rooms per socket", s.srv.cfg.WSMaxRooms)
	}
	in := presence.HeartbeatInput{RoomID: m.RoomID, SessionID: m.SessionID, Data: m.Data, UserID: m.UserID, Name: m.Name, Image: m.Image}
	if m.Interval != nil {
		in.Interval = intervalOf(*m.Interval)
	}
	if !s.uses(room) {
		if err := s.srv.hub.acquire(ctx, room); err != nil {
			return err
		}
	}
	var out *presence.HeartbeatOutput
	gen, err := s.srv.keeper.Hold(ctx, room, in.Interval)
	if err == nil {
		in.HeldBy = gen
		if out, err = s.srv.svc.Heartbeat(ctx, in); err != nil {
			s.srv.keeper.Unhold(room)
		}
	}
	if err != nil {
		if !s.uses(room) {
			s.srv.hub.release(room)
		}
		return err
	}
	if prev != nil && prev.SessionID != m.SessionID {
		// A socket has one session per room: the new one replaces the old.
		s.srv.endHeld(ctx, prev)
	}
	if prev != nil {
		s.srv.keeper.Remove(prev)
	}
	_, _, epoch, _ := s.srv.svc.Tokens().ParseSessionToken(out.SessionToken)
	user, _ := s.srv.svc.ActingUser(ctx, m.UserID)
	o := &presence.Owned{Room: room, UserID: user, SessionID: m.SessionID, Epoch: epoch,
		Interval: time.Duration(out.Interval) * time.Millisecond, Owner: s}
	s.joined[room] = o
	s.srv.keeper.Add(o, gen, out.Version)
	// Follow the room before reading its snapshot, so that no change falls
	// between the two (the writer drops what the snapshot already has, and
	// syncs if something newer came first).
	s.srv.hub.attach(room, s, false)
	l, err := s.srv.svc.Store().List(ctx, room, presence.ListQuery{Limit: snapshotLimit})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(snapshotMsg{Type: "joined", ID: m.ID, RoomID: room.RoomID, RoomToken: out.RoomToken,
		SessionToken: out.SessionToken, Version: l.Version, Members: l.Members})
	s.reply(item{kind: kindSnapshot, room: room, version: l.Version, data: b})
	return nil
}

func intervalOf(ms int64) time.Duration {
	if ms <= 0 || ms > presence.MaxInterval.Milliseconds() {
		return -1 // refused by the service
	}
	return time.Duration(ms) * time.Millisecond
}

func (s *socket) leave(ctx context.Context, m *clientMessage) error {
	room, err := s.srv.svc.Room(ctx, m.RoomID)
	if err != nil {
		return err
	}
	o := s.joined[room]
	if o == nil {
		return presence.Errorf(presence.ENOTFOUND, "not joined to room %q", m.RoomID)
	}
	delete(s.joined, room)
	err = s.srv.endHeld(ctx, o)
	s.dropRoom(room, m.ID, "left")
	return err
}

// endHeld ends a session the node holds for a socket (a leave, a close
// frame, a replaced session). If the store does not answer, the session is
// handed to its ordinary deadline instead (the keeper retries that until
// the store answers): never is it left held by a node that let it go, which
// would keep it online for good.
func (s *Server) endHeld(ctx context.Context, o *presence.Owned) error {
	if err := s.svc.EndSession(ctx, o.Room, o.SessionID, o.Epoch); err != nil {
		s.keeper.Release(ctx, o)
		return err
	}
	s.keeper.Remove(o)
	return nil
}

// reattach tells the hub how the socket follows a room it still uses:
// joined (by its identity), watching by a live room token (which a removal
// of the room ends), or only holding the token of a removed room (no events).
func (s *socket) reattach(room presence.RoomRef) {
	switch live, watched := s.watched[room]; {
	case s.joined[room] != nil:
		s.setFrozen(room, false)
		s.srv.hub.attach(room, s, false)
	case watched && live:
		s.srv.hub.attach(room, s, true)
	default:
		s.setFrozen(room, true)
		s.srv.hub.detach(room, s)
	}
}

func (s *socket) setFrozen(room presence.RoomRef, frozen bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !frozen {
		delete(s.frozen, room)
		return
	}
	if s.frozen == nil {
		s.frozen = map[presence.RoomRef]bool{}
	}
	s.frozen[room] = true
}

func (s *socket) isFrozen(room presence.RoomRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen[room]
}

// dropRoom stops the socket's use of a room when neither joined nor watched.
func (s *socket) dropRoom(room presence.RoomRef, id json.RawMessage, replyType string) {
	kind := kindReply
	if !s.uses(room) {
		s.srv.hub.detach(room, s)
		s.srv.hub.release(room)
		s.setFrozen(room, false)
		kind = kindLeft
	} else {
		s.reattach(room)
	}
	b, _ := json.Marshal(replyMsg{Type: replyType, ID: id, RoomID: room.RoomID})
	s.reply(item{kind: kind, room: room, data: b})
}

func (s *socket) update(ctx context.Context, m *clientMessage) error {
	room, err := s.srv.svc.Room(ctx, m.RoomID)
	if err != nil {
		return err
	}
	o := s.joined[room]
	if o == nil {
		return presence.Errorf(presence.ENOTFOUND, "not joined to room %q", m.RoomID)
	}
	if m.Data == nil {
		return presence.Errorf(presence.EINVALID, "data is required")
	}
	if err := s.srv.svc.SetData(ctx, m.RoomID, o.UserID, m.Data); err != nil {
		return err
	}
	s.replyJSON(replyMsg{Type: "updated", ID: m.ID, RoomID: m.RoomID})
	return nil
}

func (s *socket) watch(ctx context.Context, m *clientMessage) error {
	room, epoch, err := s.srv.svc.ParseRoomToken(m.RoomToken)
	if err != nil {
		return err
	}
	// A socket lives in its org: a room token of another org (fine for an
	// HTTP list) would mix two orgs' rooms of the same id on one socket.
	if room.Org != s.id.Org && !s.id.Admin {
		return presence.Errorf(presence.EFORBIDDEN, "the room token is of another org")
	}
	if !s.id.MayAccessRoom(room.RoomID) {
		return presence.Errorf(presence.EFORBIDDEN, "the token does not grant room %q", room.RoomID)
	}
	if !s.uses(room) {
		if s.roomCount() >= s.srv.cfg.WSMaxRooms {
			return presence.Errorf(presence.ELIMIT, "at most %d rooms per socket", s.srv.cfg.WSMaxRooms)
		}
		if err := s.srv.hub.acquire(ctx, room); err != nil {
			return err
		}
	}
	l, err := s.srv.svc.Store().List(ctx, room, presence.ListQuery{Epoch: epoch, Limit: snapshotLimit})
	if err != nil {
		if !s.uses(room) {
			s.srv.hub.release(room)
		}
		return err
	}
	// The token of a removed room watches an empty room that never changes:
	// nothing of the room's new life reaches it (as GET /v1/list).
	s.watched[room] = !l.Stale
	s.setFrozen(room, false) // a live token may follow the room again
	s.reattach(room)
	b, _ := json.Marshal(snapshotMsg{Type: "watching", ID: m.ID, RoomID: room.RoomID, Version: l.Version, Members: l.Members})
	s.reply(item{kind: kindSnapshot, room: room, version: l.Version, data: b})
	return nil
}

func (s *socket) unwatch(m *clientMessage) error {
	for room := range s.watched {
		if room.RoomID == m.RoomID {
			delete(s.watched, room)
			s.dropRoom(room, m.ID, "unwatched")
			return nil
		}
	}
	return presence.Errorf(presence.ENOTFOUND, "not watching room %q", m.RoomID)
}

// sessionEnded is called by the keeper when one of the socket's sessions
// was ended by someone else (sign-out, removal, expiry). The reader cleans
// up at its next turn; the client is told now.
func (s *socket) sessionEnded(o *presence.Owned) {
	s.mu.Lock()
	s.ended = append(s.ended, o)
	s.mu.Unlock()
	b, _ := json.Marshal(replyMsg{Type: "left", RoomID: o.Room.RoomID, Reason: "ended"})
	select {
	case s.replies <- item{kind: kindReply, data: b}:
	default:
	}
}

func (s *socket) cleanupEnded() {
	s.mu.Lock()
	ended := s.ended
	s.ended = nil
	s.mu.Unlock()
	for _, o := range ended {
		if s.joined[o.Room] == o {
			delete(s.joined, o.Room)
			if !s.uses(o.Room) {
				s.srv.hub.detach(o.Room, s)
				s.srv.hub.release(o.Room)
			} else {
				s.reattach(o.Room)
			}
		}
	}
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
	delivered   prometheus.Counter
	syncs       prometheus.Counter
	overflows   prometheus.Counter
	rateLimited prometheus.Counter
	overloaded  prometheus.Counter
}

// registerKeeper exports the number of sessions the node keeps alive.
func (s *Server) registerKeeper(reg prometheus.Registerer) {
	if reg == nil || s.keeper == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "presence_sessions_kept_alive", Help: "Sessions this node keeps alive for its sockets.",
	}, func() float64 { return float64(s.keeper.Len()) }))
}

func newWSMetrics(reg prometheus.Registerer) *wsMetrics {
	m := &wsMetrics{
		sockets:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "presence_websockets", Help: "Open WebSockets."}),
		delivered:   prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_events_delivered_total", Help: "Events handed to local sockets."}),
		syncs:       prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_syncs_sent_total", Help: "Sync messages sent to sockets."}),
		overflows:   prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_socket_overflows_total", Help: "Times a slow socket's queue overflowed."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_ws_rate_limited_total", Help: "Sockets closed for exceeding the message rate."}),
		overloaded:  prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_http_overloaded_total", Help: "Requests refused because MaxInFlight were being served."}),
	}
	if reg != nil {
		reg.MustRegister(m.sockets, m.delivered, m.syncs, m.overflows, m.rateLimited, m.overloaded)
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
		for _, sock := range due {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			sock.pinging.Store(true)
			go func() {
				defer func() { <-sem; sock.pinging.Store(false) }()
				pctx, cancel := context.WithTimeout(sock.ctx, interval)
				err := sock.conn.Ping(pctx)
				cancel()
				if err != nil && sock.ctx.Err() == nil {
					sock.conn.CloseNow()
					return
				}
				sock.lastRead.Store(time.Now().UnixNano())
			}()
		}
	}
}
