package redistest

import (
	"testing"

	"github.com/presencecluster/presence/pkg/netproxy"
)

// StartProxy starts a latency-and-cut proxy (see package netproxy) on a free
// loopback port in front of upstream; it is closed when the test ends. Put
// it between a node and Redis, or on a replica's replication link
// (StartReplicaVia).
func StartProxy(tb testing.TB, upstream string) *netproxy.Proxy {
	tb.Helper()
	p, err := netproxy.Listen("127.0.0.1:0", upstream)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
