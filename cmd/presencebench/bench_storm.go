package main

// bench_storm.go: the storm scenario: a room that fills fast (issue 16).
// Its watchers must get at most PRESENCE_WS_ROOM_FRAMES frames of the room
// in any second (batches above that) and end with the room's true list.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/client"
)

type stormResult struct {
	Members          int     `json:"members"`
	Watchers         int     `json:"watchers"`
	JoinSeconds      float64 `json:"joinSeconds"`
	ConvergedSeconds float64 `json:"convergedSeconds"` // from the first join until every view equals the list
	MaxFramesPerSec  int     `json:"maxFramesPerSecond"`
	FramesPerWatcher float64 `json:"framesPerWatcher"`
	BatchesPerWatch  float64 `json:"batchesPerWatcher"`
	BytesPerWatcher  float64 `json:"bytesPerWatcher"`
	JoinNodeCPU      float64 `json:"joinNodeCpuSeconds"`
	WatchNodeCPU     float64 `json:"watchNodeCpuSeconds"`
	ViewsEqual       int     `json:"viewsEqualToList"`
	Errors           int64   `json:"errors"`
}

func (r *stormResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "| members joined | in | watchers | frames per watcher | most in any 1 s | batches per watcher | bytes per watcher | CPU join node | CPU watch node | views = list | converged after |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d | %.1f s | %d | %.0f | %d | %.0f | %.0f | %.2f s | %.2f s | %d/%d | %.1f s |\n", r.Members, r.JoinSeconds, r.Watchers,
		r.FramesPerWatcher, r.MaxFramesPerSec, r.BatchesPerWatch, r.BytesPerWatcher, r.JoinNodeCPU, r.WatchNodeCPU, r.ViewsEqual, r.Watchers, r.ConvergedSeconds)
}

// stormWatcher records the frames of the room that one socket gets.
type stormWatcher struct {
	conn    *client.Conn
	mu      sync.Mutex
	at      []time.Time
	bytes   int64
	batches int
}

func runStorm(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	joinURL, watchURL := o.urls[0], o.urls[len(o.urls)-1]
	hc := &client.Client{BaseURL: joinURL, Token: o.token}
	room := b.id("storm", 0)
	seed, err := hc.Heartbeat(ctx, client.HeartbeatRequest{RoomID: room, SessionID: b.id("s", -1), UserID: b.id("u", -1), Interval: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("seed heartbeat: %w", err)
	}
	ws := make([]*stormWatcher, o.watchers)
	for i := range ws {
		w := &stormWatcher{}
		w.conn, err = client.Dial(ctx, client.ConnConfig{URLs: []string{watchURL}, Token: o.token, UserID: b.id("w", i),
			OnEvent: func(e client.Event) {
				if e.RoomID != room || e.Type == "watching" {
					return
				}
				w.mu.Lock()
				w.at = append(w.at, time.Now())
				w.bytes += int64(len(e.Raw))
				if e.Type == "batch" {
					w.batches++
				}
				w.mu.Unlock()
			}})
		if err != nil {
			return nil, fmt.Errorf("watcher %d: %w", i, err)
		}
		defer w.conn.Close()
		if _, err := w.conn.Watch(ctx, seed.RoomToken); err != nil {
			return nil, fmt.Errorf("watcher %d watches: %w", i, err)
		}
		ws[i] = w
	}
	cpu := func() (float64, float64) {
		a, _ := scrapeNode(ctx, joinURL, o.token, o.reqTimeout)
		c, _ := scrapeNode(ctx, watchURL, o.token, o.reqTimeout)
		return a.CPU, c.CPU
	}
	cpuA0, cpuB0 := cpu()

	// The joins, spread evenly over --duration.
	b.logf("storm: %d members join %s within %v; %d watchers on %s", o.members, room, o.duration, o.watchers, watchURL)
	start := time.Now()
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.members {
					return
				}
				if d := time.Until(start.Add(o.duration * time.Duration(i) / time.Duration(o.members))); d > 0 {
					time.Sleep(d)
				}
				if _, err := hc.Heartbeat(ctx, client.HeartbeatRequest{RoomID: room, SessionID: b.id("s", i), UserID: b.id("u", i), Interval: 10 * time.Minute}); err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	joined := time.Since(start)
	want, err := hc.ListAll(ctx, seed.RoomToken, 1000)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	wantJSON, _ := json.Marshal(want.Members)
	equal := func(w *stormWatcher) bool {
		v := w.conn.View(room)
		if v == nil || v.Version != want.Version {
			return false
		}
		got, _ := json.Marshal(v.Members)
		return string(got) == string(wantJSON)
	}
	deadline := time.Now().Add(30 * time.Second)
	eq := 0
	for {
		eq = 0
		for _, w := range ws {
			if equal(w) {
				eq++
			}
		}
		if eq == len(ws) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	converged := time.Since(start)
	cpuA1, cpuB1 := cpu()
	r := &stormResult{Members: o.members, Watchers: o.watchers, JoinSeconds: round3(joined.Seconds()), ConvergedSeconds: round3(converged.Seconds()),
		JoinNodeCPU: round3(cpuA1 - cpuA0), WatchNodeCPU: round3(cpuB1 - cpuB0), ViewsEqual: eq, Errors: errs.Load()}
	for _, w := range ws {
		w.mu.Lock()
		at := slices.Clone(w.at)
		r.FramesPerWatcher += float64(len(at))
		r.BatchesPerWatch += float64(w.batches)
		r.BytesPerWatcher += float64(w.bytes)
		w.mu.Unlock()
		r.MaxFramesPerSec = max(r.MaxFramesPerSec, mostInSecond(at))
	}
	n := float64(len(ws))
	r.FramesPerWatcher, r.BatchesPerWatch, r.BytesPerWatcher = round3(r.FramesPerWatcher/n), round3(r.BatchesPerWatch/n), round3(r.BytesPerWatcher/n)
	if eq != len(ws) {
		return r, fmt.Errorf("%d of %d watchers' views differ from the list (version %d, %d members)", len(ws)-eq, len(ws), want.Version, len(want.Members))
	}
	return r, b.checkErrors("heartbeats", r.Errors, "")
}

// mostInSecond returns the most of the times (in order) in any one-second
// window.
func mostInSecond(at []time.Time) int {
	most, j := 0, 0
	for i := range at {
		for at[i].Sub(at[j]) >= time.Second {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}
