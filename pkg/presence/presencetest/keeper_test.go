package presencetest_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
)

// The Keeper on a MemStore: node leases, held sessions and their takeover,
// driven by a clock the test moves. The keeper's loop runs every
// millisecond of real time; the tests poll for what it does.

// rig is a node: a Keeper and a Service on a MemStore, its events fed to
// the Keeper as a node's real-time core feeds them.
type rig struct {
	t     *testing.T
	store *presencetest.MemStore
	k     *presence.Keeper
	svc   *presence.Service
	now   atomic.Int64 // unix ns

	mu    sync.Mutex
	ended []*presence.Owned
}

func newRig(t *testing.T, subscribe ...string) *rig {
	r := &rig{t: t, store: presencetest.NewMemStore(presencetest.MemConfig{})}
	r.now.Store(time.UnixMilli(1_800_000_000_000).UnixNano())
	tokens, err := presence.NewTokens([]byte("keeper-test-secret-keeper-test"))
	if err != nil {
		t.Fatal(err)
	}
	r.svc = presence.NewService(r.store, tokens, presence.ServiceConfig{Now: r.clock})
	r.k = presence.NewKeeper(r.store, presence.KeeperConfig{
		Node: "n1@local", Tick: time.Millisecond, Now: r.clock,
		OnEnded: func(o *presence.Owned) {
			r.mu.Lock()
			r.ended = append(r.ended, o)
			r.mu.Unlock()
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	sub := r.store.NewSubscriber(observer{r.k})
	t.Cleanup(func() { sub.Close() })
	for _, room := range subscribe {
		if err := sub.Subscribe(context.Background(), r.room(room)); err != nil {
			t.Fatal(err)
		}
	}
	r.k.Open()
	t.Cleanup(r.k.Close)
	return r
}

// observer hands a node's events to its keeper, as presence.Realtime does.
type observer struct{ k *presence.Keeper }

func (o observer) OnEvent(ev presence.Event)      { o.k.Observe(ev) }
func (o observer) OnResubscribe(presence.RoomRef) { o.k.RefreshAll() }

func (r *rig) clock() time.Time                { return time.Unix(0, r.now.Load()) }
func (r *rig) advance(d time.Duration)         { r.now.Add(int64(d)) }
func (r *rig) room(id string) presence.RoomRef { return presence.RoomRef{Org: "acme", RoomID: id} }

func (r *rig) as(user string) context.Context {
	return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: "acme", UserID: user, Verified: true})
}

// hold creates a session held by the node, as a WebSocket join does.
func (r *rig) hold(user, room, session string, interval time.Duration) (*presence.Owned, *presence.HeartbeatOutput) {
	r.t.Helper()
	ctx := context.Background()
	gen, err := r.k.Hold(ctx, r.room(room), interval)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := r.svc.Heartbeat(r.as(user), presence.HeartbeatInput{RoomID: room, SessionID: session, Interval: interval, HeldBy: gen})
	if err != nil {
		r.k.Unhold(r.room(room))
		r.t.Fatal(err)
	}
	o := &presence.Owned{Room: r.room(room), UserID: user, SessionID: session, Epoch: out.SessionEpoch, Interval: interval}
	r.k.Add(o, gen, out.Version)
	return o, out
}

func (r *rig) session(room, session string) (presencetest.MemSession, bool) {
	return r.store.Session(r.room(room), session)
}

func (r *rig) endedSessions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, o := range r.ended {
		out = append(out, o.SessionID)
	}
	return out
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	presencetest.Eventually(t, what, 10*time.Second, cond)
}

func TestKeeperHoldAddRemoveRelease(t *testing.T) {
	r := newRig(t)
	ctx, t0, gen := context.Background(), r.clock(), r.k.Generation()
	if d, ok := r.store.Lease(gen); !ok || !d.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("lease %v %v, want registered until %v", d, ok, t0.Add(10*time.Second))
	}
	// A session whose timeout (2.5 s) is shorter than the lease shortens
	// it first, and its room is recorded before the session exists.
	o, _ := r.hold("ada", "r", "s1", time.Second)
	if d, _ := r.store.Lease(gen); !d.Equal(t0.Add(2500 * time.Millisecond)) {
		t.Fatalf("lease until %v, want %v", d, t0.Add(2500*time.Millisecond))
	}
	if rooms := r.store.HeldRooms(gen); !slices.Equal(rooms, []presence.RoomRef{r.room("r")}) {
		t.Fatalf("held rooms %v", rooms)
	}
	if s, ok := r.session("r", "s1"); !ok || !s.Held || s.Node != gen || s.Epoch != o.Epoch {
		t.Fatalf("session %+v %v", s, ok)
	}
	if r.k.Len() != 1 {
		t.Fatalf("len %d", r.k.Len())
	}
	// Held: no deadline of its own.
	if n, err := r.store.Reap(ctx, t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("reaped %d, %v", n, err)
	}

	// Remove forgets it (the caller ends it) and the room is released.
	r.k.Remove(o)
	r.k.Remove(o)
	if r.k.Len() != 0 {
		t.Fatalf("len %d after remove", r.k.Len())
	}
	eventually(t, "the room's release", func() bool { return len(r.store.HeldRooms(gen)) == 0 })
	if _, ok := r.session("r", "s1"); !ok {
		t.Fatal("Remove ended the session")
	}

	// Release hands a session over to its ordinary deadline.
	o2, _ := r.hold("bob", "r", "s2", time.Second)
	r.k.Release(ctx, o2)
	s, ok := r.session("r", "s2")
	if !ok || s.Held || !s.Deadline.Equal(r.clock().Add(2500*time.Millisecond)) {
		t.Fatalf("released session %+v %v", s, ok)
	}
	if n, err := r.store.Reap(ctx, r.clock().Add(3*time.Second)); err != nil || n != 1 {
		t.Fatalf("reaped %d, %v after the release", n, err)
	}
	if got := r.endedSessions(); len(got) != 0 {
		t.Fatalf("OnEnded for %v", got)
	}
}

