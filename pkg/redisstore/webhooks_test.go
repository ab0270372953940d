package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/presencecluster/presence/pkg/webhooktest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

const hookSecret = "webhook-test-secret-0123456789"

// newReceiver starts a receiver (webhooktest) that answers as status says
// (nil: always 2xx).
func newReceiver(t testing.TB, status func(n int) int) *webhooktest.Receiver {
	r := &webhooktest.Receiver{Secret: hookSecret, Status: status}
	if err := r.Start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// checkDelivered waits until want distinct events were acknowledged, and
// fails on a refused request, an event delivered twice (unless dups) or a
// room's events out of version order.
func checkDelivered(t testing.TB, r *webhooktest.Receiver, want int, dups bool) map[string][]webhooktest.Event {
	t.Helper()
	presencetest.Eventually(t, fmt.Sprintf("%d webhook events", want), 30*time.Second, func() bool { return r.Distinct() >= want })
	rooms, problems := r.Verify(dups)
	for _, p := range problems {
		t.Error(p)
	}
	if n := r.Distinct(); n != want {
		t.Errorf("%d events delivered, want %d", n, want)
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
			rooms := checkDelivered(t, rec, want, false)
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
			// Counted once each, by whichever node sent it (after the
			// answer: poll).
			presencetest.Eventually(t, "delivered counted once each", 10*time.Second, func() bool {
				total := 0.0
				for _, n := range nodes {
					total += n.counter("delivered")
				}
				return total == float64(want)
			})
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
	for _, evs := range checkDelivered(t, rec, want, false) {
		for _, e := range evs {
			if e.Event == "update" {
				t.Errorf("update sent")
			}
		}
	}
	presencetest.Eventually(t, "the backlog gauge at 0", 10*time.Second, func() bool { return n.backlog() == 0 })
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
	checkDelivered(t, rec, want, false)
	at := rec.Arrivals()
	if len(at) < 3 {
		t.Fatalf("%d requests", len(at))
	}
	if d := at[1].Sub(at[0]); d < 700*time.Millisecond || d > 2*time.Second {
		t.Errorf("first retry after %v, want about 1 s", d)
	}
	if d := at[2].Sub(at[1]); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Errorf("second retry after %v, want about 2 s", d)
	}
	acked := map[string]bool{}
	for _, e := range rec.Events() {
		acked[e.ID] = true
	}
	for _, e := range rec.All() {
		if !acked[e.ID] {
			t.Errorf("a retry changed the id of %s v%d", e.RoomID, e.Version)
		}
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
			return webhooktest.Hang
		}
		return 0
	})
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL()})
	want := churn(t, []*hookNode{n}, 1, 1) * 2 / 3
	checkDelivered(t, rec, want, false)
	at := rec.Arrivals()
	if d := at[1].Sub(at[0]); d < 5*time.Second+700*time.Millisecond || d > 8*time.Second {
		t.Errorf("retry %v after a request that got no answer, want 5 s + about 1 s", d)
	}
	if m := rec.MaxInflight(); m != 1 {
		t.Errorf("%d requests at once", m)
	}
	st, err := n.store.WebhookStatus(context.Background())
	if err != nil || st.LastFailure == nil || st.LastFailure.Error != "no answer within 5s" || st.LastFailure.Events < 1 {
		t.Errorf("last failure %+v %v", st.LastFailure, err)
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
	// No key lives forever: the outboxes, the index and the attempts
	// expire max age + 10 min after their last write.
	k := nodes[0].store.Keys()
	for _, key := range []string{k.Room(presence.RoomRef{Org: "acme", RoomID: "room-0"}).Webhooks, k.WebhookIndex(), k.WebhookTries()} {
		if ttl := nodes[0].rdb.PTTL(context.Background(), key).Val(); ttl <= 69*time.Minute || ttl > 70*time.Minute {
			t.Errorf("%s: TTL %v", key, ttl)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	rec := &webhooktest.Receiver{Secret: hookSecret}
	if err := rec.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Close)
	checkDelivered(t, rec, want, false)
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
	if len(rec.Events()) != 0 {
		t.Errorf("delivered %d", len(rec.Events()))
	}
}

// An outbox that no index entry points to (its node died between the
// script and the index write) is found by the heal.
func TestWebhookHeal(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			port := redistest.FreePort(t)
			prefix := redistest.UniquePrefix(t)
			// The producer's sender never reaches a receiver.
			n := newHookNode(t, b, prefix, redisstore.WebhookConfig{URL: "http://127.0.0.1:" + strconv.Itoa(port)})
			n.beat("ada", "lobby", "s1", 10*time.Second)
			n.beat("bob", "hall", "s2", 10*time.Second)
			n.store.Close()
			if err := n.rdb.Del(context.Background(), n.store.Keys().WebhookIndex()).Err(); err != nil {
				t.Fatal(err)
			}
			rec := newReceiver(t, nil)
			newHookNode(t, b, prefix, redisstore.WebhookConfig{URL: rec.URL(), HealInterval: 200 * time.Millisecond})
			checkDelivered(t, rec, 2, false)
		})
	}
}

