package main

// bench_churn.go: other sessions joining and leaving through another node
// while the sockets of `connections` sit idle (--churn N --churn-url URL).
// Session n joins at n/N seconds (open loop: a slow answer makes the next
// ones late, it does not thin the schedule) and leaves 1 s after its join.
// The sessions go over one WebSocket per 10 sessions per second (20
// messages per second each, under the server's limit of 50); each socket
// is one user that joins rooms of its own (churnRooms in turn), so the rooms
// stay small and the sockets' sessions are node-held like any socket's.

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/client"
)

const (
	churnPerSocket = 10.0        // sessions per second per socket
	churnRooms     = 20          // rooms per churn socket, used in turn
	churnLife      = time.Second // a session's life, join to leave
)

type churnResult struct {
	URL        string           `json:"url"`
	Target     float64          `json:"targetSessionsPerSecond"`
	Sockets    int              `json:"sockets"`
	Seconds    float64          `json:"seconds"`
	Joins      int64            `json:"joins"`
	Leaves     int64            `json:"leaves"`
	JoinRate   float64          `json:"joinsPerSecond"`
	LeaveRate  float64          `json:"leavesPerSecond"`
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"errorKinds,omitempty"`
	FirstError string           `json:"firstError,omitempty"`
	Join       latency          `json:"join"`
	Leave      latency          `json:"leave"`
	// Late: joins sent more than 100 ms after their time.
	Late int64 `json:"lateJoins"`
}

func (r *churnResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "churn through %s: target %.0f sessions/s over %d sockets for %.1fs: %d joins (%.0f/s), %d leaves (%.0f/s), %d errors, %d joins late by > 100 ms\n",
		r.URL, r.Target, r.Sockets, r.Seconds, r.Joins, r.JoinRate, r.Leaves, r.LeaveRate, r.Errors, r.Late)
	fmt.Fprintf(w, "  join %s\n  leave %s\n", r.Join, r.Leave)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
}

// churn is a running churn; stop ends it and returns the result.
type churn struct {
	res                 *churnResult
	conns               []*client.Conn
	stop                chan struct{}
	wg                  sync.WaitGroup
	start               time.Time
	joins, leaves, late atomic.Int64
	errs                errCounter
	mu                  sync.Mutex
	jh                  hist
	lh                  hist
}

// startChurn opens the churn sockets on url and starts the schedule.
func (b *bench) startChurn(ctx context.Context, url string, rate float64) (*churn, error) {
	o := b.o
	n := int(math.Ceil(rate / churnPerSocket))
	ch := &churn{res: &churnResult{URL: url, Target: rate, Sockets: n}, conns: make([]*client.Conn, n), stop: make(chan struct{})}
	err := parallel(ctx, n, 20, func(s int) error {
		dctx, cancel := context.WithTimeout(ctx, o.reqTimeout)
		defer cancel()
		c, err := client.Dial(dctx, client.ConnConfig{URLs: []string{url}, Token: o.token, UserID: b.id("ku", s)})
		if err != nil {
			return fmt.Errorf("churn socket to %s: %w", url, err)
		}
		ch.conns[s] = c
		return nil
	})
	if err != nil {
		ch.closeConns()
		return nil, err
	}
	b.logf("churn: %.0f sessions/s joining and leaving through %s (%d sockets)", rate, url, n)
	ch.start = time.Now()
	for s := range n {
		ch.wg.Add(1)
		go func() {
			defer ch.wg.Done()
			ch.runSocket(ctx, b, s, n, rate)
		}()
	}
	return ch, nil
}

type churnLeave struct {
	at   time.Time
	room string
}

// runSocket runs socket s's share of the schedule: its k-th session joins
// at (k*n + s)/rate s and leaves churnLife after its join.
func (ch *churn) runSocket(ctx context.Context, b *bench, s, n int, rate float64) {
	c := ch.conns[s]
	var pending []churnLeave
	var jh, lh hist
	defer func() {
		ch.mu.Lock()
		ch.jh.merge(&jh)
		ch.lh.merge(&lh)
		ch.mu.Unlock()
	}()
	leave := func(l churnLeave) {
		cctx, cancel := context.WithTimeout(ctx, b.o.reqTimeout)
		t0 := time.Now()
		err := c.Leave(cctx, l.room)
		cancel()
		if err != nil {
			ch.errs.add(fmt.Errorf("leave: %w", err))
			return
		}
		lh.add(time.Since(t0))
		ch.leaves.Add(1)
	}
	stopped := false
	for k := 0; ; {
		joinAt := ch.start.Add(time.Duration(float64(k*n+s) / rate * float64(time.Second)))
		if stopped {
			for _, l := range pending {
				leave(l)
			}
			return
		}
		next, isJoin := joinAt, true
		if len(pending) > 0 && pending[0].at.Before(joinAt) {
			next, isJoin = pending[0].at, false
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ch.stop:
				stopped = true
				continue
			case <-ctx.Done():
				stopped = true
				continue
			}
		}
		if !isJoin {
			l := pending[0]
			pending = pending[1:]
			leave(l)
			continue
		}
		select {
		case <-ch.stop:
			stopped = true
			continue
		default:
		}
		slot := s*churnRooms + k%churnRooms
		room := b.id("kr", slot)
		k++
		if time.Since(joinAt) > 100*time.Millisecond {
			ch.late.Add(1)
		}
		cctx, cancel := context.WithTimeout(ctx, b.o.reqTimeout)
		t0 := time.Now()
		_, err := c.Join(cctx, room, b.id("ks", slot), b.o.interval, nil)
		cancel()
		if err != nil {
			ch.errs.add(fmt.Errorf("join: %w", err))
			continue
		}
		jh.add(time.Since(t0))
		ch.joins.Add(1)
		pending = append(pending, churnLeave{at: t0.Add(churnLife), room: room})
	}
}

// finish stops the schedule, leaves the sessions still open, closes the
// sockets and returns the result.
func (ch *churn) finish() *churnResult {
	el := time.Since(ch.start)
	j0, l0 := ch.joins.Load(), ch.leaves.Load() // the rates are of the window
	close(ch.stop)
	ch.wg.Wait()
	ch.closeConns()
	r := ch.res
	r.Seconds = round3(el.Seconds())
	r.Joins, r.Leaves, r.Late = ch.joins.Load(), ch.leaves.Load(), ch.late.Load()
	r.JoinRate = math.Round(float64(j0) / el.Seconds())
	r.LeaveRate = math.Round(float64(l0) / el.Seconds())
	r.Errors, r.ErrorKinds, r.FirstError = ch.errs.snapshot()
	r.Join, r.Leave = ch.jh.summary(), ch.lh.summary()
	return r
}

func (ch *churn) closeConns() {
	parallel(context.Background(), len(ch.conns), 20, func(i int) error {
		if c := ch.conns[i]; c != nil {
			c.Close()
		}
		return nil
	})
}
