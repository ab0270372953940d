package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// KeeperConfig configures a Keeper. Zero values mean the defaults.
type KeeperConfig struct {
	// TimeoutFactor: a session lives interval × factor. Zero means 2.5.
	TimeoutFactor float64
	// Node is this node's label ("node@region").
	Node string
	// Lease is the node's liveness lease: when the node dies, the sessions
	// of its sockets end within min(Lease, smallest interval × factor it
	// holds) plus the reaper's skew allowance. Zero means 10s.
	Lease time.Duration
	// Batch is the most sessions in one round trip. Zero means 500.
	Batch int
	// Tick is how often the keeper's loop runs. Zero means 100ms.
	Tick time.Duration
	// Verify is how often every held session is checked against the store
	// (which also keeps its room's keys from expiring). Zero means 1h.
	Verify time.Duration
	// OnEnded is called for a session that was ended by someone else:
	// disconnect, sign-out, removal, or the node's lease lapsing while the
	// session could not be taken over again.
	OnEnded func(*Owned)
	// OnLostData is called when the keeper finds that the store lost its
	// data, or registers the node again after its lease lapsed (which a
	// store that lost its data causes too); it then puts its sessions
	// back. It must not block. Nil: nothing.
	OnLostData func()
	// Now is the clock. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Owned is a session that this node holds for one of its sockets.
type Owned struct {
	Room      RoomRef
	UserID    string
	SessionID string
	Epoch     string
	Interval  time.Duration
	// Invisible and HideLastSeen are the member's privacy flags as the
	// holder last set them (nil: never set): a session put back after the
	// store lost its data gets them again with it.
	Invisible, HideLastSeen *bool
	// Owner is the caller's handle (the socket).
	Owner any

	// Guarded by the keeper's mu.
	gen   string // the node generation that holds it in the store
	since int64  // the room's version when the store last confirmed it
	// restore marks a session put back after the store lost its data: its
	// privacy flags are sent with it.
	restore bool

	removed atomic.Bool
	// ending is set while its holder ends it (a leave, a close): the
	// events of that end are not someone else ending it.
	ending atomic.Bool
}

// Keeper holds the sessions of a node's open WebSockets. They cost the
// store nothing while idle: they live by the node's lease, which the keeper
// renews (one call per node, whatever the number of sockets), instead of
// each carrying a deadline to refresh.
//
// A node generation ("node@region/<random>") is what the store knows: the
// sessions name it, its lease is renewed compare-and-set, and the rooms
// where it holds sessions are recorded before the sessions are created.
// When the lease lapsed (the node was frozen or cut off for longer than
// the lease) other nodes may be ending its sessions: the keeper then
// registers a new generation and takes every session over again, with the
// same epochs (tokens stay valid). Sessions that others ended meanwhile
// come back with a join; the others never flap.
//
// The keeper learns from the rooms' events (Observe) when someone else
// ended one of its sessions, and checks them all against the store after
// a lost subscription (RefreshAll) and every Verify.
type Keeper struct {
	store Store
	cfg   KeeperConfig

	leaseMu sync.Mutex // serialises renewals (they are compare-and-set)

	mu        sync.Mutex
	gen       string
	lease     time.Time     // the deadline set last; zero: not registered
	leaseFor  time.Duration // the lease that deadline was set for
	lapsed    bool          // the lease was lost: take everything over
	rooms     map[RoomRef]*keptRoom
	stale     map[*Owned]bool // to take over under the current generation
	releasing map[*Owned]bool // to hand over to their ordinary deadline (pending or failed)
	emptied   map[RoomRef]bool
	sweeping  map[RoomRef]chan struct{}
	verifyAt  time.Time
	retryAt   time.Time // releases are retried at most once a second
	count     atomic.Int64

	// checkLoss asks the next round to check first whether the store lost
	// its data (set after a lost pub/sub connection: Redis may have restarted).
	checkLoss atomic.Bool
	verifyNow atomic.Bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closing   sync.Once
}

type keptRoom struct {
	sessions map[*Owned]struct{}
	users    map[string]map[*Owned]struct{} // the same sessions by user
	pending  int                            // Holds not yet followed by Add or Unhold
	// shortest is the shortest timeout of the pending Holds (kept while any
	// is pending), so that the lease covers them before they exist.
	shortest time.Duration
}

// NewKeeper returns a Keeper that holds sessions in store. Call Open.
func NewKeeper(store Store, cfg KeeperConfig) *Keeper {
	if cfg.TimeoutFactor == 0 {
		cfg.TimeoutFactor = 2.5
	}
	if cfg.Lease == 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.Tick == 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.Verify == 0 {
		cfg.Verify = time.Hour
	}
	if cfg.OnEnded == nil {
		cfg.OnEnded = func(*Owned) {}
	}
	if cfg.OnLostData == nil {
		cfg.OnLostData = func() {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	k := &Keeper{store: store, cfg: cfg, rooms: map[RoomRef]*keptRoom{}, stale: map[*Owned]bool{}, releasing: map[*Owned]bool{},
		emptied: map[RoomRef]bool{}, sweeping: map[RoomRef]chan struct{}{}}
	k.gen = k.newGeneration()
	return k
}

func (k *Keeper) newGeneration() string {
	b := make([]byte, 4)
	rand.Read(b)
	return k.cfg.Node + "/" + hex.EncodeToString(b)
}

// Open registers the node (when the store answers) and starts the loop.
func (k *Keeper) Open() {
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.verifyAt = k.cfg.Now().Add(k.cfg.Verify)
	k.renew(ctx)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := time.NewTicker(k.cfg.Tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				k.round(ctx)
			}
		}
	}()
}

// Close stops the loop. Held sessions are not ended: they end when the
// lease lapses, unless released first (ReleaseAll). Idempotent.
func (k *Keeper) Close() {
	k.closing.Do(func() {
		if k.cancel != nil {
			k.cancel()
		}
		k.wg.Wait()
	})
}

// Len is the number of sessions held.
func (k *Keeper) Len() int { return int(k.count.Load()) }

// Generation is the node generation that holds new sessions now.
func (k *Keeper) Generation() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gen
}

