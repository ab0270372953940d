package client

import (
	"bytes"
	"sort"

	"github.com/presencecluster/presence/pkg/presence"
)

// roomView is a Conn's picture of one room: the last snapshot with every
// later event applied, in the server's order.
type roomView struct {
	roomID  string
	version int64
	members []presence.Member
	// seq orders the online members: the order they came online, as far as
	// this client knows (snapshot position, then the order of join events).
	seq  map[string]int64
	next int64
}

// newView builds a view from a snapshot (joined, watching, sync), which is
// in the server's order.
func newView(roomID string, version int64, members []presence.Member) *roomView {
	v := &roomView{roomID: roomID, version: version, seq: map[string]int64{}}
	v.members = append([]presence.Member(nil), members...)
	for _, m := range v.members {
		if m.Online {
			v.next++
			v.seq[m.UserID] = v.next
		}
	}
	v.sort()
	return v
}

// apply applies a presence event if it is the next version; it reports
// whether it did. An older event is already in the view; a newer one means
// the view missed some, and the server sends a sync instead.
func (v *roomView) apply(version int64, kind string, m *presence.Member) bool {
	if version != v.version+1 {
		return false
	}
	v.version = version
	if kind == presence.EventReset {
		v.members, v.seq = nil, map[string]int64{}
		return true
	}
	if m == nil {
		return true
	}
	i := v.index(m.UserID)
	switch kind {
	case presence.EventRemove:
		if i >= 0 {
			v.members = append(v.members[:i], v.members[i+1:]...)
		}
		delete(v.seq, m.UserID)
		return true
	case presence.EventJoin, presence.EventUpdate, presence.EventLeave:
	default:
		return true // unknown kind: the version moves, the members stay
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
	v.sort()
	return true
}

func (v *roomView) index(userID string) int {
	for i := range v.members {
		if v.members[i].UserID == userID {
			return i
		}
	}
	return -1
}

// sort puts the members in the server's order: online ones by the order
// they came online, then offline ones by lastDisconnected, most recent
// first (ties by userId, as Redis orders equal scores).
func (v *roomView) sort() {
	sort.SliceStable(v.members, func(i, j int) bool {
		a, b := v.members[i], v.members[j]
		if a.Online != b.Online {
			return a.Online
		}
		if a.Online {
			return v.seq[a.UserID] < v.seq[b.UserID]
		}
		if a.LastDisconnected != b.LastDisconnected {
			return a.LastDisconnected > b.LastDisconnected
		}
		return a.UserID < b.UserID
	})
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
