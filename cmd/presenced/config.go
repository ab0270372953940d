package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/presencecluster/presence/pkg/redisstore"
)

// Config is every setting of a node (README: Configuration).
type Config struct {
	Addr              string
	RedisURL          string
	RedisClusterAddrs []string
	SentinelAddrs     []string
	SentinelMaster    string
	RedisReplicaURL   string
	ReplicaMaxLag     time.Duration
	EmbeddedRedisAddr string
	KeyPrefix         string
	NodeID            string
	Region            string
	JWTHS256Secret    string
	JWKSURL           string
	JWKSFile          string
	JWTIssuer         string
	JWTAudience       string
	JWTOrgClaim       string
	Anonymous         string
	AdminToken        string
	TokenSecret       string
	TimeoutFactor     float64
	OfflineRetention  time.Duration
	NodeLease         time.Duration
	MaxDataBytes      int
	CORSOrigins       []string
	CORSOriginsSet    bool
	LogFormat         string
	LogLevel          string
	ReapInterval      time.Duration
	MaxSockets        int
	MaxInFlight       int
	WSRoomFrames      int
	// HeaderTimeout bounds reading a request's headers (slow-loris). Not a
	// setting; tests shorten it.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading an API request's body, from the end of its
	// headers (slow bodies must not hold the in-flight slots). Not a
	// setting; tests shorten it.
	BodyTimeout     time.Duration
	ShutdownTimeout time.Duration
	// Demo is PRESENCE_DEMO: auto (on with the embedded store), on or off.
	Demo string
	// Webhooks: WebhookURL empty means off.
	WebhookURL    string
	WebhookSecret string
	WebhookEvents []string
	WebhookMaxAge time.Duration
}

// setting is one configuration value: an environment variable and the flag
// derived from its name (PRESENCE_REDIS_URL is --redis-url).
type setting struct {
	env, def, usage string
	set             func(c *Config, v string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func list(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*p(c) = nil
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*p(c) = append(*p(c), s)
			}
		}
		return nil
	}
}

func dur(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("not a duration: %q", v)
		}
		*p(c) = d
		return nil
	}
}

