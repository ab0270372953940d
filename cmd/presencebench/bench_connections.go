package main

// bench_connections.go: the connections scenario. Sockets are opened by
// this process, or, past --per-process, by child processes (this binary
// again, with the hidden --worker flag): a process may hold only so many
// open files. A child reports on stdout, one JSON line at a time, how many
// sockets it opened, then holds them until its stdin closes (the parent
// closes it, or dies), and closes them with a close frame (which ends their
// sessions at once).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/client"
)

type nodeMemory struct {
	URL     string      `json:"url"`
	Before  nodeMetrics `json:"before"`
	After   nodeMetrics `json:"after"`
	Sockets int64       `json:"sockets"` // presence_websockets after - before
	// Per socket, in bytes: the growth of each measure divided by Sockets.
	HeapPerSocket  float64 `json:"heapInuseBytesPerSocket"`
	StackPerSocket float64 `json:"stackInuseBytesPerSocket"`
	RSSPerSocket   float64 `json:"residentBytesPerSocket"`
	GoroutinesPer  float64 `json:"goroutinesPerSocket"`
	// GCSeen: a GC cycle ran between the last join and the sample.
	GCSeen bool `json:"gcSeen"`
}

type connectionsResult struct {
	RunID       string   `json:"runId"`
	Scenario    string   `json:"scenario"`
	URLs        []string `json:"urls"`
	Sockets     int      `json:"sockets"`
	RoomSize    int      `json:"roomSize"`
	SourceAddrs int      `json:"sourceAddrs"`
	Processes   int      `json:"processes"`
	IntervalMs  int64    `json:"intervalMs"`
	Opened      int64    `json:"opened"`
	Failed      int64    `json:"failed"`
	FirstError  string   `json:"firstError,omitempty"`
	OpenSeconds float64  `json:"openSeconds"`
	OpenRate    float64  `json:"openRate"`
	// Open is one socket's dial, handshake and join (until "joined").
	Open   latency      `json:"open"`
	Nodes  []nodeMemory `json:"nodes"`
	Idle   *redisDelta  `json:"idleRedis,omitempty"`
	Closed bool         `json:"closed"`
	// EndedWhileOpen counts sessions the nodes ended while their sockets
	// stayed open (must be 0: an open socket keeps its session alive).
	EndedWhileOpen int64 `json:"endedWhileOpen"`
	// SessionsAlive is the live sessions of the run's rooms in Redis when
	// memory was sampled and at the end of the idle window (--redis-stats).
	SessionsAlive    int64 `json:"sessionsAlive,omitempty"`
	SessionsAliveEnd int64 `json:"sessionsAliveAfterIdle,omitempty"`
	// KeepAlivesPerSocket is the EVALSHAs per socket per interval while
	// idle (--redis-stats).
	KeepAlivesPerSocket float64 `json:"keepAlivesPerSocketPerInterval,omitempty"`
	// CommandsPerSocket is every Redis command (those run by scripts
	// included) per socket per interval while idle (--redis-stats).
	CommandsPerSocket float64 `json:"commandsPerSocketPerInterval,omitempty"`
	// EventsWatched: the events of the sockets' rooms were read from Redis
	// (PSUBSCRIBE) from the last join to the first close (--redis-stats).
	// LeavesWhileOpen must be 0: a leave is a session of an open socket
	// that ended, even if its node put it back afterwards (a join).
	EventsWatched   bool  `json:"eventsWatched,omitempty"`
	LeavesWhileOpen int64 `json:"leavesWhileOpen"`
	JoinsWhileOpen  int64 `json:"joinsWhileOpen"`
	// Churn: other sessions joining and leaving during the idle window.
	Churn *churnResult `json:"churn,omitempty"`
}

