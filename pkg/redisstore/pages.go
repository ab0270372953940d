package redisstore

// pages.go: several pages of a room read in one atomic step
// (presence.PagesLister), for the snapshots of rooms larger than a page.

import (
	"context"
	"strings"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

var _ presence.PagesLister = (*Store)(nil)

// ListPages runs list.lua once per query in one MULTI/EXEC transaction on
// the primary: Redis runs them one after the other with nothing between,
// so the pages are of one version of the room. (One list.lua call cannot
// return a large room: Lua unpacks at most 8000 values, and a long script
// would block Redis.) The room's keys share a hash slot, so this works in
// Redis Cluster too.
func (s *Store) ListPages(ctx context.Context, room presence.RoomRef, qs []presence.ListQuery) ([]*presence.RoomList, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	keys := rk.List[:]
	run := func() ([]redis.Cmder, error) {
		return s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, q := range qs {
				s.list.EvalShaRO(ctx, p, keys, s.listArgs(q)...)
			}
			return nil
		})
	}
	cmds, err := run()
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		// The script cache was flushed: load it, once.
		if err = s.list.Load(ctx, s.rdb).Err(); err == nil {
			cmds, err = run()
		}
	}
	if err != nil {
		return nil, s.wrap("list pages", err)
	}
	out := make([]*presence.RoomList, len(cmds))
	for i, c := range cmds {
		v, err := c.(*redis.Cmd).Slice()
		if err != nil {
			return nil, s.wrap("list pages", err)
		}
		if out[i], err = parseList(room.RoomID, v); err != nil {
			return nil, s.wrap("list pages", err)
		}
	}
	return out, nil
}
