package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// ---- rooms ----

// scanners are the Redis servers to SCAN: every master of a Cluster, or
// the one Redis.
func (c *cli) scanners(ctx context.Context) []redis.Cmdable {
	cl, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{c.rdb}
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

// scanCount is the COUNT hint of each SCAN call.
const scanCount = 500

// roomsOutput is the JSON of `rooms`.
type roomsOutput struct {
	Org   string               `json:"org"`
	Total int                  `json:"total"` // rooms found; Rooms may show fewer (--limit)
	Rooms []presence.RoomCount `json:"rooms"`
}

func cmdRooms(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	limit := fs.Int("limit", 100, "most rooms to show, most online users first; 0: all (the scan covers every room either way)")
	if _, err := c.parse(fs, args, 0, ""); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must be >= 0")
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	pattern, parse := c.roomKeyPattern()
	seen := map[string]struct{}{}
	var top []presence.RoomCount
	var cursor uint64
	scanners := c.scanners(ctx)
	for len(scanners) > 0 {
		cctx, cancel := c.call(ctx)
		keys, next, err := scanners[0].Scan(cctx, cursor, pattern, scanCount).Result()
		cancel()
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		var ids []string
		for _, k := range keys {
			id, ok := parse(k)
			if _, dup := seen[id]; !ok || dup {
				continue
			}
			seen[id] = struct{}{}
			ids = append(ids, id)
		}
		counts, err := c.counts(ctx, ids)
		if err != nil {
			return err
		}
		top = append(top, counts...)
		if *limit > 0 && len(top) > 2**limit {
			top = sortRooms(top)[:*limit]
		}
		cursor = next
		if cursor == 0 {
			scanners = scanners[1:] // this node is done: the next master
		}
	}
	top = sortRooms(top)
	if *limit > 0 && len(top) > *limit {
		top = top[:*limit]
	}
	total := len(seen)
	if c.g.json {
		return writeJSON(c.stdout, roomsOutput{Org: c.g.org, Total: total, Rooms: top})
	}
	if total == 0 {
		fmt.Fprintf(c.stdout, "no rooms in org %q (prefix %q)\n", c.g.org, c.g.prefix)
		return nil
	}
	tw := table(c.stdout)
	fmt.Fprintln(tw, "ROOM\tVERSION\tONLINE\tSESSIONS")
	for _, r := range top {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.RoomID, r.Version, r.Online, r.Sessions)
	}
	tw.Flush()
	if len(top) < total {
		fmt.Fprintf(c.stderr, "showing %d of %d rooms (--limit)\n", len(top), total)
	}
	return nil
}

// roomKeyPattern returns the SCAN pattern of the org's room hashes and a
// function that returns the roomId of a key the pattern matched. Both come
// from the key builder: the key of a room with a placeholder id, escaped for
// the glob, with the placeholder turned into '*'.
func (c *cli) roomKeyPattern() (string, func(key string) (string, bool)) {
	const placeholder = "\x00"
	key := c.keys.Room(c.room(placeholder)).Hash()
	before, after, _ := strings.Cut(key, placeholder)
	pattern := globEscape(before) + "*" + globEscape(after)
	return pattern, func(k string) (string, bool) {
		if len(k) <= len(before)+len(after) || !strings.HasPrefix(k, before) || !strings.HasSuffix(k, after) {
			return "", false
		}
		id := k[len(before) : len(k)-len(after)]
		// The glob's '*' also spans other shapes; keep only exact room keys.
		return id, c.keys.Room(c.room(id)).Hash() == k && presence.ValidateRoomID(id) == nil
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// counts reads the version, online users and live sessions of rooms in one
// round trip. Rooms that expired since the scan are left out.
func (c *cli) counts(ctx context.Context, ids []string) ([]presence.RoomCount, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	meta := make([]*redis.SliceCmd, len(ids))
	_, err := c.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			meta[i] = p.HMGet(cctx, c.keys.Room(c.room(id)).Hash(), "v", "o", "n")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rooms: %w", err)
	}
	out := make([]presence.RoomCount, 0, len(ids))
	for i, id := range ids {
		v := meta[i].Val()
		if len(v) != 3 || v[0] == nil {
			continue // gone since the scan
		}
		out = append(out, presence.RoomCount{RoomID: id, Version: atoi(v[0]), Online: atoi(v[1]), Sessions: atoi(v[2])})
	}
	return out, nil
}

// sortRooms sorts by online users, then live sessions (both descending),
// then roomId, so that any prefix of the result is the same top list.
func sortRooms(rs []presence.RoomCount) []presence.RoomCount {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Online != b.Online {
			return a.Online > b.Online
		}
		if a.Sessions != b.Sessions {
			return a.Sessions > b.Sessions
		}
		return a.RoomID < b.RoomID
	})
	return rs
}