// A redirect is a failure, not followed: the events go only where the URL
// says.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, nil)
	redirect := httptest.NewServer(http.RedirectHandler(rec.URL(), http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: redirect.URL})
	n.beat("ada", "lobby", "s1", 10*time.Second)
	presencetest.Eventually(t, "a failed request", 10*time.Second, func() bool {
		st, err := n.store.WebhookStatus(context.Background())
		return err == nil && st.LastFailure != nil && st.LastFailure.Error == "answered 307 Temporary Redirect"
	})
	if len(rec.All()) != 0 {
		t.Errorf("the redirect was followed")
	}
}

// A store closed while its sender waits for an answer finishes that round:
// the events are acknowledged once, not left for another node to send
// again.
func TestWebhookCloseFinishesRound(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	arrived := make(chan struct{}, 1)
	rec := newReceiver(t, func(int) int {
		arrived <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		return 0
	})
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL()})
	n.beat("ada", "lobby", "s1", 10*time.Second)
	<-arrived
	n.store.Close()
	checkDelivered(t, rec, 1, false)
	st, err := n.store.WebhookStatus(context.Background())
	if err != nil || st.Rooms != 0 || st.Events != 0 {
		t.Errorf("after close: %+v %v", st, err)
	}
}

// An index entry that names no room is removed, and the rooms around it
// are sent.
func TestWebhookIndexJunk(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, nil)
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL()})
	idx := n.store.Keys().WebhookIndex()
	if err := n.rdb.ZAdd(context.Background(), idx, redis.Z{Score: 0, Member: "no-tag"}).Err(); err != nil {
		t.Fatal(err)
	}
	n.beat("ada", "lobby", "s1", 10*time.Second)
	checkDelivered(t, rec, 1, false)
	presencetest.Eventually(t, "an empty index", 5*time.Second, func() bool { return n.rdb.ZCard(context.Background(), idx).Val() == 0 })
}

// member is the member JSON of the room's event, byte for byte (no HTML
// escaping of the data).
func TestWebhookMemberAsPublished(t *testing.T) {
	srv := redistest.Start(t)
	b := backend{name: "redis", addr: srv.Addr(), srv: srv}
	rec := newReceiver(t, nil)
	n := newHookNode(t, b, redistest.UniquePrefix(t), redisstore.WebhookConfig{URL: rec.URL(), Events: allEvents})
	n.beat("ada", "lobby", "s1", 10*time.Second)
	sub := n.rdb.Subscribe(context.Background(), n.store.Keys().Room(presence.RoomRef{Org: "acme", RoomID: "lobby"}).Events)
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.svc.SetData(n.as("ada"), "lobby", "ada", json.RawMessage(`{"html":"<b>&amp;</b>","é":"\u2028"}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var published struct{ Member json.RawMessage }
	if err := json.Unmarshal([]byte(msg.Payload), &published); err != nil {
		t.Fatal(err)
	}
	rooms := checkDelivered(t, rec, 2, false)
	if got := string(rooms["lobby"][1].Member); got != string(published.Member) {
		t.Errorf("member %s, published %s", got, published.Member)
	}
}
