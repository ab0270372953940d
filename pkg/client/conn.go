package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/presence"
)

// Timings of a Conn.
const (
	minBackoff     = 50 * time.Millisecond // first reconnect delay
	maxBackoff     = 2 * time.Second       // reconnect delays double up to this
	dialTimeout    = 10 * time.Second      // one WebSocket handshake
	writeTimeout   = 10 * time.Second      // one frame written
	restoreTimeout = 10 * time.Second      // one rejoin/re-watch reply
	keepaliveEvery = 15 * time.Second      // WebSocket ping, to notice a dead peer
	keepaliveWait  = 10 * time.Second      // its pong
	readLimit      = 32 << 20              // largest message read (snapshots of 1000 members)
	// restoreBurst messages are sent at once when restoring rooms after a
	// reconnect, then one per restorePace, under the server's limit of 50
	// messages per second.
	restoreBurst = 25
	restorePace  = 25 * time.Millisecond
)

// ConnConfig configures a Conn (see Dial).
type ConnConfig struct {
	// URLs are node base URLs ("http://host:port" or https). Dial uses the
	// first that answers; each reconnect moves on to the next one, round
	// robin.
	URLs []string
	// Token, when set, is sent as the access_token query parameter and as
	// "Authorization: Bearer <Token>" (a user's JWT, or the admin token).
	Token string
	// UserID, Name and Image name the user in joins when auth is off (with
	// a JWT leave them empty: the claims are used).
	UserID, Name, Image string
	// Invisible and HideLastSeen, when non-nil, are sent with every join
	// (and rejoin) of the Conn: its member in each room it joins is
	// invisible (offline to everyone else) or hides its last seen. Nil
	// keeps the member's setting. SetPrivacy changes them later.
	Invisible, HideLastSeen *bool
	// Reconnect makes the Conn survive the loss of its socket: a drop
	// without a close frame, or a close with a transient code (1012 service
	// restart, 1001 going away, 1011, 1013). It reconnects with backoff
	// (50 ms doubling to 2 s, with jitter) to the next URL, rejoins every
	// joined room with the same sessionId, interval and latest data (so the
	// server resumes the sessions, with no leave and no join), and watches
	// the watched rooms again. Other close codes (1008 rate limit, 1009
	// message too big, 1000) end the Conn. Without Reconnect any loss ends it.
	Reconnect bool
	// OnEvent, when set, is called with every message the server sends, in
	// order, from the Conn's reader goroutine, after the Conn applied it to
	// its views and before the call it answers returns. It must be fast and
	// must not block: the socket is not read while it runs. It must not call
	// the Conn's methods that wait for a reply (Join, Leave, Update, Watch,
	// WatchCount, Unwatch, Ping, Close, Abandon); View, Count and Stats are
	// fine.
	OnEvent func(Event)
	// Dialer, when set, opens the TCP connections (to bind a source
	// address, or to wrap the net.Conn). Nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Event is one message received on a Conn, as OnEvent sees it.
type Event struct {
	// Type is the message type: "presence", "batch", "sync", "joined", "watching",
	// "count", "left", "updated", "unwatched", "watchingUsers", "user",
	// "unwatchedUsers", "pong" or "error".
	Type string
	// RoomID is the room of the message ("" for pong and most errors).
	RoomID string
	// Version is the room version of presence, sync, joined and watching
	// messages.
	Version int64
	// Event is the kind of a presence message: "join", "leave", "update"
	// or "remove".
	Event string
	// Member is the member of a presence message, as a list shows it after
	// the change; nil for other messages.
	Member *presence.Member
	// User is the watched user's new state of a "user" message; nil for
	// other messages.
	User *presence.UserPresence
	// Count is the room's counts of a "count" message, or of the
	// "watching" answer of WatchCount; nil for other messages.
	Count *presence.RoomCount
	// FromVersion and Changes are a "batch" message's: the room's events
	// of versions FromVersion..Version coalesced, the last change of each
	// user in version order.
	FromVersion int64
	Changes     []BatchChange
	// Raw is the message as received (JSON).
	Raw json.RawMessage
}

// Joined is the answer to Join and Watch: the room's state when the socket
// started following it.
type Joined struct {
	RoomID string
	// RoomToken is the capability to list the room; for Watch, the token
	// that was given.
	RoomToken string
	// SessionToken is the capability to end the session (Client.Disconnect);
	// empty for Watch.
	SessionToken string
	// Version is the room version of Members.
	Version int64
	// Members are the room's members (at most 1000), in list order.
	Members []presence.Member
}

// Stats are a Conn's counters since Dial.
type Stats struct {
	// Reconnects counts the sockets opened after the first one.
	Reconnects int64
	// Syncs counts the sync messages received.
	Syncs int64
	// Events counts the presence messages received (applied to a view or
	// not).
	Events int64
	// Batches counts the batch messages received (a room's events
	// coalesced in a storm).
	Batches int64
	// Errors counts the error messages received.
	Errors int64
	// Connected is true while a socket is open and its rooms are restored.
	Connected bool
	// URL is the base URL of the node of the open socket; "" while
	// disconnected.
	URL string
}

// Conn is a WebSocket connection to a presence node (GET /v1/ws): one
// socket, many rooms. It keeps, for every room it joined or watches, a view
// of the room's members kept up to date by the server's events (View). With
// ConnConfig.Reconnect it survives node restarts and network drops. A Conn
// is safe for concurrent use.
type Conn struct {
	cfg    ConnConfig
	life   context.Context // the reader's context; cancelled by Close/Abandon
	cancel context.CancelFunc
	done   chan struct{} // closed when the Conn has ended
	wmu    sync.Mutex    // serializes writes

	privacy atomic.Pointer[privacyFlags] // SetPrivacy's, else cfg's

	mu      sync.Mutex
	ws      *websocket.Conn // the current socket; nil while disconnected
	raw     net.Conn        // its TCP connection
	urlIdx  int             // index in cfg.URLs of the current (or last) socket
	gen     int64           // incremented with each socket
	ready   chan struct{}   // closed once the socket is open and its rooms restored
	isReady bool
	closing bool  // Close or Abandon was called
	ended   bool  // the Conn ended (err says why)
	err     error // why the Conn ended
	nextID  int64
	pending map[int64]*pendingCall
	joined  map[string]*joinedRoom // what to rejoin after a reconnect
	watched map[string]string      // roomID → room token, to watch again
	counted map[string]string      // the same, for rooms watched in count mode
	counts  map[string]presence.RoomCount
	views   map[string]*roomView
	users   map[string]presence.UserPresence // watched users' last known states
	stats   Stats
}

type joinedRoom struct {
	sessionID    string
	interval     time.Duration
	data         json.RawMessage
	sessionToken string
}

// pendingCall waits for the reply of one request. hook runs in the reader,
// under c.mu, before the caller is woken (even if it stopped waiting), so
// the Conn's state follows the server's answers in order.
type pendingCall struct {
	ch   chan *inMsg // nil: the socket was lost
	hook func(*inMsg)
}

// outMsg is a client message (README: GET /v1/ws).
type outMsg struct {
	Type      string          `json:"type"`
	ID        int64           `json:"id"`
	RoomID    string          `json:"roomId,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Interval  int64           `json:"interval,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	UserID    string          `json:"userId,omitempty"`
	Name      string          `json:"name,omitempty"`
	Image     string          `json:"image,omitempty"`
	RoomToken string          `json:"roomToken,omitempty"`
	Mode      string          `json:"mode,omitempty"`
	UserIDs   []string        `json:"userIds,omitempty"`
	// A join's privacy flags (nil: keep the member's).
	Invisible    *bool `json:"invisible,omitempty"`
	HideLastSeen *bool `json:"hideLastSeen,omitempty"`
}

// inMsg is any server message.
type inMsg struct {
	Type         string            `json:"type"`
	ID           json.RawMessage   `json:"id"`
	RoomID       string            `json:"roomId"`
	RoomToken    string            `json:"roomToken"`
	SessionToken string            `json:"sessionToken"`
	Version      int64             `json:"version"`
	Members      []presence.Member `json:"members"`
	Event        string            `json:"event"`
	Member       *presence.Member  `json:"member"`
	Code         string            `json:"code"`
	Message      string            `json:"message"`
	Reason       string            `json:"reason"`
	// watchingUsers, user
	Users  []presence.UserPresence `json:"users"`
	UserID string                  `json:"userId"`
	// Online is a boolean in user, a number in count and in the watching
	// answer of a count-mode watch.
	Online           json.RawMessage `json:"online"`
	LastDisconnected int64           `json:"lastDisconnected"`
	Rooms            int             `json:"rooms"`
	Sessions         int64           `json:"sessions"`
	// batch
	FromVersion int64         `json:"fromVersion"`
	Changes     []BatchChange `json:"changes"`
}

// BatchChange is one change of a batch: a room's events coalesced in a storm
// (the server sends at most PRESENCE_WS_ROOM_FRAMES frames per room per
// second), the last change of each user, in version order.
type BatchChange struct {
	Event  string           `json:"event"`
	UserID string           `json:"userId"`
	Member *presence.Member `json:"member"`
}

// count returns the counts of a count or count-mode watching message.
func (m *inMsg) count() presence.RoomCount {
	n, _ := strconv.ParseInt(string(m.Online), 10, 64)
	return presence.RoomCount{RoomID: m.RoomID, Version: m.Version, Online: n, Sessions: m.Sessions}
}

// Dial opens a Conn to the first of cfg.URLs that accepts a WebSocket, and
// returns an error if none does (whatever cfg.Reconnect says). ctx bounds
// the dialing only.
func Dial(ctx context.Context, cfg ConnConfig) (*Conn, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("presence: Dial: no URLs")
	}
	cfg.URLs = append([]string(nil), cfg.URLs...)
	c := &Conn{
		cfg:     cfg,
		done:    make(chan struct{}),
		ready:   make(chan struct{}),
		pending: map[int64]*pendingCall{},
		joined:  map[string]*joinedRoom{},
		watched: map[string]string{},
		counted: map[string]string{},
		counts:  map[string]presence.RoomCount{},
		views:   map[string]*roomView{},
	}
	c.life, c.cancel = context.WithCancel(context.Background())
	var errs []error
	for i, u := range cfg.URLs {
		ws, raw, err := c.dial(ctx, u)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.install(ws, raw, i, false)
		go c.run()
		return c, nil
	}
	c.cancel()
	return nil, fmt.Errorf("presence: Dial: %w", errors.Join(errs...))
}

