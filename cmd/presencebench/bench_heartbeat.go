package main

// bench_heartbeat.go: the heartbeat scenario.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

type heartbeatResult struct {
	RunID       string   `json:"runId"`
	Scenario    string   `json:"scenario"`
	URLs        []string `json:"urls"`
	Concurrency int      `json:"concurrency"`
	Sessions    int      `json:"sessions"`
	Rooms       int      `json:"rooms"`
	IntervalMs  int64    `json:"intervalMs"`
	// Create is the first heartbeat of every session (a join each).
	Create phaseResult `json:"create"`
	// Refresh is the keep-alive phase (nil with --duration 0).
	Refresh *phaseResult `json:"refresh,omitempty"`
	// Redis is what Redis ran during the refresh phase (--redis-stats).
	Redis *redisDelta `json:"redis,omitempty"`
}

func (r *heartbeatResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "heartbeat: %d sessions over %d rooms, interval %s, concurrency %d, nodes %v\n\n",
		r.Sessions, r.Rooms, time.Duration(r.IntervalMs)*time.Millisecond, r.Concurrency, r.URLs)
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, phaseHeader)
	fmt.Fprintln(tw, r.Create.row("create"))
	if r.Refresh != nil {
		fmt.Fprintln(tw, r.Refresh.row("refresh"))
	}
	tw.Flush()
	for _, p := range []*phaseResult{&r.Create, r.Refresh} {
		if p != nil && p.Errors > 0 {
			fmt.Fprintf(w, "errors: %v (first: %s)\n", p.ErrorKinds, p.FirstError)
		}
	}
	if r.Redis != nil {
		fmt.Fprintln(w)
		r.Redis.writeTable(w)
	}
}

func runHeartbeat(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	eps := make([]endpoint, len(o.urls))
	for i, u := range o.urls {
		eps[i] = mustEndpoint(u)
	}
	// One prebuilt request per session, for the endpoint of its worker:
	// worker w owns sessions w, w+C, w+2C, ... so that no session has two
	// heartbeats in flight.
	clients := make([]*hclient, o.concurrency)
	for w := range clients {
		clients[w] = newHClient(eps[w%len(eps)], o.reqTimeout)
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	reqs := make([][]byte, o.sessions)
	for i := range reqs {
		body := heartbeatBody(b.id("r", i%o.rooms), b.id("s", i), b.id("u", i), o.interval)
		reqs[i] = buildRequest(eps[(i%o.concurrency)%len(eps)], o.token, "POST", "/v1/heartbeat", body)
	}
	own := func(w, i int) int { return w + i*o.concurrency }
	beat := func(w, s int) error {
		res, err := clients[w].do(reqs[s])
		if err != nil {
			return err
		}
		return res.expect(200)
	}

	res := &heartbeatResult{RunID: o.runID, Scenario: "heartbeat", URLs: o.urls, Concurrency: o.concurrency, Sessions: o.sessions,
		Rooms: o.rooms, IntervalMs: o.interval.Milliseconds()}
	b.logf("creating %d sessions over %d rooms at concurrency %d", o.sessions, o.rooms, o.concurrency)
	res.Create = b.runPhase("create", o.concurrency, time.Time{}, ctx.Done(), func(w, i int) error {
		s := own(w, i)
		if s >= o.sessions {
			return errStop
		}
		return beat(w, s)
	})
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := b.checkErrors("heartbeats", res.Create.Errors, res.Create.FirstError); err != nil {
		return res, err
	}
	if o.duration == 0 {
		return res, nil
	}

	var before *redisStats
	if o.redisStats {
		var err error
		if before, err = b.readRedisStats(ctx); err != nil {
			return res, err
		}
	}
	b.logf("refreshing for %s", o.duration)
	perWorker := (o.sessions + o.concurrency - 1) / o.concurrency
	refresh := b.runPhase("refresh", o.concurrency, time.Now().Add(o.duration), ctx.Done(), func(w, i int) error {
		s := own(w, i%perWorker)
		if s >= o.sessions {
			s = own(w, 0)
			if s >= o.sessions {
				return errStop // more workers than sessions
			}
		}
		return beat(w, s)
	})
	res.Refresh = &refresh
	if before != nil {
		after, err := b.readRedisStats(ctx)
		if err != nil {
			return res, err
		}
		res.Redis = before.delta(after, refresh.Requests)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, b.checkErrors("heartbeats", refresh.Errors, refresh.FirstError)
}
