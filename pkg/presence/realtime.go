package presence

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// RealtimeConfig configures a Realtime. Zero values mean the defaults.
type RealtimeConfig struct {
	// Subscriber follows the rooms the node's connections use. Its events
	// must reach the Realtime (it is an EventHandler).
	Subscriber Subscriber
	// TimeoutFactor, Node and Lease configure the node's Keeper (see
	// KeeperConfig).
	TimeoutFactor float64
	Node          string
	Lease         time.Duration
	// MaxRooms is how many rooms one connection may join or watch. Zero
	// means 100.
	MaxRooms int
	// RoomFrames is how many frames (events, batches, syncs) a connection
	// gets per room in any one-second window; above it the room's events
	// are coalesced into batches (storms). Zero means 20.
	RoomFrames int
	Logger     *slog.Logger
}

// Realtime is the transport-independent real-time core of a node: its
// connections join rooms (sessions held by the node's lease, see Keeper),
// watch rooms by room token, and get every change of those rooms in
// version order.
//
// The node follows a room (Subscriber) while any of its connections uses
// it, and hands each event to every connection of the room as one shared
// Update. When it misses events (a version gap, a lost subscription, a
// store that lost its data, a removed room) it sends the room's
// connections a sync instead, holding later events back until the sync is
// out. A connection's own ordering (each version at most once, in order,
// a sync on a gap) is its Sequencer's.
type Realtime struct {
	svc    *Service
	sub    Subscriber
	keeper *Keeper
	cfg    RealtimeConfig
	// budget is how many frames a room sends its connections in a window
	// (storm.go).
	budget int

	delivered, synced atomic.Int64
	batched           atomic.Int64
	// lastRefresh (unix ns) debounces keeper refreshes after reconnects.
	lastRefresh atomic.Int64

	mu    sync.Mutex
	rooms map[RoomRef]*rtRoom
	users map[userKey]*rtUser // users watched by the node's connections

	resubMu sync.Mutex
	resub   map[userKey]bool // users resubscribed, to read again (OnUserResubscribe)
}

type rtRoom struct {
	follow
	last  int64 // last version delivered
	known bool  // last is meaningful
	// conns maps each connection of the room to whether it follows the
	// room only through a room token: those stop at the room's removal.
	conns   map[*Conn]bool
	syncing bool
	pending []Event
	// want is the version the sync under way must reach at least: the
	// event that asked for it (a lagging replica is read past).
	want  int64
	count roomCounts
	out   roomOut
}

// roomCounts are a room's count watchers (WatchCount): they get the room's
// counts, read at most once per second while the room changes and shared
// by all of them, instead of its events.
type roomCounts struct {
	conns    map[*Conn]struct{}
	pending  bool // a refresh is scheduled
	running  bool // a refresh reads the counts
	again    bool // the room changed while the counts were read
	lastRead time.Time
	last     int64 // version last pushed
	// force pushes the next read even at the version last pushed: the
	// subscription was lost (and the store may have lost its data).
	force bool
}

// NewRealtime returns the real-time core of a node over svc's store. It
// starts the node's Keeper; Close stops it.
func NewRealtime(svc *Service, cfg RealtimeConfig) *Realtime {
	if cfg.MaxRooms == 0 {
		cfg.MaxRooms = 100
	}
	if cfg.RoomFrames <= 0 {
		cfg.RoomFrames = 20
	}
	// The room's shared frames keep one of a connection's frames free for
	// its own snapshot (joined, watching) or the sync that replaces it.
	budget := max(1, cfg.RoomFrames-1)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rt := &Realtime{svc: svc, sub: cfg.Subscriber, cfg: cfg, budget: budget, rooms: map[RoomRef]*rtRoom{}, users: map[userKey]*rtUser{}}
	rt.keeper = NewKeeper(svc.Store(), KeeperConfig{
		TimeoutFactor: cfg.TimeoutFactor,
		Node:          cfg.Node,
		Lease:         cfg.Lease,
		Logger:        cfg.Logger,
		OnEnded:       func(o *Owned) { o.Owner.(*Conn).sessionEnded(o) },
		// Users whose sessions Redis lost went offline without an event:
		// the watched users are read again once the node's own sessions
		// are back.
		OnLostData: func() { time.AfterFunc(2*time.Second, rt.refreshAllUsers) },
	})
	rt.keeper.Open()
	return rt
}

// Keeper returns the node's session keeper.
func (rt *Realtime) Keeper() *Keeper { return rt.keeper }

// Delivered is the number of events handed to connections so far; Synced
// the number of syncs.
func (rt *Realtime) Delivered() int64 { return rt.delivered.Load() }

// Synced is the number of syncs handed to connections so far.
func (rt *Realtime) Synced() int64 { return rt.synced.Load() }

