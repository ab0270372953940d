package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/netproxy"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// faultInterval is the clients' heartbeat interval: their sessions live 10 s
// without a heartbeat, longer than the 5 s Redis pause the suite injects.
const faultInterval = 4 * time.Second

// faultLease is the nodes' PRESENCE_NODE_LEASE: the sessions of a dead
// node's sockets end within min(10 s, 3 s) + 2 s.
const faultLease = 3 * time.Second

// cluster is the suite's world: one Redis, a proxy in front of it, three
// nodes, a recorder of every published event, and a client population.
type cluster struct {
	t      *testing.T // the running (sub)test: failures go here
	root   *testing.T // the whole suite: cleanups go here
	redis  *redistest.Server
	proxy  *netproxy.Proxy
	nodes  []*proc
	rec    *recorder
	truth  *redisstore.Store // reads Redis directly (not through a node)
	prefix string
	rooms  []string

	mu      sync.Mutex
	ws      []*wsUser
	http    []*httpUser
	userSeq int
}

// wsUser is a user on a WebSocket that reconnects and resumes.
type wsUser struct {
	id, room, session string
	home              int // the node it connects to first
	conn              *client.Conn
	gone              bool
}

// httpUser heartbeats over HTTP through a random node.
type httpUser struct {
	id, room, session string
	stop              chan struct{}
	done              chan struct{}
	gone              bool
}

func newCluster(t *testing.T, nodes int) *cluster {
	c := &cluster{t: t, root: t, redis: redistest.Start(t), prefix: "fault", rooms: []string{"lobby", "doc-1", "doc-2", "chat"}}
	c.proxy = redistest.StartProxy(t, c.redis.Addr())
	env := map[string]string{
		"PRESENCE_REDIS_URL":        "redis://" + c.proxy.Addr(),
		"PRESENCE_KEY_PREFIX":       c.prefix,
		"PRESENCE_TOKEN_SECRET":     "fault-suite-token-secret-0123456789",
		"PRESENCE_REAP_INTERVAL":    "100ms",
		"PRESENCE_SHUTDOWN_TIMEOUT": "5s",
		"PRESENCE_NODE_LEASE":       faultLease.String(),
	}
	for i := 0; i < nodes; i++ {
		c.nodes = append(c.nodes, startProc(t, fmt.Sprintf("node%d", i), env))
	}
	c.rec = startRecorder(t, c.redis.Addr(), c.prefix)
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	t.Cleanup(func() { rdb.Close() })
	c.truth = redisstore.NewStore(rdb, redisstore.Config{Prefix: c.prefix})
	return c
}

func (c *cluster) urls(first int) []string {
	var out []string
	for i := range c.nodes {
		out = append(out, c.nodes[(first+i)%len(c.nodes)].url())
	}
	return out
}

// addWS connects a WebSocket user to node home and joins a room.
func (c *cluster) addWS(home int) *wsUser {
	c.t.Helper()
	c.mu.Lock()
	c.userSeq++
	u := &wsUser{id: fmt.Sprintf("ws%d", c.userSeq), room: c.rooms[c.userSeq%len(c.rooms)], home: home}
	u.session = u.id + "-tab"
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, client.ConnConfig{URLs: c.urls(home), UserID: u.id, Reconnect: true})
	if err != nil {
		c.t.Fatalf("dial %s: %v", u.id, err)
	}
	if _, err := conn.Join(ctx, u.room, u.session, faultInterval, nil); err != nil {
		c.t.Fatalf("join %s: %v", u.id, err)
	}
	u.conn = conn
	c.mu.Lock()
	c.ws = append(c.ws, u)
	c.mu.Unlock()
	c.root.Cleanup(u.conn.Abandon)
	return u
}

// addHTTP starts a user that heartbeats over HTTP through random nodes,
// retrying after a second when a call fails, as a client would.
func (c *cluster) addHTTP() *httpUser {
	c.mu.Lock()
	c.userSeq++
	u := &httpUser{id: fmt.Sprintf("http%d", c.userSeq), room: c.rooms[c.userSeq%len(c.rooms)], stop: make(chan struct{}), done: make(chan struct{})}
	u.session = u.id + "-tab"
	c.http = append(c.http, u)
	c.mu.Unlock()
	beat := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		n := c.nodes[rand.N(len(c.nodes))]
		_, err := (&client.Client{BaseURL: n.url()}).Heartbeat(ctx, client.HeartbeatRequest{RoomID: u.room, SessionID: u.session, UserID: u.id, Interval: faultInterval})
		return err
	}
	if err := beat(); err != nil {
		c.t.Fatalf("first heartbeat of %s: %v", u.id, err)
	}
	go func() {
		defer close(u.done)
		wait := faultInterval
		for {
			select {
			case <-u.stop:
				return
			case <-time.After(wait):
			}
			wait = faultInterval
			if beat() != nil {
				wait = time.Second
			}
		}
	}()
	c.root.Cleanup(func() { u.halt() })
	return u
}