func TestKeeperRenewsCompareAndSet(t *testing.T) {
	r := newRig(t)
	gen, t0 := r.k.Generation(), r.clock()
	// Renewed once a quarter of the lease has passed, from the deadline it
	// set: a renewal with another is refused.
	r.advance(3 * time.Second)
	want := t0.Add(13 * time.Second)
	eventually(t, "the renewal", func() bool { d, _ := r.store.Lease(gen); return d.Equal(want) })
	if ok, err := r.store.RenewLease(context.Background(), gen, t0.Add(10*time.Second), t0.Add(time.Hour)); err != nil || ok {
		t.Fatalf("a renewal from a stale deadline: %v, %v", ok, err)
	}
	// While the store is away the lease is not renewed; after, it is.
	r.store.Fail(presencetest.ErrUnavailable)
	calls := r.store.Calls("RenewLease")
	r.advance(5 * time.Second)
	eventually(t, "a failed renewal", func() bool { return r.store.Calls("RenewLease") > calls })
	if d, _ := r.store.Lease(gen); !d.Equal(want) {
		t.Fatalf("lease until %v", d)
	}
	r.store.Fail(nil)
	eventually(t, "the renewal after the outage", func() bool { d, _ := r.store.Lease(gen); return d.Equal(r.clock().Add(10 * time.Second)) })
	if r.k.Generation() != gen {
		t.Fatal("the generation changed")
	}
}

func TestKeeperLapsedLeaseTakesOver(t *testing.T) {
	for _, observed := range []bool{true, false} {
		name := map[bool]string{true: "told by its own leave", false: "told by a refused renewal"}[observed]
		t.Run(name, func(t *testing.T) {
			var rooms []string
			if observed {
				rooms = []string{"r"}
			}
			r := newRig(t, rooms...)
			ctx, old := context.Background(), r.k.Generation()
			ada, _ := r.hold("ada", "r", "s1", 10*time.Second)
			r.hold("bob", "r", "s2", 10*time.Second)
			// The node is cut off (its renewals fail) past its lease: a
			// reaper declares it dead and ends its sessions.
			r.store.FailFunc(func(op string) error {
				if op == "RenewLease" {
					return presencetest.ErrUnavailable
				}
				return nil
			})
			r.advance(11 * time.Second)
			if n, err := r.store.ReapNodes(ctx, r.clock()); err != nil || n != 2 {
				t.Fatalf("reaped %d, %v", n, err)
			}
			if _, ok := r.session("r", "s1"); ok {
				t.Fatal("ada's session survived its node")
			}
			r.store.FailFunc(nil)
			// Back: a new generation takes both over, with their epochs.
			eventually(t, "the takeover", func() bool {
				gen := r.k.Generation()
				s1, ok1 := r.session("r", "s1")
				s2, ok2 := r.session("r", "s2")
				return gen != old && ok1 && ok2 && s1.Node == gen && s2.Node == gen && s1.Held
			})
			if s, _ := r.session("r", "s1"); s.Epoch != ada.Epoch {
				t.Fatalf("epoch %q, want %q", s.Epoch, ada.Epoch)
			}
			if _, ok := r.store.Lease(r.k.Generation()); !ok || len(r.store.HeldRooms(r.k.Generation())) != 1 {
				t.Fatal("the new generation is not registered with its room")
			}
			if got := r.endedSessions(); len(got) != 0 || r.k.Len() != 2 {
				t.Fatalf("ended %v, len %d", got, r.k.Len())
			}
			leaves := 0
			for _, e := range r.store.Events() {
				if e.Kind == presence.EventLeave && e.Node == old {
					leaves++
				}
			}
			if leaves != 2 {
				t.Fatalf("%d leaves naming %s", leaves, old)
			}
		})
	}
}