func (k *Keeper) timeout(interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return time.Duration(float64(interval) * k.cfg.TimeoutFactor)
}

// Hold prepares the store for a session of room with interval that this
// node is about to hold: the node is registered, its lease is short enough
// for the session's timeout, and the room is recorded as one the node
// holds sessions in. It returns the generation to hold the session under
// (HeartbeatInput.HeldBy). Follow it with Add, or Unhold if the session
// could not be created.
func (k *Keeper) Hold(ctx context.Context, room RoomRef, interval time.Duration) (string, error) {
	k.mu.Lock()
	r := k.rooms[room]
	if r == nil {
		r = &keptRoom{sessions: map[*Owned]struct{}{}, users: map[string]map[*Owned]struct{}{}}
		k.rooms[room] = r
	}
	r.pending++
	delete(k.emptied, room)
	wait := k.sweeping[room]
	timeout := k.timeout(interval)
	shorter := k.lease.IsZero() || timeout < k.leaseFor
	if timeout < r.shortest || r.shortest == 0 {
		r.shortest = timeout
	}
	k.mu.Unlock()
	fail := func(err error) (string, error) {
		k.Unhold(room)
		return "", err
	}
	if wait != nil {
		select {
		case <-wait: // the room's record is being released: add it after
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	if shorter {
		// Not registered yet, or this session's timeout is shorter than the
		// lease: renew first, so that if the node dies the session ends in
		// time.
		k.renew(ctx)
	}
	k.mu.Lock()
	gen, registered := k.gen, !k.lease.IsZero() && !k.lapsed
	k.mu.Unlock()
	if !registered {
		return fail(Errorf(EUNAVAILABLE, "the node could not register its lease"))
	}
	if err := k.store.HoldRooms(ctx, gen, []RoomRef{room}); err != nil {
		return fail(err)
	}
	return gen, nil
}

// Unhold undoes a Hold whose session was not created.
func (k *Keeper) Unhold(room RoomRef) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r := k.rooms[room]; r != nil {
		r.pending--
		if r.pending <= 0 {
			r.shortest = 0
		}
		k.checkEmptyLocked(room, r)
	}
}

// Add starts holding o, created or refreshed under generation gen (from
// Hold) at the room's version. It ends a Hold.
func (k *Keeper) Add(o *Owned, gen string, version int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.rooms[o.Room]
	if r == nil {
		r = &keptRoom{sessions: map[*Owned]struct{}{}, users: map[string]map[*Owned]struct{}{}}
		k.rooms[o.Room] = r
	} else {
		r.pending--
	}
	if r.pending <= 0 {
		r.shortest = 0
	}
	o.gen, o.since = gen, version
	r.sessions[o] = struct{}{}
	if r.users[o.UserID] == nil {
		r.users[o.UserID] = map[*Owned]struct{}{}
	}
	r.users[o.UserID][o] = struct{}{}
	k.count.Add(1)
	if gen != k.gen {
		k.stale[o] = true // the generation changed meanwhile: take it over
	}
}

// Remove stops holding o (the session is not changed in the store: the
// caller ends it). Idempotent.
func (k *Keeper) Remove(o *Owned) {
	if o.removed.Swap(true) {
		return
	}
	k.count.Add(-1)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgetLocked(o)
}

func (k *Keeper) forgetLocked(o *Owned) {
	delete(k.stale, o)
	if r := k.rooms[o.Room]; r != nil {
		delete(r.sessions, o)
		if u := r.users[o.UserID]; u != nil {
			delete(u, o)
			if len(u) == 0 {
				delete(r.users, o.UserID)
			}
		}
		k.checkEmptyLocked(o.Room, r)
	}
}

func (k *Keeper) checkEmptyLocked(room RoomRef, r *keptRoom) {
	if len(r.sessions) == 0 && r.pending <= 0 {
		delete(k.rooms, room)
		k.emptied[room] = true
	}
}

// Release stops holding o and hands its session over to the ordinary
// deadline (now + interval × factor): the socket was lost without a close
// frame, so the client may resume it elsewhere. Retried by the loop when
// the store is away. Idempotent.
func (k *Keeper) Release(ctx context.Context, o *Owned) {
	if o.removed.Load() {
		return
	}
	k.releaseMany(ctx, []*Owned{o})
}

// ReleaseAll releases every held session (a node shutting down: its
// clients resume them on other nodes).
func (k *Keeper) ReleaseAll(ctx context.Context) {
	k.mu.Lock()
	var all []*Owned
	for _, r := range k.rooms {
		for o := range r.sessions {
			all = append(all, o)
		}
	}
	for o := range k.releasing {
		all = append(all, o)
	}
	k.mu.Unlock()
	k.releaseMany(ctx, all)
}

// releaseMany stops holding the sessions and hands them to their ordinary
// deadline. Each stays in releasing until the store confirmed it (retried
// by the loop), so that its room stays recorded as the node's meanwhile.
func (k *Keeper) releaseMany(ctx context.Context, list []*Owned) {
	k.mu.Lock()
	for _, o := range list {
		if !o.removed.Swap(true) {
			k.count.Add(-1)
			k.forgetLocked(o)
		}
		k.releasing[o] = true
	}
	k.mu.Unlock()
	now := k.cfg.Now()
	for start := 0; start < len(list); start += k.cfg.Batch {
		batch := list[start:min(start+k.cfg.Batch, len(list))]
		hbs := make([]*Heartbeat, len(batch))
		k.mu.Lock()
		for i, o := range batch {
			hbs[i] = &Heartbeat{Room: o.Room, UserID: o.UserID, SessionID: o.SessionID, SessionEpoch: o.Epoch,
				Now: now, Deadline: now.Add(k.timeout(o.Interval)), Node: o.gen, Release: true}
		}
		k.mu.Unlock()
		_, errs := k.store.HeartbeatMany(ctx, hbs)
		k.mu.Lock()
		for i, o := range batch {
			if errs[i] == nil {
				delete(k.releasing, o)
			}
		}
		k.mu.Unlock()
	}
}

// Observe takes an event of a room the node follows, to learn about the
// sessions it holds there that someone else ended: "ended" (one session,
// by sessionId and epoch), "leave" and "remove" (all of a user's
// sessions), "reset" (the room was removed). Events older than what the
// store confirmed of a session are ignored. A leave that names this node's
// own generation means it was declared dead (it was frozen or cut off past
// its lease): it then takes every session over again, at once.
func (k *Keeper) Observe(n Event) {
	room, event, userID, version := n.Room, n.Kind, n.UserID, n.Version
	if event != EventEnded && event != EventLeave && event != EventRemove && event != EventReset {
		return
	}
	k.mu.Lock()
	if n.Node != "" && n.Node == k.gen && !k.lapsed {
		k.cfg.Logger.Warn("this node was declared dead: taking its sessions over again", "generation", k.gen)
		k.lapsed, k.lease = true, time.Time{}
		k.mu.Unlock()
		return
	}
	r := k.rooms[room]
	if r == nil || n.Node != "" {
		k.mu.Unlock()
		return
	}
	// A user's events look at that user's sessions only (a room may hold
	// thousands of this node's sockets); a removed room at all of them.
	candidates := r.users[userID]
	if event == EventReset {
		candidates = r.sessions
	}
	var ended []*Owned
	for o := range candidates {
		if o.gen != k.gen || k.stale[o] {
			continue // being taken over: the event may be of the old generation
		}
		if o.ending.Load() {
			continue // its holder is ending it
		}
		var match bool
		switch event {
		case EventEnded:
			match = o.SessionID == n.SessionID && o.Epoch == n.Epoch
		case EventReset:
			match = version > o.since
		default:
			match = o.UserID == userID && version > o.since
		}
		if match {
			ended = append(ended, o)
		}
	}
	k.mu.Unlock()
	for _, o := range ended {
		k.ended(o)
	}
}

// ended tells the owner that someone else ended o.
func (k *Keeper) ended(o *Owned) {
	if o.removed.Swap(true) {
		return
	}
	k.count.Add(-1)
	k.mu.Lock()
	k.forgetLocked(o)
	k.mu.Unlock()
	k.cfg.OnEnded(o)
}

// RefreshAll checks every held session against the store soon: after a
// lost subscription (events may have been missed) or a Redis restart
// (which may have lost the data: then the sessions are put back).
func (k *Keeper) RefreshAll() {
	k.checkLoss.Store(true)
	k.verifyNow.Store(true)
}

// round is one turn of the loop.
func (k *Keeper) round(ctx context.Context) {
	now := k.cfg.Now()
	k.mu.Lock()
	due := k.lease.IsZero() || k.lapsed || now.After(k.lease.Add(-k.leaseFor*3/4))
	k.mu.Unlock()
	if due {
		k.renew(ctx)
	}
	k.takeOver(ctx)
	k.retryReleases(ctx)
	if k.verifyNow.Swap(false) || now.After(k.verifyAt) {
		k.verifyAt = now.Add(k.cfg.Verify)
		k.verify(ctx)
	}
	k.sweep(ctx)
}

// renew registers the node or renews its lease, for min(Lease, the
// shortest timeout it holds). When the lease was lost, it registers a new
// generation and marks every session to be taken over.
func (k *Keeper) renew(ctx context.Context) {
	k.leaseMu.Lock()
	defer k.leaseMu.Unlock()
	now := k.cfg.Now()
	k.mu.Lock()
	leaseFor := k.cfg.Lease
	for _, r := range k.rooms {
		if r.pending > 0 && r.shortest > 0 {
			leaseFor = min(leaseFor, r.shortest)
		}
		for o := range r.sessions {
			leaseFor = min(leaseFor, k.timeout(o.Interval))
		}
	}
	gen, prev, lapsed := k.gen, k.lease, k.lapsed
	k.mu.Unlock()
	if lapsed {
		gen, prev = k.newGeneration(), time.Time{}
	}
	deadline := now.Add(leaseFor)
	ok, err := k.store.RenewLease(ctx, gen, prev, deadline)
	if err != nil {
		if ctx.Err() == nil {
			k.cfg.Logger.Warn("node lease renewal failed", "generation", gen, "err", err)
		}
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !ok {
		if prev.IsZero() {
			return // a fresh generation that exists already: try another
		}
		k.cfg.Logger.Warn("node lease lapsed: taking this node's sessions over again", "generation", gen, "sessions", k.count.Load())
		k.lapsed = true
		k.lease = time.Time{}
		return
	}
	k.lease, k.leaseFor = deadline, leaseFor
	if lapsed {
		k.gen, k.lapsed = gen, false
		k.cfg.OnLostData() // perhaps: a Redis that lost its data lost the lease too
		for _, r := range k.rooms {
			for o := range r.sessions {
				k.stale[o] = true
			}
		}
	}
}

// takeOver puts the stale sessions back under the current generation, with
// their epochs: the ones still in the store change owner silently, the
// ones ended meanwhile come back with a join.
func (k *Keeper) takeOver(ctx context.Context) {
	k.mu.Lock()
	if len(k.stale) == 0 || k.lease.IsZero() || k.lapsed {
		k.mu.Unlock()
		return
	}
	gen := k.gen
	list := make([]*Owned, 0, len(k.stale))
	var rooms []RoomRef
	seen := map[RoomRef]bool{}
	for o := range k.stale {
		list = append(list, o)
		if !seen[o.Room] {
			seen[o.Room] = true
			rooms = append(rooms, o.Room)
		}
	}
	k.mu.Unlock()
	if err := k.store.HoldRooms(ctx, gen, rooms); err != nil {
		return
	}
	sortByRoom(list)
	now := k.cfg.Now()
	for start := 0; start < len(list); start += k.cfg.Batch {
		batch := list[start:min(start+k.cfg.Batch, len(list))]
		res, errs := k.store.HeartbeatMany(ctx, k.heartbeats(batch, gen, now, false))
		k.mu.Lock()
		for i, o := range batch {
			if errs[i] == nil && gen == k.gen {
				o.gen, o.since, o.restore = gen, res[i].Version, false
				delete(k.stale, o)
			}
		}
		k.mu.Unlock()
	}
}

func (k *Keeper) retryReleases(ctx context.Context) {
	k.mu.Lock()
	if now := k.cfg.Now(); len(k.releasing) == 0 || now.Before(k.retryAt) {
		k.mu.Unlock()
		return
	} else {
		k.retryAt = now.Add(time.Second)
	}
	list := make([]*Owned, 0, len(k.releasing))
	for o := range k.releasing {
		list = append(list, o)
	}
	k.mu.Unlock()
	if len(list) > 0 {
		k.releaseMany(ctx, list)
	}
}

// verify checks every held session against the store (a keep-alive that
// never creates): ended ones are reported, unless the store lost its data,
// in which case they are all put back.
func (k *Keeper) verify(ctx context.Context) {
	k.mu.Lock()
	gen := k.gen
	var list []*Owned
	rooms := make([]RoomRef, 0, len(k.rooms))
	for room, r := range k.rooms {
		rooms = append(rooms, room)
		for o := range r.sessions {
			if !k.stale[o] {
				list = append(list, o)
			}
		}
	}
	k.mu.Unlock()
	// The record of the node's rooms expires like the rooms' keys: renew it
	// (a node may hold the same sockets for longer than that).
	if len(rooms) > 0 {
		if err := k.store.HoldRooms(ctx, gen, rooms); err != nil {
			k.verifyNow.Store(true)
			return
		}
	}
	if k.checkLoss.Swap(false) {
		if lost, err := k.store.LostData(ctx); err != nil {
			k.checkLoss.Store(true)
			k.verifyNow.Store(true)
			return
		} else if lost {
			k.putBack(list)
			return
		}
	}
	sortByRoom(list)
	now := k.cfg.Now()
	var gone []*Owned
	for start := 0; start < len(list); start += k.cfg.Batch {
		batch := list[start:min(start+k.cfg.Batch, len(list))]
		res, errs := k.store.HeartbeatMany(ctx, k.heartbeats(batch, gen, now, true))
		for i, o := range batch {
			switch {
			case errs[i] != nil:
				k.verifyNow.Store(true) // try again next round
			case res[i].Ended:
				gone = append(gone, o)
			}
		}
	}
	if len(gone) == 0 {
		return
	}
	lost, err := k.store.LostData(ctx)
	switch {
	case err != nil:
		k.verifyNow.Store(true)
	case lost:
		k.cfg.Logger.Warn("the store lost its data: putting this node's sessions back", "sessions", len(gone))
		k.putBack(gone)
	default:
		for _, o := range gone {
			k.ended(o)
		}
	}
}

// putBack marks sessions to be created again (same epochs, so their
// tokens stay valid): the store lost them with its data.
func (k *Keeper) putBack(list []*Owned) {
	k.cfg.OnLostData()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range list {
		if !o.removed.Load() {
			k.stale[o] = true
			o.restore = true
		}
	}
}

// sweep forgets, in the store, the rooms where the node holds nothing any
// more. A Hold of such a room waits until its sweep is done.
func (k *Keeper) sweep(ctx context.Context) {
	k.mu.Lock()
	if len(k.emptied) == 0 {
		k.mu.Unlock()
		return
	}
	gen := k.gen
	done := make(chan struct{})
	// A room with a session still to release stays recorded: should the
	// node die first, its reapers must find that session.
	releasing := map[RoomRef]bool{}
	for o := range k.releasing {
		releasing[o.Room] = true
	}
	var rooms []RoomRef
	for room := range k.emptied {
		if releasing[room] {
			continue
		}
		rooms = append(rooms, room)
		k.sweeping[room] = done
		delete(k.emptied, room)
	}
	if len(rooms) == 0 {
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()
	err := k.store.ReleaseRooms(ctx, gen, rooms)
	k.mu.Lock()
	for _, room := range rooms {
		delete(k.sweeping, room)
		if err != nil && k.rooms[room] == nil {
			k.emptied[room] = true // try again
		}
	}
	k.mu.Unlock()
	close(done)
}

func (k *Keeper) heartbeats(batch []*Owned, gen string, now time.Time, keepAlive bool) []*Heartbeat {
	hbs := make([]*Heartbeat, len(batch))
	for i, o := range batch {
		hbs[i] = &Heartbeat{
			Room: o.Room, UserID: o.UserID, SessionID: o.SessionID, SessionEpoch: o.Epoch,
			Now: now, Node: gen, Held: true, KeepAlive: keepAlive,
		}
		if o.restore {
			hbs[i].Invisible, hbs[i].HideLastSeen = o.Invisible, o.HideLastSeen
		}
	}
	return hbs
}

// sortByRoom groups sessions by room, so a batch touches few rooms (and
// cluster slots).
func sortByRoom(list []*Owned) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].Room.Org != list[j].Room.Org {
			return list[i].Room.Org < list[j].Room.Org
		}
		return list[i].Room.RoomID < list[j].Room.RoomID
	})
}
