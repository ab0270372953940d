package main

// bench.go: the scenarios, their flags and the run. A scenario talks to
// running nodes over HTTP and WebSockets (auth off, or a --token), prints a
// progress line on stderr every second and a result table (or --json) at
// the end.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

const benchUsage = `presencebench: load generator against running presence nodes.

Usage:
  presencebench <scenario> [flags]     (flags before or after the scenario)
  presencebench help                   this text (also -h, --help)

Load generator against running nodes (auth off, or --token). A progress line
goes to stderr every --progress; the result table (or one JSON document with
--json) to stdout at the end. Exit status 0 when the run completed without
errors, 1 when requests failed (more than --max-errors), events were lost or
a node was unreachable; 2 on a usage error.

Scenarios:
  heartbeat    HTTP heartbeats at --concurrency (default 64): first each of
               --sessions (10000, spread over --rooms 100) is created, then
               they are refreshed for --duration (10s; 0: create only).
               Throughput and latency p50/p90/p99/p999/max of each phase.
               With --redis-stats, the Redis commands (EVALSHA, PUBLISH) the
               refresh phase caused (global --redis-url). --uuid-ids names
               sessions with 36-byte UUID-shaped ids and users u + 10 digits
               (the sizes Redis memory per session is measured at).
  connections  --sockets (1000) idle WebSockets, each joined to a room of
               --room-size (10) sockets, spread round robin over the --url
               nodes, bound to --source-addrs (e.g. 127.0.0.2-127.0.0.9) so
               more than one address's 28k ephemeral ports fit; more than
               --per-process (15000) sockets are split over child processes.
               Reports each node's memory per socket from its /metrics
               (heap in use, stacks, RSS; sampled before the first socket,
               and after the last join + --settle (5s) + the node's next GC
               cycle, waited for up to --gc-wait (150s; the runtime forces
               one every 2 min; 0: no wait)). With --redis-stats, the Redis
               commands while the sockets are idle (--idle-window, default
               one --interval (10s)), per socket per interval, and the
               leaves and joins Redis published in the sockets' rooms while
               they were all open (PSUBSCRIBE; must be 0). --churn N
               (with --redis-stats) makes N other sessions per second join
               and leave through --churn-url during the idle window (one
               WebSocket per 10 sessions/s, each joining rooms of its own
               and leaving them 1 s later); its achieved rate is reported.
  sockchurn    socket churn against one node (--url): --rate (1000)
               WebSockets per second for --duration (60s), open loop; each
               is a user of its own that joins a room of --room-size (10)
               and, when "joined" arrives (and --life (0) has passed),
               closes with a close frame. Bound to --source-addrs in turn.
               The node's goroutines (the fewest of 5 scrapes 100 ms
               apart: a scrape may count the registry's own gather
               workers), RSS, heap and sockets from /metrics
               before the first socket and after the last close +
               --settle (5s), each after the node's next GC cycle (waited
               for up to --gc-wait, 150s); every join and leave Redis
               published in the run's rooms, per user (PSUBSCRIBE on the
               global --redis-url): each user must have one of each. The
               targets (goroutines back, RSS within 10 %, every event once)
               are reported; exit 1 only when sockets failed (dial, join or
               close handshake; more than --max-errors) or the node or
               Redis could not be reached. --warmup D first churns for D at
               the same rate in rooms of its own, then samples "before": the
               node has served sockets, so what a first churn costs any Go
               process once (heap pages touched for the first time, GC
               metadata) is not counted as growth; the fresh node's sample
               is reported too.
  fanout       joins and leaves (HTTP heartbeat / disconnect) through the
               first --url at --rate (1000) per second for --duration (10s),
               over --rooms (10) rooms of --users (100) users each (the
               same users in every room; --own-users: each room's its
               own); --watchers (10) WebSockets per room watch on the
               second --url. Delivery
               latency from send to receipt p50/p99/p999, lost events. Every
               event is timed: run the nodes with PRESENCE_WS_ROOM_FRAMES
               above the events per room per second (else they coalesce).
  storm        --members (10000) users join one room (HTTP heartbeats through
               the first --url, --concurrency (64) keep-alive connections)
               within --duration (10s), while --watchers (100) WebSockets
               watch it on the last --url, in child processes of at most
               --per-process (100) watchers each (a reader that shares its
               process with the generator reads in bursts). Frames per
               watcher: mean per second, most in any 1 s window at receipt
               (the node's PRESENCE_WS_ROOM_FRAMES, 20) and in any 5 s
               window / 5; bytes per watcher, the CPU of both nodes, and
               whether every watcher's view equals the list.
  list         a room of --members (10000) members (HTTP heartbeats, 10 min
               interval) listed with --limit (104) at --concurrency (4) for
               --duration (5s), without and then with If-None-Match; p50/p99.
               With --pages N (0), then N times the whole room page by page
               (--limit a page, following next): each read's time, p50/p99
               per page, and every member once in the same order. With
               --offline every member disconnects after its creation
               (an offline room, many members per ms of lastDisconnected).
  slowbody     slow request bodies against the first --url: a baseline of
               HTTP heartbeats and lists (--concurrency (8) clients each)
               for --duration (10s), then the same load again while --slow
               (2000) connections send POST /v1/disconnect with
               Content-Length: 100 and then a byte every --dribble (5s),
               opening a new one whenever the node closes one. p50/p99 and
               error rate of each phase; when the node closed the slow
               connections, and what it answered.
  expiry       starts its own node (--presenced-bin, on the global
               --redis-url and --prefix; --node-lease, when given, is passed
               as PRESENCE_NODE_LEASE), opens --sessions (10000) WebSockets
               to it over --rooms (100) rooms with --interval (10s) (more
               than --per-process (15000) over child processes, bound to
               --source-addrs), watches every room on --url (another node,
               where an anchor member per room gives the room token) and
               in Redis (PSUBSCRIBE), kills the node (SIGKILL) and measures
               the time until every leave has been delivered, against
               min(interval x --timeout-factor 2.5, --node-lease 10s) + 2 s.
  webhooks     serves a webhook receiver on --receiver-addr (127.0.0.1:17500;
               start the --url nodes with PRESENCE_WEBHOOK_URL pointing
               there and PRESENCE_WEBHOOK_SECRET = --webhook-secret, env
               PRESENCE_WEBHOOK_SECRET). Delay: users join and leave
               through the nodes in turn, --rate (1000) events/s for
               --duration (10s) over --rooms (100); p50/p99 of receipt
               minus the event's timeMs. Throughput: while the receiver
               refuses, --sessions (10000) users join and leave at
               --concurrency (64); once all are in Redis (global
               --redis-url), the receiver accepts and every room is made
               due: events/s until the last arrives. Every signature is
               checked; lost events exit 1.
  users        users across rooms: --sessions (1000) WebSocket joins and
               leaves one after another on --churn-url with the Redis
               commands they cost (--redis-stats); then --sockets (1000)
               sockets on --url each watch the same --users (1000) users
               (node memory after a GC cycle: --settle, --gc-wait), and
               --rooms (10) of those users join and leave one at a time:
               every watcher must get each change once (frames, repeats,
               delay from the change's answer to each frame).
  report       reads the results a scripts/bench.sh run left in --dir and
               prints the Markdown table (results, baselines, targets).

Flags of every scenario:
  --url URL             node base URL, repeatable or comma-separated
                        (default http://127.0.0.1:8080)
  --token T             bearer token (env PRESENCECTL_BENCH_TOKEN)
  --run-id ID           names rooms, users and sessions bench-<ID>-...
                        (default: random)
  --progress D          progress line interval on stderr (default 1s; 0: none)
  --max-errors N        failed requests tolerated before exit status 1 (0)
  --request-timeout D   bound of each HTTP request or join (default 5s)
  --json                one JSON document instead of the table

Redis flags (--redis-stats, connections with --redis-stats, expiry, sockchurn):
  --redis-url URL       Redis URL (redis://, rediss://) or host:port (env
                        PRESENCE_REDIS_URL; default redis://127.0.0.1:6379)
  --redis-cluster-addrs A,B
                        Redis Cluster seed addresses, comma-separated (env
                        PRESENCE_REDIS_CLUSTER_ADDRS); used instead of --redis-url
  --prefix P            key prefix (env PRESENCE_KEY_PREFIX; default presence)
  --org ORG             org of the rooms and users (default default)
  --timeout D           bound of each call to Redis (default 5s)

Scenario flags (defaults above):
  --duration D  --concurrency N  --sessions N  --rooms N  --interval D
  --redis-stats  --sockets N  --room-size N  --source-addrs LIST
  --per-process N  --dial-concurrency N (connections 25, expiry 100, per
  process)  --settle D  --hold D
  --idle-window D  --gc-wait D  --rate N  --watchers N  --users N  --members N  --limit N
  --presenced-bin PATH  --timeout-factor F  --grace D (10s)  --node-lease D
  --churn N  --churn-url URL  --dir DIR  --slow N  --dribble D  --uuid-ids
  --life D  --warmup D  --receiver-addr ADDR  --webhook-secret S  --own-users

--source-addrs takes addresses and ranges: 127.0.0.2-127.0.0.9,127.0.1.1.

Examples:
  presencebench heartbeat --url http://127.0.0.1:8080 --concurrency 64 --duration 20s
  presencebench connections --url http://127.0.0.1:8081,http://127.0.0.1:8082 \
      --sockets 40000 --source-addrs 127.0.0.2-127.0.0.9
  presencebench fanout --url http://127.0.0.1:8081 --url http://127.0.0.1:8082 --rate 1000
  presencebench list --members 10000 --concurrency 4
  presencebench --redis-url redis://127.0.0.1:6379 users --url http://127.0.0.1:8081 \
      --churn-url http://127.0.0.1:8082 --redis-stats --sessions 1000 --sockets 10000 --users 1000
  presencebench list --members 100000 --limit 1000 --pages 20
  presencebench --redis-url redis://127.0.0.1:6379 sockchurn --url http://127.0.0.1:8080 \
      --rate 1000 --duration 60s --source-addrs 127.0.0.2-127.0.0.9
  presencebench slowbody --url http://127.0.0.1:8080 --slow 2000 --duration 10s
  presencebench expiry --redis-url redis://127.0.0.1:6379 \
      --presenced-bin ./presenced --url http://127.0.0.1:8082 --sessions 10000
`

