package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
)

// The real-time core (Realtime, Conn) on a MemStore: no Redis, no network.
// Events reach the core synchronously (MemSubscriber); what the core does
// on its own goroutines (syncs, the keeper's loop) is polled for, with
// generous bounds.

const testOrg = "acme"

// rtNode is one node: a Realtime over a Service on a MemStore, its
// subscriber's events handed to the Realtime as node.New wires them.
type rtNode struct {
	store *presencetest.MemStore
	sub   *presencetest.MemSubscriber
	svc   *presence.Service
	rt    *presence.Realtime
}

// forwarder is the subscriber's handler: the Realtime needs the Subscriber
// first, so it is set afterwards.
type forwarder struct {
	rt atomic.Pointer[presence.Realtime]
}

func (f *forwarder) OnEvent(ev presence.Event)           { f.rt.Load().OnEvent(ev) }
func (f *forwarder) OnResubscribe(room presence.RoomRef) { f.rt.Load().OnResubscribe(room) }

func newRTNode(tb testing.TB, cfg presence.RealtimeConfig) *rtNode {
	tb.Helper()
	n := &rtNode{store: presencetest.NewMemStore(presencetest.MemConfig{})}
	n.svc = presence.NewService(n.store, mustTokens(tb, []byte("realtime-test-secret-0123456789")), presence.ServiceConfig{Node: "n1@local"})
	fwd := &forwarder{}
	n.sub = n.store.NewSubscriber(fwd)
	cfg.Subscriber, cfg.Node, cfg.Logger = n.sub, "n1@local", slog.New(slog.DiscardHandler)
	n.rt = presence.NewRealtime(n.svc, cfg)
	fwd.rt.Store(n.rt)
	tb.Cleanup(func() {
		n.rt.Close()
		n.sub.Close()
	})
	return n
}

func ref(roomID string) presence.RoomRef { return presence.RoomRef{Org: testOrg, RoomID: roomID} }

func as(user string) context.Context {
	return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: testOrg, UserID: user, Verified: true})
}

func (n *rtNode) connect() (*presence.Conn, *sink) {
	s := &sink{}
	return n.rt.Connect(s), s
}

// join joins c to room as user, with session sid.
func (n *rtNode) join(t *testing.T, c *presence.Conn, user, room, sid string) *presence.Joined {
	t.Helper()
	j, err := c.Join(as(user), presence.HeartbeatInput{RoomID: room, SessionID: sid})
	if err != nil {
		t.Fatalf("%s joins %s: %v", user, room, err)
	}
	return j
}

// watch makes c watch the room of a room token, as user.
func (n *rtNode) watch(t *testing.T, c *presence.Conn, user, roomToken string) *presence.RoomList {
	t.Helper()
	_, l, err := c.Watch(as(user), roomToken)
	if err != nil {
		t.Fatalf("%s watches: %v", user, err)
	}
	return l
}

// beat creates (or refreshes) user's session "web-<user>" in room, one
// that lives by its deadline: a change made elsewhere (HTTP, another node).
func (n *rtNode) beat(t *testing.T, user, room string) *presence.HeartbeatOutput {
	t.Helper()
	out, err := n.svc.Heartbeat(as(user), presence.HeartbeatInput{RoomID: room, SessionID: "web-" + user})
	if err != nil {
		t.Fatalf("%s beats in %s: %v", user, room, err)
	}
	return out
}

func (n *rtNode) setData(t *testing.T, user, room, data string) {
	t.Helper()
	if err := n.svc.SetData(as(user), room, user, json.RawMessage(data)); err != nil {
		t.Fatalf("%s sets data in %s: %v", user, room, err)
	}
}

func (n *rtNode) disconnect(t *testing.T, sessionToken string) {
	t.Helper()
	if err := n.svc.Disconnect(context.Background(), sessionToken); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

// failOp makes the store's calls of op fail as an unreachable store's,
// until n.store.FailFunc(nil).
func (n *rtNode) failOp(op string) {
	n.store.FailFunc(func(called string) error {
		if called == op {
			return presencetest.ErrUnavailable
		}
		return nil
	})
}

// online returns the room's online members as the store has them.
func (n *rtNode) online(t *testing.T, room string) string {
	t.Helper()
	l, err := n.svc.Snapshot(context.Background(), ref(room), "", 0)
	if err != nil {
		t.Fatalf("snapshot of %s: %v", room, err)
	}
	return onlineIDs(l.Members)
}

func (n *rtNode) version(t *testing.T, room string) int64 {
	t.Helper()
	c, err := n.svc.Count(as("counter"), room)
	if err != nil {
		t.Fatalf("count of %s: %v", room, err)
	}
	return c.Version
}

// onlineIDs returns the online members' ids, sorted: "ada bob".
func onlineIDs(ms []presence.Member) string {
	var ids []string
	for _, m := range ms {
		if m.Online {
			ids = append(ids, m.UserID)
		}
	}
	slices.Sort(ids)
	return strings.Join(ids, " ")
}

// sink is a connection's transport: it records what the core hands it.
type sink struct {
	mu      sync.Mutex
	updates []*presence.Update
	ended   []presence.RoomRef
}

func (s *sink) Push(u *presence.Update) {
	s.mu.Lock()
	s.updates = append(s.updates, u)
	s.mu.Unlock()
}

func (s *sink) SessionEnded(room presence.RoomRef) {
	s.mu.Lock()
	s.ended = append(s.ended, room)
	s.mu.Unlock()
}

// received returns the updates of room, in the order they came.
func (s *sink) received(room presence.RoomRef) []*presence.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*presence.Update
	for _, u := range s.updates {
		if u.Room == room {
			out = append(out, u)
		}
	}
	return out
}

