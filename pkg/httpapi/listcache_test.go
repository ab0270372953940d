package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/lua"
	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// listNode is a node (auth off, no sockets) whose clock the test moves, on
// a redis-server of its own, with a retention of an hour.
type listNode struct {
	t     testing.TB
	api   *httpapi.Server
	svc   *presence.Service
	store *redisstore.Store
	rdb   *redis.Client
	srv   *redistest.Server
	reg   *prometheus.Registry
	now   atomic.Int64 // offset from the wall clock, ns
}

const listRetention = time.Hour

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newListNode(t testing.TB, cfg httpapi.Config) *listNode {
	t.Helper()
	n := &listNode{t: t, srv: redistest.Start(t), reg: prometheus.NewRegistry()}
	n.rdb = redis.NewClient(&redis.Options{Addr: n.srv.Addr()})
	t.Cleanup(func() { n.rdb.Close() })
	store := redisstore.NewStore(n.rdb, redisstore.Config{Prefix: redistest.UniquePrefix(t), Retention: listRetention})
	if err := store.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	n.store = store
	tokens, err := presence.NewTokens([]byte("listcache-test-secret-listcache-test"))
	if err != nil {
		t.Fatal(err)
	}
	n.svc = presence.NewService(store, tokens, presence.ServiceConfig{Node: "n@local",
		Now: func() time.Time { return time.Now().Add(time.Duration(n.now.Load())) }})
	cfg.Registerer, cfg.Logger = n.reg, quiet
	n.api = httpapi.NewServer(n.svc, nil, cfg)
	return n
}

type listAnswer struct {
	code int
	etag string
	body string
}

func (n *listNode) do(method, target, body string, header ...string) listAnswer {
	n.t.Helper()
	w := serve(n.t, n.api, method, target, body, header...)
	return listAnswer{w.Code, w.Header().Get("ETag"), w.Body.String()}
}

func (n *listNode) beat(user, session string) (roomToken, sessionToken string) {
	n.t.Helper()
	r := n.do("POST", "/v1/heartbeat", fmt.Sprintf(`{"roomId":"lobby","sessionId":%q,"userId":%q,"interval":600000}`, session, user))
	if r.code != 200 {
		n.t.Fatalf("heartbeat: %d %s", r.code, r.body)
	}
	return jsonField([]byte(r.body), "roomToken"), jsonField([]byte(r.body), "sessionToken")
}

func (n *listNode) mustDo(code int, method, target, body string) {
	n.t.Helper()
	if r := n.do(method, target, body); r.code != code {
		n.t.Fatalf("%s %s: %d %s", method, target, r.code, r.body)
	}
}

