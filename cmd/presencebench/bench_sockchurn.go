package main

// bench_sockchurn.go: the sockchurn scenario (issue 14). WebSockets connect
// to one node in an open loop, --rate per second for --duration (socket n
// dials at n/rate s: a slow answer makes the next ones late, it does not
// thin the schedule). Each socket is a user of its own: it joins a room of
// --room-size, and when "joined" arrives (and --life has passed) it closes
// with a close frame (1000), which ends its session at once. Around the run
// the node's /metrics are sampled after a GC cycle (goroutines, RSS, heap,
// sockets: a leak shows as what did not come back), and every join and
// leave Redis published in the run's rooms is counted per user with
// PSUBSCRIBE: each user must have exactly one of each.
//
// The sockets are plain coder/websocket connections, not client.Conn: one
// goroutine each, no keep-alive, and a failed close handshake is seen (the
// client would fall back to POST /v1/disconnect and hide it).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

// sockChurnMaxOpen bounds the sockets open at once (one process; open
// files are capped at 20,000 here). A socket due while that many are open
// waits, and counts as late.
const sockChurnMaxOpen = 15000

type sockChurnResult struct {
	RunID       string  `json:"runId"`
	Scenario    string  `json:"scenario"`
	URL         string  `json:"url"`
	Rate        float64 `json:"targetRate"`
	DurationS   float64 `json:"durationSeconds"`
	RoomSize    int     `json:"roomSize"`
	LifeMs      int64   `json:"lifeMs"`
	IntervalMs  int64   `json:"intervalMs"`
	SourceAddrs int     `json:"sourceAddrs"`

	// Started: sockets whose dial began; Joined: "joined" arrived; Closed:
	// the close handshake completed (the node answered the close frame).
	Started    int64            `json:"started"`
	Joined     int64            `json:"joined"`
	Closed     int64            `json:"closed"`
	Failed     int64            `json:"failed"` // dial, join or close failed
	ErrorKinds map[string]int64 `json:"errorKinds,omitempty"`
	FirstError string           `json:"firstError,omitempty"`
	// Late: sockets started more than 100 ms after their time.
	Late int64 `json:"late"`
	// StartRate: sockets started per second over the schedule.
	StartRate float64 `json:"startRate"`
	// Seconds: from the first dial to the last close.
	Seconds float64 `json:"seconds"`
	// MaxOpen: most sockets open at once, seen from this side.
	MaxOpen int64   `json:"maxOpen"`
	Open    latency `json:"open"`  // dial + handshake + join, until "joined"
	Close   latency `json:"close"` // close frame sent until the node's close frame

	// The node's /metrics before the first socket and after the last close
	// + --settle, each after a GC cycle when one came within --gc-wait.
	// With --warmup, Fresh is the sample before the warm-up churn and
	// Before the one after it (+ --settle).
	WarmupS         float64      `json:"warmupSeconds,omitempty"`
	WarmupSockets   int64        `json:"warmupSockets,omitempty"`
	Fresh           *nodeMetrics `json:"fresh,omitempty"`
	FreshRSSPct     float64      `json:"rssChangeFromFreshPercent,omitempty"`
	Before          nodeMetrics  `json:"before"`
	After           nodeMetrics  `json:"after"`
	GCBefore        bool         `json:"gcBefore"`
	GCAfter         bool         `json:"gcAfter"`
	GoroutinesDelta float64      `json:"goroutinesDelta"`
	RSSChangePct    float64      `json:"rssChangePercent"`
	HeapDelta       float64      `json:"heapInuseDeltaBytes"`
	SocketsDelta    float64      `json:"socketsDelta"` // presence_websockets after - before

	// The events Redis published in the run's rooms (PSUBSCRIBE), from
	// before the first dial to the after sample.
	EventsWatched bool  `json:"eventsWatched"`
	Joins         int64 `json:"joinsSeen"`
	Leaves        int64 `json:"leavesSeen"`
	events
	// SessionsLeft: live sessions in the run's rooms in Redis at the end.
	SessionsLeft int64 `json:"sessionsLeft"`

	// The targets of issue 14 (reported, not an exit status).
	GoroutinesBack bool `json:"goroutinesBack"`
	RSSWithin10    bool `json:"rssWithin10Percent"`
	EventsExact    bool `json:"eventsExact"`
}

// events is the per-user tally of the joins and leaves seen.
type events struct {
	// Exact: users (of joined sockets) with exactly one join and one leave.
	Exact int64 `json:"usersExactlyOnce"`
	// Users of joined sockets with no join or no leave; extra events
	// beyond the first of each.
	MissingJoins    int64 `json:"missingJoins"`
	MissingLeaves   int64 `json:"missingLeaves"`
	DuplicateJoins  int64 `json:"duplicateJoins"`
	DuplicateLeaves int64 `json:"duplicateLeaves"`
	// Stray: joins and leaves of users whose socket did not join (a failed
	// dial or join), and events that are neither or of other users.
	Stray int64 `json:"strayEvents"`
}