var settings = []setting{
	{"PRESENCE_ADDR", ":8080", "HTTP/WebSocket listen address", str(func(c *Config) *string { return &c.Addr })},
	{"PRESENCE_REDIS_URL", "", "redis:// or rediss:// URL of a Redis >= 7.0; empty: embedded in-process store", str(func(c *Config) *string { return &c.RedisURL })},
	{"PRESENCE_REDIS_CLUSTER_ADDRS", "", "comma-separated Redis Cluster seed addresses", list(func(c *Config) *[]string { return &c.RedisClusterAddrs })},
	{"PRESENCE_REDIS_SENTINEL_ADDRS", "", "comma-separated Redis Sentinel addresses", list(func(c *Config) *[]string { return &c.SentinelAddrs })},
	{"PRESENCE_REDIS_SENTINEL_MASTER", "", "Redis Sentinel master name", str(func(c *Config) *string { return &c.SentinelMaster })},
	{"PRESENCE_REDIS_REPLICA_URL", "", "region-local read replica for lists and subscriptions", str(func(c *Config) *string { return &c.RedisReplicaURL })},
	{"PRESENCE_REPLICA_MAX_LAG", "2s", "while the replica may be further behind the primary than this, lists and counts read the primary", dur(func(c *Config) *time.Duration { return &c.ReplicaMaxLag })},
	{"PRESENCE_EMBEDDED_REDIS_ADDR", "", "embedded mode: also serve the store's RESP protocol here (for redis-cli)", str(func(c *Config) *string { return &c.EmbeddedRedisAddr })},
	{"PRESENCE_KEY_PREFIX", "presence", "prefix of every Redis key and channel", str(func(c *Config) *string { return &c.KeyPrefix })},
	{"PRESENCE_NODE_ID", "", "this node's id; empty: hostname + random suffix", str(func(c *Config) *string { return &c.NodeID })},
	{"PRESENCE_REGION", "local", "this node's region label", str(func(c *Config) *string { return &c.Region })},
	{"PRESENCE_JWT_HS256_SECRET", "", "verify JWTs signed with this shared secret (>= 32 bytes)", str(func(c *Config) *string { return &c.JWTHS256Secret })},
	{"PRESENCE_JWKS_URL", "", "verify JWTs with the key set at this URL", str(func(c *Config) *string { return &c.JWKSURL })},
	{"PRESENCE_JWKS_FILE", "", "verify JWTs with the key set in this file", str(func(c *Config) *string { return &c.JWKSFile })},
	{"PRESENCE_JWT_ISSUER", "", "required iss", str(func(c *Config) *string { return &c.JWTIssuer })},
	{"PRESENCE_JWT_AUDIENCE", "", "required aud", str(func(c *Config) *string { return &c.JWTAudience })},
	{"PRESENCE_JWT_ORG_CLAIM", "org_id", "claim that names the org", str(func(c *Config) *string { return &c.JWTOrgClaim })},
	{"PRESENCE_ANONYMOUS", "reject", "heartbeat without a valid JWT: reject (401) or empty (200, empty tokens)", str(func(c *Config) *string { return &c.Anonymous })},
	{"PRESENCE_ADMIN_TOKEN", "", "bearer token for the admin endpoints", str(func(c *Config) *string { return &c.AdminToken })},
	{"PRESENCE_TOKEN_SECRET", "", "key that signs room/session tokens (equal on all nodes); empty: generated once, shared through Redis", str(func(c *Config) *string { return &c.TokenSecret })},
	{"PRESENCE_TIMEOUT_FACTOR", "2.5", "session timeout = interval x factor", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 || f > 10 {
			return fmt.Errorf("must be a number from 1 to 10: %q", v)
		}
		c.TimeoutFactor = f
		return nil
	}},
	{"PRESENCE_OFFLINE_RETENTION", "168h", "how long offline members are kept", dur(func(c *Config) *time.Duration { return &c.OfflineRetention })},
	{"PRESENCE_NODE_LEASE", "10s", "this node's liveness lease: its sockets' sessions end at most min(interval x factor, lease) + 2s after it dies", dur(func(c *Config) *time.Duration { return &c.NodeLease })},
	{"PRESENCE_MAX_DATA_BYTES", "4096", "max size of a member's data", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 60000 {
			return fmt.Errorf("must be an integer from 2 to 60000: %q", v)
		}
		c.MaxDataBytes = n
		return nil
	}},
	{"PRESENCE_CORS_ORIGINS", "", "allowed browser origins; default * when auth is off, else none", func(c *Config, v string) error {
		c.CORSOriginsSet = true
		return list(func(c *Config) *[]string { return &c.CORSOrigins })(c, v)
	}},
	{"PRESENCE_LOG_FORMAT", "text", "log format: text or json", str(func(c *Config) *string { return &c.LogFormat })},
	{"PRESENCE_LOG_LEVEL", "info", "log level: debug, info, warn, error", str(func(c *Config) *string { return &c.LogLevel })},
	{"PRESENCE_REAP_INTERVAL", "250ms", "how often each node looks for expired sessions", dur(func(c *Config) *time.Duration { return &c.ReapInterval })},
	{"PRESENCE_MAX_SOCKETS", "0", "most WebSockets this node accepts; 0: no limit", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("must be a non-negative integer: %q", v)
		}
		c.MaxSockets = n
		return nil
	}},
	{"PRESENCE_WS_ROOM_FRAMES", "20", "most frames a WebSocket gets per room in any second; above, a room's events are coalesced into batches", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("must be a positive integer: %q", v)
		}
		c.WSRoomFrames = n
		return nil
	}},
	{"PRESENCE_MAX_INFLIGHT", "2000", "most HTTP API requests served at once; more get 503 at once", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("must be a positive integer: %q", v)
		}
		c.MaxInFlight = n
		return nil
	}},
	{"PRESENCE_SHUTDOWN_TIMEOUT", "10s", "how long a graceful shutdown may take", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"PRESENCE_DEMO", "auto", "serve the demo page at /demo/: auto (on with the embedded store, off with a Redis URL), on or off", func(c *Config, v string) error {
		if v != "auto" && v != "on" && v != "off" {
			return fmt.Errorf("must be auto, on or off: %q", v)
		}
		c.Demo = v
		return nil
	}},
	{"PRESENCE_WEBHOOK_URL", "", "http(s):// URL that receives presence events (POST); empty: webhooks off", func(c *Config, v string) error {
		if v == "" {
			c.WebhookURL = ""
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("must be an http:// or https:// URL: %q", v)
		}
		c.WebhookURL = v
		return nil
	}},
	{"PRESENCE_WEBHOOK_SECRET", "", "key that signs webhook requests (>= 16 bytes); required with PRESENCE_WEBHOOK_URL", str(func(c *Config) *string { return &c.WebhookSecret })},
	{"PRESENCE_WEBHOOK_EVENTS", "join,leave", "events sent to the webhook: any of join, leave, update, remove", func(c *Config, v string) error {
		if err := list(func(c *Config) *[]string { return &c.WebhookEvents })(c, v); err != nil {
			return err
		}
		for _, e := range c.WebhookEvents {
			if !slices.Contains(redisstore.WebhookEvents, e) {
				return fmt.Errorf("unknown event %q (join, leave, update, remove)", e)
			}
		}
		if len(c.WebhookEvents) == 0 {
			return fmt.Errorf("names no event")
		}
		return nil
	}},
	{"PRESENCE_WEBHOOK_MAX_AGE", "1h", "how long an undelivered webhook event is retried before it is dropped", dur(func(c *Config) *time.Duration { return &c.WebhookMaxAge })},
}

