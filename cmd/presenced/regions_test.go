package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/netproxy"
	"github.com/presencecluster/presence/pkg/redistest"
)

// regions is two regions on this machine: region A has the Redis primary and
// node A; region B has a replica and node B. Node B reaches the primary
// through wan, and the replica replicates through repl: both proxies stand
// for the link between the regions (delay, cut, heal).
type regions struct {
	primary   *redistest.Server
	wan, repl *netproxy.Proxy
	a, b      *Main
}

func startRegions(t *testing.T, oneWay time.Duration) *regions {
	t.Helper()
	r := &regions{primary: redistest.Start(t)}
	r.wan = redistest.StartProxy(t, r.primary.Addr())
	r.repl = redistest.StartProxy(t, r.primary.Addr())
	replica := redistest.StartReplicaVia(t, r.repl.Addr())
	r.setDelay(oneWay)
	secret := "regions-test-secret-0123456789abc"
	common := func(region string) map[string]string {
		return map[string]string{"PRESENCE_REGION": region, "PRESENCE_NODE_ID": "n" + region, "PRESENCE_TOKEN_SECRET": secret,
			"PRESENCE_NODE_LEASE": "2s", "PRESENCE_REPLICA_MAX_LAG": "1s", "PRESENCE_LOG_LEVEL": "warn"}
	}
	envA, envB := common("a"), common("b")
	envA["PRESENCE_REDIS_URL"] = r.primary.URL()
	envB["PRESENCE_REDIS_URL"] = "redis://" + r.wan.Addr()
	envB["PRESENCE_REDIS_REPLICA_URL"] = replica.URL()
	r.a, r.b = MustRunMain(t, envA), MustRunMain(t, envB)
	return r
}

func (r *regions) setDelay(d time.Duration) {
	r.wan.SetDelay(d)
	r.repl.SetDelay(d)
}

// cut separates the regions: node B from the primary, and the replica from
// the primary. What is sent meanwhile is held and delivered at the heal,
// late, as TCP does after a broken route comes back.
func (r *regions) cut() {
	r.wan.Cut()
	r.repl.Cut()
}

func (r *regions) heal() {
	r.wan.Heal()
	r.repl.Heal()
}

// online lists the online users of a room as a node answers.
func online(base, room string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := (&client.Client{BaseURL: "http://" + base}).Members(ctx, room, true, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range l.Members {
		out = append(out, m.UserID)
	}
	slices.Sort(out)
	return out, nil
}

func onlineIs(base, room string, want ...string) func() bool {
	return func() bool {
		got, err := online(base, room)
		return err == nil && slices.Equal(got, want)
	}
}

func statusOf(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	return 0
}

func readyz(base string) int {
	res, err := http.Get("http://" + base + "/readyz")
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// beater heartbeats one HTTP user through a node every 300 ms, as a browser
// tab does, through a cut and after it; each call gives up after 2 s.
type beater struct {
	mu   sync.Mutex
	ok   int
	last error
	stop context.CancelFunc
	done chan struct{}
}

func startBeater(t *testing.T, base, room, user string) *beater {
	ctx, cancel := context.WithCancel(context.Background())
	b := &beater{stop: cancel, done: make(chan struct{})}
	c := &client.Client{BaseURL: "http://" + base}
	go func() {
		defer close(b.done)
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.Heartbeat(cctx, client.HeartbeatRequest{RoomID: room, SessionID: user + "-tab", UserID: user, Interval: time.Second})
			ccancel()
			b.mu.Lock()
			if err == nil {
				b.ok++
			}
			b.last = err
			b.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-b.done })
	return b
}

func (b *beater) succeeded() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ok
}

