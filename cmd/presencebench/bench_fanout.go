package main

// bench_fanout.go: the fanout scenario. Joins (a first heartbeat) and
// leaves (a disconnect) go through node A at a fixed rate (open loop: the
// schedule does not wait for slow answers); WebSockets on node B watch the
// rooms. Each join and leave is timestamped just before its request is
// written, and matched, at each watcher, with the event it causes (same
// room, user and kind); the delivery latency is receipt minus send.

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/client"
)

type fanoutResult struct {
	RunID       string  `json:"runId"`
	Scenario    string  `json:"scenario"`
	NodeA       string  `json:"nodeA"`
	NodeB       string  `json:"nodeB"`
	SameNode    bool    `json:"sameNode"`
	Rate        float64 `json:"rate"` // target joins+leaves per second
	Seconds     float64 `json:"seconds"`
	Rooms       int     `json:"rooms"`
	Users       int     `json:"usersPerRoom"`
	Watchers    int     `json:"watchersPerRoom"`
	Concurrency int     `json:"concurrency"`

	Joins      int64            `json:"joins"`
	Leaves     int64            `json:"leaves"`
	Achieved   float64          `json:"achievedRate"`
	Skipped    int64            `json:"skipped"` // scheduled ops not sent: the user's previous op still in flight
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"errorKinds,omitempty"`
	FirstError string           `json:"firstError,omitempty"`

	Expected  int64 `json:"expectedDeliveries"`
	Delivered int64 `json:"delivered"`
	Missing   int64 `json:"missing"`
	Unmatched int64 `json:"unmatched"` // events with no send on record
	Syncs     int64 `json:"syncs"`     // syncs watchers got (instead of events)
	// Delivery is send (at A) to receipt (at a watcher on B).
	Delivery latency `json:"delivery"`
	// Request is the HTTP join/leave at A.
	Request latency `json:"request"`
}

func (r *fanoutResult) writeTable(w io.Writer) {
	same := ""
	if r.SameNode {
		same = " (the same node: give two --url for cross-node delivery)"
	}
	fmt.Fprintf(w, "fanout: joins+leaves through %s at %.0f/s for %.1fs, %d rooms x %d users, %d watchers per room on %s%s\n\n",
		r.NodeA, r.Rate, r.Seconds, r.Rooms, r.Users, r.Watchers, r.NodeB, same)
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, "JOINS\tLEAVES\tRATE\tSKIPPED\tERRORS\tEXPECTED\tDELIVERED\tMISSING\tUNMATCHED\tSYNCS")
	fmt.Fprintf(tw, "%d\t%d\t%.0f/s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Joins, r.Leaves, r.Achieved, r.Skipped, r.Errors,
		r.Expected, r.Delivered, r.Missing, r.Unmatched, r.Syncs)
	tw.Flush()
	fmt.Fprintln(w)
	tw = cliutil.Table(w)
	fmt.Fprintln(tw, "LATENCY\tCOUNT\tP50\tP90\tP99\tP999\tMAX")
	for _, l := range []struct {
		name string
		l    latency
	}{{"delivery (send at A -> watcher on B)", r.Delivery}, {"request (HTTP at A)", r.Request}} {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", l.name, l.l.Count, fmtMs(l.l.P50Ms), fmtMs(l.l.P90Ms),
			fmtMs(l.l.P99Ms), fmtMs(l.l.P999Ms), fmtMs(l.l.MaxMs))
	}
	tw.Flush()
	if r.Errors > 0 {
		fmt.Fprintf(w, "errors: %v (first: %s)\n", r.ErrorKinds, r.FirstError)
	}
}

// fanUser is one user of one room, driven by the senders.
type fanUser struct {
	busy   atomic.Bool // an op is scheduled or in flight
	online bool        // owned by the op holding busy
	token  string      // its session token while online
}

func runFanout(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	epA := mustEndpoint(o.urls[0])
	urlB := o.urls[0]
	if len(o.urls) > 1 {
		urlB = o.urls[1]
	}
	R, U, W := o.rooms, o.users, o.watchers
	res := &fanoutResult{RunID: o.runID, Scenario: "fanout", NodeA: epA.url, NodeB: urlB, SameNode: len(o.urls) < 2, Rate: o.rate,
		Rooms: R, Users: U, Watchers: W, Concurrency: o.concurrency}
	if res.SameNode {
		b.logf("one --url: joins and watchers on the same node")
	}

	// Each room is made by an anchor member (through A), whose answer
	// carries the room token the watchers need.
	hc := newHClient(epA, o.reqTimeout)
	defer hc.close()
	tokens := make([]string, R)
	anchors := make([]string, R)
	for r := 0; r < R; r++ {
		body := heartbeatBody(b.id("fan", r), "anchor", b.id("anchor", 0), 10*time.Minute)
		ar, err := hc.do(buildRequest(epA, o.token, "POST", "/v1/heartbeat", body))
		if err == nil {
			err = ar.expect(200)
		}
		if err != nil {
			return nil, fmt.Errorf("create room through %s: %w", epA.url, err)
		}
		tokens[r], anchors[r] = jsonString(ar.body, "roomToken"), jsonString(ar.body, "sessionToken")
	}

	start := time.Now()
	since := func() int64 { return int64(time.Since(start)) }
	sendAt := make([]atomic.Int64, R*U*2) // (room*U+user)*2 + 0 join / 1 leave
	userPrefix := b.id("u", 0)
	userPrefix = userPrefix[:len(userPrefix)-1]
	// The user of slot k of room r: the same --users in every room, or
	// with --own-users users of the room's own (a user in R rooms makes
	// each of its joins and leaves update its org-wide state over R rooms).
	userOf := func(r, k int) int {
		if o.ownUsers {
			return r*U + k
		}
		return k
	}
	var delivered, unmatched, syncs atomic.Int64
	type watcher struct {
		mu sync.Mutex
		h  hist
	}
	watchers := make([]*watcher, R*W)
	conns := make([]*client.Conn, R*W)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	b.logf("opening %d watchers on %s", R*W, urlB)
	err := parallel(ctx, R*W, 20, func(i int) error {
		r := i / W
		wt := &watcher{}
		watchers[i] = wt
		onEvent := func(e client.Event) {
			if e.Type == "sync" {
				syncs.Add(1)
				return
			}
			if e.Type != "presence" || e.Member == nil {
				return
			}
			kind := 0
			switch e.Event {
			case "join":
			case "leave":
				kind = 1
			default:
				return
			}
			k, err := strconv.Atoi(strings.TrimPrefix(e.Member.UserID, userPrefix))
			if o.ownUsers {
				k -= r * U
			}
			if err != nil || !strings.HasPrefix(e.Member.UserID, userPrefix) || k < 0 || k >= U {
				return // an anchor
			}
			t := sendAt[(r*U+k)*2+kind].Load()
			if t == 0 {
				unmatched.Add(1)
				return
			}
			lat := time.Duration(since() - t)
			wt.mu.Lock()
			wt.h.add(lat)
			wt.mu.Unlock()
			delivered.Add(1)
		}
		dctx, cancel := context.WithTimeout(ctx, o.reqTimeout)
		defer cancel()
		c, err := client.Dial(dctx, client.ConnConfig{URLs: []string{urlB}, Token: o.token, OnEvent: onEvent})
		if err != nil {
			return err
		}
		conns[i] = c
		if _, err := c.Watch(dctx, tokens[r]); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watchers on %s: %w", urlB, err)
	}

	users := make([]fanUser, R*U)
	jobs := make(chan int, 4*o.concurrency)
	var skipped, joins, leaves atomic.Int64
	var errs errCounter
	reqHists := make([]hist, o.concurrency)
	var wg sync.WaitGroup
	for s := 0; s < o.concurrency; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newHClient(epA, o.reqTimeout)
			defer c.close()
			for slot := range jobs {
				u := &users[slot]
				r, k := slot/U, slot%U
				t0 := time.Now()
				var err error
				if !u.online {
					body := heartbeatBody(b.id("fan", r), b.id("s", k), b.id("u", userOf(r, k)), 10*time.Minute)
					req := buildRequest(epA, o.token, "POST", "/v1/heartbeat", body)
					sendAt[slot*2].Store(since())
					var hr hresp
					if hr, err = c.do(req); err == nil {
						if err = hr.expect(200); err == nil {
							u.token, u.online = jsonString(hr.body, "sessionToken"), true
							joins.Add(1)
						}
					}
				} else {
					req := buildRequest(epA, o.token, "POST", "/v1/disconnect", []byte(`{"sessionToken":"`+u.token+`"}`))
					sendAt[slot*2+1].Store(since())
					var hr hresp
					if hr, err = c.do(req); err == nil {
						if err = hr.expect(204); err == nil {
							u.online, u.token = false, ""
							leaves.Add(1)
						}
					}
				}
				if err != nil {
					errs.add(err)
				} else {
					reqHists[s].add(time.Since(t0))
				}
				u.busy.Store(false)
			}
		}()
	}

	// The schedule: op n is due at n/rate seconds; it goes to user n of a
	// round robin over rooms, then users, so one user's consecutive ops are
	// rooms x users ops apart (a join and its leave: 1 s at 1000/s with the
	// defaults).
	b.logf("joins+leaves at %.0f/s for %s", o.rate, o.duration)
	runStart := time.Now()
	var lastOps int64
	lastAt := runStart
	stopProgress := b.progressEvery(func(time.Duration) string {
		n := joins.Load() + leaves.Load()
		now := time.Now()
		rate := float64(n-lastOps) / now.Sub(lastAt).Seconds()
		lastOps, lastAt = n, now
		return fmt.Sprintf("ops %d (%.0f/s)  delivered %d  skipped %d  errors %d", n, rate, delivered.Load(), skipped.Load(), errs.n.Load())
	})
	tick := time.NewTicker(time.Millisecond)
	n := 0
	end := runStart.Add(o.duration)
schedule:
	for {
		select {
		case <-ctx.Done():
			break schedule
		case now := <-tick.C:
			if now.After(end) {
				now = end
			}
			due := int(now.Sub(runStart).Seconds() * o.rate)
			for ; n < due; n++ {
				i := n % (R * U)
				slot := (i%R)*U + i/R
				if !users[slot].busy.CompareAndSwap(false, true) {
					skipped.Add(1)
					continue
				}
				select {
				case jobs <- slot:
				default:
					users[slot].busy.Store(false)
					skipped.Add(1)
				}
			}
			if !now.Before(end) {
				break schedule
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	res.Seconds = round3(time.Since(runStart).Seconds())
	res.Joins, res.Leaves, res.Skipped = joins.Load(), leaves.Load(), skipped.Load()
	res.Achieved = float64(res.Joins+res.Leaves) / res.Seconds
	res.Expected = (res.Joins + res.Leaves) * int64(W)
	// The last events may still be on their way.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && delivered.Load() < res.Expected; {
		time.Sleep(20 * time.Millisecond)
	}
	stopProgress()
	res.Errors, res.ErrorKinds, res.FirstError = errs.snapshot()
	res.Delivered, res.Unmatched, res.Syncs = delivered.Load(), unmatched.Load(), syncs.Load()
	res.Missing = res.Expected - res.Delivered
	var dh, rh hist
	for _, wt := range watchers {
		wt.mu.Lock()
		dh.merge(&wt.h)
		wt.mu.Unlock()
	}
	for i := range reqHists {
		rh.merge(&reqHists[i])
	}
	res.Delivery, res.Request = dh.summary(), rh.summary()

	// Leave nothing online: end the sessions still open and the anchors.
	var cleanupErr error
	for slot := range users {
		if users[slot].online {
			cr, err := hc.do(buildRequest(epA, o.token, "POST", "/v1/disconnect", []byte(`{"sessionToken":"`+users[slot].token+`"}`)))
			if err == nil {
				err = cr.expect(204)
			}
			if err != nil && cleanupErr == nil {
				cleanupErr = err
			}
		}
	}
	for _, tok := range anchors {
		if cr, err := hc.do(buildRequest(epA, o.token, "POST", "/v1/disconnect", []byte(`{"sessionToken":"`+tok+`"}`))); err != nil || cr.status != 204 {
			if cleanupErr == nil {
				cleanupErr = fmt.Errorf("end anchor session: %v %d", err, cr.status)
			}
		}
	}
	if cleanupErr != nil {
		b.logf("cleanup: %v", cleanupErr)
	}

	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := b.checkErrors("joins/leaves", res.Errors, res.FirstError); err != nil {
		return res, err
	}
	if res.Missing != 0 || res.Syncs != 0 {
		return res, fmt.Errorf("%d of %d deliveries missing (%d syncs instead of events)", res.Missing, res.Expected, res.Syncs)
	}
	if res.Joins+res.Leaves == 0 {
		return res, fmt.Errorf("no join or leave was made")
	}
	return res, nil
}

// parallel runs f(0..n-1) on at most conc goroutines; the first error
// stops the others from starting new calls and is returned.
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < min(conc, n); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
