package redisstore_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/prometheus/client_golang/prometheus"
)

const hookSecret = "webhook-test-secret-0123456789"

// receiver is a webhook receiver on 127.0.0.1 that checks every request
// the way the README tells receivers to, and keeps the events of the
// requests it acknowledged.
type receiver struct {
	t   testing.TB
	srv *httptest.Server
	// status answers request n (from 1): 0 means 200; -1 means no answer
	// (the request hangs until the sender gives up).
	status func(n int) int

	mu       sync.Mutex
	requests []time.Time // when each request arrived
	acked    []redisstore.WebhookEvent
	bad      []string // what was wrong with a request

	inflight, maxInflight atomic.Int32
}

func newReceiver(t testing.TB, status func(n int) int) *receiver {
	r := &receiver{t: t, status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	in := r.inflight.Add(1)
	defer r.inflight.Add(-1)
	for {
		m := r.maxInflight.Load()
		if in <= m || r.maxInflight.CompareAndSwap(m, in) {
			break
		}
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, time.Now())
	n := len(r.requests)
	r.mu.Unlock()
	var events []redisstore.WebhookEvent
	if problem := checkWebhook(req, body, &events); problem != "" {
		r.mu.Lock()
		r.bad = append(r.bad, problem)
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	status := 0
	if r.status != nil {
		status = r.status(n)
	}
	switch status {
	case -1:
		<-req.Context().Done()
		return
	case 0:
		status = http.StatusOK
		if n%2 == 0 {
			status = http.StatusNoContent // any 2xx acknowledges
		}
	}
	if status >= 200 && status < 300 {
		r.mu.Lock()
		r.acked = append(r.acked, events...)
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

// checkWebhook checks a request as a receiver must: method, content type,
// a fresh timestamp, the signature over the raw body, 1-100 events.
func checkWebhook(req *http.Request, body []byte, events *[]redisstore.WebhookEvent) string {
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		return "method or content type: " + req.Method + " " + req.Header.Get("Content-Type")
	}
	ts := req.Header.Get("X-Presence-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return "timestamp " + ts
	}
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write([]byte(ts + "." + string(body)))
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(req.Header.Get("X-Presence-Signature")), []byte(want)) {
		return "signature " + req.Header.Get("X-Presence-Signature")
	}
	var b struct {
		Events []redisstore.WebhookEvent `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Events) < 1 || len(b.Events) > 100 {
		return fmt.Sprintf("body of %d events: %v", len(b.Events), err)
	}
	for _, e := range b.Events {
		if len(e.ID) != 32 || e.Org == "" || e.RoomID == "" || e.Version < 1 || e.UserID == "" || e.TimeMs < 1 || len(e.Member) == 0 {
			return fmt.Sprintf("event %+v", e)
		}
	}
	*events = b.Events
	return ""
}

func (r *receiver) events() []redisstore.WebhookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]redisstore.WebhookEvent(nil), r.acked...)
}

func (r *receiver) arrivals() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.requests...)
}

// checkOnce fails unless want events were acknowledged, each id once, and
// each room's in version order; with dups, an id may come again (after a
// failure), but never out of order.
func (r *receiver) checkDelivered(t testing.TB, want int, dups bool) map[string][]redisstore.WebhookEvent {
	t.Helper()
	presencetest.Eventually(t, fmt.Sprintf("%d webhook events", want), 30*time.Second, func() bool {
		seen := map[string]bool{}
		for _, e := range r.events() {
			seen[e.ID] = true
		}
		return len(seen) >= want
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("bad requests: %v", r.bad)
	}
	seen := map[string]int{}
	rooms := map[string][]redisstore.WebhookEvent{}
	last := map[string]int64{}
	for _, e := range r.acked {
		seen[e.ID]++
		if seen[e.ID] > 1 {
			if !dups {
				t.Errorf("event %s (%s v%d) delivered twice", e.ID, e.RoomID, e.Version)
			}
			continue
		}
		if e.Version <= last[e.RoomID] {
			t.Errorf("room %s: version %d after %d", e.RoomID, e.Version, last[e.RoomID])
		}
		last[e.RoomID] = e.Version
		rooms[e.RoomID] = append(rooms[e.RoomID], e)
	}
	if len(seen) != want {
		t.Errorf("%d events delivered, want %d", len(seen), want)
	}
	return rooms
}

// hookNode is a store with webhooks on (a node, as far as webhooks go),
// opened, with its metrics.
type hookNode struct {
	*harness
	reg *prometheus.Registry
}

func newHookNode(t *testing.T, b backend, prefix string, hc redisstore.WebhookConfig) *hookNode {
	t.Helper()
	reg := prometheus.NewRegistry()
	hc.Secret = hookSecret
	h := newHarness(t, b, redisstore.Config{Prefix: prefix, Webhooks: hc, Registerer: reg})
	if err := h.store.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	return &hookNode{harness: h, reg: reg}
}

func (n *hookNode) counter(result string) float64 {
	mfs, _ := n.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "presence_webhook_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (n *hookNode) backlog() float64 {
	mfs, _ := n.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "presence_webhook_backlog" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// churn makes events in rooms: each user joins, updates its data and
// leaves, through the nodes in turn. It returns the events made (join,
// update, leave each).
func churn(t *testing.T, nodes []*hookNode, rooms, users int) int {
	t.Helper()
	n := 0
	for u := 0; u < users; u++ {
		for r := 0; r < rooms; r++ {
			h := nodes[(u+r)%len(nodes)]
			room, user := fmt.Sprintf("room-%d", r), fmt.Sprintf("user-%d", u)
			out := h.beat(user, room, "s-"+user, 10*time.Second)
			if err := h.svc.SetData(h.as(user), room, user, json.RawMessage(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
			if err := h.svc.Disconnect(context.Background(), out.SessionToken); err != nil {
				t.Fatal(err)
			}
			n += 3
		}
	}
	return n
}

var allEvents = []string{"join", "leave", "update", "remove"}

// Every event reaches the receiver once, signed, each room's in version
// order, though three nodes send; on one Redis, a Cluster and the embedded
// store.
func TestWebhookDelivery(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rec := newReceiver(t, nil)
			prefix := redistest.UniquePrefix(t)
			var nodes []*hookNode
			for i := 0; i < 3; i++ {
				nodes = append(nodes, newHookNode(t, b, prefix, redisstore.WebhookConfig{URL: rec.URL(), Events: allEvents}))
			}
			want := churn(t, nodes, 10, 6)
			rooms := rec.checkDelivered(t, want, false)
			for id, evs := range rooms {
				kinds := ""
				for _, e := range evs {
					kinds += e.Event[:1]
					if e.Org != "acme" || e.RoomID != id {
						t.Errorf("event of %s/%s in room %s", e.Org, e.RoomID, id)
					}
					var m presence.Member
					if err := json.Unmarshal(e.Member, &m); err != nil || m.UserID != e.UserID {
						t.Errorf("member %s of %s: %v", e.Member, e.UserID, err)
					}
					if e.Event == "leave" && m.Online || e.Event == "join" && !m.Online {
						t.Errorf("%s with member %s", e.Event, e.Member)
					}
					if d := time.Since(time.UnixMilli(e.TimeMs)); d < 0 || d > time.Minute {
						t.Errorf("timeMs %d is %v ago", e.TimeMs, d)
					}
				}
				if kinds != repeat("jul", 6) {
					t.Errorf("room %s: events %s", id, kinds)
				}
			}
			total := 0.0
			for _, n := range nodes {
				total += n.counter("delivered")
			}
			if total != float64(want) {
				t.Errorf("delivered counted %v times, want %d", total, want)
			}
			presencetest.Eventually(t, "an empty index", 10*time.Second, func() bool {
				st, err := nodes[0].store.WebhookStatus(context.Background())
				return err == nil && st.Rooms == 0 && st.Events == 0 && st.LastFailure == nil
			})
		})
	}
}

func repeat(s string, n int) string {
	out := ""
	for i := 0; i < n; i++ {
		out += s
	}
	return out
}

// Only the events named are sent (the default: join and leave).
func TestWebhookEventFilter(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, nil)
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL()})
	want := churn(t, []*hookNode{n}, 2, 2) * 2 / 3
	for _, evs := range rec.checkDelivered(t, want, false) {
		for _, e := range evs {
			if e.Event == "update" {
				t.Errorf("update sent")
			}
		}
	}
	if n.backlog() != 0 {
		t.Errorf("backlog %v, want 0", n.backlog())
	}
}

// A failed request (500) is retried after 1 s, then 2 s (with jitter);
// then everything arrives once and in order.
func TestWebhookRetryBackoff(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	})
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL(), Events: allEvents})
	want := churn(t, []*hookNode{n}, 1, 3)
	rec.checkDelivered(t, want, false)
	at := rec.arrivals()
	if len(at) < 3 {
		t.Fatalf("%d requests", len(at))
	}
	if d := at[1].Sub(at[0]); d < 700*time.Millisecond || d > 2*time.Second {
		t.Errorf("first retry after %v, want about 1 s", d)
	}
	if d := at[2].Sub(at[1]); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Errorf("second retry after %v, want about 2 s", d)
	}
	if r := n.counter("retried"); r < 2 {
		t.Errorf("retried %v", r)
	}
	st, err := n.store.WebhookStatus(context.Background())
	if err != nil || st.LastFailure == nil || st.LastFailure.Error != "answered 500 Internal Server Error" {
		t.Errorf("status %+v %v", st, err)
	}
}

// A receiver that does not answer: the attempt is abandoned after 5 s and
// retried; attempts never overlap.
func TestWebhookTimeout(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, func(n int) int {
		if n == 1 {
			return -1
		}
		return 0
	})
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL()})
	want := churn(t, []*hookNode{n}, 1, 1) * 2 / 3
	rec.checkDelivered(t, want, false)
	at := rec.arrivals()
	if d := at[1].Sub(at[0]); d < 5*time.Second+700*time.Millisecond || d > 8*time.Second {
		t.Errorf("retry %v after a request that got no answer, want 5 s + about 1 s", d)
	}
	if m := rec.maxInflight.Load(); m != 1 {
		t.Errorf("%d requests at once", m)
	}
}

// A receiver that is down (nothing listens) gets every event once it is
// back.
func TestWebhookReceiverDown(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	port := redistest.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	var nodes []*hookNode
	prefix := redistest.UniquePrefix(t)
	for i := 0; i < 3; i++ {
		nodes = append(nodes, newHookNode(t, b, prefix, redisstore.WebhookConfig{URL: url, Events: allEvents,
			MinBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}))
	}
	want := churn(t, nodes, 5, 4)
	presencetest.Eventually(t, "failed attempts", 10*time.Second, func() bool { return nodes[0].counter("retried") > 0 })
	presencetest.Eventually(t, "the backlog gauge", 10*time.Second, func() bool { return nodes[1].backlog() == float64(want) })
	rec := &receiver{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	rec.srv = httptest.NewUnstartedServer(http.HandlerFunc(rec.serve))
	rec.srv.Listener.Close()
	rec.srv.Listener = ln
	rec.srv.Start()
	t.Cleanup(rec.srv.Close)
	rec.checkDelivered(t, want, false)
	presencetest.Eventually(t, "an empty backlog", 10*time.Second, func() bool { return nodes[2].backlog() == 0 })
}

// Events older than the max age are dropped and counted.
func TestWebhookMaxAge(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL(), MaxAge: time.Second,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	want := churn(t, []*hookNode{n}, 3, 2) * 2 / 3
	presencetest.Eventually(t, "dropped events", 10*time.Second, func() bool { return n.counter("dropped") == float64(want) })
	st, err := n.store.WebhookStatus(context.Background())
	if err != nil || st.Events != 0 {
		t.Errorf("status %+v %v", st, err)
	}
	if len(rec.events()) != 0 {
		t.Errorf("delivered %d", len(rec.events()))
	}
}

// An outbox that no index entry points to (its node died between the
// script and the index write) is found by the heal.
func TestWebhookHeal(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	port := redistest.FreePort(t)
	prefix := redistest.UniquePrefix(t)
	// The producer's sender never reaches a receiver.
	n := newHookNode(t, b, prefix, redisstore.WebhookConfig{URL: "http://127.0.0.1:" + strconv.Itoa(port)})
	n.beat("ada", "lobby", "s1", 10*time.Second)
	n.store.Close()
	idx := n.store.Keys().WebhookIndex()
	if err := n.rdb.Del(context.Background(), idx).Err(); err != nil {
		t.Fatal(err)
	}
	rec := newReceiver(t, nil)
	healer := newHookNode(t, b, prefix, redisstore.WebhookConfig{URL: rec.URL(), HealInterval: 200 * time.Millisecond})
	rec.checkDelivered(t, 1, false)
	_ = healer
}