func TestKeeperObserve(t *testing.T) {
	r := newRig(t, "r", "r2")
	ctx, admin := context.Background(), presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: "acme", Admin: true})
	_, s1 := r.hold("ada", "r", "s1", 0)
	r.hold("ada", "r", "s2", 0)
	r.hold("bob", "r", "s3", 0)
	r.hold("cy", "r", "s4", 0)
	dan, _ := r.hold("dan", "r2", "s5", 0)
	// An old event of a session is not about it.
	r.k.Observe(presence.Event{Room: dan.Room, Kind: presence.EventLeave, UserID: "dan", Version: 1})
	r.k.Observe(presence.Event{Room: dan.Room, Kind: presence.EventEnded, UserID: "dan", SessionID: "s5", Epoch: "other"})
	steps := []struct {
		name  string
		do    func() error
		ended []string
	}{
		{"ended notice", func() error { return r.svc.Disconnect(ctx, s1.SessionToken) }, []string{"s1"}},
		{"leave", func() error { _, err := r.svc.SignOut(r.as("ada"), "", false); return err }, []string{"s1", "s2"}},
		{"remove", func() error { return r.svc.RemoveMember(admin, "r", "bob") }, []string{"s1", "s2", "s3"}},
		{"reset", func() error { return r.svc.RemoveRoom(admin, "r") }, []string{"s1", "s2", "s3", "s4"}},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		eventually(t, "OnEnded after the "+step.name, func() bool { return slices.Equal(r.endedSessions(), step.ended) })
	}
	if r.k.Len() != 1 {
		t.Fatalf("len %d, want dan's only", r.k.Len())
	}
}

func TestKeeperPutsBackLostData(t *testing.T) {
	r := newRig(t, "r")
	ada, _ := r.hold("ada", "r", "s1", 10*time.Second)
	r.hold("bob", "r", "s2", 10*time.Second)
	// Redis restarted empty: the subscription comes back, the keeper
	// checks, finds the data lost and puts its sessions back (same epochs,
	// versions from the start).
	r.store.Restart()
	eventually(t, "the sessions back", func() bool {
		_, ok1 := r.session("r", "s1")
		_, ok2 := r.session("r", "s2")
		return ok1 && ok2
	})
	if s, _ := r.session("r", "s1"); s.Epoch != ada.Epoch || !s.Held {
		t.Fatalf("session %+v, want epoch %q", s, ada.Epoch)
	}
	if c, err := r.store.Count(context.Background(), r.room("r")); err != nil || c.Online != 2 || c.Version != 2 {
		t.Fatalf("count %+v, %v", c, err)
	}
	// Its lease was lost too: at its next renewal it registers anew and
	// holds them under the new generation.
	old := r.k.Generation()
	r.advance(8 * time.Second)
	eventually(t, "a new generation", func() bool {
		gen := r.k.Generation()
		s, _ := r.session("r", "s1")
		_, leased := r.store.Lease(gen)
		return gen != old && leased && s.Node == gen
	})
	if got := r.endedSessions(); len(got) != 0 || r.k.Len() != 2 {
		t.Fatalf("ended %v, len %d", got, r.k.Len())
	}
}

// TestKeeperPutsBackPrivacy: a session put back after the store lost its
// data comes back with its member's privacy flags: an invisible member does
// not reappear to others.
func TestKeeperPutsBackPrivacy(t *testing.T) {
	r := newRig(t, "r")
	ctx := context.Background()
	yes := true
	gen, err := r.k.Hold(ctx, r.room("r"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.svc.Heartbeat(r.as("ada"), presence.HeartbeatInput{RoomID: "r", SessionID: "s1", Interval: 10 * time.Second, HeldBy: gen, Invisible: &yes})
	if err != nil {
		t.Fatal(err)
	}
	r.k.Add(&presence.Owned{Room: r.room("r"), UserID: "ada", SessionID: "s1", Epoch: out.SessionEpoch, Interval: 10 * time.Second, Invisible: &yes}, gen, out.Version)
	r.hold("bob", "r", "s2", 10*time.Second)
	if c, err := r.store.Count(ctx, r.room("r")); err != nil || c.Online != 1 {
		t.Fatalf("count before %+v, %v; want bob alone online", c, err)
	}
	r.store.Restart()
	eventually(t, "the sessions back", func() bool {
		_, ok1 := r.session("r", "s1")
		_, ok2 := r.session("r", "s2")
		return ok1 && ok2
	})
	if c, err := r.store.Count(ctx, r.room("r")); err != nil || c.Online != 1 {
		t.Fatalf("count after the put back %+v, %v; want bob alone online (ada invisible)", c, err)
	}
}
