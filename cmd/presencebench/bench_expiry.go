package main

// bench_expiry.go: the expiry scenario. It starts its own node (the one it
// kills), opens WebSockets to it (node-owned sessions; past --per-process
// from child processes, as connections does), watches every room on
// another node and in Redis (PSUBSCRIBE), kills its node with SIGKILL and
// times each leave from the kill. The bound is min(session timeout,
// node lease) + 2 s: the sessions of a dead node's sockets end when its
// lease lapses (README, "Node liveness"); a node that kept them alive with
// per-session deadlines instead ends them by the timeout.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/client"
)

type expiryResult struct {
	RunID         string  `json:"runId"`
	Scenario      string  `json:"scenario"`
	KilledNode    string  `json:"killedNode"`
	KilledPid     int     `json:"killedPid"`
	NodeLog       string  `json:"nodeLog"`
	WatcherNode   string  `json:"watcherNode"`
	Sessions      int     `json:"sessions"`
	Rooms         int     `json:"rooms"`
	RoomSize      int     `json:"roomSize"`
	Processes     int     `json:"processes"` // that held the sockets
	IntervalMs    int64   `json:"intervalMs"`
	TimeoutFactor float64 `json:"timeoutFactor"`
	TimeoutMs     int64   `json:"timeoutMs"`   // interval x factor
	NodeLeaseMs   int64   `json:"nodeLeaseMs"` // --node-lease
	NodeLeaseSet  bool    `json:"nodeLeaseSet"`
	BoundMs       int64   `json:"boundMs"` // min(timeout, lease) + 2 s
	OpenSeconds   float64 `json:"openSeconds"`
	// The leaves the watchers on the other node got.
	Leaves     int64 `json:"leaves"` // distinct users
	Duplicates int64 `json:"duplicateLeaves"`
	// Since the kill, in ms: the first leave, quantiles, the last.
	FirstMs  float64 `json:"firstLeaveMs"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
	LastMs   float64 `json:"lastLeaveMs"`
	AllByMs  float64 `json:"allDeliveredMs"` // = LastMs when every leave came
	Complete bool    `json:"complete"`
	Pass     bool    `json:"withinBound"`
	Syncs    int64   `json:"syncs"`
	// The leaves Redis published (PSUBSCRIBE, single Redis only).
	RedisWatched    bool    `json:"redisWatched"`
	RedisLeaves     int64   `json:"redisLeaves"`
	RedisDuplicates int64   `json:"redisDuplicateLeaves"`
	RedisFirstMs    float64 `json:"redisFirstLeaveMs"`
	RedisLastMs     float64 `json:"redisLastLeaveMs"`
}

func (r *expiryResult) writeTable(w io.Writer) {
	lease := fmt.Sprintf("lease %s", time.Duration(r.NodeLeaseMs)*time.Millisecond)
	if !r.NodeLeaseSet {
		lease += " (the node's default, not passed)"
	}
	fmt.Fprintf(w, "expiry: %d sessions over %d rooms on %s (pid %d, killed), %d client processes, watched on %s; interval %s x %.1f = timeout %s, %s\n\n",
		r.Sessions, r.Rooms, r.KilledNode, r.KilledPid, r.Processes, r.WatcherNode, time.Duration(r.IntervalMs)*time.Millisecond, r.TimeoutFactor,
		time.Duration(r.TimeoutMs)*time.Millisecond, lease)
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, "SEEN BY\tLEAVES\tDUPLICATES\tFIRST\tP50\tP99\tLAST\tBOUND\tRESULT")
	verdict := "all delivered within the bound"
	switch {
	case !r.Complete:
		verdict = fmt.Sprintf("INCOMPLETE: %d of %d leaves", r.Leaves, r.Sessions)
	case !r.Pass:
		verdict = "late: past the bound"
	}
	fmt.Fprintf(tw, "watchers on %s\t%d/%d\t%d\t%.2fs\t%.2fs\t%.2fs\t%.2fs\t%.2fs\t%s\n", r.WatcherNode, r.Leaves, r.Sessions, r.Duplicates,
		r.FirstMs/1000, r.P50Ms/1000, r.P99Ms/1000, r.LastMs/1000, float64(r.BoundMs)/1000, verdict)
	if r.RedisWatched {
		fmt.Fprintf(tw, "Redis (PSUBSCRIBE)\t%d/%d\t%d\t%.2fs\t-\t-\t%.2fs\t%.2fs\t\n", r.RedisLeaves, r.Sessions, r.RedisDuplicates,
			r.RedisFirstMs/1000, r.RedisLastMs/1000, float64(r.BoundMs)/1000)
	}
	tw.Flush()
	if r.Syncs > 0 {
		fmt.Fprintf(w, "syncs %d\n", r.Syncs)
	}
	fmt.Fprintf(w, "killed node's log: %s\n", r.NodeLog)
}

func runExpiry(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	watchURL := o.urls[0]
	node, err := b.startNode(ctx)
	if err != nil {
		return nil, err
	}
	defer node.kill()
	timeout := time.Duration(float64(o.interval) * o.timeoutFactor)
	roomSize := (o.sessions + o.rooms - 1) / o.rooms
	rooms := (o.sessions + roomSize - 1) / roomSize
	res := &expiryResult{RunID: o.runID, Scenario: "expiry", KilledNode: node.url, KilledPid: node.cmd.Process.Pid, NodeLog: node.log,
		WatcherNode: watchURL, Sessions: o.sessions, Rooms: rooms, RoomSize: roomSize,
		IntervalMs: o.interval.Milliseconds(), TimeoutFactor: o.timeoutFactor, TimeoutMs: timeout.Milliseconds(),
		NodeLeaseMs: o.nodeLease.Milliseconds(), NodeLeaseSet: o.nodeLeaseSet,
		BoundMs: (min(timeout, o.nodeLease) + 2*time.Second).Milliseconds()}

	// An anchor member per room, through the watchers' node (it outlives
	// the kill): its answer carries the room token the watchers need.
	ep := mustEndpoint(watchURL)
	hc := newHClient(ep, o.reqTimeout)
	defer hc.close()
	tokens := make([]string, rooms)
	anchors := make([]string, rooms)
	defer func() {
		for _, tok := range anchors {
			if tok != "" {
				hc.do(buildRequest(ep, o.token, "POST", "/v1/disconnect", []byte(`{"sessionToken":"`+tok+`"}`)))
			}
		}
	}()
	for r := range rooms {
		body := heartbeatBody(b.id("c", r), b.id("anchor", r), b.id("anchor", r), 10*time.Minute)
		ar, err := hc.do(buildRequest(ep, o.token, "POST", "/v1/heartbeat", body))
		if err == nil {
			err = ar.expect(200)
		}
		if err != nil {
			return nil, fmt.Errorf("anchor of room %d through %s: %w", r, watchURL, err)
		}
		tokens[r], anchors[r] = jsonString(ar.body, "roomToken"), jsonString(ar.body, "sessionToken")
	}

	// The sessions: one socket each, to the node that will die; socket i
	// is user u<i> in room c<i/roomSize>, as in the connections scenario,
	// over child processes past --per-process.
	b.logf("opening %d sockets to %s (its own node, pid %d)", o.sessions, node.url, node.cmd.Process.Pid)
	sb := &bench{c: b.c, name: b.name, o: o, stdout: b.stdout, stderr: b.stderr, started: b.started}
	sb.o.urls, sb.o.sockets, sb.o.roomSize = []string{node.url}, o.sessions, roomSize
	var opened, failed atomic.Int64
	var firstErr string
	start := time.Now()
	stop := b.progressEvery(func(time.Duration) string {
		return fmt.Sprintf("opened %d of %d  failed %d", opened.Load(), o.sessions, failed.Load())
	})
	var release func() // lets go of the sockets, after the kill
	if o.sessions <= o.perProcess {
		res.Processes = 1
		s := sb.openHere(ctx, o.sessions, &opened, &failed)
		_, _, firstErr = s.errs.snapshot()
		release = func() {
			for _, c := range s.conns {
				if c != nil {
					c.Abandon()
				}
			}
		}
	} else {
		cr := &connectionsResult{}
		var all hist
		closeAll, _, err := sb.spawnWorkers(ctx, cr, &opened, &failed, &all, &firstErr)
		res.Processes = cr.Processes
		if closeAll != nil {
			release = func() {
				if err := closeAll(); err != nil {
					b.logf("closing the client processes: %v", err)
				}
			}
		}
		if err != nil {
			stop()
			if release != nil {
				release()
			}
			return nil, fmt.Errorf("sessions on %s: %w", node.url, err)
		}
	}
	defer release()
	stop()
	res.OpenSeconds = round3(time.Since(start).Seconds())
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("sessions on %s: %d of %d sockets failed; first: %s", node.url, n, o.sessions, firstErr)
	}

	// Watchers on the other node: one socket per room.
	var killedAt atomic.Int64 // ns since start; 0 until the kill
	leaveAt := make([]atomic.Int64, o.sessions)
	var leaves, dups, syncs atomic.Int64
	userPrefix := strings.TrimSuffix(b.id("u", 0), "0")
	watchers := make([]*client.Conn, rooms)
	defer func() {
		for _, c := range watchers {
			if c != nil {
				c.Close()
			}
		}
	}()
	b.logf("watching the %d rooms on %s", rooms, watchURL)
	err = parallel(ctx, rooms, 20, func(r int) error {
		onEvent := func(e client.Event) {
			if e.Type == "sync" {
				syncs.Add(1)
				return
			}
			if e.Type != "presence" || e.Event != "leave" || e.Member == nil {
				return
			}
			i, err := strconv.Atoi(strings.TrimPrefix(e.Member.UserID, userPrefix))
			if err != nil || !strings.HasPrefix(e.Member.UserID, userPrefix) || i < 0 || i >= o.sessions {
				return
			}
			at := int64(time.Since(start))
			if !leaveAt[i].CompareAndSwap(0, at) {
				dups.Add(1)
				return
			}
			leaves.Add(1)
		}
		dctx, cancel := context.WithTimeout(ctx, o.reqTimeout)
		defer cancel()
		c, err := client.Dial(dctx, client.ConnConfig{URLs: []string{watchURL}, Token: o.token, OnEvent: onEvent})
		if err != nil {
			return err
		}
		watchers[r] = c
		j, err := c.Watch(dctx, tokens[r])
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		online := 0
		for _, m := range j.Members {
			if m.Online {
				online++
			}
		}
		if want := min(roomSize, o.sessions-r*roomSize) + 1; online != want {
			return fmt.Errorf("room %d shows %d members online on %s, want %d (with its anchor)", r, online, watchURL, want)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watchers on %s: %w", watchURL, err)
	}
	events, err := b.watchEvents(ctx, o.sessions, start)
	if err != nil {
		return nil, err
	}
	defer events.close()
	res.RedisWatched = events != nil
	if n := leaves.Load(); n > 0 {
		return nil, fmt.Errorf("%d leaves before the kill", n)
	}

	b.logf("kill -9 %d", node.cmd.Process.Pid)
	killedAt.Store(int64(time.Since(start)))
	node.kill()
	bound := time.Duration(res.BoundMs) * time.Millisecond
	all := func() bool {
		return leaves.Load() >= int64(o.sessions) && (events == nil || events.leaves.Load() >= int64(o.sessions))
	}
	stop = b.progressEvery(func(el time.Duration) string {
		line := fmt.Sprintf("%d of %d leaves delivered (bound %s)", leaves.Load(), o.sessions, bound)
		if events != nil {
			line += fmt.Sprintf(", %d published", events.leaves.Load())
		}
		return line
	})
	waitUntil := time.Now().Add(bound + o.grace)
	for !all() && time.Now().Before(waitUntil) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	// A little longer, for duplicates.
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	stop()
	k := killedAt.Load()
	var h hist
	var first, last int64 = -1, 0
	for i := range leaveAt {
		at := leaveAt[i].Load()
		if at == 0 {
			continue
		}
		d := at - k
		h.add(time.Duration(d))
		if first < 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	res.Leaves, res.Duplicates, res.Syncs = leaves.Load(), dups.Load(), syncs.Load()
	res.Complete = res.Leaves == int64(o.sessions)
	if first >= 0 {
		res.FirstMs = ms(time.Duration(first))
		res.P50Ms, res.P99Ms = ms(h.quantile(0.5)), ms(h.quantile(0.99))
		res.LastMs = ms(time.Duration(last))
	}
	if events != nil {
		events.close()
		res.RedisLeaves, res.RedisDuplicates = events.leaves.Load(), events.dups.Load()
		var rf, rl int64 = -1, 0
		for i := range events.leaveAt {
			if at := events.leaveAt[i].Load(); at != 0 {
				d := at - k
				if rf < 0 || d < rf {
					rf = d
				}
				rl = max(rl, d)
			}
		}
		if rf >= 0 {
			res.RedisFirstMs, res.RedisLastMs = ms(time.Duration(rf)), ms(time.Duration(rl))
		}
		res.Complete = res.Complete && res.RedisLeaves == int64(o.sessions)
	}
	if res.Complete {
		res.AllByMs = max(res.LastMs, res.RedisLastMs)
		res.Pass = time.Duration(res.AllByMs*float64(time.Millisecond)) <= bound
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if !res.Complete {
		return res, fmt.Errorf("leaves missing after the bound + --grace (%s): %d of %d delivered on %s, %d of %d published",
			bound+o.grace, res.Leaves, o.sessions, watchURL, res.RedisLeaves, o.sessions)
	}
	if res.Duplicates > 0 || res.RedisDuplicates > 0 {
		return res, fmt.Errorf("leaves twice: %d delivered, %d published", res.Duplicates, res.RedisDuplicates)
	}
	return res, nil
}

// ownNode is a presenced process this bench started.
type ownNode struct {
	url  string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
}

func (n *ownNode) kill() {
	n.once.Do(func() {
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	})
}

func (n *ownNode) tail() string {
	b, _ := os.ReadFile(n.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// startNode starts --presenced-bin on a free loopback port, on the global
// --redis-url and --prefix, and waits until it is ready.
func (b *bench) startNode(ctx context.Context) (*ownNode, error) {
	o := b.o
	if !strings.Contains(b.c.RedisURL, "://") {
		b.c.RedisURL = "redis://" + b.c.RedisURL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "presencebench-")
	if err != nil {
		return nil, err
	}
	n := &ownNode{url: "http://" + addr, log: filepath.Join(dir, "presenced.log"), done: make(chan struct{})}
	f, err := os.Create(n.log)
	if err != nil {
		return nil, err
	}
	n.cmd = exec.Command(o.presencedBin)
	n.cmd.Env = append(os.Environ(),
		"PRESENCE_ADDR="+addr,
		"PRESENCE_REDIS_URL="+b.c.RedisURL,
		"PRESENCE_KEY_PREFIX="+b.c.Prefix,
		"PRESENCE_NODE_ID=bench-expiry-"+o.runID,
		"PRESENCE_LOG_LEVEL=warn",
		"PRESENCE_TIMEOUT_FACTOR="+strconv.FormatFloat(o.timeoutFactor, 'f', -1, 64),
	)
	if o.nodeLeaseSet {
		n.cmd.Env = append(n.cmd.Env, "PRESENCE_NODE_LEASE="+o.nodeLease.String())
	}
	n.cmd.Stdout, n.cmd.Stderr = f, f
	setChildAttrs(n.cmd)
	if err := n.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", o.presencedBin, err)
	}
	go func() {
		n.cmd.Wait()
		f.Close()
		close(n.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(n.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				b.logf("started %s (pid %d, log %s)", n.url, n.cmd.Process.Pid, n.log)
				return n, nil
			}
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("%s exited at start; log:\n%s", o.presencedBin, n.tail())
		case <-ctx.Done():
			n.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.kill()
			return nil, errors.New("the node did not become ready in 20s; log:\n" + n.tail())
		}
	}
}
