package redisstore

// inspect.go: read-only views of the stored state for operators
// (presencectl): every room of an org, the counts of many rooms at once, and
// a room's live sessions. They change nothing, but they scan (the keyspace,
// or every session of a room): tools for operators, not for a hot path.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// SessionInfo is one live session of a room, as stored in the room hash
// (field s:<sessionId>; lua/lib.lua).
type SessionInfo struct {
	SessionID string
	UserID    string
	// Epoch tells apart the sessions that one sessionId had in the room.
	Epoch string
	// Node is the node generation (<nodeId>@<region>/<generation>) that
	// holds the session for an open WebSocket, else "".
	Node string
	// Held: the session lives by its node's lease and has no deadline of
	// its own (Deadline is zero).
	Held bool
	// Deadline is when the session ends without a heartbeat.
	Deadline time.Time
}

// Sessions returns every live session of a room: earliest deadline first,
// held sessions last, ties by session id. It reads the room hash's session
// fields (HSCAN): O(sessions of the room). A room without keys has none.
func (s *Store) Sessions(ctx context.Context, room presence.RoomRef) ([]SessionInfo, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	key := s.keys.Room(room).Hash()
	byID := map[string]SessionInfo{} // HSCAN may return a field twice
	var cursor uint64
	for {
		kv, next, err := s.read.HScan(ctx, key, cursor, "s:*", 1000).Result()
		if err != nil {
			return nil, s.wrap("sessions", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if si, ok := parseSession(kv[i], kv[i+1]); ok {
				byID[si.SessionID] = si
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	out := make([]SessionInfo, 0, len(byID))
	for _, si := range byID {
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Held != b.Held {
			return b.Held
		}
		if !a.Deadline.Equal(b.Deadline) {
			return a.Deadline.Before(b.Deadline)
		}
		return a.SessionID < b.SessionID
	})
	return out, nil
}

// parseSession parses a room hash field s:<sessionId> and its value
// "<deadline>\t<epoch>\t<node>\t<userId>", where deadline is unix ms or H
// (held; lua/lib.lua's sess_value).
func parseSession(field, value string) (SessionInfo, bool) {
	id, ok := strings.CutPrefix(field, "s:")
	parts := strings.SplitN(value, "\t", 4)
	if !ok || len(parts) != 4 {
		return SessionInfo{}, false
	}
	si := SessionInfo{SessionID: id, Epoch: parts[1], Node: parts[2], UserID: parts[3]}
	if parts[0] == "H" {
		si.Held = true
		return si, true
	}
	ms, err := strconv.ParseInt(parts[0], 10, 64)
	switch {
	case err != nil:
		return SessionInfo{}, false
	case ms >= heldScore:
		si.Held = true
	default:
		si.Deadline = time.UnixMilli(ms)
	}
	return si, true
}

// RoomCounts returns the summaries of rooms of org (version, online users,
// live sessions: count.lua, which Count runs), in one round trip, in the
// order of roomIDs. Rooms that have no keys (version 0) are left out.
func (s *Store) RoomCounts(ctx context.Context, org string, roomIDs []string) ([]presence.RoomCount, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	cmds := make([]*redis.Cmd, len(roomIDs))
	err := s.pipelined(ctx, func(p redis.Pipeliner) {
		for i, id := range roomIDs {
			rk := s.keys.Room(presence.RoomRef{Org: org, RoomID: id})
			cmds[i] = s.count.EvalShaRO(ctx, p, rk.List[:])
		}
	})
	if err != nil {
		return nil, s.wrap("count", err)
	}
	out := make([]presence.RoomCount, 0, len(roomIDs))
	for i, id := range roomIDs {
		v, err := cmds[i].Int64Slice()
		if err != nil || len(v) != 3 {
			return nil, fmt.Errorf("count %s: unexpected reply %v (%v)", id, v, err)
		}
		if v[0] != 0 {
			out = append(out, presence.RoomCount{RoomID: id, Version: v[0], Online: v[1], Sessions: v[2]})
		}
	}
	return out, nil
}

// scanCount is the COUNT hint of each SCAN call of ScanRooms.
const scanCount = 500

// ScanRooms finds the rooms of org: it SCANs the keyspace (never KEYS) of
// the one Redis, or of every master of a Redis Cluster, for the org's room
// hashes and calls fn with the roomIds of each page, each roomId once. It
// stops at fn's first error and returns it. Each SCAN call is bounded by
// the call timeout.
func (s *Store) ScanRooms(ctx context.Context, org string, fn func(roomIDs []string) error) error {
	pattern, roomID := s.roomKeyPattern(org)
	seen := map[string]struct{}{}
	for _, node := range s.scanNodes(ctx) {
		var cursor uint64
		for {
			cctx, cancel := s.callCtx(ctx)
			keys, next, err := node.Scan(cctx, cursor, pattern, scanCount).Result()
			cancel()
			if err != nil {
				return s.wrap("scan rooms", err)
			}
			var ids []string
			for _, k := range keys {
				id, ok := roomID(k)
				if _, dup := seen[id]; !ok || dup {
					continue
				}
				seen[id] = struct{}{}
				ids = append(ids, id)
			}
			if len(ids) > 0 {
				if err := fn(ids); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// scanNodes are the Redis servers to SCAN: every master of a Cluster, or
// the one Redis.
func (s *Store) scanNodes(ctx context.Context) []redis.Cmdable {
	cl, ok := s.read.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{s.read}
	}
	var out []redis.Cmdable
	var mu sync.Mutex
	cl.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		mu.Lock()
		out = append(out, m)
		mu.Unlock()
		return nil
	})
	return out
}

// roomKeyPattern returns the SCAN pattern of the org's room hashes and a
// function that returns the roomId of a key the pattern matched. Both come
// from the key builder: the key of a room with a placeholder id, escaped for
// the glob, with the placeholder turned into '*'.
func (s *Store) roomKeyPattern(org string) (string, func(key string) (string, bool)) {
	const placeholder = "\x00"
	hash := func(id string) string { return s.keys.Room(presence.RoomRef{Org: org, RoomID: id}).Hash() }
	before, after, _ := strings.Cut(hash(placeholder), placeholder)
	return globEscape(before) + "*" + globEscape(after), func(k string) (string, bool) {
		if len(k) <= len(before)+len(after) || !strings.HasPrefix(k, before) || !strings.HasSuffix(k, after) {
			return "", false
		}
		id := k[len(before) : len(k)-len(after)]
		// The glob's '*' also spans other shapes; keep only exact room keys.
		return id, hash(id) == k && presence.ValidateRoomID(id) == nil
	}
}

// GlobEscape escapes the glob characters of s for a Redis pattern (SCAN
// MATCH, PSUBSCRIBE), so that s matches only itself.
func GlobEscape(s string) string { return globEscape(s) }
