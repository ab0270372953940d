package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presencecluster/presence/cmd/internal/clitest"
	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/presencecluster/presence/pkg/webhooktest"
	"github.com/redis/go-redis/v9"
)

// node is a presence.Service on a redisstore.Store: state is made through
// the real rules (the Lua scripts), never by writing keys by hand.
type node struct {
	t     testing.TB
	svc   *presence.Service
	store *redisstore.Store
	rdb   *redis.Client
}

func newNode(t testing.TB, addr, prefix, label string) *node {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	store := redisstore.NewStore(rdb, redisstore.Config{Prefix: prefix})
	secret, err := store.EnsureSecret(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := presence.NewTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	return &node{t: t, rdb: rdb, store: store, svc: presence.NewService(store, tokens, presence.ServiceConfig{Node: label})}
}

// beat makes a heartbeat of user (a verified user of org) and returns its output.
func (n *node) beat(org, user, name, room, session string, interval time.Duration) *presence.HeartbeatOutput {
	n.t.Helper()
	ctx := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: org, UserID: user, Name: name, Verified: true})
	out, err := n.svc.Heartbeat(ctx, presence.HeartbeatInput{RoomID: room, SessionID: session, Interval: interval})
	if err != nil {
		n.t.Fatalf("heartbeat %s/%s/%s: %v", user, room, session, err)
	}
	return out
}

func (n *node) disconnect(out *presence.HeartbeatOutput) {
	n.t.Helper()
	if err := n.svc.Disconnect(context.Background(), out.SessionToken); err != nil {
		n.t.Fatal(err)
	}
}

// ctl runs presencectl with args and the given environment.
func ctl(t testing.TB, env map[string]string, args ...string) clitest.Result {
	t.Helper()
	return clitest.Run(t, run, env, args...)
}

// rows returns the whitespace-separated fields of each non-empty line.
func rows(s string) [][]string {
	var out [][]string
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

func wantRows(t testing.TB, got string, want ...string) {
	t.Helper()
	r := rows(got)
	var g []string
	for _, f := range r {
		g = append(g, strings.Join(f, " "))
	}
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("output rows:\n%s\nwant:\n%s\noutput:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"), got)
	}
}

// populate builds, through two nodes, in org "default":
//
//	game:  ada (s3, node a), bob (s4, node a), carl (s5, node b)
//	lobby: ada (s1 on node a with a 4 s interval, s2 on node b with 20 s), bob offline
//	quiet: bob offline
//
// and in org "acme" a room "secret" with eve.
func populate(t testing.TB, addr, prefix string) (a, b *node) {
	a = newNode(t, addr, prefix, "node-a@eu-west")
	b = newNode(t, addr, prefix, "node-b@us-east")
	a.beat("default", "ada", "Ada Lovelace", "lobby", "s1", 4*time.Second)
	b.beat("default", "ada", "Ada Lovelace", "lobby", "s2", 20*time.Second)
	a.disconnect(a.beat("default", "bob", "", "lobby", "s9", 10*time.Second))
	a.disconnect(a.beat("default", "bob", "", "quiet", "s8", 10*time.Second))
	a.beat("default", "ada", "Ada Lovelace", "game", "s3", 10*time.Second)
	a.beat("default", "bob", "", "game", "s4", 10*time.Second)
	b.beat("default", "carl", "", "game", "s5", 10*time.Second)
	a.beat("acme", "eve", "", "secret", "s6", 10*time.Second)
	return a, b
}

