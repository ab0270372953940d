package presencetest

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

var _ presence.Subscriber = (*MemSubscriber)(nil)

// MemSubscriber follows rooms of a MemStore. Events reach its handler in
// the order the store published them (so in version order per room), only
// for the rooms it subscribes to, and only those published after Subscribe
// returned.
//
// Delivery is synchronous: the call that published an event hands it to
// the handlers before it returns, unless another goroutine is handing over
// events at that moment (that one then delivers them, in order), or the
// call was made from inside a handler (its events follow once the handler
// returns). Handlers must not block, as with any presence.EventHandler.
type MemSubscriber struct {
	s     *MemStore
	h     presence.EventHandler
	rooms map[presence.RoomRef]uint64 // subscription generation; guarded by s.mu
}

// delivery is one event (or, with resub, a restored subscription) waiting
// to reach a subscriber.
type delivery struct {
	sub   *MemSubscriber
	gen   uint64
	ev    presence.Event
	resub bool
}

// NewSubscriber returns a Subscriber of the store's rooms that hands their
// events to h. It needs no Open; Close stops it.
func (s *MemStore) NewSubscriber(h presence.EventHandler) *MemSubscriber {
	sub := &MemSubscriber{s: s, h: h, rooms: map[presence.RoomRef]uint64{}}
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	return sub
}

// Subscribe follows room: every event published from now on reaches the
// handler. It fails like a store call (Fail, FailFunc with "Subscribe").
func (sub *MemSubscriber) Subscribe(ctx context.Context, room presence.RoomRef) error {
	return sub.s.do(ctx, "Subscribe", func() error {
		if !slices.Contains(sub.s.subs, sub) {
			return errors.New("presencetest: subscriber closed")
		}
		sub.s.subGen++
		sub.rooms[room] = sub.s.subGen
		return nil
	})
}

// Unsubscribe stops following room: no event of it reaches the handler any
// more, even one published before.
func (sub *MemSubscriber) Unsubscribe(ctx context.Context, room presence.RoomRef) error {
	return sub.s.do(ctx, "Unsubscribe", func() error {
		delete(sub.rooms, room)
		return nil
	})
}

// Close unsubscribes from every room. Idempotent.
func (sub *MemSubscriber) Close() error {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(sub.rooms)
	s.subs = slices.DeleteFunc(s.subs, func(x *MemSubscriber) bool { return x == sub })
	return nil
}

// Rooms lists the rooms the subscriber follows.
func (sub *MemSubscriber) Rooms() []presence.RoomRef {
	sub.s.mu.Lock()
	defer sub.s.mu.Unlock()
	return sortedRooms(sub.rooms)
}

// emit publishes an event on its room's channel: it is logged, and queued
// for the room's subscribers unless DropEvents loses it. Called with s.mu.
func (s *MemStore) emit(ev presence.Event) {
	s.log = append(s.log, ev)
	if s.drop > 0 {
		s.drop--
		return
	}
	for _, sub := range s.subs {
		if gen, ok := sub.rooms[ev.Room]; ok {
			s.queue = append(s.queue, delivery{sub: sub, gen: gen, ev: ev})
		}
	}
}

// flush hands the queued deliveries to their handlers, outside the lock,
// one goroutine at a time (so in order).
func (s *MemStore) flush() {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.draining = true
	for len(s.queue) > 0 {
		d := s.queue[0]
		s.queue = s.queue[1:]
		room := d.ev.Room
		if gen, ok := d.sub.rooms[room]; !ok || gen != d.gen {
			continue // unsubscribed meanwhile
		}
		s.mu.Unlock()
		if d.resub {
			d.sub.h.OnResubscribe(room)
		} else {
			d.sub.h.OnEvent(d.ev)
		}
		s.mu.Lock()
	}
	s.queue, s.draining = nil, false
	s.mu.Unlock()
}

// Fail makes every call of the store and its subscribers fail with err,
// until Fail(nil). ErrUnavailable is what a Redis that cannot be reached
// gives.
func (s *MemStore) Fail(err error) {
	if err == nil {
		s.FailFunc(nil)
		return
	}
	s.FailFunc(func(string) error { return err })
}

// ErrUnavailable is the error of a store that cannot be reached.
var ErrUnavailable = presence.Errorf(presence.EUNAVAILABLE, "store unavailable")

// FailFunc calls f with the method name ("Heartbeat", "RenewLease",
// "Subscribe", ...) before each call of the store and its subscribers:
// the call fails with what f returns, unless nil. f may call the store. Nil
// removes it.
func (s *MemStore) FailFunc(f func(op string) error) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Calls returns how many times the method op was called (failed calls
// included).
func (s *MemStore) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// DropEvents loses the next n published events (ended notices included)
// for every subscriber: a version gap, as lost pub/sub messages make. They
// still appear in Events.
func (s *MemStore) DropEvents(n int) {
	s.mu.Lock()
	s.drop += n
	s.mu.Unlock()
}

// LoseData forgets everything, as a Redis that restarted empty: rooms
// (whose versions start over, epochs "0"), sessions, leases and the rooms
// nodes hold. LostData then reports true, once. Subscriptions stay (see
// Restart).
func (s *MemStore) LoseData() {
	s.mu.Lock()
	s.reset()
	s.lost = true
	s.mu.Unlock()
}

// Resubscribe reports every subscribed room to its subscriber's
// OnResubscribe, as after a lost and restored pub/sub connection.
func (s *MemStore) Resubscribe() {
	s.mu.Lock()
	for _, sub := range s.subs {
		for _, room := range sortedRooms(sub.rooms) {
			s.queue = append(s.queue, delivery{sub: sub, gen: sub.rooms[room], ev: presence.Event{Room: room}, resub: true})
		}
	}
	s.mu.Unlock()
	s.flush()
}

// Restart is a Redis restart without persistence: LoseData, then
// Resubscribe.
func (s *MemStore) Restart() {
	s.LoseData()
	s.Resubscribe()
}

// Events returns every event published so far, of every room, in order
// (dropped ones included).
func (s *MemStore) Events() []presence.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// MemSession is a session as the store keeps it.
type MemSession struct {
	UserID, Epoch string
	// Node is the node generation that holds the session (Held) or last
	// refreshed it.
	Node string
	Held bool
	// Deadline is when it expires, unless Held.
	Deadline time.Time
}

// Session returns a session of a room.
func (s *MemStore) Session(room presence.RoomRef, sessionID string) (MemSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil || r.sess[sessionID] == nil {
		return MemSession{}, false
	}
	sess := r.sess[sessionID]
	out := MemSession{UserID: sess.uid, Epoch: sess.epoch, Node: sess.node, Held: sess.held}
	if !sess.held {
		out.Deadline = time.UnixMilli(sess.deadline)
	}
	return out, true
}

// Lease returns the lease deadline of a node generation, if registered.
func (s *MemStore) Lease(node string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.nodes[node]
	return time.UnixMilli(d), ok
}

// HeldRooms lists the rooms recorded as ones where node holds sessions.
func (s *MemStore) HeldRooms(node string) []presence.RoomRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedRooms(s.nodeRooms[node])
}
