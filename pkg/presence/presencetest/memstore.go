package presencetest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

var _ presence.Store = (*MemStore)(nil)

// MemConfig configures a MemStore. Zero values mean the defaults, which are
// redisstore's.
type MemConfig struct {
	// Retention is how long offline members are kept. Zero means 168h.
	Retention time.Duration
	// NodeSkew is how much later than its deadline ReapNodes takes a
	// node's lease for lapsed. Zero means 250ms.
	NodeSkew time.Duration
}

// The order of a room's members is their order score, as lua/lib.lua keeps
// it (presence.OrderScore): an online member's is its join sequence ×
// perUser + its live sessions; ties by userId.
const (
	perUser = 1024 // a user has at most perUser - 1 sessions in a room
	// Sessions a heartbeat ends in its room before it runs (heartbeat.lua),
	// members a change forgets (prune) and leases a ReapNodes takes (lease.go).
	heartbeatReap = 64
	pruneMax      = 16
	reapNodesMax  = 16
)

// MemStore is a presence.Store in memory, safe for concurrent use. Every
// method is one atomic step, like a Lua script; events reach the
// MemSubscribers of their room in version order (see NewSubscriber).
type MemStore struct {
	cfg MemConfig

	mu        sync.Mutex
	rooms     map[presence.RoomRef]*memRoom
	nodes     map[string]int64 // lease deadline (unix ms) per node generation
	nodeRooms map[string]map[presence.RoomRef]bool
	lost      bool // LoseData was called since LostData last looked
	serial    int64

	fault func(op string) error
	calls map[string]int
	drop  int
	log   []presence.Event

	subs     []*MemSubscriber
	subGen   uint64
	queue    []delivery
	draining bool
}

type memRoom struct {
	v, q             int64
	epoch            string // "" is "0": the room was never removed
	online, sessions int64
	pruned           int64 // when members were last pruned (unix ms)
	sess             map[string]*memSession
	members          map[string]*memMember
}

type memSession struct {
	uid, epoch, node string
	held             bool
	deadline         int64 // unix ms, unless held
}

type memMember struct {
	seq     int64 // join sequence, while online
	n       int   // live sessions
	last    int64 // lastDisconnected (unix ms), while offline
	data    string
	hasData bool
	profile string // "<name>\t<image>"
	hasProf bool
	written int64 // when the user index entry was written (unix s)
	// Privacy (lua/lib.lua i: and h:): while inv, the member is placed as
	// an offline one (last is its place), its live sessions are ik (not n,
	// not the room's counts), ilast its real lastDisconnected and ishown
	// the one the others see; hide shows the others lastDisconnected 0.
	inv           bool
	ik            int
	ilast, ishown int64
	hide          bool
}

// shownLast is the lastDisconnected the others see of a member offline to
// them (lua/lib.lua shown_last), hide aside.
func (m *memMember) shownLast() int64 {
	if m.inv {
		return m.ishown
	}
	return m.last
}

// NewMemStore returns an empty store.
func NewMemStore(cfg MemConfig) *MemStore {
	if cfg.Retention == 0 {
		cfg.Retention = 168 * time.Hour
	}
	if cfg.NodeSkew == 0 {
		cfg.NodeSkew = 250 * time.Millisecond
	}
	s := &MemStore{cfg: cfg, calls: map[string]int{}}
	s.reset()
	return s
}

func (s *MemStore) reset() {
	s.rooms = map[presence.RoomRef]*memRoom{}
	s.nodes = map[string]int64{}
	s.nodeRooms = map[string]map[presence.RoomRef]bool{}
}

// do runs fn as the atomic step of the call op, unless a fault or ctx
// fails it, and then delivers the events fn published.
func (s *MemStore) do(ctx context.Context, op string, fn func() error) error {
	s.mu.Lock()
	s.calls[op]++
	fault := s.fault
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", op, presence.Errorf(presence.EUNAVAILABLE, "store unavailable"), err)
	}
	if fault != nil {
		if err := fault(op); err != nil {
			return err
		}
	}
	s.mu.Lock()
	err := fn()
	s.mu.Unlock()
	s.flush()
	return err
}

