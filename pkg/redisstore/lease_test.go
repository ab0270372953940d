package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
)

// Node liveness: sessions held by a node's sockets live by the node's
// lease, not by deadlines; when the lease lapses, reapers end them once.

func (h *harness) hold(gen, user, room, session string) *presence.HeartbeatOutput {
	h.t.Helper()
	return h.contract().Hold(gen, user, room, session)
}

func (h *harness) renew(gen string, prev, deadline time.Time) bool {
	h.t.Helper()
	return h.contract().Renew(gen, prev, deadline)
}

func (h *harness) reapNodes(at time.Time) int {
	h.t.Helper()
	n, err := h.store.ReapNodes(context.Background(), at)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// TestNodeLeaseKeys: what node liveness leaves in Redis. The behaviour of
// leases (held sessions outlive deadlines, renewal compare-and-set, a dead
// node's sessions ended once, takeover by a new generation, releases and
// ended notices) is the contract suite's (storetest, run by
// TestStoreContract on every backend); here, the keys: once a dead node's
// sessions are ended, its lease and its list of rooms are gone.
func TestNodeLeaseKeys(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, redisstore.Config{})
			t0 := h.clock()
			gen := "n1@local/aaaa"
			if !h.renew(gen, time.Time{}, t0.Add(3*sec)) {
				t.Fatal("registration refused")
			}
			h.hold(gen, "ada", "r1", "s1")
			h.hold(gen, "bob", "r2", "s2")
			ctx := context.Background()
			rooms := h.store.Keys().NodeRooms(gen)
			if n, _ := h.rdb.SCard(ctx, rooms).Result(); n != 2 {
				t.Fatalf("%s holds %d rooms, want 2", rooms, n)
			}
			if n := h.reapNodes(t0.Add(time.Minute)); n != 2 {
				t.Fatalf("ended %d sessions of the dead node, want 2", n)
			}
			if n, _ := h.rdb.ZCard(ctx, h.store.Keys().Nodes()).Result(); n != 0 {
				t.Fatalf("%d nodes left in the lease set", n)
			}
			if n, _ := h.rdb.Exists(ctx, rooms).Result(); n != 0 {
				t.Fatalf("%s is left", rooms)
			}
		})
	}
}

// TestNodeLeaseClockSkew: a live node whose clock is 1 s behind the
// reaper's keeps its sessions. The keeper renews with the shortest lease
// (2 s) while a reaper whose clock is 1 s ahead looks every 20 ms for
// lapsed leases; none of the node's sessions may end. (Clocks 2 s apart
// are beyond the promise: then this reaper does end them.)
func TestNodeLeaseClockSkew(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, backend{name: "redis", addr: srv.Addr(), srv: srv}, redisstore.Config{})
	// The node's clock is the wall clock; the reaper's runs 1 s ahead.
	k := presence.NewKeeper(h.store, presence.KeeperConfig{Node: "slow@local", Lease: 2 * time.Second, Tick: 50 * time.Millisecond})
	k.Open()
	defer k.Close()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		room := presence.RoomRef{Org: h.org, RoomID: "r"}
		gen, err := k.Hold(ctx, room, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		user := fmt.Sprint("u", i)
		out, err := h.svc.Heartbeat(h.as(user), presence.HeartbeatInput{RoomID: "r", SessionID: fmt.Sprint("s", i), Interval: time.Second, HeldBy: gen})
		if err != nil {
			t.Fatal(err)
		}
		k.Add(&presence.Owned{Room: room, UserID: user, SessionID: fmt.Sprint("s", i), Interval: time.Second}, gen, out.Version)
	}
	until := time.Now().Add(5 * time.Second)
	for time.Now().Before(until) {
		if n := h.reapNodes(time.Now().Add(time.Second)); n != 0 {
			t.Fatalf("a reaper 1 s ahead ended %d sessions of a live node", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l, err := h.store.Count(ctx, presence.RoomRef{Org: h.org, RoomID: "r"})
	if err != nil || l.Sessions != 5 {
		t.Fatalf("count %+v %v", l, err)
	}
}
