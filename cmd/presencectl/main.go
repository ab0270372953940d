// Command presencectl is the operator CLI of a presence cluster. It talks to
// the cluster's Redis directly (a real Redis, or the RESP address of a node's
// embedded store) and shows what the nodes see: the rooms of an org, a room's
// members and live sessions (with the node that owns each one), the rooms of
// a user, a room's events as they happen, and the webhook backlog.
//
// It reads the same keys through the same code as the nodes: key names come
// from redisstore.Keys, and members and user rooms from redisstore.Store's
// List, Count and UserRooms (the Lua scripts the API uses), and the rooms
// of an org, their counts and a room's live sessions from its read-only
// views (ScanRooms, RoomCounts, Sessions). The commands change no presence
// state (only `user`, like the API, drops entries of the user's room index
// that point at rooms which forgot the user). The load generator is its own
// command, presencebench.
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
	"strings"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

func main() { cliutil.Main(run) }

const usageText = `presencectl: operator CLI of a presence cluster. It reads the cluster's Redis
(or the RESP address of a node's embedded store) and changes no presence state.
The load generator is its own command: presencebench.

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
  webhooks                   the webhook backlog: events and rooms waiting in
                             Redis, rooms backing off after a failed request,
                             and the last failed request (within 24h).
  help                       this text; '<command> -h': the command's flags.

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

// cli is one invocation: its flags, outputs and (once connected) Redis.
type cli struct{ cliutil.Env }

type command struct {
	args  string // synopsis of the arguments
	about string
	run   func(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error
}

var commands = map[string]command{
	"rooms":    {"[--limit N]", "the org's rooms, most online users first (SCANs the keyspace: for operators, not a hot path)", cmdRooms},
	"room":     {"<roomId> [--limit N]", "a room's members in list order and its live sessions", cmdRoom},
	"user":     {"<userId>", "the user's rooms, online first", cmdUser},
	"watch":    {"<roomId>", "print the room's events as they are published, until interrupted", cmdWatch},
	"webhooks": {"", "the webhook backlog (events and rooms waiting, rooms backing off) and the last failed request", cmdWebhooks},
}

// run runs presencectl with args (without the program name) and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{cliutil.Env{Globals: cliutil.DefaultGlobals(getenv), Stdout: stdout, Stderr: stderr}}
	defer c.Close()

	fs := flag.NewFlagSet("presencectl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return 0
		}
		return c.Fail("presencectl", "", cliutil.Usagef("%v", err))
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
	case "bench":
		fmt.Fprintln(stderr, "presencectl: the load generator is its own command now: presencebench <scenario> [flags] (go run ./cmd/presencebench -h)")
		return 2
	}
	cmd, ok := commands[name]
	if !ok {
		return c.Fail("presencectl", "", cliutil.Usagef("unknown command %q", name))
	}
	cfs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	c.Register(cfs)
	err := cmd.run(ctx, c, cfs, rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, cliutil.ErrHelp):
		fmt.Fprintf(stdout, "Usage: presencectl [global flags] %s %s\n\n%s.\n\nFlags:\n", name, cmd.args, upperFirst(cmd.about))
		cfs.SetOutput(stdout)
		cfs.PrintDefaults()
		return 0
	}
	return c.Fail("presencectl", name, err)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
