package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/presence"
)

var nodeNames = []string{"presenced-1", "presenced-2", "presenced-3"}

// cluster is a cluster started by scripts/cluster.sh for a test.
type cluster struct {
	state     string
	lbPort    int
	nodePorts []int
	redisPort int
}

func (c *cluster) args() []string {
	np := make([]string, len(c.nodePorts))
	for i, p := range c.nodePorts {
		np[i] = strconv.Itoa(p)
	}
	return []string{"--state-dir", c.state, "--port", strconv.Itoa(c.lbPort),
		"--node-ports", strings.Join(np, ","), "--redis-port", strconv.Itoa(c.redisPort)}
}

func (c *cluster) url() string { return "http://127.0.0.1:" + strconv.Itoa(c.lbPort) }

// startCluster runs `cluster.sh start` on free ports with a state directory
// of the test's own; `cluster.sh stop` runs when the test ends, and any
// process still alive after it is killed by its recorded pid.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	needCommand(t, "redis-server")
	needCommand(t, "go")
	nginxBin(t)
	ports := freePorts(t, 5)
	c := &cluster{state: t.TempDir(), lbPort: ports[0], nodePorts: ports[1:4], redisPort: ports[4]}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var pids []int
		for _, name := range append([]string{"redis", "nginx"}, nodeNames...) {
			if b, err := os.ReadFile(filepath.Join(c.state, "pids", name+".pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					pids = append(pids, pid)
				}
			}
		}
		if out, err := clusterScript(ctx, append([]string{"stop"}, c.args()...)...); err != nil {
			t.Logf("cluster.sh stop: %v\n%s", err, out)
		}
		for _, pid := range pids {
			if procRunning(pid) {
				t.Errorf("pid %d survived cluster.sh stop: killing it", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			for _, name := range append([]string{"redis", "nginx"}, nodeNames...) {
				if b, err := os.ReadFile(filepath.Join(c.state, "logs", name+".log")); err == nil {
					t.Logf("--- %s.log (last 2 KiB)\n%s", name, tail(b, 2048))
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := clusterScript(ctx, append([]string{"start"}, c.args()...)...)
	if err != nil {
		t.Fatalf("cluster.sh start: %v\n%s", err, out)
	}
	t.Logf("cluster.sh start:\n%s", out)
	if !strings.Contains(out, c.url()) {
		t.Errorf("cluster.sh start did not print the URL %s", c.url())
	}
	return c
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// recorder keeps the presence events a Conn received.
type recorder struct {
	mu     sync.Mutex
	leaves []string
}

func (r *recorder) onEvent(e client.Event) {
	if e.Type == "presence" && e.Member != nil && (e.Event == presence.EventLeave || !e.Member.Online) {
		r.mu.Lock()
		r.leaves = append(r.leaves, fmt.Sprintf("%s (%s, version %d)", e.Member.UserID, e.Event, e.Version))
		r.mu.Unlock()
	}
}

func (r *recorder) leavesSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.leaves)
}

// onlineIn returns the users a view shows online, sorted.
func onlineIn(l *presence.RoomList) []string {
	if l == nil {
		return nil
	}
	var out []string
	for _, m := range l.Members {
		if m.Online {
			out = append(out, m.UserID)
		}
	}
	slices.Sort(out)
	return out
}

// nodeSockets reads presence_websockets from a node's /metrics.
func nodeSockets(port int) (int, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	res, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "presence_websockets "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("node on port %d: no presence_websockets gauge in /metrics (README documents it)", port)
}

// TestClusterThroughLoadBalancer starts the compose topology with
// scripts/cluster.sh, runs real clients through its nginx, stops one node
// with SIGTERM (its sockets move to the other nodes, nobody goes offline),
// and checks that `cluster.sh stop` leaves no process behind.
func TestClusterThroughLoadBalancer(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// nginx runs deploy/nginx.conf unchanged; its workers never run as root.
	if got, want := readFile(t, filepath.Join(c.state, "nginx", "nginx.conf")), readRepoFile(t, "deploy/nginx.conf"); got != want {
		t.Errorf("the cluster's nginx.conf is not byte-identical to deploy/nginx.conf")
	}
	nginxPid := readPid(t, c.state, "nginx")
	workers := childrenOf(nginxPid)
	if len(workers) == 0 {
		t.Errorf("nginx (pid %d) has no worker processes", nginxPid)
	}
	for _, w := range workers {
		if uid, err := processUID(w); err != nil || uid == 0 {
			t.Errorf("nginx worker %d runs as uid %d (%v): want a non-root user", w, uid, err)
		}
	}
	pids := map[string]int{}
	for _, name := range append([]string{"redis", "nginx"}, nodeNames...) {
		pids[name] = readPid(t, c.state, name)
		if !procRunning(pids[name]) {
			t.Fatalf("%s (pid %d) is not running after cluster.sh start", name, pids[name])
		}
	}

	// Two WebSocket users through the load balancer see each other.
	const room = "deploy-lobby"
	recs := map[string]*recorder{"ada": {}, "grace": {}}
	conns := map[string]*client.Conn{}
	for _, user := range []string{"ada", "grace"} {
		conn, err := client.Dial(ctx, client.ConnConfig{
			URLs: []string{c.url()}, UserID: user, Reconnect: true, OnEvent: recs[user].onEvent,
		})
		if err != nil {
			t.Fatalf("dial %s through nginx: %v", user, err)
		}
		defer conn.Close()
		if _, err := conn.Join(ctx, room, user+"-tab", 0, nil); err != nil {
			t.Fatalf("%s joins: %v", user, err)
		}
		conns[user] = conn
	}
	viewsShow := func(want ...string) func() error {
		return func() error {
			for user, conn := range conns {
				if got := onlineIn(conn.View(room)); !slices.Equal(got, want) {
					return fmt.Errorf("%s's view shows online %v, want %v", user, got, want)
				}
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "each WebSocket user sees the other", viewsShow("ada", "grace"))

	// An HTTP user heartbeats through the load balancer every 500 ms with
	// an interval of 3 s: its session ends 7.5 s after its heartbeats stop
	// getting through.
	hc := &client.Client{BaseURL: c.url()}
	hb, err := hc.Heartbeat(ctx, client.HeartbeatRequest{RoomID: room, SessionID: "linus-cli", UserID: "linus", Interval: 3 * time.Second})
	if err != nil {
		t.Fatalf("heartbeat through nginx: %v", err)
	}
	var (
		errMu      sync.Mutex
		hbErrors   []string
		listErrors []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopLoops := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
	defer stopLoops()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := hc.Heartbeat(ctx, client.HeartbeatRequest{RoomID: room, SessionID: "linus-cli", UserID: "linus", Interval: 3 * time.Second}); err != nil && ctx.Err() == nil {
				errMu.Lock()
				hbErrors = append(hbErrors, err.Error())
				errMu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := hc.List(ctx, hb.RoomToken, 0); err != nil && ctx.Err() == nil {
				errMu.Lock()
				listErrors = append(listErrors, err.Error())
				errMu.Unlock()
			}
		}
	}()
	eventually(t, 10*time.Second, "the HTTP heartbeat appears in both views", viewsShow("ada", "grace", "linus"))

	// Find a node that holds at least one of the two sockets.
	victim, victimSockets := -1, 0
	eventually(t, 10*time.Second, "the nodes count both sockets", func() error {
		total, best, bestN := 0, -1, 0
		for i, p := range c.nodePorts {
			n, err := nodeSockets(p)
			if err != nil {
				return err
			}
			total += n
			if n > bestN {
				best, bestN = i, n
			}
		}
		if total != 2 {
			return fmt.Errorf("the nodes hold %d sockets, want 2", total)
		}
		victim, victimSockets = best, bestN
		return nil
	})
	reconnectsBefore := conns["ada"].Stats().Reconnects + conns["grace"].Stats().Reconnects
	name := nodeNames[victim]
	pid := pids[name]
	t.Logf("SIGTERM to %s (pid %d), which holds %d of the 2 sockets", name, pid, victimSockets)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, name+" exits after draining", func() error {
		if procRunning(pid) {
			return fmt.Errorf("pid %d still runs", pid)
		}
		return nil
	})
	eventually(t, 20*time.Second, "the sockets move to the other nodes", func() error {
		for user, conn := range conns {
			if !conn.Stats().Connected {
				return fmt.Errorf("%s is not connected", user)
			}
		}
		total := 0
		for i, p := range c.nodePorts {
			if i == victim {
				continue
			}
			n, err := nodeSockets(p)
			if err != nil {
				return err
			}
			total += n
		}
		if total != 2 {
			return fmt.Errorf("the remaining nodes hold %d sockets, want 2", total)
		}
		return nil
	})
	if got := conns["ada"].Stats().Reconnects + conns["grace"].Stats().Reconnects - reconnectsBefore; got < int64(victimSockets) {
		t.Errorf("%d reconnects after the drain, want at least %d (the sockets %s held)", got, victimSockets, name)
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.nodePorts[victim]), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after its drain", name)
	}

	// Nobody went offline: wait past the HTTP session's timeout (7.5 s) and
	// the reaper, then check the events, the views and the list.
	time.Sleep(8 * time.Second)
	for user, rec := range recs {
		if l := rec.leavesSeen(); len(l) > 0 {
			t.Errorf("%s saw users go offline: %v", user, l)
		}
	}
	if err := viewsShow("ada", "grace", "linus")(); err != nil {
		t.Error(err)
	}
	list, err := hc.List(ctx, hb.RoomToken, 0)
	if err != nil {
		t.Fatalf("list through nginx: %v", err)
	}
	if got := onlineIn(list); !slices.Equal(got, []string{"ada", "grace", "linus"}) {
		t.Errorf("the list through nginx shows online %v, want [ada grace linus]", got)
	}
	errMu.Lock()
	if len(listErrors) > 0 {
		// GETs are retried on the next node by nginx (proxy_next_upstream).
		t.Errorf("%d of the lists through nginx failed while %s drained: %v", len(listErrors), name, listErrors)
	}
	if len(hbErrors) > 0 {
		// A POST already sent to the stopping node is not retried; the
		// session survives it (checked above).
		t.Logf("%d heartbeats through nginx failed while %s drained: %v", len(hbErrors), name, hbErrors)
	}
	errMu.Unlock()

	// cluster.sh stop ends every process it started.
	stopLoops()
	for _, conn := range conns {
		conn.Close()
	}
	out, err := clusterScript(ctx, append([]string{"stop"}, c.args()...)...)
	if err != nil {
		t.Fatalf("cluster.sh stop: %v\n%s", err, out)
	}
	for name, pid := range pids {
		if procRunning(pid) {
			t.Errorf("%s (pid %d) still runs after cluster.sh stop", name, pid)
		}
	}
	for _, p := range append([]int{c.lbPort, c.redisPort}, c.nodePorts...) {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			conn.Close()
			t.Errorf("port %d still accepts connections after cluster.sh stop", p)
		}
	}
	if out, err := clusterScript(ctx, append([]string{"status"}, c.args()...)...); err == nil {
		t.Errorf("cluster.sh status succeeds after stop:\n%s", out)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
