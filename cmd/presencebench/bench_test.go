package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/cmd/internal/clitest"
	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// TestMain lets the test binary stand in for presencebench when
// `connections` re-executes itself for its child processes.
func TestMain(m *testing.M) {
	if os.Getenv("PRESENCEBENCH_WORKER") == "1" {
		redis.SetLogger(cliutil.QuietLogger{})
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

// bench runs presencebench with args and the given environment.
func benchRun(t testing.TB, env map[string]string, args ...string) clitest.Result {
	t.Helper()
	return clitest.Run(t, run, env, args...)
}

func TestBenchArgs(t *testing.T) {
	env := map[string]string{"PRESENCE_REDIS_URL": "redis://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, "Scenarios:"},
		{[]string{"--progress", "0"}, 2, "presencebench: missing <scenario>"},
		{[]string{"fly"}, 2, `unknown scenario "fly"`},
		{[]string{"heartbeat", "list"}, 2, `unexpected argument "list"`},
		{[]string{"heartbeat", "--rate", "5"}, 2, "heartbeat: --rate does not apply"},
		{[]string{"list", "--sockets", "5", "--watchers", "1"}, 2, "--sockets, --watchers does not apply"},
		{[]string{"heartbeat", "--url", "https://x:1"}, 2, "must be http://host:port"},
		{[]string{"heartbeat", "--url", "http://x:1?a=b"}, 2, "must be http://host:port[/path]"},
		{[]string{"heartbeat", "--concurrency", "0"}, 2, "--concurrency must be positive"},
		{[]string{"heartbeat", "--interval", "500ms"}, 2, "--interval must be 1s-10m"},
		{[]string{"heartbeat", "--duration", "-1s"}, 2, "--duration must be >= 0"},
		{[]string{"connections", "--source-addrs", "127.0.0.9-127.0.0.2"}, 2, "is backwards"},
		{[]string{"connections", "--source-addrs", "::1"}, 2, "not an IPv4 address"},
		{[]string{"connections", "--sockets", "-3"}, 2, "--sockets must be positive"},
		{[]string{"fanout", "--users", "1"}, 2, "--users must be at least 2"},
		{[]string{"fanout", "--watchers", "2000"}, 2, "at most 15000 sockets"},
		{[]string{"list", "--limit", "1001"}, 2, "--limit must be 1-1000"},
		{[]string{"expiry"}, 2, "--presenced-bin is required"},
		{[]string{"expiry", "--presenced-bin", "x", "--timeout-factor", "11"}, 2, "--timeout-factor must be 1-10"},
		{[]string{"report"}, 2, "--dir is required"},
		{[]string{"connections", "--churn", "5", "--churn-url", "http://x:1"}, 2, "--churn needs --redis-stats"},
		{[]string{"connections", "--churn", "5", "--redis-stats"}, 2, "--churn needs --churn-url"},
		{[]string{"connections", "--churn", "-1"}, 2, "--churn must be 0-5000"},
		{[]string{"heartbeat", "--churn", "5"}, 2, "heartbeat: --churn does not apply"},
		{[]string{"expiry", "--presenced-bin", "x", "--node-lease", "500ms"}, 2, "--node-lease must be 1s-10m"},
		{[]string{"slowbody", "--slow", "0"}, 2, "--slow must be positive"},
		{[]string{"slowbody", "--dribble", "0s"}, 2, "--duration and --dribble must be positive"},
		{[]string{"heartbeat", "--slow", "5"}, 2, "heartbeat: --slow does not apply"},
		{[]string{"heartbeat", "--run-id", "a b"}, 2, "--run-id"},
		{[]string{"sockchurn", "--url", "http://a:1,http://b:2"}, 2, "sockchurn measures one node"},
		{[]string{"sockchurn", "--rate", "0"}, 2, "--rate must be above 0"},
		{[]string{"sockchurn", "--rate", "100", "--duration", "5ms"}, 2, "--rate x --duration: no socket"},
		{[]string{"sockchurn", "--rate", "1000", "--life", "20s"}, 2, "at most 15000 sockets open at once"},
		{[]string{"sockchurn", "--life", "-1s"}, 2, "--life, --settle, --gc-wait and --warmup must be >= 0"},
		{[]string{"sockchurn", "--warmup", "-1s"}, 2, "--life, --settle, --gc-wait and --warmup must be >= 0"},
		{[]string{"sockchurn", "--sockets", "5"}, 2, "sockchurn: --sockets does not apply"},
		{[]string{"heartbeat", "--life", "1s"}, 2, "heartbeat: --life does not apply"},
		{[]string{"-h"}, 0, "Scenarios:"},
		{[]string{"heartbeat", "--help"}, 0, "--source-addrs takes addresses and ranges"},
		{[]string{"help"}, 0, "presencebench <scenario> [flags]"},
		{[]string{"heartbeat", "--url", "http://x:1", "--bogus"}, 2, "flag provided but not defined: -bogus"},
	} {
		clitest.Expect(t, run, env, tc.code, tc.out, tc.args...)
	}
}

// TestBenchUsageListsEveryFlag: the help text names every flag (but the
// internal ones of the child processes).
func TestBenchUsageListsEveryFlag(t *testing.T) {
	usage := benchRun(t, nil, "help").OK(t).Stdout
	c := &cliutil.Env{Globals: cliutil.DefaultGlobals(func(string) string { return "" })}
	fs := newFlagSet(c)
	parseBench(c, fs, []string{"-h"})
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if f.Name == "worker" || f.Name == "worker-offset" {
			return
		}
		if !regexp.MustCompile(`(^|\s)--` + regexp.QuoteMeta(f.Name) + `(\s|$)`).MatchString(usage) {
			t.Errorf("help lacks --%s", f.Name)
		}
	})
	if n < 40 {
		t.Fatalf("only %d flags registered", n)
	}
}

