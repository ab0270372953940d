package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// viewOnline is the online users of a client's view of a room.
func viewOnline(c *client.Conn, room string) string {
	var out []string
	if l := c.View(room); l != nil {
		for _, m := range l.Members {
			if m.Online {
				out = append(out, m.UserID)
			}
		}
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

func waitUntil(t *testing.T, what string, bound time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", bound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialJoin(t *testing.T, base, user, room string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.ConnConfig{URLs: []string{"http://" + base}, UserID: user, Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Abandon)
	if _, err := c.Join(ctx, room, user+"-tab", time.Second, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMainCluster: two nodes on a real Redis Cluster: HTTP, WebSockets
// across nodes, and expiry.
func TestMainCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	env := func() map[string]string {
		return map[string]string{"PRESENCE_REDIS_CLUSTER_ADDRS": strings.Join(cl.Addrs(), ","), "PRESENCE_TOKEN_SECRET": "cluster-test-secret-0123456789"}
	}
	a, b := MustRunMain(t, env()), MustRunMain(t, env())
	exercise(t, "http://"+a.Addr())
	w := dialJoin(t, a.Addr(), "watcher", "lobby")
	dialJoin(t, b.Addr(), "ada", "lobby")
	waitUntil(t, "the watcher on node A sees ada joined on node B", 5*time.Second, func() bool {
		return viewOnline(w, "lobby") == "[ada watcher]"
	})
}

// TestMultiRegion: node A (region a) writes and reads the primary; node B
// (region b) writes to the primary but lists and subscribes on its
// region-local replica. A watcher in region B sees joins made in region A,
// and region B's lists are served by the replica.
func TestMultiRegion(t *testing.T) {
	primary := redistest.Start(t)
	replica := redistest.StartReplica(t, primary)
	secret := "multi-region-test-secret-0123456"
	a := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": primary.URL(), "PRESENCE_REGION": "a", "PRESENCE_NODE_ID": "na", "PRESENCE_TOKEN_SECRET": secret})
	var logs lockedBuffer
	b := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": primary.URL(), "PRESENCE_REDIS_REPLICA_URL": replica.URL(),
		"PRESENCE_REGION": "b", "PRESENCE_NODE_ID": "nb", "PRESENCE_TOKEN_SECRET": secret, "PRESENCE_LOG_FORMAT": "json"},
		func(m *Main) { m.Logger = newLogger(m.Config, &logs) })
	w := dialJoin(t, b.Addr(), "watcher", "lobby")
	dialJoin(t, a.Addr(), "ada", "lobby")
	waitUntil(t, "the watcher in region b sees ada, who joined in region a", 5*time.Second, func() bool {
		return viewOnline(w, "lobby") == "[ada watcher]"
	})
	roReads := func(c *redis.Client) int {
		info, _ := c.Info(context.Background(), "commandstats").Result()
		n := 0
		for _, line := range strings.Split(info, "\n") {
			for _, cmd := range []string{"cmdstat_evalsha_ro:", "cmdstat_eval_ro:"} {
				if strings.HasPrefix(line, cmd) {
					var calls int
					fmt.Sscanf(strings.TrimPrefix(line, cmd), "calls=%d", &calls)
					n += calls
				}
			}
		}
		return n
	}
	rc, pc := replica.Client(t), primary.Client(t)
	beforeR, beforeP := roReads(rc), roReads(pc)
	hb := (&client.Client{BaseURL: "http://" + b.Addr()})
	for i := 0; i < 5; i++ {
		l, err := hb.Members(context.Background(), "lobby", true, 0)
		if err != nil || len(l.Members) != 2 {
			t.Fatalf("list in region b: %v %v", l, err)
		}
	}
	if r, p := roReads(rc)-beforeR, roReads(pc)-beforeP; r < 5 || p != 0 {
		t.Fatalf("read-only scripts: %d on the replica, %d on the primary; want the lists on the replica", r, p)
	}
	// Each session records the node (and region) that holds it for its socket.
	sess, err := pc.HGetAll(context.Background(), "presence:{default::lobby}:room").Result()
	if err != nil || !strings.Contains(sess["s:ada-tab"], "\tna@a/") || !strings.Contains(sess["s:watcher-tab"], "\tnb@b/") {
		t.Fatalf("sessions: %q %v", sess, err)
	}
	// Region b's log lines name the node and the region once each.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("region b logged %d lines", len(lines))
	}
	for _, line := range lines {
		if k := repeatedKey(t, line); k != "" {
			t.Errorf("key %q repeated in %s", k, line)
		}
	}
}

// repeatedKey returns a key that appears twice in a JSON log line.
func repeatedKey(t *testing.T, line string) string {
	d := json.NewDecoder(strings.NewReader(line))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("log line %q", line)
	}
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		k := tok.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
	}
	return ""
}

// lockedBuffer is a bytes.Buffer that goroutines may write at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSentinelFailover: nodes reach Redis through Sentinel; the primary
// dies under load; after the failover every live session is there, the
// watchers hold the true list, and no node needed a restart.
func TestSentinelFailover(t *testing.T) {
	primary := redistest.Start(t)
	replica := redistest.StartReplica(t, primary)
	sentinels := redistest.StartSentinels(t, primary, "presence", 3)
	env := func() map[string]string {
		return map[string]string{"PRESENCE_REDIS_SENTINEL_ADDRS": strings.Join(sentinels, ","), "PRESENCE_REDIS_SENTINEL_MASTER": "presence",
			"PRESENCE_TOKEN_SECRET": "sentinel-test-secret-0123456789"}
	}
	a, b := MustRunMain(t, env()), MustRunMain(t, env())
	w := dialJoin(t, a.Addr(), "watcher", "lobby")
	var users []string
	for i := 0; i < 6; i++ {
		node := a
		if i%2 == 1 {
			node = b
		}
		u := fmt.Sprintf("u%d", i)
		dialJoin(t, node.Addr(), u, "lobby")
		users = append(users, u)
	}
	want := fmt.Sprint(append(append([]string{}, users...), "watcher"))
	waitUntil(t, "everyone online before the failover", 5*time.Second, func() bool { return viewOnline(w, "lobby") == want })
	// Let the replica catch up, then kill the primary.
	time.Sleep(300 * time.Millisecond)
	primary.Stop()
	start := time.Now()
	rc := replica.Client(t)
	waitUntil(t, "the replica promoted", 30*time.Second, func() bool {
		info, _ := rc.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "role:master")
	})
	t.Logf("failover done after %v", time.Since(start))
	hb := &client.Client{BaseURL: "http://" + b.Addr()}
	waitUntil(t, "every live session in the new primary", 15*time.Second, func() bool {
		l, err := hb.Members(context.Background(), "lobby", true, 0)
		if err != nil || len(l.Members) != 7 {
			t.Logf("members: %v %v", l, err)
		}
		return err == nil && len(l.Members) == 7
	})
	waitUntil(t, "the watcher holds the true list", 15*time.Second, func() bool { return viewOnline(w, "lobby") == want })
	// The nodes serve writes without a restart.
	late := dialJoin(t, b.Addr(), "late", "lobby")
	_ = late
	waitUntil(t, "a join after the failover reaches the watcher", 10*time.Second, func() bool {
		return strings.Contains(viewOnline(w, "lobby"), "late")
	})
}
