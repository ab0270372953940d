package redisstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// The deadline index protocol. Each shard of the index is a sorted set of
// room tags whose score is at most the room's earliest session deadline (it
// may be lower: then the reaper visits the room early and corrects it).
// Inside the room, the field x plays the same part for its sessions: at
// most their earliest deadline; reap.lua scans them when it is due.
//
//   - A heartbeat runs its script, then, if the script lowered the room's x
//     (a new room, or a deadline earlier than all others), ZADD LT deadline
//     (in that order). If that ZADD LT fails, the next Reap sends it.
//   - The reaper takes the rooms due by now, (1) runs reap.lua on each, which
//     returns the room's new earliest deadline, (2) sets the index to it (or
//     removes the room), (3) reads each room's earliest deadline again and
//     ZADD LTs it.
//
// Step 3 closes the race with a heartbeat whose script ran after (1) but
// whose ZADD LT ran before (2): either that script ran before (3) and (3)
// sees its deadline, or it ran after (3), and then its ZADD LT comes after
// (2). So a short session that joins a room of long ones is never hidden
// behind the long deadlines.

const (
	reapRooms    = 256  // rooms per index read
	reapSessions = 1000 // sessions per room per script run
	reapRounds   = 16   // index reads per shard per pass
)

// Reap ends every session whose deadline is at or before now, in the rooms
// the deadline index says are due. It returns the number of sessions ended.
func (s *Store) Reap(ctx context.Context, now time.Time) (int, error) {
	if err := s.lowerPending(ctx); err != nil {
		return 0, s.wrap("reap", err)
	}
	total := 0
	for shard := 0; shard < s.keys.NumShards(); shard++ {
		for round := 0; round < reapRounds; round++ {
			n, more, err := s.reapShard(ctx, shard, now)
			total += n
			if err != nil {
				return total, s.wrap("reap", err)
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

func (s *Store) reapShard(ctx context.Context, shard int, now time.Time) (int, bool, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	idx := s.keys.DeadlineShard(shard)
	ms := now.UnixMilli()
	tags, err := s.rdb.ZRangeByScore(ctx, idx, &redis.ZRangeBy{Min: "-inf", Max: itoa(ms), Count: reapRooms}).Result()
	if err != nil || len(tags) == 0 {
		return 0, false, err
	}
	type dueRoom struct {
		RoomKeys
		room presence.RoomRef
	}
	rooms := make([]dueRoom, 0, len(tags))
	for _, tag := range tags {
		r, ok := ParseTag(tag)
		if !ok {
			s.rdb.ZRem(ctx, idx, tag)
			continue
		}
		rooms = append(rooms, dueRoom{s.keys.Room(r), r})
	}
	// (1) reap each due room.
	res := make([]*redis.Cmd, len(rooms))
	if err := s.pipelined(ctx, func(p redis.Pipeliner) {
		for i, rk := range rooms {
			keys, args := s.roomCall(rk.RoomKeys, ms, rk.Events, s.pub, s.ttl, reapSessions)
			res[i] = s.reap.EvalSha(ctx, p, keys, args...)
		}
	}); err != nil {
		return 0, false, err
	}
	ended, more := 0, len(tags) == reapRooms
	var hooked []string
	var steps []userStep // users who went offline, or left pending
	defer func() { s.syncUsers(ctx, steps) }()
	// (2) set the index to each room's new earliest deadline.
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rk := range rooms {
			all, err := res[i].Slice()
			if err != nil || len(all) < 2 {
				continue
			}
			v := [2]int64{toInt(all[0]), toInt(all[1])}
			steps = append(steps, stepsOf(rooms[i].room, ms, changedUsers(all, 2))...)
			ended += int(v[0])
			if v[0] > 0 {
				hooked = append(hooked, rk.Tag)
			}
			if v[1] < 0 {
				p.ZRem(ctx, idx, rk.Tag)
				continue
			}
			if v[1] <= ms {
				more = true
			}
			p.ZAdd(ctx, idx, redis.Z{Score: float64(v[1]), Member: rk.Tag})
		}
		return nil
	}); err != nil {
		return ended, false, err
	}
	if s.hooks != nil {
		s.indexHooked(ctx, hooked...)
	}
	// (3) read the earliest deadlines again and lower the index where needed.
	firsts := make([]*redis.StringCmd, len(rooms))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rk := range rooms {
			firsts[i] = p.HGet(ctx, rk.Hash(), "x")
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return ended, false, err
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rk := range rooms {
			if x, err := firsts[i].Int64(); err == nil {
				p.ZAddLT(ctx, idx, redis.Z{Score: float64(x), Member: rk.Tag})
			}
		}
		return nil
	})
	return ended, more, err
}

// runReaper reaps every ReapInterval (with jitter, so that nodes spread out)
// until ctx is done, and keeps the shared token secret in Redis.
func (s *Store) runReaper(ctx context.Context) {
	var lastErr time.Time
	lastSecret := time.Now()
	for {
		d := s.cfg.ReapInterval/2 + rand.N(s.cfg.ReapInterval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if s.inGrace() {
			continue // Redis was just away: let the keep-alives refresh first
		}
		n, err := s.Reap(ctx, time.Now())
		if m, nerr := s.ReapNodes(ctx, time.Now()); nerr != nil && err == nil {
			err = nerr
		} else {
			n += m
		}
		s.met.reaped.Add(float64(n))
		if err != nil && ctx.Err() == nil && time.Since(lastErr) > 10*time.Second {
			lastErr = time.Now()
			s.log.Warn("reaper failed", "err", err)
		}
		if time.Since(lastSecret) > 5*time.Second {
			lastSecret = time.Now()
			s.restoreSecret(ctx)
		}
	}
}

func itoa(n int64) string {
	return toString(n)
}
