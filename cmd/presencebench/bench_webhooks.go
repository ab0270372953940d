package main

// bench_webhooks.go: the webhooks scenario. It serves a webhook receiver
// (pkg/webhooktest: checks every signature) on --receiver-addr, where the
// nodes under test send (PRESENCE_WEBHOOK_URL, _SECRET = --webhook-secret,
// _EVENTS with join and leave), and measures two things:
//
//   - delay: users join and leave (HTTP heartbeat, then disconnect) through
//     the --url nodes in turn, --rate events per second for --duration;
//     each event's delay is its arrival at the receiver minus its timeMs
//     (when the script ran, by Redis's clock: same machine).
//   - throughput: the receiver refuses (503) while --sessions users join
//     and leave as fast as --concurrency allows; once the backlog is all in
//     Redis (global --redis-url), the receiver accepts and every room of
//     the webhook index is made due at once; events per second from then
//     until the last one arrived.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/webhooktest"
	"github.com/redis/go-redis/v9"
)

type webhooksResult struct {
	RunID    string   `json:"runId"`
	Scenario string   `json:"scenario"`
	Nodes    []string `json:"nodes"`
	Receiver string   `json:"receiver"`
	Rooms    int      `json:"rooms"`

	// Delay phase.
	Rate        float64     `json:"rate"` // target events per second
	DelayPhase  phaseResult `json:"delayPhase"`
	DelayEvents int64       `json:"delayEvents"` // made
	DelayGot    int64       `json:"delayDelivered"`
	Delay       latency     `json:"delay"` // arrival - timeMs

	// Throughput phase.
	BacklogPhase  phaseResult `json:"backlogPhase"`
	BacklogEvents int64       `json:"backlogEvents"` // made
	BacklogRooms  int64       `json:"backlogRooms"`
	BacklogGot    int64       `json:"backlogDelivered"`
	DrainSeconds  float64     `json:"drainSeconds"`
	Throughput    float64     `json:"eventsPerSecond"`

	Duplicates int64    `json:"duplicates"` // ids acknowledged more than once (both phases)
	Problems   []string `json:"problems,omitempty"`
}

func (r *webhooksResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "webhooks: %d nodes (%s) -> receiver %s, %d rooms\n\n", len(r.Nodes), strings.Join(r.Nodes, ", "), r.Receiver, r.Rooms)
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, "PHASE\tEVENTS\tDELIVERED\tRESULT")
	fmt.Fprintf(tw, "delay at %.0f/s (achieved %.0f/s)\t%d\t%d\tchange to receiver: %s\n", r.Rate, 2*r.DelayPhase.Rate,
		r.DelayEvents, r.DelayGot, r.Delay)
	fmt.Fprintf(tw, "throughput (backlog of %d rooms)\t%d\t%d\t%.0f events/s (%.2fs)\n", r.BacklogRooms, r.BacklogEvents, r.BacklogGot,
		r.Throughput, r.DrainSeconds)
	tw.Flush()
	fmt.Fprintf(w, "duplicates %d\n", r.Duplicates)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

