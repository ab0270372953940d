package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redisstore"
	"github.com/redis/go-redis/v9"
)

// ---- rooms ----

// roomsOutput is the JSON of `rooms`.
type roomsOutput struct {
	Org   string               `json:"org"`
	Total int                  `json:"total"` // rooms found; Rooms may show fewer (--limit)
	Rooms []presence.RoomCount `json:"rooms"`
}

func cmdRooms(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	limit := fs.Int("limit", 100, "most rooms to show, most online users first; 0: all (the scan covers every room either way)")
	if _, err := c.Parse(fs, args, 0, ""); err != nil {
		return err
	}
	if *limit < 0 {
		return cliutil.Usagef("--limit must be >= 0")
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	total := 0
	var top []presence.RoomCount
	err := c.Store.ScanRooms(ctx, c.Org, func(ids []string) error {
		total += len(ids)
		counts, err := c.Store.RoomCounts(ctx, c.Org, ids)
		if err != nil {
			return err
		}
		top = append(top, counts...)
		if *limit > 0 && len(top) > 2**limit {
			top = sortRooms(top)[:*limit]
		}
		return nil
	})
	if err != nil {
		return err
	}
	top = sortRooms(top)
	if *limit > 0 && len(top) > *limit {
		top = top[:*limit]
	}
	if c.JSON {
		return cliutil.WriteJSON(c.Stdout, roomsOutput{Org: c.Org, Total: total, Rooms: top})
	}
	if total == 0 {
		fmt.Fprintf(c.Stdout, "no rooms in org %q (prefix %q)\n", c.Org, c.Prefix)
		return nil
	}
	tw := cliutil.Table(c.Stdout)
	fmt.Fprintln(tw, "ROOM\tVERSION\tONLINE\tSESSIONS")
	for _, r := range top {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.RoomID, r.Version, r.Online, r.Sessions)
	}
	tw.Flush()
	if len(top) < total {
		fmt.Fprintf(c.Stderr, "showing %d of %d rooms (--limit)\n", len(top), total)
	}
	return nil
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
	pos, err := c.Parse(fs, args, 1, "<roomId>")
	if err != nil {
		return err
	}
	roomID := pos[0]
	if err := presence.ValidateRoomID(roomID); err != nil {
		return cliutil.Usagef("%s", presence.ErrorMessage(err))
	}
	if *limit < 1 || *limit > presence.MaxListLimit {
		return cliutil.Usagef("--limit must be 1-%d", presence.MaxListLimit)
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	ref := c.Room(roomID)
	cnt, err := c.Store.Count(ctx, ref)
	if err != nil {
		return err
	}
	list, err := c.Store.List(ctx, ref, presence.ListQuery{Limit: *limit})
	if err != nil {
		return err
	}
	sessions, err := c.sessions(ctx, ref, *limit)
	if err != nil {
		return err
	}
	if cnt.Version == 0 && len(list.Members) == 0 && len(sessions) == 0 {
		return fmt.Errorf("room %q not found in org %q (no keys under prefix %q)", roomID, c.Org, c.Prefix)
	}
	if c.JSON {
		return cliutil.WriteJSON(c.Stdout, roomOutput{
			Org: c.Org, RoomID: roomID, Version: cnt.Version, Online: cnt.Online, SessionCount: cnt.Sessions,
			Members: list.Members, Sessions: sessions,
		})
	}
	now := time.Now()
	fmt.Fprintf(c.Stdout, "room %s  org %s  version %d  online %d  sessions %d\n\n", roomID, c.Org, cnt.Version, cnt.Online, cnt.Sessions)
	tw := cliutil.Table(c.Stdout)
	fmt.Fprintln(tw, "USER\tONLINE\tSESSIONS\tLAST DISCONNECTED\tNAME")
	for _, m := range list.Members {
		last := "-"
		if m.LastDisconnected > 0 {
			last = stamp(m.LastDisconnected, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.UserID, cliutil.YesNo(m.Online), m.Sessions, last, cliutil.OrDash(m.Name))
	}
	tw.Flush()
	if len(list.Members) == *limit {
		fmt.Fprintf(c.Stdout, "(first %d members: --limit)\n", *limit)
	}
	fmt.Fprintln(c.Stdout)
	if len(sessions) == 0 {
		fmt.Fprintln(c.Stdout, "no live sessions")
		return nil
	}
	tw = cliutil.Table(c.Stdout)
	fmt.Fprintln(tw, "SESSION\tUSER\tNODE\tDEADLINE")
	for _, s := range sessions {
		deadline := "held by its node's lease"
		if s.DeadlineMs != 0 {
			deadline = stamp(s.DeadlineMs, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.SessionID, cliutil.OrDash(s.UserID), cliutil.OrDash(s.Node), deadline)
	}
	tw.Flush()
	if int64(len(sessions)) < cnt.Sessions {
		fmt.Fprintf(c.Stdout, "(%d of %d sessions, earliest deadline first: --limit)\n", len(sessions), cnt.Sessions)
	}
	return nil
}

// sessions returns up to limit live sessions of a room, earliest deadline
// first (held sessions last), as `room` shows them.
func (c *cli) sessions(ctx context.Context, ref presence.RoomRef, limit int) ([]liveSession, error) {
	all, err := c.Store.Sessions(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := make([]liveSession, 0, min(limit, len(all)))
	for _, s := range all[:min(limit, len(all))] {
		ls := liveSession{SessionID: s.SessionID, UserID: s.UserID, Node: s.Node, Deadline: "held"}
		if !s.Held {
			ls.DeadlineMs, ls.Deadline = s.Deadline.UnixMilli(), s.Deadline.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		out = append(out, ls)
	}
	return out, nil
}

// ---- user ----

// userOutput is the JSON of `user`.
type userOutput struct {
	Org    string              `json:"org"`
	UserID string              `json:"userId"`
	Rooms  []presence.UserRoom `json:"rooms"`
	// Presence is the user's org-wide state, as GET
	// /v1/users/{userId}/presence answers it.
	Presence presence.UserPresence `json:"presence"`
}

func cmdUser(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.Parse(fs, args, 1, "<userId>")
	if err != nil {
		return err
	}
	userID := pos[0]
	if err := presence.ValidateUserID(userID); err != nil {
		return cliutil.Usagef("%s", presence.ErrorMessage(err))
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	rooms, err := c.Store.UserRooms(ctx, c.Org, userID, 0)
	if err != nil {
		return err
	}
	if c.JSON {
		return cliutil.WriteJSON(c.Stdout, userOutput{Org: c.Org, UserID: userID, Rooms: rooms, Presence: presence.SummarizeRooms(userID, rooms)})
	}
	if len(rooms) == 0 {
		fmt.Fprintf(c.Stdout, "user %q has no rooms in org %q\n", userID, c.Org)
		return nil
	}
	now := time.Now()
	tw := cliutil.Table(c.Stdout)
	fmt.Fprintln(tw, "ROOM\tONLINE\tLAST DISCONNECTED")
	for _, r := range rooms {
		last := "-"
		if !r.Online && r.LastDisconnected > 0 {
			last = stamp(r.LastDisconnected, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.RoomID, cliutil.YesNo(r.Online), last)
	}
	return tw.Flush()
}

// ---- watch ----

func cmdWatch(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	pos, err := c.Parse(fs, args, 1, "<roomId>")
	if err != nil {
		return err
	}
	if err := presence.ValidateRoomID(pos[0]); err != nil {
		return cliutil.Usagef("%s", presence.ErrorMessage(err))
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	room := c.Room(pos[0])
	channel := c.Keys.Room(room).Events
	var ps *redis.PubSub
	if c.Cluster != "" {
		ps = c.RDB.SSubscribe(ctx, channel) // sharded pub/sub in Cluster mode
	} else {
		ps = c.RDB.Subscribe(ctx, channel)
	}
	defer ps.Close()
	// The first reply confirms the subscription.
	if _, err := ps.ReceiveTimeout(ctx, c.Timeout); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	if !c.JSON {
		fmt.Fprintf(c.Stderr, "watching %s (Ctrl-C to stop)\n", channel)
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
			if c.JSON {
				fmt.Fprintln(c.Stdout, msg.Payload)
				continue
			}
			fmt.Fprintln(c.Stdout, eventLine(time.Now(), room, msg.Payload))
		}
	}
}

// eventLine renders an event as one line: time, version, event, userId,
// online, sessions.
// The store's own decoder reads it (redisstore.DecodeEvent).
func eventLine(at time.Time, room presence.RoomRef, payload string) string {
	ts := at.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	e, err := redisstore.DecodeEvent(room, []byte(payload))
	if err != nil {
		return fmt.Sprintf("%s  unparsable event: %s", ts, payload)
	}
	state := "-"
	if e.Member != nil {
		state = fmt.Sprintf("online=%t sessions=%d", e.Member.Online, e.Member.Sessions)
	}
	return fmt.Sprintf("%s  v%-5d %-6s  %-16s  %s", ts, e.Version, e.Kind, cliutil.OrDash(e.UserID), state)
}

// ---- output helpers ----

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

// ---- webhooks ----

// webhooksOutput is the JSON of `webhooks`.
type webhooksOutput struct {
	Rooms       int64                      `json:"rooms"`
	Due         int64                      `json:"due"`
	Retrying    int64                      `json:"retrying"`
	Events      int64                      `json:"events"`
	Estimated   bool                       `json:"estimated"`
	LastFailure *redisstore.WebhookFailure `json:"lastFailure"`
}

func cmdWebhooks(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	if _, err := c.Parse(fs, args, 0, ""); err != nil {
		return err
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	st, err := c.Store.WebhookStatus(ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return cliutil.WriteJSON(c.Stdout, webhooksOutput{Rooms: st.Rooms, Due: st.Due, Retrying: st.Retrying,
			Events: st.Events, Estimated: st.Estimated, LastFailure: st.LastFailure})
	}
	events := fmt.Sprint(st.Events)
	if st.Estimated {
		events = "about " + events
	}
	tw := cliutil.Table(c.Stdout)
	fmt.Fprintf(tw, "events waiting\t%s\n", events)
	fmt.Fprintf(tw, "rooms waiting\t%d (due now %d, backing off after a failure %d)\n", st.Rooms, st.Due, st.Retrying)
	last := "none in the last 24h"
	if f := st.LastFailure; f != nil {
		last = fmt.Sprintf("%s: %s (%d events)", stamp(f.TimeMs, time.Now()), f.Error, f.Events)
	}
	fmt.Fprintf(tw, "last failure\t%s\n", last)
	return tw.Flush()
}
