// Command presencectl is the operator CLI of a presence cluster. It talks to
// the cluster's Redis directly (a real Redis, or the RESP address of a node's
// embedded store) and shows what the nodes see: the rooms of an org, a room's
// members and live sessions (with the node that owns each one), the rooms of
// a user, and a room's events as they happen.
//
// It reads the same keys through the same code as the nodes: key names come
// from redisstore.Keys, and members and user rooms from redisstore.Store's
// List, Count and UserRooms (the Lua scripts the API uses). The inspection
// commands change no presence state (only `user`, like the API, drops
// entries of the user's room index that point at rooms which forgot the
// user); `bench` is the load generator: it drives running nodes (and makes
// sessions there) to measure them.
//
// Usage:
//
//	presencectl [global flags] <command> [flags] [args]
//
// Run `presencectl help` for the commands and flags. Output is an aligned
// table by default, JSON with --json. Exit status: 0 success, 1 error (Redis
// unreachable, room not found), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs failed dials and reconnects itself; the CLI reports
	// errors on its own.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

const usageText = `presencectl: operator CLI of a presence cluster. It reads the cluster's Redis
(or the RESP address of a node's embedded store); the inspection commands change no
presence state, bench loads running nodes.

Usage:
  presencectl [global flags] <command> [flags] [args]

Commands:
  rooms [--limit N]          the org's rooms, most online users first: roomId,
                             version, online users, live sessions. It SCANs the
                             whole keyspace (never KEYS): a tool for operators,
                             not for a hot path. --limit (default 100, 0 = all)
                             bounds the rows shown, not the scan.
  room <roomId> [--limit N]  a room's members in list order (online first, in
                             join order; then offline, most recent first) and
                             its live sessions: sessionId, userId, owning node
                             (<nodeId>@<region>), deadline. --limit (1-1000,
                             default 1000) bounds members and sessions.
  user <userId>              the user's rooms, online first.
  watch <roomId>             print the room's events as they are published (one
                             line each; --json: the raw event JSON per line)
                             until interrupted (Ctrl-C, SIGTERM).
  bench <scenario>           load generator against running nodes: heartbeat,
                             connections, fanout, list, slowbody, expiry (and
                             report);
                             'presencectl bench -h' for the scenarios.
  help                       this text.

Global flags (before or after the command):
  --redis-url URL    Redis URL (redis://, rediss://) or host:port
                     (env PRESENCE_REDIS_URL; default redis://127.0.0.1:6379)
  --redis-cluster-addrs A,B
                     Redis Cluster seed addresses, comma-separated (env
                     PRESENCE_REDIS_CLUSTER_ADDRS); used instead of --redis-url
  --prefix P         key prefix (env PRESENCE_KEY_PREFIX; default presence)
  --org ORG          org of the rooms and users (default default)
  --json             machine-readable output: one JSON document
                     (watch: one JSON object per line)
  --timeout D        bound of each call to Redis (default 5s)

Exit status: 0 success, 1 error (Redis unreachable, room not found),
2 usage error.
`

// globals are the flags every command takes.
type globals struct {
	redisURL string
	cluster  string // comma-separated Redis Cluster seeds; overrides redisURL
	prefix   string
	org      string
	json     bool
	timeout  time.Duration
}

// register defines the global flags on fs, with their current values as
// defaults, so that a command's flag set accepts them too.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.redisURL, "redis-url", g.redisURL, "Redis URL or host:port (env PRESENCE_REDIS_URL)")
	// Help shows the default; never a password from the environment.
	fs.Lookup("redis-url").DefValue = redact(g.redisURL)
	fs.StringVar(&g.cluster, "redis-cluster-addrs", g.cluster, "comma-separated Redis Cluster seed addresses (env PRESENCE_REDIS_CLUSTER_ADDRS); used instead of --redis-url")
	fs.StringVar(&g.prefix, "prefix", g.prefix, "key prefix (env PRESENCE_KEY_PREFIX)")
	fs.StringVar(&g.org, "org", g.org, "org")
	fs.BoolVar(&g.json, "json", g.json, "JSON output")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "bound of each call to Redis")
}

func (g *globals) check() error {
	if err := presence.ValidateOrg(g.org); err != nil {
		return fmt.Errorf("--org: %s", presence.ErrorMessage(err))
	}
	if g.prefix == "" {
		return errors.New("--prefix must not be empty")
	}
	if g.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if g.redisURL == "" {
		return errors.New("--redis-url must not be empty")
	}
	return nil
}