func (s *sink) endedRooms() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, r := range s.ended {
		ids = append(ids, r.RoomID)
	}
	return strings.Join(ids, " ")
}

// trace describes what the sink got of room, in order:
// "join:bob@2 sync@5[ada bob]" (a sync lists its online members).
func (s *sink) trace(room presence.RoomRef) string {
	var out []string
	for _, u := range s.received(room) {
		if u.Sync != nil {
			out = append(out, fmt.Sprintf("sync@%d[%s]", u.Version, onlineIDs(u.Sync.Members)))
		} else {
			out = append(out, fmt.Sprintf("%s:%s@%d", u.Event.Kind, u.Event.UserID, u.Version))
		}
	}
	return strings.Join(out, " ")
}

func (s *sink) syncs(room presence.RoomRef) int {
	n := 0
	for _, u := range s.received(room) {
		if u.Sync != nil {
			n++
		}
	}
	return n
}

// view replays what the sink got of room over the connection's snapshot as
// its client would (through a Sequencer), and returns the online members
// the client shows, or the version gap the core left it with.
func (s *sink) view(room presence.RoomRef, snapshot *presence.RoomList) string {
	q := presence.NewSequencer()
	q.Snapshot(room, snapshot.Version)
	online := map[string]bool{}
	set := func(ms []presence.Member) {
		clear(online)
		for _, m := range ms {
			online[m.UserID] = m.Online
		}
	}
	set(snapshot.Members)
	for _, u := range s.received(room) {
		if u.Sync != nil {
			if q.Sync(room, u.Version) {
				set(u.Sync.Members)
			}
			continue
		}
		switch q.Event(room, u.Version) {
		case presence.Write:
			online[u.Event.UserID] = u.Event.Member != nil && u.Event.Member.Online
		case presence.Resync:
			return fmt.Sprintf("gap before %d", u.Version)
		}
	}
	var ms []presence.Member
	for id, on := range online {
		ms = append(ms, presence.Member{UserID: id, Online: on})
	}
	return onlineIDs(ms)
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	presencetest.Eventually(t, what, 5*time.Second, cond)
}

// waitEqual polls get until it returns want, for up to 5 s.
func waitEqual(t *testing.T, what, want string, get func() string) {
	t.Helper()
	got := get()
	waitFor(t, fmt.Sprintf("%s = %q (last %q)", what, want, got), func() bool {
		got = get()
		return got == want
	})
}

// waitTrace waits until s got exactly want of room.
func waitTrace(t *testing.T, s *sink, room presence.RoomRef, want string) {
	t.Helper()
	waitEqual(t, "trace", want, func() string { return s.trace(room) })
}

