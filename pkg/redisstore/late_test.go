package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// TestLateHeartbeatChangesNothing: a heartbeat (or a data update) that Redis runs later than
// the caller's call timeout (+ 1 s for the clocks) - delayed in the
// network, or retried after its caller gave up - is refused (unavailable)
// and changes nothing: it never creates a session or sets a deadline back.
// Its "now" stands for the moment it was sent; Redis's clock is the wall
// clock here.
func TestLateHeartbeatChangesNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			store, ctx := openStore(t, b)
			room := presence.RoomRef{Org: "acme", RoomID: "r"}
			beat := func(sent time.Time, deadline time.Time) error {
				_, err := store.Heartbeat(ctx, &presence.Heartbeat{Room: room, UserID: "ada", SessionID: "s1", Now: sent, Deadline: deadline})
				return err
			}
			now := time.Now()
			if err := beat(now, now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			// Sent 10 s ago: late. It would set the deadline back to 10 s
			// ago + 25 s.
			late := now.Add(-10 * time.Second)
			err := beat(late, late.Add(25*time.Second))
			if presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late heartbeat: %v, want unavailable", err)
			}
			// The session still has its deadline: a reaper 40 s from now
			// (past the late deadline, before the real one) ends nothing.
			if n, err := store.Reap(ctx, now.Add(40*time.Second)); err != nil || n != 0 {
				t.Fatalf("reaped %d (%v): the late heartbeat moved the deadline back", n, err)
			}
			// A late heartbeat of a new session creates nothing.
			_, err = store.Heartbeat(ctx, &presence.Heartbeat{Room: room, UserID: "bob", SessionID: "s2", Now: late, Deadline: late.Add(time.Hour)})
			if presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late heartbeat of a new session: %v", err)
			}
			c, err := store.Count(ctx, room)
			if err != nil || c.Online != 1 || c.Sessions != 1 {
				t.Fatalf("count %+v %v", c, err)
			}
			// A late data update would overwrite newer data: refused too.
			if err := store.SetData(ctx, room, "ada", []byte(`"new"`), now); err != nil {
				t.Fatal(err)
			}
			if err := store.SetData(ctx, room, "ada", []byte(`"old"`), late); presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late data update: %v", err)
			}
			l, err := store.List(ctx, room, presence.ListQuery{Limit: 10, Now: now})
			if err != nil || len(l.Members) != 1 || string(l.Members[0].Data) != `"new"` {
				t.Fatalf("list %+v %v: want the newer data", l, err)
			}
		})
	}
}

// TestLateEndChangesNothing: a sign-out, a disconnect or a room removal
// that Redis runs after its bound (sent 10 s ago, delayed in the network or
// retried) is refused and ends nothing: the user who went on heartbeating
// stays online.
func TestLateEndChangesNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			store, ctx := openStore(t, b)
			room := presence.RoomRef{Org: "acme", RoomID: "r"}
			now := time.Now()
			res, err := store.Heartbeat(ctx, &presence.Heartbeat{Room: room, UserID: "ada", SessionID: "s1", Now: now, Deadline: now.Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			late := now.Add(-10 * time.Second)
			if _, err := store.EndUser(ctx, room, "ada", false, late); presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late sign-out: %v, want unavailable", err)
			}
			if _, err := store.EndUser(ctx, room, "ada", true, late); presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late removal of the member: %v, want unavailable", err)
			}
			if err := store.EndSession(ctx, room, "s1", res.SessionEpoch, late); presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late disconnect: %v, want unavailable", err)
			}
			if err := store.RemoveRoom(ctx, room, late); presence.ErrorCode(err) != presence.EUNAVAILABLE {
				t.Fatalf("late room removal: %v, want unavailable", err)
			}
			l, err := store.List(ctx, room, presence.ListQuery{Limit: 10, Now: now})
			if err != nil || len(l.Members) != 1 || !l.Members[0].Online || l.Members[0].Sessions != 1 || l.Version != res.Version {
				t.Fatalf("list %+v %v: want ada online at version %d", l, err, res.Version)
			}
			// In time, the same calls work.
			if ok, err := store.EndUser(ctx, room, "ada", false, time.Now()); err != nil || !ok {
				t.Fatalf("sign-out in time: %v %v", ok, err)
			}
		})
	}
}

// openStore opens a store on backend b, closed when the test ends.
func openStore(t *testing.T, b backend) (*redisstore.Store, context.Context) {
	t.Helper()
	store, _ := newStore(t, b, redisstore.Config{})
	ctx := context.Background()
	if err := store.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, ctx
}

// TestLateHeartbeatThroughCut: a heartbeat held in a cut link (netproxy)
// reaches Redis after the heal, when the user has gone on elsewhere (its
// next heartbeat went through another region). Without the bound it would
// set the session's deadline back, and the reaper would end a live session.
func TestLateHeartbeatThroughCut(t *testing.T) {
	primary := redistest.Start(t)
	link := redistest.StartProxy(t, primary.Addr())
	ctx := context.Background()
	prefix := redistest.UniquePrefix(t)
	near := redisstore.NewStore(primary.Client(t), redisstore.Config{Prefix: prefix})
	if err := near.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close() })
	// The far store is not opened (no background calls): its one
	// connection carries only the heartbeat.
	farClient := redis.NewClient(&redis.Options{Addr: link.Addr(), PoolSize: 1, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { farClient.Close() })
	far := redisstore.NewStore(farClient, redisstore.Config{Prefix: prefix, CallTimeout: 500 * time.Millisecond})
	room := presence.RoomRef{Org: "acme", RoomID: "r"}
	beat := func(s *redisstore.Store, now time.Time, timeout time.Duration) error {
		_, err := s.Heartbeat(ctx, &presence.Heartbeat{Room: room, UserID: "ada", SessionID: "s1", Now: now, Deadline: now.Add(timeout)})
		return err
	}
	if err := beat(far, time.Now(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	link.Cut()
	sent := time.Now()
	if err := beat(far, sent, 5*time.Second); presence.ErrorCode(err) != presence.EUNAVAILABLE {
		t.Fatalf("heartbeat in the cut: %v, want unavailable", err)
	}
	// The user goes on through the near region, with a longer deadline.
	if err := beat(near, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	before := primary.Errors(t, "LATE")
	// Past the held call's bound (its now + 0.5 s + 1 s), the link heals.
	time.Sleep(time.Until(sent.Add(2 * time.Second)))
	link.Heal()
	presencetest.Eventually(t, "the held heartbeat refused as late", 5*time.Second, func() bool { return primary.Errors(t, "LATE") > before })
	// 10 s after it was sent (past the deadline it carried): nothing to reap.
	if n, err := near.Reap(ctx, sent.Add(10*time.Second)); err != nil || n != 0 {
		t.Fatalf("reaped %d (%v): the late heartbeat set the deadline back", n, err)
	}
}
