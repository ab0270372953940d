package main

// bench_users.go: the users scenario (users across rooms). Three phases:
//
//  1. Redis commands per join and leave: --sessions users each join a room
//     of their own on a WebSocket of --churn-url and close it (a leave),
//     one after another, with INFO commandstats read around them (needs
//     --redis-url). Run it against a node without the feature for the
//     baseline: the protocol is the same.
//  2. --sockets watcher sockets on --url each send watchUsers of the same
//     --users users; the node's memory is sampled before and after (after
//     a GC cycle, --settle and --gc-wait).
//  3. Fan-out: --rooms of those users (one room each) join on --churn-url
//     and then leave, one change at a time; each change must reach every
//     watcher once. Reported: frames received, repeats (a state sent twice
//     in a row), and the delay from the change's answer to each watcher.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type usersResult struct {
	RunID    string `json:"runId"`
	Scenario string `json:"scenario"`

	JoinLeaves      int              `json:"joinLeaves"`
	CommandsPerPair float64          `json:"redisCommandsPerJoinLeave"`
	CallsPerPair    map[string]int64 `json:"redisCallsInPhase1"`

	Sockets       int       `json:"sockets"`
	Users         int       `json:"watchedUsersPerSocket"`
	WatchSeconds  float64   `json:"watchSeconds"`
	Before, After gcSample  `json:"-"`
	HeapPerSocket float64   `json:"heapBytesPerSocket"`
	RSSPerSocket  float64   `json:"rssBytesPerSocket"`
	GoroutinesAdd float64   `json:"goroutinesAdded"`
	Changes       int       `json:"changes"`
	Frames        int64     `json:"framesReceived"`
	WantFrames    int64     `json:"framesExpected"`
	Repeats       int64     `json:"repeats"`
	DelayMs       []float64 `json:"delayMsP50P99Max"`
}