func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "PRESENCE_")), "_", "-")
}

// ParseConfig reads the settings from args and the environment; a flag wins
// over its environment variable, which wins over the default. A variable
// that is set but empty counts as set (PRESENCE_CORS_ORIGINS= allows none).
func ParseConfig(args []string, lookupEnv func(string) (string, bool), usage io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("presenced", flag.ContinueOnError)
	fs.SetOutput(usage)
	given := map[string]*string{}
	for _, s := range settings {
		given[s.env] = fs.String(flagName(s.env), "", fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def))
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	flagged := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { flagged[f.Name] = true })
	for _, s := range settings {
		v, ok := s.def, false
		if e, set := lookupEnv(s.env); set {
			v, ok = e, true
		}
		if flagged[flagName(s.env)] {
			v, ok = *given[s.env], true
		}
		if !ok && s.env == "PRESENCE_CORS_ORIGINS" {
			continue
		}
		if err := s.set(&c, v); err != nil {
			return c, fmt.Errorf("%s: %w", s.env, err)
		}
	}
	switch c.Anonymous {
	case "reject", "empty":
	default:
		return c, fmt.Errorf("PRESENCE_ANONYMOUS: must be reject or empty, not %q", c.Anonymous)
	}
	c.HeaderTimeout = 5 * time.Second
	c.BodyTimeout = 5 * time.Second
	if c.ReapInterval < 10*time.Millisecond {
		return c, fmt.Errorf("PRESENCE_REAP_INTERVAL: must be at least 10ms")
	}
	if c.ReplicaMaxLag < 100*time.Millisecond || c.ReplicaMaxLag > time.Hour {
		return c, fmt.Errorf("PRESENCE_REPLICA_MAX_LAG: must be from 100ms to 1h")
	}
	if c.NodeLease < 2*time.Second || c.NodeLease > 10*time.Minute {
		return c, fmt.Errorf("PRESENCE_NODE_LEASE: must be from 2s to 10m")
	}
	if c.OfflineRetention < time.Minute {
		return c, fmt.Errorf("PRESENCE_OFFLINE_RETENTION: must be at least 1m")
	}
	if c.WebhookURL != "" && len(c.WebhookSecret) < 16 {
		return c, fmt.Errorf("PRESENCE_WEBHOOK_SECRET: must be at least 16 bytes with PRESENCE_WEBHOOK_URL")
	}
	if c.WebhookMaxAge < time.Second {
		return c, fmt.Errorf("PRESENCE_WEBHOOK_MAX_AGE: must be at least 1s")
	}
	return c, nil
}
