package presence

import (
	"context"
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
	// Batch is the most heartbeats in one round trip. Zero means 500.
	Batch int
	// Tick is how often due sessions are collected. Zero means 200ms.
	Tick time.Duration
	// OnEnded is called (from the keeper's loop) for a session that was
	// ended by someone else: disconnect, sign-out, removal, expiry.
	OnEnded func(*Owned)
	// Now is the clock. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Owned is a session that this node keeps alive for one of its sockets.
type Owned struct {
	Room      RoomRef
	UserID    string
	SessionID string
	Epoch     string
	Interval  time.Duration
	// Owner is the caller's handle (the socket).
	Owner any

	removed atomic.Bool
}

// Keeper keeps node-owned sessions alive: each one is refreshed once per
// interval, many in one round trip (HeartbeatMany), so that a node with
// 10,000 sockets costs Redis a few round trips per interval, not 10,000.
// A refresh changes nothing visible, so it publishes nothing.
type Keeper struct {
	store Store
	cfg   KeeperConfig

	mu    sync.Mutex
	due   map[int64][]*Owned // by the unix second of the next refresh
	count atomic.Int64
	// checkLoss asks the next round to check first whether the store lost
	// its data (set after a lost pub/sub connection: Redis may have restarted).
	checkLoss  atomic.Bool
	createNext atomic.Bool // the next round creates what is missing
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closing    sync.Once
}

// NewKeeper returns a Keeper that refreshes through store. Call Open.
func NewKeeper(store Store, cfg KeeperConfig) *Keeper {
	if cfg.TimeoutFactor == 0 {
		cfg.TimeoutFactor = 2.5
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.Tick == 0 {
		cfg.Tick = 200 * time.Millisecond
	}
	if cfg.OnEnded == nil {
		cfg.OnEnded = func(*Owned) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Keeper{store: store, cfg: cfg, due: map[int64][]*Owned{}}
}

// Open starts the refresh loop.
func (k *Keeper) Open() {
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
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
				k.refreshDue(ctx)
			}
		}
	}()
}

// Close stops the loop. Sessions are not ended. Idempotent.
func (k *Keeper) Close() {
	k.closing.Do(func() {
		if k.cancel != nil {
			k.cancel()
		}
		k.wg.Wait()
	})
}

// Len is the number of sessions kept alive.
func (k *Keeper) Len() int { return int(k.count.Load()) }

// Add starts keeping o alive; its first refresh is one interval from now.
func (k *Keeper) Add(o *Owned) {
	k.count.Add(1)
	k.schedule(o, k.cfg.Now().Add(o.Interval))
}

// Remove stops keeping o alive (the session is not ended). Idempotent.
func (k *Keeper) Remove(o *Owned) {
	if !o.removed.Swap(true) {
		k.count.Add(-1)
	}
}

// RefreshAll makes every session due now: after Redis came back, possibly
// without its data, the sessions are put back at once.
func (k *Keeper) RefreshAll() {
	k.mu.Lock()
	now := k.cfg.Now().Unix()
	var all []*Owned
	for sec, list := range k.due {
		if sec > now {
			all = append(all, list...)
			delete(k.due, sec)
		}
	}
	k.due[now] = append(k.due[now], all...)
	k.mu.Unlock()
	k.checkLoss.Store(true)
}

func (k *Keeper) schedule(o *Owned, at time.Time) {
	k.mu.Lock()
	k.due[at.Unix()] = append(k.due[at.Unix()], o)
	k.mu.Unlock()
}

func (k *Keeper) refreshDue(ctx context.Context) {
	now := k.cfg.Now()
	k.mu.Lock()
	var due []*Owned
	for sec, list := range k.due {
		if sec <= now.Unix() {
			for _, o := range list {
				if !o.removed.Load() {
					due = append(due, o)
				}
			}
			delete(k.due, sec)
		}
	}
	k.mu.Unlock()
	if len(due) == 0 {
		return
	}
	// Group by room, so a batch touches few rooms (and cluster slots).
	sort.Slice(due, func(i, j int) bool {
		if due[i].Room.Org != due[j].Room.Org {
			return due[i].Room.Org < due[j].Room.Org
		}
		return due[i].Room.RoomID < due[j].Room.RoomID
	})
	// After a possible Redis restart, find out first whether its data is
	// gone: then every session is put back as it was.
	create := k.createNext.Swap(false)
	if k.checkLoss.Swap(false) {
		lost, err := k.store.LostData(ctx)
		if err != nil {
			k.checkLoss.Store(true)
		}
		create = create || lost
	}
	for start := 0; start < len(due); start += k.cfg.Batch {
		batch := due[start:min(start+k.cfg.Batch, len(due))]
		res, errs := k.store.HeartbeatMany(ctx, k.heartbeats(batch, now, create))
		var gone []*Owned
		var failed error
		for i, o := range batch {
			switch {
			case errs[i] != nil:
				failed = errs[i]
				k.schedule(o, now.Add(time.Second)) // retry soon
			case res[i].Ended:
				gone = append(gone, o)
			default:
				k.schedule(o, now.Add(o.Interval))
			}
		}
		if failed != nil && ctx.Err() == nil {
			k.cfg.Logger.Warn("keep-alive failed", "err", failed)
		}
		if len(gone) > 0 {
			k.settle(ctx, gone, now)
		}
	}
}

// settle handles sessions that a keep-alive found gone: if the store lost
// its data they are put back (same epoch: their tokens stay valid),
// otherwise they were ended and the owner is told.
func (k *Keeper) settle(ctx context.Context, gone []*Owned, now time.Time) {
	lost, err := k.store.LostData(ctx)
	if err != nil {
		for _, o := range gone {
			k.schedule(o, now.Add(time.Second))
		}
		return
	}
	if !lost {
		for _, o := range gone {
			if !o.removed.Load() {
				k.Remove(o)
				k.cfg.OnEnded(o)
			}
		}
		return
	}
	k.cfg.Logger.Warn("the store lost its data: putting this node's sessions back", "sessions", len(gone))
	k.RefreshAll()
	k.checkLoss.Store(false)
	_, errs := k.store.HeartbeatMany(ctx, k.heartbeats(gone, now, true))
	for i, o := range gone {
		if errs[i] != nil {
			k.schedule(o, now.Add(time.Second))
		} else {
			k.schedule(o, now.Add(o.Interval))
		}
	}
	// Every other session of the node is due now; create them too.
	k.createNext.Store(true)
}

func (k *Keeper) heartbeats(batch []*Owned, now time.Time, create bool) []*Heartbeat {
	hbs := make([]*Heartbeat, len(batch))
	for i, o := range batch {
		hbs[i] = &Heartbeat{
			Room: o.Room, UserID: o.UserID, SessionID: o.SessionID, SessionEpoch: o.Epoch,
			Now: now, Deadline: now.Add(time.Duration(float64(o.Interval) * k.cfg.TimeoutFactor)),
			Node: k.cfg.Node, KeepAlive: !create,
		}
	}
	return hbs
}