// dial opens one WebSocket to a node.
func (c *Conn) dial(ctx context.Context, base string) (*websocket.Conn, net.Conn, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + "/v1/ws")
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{}
	if c.cfg.Token != "" {
		q := u.Query()
		q.Set("access_token", c.cfg.Token)
		u.RawQuery = q.Encode()
		h.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	dialer := c.cfg.Dialer
	if dialer == nil {
		dialer = (&net.Dialer{}).DialContext
	}
	var (
		rawMu sync.Mutex
		raw   net.Conn
	)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer(ctx, network, addr)
		if err == nil {
			rawMu.Lock()
			raw = conn
			rawMu.Unlock()
		}
		return conn, err
	}}
	defer tr.CloseIdleConnections()
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ws, res, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if res != nil {
			return nil, nil, fmt.Errorf("%s: status %d: %w", base, res.StatusCode, err)
		}
		return nil, nil, fmt.Errorf("%s: %w", base, err)
	}
	ws.SetReadLimit(readLimit)
	rawMu.Lock()
	defer rawMu.Unlock()
	return ws, raw, nil
}

// install makes ws the Conn's socket. It reports false if the Conn is
// closing (the caller closes ws). The rooms are restored in the background;
// with none to restore the Conn is ready at once.
func (c *Conn) install(ws *websocket.Conn, raw net.Conn, idx int, reconnect bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.gen++
	c.ws, c.raw, c.urlIdx = ws, raw, idx
	if reconnect {
		c.stats.Reconnects++
	}
	if len(c.joined) == 0 && len(c.watched) == 0 && len(c.counted) == 0 && len(c.users) == 0 {
		c.isReady = true
		close(c.ready)
	} else {
		go c.restore(c.gen)
	}
	return true
}