// expectTrace checks what s got of room, now. Right after another
// connection of the room got an event it is final: the core hands an
// event to all the room's connections at once.
func expectTrace(t *testing.T, s *sink, room presence.RoomRef, want string) {
	t.Helper()
	if got := s.trace(room); got != want {
		t.Fatalf("trace %q, want %q", got, want)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := presence.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func wantRooms(t *testing.T, n *rtNode, want ...string) {
	t.Helper()
	var got []string
	for _, r := range n.sub.Rooms() {
		got = append(got, r.RoomID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("subscribed to %v, want %v", got, want)
	}
}

// gate makes the store's next call of op wait until the returned release
// is called (idempotent; also called at the test's end); entered is closed
// once that call waits.
func gate(t *testing.T, n *rtNode, op string) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	armed.Store(true)
	n.store.FailFunc(func(called string) error {
		if called == op && armed.CompareAndSwap(true, false) {
			close(in)
			<-out
		}
		return nil
	})
	release = sync.OnceFunc(func() { close(out) })
	t.Cleanup(release)
	return in, release
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// roomRig is where most tests start: ada joined room "r" on connection a
// (session "s-ada"), and wes watches it with her room token on w.
type roomRig struct {
	*rtNode
	r      presence.RoomRef
	a, w   *presence.Conn
	sa, sw *sink
	ja     *presence.Joined
	l      *presence.RoomList // w's snapshot
}

func newRoomRig(t *testing.T, cfg presence.RealtimeConfig) *roomRig {
	t.Helper()
	x := &roomRig{rtNode: newRTNode(t, cfg), r: ref("r")}
	x.a, x.sa = x.connect()
	x.ja = x.join(t, x.a, "ada", "r", "s-ada")
	x.w, x.sw = x.connect()
	x.l = x.watch(t, x.w, "wes", x.ja.RoomToken)
	return x
}

func TestRealtimeJoin(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, sa, sw, ja, l := x.rtNode, x.r, x.sa, x.sw, x.ja, x.l
	if ja.RoomToken == "" || ja.SessionToken == "" || ja.Room != r || ja.UserID != "ada" {
		t.Fatalf("joined %+v", ja.HeartbeatOutput)
	}
	if got := onlineIDs(ja.Snapshot.Members); got != "ada" || ja.Snapshot.Version != 1 || ja.Version != 1 {
		t.Fatalf("snapshot %q at %d (join at %d), want ada at 1", got, ja.Snapshot.Version, ja.Version)
	}
	if s, ok := n.store.Session(r, "s-ada"); !ok || !s.Held || s.Epoch != ja.SessionEpoch {
		t.Fatalf("session %+v %v: want held by the node", s, ok)
	}
	wantRooms(t, n, "r")
	if got := onlineIDs(l.Members); got != "ada" || l.Version != 1 || l.Stale {
		t.Fatalf("watching %q at %d (stale %v)", got, l.Version, l.Stale)
	}
	b, _ := n.connect()
	jb := n.join(t, b, "bob", "r", "s-bob")
	if jb.Version != l.Version+1 || onlineIDs(jb.Snapshot.Members) != "ada bob" {
		t.Fatalf("bob joined at %d with %q", jb.Version, onlineIDs(jb.Snapshot.Members))
	}
	waitTrace(t, sw, r, "join:bob@2")
	u := sw.received(r)[0]
	if u.Event == nil || u.Sync != nil || u.Event.Kind != presence.EventJoin || u.Version != l.Version+1 ||
		u.Event.Member == nil || !u.Event.Member.Online || u.Event.Member.UserID != "bob" {
		t.Fatalf("update %+v, event %+v", u, u.Event)
	}
	// The room's connections share one Update.
	waitTrace(t, sa, r, "join:bob@2")
	if sa.received(r)[0] != u {
		t.Fatal("ada's connection got another Update than the watcher")
	}

	// A second session of ada (another connection) changes no version.
	a2, sa2 := n.connect()
	j2 := n.join(t, a2, "ada", "r", "s-ada-2")
	if j2.Version != jb.Version || j2.Snapshot.Version != jb.Version {
		t.Fatalf("second session at %d, snapshot at %d: want %d", j2.Version, j2.Snapshot.Version, jb.Version)
	}
	if m := j2.Snapshot.Members[0]; m.UserID != "ada" || m.Sessions != 2 {
		t.Fatalf("member %+v: want ada with 2 sessions", m)
	}
	// The next change is the next version: no event came between.
	n.setData(t, "bob", "r", `{"x":1}`)
	waitTrace(t, sw, r, "join:bob@2 update:bob@3")
	expectTrace(t, sa, r, "join:bob@2 update:bob@3")
	expectTrace(t, sa2, r, "update:bob@3")
	if got := n.rt.Keeper().Len(); got != 3 {
		t.Fatalf("keeper holds %d sessions, want 3", got)
	}
	if n.rt.Synced() != 0 {
		t.Fatalf("synced %d, want none", n.rt.Synced())
	}
}

func TestRealtimeGapSyncs(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, sa, sw, ja, l := x.rtNode, x.r, x.sa, x.sw, x.ja, x.l
	n.beat(t, "bob", "r")
	n.beat(t, "carol", "r")
	n.store.DropEvents(1)
	n.beat(t, "dave", "r") // 4: lost
	n.beat(t, "eve", "r")  // 5: a gap, so a sync instead
	want := "join:bob@2 join:carol@3 sync@5[ada bob carol dave eve]"
	waitTrace(t, sw, r, want)
	expectTrace(t, sa, r, want)
	if u := sw.received(r)[2]; u.Sync.Version != 5 || u.Event != nil || u != sa.received(r)[2] {
		t.Fatalf("sync %+v: want one shared Update of the room at 5", u)
	}
	// Later events follow it, in order.
	n.setData(t, "bob", "r", `"away"`)
	n.disconnect(t, n.beat(t, "bob", "r").SessionToken)
	want += " update:bob@6 leave:bob@7"
	waitTrace(t, sw, r, want)
	expectTrace(t, sa, r, want)
	for _, v := range []string{sw.view(r, l), sa.view(r, ja.Snapshot)} {
		if v != n.online(t, "r") {
			t.Fatalf("client shows %q, the room is %q", v, n.online(t, "r"))
		}
	}

	// Events that come while the sync is being read are held back: the
	// sync has them, and they are not sent again after it.
	entered, release := gate(t, n, "List")
	n.store.DropEvents(1)
	n.beat(t, "fay", "r") // 8: lost
	n.beat(t, "gus", "r") // 9: a gap; the sync waits in its read
	waitClosed(t, "the sync's read", entered)
	n.beat(t, "hal", "r") // 10, while the sync is read
	release()
	n.store.FailFunc(nil)
	want += " sync@10[ada carol dave eve fay gus hal]"
	waitTrace(t, sw, r, want)
	n.setData(t, "hal", "r", `1`)
	want += " update:hal@11"
	waitTrace(t, sw, r, want)
	expectTrace(t, sa, r, want)
	if got := n.rt.Synced(); got != 4 {
		t.Fatalf("synced %d, want 4 (2 syncs × 2 connections)", got)
	}
}

func TestRealtimeResubscribeSyncsEveryConnection(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, q, a, sa, sw := x.rtNode, x.r, ref("q"), x.a, x.sa, x.sw
	b, sb := n.connect()
	n.join(t, b, "bob", "r", "s-bob")
	c, sc := n.connect()
	n.join(t, c, "carol", "q", "s-carol")
	n.join(t, a, "ada", "q", "s-ada")

	n.store.Resubscribe()
	waitTrace(t, sa, r, "join:bob@2 sync@2[ada bob]")
	waitTrace(t, sb, r, "sync@2[ada bob]")
	waitTrace(t, sw, r, "join:bob@2 sync@2[ada bob]")
	waitTrace(t, sa, q, "sync@2[ada carol]")
	waitTrace(t, sc, q, "join:ada@2 sync@2[ada carol]")
	if got := n.rt.Synced(); got != 5 {
		t.Fatalf("synced %d, want 5", got)
	}
	// Events go on after the sync.
	n.beat(t, "dave", "r")
	waitTrace(t, sw, r, "join:bob@2 sync@2[ada bob] join:dave@3")
	expectTrace(t, sb, r, "sync@2[ada bob] join:dave@3")
	expectTrace(t, sa, r, "join:bob@2 sync@2[ada bob] join:dave@3")
}

func TestRealtimeLostData(t *testing.T) {
	t.Run("Restart", func(t *testing.T) {
		x := newRoomRig(t, presence.RealtimeConfig{})
		n, r, sa, sw, ja, l := x.rtNode, x.r, x.sa, x.sw, x.ja, x.l
		b, sb := n.connect()
		jb := n.join(t, b, "bob", "r", "s-bob")
		n.beat(t, "carol", "r")

		n.store.Restart()
		// The keeper puts the node's sessions back, with their epochs;
		// carol's, which no node holds, went with the data.
		waitEqual(t, "the room", "ada bob", func() string { return n.online(t, "r") })
		if s, ok := n.store.Session(r, "s-ada"); !ok || !s.Held || s.Epoch != ja.SessionEpoch {
			t.Fatalf("ada's session %+v %v: want held again, epoch %s", s, ok, ja.SessionEpoch)
		}
		for i, c := range []struct {
			s    *sink
			base *presence.RoomList
		}{{sa, ja.Snapshot}, {sb, jb.Snapshot}, {sw, l}} {
			waitFor(t, fmt.Sprintf("a sync of connection %d", i), func() bool { return c.s.syncs(r) > 0 })
			waitEqual(t, fmt.Sprintf("what connection %d shows", i), "ada bob", func() string { return c.s.view(r, c.base) })
		}
		// The tokens stay valid.
		n.disconnect(t, jb.SessionToken)
		waitEqual(t, "what the watcher shows", "ada", func() string { return sw.view(r, l) })
	})

	t.Run("LoseData", func(t *testing.T) {
		// Without a lost subscription: the next event is a version
		// regression, so the core syncs; the keeper finds its lease gone
		// and puts its sessions back (a short lease: it renews soon).
		x := newRoomRig(t, presence.RealtimeConfig{Lease: time.Second})
		n, r, sa, sw, ja, l := x.rtNode, x.r, x.sa, x.sw, x.ja, x.l
		n.beat(t, "bob", "r")
		n.store.LoseData()
		n.beat(t, "carol", "r") // 1 again
		waitFor(t, "the regression's sync", func() bool { return strings.HasPrefix(sw.trace(r), "join:bob@2 sync@1[carol]") })
		waitEqual(t, "the room", "ada carol", func() string { return n.online(t, "r") })
		waitEqual(t, "what the watcher shows", "ada carol", func() string { return sw.view(r, l) })
		waitEqual(t, "what ada's connection shows", "ada carol", func() string { return sa.view(r, ja.Snapshot) })
	})
}

// TestRealtimeRegressionToTheLastVersion: the store lost its data and its
// next event has the version the core delivered last.
func TestRealtimeRegressionToTheLastVersion(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{Lease: time.Second}) // the core delivered ada's join, 1
	n, r, sw, l := x.rtNode, x.r, x.sw, x.l
	n.store.LoseData()
	n.beat(t, "carol", "r") // 1 again
	waitEqual(t, "the room", "ada carol", func() string { return n.online(t, "r") })
	waitEqual(t, "what the watcher shows", "ada carol", func() string { return sw.view(r, l) })
}

func TestRealtimeLeave(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, a, sa, w, sw := x.rtNode, x.r, x.a, x.sa, x.w, x.sw

	left, err := a.Leave(as("ada"), "r")
	if err != nil || left.Room != r || !left.Dropped {
		t.Fatalf("leave: %+v, %v", left, err)
	}
	waitTrace(t, sw, r, "leave:ada@2")
	if _, ok := n.store.Session(r, "s-ada"); ok || n.rt.Keeper().Len() != 0 {
		t.Fatalf("the session lives on (keeper holds %d)", n.rt.Keeper().Len())
	}
	_, err = a.Leave(as("ada"), "r")
	wantCode(t, err, presence.ENOTFOUND)
	n.beat(t, "bob", "r")
	waitTrace(t, sw, r, "leave:ada@2 join:bob@3")
	expectTrace(t, sa, r, "leave:ada@2")

	// Joined and watching: a leave keeps the room watched, an unwatch
	// drops it.
	c, sc := n.connect()
	jc := n.join(t, c, "carol", "r", "s-carol")
	n.watch(t, c, "carol", jc.RoomToken)
	if left, err = c.Leave(as("carol"), "r"); err != nil || left.Dropped {
		t.Fatalf("leave of a watched room: %+v, %v", left, err)
	}
	n.beat(t, "dave", "r")
	waitTrace(t, sc, r, "leave:carol@5 join:dave@6")
	if left, err = c.Unwatch("r"); err != nil || left.Room != r || !left.Dropped {
		t.Fatalf("unwatch: %+v, %v", left, err)
	}
	_, err = c.Unwatch("r")
	wantCode(t, err, presence.ENOTFOUND)
	n.beat(t, "eve", "r")
	waitTrace(t, sw, r, "leave:ada@2 join:bob@3 join:carol@4 leave:carol@5 join:dave@6 join:eve@7")
	expectTrace(t, sc, r, "leave:carol@5 join:dave@6")

	// Nobody uses the room any more: the node stops following it.
	wantRooms(t, n, "r")
	if _, err := w.Unwatch("r"); err != nil {
		t.Fatal(err)
	}
	wantRooms(t, n)
}

func TestRealtimeClose(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, a, w, sw := x.rtNode, x.r, x.a, x.w, x.sw
	b, _ := n.connect()
	n.join(t, b, "bob", "r", "s-bob")

	// Closed by its client: the sessions end now.
	a.Close(true)
	waitTrace(t, sw, r, "join:bob@2 leave:ada@3")
	if _, ok := n.store.Session(r, "s-ada"); ok {
		t.Fatal("ada's session lives on")
	}

	// Lost: the session lives on until its deadline.
	b.Close(false)
	s, ok := n.store.Session(r, "s-bob")
	if !ok || s.Held || !s.Deadline.After(time.Now()) {
		t.Fatalf("bob's session %+v %v: want handed to a deadline", s, ok)
	}
	if n.rt.Keeper().Len() != 0 {
		t.Fatalf("keeper holds %d sessions", n.rt.Keeper().Len())
	}
	ctx := context.Background()
	if k, err := n.store.Reap(ctx, time.Now()); err != nil || k != 0 || n.online(t, "r") != "bob" {
		t.Fatalf("reaped %d (%v) before the deadline; online %q", k, err, n.online(t, "r"))
	}
	if k, err := n.store.Reap(ctx, s.Deadline); err != nil || k != 1 {
		t.Fatalf("reaped %d at the deadline, %v", k, err)
	}
	// Nothing came between: the hand-over is no change.
	waitTrace(t, sw, r, "join:bob@2 leave:ada@3 leave:bob@4")

	w.Close(false)
	wantRooms(t, n)
}

// TestRealtimeOwnEndIsNotSessionEnded: Sink.SessionEnded is for sessions
// ended by someone else; a connection's own leave, close or replaced
// session is not one.
func TestRealtimeOwnEndIsNotSessionEnded(t *testing.T) {
	n := newRTNode(t, presence.RealtimeConfig{})
	a, sa := n.connect()
	n.join(t, a, "ada", "r", "s-ada")
	n.join(t, a, "ada", "r", "s-ada-2") // replaces s-ada
	if _, err := a.Leave(as("ada"), "r"); err != nil {
		t.Fatal(err)
	}
	n.join(t, a, "ada", "q", "s-ada")
	a.Close(true)
	if got := sa.endedRooms(); got != "" {
		t.Fatalf("SessionEnded for %q", got)
	}
}

func TestRealtimeRemovedRoom(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, sa, w, sw, ja := x.rtNode, x.r, x.sa, x.w, x.sw, x.ja

	admin := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: testOrg, Admin: true})
	if err := n.svc.RemoveRoom(admin, "r"); err != nil {
		t.Fatal(err)
	}
	// The token watcher gets the room as removed: empty, at the removal.
	waitTrace(t, sw, r, "sync@2[]")
	if u := sw.received(r)[0]; u.Event != nil || u.Version != 2 || u.Sync.Version != 2 || u.Sync.Members == nil || len(u.Sync.Members) != 0 {
		t.Fatalf("removal %+v: want an empty sync at 2", u.Sync)
	}
	// Ada's session went with the room.
	waitEqual(t, "sessions ended", "r", sa.endedRooms)
	waitTrace(t, sa, r, "sync@2[]")
	if _, ok := w.Resync(context.Background(), r, 0); ok {
		t.Fatal("a resync of a removed room's token watch")
	}

	// The room's new life reaches its joined connections only.
	c, sc := n.connect()
	jc := n.join(t, c, "carol", "r", "s-carol")
	n.beat(t, "dave", "r")
	waitTrace(t, sc, r, "join:dave@4")
	expectTrace(t, sw, r, "sync@2[]")

	// A watch with the old token: an empty, stale room that never changes.
	w2, sw2 := n.connect()
	_, l2, err := w2.Watch(as("wes"), ja.RoomToken)
	if err != nil || !l2.Stale || len(l2.Members) != 0 {
		t.Fatalf("watch with the old token: %+v, %v", l2, err)
	}
	if _, ok := w2.Resync(context.Background(), r, 0); ok {
		t.Fatal("a resync of a stale watch")
	}
	n.beat(t, "eve", "r")
	waitTrace(t, sc, r, "join:dave@4 join:eve@5")
	expectTrace(t, sw2, r, "")
	expectTrace(t, sw, r, "sync@2[]")

	// The new life's token follows it again.
	if l := n.watch(t, w, "wes", jc.RoomToken); l.Stale || l.Version != 5 || onlineIDs(l.Members) != "carol dave eve" {
		t.Fatalf("watch with the new token: %+v", l)
	}
	n.beat(t, "fay", "r")
	waitTrace(t, sw, r, "sync@2[] join:fay@6")
	expectTrace(t, sw2, r, "")
}