// nonce is a new epoch, unique in the store's life (LoseData included).
func (s *MemStore) nonce(prefix string) string {
	s.serial++
	return prefix + strconv.FormatInt(s.serial, 36)
}

func (s *MemStore) room(ref presence.RoomRef) *memRoom {
	r := s.rooms[ref]
	if r == nil {
		r = &memRoom{sess: map[string]*memSession{}, members: map[string]*memMember{}}
		s.rooms[ref] = r
	}
	return r
}

func (r *memRoom) roomEpoch() string {
	if r.epoch == "" {
		return "0"
	}
	return r.epoch
}

func (m *memMember) score() int64 {
	return presence.OrderScore(presence.Member{Online: m.n > 0, LastDisconnected: m.last}, m.seq*perUser+int64(m.n))
}

// ordered returns the room's members in list order whose score keep admits.
func (r *memRoom) ordered(keep func(score int64) bool) []string {
	var out []string
	for uid, m := range r.members {
		if keep(m.score()) {
			out = append(out, uid)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		return cmp.Or(cmp.Compare(r.members[a].score(), r.members[b].score()), strings.Compare(a, b))
	})
	return out
}

// member renders a member as events and lists show it (a forgotten one as
// its userId alone).
func (r *memRoom) member(uid string) *presence.Member {
	m := r.members[uid]
	if m == nil {
		return &presence.Member{UserID: uid}
	}
	out := presence.MemberFromScore(uid, m.score())
	out.Sessions = m.n
	if !out.Online {
		out.LastDisconnected = m.shownLast()
		if m.hide {
			out.LastDisconnected = 0
		}
	}
	if m.hasData && m.data != "" {
		out.Data = json.RawMessage(m.data)
	}
	if m.hasProf {
		out.Name, out.Image, _ = strings.Cut(m.profile, "\t")
	}
	return &out
}

// addSession counts one more live session of uid: joined when the user came
// online, ok false when it has perUser - 1 sessions already.
func (r *memRoom) addSession(uid string, now int64) (joined, ok bool) {
	m := r.members[uid]
	if m == nil {
		m = &memMember{}
		r.members[uid] = m
	}
	m.written = now / 1000
	if m.inv {
		if m.ik >= perUser-1 {
			return false, false
		}
		m.ik++
		return false, true
	}
	switch {
	case m.n >= perUser-1:
		return false, false
	case m.n > 0:
		m.n++
		r.sessions++
		return false, true
	}
	r.q++
	m.seq, m.n, m.last = r.q, 1, 0
	r.online++
	r.sessions++
	return true, true
}

// dropSession counts one fewer live session of uid; true when it was the
// last (a leave).
func (r *memRoom) dropSession(uid string, now int64) bool {
	m := r.members[uid]
	if m != nil && m.inv {
		if m.ik > 0 {
			m.ik--
			if m.ik == 0 {
				m.ilast = now
			}
		}
		return false
	}
	r.sessions--
	if m == nil || m.n == 0 {
		return false
	}
	if m.n > 1 {
		m.n--
		return false
	}
	m.seq, m.n, m.last = 0, 0, now
	r.online--
	return true
}