func TestBenchParse(t *testing.T) {
	c := &cliutil.Env{Globals: cliutil.Globals{RedisURL: "redis://x", Prefix: "presence", Org: "default", Timeout: time.Second}}
	parse := func(args ...string) benchOpts {
		t.Helper()
		fs := newFlagSet(c)
		_, o, err := parseBench(c, fs, args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return o
	}
	o := parse("--url", "http://a:1/,http://b:2", "heartbeat", "--url", "http://c:3", "--concurrency", "7")
	if got := strings.Join(o.urls, " "); got != "http://a:1 http://b:2 http://c:3" {
		t.Errorf("urls: %s", got)
	}
	if o.concurrency != 7 || o.sessions != 10000 || o.rooms != 100 || o.duration != 10*time.Second || o.interval != time.Minute {
		t.Errorf("heartbeat defaults: %+v", o)
	}
	if len(o.runID) != 6 {
		t.Errorf("run id %q", o.runID)
	}
	o = parse("list")
	if o.concurrency != 4 || o.members != 10000 || o.limit != 104 || o.duration != 5*time.Second || o.urls[0] != "http://127.0.0.1:8080" {
		t.Errorf("list defaults: %+v", o)
	}
	o = parse("connections", "--interval", "20s", "--source-addrs", "127.0.0.2-127.0.0.4, 127.0.0.3,127.0.1.1")
	var ips []string
	for _, ip := range o.sourceAddrs {
		ips = append(ips, ip.String())
	}
	if got := strings.Join(ips, " "); got != "127.0.0.2 127.0.0.3 127.0.0.4 127.0.1.1" {
		t.Errorf("source addrs: %s", got)
	}
	if o.idleWindow != 20*time.Second || o.perProcess != 15000 || o.sockets != 1000 || o.gcWait != 150*time.Second {
		t.Errorf("connections defaults: %+v", o)
	}
	o = parse("fanout", "--rate", "250")
	if o.rate != 250 || o.rooms != 10 || o.watchers != 10 || o.users != 100 {
		t.Errorf("fanout: %+v", o)
	}
	o = parse("slowbody")
	if o.slow != 2000 || o.dribble != 5*time.Second || o.concurrency != 8 || o.duration != 10*time.Second || o.dialConc != 100 {
		t.Errorf("slowbody defaults: %+v", o)
	}
	o = parse("expiry", "--presenced-bin", "/x")
	if o.sessions != 10000 || o.timeoutFactor != 2.5 || o.interval != 10*time.Second || o.grace != 10*time.Second ||
		o.nodeLease != 10*time.Second || o.nodeLeaseSet || o.perProcess != 15000 {
		t.Errorf("expiry defaults: %+v", o)
	}
	if o = parse("expiry", "--presenced-bin", "/x", "--node-lease", "3s"); o.nodeLease != 3*time.Second || !o.nodeLeaseSet {
		t.Errorf("expiry --node-lease: %+v", o)
	}
	o = parse("sockchurn", "--life", "250ms")
	if o.rate != 1000 || o.duration != time.Minute || o.roomSize != 10 || o.life != 250*time.Millisecond || o.settle != 5*time.Second ||
		o.gcWait != 150*time.Second || o.interval != 10*time.Second {
		t.Errorf("sockchurn defaults: %+v", o)
	}
	o = parse("connections", "--redis-stats", "--churn", "1000", "--churn-url", "http://b:2")
	if o.churn != 1000 || o.churnURL != "http://b:2" {
		t.Errorf("connections --churn: %+v", o)
	}
	if _, err := parseSourceAddrs("127.0.0.1-127.0.255.255"); err == nil {
		t.Error("a range of 65k addresses is refused")
	}
}

// TestBenchEvents: the PSUBSCRIBE pattern covers the sockets' rooms only,
// and each user's first leave counts once.
func TestBenchEvents(t *testing.T) {
	c := &cliutil.Env{Globals: cliutil.Globals{Prefix: "pre*fix", Org: "default"}}
	c.Keys = redisstore.Keys{Prefix: c.Prefix}
	b := &bench{c: c, o: benchOpts{runID: "r1"}}
	if got, want := b.socketRoomsPattern(), `pre\*fix:{default::bench\-r1\-c[0-9]*}:events`; got != want {
		t.Errorf("pattern %q, want %q", got, want)
	}
	w := &eventWatch{userPrefix: "bench-r1-u", start: time.Now(), leaveAt: make([]atomic.Int64, 3),
		joinN: make([]atomic.Int32, 3), leaveN: make([]atomic.Int32, 3)}
	for _, p := range []string{
		`{"version":1,"event":"join","userId":"bench-r1-u0"}`,
		`{"version":2,"event":"leave","userId":"bench-r1-u0","node":"n/1"}`,
		`{"version":3,"event":"leave","userId":"bench-r1-u0"}`,
		`{"version":4,"event":"leave","userId":"bench-r1-u2"}`,
		`{"version":5,"event":"leave","userId":"bench-r1-u3"}`,
		`{"version":6,"event":"leave","userId":"anchor"}`,
		`{`,
	} {
		w.take(p)
	}
	if w.joins.Load() != 1 || w.leaves.Load() != 2 || w.dups.Load() != 1 || w.others.Load() != 3 || w.leaveAt[1].Load() != 0 || w.leaveAt[2].Load() == 0 {
		t.Errorf("joins %d leaves %d dups %d others %d", w.joins.Load(), w.leaves.Load(), w.dups.Load(), w.others.Load())
	}
	if w.joinN[0].Load() != 1 || w.leaveN[0].Load() != 2 || w.joinN[2].Load() != 0 || w.leaveN[2].Load() != 1 {
		t.Errorf("per user: joins %d %d, leaves %d %d", w.joinN[0].Load(), w.joinN[2].Load(), w.leaveN[0].Load(), w.leaveN[2].Load())
	}
}

// TestBenchSockChurnTally: the per-user tally of sockchurn finds missing,
// duplicate and stray events.
func TestBenchSockChurnTally(t *testing.T) {
	// user: joins, leaves, joined here
	users := []struct {
		j, l   int32
		joined bool
	}{{1, 1, true}, {1, 1, true}, {0, 1, true}, {1, 0, true}, {2, 1, true}, {1, 3, true}, {1, 1, false}, {0, 0, false}}
	joinN, leaveN, joined := make([]atomic.Int32, len(users)), make([]atomic.Int32, len(users)), make([]atomic.Bool, len(users))
	for i, u := range users {
		joinN[i].Store(u.j)
		leaveN[i].Store(u.l)
		joined[i].Store(u.joined)
	}
	got := tally(joinN, leaveN, joined, 5)
	want := events{Exact: 2, MissingJoins: 1, MissingLeaves: 1, DuplicateJoins: 1, DuplicateLeaves: 2, Stray: 7}
	if got != want {
		t.Errorf("tally %+v, want %+v", got, want)
	}
}

// newFlagSet is the flag set the command runner hands a command.
func newFlagSet(c *cliutil.Env) *flag.FlagSet {
	fs := flag.NewFlagSet("presencebench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	return fs
}

// TestSettleGoroutines: the node's goroutines are the fewest of the
// scrapes (a scrape may count the registry's own gather workers).
func TestSettleGoroutines(t *testing.T) {
	counts := []int{24, 22, 23, 24}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		fmt.Fprintf(w, "go_goroutines %d\ngo_memstats_heap_inuse_bytes 1\nprocess_resident_memory_bytes 1\npresence_websockets 0\n", counts[i%len(counts)])
	}))
	defer srv.Close()
	m := nodeMetrics{Goroutines: 23}
	if err := settleGoroutines(context.Background(), srv.URL, "", time.Second, &m); err != nil {
		t.Fatal(err)
	}
	if m.Goroutines != 22 || n.Load() != goroutineScrapes-1 {
		t.Fatalf("goroutines %v after %d scrapes; want 22 after %d", m.Goroutines, n.Load(), goroutineScrapes-1)
	}
}

