package presence

import (
	"context"
	"encoding/json"
	"time"
)

// Store keeps the presence state. Every method that changes state does so in
// one atomic step and publishes the resulting events on the room's channel.
// Times are passed in: the store never reads a clock.
type Store interface {
	// Heartbeat creates or refreshes a session. It fails with ECONFLICT when
	// the sessionId belongs to another user of the room.
	Heartbeat(ctx context.Context, hb *Heartbeat) (HeartbeatResult, error)
	// HeartbeatMany runs many heartbeats in one round trip; errs[i] is the
	// error of hbs[i].
	HeartbeatMany(ctx context.Context, hbs []*Heartbeat) (res []HeartbeatResult, errs []error)
	// EndSession ends a session now if its epoch matches; otherwise (an older
	// session's token, or no such session) it does nothing.
	EndSession(ctx context.Context, room RoomRef, sessionID, sessionEpoch string, now time.Time) error
	// List returns a room's members. A non-empty epoch that is not the room's
	// current one (the room was removed since) yields an empty list.
	List(ctx context.Context, room RoomRef, q ListQuery) (*RoomList, error)
	// Count returns the room's online members and live sessions in O(1).
	Count(ctx context.Context, room RoomRef) (*RoomCount, error)
	// SetData replaces a member's data; ENOTFOUND if the user is not a member.
	SetData(ctx context.Context, room RoomRef, userID string, data json.RawMessage, now time.Time) error
	// EndUser ends all of a user's sessions in a room; with forget it also
	// forgets the member. It reports whether anything changed.
	EndUser(ctx context.Context, room RoomRef, userID string, forget bool, now time.Time) (bool, error)
	// RemoveRoom forgets a room entirely; its old room tokens list nothing.
	RemoveRoom(ctx context.Context, room RoomRef, now time.Time) error
	// UserRooms lists the rooms a user is a member of, online first: at
	// most limit of those it joined most recently (zero: 1000). The Service
	// asks for all and filters (onlineOnly), then applies its own limit.
	UserRooms(ctx context.Context, org, userID string, limit int) ([]UserRoom, error)
	// Reap ends the sessions whose deadline is before now, across all rooms
	// that are due, and returns how many it ended.
	Reap(ctx context.Context, now time.Time) (int, error)
	// RenewLease registers a node generation (prev zero) or renews its
	// lease until deadline, compare-and-set on prev, the deadline it set
	// last. False: the lease is not the node's any more (it lapsed and was
	// declared dead, or the store lost it); its held sessions may be ended.
	RenewLease(ctx context.Context, node string, prev, deadline time.Time) (bool, error)
	// HoldRooms records, before the sessions are created, the rooms where a
	// node generation holds sessions, so that they are ended if it dies.
	HoldRooms(ctx context.Context, node string, rooms []RoomRef) error
	// ReleaseRooms forgets rooms where the node holds no session any more.
	ReleaseRooms(ctx context.Context, node string, rooms []RoomRef) error
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	// LostData reports whether the store lost its data (a Redis that
	// restarted empty) since the previous call.
	LostData(ctx context.Context) (bool, error)
}

// Heartbeat is one session's keep-alive.
type Heartbeat struct {
	Room      RoomRef
	UserID    string
	SessionID string
	Now       time.Time
	Deadline  time.Time
	// Data, when non-nil, replaces the member's data in the same step.
	Data json.RawMessage
	// Name and Image, when SetProfile is true, replace the member's profile.
	Name, Image string
	SetProfile  bool
	// Node names the node that owns the session ("node@region").
	Node string
	// SessionEpoch, when set, is the epoch a new session gets (a node
	// putting back a session that Redis lost keeps its token valid).
	SessionEpoch string
	// Held makes the session live by Node's lease instead of a deadline
	// (a node's open WebSocket): Deadline is then ignored.
	Held bool
	// Release hands a session that Node held over to Deadline, if Node
	// still holds it (nothing else changes; never creates).
	Release bool
	// KeepAlive marks the refresh of a node-owned session: one that is gone
	// is not created again (HeartbeatResult.Ended). The Keeper tells a
	// session ended elsewhere from a store that lost its data (LostData)
	// and puts the latter back with a plain heartbeat.
	KeepAlive bool
	// Invisible and HideLastSeen, when non-nil, set the member's privacy
	// flags in the same step (nil keeps them): see HeartbeatInput.
	Invisible, HideLastSeen *bool
}

// HeartbeatResult is what a heartbeat needs to build its tokens.
type HeartbeatResult struct {
	RoomEpoch    string
	SessionEpoch string
	Version      int64
	// Ended is set for a KeepAlive whose session was ended meanwhile.
	Ended bool
}

// ListStamper is implemented by a Store that can tell in one small read
// (no member read) which state of a room a list shows, so that an unchanged
// list is answered without listing it (HTTP 304, a node's cached page).
type ListStamper interface {
	// ListStamp returns the stamp of the list that List(ctx, room, q) would
	// return now. Two lists of one room with the same Limit, OnlineOnly and
	// After and the same stamp are identical (whatever their Epoch and Now); any
	// change to what such a list shows, or to which members the retention
	// hides at q.Now, changes the stamp. Stamps are opaque; List fills
	// RoomList.Stamp.
	ListStamp(ctx context.Context, room RoomRef, q ListQuery) (string, error)
}

// ListQuery selects members of a room.
type ListQuery struct {
	Epoch      string // empty: any
	Limit      int
	OnlineOnly bool
	// Now hides members offline for longer than the retention. Zero means
	// the wall clock.
	Now time.Time
	// MinVersion: a list older than this version, read from a lagging
	// replica, is read again from the primary (a joiner must see its own
	// join, a sync must reach the event that asked for it). Zero: any.
	MinVersion int64
	// After, when set, asks for the page that follows this position (a
	// cursor's): the members after it in the room order.
	After *ListPosition
	// IncludeInvisible shows invisible members as they are (Member.Invisible
	// set, with their live sessions): an admin's list. Its stamp does not
	// follow their sessions (the Service gives it none).
	IncludeInvisible bool
}
