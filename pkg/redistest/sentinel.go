package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartReplica starts a redis-server that replicates primary, and waits
// until its link is up.
func StartReplica(tb testing.TB, primary *Server) *Server {
	tb.Helper()
	return StartReplicaVia(tb, primary.Addr())
}

// StartReplicaVia starts a redis-server that replicates the primary at
// addr (a proxy in front of it, for a slow or cut replication link), and
// waits until its link is up.
func StartReplicaVia(tb testing.TB, addr string) *Server {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	r := Start(tb, "--replicaof", host, port)
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return r
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica %s never linked to %s: %s", r.Addr(), addr, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartSentinels starts n redis-sentinel processes watching primary as
// master, with a quorum of n/2+1 and a 1 s down-after. They are stopped
// (by pid) when the test ends. It returns their addresses.
func StartSentinels(tb testing.TB, primary *Server, master string, n int) []string {
	tb.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		tb.Fatal("redis-sentinel not found: install it (apt-get install -y redis-sentinel)")
	}
	var addrs []string
	for i := 0; i < n; i++ {
		port := FreePort(tb)
		dir := tb.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, master, primary.Port, n/2+1, master, master, master)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
		log, _ := os.Create(filepath.Join(dir, "sentinel.log"))
		cmd := exec.Command(bin, conf)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		s := redis.NewSentinelClient(&redis.Options{Addr: addr})
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := s.GetMasterAddrByName(context.Background(), master).Result(); err == nil {
				break
			}
			if time.Now().After(deadline) {
				s.Close()
				tb.Fatalf("sentinel %s did not start", addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.Close()
		addrs = append(addrs, addr)
	}
	return addrs
}
