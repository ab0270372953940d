// Package node wires one presence node: the Redis store and its reaper, the
// Service, the real-time core (Realtime, with its Keeper and its pub/sub
// Subscriber), the JWT verifier and the HTTP/WebSocket API. cmd/presenced
// and the test helpers (httpapitest) build their nodes with it, so tests
// run the wiring that production runs.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config describes a node. Zero values mean the defaults of each part.
type Config struct {
	// Redis is the store's client (required); the caller closes it.
	Redis redis.UniversalClient
	// Store configures the store; its Cluster, Logger and Registerer are
	// set from this Config.
	Store redisstore.Config
	// TokenSecret signs room and session tokens; empty: a secret generated
	// once and shared through Redis.
	TokenSecret string
	// WaitForStore retries reading the shared token secret while Redis is
	// unreachable (until ctx is done), so that a node may start before its
	// Redis. Otherwise New fails at once.
	WaitForStore bool
	// Auth configures the JWT verifier; its Logger is set from this Config.
	Auth auth.Config
	// Service configures the presence rules; Node labels the node
	// ("node@region").
	Service presence.ServiceConfig
	// Lease is the node's liveness lease (PRESENCE_NODE_LEASE); MaxRooms
	// the rooms one socket may use.
	Lease    time.Duration
	MaxRooms int
	// RoomFrames is PRESENCE_WS_ROOM_FRAMES: the frames a socket gets per
	// room in any second (presence.RealtimeConfig). Zero means 20.
	RoomFrames int
	// HTTP configures the API; its Realtime, Ready, Registerer and Logger
	// are set from this Config.
	HTTP httpapi.Config
	// Registerer receives every metric of the node; nil: none exported.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Node is a running node. Serve API with an http.Server.
type Node struct {
	Store      *redisstore.Store
	Subscriber *redisstore.Subscriber
	Service    *presence.Service
	Tokens     *presence.Tokens
	Realtime   *presence.Realtime
	Verifier   *auth.Verifier
	API        *httpapi.Server

	cancel context.CancelFunc // the catch-up loop
	wg     sync.WaitGroup
}

// New builds and opens a node: the store's scripts are loaded, its reaper
// runs, the keeper has registered the node, pub/sub is connected. On error
// what was started is stopped again.
func New(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg.Redis == nil {
		return nil, errors.New("node: no Redis client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	n = &Node{}
	started := n // "return nil, err" sets n to nil before this runs
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	_, cfg.Store.Cluster = cfg.Redis.(*redis.ClusterClient)
	cfg.Store.Logger, cfg.Store.Registerer = log, cfg.Registerer
	n.Store = redisstore.NewStore(cfg.Redis, cfg.Store)
	secret, err := n.secret(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if n.Tokens, err = presence.NewTokens(secret); err != nil {
		return nil, fmt.Errorf("PRESENCE_TOKEN_SECRET: %w", err)
	}
	if err := n.Store.Open(ctx); err != nil {
		return nil, err
	}
	cfg.Auth.Logger = log
	if n.Verifier, err = auth.NewVerifier(ctx, cfg.Auth); err != nil {
		return nil, err
	}
	n.Service = presence.NewService(n.Store, n.Tokens, cfg.Service)
	n.Subscriber = n.Store.NewSubscriber(redisstore.SubscriberConfig{Logger: log})
	n.Realtime = presence.NewRealtime(n.Service, presence.RealtimeConfig{
		Subscriber:    n.Subscriber,
		TimeoutFactor: cfg.Service.TimeoutFactor,
		Node:          cfg.Service.Node,
		Lease:         cfg.Lease,
		MaxRooms:      cfg.MaxRooms,
		RoomFrames:    cfg.RoomFrames,
		Logger:        log,
	})
	n.Subscriber.SetHandler(n.Realtime)
	hc := cfg.HTTP
	hc.Realtime, hc.Ready, hc.ReadyDetail, hc.Registerer, hc.Logger = n.Realtime, n.Ready, n.readyDetail, cfg.Registerer, log
	n.API = httpapi.NewServer(n.Service, n.Verifier, hc)
	if err := n.Subscriber.Open(ctx); err != nil {
		return nil, err
	}
	if _, _, replica := n.Store.ReplicaLag(time.Now()); replica {
		cctx, cancel := context.WithCancel(context.Background())
		n.cancel = cancel
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.runCatchUp(cctx)
		}()
	}
	return n, nil
}

// catchUpEvery is how often a node whose replica lags beyond the bound
// compares its rooms' versions with the primary's.
const catchUpEvery = 500 * time.Millisecond

// runCatchUp bounds what sockets miss while the region's replica lags: the
// events come through the replica, as late as it is, so every catchUpEvery
// the node reads its rooms' versions on the primary (one round trip) and
// syncs the rooms it is behind in. Nothing while the replica is within the
// bound.
func (n *Node) runCatchUp(ctx context.Context) {
	t := time.NewTicker(catchUpEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, stale, _ := n.Store.ReplicaLag(time.Now()); !stale {
			continue
		}
		rooms := n.Realtime.Rooms()
		if len(rooms) == 0 {
			continue
		}
		versions, err := n.Store.Versions(ctx, rooms)
		if err != nil {
			continue // the primary is out of reach too: nothing to catch up with
		}
		for i, room := range rooms {
			n.Realtime.CatchUp(room, versions[i])
		}
	}
}

// secret gets the token secret, retrying while Redis is unreachable when
// the Config asks for it.
func (n *Node) secret(ctx context.Context, cfg Config) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		secret, err := n.Store.EnsureSecret(ctx, cfg.TokenSecret)
		if err == nil || !cfg.WaitForStore {
			return secret, err
		}
		if attempt%10 == 0 {
			cfg.Logger.Warn("waiting for Redis", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for Redis: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Ready reports whether the node can serve: the store answers and pub/sub
// is connected.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.Store.Ping(ctx); err != nil {
		return err
	}
	if !n.Subscriber.Connected() {
		return errors.New("pub/sub is not connected")
	}
	return nil
}

// readyDetail tells /readyz how the region's read replica is doing: "ok"
// (lists and counts read it), "lagging" (further behind the primary than
// the bound: they read the primary, and the node stays ready while the
// primary answers), or nothing without a replica.
func (n *Node) readyDetail() map[string]any {
	lag, stale, ok := n.Store.ReplicaLag(time.Now())
	if !ok {
		return nil
	}
	state := "ok"
	if stale {
		state = "lagging"
	}
	return map[string]any{"replica": state, "replicaLagSeconds": math.Round(min(lag, time.Hour).Seconds()*1000) / 1000}
}

// Drain refuses new sockets and closes the open ones with 1012, handing
// their sessions to their deadlines (the clients resume them elsewhere).
func (n *Node) Drain(ctx context.Context) {
	if n.API != nil {
		n.API.Drain(ctx)
	}
}

// Close stops the node's background work. The Redis client is the
// caller's. Idempotent.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
		n.wg.Wait()
	}
	if n.API != nil {
		n.API.Close()
	}
	if n.Realtime != nil {
		n.Realtime.Close()
	}
	if n.Subscriber != nil {
		n.Subscriber.Close()
	}
	if n.Store != nil {
		n.Store.Close()
	}
	if n.Verifier != nil {
		n.Verifier.Close()
	}
	return nil
}
