package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// Users across rooms: a user's org-wide state (online while it has a live
// session in any room of the org) is always computed from the truth, the
// rooms the user index lists and their order sets (presence.SummarizeRooms
// of UserRooms). What is stored is only what it takes to publish each
// change once:
//
//   - Every room script that makes a user come online or go offline in a
//     room returns that user, and marks it pending in the room (the room
//     hash's u:<userId>, lua/lib.lua changed).
//   - The node then runs the user's second step, in the slot of the user's
//     index bucket: (1) HINCRBY t:<userId> of the user state hash (a
//     ticket), (2) read the truth, (3) user_state.lua stores whether the
//     user is online and publishes a "user" event on the user's channel
//     only if that changed and the ticket is still the user's last, (4)
//     clear_pending.lua removes the room's mark. A computation that is not
//     the last leaves its mark: the last one read the rooms after every
//     change whose node took a ticket before it, so it stores the truth.
//   - Healing: a node that dies between the room script and the second
//     step leaves the mark; reap.lua and reap_node.lua return the room's
//     marks older than a second, and the reaper runs the second step for
//     them. A node that (re)writes a user index entry of a pair it had not
//     seen (a client that moved from a dead node) runs it too.

// userStep is a second step to run: the users that changed in a room, and
// when (the room script's now; clear_pending.lua clears marks up to it).
type userStep struct {
	room  presence.RoomRef
	at    int64
	users []string
}

// stepsOf returns the step of users who changed in room at (unix ms), if
// any.
func stepsOf(room presence.RoomRef, at int64, users []string) []userStep {
	if len(users) == 0 {
		return nil
	}
	return []userStep{{room: room, at: at, users: users}}
}

// wireUser is a "user" event as published on a user's channel.
type wireUser struct {
	UserID           string `json:"userId"`
	Online           bool   `json:"online"`
	LastDisconnected int64  `json:"lastDisconnected"`
	Rooms            int    `json:"rooms"`
}

// syncUsers runs the second step (see above) of the users of steps, all
// together: four round trips whatever their number. It runs after the room
// scripts, even when their caller gave up waiting (its own timeout). A
// failure leaves the users' marks in their rooms: a reaper runs the step
// again.
func (s *Store) syncUsers(ctx context.Context, steps []userStep) {
	if len(steps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.CallTimeout)
	defer cancel()
	if err := s.runSteps(ctx, steps); err != nil {
		s.log.Debug("user state step failed (a reaper runs it again)", "err", err)
	}
}

type orgUser struct{ org, user string }

func (s *Store) runSteps(ctx context.Context, steps []userStep) error {
	var users []orgUser
	seen := map[orgUser]bool{}
	for _, st := range steps {
		for _, u := range st.users {
			if k := (orgUser{st.room.Org, u}); !seen[k] {
				seen[k] = true
				users = append(users, k)
			}
		}
	}
	// (1) a ticket, then (in the same slot, so in this order) the user's
	// index entries; (2) their rooms' order scores.
	states, tickets, err := s.readUsers(ctx, users, true)
	if err != nil {
		return err
	}
	// (3) store each user's state, publishing a change.
	res := make([]*redis.Cmd, len(users))
	if err := s.pipelined(ctx, func(p redis.Pipeliner) {
		for i, k := range users {
			st := states[i]
			ev, _ := json.Marshal(wireUser{UserID: k.user, Online: st.Online, LastDisconnected: st.LastDisconnected, Rooms: st.Rooms})
			online := "0"
			if st.Online {
				online = "1"
			}
			res[i] = s.userState.EvalSha(ctx, p, []string{s.keys.UserState(k.org, k.user)},
				k.user, tickets[i].Val(), online, s.keys.UserChannel(k.org, k.user), s.pub, ev, s.ttl)
		}
	}); err != nil && !isScriptError(err) {
		return s.wrap("user state", err)
	}
	applied := map[orgUser]bool{}
	for i, k := range users {
		if n, err := res[i].Int(); err == nil && n >= 0 {
			applied[k] = true
		}
	}
	// (4) clear the rooms' marks of the users whose state was stored (a
	// computation that was not the last leaves its mark: if the last one
	// fails, a reaper runs the step again).
	return s.wrap("user state", s.pipelined(ctx, func(p redis.Pipeliner) {
		for _, st := range steps {
			args := []any{st.at}
			for _, u := range st.users {
				if applied[orgUser{st.room.Org, u}] {
					args = append(args, u)
				}
			}
			if len(args) > 1 {
				rk := s.keys.Room(st.room)
				s.clearPending.EvalSha(ctx, p, rk.List[:], args...)
			}
		}
	}))
}

