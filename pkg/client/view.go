package client

import (
	"bytes"

	"github.com/presencecluster/presence/pkg/presence"
)

// maxHeld bounds the events a view holds ahead of its version (see apply).
const maxHeld = 1000

// roomView is a Conn's picture of one room: the last snapshot with every
// later event applied, in version order (package doc: Views).
type roomView struct {
	roomID  string
	version int64
	// members are the room's members, in the room order unless unsorted
	// (events only mark the order stale: a storm of 10,000 joins costs a
	// view its changes, not a sort and a scan of the room each; list sorts
	// once). pos is each member's index in members.
	members  []presence.Member
	pos      map[string]int
	unsorted bool
	// seq orders the online members: the order they came online, as far as
	// this client knows (snapshot position, then the order of join events).
	seq  map[string]int64
	next int64
	// held are the events ahead of the view (version+2 and later), by
	// version, until the missing ones or a snapshot come; at most maxHeld.
	held map[int64]heldEvent
}

// heldEvent is a presence event, or a batch (to set: the versions up to
// to), waiting for the versions before it.
type heldEvent struct {
	kind    string
	member  *presence.Member
	to      int64
	changes []BatchChange
}

// newView builds a view from a snapshot (joined, watching, sync).
func newView(roomID string, version int64, members []presence.Member) *roomView {
	v := &roomView{roomID: roomID, held: map[int64]heldEvent{}}
	v.snapshot(version, members)
	return v
}

// snapshot replaces the view by a snapshot (in the server's order): the
// held events at or below its version are dropped, the ones right after it
// applied.
func (v *roomView) snapshot(version int64, members []presence.Member) {
	v.version = version
	v.members, v.pos = append([]presence.Member(nil), members...), nil
	v.seq, v.next = map[string]int64{}, 0
	for _, m := range v.members {
		if m.Online {
			v.next++
			v.seq[m.UserID] = v.next
		}
	}
	v.unsorted = true
	for hv := range v.held {
		if hv <= version {
			delete(v.held, hv)
		}
	}
	v.drain()
}

// event takes a presence event: applied if it is the next version (with
// the held ones that follow it), held if it is ahead, ignored if the view
// has it already (older, or a version held already). When maxHeld events
// are held, one more drops them all (and itself): a snapshot will come.
func (v *roomView) event(version int64, kind string, m *presence.Member) {
	if v.hold(version, version, heldEvent{kind: kind, member: m}) {
		return
	}
	v.apply(kind, m)
	v.drain()
}

// hold reports whether versions from..to are not for now: the view has them
// already (older, or held already), or they are ahead (held, at most
// maxHeld; one more drops them all and itself).
func (v *roomView) hold(from, to int64, e heldEvent) bool {
	if _, dup := v.held[from]; dup || to <= v.version {
		return true
	}
	if from > v.version+1 {
		if len(v.held) >= maxHeld {
			clear(v.held)
		} else {
			v.held[from] = e
		}
		return true
	}
	return false
}

// batch takes a batch of versions from..to: applied if it starts at the
// next version (with the held events that follow it), held if it starts
// further ahead, ignored if the view has to already. (A view between from
// and to, which the server never leaves a batch to, applies it too: each
// member ends right, the order of the batch's joins may not.)
func (v *roomView) batch(from, to int64, changes []BatchChange) {
	if v.hold(from, to, heldEvent{to: to, changes: changes}) {
		return
	}
	v.applyBatch(to, changes)
	v.drain()
}

func (v *roomView) applyBatch(to int64, changes []BatchChange) {
	for _, c := range changes {
		v.change(c.Event, c.Member)
	}
	v.version = to
}

// drain applies the held events that follow the view's version.
func (v *roomView) drain() {
	for {
		e, ok := v.held[v.version+1]
		if !ok {
			return
		}
		delete(v.held, v.version+1)
		if e.to > 0 {
			v.applyBatch(e.to, e.changes)
			continue
		}
		v.apply(e.kind, e.member)
	}
}

// apply applies the event of the next version: the version moves whatever
// the event says (a reset empties the view; an unknown kind or a missing
// member changes no member).
func (v *roomView) apply(kind string, m *presence.Member) {
	v.version++
	v.change(kind, m)
}

// change applies one change to the members (the version does not move);
// the order is restored when the view is read (list).
func (v *roomView) change(kind string, m *presence.Member) {
	if kind == presence.EventReset {
		v.members, v.pos, v.seq = nil, nil, map[string]int64{}
		return
	}
	if m == nil {
		return
	}
	i := v.index(m.UserID)
	switch kind {
	case presence.EventRemove:
		if i >= 0 {
			// The last member takes its place: the order is restored by
			// the next list.
			last := len(v.members) - 1
			if i != last {
				v.members[i] = v.members[last]
				v.pos[v.members[i].UserID] = i
			}
			v.members[last] = presence.Member{}
			v.members = v.members[:last]
			delete(v.pos, m.UserID)
			v.unsorted = true
		}
		delete(v.seq, m.UserID)
		return
	case presence.EventJoin, presence.EventUpdate, presence.EventLeave:
	default:
		return
	}
	wasOnline := i >= 0 && v.members[i].Online
	if i >= 0 {
		v.members[i] = *m
	} else {
		v.pos[m.UserID] = len(v.members)
		v.members = append(v.members, *m)
	}
	v.unsorted = true
	switch {
	case !m.Online:
		delete(v.seq, m.UserID)
	case kind == presence.EventJoin || !wasOnline:
		// Back online: placed after the others online.
		v.next++
		v.seq[m.UserID] = v.next
	}
}

// index returns the position of userID in members, or -1.
func (v *roomView) index(userID string) int {
	if v.pos == nil {
		v.pos = make(map[string]int, len(v.members))
		for i := range v.members {
			v.pos[v.members[i].UserID] = i
		}
	}
	if i, ok := v.pos[userID]; ok {
		return i
	}
	return -1
}

// sort puts the members in the room order (presence.SortMembers), online
// ones by the order this view saw them come online, if a change left them
// out of it.
func (v *roomView) sort() {
	if !v.unsorted {
		return
	}
	presence.SortMembers(v.members, func(userID string) int64 { return v.seq[userID] })
	v.unsorted = false
	v.pos = nil // rebuilt by the next index
}

// list returns a deep copy of the view, in the room order.
func (v *roomView) list() *presence.RoomList {
	v.sort()
	l := &presence.RoomList{RoomID: v.roomID, Version: v.version, Members: make([]presence.Member, len(v.members))}
	for i, m := range v.members {
		m.Data = bytes.Clone(m.Data)
		l.Members[i] = m
	}
	return l
}
