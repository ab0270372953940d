package presencetest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/presence/storetest"
)

// The MemStore's own API: subscriptions and the faults a test injects.

func join(t *testing.T, s *presencetest.MemStore, room presence.RoomRef, user string) presence.HeartbeatResult {
	t.Helper()
	now := time.UnixMilli(1_800_000_000_000)
	res, err := s.Heartbeat(context.Background(), &presence.Heartbeat{Room: room, UserID: user, SessionID: "s-" + user, Now: now, Deadline: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func versions(evs []presence.Event) string {
	out := ""
	for _, e := range evs {
		out += fmt.Sprintf("%s:%s@%d ", e.Kind, e.UserID, e.Version)
	}
	return out
}

func TestMemSubscriber(t *testing.T) {
	s := presencetest.NewMemStore(presencetest.MemConfig{})
	ctx, a, b := context.Background(), presence.RoomRef{Org: "o", RoomID: "a"}, presence.RoomRef{Org: "o", RoomID: "b"}
	ev := &storetest.Events{}
	sub := s.NewSubscriber(ev)
	join(t, s, a, "before") // published before Subscribe: never delivered
	if err := sub.Subscribe(ctx, a); err != nil {
		t.Fatal(err)
	}
	join(t, s, a, "u1")
	join(t, s, b, "other") // not subscribed
	// Delivered before the call returned, in order.
	if got := versions(ev.All()); got != "join:u1@2 " {
		t.Fatalf("events %s", got)
	}
	s.Resubscribe()
	if got := ev.Resubscribed(); len(got) != 1 || got[0] != a {
		t.Fatalf("resubscribed %v", got)
	}
	if err := sub.Unsubscribe(ctx, a); err != nil {
		t.Fatal(err)
	}
	join(t, s, a, "u2")
	if got := versions(ev.All()); got != "join:u1@2 " {
		t.Fatalf("events after Unsubscribe %s", got)
	}
	sub.Close()
	if err := sub.Subscribe(ctx, a); err == nil {
		t.Fatal("a closed subscriber subscribed")
	}
	if got := versions(s.Events()); got != "join:before@1 join:u1@2 join:other@1 join:u2@3 " {
		t.Fatalf("log %s", got)
	}
}

func TestMemStoreFaults(t *testing.T) {
	s := presencetest.NewMemStore(presencetest.MemConfig{})
	ctx, room := context.Background(), presence.RoomRef{Org: "o", RoomID: "r"}
	ev := &storetest.Events{}
	if err := s.NewSubscriber(ev).Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}

	t.Run("Fail", func(t *testing.T) {
		s.Fail(presencetest.ErrUnavailable)
		_, errs := s.HeartbeatMany(ctx, []*presence.Heartbeat{{Room: room, UserID: "u", SessionID: "s"}, {Room: room, UserID: "v", SessionID: "t"}})
		if presence.ErrorCode(errs[0]) != presence.EUNAVAILABLE || presence.ErrorCode(errs[1]) != presence.EUNAVAILABLE {
			t.Fatalf("errors %v", errs)
		}
		if err := s.Ping(ctx); !errors.Is(err, presencetest.ErrUnavailable) {
			t.Fatalf("ping: %v", err)
		}
		s.Fail(nil)
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		s.FailFunc(func(op string) error {
			if op == "Count" {
				return boom
			}
			return nil
		})
		if _, err := s.Count(ctx, room); err != boom {
			t.Fatalf("count: %v", err)
		}
		s.FailFunc(nil)
		if c, err := s.Count(ctx, room); err != nil || c.Version != 0 {
			t.Fatalf("a failed call changed something: %+v, %v", c, err)
		}
		if s.Calls("Count") != 2 || s.Calls("HeartbeatMany") != 1 {
			t.Fatalf("calls: Count %d, HeartbeatMany %d", s.Calls("Count"), s.Calls("HeartbeatMany"))
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Ping(cancelled); presence.ErrorCode(err) != presence.EUNAVAILABLE {
			t.Fatalf("ping with a cancelled context: %v", err)
		}
	})

	t.Run("DropEvents", func(t *testing.T) {
		s.DropEvents(2)
		for _, u := range []string{"u1", "u2", "u3"} {
			join(t, s, room, u)
		}
		if got := versions(ev.All()); got != "join:u3@3 " {
			t.Fatalf("events %s, want a gap before v3", got)
		}
		if n := len(s.Events()); n != 3 {
			t.Fatalf("%d events logged", n)
		}
	})

	t.Run("LoseData", func(t *testing.T) {
		if _, err := s.RenewLease(ctx, "n@r/1", time.Time{}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if lost, err := s.LostData(ctx); err != nil || lost {
			t.Fatalf("lost %v, %v before any loss", lost, err)
		}
		s.Restart()
		if got := ev.Resubscribed(); len(got) != 1 {
			t.Fatalf("resubscribed %v", got)
		}
		for i, want := range []bool{true, false} {
			if lost, err := s.LostData(ctx); err != nil || lost != want {
				t.Fatalf("LostData #%d = %v, %v", i+1, lost, err)
			}
		}
		if _, ok := s.Lease("n@r/1"); ok {
			t.Fatal("the lease survived")
		}
		if res := join(t, s, room, "u4"); res.Version != 1 || res.RoomEpoch != "0" {
			t.Fatalf("after the loss: %+v, want version 1 again", res)
		}
		if got := versions(ev.All()); got != "join:u3@3 join:u4@1 " {
			t.Fatalf("events %s", got)
		}
	})
}