// ---- room ----

// liveSession is one session of a room, as `room` shows it.
type liveSession struct {
	SessionID string `json:"sessionId"`
	UserID    string `json:"userId"`
	// Node is the node generation that holds the session for an open
	// WebSocket (<nodeId>@<region>/<generation>), else "".
	Node string `json:"node"`
	// Deadline is RFC 3339, UTC, ms; "held" (and DeadlineMs 0) for a
	// session that lives by its node's lease.
	Deadline   string `json:"deadline"`
	DeadlineMs int64  `json:"deadlineMs"`
}

// roomOutput is the JSON of `room`.
type roomOutput struct {
	Org          string            `json:"org"`
	RoomID       string            `json:"roomId"`
	Version      int64             `json:"version"`
	Online       int64             `json:"online"`
	SessionCount int64             `json:"sessionCount"`
	Members      []presence.Member `json:"members"`
	Sessions     []liveSession     `json:"sessions"`
}

func cmdRoom(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	limit := fs.Int("limit", presence.MaxListLimit, fmt.Sprintf("most members and sessions to show (1-%d)", presence.MaxListLimit))
	pos, err := c.parse(fs, args, 1, "<roomId>")
	if err != nil {
		return err
	}
	roomID := pos[0]
	if err := presence.ValidateRoomID(roomID); err != nil {
		return usagef("%s", presence.ErrorMessage(err))
	}
	if *limit < 1 || *limit > presence.MaxListLimit {
		return usagef("--limit must be 1-%d", presence.MaxListLimit)
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	ref := c.room(roomID)
	cnt, err := c.store.Count(ctx, ref)
	if err != nil {
		return err
	}
	list, err := c.store.List(ctx, ref, presence.ListQuery{Limit: *limit})
	if err != nil {
		return err
	}
	sessions, err := c.sessions(ctx, ref, *limit)
	if err != nil {
		return err
	}
	if cnt.Version == 0 && len(list.Members) == 0 && len(sessions) == 0 {
		return fmt.Errorf("room %q not found in org %q (no keys under prefix %q)", roomID, c.g.org, c.g.prefix)
	}
	if c.g.json {
		return writeJSON(c.stdout, roomOutput{
			Org: c.g.org, RoomID: roomID, Version: cnt.Version, Online: cnt.Online, SessionCount: cnt.Sessions,
			Members: list.Members, Sessions: sessions,
		})
	}
	now := time.Now()
	fmt.Fprintf(c.stdout, "room %s  org %s  version %d  online %d  sessions %d\n\n", roomID, c.g.org, cnt.Version, cnt.Online, cnt.Sessions)
	tw := table(c.stdout)
	fmt.Fprintln(tw, "USER\tONLINE\tSESSIONS\tLAST DISCONNECTED\tNAME")
	for _, m := range list.Members {
		last := "-"
		if m.LastDisconnected > 0 {
			last = stamp(m.LastDisconnected, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.UserID, yesNo(m.Online), m.Sessions, last, orDash(m.Name))
	}
	tw.Flush()
	if len(list.Members) == *limit {
		fmt.Fprintf(c.stdout, "(first %d members: --limit)\n", *limit)
	}
	fmt.Fprintln(c.stdout)
	if len(sessions) == 0 {
		fmt.Fprintln(c.stdout, "no live sessions")
		return nil
	}
	tw = table(c.stdout)
	fmt.Fprintln(tw, "SESSION\tUSER\tNODE\tDEADLINE")
	for _, s := range sessions {
		deadline := "held by its node's lease"
		if s.DeadlineMs != 0 {
			deadline = stamp(s.DeadlineMs, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.SessionID, orDash(s.UserID), orDash(s.Node), deadline)
	}
	tw.Flush()
	if int64(len(sessions)) < cnt.Sessions {
		fmt.Fprintf(c.stdout, "(%d of %d sessions, earliest deadline first: --limit)\n", len(sessions), cnt.Sessions)
	}
	return nil
}

// sessions reads up to limit live sessions of a room, earliest deadline
// first (held sessions last), with their user and node: the room hash's
// s:<sessionId> fields, "<deadline>\t<epoch>\t<node>\t<userId>" (lua/lib.lua).
func (c *cli) sessions(ctx context.Context, ref presence.RoomRef, limit int) ([]liveSession, error) {
	rk := c.keys.Room(ref)
	cctx, cancel := c.call(ctx)
	defer cancel()
	out := []liveSession{}
	var cursor uint64
	for {
		kv, next, err := c.rdb.HScan(cctx, rk.Hash(), cursor, "s:*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("sessions: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			parts := strings.SplitN(kv[i+1], "\t", 4)
			if len(parts) != 4 {
				continue
			}
			s := liveSession{SessionID: strings.TrimPrefix(kv[i], "s:"), Node: parts[2], UserID: parts[3], Deadline: "held"}
			if ms, err := strconv.ParseInt(parts[0], 10, 64); err == nil {
				s.DeadlineMs, s.Deadline = ms, time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
			}
			out = append(out, s)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.DeadlineMs == 0) != (b.DeadlineMs == 0) {
			return b.DeadlineMs == 0
		}
		if a.DeadlineMs != b.DeadlineMs {
			return a.DeadlineMs < b.DeadlineMs
		}
		return a.SessionID < b.SessionID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ---- user ----

// userOutput is the JSON of `user`.
type userOutput struct {
	Org    string              `json:"org"`
	UserID string              `json:"userId"`
	Rooms  []presence.UserRoom `json:"rooms"`
}

func cmdUser(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args, 1, "<userId>")
	if err != nil {
		return err
	}
	userID := pos[0]
	if err := presence.ValidateUserID(userID); err != nil {
		return usagef("%s", presence.ErrorMessage(err))
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	rooms, err := c.store.UserRooms(ctx, c.g.org, userID, 0)
	if err != nil {
		return err
	}
	if c.g.json {
		return writeJSON(c.stdout, userOutput{Org: c.g.org, UserID: userID, Rooms: rooms})
	}
	if len(rooms) == 0 {
		fmt.Fprintf(c.stdout, "user %q has no rooms in org %q\n", userID, c.g.org)
		return nil
	}
	now := time.Now()
	tw := table(c.stdout)
	fmt.Fprintln(tw, "ROOM\tONLINE\tLAST DISCONNECTED")
	for _, r := range rooms {
		last := "-"
		if !r.Online && r.LastDisconnected > 0 {
			last = stamp(r.LastDisconnected, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.RoomID, yesNo(r.Online), last)
	}
	return tw.Flush()
}

// ---- watch ----

// event is the part of a published event that `watch` shows.
type event struct {
	Version int64  `json:"version"`
	Event   string `json:"event"`
	UserID  string `json:"userId"`
	Member  *struct {
		Online   bool `json:"online"`
		Sessions int  `json:"sessions"`
	} `json:"member"`
}

func cmdWatch(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args, 1, "<roomId>")
	if err != nil {
		return err
	}
	if err := presence.ValidateRoomID(pos[0]); err != nil {
		return usagef("%s", presence.ErrorMessage(err))
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	channel := c.keys.Room(c.room(pos[0])).Events
	var ps *redis.PubSub
	if c.g.cluster != "" {
		ps = c.rdb.SSubscribe(ctx, channel) // sharded pub/sub in Cluster mode
	} else {
		ps = c.rdb.Subscribe(ctx, channel)
	}
	defer ps.Close()
	// The first reply confirms the subscription.
	if _, err := ps.ReceiveTimeout(ctx, c.g.timeout); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	if !c.g.json {
		fmt.Fprintf(c.stderr, "watching %s (Ctrl-C to stop)\n", channel)
	}
	msgs := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-msgs:
			if !ok {
				return errors.New("subscription closed")
			}
			if c.g.json {
				fmt.Fprintln(c.stdout, msg.Payload)
				continue
			}
			fmt.Fprintln(c.stdout, eventLine(time.Now(), msg.Payload))
		}
	}
}

// eventLine renders an event as one line: time, version, event, userId,
// online, sessions.
func eventLine(at time.Time, payload string) string {
	ts := at.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	var e event
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		return fmt.Sprintf("%s  unparsable event: %s", ts, payload)
	}
	state := "-"
	if e.Member != nil {
		state = fmt.Sprintf("online=%t sessions=%d", e.Member.Online, e.Member.Sessions)
	}
	return fmt.Sprintf("%s  v%-5d %-6s  %-16s  %s", ts, e.Version, e.Event, orDash(e.UserID), state)
}

// ---- output helpers ----

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stamp renders unix ms as RFC 3339 (UTC) and its distance from now:
// "2026-05-01T12:00:25Z (in 12.3s)" or "... (3m2s ago)".
func stamp(ms int64, now time.Time) string {
	t := time.UnixMilli(ms)
	d := t.Sub(now)
	rel := "in " + roughly(d)
	if d < 0 {
		rel = roughly(-d) + " ago"
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

func roughly(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func atoi(v any) int64 {
	var n int64
	if s, ok := v.(string); ok {
		fmt.Sscan(s, &n)
	}
	return n
}