// cli is one invocation: its flags, outputs and (once connected) Redis.
type cli struct {
	g      globals
	stdout io.Writer
	stderr io.Writer
	rdb    redis.UniversalClient
	store  *redisstore.Store
	keys   redisstore.Keys
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp asks for a command's help text (exit status 0).
var errHelp = errors.New("help")

type command struct {
	args  string // synopsis of the arguments
	about string
	run   func(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error
}

var commands = map[string]command{
	"rooms": {"[--limit N]", "the org's rooms, most online users first (SCANs the keyspace: for operators, not a hot path)", cmdRooms},
	"room":  {"<roomId> [--limit N]", "a room's members in list order and its live sessions", cmdRoom},
	"user":  {"<userId>", "the user's rooms, online first", cmdUser},
	"watch": {"<roomId>", "print the room's events as they are published, until interrupted", cmdWatch},
	"bench": {"<scenario> [flags]", "load generator against running nodes (see presencectl bench -h)", cmdBench},
}

// run runs presencectl with args (without the program name) and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{
		g: globals{
			redisURL: envOr(getenv, "PRESENCE_REDIS_URL", "redis://127.0.0.1:6379"),
			cluster:  envOr(getenv, "PRESENCE_REDIS_CLUSTER_ADDRS", ""),
			prefix:   envOr(getenv, "PRESENCE_KEY_PREFIX", "presence"),
			org:      "default",
			timeout:  5 * time.Second,
		},
		stdout: stdout,
		stderr: stderr,
	}
	defer c.close()

	fs := flag.NewFlagSet("presencectl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return 0
		}
		return c.usageErr(err.Error())
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	name, rest := rest[0], rest[1:]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		return c.usageErr(fmt.Sprintf("unknown command %q", name))
	}
	cfs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	c.g.register(cfs)
	err := cmd.run(ctx, c, cfs, rest)
	var uerr *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		fmt.Fprintf(stdout, "Usage: presencectl [global flags] %s %s\n\n%s.\n\nFlags:\n", name, cmd.args, upperFirst(cmd.about))
		cfs.SetOutput(stdout)
		cfs.PrintDefaults()
		return 0
	case errors.As(err, &uerr):
		return c.usageErr(name + ": " + uerr.msg)
	}
	fmt.Fprintf(stderr, "presencectl: %s: %v\n", name, err)
	return 1
}

func (c *cli) usageErr(msg string) int {
	fmt.Fprintf(c.stderr, "presencectl: %s\nRun 'presencectl help' for usage.\n", msg)
	return 2
}

// parse parses a command's flags, which may come before, between or after
// its arguments, checks the global flags and returns the arguments; want is
// the number of arguments the command takes.
func (c *cli) parse(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usagef("%v", err)
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
		return nil, usagef("missing %s", names)
	}
	if len(pos) > want {
		return nil, usagef("unexpected argument %q", pos[want])
	}
	if err := c.g.check(); err != nil {
		return nil, usagef("%v", err)
	}
	return pos, nil
}

// connect creates the Redis client and checks that Redis answers.
func (c *cli) connect(ctx context.Context) error {
	if c.g.cluster != "" {
		t := c.g.timeout
		c.rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: strings.Split(c.g.cluster, ","), DialTimeout: t, ReadTimeout: t, WriteTimeout: t,
			PoolTimeout: t, ContextTimeoutEnabled: true, MaxRetries: 1, PoolSize: 4,
		})
		c.store = redisstore.NewStore(c.rdb, redisstore.Config{Prefix: c.g.prefix, CallTimeout: t, Cluster: true})
		c.keys = c.store.Keys()
		pctx, cancel := c.call(ctx)
		defer cancel()
		if err := c.rdb.Ping(pctx).Err(); err != nil {
			return fmt.Errorf("cannot reach the Redis Cluster at %s (timeout %s): %w", c.g.cluster, t, err)
		}
		return nil
	}
	raw := c.g.redisURL
	if !strings.Contains(raw, "://") {
		raw = "redis://" + raw
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return usagef("--redis-url: %v", err)
	}
	opt.DialTimeout = c.g.timeout
	opt.ReadTimeout = c.g.timeout
	opt.WriteTimeout = c.g.timeout
	opt.PoolTimeout = c.g.timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = 1
	opt.PoolSize = 4
	c.rdb = redis.NewClient(opt)
	c.store = redisstore.NewStore(c.rdb, redisstore.Config{Prefix: c.g.prefix, CallTimeout: c.g.timeout})
	c.keys = c.store.Keys()
	pctx, cancel := c.call(ctx)
	defer cancel()
	if err := c.rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis at %s (timeout %s): %w", redact(raw), c.g.timeout, err)
	}
	return nil
}

// call bounds one call to Redis.
func (c *cli) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.g.timeout)
}

func (c *cli) close() {
	if c.rdb != nil {
		c.rdb.Close()
	}
}

func (c *cli) room(roomID string) presence.RoomRef {
	return presence.RoomRef{Org: c.g.org, RoomID: roomID}
}

func redact(raw string) string {
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

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
