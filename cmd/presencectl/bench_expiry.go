package main

// bench_expiry.go: the expiry scenario. It starts its own node (the one it
// kills), opens WebSockets to it (node-owned sessions, kept alive by that
// node), watches every room on another node, kills its node with SIGKILL
// and times each leave's arrival at the watchers from the kill. The bound
// is the session timeout (interval x timeout factor: the deadline of a
// session refreshed just before the kill) + 2 s.

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

	"github.com/presencecluster/presence/pkg/client"
)

type expiryResult struct {
	RunID         string  `json:"runId"`
	Scenario      string  `json:"scenario"`
	KilledNode    string  `json:"killedNode"`
	WatcherNode   string  `json:"watcherNode"`
	Sessions      int     `json:"sessions"`
	Rooms         int     `json:"rooms"`
	IntervalMs    int64   `json:"intervalMs"`
	TimeoutFactor float64 `json:"timeoutFactor"`
	TimeoutMs     int64   `json:"timeoutMs"` // interval x factor
	BoundMs       int64   `json:"boundMs"`   // timeout + 2 s
	OpenSeconds   float64 `json:"openSeconds"`
	Leaves        int64   `json:"leaves"` // leaves delivered (distinct users)
	Duplicates    int64   `json:"duplicateLeaves"`
	// Since the kill, in ms: the first leave, quantiles, the last.
	FirstMs  float64 `json:"firstLeaveMs"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
	LastMs   float64 `json:"lastLeaveMs"`
	AllByMs  float64 `json:"allDeliveredMs"` // = LastMs when every leave came
	Complete bool    `json:"complete"`
	Pass     bool    `json:"withinBound"`
	Syncs    int64   `json:"syncs"`
}

func (r *expiryResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "expiry: %d sessions over %d rooms on %s (killed), watched on %s; interval %s x %.1f = timeout %s\n\n",
		r.Sessions, r.Rooms, r.KilledNode, r.WatcherNode, time.Duration(r.IntervalMs)*time.Millisecond, r.TimeoutFactor,
		time.Duration(r.TimeoutMs)*time.Millisecond)
	tw := table(w)
	fmt.Fprintln(tw, "LEAVES\tFIRST\tP50\tP99\tLAST\tBOUND (TIMEOUT + 2s)\tRESULT")
	verdict := "all delivered within the bound"
	switch {
	case !r.Complete:
		verdict = fmt.Sprintf("INCOMPLETE: %d of %d leaves", r.Leaves, r.Sessions)
	case !r.Pass:
		verdict = "late: past the bound"
	}
	fmt.Fprintf(tw, "%d/%d\t%.2fs\t%.2fs\t%.2fs\t%.2fs\t%.2fs\t%s\n", r.Leaves, r.Sessions, r.FirstMs/1000, r.P50Ms/1000,
		r.P99Ms/1000, r.LastMs/1000, float64(r.BoundMs)/1000, verdict)
	tw.Flush()
	if r.Duplicates > 0 || r.Syncs > 0 {
		fmt.Fprintf(w, "duplicate leaves %d, syncs %d\n", r.Duplicates, r.Syncs)
	}
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
	res := &expiryResult{RunID: o.runID, Scenario: "expiry", KilledNode: node.url, WatcherNode: watchURL, Sessions: o.sessions, Rooms: o.rooms,
		IntervalMs: o.interval.Milliseconds(), TimeoutFactor: o.timeoutFactor, TimeoutMs: timeout.Milliseconds(),
		BoundMs: (timeout + 2*time.Second).Milliseconds()}

	// The sessions: one socket each, to the node that will die.
	b.logf("opening %d sockets to %s (its own node, pid %d)", o.sessions, node.url, node.cmd.Process.Pid)
	conns := make([]*client.Conn, o.sessions)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Abandon()
			}
		}
	}()
	tokens := make([]string, o.rooms)
	var tokMu sync.Mutex
	var opened atomic.Int64
	start := time.Now()
	stop := b.progressEvery(func(time.Duration) string { return fmt.Sprintf("opened %d of %d", opened.Load(), o.sessions) })
	err = parallel(ctx, o.sessions, o.dialConc, func(i int) error {
		dctx, cancel := context.WithTimeout(ctx, o.reqTimeout)
		defer cancel()
		c, err := client.Dial(dctx, client.ConnConfig{URLs: []string{node.url}, Token: o.token, UserID: b.id("u", i)})
		if err != nil {
			return err
		}
		conns[i] = c
		j, err := c.Join(dctx, b.id("x", i%o.rooms), b.id("s", i), o.interval, nil)
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		if i < o.rooms {
			tokMu.Lock()
			tokens[i] = j.RoomToken
			tokMu.Unlock()
		}
		opened.Add(1)
		return nil
	})
	stop()
	res.OpenSeconds = round3(time.Since(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("sessions on %s: %w", node.url, err)
	}

	// Watchers on the other node: one socket per room.
	var killedAt atomic.Int64 // ns since start; 0 until the kill
	leaveAt := make([]atomic.Int64, o.sessions)
	var leaves, dups, syncs atomic.Int64
	userPrefix := strings.TrimSuffix(b.id("u", 0), "0")
	watchers := make([]*client.Conn, o.rooms)
	defer func() {
		for _, c := range watchers {
			if c != nil {
				c.Close()
			}
		}
	}()
	b.logf("watching the %d rooms on %s", o.rooms, watchURL)
	err = parallel(ctx, o.rooms, 20, func(r int) error {
		onEvent := func(e client.Event) {
			if e.Type == "sync" {
				syncs.Add(1)
				return
			}
			if e.Type != "presence" || e.Event != "leave" || e.Member == nil {
				return
			}
			i, err := strconv.Atoi(strings.TrimPrefix(e.Member.UserID, userPrefix))
			if err != nil || i < 0 || i >= o.sessions {
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
		if want := (o.sessions - r + o.rooms - 1) / o.rooms; online != want {
			return fmt.Errorf("room %d shows %d members online on %s, want %d", r, online, watchURL, want)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watchers on %s: %w", watchURL, err)
	}
	if n := leaves.Load(); n > 0 {
		return nil, fmt.Errorf("%d leaves before the kill", n)
	}

	b.logf("kill -9 %d", node.cmd.Process.Pid)
	killedAt.Store(int64(time.Since(start)))
	node.kill()
	bound := time.Duration(res.BoundMs) * time.Millisecond
	stop = b.progressEvery(func(el time.Duration) string {
		return fmt.Sprintf("%d of %d leaves delivered (bound %s)", leaves.Load(), o.sessions, bound)
	})
	waitUntil := time.Now().Add(bound + o.grace)
	for leaves.Load() < int64(o.sessions) && time.Now().Before(waitUntil) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
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
	if res.Complete {
		res.AllByMs = res.LastMs
		res.Pass = time.Duration(last) <= bound
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if !res.Complete {
		return res, fmt.Errorf("%d of %d leaves were not delivered within the bound + --grace (%s)", int64(o.sessions)-res.Leaves, o.sessions, bound+o.grace)
	}
	if res.Duplicates > 0 {
		return res, fmt.Errorf("%d leaves delivered twice", res.Duplicates)
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
	if !strings.Contains(b.c.g.redisURL, "://") {
		b.c.g.redisURL = "redis://" + b.c.g.redisURL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "presencectl-bench-")
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
		"PRESENCE_REDIS_URL="+b.c.g.redisURL,
		"PRESENCE_KEY_PREFIX="+b.c.g.prefix,
		"PRESENCE_NODE_ID=bench-expiry-"+o.runID,
		"PRESENCE_LOG_LEVEL=warn",
		"PRESENCE_TIMEOUT_FACTOR="+strconv.FormatFloat(o.timeoutFactor, 'f', -1, 64),
	)
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
