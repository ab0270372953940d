package redisstore

import (
	"context"
	"strconv"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// Node liveness. A session held by a node's open WebSocket is stored with
// the deadline H instead of a time, and names its node generation (room
// hash field s:<sessionId>): it costs Redis nothing while the socket is idle.
// Each node generation renews one lease in the nodes sorted set, and lists
// the rooms where it holds sessions in a set of its own (SADD before the
// session is created, so no held session is ever missing from it). A
// reaper that finds a lease lapsed (by its own clock, less NodeSkew)
// declares the node dead (score 0, which no renewal accepts), ends its
// sessions room by room with reap_node.lua, then forgets the node.

// heldScore is lib.lua's HELD: the deadline a Heartbeat passes for a held
// session.
const heldScore = 4_000_000_000_000_000

const (
	reapNodesMax     = 16 // lapsed nodes per pass
	nodeRoomsPerPass = 512
)

// RenewLease registers a node generation (prev zero) or renews its lease
// until deadline, compare-and-set on the deadline it set last. It reports
// false when the lease is not the node's any more: it lapsed and was
// declared dead, or Redis lost it.
func (s *Store) RenewLease(ctx context.Context, node string, prev, deadline time.Time) (bool, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	expected := ""
	if !prev.IsZero() {
		expected = strconv.FormatInt(prev.UnixMilli(), 10)
	}
	n, err := s.renewLease.Run(ctx, s.rdb, []string{s.keys.Nodes()}, node, expected, deadline.UnixMilli()).Int()
	if err != nil {
		return false, s.wrap("renew lease", err)
	}
	return n == 1, nil
}

// HoldRooms records that node holds (or is about to hold) sessions in
// rooms, and renews the record's time to live.
func (s *Store) HoldRooms(ctx context.Context, node string, rooms []presence.RoomRef) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	key := s.keys.NodeRooms(node)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for start := 0; start < len(rooms); start += 1000 {
			tags := make([]any, 0, min(1000, len(rooms)-start))
			for _, r := range rooms[start:min(start+1000, len(rooms))] {
				tags = append(tags, Tag(r))
			}
			p.SAdd(ctx, key, tags...)
		}
		p.PExpire(ctx, key, time.Duration(s.ttl)*time.Millisecond)
		return nil
	})
	if err != nil {
		return s.wrap("hold rooms", err)
	}
	return nil
}

// ReleaseRooms forgets rooms where node holds no session any more.
func (s *Store) ReleaseRooms(ctx context.Context, node string, rooms []presence.RoomRef) error {
	if len(rooms) == 0 {
		return nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	tags := make([]any, len(rooms))
	for i, r := range rooms {
		tags[i] = Tag(r)
	}
	if err := s.rdb.SRem(ctx, s.keys.NodeRooms(node), tags...).Err(); err != nil {
		return s.wrap("release rooms", err)
	}
	return nil
}

// ReapNodes ends the sessions of the nodes whose lease lapsed before now
// less NodeSkew, one leave per user that went offline, and returns how
// many sessions it ended. Any number of reapers may run it at once.
func (s *Store) ReapNodes(ctx context.Context, now time.Time) (int, error) {
	cctx, cancel := s.callCtx(ctx)
	lapsed, err := s.rdb.ZRangeByScoreWithScores(cctx, s.keys.Nodes(), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + itoa(now.Add(-s.cfg.NodeSkew).UnixMilli()), Count: reapNodesMax,
	}).Result()
	cancel()
	if err != nil {
		return 0, s.wrap("reap nodes", err)
	}
	total := 0
	for _, z := range lapsed {
		node := z.Member.(string)
		if z.Score != 0 {
			cctx, cancel := s.callCtx(ctx)
			dead, err := s.declareDead.Run(cctx, s.rdb, []string{s.keys.Nodes()}, node, int64(z.Score)).Int()
			cancel()
			if err != nil {
				return total, s.wrap("reap nodes", err)
			}
			if dead == 0 {
				continue // renewed meanwhile
			}
			s.log.Warn("node lease lapsed: ending its sessions", "dead_node", node)
		}
		n, err := s.endNode(ctx, node, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// endNode ends a dead node's sessions in every room it held, then forgets
// the node. Interrupted, it is taken up again by the next pass (the node
// stays declared dead until its rooms are done).
func (s *Store) endNode(ctx context.Context, node string, now time.Time) (int, error) {
	key := s.keys.NodeRooms(node)
	total := 0
	for {
		cctx, cancel := s.callCtx(ctx)
		tags, err := s.rdb.SRandMemberN(cctx, key, nodeRoomsPerPass).Result()
		cancel()
		if err != nil {
			return total, s.wrap("reap node", err)
		}
		if len(tags) == 0 {
			break
		}
		cctx, cancel = s.callCtx(ctx)
		res := make([]*redis.Cmd, len(tags))
		err = s.pipelined(cctx, func(p redis.Pipeliner) {
			for i, tag := range tags {
				r, ok := ParseTag(tag)
				if !ok {
					continue
				}
				rk := s.keys.Room(r)
				keys, args := s.roomCall(rk, now.UnixMilli(), rk.Events, s.pub, s.ttl, node)
				res[i] = s.reapNode.EvalSha(cctx, p, keys, args...)
			}
		})
		var steps []userStep // users who went offline, or left pending
		if err == nil {
			members := make([]any, len(tags))
			var hooked []string
			for i, tag := range tags {
				members[i] = tag
				if res[i] != nil {
					v, _ := res[i].Slice()
					if len(v) > 0 {
						n := int(toInt(v[0]))
						total += n
						if n > 0 {
							hooked = append(hooked, tag)
						}
					}
					r, _ := ParseTag(tag)
					steps = append(steps, stepsOf(r, now.UnixMilli(), changedUsers(v, 1))...)
				}
			}
			s.indexHooked(cctx, hooked...)
			err = s.rdb.SRem(cctx, key, members...).Err()
		}
		cancel()
		s.syncUsers(ctx, steps)
		if err != nil {
			return total, s.wrap("reap node", err)
		}
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.forgetNode.Run(cctx, s.rdb, []string{s.keys.Nodes()}, node).Err(); err != nil {
		return total, s.wrap("reap node", err)
	}
	return total, nil
}
