package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// backend is a Redis that the contract suite runs against.
type backend struct {
	name    string
	addr    string
	srv     *redistest.Server // nil for the embedded store and the cluster
	cluster []string          // a Redis Cluster's masters
}

// client returns a client of the backend, closed when the test ends.
func (b backend) client(t testing.TB) redis.UniversalClient {
	var c redis.UniversalClient
	if b.cluster != nil {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: b.cluster})
	} else {
		c = redis.NewClient(&redis.Options{Addr: b.addr})
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// backends starts every backend the contract suite covers: a real
// redis-server, a real 3-master Redis Cluster and the embedded store.
func backends(t *testing.T) []backend {
	srv := redistest.Start(t)
	emb, err := redisstore.StartEmbedded("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cl := redistest.StartCluster(t)
	return []backend{
		{name: "redis", addr: srv.Addr(), srv: srv},
		{name: "cluster", cluster: cl.Addrs()},
		{name: "embedded", addr: emb.Addr()},
	}
}

// harness is a Service on a Store with a clock the test moves.
type harness struct {
	t      testing.TB
	rdb    redis.UniversalClient
	store  *redisstore.Store
	svc    *presence.Service
	prefix string
	org    string
	mu     sync.Mutex
	now    time.Time
}

func newHarness(t testing.TB, b backend, cfg redisstore.Config) *harness {
	t.Helper()
	rdb := b.client(t)
	cfg.Cluster = b.cluster != nil
	if cfg.Prefix == "" {
		cfg.Prefix = redistest.UniquePrefix(t)
	}
	h := &harness{t: t, rdb: rdb, prefix: cfg.Prefix, org: "acme", now: time.UnixMilli(1_800_000_000_000)}
	h.store = redisstore.NewStore(rdb, cfg)
	secret, err := h.store.EnsureSecret(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := presence.NewTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = presence.NewService(h.store, tokens, presence.ServiceConfig{Node: "n1@local", Now: h.clock})
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

// as returns a context for a verified user of the harness's org.
func (h *harness) as(user string) context.Context {
	return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.org, UserID: user, Verified: true})
}

func (h *harness) admin() context.Context {
	return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.org, Admin: true})
}

func (h *harness) beat(user, room, session string, interval time.Duration) *presence.HeartbeatOutput {
	h.t.Helper()
	out, err := h.svc.Heartbeat(h.as(user), presence.HeartbeatInput{RoomID: room, SessionID: session, Interval: interval})
	if err != nil {
		h.t.Fatalf("heartbeat %s/%s/%s: %v", user, room, session, err)
	}
	return out
}

func (h *harness) list(token string) *presence.RoomList {
	h.t.Helper()
	l, err := h.svc.List(context.Background(), token, 0)
	if err != nil {
		h.t.Fatalf("list: %v", err)
	}
	return l
}

func (h *harness) reap() int {
	h.t.Helper()
	n, err := h.store.Reap(context.Background(), h.clock())
	if err != nil {
		h.t.Fatalf("reap: %v", err)
	}
	return n
}

func (h *harness) member(token, user string) *presence.Member {
	h.t.Helper()
	for _, m := range h.list(token).Members {
		if m.UserID == user {
			return &m
		}
	}
	return nil
}

// keys lists keys matching pattern on every master.
func (h *harness) keys(pattern string) ([]string, error) {
	if cl, ok := h.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var all []string
		err := cl.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
			k, err := c.Keys(ctx, pattern).Result()
			mu.Lock()
			all = append(all, k...)
			mu.Unlock()
			return err
		})
		return all, err
	}
	return h.rdb.Keys(context.Background(), pattern).Result()
}