// benchOpts are the parsed flags of a bench run.
type benchOpts struct {
	urls        []string
	token       string
	runID       string
	progress    time.Duration
	maxErrors   int64
	reqTimeout  time.Duration
	duration    time.Duration
	concurrency int

	sessions   int
	rooms      int
	interval   time.Duration
	redisStats bool
	uuidIDs    bool
	ownUsers   bool // fanout: each room has users of its own

	sockets     int
	roomSize    int
	sourceAddrs []net.IP
	sourceSpec  string
	perProcess  int
	dialConc    int
	settle      time.Duration
	hold        time.Duration
	idleWindow  time.Duration
	gcWait      time.Duration

	rate     float64
	watchers int
	users    int
	life     time.Duration // sockchurn: how long a socket stays after "joined"
	warmup   time.Duration // sockchurn: a churn before the before sample

	members int
	limit   int
	pages   int  // list: whole reads page by page
	offline bool // list: members disconnect after their creation

	presencedBin  string
	timeoutFactor float64
	grace         time.Duration
	nodeLease     time.Duration
	nodeLeaseSet  bool // --node-lease was given: passed to the node

	churn    float64 // sessions per second that join and leave (connections)
	churnURL string

	dir string

	slow    int
	dribble time.Duration

	receiverAddr  string // webhooks: where the receiver listens
	webhookSecret string

	// worker: this process is a child of `connections` or `storm` (hidden
	// flags).
	worker       bool
	workerOffset int
}

