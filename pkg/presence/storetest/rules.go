package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// ruleCases pin rules of the Store interface that the Service alone does
// not show.
var ruleCases = []testCase{
	{"GivenSessionEpochIsKept", func(t *testing.T, h *Harness) {
		ctx, room := context.Background(), h.Room("r")
		hb := &presence.Heartbeat{Room: room, UserID: "u1", SessionID: "s1", SessionEpoch: "epoch-1",
			Now: h.Clock(), Deadline: h.Clock().Add(time.Minute)}
		if res, err := h.Store.Heartbeat(ctx, hb); err != nil || res.SessionEpoch != "epoch-1" || res.RoomEpoch != "0" || res.Version != 1 {
			t.Fatalf("new session = %+v, %v", res, err)
		}
		hb.SessionEpoch = "epoch-2" // an existing session keeps its own
		if res, err := h.Store.Heartbeat(ctx, hb); err != nil || res.SessionEpoch != "epoch-1" {
			t.Fatalf("refresh = %+v, %v", res, err)
		}
		for _, epoch := range []string{"epoch-2", "epoch-1"} {
			if err := h.Store.EndSession(ctx, room, "s1", epoch, h.Clock()); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := h.Store.Count(ctx, room); err != nil || c.Sessions != 0 || c.Online != 0 || c.Version != 2 {
			t.Fatalf("count = %+v, %v", c, err)
		}
	}},
	{"SessionLimitPerUser", func(t *testing.T, h *Harness) {
		ctx, room := context.Background(), h.Room("r")
		hbs := make([]*presence.Heartbeat, 1024)
		for i := range hbs {
			hbs[i] = &presence.Heartbeat{Room: room, UserID: "u1", SessionID: fmt.Sprint("s", i), Now: h.Clock(), Deadline: h.Clock().Add(time.Minute)}
		}
		// In batches: each call has the store's per-call timeout, and 1,024
		// scripts in one pipeline come close to it on the embedded store
		// when the machine is busy.
		var errs []error
		for i := 0; i < len(hbs); i += 128 {
			_, e := h.Store.HeartbeatMany(ctx, hbs[i:min(i+128, len(hbs))])
			errs = append(errs, e...)
		}
		for i, err := range errs[:1023] {
			if err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
		WantCode(t, errs[1023], presence.ECONFLICT)
		c, err := h.Store.Count(ctx, room)
		if err != nil || c.Online != 1 || c.Sessions != 1023 || c.Version != 1 {
			t.Fatalf("count = %+v, %v", c, err)
		}
		l, err := h.Store.List(ctx, room, presence.ListQuery{Limit: 10, Now: h.Clock()})
		if err != nil || len(l.Members) != 1 || l.Members[0].Sessions != 1023 {
			t.Fatalf("list = %+v, %v", l, err)
		}
	}},
	{"RetentionForgetsOnTheNextChange", func(t *testing.T, h *Harness) {
		old := h.Beat("old", "lobby", "s1", 0)
		h.Svc.Disconnect(context.Background(), old.SessionToken)
		gone := h.Clock().UnixMilli()
		h.Advance(time.Hour)
		h.Svc.Disconnect(context.Background(), h.Beat("recent", "lobby", "s2", 0).SessionToken)
		ev := h.Subscribe("lobby")
		h.Advance(168*time.Hour - time.Minute)
		// recent left within the retention, old before it: the join of new
		// forgets old (an event with a version of its own), not recent.
		h.Beat("new", "lobby", "s3", 0)
		got := h.Settle(ev, "lobby")
		if kinds(got) != "join:new remove:old" || got[0].Version != 5 || got[1].Version != 6 || fmt.Sprintf("%+v", *got[1].Member) != fmt.Sprintf("%+v", presence.Member{UserID: "old"}) {
			t.Fatalf("events %+v", got)
		}
		if got := IDs(h.List(old.RoomToken)); !equal(got, []string{"new", "~settle1", "recent"}) {
			t.Fatalf("members %v (old left at %d)", got, gone)
		}
	}},
	{"RemoveRoomResets", func(t *testing.T, h *Harness) {
		ctx, room := context.Background(), h.Room("r")
		old := h.Beat("u1", "r", "s1", 0)
		ev := h.Subscribe("r")
		if err := h.Store.RemoveRoom(ctx, room, h.Clock()); err != nil {
			t.Fatal(err)
		}
		if c, err := h.Store.Count(ctx, room); err != nil || *c != (presence.RoomCount{RoomID: "r", Version: 2}) {
			t.Fatalf("count after removal = %+v, %v", c, err)
		}
		_, oldEpoch, _ := h.Svc.Tokens().ParseRoomToken(old.RoomToken)
		l, err := h.Store.List(ctx, room, presence.ListQuery{Epoch: oldEpoch, Limit: 10, Now: h.Clock()})
		if err != nil || !l.Stale || l.Version != 0 || len(l.Members) != 0 {
			t.Fatalf("list by the old epoch = %+v, %v", l, err)
		}
		again := h.Beat("u1", "r", "s1", 0)
		_, epoch, _ := h.Svc.Tokens().ParseRoomToken(again.RoomToken)
		if epoch == oldEpoch || again.Version != 3 {
			t.Fatalf("the room's new life: epoch %q (was %q), version %d", epoch, oldEpoch, again.Version)
		}
		reset := presence.Event{Room: room, Version: 2, Kind: presence.EventReset}
		if got := h.Settle(ev, "r"); len(got) != 2 || got[0] != reset || kinds(got[1:]) != "join:u1" {
			t.Fatalf("events %+v, want the reset then u1's join", got)
		}
	}},
	{"ProfileChangesAreUpdates", func(t *testing.T, h *Harness) {
		as := func(name string) context.Context {
			return presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.Org, UserID: "u1", Name: name, Verified: true})
		}
		ev := h.Subscribe("r")
		for _, name := range []string{"Ada", "Ada", "Ada L", ""} {
			if _, err := h.Svc.Heartbeat(as(name), presence.HeartbeatInput{RoomID: "r", SessionID: "s1"}); err != nil {
				t.Fatal(err)
			}
		}
		got := h.Settle(ev, "r")
		if kinds(got) != "join:u1 update:u1 update:u1" || got[0].Member.Name != "Ada" || got[1].Member.Name != "Ada L" || got[2].Member.Name != "" {
			t.Fatalf("events %+v", got)
		}
	}},
	{"EventsOnlyOfSubscribedRooms", func(t *testing.T, h *Harness) {
		a, b := h.Subscribe("a"), h.Subscribe("b")
		h.Beat("u1", "a", "s1", 0)
		h.Beat("u2", "b", "s2", 0)
		h.Beat("u3", "c", "s3", 0)
		if got := h.Settle(a, "a"); kinds(got) != "join:u1" || got[0].Room != h.Room("a") {
			t.Fatalf("events of a: %+v", got)
		}
		if got := h.Settle(b, "b"); kinds(got) != "join:u2" || got[0].Room != h.Room("b") {
			t.Fatalf("events of b: %+v", got)
		}
	}},
	{"ListQueries", func(t *testing.T, h *Harness) {
		ctx, room := context.Background(), h.Room("r")
		for _, u := range []string{"u1", "u2", "u3"} {
			h.Beat(u, "r", u, 0)
		}
		h.Svc.SignOut(h.As("u2"), "", false)
		list := func(q presence.ListQuery) []string {
			t.Helper()
			q.Now = h.Clock()
			l, err := h.Store.List(ctx, room, q)
			if err != nil || l.Stale || l.Version != 4 {
				t.Fatalf("list %+v = %+v, %v", q, l, err)
			}
			return IDs(l)
		}
		for _, c := range []struct {
			q    presence.ListQuery
			want []string
		}{
			{presence.ListQuery{Limit: 10}, []string{"u1", "u3", "u2"}},
			{presence.ListQuery{Limit: 10, Epoch: "0"}, []string{"u1", "u3", "u2"}},
			{presence.ListQuery{Limit: 2}, []string{"u1", "u3"}},
			{presence.ListQuery{Limit: 10, OnlineOnly: true}, []string{"u1", "u3"}},
		} {
			if got := list(c.q); !equal(got, c.want) {
				t.Fatalf("list %+v = %v, want %v", c.q, got, c.want)
			}
		}
		if l, err := h.Store.List(ctx, room, presence.ListQuery{Limit: 10, Epoch: "x", Now: h.Clock()}); err != nil || !l.Stale {
			t.Fatalf("list by another epoch = %+v, %v", l, err)
		}
		if c, err := h.Store.Count(ctx, h.Room("nowhere")); err != nil || *c != (presence.RoomCount{RoomID: "nowhere"}) {
			t.Fatalf("count of an unknown room = %+v, %v", c, err)
		}
		WantCode(t, h.Store.SetData(ctx, h.Room("nowhere"), "u1", []byte(`1`), h.Clock()), presence.ENOTFOUND)
	}},
}