// answers is the node's count of list answers from source.
func (n *listNode) answers(source string) int {
	mfs, err := n.reg.Gather()
	if err != nil {
		n.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "presence_list_answers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == source {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// TestListETagAndCacheFollowChanges: after every kind of change, a list with
// the ETag from before gets the new list (never 304), and a plain list
// never the node's cached page from before; both are byte for byte the
// list the store returns (json.Marshal of presence.RoomList, as before the
// cache). Before each change, the unchanged list is a 304 and a cache hit.
func TestListETagAndCacheFollowChanges(t *testing.T) {
	n := newListNode(t, httpapi.Config{})
	room, adaTab1 := n.beat("ada", "a1")
	ctx := context.Background()
	admin := presence.NewContextWithIdentity(ctx, &presence.Identity{Org: "default", Admin: true})
	type route struct {
		target string
		fresh  func() (*presence.RoomList, error)
	}
	routes := []route{
		{"/v1/list?limit=10&roomToken=" + url.QueryEscape(room), func() (*presence.RoomList, error) { return n.svc.List(ctx, room, 10) }},
		{"/v1/rooms/lobby/members", func() (*presence.RoomList, error) { return n.svc.Members(admin, "lobby", false, 0) }},
		{"/v1/rooms/lobby/members?onlineOnly=true&limit=2", func() (*presence.RoomList, error) { return n.svc.Members(admin, "lobby", true, 2) }},
	}
	etags := make([]string, len(routes))
	bodies := make([]string, len(routes))
	fresh := func(r route) string {
		l, err := r.fresh()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(l)
		return string(b)
	}
	for i, r := range routes {
		a := n.do("GET", r.target, "")
		if a.code != 200 || a.body != fresh(r) {
			t.Fatalf("%s: %d %s", r.target, a.code, a.body)
		}
		etags[i], bodies[i] = a.etag, a.body
	}
	var cyTab string
	changes := []struct {
		what   string
		change func()
	}{
		{"join", func() { n.beat("bob", "b1") }},
		{"second tab", func() { n.beat("ada", "a2") }},
		{"a tab closed, another opened (same version, same session count)", func() {
			n.mustDo(204, "POST", "/v1/disconnect", adaTab1)
			n.beat("bob", "b2")
		}},
		{"data", func() { n.mustDo(204, "PUT", "/v1/rooms/lobby/members/bob/data", `{"cursor":1}`) }},
		{"profile", func() {
			n.do("POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"b1","userId":"bob","interval":600000,"name":"Bob"}`)
		}},
		{"join of a third", func() { _, cyTab = n.beat("cy", "c1") }},
		{"leave", func() { n.mustDo(204, "POST", "/v1/disconnect", cyTab) }},
		{"retention expiry", func() { n.now.Add(int64(listRetention + time.Second)) }},
		{"removal", func() { n.mustDo(204, "DELETE", "/v1/rooms/lobby/members/bob", "") }},
		{"room removal", func() { n.mustDo(204, "DELETE", "/v1/rooms/lobby", "") }},
	}
	for _, c := range changes {
		// Unchanged: 304, and the cached page (no list script ran).
		for i, r := range routes {
			if a := n.do("GET", r.target, "", "If-None-Match", etags[i]); a.code != 304 || a.etag != etags[i] {
				t.Fatalf("before %s: %s with its ETag: %d %q", c.what, r.target, a.code, a.etag)
			}
			hits := n.answers("cache")
			if a := n.do("GET", r.target, ""); a.code != 200 || a.body != bodies[i] || a.etag != etags[i] || n.answers("cache") != hits+1 {
				t.Fatalf("before %s: %s: %d %s, cache hits %d", c.what, r.target, a.code, a.body, n.answers("cache")-hits)
			}
		}
		c.change()
		changed := false
		for i, r := range routes {
			want := fresh(r)
			var a listAnswer
			if i%2 == 0 { // first the old ETag, then a plain list
				a = n.do("GET", r.target, "", "If-None-Match", etags[i])
			} else {
				a = n.do("GET", r.target, "")
			}
			if a.code == 304 && want == bodies[i] && a.etag == etags[i] {
				a.body = want // a list this change did not change (online only)
			} else if a.code != 200 || a.body != want {
				t.Fatalf("after %s: %s: %d %q, want 200 %s", c.what, r.target, a.code, a.body, want)
			}
			if a.body != bodies[i] {
				changed = true
				if a.etag == etags[i] {
					t.Fatalf("after %s: %s: the ETag %s did not change", c.what, r.target, a.etag)
				}
			}
			if b := n.do("GET", r.target, ""); b.body != want || b.etag != a.etag {
				t.Fatalf("after %s: %s again: %s %s", c.what, r.target, b.etag, b.body)
			}
			etags[i], bodies[i] = a.etag, a.body
		}
		if !changed {
			t.Fatalf("%s changed no list", c.what)
		}
	}
}

// TestListConcurrentAfterChange: requests that start after a change all get
// the changed list, whether they list it, wait for another request's list
// of the same stamp, or read the cache.
func TestListConcurrentAfterChange(t *testing.T) {
	n := newListNode(t, httpapi.Config{})
	room, _ := n.beat("ada", "a1")
	target := "/v1/list?roomToken=" + url.QueryEscape(room)
	for round := 0; round < 20; round++ {
		n.do("GET", target, "")                                // the cache holds the page
		n.beat(fmt.Sprint("u", round), fmt.Sprint("s", round)) // a join: every list after it shows it
		l, err := n.svc.List(context.Background(), room, 0)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(l)
		got := make(chan listAnswer, 8)
		for i := 0; i < cap(got); i++ {
			go func() { got <- n.do("GET", target, "") }()
		}
		for i := 0; i < cap(got); i++ {
			if a := <-got; a.code != 200 || a.body != string(want) {
				t.Fatalf("round %d: %d %s, want %s", round, a.code, a.body, want)
			}
		}
	}
	t.Logf("lists read %d, served from the cache or another request's list %d", n.answers("store"), n.answers("cache"))
}

// TestListNotModifiedIsOneSmallRead watches Redis (MONITOR): a 304 and a
// page served from the node's cache each cost one command on the room's
// keys, list_stamp.lua (read-only); never list.lua.
func TestListNotModifiedIsOneSmallRead(t *testing.T) {
	n := newListNode(t, httpapi.Config{})
	for i := 0; i < 20; i++ {
		n.beat(fmt.Sprint("u", i), fmt.Sprint("s", i))
	}
	room, _ := n.beat("ada", "a1")
	target := "/v1/list?limit=8&roomToken=" + url.QueryEscape(room)
	mon := monitor(t, n.srv.Addr())
	stamp := "EVALSHA_RO " + redis.NewScript(lua.Source("list_stamp")).Hash()
	list := "EVALSHA_RO " + redis.NewScript(lua.Source("list")).Hash()
	// roomCalls runs a request and returns the commands it sent about the
	// room: "<command> <first argument>".
	roomCalls := func(req func()) []string {
		t.Helper()
		mon.sync(n.rdb)
		req()
		return mon.sync(n.rdb)
	}
	var first listAnswer
	for _, step := range []struct {
		what   string
		prep   func() // not counted
		req    func()
		source string
		want   []string
	}{
		{"first list", nil, func() { first = n.do("GET", target, "") }, "store", []string{list}},
		{"If-None-Match", nil, func() {
			if a := n.do("GET", target, "", "If-None-Match", first.etag); a.code != 304 {
				t.Fatalf("If-None-Match: %d", a.code)
			}
		}, "not_modified", []string{stamp}},
		{"cached", nil, func() {
			if a := n.do("GET", target, ""); a.code != 200 || a.body != first.body || a.etag != first.etag {
				t.Fatalf("cached: %d %s", a.code, a.body)
			}
		}, "cache", []string{stamp}},
		{"changed", func() { n.beat("bob", "b1") }, func() {
			if a := n.do("GET", target, ""); a.code != 200 || a.body == first.body {
				t.Fatalf("changed: %d %s", a.code, a.body)
			}
		}, "store", []string{stamp, list}},
	} {
		if step.prep != nil {
			step.prep()
		}
		before := n.answers(step.source)
		got := roomCalls(step.req)
		if strings.Join(got, ", ") != strings.Join(step.want, ", ") {
			t.Fatalf("%s: commands on the room %q, want %q", step.what, got, step.want)
		}
		if n.answers(step.source) != before+1 {
			t.Fatalf("%s: not counted as %s", step.what, step.source)
		}
	}
}

// monitorConn reads a Redis MONITOR stream.
type monitorConn struct {
	t   *testing.T
	r   *bufio.Reader
	seq int
}

func monitor(t *testing.T, addr string) *monitorConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprint(c, "MONITOR\r\n")
	m := &monitorConn{t: t, r: bufio.NewReader(c)}
	if line, err := m.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("MONITOR: %q %v", line, err)
	}
	return m
}

// sync returns the commands on the lobby's keys that Redis ran since the
// last sync, as "<COMMAND> <first argument>" (a marker ECHO ends them).
func (m *monitorConn) sync(rdb *redis.Client) []string {
	m.t.Helper()
	m.seq++
	marker := fmt.Sprintf("marker-%d", m.seq)
	if err := rdb.Echo(context.Background(), marker).Err(); err != nil {
		m.t.Fatal(err)
	}
	var out []string
	for {
		line, err := m.r.ReadString('\n')
		if err != nil {
			m.t.Fatal(err)
		}
		if strings.Contains(line, `"`+marker+`"`) {
			return out
		}
		if !strings.Contains(line, "{default::lobby}") || strings.Contains(line, " lua] ") {
			continue // other keys (the reaper, the user index, the lease), or inside a script
		}
		// +<time> [<db> <client>] "<command>" "<arg>" ...
		f := strings.Split(line[strings.Index(line, `] "`)+3:], `" "`)
		if len(f) < 2 {
			m.t.Fatalf("monitor line %q", line)
		}
		out = append(out, strings.ToUpper(f[0])+" "+f[1])
	}
}

// TestListCacheOff: with ListCacheBytes negative nothing is cached, and
// lists and 304s work as with it.
func TestListCacheOff(t *testing.T) {
	n := newListNode(t, httpapi.Config{ListCacheBytes: -1})
	room, _ := n.beat("ada", "a1")
	target := "/v1/list?roomToken=" + url.QueryEscape(room)
	a := n.do("GET", target, "")
	if b := n.do("GET", target, ""); b.code != 200 || b.body != a.body || b.etag != a.etag {
		t.Fatalf("again: %d %s", b.code, b.body)
	}
	if b := n.do("GET", target, "", "If-None-Match", `"x", W/`+a.etag); b.code != 304 {
		t.Fatalf("If-None-Match: %d", b.code)
	}
}

// BenchmarkListPageMiss: GET /v1/list of a 10,000-member room (limit 104)
// when the node cannot serve its cached page: without the cache (the list
// script, as before the cache), and with a cached page that a change made
// stale (the stamp read, then the list script). BenchmarkHTTPList10k is
// the unchanged room (304, and the cached page).
//
//	go test -run XXX -bench ListPageMiss ./pkg/httpapi
func BenchmarkListPageMiss(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache int64
	}{{"uncached", -1}, {"stale-cache", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			n := newListNode(b, httpapi.Config{ListCacheBytes: tc.cache})
			var room string
			for i := 0; i < 10000; i++ {
				room, _ = n.beat(fmt.Sprint("u", i), fmt.Sprint("s", i))
			}
			target := "/v1/list?limit=104&roomToken=" + url.QueryEscape(room)
			hash := n.store.Keys().Room(presence.RoomRef{Org: "default", RoomID: "lobby"}).Hash()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if tc.cache == 0 {
					b.StopTimer()
					// A change the list shows (what a second tab does to c).
					n.rdb.HIncrBy(context.Background(), hash, "c", 1)
					b.StartTimer()
				}
				if a := n.do("GET", target, ""); a.code != 200 {
					b.Fatalf("list: %d", a.code)
				}
			}
		})
	}
}
