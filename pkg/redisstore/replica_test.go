package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
)

// TestListMinVersion: lists read from a replica that lags (here: a Redis
// that holds an older copy of the room and never catches up) are read again
// from the primary when they are older than ListQuery.MinVersion, so that a
// WebSocket joiner's snapshot holds its own join and a sync reaches the
// event that asked for it.
func TestListMinVersion(t *testing.T) {
	primary, stale := redistest.Start(t), redistest.Start(t)
	ctx := context.Background()
	nowFixed := time.UnixMilli(1_800_000_000_000)
	prefix := redistest.UniquePrefix(t)
	writer := redisstore.NewStore(primary.Client(t), redisstore.Config{Prefix: prefix})
	if err := writer.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close() })
	room := presence.RoomRef{Org: "acme", RoomID: "lobby"}
	beat := func(user string) int64 {
		t.Helper()
		now := nowFixed
		res, err := writer.Heartbeat(ctx, &presence.Heartbeat{Room: room, UserID: user, SessionID: "s-" + user, Now: now, Deadline: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return res.Version
	}
	beat("ada")
	// The stale "replica" holds the room as it was after ada's join.
	for _, k := range []string{writer.Keys().Room(room).Hash(), writer.Keys().Room(room).Order(), writer.Keys().Room(room).Profile()} {
		dump, err := primary.Client(t).Dump(ctx, k).Result()
		if err != nil {
			continue // a key the room does not have yet
		}
		if err := stale.Client(t).RestoreReplace(ctx, k, 0, dump).Err(); err != nil {
			t.Fatal(err)
		}
	}
	v := beat("bob")
	reader := redisstore.NewStore(primary.Client(t), redisstore.Config{Prefix: prefix, Reader: stale.Client(t)})
	if err := reader.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	q := presence.ListQuery{Limit: 100, Now: nowFixed}
	l, err := reader.List(ctx, room, q)
	if err != nil || l.Version != v-1 || len(l.Members) != 1 {
		t.Fatalf("from the stale reader: %+v %v; want version %d with ada only", l, err, v-1)
	}
	q.MinVersion = v
	l, err = reader.List(ctx, room, q)
	if err != nil || l.Version != v || len(l.Members) != 2 {
		t.Fatalf("with MinVersion %d: %+v %v; want the primary's list", v, l, err)
	}
}