func ids(l *presence.RoomList) []string {
	out := make([]string, len(l.Members))
	for i, m := range l.Members {
		out[i] = m.UserID
	}
	return out
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := presence.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// flipLast changes a token's second-to-last character (always a change).
func flipLast(tok string) string {
	c := byte('A')
	if tok[len(tok)-2] == 'A' {
		c = 'B'
	}
	return tok[:len(tok)-2] + string(c) + tok[len(tok)-1:]
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// subscribe collects the events published on a room's channel.
type events struct {
	mu  sync.Mutex
	got []map[string]any
}

func (h *harness) subscribe(room string) *events {
	h.t.Helper()
	rk := h.store.Keys().Room(presence.RoomRef{Org: h.org, RoomID: room})
	var ps *redis.PubSub
	if _, ok := h.rdb.(*redis.ClusterClient); ok {
		ps = h.rdb.SSubscribe(context.Background(), rk.Events)
	} else {
		ps = h.rdb.Subscribe(context.Background(), rk.Events)
	}
	if _, err := ps.Receive(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { ps.Close() })
	e := &events{}
	go func() {
		for msg := range ps.Channel() {
			var m map[string]any
			if err := json.Unmarshal([]byte(msg.Payload), &m); err != nil {
				panic(fmt.Sprintf("event is not JSON: %q", msg.Payload))
			}
			e.mu.Lock()
			e.got = append(e.got, m)
			e.mu.Unlock()
		}
	}()
	return e
}

// waitFor polls until the events satisfy ok, for up to 5 s.
func (e *events) waitFor(t testing.TB, what string, ok func([]map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		got := append([]map[string]any(nil), e.got...)
		e.mu.Unlock()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; events: %v", what, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(evs []map[string]any, kind string) int {
	n := 0
	for _, e := range evs {
		if e["event"] == kind {
			n++
		}
	}
	return n
}

func TestStoreContract(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, newHarness(t, b, redisstore.Config{}))
				})
			}
		})
	}
}

var sec = time.Second

