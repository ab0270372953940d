package main

// bench_storm.go: the storm scenario: a room that fills fast (issue 16).
// Its watchers must get at most PRESENCE_WS_ROOM_FRAMES frames of the room
// in any second (batches above that) and end with the room's true list.
//
// The watchers run in child processes (this binary again, with the hidden
// --worker flag; at most --per-process watchers each), so that the join
// generator's goroutines do not delay their reads: a reader starved of CPU
// reads its frames in bursts, which a count of frames per second at
// receipt would take for the node's.
//
// The parent and a child speak one JSON document a line: the child says
// {"ready":true} once its watchers watch; the parent sends the room's list
// after the joins; the child answers with its watchers' figures once their
// views equal that list (or after 30 s) and exits.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/presence"
)

// stormConverge bounds the wait, after the joins, for every view to equal
// the list.
const stormConverge = 30 * time.Second

type stormResult struct {
	Members          int     `json:"members"`
	Watchers         int     `json:"watchers"`
	Processes        int     `json:"watcherProcesses"`
	JoinSeconds      float64 `json:"joinSeconds"`
	JoinsPerSecond   float64 `json:"joinsPerSecond"`
	ConvergedSeconds float64 `json:"convergedSeconds"` // from the first join until every view equals the list
	FramesPerWatcher float64 `json:"framesPerWatcher"`
	// MeanFramesPerSec is a watcher's frames over the time from its first
	// frame of the room to its last, averaged over the watchers.
	MeanFramesPerSec float64 `json:"meanFramesPerSecond"`
	// MaxFramesPerSec is the most frames a watcher read in any one-second
	// window; Max5sPerSec the most in any five-second window, divided by
	// 5 (a read delayed by d moves a frame by d only: it can add at most d
	// seconds' frames to a 5 s window, a fifth of what it adds to a 1 s one).
	MaxFramesPerSec int     `json:"maxFramesPerSecond"`
	Max5sPerSec     float64 `json:"max5sFramesPerSecond"`
	BatchesPerWatch float64 `json:"batchesPerWatcher"`
	BytesPerWatcher float64 `json:"bytesPerWatcher"`
	JoinNodeCPU     float64 `json:"joinNodeCpuSeconds"`
	WatchNodeCPU    float64 `json:"watchNodeCpuSeconds"`
	ViewsEqual      int     `json:"viewsEqualToList"`
	Errors          int64   `json:"errors"`
	FirstError      string  `json:"firstError,omitempty"`
}

func (r *stormResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "| members joined | in | joins/s | watchers (processes) | frames per watcher | frames/s (mean) | most in any 1 s | most in any 5 s / 5 | batches per watcher | bytes per watcher | CPU join node | CPU watch node | views = list | converged after |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d | %.1f s | %.0f | %d (%d) | %.0f | %.1f | %d | %.1f | %.0f | %.0f | %.2f s | %.2f s | %d/%d | %.1f s |\n",
		r.Members, r.JoinSeconds, r.JoinsPerSecond, r.Watchers, r.Processes, r.FramesPerWatcher, r.MeanFramesPerSec,
		r.MaxFramesPerSec, r.Max5sPerSec, r.BatchesPerWatch, r.BytesPerWatcher, r.JoinNodeCPU, r.WatchNodeCPU,
		r.ViewsEqual, r.Watchers, r.ConvergedSeconds)
	if r.Errors > 0 {
		fmt.Fprintf(w, "errors: %d (first: %s)\n", r.Errors, r.FirstError)
	}
}

// stormWatcher records the frames of the room that one socket gets.
type stormWatcher struct {
	conn    *client.Conn
	mu      sync.Mutex
	at      []time.Time
	bytes   int64
	batches int
}