func TestRealtimeSessionEndedElsewhere(t *testing.T) {
	t.Run("LastSession", func(t *testing.T) {
		x := newRoomRig(t, presence.RealtimeConfig{})
		n, r, a, sa, w, sw, ja := x.rtNode, x.r, x.a, x.sa, x.w, x.sw, x.ja

		n.disconnect(t, ja.SessionToken)
		waitEqual(t, "sessions ended", "r", sa.endedRooms)
		waitTrace(t, sw, r, "leave:ada@2")
		_, err := a.Leave(as("ada"), "r")
		wantCode(t, err, presence.ENOTFOUND)
		wantCode(t, a.Update(as("ada"), "r", json.RawMessage(`1`)), presence.ENOTFOUND)
		// The connection follows the room no more.
		n.beat(t, "bob", "r")
		waitTrace(t, sw, r, "leave:ada@2 join:bob@3")
		expectTrace(t, sa, r, "leave:ada@2")
		if n.rt.Keeper().Len() != 0 {
			t.Fatalf("keeper holds %d sessions", n.rt.Keeper().Len())
		}
		w.Close(false)
		wantRooms(t, n)
	})

	t.Run("AnotherSessionLivesOn", func(t *testing.T) {
		// The user stays online: an "ended" notice, no event.
		x := newRoomRig(t, presence.RealtimeConfig{})
		n, r, a, sa, sw, ja := x.rtNode, x.r, x.a, x.sa, x.sw, x.ja
		n.beat(t, "ada", "r")

		n.disconnect(t, ja.SessionToken)
		waitEqual(t, "sessions ended", "r", sa.endedRooms)
		if got := n.online(t, "r"); got != "ada" {
			t.Fatalf("online %q", got)
		}
		_, err := a.Leave(as("ada"), "r")
		wantCode(t, err, presence.ENOTFOUND)
		n.beat(t, "bob", "r")
		waitTrace(t, sw, r, "join:bob@2")
		expectTrace(t, sa, r, "")
	})
}