var contract = []struct {
	name string
	run  func(t *testing.T, h *harness)
}{
	{"JoinAndList", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 0)
		if out.Interval != 10000 || out.RoomToken == "" || out.SessionToken == "" {
			t.Fatalf("heartbeat = %+v", out)
		}
		l := h.list(out.RoomToken)
		if l.RoomID != "lobby" || l.Version != 1 || len(l.Members) != 1 {
			t.Fatalf("list = %+v", l)
		}
		m := l.Members[0]
		if m.UserID != "u1" || !m.Online || m.Sessions != 1 || m.LastDisconnected != 0 || m.Data != nil {
			t.Fatalf("member = %+v", m)
		}
	}},
	{"TwoRoomsIsolated", func(t *testing.T, h *harness) {
		a := h.beat("u1", "a", "s1", 0)
		b := h.beat("u2", "b", "s2", 0)
		if got := ids(h.list(a.RoomToken)); !equal(got, []string{"u1"}) {
			t.Fatalf("room a = %v", got)
		}
		if got := ids(h.list(b.RoomToken)); !equal(got, []string{"u2"}) {
			t.Fatalf("room b = %v", got)
		}
		if a.RoomToken == b.RoomToken {
			t.Fatal("two rooms share a token")
		}
	}},
	{"TimeoutToOffline", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", sec)
		h.advance(2400 * time.Millisecond)
		h.reap()
		if m := h.member(out.RoomToken, "u1"); !m.Online {
			t.Fatalf("offline before the timeout: %+v", m)
		}
		h.advance(200 * time.Millisecond)
		if n := h.reap(); n != 1 {
			t.Fatalf("reaped %d sessions, want 1", n)
		}
		m := h.member(out.RoomToken, "u1")
		if m.Online || m.Sessions != 0 || m.LastDisconnected != h.clock().UnixMilli() {
			t.Fatalf("after timeout: %+v (now %d)", m, h.clock().UnixMilli())
		}
	}},
	{"HeartbeatsKeepOnline", func(t *testing.T, h *harness) {
		var out *presence.HeartbeatOutput
		for i := 0; i < 10; i++ {
			out = h.beat("u1", "lobby", "s1", sec)
			h.advance(2 * sec)
			h.reap()
		}
		if m := h.member(out.RoomToken, "u1"); !m.Online {
			t.Fatalf("went offline while beating: %+v", m)
		}
		if v := h.list(out.RoomToken).Version; v != 1 {
			t.Fatalf("version = %d after keep-alives, want 1", v)
		}
	}},
	{"DisconnectAtOnce", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 0)
		if err := h.svc.Disconnect(context.Background(), out.SessionToken); err != nil {
			t.Fatal(err)
		}
		m := h.member(out.RoomToken, "u1")
		if m.Online || m.LastDisconnected != h.clock().UnixMilli() {
			t.Fatalf("after disconnect: %+v", m)
		}
	}},
	{"TwoSessions", func(t *testing.T, h *harness) {
		a := h.beat("u1", "lobby", "tab1", 0)
		b := h.beat("u1", "lobby", "tab2", 0)
		if m := h.member(a.RoomToken, "u1"); m.Sessions != 2 {
			t.Fatalf("sessions = %d, want 2", m.Sessions)
		}
		if v := h.list(a.RoomToken).Version; v != 1 {
			t.Fatalf("a second tab changed the version to %d", v)
		}
		h.svc.Disconnect(context.Background(), a.SessionToken)
		if m := h.member(a.RoomToken, "u1"); !m.Online || m.Sessions != 1 {
			t.Fatalf("after first disconnect: %+v", m)
		}
		h.svc.Disconnect(context.Background(), b.SessionToken)
		if m := h.member(a.RoomToken, "u1"); m.Online {
			t.Fatalf("after last disconnect: %+v", m)
		}
	}},
	{"RejoinAfterTimeout", func(t *testing.T, h *harness) {
		first := h.beat("u1", "lobby", "s1", sec)
		h.advance(3 * sec)
		h.reap()
		second := h.beat("u1", "lobby", "s1", sec)
		if second.RoomToken != first.RoomToken {
			t.Fatal("room token changed on rejoin")
		}
		if second.SessionToken == first.SessionToken {
			t.Fatal("session token reused after a timeout")
		}
		// The old token must not end the new session.
		if err := h.svc.Disconnect(context.Background(), first.SessionToken); err != nil {
			t.Fatal(err)
		}
		if m := h.member(first.RoomToken, "u1"); !m.Online {
			t.Fatal("an old session token ended the newer session")
		}
	}},
	{"TimeoutWithoutReaperStillNewSession", func(t *testing.T, h *harness) {
		// A heartbeat after the deadline, before any reaper ran, is a new session.
		first := h.beat("u1", "lobby", "s1", sec)
		ev := h.subscribe("lobby")
		h.advance(3 * sec)
		second := h.beat("u1", "lobby", "s1", sec)
		if second.SessionToken == first.SessionToken {
			t.Fatal("expired session resumed")
		}
		ev.waitFor(t, "leave then join", func(e []map[string]any) bool {
			return len(e) == 2 && e[0]["event"] == "leave" && e[1]["event"] == "join"
		})
	}},
	{"SessionIDOfAnotherUserConflicts", func(t *testing.T, h *harness) {
		h.beat("u1", "lobby", "s1", 0)
		_, err := h.svc.Heartbeat(h.as("u2"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1"})
		wantCode(t, err, presence.ECONFLICT)
	}},
	{"ForgedTokens", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 0)
		for _, tok := range []string{"", "garbage", out.RoomToken + "x", out.SessionToken, flipLast(out.RoomToken)} {
			_, err := h.svc.List(context.Background(), tok, 0)
			wantCode(t, err, presence.EINVALID)
		}
		for _, tok := range []string{"", "garbage", out.RoomToken, flipLast(out.SessionToken)} {
			wantCode(t, h.svc.Disconnect(context.Background(), tok), presence.EINVALID)
		}
		if m := h.member(out.RoomToken, "u1"); !m.Online {
			t.Fatal("a forged token changed state")
		}
	}},
	{"RepeatedDisconnectIsNoop", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 0)
		for i := 0; i < 3; i++ {
			if err := h.svc.Disconnect(context.Background(), out.SessionToken); err != nil {
				t.Fatal(err)
			}
		}
		if v := h.list(out.RoomToken).Version; v != 2 {
			t.Fatalf("version = %d, want 2 (join, leave)", v)
		}
	}},
	{"RoomTokenSharedByUsers", func(t *testing.T, h *harness) {
		a := h.beat("u1", "lobby", "s1", 0)
		b := h.beat("u2", "lobby", "s2", 0)
		c := h.beat("u1", "lobby", "s1", 0)
		if a.RoomToken != b.RoomToken || a.RoomToken != c.RoomToken {
			t.Fatal("room tokens differ")
		}
	}},
	{"Ordering", func(t *testing.T, h *harness) {
		tok := map[string]*presence.HeartbeatOutput{}
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			tok[u] = h.beat(u, "lobby", "s-"+u, 0)
			h.advance(sec)
		}
		h.beat("u1", "lobby", "s-u1", 0) // a refresh keeps the face-pile stable
		h.svc.Disconnect(context.Background(), tok["u2"].SessionToken)
		h.advance(sec)
		h.svc.Disconnect(context.Background(), tok["u1"].SessionToken)
		got := ids(h.list(tok["u1"].RoomToken))
		if want := []string{"u3", "u4", "u1", "u2"}; !equal(got, want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
		// Coming back online puts the user at the end of the online ones.
		h.beat("u2", "lobby", "s-u2b", 0)
		got = ids(h.list(tok["u1"].RoomToken))
		if want := []string{"u3", "u4", "u2", "u1"}; !equal(got, want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
	}},
	{"Limit", func(t *testing.T, h *harness) {
		var out *presence.HeartbeatOutput
		for i := 0; i < 110; i++ {
			out = h.beat(fmt.Sprintf("u%03d", i), "big", fmt.Sprintf("s%d", i), 0)
		}
		if n := len(h.list(out.RoomToken).Members); n != 104 {
			t.Fatalf("default limit gave %d members", n)
		}
		l, err := h.svc.List(context.Background(), out.RoomToken, 7)
		if err != nil || len(l.Members) != 7 || l.Members[6].UserID != "u006" {
			t.Fatalf("limit 7: %v %v", err, l)
		}
		_, err = h.svc.List(context.Background(), out.RoomToken, 1001)
		wantCode(t, err, presence.EINVALID)
		_, err = h.svc.List(context.Background(), out.RoomToken, -1)
		wantCode(t, err, presence.EINVALID)
		c, err := h.svc.Count(h.as("u000"), "big")
		if err != nil || c.Online != 110 || c.Sessions != 110 || c.Version != 110 {
			t.Fatalf("count = %+v, %v", c, err)
		}
	}},
	{"Data", func(t *testing.T, h *harness) {
		out, err := h.svc.Heartbeat(h.as("u1"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1", Data: json.RawMessage(`{"a": 1, "b": [1,2]}`)})
		if err != nil {
			t.Fatal(err)
		}
		if m := h.member(out.RoomToken, "u1"); string(m.Data) != `{"a":1,"b":[1,2]}` {
			t.Fatalf("data = %s", m.Data)
		}
		if err := h.svc.SetData(h.as("u1"), "lobby", "u1", json.RawMessage(`{"c":true}`)); err != nil {
			t.Fatal(err)
		}
		if m := h.member(out.RoomToken, "u1"); string(m.Data) != `{"c":true}` {
			t.Fatalf("data not replaced whole: %s", m.Data)
		}
		v := h.list(out.RoomToken).Version
		if err := h.svc.SetData(h.as("u1"), "lobby", "u1", json.RawMessage(`{"c":true}`)); err != nil {
			t.Fatal(err)
		}
		if h.list(out.RoomToken).Version != v {
			t.Fatal("setting the same data changed the version")
		}
		h.svc.Disconnect(context.Background(), out.SessionToken)
		if m := h.member(out.RoomToken, "u1"); m.Online || string(m.Data) != `{"c":true}` {
			t.Fatalf("offline member lost its data: %+v", m)
		}
		wantCode(t, h.svc.SetData(h.as("u9"), "lobby", "u9", json.RawMessage(`1`)), presence.ENOTFOUND)
		wantCode(t, h.svc.SetData(h.as("u2"), "lobby", "u1", json.RawMessage(`1`)), presence.EFORBIDDEN)
		if err := h.svc.SetData(h.admin(), "lobby", "u1", json.RawMessage(`null`)); err != nil {
			t.Fatal(err)
		}
		if m := h.member(out.RoomToken, "u1"); m.Data != nil {
			t.Fatalf("null did not clear the data: %s", m.Data)
		}
	}},
	{"RemoveMember", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 0)
		h.beat("u2", "lobby", "s2", 0)
		if err := h.svc.RemoveMember(h.admin(), "lobby", "u1"); err != nil {
			t.Fatal(err)
		}
		if got := ids(h.list(out.RoomToken)); !equal(got, []string{"u2"}) {
			t.Fatalf("after remove: %v", got)
		}
		c, _ := h.svc.Count(h.admin(), "lobby")
		if c.Online != 1 || c.Sessions != 1 {
			t.Fatalf("count after remove = %+v", c)
		}
		// Its old session is gone: a heartbeat makes a new one.
		if again := h.beat("u1", "lobby", "s1", 0); again.SessionToken == out.SessionToken {
			t.Fatal("removed member's session survived")
		}
	}},
	{"RemoveRoom", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 0)
		v := h.list(out.RoomToken).Version
		wantCode(t, h.svc.RemoveRoom(h.as("u1"), "lobby"), presence.EFORBIDDEN)
		if err := h.svc.RemoveRoom(h.admin(), "lobby"); err != nil {
			t.Fatal(err)
		}
		if l := h.list(out.RoomToken); len(l.Members) != 0 {
			t.Fatalf("old token still lists %v", ids(l))
		}
		again := h.beat("u1", "lobby", "s1", 0)
		if again.RoomToken == out.RoomToken {
			t.Fatal("room token unchanged after removal")
		}
		l := h.list(again.RoomToken)
		if !equal(ids(l), []string{"u1"}) || l.Version <= v {
			t.Fatalf("new life: %+v (old version %d)", l, v)
		}
		if l := h.list(out.RoomToken); len(l.Members) != 0 {
			t.Fatal("old token lists the room's new life")
		}
	}},
	{"UserRooms", func(t *testing.T, h *harness) {
		a := h.beat("u1", "a", "s1", 0)
		h.beat("u1", "b", "s2", 0)
		h.beat("u1", "c", "s3", 0)
		h.svc.Disconnect(context.Background(), a.SessionToken)
		rooms, err := h.svc.UserRooms(h.as("u1"), "u1", false, 0)
		if err != nil || len(rooms) != 3 || !rooms[0].Online || !rooms[1].Online || rooms[2].RoomID != "a" || rooms[2].Online || rooms[2].LastDisconnected == 0 {
			t.Fatalf("rooms = %+v, %v", rooms, err)
		}
		rooms, _ = h.svc.UserRooms(h.as("u1"), "u1", true, 0)
		if len(rooms) != 2 {
			t.Fatalf("online rooms = %+v", rooms)
		}
		_, err = h.svc.UserRooms(h.as("u2"), "u1", false, 0)
		wantCode(t, err, presence.EFORBIDDEN)
		h.svc.RemoveMember(h.admin(), "b", "u1")
		rooms, _ = h.svc.UserRooms(h.admin(), "u1", false, 0)
		if len(rooms) != 2 {
			t.Fatalf("after removal from b: %+v", rooms)
		}
	}},
	{"SignOut", func(t *testing.T, h *harness) {
		a := h.beat("u1", "a", "s1", 0)
		b := h.beat("u1", "b", "s2", 0)
		h.beat("u1", "b", "s3", 0)
		h.beat("u2", "b", "s4", 0)
		n, err := h.svc.SignOut(h.as("u1"), "", false)
		if err != nil || n != 2 {
			t.Fatalf("signout = %d, %v", n, err)
		}
		if m := h.member(a.RoomToken, "u1"); m.Online {
			t.Fatal("still online in a")
		}
		if m := h.member(b.RoomToken, "u1"); m == nil || m.Online {
			t.Fatalf("in b: %+v", m)
		}
		if m := h.member(b.RoomToken, "u2"); !m.Online {
			t.Fatal("signout of u1 touched u2")
		}
		if n, err := h.svc.SignOut(h.as("u1"), "", false); err != nil || n != 0 {
			t.Fatalf("second signout = %d, %v", n, err)
		}
		n, err = h.svc.SignOut(h.as("u1"), "", true)
		if err != nil || n != 2 || h.member(b.RoomToken, "u1") != nil {
			t.Fatalf("signout forget = %d, %v", n, err)
		}
	}},
	{"ShorterIntervalPullsDeadlineIn", func(t *testing.T, h *harness) {
		out := h.beat("u1", "lobby", "s1", 60*sec)
		h.beat("u1", "lobby", "s1", sec)
		h.advance(2600 * time.Millisecond)
		h.reap()
		if m := h.member(out.RoomToken, "u1"); m.Online {
			t.Fatal("the shorter interval did not pull the deadline in")
		}
	}},
	{"SeventyExpireTogether", func(t *testing.T, h *harness) {
		ev := h.subscribe("crowd")
		var out *presence.HeartbeatOutput
		for i := 0; i < 70; i++ {
			out = h.beat(fmt.Sprintf("u%d", i), "crowd", fmt.Sprintf("s%d", i), sec)
		}
		h.advance(3 * sec)
		if n := h.reap(); n != 70 {
			t.Fatalf("reaped %d, want 70", n)
		}
		for _, m := range h.list(out.RoomToken).Members {
			if m.Online {
				t.Fatalf("%s still online", m.UserID)
			}
		}
		ev.waitFor(t, "70 leaves", func(e []map[string]any) bool { return count(e, "leave") == 70 })
	}},
	{"ShortSessionInRoomOfLongOnes", func(t *testing.T, h *harness) {
		var out *presence.HeartbeatOutput
		for i := 0; i < 5; i++ {
			out = h.beat(fmt.Sprintf("long%d", i), "mixed", fmt.Sprintf("l%d", i), 600*sec)
		}
		h.advance(sec)
		h.reap() // the room is not due: nothing to do
		h.beat("short", "mixed", "s", sec)
		h.advance(2600 * time.Millisecond)
		if n := h.reap(); n != 1 {
			t.Fatalf("reaped %d, want 1", n)
		}
		for _, m := range h.list(out.RoomToken).Members {
			if m.Online != (m.UserID != "short") {
				t.Fatalf("%+v", m)
			}
		}
	}},
	{"VersionsAndEvents", func(t *testing.T, h *harness) {
		ev := h.subscribe("ev")
		out := h.beat("u1", "ev", "s1", 0)                                // join: v1
		h.beat("u1", "ev", "s1", 0)                                       // keep-alive: nothing
		h.beat("u1", "ev", "s2", 0)                                       // second tab: nothing
		h.svc.SetData(h.as("u1"), "ev", "u1", json.RawMessage(`{"x":1}`)) // update: v2
		h.svc.Disconnect(context.Background(), out.SessionToken)          // first tab ends: nothing
		h.svc.SignOut(h.as("u1"), "", false)                              // leave: v3
		h.svc.RemoveMember(h.admin(), "ev", "u1")                         // remove: v4
		got := ev.waitFor(t, "4 events", func(e []map[string]any) bool { return len(e) >= 4 })
		time.Sleep(50 * time.Millisecond)
		if len(got) != 4 {
			t.Fatalf("events = %v", got)
		}
		for i, kind := range []string{"join", "update", "leave", "remove"} {
			if got[i]["event"] != kind || got[i]["version"] != float64(i+1) || got[i]["userId"] != "u1" {
				t.Fatalf("event %d = %v, want %s v%d", i, got[i], kind, i+1)
			}
		}
		m := got[1]["member"].(map[string]any)
		if m["online"] != true || m["sessions"] != float64(2) || fmt.Sprint(m["data"]) != "map[x:1]" {
			t.Fatalf("update member = %v", m)
		}
		if m := got[2]["member"].(map[string]any); m["online"] != false || m["lastDisconnected"] != float64(h.clock().UnixMilli()) {
			t.Fatalf("leave member = %v", m)
		}
	}},
	{"ProfileFromIdentity", func(t *testing.T, h *harness) {
		ctx := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.org, UserID: "u1", Name: "Ada \"L\"", Image: "https://x/a.png", Verified: true})
		out, err := h.svc.Heartbeat(ctx, presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1", Name: "ignored"})
		if err != nil {
			t.Fatal(err)
		}
		if m := h.member(out.RoomToken, "u1"); m.Name != "Ada \"L\"" || m.Image != "https://x/a.png" {
			t.Fatalf("profile = %+v", m)
		}
	}},
	{"UserIDMustBeSubject", func(t *testing.T, h *harness) {
		_, err := h.svc.Heartbeat(h.as("u1"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1", UserID: "u2"})
		wantCode(t, err, presence.EFORBIDDEN)
	}},
	{"OrgIsolation", func(t *testing.T, h *harness) {
		a := h.beat("u1", "lobby", "s1", 0)
		other := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: "other", UserID: "u2", Verified: true})
		b, err := h.svc.Heartbeat(other, presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1"})
		if err != nil {
			t.Fatalf("same sessionId in another org: %v", err)
		}
		if got := ids(h.list(a.RoomToken)); !equal(got, []string{"u1"}) {
			t.Fatalf("org acme sees %v", got)
		}
		if got := ids(h.list(b.RoomToken)); !equal(got, []string{"u2"}) {
			t.Fatalf("org other sees %v", got)
		}
		l, _ := h.svc.Members(other, "lobby", false, 0)
		if !equal(ids(l), []string{"u2"}) {
			t.Fatalf("members of other = %v", ids(l))
		}
	}},
	{"Retention", func(t *testing.T, h *harness) {
		out := h.beat("old", "lobby", "s1", 0)
		h.svc.Disconnect(context.Background(), out.SessionToken)
		h.advance(167 * time.Hour)
		if got := ids(h.list(out.RoomToken)); !equal(got, []string{"old"}) {
			t.Fatalf("before the retention: %v", got)
		}
		h.advance(2 * time.Hour)
		if got := ids(h.list(out.RoomToken)); len(got) != 0 {
			t.Fatalf("after the retention, with no change to the room: %v", got)
		}
		h.beat("new", "lobby", "s2", 0)
		if got := ids(h.list(out.RoomToken)); !equal(got, []string{"new"}) {
			t.Fatalf("after retention: %v", got)
		}
	}},
	{"KeysExpire", func(t *testing.T, h *harness) {
		h.beat("u1", "lobby", "s1", 0)
		keys, err := h.keys(h.prefix + ":*")
		if err != nil || len(keys) < 6 {
			t.Fatalf("keys = %v, %v", keys, err)
		}
		for _, k := range keys {
			ttl, _ := h.rdb.PTTL(context.Background(), k).Result()
			if k == h.prefix+":secret" || k == h.prefix+":incarnation" || strings.HasPrefix(k, h.prefix+":deadlines:") {
				continue // the token secret and the deadline index are shared, not room state
			}
			if ttl <= 0 || ttl > 168*time.Hour+26*time.Minute {
				t.Fatalf("key %s has ttl %v", k, ttl)
			}
		}
	}},
}

