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
	members []presence.Member
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
	v.members = append([]presence.Member(nil), members...)
	v.seq, v.next = map[string]int64{}, 0
	for _, m := range v.members {
		if m.Online {
			v.next++
			v.seq[m.UserID] = v.next
		}
	}
	v.sort()
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
		v.change(c.Event, c.Member, false)
	}
	v.sort() // once for the batch
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
	v.change(kind, m, true)
}

// change applies one change to the members (the version does not move),
// sorting them after it with sorted.
func (v *roomView) change(kind string, m *presence.Member, sorted bool) {
	if kind == presence.EventReset {
		v.members, v.seq = nil, map[string]int64{}
		return
	}
	if m == nil {
		return
	}
	i := v.index(m.UserID)
	switch kind {
	case presence.EventRemove:
		if i >= 0 {
			v.members = append(v.members[:i], v.members[i+1:]...)
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
		v.members = append(v.members, *m)
	}
	switch {
	case !m.Online:
		delete(v.seq, m.UserID)
	case kind == presence.EventJoin || !wasOnline:
		// Back online: placed after the others online.
		v.next++
		v.seq[m.UserID] = v.next
	}
	if sorted {
		v.sort()
	}
}

func (v *roomView) index(userID string) int {
	for i := range v.members {
		if v.members[i].UserID == userID {
			return i
		}
	}
	return -1
}

// sort puts the members in the room order (presence.SortMembers), online
// ones by the order this view saw them come online.
func (v *roomView) sort() {
	presence.SortMembers(v.members, func(userID string) int64 { return v.seq[userID] })
}

// list returns a deep copy of the view.
func (v *roomView) list() *presence.RoomList {
	l := &presence.RoomList{RoomID: v.roomID, Version: v.version, Members: make([]presence.Member, len(v.members))}
	for i, m := range v.members {
		m.Data = bytes.Clone(m.Data)
		l.Members[i] = m
	}
	return l
}
