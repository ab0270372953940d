package presence

import (
	"cmp"
	"slices"
	"time"
)

// Storms: a connection gets at most RealtimeConfig.RoomFrames frames per
// room in any one-second window. The budget is the room's, on the node, not
// each connection's: every connection of a room gets the same frames (one
// shared Update each), so counting them once counts them for all. While the
// room's budget is used, its events are held, and when the window allows
// they go out as one Batch (or, a single event, as itself).

// roomFrameWindow is the window the room's budget is counted in: the
// contract's second and a margin for the jitter between the moments the
// node hands a frame to its sockets and the moments each socket writes it
// (a socket that writes one frame late and the next on time must not show
// its client one frame too many in a second).
const roomFrameWindow = time.Second + 100*time.Millisecond

// roomOut is what a room sends its connections: the frames sent in the
// last window, and what waits for the budget.
type roomOut struct {
	// sent holds when the room's last frames went out, oldest first: at
	// most RoomFrames within roomFrameWindow.
	sent []time.Time
	// sync, when set, is a sync held back; held are the events held back
	// (after sync, when set), in version order with no gap.
	sync  *RoomList
	held  []Event
	timer bool // a flush is scheduled
}

// Batch is a room's events of versions FromVersion..Update.Version
// coalesced: the last change of each user that changed, in version order.
// Applied to the room at version FromVersion-1 it gives the room at
// Update.Version, order included: a user that came online within the batch
// and is online at its end is a "join" at the version of its last coming
// online (the change carries the member as it is at the end), so that the
// clients order it among the others as the room does.
type Batch struct {
	FromVersion int64
	Changes     []Event
}

// allow reports whether the room may send a frame at now, forgetting the
// frames that left the window. Once the room used half its budget in the
// window, its frames are paced: at most one per roomFrameWindow/budget.
// Without the pace a storm's frames leave in bursts (the budget at once,
// then again each time the window's oldest frames leave it, in the rhythm
// they were sent), and a client that reads one burst 100 ms late and the
// next on time sees twice the budget in a second. Paced, each frame read
// late by another 58 ms counts one more at most.
func (o *roomOut) allow(now time.Time, budget int) bool {
	i := 0
	for i < len(o.sent) && now.Sub(o.sent[i]) >= roomFrameWindow {
		i++
	}
	if i > 0 {
		o.sent = append(o.sent[:0], o.sent[i:]...)
	}
	if len(o.sent) == 0 {
		o.sent = nil // a quiet room holds no buffer
		return true
	}
	return len(o.sent) < budget && (len(o.sent) < budget/2 || now.Sub(o.sent[len(o.sent)-1]) >= roomFrameWindow/time.Duration(budget))
}

// nextAt returns when the room may send its next frame (allow said not
// now).
func (o *roomOut) nextAt(budget int) time.Time {
	var at time.Time
	if len(o.sent) >= budget {
		at = o.sent[len(o.sent)-budget].Add(roomFrameWindow)
	}
	if len(o.sent) > 0 && len(o.sent) >= budget/2 {
		if paced := o.sent[len(o.sent)-1].Add(roomFrameWindow / time.Duration(budget)); paced.After(at) {
			at = paced
		}
	}
	return at
}

// sendEventLocked hands an event (the next version of the room) to the
// room's connections now, or holds it while the room's budget is used.
func (rt *Realtime) sendEventLocked(r *rtRoom, ev Event) {
	now := time.Now()
	if r.out.sync == nil && len(r.out.held) == 0 && r.out.allow(now, rt.budget) {
		rt.pushLocked(r, &Update{Room: ev.Room, Version: ev.Version, Event: &ev}, now)
		return
	}
	r.out.held = append(r.out.held, ev)
	rt.scheduleFlushLocked(ev.Room, r)
}

// sendSyncLocked hands a sync to the room's connections now, or holds it
// (instead of the events held so far, which it has) while the budget is
// used.
func (rt *Realtime) sendSyncLocked(room RoomRef, r *rtRoom, l *RoomList) {
	r.out.held = nil
	now := time.Now()
	if r.out.sync == nil && r.out.allow(now, rt.budget) {
		rt.pushLocked(r, &Update{Room: room, Version: l.Version, Sync: l}, now)
		return
	}
	r.out.sync = l
	rt.scheduleFlushLocked(room, r)
}

// pushLocked hands u to every connection of the room and counts the frame.
func (rt *Realtime) pushLocked(r *rtRoom, u *Update, now time.Time) {
	r.out.sent = append(r.out.sent, now)
	for c := range r.conns {
		c.sink.Push(u)
	}
	switch {
	case u.Sync != nil:
		rt.synced.Add(int64(len(r.conns)))
	case u.Batch != nil:
		rt.batched.Add(int64(len(r.conns)))
		rt.delivered.Add(int64(len(r.conns)))
	default:
		rt.delivered.Add(int64(len(r.conns)))
	}
}

func (rt *Realtime) scheduleFlushLocked(room RoomRef, r *rtRoom) {
	if r.out.timer {
		return
	}
	r.out.timer = true
	time.AfterFunc(max(0, time.Until(r.out.nextAt(rt.budget))), func() { rt.flush(room, r) })
}

// flush sends what the room holds as far as its budget allows: the held
// sync, then the held events as one frame.
func (rt *Realtime) flush(room RoomRef, r *rtRoom) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	r.out.timer = false
	if rt.rooms[room] != r {
		return // nobody uses the room any more
	}
	for r.out.sync != nil || len(r.out.held) > 0 {
		now := time.Now()
		if !r.out.allow(now, rt.budget) {
			rt.scheduleFlushLocked(room, r)
			return
		}
		if l := r.out.sync; l != nil {
			r.out.sync = nil
			rt.pushLocked(r, &Update{Room: room, Version: l.Version, Sync: l}, now)
			continue
		}
		held := r.out.held
		r.out.held = nil
		if len(held) == 1 {
			rt.pushLocked(r, &Update{Room: room, Version: held[0].Version, Event: &held[0]}, now)
			continue
		}
		rt.pushLocked(r, &Update{Room: room, Version: held[len(held)-1].Version, Batch: Coalesce(held)}, now)
	}
}

// Coalesce returns the batch of events, a room's consecutive versions in
// order: the last change of each user, in version order (see Batch).
func Coalesce(events []Event) *Batch {
	type change struct {
		ev     Event
		at     int64 // the version the change sits at
		joined bool  // the user came online within the batch
	}
	byUser := make(map[string]*change, len(events))
	for _, ev := range events {
		c := byUser[ev.UserID]
		switch {
		case c == nil:
			c = &change{}
			byUser[ev.UserID] = c
		case c.joined && ev.Kind != EventJoin && ev.Member != nil && ev.Member.Online:
			// Still online since it came online here: it stays a join at
			// that version, with the member as it is now.
			c.ev.Member = ev.Member
			continue
		}
		c.ev, c.at, c.joined = ev, ev.Version, ev.Kind == EventJoin
	}
	out := make([]*change, 0, len(byUser))
	for _, c := range byUser {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *change) int { return cmp.Compare(a.at, b.at) })
	b := &Batch{FromVersion: events[0].Version, Changes: make([]Event, len(out))}
	for i, c := range out {
		b.Changes[i] = c.ev
	}
	return b
}