// tally counts, per user, the joins and leaves seen against the sockets
// that joined.
func tally(joinN, leaveN []atomic.Int32, joined []atomic.Bool, others int64) events {
	e := events{Stray: others}
	for i := range joined {
		j, l := int64(joinN[i].Load()), int64(leaveN[i].Load())
		if !joined[i].Load() {
			e.Stray += j + l
			continue
		}
		if j == 1 && l == 1 {
			e.Exact++
		}
		if j == 0 {
			e.MissingJoins++
		}
		if l == 0 {
			e.MissingLeaves++
		}
		e.DuplicateJoins += max(j-1, 0)
		e.DuplicateLeaves += max(l-1, 0)
	}
	return e
}

func (r *sockChurnResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "sockchurn: %d sockets to %s at %.0f/s for %s (target %.0f/s), rooms of %d, life %s, %d source addresses\n",
		r.Started, r.URL, r.StartRate, time.Duration(r.DurationS*float64(time.Second)), r.Rate, r.RoomSize,
		time.Duration(r.LifeMs)*time.Millisecond, r.SourceAddrs)
	fmt.Fprintf(w, "%d joined, %d closed with a close frame, %d failed; %d started late by > 100 ms; at most %d open at once; %.1fs first dial to last close\n",
		r.Joined, r.Closed, r.Failed, r.Late, r.MaxOpen, r.Seconds)
	fmt.Fprintf(w, "open (dial + handshake + join): %s\nclose (close frame to the node's): %s\n\n", r.Open, r.Close)
	if r.Fresh != nil {
		fmt.Fprintf(w, "warm-up: %d sockets in rooms of their own over %s before the before sample; the fresh node: %.0f goroutines, RSS %s, heap in use %s (after: RSS %+.1f %% from fresh)\n",
			r.WarmupSockets, time.Duration(r.WarmupS*float64(time.Second)), r.Fresh.Goroutines, mb(r.Fresh.RSS), mb(r.Fresh.HeapInuse), r.FreshRSSPct)
	}
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, "NODE\tBEFORE\tAFTER\tCHANGE")
	fmt.Fprintf(tw, "goroutines\t%.0f\t%.0f\t%+.0f\n", r.Before.Goroutines, r.After.Goroutines, r.GoroutinesDelta)
	fmt.Fprintf(tw, "RSS\t%s\t%s\t%+.1f %%\n", mb(r.Before.RSS), mb(r.After.RSS), r.RSSChangePct)
	fmt.Fprintf(tw, "heap in use\t%s\t%s\t%+.1f MB\n", mb(r.Before.HeapInuse), mb(r.After.HeapInuse), r.HeapDelta/1e6)
	fmt.Fprintf(tw, "stacks in use\t%s\t%s\t%+.1f MB\n", mb(r.Before.StackInuse), mb(r.After.StackInuse), (r.After.StackInuse-r.Before.StackInuse)/1e6)
	fmt.Fprintf(tw, "sockets\t%.0f\t%.0f\t%+.0f\n", r.Before.Sockets, r.After.Sockets, r.SocketsDelta)
	tw.Flush()
	fmt.Fprintf(w, "(sampled after a GC cycle: before %s, after %s)\n\n", cliutil.YesNo(r.GCBefore), cliutil.YesNo(r.GCAfter))
	if r.EventsWatched {
		fmt.Fprintf(w, "published in the run's rooms (PSUBSCRIBE): %d joins, %d leaves; %d of %d joined users had exactly one join and one leave\n",
			r.Joins, r.Leaves, r.Exact, r.Joined)
		fmt.Fprintf(w, "missing: %d joins, %d leaves; duplicates: %d joins, %d leaves; stray events: %d\n",
			r.MissingJoins, r.MissingLeaves, r.DuplicateJoins, r.DuplicateLeaves, r.Stray)
	} else {
		fmt.Fprintln(w, "events not watched (Redis Cluster: sharded channels)")
	}
	fmt.Fprintf(w, "live sessions left in the run's rooms: %d\n", r.SessionsLeft)
	fmt.Fprintf(w, "issue 14: goroutines back to before %s; RSS within 10 %% of before %s; every join and leave once %s\n",
		verdict(r.GoroutinesBack), verdict(r.RSSWithin10), verdict(r.EventsExact))
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

// sockChurn is a running sockchurn.
type sockChurn struct {
	b       *bench
	url     string
	pre     string         // of the run's room, session and user ids ("w": the warm-up's)
	clients []*http.Client // one per source address (or one)
	joined  []atomic.Bool  // socket i got "joined"
	wg      sync.WaitGroup
	started, joins, closed,
	open, maxOpen atomic.Int64
	errs   errCounter
	mu     sync.Mutex
	oh, ch hist
}