func TestRealtimeLimits(t *testing.T) {
	n := newRTNode(t, presence.RealtimeConfig{MaxRooms: 2})
	a, _ := n.connect()
	n.join(t, a, "ada", "r1", "s-ada")
	b, _ := n.connect()
	jb := n.join(t, b, "bob", "r2", "s-bob")
	n.watch(t, a, "ada", jb.RoomToken)
	wantCode(t, a.Update(as("ada"), "r2", json.RawMessage(`1`)), presence.ENOTFOUND) // watched, not joined
	wantCode(t, a.Update(as("ada"), "r9", json.RawMessage(`1`)), presence.ENOTFOUND)
	wantCode(t, a.Update(as("ada"), "r1", nil), presence.EINVALID)

	// A third room is refused, and changes nothing.
	hc := n.beat(t, "carol", "r3")
	held, v3 := n.rt.Keeper().Len(), n.version(t, "r3")
	_, err := a.Join(as("ada"), presence.HeartbeatInput{RoomID: "r3", SessionID: "s-ada"})
	wantCode(t, err, presence.ELIMIT)
	_, _, err = a.Watch(as("ada"), hc.RoomToken)
	wantCode(t, err, presence.ELIMIT)
	if _, ok := n.store.Session(ref("r3"), "s-ada"); ok || n.version(t, "r3") != v3 || n.rt.Keeper().Len() != held {
		t.Fatal("a refused join changed the room or the keeper")
	}
	wantRooms(t, n, "r1", "r2")

	// The rooms the connection uses do not count again.
	n.join(t, a, "ada", "r1", "s-ada")
	n.join(t, a, "ada", "r2", "s-ada")
	n.watch(t, a, "ada", jb.RoomToken)
	if err := a.Update(as("ada"), "r2", json.RawMessage(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	// Leaving one frees a place.
	if _, err := a.Leave(as("ada"), "r1"); err != nil {
		t.Fatal(err)
	}
	n.join(t, a, "ada", "r3", "s-ada")
	wantRooms(t, n, "r2", "r3")

	// A room token of another org.
	zed := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: "other", UserID: "zed", Verified: true})
	out, err := n.svc.Heartbeat(zed, presence.HeartbeatInput{RoomID: "r4", SessionID: "s-zed"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := n.connect()
	_, _, err = c.Watch(as("ada"), out.RoomToken)
	wantCode(t, err, presence.EFORBIDDEN)
	wantRooms(t, n, "r2", "r3")
}

func TestRealtimeStoreOutage(t *testing.T) {
	t.Run("Unavailable", func(t *testing.T) {
		n, r := newRTNode(t, presence.RealtimeConfig{}), ref("r")
		hc := n.beat(t, "carol", "r")
		a, sa := n.connect()
		w, sw := n.connect()
		n.store.Fail(presencetest.ErrUnavailable)
		_, err := a.Join(as("ada"), presence.HeartbeatInput{RoomID: "r", SessionID: "s-ada"})
		wantCode(t, err, presence.EUNAVAILABLE)
		_, _, err = w.Watch(as("wes"), hc.RoomToken)
		wantCode(t, err, presence.EUNAVAILABLE)
		wantRooms(t, n)
		if n.rt.Keeper().Len() != 0 {
			t.Fatalf("keeper holds %d sessions", n.rt.Keeper().Len())
		}
		n.store.Fail(nil)
		n.join(t, a, "ada", "r", "s-ada")
		n.watch(t, w, "wes", hc.RoomToken)
		n.beat(t, "bob", "r")
		waitTrace(t, sw, r, "join:bob@3")
		expectTrace(t, sa, r, "join:bob@3")
	})

	// A join whose heartbeat or snapshot fails leaves nothing behind: the
	// client was told it failed.
	// (A failed snapshot comes after the session was created: its join and
	// its end are versions 1 and 2.)
	for _, step := range []struct{ name, op, trace string }{
		{"JoinHeartbeatFails", "Heartbeat", "join:bob@2"},
		{"JoinSnapshotFails", "List", "join:bob@4"},
	} {
		t.Run(step.name, func(t *testing.T) {
			n, r := newRTNode(t, presence.RealtimeConfig{}), ref("r")
			a, sa := n.connect()
			n.failOp(step.op)
			_, err := a.Join(as("ada"), presence.HeartbeatInput{RoomID: "r", SessionID: "s-ada"})
			wantCode(t, err, presence.EUNAVAILABLE)
			n.store.FailFunc(nil)
			wantRooms(t, n)
			if _, ok := n.store.Session(r, "s-ada"); ok || n.rt.Keeper().Len() != 0 {
				t.Fatal("a failed join left a session")
			}
			n.join(t, a, "ada", "r", "s-ada")
			n.beat(t, "bob", "r")
			waitTrace(t, sa, r, step.trace)
		})
	}

	t.Run("SyncWaitsForTheStore", func(t *testing.T) {
		// A gap while the store does not answer reads: the sync comes once
		// it does.
		n, r := newRTNode(t, presence.RealtimeConfig{}), ref("r")
		a, sa := n.connect()
		n.join(t, a, "ada", "r", "s-ada")
		n.failOp("List")
		n.store.DropEvents(1)
		n.beat(t, "bob", "r")
		n.beat(t, "carol", "r")
		if _, ok := a.Resync(context.Background(), r, 0); ok {
			t.Fatal("a resync while the store is away")
		}
		waitFor(t, "sync attempts", func() bool { return n.store.Calls("List") >= 3 })
		expectTrace(t, sa, r, "")
		n.store.FailFunc(nil)
		waitTrace(t, sa, r, "sync@3[ada bob carol]")
		n.beat(t, "dave", "r")
		waitTrace(t, sa, r, "sync@3[ada bob carol] join:dave@4")
	})
}

// TestRealtimeJoinWhileUnsubscribing: the last connection of a room leaves
// it (the node unsubscribes) while another connection joins it: the join
// waits for the unsubscribe, and its own subscription stays.
func TestRealtimeJoinWhileUnsubscribing(t *testing.T) {
	n, r := newRTNode(t, presence.RealtimeConfig{}), ref("r")
	a, _ := n.connect()
	n.join(t, a, "ada", "r", "s-ada")
	entered, release := gate(t, n, "Unsubscribe")
	left := make(chan error, 1)
	go func() {
		_, err := a.Leave(as("ada"), "r")
		left <- err
	}()
	waitClosed(t, "the unsubscribe", entered)
	// The join waits for the unsubscribe to finish, then subscribes afresh.
	b, sb := n.connect()
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		n.join(t, b, "bob", "r", "s-bob")
	}()
	release()
	if err := <-left; err != nil {
		t.Fatal(err)
	}
	<-joined
	n.store.FailFunc(nil)
	n.beat(t, "carol", "r")
	wantRooms(t, n, "r")
	waitTrace(t, sb, r, "join:carol@4")
}

// Sequencer cases TestSequencer leaves out: what Rooms lists, and what
// Forget keeps and drops.
func TestSequencerForgetAndRooms(t *testing.T) {
	a, b, c := ref("a"), ref("b"), ref("c")
	q := presence.NewSequencer()
	rooms := func(want ...presence.RoomRef) {
		t.Helper()
		got := q.Rooms()
		slices.SortFunc(got, func(x, y presence.RoomRef) int { return strings.Compare(x.RoomID, y.RoomID) })
		if !slices.Equal(got, want) {
			t.Fatalf("rooms %v, want %v", got, want)
		}
	}
	step := func(room presence.RoomRef, version int64, want presence.Step) {
		t.Helper()
		if got := q.Event(room, version); got != want {
			t.Fatalf("event %s@%d: %v, want %v", room.RoomID, version, got, want)
		}
	}
	// Only rooms with a snapshot are the client's.
	step(a, 3, presence.Skip)
	step(b, 1, presence.Skip)
	rooms()
	q.Snapshot(a, 3)
	rooms(a)
	q.Snapshot(b, 5)
	q.Snapshot(c, 7)
	rooms(a, b, c)

	// Forgetting one room keeps the others' versions.
	q.Forget(a)
	q.Forget(a)
	rooms(b, c)
	step(b, 6, presence.Write)
	step(c, 8, presence.Write)
	step(b, 8, presence.Resync)

	// A forgotten room's events wait for a new snapshot again.
	q.Forget(b)
	step(b, 9, presence.Skip)
	step(b, 10, presence.Skip)
	if q.Sync(b, 10) {
		t.Fatal("a sync of a forgotten room was taken")
	}
	rooms(c)
	if got := q.Snapshot(b, 9); got != 10 {
		t.Fatalf("snapshot at 9 after an event at 10: resync to %d, want 10", got)
	}
	step(b, 10, presence.Write)

	// A sync may set the version back (the store lost its data).
	if !q.Sync(b, 2) {
		t.Fatal("sync refused")
	}
	step(b, 3, presence.Write)
	step(b, 10, presence.Resync)

	// Forget drops what came before a snapshot too.
	step(a, 7, presence.Skip)
	step(a, 5, presence.Skip)
	q.Forget(a)
	if got := q.Snapshot(a, 1); got != 0 {
		t.Fatalf("an event of before the Forget asked for a resync to %d", got)
	}
	q.Forget(a)
	q.Forget(b)
	q.Forget(c)
	rooms()
}

// TestRealtimeCatchUp: a version read elsewhere (the primary, while the
// region's replica and its events lag) that is ahead of what the node
// delivered syncs the room's connections; one it has delivered does
// nothing. Rooms lists the rooms the node follows.
func TestRealtimeCatchUp(t *testing.T) {
	x := newRoomRig(t, presence.RealtimeConfig{})
	n, r, sa, sw := x.rtNode, x.r, x.sa, x.sw
	if got := n.rt.Rooms(); len(got) != 1 || got[0] != r {
		t.Fatalf("rooms %v", got)
	}
	n.rt.CatchUp(r, 1) // delivered already
	n.rt.CatchUp(ref("other"), 9)
	n.store.DropEvents(1)
	n.beat(t, "bob", "r") // 2: its event is late (lost here)
	n.rt.CatchUp(r, 2)
	want := "sync@2[ada bob]"
	waitTrace(t, sw, r, want)
	expectTrace(t, sa, r, want)
	if got := n.rt.Synced(); got != 2 {
		t.Fatalf("synced %d, want 2", got)
	}
}
