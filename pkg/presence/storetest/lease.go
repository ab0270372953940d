package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// Node liveness: a session held by a node's socket has no deadline; it
// lives by the node generation's lease, renewed compare-and-set. When the
// lease lapses past the skew allowance, ReapNodes declares the node dead
// and ends its sessions, one leave naming the node per user that went
// offline.

// Hold records room as one that node generation gen holds sessions in,
// then creates or refreshes user's session there, held by gen.
func (h *Harness) Hold(gen, user, room, session string) *presence.HeartbeatOutput {
	h.T.Helper()
	if err := h.Store.HoldRooms(context.Background(), gen, []presence.RoomRef{h.Room(room)}); err != nil {
		h.T.Fatal(err)
	}
	out, err := h.Svc.Heartbeat(h.As(user), presence.HeartbeatInput{RoomID: room, SessionID: session, Interval: Sec, HeldBy: gen})
	if err != nil {
		h.T.Fatalf("held heartbeat %s/%s/%s: %v", user, room, session, err)
	}
	return out
}

// Renew registers (prev zero) or renews gen's lease.
func (h *Harness) Renew(gen string, prev, deadline time.Time) bool {
	h.T.Helper()
	ok, err := h.Store.RenewLease(context.Background(), gen, prev, deadline)
	if err != nil {
		h.T.Fatal(err)
	}
	return ok
}

// ReapNodes runs the backend's ReapNodes as a reaper whose clock says at;
// without one, the test is skipped.
func (h *Harness) ReapNodes(at time.Time) int {
	h.T.Helper()
	if h.backend.ReapNodes == nil {
		h.T.Skip("the backend has no ReapNodes")
	}
	n, err := h.backend.ReapNodes(context.Background(), at)
	if err != nil {
		h.T.Fatal(err)
	}
	return n
}

// keeps is a store call as a node's Keeper makes it for a session it holds.
func (h *Harness) keeps(gen, user, room, session, epoch string, mode func(*presence.Heartbeat)) presence.HeartbeatResult {
	h.T.Helper()
	hb := &presence.Heartbeat{Room: h.Room(room), UserID: user, SessionID: session, SessionEpoch: epoch,
		Now: h.Clock(), Deadline: h.Clock().Add(2500 * time.Millisecond), Node: gen, Held: true}
	mode(hb)
	res, errs := h.Store.HeartbeatMany(context.Background(), []*presence.Heartbeat{hb})
	if errs[0] != nil {
		h.T.Fatalf("heartbeat of %s: %v", session, errs[0])
	}
	return res[0]
}

func takeOver(*presence.Heartbeat)        {}
func keepAlive(hb *presence.Heartbeat)    { hb.KeepAlive = true }
func release(hb *presence.Heartbeat)      { hb.Held, hb.Release = false, true }
func keepDeadline(hb *presence.Heartbeat) { hb.Held, hb.KeepAlive = false, true }

// leavesOf renders the leaves among evs as "userId@node", sorted (a reaper
// ends a node's sessions in no given order).
func leavesOf(evs []presence.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == presence.EventLeave {
			out = append(out, e.UserID+"@"+e.Node)
		}
	}
	slices.Sort(out)
	return out
}

func epochOf(t testing.TB, h *Harness, out *presence.HeartbeatOutput) string {
	t.Helper()
	_, _, epoch, err := h.Svc.Tokens().ParseSessionToken(out.SessionToken)
	if err != nil {
		t.Fatal(err)
	}
	return epoch
}