func runSockChurn(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	n := int(math.Round(o.rate * o.duration.Seconds()))
	res := &sockChurnResult{RunID: o.runID, Scenario: "sockchurn", URL: o.urls[0], Rate: o.rate, DurationS: o.duration.Seconds(),
		RoomSize: o.roomSize, LifeMs: o.life.Milliseconds(), IntervalMs: o.interval.Milliseconds(), SourceAddrs: len(o.sourceAddrs)}
	sc := &sockChurn{b: b, url: o.urls[0], joined: make([]atomic.Bool, n)}
	sc.clients = []*http.Client{sockClient(nil)}
	if len(o.sourceAddrs) > 0 {
		sc.clients = sc.clients[:0]
		for _, ip := range o.sourceAddrs {
			sc.clients = append(sc.clients, sockClient(ip))
		}
	}

	// The watch first: its connection and goroutines are in both samples
	// (they count when the node runs in this process, as in the tests).
	start := time.Now()
	watch, err := b.watchEvents(ctx, n, start)
	if err != nil {
		return nil, err
	}
	res.EventsWatched = watch != nil
	defer watch.close()
	rooms := (n + o.roomSize - 1) / o.roomSize
	if _, err := b.countSessions(ctx, rooms); err != nil {
		return nil, err
	}
	before, err := b.sampleAfterGC(ctx, 0, o.gcWait)
	if err != nil {
		return nil, err
	}
	res.Before, res.GCBefore = before[0].m, before[0].gc
	if o.warmup > 0 {
		if err := sc.warmUp(ctx, res); err != nil {
			return res, err
		}
		if before, err = b.sampleAfterGC(ctx, o.settle, o.gcWait); err != nil {
			return res, err
		}
		res.Before, res.GCBefore = before[0].m, before[0].gc
	}

	b.logf("%d sockets to %s at %.0f/s for %s, rooms of %d", n, sc.url, o.rate, o.duration, o.roomSize)
	stopProgress := b.progressEvery(func(el time.Duration) string {
		return fmt.Sprintf("started %d (%.0f/s)  joined %d  closed %d  open %d  failed %d", sc.started.Load(),
			float64(sc.started.Load())/el.Seconds(), sc.joins.Load(), sc.closed.Load(), sc.open.Load(), sc.errs.n.Load())
	})
	start = time.Now()
	res.Late = sc.schedule(ctx, n, start)
	res.StartRate = math.Round(float64(sc.started.Load()) / time.Since(start).Seconds())
	sc.wait()
	res.Seconds = round3(time.Since(start).Seconds())
	stopProgress()
	res.Started, res.Joined, res.Closed, res.MaxOpen = sc.started.Load(), sc.joins.Load(), sc.closed.Load(), sc.maxOpen.Load()
	res.Failed, res.ErrorKinds, res.FirstError = sc.errs.snapshot()
	res.Open, res.Close = sc.oh.summary(), sc.ch.summary()
	b.logf("%d started, %d joined, %d closed, %d failed in %.1fs; settling for %s", res.Started, res.Joined, res.Closed, res.Failed, res.Seconds, o.settle)
	if err := ctx.Err(); err != nil {
		return res, err
	}

	after, err := b.sampleAfterGC(ctx, o.settle, o.gcWait)
	if err != nil {
		return res, err
	}
	res.After, res.GCAfter = after[0].m, after[0].gc
	if res.SessionsLeft, err = b.countSessions(ctx, rooms); err != nil {
		return res, err
	}
	if watch != nil {
		watch.close()
		res.Joins, res.Leaves = watch.joins.Load(), watch.leaves.Load()+watch.dups.Load()
		res.events = tally(watch.joinN, watch.leaveN, sc.joined, watch.others.Load())
		res.EventsExact = res.Started == int64(n) && res.Joined == res.Started && res.Exact == res.Joined && res.Stray == 0
	}
	res.GoroutinesDelta = res.After.Goroutines - res.Before.Goroutines
	res.HeapDelta = res.After.HeapInuse - res.Before.HeapInuse
	res.SocketsDelta = res.After.Sockets - res.Before.Sockets
	res.RSSChangePct = pctChange(res.Before.RSS, res.After.RSS)
	if res.Fresh != nil {
		res.FreshRSSPct = pctChange(res.Fresh.RSS, res.After.RSS)
	}
	res.GoroutinesBack = res.GoroutinesDelta <= 0
	res.RSSWithin10 = math.Abs(res.RSSChangePct) <= 10

	if err := b.checkErrors("sockets", res.Failed, res.FirstError); err != nil {
		return res, err
	}
	if res.Started == 0 {
		return res, errors.New("no socket was started")
	}
	return res, nil
}