// scenario is one `bench` scenario.
type scenario struct {
	// flags that apply besides the common ones.
	flags []string
	// defaults sets the scenario's defaults of flags that were not given.
	defaults func(o *benchOpts, set map[string]bool)
	run      func(ctx context.Context, b *bench) (benchResult, error)
}

// commonFlags apply to every scenario.
var commonFlags = []string{"url", "token", "run-id", "progress", "max-errors", "request-timeout",
	"redis-url", "redis-cluster-addrs", "prefix", "org", "json", "timeout"}

var scenarios = map[string]scenario{
	"heartbeat": {
		flags: []string{"duration", "concurrency", "sessions", "rooms", "interval", "redis-stats", "uuid-ids"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "duration", &o.duration, 10*time.Second)
			def(set, "concurrency", &o.concurrency, 64)
			def(set, "sessions", &o.sessions, 10000)
			def(set, "rooms", &o.rooms, 100)
			def(set, "interval", &o.interval, time.Minute)
		},
		run: runHeartbeat,
	},
	"connections": {
		flags: []string{"sockets", "room-size", "source-addrs", "per-process", "dial-concurrency", "settle",
			"hold", "interval", "redis-stats", "idle-window", "gc-wait", "churn", "churn-url", "worker", "worker-offset"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "sockets", &o.sockets, 1000)
			def(set, "room-size", &o.roomSize, 10)
			def(set, "per-process", &o.perProcess, 15000)
			def(set, "dial-concurrency", &o.dialConc, 25)
			def(set, "settle", &o.settle, 5*time.Second)
			def(set, "interval", &o.interval, 10*time.Second)
			def(set, "idle-window", &o.idleWindow, o.interval)
			def(set, "gc-wait", &o.gcWait, 150*time.Second)
		},
		run: runConnections,
	},
	"fanout": {
		flags: []string{"duration", "concurrency", "rate", "rooms", "watchers", "users", "own-users"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "duration", &o.duration, 10*time.Second)
			def(set, "concurrency", &o.concurrency, 64)
			def(set, "rate", &o.rate, 1000)
			def(set, "rooms", &o.rooms, 10)
			def(set, "watchers", &o.watchers, 10)
			def(set, "users", &o.users, 100)
		},
		run: runFanout,
	},
	"storm": {
		flags: []string{"duration", "concurrency", "members", "watchers", "per-process", "worker", "worker-offset"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "duration", &o.duration, 10*time.Second)
			def(set, "concurrency", &o.concurrency, 64)
			def(set, "members", &o.members, 10000)
			def(set, "watchers", &o.watchers, 100)
			def(set, "per-process", &o.perProcess, 100)
		},
		run: runStorm,
	},
	"list": {
		flags: []string{"duration", "concurrency", "members", "limit", "pages", "offline"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "duration", &o.duration, 5*time.Second)
			def(set, "concurrency", &o.concurrency, 4)
			def(set, "members", &o.members, 10000)
			def(set, "limit", &o.limit, 104)
		},
		run: runList,
	},
	"expiry": {
		flags: []string{"presenced-bin", "sessions", "rooms", "interval", "timeout-factor", "grace", "dial-concurrency",
			"node-lease", "per-process", "source-addrs"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "sessions", &o.sessions, 10000)
			def(set, "rooms", &o.rooms, 100)
			def(set, "interval", &o.interval, 10*time.Second)
			def(set, "timeout-factor", &o.timeoutFactor, 2.5)
			def(set, "grace", &o.grace, 10*time.Second)
			def(set, "dial-concurrency", &o.dialConc, 100)
			def(set, "node-lease", &o.nodeLease, 10*time.Second)
			def(set, "per-process", &o.perProcess, 15000)
			o.nodeLeaseSet = set["node-lease"]
		},
		run: runExpiry,
	},
	"slowbody": {
		flags: []string{"duration", "concurrency", "slow", "dribble", "dial-concurrency"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "duration", &o.duration, 10*time.Second)
			def(set, "concurrency", &o.concurrency, 8)
			def(set, "slow", &o.slow, 2000)
			def(set, "dribble", &o.dribble, 5*time.Second)
			def(set, "dial-concurrency", &o.dialConc, 100)
		},
		run: runSlowBody,
	},
	"sockchurn": {
		flags: []string{"rate", "duration", "room-size", "life", "interval", "source-addrs", "settle", "gc-wait", "warmup"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "rate", &o.rate, 1000)
			def(set, "duration", &o.duration, 60*time.Second)
			def(set, "room-size", &o.roomSize, 10)
			def(set, "interval", &o.interval, 10*time.Second)
			def(set, "settle", &o.settle, 5*time.Second)
			def(set, "gc-wait", &o.gcWait, 150*time.Second)
		},
		run: runSockChurn,
	},
	"webhooks": {
		flags: []string{"rate", "duration", "rooms", "concurrency", "sessions", "receiver-addr", "webhook-secret"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "rate", &o.rate, 1000)
			def(set, "duration", &o.duration, 10*time.Second)
			def(set, "rooms", &o.rooms, 100)
			def(set, "concurrency", &o.concurrency, 64)
			def(set, "sessions", &o.sessions, 10000)
			def(set, "receiver-addr", &o.receiverAddr, "127.0.0.1:17500")
			def(set, "webhook-secret", &o.webhookSecret, os.Getenv("PRESENCE_WEBHOOK_SECRET"))
		},
		run: runWebhooks,
	},
	"users": {
		flags: []string{"sessions", "sockets", "users", "rooms", "churn-url", "redis-stats", "settle", "gc-wait", "dial-concurrency"},
		defaults: func(o *benchOpts, set map[string]bool) {
			def(set, "sessions", &o.sessions, 1000)
			def(set, "sockets", &o.sockets, 1000)
			def(set, "users", &o.users, 1000)
			def(set, "rooms", &o.rooms, 10)
			def(set, "settle", &o.settle, 5*time.Second)
			def(set, "dial-concurrency", &o.dialConc, 50)
		},
		run: runUsers,
	},
	"report": {
		flags:    []string{"dir"},
		defaults: func(o *benchOpts, set map[string]bool) {},
		run:      runReport,
	},
}