func TestRooms(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.UniquePrefix(t)
	populate(t, srv.Addr(), prefix)
	env := map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": prefix}

	r := ctl(t, env, "rooms").OK(t)
	wantRows(t, r.Stdout,
		"ROOM VERSION ONLINE SESSIONS",
		"game 3 3 3",
		"lobby 3 1 2",
		"quiet 2 0 0")

	got := clitest.Decode[roomsOutput](t, ctl(t, env, "--json", "rooms").OK(t).Stdout)
	want := roomsOutput{Org: "default", Total: 3, Rooms: []presence.RoomCount{
		{RoomID: "game", Version: 3, Online: 3, Sessions: 3},
		{RoomID: "lobby", Version: 3, Online: 1, Sessions: 2},
		{RoomID: "quiet", Version: 2, Online: 0, Sessions: 0},
	}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rooms --json = %+v, want %+v", got, want)
	}

	// --limit shows the top rows of all the rooms; flags after the command work too.
	r = ctl(t, env, "rooms", "--limit", "1", "--json").OK(t)
	got = clitest.Decode[roomsOutput](t, r.Stdout)
	if got.Total != 3 || len(got.Rooms) != 1 || got.Rooms[0].RoomID != "game" {
		t.Fatalf("rooms --limit 1 = %+v", got)
	}
	r = ctl(t, env, "rooms", "--limit", "2").OK(t)
	if len(rows(r.Stdout)) != 3 || !strings.Contains(r.Stderr, "showing 2 of 3 rooms") {
		t.Fatalf("rooms --limit 2:\n%s\nstderr: %s", r.Stdout, r.Stderr)
	}

	// Another org and another prefix are other rooms.
	got = clitest.Decode[roomsOutput](t, ctl(t, env, "--org", "acme", "--json", "rooms").OK(t).Stdout)
	if got.Total != 1 || got.Rooms[0] != (presence.RoomCount{RoomID: "secret", Version: 1, Online: 1, Sessions: 1}) {
		t.Fatalf("rooms of acme = %+v", got)
	}
	r = ctl(t, env, "--prefix", prefix+"x", "rooms").OK(t)
	if r.Stdout != fmt.Sprintf("no rooms in org \"default\" (prefix %q)\n", prefix+"x") {
		t.Fatalf("rooms of an unused prefix: %q", r.Stdout)
	}
}

// TestRoomsGlobPrefix: a prefix with glob characters matches only itself.
func TestRoomsGlobPrefix(t *testing.T) {
	srv := redistest.Start(t)
	newNode(t, srv.Addr(), "p*[x]", "n@r").beat("default", "ada", "", "one", "s1", 10*time.Second)
	newNode(t, srv.Addr(), "pZx", "n@r").beat("default", "bob", "", "two", "s1", 10*time.Second)
	got := clitest.Decode[roomsOutput](t, ctl(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL()}, "--prefix", "p*[x]", "--json", "rooms").OK(t).Stdout)
	if got.Total != 1 || got.Rooms[0].RoomID != "one" {
		t.Fatalf("rooms = %+v", got)
	}
}

var deadlineRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+(\.\d)?s\)$`)

func TestRoom(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.UniquePrefix(t)
	before := time.Now()
	populate(t, srv.Addr(), prefix)
	after := time.Now()
	env := map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": prefix}

	got := clitest.Decode[roomOutput](t, ctl(t, env, "room", "lobby", "--json").OK(t).Stdout)
	if got.Org != "default" || got.RoomID != "lobby" || got.Version != 3 || got.Online != 1 || got.SessionCount != 2 {
		t.Fatalf("room = %+v", got)
	}
	if len(got.Members) != 2 ||
		got.Members[0].UserID != "ada" || !got.Members[0].Online || got.Members[0].Sessions != 2 || got.Members[0].Name != "Ada Lovelace" ||
		got.Members[1].UserID != "bob" || got.Members[1].Online || got.Members[1].Sessions != 0 ||
		got.Members[1].LastDisconnected < before.UnixMilli() || got.Members[1].LastDisconnected > after.UnixMilli() {
		t.Fatalf("members = %+v", got.Members)
	}
	// Earliest deadline first: s1 (4 s × 2.5), then s2 (20 s × 2.5). HTTP
	// sessions live by their deadline: they name no node.
	if len(got.Sessions) != 2 {
		t.Fatalf("sessions = %+v", got.Sessions)
	}
	for i, w := range []struct {
		id, node string
		timeout  time.Duration
	}{{"s1", "", 10 * time.Second}, {"s2", "", 50 * time.Second}} {
		s := got.Sessions[i]
		if s.SessionID != w.id || s.UserID != "ada" || s.Node != w.node {
			t.Fatalf("session %d = %+v, want %s of ada on %s", i, s, w.id, w.node)
		}
		if s.DeadlineMs < before.Add(w.timeout).UnixMilli() || s.DeadlineMs > after.Add(w.timeout).UnixMilli() {
			t.Fatalf("session %s deadline %d not within [%v, %v] + %v", s.SessionID, s.DeadlineMs, before, after, w.timeout)
		}
		if d, err := time.Parse(time.RFC3339, s.Deadline); err != nil || d.UnixMilli() != s.DeadlineMs {
			t.Fatalf("session %s deadline %q (%v) is not %d", s.SessionID, s.Deadline, err, s.DeadlineMs)
		}
	}

	r := ctl(t, env, "room", "lobby").OK(t)
	rs := rows(r.Stdout)
	if len(rs) != 7 {
		t.Fatalf("room output:\n%s", r.Stdout)
	}
	if h := strings.Join(rs[0], " "); h != "room lobby org default version 3 online 1 sessions 2" {
		t.Fatalf("header %q", h)
	}
	if h := strings.Join(rs[1], " "); h != "USER ONLINE SESSIONS LAST DISCONNECTED NAME" {
		t.Fatalf("members header %q", h)
	}
	if l := strings.Join(rs[2], " "); l != "ada yes 2 - Ada Lovelace" {
		t.Fatalf("ada row %q", l)
	}
	if l := rs[3]; len(l) != 7 || strings.Join(l[:3], " ") != "bob no 0" || l[5] != "ago)" || l[6] != "-" {
		t.Fatalf("bob row %q", l)
	}
	if h := strings.Join(rs[4], " "); h != "SESSION USER NODE DEADLINE" {
		t.Fatalf("sessions header %q", h)
	}
	for i, w := range [][]string{{"s1", "ada", "-"}, {"s2", "ada", "-"}} {
		l := rs[5+i]
		if len(l) != 6 || strings.Join(l[:3], " ") != strings.Join(w, " ") || !deadlineRE.MatchString(strings.Join(l[3:], " ")) {
			t.Fatalf("session row %q, want %v and a deadline", l, w)
		}
	}

	// --limit bounds members and sessions.
	got = clitest.Decode[roomOutput](t, ctl(t, env, "--json", "room", "--limit", "1", "lobby").OK(t).Stdout)
	if len(got.Members) != 1 || got.Members[0].UserID != "ada" || len(got.Sessions) != 1 || got.Sessions[0].SessionID != "s1" || got.SessionCount != 2 {
		t.Fatalf("room --limit 1 = %+v", got)
	}

	// The room of another org is not this org's.
	r = ctl(t, env, "room", "secret")
	if r.Code != 1 || !strings.Contains(r.Stderr, `room "secret" not found in org "default"`) {
		t.Fatalf("room of another org: %+v", r)
	}
	got = clitest.Decode[roomOutput](t, ctl(t, env, "--org", "acme", "--json", "room", "secret").OK(t).Stdout)
	if len(got.Members) != 1 || got.Members[0].UserID != "eve" || got.Sessions[0].Node != "" {
		t.Fatalf("room secret of acme = %+v", got)
	}
}

func TestUser(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.UniquePrefix(t)
	populate(t, srv.Addr(), prefix)
	env := map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": prefix}

	got := clitest.Decode[userOutput](t, ctl(t, env, "user", "bob", "--json").OK(t).Stdout)
	if got.Org != "default" || got.UserID != "bob" || len(got.Rooms) != 3 {
		t.Fatalf("user bob = %+v", got)
	}
	if got.Presence != (presence.UserPresence{UserID: "bob", Online: true, Rooms: 1}) {
		t.Fatalf("org-wide presence of bob = %+v", got.Presence)
	}
	// Online first, then offline, most recently disconnected first.
	if got.Rooms[0] != (presence.UserRoom{RoomID: "game", Online: true}) ||
		got.Rooms[1].RoomID != "quiet" || got.Rooms[1].Online || got.Rooms[1].LastDisconnected == 0 ||
		got.Rooms[2].RoomID != "lobby" || got.Rooms[2].Online || got.Rooms[2].LastDisconnected > got.Rooms[1].LastDisconnected {
		t.Fatalf("rooms of bob = %+v", got.Rooms)
	}

	r := ctl(t, env, "user", "bob").OK(t)
	rs := rows(r.Stdout)
	if len(rs) != 4 || strings.Join(rs[0], " ") != "ROOM ONLINE LAST DISCONNECTED" ||
		strings.Join(rs[1], " ") != "game yes -" ||
		strings.Join(rs[2][:2], " ") != "quiet no" || rs[2][len(rs[2])-1] != "ago)" ||
		strings.Join(rs[3][:2], " ") != "lobby no" {
		t.Fatalf("user bob:\n%s", r.Stdout)
	}

	r = ctl(t, env, "user", "nobody").OK(t)
	if r.Stdout != "user \"nobody\" has no rooms in org \"default\"\n" {
		t.Fatalf("user nobody: %q", r.Stdout)
	}
	if got := clitest.Decode[userOutput](t, ctl(t, env, "--json", "user", "nobody").OK(t).Stdout); got.Rooms == nil || len(got.Rooms) != 0 {
		t.Fatalf("user nobody --json = %+v", got)
	}
}

// syncBuffer is a bytes.Buffer that a running command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	srv := redistest.Start(t)
	for _, jsonOut := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%t", jsonOut), func(t *testing.T) {
			prefix := redistest.UniquePrefix(t)
			a, _ := populate(t, srv.Addr(), prefix)
			env := map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": prefix}
			args := []string{"watch", "lobby"}
			if jsonOut {
				args = append(args, "--json")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout, stderr syncBuffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, args, &stdout, &stderr, func(k string) string { return env[k] }) }()

			channel := a.store.Keys().Room(presence.RoomRef{Org: "default", RoomID: "lobby"}).Events
			waitFor(t, "the subscription", func() bool {
				n, _ := srv.Client(t).PubSubNumSub(context.Background(), channel).Result()
				return n[channel] == 1
			})
			out := a.beat("default", "dora", "", "lobby", "s7", 10*time.Second)
			a.beat("default", "dora", "", "lobby", "s7", 10*time.Second) // a refresh publishes nothing
			a.disconnect(out)

			if jsonOut {
				waitFor(t, "two events", func() bool { return strings.Count(stdout.String(), "\n") >= 2 })
				lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
				for i, w := range []struct {
					version  int64
					kind     string
					online   bool
					sessions int
				}{{4, "join", true, 1}, {5, "leave", false, 0}} {
					var e struct {
						Version int64           `json:"version"`
						Event   string          `json:"event"`
						UserID  string          `json:"userId"`
						Member  presence.Member `json:"member"`
					}
					if err := json.Unmarshal([]byte(lines[i]), &e); err != nil {
						t.Fatalf("line %q: %v", lines[i], err)
					}
					if e.Version != w.version || e.Event != w.kind || e.UserID != "dora" || e.Member.UserID != "dora" ||
						e.Member.Online != w.online || e.Member.Sessions != w.sessions {
						t.Fatalf("event %d = %+v", i, e)
					}
				}
			} else {
				join := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z +v4 +join +dora +online=true sessions=1$`)
				leave := regexp.MustCompile(`(?m)^\S+ +v5 +leave +dora +online=false sessions=0$`)
				waitFor(t, "the join and leave lines", func() bool {
					s := stdout.String()
					return join.MatchString(s) && leave.MatchString(s)
				})
				if n := strings.Count(stdout.String(), "\n"); n != 2 {
					t.Fatalf("%d lines, want 2:\n%s", n, stdout.String())
				}
				if !strings.Contains(stderr.String(), "watching "+channel) {
					t.Fatalf("stderr: %q", stderr.String())
				}
			}

			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("exit %d; stderr: %s", code, stderr.String())
				}
			case <-time.After(3 * time.Second):
				t.Fatal("watch did not stop when cancelled")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	// An unreachable Redis: a usage error must be found before connecting
	// (exit 2, not 1).
	env := map[string]string{"PRESENCE_REDIS_URL": "redis://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout (code 0) or stderr
	}{
		{nil, 2, "Commands:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"room"}, 2, "room: missing <roomId>"},
		{[]string{"user"}, 2, "user: missing <userId>"},
		{[]string{"watch"}, 2, "watch: missing <roomId>"},
		{[]string{"room", "a", "b"}, 2, `room: unexpected argument "b"`},
		{[]string{"rooms", "x"}, 2, `rooms: unexpected argument "x"`},
		{[]string{"room", "a{b}"}, 2, "roomId must not contain"},
		{[]string{"room", "--limit", "0", "a"}, 2, "--limit must be 1-1000"},
		{[]string{"rooms", "--limit", "-1"}, 2, "--limit must be >= 0"},
		{[]string{"--org", "a:b", "rooms"}, 2, "--org"},
		{[]string{"--bogus", "rooms"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"rooms", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--timeout", "0", "user", "ada"}, 2, "--timeout must be positive"},
		{[]string{"bench", "heartbeat"}, 2, "the load generator is its own command now: presencebench"},
		{[]string{"help"}, 0, "watch <roomId>"},
		{[]string{"-h"}, 0, "rooms [--limit N]"},
		{[]string{"room", "-h"}, 0, "Usage: presencectl [global flags] room <roomId> [--limit N]"},
	} {
		clitest.Expect(t, run, env, tc.code, tc.out, tc.args...)
	}
}

// TestUsageListsEveryFlag: the help text names every flag, global or of a
// command, and no longer the load generator's.
func TestUsageListsEveryFlag(t *testing.T) {
	usage := ctl(t, nil, "help").OK(t).Stdout
	if strings.Contains(usage, "bench <scenario>") || strings.Contains(usage, "--run-id") {
		t.Errorf("help still shows the load generator:\n%s", usage)
	}
	for name, cmd := range commands {
		c := &cli{cliutil.Env{Globals: cliutil.DefaultGlobals(func(string) string { return "" })}}
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.Register(fs)
		if err := cmd.run(context.Background(), c, fs, []string{"-h"}); !errors.Is(err, cliutil.ErrHelp) {
			t.Fatalf("%s -h: %v", name, err)
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !regexp.MustCompile(`(^|[\s\[])--` + regexp.QuoteMeta(f.Name) + `([\s\]]|$)`).MatchString(usage) {
				t.Errorf("help lacks --%s (of %s)", f.Name, name)
			}
		})
	}
}

func TestUnreachableRedis(t *testing.T) {
	// Nothing listens on a port that was free a moment ago.
	refused := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	// A listener that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	silent := ln.Addr().String()

	for _, addr := range []string{refused, silent} {
		for _, args := range [][]string{{"rooms"}, {"room", "lobby"}, {"user", "ada"}, {"watch", "lobby"}} {
			start := time.Now()
			r := ctl(t, map[string]string{"PRESENCE_REDIS_URL": "redis://" + addr}, append([]string{"--timeout", "500ms"}, args...)...)
			took := time.Since(start)
			if r.Code != 1 || !strings.Contains(r.Stderr, "cannot reach Redis at redis://"+addr) || r.Stdout != "" {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q", addr, args, r.Code, r.Stdout, r.Stderr)
			}
			if took > 2*time.Second {
				t.Errorf("%s %q took %v with --timeout 500ms", addr, args, took)
			}
		}
	}
}

func TestEmbeddedStore(t *testing.T) {
	emb, err := redisstore.StartEmbedded("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	a := newNode(t, emb.Addr(), "presence", "node-e@local")
	a.beat("default", "ada", "", "lobby", "s1", 10*time.Second)
	a.disconnect(a.beat("default", "bob", "", "lobby", "s2", 10*time.Second))
	a.beat("default", "carl", "", "lobby", "s3", 10*time.Second)

	// Both a redis:// URL and a bare host:port name the embedded store.
	for _, url := range []string{"redis://" + emb.Addr(), emb.Addr()} {
		env := map[string]string{"PRESENCE_REDIS_URL": url}
		got := clitest.Decode[roomOutput](t, ctl(t, env, "--json", "room", "lobby").OK(t).Stdout)
		var members []string
		for _, m := range got.Members {
			members = append(members, fmt.Sprintf("%s:%t:%d", m.UserID, m.Online, m.Sessions))
		}
		var sessions []string
		for _, s := range got.Sessions {
			sessions = append(sessions, s.SessionID+":"+s.UserID+":"+s.Node)
		}
		if fmt.Sprint(members) != "[ada:true:1 carl:true:1 bob:false:0]" ||
			fmt.Sprint(sessions) != "[s1:ada: s3:carl:]" ||
			got.Version != 4 || got.Online != 2 || got.SessionCount != 2 {
			t.Fatalf("room on the embedded store (%s) = %+v", url, got)
		}
	}
	rooms := clitest.Decode[roomsOutput](t, ctl(t, map[string]string{"PRESENCE_REDIS_URL": emb.Addr()}, "--json", "rooms").OK(t).Stdout)
	if rooms.Total != 1 || rooms.Rooms[0] != (presence.RoomCount{RoomID: "lobby", Version: 4, Online: 2, Sessions: 2}) {
		t.Fatalf("rooms on the embedded store = %+v", rooms)
	}
}

// TestCluster: rooms (a SCAN over every master), room, user and watch
// (sharded pub/sub) against a real 3-master Redis Cluster.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb := cl.Client(t)
	prefix := redistest.UniquePrefix(t)
	store := redisstore.NewStore(rdb, redisstore.Config{Prefix: prefix, Cluster: true})
	secret, err := store.EnsureSecret(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	tokens, _ := presence.NewTokens(secret)
	n := &node{t: t, store: store, svc: presence.NewService(store, tokens, presence.ServiceConfig{Node: "c1@eu"})}
	rooms := []string{"lobby", "doc-1", "doc-2", "chat", "ops", "design"} // spread over slots and masters
	for i, r := range rooms {
		n.beat("default", fmt.Sprintf("u%d", i), "", r, fmt.Sprintf("s%d", i), 30*time.Second)
	}
	env := map[string]string{"PRESENCE_REDIS_CLUSTER_ADDRS": strings.Join(cl.Addrs(), ","), "PRESENCE_KEY_PREFIX": prefix}
	out := clitest.Decode[struct {
		Org   string               `json:"org"`
		Total int                  `json:"total"`
		Rooms []presence.RoomCount `json:"rooms"`
	}](t, ctl(t, env, "rooms", "--json").OK(t).Stdout)
	if out.Total != len(rooms) {
		t.Fatalf("rooms found %d, want %d (every master scanned)", out.Total, len(rooms))
	}
	room := ctl(t, env, "room", "doc-2").OK(t).Stdout
	if !strings.Contains(room, "u2") || !strings.Contains(room, "s2 ") {
		t.Fatalf("room doc-2:\n%s", room)
	}
	if user := ctl(t, env, "user", "u3").OK(t).Stdout; !strings.Contains(user, "chat") {
		t.Fatalf("user u3:\n%s", user)
	}
	// watch: sharded pub/sub on the room's master.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "ops", "--json"}, &stdout, &stderr, func(k string) string { return env[k] })
	}()
	channel := store.Keys().Room(presence.RoomRef{Org: "default", RoomID: "ops"}).Events
	waitFor(t, "the sharded subscription", func() bool {
		m, err := rdb.MasterForKey(context.Background(), channel)
		if err != nil {
			return false
		}
		res, _ := m.Do(context.Background(), "PUBSUB", "SHARDNUMSUB", channel).Slice()
		return len(res) == 2 && fmt.Sprint(res[1]) == "1"
	})
	n.beat("default", "zed", "", "ops", "sz", 30*time.Second)
	waitFor(t, "the join event", func() bool { return strings.Contains(stdout.String(), `"userId":"zed"`) })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exited %d: %s", code, stderr.String())
	}
}