// stormFigures are one watcher's figures, as a child reports them.
type stormFigures struct {
	Frames  int   `json:"frames"`
	Batches int   `json:"batches"`
	Bytes   int64 `json:"bytes"`
	Max1s   int   `json:"max1s"`
	Max5s   int   `json:"max5s"`
	First   int64 `json:"first"` // unix ns of the first frame (0: none)
	Last    int64 `json:"last"`
}

// stormMsg is one line between the parent and a child.
type stormMsg struct {
	Ready     bool               `json:"ready,omitempty"`
	Want      *presence.RoomList `json:"want,omitempty"`
	Equal     int                `json:"equal,omitempty"`
	Converged int64              `json:"converged,omitempty"` // unix ns when the last view equalled the list
	Watchers  []stormFigures     `json:"watchers,omitempty"`
	Err       string             `json:"err,omitempty"`
}

func runStorm(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	if o.worker {
		return nil, b.stormWorker(ctx)
	}
	joinURL, watchURL := o.urls[0], o.urls[len(o.urls)-1]
	hc := &client.Client{BaseURL: joinURL, Token: o.token}
	room := b.id("storm", 0)
	seed, err := hc.Heartbeat(ctx, client.HeartbeatRequest{RoomID: room, SessionID: b.id("s", -1), UserID: b.id("u", -1), Interval: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("seed heartbeat: %w", err)
	}
	children, err := b.spawnStormWatchers(ctx, watchURL, seed.RoomToken)
	defer func() {
		for _, c := range children {
			c.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	cpu := func() (float64, float64) {
		a, _ := scrapeNode(ctx, joinURL, o.token, o.reqTimeout)
		c, _ := scrapeNode(ctx, watchURL, o.token, o.reqTimeout)
		return a.CPU, c.CPU
	}
	cpuA0, cpuB0 := cpu()

	// The joins, spread evenly over --duration, each worker on a keep-alive
	// connection of its own (the raw client: the generator's cost per join
	// is a few µs, so that 2 cores shared with the nodes still make 1,000+
	// joins a second).
	b.logf("storm: %d members join %s within %v; %d watchers in %d processes on %s", o.members, room, o.duration, o.watchers, len(children), watchURL)
	ep := mustEndpoint(joinURL)
	reqs := make([][]byte, o.members)
	for i := range reqs {
		reqs[i] = buildRequest(ep, o.token, "POST", "/v1/heartbeat", heartbeatBody(room, b.id("s", i), b.id("u", i), 10*time.Minute))
	}
	var next, errs atomic.Int64
	var firstErr atomic.Value
	stopProgress := b.progressEvery(func(el time.Duration) string {
		n := min(next.Load(), int64(o.members))
		return fmt.Sprintf("joins sent %d of %d (%.0f/s)  errors %d", n, o.members, float64(n)/el.Seconds(), errs.Load())
	})
	start := time.Now()
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hcl := newHClient(ep, o.reqTimeout)
			defer hcl.close()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.members {
					return
				}
				if d := time.Until(start.Add(o.duration * time.Duration(i) / time.Duration(o.members))); d > 0 {
					time.Sleep(d)
				}
				res, err := hcl.do(reqs[i])
				if err == nil {
					err = res.expect(200)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	joined := time.Since(start)
	stopProgress()
	want, err := hc.ListAll(ctx, seed.RoomToken, 1000)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	for _, c := range children {
		if err := c.send(stormMsg{Want: want}); err != nil {
			return nil, err
		}
	}
	r := &stormResult{Members: o.members, Watchers: o.watchers, Processes: len(children), JoinSeconds: round3(joined.Seconds()),
		JoinsPerSecond: round3(float64(o.members) / joined.Seconds()), Errors: errs.Load()}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	var figs []stormFigures
	var converged int64
	for i, c := range children {
		m, err := c.result(stormConverge + time.Minute)
		if err != nil {
			return nil, fmt.Errorf("watcher process %d: %w", i, err)
		}
		r.ViewsEqual += m.Equal
		converged = max(converged, m.Converged)
		figs = append(figs, m.Watchers...)
	}
	if converged > 0 {
		r.ConvergedSeconds = round3(time.Unix(0, converged).Sub(start).Seconds())
	}
	cpuA1, cpuB1 := cpu()
	r.JoinNodeCPU, r.WatchNodeCPU = round3(cpuA1-cpuA0), round3(cpuB1-cpuB0)
	for _, f := range figs {
		r.FramesPerWatcher += float64(f.Frames)
		r.BatchesPerWatch += float64(f.Batches)
		r.BytesPerWatcher += float64(f.Bytes)
		r.MaxFramesPerSec = max(r.MaxFramesPerSec, f.Max1s)
		r.Max5sPerSec = max(r.Max5sPerSec, float64(f.Max5s)/5)
		if f.Last > f.First {
			r.MeanFramesPerSec += float64(f.Frames) / time.Duration(f.Last-f.First).Seconds()
		}
	}
	n := float64(max(1, len(figs)))
	r.FramesPerWatcher, r.BatchesPerWatch, r.BytesPerWatcher = round3(r.FramesPerWatcher/n), round3(r.BatchesPerWatch/n), round3(r.BytesPerWatcher/n)
	r.MeanFramesPerSec = round3(r.MeanFramesPerSec / n)
	if r.ViewsEqual != o.watchers {
		return r, fmt.Errorf("%d of %d watchers' views differ from the list (version %d, %d members)", o.watchers-r.ViewsEqual, o.watchers, want.Version, len(want.Members))
	}
	return r, b.checkErrors("heartbeats", r.Errors, r.FirstError)
}

// stormChild is a watcher process, as its parent sees it.
type stormChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan stormMsg // its stdout, closed when it ends
	done  chan struct{} // its process was waited for
	err   error         // its exit status, once done
}

// spawnStormWatchers starts ceil(--watchers / --per-process) child
// processes and waits until each one's watchers watch the room.
func (b *bench) spawnStormWatchers(ctx context.Context, watchURL, roomToken string) ([]*stormChild, error) {
	o := b.o
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := (o.watchers + o.perProcess - 1) / o.perProcess
	var children []*stormChild
	offset := 0
	for i := range n {
		count := o.watchers / n
		if i < o.watchers%n {
			count++
		}
		cmd := exec.Command(exe, "storm", "--worker", "--worker-offset", strconv.Itoa(offset), "--watchers", strconv.Itoa(count),
			"--per-process", strconv.Itoa(count), "--url", watchURL, "--run-id", o.runID, "--progress", "0",
			"--request-timeout", o.reqTimeout.String())
		offset += count
		cmd.Env = append(os.Environ(), "PRESENCEBENCH_WORKER=1", "PRESENCECTL_BENCH_TOKEN="+o.token, "PRESENCEBENCH_ROOM_TOKEN="+roomToken)
		cmd.Stderr = &prefixWriter{b: b, prefix: fmt.Sprintf("watchers %d: ", i)}
		setChildAttrs(cmd)
		c := &stormChild{cmd: cmd, lines: make(chan stormMsg, 4), done: make(chan struct{})}
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			return children, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return children, err
		}
		if err := cmd.Start(); err != nil {
			return children, fmt.Errorf("start watcher process: %w", err)
		}
		children = append(children, c)
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				var m stormMsg
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					m = stormMsg{Err: fmt.Sprintf("bad line %q", sc.Text())}
				}
				c.lines <- m
			}
			close(c.lines)
			c.err = cmd.Wait()
			close(c.done)
		}()
	}
	for i, c := range children {
		select {
		case m, ok := <-c.lines:
			switch {
			case !ok:
				<-c.done
				return children, fmt.Errorf("watcher process %d exited before watching: %v", i, c.err)
			case m.Err != "":
				return children, fmt.Errorf("watcher process %d: %s", i, m.Err)
			}
		case <-ctx.Done():
			return children, ctx.Err()
		}
	}
	return children, nil
}

