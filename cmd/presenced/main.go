// Command presenced is a presence cluster node: the HTTP API and WebSockets
// in front of Redis (or, with no Redis configured, of an embedded in-process
// store). Every setting is a flag and an environment variable; see
// `presenced -h` and the README.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/demo"
	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/node"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

func main() {
	// `presenced healthcheck`: ask the local node's /readyz (the image's
	// health check: it has no shell and no curl).
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(Healthcheck(context.Background(), os.Args[2:], os.LookupEnv, os.Stderr))
	}
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.LookupEnv); err != nil {
		if errors.Is(err, errHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "presenced:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil {
		m.Logger.Error("start failed", "err", err)
		m.Close()
		os.Exit(1)
	}
	go trimMemory(ctx, 5*time.Second)
	<-ctx.Done()
	stop()
	// The first signal drains; a second one aborts.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		m.Logger.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	m.Logger.Info("draining")
	if err := m.Shutdown(context.Background()); err != nil {
		m.Logger.Error("shutdown", "err", err)
		os.Exit(1)
	}
}

var errHelp = errors.New("help requested")

// Main is a node: its configuration and everything it started.
type Main struct {
	Config Config
	Logger *slog.Logger

	embedded *redisstore.Embedded
	rdb      redis.UniversalClient
	replica  *redis.Client // region-local read replica, or nil
	node     *node.Node
	http     *http.Server
	ln       net.Listener
	lane     *httpapi.Lane
	serveErr chan error
}

// NewMain returns a node with the default configuration.
func NewMain() *Main {
	c, _ := ParseConfig(nil, func(string) (string, bool) { return "", false }, io.Discard)
	return &Main{Config: c, Logger: slog.Default()}
}

// ParseFlags reads the configuration from args and the environment
// (lookupEnv is os.LookupEnv, or a stand-in in tests).
func (m *Main) ParseFlags(args []string, lookupEnv func(string) (string, bool)) error {
	c, err := ParseConfig(args, lookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	if err != nil {
		return err
	}
	m.Config = c
	m.Logger = newLogger(c, os.Stderr)
	redis.SetLogger(redisLogger{m.Logger})
	return nil
}

// redisLogger sends go-redis's own messages (failed dials during an outage)
// to slog at debug level; the node reports outages itself.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "go-redis")
}