func TestTwoNodesExpireExactlyOnce(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			a := newHarness(t, b, redisstore.Config{})
			c := newHarness(t, b, redisstore.Config{Prefix: a.prefix})
			ev := a.subscribe("r")
			const users = 50
			for i := 0; i < users; i++ {
				a.beat(fmt.Sprintf("u%d", i), "r", fmt.Sprintf("s%d", i), sec)
			}
			a.advance(3 * sec)
			c.advance(3 * sec)
			var wg sync.WaitGroup
			var total atomic.Int64
			for _, h := range []*harness{a, c, a, c} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := h.store.Reap(context.Background(), h.clock())
					if err != nil {
						t.Error(err)
					}
					total.Add(int64(n))
				}()
			}
			wg.Wait()
			if total.Load() != users {
				t.Fatalf("reaped %d sessions in all, want %d", total.Load(), users)
			}
			got := ev.waitFor(t, "leaves", func(e []map[string]any) bool { return count(e, "leave") >= users })
			time.Sleep(100 * time.Millisecond)
			if n := count(got, "leave"); n != users {
				t.Fatalf("%d leaves published, want %d", n, users)
			}
			// Both nodes answer the same.
			tok := a.beat("u0", "r", "s-again", sec).RoomToken
			if fmt.Sprint(a.list(tok)) != fmt.Sprint(c.list(tok)) {
				t.Fatal("nodes disagree")
			}
		})
	}
}