// TestBenchHistogram: quantiles are within the bucket precision.
func TestBenchHistogram(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 10000 * float64(time.Microsecond)
		got := float64(h.quantile(q))
		if got < want*0.99 || got > want*1.01 {
			t.Errorf("q%.3f = %v, want %v", q, time.Duration(got), time.Duration(want))
		}
	}
	if h.quantile(1) != 10*time.Millisecond || h.summary().MaxMs != 10 {
		t.Errorf("max %v %v", h.quantile(1), h.summary())
	}
	var o hist
	o.add(time.Hour)
	h.merge(&o)
	if h.n != 10001 || h.quantile(1) != time.Hour {
		t.Errorf("merge: n %d max %v", h.n, h.quantile(1))
	}
}

// TestBenchUnreachable: a node that is not there fails the run (exit 1),
// quickly.
func TestBenchUnreachable(t *testing.T) {
	url := fmt.Sprintf("http://127.0.0.1:%d", redistest.FreePort(t))
	start := time.Now()
	r := benchRun(t, nil, "heartbeat", "--url", url, "--sessions", "10", "--concurrency", "2", "--progress", "0")
	if r.Code != 1 || !strings.Contains(r.Stderr, "10 heartbeats failed") || !strings.Contains(r.Stderr, "connection refused") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.Code, r.Stdout, r.Stderr)
	}
	r = benchRun(t, nil, "connections", "--url", url, "--sockets", "3", "--progress", "0")
	if r.Code != 1 || !strings.Contains(r.Stderr, "metrics of "+url) {
		t.Fatalf("connections: exit %d\nstderr %s", r.Code, r.Stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}

var (
	presencedOnce sync.Once
	presencedPath string
	presencedErr  error
)

// presencedBin builds cmd/presenced once per test binary.
func presencedBin(t *testing.T) string {
	presencedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "presencebench-test")
		if err != nil {
			presencedErr = err
			return
		}
		presencedPath = filepath.Join(dir, "presenced")
		out, err := exec.Command("go", "build", "-o", presencedPath, "../presenced").CombinedOutput()
		if err != nil {
			presencedErr = fmt.Errorf("go build ../presenced: %v\n%s", err, out)
		}
	})
	if presencedErr != nil {
		t.Fatal(presencedErr)
	}
	return presencedPath
}