func runUsers(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	res := &usersResult{RunID: o.runID, Scenario: "users", Sockets: o.sockets, Users: o.users}
	churnURL := o.churnURL
	if churnURL == "" {
		churnURL = o.urls[0]
	}
	user := func(i int) string { return b.id("wu", i) }
	joinLeave := func(ctx context.Context, u string, hold func()) error {
		ws, _, err := websocket.Dial(ctx, wsURL(churnURL), nil)
		if err != nil {
			return err
		}
		defer ws.CloseNow()
		msg, _ := json.Marshal(map[string]any{"type": "join", "id": 1, "roomId": "room-" + u, "sessionId": "s-" + u, "userId": u})
		if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
			return err
		}
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return err
			}
			if strings.Contains(string(b), `"joined"`) {
				break
			}
			if strings.Contains(string(b), `"error"`) {
				return fmt.Errorf("join: %s", b)
			}
		}
		if hold != nil {
			hold()
		}
		return ws.Close(websocket.StatusNormalClosure, "")
	}

	// Phase 1.
	if o.sessions > 0 && o.redisStats {
		before, err := b.readRedisStats(ctx)
		if err != nil {
			return nil, err
		}
		for i := 0; i < o.sessions; i++ {
			if err := joinLeave(ctx, b.id("jl", i), nil); err != nil {
				return nil, err
			}
		}
		time.Sleep(500 * time.Millisecond) // the last leave's steps
		after, err := b.readRedisStats(ctx)
		if err != nil {
			return nil, err
		}
		d := before.delta(after, int64(o.sessions))
		res.JoinLeaves, res.CommandsPerPair, res.CallsPerPair = o.sessions, d.PerOperation, d.Calls
		b.logf("phase 1: %d joins+leaves, %.2f Redis commands each", o.sessions, d.PerOperation)
	}
	if o.sockets == 0 {
		return res, nil
	}

	// Phase 2.
	ids := make([]string, o.users)
	for i := range ids {
		ids[i] = user(i)
	}
	before, err := b.sampleAfterGC(ctx, 0, 0)
	if err != nil {
		return nil, err
	}
	res.Before = before[0]
	type watcher struct {
		ws     *websocket.Conn
		mu     sync.Mutex
		last   map[string]bool
		frames int64
	}
	var (
		mu     sync.Mutex
		delays []float64
	)
	var changeAt atomic.Int64 // unix ns of the answer of the change under way
	var repeats, frames atomic.Int64
	watchers := make([]*watcher, o.sockets)
	start := time.Now()
	sem := make(chan struct{}, max(o.dialConc, 1))
	var wg sync.WaitGroup
	var firstErr atomic.Value
	// In messages of 250 ids: a message is at most 16 KiB.
	var watches [][]byte
	for i := 0; i < len(ids); i += 250 {
		m, _ := json.Marshal(map[string]any{"type": "watchUsers", "id": i, "userIds": ids[i:min(i+250, len(ids))]})
		watches = append(watches, m)
	}
	for i := range watchers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ws, _, err := websocket.Dial(ctx, wsURL(o.urls[0]), nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			ws.SetReadLimit(1 << 20)
			w := &watcher{ws: ws, last: map[string]bool{}}
			watchers[i] = w
			for _, m := range watches {
				if err := ws.Write(ctx, websocket.MessageText, m); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				_, r, err := ws.Read(ctx) // watchingUsers
				if err == nil && !strings.Contains(string(r), `"watchingUsers"`) {
					err = fmt.Errorf("watchUsers: %s", r)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
			go func() {
				for {
					_, m, err := ws.Read(context.Background())
					if err != nil {
						return
					}
					var f struct {
						Type   string `json:"type"`
						UserID string `json:"userId"`
						Online bool   `json:"online"`
					}
					if json.Unmarshal(m, &f) != nil || f.Type != "user" {
						continue
					}
					d := float64(time.Now().UnixNano()-changeAt.Load()) / 1e6
					frames.Add(1)
					w.mu.Lock()
					if last, ok := w.last[f.UserID]; ok && last == f.Online {
						repeats.Add(1)
					}
					w.last[f.UserID] = f.Online
					w.mu.Unlock()
					mu.Lock()
					delays = append(delays, d)
					mu.Unlock()
				}
			}()
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, fmt.Errorf("watchers: %w", err)
	}
	res.WatchSeconds = round3(time.Since(start).Seconds())
	b.logf("phase 2: %d sockets watch %d users each (%.1fs)", o.sockets, o.users, res.WatchSeconds)
	after, err := b.sampleAfterGC(ctx, o.settle, o.gcWait)
	if err != nil {
		return nil, err
	}
	res.After = after[0]
	res.HeapPerSocket = (res.After.m.HeapInuse + res.After.m.StackInuse - res.Before.m.HeapInuse - res.Before.m.StackInuse) / float64(o.sockets)
	res.RSSPerSocket = (res.After.m.RSS - res.Before.m.RSS) / float64(o.sockets)
	res.GoroutinesAdd = res.After.m.Goroutines - res.Before.m.Goroutines

	// Phase 3: one change at a time; wait until every watcher has it.
	changes := min(o.rooms, o.users)
	wait := func(want int64) error {
		deadline := time.Now().Add(30 * time.Second)
		for frames.Load() < want {
			if time.Now().After(deadline) {
				return fmt.Errorf("fan-out: %d of %d frames after 30 s", frames.Load(), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}
	var want int64
	for i := 0; i < changes; i++ {
		u := user(i)
		err := joinLeave(ctx, u, func() {
			changeAt.Store(time.Now().UnixNano())
			want += int64(o.sockets)
			if err := wait(want); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			changeAt.Store(time.Now().UnixNano())
			want += int64(o.sockets)
		})
		if err == nil {
			err = wait(want)
		}
		if err == nil {
			err, _ = firstErr.Load().(error)
		}
		if err != nil {
			return nil, err
		}
	}
	time.Sleep(500 * time.Millisecond) // anything more (a repeat) shows
	res.Changes, res.WantFrames, res.Frames, res.Repeats = 2*changes, want, frames.Load(), repeats.Load()
	mu.Lock()
	slices.Sort(delays)
	if n := len(delays); n > 0 {
		res.DelayMs = []float64{round3(delays[n/2]), round3(delays[n*99/100]), round3(delays[n-1])}
	}
	mu.Unlock()
	for _, w := range watchers {
		if w != nil {
			w.ws.CloseNow()
		}
	}
	if res.Frames != res.WantFrames || res.Repeats != 0 {
		return res, errors.New("users: frames lost or repeated")
	}
	return res, nil
}

func wsURL(base string) string {
	return strings.Replace(base, "http", "ws", 1) + "/v1/ws"
}

func (r *usersResult) writeTable(w io.Writer) {
	if r.JoinLeaves > 0 {
		fmt.Fprintf(w, "join+leave: %d pairs, %.2f Redis commands per pair: %v\n", r.JoinLeaves, r.CommandsPerPair, r.CallsPerPair)
	}
	if r.Sockets > 0 {
		fmt.Fprintf(w, "watchUsers: %d sockets x %d users in %.1fs; node heap+stacks %+.0f B per socket, RSS %+.0f B per socket, goroutines %+.0f (GC sampled: %v)\n",
			r.Sockets, r.Users, r.WatchSeconds, r.HeapPerSocket, r.RSSPerSocket, r.GoroutinesAdd, r.After.gc)
		fmt.Fprintf(w, "fan-out: %d changes, %d of %d frames, %d repeats; delay ms p50/p99/max %v\n",
			r.Changes, r.Frames, r.WantFrames, r.Repeats, r.DelayMs)
	}
}
