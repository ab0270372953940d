// Package storetest is the contract suite of presence.Store: the presence
// rules every store must keep (versions, events, join order, sessions and
// their epochs, timeouts, held sessions and node leases, retention, ...),
// written against the Store and Subscriber interfaces and the Service only.
//
// redisstore runs it on a real redis-server, a real Redis Cluster and the
// embedded store (TestStoreContract, with its Redis-specific cases beside
// it); presencetest runs it on its in-memory MemStore, so that unit tests
// on MemStore stand for tests on Redis.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// Backend is a store under test, empty (or in a namespace of its own).
type Backend struct {
	Store presence.Store
	// NewSubscriber returns a Subscriber of Store's rooms, ready for
	// Subscribe, that hands h their events; the backend stops it when the
	// test ends.
	NewSubscriber func(h presence.EventHandler) presence.Subscriber
	// ReapNodes ends the held sessions of the node generations whose lease
	// lapsed before now less the store's skew allowance (250ms), as the
	// store's reaper does, and returns how many it ended. Nil: the node
	// lease cases are skipped.
	ReapNodes func(ctx context.Context, now time.Time) (int, error)
}

// Run runs every case of the contract, in parallel, each on a backend of
// its own.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, NewHarness(t, newBackend(t)))
		})
	}
}

// Sec is a second.
const Sec = time.Second

// Harness is a Service on a backend's Store, with a clock the test moves.
// One built of its exported fields alone has Beat, List, Member, As, Admin,
// Room and ReapAt (no clock, no subscriptions).
type Harness struct {
	T       testing.TB
	Store   presence.Store
	Svc     *presence.Service
	Org     string
	backend Backend
	now     atomic.Int64 // unix ns
	settles int
}

// NewHarness returns a harness on b, its clock at a fixed time, for org
// "acme", as node "n1@local".
func NewHarness(t testing.TB, b Backend) *Harness {
	t.Helper()
	h := &Harness{T: t, Store: b.Store, Org: "acme", backend: b}
	h.now.Store(time.UnixMilli(1_800_000_000_000).UnixNano())
	tokens, err := presence.NewTokens([]byte("storetest-secret-storetest-secret"))
	if err != nil {
		t.Fatal(err)
	}
	h.Svc = presence.NewService(b.Store, tokens, presence.ServiceConfig{Node: "n1@local", Now: h.Clock})
	return h
}

// Clock is the harness's clock.
func (h *Harness) Clock() time.Time { return time.Unix(0, h.now.Load()) }

// Advance moves the clock.
func (h *Harness) Advance(d time.Duration) { h.now.Add(int64(d)) }

// As returns a context for a verified user of the harness's org.
func (h *Harness) As(user string) context.Context {
	return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.Org, UserID: user, Verified: true})
}

// Admin returns a context for an admin of the harness's org.
func (h *Harness) Admin() context.Context {
	return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.Org, Admin: true})
}

// Room names a room of the harness's org.
func (h *Harness) Room(room string) presence.RoomRef {
	return presence.RoomRef{Org: h.Org, RoomID: room}
}

// Beat is a heartbeat of user's session in room through the Service.
func (h *Harness) Beat(user, room, session string, interval time.Duration) *presence.HeartbeatOutput {
	h.T.Helper()
	out, err := h.Svc.Heartbeat(h.As(user), presence.HeartbeatInput{RoomID: room, SessionID: session, Interval: interval})
	if err != nil {
		h.T.Fatalf("heartbeat %s/%s/%s: %v", user, room, session, err)
	}
	return out
}

// List lists the room a room token names.
func (h *Harness) List(token string) *presence.RoomList {
	h.T.Helper()
	l, err := h.Svc.List(context.Background(), token, 0)
	if err != nil {
		h.T.Fatalf("list: %v", err)
	}
	return l
}

// Member returns user as the room token's list shows it, or nil.
func (h *Harness) Member(token, user string) *presence.Member {
	h.T.Helper()
	for _, m := range h.List(token).Members {
		if m.UserID == user {
			return &m
		}
	}
	return nil
}

// Reap runs the store's Reap at the harness's clock.
func (h *Harness) Reap() int {
	h.T.Helper()
	return h.ReapAt(h.Clock())
}

// ReapAt runs the store's Reap as a reaper whose clock says now.
func (h *Harness) ReapAt(now time.Time) int {
	h.T.Helper()
	n, err := h.Store.Reap(context.Background(), now)
	if err != nil {
		h.T.Fatalf("reap: %v", err)
	}
	return n
}

// Events collects what a Subscriber delivers; it is a presence.EventHandler.
type Events struct {
	mu           sync.Mutex
	got          []presence.Event
	resubscribed []presence.RoomRef
}

// OnEvent records an event.
func (e *Events) OnEvent(ev presence.Event) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

// OnResubscribe records a restored subscription.
func (e *Events) OnResubscribe(r presence.RoomRef) {
	e.mu.Lock()
	e.resubscribed = append(e.resubscribed, r)
	e.mu.Unlock()
}

// All returns the events so far.
func (e *Events) All() []presence.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]presence.Event(nil), e.got...)
}

// Resubscribed returns the rooms reported restored so far.
func (e *Events) Resubscribed() []presence.RoomRef {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]presence.RoomRef(nil), e.resubscribed...)
}

// WaitFor polls until the events satisfy ok, for up to 10 s, and returns
// them.
func (e *Events) WaitFor(t testing.TB, what string, ok func([]presence.Event) bool) []presence.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.All()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; events: %v", what, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Subscribe follows a room's events through a Subscriber of the backend.
func (h *Harness) Subscribe(room string) *Events {
	h.T.Helper()
	e := &Events{}
	if err := h.backend.NewSubscriber(e).Subscribe(context.Background(), h.Room(room)); err != nil {
		h.T.Fatalf("subscribe: %v", err)
	}
	return e
}

// Settle returns every event of room that e got before now: it makes one
// more (a join of a user of its own) and waits for it, so it changes the
// room; call it last.
func (h *Harness) Settle(e *Events, room string) []presence.Event {
	h.T.Helper()
	h.settles++
	user := fmt.Sprintf("~settle%d", h.settles)
	h.Beat(user, room, user, 0)
	var before []presence.Event
	e.WaitFor(h.T, "the settling join", func(evs []presence.Event) bool {
		for i, ev := range evs {
			if ev.Kind == presence.EventJoin && ev.UserID == user {
				before = evs[:i]
				return true
			}
		}
		return false
	})
	return before
}

// IDs returns the userIds of a list, in order.
func IDs(l *presence.RoomList) []string {
	out := make([]string, len(l.Members))
	for i, m := range l.Members {
		out[i] = m.UserID
	}
	return out
}

// Online returns the userIds of the online members of a list, in order.
func Online(l *presence.RoomList) []string {
	var out []string
	for _, m := range l.Members {
		if m.Online {
			out = append(out, m.UserID)
		}
	}
	return out
}

// Count returns how many events are of kind.
func Count(evs []presence.Event, kind string) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// WantCode fails the test unless err has the code.
func WantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := presence.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// flipLast changes a token's second-to-last character (always a change).
func flipLast(tok string) string {
	c := byte('A')
	if tok[len(tok)-2] == 'A' {
		c = 'B'
	}
	return tok[:len(tok)-2] + string(c) + tok[len(tok)-1:]
}