// readUsers computes users' org-wide states from the truth in two round
// trips whatever their number: their index entries (ZSCAN of the user's
// bucket from cursor 0, which holds about 100 entries: one page; a larger
// bucket is scanned on), then their rooms' order scores. With tickets,
// each user's ticket is taken first, in the same pipeline (the same slot
// as its index entries, so before they are read).
func (s *Store) readUsers(ctx context.Context, users []orgUser, withTickets bool) ([]presence.UserPresence, []*redis.IntCmd, error) {
	var tickets []*redis.IntCmd
	if withTickets {
		tickets = make([]*redis.IntCmd, len(users))
	}
	scans := make([]*redis.ScanCmd, len(users))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range users {
			if withTickets {
				tickets[i] = p.HIncrBy(ctx, s.keys.UserState(k.org, k.user), "t:"+k.user, 1)
			}
			scans[i] = p.ZScan(ctx, s.keys.Users(k.org, k.user), 0, globEscape(k.user+"\n")+"*", 1000)
		}
		return nil
	}); err != nil {
		return nil, nil, s.wrap("user state", err)
	}
	rooms := make([][]string, len(users))
	for i, k := range users {
		kv, cursor, _ := scans[i].Result()
		prefix := k.user + "\n"
		for {
			for j := 0; j+1 < len(kv); j += 2 {
				if strings.HasPrefix(kv[j], prefix) {
					rooms[i] = append(rooms[i], kv[j][len(prefix):])
				}
			}
			if cursor == 0 {
				break
			}
			var err error // a large bucket: scan on
			if kv, cursor, err = s.rdb.ZScan(ctx, s.keys.Users(k.org, k.user), cursor, globEscape(prefix)+"*", 1000).Result(); err != nil {
				return nil, nil, s.wrap("user state", err)
			}
		}
	}
	reads := make([][]roomRead, len(users))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range users {
			for _, r := range rooms[i] {
				reads[i] = append(reads[i], s.queueRoomRead(ctx, p, presence.RoomRef{Org: k.org, RoomID: r}, k.user))
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, s.wrap("user state", err)
	}
	// The others' view: an invisible member is offline, a hidden last seen 0.
	states := make([]presence.UserPresence, len(users))
	for i, k := range users {
		var in []presence.UserRoom
		for _, rd := range reads[i] {
			if r, ok := rd.userRoom(""); ok {
				in = append(in, r.Public())
			}
		}
		states[i] = presence.SummarizeRooms(k.user, in)
	}
	return states, tickets, nil
}

// roomRead is what a user's state in one room is read from: the member's
// order score (what the others see) and its privacy flags (lua/lib.lua).
type roomRead struct {
	score *redis.FloatCmd
	flags *redis.SliceCmd
}

func (s *Store) queueRoomRead(ctx context.Context, p redis.Pipeliner, room presence.RoomRef, userID string) roomRead {
	rk := s.keys.Room(room)
	return roomRead{score: p.ZScore(ctx, rk.Order(), userID), flags: p.HMGet(ctx, rk.Hash(), "i:"+userID, "h:"+userID)}
}

