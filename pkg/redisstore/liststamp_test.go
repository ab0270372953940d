package redisstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// The list stamp cases run with the rest of the Redis-specific contract, on
// every backend (TestStoreContract).
func init() {
	redisContract = append(redisContract, struct {
		name string
		run  func(t *testing.T, h *harness)
	}{"ListStamp", testListStamp})
}

// stamps is what the test knows of one list query: its last stamp and body.
type stamps struct {
	t     *testing.T
	h     *harness
	room  presence.RoomRef
	q     presence.ListQuery
	stamp string
	body  string
}

// read lists the room and reads its stamp: the stamp read alone is the one
// the list comes with (nothing changed in between).
func (s *stamps) read() (stamp, body string) {
	s.t.Helper()
	ctx := context.Background()
	q := s.q
	q.Now = s.h.clock()
	st, err := s.h.store.ListStamp(ctx, s.room, q)
	if err != nil {
		s.t.Fatal(err)
	}
	l, err := s.h.store.List(ctx, s.room, q)
	if err != nil {
		s.t.Fatal(err)
	}
	if l.Stamp != st {
		s.t.Fatalf("ListStamp %q, List's stamp %q (nothing changed)", st, l.Stamp)
	}
	b, _ := json.Marshal(l)
	return st, string(b)
}

// changed checks that the list changed since the last check, and with it
// the stamp (never the same stamp for another body); same checks that
// neither did.
func (s *stamps) changed(what string) {
	s.t.Helper()
	st, body := s.read()
	if body == s.body {
		s.t.Fatalf("%s: the list did not change: %s", what, body)
	}
	if st == s.stamp {
		s.t.Fatalf("%s: the stamp %q did not change, the list did:\n%s\n%s", what, st, s.body, body)
	}
	s.stamp, s.body = st, body
}

func (s *stamps) same(what string) {
	s.t.Helper()
	st, body := s.read()
	if body != s.body || st != s.stamp {
		s.t.Fatalf("%s: list or stamp changed: %q %s, was %q %s", what, st, body, s.stamp, s.body)
	}
}

func testListStamp(t *testing.T, h *harness) {
	ctx := context.Background()
	room := presence.RoomRef{Org: h.org, RoomID: "stamped"}
	a := h.beat("ada", "stamped", "a1", 10*sec)
	epoch := func() string { // the room token's epoch
		r, e, err := h.contract().Svc.Tokens().ParseRoomToken(a.RoomToken)
		if err != nil || r != room {
			t.Fatal(err)
		}
		return e
	}()
	all := &stamps{t: t, h: h, room: room, q: presence.ListQuery{Epoch: epoch, Limit: 10}}
	online := &stamps{t: t, h: h, room: room, q: presence.ListQuery{Limit: 10, OnlineOnly: true}}
	for _, s := range []*stamps{all, online} {
		s.stamp, s.body = s.read()
	}
	h.beat("ada", "stamped", "a1", 10*sec) // a keep-alive changes nothing
	all.same("keep-alive")
	h.advance(time.Second)
	all.same("time passing")

	h.beat("bob", "stamped", "b1", 10*sec)
	all.changed("join")
	online.changed("join")

	h.beat("ada", "stamped", "a2", 10*sec)
	all.changed("second tab")
	online.changed("second tab")

	// A tab of ada closes and bob opens a second one: the version and the
	// session count are as before, the list is not.
	n := h.contract().Member(a.RoomToken, "ada").Sessions
	if err := h.svc.EndSession(ctx, room, "a2", epochOfSession(t, h, room, "a2")); err != nil {
		t.Fatal(err)
	}
	h.beat("bob", "stamped", "b2", 10*sec)
	if h.contract().Member(a.RoomToken, "ada").Sessions != n-1 {
		t.Fatal("a2 did not end")
	}
	all.changed("a tab closed, another opened")

	if err := h.svc.SetData(h.as("bob"), "stamped", "bob", json.RawMessage(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	all.changed("data")

	out := h.beat("cy", "stamped", "c1", 10*sec)
	all.changed("join")
	if err := h.svc.Disconnect(ctx, out.SessionToken); err != nil {
		t.Fatal(err)
	}
	all.changed("leave")
	online.changed("join and leave") // the version

	// cy is hidden once offline for longer than the retention (168h by
	// default), though nothing changed in Redis.
	h.advance(168*time.Hour - 2*time.Second)
	all.same("just within the retention")
	h.advance(3 * time.Second)
	all.changed("retention")
	online.same("retention (online only)")

	if err := h.svc.RemoveMember(h.admin(), "stamped", "bob"); err != nil {
		t.Fatal(err)
	}
	all.changed("removal")

	if err := h.svc.RemoveRoom(h.admin(), "stamped"); err != nil {
		t.Fatal(err)
	}
	all.changed("room removed") // with the old epoch: an empty, stale list
	if all.stamp != "-" {
		t.Fatalf("stale stamp %q", all.stamp)
	}
	online.changed("room removed")
}

// epochOfSession reads a session's epoch from the room hash.
func epochOfSession(t *testing.T, h *harness, room presence.RoomRef, sid string) string {
	t.Helper()
	sessions, err := h.store.Sessions(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.SessionID == sid {
			return s.Epoch
		}
	}
	t.Fatalf("no session %s", sid)
	return ""
}

// TestListStampAfterLostData: Redis lost the room and it was made again,
// its version counting from 1 again, with the same counts but another
// order: the stamp differs.
func TestListStampAfterLostData(t *testing.T) {
	srv := redistest.Start(t)
	for _, b := range []backend{{name: "redis", addr: srv.Addr(), srv: srv}} {
		h := newHarness(t, b, redisstore.Config{})
		room := presence.RoomRef{Org: h.org, RoomID: "lost"}
		s := &stamps{t: t, h: h, room: room, q: presence.ListQuery{Limit: 10}}
		h.beat("ada", "lost", "a1", 10*sec)
		h.beat("bob", "lost", "b1", 10*sec)
		s.stamp, s.body = s.read()
		if err := h.rdb.(*redis.Client).FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		h.advance(time.Second)
		h.beat("bob", "lost", "b1", 10*sec)
		h.beat("ada", "lost", "a1", 10*sec)
		s.changed("made again in another order")
	}
}
