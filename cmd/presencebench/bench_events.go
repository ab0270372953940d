package main

// bench_events.go: the events Redis publishes in the rooms of a run's
// sockets, read with PSUBSCRIBE straight from Redis (not through a node):
// every leave and join the scripts published, once each, whatever the
// nodes deliver. Used by connections (no leave may be published while the
// sockets are open), expiry (every leave once after the kill) and
// sockchurn (one join and one leave per user).

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/redis/go-redis/v9"
)

// eventWatch counts the join and leave events of users <userPrefix><i>
// (0 <= i < n) published on the channels that match a pattern.
type eventWatch struct {
	pattern    string
	ps         *redis.PubSub
	userPrefix string
	start      time.Time
	// leaveAt[i] is the time of user i's first leave, in ns since start
	// (0: none yet).
	leaveAt []atomic.Int64
	// joinN[i] and leaveN[i] count user i's joins and leaves.
	joinN  []atomic.Int32
	leaveN []atomic.Int32
	leaves atomic.Int64 // distinct users with a leave
	dups   atomic.Int64 // leaves of a user that had left already
	joins  atomic.Int64
	others atomic.Int64 // leaves and joins of other users, and other events
	done   chan struct{}
}

// socketRoomsPattern is the PSUBSCRIBE pattern of the events channels of
// the rooms b.id("c", <number>) (not the churn rooms).
func (b *bench) socketRoomsPattern() string {
	const mark = "\x00"
	ch := b.c.Keys.Room(b.c.Room(b.id("c", 0) + mark)).Events
	before, after, _ := strings.Cut(ch, "0"+mark)
	return redisstore.GlobEscape(before) + "[0-9]*" + redisstore.GlobEscape(after)
}

// watchEvents subscribes to the events of the run's socket rooms (single
// Redis only: in Cluster mode events are sharded, and nil is returned) and
// counts them until close.
func (b *bench) watchEvents(ctx context.Context, n int, start time.Time) (*eventWatch, error) {
	if b.c.RDB == nil {
		if err := b.c.Connect(ctx); err != nil {
			return nil, err
		}
	}
	if _, ok := b.c.RDB.(*redis.Client); !ok {
		b.logf("Redis Cluster: events are not watched in Redis (sharded channels)")
		return nil, nil
	}
	w := &eventWatch{pattern: b.socketRoomsPattern(), userPrefix: strings.TrimSuffix(b.id("u", 0), "0"), start: start,
		leaveAt: make([]atomic.Int64, n), joinN: make([]atomic.Int32, n), leaveN: make([]atomic.Int32, n), done: make(chan struct{})}
	w.ps = b.c.RDB.PSubscribe(ctx, w.pattern)
	cctx, cancel := b.c.Call(ctx)
	_, err := w.ps.Receive(cctx) // the subscription's confirmation
	cancel()
	if err != nil {
		w.ps.Close()
		return nil, fmt.Errorf("PSUBSCRIBE %s: %w", w.pattern, err)
	}
	go func() {
		defer close(w.done)
		for {
			m, err := w.ps.ReceiveMessage(context.Background())
			if err != nil {
				return // closed
			}
			w.take(m.Payload)
		}
	}()
	return w, nil
}

func (w *eventWatch) take(payload string) {
	// The store's own decoder (the room is not needed for kind and user).
	e, err := redisstore.DecodeEvent(presence.RoomRef{}, []byte(payload))
	if err != nil {
		w.others.Add(1)
		return
	}
	i := -1
	if rest, ok := strings.CutPrefix(e.UserID, w.userPrefix); ok {
		if v, err := strconv.Atoi(rest); err == nil && v >= 0 && v < len(w.leaveAt) {
			i = v
		}
	}
	switch {
	case i < 0:
		w.others.Add(1)
	case e.Kind == presence.EventJoin:
		w.joins.Add(1)
		if i < len(w.joinN) {
			w.joinN[i].Add(1)
		}
	case e.Kind == presence.EventLeave:
		if i < len(w.leaveN) {
			w.leaveN[i].Add(1)
		}
		at := max(int64(time.Since(w.start)), 1)
		if w.leaveAt[i].CompareAndSwap(0, at) {
			w.leaves.Add(1)
		} else {
			w.dups.Add(1)
		}
	default:
		w.others.Add(1)
	}
}

// close stops watching (the counters stay readable).
func (w *eventWatch) close() {
	if w == nil {
		return
	}
	w.ps.Close()
	<-w.done
}
