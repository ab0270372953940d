// Package httpapitest starts real presence nodes for tests: a Redis store
// (on a real redis-server or Redis Cluster from redistest), the Service, the
// pub/sub Subscriber and the HTTP/WebSocket server on an httptest.Server.
// Every test that needs a node uses it, so they all run the same wiring.
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
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/prometheus/client_golang/prometheus"
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
	// WriteTimeout bounds a write to a socket (zero: the server's default).
	WriteTimeout time.Duration
	// PingInterval: sockets are pinged this often, and one that does not
	// answer within it is dropped. Zero means 2s (quick tests).
	PingInterval time.Duration
	// Quiet discards the node's logs.
	Quiet bool
	// Metrics registers the node's metrics (as presenced does) in a registry
	// of its own.
	Metrics bool
	// PoolSize of the Redis client; zero means go-redis's default.
	PoolSize int
	// CORSOrigins are the allowed browser origins; nil: the server's default.
	CORSOrigins []string
}

// Node is a running node.
type Node struct {
	URL    string
	API    *httpapi.Server
	Store  *redisstore.Store
	Redis  redis.UniversalClient
	Tokens *presence.Tokens
	Prefix string
	Srv    *redistest.Server // the Redis, when not a cluster
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
	var reg prometheus.Registerer
	if o.Metrics {
		reg = prometheus.NewRegistry()
	}
	tb.Cleanup(func() { rdb.Close() })
	store := redisstore.NewStore(rdb, redisstore.Config{Prefix: o.Prefix, ReapInterval: 50 * time.Millisecond,
		Cluster: o.Cluster != nil, Logger: log, Registerer: reg})
	secret, err := store.EnsureSecret(context.Background(), o.TokenSecret)
	if err != nil {
		tb.Fatal(err)
	}
	if err := store.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	tokens, err := presence.NewTokens(secret)
	if err != nil {
		tb.Fatal(err)
	}
	label := o.Name + "@local"
	svc := presence.NewService(store, tokens, presence.ServiceConfig{Node: label})
	acfg := auth.Config{Logger: log}
	if o.Auth != nil {
		acfg = *o.Auth
		acfg.Logger = log
	}
	v, err := auth.NewVerifier(context.Background(), acfg)
	if err != nil {
		tb.Fatal(err)
	}
	n := &Node{Store: store, Redis: rdb, Tokens: tokens, Prefix: o.Prefix, Srv: o.Redis}
	sub := store.NewSubscriber(redisstore.SubscriberConfig{
		OnMessage:     func(r presence.RoomRef, p []byte) { n.API.OnMessage(r, p) },
		OnResubscribe: func(r presence.RoomRef) { n.API.OnResubscribe(r) },
		Logger:        log,
	})
	n.API = httpapi.NewServer(svc, v, httpapi.Config{
		AnonymousEmpty: o.AnonymousEmpty, Ready: store.Ping, Logger: log,
		Subscriber: sub, Node: label, WSQueue: o.Queue, WSMaxRooms: o.MaxRooms,
		WSPingInterval: o.PingInterval, WSWriteTimeout: o.WriteTimeout, Registerer: reg,
		CORSOrigins: o.CORSOrigins,
	})
	if err := sub.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(n.API)
	n.URL = hs.URL
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.API.Drain(ctx)
		cancel()
		hs.Close()
		n.API.Close()
		sub.Close()
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
