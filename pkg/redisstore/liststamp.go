package redisstore

// liststamp.go: the stamp of a room's list (presence.ListStamper): what a
// node needs to answer an unchanged list without listing it.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

var _ presence.ListStamper = (*Store)(nil)

// listHead is the number of elements of a list.lua or list_stamp.lua reply
// that make the stamp: {version, epoch, c, n, t, page size}.
const listHead = 6

// staleStamp is the stamp of a list asked with the epoch of a removed room
// (always empty, version 0); every other stamp holds spaces.
const staleStamp = "-"

// ListStamp returns the stamp of the list that List would return with the
// same query now: list_stamp.lua, one HMGET and one ZCOUNT in Redis, on the
// reader (replica) like List. The stamp is the room's epoch, version (v),
// session-count changes (c), live sessions (n), last-change time (t) and
// the page size (min(limit + 1, members not hidden by the retention at
// q.Now from the page's start on)); lua/lib.lua's list_head says why these
// fix the list.
func (s *Store) ListStamp(ctx context.Context, room presence.RoomRef, q presence.ListQuery) (string, error) {
	v, err := s.runList(ctx, s.reader(), s.listStamp, room, q)
	if err != nil {
		return "", s.wrap("list stamp", err)
	}
	if len(v) == 1 && toInt(v[0]) < 0 {
		return staleStamp, nil
	}
	if len(v) != listHead {
		return "", fmt.Errorf("list stamp: unexpected reply of %d elements", len(v))
	}
	return listStamp(v), nil
}

// runList runs list.lua or list_stamp.lua (the same KEYS and ARGV) on the
// reader.
func (s *Store) runList(ctx context.Context, rdb redis.Scripter, sc *redis.Script, room presence.RoomRef, q presence.ListQuery) ([]any, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	return sc.RunRO(ctx, rdb, rk.List[:], s.listArgs(q)...).Slice()
}

// listArgs returns the ARGV of list.lua and list_stamp.lua for q.
func (s *Store) listArgs(q presence.ListQuery) []any {
	online := "0"
	if q.OnlineOnly {
		online = "1"
	}
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	after, afterUser := "", ""
	if q.After != nil {
		after, afterUser = strconv.FormatInt(q.After.Score, 10), q.After.UserID
	}
	invisible := "0"
	if q.IncludeInvisible {
		invisible = "1"
	}
	return []any{q.Epoch, q.Limit, online, now.UnixMilli(), s.cfg.Retention.Milliseconds(), after, afterUser, invisible}
}

// listStamp makes the stamp of a reply's first listHead elements.
func listStamp(v []any) string {
	b := make([]byte, 0, 64)
	b = append(b, toString(v[1])...)
	for _, i := range [...]int{0, 2, 3, 4, 5} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, toInt(v[i]), 10)
	}
	return string(b)
}