func (u *httpUser) halt() {
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	<-u.done
}

// expected is, per room, the users that must be online: every user whose
// client is still there.
func (c *cluster) expected() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]string{}
	for _, r := range c.rooms {
		out[r] = []string{}
	}
	for _, u := range c.ws {
		if !u.gone {
			out[u.room] = append(out[u.room], u.id)
		}
	}
	for _, u := range c.http {
		if !u.gone {
			out[u.room] = append(out[u.room], u.id)
		}
	}
	for _, l := range out {
		sort.Strings(l)
	}
	return out
}

func onlineIDs(l *presence.RoomList) []string {
	out := []string{}
	if l == nil {
		return out
	}
	for _, m := range l.Members {
		if m.Online {
			out = append(out, m.UserID)
		}
	}
	sort.Strings(out)
	return out
}

// converged reports what differs from the truth: Redis's member lists
// against the expected users, and every live client's view against Redis.
func (c *cluster) converged() []string {
	var diffs []string
	want := c.expected()
	truth := map[string][]string{}
	for _, r := range c.rooms {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l, err := c.truth.List(ctx, presence.RoomRef{Org: "default", RoomID: r}, presence.ListQuery{Limit: 1000})
		cancel()
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("list %s: %v", r, err))
			continue
		}
		truth[r] = onlineIDs(l)
		if fmt.Sprint(truth[r]) != fmt.Sprint(want[r]) {
			diffs = append(diffs, fmt.Sprintf("room %s: online %v, want %v", r, truth[r], want[r]))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.ws {
		if u.gone {
			continue
		}
		if got := onlineIDs(u.conn.View(u.room)); fmt.Sprint(got) != fmt.Sprint(truth[u.room]) {
			diffs = append(diffs, fmt.Sprintf("view of %s in %s: %v, truth %v", u.id, u.room, got, truth[u.room]))
		}
	}
	return diffs
}

