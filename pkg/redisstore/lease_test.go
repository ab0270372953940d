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
	ref := presence.RoomRef{Org: h.org, RoomID: room}
	if err := h.store.HoldRooms(context.Background(), gen, []presence.RoomRef{ref}); err != nil {
		h.t.Fatal(err)
	}
	out, err := h.svc.Heartbeat(h.as(user), presence.HeartbeatInput{RoomID: room, SessionID: session, Interval: sec, HeldBy: gen})
	if err != nil {
		h.t.Fatalf("held heartbeat %s/%s/%s: %v", user, room, session, err)
	}
	return out
}

func (h *harness) renew(gen string, prev, deadline time.Time) bool {
	h.t.Helper()
	ok, err := h.store.RenewLease(context.Background(), gen, prev, deadline)
	if err != nil {
		h.t.Fatal(err)
	}
	return ok
}

func (h *harness) reapNodes(at time.Time) int {
	h.t.Helper()
	n, err := h.store.ReapNodes(context.Background(), at)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func TestNodeLease(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("held sessions outlive deadlines", func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, b, redisstore.Config{})
				t0 := h.clock()
				gen := "n1@local/aaaa"
				if !h.renew(gen, time.Time{}, t0.Add(3*sec)) {
					t.Fatal("registration refused")
				}
				if h.renew(gen, time.Time{}, t0.Add(3*sec)) {
					t.Fatal("a generation registered twice")
				}
				tok := h.hold(gen, "ada", "r1", "s1").RoomToken
				h.hold(gen, "bob", "r1", "s2")
				h.hold(gen, "bob", "r2", "s3")
				h.beat("cy", "r1", "s4", sec) // an HTTP session: a deadline
				ev1, ev2 := h.subscribe("r1"), h.subscribe("r2")

				h.advance(time.Hour) // far past any deadline
				if n := h.reap(); n != 1 {
					t.Fatalf("reaped %d sessions, want cy's only", n)
				}
				if got := online(h.list(tok)); !equal(got, []string{"ada", "bob"}) {
					t.Fatalf("online %v", got)
				}

				// NodeSkew (250 ms): a lease seen 200 ms after its deadline
				// by a reaper is alive.
				if n := h.reapNodes(t0.Add(3*sec + 200*time.Millisecond)); n != 0 {
					t.Fatalf("a lease within the skew allowance was reaped (%d sessions)", n)
				}
				if !h.renew(gen, t0.Add(3*sec), t0.Add(6*sec)) {
					t.Fatal("renewal refused")
				}
				if h.renew(gen, t0.Add(3*sec), t0.Add(9*sec)) {
					t.Fatal("a renewal with a stale deadline was accepted")
				}
				// Lapsed: 300 ms past the deadline.
				if n := h.reapNodes(t0.Add(6*sec + 300*time.Millisecond)); n != 3 {
					t.Fatalf("ended %d sessions of the dead node, want 3", n)
				}
				if h.renew(gen, t0.Add(6*sec), t0.Add(9*sec)) {
					t.Fatal("a dead node's lease was renewed")
				}
				if n := h.reapNodes(t0.Add(time.Minute)); n != 0 {
					t.Fatalf("ended %d sessions again", n)
				}
				// cy's (deadline), then ada's and bob's (the node's death).
				ev1.waitFor(t, "three leaves", func(e []map[string]any) bool { return count(e, "leave") >= 3 })
				ev2.waitFor(t, "a leave", func(e []map[string]any) bool { return count(e, "leave") >= 1 })
				time.Sleep(100 * time.Millisecond)
				if n := count(ev1.waitFor(t, "", func([]map[string]any) bool { return true }), "leave"); n != 3 {
					t.Fatalf("%d leaves in r1, want 3", n)
				}
				if got := online(h.list(tok)); len(got) != 0 {
					t.Fatalf("online after the node died: %v", got)
				}
				if nodes, _ := h.rdb.ZCard(context.Background(), h.prefix+":nodes").Result(); nodes != 0 {
					t.Fatalf("%d nodes left in the lease set", nodes)
				}
			})

			t.Run("a new generation takes over before the reaper", func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, b, redisstore.Config{})
				t0 := h.clock()
				old, gen := "n1@local/old", "n1@local/new"
				h.renew(old, time.Time{}, t0.Add(3*sec))
				tok := h.hold(old, "ada", "r", "s1").RoomToken
				h.hold(old, "bob", "r", "s2")
				ev := h.subscribe("r")
				// The node was frozen past its lease: it registers anew and
				// takes ada's session over; bob's it does not hold any more.
				h.reapNodes(t0.Add(20 * sec)) // declares old dead and ends what it still holds
				h.renew(gen, time.Time{}, t0.Add(30*sec))
				h.hold(gen, "ada", "r", "s1")
				got := ev.waitFor(t, "events", func(e []map[string]any) bool { return len(e) >= 3 })
				if count(got, "leave") != 2 || count(got, "join") != 1 {
					t.Fatalf("events %v, want ada and bob leaving, then ada joining", got)
				}
				if got := online(h.list(tok)); !equal(got, []string{"ada"}) {
					t.Fatalf("online %v", got)
				}

				// Taken over before the reaper: no leave for it at all.
				h.hold(gen, "cy", "r", "s3")
				newer := "n1@local/newer"
				h.renew(newer, time.Time{}, t0.Add(60*sec))
				h.hold(newer, "cy", "r", "s3")
				before := len(ev.waitFor(t, "cy's join", func(e []map[string]any) bool { return count(e, "join") >= 2 }))
				if n := h.reapNodes(t0.Add(40 * sec)); n != 1 {
					t.Fatalf("ended %d sessions of the dead generation, want ada's only", n)
				}
				got = ev.waitFor(t, "ada's leave", func(e []map[string]any) bool { return count(e, "leave") >= 3 })
				time.Sleep(100 * time.Millisecond)
				if len(got) != before+1 {
					t.Fatalf("events %v, want only ada's leave after the reap", got[before:])
				}
				if got := online(h.list(tok)); !equal(got, []string{"cy"}) {
					t.Fatalf("online %v", got)
				}
			})

			t.Run("release and ended notices", func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, b, redisstore.Config{})
				t0 := h.clock()
				gen := "n1@local/rel"
				h.renew(gen, time.Time{}, t0.Add(time.Hour))
				h.hold(gen, "ada", "r", "s1")
				h.hold(gen, "ada", "r", "s2")
				ev := h.subscribe("r")
				room := presence.RoomRef{Org: h.org, RoomID: "r"}
				release := func(node string) {
					t.Helper()
					_, errs := h.store.HeartbeatMany(context.Background(), []*presence.Heartbeat{{Room: room, UserID: "ada", SessionID: "s1",
						Now: h.clock(), Deadline: h.clock().Add(2500 * time.Millisecond), Node: node, Release: true}})
					if errs[0] != nil {
						t.Fatal(errs[0])
					}
				}
				release("n2@local/other") // not its holder: nothing changes
				h.advance(time.Minute)
				if n := h.reap(); n != 0 {
					t.Fatalf("reaped %d after a release by another node", n)
				}
				release(gen)
				h.advance(3 * sec)
				if n := h.reap(); n != 1 {
					t.Fatalf("reaped %d after the release, want 1", n)
				}
				// s2 ends through its token while ada stays online elsewhere:
				// its holder gets an "ended" notice (no version).
				h.hold(gen, "ada", "r", "s1")
				_, _, epoch, _ := h.svc.Tokens().ParseSessionToken(h.hold(gen, "ada", "r", "s2").SessionToken)
				if err := h.svc.Disconnect(context.Background(), h.hold(gen, "ada", "r", "s2").SessionToken); err != nil {
					t.Fatal(err)
				}
				got := ev.waitFor(t, "the ended notice", func(e []map[string]any) bool { return count(e, "ended") >= 1 })
				for _, e := range got {
					if e["event"] == "ended" && (e["sessionId"] != "s2" || e["epoch"] != epoch || e["userId"] != "ada" || e["version"] != nil) {
						t.Fatalf("notice %v", e)
					}
				}
			})
		})
	}
}

func online(l *presence.RoomList) []string {
	var out []string
	for _, m := range l.Members {
		if m.Online {
			out = append(out, m.UserID)
		}
	}
	return out
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
