package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/presence"
)

// RoomSubscriber follows rooms' events channels. *redisstore.Subscriber
// implements it.
type RoomSubscriber interface {
	// Subscribe returns once the subscription is confirmed.
	Subscribe(ctx context.Context, room presence.RoomRef) error
	Unsubscribe(ctx context.Context, room presence.RoomRef) error
}

// snapshotLimit is the most members a WebSocket snapshot (joined, watching,
// sync) carries.
const snapshotLimit = presence.MaxListLimit

// Hub delivers room events to this node's sockets. It subscribes to a room's
// channel while any local socket uses the room (reference-counted), builds
// each event's frame once, and hands it to every socket of the room in
// version order. When it misses events (a version gap, a lost pub/sub
// connection, a Redis restart, a removed room) it sends the room's sockets a
// sync instead, holding back later events until the sync is out.
type Hub struct {
	store presence.Store
	sub   RoomSubscriber
	log   *slog.Logger
	met   *wsMetrics
	// keeper learns from the events which of the node's held sessions
	// someone else ended.
	keeper *presence.Keeper

	mu    sync.Mutex
	rooms map[presence.RoomRef]*hubRoom
}

type hubRoom struct {
	refs  int
	ready chan struct{} // closed when the first Subscribe returned
	err   error
	last  int64 // last version delivered
	known bool  // last is meaningful
	// sockets maps each socket of the room to whether it follows the room
	// only through a room token: those stop at the room's removal.
	sockets map[*socket]bool
	syncing bool
	pending []storeEvent
}

func newHub(store presence.Store, sub RoomSubscriber, log *slog.Logger, met *wsMetrics) *Hub {
	return &Hub{store: store, sub: sub, log: log, met: met, rooms: map[presence.RoomRef]*hubRoom{}}
}

// acquire makes sure the node follows room; release undoes it.
func (h *Hub) acquire(ctx context.Context, room presence.RoomRef) error {
	h.mu.Lock()
	r := h.rooms[room]
	if r != nil {
		r.refs++
		h.mu.Unlock()
		select {
		case <-r.ready:
		case <-ctx.Done():
			h.release(room)
			return ctx.Err()
		}
		if r.err != nil {
			h.release(room)
			return r.err
		}
		return nil
	}
	r = &hubRoom{refs: 1, ready: make(chan struct{}), sockets: map[*socket]bool{}}
	h.rooms[room] = r
	h.mu.Unlock()
	err := h.sub.Subscribe(ctx, room)
	h.mu.Lock()
	r.err = err
	close(r.ready)
	h.mu.Unlock()
	if err != nil {
		h.release(room)
		return err
	}
	return nil
}

func (h *Hub) release(room presence.RoomRef) {
	h.mu.Lock()
	r := h.rooms[room]
	if r == nil {
		h.mu.Unlock()
		return
	}
	r.refs--
	if r.refs > 0 {
		h.mu.Unlock()
		return
	}
	delete(h.rooms, room)
	subscribed := r.err == nil
	h.mu.Unlock()
	if subscribed {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := h.sub.Unsubscribe(ctx, room); err != nil {
			h.log.Debug("unsubscribe", "room", room.RoomID, "err", err)
		}
	}
}

// attach hands the room's events to s; byToken marks a socket that follows
// the room only through a room token.
func (h *Hub) attach(room presence.RoomRef, s *socket, byToken bool) {
	h.mu.Lock()
	if r := h.rooms[room]; r != nil {
		if byToken && s.isFrozen(room) {
			delete(r.sockets, s) // the room was removed meanwhile
		} else {
			r.sockets[s] = byToken
		}
	}
	h.mu.Unlock()
}

func (h *Hub) detach(room presence.RoomRef, s *socket) {
	h.mu.Lock()
	if r := h.rooms[room]; r != nil {
		delete(r.sockets, s)
	}
	h.mu.Unlock()
}