// run reads the current socket until it ends, then reconnects (with
// Reconnect) or ends the Conn. It is the Conn's only reader.
func (c *Conn) run() {
	defer func() {
		c.cancel()
		close(c.done)
	}()
	backoff := minBackoff
	for {
		c.mu.Lock()
		ws, gen, idx := c.ws, c.gen, c.urlIdx
		c.mu.Unlock()
		start := time.Now()
		cctx, ccancel := context.WithCancel(c.life)
		go c.keepalive(cctx, ws)
		err := c.readLoop(cctx, ws)
		ccancel()
		if c.lost(gen, ws) {
			c.finish(ErrClosed)
			return
		}
		if !c.cfg.Reconnect || !transient(err) {
			c.finish(fmt.Errorf("presence: connection lost: %w", err))
			return
		}
		if time.Since(start) >= maxBackoff {
			backoff = minBackoff
		}
		for {
			if !sleep(c.life, jitter(backoff)) {
				c.finish(ErrClosed)
				return
			}
			backoff = min(2*backoff, maxBackoff)
			idx = (idx + 1) % len(c.cfg.URLs)
			ws, raw, err := c.dial(c.life, c.cfg.URLs[idx])
			if err != nil {
				continue
			}
			if !c.install(ws, raw, idx, true) {
				ws.CloseNow()
				c.finish(ErrClosed)
				return
			}
			break
		}
	}
}

