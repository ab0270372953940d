package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
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
	// Its clock says it is up to date (replica.go): the lag bound does not
	// send the reads to the primary; MinVersion does.
	if err := stale.Client(t).Set(ctx, writer.Keys().Clock(), time.Now().Add(time.Hour).UnixMilli(), 0).Err(); err != nil {
		t.Fatal(err)
	}
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

// TestReplicaLagBound: a replica whose replication link is cut falls behind;
// once it may be further behind than ReplicaMaxLag, lists and counts read
// the primary (and the room's newest state shows), and after the heal they
// read the replica again. The lag is measured through the link itself (a
// clock the primary writes, read on the replica), so the cut holds it too.
func TestReplicaLagBound(t *testing.T) {
	primary := redistest.Start(t)
	link := redistest.StartProxy(t, primary.Addr())
	replica := redistest.StartReplicaVia(t, link.Addr())
	ctx := context.Background()
	prefix := redistest.UniquePrefix(t)
	store := redisstore.NewStore(primary.Client(t), redisstore.Config{Prefix: prefix, Reader: replica.Client(t),
		ReplicaMaxLag: 500 * time.Millisecond, ReplicaProbe: 50 * time.Millisecond})
	if err := store.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	state := func() (time.Duration, bool) {
		lag, stale, ok := store.ReplicaLag(time.Now())
		if !ok {
			t.Fatal("no replica")
		}
		return lag, stale
	}
	presencetest.Eventually(t, "the replica within the bound", 15*time.Second, func() bool { _, stale := state(); return !stale })
	room := presence.RoomRef{Org: "acme", RoomID: "lobby"}
	beat := func(user string) {
		t.Helper()
		now := time.Now()
		if _, err := store.Heartbeat(ctx, &presence.Heartbeat{Room: room, UserID: user, SessionID: "s-" + user, Now: now, Deadline: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	online := func() int64 {
		t.Helper()
		c, err := store.Count(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		return c.Online
	}
	beat("ada")
	presencetest.Eventually(t, "ada on the replica", 15*time.Second, func() bool { return online() == 1 })

	link.Cut()
	beat("bob")
	// Until the bound, the count may come from the replica (1); past it,
	// from the primary (2). It never takes longer than the bound and a
	// probe or two.
	start := time.Now()
	presencetest.Eventually(t, "bob counted once the replica is past the bound", 15*time.Second, func() bool { return online() == 2 })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the lag bound took %v to send reads to the primary", d)
	}
	if lag, stale := state(); !stale || lag < 500*time.Millisecond {
		t.Fatalf("lag %v stale %v during the cut", lag, stale)
	}
	if n, err := replica.Client(t).Exists(ctx, store.Keys().Room(room).Order()).Result(); err != nil || n != 1 {
		t.Fatalf("replica: %d %v", n, err)
	}
	l, err := store.List(ctx, room, presence.ListQuery{Limit: 10, Now: time.Now()})
	if err != nil || len(l.Members) != 2 {
		t.Fatalf("list during the cut: %+v %v; want both (from the primary)", l, err)
	}

	link.Heal()
	presencetest.Eventually(t, "the replica back within the bound", 15*time.Second, func() bool { _, stale := state(); return !stale })
	if lag, _ := state(); lag > 500*time.Millisecond {
		t.Fatalf("lag %v after the heal", lag)
	}
}