func newLogger(c Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Run connects to the store, starts the reaper and the HTTP server, and
// returns once the node is listening. Close (or Shutdown) stops it.
func (m *Main) Run(ctx context.Context) error {
	c := m.Config
	if c.NodeID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		rand.Read(b[:])
		c.NodeID = host + "-" + hex.EncodeToString(b[:])
	}
	log := m.Logger.With("node", c.NodeID, "region", c.Region)
	m.Logger = log

	if err := m.openRedis(ctx, c); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var hsSecret []byte
	if c.JWTHS256Secret != "" {
		hsSecret = []byte(c.JWTHS256Secret)
	}
	var origins []string
	if c.CORSOriginsSet {
		origins = c.CORSOrigins
		if origins == nil {
			origins = []string{}
		}
	}
	label := c.NodeID + "@" + c.Region
	n, err := node.New(ctx, node.Config{
		Redis: m.rdb,
		Store: redisstore.Config{
			Prefix:            c.KeyPrefix,
			Retention:         c.OfflineRetention,
			MaxSessionTimeout: time.Duration(float64(presence.MaxInterval) * c.TimeoutFactor),
			ReapInterval:      c.ReapInterval,
			Reader:            m.reader(),
			Webhooks: redisstore.WebhookConfig{
				URL:    c.WebhookURL,
				Secret: c.WebhookSecret,
				Events: c.WebhookEvents,
				MaxAge: c.WebhookMaxAge,
			},
			ReplicaMaxLag: c.ReplicaMaxLag,
		},
		TokenSecret:  c.TokenSecret,
		WaitForStore: true,
		Auth: auth.Config{
			HS256Secret: hsSecret,
			JWKSURL:     c.JWKSURL,
			JWKSFile:    c.JWKSFile,
			Issuer:      c.JWTIssuer,
			Audience:    c.JWTAudience,
			OrgClaim:    c.JWTOrgClaim,
			AdminToken:  c.AdminToken,
		},
		Service:    presence.ServiceConfig{TimeoutFactor: c.TimeoutFactor, MaxDataBytes: c.MaxDataBytes, Node: label},
		Lease:      c.NodeLease,
		RoomFrames: c.WSRoomFrames,
		HTTP: httpapi.Config{
			CORSOrigins:    origins,
			AnonymousEmpty: c.Anonymous == "empty",
			Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
			MaxSockets:     c.MaxSockets,
			MaxInFlight:    c.MaxInFlight,
			BodyTimeout:    c.BodyTimeout,
		},
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	m.node = n
	if !n.Verifier.Enabled() {
		log.Warn("auth is OFF: no PRESENCE_JWT_HS256_SECRET, PRESENCE_JWKS_URL or PRESENCE_JWKS_FILE; requests name their user, org is \"default\", admin endpoints are open")
	}
	api := n.API
	demoOn := c.Demo == "on" || c.Demo == "auto" && m.embedded != nil // auto: only on the embedded store
	if demoOn {
		e := api.Echo()
		e.GET("/demo/*", echo.WrapHandler(http.StripPrefix("/demo", demo.Handler())))
		toDemo := func(ec echo.Context) error { return ec.Redirect(http.StatusFound, "/demo/") }
		e.GET("/demo", toDemo)
		e.GET("/", toDemo)
	}
	m.ln, err = net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	m.http = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: c.HeaderTimeout,
		ReadTimeout:       c.HeaderTimeout + c.BodyTimeout, // headers + body; the API bounds its bodies itself (BodyTimeout)
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Heartbeat-only keep-alive connections are served by the API's lane,
	// the others by m.http (httpapi.Lane).
	m.lane = api.NewLane(m.ln, httpapi.LaneConfig{
		HeaderTimeout: m.http.ReadHeaderTimeout, IdleTimeout: m.http.IdleTimeout, WriteTimeout: m.http.WriteTimeout,
	})
	m.serveErr = make(chan error, 1)
	go func() { m.serveErr <- m.http.Serve(m.lane) }()
	log.Info("listening", "addr", m.ln.Addr().String())
	if demoOn {
		host, port, _ := net.SplitHostPort(m.ln.Addr().String())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "localhost"
		}
		log.Info("demo page (PRESENCE_DEMO=off to turn it off)", "url", "http://"+net.JoinHostPort(host, port)+"/demo/")
	}
	return nil
}

// noRetries turns go-redis's own retries off on the clients that write:
// after a network error or a read timeout it cannot know whether a script
// ran, and it would send it again, later, on another connection. The node
// answers 503 instead and the client (or the node's keep-alive) tries again
// with a new call and a new "not after" bound. The replica client, which
// only reads, retries once.
const noRetries = -1

// openRedis creates the Redis clients: a Redis Cluster, a Sentinel-managed
// primary, one Redis (with an optional region-local replica for reads), or
// the embedded store when none is configured.
func (m *Main) openRedis(ctx context.Context, c Config) error {
	const timeout = time.Second
	switch {
	case len(c.RedisClusterAddrs) > 0:
		m.rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.RedisClusterAddrs, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			PoolTimeout: timeout, ContextTimeoutEnabled: true, MaxRetries: noRetries,
			MaxIdleConns:   redisstore.MaxIdleConns,
			ReadBufferSize: redisstore.ReadBufferSize, WriteBufferSize: redisstore.WriteBufferSize,
			PipelineReadBufferSize: redisstore.PipelineReadBufferSize, PipelineWriteBufferSize: redisstore.PipelineWriteBufferSize,
			PipelinePoolSize: redisstore.PipelinePoolSize,
		})
		m.Logger.Info("store: Redis Cluster", "seeds", c.RedisClusterAddrs)
		return nil
	case len(c.SentinelAddrs) > 0:
		if c.SentinelMaster == "" {
			return errors.New("PRESENCE_REDIS_SENTINEL_MASTER: required with PRESENCE_REDIS_SENTINEL_ADDRS")
		}
		m.rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.SentinelMaster, SentinelAddrs: c.SentinelAddrs,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			PoolTimeout: timeout, ContextTimeoutEnabled: true, MaxRetries: noRetries,
			MaxIdleConns:   redisstore.MaxIdleConns,
			ReadBufferSize: redisstore.ReadBufferSize, WriteBufferSize: redisstore.WriteBufferSize,
			PipelineReadBufferSize: redisstore.PipelineReadBufferSize, PipelineWriteBufferSize: redisstore.PipelineWriteBufferSize,
			PipelinePoolSize: redisstore.PipelinePoolSize,
		})
		m.Logger.Info("store: Redis Sentinel", "sentinels", c.SentinelAddrs, "master", c.SentinelMaster)
		return nil
	}
	url := c.RedisURL
	if url == "" {
		emb, err := redisstore.StartEmbedded(c.EmbeddedRedisAddr)
		if err != nil {
			return fmt.Errorf("embedded store: %w", err)
		}
		m.embedded = emb
		url = "redis://" + emb.Addr()
		m.Logger.Warn("EMBEDDED STORE: no PRESENCE_REDIS_URL is set, so presence state lives in this process only: it is lost when the node stops and is not shared with other nodes. Set PRESENCE_REDIS_URL for production.",
			"resp_addr", emb.Addr(), "redis_cli", "redis-cli -u redis://"+emb.Addr())
	} else if c.EmbeddedRedisAddr != "" {
		m.Logger.Warn("PRESENCE_EMBEDDED_REDIS_ADDR is ignored: a Redis is configured")
	}
	client := func(setting, url string, retries int) (*redis.Client, error) {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", setting, err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
		opt.ContextTimeoutEnabled = true
		opt.MaxRetries = retries
		opt.MaxIdleConns = redisstore.MaxIdleConns
		opt.ReadBufferSize, opt.WriteBufferSize = redisstore.ReadBufferSize, redisstore.WriteBufferSize
		opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize = redisstore.PipelineReadBufferSize, redisstore.PipelineWriteBufferSize
		opt.PipelinePoolSize = redisstore.PipelinePoolSize
		return redis.NewClient(opt), nil
	}
	var err error
	if m.rdb, err = client("PRESENCE_REDIS_URL", url, noRetries); err != nil {
		return err
	}
	if c.RedisReplicaURL != "" {
		if m.embedded != nil {
			return errors.New("PRESENCE_REDIS_REPLICA_URL needs PRESENCE_REDIS_URL")
		}
		if m.replica, err = client("PRESENCE_REDIS_REPLICA_URL", c.RedisReplicaURL, 1); err != nil {
			return err
		}
		m.Logger.Info("store: lists and subscriptions read from the region-local replica")
	}
	return nil
}

// reader is the read replica as a client for the store (nil: the primary).
func (m *Main) reader() redis.UniversalClient {
	if m.replica == nil {
		return nil
	}
	return m.replica
}

// Addr returns the address the node listens on.
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Shutdown stops accepting, lets requests in flight finish (up to the
// shutdown timeout), then closes everything.
func (m *Main) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.Config.ShutdownTimeout)
	defer cancel()
	var err error
	if m.node != nil {
		m.node.Drain(ctx)
	}
	if m.http != nil {
		err = m.http.Shutdown(ctx)
	}
	if m.lane != nil {
		err = errors.Join(err, m.lane.Shutdown(ctx))
	}
	return errors.Join(err, m.Close())
}

// Close stops the node at once. Idempotent.
func (m *Main) Close() error {
	if m.http != nil {
		m.http.Close()
	}
	if m.lane != nil {
		m.lane.CloseAll()
	}
	if m.node != nil {
		m.node.Close()
	}
	if m.rdb != nil {
		m.rdb.Close()
	}
	if m.replica != nil {
		m.replica.Close()
	}
	if m.embedded != nil {
		m.embedded.Close()
	}
	return nil
}