// transient reports whether a socket that ended with err is worth
// reconnecting: a drop without a close frame, or a close code that means
// "try again" (restart, going away, server error, try later).
func transient(err error) bool {
	switch websocket.CloseStatus(err) {
	case -1, websocket.StatusServiceRestart, websocket.StatusGoingAway,
		websocket.StatusInternalError, websocket.StatusTryAgainLater, websocket.StatusAbnormalClosure:
		return true
	}
	return false
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// lost closes and forgets the socket of generation gen and fails its
// pending calls. It reports whether the Conn is closing.
func (c *Conn) lost(gen int64, ws *websocket.Conn) bool {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if !closing {
		// (Close is doing the close handshake; Abandon closed it already.)
		ws.CloseNow()
	}
	c.mu.Lock()
	if c.gen == gen {
		c.ws, c.raw = nil, nil
		if c.isReady {
			c.isReady = false
			c.ready = make(chan struct{})
		}
	}
	pending := c.pending
	c.pending = map[int64]*pendingCall{}
	closing = c.closing
	c.mu.Unlock()
	for _, p := range pending {
		p.ch <- nil
	}
	return closing
}

// finish records why the Conn ended (the first reason wins).
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.ended = true
	c.mu.Unlock()
}

// keepalive pings the peer; a socket whose pong does not come is closed
// (and reconnected), so a dead network is noticed even when idle.
func (c *Conn) keepalive(ctx context.Context, ws *websocket.Conn) {
	t := time.NewTicker(keepaliveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, keepaliveWait)
			err := ws.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				ws.CloseNow()
				return
			}
		}
	}
}

// readLoop reads messages until the socket ends. ctx lives as long as the
// socket: coder/websocket closes the socket when a Read context is done.
func (c *Conn) readLoop(ctx context.Context, ws *websocket.Conn) error {
	for {
		typ, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageText {
			c.handle(b)
		}
	}
}

// handle applies one server message to the Conn's state, calls OnEvent,
// then wakes the call it answers.
func (c *Conn) handle(b []byte) {
	var m inMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return // not the protocol; nothing to apply
	}
	ev := Event{Type: m.Type, RoomID: m.RoomID, Version: m.Version, Event: m.Event, Raw: b}
	if m.Member != nil {
		mem := *m.Member
		mem.Data = bytes.Clone(mem.Data)
		ev.Member = &mem
	}
	var p *pendingCall
	c.mu.Lock()
	switch m.Type {
	case "presence":
		c.stats.Events++
		if v := c.views[m.RoomID]; v != nil {
			v.event(m.Version, m.Event, m.Member)
		}
	case "batch":
		c.stats.Batches++
		ev.FromVersion, ev.Changes = m.FromVersion, m.Changes
		if v := c.views[m.RoomID]; v != nil {
			v.batch(m.FromVersion, m.Version, m.Changes)
		}
	case "sync":
		c.stats.Syncs++
		if c.uses(m.RoomID) {
			c.snapshot(m.RoomID, m.Version, m.Members)
		}
	case "user":
		p := presence.UserPresence{UserID: m.UserID, Online: string(m.Online) == "true", LastDisconnected: m.LastDisconnected, Rooms: m.Rooms}
		ev.User = &p
		if _, ok := c.users[m.UserID]; ok {
			c.users[m.UserID] = p
		}
	case "count":
		n := m.count()
		ev.Count = &n
		if _, ok := c.counted[m.RoomID]; ok {
			c.counts[m.RoomID] = n
		}
	case "watching":
		if m.Members == nil {
			n := m.count()
			ev.Count = &n
		}
	case "error":
		c.stats.Errors++
	case "left":
		if len(m.ID) == 0 {
			// The session was ended by someone else (sign-out, removal,
			// expiry): the room is not rejoined.
			c.forgetJoined(m.RoomID)
		}
	}
	if id, err := strconv.ParseInt(string(m.ID), 10, 64); err == nil {
		if p = c.pending[id]; p != nil {
			delete(c.pending, id)
			if p.hook != nil {
				p.hook(&m)
			}
		}
	}
	c.mu.Unlock()
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(ev)
	}
	if p != nil {
		p.ch <- &m
	}
}