// userRoom returns the user's state in the room, the truth with its flags
// and what the others see (SeenLastDisconnected); ok is false when the
// room does not have the member (or the read failed).
func (r roomRead) userRoom(roomID string) (presence.UserRoom, bool) {
	sc, err := r.score.Result()
	if err != nil {
		return presence.UserRoom{}, false
	}
	m := presence.MemberFromScore("", int64(sc))
	out := presence.UserRoom{RoomID: roomID, Online: m.Online, LastDisconnected: m.LastDisconnected,
		SeenLastDisconnected: m.LastDisconnected}
	f, _ := r.flags.Result()
	if len(f) == 2 {
		if inv, ok := f[0].(string); ok {
			// "<sessions>\t<lastDisconnected>\t<shown>" (lua/lib.lua)
			parts := strings.SplitN(inv, "\t", 3)
			if len(parts) == 3 {
				k, _ := strconv.Atoi(parts[0])
				out.Invisible, out.Online, out.LastDisconnected = true, k > 0, 0
				if !out.Online {
					out.LastDisconnected, _ = strconv.ParseInt(parts[1], 10, 64)
				}
				out.SeenLastDisconnected, _ = strconv.ParseInt(parts[2], 10, 64)
			}
		}
		if f[1] != nil {
			out.HideLastSeen, out.SeenLastDisconnected = true, 0
		}
	}
	return out, true
}

var _ presence.UsersReader = (*Store)(nil)

// UsersPresence reads many users' org-wide states in a few round trips
// (presence.UsersReader): 1000 users at a time.
func (s *Store) UsersPresence(ctx context.Context, org string, userIDs []string) ([]presence.UserPresence, error) {
	out := make([]presence.UserPresence, 0, len(userIDs))
	for start := 0; start < len(userIDs); start += 1000 {
		batch := userIDs[start:min(start+1000, len(userIDs))]
		users := make([]orgUser, len(batch))
		for i, u := range batch {
			users[i] = orgUser{org, u}
		}
		cctx, cancel := s.callCtx(ctx)
		states, _, err := s.readUsers(cctx, users, false)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, states...)
	}
	return out, nil
}

// changedUsers reads the users a room script returned after its first n
// elements (lua/lib.lua with_changed).
func changedUsers(v []any, n int) []string {
	if len(v) <= n {
		return nil
	}
	out := make([]string, 0, len(v)-n)
	for _, x := range v[n:] {
		out = append(out, toString(x))
	}
	return out
}

// DecodeUser decodes a "user" event published on a user's channel.
func DecodeUser(payload []byte) (presence.UserPresence, error) {
	var w wireUser
	if err := json.Unmarshal(payload, &w); err != nil || w.UserID == "" {
		return presence.UserPresence{}, fmt.Errorf("bad user event %q", payload)
	}
	return presence.UserPresence{UserID: w.UserID, Online: w.Online, LastDisconnected: w.LastDisconnected, Rooms: w.Rooms}, nil
}

// userMark starts the RoomID of the pseudo room a Subscriber uses for a
// user's channel: a room id has no control characters, so it is never a
// real room's.
const userMark = "\x00user\x00"

func userRef(org, userID string) presence.RoomRef {
	return presence.RoomRef{Org: org, RoomID: userMark + userID}
}

// userOf tells whether ref is a user's pseudo room, and whose.
func userOf(ref presence.RoomRef) (string, bool) {
	if len(ref.RoomID) > len(userMark) && ref.RoomID[:len(userMark)] == userMark {
		return ref.RoomID[len(userMark):], true
	}
	return "", false
}

// channel returns the channel a Subscriber follows for ref: a room's events,
// or a user's.
func (k Keys) channel(ref presence.RoomRef) string {
	if u, ok := userOf(ref); ok {
		return k.UserChannel(ref.Org, u)
	}
	return k.Room(ref).Events
}

// SubscribeUser follows a user's org-wide changes: every "user" event
// published after it returns reaches the handler's OnUserEvent.
func (sub *Subscriber) SubscribeUser(ctx context.Context, org, userID string) error {
	return sub.Subscribe(ctx, userRef(org, userID))
}

// UnsubscribeUser stops following a user.
func (sub *Subscriber) UnsubscribeUser(ctx context.Context, org, userID string) error {
	return sub.Unsubscribe(ctx, userRef(org, userID))
}

var _ presence.UserSubscriber = (*Subscriber)(nil)

// deliverUser decodes one message of a user's channel.
func (sub *Subscriber) deliverUser(org, payload string) {
	up, err := DecodeUser([]byte(payload))
	if err != nil {
		sub.cfg.Logger.Warn("bad user event payload", "err", err)
		return
	}
	if h, ok := sub.cfg.Handler.(presence.UserEventHandler); ok {
		h.OnUserEvent(org, up)
	}
}