// TestRegionsCut: a 40 ms round trip between the regions, then a cut longer
// than every session's timeout, then the heal. During the cut, region B's
// writes and reads answer 503 (its replica may be behind more than the
// bound, and the primary is out of reach) and /readyz is 503; region A ends
// B's sessions (the socket's by B's lease, the HTTP one by its deadline).
// After the heal: B's node joins its socket's session again, the HTTP user's
// next heartbeat brings it back, region B's lists show the truth within the
// bound, and none of the calls held in the cut and delivered late (the
// heartbeats and keep-alives sent during it) rolls anything back: no leave
// after the users are back. (Which calls are held in the cut depends on
// timing; TestLateHeartbeatThroughCut holds one for sure.)
func TestRegionsCut(t *testing.T) {
	r := startRegions(t, 20*time.Millisecond)
	rec := startRecorder(t, r.primary.Addr(), "presence")
	const room = "lobby"
	sock := dialJoin(t, r.b.Addr(), "sock", room)
	web := startBeater(t, r.b.Addr(), room, "web")
	dialJoin(t, r.a.Addr(), "anna", room)
	for _, n := range []*Main{r.a, r.b} {
		waitUntil(t, "both regions list everyone", 10*time.Second, onlineIs(n.Addr(), room, "anna", "sock", "web"))
	}

	r.cut()
	cutAt := time.Now()
	waitUntil(t, "region A ends region B's sessions", 15*time.Second, onlineIs(r.a.Addr(), room, "anna"))
	t.Logf("region A ended B's sessions %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	// Region B answers, within the API's 2 s, with 503: its replica is
	// past the bound and the primary out of reach.
	start := time.Now()
	if _, err := online(r.b.Addr(), room); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("list in region B during the cut: %v, want 503", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("list in region B took %v during the cut", d)
	}
	if s := readyz(r.b.Addr()); s != http.StatusServiceUnavailable {
		t.Fatalf("region B's /readyz during the cut: %d", s)
	}
	if s := readyz(r.a.Addr()); s != http.StatusOK {
		t.Fatalf("region A's /readyz during the cut: %d", s)
	}
	before := web.succeeded()
	// A cut of 6 s: longer than every session's timeout and than the
	// "not after" bound of the calls held in it (2.5 s).
	time.Sleep(time.Until(cutAt.Add(6 * time.Second)))

	r.heal()
	healAt := time.Now()
	waitUntil(t, "both users of region B back, seen in region A", 15*time.Second, onlineIs(r.a.Addr(), room, "anna", "sock", "web"))
	back := time.Now()
	t.Logf("region B's users back in region A %v after the heal", back.Sub(healAt).Round(time.Millisecond))
	waitUntil(t, "a heartbeat succeeds after the heal", 5*time.Second, func() bool { return web.succeeded() > before })
	// The calls held in the cut reached the primary late, and were refused.
	t.Logf("%d late calls refused", r.primary.Errors(t, "LATE"))
	waitUntil(t, "region B lists everyone again, within the bound", 5*time.Second, onlineIs(r.b.Addr(), room, "anna", "sock", "web"))
	t.Logf("region B's list right %v after the heal", time.Since(healAt).Round(time.Millisecond))
	waitUntil(t, "region B ready", 5*time.Second, func() bool { return readyz(r.b.Addr()) == http.StatusOK })
	waitUntil(t, "the socket's view has everyone", 5*time.Second, func() bool { return viewOnline(sock, room) == "[anna sock web]" })

	// Longer than the sessions' timeout (2.5 s) and B's lease: a late
	// write that set a deadline back, or ended a session, would show now.
	time.Sleep(4 * time.Second)
	for _, e := range rec.since(back) {
		if e.Event == "leave" || e.Event == "remove" {
			t.Errorf("after the users were back: %s of %s (version %d)", e.Event, e.UserID, e.Version)
		}
	}
	if got, err := online(r.a.Addr(), room); err != nil || fmt.Sprint(got) != "[anna sock web]" {
		t.Fatalf("region A at the end: %v %v", got, err)
	}
	if v := viewOnline(sock, room); v != "[anna sock web]" {
		t.Fatalf("the socket's view at the end: %s", v)
	}
}

// TestRegionsEveryJoinSeen: 100 ms round trip between the regions (node B
// starts: it loads its scripts in one round trip), and the replication link
// slower still (150 ms one way, so the replica is behind every join made in
// region B): each WebSocket join in region B gets a snapshot that holds the
// joiner, and a watcher in region B sees every join.
func TestRegionsEveryJoinSeen(t *testing.T) {
	r := startRegions(t, 50*time.Millisecond)
	r.repl.SetDelay(150 * time.Millisecond)
	const room = "hall"
	watcher := dialJoin(t, r.b.Addr(), "watcher", room)
	want := []string{"watcher"}
	for i := range 12 {
		user := fmt.Sprintf("u%02d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.Dial(ctx, client.ConnConfig{URLs: []string{"http://" + r.b.Addr()}, UserID: user})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(c.Abandon)
		j, err := c.Join(ctx, room, user+"-tab", time.Second, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range j.Members {
			found = found || m.UserID == user && m.Online
		}
		if !found {
			t.Errorf("%s's joined snapshot (version %d) does not hold its join", user, j.Version)
		}
		want = append(want, user)
	}
	slices.Sort(want)
	waitUntil(t, "the watcher in region B sees every join", 10*time.Second, func() bool {
		return viewOnline(watcher, room) == fmt.Sprint(want)
	})
}

// readyzBody is a node's /readyz answer.
func readyzBody(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	res, err := http.Get("http://" + base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body
}

// TestRegionsReplicationCut: only the replication link is cut (node B still
// reaches the primary). Region B's replica falls behind; past the bound
// (1 s here) region B's lists read the primary and show region A's changes,
// region B's sockets get them too (a sync: the node compares its rooms'
// versions with the primary's every 0.5 s while the replica lags; the
// events themselves wait in the cut link), /readyz stays 200 and says
// "lagging", and the metrics say so; after the heal the replica serves
// again.
func TestRegionsReplicationCut(t *testing.T) {
	r := startRegions(t, 20*time.Millisecond)
	const room = "lounge"
	nodeB := &proc{name: "b", addr: r.b.Addr()}
	dialJoin(t, r.a.Addr(), "anna", room)
	watcher := dialJoin(t, r.b.Addr(), "watcher", room)
	waitUntil(t, "region B lists anna", 5*time.Second, onlineIs(r.b.Addr(), room, "anna", "watcher"))
	if code, body := readyzBody(t, r.b.Addr()); code != http.StatusOK || body["replica"] != "ok" {
		t.Fatalf("region B's /readyz: %d %v", code, body)
	}

	r.repl.Cut()
	cutAt := time.Now()
	dialJoin(t, r.a.Addr(), "bert", room)
	waitUntil(t, "region B lists bert (from the primary, once the replica is past the bound)", 5*time.Second,
		onlineIs(r.b.Addr(), room, "anna", "bert", "watcher"))
	t.Logf("region B lists bert %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	waitUntil(t, "region B's socket sees bert", 5*time.Second, func() bool { return viewOnline(watcher, room) == "[anna bert watcher]" })
	t.Logf("region B's socket sees bert %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	code, body := readyzBody(t, r.b.Addr())
	if code != http.StatusOK || body["replica"] != "lagging" {
		t.Fatalf("region B's /readyz during the replication cut: %d %v", code, body)
	}
	if lag, _ := body["replicaLagSeconds"].(float64); lag < 1 {
		t.Fatalf("replicaLagSeconds %v during the cut", body["replicaLagSeconds"])
	}
	if v := nodeB.metric(t, "presence_replica_stale"); v != 1 {
		t.Fatalf("presence_replica_stale = %v during the cut", v)
	}

	r.repl.Heal()
	waitUntil(t, "region B's replica within the bound again", 10*time.Second, func() bool {
		_, body := readyzBody(t, r.b.Addr())
		return body["replica"] == "ok"
	})
	if v := nodeB.metric(t, "presence_replica_stale"); v != 0 {
		t.Fatalf("presence_replica_stale = %v after the heal", v)
	}
	if got, err := online(r.b.Addr(), room); err != nil || fmt.Sprint(got) != "[anna bert watcher]" {
		t.Fatalf("region B after the heal: %v %v", got, err)
	}
}