// snapshot replaces a room's view by a snapshot (joined, watching, sync);
// the events the view holds ahead of it are kept (roomView.snapshot). c.mu
// is held.
func (c *Conn) snapshot(roomID string, version int64, members []presence.Member) {
	if v := c.views[roomID]; v != nil {
		v.snapshot(version, members)
		return
	}
	c.views[roomID] = newView(roomID, version, members)
}

// uses reports whether the Conn joined or watches a room. c.mu is held.
func (c *Conn) uses(roomID string) bool {
	_, w := c.watched[roomID]
	return c.joined[roomID] != nil || w
}

// forgetJoined drops a joined room (and its view when not watched). c.mu is held.
func (c *Conn) forgetJoined(roomID string) {
	delete(c.joined, roomID)
	if !c.uses(roomID) {
		delete(c.views, roomID)
	}
}

// forgetWatched drops a watched room (and its view when not joined). c.mu is held.
func (c *Conn) forgetWatched(roomID string) {
	delete(c.watched, roomID)
	if !c.uses(roomID) {
		delete(c.views, roomID)
	}
}

// call sends a request and waits for its reply. With gen 0 it waits until
// the Conn is ready (connected, rooms restored); otherwise it uses the
// socket of generation gen only (restoring). An error reply is an *Error.
func (c *Conn) call(ctx context.Context, gen int64, msg outMsg, hook func(*inMsg)) (*inMsg, error) {
	c.mu.Lock()
	for {
		if c.closing || c.ended {
			err := c.endErr()
			c.mu.Unlock()
			return nil, err
		}
		if gen != 0 {
			if c.gen != gen || c.ws == nil {
				c.mu.Unlock()
				return nil, ErrDisconnected
			}
			break
		}
		if c.isReady {
			break
		}
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	c.nextID++
	msg.ID = c.nextID
	p := &pendingCall{ch: make(chan *inMsg, 1), hook: hook}
	c.pending[msg.ID] = p
	ws := c.ws
	c.mu.Unlock()

	b, err := json.Marshal(msg)
	if err == nil {
		err = c.write(ws, b)
	}
	if err != nil {
		c.mu.Lock()
		delete(c.pending, msg.ID)
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	select {
	case m := <-p.ch:
		if m == nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.closing {
				return nil, ErrClosed
			}
			return nil, ErrDisconnected
		}
		if m.Type == "error" {
			return m, &Error{Code: m.Code, Message: m.Message}
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Conn) endErr() error {
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// write sends one frame; writes are serialized. Its timeout is not the
// caller's context: coder/websocket closes the socket when a write's
// context ends.
func (c *Conn) write(ws *websocket.Conn, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ctx, cancel := context.WithTimeout(c.life, writeTimeout)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, b)
}

// joinMsg is the join request for a room.
func (c *Conn) joinMsg(roomID string, j *joinedRoom) outMsg {
	inv, hide := c.cfg.Invisible, c.cfg.HideLastSeen
	if p := c.privacy.Load(); p != nil {
		inv, hide = p.invisible, p.hideLastSeen
	}
	return outMsg{Type: "join", RoomID: roomID, SessionID: j.sessionID, Interval: j.interval.Milliseconds(),
		Data: j.data, UserID: c.cfg.UserID, Name: c.cfg.Name, Image: c.cfg.Image, Invisible: inv, HideLastSeen: hide}
}

// privacyFlags are the privacy flags a Conn sends with its joins.
type privacyFlags struct{ invisible, hideLastSeen *bool }

// SetPrivacy sets the privacy flags of the Conn's member in every room it
// has joined (joining each again with the same session) and in the rooms
// it joins later: invisible (offline to everyone else; turning invisible
// is a leave to the others, visible again a join) and hideLastSeen (the
// others see lastDisconnected 0). Nil keeps a setting as it is.
func (c *Conn) SetPrivacy(ctx context.Context, invisible, hideLastSeen *bool) error {
	p := privacyFlags{c.cfg.Invisible, c.cfg.HideLastSeen}
	if old := c.privacy.Load(); old != nil {
		p = *old
	}
	if invisible != nil {
		p.invisible = invisible
	}
	if hideLastSeen != nil {
		p.hideLastSeen = hideLastSeen
	}
	c.privacy.Store(&p)
	c.mu.Lock()
	joins := make(map[string]joinedRoom, len(c.joined))
	for room, j := range c.joined {
		joins[room] = *j
	}
	c.mu.Unlock()
	for room, j := range joins {
		if _, err := c.call(ctx, 0, c.joinMsg(room, &j), c.joinHook(room, j, false)); err != nil {
			return err
		}
	}
	return nil
}

// joinHook records a successful join: the room (to rejoin it after a
// reconnect) and its view. A refused rejoin forgets the room, unless the
// refusal is transient.
func (c *Conn) joinHook(roomID string, j joinedRoom, rejoin bool) func(*inMsg) {
	return func(m *inMsg) {
		switch {
		case m.Type == "joined":
			j.sessionToken = m.SessionToken
			c.joined[roomID] = &j
			c.snapshot(roomID, m.Version, m.Members)
		case rejoin && m.Type == "error" && !transientCode(m.Code):
			c.forgetJoined(roomID)
		}
	}
}

// watchHook records a successful watch; a refused re-watch forgets it.
func (c *Conn) watchHook(roomToken string, roomID string, rewatch bool) func(*inMsg) {
	return func(m *inMsg) {
		switch {
		case m.Type == "watching":
			c.forgetCounted(m.RoomID) // a watch replaces a count-mode watch
			c.watched[m.RoomID] = roomToken
			c.snapshot(m.RoomID, m.Version, m.Members)
		case rewatch && m.Type == "error" && !transientCode(m.Code):
			c.forgetWatched(roomID)
		}
	}
}

// countHook records a successful count-mode watch, which replaces a watch
// of the room; a refused re-watch forgets it.
func (c *Conn) countHook(roomToken string, roomID string, rewatch bool) func(*inMsg) {
	return func(m *inMsg) {
		switch {
		case m.Type == "watching":
			c.forgetWatched(m.RoomID)
			c.counted[m.RoomID] = roomToken
			c.counts[m.RoomID] = m.count()
		case rewatch && m.Type == "error" && !transientCode(m.Code):
			c.forgetCounted(roomID)
		}
	}
}

// forgetCounted drops a room watched in count mode. c.mu is held.
func (c *Conn) forgetCounted(roomID string) {
	delete(c.counted, roomID)
	delete(c.counts, roomID)
}

func transientCode(code string) bool {
	return code == presence.EUNAVAILABLE || code == presence.ERATELIMITED || code == presence.EINTERNAL
}

// Join joins a room with a session (the "join" message) and returns the
// room's state. While the socket is open the node keeps the session alive;
// interval (0: the server's default, 10 s) only sets how long the session
// outlives a lost socket (interval × 2.5). data, when non-nil, replaces the
// member's data. Joining a joined room again with another sessionId
// replaces the session. A refusal is an *Error (Code "conflict",
// "invalid_argument", "limit_exceeded", ...).
func (c *Conn) Join(ctx context.Context, roomID, sessionID string, interval time.Duration, data json.RawMessage) (*Joined, error) {
	j := joinedRoom{sessionID: sessionID, interval: interval, data: bytes.Clone(data)}
	m, err := c.call(ctx, 0, c.joinMsg(roomID, &j), c.joinHook(roomID, j, false))
	if err != nil {
		return nil, err
	}
	return &Joined{RoomID: m.RoomID, RoomToken: m.RoomToken, SessionToken: m.SessionToken, Version: m.Version, Members: m.Members}, nil
}

// Leave ends the Conn's session in a room now (a "leave" event if it was
// the user's last). The room's view is dropped unless the room is watched.
func (c *Conn) Leave(ctx context.Context, roomID string) error {
	_, err := c.call(ctx, 0, outMsg{Type: "leave", RoomID: roomID}, func(m *inMsg) {
		if m.Type == "left" || m.Code == presence.ENOTFOUND {
			c.forgetJoined(roomID)
		}
	})
	return err
}

// Update replaces the Conn's member data in a joined room (nil clears it);
// a rejoin after a reconnect sends the latest data.
func (c *Conn) Update(ctx context.Context, roomID string, data json.RawMessage) error {
	if data == nil {
		data = json.RawMessage("null")
	}
	data = bytes.Clone(data)
	_, err := c.call(ctx, 0, outMsg{Type: "update", RoomID: roomID, Data: data}, func(m *inMsg) {
		if j := c.joined[roomID]; m.Type == "updated" && j != nil {
			j.data = data
		}
	})
	return err
}

// Watch follows the room named by a room token without being present in
// it, and returns its state (RoomID says which room it is).
func (c *Conn) Watch(ctx context.Context, roomToken string) (*Joined, error) {
	m, err := c.call(ctx, 0, outMsg{Type: "watch", RoomToken: roomToken}, c.watchHook(roomToken, "", false))
	if err != nil {
		return nil, err
	}
	return &Joined{RoomID: m.RoomID, RoomToken: roomToken, Version: m.Version, Members: m.Members}, nil
}

// WatchCount follows, in count mode, the room named by a room token: the
// Conn gets the room's counts (online members, live sessions) instead of
// its members and events, at most once per second while the room changes,
// the last within a second of its last change. It returns the counts now;
// later ones arrive as Events of type "count", and Count shows the last.
// Watching a room in one mode replaces a watch of it in the other. After a
// reconnect the room is watched in count mode again.
func (c *Conn) WatchCount(ctx context.Context, roomToken string) (*presence.RoomCount, error) {
	m, err := c.call(ctx, 0, outMsg{Type: "watch", RoomToken: roomToken, Mode: "count"}, c.countHook(roomToken, "", false))
	if err != nil {
		return nil, err
	}
	n := m.count()
	return &n, nil
}

// Count returns the last counts of a room watched in count mode; false if
// the room is not watched in count mode.
func (c *Conn) Count(roomID string) (presence.RoomCount, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.counts[roomID]
	return n, ok
}

// Unwatch stops watching a room, in either mode. The room's view is dropped
// unless the room is joined.
func (c *Conn) Unwatch(ctx context.Context, roomID string) error {
	_, err := c.call(ctx, 0, outMsg{Type: "unwatch", RoomID: roomID}, func(m *inMsg) {
		if m.Type == "unwatched" || m.Code == presence.ENOTFOUND {
			c.forgetWatched(roomID)
			c.forgetCounted(roomID)
		}
	})
	return err
}

// WatchUsers follows users of the Conn's org (at most 1000 per socket) and
// returns their org-wide states, one per id. From then on each change of
// a watched user's online state arrives as an Event of type "user", and
// Users shows it. After a reconnect the users are watched again.
// A long list goes in several messages (a message is at most 16 KiB).
func (c *Conn) WatchUsers(ctx context.Context, userIDs ...string) ([]presence.UserPresence, error) {
	var out []presence.UserPresence
	for _, ids := range idBatches(userIDs) {
		m, err := c.call(ctx, 0, outMsg{Type: "watchUsers", UserIDs: ids}, c.usersHook())
		if err != nil {
			return nil, err
		}
		out = append(out, m.Users...)
	}
	return out, nil
}

// idBatches splits ids into lists of about 12 KB of JSON each.
func idBatches(ids []string) [][]string {
	var out [][]string
	start, size := 0, 0
	for i, u := range ids {
		b, _ := json.Marshal(u)
		n := len(b) + 1
		if i > start && size+n > 12000 {
			out = append(out, ids[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(ids) || len(ids) == 0 {
		out = append(out, ids[start:])
	}
	return out
}

// usersHook records the states of a watchingUsers answer (c.mu held).
func (c *Conn) usersHook() func(*inMsg) {
	return func(m *inMsg) {
		if m.Type != "watchingUsers" {
			return
		}
		if c.users == nil {
			c.users = map[string]presence.UserPresence{}
		}
		for _, p := range m.Users {
			c.users[p.UserID] = p
		}
	}
}

// UnwatchUsers stops following users.
func (c *Conn) UnwatchUsers(ctx context.Context, userIDs ...string) error {
	_, err := c.call(ctx, 0, outMsg{Type: "unwatchUsers", UserIDs: userIDs}, func(m *inMsg) {
		if m.Type == "unwatchedUsers" {
			for _, u := range userIDs {
				delete(c.users, u)
			}
		}
	})
	return err
}

// Users returns the last known state of every watched user (a copy).
func (c *Conn) Users() map[string]presence.UserPresence {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]presence.UserPresence, len(c.users))
	for u, p := range c.users {
		out[u] = p
	}
	return out
}

// Ping sends a "ping" message and waits for the "pong".
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.call(ctx, 0, outMsg{Type: "ping"}, nil)
	return err
}

// restore rejoins and re-watches the Conn's rooms (and watched users) on the socket of
// generation gen, then makes the Conn ready. A transient failure (no reply,
// store unavailable) closes the socket, so the Conn reconnects again.
func (c *Conn) restore(gen int64) {
	c.mu.Lock()
	joins := map[string]joinedRoom{}
	for room, j := range c.joined {
		joins[room] = *j
	}
	watches := map[string]string{}
	for room, tok := range c.watched {
		watches[room] = tok
	}
	countWatches := map[string]string{}
	for room, tok := range c.counted {
		countWatches[room] = tok
	}
	users := make([]string, 0, len(c.users))
	for u := range c.users {
		users = append(users, u)
	}
	c.mu.Unlock()
	n := 0
	send := func(msg outMsg, hook func(*inMsg)) bool {
		if n++; n > restoreBurst && !sleep(c.life, restorePace) {
			return false
		}
		ctx, cancel := context.WithTimeout(c.life, restoreTimeout)
		defer cancel()
		_, err := c.call(ctx, gen, msg, hook)
		var e *Error
		return err == nil || errors.As(err, &e) && !transientCode(e.Code)
	}
	ok := true
	for room, j := range joins {
		if ok = send(c.joinMsg(room, &j), c.joinHook(room, j, true)); !ok {
			break
		}
	}
	for room, tok := range watches {
		if !ok {
			break
		}
		ok = send(outMsg{Type: "watch", RoomToken: tok}, c.watchHook(tok, room, true))
	}
	for room, tok := range countWatches {
		if !ok {
			break
		}
		ok = send(outMsg{Type: "watch", RoomToken: tok, Mode: "count"}, c.countHook(tok, room, true))
	}
	if ok && len(users) > 0 {
		// The answer brings every watched user's state afresh: changes
		// missed while disconnected are in it.
		for _, ids := range idBatches(users) {
			if ok = send(outMsg{Type: "watchUsers", UserIDs: ids}, c.usersHook()); !ok {
				break
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.ws == nil || c.closing || c.ended {
		return
	}
	if !ok {
		go c.ws.CloseNow() // reconnect and try again
		return
	}
	c.isReady = true
	close(c.ready)
}

// View returns the Conn's current picture of a joined or watched room: the
// last snapshot (joined, watching, sync) with every later event applied, in
// the server's order (online members in the order they came online, then
// offline ones, most recently disconnected first). Events are applied in
// version order only: one ahead of the view waits for the missing ones or
// the next snapshot (package doc: Views). A member's Sessions is as of its
// last event (a second tab sends none). It returns a copy, or nil if the
// Conn neither joined nor watches the room.
// While the Conn reconnects it is the last known state.
func (c *Conn) View(roomID string) *presence.RoomList {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.views[roomID]; v != nil {
		return v.list()
	}
	return nil
}

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Connected = c.isReady
	if c.ws != nil {
		s.URL = c.cfg.URLs[c.urlIdx]
	}
	return s
}

// Done is closed when the Conn has ended: closed, abandoned, or its socket
// lost without Reconnect (or with a close code that is not transient).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the Conn ended: ErrClosed after Close or Abandon, else the
// error that ended the socket (websocket.CloseStatus reads its close code).
// Nil while the Conn runs.
func (c *Conn) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// DropConnection closes the current TCP connection without a close frame,
// as a network failure would (a test hook): the server keeps the sessions
// until their deadline; with Reconnect the Conn reconnects and resumes them.
func (c *Conn) DropConnection() {
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
}

// Close closes the socket with a close frame (1000), which ends the Conn's
// sessions on the server at once, and stops the Conn for good. If no socket
// is open (reconnecting, or the Conn ended on its own) or the close
// handshake fails, the sessions are ended with POST /v1/disconnect instead;
// the error says if that failed. Calling it again does nothing.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	ws, ready := c.ws, c.isReady && !c.ended
	var tokens []string
	for _, j := range c.joined {
		if j.sessionToken != "" {
			tokens = append(tokens, j.sessionToken)
		}
	}
	urls := append(c.cfg.URLs[c.urlIdx:len(c.cfg.URLs):len(c.cfg.URLs)], c.cfg.URLs[:c.urlIdx]...)
	c.mu.Unlock()
	closed := false
	if ws != nil {
		closed = ws.Close(websocket.StatusNormalClosure, "") == nil && ready
	}
	c.cancel()
	<-c.done
	if closed || len(tokens) == 0 {
		return nil
	}
	return c.disconnect(urls, tokens)
}

// disconnect ends sessions over HTTP, trying each node in turn.
func (c *Conn) disconnect(urls, tokens []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	if c.cfg.Dialer != nil {
		hc.Transport = &http.Transport{DialContext: c.cfg.Dialer}
	}
	var errs []error
	for _, tok := range tokens {
		var err error
		for _, u := range urls {
			cl := &Client{BaseURL: u, HTTP: hc}
			if err = cl.Disconnect(ctx, tok); err == nil {
				break
			}
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("presence: Close: ending the sessions: %w", err)
	}
	return nil
}

// Abandon stops the Conn without a close frame and without reconnecting,
// like a client that vanished: the server keeps its sessions until their
// deadline (interval × 2.5), then ends them.
func (c *Conn) Abandon() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.closing = true
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.CloseNow()
	}
	c.cancel()
	<-c.done
}
