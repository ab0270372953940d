package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/lua"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/storetest"
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

// newStore returns a Store on b under a key prefix of its own (unless cfg
// names one).
func newStore(t testing.TB, b backend, cfg redisstore.Config) (*redisstore.Store, redis.UniversalClient) {
	rdb := b.client(t)
	cfg.Cluster = b.cluster != nil
	if cfg.Prefix == "" {
		cfg.Prefix = redistest.UniquePrefix(t)
	}
	return redisstore.NewStore(rdb, cfg), rdb
}

// contractBackend is s as a backend of the contract suite: its events come
// through the typed Subscriber.
func contractBackend(t testing.TB, s *redisstore.Store) storetest.Backend {
	return storetest.Backend{
		Store: s,
		NewSubscriber: func(h presence.EventHandler) presence.Subscriber {
			sub := s.NewSubscriber(redisstore.SubscriberConfig{Connections: 1, Handler: h})
			if err := sub.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sub.Close() })
			return sub
		},
		ReapNodes: s.ReapNodes,
	}
}

// harness is a Service on a Store with a clock the test moves, and the
// Redis under it, for the Redis-specific tests.
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
	store, rdb := newStore(t, b, cfg)
	h := &harness{t: t, rdb: rdb, store: store, prefix: store.Keys().Prefix, org: "acme", now: time.UnixMilli(1_800_000_000_000)}
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

// contract is the harness as the contract suite's: its Service, org and
// store.
func (h *harness) contract() *storetest.Harness {
	return &storetest.Harness{T: h.t, Store: h.store, Svc: h.svc, Org: h.org}
}

func (h *harness) as(user string) context.Context { return h.contract().As(user) }
func (h *harness) admin() context.Context         { return h.contract().Admin() }

func (h *harness) beat(user, room, session string, interval time.Duration) *presence.HeartbeatOutput {
	h.t.Helper()
	return h.contract().Beat(user, room, session, interval)
}

func (h *harness) list(token string) *presence.RoomList {
	h.t.Helper()
	return h.contract().List(token)
}

func (h *harness) reap() int {
	h.t.Helper()
	return h.contract().ReapAt(h.clock())
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

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// events collects the raw events published on a room's channel (the wire
// format, as the Lua scripts write it).
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

// TestStoreContract runs the contract suite (storetest) on a real
// redis-server, a real Redis Cluster and the embedded store, with the
// cases that look at Redis itself (keys, TTLs).
func TestStoreContract(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Backend {
				s, _ := newStore(t, b, redisstore.Config{})
				return contractBackend(t, s)
			})
			for _, tc := range redisContract {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, newHarness(t, b, redisstore.Config{}))
				})
			}
		})
	}
}

const sec = storetest.Sec

// redisContract is the part of the contract that looks at Redis itself.
var redisContract = []struct {
	name string
	run  func(t *testing.T, h *harness)
}{
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
				if m := h.contract().Member(out.RoomToken, "u1"); !m.Online {
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
		storetest.WantCode(t, err, presence.EUNAVAILABLE)
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
					storetest.WantCode(t, err, presence.ECONFLICT)
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

// TestOrderScoresMatchLua: the scripts score the order set with the same
// numbers the Go side decodes with (presence.OrderScore, MemberFromScore).
func TestOrderScoresMatchLua(t *testing.T) {
	src := lua.Source("heartbeat") // lib.lua prepended
	for name, want := range map[string]int64{"OFFLINE": presence.OrderScoreOffline, "ONLINE_MAX": presence.OrderScoreOnlineMax} {
		m := regexp.MustCompile(`(?m)^local ` + name + ` = (\d+)$`).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("lib.lua defines no %s", name)
		}
		if got, _ := strconv.ParseInt(m[1], 10, 64); got != want {
			t.Errorf("lib.lua %s = %d, Go has %d", name, got, want)
		}
	}
}