// waitConverged polls until the cluster agrees with the truth, within bound.
func (c *cluster) waitConverged(what string, bound time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		diffs := c.converged()
		if len(diffs) == 0 {
			d := time.Since(start)
			c.t.Logf("%s: converged in %v (bound %v)", what, d.Round(time.Millisecond), bound)
			return d
		}
		if time.Since(start) > bound {
			c.t.Fatalf("%s: not converged after %v:\n  %s", what, bound, strings.Join(diffs, "\n  "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaves counts the leave events per user published since t.
func (c *cluster) leaves(since time.Time) map[string]int { return c.events(presence.EventLeave, since) }

// events counts the events of one kind per user published since t.
func (c *cluster) events(kind string, since time.Time) map[string]int {
	out := map[string]int{}
	for _, e := range c.rec.since(since) {
		if e.Event == kind {
			out[e.UserID]++
		}
	}
	return out
}

// resources are a node's goroutines and open files.
type resources struct{ goroutines, fds float64 }

func (c *cluster) resources() []resources {
	var out []resources
	for _, n := range c.nodes {
		out = append(out, resources{n.metric(c.t, "go_goroutines"), n.metric(c.t, "process_open_fds")})
	}
	return out
}

// waitResources polls until every node's goroutines and files are back near
// the baseline (a node restarted in between has its own, smaller baseline).
func (c *cluster) waitResources(base []resources) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := c.resources()
		ok := true
		for i := range now {
			if now[i].goroutines > base[i].goroutines*1.2+20 || now[i].fds > base[i].fds*1.2+20 {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("resources not back: now %+v, baseline %+v", now, base)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reconnects returns each live WebSocket user's reconnect count.
func (c *cluster) reconnects() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for _, u := range c.ws {
		if !u.gone {
			out[u.id] = u.conn.Stats().Reconnects
		}
	}
	return out
}

// nodeSyncs returns each node's count of syncs sent to sockets, and whether
// it has sockets now.
func (c *cluster) nodeSyncs() syncState {
	var out syncState
	for _, n := range c.nodes {
		out.syncs = append(out.syncs, n.metric(c.t, "presence_syncs_sent_total"))
		out.sockets = append(out.sockets, n.metric(c.t, "presence_websockets") > 0)
	}
	return out
}

// syncState is, per node, the syncs sent so far and whether it had sockets.
type syncState struct {
	syncs   []float64
	sockets []bool
}

// wantMoreSyncs checks that every node that had sockets before the fault
// sent them syncs since: the fault really cut what it claims to.
func (c *cluster) wantMoreSyncs(before syncState) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var missing []string
		for i, n := range c.nodeSyncs().syncs {
			if n <= before.syncs[i] && before.sockets[i] {
				missing = append(missing, c.nodes[i].name)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no sync from %v (which had sockets) after the fault", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wsAt returns the live WebSocket users whose home is node i.
func (c *cluster) wsAt(i int) []*wsUser {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*wsUser
	for _, u := range c.ws {
		if u.home == i && !u.gone {
			out = append(out, u)
		}
	}
	return out
}

func (c *cluster) markGone(u *wsUser) {
	c.mu.Lock()
	u.gone = true
	c.mu.Unlock()
}

// TestFaults injects one fault at a time into a running cluster with a
// steady population, and checks after each that the cluster converges back
// to the truth within the bound the contract gives.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs real processes for about two minutes")
	}
	c := newCluster(t, 3)
	for i := range c.nodes {
		for j := 0; j < 6; j++ {
			c.addWS(i)
		}
	}
	for j := 0; j < 6; j++ {
		c.addHTTP()
	}
	c.waitConverged("start", 10*time.Second)
	base := c.resources()
	timeout := time.Duration(float64(faultInterval) * 2.5)
	// A dead node's socket sessions end by its lease.
	dead := min(timeout, faultLease) + 2*time.Second

	t.Run("kill -9 of a node", func(t *testing.T) {
		c.t = t
		// Half of node 0's users vanish with it; the other half reconnect
		// to other nodes and must not flap.
		at := c.wsAt(0)
		victims, movers := at[:len(at)/2], at[len(at)/2:]
		start := time.Now()
		// Frozen first, so that the node dies holding the victims' sessions
		// (a socket it saw lost would go to the ordinary deadline instead).
		c.nodes[0].stop()
		for _, u := range victims {
			u.conn.Abandon()
			c.markGone(u)
		}
		c.nodes[0].kill()
		d := c.waitConverged("after kill -9", dead)
		time.Sleep(time.Second) // any duplicate leave would be published by now
		leaves := c.leaves(start)
		for _, u := range victims {
			if leaves[u.id] != 1 {
				t.Errorf("%s (vanished): %d leaves, want exactly 1", u.id, leaves[u.id])
			}
		}
		for _, u := range movers {
			if leaves[u.id] != 0 {
				t.Errorf("%s (reconnected): %d leaves, want none", u.id, leaves[u.id])
			}
		}
		if len(leaves) != len(victims) {
			t.Errorf("leaves: %v, want exactly the %d victims", leaves, len(victims))
		}
		t.Logf("kill -9: %d users gone offline within %v (bound %v)", len(victims), d, dead)
		c.nodes[0].start(t)
		for j := 0; j < len(victims); j++ {
			c.addWS(0)
		}
		c.waitConverged("after restarting node0", 10*time.Second)
	})

	t.Run("node frozen past its lease", func(t *testing.T) {
		c.t = t
		// SIGSTOP for longer than the lease: the other nodes end the frozen
		// node's socket sessions (one leave each); after SIGCONT it takes
		// them over again by itself (one join each), on the same sockets.
		var users []*wsUser // the users whose socket is on node 1 now
		c.mu.Lock()
		for _, u := range c.ws {
			if !u.gone && u.conn.Stats().URL == c.nodes[1].url() {
				users = append(users, u)
			}
		}
		c.mu.Unlock()
		if len(users) == 0 {
			t.Fatal("no socket on node 1")
		}
		before := c.reconnects()
		start := time.Now()
		c.nodes[1].stop()
		defer c.nodes[1].cont() // also when the test fails
		waitFor(t, "a leave for each of the frozen node's users", dead+2*time.Second, func() bool {
			if len(c.leaves(start)) > len(users) {
				t.Fatalf("leaves %v, users %d", c.leaves(start), len(users))
			}
			return len(c.leaves(start)) == len(users)
		})
		c.nodes[1].cont()
		resumed := time.Now()
		waitFor(t, "a join for each of them", 5*time.Second, func() bool {
			return len(c.events(presence.EventJoin, resumed)) == len(users)
		})
		t.Logf("frozen node: %d users back %v after SIGCONT", len(users), time.Since(resumed).Round(time.Millisecond))
		c.waitConverged("after SIGCONT", 5*time.Second)
		time.Sleep(time.Second) // a duplicate would be published by now
		leaves, joins := c.leaves(start), c.events(presence.EventJoin, resumed)
		after := c.reconnects()
		for _, u := range users {
			if leaves[u.id] != 1 || joins[u.id] != 1 {
				t.Errorf("%s: %d leaves and %d joins, want 1 and 1", u.id, leaves[u.id], joins[u.id])
			}
			if after[u.id] != before[u.id] {
				t.Errorf("%s reconnected: its socket should have stayed open", u.id)
			}
		}
		if len(leaves) != len(users) || len(joins) != len(users) {
			t.Errorf("leaves %v, joins %v: want only the frozen node's %d users", leaves, joins, len(users))
		}
	})

	t.Run("rolling SIGTERM restart", func(t *testing.T) {
		c.t = t
		start := time.Now()
		before := c.reconnects()
		for _, n := range c.nodes {
			n.term(t)
			n.start(t)
		}
		c.waitConverged("after the rolling restart", 10*time.Second)
		// Every node went away once: every socket moved at least once.
		after := c.reconnects()
		for id, n := range after {
			if n <= before[id] {
				t.Errorf("%s never reconnected during the rolling restart", id)
			}
		}
		time.Sleep(time.Second)
		if l := c.leaves(start); len(l) != 0 {
			t.Fatalf("leaves during a rolling restart: %v", l)
		}
		base = c.resources() // new processes, new baseline
	})

	t.Run("Redis restart with data lost", func(t *testing.T) {
		c.t = t
		c.redis.Restart(t)
		c.waitConverged("after the Redis restart", faultInterval+5*time.Second)
		c.waitResources(base)
	})

	t.Run("CLIENT PAUSE 5s", func(t *testing.T) {
		c.t = t
		start := time.Now()
		rdb := c.redis.Client(t)
		if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", "5000", "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		c.waitConverged("after the pause", 10*time.Second)
		time.Sleep(time.Second)
		if l := c.leaves(start); len(l) != 0 {
			t.Fatalf("leaves after a 5 s pause (sessions live 10 s): %v", l)
		}
		c.waitResources(base)
	})

	t.Run("pub/sub connections killed", func(t *testing.T) {
		c.t = t
		start := time.Now()
		syncs := c.nodeSyncs()
		if err := c.redis.Client(t).ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		defer c.wantMoreSyncs(syncs)
		// Changes right after the kill must still reach every view.
		u := c.wsAt(1)[0]
		u.conn.Close()
		c.markGone(u)
		c.addWS(2)
		c.waitConverged("after killing pub/sub", 10*time.Second)
		leaves := c.leaves(start)
		delete(leaves, u.id)
		if len(leaves) != 0 {
			t.Fatalf("unexpected leaves: %v", leaves)
		}
		c.waitResources(base)
	})

	t.Run("latency and cut connections", func(t *testing.T) {
		c.t = t
		start := time.Now()
		syncs := c.nodeSyncs()
		defer c.wantMoreSyncs(syncs)
		c.proxy.SetDelay(20 * time.Millisecond)
		c.addWS(1)
		for i := 0; i < 3; i++ {
			c.proxy.Reset()
			time.Sleep(700 * time.Millisecond)
		}
		c.proxy.SetDelay(0)
		c.waitConverged("after latency and cuts", 10*time.Second)
		if l := c.leaves(start); len(l) != 0 {
			t.Fatalf("leaves: %v", l)
		}
		c.waitResources(base)
	})
}

// TestSoak runs clients with join/leave churn across three nodes for
// SOAK_DURATION (default 15s) and checks the invariants at the end:
// scripts/soak.sh runs it longer.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	dur := 15 * time.Second
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		dur = d
	}
	clients := 30
	if v := os.Getenv("SOAK_CLIENTS"); v != "" {
		fmt.Sscan(v, &clients)
	}
	c := newCluster(t, 3)
	for i := 0; i < clients; i++ {
		c.addWS(i % 3)
	}
	for i := 0; i < clients/5; i++ {
		c.addHTTP()
	}
	c.waitConverged("start", 15*time.Second)
	base := c.resources()
	var churn atomic.Int64
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		// Churn: a random user leaves (close frame, or vanishes), another joins.
		c.mu.Lock()
		var live []*wsUser
		for _, u := range c.ws {
			if !u.gone {
				live = append(live, u)
			}
		}
		c.mu.Unlock()
		if len(live) > clients/2 {
			u := live[rand.N(len(live))]
			if rand.N(4) == 0 {
				u.conn.Abandon() // vanishes: offline after its timeout
			} else {
				u.conn.Close()
			}
			c.markGone(u)
		}
		c.addWS(rand.N(3))
		churn.Add(1)
		time.Sleep(time.Duration(50+rand.N(200)) * time.Millisecond)
	}
	t.Logf("soak: %d joins and leaves over %v", churn.Load(), dur)
	c.waitConverged("end of soak", time.Duration(float64(faultInterval)*2.5)+3*time.Second)
	// Every user that is gone left exactly once; every live one is online.
	leaves := c.leaves(time.Time{})
	c.mu.Lock()
	for _, u := range c.ws {
		want := 0
		if u.gone {
			want = 1
		}
		if leaves[u.id] != want {
			t.Errorf("%s: %d leaves, want %d", u.id, leaves[u.id], want)
		}
	}
	c.mu.Unlock()
	c.waitResources(base)
}