// webhooks shows the backlog and the last failed request, which a node
// that cannot deliver leaves in Redis.
func TestWebhooks(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.UniquePrefix(t)
	env := map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": prefix}
	got := clitest.Decode[webhooksOutput](t, ctl(t, env, "webhooks", "--json").OK(t).Stdout)
	if got != (webhooksOutput{}) {
		t.Fatalf("webhooks before any = %+v", got)
	}
	wantRows(t, ctl(t, env, "webhooks").OK(t).Stdout, "events waiting 0", "rooms waiting 0 (due now 0, backing off after a failure 0)",
		"last failure none in the last 24h")

	rec := &webhooktest.Receiver{Secret: "presencectl-webhooks-0123", Status: func(int) int { return 503 }}
	if err := rec.Start(nil); err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	store := redisstore.NewStore(rdb, redisstore.Config{Prefix: prefix,
		Webhooks: redisstore.WebhookConfig{URL: rec.URL(), Secret: rec.Secret, MinBackoff: time.Minute}})
	if err := store.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	secret, _ := store.EnsureSecret(context.Background(), "")
	tokens, _ := presence.NewTokens(secret)
	n := &node{t: t, rdb: rdb, store: store, svc: presence.NewService(store, tokens, presence.ServiceConfig{Node: "n@local"})}
	n.disconnect(n.beat("default", "ada", "", "lobby", "s1", 10*time.Second))
	n.beat("default", "bob", "", "game", "s2", 10*time.Second)
	waitFor(t, "a failed request", func() bool {
		got = clitest.Decode[webhooksOutput](t, ctl(t, env, "webhooks", "--json").OK(t).Stdout)
		return got.LastFailure != nil && got.Retrying == 2
	})
	if got.Events != 3 || got.Rooms != 2 || got.Due != 0 || got.LastFailure.Error != "answered 503 Service Unavailable" {
		t.Fatalf("webhooks = %+v %+v", got, got.LastFailure)
	}
	out := ctl(t, env, "webhooks").OK(t).Stdout
	if !strings.Contains(out, "events waiting  3\n") || !strings.Contains(out, "rooms waiting   2 (due now 0, backing off after a failure 2)") ||
		!regexp.MustCompile(`last failure    \S+ \(.* ago\): answered 503 Service Unavailable \(\d events\)`).MatchString(out) {
		t.Fatalf("webhooks:\n%s", out)
	}
}