// setPrivacy applies a heartbeat's privacy flags (nil: keep) to uid, a
// member new to the room when fresh (lua/lib.lua set_privacy), and returns
// the event it makes, if any.
func (r *memRoom) setPrivacy(uid string, fresh bool, inv, hide *bool, now int64) string {
	m := r.members[uid]
	event := ""
	if hide != nil && *hide != m.hide {
		m.hide = *hide
		if !fresh && m.n == 0 && m.shownLast() != 0 {
			event = presence.EventUpdate
		}
	}
	switch {
	case inv != nil && *inv && !m.inv:
		switch {
		case fresh:
			m.ilast, m.ishown, m.last = 0, 0, now
			event = presence.EventUpdate // it appears, offline
		case m.n > 0:
			r.online--
			r.sessions -= int64(m.n)
			m.ik, m.ilast, m.ishown = m.n, 0, now
			m.seq, m.n, m.last = 0, 0, now
			event = presence.EventLeave
		default:
			m.ilast, m.ishown = m.last, m.last
		}
		m.inv = true
	case inv != nil && !*inv && m.inv:
		m.inv = false
		if m.ik > 0 {
			r.q++
			r.online++
			r.sessions += int64(m.ik)
			m.seq, m.n, m.last = r.q, m.ik, 0
			event = presence.EventJoin
		} else if m.ilast > 0 {
			m.last = m.ilast
		}
		m.ik = 0
	}
	return event
}

func (r *memRoom) endSession(sid string, now int64) (uid string, left bool) {
	sess := r.sess[sid]
	if sess == nil {
		return "", false
	}
	delete(r.sess, sid)
	return sess.uid, r.dropSession(sess.uid, now)
}

// publish bumps the room's version and publishes an event about uid.
func (s *MemStore) publish(ref presence.RoomRef, r *memRoom, kind, uid, node string) int64 {
	r.v++
	s.emit(presence.Event{Room: ref, Version: r.v, Kind: kind, UserID: uid, Member: r.member(uid), Node: node})
	return r.v
}

// endWhere ends up to max (0: all) of the room's sessions that match, the
// earliest deadline first, with a leave for each user that went offline
// (naming node, when given). It returns how many it ended.
func (s *MemStore) endWhere(ref presence.RoomRef, r *memRoom, now int64, max int, node string, match func(*memSession) bool) int {
	var sids []string
	for sid, sess := range r.sess {
		if match(sess) {
			sids = append(sids, sid)
		}
	}
	slices.SortFunc(sids, func(a, b string) int {
		return cmp.Or(cmp.Compare(r.sess[a].deadline, r.sess[b].deadline), strings.Compare(a, b))
	})
	if max > 0 && len(sids) > max {
		sids = sids[:max]
	}
	for _, sid := range sids {
		if uid, left := r.endSession(sid, now); left {
			s.publish(ref, r, presence.EventLeave, uid, node)
		}
	}
	return len(sids)
}

func expiredBy(now int64) func(*memSession) bool {
	return func(sess *memSession) bool { return !sess.held && sess.deadline <= now }
}

// prune forgets a few members offline for longer than the retention.
func (s *MemStore) prune(ref presence.RoomRef, r *memRoom, now int64) {
	cutoff := presence.OrderScoreOffline - (now - s.cfg.Retention.Milliseconds())
	old := r.ordered(func(score int64) bool { return score > cutoff })
	for _, uid := range old[:min(len(old), pruneMax)] {
		if m := r.members[uid]; m.inv && m.ik > 0 {
			m.last = now // invisible but alive: kept, placed anew
			continue
		}
		delete(r.members, uid)
		s.publish(ref, r, presence.EventRemove, uid, "")
	}
}

func conflict(msg string) error { return presence.Errorf(presence.ECONFLICT, "%s", msg) }

// Heartbeat creates or refreshes a session (lua/heartbeat.lua).
func (s *MemStore) Heartbeat(ctx context.Context, hb *presence.Heartbeat) (presence.HeartbeatResult, error) {
	var res presence.HeartbeatResult
	err := s.do(ctx, "Heartbeat", func() (err error) {
		res, err = s.heartbeat(hb)
		return err
	})
	return res, err
}