func (c *stormChild) send(m stormMsg) error {
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = c.stdin.Write(append(line, '\n'))
	return err
}

// result waits for the child's figures.
func (c *stormChild) result(wait time.Duration) (stormMsg, error) {
	select {
	case m, ok := <-c.lines:
		switch {
		case !ok:
			<-c.done
			return m, fmt.Errorf("exited without figures: %v", c.err)
		case m.Err != "":
			return m, errors.New(m.Err)
		}
		return m, nil
	case <-time.After(wait):
		return stormMsg{}, errors.New("no figures in time")
	}
}

// stop closes the child's stdin (it then closes its sockets and exits) and
// waits for it, killing it after a while.
func (c *stormChild) stop() {
	c.stdin.Close()
	go func() {
		for range c.lines {
		}
	}()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// stormWorker is a watcher process: it watches the room with --watchers
// sockets, says so, and once the parent sent the room's list, reports the
// figures of its watchers when their views equal it.
func (b *bench) stormWorker(ctx context.Context) error {
	o := b.o
	enc := json.NewEncoder(b.stdout)
	room := b.id("storm", 0)
	roomToken := os.Getenv("PRESENCEBENCH_ROOM_TOKEN")
	ws := make([]*stormWatcher, o.watchers)
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.conn.Close()
			}
		}
	}()
	for i := range ws {
		w := &stormWatcher{}
		var err error
		w.conn, err = client.Dial(ctx, client.ConnConfig{URLs: o.urls, Token: o.token, UserID: b.id("w", o.workerOffset+i),
			OnEvent: func(e client.Event) {
				if e.RoomID != room || e.Type == "watching" {
					return
				}
				// The view is applied before OnEvent, at the cost of the
				// frame's changes only (pkg/client views sort when read).
				now := time.Now()
				w.mu.Lock()
				w.at = append(w.at, now)
				w.bytes += int64(len(e.Raw))
				if e.Type == "batch" {
					w.batches++
				}
				w.mu.Unlock()
			}})
		if err != nil {
			enc.Encode(stormMsg{Err: fmt.Sprintf("watcher %d: %v", i, err)})
			return err
		}
		ws[i] = w
		if _, err := w.conn.Watch(ctx, roomToken); err != nil {
			enc.Encode(stormMsg{Err: fmt.Sprintf("watcher %d watches: %v", i, err)})
			return err
		}
	}
	enc.Encode(stormMsg{Ready: true})

	var in stormMsg
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil || in.Want == nil {
		return nil // the parent gave up
	}
	wantJSON, _ := json.Marshal(in.Want.Members)
	equal := func(w *stormWatcher) bool {
		v := w.conn.View(room)
		if v == nil || v.Version != in.Want.Version {
			return false
		}
		got, _ := json.Marshal(v.Members)
		return string(got) == string(wantJSON)
	}
	out := stormMsg{}
	done := make([]bool, len(ws))
	deadline := time.Now().Add(stormConverge)
	for {
		for i, w := range ws {
			if !done[i] && equal(w) {
				done[i] = true
				out.Equal++
				out.Converged = time.Now().UnixNano()
			}
		}
		if out.Equal == len(ws) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range ws {
		w.mu.Lock()
		f := stormFigures{Frames: len(w.at), Batches: w.batches, Bytes: w.bytes, Max1s: mostIn(w.at, time.Second), Max5s: mostIn(w.at, 5*time.Second)}
		if len(w.at) > 0 {
			f.First, f.Last = w.at[0].UnixNano(), w.at[len(w.at)-1].UnixNano()
		}
		w.mu.Unlock()
		out.Watchers = append(out.Watchers, f)
	}
	return enc.Encode(out)
}

// mostIn returns the most of the times (in order) in any window of d.
func mostIn(at []time.Time, d time.Duration) int {
	most, j := 0, 0
	for i := range at {
		for at[i].Sub(at[j]) >= d {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}
