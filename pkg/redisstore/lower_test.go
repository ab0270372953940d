package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// A heartbeat lowers the deadline index only when its script lowered the
// room's earliest deadline; a ZADD LT that failed is sent by the next Reap.
func TestDeadlineIndexLowering(t *testing.T) {
	s, rdb := openQuietStore(t)
	ctx := context.Background()
	room := presence.RoomRef{Org: "o", RoomID: "r"}
	tag, idx := Tag(room), s.keys.Deadlines(Tag(room))
	now := time.Now()
	beat := func(sid string, d time.Duration) {
		t.Helper()
		hb := &presence.Heartbeat{Room: room, UserID: "u-" + sid, SessionID: sid, Now: now, Deadline: now.Add(d)}
		if _, err := s.Heartbeat(ctx, hb); err != nil {
			t.Fatal(err)
		}
	}
	score := func() int64 {
		t.Helper()
		v, err := rdb.ZScore(ctx, idx, tag).Result()
		if err != nil {
			t.Fatal(err)
		}
		return int64(v)
	}
	beat("s1", time.Minute) // a new room: lowered
	if got, want := score(), now.Add(time.Minute).UnixMilli(); got != want {
		t.Fatalf("index %d, want %d", got, want)
	}
	beat("s1", 2*time.Minute) // a keep-alive: the index stays (it may be lower than x)
	beat("s2", 3*time.Minute)
	if got, want := score(), now.Add(time.Minute).UnixMilli(); got != want {
		t.Fatalf("index %d after keep-alives, want %d", got, want)
	}
	// The index says later than x: as if a lowering ZADD LT had failed.
	rdb.ZAdd(ctx, idx, redis.Z{Score: float64(now.Add(time.Hour).UnixMilli()), Member: tag})
	s.lower.add([]*presence.Heartbeat{{Room: room, Deadline: now.Add(30 * time.Second)}})
	if _, err := s.Reap(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got, want := score(), now.Add(30*time.Second).UnixMilli(); got != want {
		t.Fatalf("index %d after Reap, want %d (the pending lowering)", got, want)
	}
	if s.lower.m != nil {
		t.Fatalf("still pending: %v", s.lower.m)
	}
}

// openQuietStore opens a Store on a Redis of its own whose reaper does not
// run by itself (the test calls Reap); it is closed when the test ends.
func openQuietStore(t *testing.T) (*Store, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	s := NewStore(rdb, Config{Prefix: redistest.UniquePrefix(t), ReapInterval: time.Hour})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rdb
}