// TestBenchScenarios runs every scenario, tiny, against two nodes on a real
// Redis (the expiry scenario starts and kills a presenced process of its
// own), then the report over their results.
func TestBenchScenarios(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.UniquePrefix(t)
	// fanout times every single event: no storm coalescing (batches keep
	// only each user's last change).
	a := startBenchNode(t, httpapitest.Options{Redis: srv, Prefix: prefix, Name: "a", RoomFrames: 1 << 20})
	b := startBenchNode(t, httpapitest.Options{Redis: srv, Prefix: prefix, Name: "b", RoomFrames: 1 << 20})
	urls := a.URL + "," + b.URL
	env := map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_KEY_PREFIX": prefix}
	dir := t.TempDir()
	save := func(name, out string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("heartbeat", func(t *testing.T) {
		r := benchRun(t, env, "--json", "heartbeat", "--url", a.URL, "--sessions", "60", "--rooms", "3",
			"--concurrency", "4", "--duration", "1s", "--redis-stats", "--progress", "300ms").OK(t)
		res := clitest.Decode[heartbeatResult](t, r.Stdout)
		if res.Create.Requests != 60 || res.Create.Errors != 0 || res.Refresh == nil || res.Refresh.Requests < 60 || res.Refresh.Errors != 0 {
			t.Fatalf("result: %+v %+v", res.Create, res.Refresh)
		}
		if l := res.Refresh.Latency; l.Count != uint64(res.Refresh.Requests) || !(l.P50Ms > 0 && l.P50Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
			t.Fatalf("latency: %+v", l)
		}
		// Keep-alives change nothing: no PUBLISH, one EVALSHA each.
		if res.Redis == nil || res.Redis.Publish != 0 || res.Redis.Evalsha < res.Refresh.Requests {
			t.Fatalf("redis: %+v", res.Redis)
		}
		if !strings.Contains(r.Stderr, "refresh: ") {
			t.Fatalf("no progress line: %s", r.Stderr)
		}
		save("heartbeat.json", r.Stdout)
		// The table.
		r = benchRun(t, env, "heartbeat", "--url", b.URL, "--sessions", "10", "--rooms", "2", "--concurrency", "2", "--duration", "0").OK(t)
		if !strings.Contains(r.Stdout, "create") || strings.Contains(r.Stdout, "refresh") {
			t.Fatalf("table: %s", r.Stdout)
		}
	})

	t.Run("list", func(t *testing.T) {
		r := benchRun(t, env, "--json", "list", "--url", urls, "--members", "150", "--limit", "104", "--concurrency", "2",
			"--duration", "500ms").OK(t)
		res := clitest.Decode[listResult](t, r.Stdout)
		if res.Create.Requests != 150 || res.OnlineSeen != 150 || res.Plain.Requests == 0 || res.ETag.Requests == 0 ||
			res.Changed != 0 || res.BodyBytes < 104*40 || res.ETagValue == "" {
			t.Fatalf("result: %+v", res)
		}
		save("list.json", r.Stdout)
	})

	t.Run("slowbody", func(t *testing.T) {
		// Three times more slow bodies than request slots, a body timeout
		// shorter than a phase: the node closes them, the load goes on.
		n := startBenchNode(t, httpapitest.Options{Redis: srv, Prefix: prefix, Name: "slow", MaxInFlight: 10, BodyTimeout: 300 * time.Millisecond})
		r := benchRun(t, env, "--json", "slowbody", "--url", n.URL, "--slow", "30", "--dribble", "100ms",
			"--concurrency", "2", "--duration", "1s", "--progress", "0").OK(t)
		res := clitest.Decode[slowBodyResult](t, r.Stdout)
		for _, p := range []loadPhase{res.Baseline.Heartbeat, res.Baseline.List, res.Attack.Heartbeat, res.Attack.List} {
			if p.Requests == 0 || p.Errors != 0 || p.ErrorRate != 0 || p.Latency.P99Ms <= 0 {
				t.Fatalf("phase: %+v", p)
			}
		}
		s := res.SlowConnections
		if s.Opened < 60 || s.ClosedByNode < 30 || s.Answers["400"] != s.ClosedByNode || s.DialErrors != 0 ||
			s.ClosedAfter.P50Ms < 300 || s.ClosedAfter.MaxMs > 3000 || s.Opened != s.ClosedByNode+s.OpenAtEnd {
			t.Fatalf("slow connections: %+v", s)
		}
		// The table.
		r = benchRun(t, env, "slowbody", "--url", n.URL, "--slow", "3", "--dribble", "100ms",
			"--concurrency", "1", "--duration", "200ms", "--progress", "0").OK(t)
		for _, want := range []string{"attack heartbeat", "baseline list", "ERR%", "slow connections: "} {
			if !strings.Contains(r.Stdout, want) {
				t.Fatalf("table lacks %q: %s", want, r.Stdout)
			}
		}
	})

	t.Run("fanout", func(t *testing.T) {
		r := benchRun(t, env, "--json", "fanout", "--url", urls, "--rate", "200", "--duration", "1s", "--rooms", "2",
			"--users", "10", "--watchers", "3", "--concurrency", "4").OK(t)
		res := clitest.Decode[fanoutResult](t, r.Stdout)
		if res.SameNode || res.Joins+res.Leaves < 150 || res.Leaves == 0 || res.Errors != 0 || res.Missing != 0 ||
			res.Delivered != (res.Joins+res.Leaves)*3 || res.Delivery.Count != uint64(res.Delivered) || res.Unmatched != 0 {
			t.Fatalf("result: %+v", res)
		}
		save("fanout.json", r.Stdout)
		// Nobody stays online.
		store := redisstore.NewStore(srv.Client(t), redisstore.Config{Prefix: prefix})
		cnt, err := store.Count(context.Background(), presence.RoomRef{Org: "default", RoomID: "bench-" + res.RunID + "-fan0"})
		if err != nil || cnt.Version == 0 || cnt.Online != 0 {
			t.Fatalf("room after the run: %+v %v", cnt, err)
		}
	})

	t.Run("connections", func(t *testing.T) {
		// 7 sockets over 2 nodes and 2 source addresses, at most 3 per
		// process: 3 child processes.
		r := benchRun(t, env, "--json", "connections", "--url", urls, "--sockets", "7", "--per-process", "3",
			"--room-size", "2", "--source-addrs", "127.0.0.2-127.0.0.3", "--settle", "100ms", "--gc-wait", "0",
			"--redis-stats", "--interval", "1s", "--idle-window", "1500ms").OK(t)
		res := clitest.Decode[connectionsResult](t, r.Stdout)
		if res.Opened != 7 || res.Failed != 0 || res.Processes != 3 || !res.Closed || len(res.Nodes) != 2 || res.Open.Count != 7 {
			t.Fatalf("result: %+v", res)
		}
		// Both nodes run in this process: each counts its own sockets.
		if res.Nodes[0].Sockets != 4 || res.Nodes[1].Sockets != 3 {
			t.Fatalf("sockets per node: %d %d", res.Nodes[0].Sockets, res.Nodes[1].Sockets)
		}
		if res.Idle == nil || res.Idle.Publish != 0 || res.Idle.Evalsha == 0 {
			t.Fatalf("idle: %+v", res.Idle)
		}
		save("connections.json", r.Stdout)
		// Sockets on A, churn through B: the sockets' sessions outlive it,
		// and Redis published no leave in their rooms.
		r = benchRun(t, env, "--json", "connections", "--url", a.URL, "--sockets", "6", "--room-size", "2",
			"--settle", "0s", "--gc-wait", "0", "--redis-stats", "--interval", "1s", "--idle-window", "2500ms",
			"--churn", "20", "--churn-url", b.URL).OK(t)
		res = clitest.Decode[connectionsResult](t, r.Stdout)
		if c := res.Churn; c == nil || c.Sockets != 2 || c.Joins < 30 || c.Leaves != c.Joins || c.Errors != 0 || c.JoinRate < 10 {
			t.Fatalf("churn: %+v", res.Churn)
		}
		if !res.EventsWatched || res.LeavesWhileOpen != 0 || res.JoinsWhileOpen != 0 || res.SessionsAliveEnd != 6 || res.CommandsPerSocket <= 0 {
			t.Fatalf("result: %+v", res)
		}
		// In one process, with the table.
		r = benchRun(t, env, "connections", "--url", b.URL, "--sockets", "2", "--settle", "0s", "--gc-wait", "0").OK(t)
		if !strings.Contains(r.Stdout, b.URL) || !strings.Contains(r.Stdout, "2 opened, 0 failed") {
			t.Fatalf("table: %s", r.Stdout)
		}
	})

	t.Run("sockchurn", func(t *testing.T) {
		// 60 sockets at 100/s from 2 source addresses, rooms of 4: each
		// user joins and leaves once, the node holds no socket after, no
		// session is left in Redis.
		r := benchRun(t, env, "--json", "sockchurn", "--url", a.URL, "--rate", "100", "--duration", "600ms", "--room-size", "4",
			"--source-addrs", "127.0.0.2-127.0.0.3", "--interval", "1s", "--settle", "500ms", "--gc-wait", "0").OK(t)
		res := clitest.Decode[sockChurnResult](t, r.Stdout)
		if res.Started != 60 || res.Joined != 60 || res.Closed != 60 || res.Failed != 0 || res.Open.Count != 60 || res.Close.Count != 60 {
			t.Fatalf("sockets: %+v", res)
		}
		if !res.EventsWatched || res.Joins != 60 || res.Leaves != 60 || res.Exact != 60 || !res.EventsExact ||
			(res.events != events{Exact: 60}) {
			t.Fatalf("events: joins %d leaves %d %+v exact %v", res.Joins, res.Leaves, res.events, res.EventsExact)
		}
		if res.SessionsLeft != 0 || res.SocketsDelta != 0 || res.Before.RSS <= 0 || res.After.Goroutines <= 0 {
			t.Fatalf("node: sessions left %d, sockets %+.0f, before %+v, after %+v", res.SessionsLeft, res.SocketsDelta, res.Before, res.After)
		}
		save("sockchurn.json", r.Stdout)
		if res.Fresh != nil || res.WarmupSockets != 0 {
			t.Fatalf("a fresh sample without --warmup: %+v", res.Fresh)
		}
		// Sockets that stay 300 ms overlap; a warm-up of 10 sockets in rooms
		// of their own comes first (their events are not the run's); the
		// table.
		r = benchRun(t, env, "sockchurn", "--url", b.URL, "--rate", "50", "--duration", "400ms", "--life", "300ms",
			"--warmup", "200ms", "--settle", "500ms", "--gc-wait", "0").OK(t)
		for _, want := range []string{"20 joined, 20 closed with a close frame, 0 failed", "20 of 20 joined users had exactly one join and one leave",
			"every join and leave once PASS", "live sessions left in the run's rooms: 0", "goroutines",
			"warm-up: 10 sockets in rooms of their own", "stray events: 0"} {
			if !strings.Contains(r.Stdout, want) {
				t.Fatalf("table lacks %q:\n%s", want, r.Stdout)
			}
		}
		if m := regexp.MustCompile(`at most (\d+) open at once`).FindStringSubmatch(r.Stdout); m == nil || m[1] == "0" || m[1] == "1" {
			t.Fatalf("sockets did not overlap:\n%s", r.Stdout)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		bin := presencedBin(t)
		r := benchRun(t, env, "--json", "expiry", "--presenced-bin", bin, "--url", b.URL, "--sessions", "12", "--rooms", "3",
			"--interval", "1s", "--grace", "5s").OK(t)
		res := clitest.Decode[expiryResult](t, r.Stdout)
		if !res.Complete || res.Leaves != 12 || res.Duplicates != 0 || res.BoundMs != 4500 || res.LastMs <= 0 || res.FirstMs > res.LastMs ||
			!res.RedisWatched || res.RedisLeaves != 12 || res.RedisDuplicates != 0 || res.Processes != 1 || res.Rooms != 3 {
			t.Fatalf("result: %+v", res)
		}
		save("expiry.json", r.Stdout)
		// The sockets over child processes (at most 5 each), a lease
		// shorter than the timeout: it sets the bound.
		r = benchRun(t, env, "--json", "expiry", "--presenced-bin", bin, "--url", b.URL, "--sessions", "12", "--rooms", "3",
			"--interval", "1s", "--node-lease", "2s", "--per-process", "5", "--source-addrs", "127.0.0.2-127.0.0.3", "--grace", "5s").OK(t)
		res = clitest.Decode[expiryResult](t, r.Stdout)
		if !res.Complete || res.Leaves != 12 || res.RedisLeaves != 12 || res.Processes != 3 || !res.NodeLeaseSet || res.BoundMs != 4000 || !res.Pass {
			t.Fatalf("result with child processes: %+v", res)
		}
		// A binary that is not a node fails the run.
		r = benchRun(t, env, "expiry", "--presenced-bin", "/bin/false", "--url", b.URL, "--sessions", "2", "--rooms", "1")
		if r.Code != 1 || !strings.Contains(r.Stderr, "exited at start") {
			t.Fatalf("bad binary: exit %d, stderr %s", r.Code, r.Stderr)
		}
	})

	t.Run("report", func(t *testing.T) {
		save("machine.json", `{"nproc":"2","model":"Test CPU","go":"go1.x","redis":"7.0","kernel":"6.1","date":"2026-01-01"}`)
		save("rb-heartbeat.csv", "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"EVALSHA x\",\"10.00\",\"1\",\"0.1\",\"1\",\"2\",\"3\",\"4\"\n")
		save("redis-memory.json", `{"sessions":1000,"rooms":100,"before":1000000,"after":1150000}`)
		save("commands.txt", "presencebench heartbeat\n")
		r := benchRun(t, env, "report", "--dir", dir).OK(t)
		for _, want := range []string{
			"| HTTP heartbeat throughput, one node |", "10/s EVALSHA", "| Redis memory per session | 150 B |",
			"| **PASS** |", "Node memory per idle WebSocket", "Socket churn: no leak", "/60 users exactly once", "Cross-node event delivery p99",
			"List of a 10,000-member room", "Every leave delivered after kill -9", "2 cores (Test CPU)",
			"presencebench heartbeat\n```",
		} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("report lacks %q:\n%s", want, r.Stdout)
			}
		}
		if strings.Contains(r.Stdout, "not measured") {
			t.Errorf("a scenario is missing from the report:\n%s", r.Stdout)
		}
		rep := clitest.Decode[reportResult](t, benchRun(t, env, "--json", "report", "--dir", dir).OK(t).Stdout)
		if len(rep.Rows) != 9 {
			t.Errorf("%d rows: %+v", len(rep.Rows), rep.Rows)
		}
		// A corrupt result file fails the report.
		save("list.json", "{")
		if r := benchRun(t, env, "report", "--dir", dir); r.Code != 1 || !strings.Contains(r.Stderr, "list.json") {
			t.Errorf("corrupt file: exit %d, stderr %s", r.Code, r.Stderr)
		}
	})
}