// HeartbeatMany runs the heartbeats one after the other (each atomic, as
// the scripts of a pipeline are).
func (s *MemStore) HeartbeatMany(ctx context.Context, hbs []*presence.Heartbeat) ([]presence.HeartbeatResult, []error) {
	res := make([]presence.HeartbeatResult, len(hbs))
	errs := make([]error, len(hbs))
	err := s.do(ctx, "HeartbeatMany", func() error {
		for i, hb := range hbs {
			res[i], errs[i] = s.heartbeat(hb)
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return res, errs
}

func (s *MemStore) heartbeat(hb *presence.Heartbeat) (presence.HeartbeatResult, error) {
	ref, sid, uid := hb.Room, hb.SessionID, hb.UserID
	r := s.room(ref)
	now, deadline := hb.Now.UnixMilli(), hb.Deadline.UnixMilli()
	if hb.Release {
		// A node lets go of a session it held: only the deadline changes,
		// and only while that node still holds it.
		sess := r.sess[sid]
		if sess == nil {
			return presence.HeartbeatResult{Version: -1, Ended: true}, nil
		}
		if sess.node == hb.Node && sess.held && !hb.Held {
			sess.held, sess.deadline = false, deadline
		}
		return presence.HeartbeatResult{SessionEpoch: sess.epoch, Version: r.v}, nil
	}
	if sess := r.sess[sid]; hb.KeepAlive && sess != nil {
		// Its owner vouches for it: refreshed before expired ones end.
		sess.held, sess.deadline = hb.Held, deadline
	}
	s.endWhere(ref, r, now, heartbeatReap, "", expiredBy(now))

	epoch := r.roomEpoch()
	var sepoch, event string
	if sess := r.sess[sid]; sess != nil && sess.uid != uid {
		return presence.HeartbeatResult{}, conflict("sessionId belongs to another user")
	} else if sess == nil && hb.KeepAlive {
		return presence.HeartbeatResult{RoomEpoch: epoch, Version: -1, Ended: true}, nil
	}
	if hb.Invisible != nil || hb.HideLastSeen != nil {
		fresh := r.members[uid] == nil
		if fresh {
			r.members[uid] = &memMember{}
		}
		event = r.setPrivacy(uid, fresh, hb.Invisible, hb.HideLastSeen, now)
	}
	if sess := r.sess[sid]; sess != nil {
		sepoch = sess.epoch
		sess.node, sess.held, sess.deadline = hb.Node, hb.Held, deadline
	} else {
		joined, ok := r.addSession(uid, now)
		if !ok {
			return presence.HeartbeatResult{}, conflict("the user has too many sessions in this room")
		}
		sepoch = hb.SessionEpoch
		if sepoch == "" {
			sepoch = s.nonce("s")
		}
		r.sess[sid] = &memSession{uid: uid, epoch: sepoch, node: hb.Node, held: hb.Held, deadline: deadline}
		if joined {
			event = presence.EventJoin
		}
	}

	m := r.members[uid]
	changed := false
	if p := hb.Name + "\t" + hb.Image; hb.SetProfile && (!m.hasProf || m.profile != p) {
		m.profile, m.hasProf, changed = p, true, true
	}
	if hb.Data != nil {
		if d := string(hb.Data); d == "" && m.hasData {
			m.data, m.hasData, changed = "", false, true
		} else if d != "" && (!m.hasData || m.data != d) {
			m.data, m.hasData, changed = d, true, true
		}
	}
	version := r.v
	switch {
	case event != "":
		version = s.publish(ref, r, event, uid, "")
	case changed:
		version = s.publish(ref, r, presence.EventUpdate, uid, "")
	}
	if event != "" || changed || now-r.pruned > 60000 {
		s.prune(ref, r, now)
		r.pruned = now
	}
	return presence.HeartbeatResult{RoomEpoch: epoch, SessionEpoch: sepoch, Version: version}, nil
}

// EndSession ends a session now if its epoch matches (lua/end_session.lua).
func (s *MemStore) EndSession(ctx context.Context, ref presence.RoomRef, sessionID, sessionEpoch string, now time.Time) error {
	return s.do(ctx, "EndSession", func() error {
		r := s.room(ref)
		sess := r.sess[sessionID]
		if sess == nil || sess.epoch != sessionEpoch {
			return nil
		}
		uid, left := r.endSession(sessionID, now.UnixMilli())
		if left {
			s.publish(ref, r, presence.EventLeave, uid, "")
		} else if sess.held {
			s.emit(presence.Event{Room: ref, Kind: presence.EventEnded, UserID: uid, SessionID: sessionID, Epoch: sess.epoch})
		}
		return nil
	})
}

// List returns a room's members (lua/list.lua). A zero q.Now is the wall
// clock.
func (s *MemStore) List(ctx context.Context, ref presence.RoomRef, q presence.ListQuery) (*presence.RoomList, error) {
	var l *presence.RoomList
	err := s.do(ctx, "List", func() error {
		l = s.listLocked(ref, q)
		return nil
	})
	return l, err
}

var _ presence.PagesLister = (*MemStore)(nil)

// ListPages reads the lists of qs in one atomic step (presence.PagesLister).
func (s *MemStore) ListPages(ctx context.Context, ref presence.RoomRef, qs []presence.ListQuery) ([]*presence.RoomList, error) {
	var out []*presence.RoomList
	err := s.do(ctx, "ListPages", func() error {
		for _, q := range qs {
			out = append(out, s.listLocked(ref, q))
		}
		return nil
	})
	return out, err
}

func (s *MemStore) listLocked(ref presence.RoomRef, q presence.ListQuery) *presence.RoomList {
	l := &presence.RoomList{RoomID: ref.RoomID, Members: []presence.Member{}}
	func() {
		r := s.rooms[ref]
		if r == nil {
			r = &memRoom{}
		}
		if q.Epoch != "" && q.Epoch != r.roomEpoch() {
			l.Stale = true
			return
		}
		l.Version, l.Epoch = r.v, r.roomEpoch()
		now := q.Now
		if now.IsZero() {
			now = time.Now()
		}
		max := presence.OrderScoreOffline - (now.UnixMilli() - s.cfg.Retention.Milliseconds())
		if q.OnlineOnly {
			max = presence.OrderScoreOnlineMax
		}
		uids := r.ordered(func(score int64) bool { return score < max })
		if a := q.After; a != nil {
			// As lua/lib.lua list_start: an online position is its join
			// sequence, an offline one (score, userId).
			uids = slices.DeleteFunc(uids, func(uid string) bool {
				sc := r.members[uid].score()
				if a.Score < presence.OrderScoreOnlineMax {
					return sc < (a.Score/perUser+1)*perUser
				}
				return sc < a.Score || sc == a.Score && uid <= a.UserID
			})
		}
		if q.Limit >= 0 && len(uids) > q.Limit {
			uids = uids[:q.Limit]
			last := uids[len(uids)-1]
			l.More = &presence.ListPosition{Score: r.members[last].score(), UserID: last}
		}
		for _, uid := range uids {
			m := *r.member(uid)
			if mm := r.members[uid]; q.IncludeInvisible && mm.inv {
				m.Invisible, m.Sessions, m.Online, m.LastDisconnected = true, mm.ik, mm.ik > 0, 0
				if !m.Online {
					m.LastDisconnected = mm.ilast
				}
			}
			l.Members = append(l.Members, m)
		}
	}()
	return l
}

// Count returns the room's version, online members and live sessions.
func (s *MemStore) Count(ctx context.Context, ref presence.RoomRef) (*presence.RoomCount, error) {
	c := &presence.RoomCount{RoomID: ref.RoomID}
	err := s.do(ctx, "Count", func() error {
		if r := s.rooms[ref]; r != nil {
			c.Version, c.Online, c.Sessions = r.v, r.online, r.sessions
		}
		return nil
	})
	return c, err
}

// SetData replaces a member's data (lua/set_data.lua).
func (s *MemStore) SetData(ctx context.Context, ref presence.RoomRef, userID string, data json.RawMessage, now time.Time) error {
	return s.do(ctx, "SetData", func() error {
		r := s.room(ref)
		m := r.members[userID]
		if m == nil {
			return presence.Errorf(presence.ENOTFOUND, "user is not a member of the room")
		}
		d := string(data)
		if (d == "" && !m.hasData) || (m.hasData && m.data == d) {
			return nil
		}
		m.data, m.hasData = d, d != ""
		s.publish(ref, r, presence.EventUpdate, userID, "")
		return nil
	})
}

// EndUser ends all of a user's sessions in a room, forgetting the member
// with forget (lua/end_user.lua).
func (s *MemStore) EndUser(ctx context.Context, ref presence.RoomRef, userID string, forget bool, now time.Time) (bool, error) {
	changed := false
	err := s.do(ctx, "EndUser", func() error {
		r := s.room(ref)
		m := r.members[userID]
		if m == nil {
			return nil
		}
		online := m.n > 0
		hidden := m.inv && m.ik > 0 // invisible: the others see nothing
		if online || hidden {
			for sid, sess := range r.sess {
				if sess.uid == userID {
					delete(r.sess, sid)
					if online {
						r.sessions--
					}
				}
			}
		}
		if online {
			r.online--
		}
		if hidden {
			m.ik, m.ilast = 0, now.UnixMilli()
		}
		switch {
		case forget:
			delete(r.members, userID)
			s.publish(ref, r, presence.EventRemove, userID, "")
		case online:
			m.seq, m.n, m.last = 0, 0, now.UnixMilli()
			s.publish(ref, r, presence.EventLeave, userID, "")
		case !hidden:
			return nil
		}
		changed = true
		return nil
	})
	return changed, err
}

// RemoveRoom forgets a room: its version goes on, under a new epoch
// (lua/remove_room.lua).
func (s *MemStore) RemoveRoom(ctx context.Context, ref presence.RoomRef, now time.Time) error {
	return s.do(ctx, "RemoveRoom", func() error {
		v := s.room(ref).v + 1
		r := &memRoom{v: v, epoch: s.nonce("r"), sess: map[string]*memSession{}, members: map[string]*memMember{}}
		s.rooms[ref] = r
		s.emit(presence.Event{Room: ref, Version: v, Kind: presence.EventReset})
		return nil
	})
}

// UserRooms lists the rooms of an org where the user is a member: at most
// limit of those it joined most recently, online first, then offline ones,
// most recently disconnected first (redisstore/userindex.go).
func (s *MemStore) UserRooms(ctx context.Context, org, userID string, limit int) ([]presence.UserRoom, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	out := []presence.UserRoom{}
	err := s.do(ctx, "UserRooms", func() error {
		type entry struct {
			room    presence.UserRoom
			written int64
		}
		var all []entry
		for ref, r := range s.rooms {
			if m := r.members[userID]; m != nil && ref.Org == org {
				u := r.member(userID) // what the others see
				ur := presence.UserRoom{RoomID: ref.RoomID, Online: u.Online, LastDisconnected: u.LastDisconnected,
					HideLastSeen: m.hide, SeenLastDisconnected: u.LastDisconnected}
				if !u.Online && !m.inv {
					ur.LastDisconnected = m.last
				}
				if m.inv {
					ur.Invisible, ur.Online, ur.LastDisconnected = true, m.ik > 0, 0
					if !ur.Online {
						ur.LastDisconnected = m.ilast
					}
				}
				all = append(all, entry{ur, m.written})
			}
		}
		slices.SortFunc(all, func(a, b entry) int {
			return cmp.Or(cmp.Compare(b.written, a.written), strings.Compare(b.room.RoomID, a.room.RoomID))
		})
		for _, e := range all[:min(len(all), limit)] {
			out = append(out, e.room)
		}
		slices.SortStableFunc(out, func(a, b presence.UserRoom) int {
			if a.Online != b.Online {
				if a.Online {
					return -1
				}
				return 1
			}
			return cmp.Compare(b.LastDisconnected, a.LastDisconnected)
		})
		return nil
	})
	return out, err
}

// Reap ends the sessions whose deadline is at or before now, in every room
// (lua/reap.lua), and returns how many it ended. Held sessions have no
// deadline: ReapNodes ends them.
func (s *MemStore) Reap(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.do(ctx, "Reap", func() error {
		ms := now.UnixMilli()
		for _, ref := range sortedRooms(s.rooms) {
			n += s.endWhere(ref, s.rooms[ref], ms, 0, "", expiredBy(ms))
		}
		return nil
	})
	return n, err
}

func sortedRooms[V any](m map[presence.RoomRef]V) []presence.RoomRef {
	refs := make([]presence.RoomRef, 0, len(m))
	for ref := range m {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b presence.RoomRef) int {
		return cmp.Or(strings.Compare(a.Org, b.Org), strings.Compare(a.RoomID, b.RoomID))
	})
	return refs
}

// RenewLease registers a node generation (prev zero) or renews its lease,
// compare-and-set on prev (lua/renew_lease.lua).
func (s *MemStore) RenewLease(ctx context.Context, node string, prev, deadline time.Time) (bool, error) {
	ok := false
	err := s.do(ctx, "RenewLease", func() error {
		cur, exists := s.nodes[node]
		if exists && cur == deadline.UnixMilli() {
			ok = true // the same call again (a retry): idempotent
			return nil
		}
		if prev.IsZero() && exists || !prev.IsZero() && (!exists || cur != prev.UnixMilli()) {
			return nil
		}
		s.nodes[node], ok = deadline.UnixMilli(), true
		return nil
	})
	return ok, err
}

// HoldRooms records rooms where node holds (or is about to hold) sessions.
func (s *MemStore) HoldRooms(ctx context.Context, node string, rooms []presence.RoomRef) error {
	return s.do(ctx, "HoldRooms", func() error {
		set := s.nodeRooms[node]
		if set == nil {
			set = map[presence.RoomRef]bool{}
			s.nodeRooms[node] = set
		}
		for _, r := range rooms {
			set[r] = true
		}
		return nil
	})
}

// ReleaseRooms forgets rooms where node holds no session any more.
func (s *MemStore) ReleaseRooms(ctx context.Context, node string, rooms []presence.RoomRef) error {
	return s.do(ctx, "ReleaseRooms", func() error {
		for _, r := range rooms {
			delete(s.nodeRooms[node], r)
		}
		if len(s.nodeRooms[node]) == 0 {
			delete(s.nodeRooms, node)
		}
		return nil
	})
}

// ReapNodes declares dead the nodes whose lease lapsed before now less
// NodeSkew, ends the sessions they held in the rooms they recorded (a leave
// naming the node for each user that went offline), and forgets them, like
// redisstore.Store.ReapNodes. It returns how many sessions it ended.
func (s *MemStore) ReapNodes(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.do(ctx, "ReapNodes", func() error {
		before := now.Add(-s.cfg.NodeSkew).UnixMilli()
		var lapsed []string
		for node, deadline := range s.nodes {
			if deadline < before {
				lapsed = append(lapsed, node)
			}
		}
		slices.SortFunc(lapsed, func(a, b string) int {
			return cmp.Or(cmp.Compare(s.nodes[a], s.nodes[b]), strings.Compare(a, b))
		})
		ms := now.UnixMilli()
		for _, node := range lapsed[:min(len(lapsed), reapNodesMax)] {
			for _, ref := range sortedRooms(s.nodeRooms[node]) {
				n += s.endWhere(ref, s.room(ref), ms, 0, node, func(sess *memSession) bool { return sess.held && sess.node == node })
			}
			delete(s.nodeRooms, node)
			delete(s.nodes, node)
		}
		return nil
	})
	return n, err
}

// Ping fails only when a fault says so.
func (s *MemStore) Ping(ctx context.Context) error {
	return s.do(ctx, "Ping", func() error { return nil })
}

// LostData reports true once after LoseData (to the first caller only: the
// store is one, where each redisstore.Store remembers what it saw).
func (s *MemStore) LostData(ctx context.Context) (bool, error) {
	lost := false
	err := s.do(ctx, "LostData", func() error {
		lost, s.lost = s.lost, false
		return nil
	})
	return lost, err
}