func (r *connectionsResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "connections: %d sockets (%d opened, %d failed) in rooms of %d, %d source addresses, %d processes; opened in %.1fs (%.0f/s)\n",
		r.Sockets, r.Opened, r.Failed, r.RoomSize, r.SourceAddrs, r.Processes, r.OpenSeconds, r.OpenRate)
	fmt.Fprintf(w, "open (dial + handshake + join): %s\n\n", r.Open)
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, "NODE\tSOCKETS\tHEAP/SOCKET\tSTACK/SOCKET\tRSS/SOCKET\tGOROUTINES/SOCKET\tRSS AFTER\tGC SINCE")
	for _, n := range r.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.1f\t%s\t%s\n", n.URL, n.Sockets, kb(n.HeapPerSocket), kb(n.StackPerSocket),
			kb(n.RSSPerSocket), n.GoroutinesPer, mb(n.After.RSS), cliutil.YesNo(n.GCSeen))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nsessions ended by the nodes while their sockets were open: %d\n", r.EndedWhileOpen)
	if r.EventsWatched {
		fmt.Fprintf(w, "published in the sockets' rooms while all were open (PSUBSCRIBE): %d leaves, %d joins\n", r.LeavesWhileOpen, r.JoinsWhileOpen)
	}
	if r.Idle != nil {
		fmt.Fprintf(w, "live sessions in Redis: %d when sampled, %d after the idle window\n", r.SessionsAlive, r.SessionsAliveEnd)
		what := "idle"
		if r.Churn != nil {
			what = "idle sockets, with the churn"
		}
		fmt.Fprintf(w, "%s: %.4f Redis commands and %.4f EVALSHAs per socket per interval\n", what, r.CommandsPerSocket, r.KeepAlivesPerSocket)
		r.Idle.writeTable(w)
	}
	if r.Churn != nil {
		r.Churn.writeTable(w)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

func kb(v float64) string { return fmt.Sprintf("%.1f KB", v/1000) }
func mb(v float64) string { return fmt.Sprintf("%.0f MB", v/1e6) }

// workerMsg is one line a child writes on its stdout.
type workerMsg struct {
	Opened     int64       `json:"opened"`
	Failed     int64       `json:"failed"`
	Ended      int64       `json:"ended,omitempty"`
	Done       bool        `json:"done,omitempty"`
	Closed     bool        `json:"closed,omitempty"`
	FirstError string      `json:"firstError,omitempty"`
	Hist       [][2]uint64 `json:"hist,omitempty"` // bucket, count
	Max        int64       `json:"max,omitempty"`
	Sum        float64     `json:"sum,omitempty"`
}

// sockets is the set of sockets one process opened.
type sockets struct {
	conns  []*client.Conn
	opened atomic.Int64
	failed atomic.Int64
	// ended counts sessions the server ended while their socket was open
	// ({"type":"left","reason":"ended"}: expiry, sign-out, removal).
	ended atomic.Int64
	errs  errCounter
	mu    sync.Mutex
	h     hist
}

// openSockets opens sockets offset..offset+len(s.conns)-1 (global
// indices) into s.
// openHere opens n sockets in this process, mirroring its counts into
// opened and failed (for the progress line) while it works.
func (b *bench) openHere(ctx context.Context, n int, opened, failed *atomic.Int64) *sockets {
	s := &sockets{conns: make([]*client.Conn, n)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.openSockets(ctx, s, 0)
	}()
	for {
		select {
		case <-done:
			opened.Store(s.opened.Load())
			failed.Store(s.failed.Load())
			return s
		case <-time.After(100 * time.Millisecond):
			opened.Store(s.opened.Load())
			failed.Store(s.failed.Load())
		}
	}
}

func (b *bench) openSockets(ctx context.Context, s *sockets, offset int) {
	o := b.o
	count := len(s.conns)
	parallel(ctx, count, o.dialConc, func(j int) error {
		g := offset + j
		cfg := client.ConnConfig{URLs: []string{o.urls[g%len(o.urls)]}, Token: o.token, UserID: b.id("u", g),
			OnEvent: func(e client.Event) {
				if e.Type == "left" && strings.Contains(string(e.Raw), `"reason":"ended"`) {
					s.ended.Add(1)
				}
			}}
		if len(o.sourceAddrs) > 0 {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: o.sourceAddrs[g%len(o.sourceAddrs)]}, KeepAlive: -1}
			cfg.Dialer = d.DialContext
		}
		t0 := time.Now()
		dctx, cancel := context.WithTimeout(ctx, o.reqTimeout)
		defer cancel()
		c, err := client.Dial(dctx, cfg)
		if err == nil {
			if _, err = c.Join(dctx, b.id("c", g/o.roomSize), b.id("s", g), o.interval, nil); err != nil {
				c.Abandon()
				err = fmt.Errorf("join: %w", err)
			}
		}
		if err != nil {
			s.failed.Add(1)
			s.errs.add(err)
			return nil
		}
		s.mu.Lock()
		s.h.add(time.Since(t0))
		s.mu.Unlock()
		s.conns[j] = c
		s.opened.Add(1)
		return nil
	})
}