func def[T any](set map[string]bool, name string, p *T, v T) {
	if !set[name] {
		*p = v
	}
}

// urlList is a repeatable, comma-separated flag.
type urlList struct{ p *[]string }

func (u urlList) String() string {
	if u.p == nil {
		return ""
	}
	return strings.Join(*u.p, ",")
}

func (u urlList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*u.p = append(*u.p, strings.TrimRight(s, "/"))
		}
	}
	return nil
}

// bench is one run of a scenario.
type bench struct {
	c        *cliutil.Env
	name     string
	o        benchOpts
	stdout   io.Writer
	stderr   io.Writer
	started  time.Time
	stderrMu sync.Mutex
}

// benchResult is what a scenario measured.
type benchResult interface {
	writeTable(w io.Writer)
}

// parseBench parses the command line (without the program name) on fs,
// which holds the Redis flags already.
func parseBench(c *cliutil.Env, fs *flag.FlagSet, args []string) (string, benchOpts, error) {
	var o benchOpts
	fs.Var(urlList{&o.urls}, "url", "node base URL (repeatable, comma-separated)")
	fs.StringVar(&o.token, "token", "", "bearer token")
	fs.StringVar(&o.runID, "run-id", "", "run id (names rooms, users, sessions)")
	fs.DurationVar(&o.progress, "progress", time.Second, "progress line interval (0: none)")
	fs.Int64Var(&o.maxErrors, "max-errors", 0, "failed requests tolerated")
	fs.DurationVar(&o.reqTimeout, "request-timeout", 5*time.Second, "bound of one request")
	fs.DurationVar(&o.duration, "duration", 0, "how long to run")
	fs.IntVar(&o.concurrency, "concurrency", 0, "requests in flight")
	fs.IntVar(&o.sessions, "sessions", 0, "sessions")
	fs.IntVar(&o.rooms, "rooms", 0, "rooms")
	fs.DurationVar(&o.interval, "interval", 0, "heartbeat interval of the sessions")
	fs.BoolVar(&o.redisStats, "redis-stats", false, "read Redis command statistics (--redis-url)")
	fs.BoolVar(&o.ownUsers, "own-users", false, "fanout: each room has --users users of its own (else the same users in every room)")
	fs.BoolVar(&o.uuidIDs, "uuid-ids", false, "heartbeat: 36-byte session ids (UUID form) and 11-byte user ids, as apps use")
	fs.IntVar(&o.sockets, "sockets", 0, "WebSockets to open")
	fs.IntVar(&o.roomSize, "room-size", 0, "sockets per room")
	fs.StringVar(&o.sourceSpec, "source-addrs", "", "local addresses to bind (ranges: 127.0.0.2-127.0.0.9)")
	fs.IntVar(&o.perProcess, "per-process", 0, "most sockets per process")
	fs.IntVar(&o.dialConc, "dial-concurrency", 0, "sockets opened at once per process")
	fs.DurationVar(&o.settle, "settle", 0, "wait after the last join before sampling memory")
	fs.DurationVar(&o.hold, "hold", 0, "keep the sockets open this long after measuring")
	fs.DurationVar(&o.idleWindow, "idle-window", 0, "window of the idle Redis statistics")
	fs.DurationVar(&o.gcWait, "gc-wait", 0, "after --settle, wait up to this long for a GC cycle on every node")
	fs.Float64Var(&o.rate, "rate", 0, "joins+leaves per second")
	fs.IntVar(&o.watchers, "watchers", 0, "watching sockets per room")
	fs.IntVar(&o.users, "users", 0, "users per room")
	fs.DurationVar(&o.life, "life", 0, "how long a socket stays open after its join (sockchurn)")
	fs.DurationVar(&o.warmup, "warmup", 0, "churn this long (rooms of its own) before the before sample (sockchurn)")
	fs.IntVar(&o.members, "members", 0, "members of the listed room")
	fs.IntVar(&o.limit, "limit", 0, "list limit")
	fs.IntVar(&o.pages, "pages", 0, "list: read the whole room page by page this many times")
	fs.BoolVar(&o.offline, "offline", false, "list: the members disconnect after their creation")
	fs.StringVar(&o.presencedBin, "presenced-bin", "", "presenced binary (expiry)")
	fs.Float64Var(&o.timeoutFactor, "timeout-factor", 0, "the nodes' PRESENCE_TIMEOUT_FACTOR")
	fs.DurationVar(&o.grace, "grace", 0, "how long to wait past the bound for missing leaves")
	fs.DurationVar(&o.nodeLease, "node-lease", 0, "the killed node's PRESENCE_NODE_LEASE (expiry)")
	fs.Float64Var(&o.churn, "churn", 0, "sessions per second that join and leave through --churn-url (connections)")
	fs.StringVar(&o.churnURL, "churn-url", "", "node of the --churn sessions (connections)")
	fs.StringVar(&o.dir, "dir", "", "results directory (report)")
	fs.IntVar(&o.slow, "slow", 0, "slow-body connections (slowbody)")
	fs.DurationVar(&o.dribble, "dribble", 0, "interval between the bytes of a slow body (slowbody)")
	fs.StringVar(&o.receiverAddr, "receiver-addr", "", "address of the webhook receiver (webhooks)")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "", "the nodes' PRESENCE_WEBHOOK_SECRET (webhooks)")
	fs.BoolVar(&o.worker, "worker", false, "internal: child process of connections or storm")
	fs.IntVar(&o.workerOffset, "worker-offset", 0, "internal: first socket index of a child")

	pos, err := c.Parse(fs, args, 1, "<scenario> (heartbeat, connections, sockchurn, fanout, storm, list, slowbody, expiry, webhooks, report)")
	if err != nil {
		return "", o, err
	}
	name := pos[0]
	sc, ok := scenarios[name]
	if !ok {
		return "", o, cliutil.Usagef("unknown scenario %q (heartbeat, connections, sockchurn, fanout, storm, list, slowbody, expiry, webhooks, report)", name)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	allowed := map[string]bool{}
	for _, f := range append(append([]string{}, commonFlags...), sc.flags...) {
		allowed[f] = true
	}
	var wrong []string
	for f := range set {
		if !allowed[f] {
			wrong = append(wrong, "--"+f)
		}
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		return "", o, cliutil.Usagef("%s: %s does not apply", name, strings.Join(wrong, ", "))
	}
	sc.defaults(&o, set)
	if o.token == "" {
		o.token = os.Getenv("PRESENCECTL_BENCH_TOKEN")
	}
	if len(o.urls) == 0 {
		o.urls = []string{"http://127.0.0.1:8080"}
	}
	for _, u := range o.urls {
		if _, err := parseEndpoint(u); err != nil {
			return "", o, cliutil.Usagef("--url %s: %v", u, err)
		}
	}
	if o.runID == "" {
		var b [3]byte
		rand.Read(b[:])
		o.runID = hex.EncodeToString(b[:])
	}
	if o.sourceSpec != "" {
		ips, err := parseSourceAddrs(o.sourceSpec)
		if err != nil {
			return "", o, cliutil.Usagef("--source-addrs: %v", err)
		}
		o.sourceAddrs = ips
	}
	if err := o.check(name, set); err != nil {
		return "", o, err
	}
	return name, o, nil
}