func runWebhooks(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	if err := b.c.Connect(ctx); err != nil {
		return nil, err
	}
	var refuse atomic.Bool
	rec := &webhooktest.Receiver{Secret: o.webhookSecret, Status: func(int) int {
		if refuse.Load() {
			return 503
		}
		return 0
	}}
	ln, err := net.Listen("tcp", o.receiverAddr)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if err := rec.Start(ln); err != nil {
		return nil, err
	}
	defer rec.Close()
	res := &webhooksResult{RunID: o.runID, Scenario: "webhooks", Nodes: o.urls, Receiver: rec.URL(), Rooms: o.rooms, Rate: o.rate}

	// Delay: paced joins and leaves.
	b.logf("delay: %.0f events/s for %s through %d nodes", o.rate, o.duration, len(o.urls))
	start := time.Now()
	var next atomic.Int64
	users := int64(o.rate / 2 * o.duration.Seconds())
	res.DelayPhase = b.runPhase("delay", o.concurrency, time.Time{}, nil, b.joinLeave("wd", func() (int, bool) {
		i := next.Add(1) - 1
		if i >= users {
			return 0, false
		}
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / (o.rate / 2) * float64(time.Second)))))
		return int(i), true
	}))
	res.DelayEvents = 2 * res.DelayPhase.Requests
	res.DelayGot = b.waitDelivered(rec, "wd", res.DelayEvents, 30*time.Second)
	var h hist
	for _, e := range firstArrivals(rec, b.id("wd", 0)) {
		h.add(e.Arrived.Sub(time.UnixMilli(e.TimeMs)))
	}
	res.Delay = h.summary()

	// Throughput: a backlog, then all due at once.
	refuse.Store(true)
	b.logf("throughput: %d users join and leave while the receiver refuses", o.sessions)
	next.Store(0)
	res.BacklogPhase = b.runPhase("backlog", o.concurrency, time.Time{}, nil, b.joinLeave("wb", func() (int, bool) {
		i := next.Add(1) - 1
		return int(i), i < int64(o.sessions)
	}))
	res.BacklogEvents = 2 * res.BacklogPhase.Requests
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := b.c.Store.WebhookStatus(ctx)
		if err == nil && st.Events >= res.BacklogEvents && !st.Estimated {
			res.BacklogRooms = st.Rooms
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the backlog never reached %d events in Redis: %+v %v", res.BacklogEvents, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	idx := b.c.Keys.WebhookIndex()
	tags, err := b.c.RDB.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return res, err
	}
	refuse.Store(false)
	drainStart := time.Now()
	zs := make([]redis.Z, len(tags))
	for i, t := range tags {
		zs[i] = redis.Z{Score: 0, Member: t}
	}
	if err := b.c.RDB.ZAddXX(ctx, idx, zs...).Err(); err != nil {
		return res, err
	}
	res.BacklogGot = b.waitDelivered(rec, "wb", res.BacklogEvents, 120*time.Second)
	last := drainStart
	for _, e := range firstArrivals(rec, b.id("wb", 0)) {
		if e.Arrived.After(last) {
			last = e.Arrived
		}
	}
	res.DrainSeconds = round3(last.Sub(drainStart).Seconds())
	if res.DrainSeconds > 0 {
		res.Throughput = float64(res.BacklogGot) / res.DrainSeconds
	}
	_, problems := rec.Verify(true)
	res.Problems = problems
	res.Duplicates = int64(len(rec.Events()) - rec.Distinct())
	if res.DelayGot < res.DelayEvents || res.BacklogGot < res.BacklogEvents || len(problems) > 0 {
		return res, fmt.Errorf("webhook events lost or wrong: %d/%d and %d/%d delivered, %d problems",
			res.DelayGot, res.DelayEvents, res.BacklogGot, res.BacklogEvents, len(problems))
	}
	return res, b.checkErrors("joins and leaves", res.DelayPhase.Errors+res.BacklogPhase.Errors, res.DelayPhase.FirstError+res.BacklogPhase.FirstError)
}

// joinLeave returns a runPhase op: user (kind, i) with i from next joins a
// room and leaves it (two events), through the --url nodes in turn.
func (b *bench) joinLeave(kind string, next func() (int, bool)) func(w, _ int) error {
	o := b.o
	clients := make([][]*hclient, o.concurrency)
	return func(w, _ int) error {
		i, ok := next()
		if !ok {
			for _, c := range clients[w] {
				c.close()
			}
			return errStop
		}
		if clients[w] == nil {
			for _, u := range o.urls {
				clients[w] = append(clients[w], newHClient(mustEndpoint(u), o.reqTimeout))
			}
		}
		n := i % len(o.urls)
		c, ep := clients[w][n], mustEndpoint(o.urls[n])
		hr, err := c.do(buildRequest(ep, o.token, "POST", "/v1/heartbeat", heartbeatBody(b.id("wr", i%o.rooms), b.id("s", i), b.id(kind, i), time.Minute)))
		if err == nil {
			err = hr.expect(200)
		}
		if err != nil {
			return err
		}
		hr, err = c.do(buildRequest(ep, o.token, "POST", "/v1/disconnect", []byte(`{"sessionToken":"`+jsonString(hr.body, "sessionToken")+`"}`)))
		if err == nil {
			err = hr.expect(204)
		}
		return err
	}
}

// firstArrivals are the first deliveries of the events of users whose id
// starts like user0 (without its number).
func firstArrivals(rec *webhooktest.Receiver, user0 string) []webhooktest.Event {
	prefix := strings.TrimSuffix(user0, "0")
	seen := map[string]bool{}
	var out []webhooktest.Event
	for _, e := range rec.Events() {
		if strings.HasPrefix(e.UserID, prefix) && !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

// waitDelivered waits until want events of users kind arrived (or within)
// and returns how many did.
func (b *bench) waitDelivered(rec *webhooktest.Receiver, kind string, want int64, within time.Duration) int64 {
	deadline := time.Now().Add(within)
	for {
		n := int64(len(firstArrivals(rec, b.id(kind, 0))))
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
