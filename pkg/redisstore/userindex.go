package redisstore

import (
	"context"
	"errors"
	"hash/maphash"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// The user index answers "which rooms is this user in" (sign-out,
// GET /v1/users/{id}/rooms). It is bucketed: an org's users share
// userBuckets sorted sets, member "<userId>\n<roomId>", scored by when a
// node last wrote the entry (unix seconds). A key per user cost Redis about
// 190 bytes per session (key, dict and expire entries for a one-entry
// set); a bucket entry costs about 30.
//
// An entry is written when its session is created, and again by each node
// at most once per indexRefresh (of the pairs it sees heartbeats or keeps
// sockets for), so that an entry older than the keys' TTL belongs to
// nobody: writes drop those from their bucket. Entries of rooms that
// forgot the user are dropped when read.

// userBuckets is the number of index keys per org: about 100 entries per
// bucket at 100,000 users, which Redis keeps compact (listpack) up to its
// zset-max-listpack-entries (128 by default).
const userBuckets = 1024

// indexCache remembers the (org, user, room) entries this node wrote
// recently, in two generations swapped every period: an entry is written
// again after at least one and at most two periods. Entries are kept as a
// 64-bit hash (seeded per node): every heartbeat looks its entry up, and a
// map of hashes is small and touches no string. Two entries with one hash
// (about n²/2⁶⁵ for n entries) would only let one of them go unwritten by
// this node while the other stays active.
type indexCache struct {
	mu       sync.Mutex
	seed     maphash.Seed
	period   time.Duration
	swapped  time.Time
	cur, old map[uint64]struct{}
}

// indexKey is one entry of the index: a user in a room of an org.
type indexKey struct{ org, user, room string }

func newIndexCache(period time.Duration) *indexCache {
	return &indexCache{seed: maphash.MakeSeed(), period: period, swapped: time.Now(), cur: map[uint64]struct{}{}, old: map[uint64]struct{}{}}
}

// due reports whether the entry should be written now, and marks it written.
func (c *indexCache) due(key indexKey, now time.Time) bool {
	h := maphash.Comparable(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swapped) > c.period {
		c.old, c.cur, c.swapped = c.cur, make(map[uint64]struct{}, len(c.cur)), now
	}
	if _, ok := c.cur[h]; ok {
		return false
	}
	if _, ok := c.old[h]; ok {
		// Written in the previous period: not yet due, and not carried
		// over either (that would keep an active entry from ever being
		// written again, and let it age out of the index).
		return false
	}
	c.cur[h] = struct{}{}
	return true
}

// forget lets the entry be written again at once (its write failed).
func (c *indexCache) forget(key indexKey) {
	h := maphash.Comparable(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, h)
	delete(c.old, h)
}

func indexMember(userID, roomID string) string { return userID + "\n" + roomID }

// queueIndex queues the user index entries of heartbeats (created sessions,
// and the ones the cache says are due).
func (s *Store) queueIndex(ctx context.Context, p redis.Pipeliner, hbs []*presence.Heartbeat, now time.Time) {
	sec := now.Unix() // seconds: a smaller number to store than ms
	ttl := time.Duration(s.ttl) * time.Millisecond
	for _, hb := range hbs {
		key := s.keys.Users(hb.Room.Org, hb.UserID)
		p.ZAdd(ctx, key, redis.Z{Score: float64(sec), Member: indexMember(hb.UserID, hb.Room.RoomID)})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+itoa(sec-s.ttl/1000))
		p.PExpire(ctx, key, ttl)
	}
}

// UserRooms lists a user's rooms: online first, then offline, most recently
// disconnected first; the truth, with the member's privacy flags
// (presence.UserRoom.Public is what the others see). Rooms that forgot the user are dropped from the index
// on the way.
func (s *Store) UserRooms(ctx context.Context, org, userID string, limit int) ([]presence.UserRoom, error) {
	if limit <= 0 || limit > maxUserRooms {
		limit = maxUserRooms
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	key := s.keys.Users(org, userID)
	prefix := userID + "\n"
	written := map[string]string{} // member -> score (ZSCAN may repeat one)
	var cursor uint64
	for {
		kv, next, err := s.rdb.ZScan(ctx, key, cursor, globEscape(prefix)+"*", 1000).Result()
		if err != nil {
			return nil, s.wrap("user rooms", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.HasPrefix(kv[i], prefix) {
				written[kv[i]] = kv[i+1]
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	// Most recently written first, the order ties keep below.
	members := make([]string, 0, len(written))
	for m := range written {
		members = append(members, m)
	}
	sort.Slice(members, func(i, j int) bool {
		a, _ := strconv.ParseFloat(written[members[i]], 64)
		b, _ := strconv.ParseFloat(written[members[j]], 64)
		if a != b {
			return a > b
		}
		return members[i] > members[j] // as ZREVRANGE
	})
	if len(members) > limit {
		members = members[:limit] // the most recently written
	}
	if len(members) == 0 {
		return []presence.UserRoom{}, nil
	}
	reads := make([]roomRead, len(members))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			reads[i] = s.queueRoomRead(ctx, p, presence.RoomRef{Org: org, RoomID: m[len(prefix):]}, userID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.wrap("user rooms", err)
	}
	out := make([]presence.UserRoom, 0, len(members))
	var stale []any
	for i, m := range members {
		if errors.Is(reads[i].score.Err(), redis.Nil) {
			stale = append(stale, m)
			continue
		}
		if r, ok := reads[i].userRoom(m[len(prefix):]); ok {
			out = append(out, r)
		}
	}
	if len(stale) > 0 {
		s.rdb.ZRem(ctx, key, stale...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Online != out[j].Online {
			return out[i].Online
		}
		return out[i].LastDisconnected > out[j].LastDisconnected
	})
	return out, nil
}

// globEscape escapes the glob characters of a Redis MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