// Batched is the number of batches (coalesced events, storms) handed to
// connections so far; Delivered counts them too.
func (rt *Realtime) Batched() int64 { return rt.batched.Load() }

// ReleaseAll hands every held session over to its ordinary deadline (a node
// shutting down: its clients resume the sessions on other nodes) and stops
// the keeper.
func (rt *Realtime) ReleaseAll(ctx context.Context) {
	rt.keeper.ReleaseAll(ctx)
	rt.keeper.Close()
}

// Close stops the keeper. Held sessions end when the node's lease lapses,
// unless released first (ReleaseAll). Idempotent.
func (rt *Realtime) Close() { rt.keeper.Close() }

// OnEvent takes an event of a room the node follows (EventHandler).
func (rt *Realtime) OnEvent(ev Event) {
	rt.keeper.Observe(ev)
	if ev.Kind == EventEnded {
		return // for the keeper only: nothing visible changed
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	r := rt.rooms[ev.Room]
	if r == nil {
		return
	}
	if len(r.count.conns) > 0 {
		if ev.Kind == EventReset {
			rt.endTokenCountsLocked(r, ev)
		} else {
			rt.refreshCountLocked(ev.Room, r)
		}
	}
	if r.syncing {
		r.pending = append(r.pending, ev)
		return
	}
	rt.deliverLocked(r, ev)
}

// OnResubscribe takes a room whose subscription was restored after a lost
// connection (EventHandler): its connections get a sync, and the node's
// sessions are checked at once (the store may have restarted without its
// data).
func (rt *Realtime) OnResubscribe(room RoomRef) {
	// A reconnect restores many rooms at once: refresh the sessions once.
	now := time.Now().UnixNano()
	if last := rt.lastRefresh.Load(); now-last > int64(time.Second) && rt.lastRefresh.CompareAndSwap(last, now) {
		rt.keeper.RefreshAll()
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	r := rt.rooms[room]
	if r == nil {
		return
	}
	if len(r.count.conns) > 0 {
		r.count.force = true
		rt.refreshCountLocked(room, r)
	}
	if !r.syncing {
		rt.startSyncLocked(room, r, 0)
	}
}

// Rooms returns the rooms the node follows.
func (rt *Realtime) Rooms() []RoomRef {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := make([]RoomRef, 0, len(rt.rooms))
	for room := range rt.rooms {
		out = append(out, room)
	}
	return out
}

// CatchUp tells the core that room is at version (read on the primary):
// if the node delivered less, its connections get a sync at that version at
// least. The node calls it while its region's replica lags, since the
// events come through the replica, as late as it is.
func (rt *Realtime) CatchUp(room RoomRef, version int64) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	r := rt.rooms[room]
	if r == nil || r.closing != nil || r.syncing || !r.known || version <= r.last {
		return
	}
	rt.startSyncLocked(room, r, version)
}

// acquire makes sure the node follows room; release undoes it.
func (rt *Realtime) acquire(ctx context.Context, room RoomRef) error {
	return acquireFollow(ctx, &rt.mu, rt.rooms, room,
		func() *rtRoom {
			return &rtRoom{follow: newFollow(), conns: map[*Conn]bool{}, count: roomCounts{conns: map[*Conn]struct{}{}}}
		},
		func(ctx context.Context) error { return rt.sub.Subscribe(ctx, room) },
		func() { rt.release(room) })
}

func (rt *Realtime) release(room RoomRef) {
	releaseFollow(&rt.mu, rt.rooms, room, func(ctx context.Context) error {
		return rt.sub.Unsubscribe(ctx, room)
	}, rt.cfg.Logger)
}

// follow is the node's subscription to one channel (a room's, a user's)
// that its connections use, counted: the node subscribes once, whatever
// the number of connections.
type follow struct {
	refs  int
	ready chan struct{} // closed when the first Subscribe returned
	err   error
	// closing is set while the last user's Unsubscribe runs; the entry
	// stays until it returned, so that a new user waits for it and
	// subscribes afresh (its Subscribe is never undone by a late
	// Unsubscribe).
	closing chan struct{}
}

func newFollow() follow { return follow{ready: make(chan struct{})} }

func (f *follow) followed() *follow { return f }

type followed interface{ followed() *follow }

// acquireFollow counts one more user of m[k], subscribing when it is the
// first; release undoes it (on failure too). mu guards m.
func acquireFollow[K comparable, V followed](ctx context.Context, mu *sync.Mutex, m map[K]V, k K,
	create func() V, subscribe func(context.Context) error, release func()) error {
	mu.Lock()
	r, ok := m[k]
	for ok && r.followed().closing != nil {
		closing := r.followed().closing
		mu.Unlock()
		select {
		case <-closing:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		r, ok = m[k]
	}
	if ok {
		f := r.followed()
		f.refs++
		mu.Unlock()
		select {
		case <-f.ready:
		case <-ctx.Done():
			release()
			return ctx.Err()
		}
		if f.err != nil {
			release()
			return f.err
		}
		return nil
	}
	r = create()
	f := r.followed()
	f.refs = 1
	m[k] = r
	mu.Unlock()
	err := subscribe(ctx)
	mu.Lock()
	f.err = err
	close(f.ready)
	mu.Unlock()
	if err != nil {
		release()
		return err
	}
	return nil
}

// releaseFollow counts one user fewer of m[k], unsubscribing after the last.
func releaseFollow[K comparable, V followed](mu *sync.Mutex, m map[K]V, k K, unsubscribe func(context.Context) error, log *slog.Logger) {
	mu.Lock()
	r, ok := m[k]
	if !ok {
		mu.Unlock()
		return
	}
	f := r.followed()
	f.refs--
	if f.refs > 0 {
		mu.Unlock()
		return
	}
	if f.err != nil {
		delete(m, k) // never subscribed
		mu.Unlock()
		return
	}
	f.closing = make(chan struct{})
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := unsubscribe(ctx); err != nil {
		log.Debug("unsubscribe", "err", err)
	}
	cancel()
	mu.Lock()
	delete(m, k)
	close(f.closing)
	mu.Unlock()
}

// attach hands the room's events to c; byToken marks a connection that
// follows the room only through a room token.
func (rt *Realtime) attach(room RoomRef, c *Conn, byToken bool) {
	rt.mu.Lock()
	if r := rt.rooms[room]; r != nil {
		if byToken && c.isFrozen(room) {
			delete(r.conns, c) // the room was removed meanwhile
		} else {
			r.conns[c] = byToken
		}
	}
	rt.mu.Unlock()
}

func (rt *Realtime) detach(room RoomRef, c *Conn) {
	rt.mu.Lock()
	if r := rt.rooms[room]; r != nil {
		delete(r.conns, c)
	}
	rt.mu.Unlock()
}

// attachCount hands the room's counts to c instead of its events, unless
// the room was removed meanwhile (the token no longer grants it).
func (rt *Realtime) attachCount(room RoomRef, c *Conn) {
	rt.mu.Lock()
	if r := rt.rooms[room]; r != nil && !c.isCountEnded(room) {
		r.count.conns[c] = struct{}{}
	}
	rt.mu.Unlock()
}

func (rt *Realtime) detachCount(room RoomRef, c *Conn) {
	rt.mu.Lock()
	if r := rt.rooms[room]; r != nil {
		delete(r.count.conns, c)
	}
	rt.mu.Unlock()
}

// refreshCountLocked makes sure the room's count watchers get its counts
// read after now: a read is scheduled at most once per second (one read
// for all of the node's count watchers of the room).
func (rt *Realtime) refreshCountLocked(room RoomRef, r *rtRoom) {
	switch {
	case r.count.pending:
		return // the scheduled read comes after this change
	case r.count.running:
		r.count.again = true // the read under way may have missed it
		return
	}
	r.count.pending = true
	delay := max(0, time.Until(r.count.lastRead.Add(time.Second)))
	time.AfterFunc(delay, func() { rt.refreshCount(room, r) })
}

// refreshCount reads a room's counts once and pushes them, as one shared
// Update, to its count watchers if they are newer than the last pushed.
func (rt *Realtime) refreshCount(room RoomRef, r *rtRoom) {
	rt.mu.Lock()
	r.count.pending = false
	if rt.rooms[room] != r || r.closing != nil || len(r.count.conns) == 0 {
		rt.mu.Unlock()
		return
	}
	r.count.running, r.count.again = true, false
	r.count.lastRead = time.Now()
	rt.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	n, err := rt.svc.Store().Count(ctx, room)
	cancel()

	rt.mu.Lock()
	defer rt.mu.Unlock()
	r.count.running = false
	if rt.rooms[room] != r || r.closing != nil {
		return
	}
	if err != nil {
		rt.cfg.Logger.Debug("count failed", "room", room.RoomID, "err", err)
		r.count.again = true // retried a second later
	} else if n.Version != r.count.last || r.count.force {
		// An older version than the last pushed: the store lost its data
		// (one node's reads of a room are one at a time).
		u := &Update{Room: room, Version: n.Version, Count: n, CountReset: r.count.force || n.Version < r.count.last}
		r.count.last, r.count.force = n.Version, false
		for c := range r.count.conns {
			c.sink.Push(u)
		}
	}
	if r.count.again && len(r.count.conns) > 0 {
		r.count.again = false
		rt.refreshCountLocked(room, r)
	}
}

// endTokenCountsLocked handles a room's removal for its count watchers:
// their room tokens no longer grant the room, so each gets the room as it
// was removed (empty, at the removal's version) and nothing after it.
func (rt *Realtime) endTokenCountsLocked(r *rtRoom, ev Event) {
	u := &Update{Room: ev.Room, Version: ev.Version, Count: &RoomCount{RoomID: ev.Room.RoomID, Version: ev.Version}, CountReset: true}
	for c := range r.count.conns {
		c.setCountEnded(ev.Room, true)
		c.sink.Push(u)
		delete(r.count.conns, c)
	}
}

func (rt *Realtime) deliverLocked(r *rtRoom, ev Event) {
	switch {
	case ev.Kind == EventReset:
		rt.endTokenWatchesLocked(r, ev)
		rt.startSyncLocked(ev.Room, r, ev.Version)
		return
	case r.known && ev.Version != r.last+1:
		// A gap (missed events), or a regression: the store lost its data
		// (an event at the version delivered last is one too: Redis
		// publishes each version once, so it is another change).
		rt.startSyncLocked(ev.Room, r, ev.Version)
		return
	}
	r.last, r.known = ev.Version, true
	rt.sendEventLocked(r, ev)
}

// endTokenWatchesLocked handles a room's removal for the connections that
// watch it by a room token: that token no longer grants the room, so each
// gets the room as it was removed (empty, at the removal's version) and
// nothing after it.
func (rt *Realtime) endTokenWatchesLocked(r *rtRoom, ev Event) {
	var u *Update
	for c, byToken := range r.conns {
		if !byToken {
			continue
		}
		if u == nil {
			u = &Update{Room: ev.Room, Version: ev.Version, Sync: &RoomList{RoomID: ev.Room.RoomID, Version: ev.Version, Members: []Member{}}}
		}
		c.setFrozen(ev.Room, true)
		c.sink.Push(u)
		delete(r.conns, c)
	}
}

func (rt *Realtime) startSyncLocked(room RoomRef, r *rtRoom, want int64) {
	r.out.held = nil // the sync has them
	if len(r.conns) == 0 {
		// Nobody gets the room's events (its count watchers read counts):
		// no list to read. A connection that follows it later reads its
		// own snapshot, and the next event is taken as it comes.
		r.known, r.syncing, r.pending = false, false, nil
		return
	}
	r.syncing = true
	r.pending = nil
	r.want = want
	go rt.sync(room, r)
}

// sync reads the room and hands it to the room's connections, then the
// events that came meanwhile. It retries while the store is unreachable,
// for as long as the room is used.
func (rt *Realtime) sync(room RoomRef, r *rtRoom) {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		rt.mu.Lock()
		want := r.want
		rt.mu.Unlock()
		l, err := rt.svc.Snapshot(ctx, room, "", want)
		cancel()
		rt.mu.Lock()
		if rt.rooms[room] != r || r.closing != nil {
			rt.mu.Unlock()
			return // nobody uses the room any more
		}
		if err != nil {
			rt.mu.Unlock()
			rt.cfg.Logger.Debug("sync failed", "room", room.RoomID, "err", err)
			time.Sleep(backoff)
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		rt.sendSyncLocked(room, r, l)
		r.last, r.known, r.syncing = l.Version, true, false
		pending := r.pending
		r.pending = nil
		for _, ev := range pending {
			if r.syncing {
				r.pending = append(r.pending, ev)
				continue
			}
			if ev.Version > r.last || ev.Kind == EventReset {
				rt.deliverLocked(r, ev)
			}
		}
		rt.mu.Unlock()
		return
	}
}

// Update is what a connection gets from the core: an event (Event set) or
// a room's whole state (Sync set). One Update is shared by every connection
// of the room, so that its encoding is made once (Encoded).
type Update struct {
	Room    RoomRef
	Version int64
	Event   *Event
	Sync    *RoomList
	// User, when set, is a watched user's org-wide change (Room, Version,
	// Event and Sync are then unset).
	User *UserPresence
	// Count, when set, is the room's counts for its count watchers (Event
	// and Sync are then unset). CountReset marks counts to show even if
	// their version is not newer than the connection's (the store lost its
	// data, the room was removed).
	Count      *RoomCount
	CountReset bool
	// Batch, when set, is a room's events of versions FromVersion..Version
	// coalesced (storms): the last change of each user that changed.
	Batch *Batch

	once    sync.Once
	encoded []byte
}

// Encoded returns encode(u), computed once for all the connections that
// share u.
func (u *Update) Encoded(encode func(*Update) []byte) []byte {
	u.once.Do(func() { u.encoded = encode(u) })
	return u.encoded
}

// Sink is a connection's transport, as the core sees it.
type Sink interface {
	// Push hands the connection an event or a sync. It must not block: a
	// connection that cannot keep up drops what is queued and asks for a
	// sync of its rooms (Conn.Resync) once it caught up.
	Push(u *Update)
	// SessionEnded tells the connection that its session in room was ended
	// by someone else (sign-out, removal, expiry): the client learns it
	// left the room. It must not block.
	SessionEnded(room RoomRef)
}

// Conn is one connection's use of the core: the rooms it joined (one
// session each, held by the node) and the rooms it watches by room token.
// Its methods other than Resync are called by the connection's reader, one
// at a time.
type Conn struct {
	rt   *Realtime
	sink Sink

	// Used by the reader only.
	joined map[RoomRef]*Owned
	// watched holds the rooms watched with a room token: true while the
	// token's epoch is the room's, false once the room was removed (the
	// token sees nothing of the room's new life). counted holds the rooms
	// watched in count mode (WatchCount), likewise; a room is in one of
	// the two at most.
	watched map[RoomRef]bool
	counted map[RoomRef]bool

	mu    sync.Mutex
	ended []*Owned // sessions ended by someone else, to clean up
	// frozen are the rooms the connection follows only through the token of
	// a removed room: no event, sync or snapshot of the room's new life.
	frozen map[RoomRef]bool
	// countEnded are the rooms watched in count mode through the token of
	// a removed room: no counts of the room's new life.
	countEnded map[RoomRef]bool
	// org is the connection's org, once it watched users; users are the
	// users it watches, each with the online state last sent to the
	// client (sentOnline, sentOffline or neither; see PassUser); their
	// keys are the node's one copy of each id (rtUser.id). usersPending
	// are the users whose WatchUsers answer is not out yet (true: a change
	// arrived meanwhile, see RecheckUsers).
	org          string
	users        map[string]uint8
	usersPending map[string]bool
}

// Connect returns the core's side of a new connection.
func (rt *Realtime) Connect(sink Sink) *Conn {
	return &Conn{rt: rt, sink: sink}
}

// Joined is the answer to a join: the session's tokens and the room's state
// (read after the connection follows the room, so no change falls between).
type Joined struct {
	*HeartbeatOutput
	Snapshot *RoomList
}

// Join creates (or takes over) the connection's session in a room, held by
// the node's lease while the connection is open. A connection has one
// session per room: joining again with another sessionId ends the old one.
func (c *Conn) Join(ctx context.Context, in HeartbeatInput) (*Joined, error) {
	c.cleanupEnded()
	rt := c.rt
	room, err := rt.svc.Room(ctx, in.RoomID)
	if err != nil {
		return nil, err
	}
	used := c.uses(room)
	if !used && c.roomCount() >= rt.cfg.MaxRooms {
		return nil, Errorf(ELIMIT, "at most %d rooms per socket", rt.cfg.MaxRooms)
	}
	if !used {
		if err := rt.acquire(ctx, room); err != nil {
			return nil, err
		}
	}
	var out *HeartbeatOutput
	gen, err := rt.keeper.Hold(ctx, room, in.Interval)
	if err == nil {
		in.HeldBy = gen
		if out, err = rt.svc.Heartbeat(ctx, in); err != nil {
			rt.keeper.Unhold(room)
		}
	}
	if err != nil {
		if !used {
			rt.release(room)
		}
		return nil, err
	}
	o := &Owned{Room: room, UserID: out.UserID, SessionID: in.SessionID, Epoch: out.SessionEpoch,
		Interval: time.Duration(out.Interval) * time.Millisecond, Owner: c,
		Invisible: in.Invisible, HideLastSeen: in.HideLastSeen}
	if prev := c.joined[room]; prev != nil {
		if prev.SessionID != in.SessionID {
			rt.endHeld(ctx, prev) // the new session replaces the old
		} else {
			rt.keeper.Remove(prev) // the same session, held anew below
		}
		// A join that leaves a flag out keeps the member's setting.
		o.Invisible = cmp.Or(o.Invisible, prev.Invisible)
		o.HideLastSeen = cmp.Or(o.HideLastSeen, prev.HideLastSeen)
	}
	if c.joined == nil {
		c.joined = map[RoomRef]*Owned{}
	}
	c.joined[room] = o
	rt.keeper.Add(o, gen, out.Version)
	// Follow the room before reading its snapshot, so that no change falls
	// between the two (the Sequencer drops what the snapshot already has,
	// and asks for a sync if something newer came first).
	rt.attach(room, c, false)
	// At least the join's own version: the joiner is in its snapshot, even
	// read from a replica that lags.
	l, err := rt.svc.Snapshot(ctx, room, "", out.Version)
	if err != nil {
		// The client is told the join failed: nothing of it may stay.
		delete(c.joined, room)
		c.dropRoom(room)
		rt.endHeld(ctx, o)
		return nil, err
	}
	return &Joined{HeartbeatOutput: out, Snapshot: l}, nil
}

// Left is the answer to a leave or an unwatch.
type Left struct {
	Room RoomRef
	// Dropped is set when the connection no longer uses the room at all:
	// its Sequencer forgets the room.
	Dropped bool
}

// Leave ends the connection's session in a room. The room is left even
// when ending the session failed (it is then handed to its deadline): the
// error is reported with a valid Left.
func (c *Conn) Leave(ctx context.Context, roomID string) (*Left, error) {
	c.cleanupEnded()
	room, err := c.rt.svc.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	o := c.joined[room]
	if o == nil {
		return nil, Errorf(ENOTFOUND, "not joined to room %q", roomID)
	}
	delete(c.joined, room)
	err = c.rt.endHeld(ctx, o)
	return c.dropRoom(room), err
}

// Update replaces the data of the connection's member in a joined room.
func (c *Conn) Update(ctx context.Context, roomID string, data json.RawMessage) error {
	c.cleanupEnded()
	room, err := c.rt.svc.Room(ctx, roomID)
	if err != nil {
		return err
	}
	o := c.joined[room]
	if o == nil {
		return Errorf(ENOTFOUND, "not joined to room %q", roomID)
	}
	if data == nil {
		return Errorf(EINVALID, "data is required")
	}
	return c.rt.svc.SetData(ctx, roomID, o.UserID, data)
}

// Watch follows the room a room token names and returns its state. The
// token of a removed room watches an empty room that never changes: nothing
// of the room's new life reaches it (as an HTTP list with that token).
func (c *Conn) Watch(ctx context.Context, roomToken string) (RoomRef, *RoomList, error) {
	c.cleanupEnded()
	rt := c.rt
	room, epoch, err := rt.svc.WatchRoom(ctx, roomToken)
	if err != nil {
		return RoomRef{}, nil, err
	}
	used := c.uses(room)
	if !used {
		if c.roomCount() >= rt.cfg.MaxRooms {
			return room, nil, Errorf(ELIMIT, "at most %d rooms per socket", rt.cfg.MaxRooms)
		}
		if err := rt.acquire(ctx, room); err != nil {
			return room, nil, err
		}
	}
	l, err := rt.svc.Snapshot(ctx, room, epoch, 0)
	if err != nil {
		if !used {
			rt.release(room)
		}
		return room, nil, err
	}
	if c.watched == nil {
		c.watched = map[RoomRef]bool{}
	}
	c.watched[room] = !l.Stale
	delete(c.counted, room)  // watching in members mode replaces count mode
	c.setFrozen(room, false) // a live token may follow the room again
	c.reattach(room)
	return room, l, nil
}

// WatchCount follows, in count mode, the room a room token names: the
// connection gets the room's counts (at most once per second while the
// room changes) instead of its events. It returns the room, its counts
// now, and whether the connection also joined the room (its events go on). The
// token of a removed room counts an empty room that never changes.
// Watching in count mode a room watched in members mode replaces that
// watch.
func (c *Conn) WatchCount(ctx context.Context, roomToken string) (RoomRef, *RoomCount, bool, error) {
	c.cleanupEnded()
	rt := c.rt
	room, epoch, err := rt.svc.WatchRoom(ctx, roomToken)
	if err != nil {
		return room, nil, false, err
	}
	used := c.uses(room)
	if !used {
		if c.roomCount() >= rt.cfg.MaxRooms {
			return room, nil, false, Errorf(ELIMIT, "at most %d rooms per socket", rt.cfg.MaxRooms)
		}
		if err := rt.acquire(ctx, room); err != nil {
			return room, nil, false, err
		}
	}
	// Follow the counts before reading them, so that no change falls
	// between the two.
	c.setCountEnded(room, false)
	rt.attachCount(room, c)
	n, live, err := rt.svc.RoomCount(ctx, room, epoch)
	if err != nil {
		if !used {
			rt.detachCount(room, c)
			rt.release(room)
		} else if !c.counted[room] {
			rt.detachCount(room, c)
		}
		return room, nil, false, err
	}
	if c.counted == nil {
		c.counted = map[RoomRef]bool{}
	}
	c.counted[room] = live
	delete(c.watched, room) // count mode replaces a watch in members mode
	if !live {
		c.setCountEnded(room, true)
	}
	c.reattach(room)
	return room, n, c.joined[room] != nil, nil
}

// Unwatch stops watching a room by id, in either mode.
func (c *Conn) Unwatch(roomID string) (*Left, error) {
	c.cleanupEnded()
	for room := range c.watched {
		if room.RoomID == roomID {
			delete(c.watched, room)
			return c.dropRoom(room), nil
		}
	}
	for room := range c.counted {
		if room.RoomID == roomID {
			delete(c.counted, room)
			return c.dropRoom(room), nil
		}
	}
	return nil, Errorf(ENOTFOUND, "not watching room %q", roomID)
}

// Recount reads the counts of a room the connection watches in count mode,
// after the connection dropped what was queued. It reports false when
// there is nothing to send (the room was removed, or the store is away).
// Any goroutine.
func (c *Conn) Recount(ctx context.Context, room RoomRef) (*RoomCount, bool) {
	if c.isCountEnded(room) {
		return nil, false
	}
	n, err := c.rt.svc.Store().Count(ctx, room)
	return n, err == nil
}

// Resync reads the state of a room the connection follows, at least at
// version want, for its Sequencer (a gap) or after the connection dropped
// what was queued. It reports false when there is nothing to send: the
// room is followed only through a removed room's token, or the store is
// away (the core then syncs every connection of the room when it is back).
// Any goroutine.
func (c *Conn) Resync(ctx context.Context, room RoomRef, want int64) (*RoomList, bool) {
	if c.isFrozen(room) {
		return nil, false
	}
	l, err := c.rt.svc.Snapshot(ctx, room, "", want)
	if err != nil {
		return nil, false
	}
	c.rt.synced.Add(1)
	return l, true
}

// Close ends the connection. With end (the client closed it) its sessions
// end now; otherwise (a lost connection, a node shutting down) they are
// handed to their ordinary deadline, so that the client can resume them,
// on any node, without a leave and a join.
func (c *Conn) Close(end bool) {
	c.cleanupEnded()
	rt := c.rt
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	for room, o := range c.joined {
		if end {
			if err := rt.endHeld(ctx, o); err != nil {
				rt.cfg.Logger.Warn("end session on close: left to its deadline", "room", room.RoomID, "err", err)
			}
		} else {
			rt.keeper.Release(ctx, o)
		}
	}
	cancel()
	for room := range c.joined {
		rt.detach(room, c)
		rt.release(room)
	}
	for room := range c.watched {
		if c.joined[room] == nil {
			rt.detach(room, c)
			rt.release(room)
		}
	}
	for room := range c.counted {
		rt.detachCount(room, c)
		if c.joined[room] == nil {
			rt.release(room)
		}
	}
	c.UnwatchUsers(c.WatchedUsers())
}

// endHeld ends a session the node holds for a connection (a leave, a close,
// a replaced session). If the store does not answer, the session is handed
// to its ordinary deadline instead (the keeper retries that until the store
// answers): never is it left held by a node that let it go, which would
// keep it online for good.
func (rt *Realtime) endHeld(ctx context.Context, o *Owned) error {
	o.ending.Store(true) // its own end is not news to the keeper
	if err := rt.svc.EndSession(ctx, o.Room, o.SessionID, o.Epoch); err != nil {
		rt.keeper.Release(ctx, o)
		return err
	}
	rt.keeper.Remove(o)
	return nil
}

func (c *Conn) uses(room RoomRef) bool {
	_, watched := c.watched[room]
	_, counted := c.counted[room]
	return c.joined[room] != nil || watched || counted
}

func (c *Conn) roomCount() int {
	n := len(c.joined)
	for r := range c.watched {
		if c.joined[r] == nil {
			n++
		}
	}
	for r := range c.counted {
		if c.joined[r] == nil {
			n++
		}
	}
	return n
}

// dropRoom stops the connection's use of a room when neither joined nor
// watched, or follows it the way that remains.
func (c *Conn) dropRoom(room RoomRef) *Left {
	if c.uses(room) {
		c.reattach(room)
		return &Left{Room: room}
	}
	c.rt.detach(room, c)
	c.rt.detachCount(room, c)
	c.rt.release(room)
	c.setFrozen(room, false)
	c.setCountEnded(room, false)
	return &Left{Room: room, Dropped: true}
}

// reattach tells the core how the connection follows a room it still uses:
// joined (by its identity), watching by a live room token (which a removal
// of the room ends), or only holding the token of a removed room (nothing).
func (c *Conn) reattach(room RoomRef) {
	switch live, watched := c.watched[room]; {
	case c.joined[room] != nil:
		c.setFrozen(room, false)
		c.rt.attach(room, c, false)
	case watched && live:
		c.rt.attach(room, c, true)
	default:
		c.setFrozen(room, true)
		c.rt.detach(room, c)
	}
	if c.counted[room] {
		c.rt.attachCount(room, c)
	} else {
		c.rt.detachCount(room, c)
	}
}

func (c *Conn) setFrozen(room RoomRef, frozen bool) { c.setFlag(&c.frozen, room, frozen) }

func (c *Conn) isFrozen(room RoomRef) bool { return c.flag(&c.frozen, room) }

func (c *Conn) setCountEnded(room RoomRef, ended bool) { c.setFlag(&c.countEnded, room, ended) }

func (c *Conn) isCountEnded(room RoomRef) bool { return c.flag(&c.countEnded, room) }

// setFlag sets or clears room in one of the connection's room sets that
// c.mu guards (frozen, countEnded).
func (c *Conn) setFlag(set *map[RoomRef]bool, room RoomRef, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !on {
		delete(*set, room)
		return
	}
	if *set == nil {
		*set = map[RoomRef]bool{}
	}
	(*set)[room] = true
}

func (c *Conn) flag(set *map[RoomRef]bool, room RoomRef) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (*set)[room]
}

// sessionEnded is called by the keeper when one of the connection's
// sessions was ended by someone else. The reader cleans up at its next
// turn; the client is told now.
func (c *Conn) sessionEnded(o *Owned) {
	c.mu.Lock()
	c.ended = append(c.ended, o)
	c.mu.Unlock()
	c.sink.SessionEnded(o.Room)
}

func (c *Conn) cleanupEnded() {
	c.mu.Lock()
	ended := c.ended
	c.ended = nil
	c.mu.Unlock()
	for _, o := range ended {
		if c.joined[o.Room] == o {
			delete(c.joined, o.Room)
			c.dropRoom(o.Room)
		}
	}
}

// Sequencer keeps, for one connection, the version of each room its client
// has, so that each version reaches the client at most once and in order.
// A snapshot (joined, watching) or a sync sets the version; an event is
// written only if it is the next one; an event ahead of it means events
// were missed, and the connection sends a sync instead. Events that come
// before the room's snapshot (the connection follows the room from before
// its snapshot was read) are dropped, and a sync follows the snapshot if
// one of them was newer than it. It is used by one goroutine.
type Sequencer struct {
	// rooms is a short list (a connection uses a few rooms, at most
	// RealtimeConfig.MaxRooms): less memory per idle connection than maps.
	rooms []seqRoom
}

type seqRoom struct {
	room    RoomRef
	version int64
	has     bool  // the client has the room (version is meaningful)
	early   int64 // the newest event that came before the room's snapshot
}

// Step is what to do with an event.
type Step int

const (
	Skip   Step = iota // already sent, or not (yet) the client's room
	Write              // the next version: send it
	Resync             // events were missed: send a sync instead
)

// NewSequencer returns an empty Sequencer.
func NewSequencer() *Sequencer { return &Sequencer{} }

func (q *Sequencer) find(room RoomRef) *seqRoom {
	for i := range q.rooms {
		if q.rooms[i].room == room {
			return &q.rooms[i]
		}
	}
	return nil
}

func (q *Sequencer) add(room RoomRef) *seqRoom {
	q.rooms = append(q.rooms, seqRoom{room: room})
	return &q.rooms[len(q.rooms)-1]
}

// Snapshot records that the client got the room at version (joined,
// watching). It returns the version a sync that must follow has to reach
// (0: none): an event newer than the snapshot came first and was dropped.
func (q *Sequencer) Snapshot(room RoomRef, version int64) (resyncTo int64) {
	r := q.find(room)
	if r == nil {
		r = q.add(room)
	}
	if r.early > version {
		resyncTo = r.early
	}
	r.version, r.has, r.early = version, true, 0
	return resyncTo
}

// Sync reports whether a sync of the core is for the client (a room it
// has), and records its version if so.
func (q *Sequencer) Sync(room RoomRef, version int64) bool {
	r := q.find(room)
	if r == nil || !r.has {
		return false
	}
	r.version = version
	return true
}

// Event decides about an event of room at version.
func (q *Sequencer) Event(room RoomRef, version int64) Step {
	return q.Batch(room, version, version)
}

// Batch decides about a batch of room's versions from..to (Batch): it is
// written to a client at version from-1, which it brings to to. A client
// that has to already skips it; any other needs a sync (a client between
// from and to would see the batch's joins in another order than the room's).
func (q *Sequencer) Batch(room RoomRef, from, to int64) Step {
	r := q.find(room)
	switch {
	case r == nil:
		q.add(room).early = to
		return Skip
	case !r.has:
		r.early = max(r.early, to)
		return Skip
	case to <= r.version:
		return Skip
	case r.version != from-1:
		return Resync
	}
	r.version = to
	return Write
}

// Forget drops a room the client left.
func (q *Sequencer) Forget(room RoomRef) {
	for i := range q.rooms {
		if q.rooms[i].room == room {
			last := len(q.rooms) - 1
			q.rooms[i] = q.rooms[last]
			q.rooms = q.rooms[:last]
			if last == 0 {
				q.rooms = nil
			}
			return
		}
	}
}

// Rooms returns the rooms the client has.
func (q *Sequencer) Rooms() []RoomRef {
	var out []RoomRef
	for _, r := range q.rooms {
		if r.has {
			out = append(out, r.room)
		}
	}
	return out
}
