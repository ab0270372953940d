package redistest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of three masters on loopback, started by
// a test (redis-server --cluster-enabled yes, then redis-cli --cluster create).
type Cluster struct {
	Servers []*Server
}

// StartCluster starts a 3-master Redis Cluster; it is stopped when the test
// ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatal("redis-cli not found: install redis-tools (apt-get install -y redis-tools)")
	}
	c := &Cluster{}
	for i := 0; i < 3; i++ {
		dir := tb.TempDir()
		c.Servers = append(c.Servers, Start(tb, "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--cluster-node-timeout", "2000"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node sees the whole cluster as ok.
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Servers {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				tb.Fatalf("cluster not ok on %s: %v %s", s.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	return c
}

// Addrs are the masters' addresses.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.Addr())
	}
	return out
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// MoveSlot migrates the slot that key hashes to onto another master (the
// next one), keys and all, as `redis-cli --cluster reshard` would. It
// returns the address of the new owner.
func (c *Cluster) MoveSlot(tb testing.TB, key string) string {
	tb.Helper()
	ctx := context.Background()
	cl := c.Client(tb)
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		tb.Fatal(err)
	}
	owner, err := cl.MasterForKey(ctx, key)
	if err != nil {
		tb.Fatal(err)
	}
	var src, dst *redis.Client
	var srcID, dstID string
	for i, s := range c.Servers {
		if s.Addr() == owner.Options().Addr {
			src = redis.NewClient(&redis.Options{Addr: s.Addr()})
			dst = redis.NewClient(&redis.Options{Addr: c.Servers[(i+1)%len(c.Servers)].Addr()})
		}
	}
	if src == nil {
		tb.Fatalf("no owner for slot %d", slot)
	}
	defer src.Close()
	defer dst.Close()
	srcID, _ = src.Do(ctx, "CLUSTER", "MYID").Text()
	dstID, _ = dst.Do(ctx, "CLUSTER", "MYID").Text()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatalf("move slot %d: %v", slot, err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		host, port, _ := strings.Cut(dst.Options().Addr, ":")
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err())
	}
	for _, s := range c.Servers {
		n := redis.NewClient(&redis.Options{Addr: s.Addr()})
		must(n.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
		n.Close()
	}
	return dst.Options().Addr
}