// onMessage is called by the subscriber for each event, in order per room.
func (h *Hub) onMessage(room presence.RoomRef, payload []byte) {
	if !utf8.Valid(payload) {
		// Data stored by an older node, which did not refuse invalid UTF-8.
		payload = bytes.ToValidUTF8(payload, []byte("\uFFFD"))
	}
	var ev storeEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		h.log.Warn("bad event payload", "room", room.RoomID, "err", err)
		return
	}
	if h.keeper != nil {
		h.keeper.Observe(room, presence.Notice{Event: ev.Event, UserID: ev.UserID, SessionID: ev.SessionID,
			Epoch: ev.Epoch, Node: ev.Node, Version: ev.Version})
	}
	if ev.Event == eventEnded {
		return // for the keeper only: nothing visible changed
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	if r == nil {
		return
	}
	if r.syncing {
		r.pending = append(r.pending, ev)
		return
	}
	h.deliverLocked(room, r, ev)
}

func (h *Hub) deliverLocked(room presence.RoomRef, r *hubRoom, ev storeEvent) {
	switch {
	case ev.Event == presence.EventReset:
		h.endTokenWatchesLocked(room, r, ev.Version)
		h.startSyncLocked(room, r)
		return
	case r.known && ev.Version == r.last:
		return // already delivered
	case r.known && ev.Version != r.last+1:
		// A gap (missed events) or a regression (Redis lost its data).
		h.startSyncLocked(room, r)
		return
	}
	r.last, r.known = ev.Version, true
	frame, _ := json.Marshal(presenceMsg{Type: "presence", RoomID: room.RoomID, Version: ev.Version, Event: ev.Event, Member: ev.Member})
	it := &item{kind: kindEvent, room: room, version: ev.Version, data: frame}
	for s := range r.sockets {
		s.enqueue(it)
	}
	h.met.delivered.Add(float64(len(r.sockets)))
}

// endTokenWatchesLocked handles a room's removal for the sockets that watch
// it by a room token: that token no longer grants the room, so each gets
// the room as it was removed (empty, at the removal's version) and nothing
// after it.
func (h *Hub) endTokenWatchesLocked(room presence.RoomRef, r *hubRoom, version int64) {
	var it *item
	for s, byToken := range r.sockets {
		if !byToken {
			continue
		}
		if it == nil {
			frame, _ := json.Marshal(snapshotMsg{Type: "sync", RoomID: room.RoomID, Version: version, Members: []presence.Member{}})
			it = &item{kind: kindSync, room: room, version: version, data: frame}
		}
		s.setFrozen(room, true)
		s.enqueue(it)
		delete(r.sockets, s)
	}
}

// resync sends the room's sockets a sync (after a lost subscription).
func (h *Hub) resync(room presence.RoomRef) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.rooms[room]; r != nil && !r.syncing {
		h.startSyncLocked(room, r)
	}
}

func (h *Hub) startSyncLocked(room presence.RoomRef, r *hubRoom) {
	r.syncing = true
	r.pending = nil
	go h.sync(room, r)
}

// sync fetches the room and sends it to the room's sockets, then the events
// that came meanwhile. It retries while the store is unreachable, for as
// long as the room is used.
func (h *Hub) sync(room presence.RoomRef, r *hubRoom) {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l, err := h.store.List(ctx, room, presence.ListQuery{Limit: snapshotLimit})
		cancel()
		h.mu.Lock()
		if h.rooms[room] != r {
			h.mu.Unlock()
			return // nobody uses the room any more
		}
		if err != nil {
			h.mu.Unlock()
			h.log.Debug("sync failed", "room", room.RoomID, "err", err)
			time.Sleep(backoff)
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		frame, _ := json.Marshal(snapshotMsg{Type: "sync", RoomID: room.RoomID, Version: l.Version, Members: l.Members})
		it := &item{kind: kindSync, room: room, version: l.Version, data: frame}
		for s := range r.sockets {
			s.enqueue(it)
		}
		h.met.syncs.Add(float64(len(r.sockets)))
		r.last, r.known, r.syncing = l.Version, true, false
		pending := r.pending
		r.pending = nil
		for _, ev := range pending {
			if r.syncing {
				r.pending = append(r.pending, ev)
				continue
			}
			if ev.Version > r.last || ev.Event == presence.EventReset {
				h.deliverLocked(room, r, ev)
			}
		}
		h.mu.Unlock()
		return
	}
}