// check validates the values of a scenario's flags.
func (o *benchOpts) check(name string, set map[string]bool) error {
	positive := func(flag string, v int) error {
		if v <= 0 {
			return cliutil.Usagef("--%s must be positive", flag)
		}
		return nil
	}
	if o.progress < 0 || o.reqTimeout <= 0 || o.maxErrors < 0 {
		return cliutil.Usagef("--progress must be >= 0, --request-timeout > 0, --max-errors >= 0")
	}
	if strings.ContainsAny(o.runID, "{}\n\t ") || len(o.runID) > 64 {
		return cliutil.Usagef("--run-id: at most 64 characters, no spaces or braces")
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch name {
	case "heartbeat":
		add(positive("concurrency", o.concurrency))
		add(positive("sessions", o.sessions))
		add(positive("rooms", o.rooms))
		if o.duration < 0 {
			add(cliutil.Usagef("--duration must be >= 0"))
		}
		add(checkInterval(o.interval))
	case "connections":
		add(positive("sockets", o.sockets))
		add(positive("room-size", o.roomSize))
		add(positive("per-process", o.perProcess))
		add(positive("dial-concurrency", o.dialConc))
		add(checkInterval(o.interval))
		if o.settle < 0 || o.hold < 0 || o.idleWindow <= 0 || o.gcWait < 0 {
			add(cliutil.Usagef("--settle, --hold and --gc-wait must be >= 0, --idle-window > 0"))
		}
		if o.worker && o.sockets > o.perProcess {
			add(cliutil.Usagef("--worker: more than --per-process sockets"))
		}
		if o.churn < 0 || o.churn > 5000 {
			add(cliutil.Usagef("--churn must be 0-5000 sessions per second"))
		}
		if o.churn > 0 && !o.redisStats {
			add(cliutil.Usagef("--churn needs --redis-stats (it runs during the idle window)"))
		}
		if o.churn > 0 && o.churnURL == "" {
			add(cliutil.Usagef("--churn needs --churn-url (the node its sessions go through)"))
		}
		if o.churnURL != "" {
			if _, err := parseEndpoint(o.churnURL); err != nil {
				add(cliutil.Usagef("--churn-url %s: %v", o.churnURL, err))
			}
		}
	case "users":
		if len(o.urls) != 1 {
			add(cliutil.Usagef("users measures one node: give one --url (the watchers'; --churn-url the changes')"))
		}
		if o.sessions < 0 || o.sockets < 0 || o.sockets > 15000 || o.users < 1 || o.users > 1000 || o.rooms < 0 {
			add(cliutil.Usagef("--sockets 0-15000, --users 1-1000, --sessions and --rooms >= 0"))
		}
		if o.sessions > 0 && !o.redisStats {
			add(cliutil.Usagef("--sessions (the joins and leaves counted) needs --redis-stats"))
		}
	case "sockchurn":
		add(positive("room-size", o.roomSize))
		add(checkInterval(o.interval))
		if len(o.urls) != 1 {
			add(cliutil.Usagef("sockchurn measures one node: give one --url"))
		}
		if o.rate <= 0 || o.rate > 5000 || o.duration <= 0 {
			add(cliutil.Usagef("--rate must be above 0 and at most 5000 sockets per second, --duration positive"))
		}
		if o.life < 0 || o.settle < 0 || o.gcWait < 0 || o.warmup < 0 {
			add(cliutil.Usagef("--life, --settle, --gc-wait and --warmup must be >= 0"))
		}
		if o.rate*o.life.Seconds() > sockChurnMaxOpen {
			add(cliutil.Usagef("--rate x --life: at most %d sockets open at once (one process)", sockChurnMaxOpen))
		}
		if o.rate*o.duration.Seconds() < 1 {
			add(cliutil.Usagef("--rate x --duration: no socket"))
		}
	case "fanout":
		add(positive("concurrency", o.concurrency))
		add(positive("rooms", o.rooms))
		add(positive("watchers", o.watchers))
		add(positive("users", o.users))
		if o.rate <= 0 || o.duration <= 0 {
			add(cliutil.Usagef("--rate and --duration must be positive"))
		}
		if o.users < 2 {
			add(cliutil.Usagef("--users must be at least 2"))
		}
		if o.watchers*o.rooms > 15000 {
			add(cliutil.Usagef("--watchers x --rooms: at most 15000 sockets in one process"))
		}
	case "storm":
		add(positive("concurrency", o.concurrency))
		add(positive("per-process", o.perProcess))
		add(positive("members", o.members))
		add(positive("watchers", o.watchers))
		if o.duration <= 0 {
			add(cliutil.Usagef("--duration must be positive"))
		}
	case "list":
		add(positive("concurrency", o.concurrency))
		add(positive("members", o.members))
		if o.limit < 1 || o.limit > 1000 {
			add(cliutil.Usagef("--limit must be 1-1000"))
		}
		if o.duration <= 0 {
			add(cliutil.Usagef("--duration must be positive"))
		}
		if o.pages < 0 {
			add(cliutil.Usagef("--pages must be 0 or more"))
		}
	case "expiry":
		if o.presencedBin == "" {
			add(cliutil.Usagef("--presenced-bin is required: expiry starts (and kills) its own node"))
		}
		add(positive("sessions", o.sessions))
		add(positive("rooms", o.rooms))
		add(positive("dial-concurrency", o.dialConc))
		add(positive("per-process", o.perProcess))
		add(checkInterval(o.interval))
		if o.timeoutFactor < 1 || o.timeoutFactor > 10 {
			add(cliutil.Usagef("--timeout-factor must be 1-10"))
		}
		if o.nodeLease < time.Second || o.nodeLease > 10*time.Minute {
			add(cliutil.Usagef("--node-lease must be 1s-10m"))
		}
		if o.grace < 0 {
			add(cliutil.Usagef("--grace must be >= 0"))
		}
	case "slowbody":
		add(positive("concurrency", o.concurrency))
		add(positive("slow", o.slow))
		add(positive("dial-concurrency", o.dialConc))
		if o.duration <= 0 || o.dribble <= 0 {
			add(cliutil.Usagef("--duration and --dribble must be positive"))
		}
		if o.slow > 15000 {
			add(cliutil.Usagef("--slow: at most 15000 connections (one process holds them)"))
		}
	case "webhooks":
		add(positive("concurrency", o.concurrency))
		add(positive("rooms", o.rooms))
		add(positive("sessions", o.sessions))
		if o.rate <= 0 || o.duration <= 0 {
			add(cliutil.Usagef("--rate and --duration must be positive"))
		}
		if len(o.webhookSecret) < 16 {
			add(cliutil.Usagef("--webhook-secret (or PRESENCE_WEBHOOK_SECRET): the nodes' secret, at least 16 bytes"))
		}
		if o.rooms > 1000 {
			add(cliutil.Usagef("--rooms: at most 1000 (the backlog is read exactly up to 1000 rooms)"))
		}
	case "report":
		if o.dir == "" {
			add(cliutil.Usagef("--dir is required"))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func checkInterval(d time.Duration) error {
	if d < time.Second || d > 10*time.Minute || d%time.Millisecond != 0 {
		return cliutil.Usagef("--interval must be 1s-10m in whole milliseconds")
	}
	return nil
}

// parseSourceAddrs parses "127.0.0.2-127.0.0.9,127.0.1.1" (IPv4 ranges
// within the last octet's span, or any two IPv4 addresses in order).
func parseSourceAddrs(spec string) ([]net.IP, error) {
	var out []net.IP
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(strings.TrimSpace(lo)).To4()
		if a == nil {
			return nil, fmt.Errorf("%q is not an IPv4 address", lo)
		}
		b := a
		if isRange {
			b = net.ParseIP(strings.TrimSpace(hi)).To4()
			if b == nil {
				return nil, fmt.Errorf("%q is not an IPv4 address", hi)
			}
		}
		from, to := ip4(a), ip4(b)
		if to < from {
			return nil, fmt.Errorf("range %s is backwards", part)
		}
		if to-from >= 4096 {
			return nil, fmt.Errorf("range %s has more than 4096 addresses", part)
		}
		for v := from; v <= to; v++ {
			ip := net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
			if !seen[ip.String()] {
				seen[ip.String()] = true
				out = append(out, ip)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no address")
	}
	return out, nil
}

func ip4(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

// runBench parses the command line of presencebench (fs holds the Redis
// flags already) and runs the scenario; it returns the scenario's name once
// known.
func runBench(ctx context.Context, c *cliutil.Env, fs *flag.FlagSet, args []string) (string, error) {
	name, o, err := parseBench(c, fs, args)
	if err != nil {
		return name, err
	}
	b := &bench{c: c, name: name, o: o, stdout: c.Stdout, stderr: c.Stderr, started: time.Now()}
	res, err := scenarios[name].run(ctx, b)
	if res != nil && !(o.worker) {
		if c.JSON {
			if werr := cliutil.WriteJSON(c.Stdout, res); werr != nil && err == nil {
				err = werr
			}
		} else {
			res.writeTable(c.Stdout)
		}
	}
	return name, err
}

// logf writes a line to stderr (progress and notes), never to stdout.
func (b *bench) logf(format string, args ...any) {
	b.stderrMu.Lock()
	defer b.stderrMu.Unlock()
	fmt.Fprintf(b.stderr, "bench %s: "+format+"\n", append([]any{b.name}, args...)...)
}

// progressEvery calls line every --progress and prints what it returns,
// until the returned stop is called.
func (b *bench) progressEvery(line func(elapsed time.Duration) string) (stop func()) {
	if b.o.progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(b.o.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				el := time.Since(start)
				b.logf("%6.1fs  %s", el.Seconds(), line(el))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}

// name returns the id of object kind i of this run: bench-<run>-<kind><i>.
// With --uuid-ids, sessions are 36-byte UUID-shaped ids (of the run and i)
// and users u + 10 digits (11 bytes), the sizes Redis memory is measured at.
func (b *bench) id(kind string, i int) string {
	if b.o.uuidIDs {
		switch kind {
		case "s":
			h := fnv.New32a()
			h.Write([]byte(b.o.runID))
			return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", h.Sum32(), i>>16&0xffff, i>>4&0xfff, i&0xf, uint64(i)*2654435761&0xffffffffffff)
		case "u":
			return fmt.Sprintf("u%010d", i)
		}
	}
	return fmt.Sprintf("bench-%s-%s%d", b.o.runID, kind, i)
}

// errTooMany is returned (after the result) when more requests failed than
// --max-errors allows.
func (b *bench) checkErrors(what string, n int64, first string) error {
	if n > b.o.maxErrors {
		if first != "" {
			return fmt.Errorf("%d %s failed (--max-errors %d); first: %s", n, what, b.o.maxErrors, first)
		}
		return fmt.Errorf("%d %s failed (--max-errors %d)", n, what, b.o.maxErrors)
	}
	return nil
}
