// Package httpapitest starts real presence nodes for tests, on a real
// redis-server or Redis Cluster from redistest, wired by package node as
// cmd/presenced wires them, and served by an httptest.Server. Every test
// that needs a node uses it.
package httpapitest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/node"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// Options describe a node. Zero values mean the defaults noted.
type Options struct {
	Redis   *redistest.Server  // a Redis; nil: start one (unless Cluster)
	Cluster *redistest.Cluster // run on this Redis Cluster instead
	Prefix  string             // key prefix; empty: a unique one
	Name    string             // node name; empty: "node"
	// Auth configures the JWT verifier; nil: auth off.
	Auth           *auth.Config
	AnonymousEmpty bool
	// TokenSecret; empty: generated and shared through Redis.
	TokenSecret string
	// Queue, MaxRooms: the WebSocket limits (zero: the server's defaults).
	Queue, MaxRooms int
	// RoomFrames: the frames a socket gets per room in a second (zero: the
	// node's default, 20).
	RoomFrames int
	// WriteTimeout bounds a write to a socket (zero: the server's default).
	WriteTimeout time.Duration
	// PingInterval: sockets are pinged this often, and one that does not
	// answer within it is dropped. Zero means 2s (quick tests).
	PingInterval time.Duration
	// Quiet discards the node's logs.
	Quiet bool
	// Metrics registers the node's metrics, the Go runtime's and the
	// process's in a registry of its own and serves them on /metrics, as
	// presenced does.
	Metrics bool
	// MaxInFlight and BodyTimeout: the HTTP limits (zero: the defaults).
	MaxInFlight int
	BodyTimeout time.Duration
	// PoolSize of the Redis client; zero means go-redis's default.
	PoolSize int
	// CORSOrigins are the allowed browser origins; nil: the server's default.
	CORSOrigins []string
}

// Node is a running node.
type Node struct {
	*node.Node
	URL    string
	API    *httpapi.Server
	Store  *redisstore.Store
	Redis  redis.UniversalClient
	Tokens *presence.Tokens
	Prefix string
	Srv    *redistest.Server // the Redis, when not a cluster
	Lane   *httpapi.Lane     // the API's heartbeat lane, in front of net/http
}

// Start starts a node; everything stops when the test ends.
func Start(tb testing.TB, o Options) *Node {
	tb.Helper()
	if o.Redis == nil && o.Cluster == nil {
		o.Redis = redistest.Start(tb)
	}
	if o.Prefix == "" {
		o.Prefix = redistest.UniquePrefix(tb)
	}
	if o.Name == "" {
		o.Name = "node"
	}
	if o.PingInterval == 0 {
		o.PingInterval = 2 * time.Second
	}
	log := slog.Default()
	if o.Quiet {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var rdb redis.UniversalClient
	if o.Cluster != nil {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.Cluster.Addrs(), DialTimeout: 500 * time.Millisecond, PoolSize: o.PoolSize})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: o.Redis.Addr(), DialTimeout: 500 * time.Millisecond, MaxRetries: -1, PoolSize: o.PoolSize})
	}
	hc := httpapi.Config{
		AnonymousEmpty: o.AnonymousEmpty, WSQueue: o.Queue, WSPingInterval: o.PingInterval,
		WSWriteTimeout: o.WriteTimeout, CORSOrigins: o.CORSOrigins, MaxInFlight: o.MaxInFlight, BodyTimeout: o.BodyTimeout,
	}
	var reg prometheus.Registerer
	if o.Metrics {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		hc.Metrics = promhttp.HandlerFor(r, promhttp.HandlerOpts{})
		reg = r
	}
	tb.Cleanup(func() { rdb.Close() })
	acfg := auth.Config{}
	if o.Auth != nil {
		acfg = *o.Auth
	}
	label := o.Name + "@local"
	nd, err := node.New(context.Background(), node.Config{
		Redis:       rdb,
		Store:       redisstore.Config{Prefix: o.Prefix, ReapInterval: 50 * time.Millisecond},
		TokenSecret: o.TokenSecret,
		Auth:        acfg,
		Service:     presence.ServiceConfig{Node: label},
		MaxRooms:    o.MaxRooms,
		RoomFrames:  o.RoomFrames,
		HTTP:        hc,
		Registerer:  reg,
		Logger:      log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	n := &Node{Node: nd, API: nd.API, Store: nd.Store, Redis: rdb, Tokens: nd.Tokens, Prefix: o.Prefix, Srv: o.Redis}
	// Served as presenced serves it: heartbeat-only connections by the
	// API's lane, the others by net/http.
	hs := httptest.NewUnstartedServer(n.API)
	lane := n.API.NewLane(hs.Listener, httpapi.LaneConfig{HeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, WriteTimeout: 30 * time.Second})
	hs.Listener = lane
	hs.Start()
	n.Lane = lane
	n.URL = hs.URL
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		nd.Drain(ctx)
		cancel()
		hs.Close()
		lane.CloseAll()
		nd.Close()
	})
	return n
}

// StartMany starts n nodes sharing one Redis (or cluster) and key prefix.
func StartMany(tb testing.TB, n int, o Options) []*Node {
	tb.Helper()
	if o.Redis == nil && o.Cluster == nil {
		o.Redis = redistest.Start(tb)
	}
	if o.Prefix == "" {
		o.Prefix = redistest.UniquePrefix(tb)
	}
	var nodes []*Node
	for i := 0; i < n; i++ {
		oi := o
		oi.Name = "n" + string(rune('0'+i))
		nodes = append(nodes, Start(tb, oi))
	}
	return nodes
}
