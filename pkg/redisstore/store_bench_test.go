package redisstore_test

// Benchmarks of the store's hot paths against a real redis-server (started
// by redistest; nothing is mocked):
//
//	go test -run XXX -bench . -benchtime 2s ./pkg/redisstore
//
// Each heartbeat is one pipeline (the script, the deadline index, the user's
// room index); the Parallel variants run many goroutines, so the batcher
// groups them into shared pipelines, as under HTTP load.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// benchStore is a Store on its own redis-server. open starts the batcher
// (and the reaper); without it heartbeats go out one by one.
func benchStore(b *testing.B, open bool) *redisstore.Store {
	b.Helper()
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	b.Cleanup(func() { rdb.Close() })
	s := redisstore.NewStore(rdb, redisstore.Config{Prefix: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := s.EnsureSecret(context.Background(), ""); err != nil {
		b.Fatal(err)
	}
	if open {
		if err := s.Open(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
	}
	return s
}

func benchHeartbeat(room, user, session string, now time.Time, interval time.Duration) *presence.Heartbeat {
	return &presence.Heartbeat{
		Room: presence.RoomRef{Org: "bench", RoomID: room}, UserID: user, SessionID: session,
		Now: now, Deadline: now.Add(interval * 5 / 2), Node: "bench@local",
	}
}

// BenchmarkHeartbeatNew: a new session each time (a join, with its event),
// over 1,000 rooms.
func BenchmarkHeartbeatNew(b *testing.B) {
	s := benchStore(b, true)
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u := fmt.Sprint("u", i)
		if _, err := s.Heartbeat(ctx, benchHeartbeat(fmt.Sprint("r", i%1000), u, "s"+u, now, time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}

// refreshSessions creates n sessions over rooms rooms and returns them.
func refreshSessions(b *testing.B, s *redisstore.Store, n, rooms int) []*presence.Heartbeat {
	b.Helper()
	hbs := make([]*presence.Heartbeat, n)
	now := time.Now()
	for i := range hbs {
		u := fmt.Sprint("u", i)
		hbs[i] = benchHeartbeat(fmt.Sprint("r", i%rooms), u, "s"+u, now, time.Hour)
	}
	for i := 0; i < n; i += 500 {
		_, errs := s.HeartbeatMany(context.Background(), hbs[i:min(i+500, n)])
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	return hbs
}

// BenchmarkHeartbeatRefresh: keep-alives of 10,000 existing sessions over
// 100 rooms (nothing changes, nothing is published), one at a time.
func BenchmarkHeartbeatRefresh(b *testing.B) {
	s := benchStore(b, true)
	hbs := refreshSessions(b, s, 10000, 100)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Heartbeat(ctx, hbs[i%len(hbs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeartbeatRefreshParallel: the same keep-alives from 64
// goroutines, as concurrent HTTP requests do: the batcher shares pipelines.
func BenchmarkHeartbeatRefreshParallel(b *testing.B) {
	s := benchStore(b, true)
	hbs := refreshSessions(b, s, 10000, 100)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1)) % len(hbs)
			if _, err := s.Heartbeat(ctx, hbs[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHeartbeatManyRefresh: one pipeline of 256 keep-alives (the
// batcher's largest), reported per heartbeat.
func BenchmarkHeartbeatManyRefresh(b *testing.B) {
	s := benchStore(b, false)
	hbs := refreshSessions(b, s, 10000, 100)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := (i * 256) % (len(hbs) - 256)
		_, errs := s.HeartbeatMany(ctx, hbs[off:off+256])
		if errs[0] != nil {
			b.Fatal(errs[0])
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/heartbeat")
}

// BenchmarkList10k: the first 104 members (the default limit) of a room of
// 10,000 online members.
func BenchmarkList10k(b *testing.B) {
	s := benchStore(b, false)
	refreshSessions(b, s, 10000, 1)
	room := presence.RoomRef{Org: "bench", RoomID: "r0"}
	ctx := context.Background()
	l, err := s.List(ctx, room, presence.ListQuery{Limit: 104})
	if err != nil || len(l.Members) != 104 {
		b.Fatalf("list: %v %v", l, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.List(ctx, room, presence.ListQuery{Limit: 104}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReap: one reaper pass that ends 1,000 expired sessions over 100
// rooms (a leave each, published); the sessions are made again, untimed,
// before each pass.
func BenchmarkReap(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		hbs := make([]*presence.Heartbeat, 1000)
		for j := range hbs {
			u := fmt.Sprint("u", j)
			hbs[j] = benchHeartbeat(fmt.Sprintf("i%d-r%d", i, j%100), u, "s"+u, t0, time.Second)
		}
		for _, err := range func() []error { _, e := s.HeartbeatMany(ctx, hbs); return e }() {
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		n, err := s.Reap(ctx, t0.Add(10*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		if n != 1000 {
			b.Fatalf("reaped %d sessions, want 1000", n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/session")
}
