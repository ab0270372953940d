// Package cliutil is what presencectl and presencebench share: the flags of
// the cluster's Redis (--redis-url, --redis-cluster-addrs, --prefix, --org,
// --json, --timeout) and the connection they make, the parsing of a
// command's flags and arguments, usage errors, and the table and JSON
// output.
package cliutil

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/redis/go-redis/v9"
)

// Main runs a command: run with the program's arguments (without its
// name), stdout, stderr and the environment, cancelled by SIGINT or SIGTERM;
// the process exits with the status run returns. go-redis's own log lines
// are dropped: the commands report errors themselves.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int) {
	redis.SetLogger(QuietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// QuietLogger drops go-redis's own log lines (failed dials, reconnects):
// the commands report errors themselves. Use it with redis.SetLogger.
type QuietLogger struct{}

// Printf does nothing.
func (QuietLogger) Printf(context.Context, string, ...any) {}

// Globals are the flags of the cluster's Redis that every command takes.
type Globals struct {
	RedisURL string
	Cluster  string // comma-separated Redis Cluster seeds; overrides RedisURL
	Prefix   string
	Org      string
	JSON     bool
	Timeout  time.Duration
}

// DefaultGlobals returns the defaults of the global flags, from the
// environment (PRESENCE_REDIS_URL, PRESENCE_REDIS_CLUSTER_ADDRS,
// PRESENCE_KEY_PREFIX) where set.
func DefaultGlobals(getenv func(string) string) Globals {
	return Globals{
		RedisURL: envOr(getenv, "PRESENCE_REDIS_URL", "redis://127.0.0.1:6379"),
		Cluster:  envOr(getenv, "PRESENCE_REDIS_CLUSTER_ADDRS", ""),
		Prefix:   envOr(getenv, "PRESENCE_KEY_PREFIX", "presence"),
		Org:      "default",
		Timeout:  5 * time.Second,
	}
}

// Register defines the global flags on fs, with their current values as
// defaults, so that a command's flag set accepts them too.
func (g *Globals) Register(fs *flag.FlagSet) {
	fs.StringVar(&g.RedisURL, "redis-url", g.RedisURL, "Redis URL or host:port (env PRESENCE_REDIS_URL)")
	// Help shows the default; never a password from the environment.
	fs.Lookup("redis-url").DefValue = Redact(g.RedisURL)
	fs.StringVar(&g.Cluster, "redis-cluster-addrs", g.Cluster, "comma-separated Redis Cluster seed addresses (env PRESENCE_REDIS_CLUSTER_ADDRS); used instead of --redis-url")
	fs.StringVar(&g.Prefix, "prefix", g.Prefix, "key prefix (env PRESENCE_KEY_PREFIX)")
	fs.StringVar(&g.Org, "org", g.Org, "org")
	fs.BoolVar(&g.JSON, "json", g.JSON, "JSON output")
	fs.DurationVar(&g.Timeout, "timeout", g.Timeout, "bound of each call to Redis")
}

// Check validates the global flags.
func (g *Globals) Check() error {
	if err := presence.ValidateOrg(g.Org); err != nil {
		return fmt.Errorf("--org: %s", presence.ErrorMessage(err))
	}
	if g.Prefix == "" {
		return errors.New("--prefix must not be empty")
	}
	if g.Timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if g.RedisURL == "" {
		return errors.New("--redis-url must not be empty")
	}
	return nil
}

// Env is one invocation: its global flags, its outputs and, once
// connected, the cluster's Redis and the store on it.
type Env struct {
	Globals
	Stdout io.Writer
	Stderr io.Writer
	RDB    redis.UniversalClient // nil until Connect
	Store  *redisstore.Store     // nil until Connect
	Keys   redisstore.Keys
}

// Connect creates the Redis client and the store on it (with the call
// timeout --timeout) and checks that Redis answers. A malformed --redis-url
// is a usage error.
func (e *Env) Connect(ctx context.Context) error {
	t := e.Timeout
	cluster := e.Cluster != ""
	var where string
	if cluster {
		e.RDB = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: strings.Split(e.Cluster, ","), DialTimeout: t, ReadTimeout: t, WriteTimeout: t,
			PoolTimeout: t, ContextTimeoutEnabled: true, MaxRetries: 1, PoolSize: 4,
		})
		where = "the Redis Cluster at " + e.Cluster
	} else {
		raw := e.RedisURL
		if !strings.Contains(raw, "://") {
			raw = "redis://" + raw
		}
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return Usagef("--redis-url: %v", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = t, t, t, t
		opt.ContextTimeoutEnabled, opt.MaxRetries, opt.PoolSize = true, 1, 4
		e.RDB = redis.NewClient(opt)
		where = "Redis at " + Redact(raw)
	}
	e.Store = redisstore.NewStore(e.RDB, redisstore.Config{Prefix: e.Prefix, CallTimeout: t, Cluster: cluster})
	e.Keys = e.Store.Keys()
	pctx, cancel := e.Call(ctx)
	defer cancel()
	if err := e.RDB.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("cannot reach %s (timeout %s): %w", where, t, err)
	}
	return nil
}

// Call bounds one call to Redis (--timeout).
func (e *Env) Call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.Timeout)
}

// Close closes the Redis client, if any.
func (e *Env) Close() {
	if e.RDB != nil {
		e.RDB.Close()
	}
}

// Room is the room roomID of the org (--org).
func (e *Env) Room(roomID string) presence.RoomRef {
	return presence.RoomRef{Org: e.Org, RoomID: roomID}
}

// Parse parses a command's flags, which may come before, between or after
// its arguments, checks the global flags and returns the arguments; want is
// the number of arguments the command takes, names their synopsis.
func (e *Env) Parse(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ErrHelp
			}
			return nil, Usagef("%v", err)
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < want {
		return nil, Usagef("missing %s", names)
	}
	if len(pos) > want {
		return nil, Usagef("unexpected argument %q", pos[want])
	}
	if err := e.Check(); err != nil {
		return nil, Usagef("%v", err)
	}
	return pos, nil
}

// UsageError is a mistake in the command line (exit status 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ErrHelp asks for a command's help text (exit status 0).
var ErrHelp = errors.New("help")

// Fail prints err to e.Stderr as "<prog>: <cmd>: <err>" (no "<cmd>: " when
// cmd is "") and returns the exit status: 2, with a pointer to the help,
// for a usage error, else 1.
func (e *Env) Fail(prog, cmd string, err error) int {
	p := prog + ": "
	if cmd != "" {
		p += cmd + ": "
	}
	var uerr *UsageError
	if errors.As(err, &uerr) {
		fmt.Fprintf(e.Stderr, "%s%s\nRun '%s help' for usage.\n", p, uerr.Msg, prog)
		return 2
	}
	fmt.Fprintf(e.Stderr, "%s%v\n", p, err)
	return 1
}

// Table is an aligned table on w; Flush it at the end.
func Table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// WriteJSON writes v as one indented JSON document.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// YesNo renders a bool as yes or no.
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// OrDash renders "" as "-".
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Redact hides the password of a URL.
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