// TestBenchUUIDIDs: --uuid-ids names sessions with distinct 36-byte ids and
// users with 11-byte ids, valid as the node requires.
func TestBenchUUIDIDs(t *testing.T) {
	c := &cliutil.Env{Globals: cliutil.Globals{RedisURL: "redis://x", Prefix: "presence", Org: "default", Timeout: time.Second}}
	_, o, err := parseBench(c, newFlagSet(c), []string{"heartbeat", "--uuid-ids", "--run-id", "mem"})
	if err != nil || !o.uuidIDs {
		t.Fatalf("parse: %+v %v", o, err)
	}
	b := &bench{o: o}
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 15, 16, 4095, 65535, 65536, 99999, 1 << 20} {
		s, u := b.id("s", i), b.id("u", i)
		if len(s) != 36 || len(u) != 11 || seen[s] || presence.ValidateSessionID(s) != nil || presence.ValidateUserID(u) != nil {
			t.Fatalf("ids of %d: %q (%d bytes), %q (%d bytes)", i, s, len(s), u, len(u))
		}
		seen[s] = true
	}
	if r := b.id("r", 3); r != "bench-mem-r3" {
		t.Fatalf("room id %q", r)
	}
}

// startBenchNode starts a node in the test's process with the metrics of
// presenced (the scenarios read /metrics).
func startBenchNode(t *testing.T, o httpapitest.Options) *httpapitest.Node {
	o.Metrics, o.Quiet = true, true
	return httpapitest.Start(t, o)
}