// close closes every socket with a close frame (their sessions end).
func (s *sockets) close(conc int) {
	parallel(context.Background(), len(s.conns), conc, func(j int) error {
		if c := s.conns[j]; c != nil {
			c.Close()
		}
		return nil
	})
}

func runConnections(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	if o.worker {
		return nil, b.connWorker(ctx)
	}
	res := &connectionsResult{RunID: o.runID, Scenario: "connections", URLs: o.urls, Sockets: o.sockets, RoomSize: o.roomSize,
		SourceAddrs: len(o.sourceAddrs), IntervalMs: o.interval.Milliseconds()}
	before := make([]nodeMetrics, len(o.urls))
	for i, u := range o.urls {
		m, err := scrapeNode(ctx, u, o.token, o.reqTimeout)
		if err != nil {
			return nil, err
		}
		before[i] = m
	}

	var opened, failed atomic.Int64
	start := time.Now()
	stopProgress := b.progressEvery(func(el time.Duration) string {
		n := opened.Load()
		return fmt.Sprintf("opened %d of %d (%.0f/s)  failed %d", n, o.sockets, float64(n)/el.Seconds(), failed.Load())
	})
	var all hist
	var firstErr string
	var closeAll func() error
	var ended func() int64
	if o.sockets <= o.perProcess {
		res.Processes = 1
		s := b.openHere(ctx, o.sockets, &opened, &failed)
		all = s.h
		_, _, firstErr = s.errs.snapshot()
		closeAll = func() error { s.close(o.dialConc); return nil }
		ended = s.ended.Load
	} else {
		var err error
		closeAll, ended, err = b.spawnWorkers(ctx, res, &opened, &failed, &all, &firstErr)
		if err != nil {
			stopProgress()
			if closeAll != nil {
				closeAll()
			}
			return nil, err
		}
	}
	res.OpenSeconds = round3(time.Since(start).Seconds())
	stopProgress()
	res.Opened, res.Failed, res.FirstError = opened.Load(), failed.Load(), firstErr
	res.OpenRate = math.Round(float64(res.Opened) / res.OpenSeconds)
	res.Open = all.summary()
	b.logf("%d sockets open (%d failed) in %.1fs; settling for %s", res.Opened, res.Failed, res.OpenSeconds, o.settle)
	var events *eventWatch
	if o.redisStats {
		var err error
		if events, err = b.watchEvents(ctx, o.sockets, start); err != nil {
			closeAll()
			return nil, err
		}
		res.EventsWatched = events != nil
	}

	measure := func() error {
		// The heap is measured after a GC cycle later than the last join,
		// so that the garbage of the handshakes and joins is not counted
		// as the sockets' memory.
		samples, err := b.sampleAfterGC(ctx, o.settle, o.gcWait)
		if err != nil {
			return err
		}
		for i, u := range o.urls {
			after := samples[i].m
			n := nodeMemory{URL: u, Before: before[i], After: after, Sockets: int64(after.Sockets - before[i].Sockets),
				GCSeen: samples[i].gc}
			if n.Sockets > 0 {
				per := func(a, b float64) float64 { return math.Round((a - b) / float64(n.Sockets)) }
				n.HeapPerSocket = per(after.HeapInuse, before[i].HeapInuse)
				n.StackPerSocket = per(after.StackInuse, before[i].StackInuse)
				n.RSSPerSocket = per(after.RSS, before[i].RSS)
				n.GoroutinesPer = math.Round((after.Goroutines-before[i].Goroutines)/float64(n.Sockets)*100) / 100
			}
			res.Nodes = append(res.Nodes, n)
		}
		if o.redisStats {
			rooms := (o.sockets + o.roomSize - 1) / o.roomSize
			if res.SessionsAlive, err = b.countSessions(ctx, rooms); err != nil {
				return err
			}
			var ch *churn
			if o.churn > 0 {
				if ch, err = b.startChurn(ctx, o.churnURL, o.churn); err != nil {
					return err
				}
			}
			b.logf("idle for %s: reading Redis statistics", o.idleWindow)
			s0, err := b.readRedisStats(ctx)
			if err != nil {
				if ch != nil {
					res.Churn = ch.finish()
				}
				return err
			}
			select {
			case <-time.After(o.idleWindow):
			case <-ctx.Done():
			}
			s1, err := b.readRedisStats(ctx)
			if ch != nil {
				res.Churn = ch.finish()
				b.logf("churn: %d joins (%.0f/s), %d leaves (%.0f/s), %d errors", res.Churn.Joins, res.Churn.JoinRate,
					res.Churn.Leaves, res.Churn.LeaveRate, res.Churn.Errors)
			}
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			res.Idle = s0.delta(s1, 0)
			if res.SessionsAliveEnd, err = b.countSessions(ctx, rooms); err != nil {
				return err
			}
			if res.Opened > 0 {
				perSocket := func(perS float64) float64 {
					return math.Round(perS*o.interval.Seconds()/float64(res.Opened)*1e4) / 1e4
				}
				res.KeepAlivesPerSocket = perSocket(float64(res.Idle.Evalsha) / res.Idle.Seconds)
				res.CommandsPerSocket = perSocket(float64(res.Idle.Commands) / res.Idle.Seconds)
			}
		}
		if o.hold > 0 {
			b.logf("holding the sockets for %s", o.hold)
			select {
			case <-time.After(o.hold):
			case <-ctx.Done():
			}
		}
		return nil
	}
	merr := measure()
	res.EndedWhileOpen = ended()
	if events != nil {
		events.close()
		res.LeavesWhileOpen = events.leaves.Load() + events.dups.Load()
		res.JoinsWhileOpen = events.joins.Load()
	}
	b.logf("closing %d sockets", res.Opened)
	cerr := closeAll()
	res.Closed = cerr == nil
	if merr != nil {
		return res, merr
	}
	if cerr != nil {
		return res, cerr
	}
	if err := b.checkErrors("sockets", res.Failed, res.FirstError); err != nil {
		return res, err
	}
	for _, n := range res.Nodes {
		if n.Sockets <= 0 {
			return res, fmt.Errorf("node %s reports no new sockets (presence_websockets)", n.URL)
		}
	}
	if res.EndedWhileOpen > 0 {
		return res, fmt.Errorf("%d sessions were ended by the nodes while their sockets were open", res.EndedWhileOpen)
	}
	if res.LeavesWhileOpen > 0 {
		return res, fmt.Errorf("%d leaves (and %d joins) were published in the sockets' rooms while they were all open", res.LeavesWhileOpen, res.JoinsWhileOpen)
	}
	if res.Churn != nil {
		if err := b.checkErrors("churn joins/leaves", res.Churn.Errors, res.Churn.FirstError); err != nil {
			return res, err
		}
	}
	if o.redisStats && (res.SessionsAlive != res.Opened || res.SessionsAliveEnd != res.Opened) {
		return res, fmt.Errorf("%d sockets open, but %d then %d live sessions in Redis", res.Opened, res.SessionsAlive, res.SessionsAliveEnd)
	}
	return res, nil
}