// warmUp churns for --warmup at --rate in rooms of its own (not watched,
// not counted), after sampling the fresh node into res.Fresh.
func (sc *sockChurn) warmUp(ctx context.Context, res *sockChurnResult) error {
	o := sc.b.o
	fresh := res.Before
	res.Fresh = &fresh
	n := max(int(math.Round(o.rate*o.warmup.Seconds())), 1)
	w := &sockChurn{b: sc.b, url: sc.url, pre: "w", clients: sc.clients, joined: make([]atomic.Bool, n)}
	sc.b.logf("warm-up: %d sockets at %.0f/s for %s in rooms of their own", n, o.rate, o.warmup)
	start := time.Now()
	w.schedule(ctx, n, start)
	w.wait()
	res.WarmupS, res.WarmupSockets = round3(time.Since(start).Seconds()), w.started.Load()
	if err := ctx.Err(); err != nil {
		return err
	}
	failed, _, first := w.errs.snapshot()
	return sc.b.checkErrors("warm-up sockets", failed, first)
}

// pctChange is the change from a to b in percent (one decimal; 0 when a
// is 0).
func pctChange(a, b float64) float64 {
	if a <= 0 {
		return 0
	}
	return math.Round((b-a)/a*1000) / 10
}

// sockClient is the HTTP client of the handshakes from one source address
// (nil: any).
func sockClient(ip net.IP) *http.Client {
	d := &net.Dialer{KeepAlive: -1}
	if ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// schedule starts socket i at start + i/rate s, each on a goroutine of its
// own, and returns how many started late.
func (sc *sockChurn) schedule(ctx context.Context, n int, start time.Time) (late int64) {
	slots := make(chan struct{}, sockChurnMaxOpen)
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(float64(i) / sc.b.o.rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return late
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return late
		}
		if time.Since(at) > 100*time.Millisecond {
			late++
		}
		sc.started.Add(1)
		sc.wg.Add(1)
		go func() {
			defer sc.wg.Done()
			defer func() { <-slots }()
			sc.socket(ctx, i)
		}()
	}
	return late
}

func (sc *sockChurn) wait() { sc.wg.Wait() }

// socket runs socket i: dial, join, (life), close with a close frame.
func (sc *sockChurn) socket(ctx context.Context, i int) {
	o := sc.b.o
	t0 := time.Now()
	ctx0, cancel := context.WithTimeout(ctx, o.reqTimeout)
	defer cancel()
	h := http.Header{}
	if o.token != "" {
		h.Set("Authorization", "Bearer "+o.token)
	}
	ws, _, err := websocket.Dial(ctx0, strings.Replace(sc.url, "http://", "ws://", 1)+"/v1/ws", &websocket.DialOptions{
		HTTPClient: sc.clients[i%len(sc.clients)], HTTPHeader: h, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		sc.errs.add(fmt.Errorf("dial: %w", err))
		return
	}
	sc.opened()
	defer sc.open.Add(-1)
	if err := sc.join(ctx0, ws, i); err != nil {
		ws.CloseNow()
		sc.errs.add(fmt.Errorf("join: %w", err))
		return
	}
	sc.joined[i].Store(true)
	sc.joins.Add(1)
	t1 := time.Now()
	if o.life > 0 {
		select {
		case <-time.After(o.life):
		case <-ctx.Done():
		}
	}
	t2 := time.Now()
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		ws.CloseNow()
		sc.errs.add(fmt.Errorf("close: %w", err))
		return
	}
	sc.closed.Add(1)
	sc.mu.Lock()
	sc.oh.add(t1.Sub(t0))
	sc.ch.add(time.Since(t2))
	sc.mu.Unlock()
}

func (sc *sockChurn) opened() {
	n := sc.open.Add(1)
	for {
		m := sc.maxOpen.Load()
		if n <= m || sc.maxOpen.CompareAndSwap(m, n) {
			return
		}
	}
}

// join sends socket i's join and reads until its reply.
func (sc *sockChurn) join(ctx context.Context, ws *websocket.Conn, i int) error {
	b := sc.b
	msg, _ := json.Marshal(map[string]any{"type": "join", "id": 1, "roomId": b.id(sc.pre+"c", i/b.o.roomSize), "sessionId": b.id(sc.pre+"s", i),
		"interval": b.o.interval.Milliseconds(), "userId": b.id(sc.pre+"u", i)})
	if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		// One request in flight: its reply is the first "joined" or
		// "error" (events of the room may come first).
		var m struct{ Type, Code, Message string }
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("bad message %.80q", data)
		}
		switch m.Type {
		case "joined":
			return nil
		case "error":
			return fmt.Errorf("%s: %s", m.Code, m.Message)
		}
	}
}
