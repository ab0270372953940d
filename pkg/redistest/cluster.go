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