// TestReaperRealTime runs the background reaper with the real clock: a
// session with a 1 s interval is offline within 2.5 s + 1 s.
func TestReaperRealTime(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b, redisstore.Config{})
			h.svc = presence.NewService(h.store, h.svc.Tokens(), presence.ServiceConfig{})
			if err := h.store.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer h.store.Close()
			start := time.Now()
			out := h.beat("u1", "lobby", "s1", sec)
			for {
				if m := h.member(out.RoomToken, "u1"); !m.Online {
					break
				}
				if time.Since(start) > 3500*time.Millisecond {
					t.Fatalf("still online after %v", time.Since(start))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if d := time.Since(start); d < 2500*time.Millisecond {
				t.Fatalf("offline after %v, before the 2.5 s timeout", d)
			}
		})
	}
}

// TestRedisRestart: after Redis restarts empty, the store loads its scripts
// again and restores the token secret, so tokens clients hold stay valid.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, backend{name: "redis", addr: srv.Addr()}, redisstore.Config{ReapInterval: 20 * time.Millisecond})
	if err := h.store.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.store.Close()
	before := h.beat("u1", "lobby", "s1", 0)
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := h.svc.Heartbeat(h.as("u1"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1"})
		if err == nil {
			if _, err := h.svc.List(context.Background(), before.RoomToken, 0); err != nil {
				t.Fatalf("old room token after restart: %v", err)
			}
			if out.RoomToken == "" {
				t.Fatal("no token")
			}
			break
		}
		wantCode(t, err, presence.EUNAVAILABLE)
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		v, _ := h.rdb.Get(context.Background(), h.prefix+":secret").Result()
		if v != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("token secret not restored")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBatchedHeartbeats: concurrent heartbeats go out in shared pipelines,
// and each caller gets its own result: a conflict goes to the one caller
// whose sessionId belongs to another user.
func TestBatchedHeartbeats(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, redisstore.Config{})
			if err := h.store.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer h.store.Close()
			for i := 0; i < 100; i++ {
				h.beat(fmt.Sprintf("owner%d", i), "r", fmt.Sprintf("taken%d", i), 0)
			}
			var wg sync.WaitGroup
			errs := make([]error, 400)
			outs := make([]*presence.HeartbeatOutput, 400)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sid := fmt.Sprintf("free%d", i)
					if i%4 == 0 {
						sid = fmt.Sprintf("taken%d", i/4)
					}
					outs[i], errs[i] = h.svc.Heartbeat(h.as(fmt.Sprintf("u%d", i)), presence.HeartbeatInput{RoomID: "r", SessionID: sid})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if i%4 == 0 {
					wantCode(t, err, presence.ECONFLICT)
					continue
				}
				if err != nil {
					t.Fatalf("heartbeat %d: %v", i, err)
				}
				_, sid, _, _ := h.svc.Tokens().ParseSessionToken(outs[i].SessionToken)
				if sid != fmt.Sprintf("free%d", i) {
					t.Fatalf("heartbeat %d got the token of %s", i, sid)
				}
			}
			c, _ := h.svc.Count(h.admin(), "r")
			if c.Online != 400 || c.Sessions != 400 {
				t.Fatalf("count = %+v, want 400 online (100 owners + 300)", c)
			}
		})
	}
}

// TestClusterIndexSpread: in Redis Cluster the deadline index is spread
// over keys in different slots (and masters), so no single key is hot.
func TestClusterIndexSpread(t *testing.T) {
	cl := redistest.StartCluster(t)
	h := newHarness(t, backend{name: "cluster", cluster: cl.Addrs()}, redisstore.Config{})
	for i := 0; i < 64; i++ {
		h.beat("u", fmt.Sprintf("room-%d", i), fmt.Sprintf("s%d", i), 0)
	}
	keys, err := h.keys(h.prefix + ":deadlines:*")
	if err != nil {
		t.Fatal(err)
	}
	masters := map[string]bool{}
	for _, k := range keys {
		c, err := h.rdb.(*redis.ClusterClient).MasterForKey(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		masters[c.Options().Addr] = true
	}
	if len(keys) < 8 || len(masters) < 2 {
		t.Fatalf("index keys %v on %d masters", keys, len(masters))
	}
	h.advance(30 * time.Second)
	if n := h.reap(); n != 64 {
		t.Fatalf("reaped %d of 64 sessions across the shards", n)
	}
}