// gcSample is a node's /metrics, sampled after a GC cycle if gc.
type gcSample struct {
	m  nodeMetrics
	gc bool
}

// sampleAfterGC reads each --url node's GC count, waits settle, then
// samples each node once it has run a GC cycle since that count, waiting
// up to gcWait in all (0: no wait); the runtime forces a cycle every 2 min.
// Goroutines are the fewest of a few scrapes (settleGoroutines).
func (b *bench) sampleAfterGC(ctx context.Context, settle, gcWait time.Duration) ([]gcSample, error) {
	urls := b.o.urls
	gc0 := make([]float64, len(urls))
	for i, u := range urls {
		m, err := scrapeNode(ctx, u, b.o.token, b.o.reqTimeout)
		if err != nil {
			return nil, err
		}
		gc0[i] = m.GCs
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	samples := make([]gcSample, len(urls))
	deadline := time.Now().Add(gcWait)
	if gcWait > 0 {
		b.logf("waiting up to %s for a GC cycle on every node", gcWait)
	}
	for i, u := range urls {
		for {
			m, err := scrapeNode(ctx, u, b.o.token, b.o.reqTimeout)
			if err != nil {
				return nil, err
			}
			samples[i] = gcSample{m: m, gc: m.GCs > gc0[i]}
			if gcWait == 0 || samples[i].gc || time.Now().After(deadline) {
				if err := settleGoroutines(ctx, u, b.o.token, b.o.reqTimeout, &samples[i].m); err != nil {
					return nil, err
				}
				break
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return samples, nil
}

// countSessions counts the live sessions of the run's rooms 0..rooms-1 in
// Redis (the store's RoomCounts, 1000 rooms per round trip).
func (b *bench) countSessions(ctx context.Context, rooms int) (int64, error) {
	if b.c.RDB == nil {
		if err := b.c.Connect(ctx); err != nil {
			return 0, fmt.Errorf("redis: %w", err)
		}
	}
	var total int64
	for start := 0; start < rooms; start += 1000 {
		ids := make([]string, 0, 1000)
		for i := start; i < min(start+1000, rooms); i++ {
			ids = append(ids, b.id("c", i))
		}
		counts, err := b.c.Store.RoomCounts(ctx, b.c.Org, ids)
		if err != nil {
			return 0, fmt.Errorf("count sessions: %w", err)
		}
		for _, c := range counts {
			total += c.Sessions
		}
	}
	return total, nil
}

// spawnWorkers starts the child processes, waits until every one has
// opened its sockets, and returns the function that makes them close.
func (b *bench) spawnWorkers(ctx context.Context, res *connectionsResult, opened, failed *atomic.Int64, all *hist, firstErr *string) (closeAll func() error, ended func() int64, err error) {
	o := b.o
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	n := (o.sockets + o.perProcess - 1) / o.perProcess
	res.Processes = n
	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		last   workerMsg     // counters of its last report
		ready  bool          // its sockets are open
		first  workerMsg     // the report that said so (with the latencies)
		done   chan struct{} // its stdout ended
		closed bool
		err    error
	}
	var mu sync.Mutex
	children := make([]*child, n)
	update := func() {
		var op, fa int64
		for _, c := range children {
			if c != nil {
				op += c.last.Opened
				fa += c.last.Failed
			}
		}
		opened.Store(op)
		failed.Store(fa)
	}
	ended = func() int64 {
		mu.Lock()
		defer mu.Unlock()
		var n int64
		for _, c := range children {
			if c != nil {
				n += c.last.Ended
			}
		}
		return n
	}
	closeAll = func() error {
		var errs []error
		for _, c := range children {
			if c != nil {
				c.stdin.Close()
			}
		}
		for i, c := range children {
			if c == nil {
				continue
			}
			select {
			case <-c.done:
			case <-time.After(2*time.Minute + o.reqTimeout):
				c.cmd.Process.Kill()
				<-c.done
			}
			werr := c.cmd.Wait()
			mu.Lock()
			closed := c.closed
			mu.Unlock()
			if werr != nil || !closed {
				errs = append(errs, fmt.Errorf("worker %d: exit %v, sockets closed %v", i, werr, closed))
			}
		}
		return errors.Join(errs...)
	}
	per := o.sockets / n
	offset := 0
	for i := 0; i < n; i++ {
		count := per
		if i < o.sockets%n {
			count++
		}
		args := []string{"connections", "--worker", "--worker-offset", strconv.Itoa(offset),
			"--sockets", strconv.Itoa(count), "--per-process", strconv.Itoa(count),
			"--url", joinURLs(o.urls), "--room-size", strconv.Itoa(o.roomSize), "--interval", o.interval.String(),
			"--dial-concurrency", strconv.Itoa(o.dialConc), "--run-id", o.runID, "--progress", "0",
			"--request-timeout", o.reqTimeout.String()}
		if o.sourceSpec != "" {
			args = append(args, "--source-addrs", o.sourceSpec)
		}
		offset += count
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "PRESENCEBENCH_WORKER=1", "PRESENCECTL_BENCH_TOKEN="+o.token)
		cmd.Stderr = &prefixWriter{b: b, prefix: fmt.Sprintf("worker %d: ", i)}
		setChildAttrs(cmd)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return closeAll, ended, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return closeAll, ended, err
		}
		if err := cmd.Start(); err != nil {
			return closeAll, ended, fmt.Errorf("start worker: %w", err)
		}
		c := &child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
		mu.Lock()
		children[i] = c
		mu.Unlock()
		go func() {
			defer close(c.done)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			for sc.Scan() {
				var m workerMsg
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					mu.Lock()
					c.err = fmt.Errorf("worker %d: bad line %q", i, sc.Text())
					mu.Unlock()
					continue
				}
				mu.Lock()
				c.closed = c.closed || m.Closed
				c.last = m
				if m.Done && !c.ready {
					c.ready, c.first = true, m
				}
				update()
				mu.Unlock()
			}
		}()
	}
	// Wait until every child has opened its share.
	for {
		mu.Lock()
		ready, exited := 0, -1
		for i, c := range children {
			if c.err != nil {
				err := c.err
				mu.Unlock()
				return closeAll, ended, err
			}
			if c.ready {
				ready++
				continue
			}
			select {
			case <-c.done:
				exited = i
			default:
			}
		}
		mu.Unlock()
		if exited >= 0 {
			return closeAll, ended, fmt.Errorf("worker %d exited before opening its sockets", exited)
		}
		if ready == n {
			break
		}
		select {
		case <-ctx.Done():
			return closeAll, ended, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range children {
		var h hist
		for _, bc := range c.first.Hist {
			h.counts[bc[0]] += bc[1]
			h.n += bc[1]
		}
		h.max, h.sum = c.first.Max, c.first.Sum
		all.merge(&h)
		if *firstErr == "" {
			*firstErr = c.first.FirstError
		}
	}
	update()
	return closeAll, ended, nil
}

// connWorker is a child process: it opens its sockets, reports, holds them
// until stdin closes, then closes them.
func (b *bench) connWorker(ctx context.Context) error {
	o := b.o
	enc := json.NewEncoder(b.stdout)
	var encMu sync.Mutex
	emit := func(m workerMsg) {
		encMu.Lock()
		enc.Encode(m)
		encMu.Unlock()
	}
	s := &sockets{conns: make([]*client.Conn, o.sockets)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.openSockets(ctx, s, o.workerOffset)
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			emit(workerMsg{Opened: s.opened.Load(), Failed: s.failed.Load(), Ended: s.ended.Load()})
		}
	}
	m := workerMsg{Opened: s.opened.Load(), Failed: s.failed.Load(), Ended: s.ended.Load(), Done: true, Max: s.h.max, Sum: s.h.sum}
	_, _, m.FirstError = s.errs.snapshot()
	for i, c := range s.h.counts {
		if c > 0 {
			m.Hist = append(m.Hist, [2]uint64{uint64(i), c})
		}
	}
	emit(m)
	// Hold until the parent closes stdin (or goes away) or a signal,
	// reporting the counters (sessions ended while open) meanwhile.
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
hold:
	for {
		select {
		case <-eof:
			break hold
		case <-ctx.Done():
			break hold
		case <-tick.C:
			emit(workerMsg{Opened: s.opened.Load(), Failed: s.failed.Load(), Ended: s.ended.Load(), Done: true})
		}
	}
	s.close(o.dialConc)
	emit(workerMsg{Closed: true, Opened: s.opened.Load(), Failed: s.failed.Load(), Ended: s.ended.Load()})
	return nil
}

func joinURLs(u []string) string {
	out := ""
	for i, s := range u {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

// prefixWriter copies a child's stderr lines to the bench's stderr.
type prefixWriter struct {
	b      *bench
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(data []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, data...)
	for {
		i := indexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.b.stderrMu.Lock()
		fmt.Fprintf(p.b.stderr, "%s%s\n", p.prefix, p.buf[:i])
		p.b.stderrMu.Unlock()
		p.buf = p.buf[i+1:]
	}
	return len(data), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