var leaseCases = []testCase{
	{"RenewalIsSafeToRetry", func(t *testing.T, h *Harness) {
		// A renewal (or registration) that ran but whose answer was lost is
		// sent again: the same call answers true again, and nothing else
		// does.
		t0, gen := h.Clock(), "n1@local/retry"
		if !h.Renew(gen, time.Time{}, t0.Add(3*Sec)) || !h.Renew(gen, time.Time{}, t0.Add(3*Sec)) {
			t.Fatal("a repeated registration was refused")
		}
		if h.Renew(gen, time.Time{}, t0.Add(4*Sec)) {
			t.Fatal("a second registration with another deadline was accepted")
		}
		if !h.Renew(gen, t0.Add(3*Sec), t0.Add(6*Sec)) || !h.Renew(gen, t0.Add(3*Sec), t0.Add(6*Sec)) {
			t.Fatal("a repeated renewal was refused")
		}
		if h.Renew(gen, t0.Add(3*Sec), t0.Add(9*Sec)) {
			t.Fatal("a renewal with a stale deadline was accepted")
		}
	}},
	{"HeldSessionsLiveByTheLease", func(t *testing.T, h *Harness) {
		t0, gen := h.Clock(), "n1@local/aaaa"
		if !h.Renew(gen, time.Time{}, t0.Add(3*Sec)) {
			t.Fatal("registration refused")
		}
		if h.Renew(gen, time.Time{}, t0.Add(4*Sec)) {
			t.Fatal("a generation registered twice")
		}
		tok := h.Hold(gen, "ada", "r1", "s1").RoomToken
		h.Hold(gen, "bob", "r1", "s2")
		h.Hold(gen, "bob", "r2", "s3")
		h.Beat("cy", "r1", "s4", Sec) // an HTTP session: a deadline
		ev1, ev2 := h.Subscribe("r1"), h.Subscribe("r2")

		h.Advance(time.Hour) // far past any deadline
		if n := h.Reap(); n != 1 {
			t.Fatalf("reaped %d sessions, want cy's only", n)
		}
		if got := Online(h.List(tok)); !equal(got, []string{"ada", "bob"}) {
			t.Fatalf("online %v", got)
		}
		// A lease seen 200 ms after its deadline is within the allowance.
		if n := h.ReapNodes(t0.Add(3*Sec + 200*time.Millisecond)); n != 0 {
			t.Fatalf("a lease within the skew allowance was reaped (%d sessions)", n)
		}
		if !h.Renew(gen, t0.Add(3*Sec), t0.Add(6*Sec)) {
			t.Fatal("renewal refused")
		}
		if h.Renew(gen, t0.Add(3*Sec), t0.Add(9*Sec)) {
			t.Fatal("a renewal with a stale deadline was accepted")
		}
		if n := h.ReapNodes(t0.Add(6*Sec + 300*time.Millisecond)); n != 3 {
			t.Fatalf("ended %d sessions of the dead node, want 3", n)
		}
		if h.Renew(gen, t0.Add(6*Sec), t0.Add(9*Sec)) {
			t.Fatal("a dead node's lease was renewed")
		}
		if n := h.ReapNodes(t0.Add(time.Minute)); n != 0 {
			t.Fatalf("ended %d sessions again", n)
		}
		if got := Online(h.List(tok)); len(got) != 0 {
			t.Fatalf("online after the node died: %v", got)
		}
		if got := leavesOf(h.Settle(ev1, "r1")); !equal(got, []string{"ada@" + gen, "bob@" + gen, "cy@"}) {
			t.Fatalf("leaves in r1: %v", got)
		}
		if got := h.Settle(ev2, "r2"); len(got) != 1 || !equal(leavesOf(got), []string{"bob@" + gen}) {
			t.Fatalf("events in r2: %v", got)
		}
	}},
	{"NewGenerationTakesOverWithTheSameEpochs", func(t *testing.T, h *Harness) {
		t0, old, gen := h.Clock(), "n1@local/old", "n1@local/new"
		h.Renew(old, time.Time{}, t0.Add(3*Sec))
		ada := h.Hold(old, "ada", "r", "s1")
		h.Hold(old, "bob", "r", "s2")
		ev := h.Subscribe("r")
		// The node was frozen past its lease: it is declared dead and its
		// sessions end; it registers anew and puts ada's back, with its
		// epoch (her token stays valid).
		if n := h.ReapNodes(t0.Add(20 * Sec)); n != 2 {
			t.Fatalf("ended %d sessions, want 2", n)
		}
		h.Renew(gen, time.Time{}, t0.Add(30*Sec))
		epoch := epochOf(t, h, ada)
		if res := h.keeps(gen, "ada", "r", "s1", epoch, takeOver); res.SessionEpoch != epoch || res.Ended {
			t.Fatalf("taken over as %+v, want epoch %q", res, epoch)
		}
		if got := Online(h.List(ada.RoomToken)); !equal(got, []string{"ada"}) {
			t.Fatalf("online %v", got)
		}
		// Taken over before the reaper: no event at all.
		cy := h.Hold(gen, "cy", "r", "s3")
		newer := "n1@local/newer"
		h.Renew(newer, time.Time{}, t0.Add(60*Sec))
		if err := h.Store.HoldRooms(context.Background(), newer, []presence.RoomRef{h.Room("r")}); err != nil {
			t.Fatal(err)
		}
		h.keeps(newer, "cy", "r", "s3", epochOf(t, h, cy), takeOver)
		if n := h.ReapNodes(t0.Add(40 * Sec)); n != 1 {
			t.Fatalf("ended %d sessions of the dead generation, want ada's only", n)
		}
		if got := Online(h.List(ada.RoomToken)); !equal(got, []string{"cy"}) {
			t.Fatalf("online %v", got)
		}
		got := h.Settle(ev, "r")
		if kinds(got) != "leave:ada leave:bob join:ada join:cy leave:ada" && kinds(got) != "leave:bob leave:ada join:ada join:cy leave:ada" {
			t.Fatalf("events %v", got)
		}
		if last := got[len(got)-1]; last.Node != gen || last.Member.Online {
			t.Fatalf("ada's last leave %+v, want one naming %s", last, gen)
		}
	}},
	{"ReleaseAndEndedNotice", func(t *testing.T, h *Harness) {
		gen := "n1@local/rel"
		h.Renew(gen, time.Time{}, h.Clock().Add(time.Hour))
		s1 := h.Hold(gen, "ada", "r", "s1")
		h.Hold(gen, "ada", "r", "s2")
		ev := h.Subscribe("r")
		// A release by a node that does not hold it changes nothing.
		if res := h.keeps("n2@local/other", "ada", "r", "s1", "", release); res.Ended || res.SessionEpoch != epochOf(t, h, s1) {
			t.Fatalf("release by another node = %+v", res)
		}
		h.Advance(time.Minute)
		if n := h.Reap(); n != 0 {
			t.Fatalf("reaped %d after a release by another node", n)
		}
		h.keeps(gen, "ada", "r", "s1", "", release)
		h.Advance(3 * Sec)
		if n := h.Reap(); n != 1 {
			t.Fatalf("reaped %d after the release, want 1", n)
		}
		if res := h.keeps(gen, "ada", "r", "s1", "", release); !res.Ended {
			t.Fatalf("release of an ended session = %+v", res)
		}
		// A session held by a socket ends through its token while ada stays
		// online elsewhere: its holder gets an "ended" notice (no version);
		// an HTTP session gets none.
		h.Hold(gen, "ada", "r", "s1")
		epoch := epochOf(t, h, h.Hold(gen, "ada", "r", "s2"))
		if err := h.Svc.Disconnect(context.Background(), h.Hold(gen, "ada", "r", "s2").SessionToken); err != nil {
			t.Fatal(err)
		}
		if err := h.Svc.Disconnect(context.Background(), h.Beat("ada", "r", "s3", 0).SessionToken); err != nil {
			t.Fatal(err)
		}
		want := presence.Event{Room: h.Room("r"), Kind: presence.EventEnded, UserID: "ada", SessionID: "s2", Epoch: epoch}
		if got := h.Settle(ev, "r"); len(got) != 1 || got[0].Member != nil || got[0] != want {
			t.Fatalf("events %+v, want only %+v", got, want)
		}
	}},
	{"KeepAliveNeverRecreates", func(t *testing.T, h *Harness) {
		gen := "n1@local/ka"
		h.Renew(gen, time.Time{}, h.Clock().Add(time.Hour))
		ada := h.Hold(gen, "ada", "r", "s1")
		epoch := epochOf(t, h, ada)
		res := h.keeps(gen, "ada", "r", "s1", epoch, keepAlive)
		if res.Ended || res.SessionEpoch != epoch || res.Version != 1 || res.RoomEpoch == "" {
			t.Fatalf("keep-alive = %+v", res)
		}
		if _, err := h.Svc.SignOut(h.As("ada"), "", false); err != nil {
			t.Fatal(err)
		}
		if res := h.keeps(gen, "ada", "r", "s1", epoch, keepAlive); !res.Ended {
			t.Fatalf("keep-alive of an ended session = %+v", res)
		}
		if c, err := h.Store.Count(context.Background(), h.Room("r")); err != nil || c.Sessions != 0 || c.Version != 2 {
			t.Fatalf("count = %+v, %v", c, err)
		}
		// A keep-alive vouches for a session whose deadline passed (the
		// store was away): it is refreshed before expired ones end.
		bob := h.Beat("bob", "r", "s2", Sec)
		h.Advance(10 * Sec)
		if res := h.keeps("", "bob", "r", "s2", "", keepDeadline); res.Ended || res.Version != 3 {
			t.Fatalf("keep-alive past the deadline = %+v", res)
		}
		if n := h.Reap(); n != 0 {
			t.Fatalf("reaped %d sessions", n)
		}
		if m := h.Member(bob.RoomToken, "bob"); !m.Online {
			t.Fatalf("bob %+v", m)
		}
	}},
}
