package presence

import (
	"context"
	"encoding/json"
)

// Member is a user's state in a room.
type Member struct {
	UserID string `json:"userId"`
	Online bool   `json:"online"`
	// LastDisconnected is unix ms; 0 while online or if never offline.
	LastDisconnected int64 `json:"lastDisconnected"`
	// Sessions is the number of live sessions of the user in the room.
	Sessions int             `json:"sessions"`
	Data     json.RawMessage `json:"data,omitempty"`
	Name     string          `json:"name,omitempty"`
	Image    string          `json:"image,omitempty"`
	// Invisible is set only in an admin's list with includeInvisible: the
	// member is invisible, and shown as it is.
	Invisible bool `json:"invisible,omitempty"`
}

// RoomList is a room's members, online first (in the order they came
// online), then offline ones, most recently disconnected first.
type RoomList struct {
	RoomID  string   `json:"roomId"`
	Version int64    `json:"version"`
	Members []Member `json:"members"`
	// Stale is set when the list was asked with the epoch of a room token
	// and the room was removed since: the list is empty, version 0.
	Stale bool `json:"-"`
	// Next, set by the Service when more members follow the page, is the
	// cursor of the next page.
	Next string `json:"next,omitempty"`
	// Stamp, when the store has stamps (ListStamper), is the stamp of the
	// state the list shows, read in the same atomic step as the list.
	Stamp string `json:"-"`
	// Epoch is the room epoch the list was read in ("" when Stale).
	Epoch string `json:"-"`
	// More, set by the store when more members follow the page, is the
	// position of the page's last member: the next page starts after it.
	More *ListPosition `json:"-"`
}

// ListPosition is a place in a room's order: a member and its order score
// (OrderScore). Equal scores are ordered by userId, so positions are
// totally ordered; a page after a position starts with the first member
// that follows it in the room order now.
type ListPosition struct {
	Score  int64
	UserID string
}

// RoomCount is the O(1) summary of a room.
type RoomCount struct {
	RoomID   string `json:"roomId"`
	Version  int64  `json:"version"`
	Online   int64  `json:"online"`
	Sessions int64  `json:"sessions"`
}

// UserRoom is one room a user is (or was recently) a member of. The store
// returns the truth (what the user itself sees) with the member's privacy
// flags; Public turns it into what the others see.
type UserRoom struct {
	RoomID           string `json:"roomId"`
	Online           bool   `json:"online"`
	LastDisconnected int64  `json:"lastDisconnected"`
	// Invisible and HideLastSeen are the member's privacy settings (shown
	// to the user itself and the admin only).
	Invisible    bool `json:"invisible,omitempty"`
	HideLastSeen bool `json:"hideLastSeen,omitempty"`
	// SeenLastDisconnected is the lastDisconnected the others see while
	// the member is offline to them: 0 with HideLastSeen, the moment it went
	// invisible (or offline before) while Invisible.
	SeenLastDisconnected int64 `json:"-"`
}

// Public returns the room as the others see it: an invisible member
// offline, a hidden last seen 0, no flags.
func (r UserRoom) Public() UserRoom {
	out := UserRoom{RoomID: r.RoomID, Online: r.Online && !r.Invisible}
	if !out.Online {
		out.LastDisconnected = r.SeenLastDisconnected
	}
	return out
}

// Event kinds, as published on a room's events channel.
const (
	EventJoin   = "join"   // a user's first live session began
	EventLeave  = "leave"  // a user's last live session ended
	EventUpdate = "update" // a member's data or profile changed
	EventRemove = "remove" // a member was forgotten
	EventReset  = "reset"  // the whole room was removed
	// EventEnded is a notice, not a change: a session held by a node's
	// socket ended while its user stays online (another session lives on).
	// It has no version and is never shown to clients; it tells the
	// holding node's Keeper that its socket lost the session.
	EventEnded = "ended"
)

// Event is one change of a room, in the room's version order (or an
// EventEnded notice, which has no version). The store publishes them and a
// Subscriber hands them to the node, decoded: only the store knows their
// encoding.
type Event struct {
	Room    RoomRef
	Version int64 // 0 for EventEnded
	Kind    string
	UserID  string
	// Member is the member after the change (nil for EventEnded).
	Member *Member
	// SessionID and Epoch name the session of an EventEnded notice.
	SessionID, Epoch string
	// Node names the dead node generation whose session a leave ended (the
	// reaping of a node whose lease lapsed).
	Node string
}

// Subscriber follows the events of the rooms a node's connections use.
// Events reach the EventHandler it was built with, in version order per
// room. redisstore.Subscriber implements it on Redis pub/sub.
type Subscriber interface {
	// Subscribe returns once the subscription is confirmed: every event
	// published after that reaches the handler.
	Subscribe(ctx context.Context, room RoomRef) error
	Unsubscribe(ctx context.Context, room RoomRef) error
}

// EventHandler takes what a Subscriber delivers. Its methods must not block.
type EventHandler interface {
	// OnEvent takes one event of a subscribed room.
	OnEvent(Event)
	// OnResubscribe takes a room whose subscription was restored after a
	// lost connection: events may have been missed.
	OnResubscribe(RoomRef)
}

// RoomRef names a room inside an org.
type RoomRef struct {
	Org    string
	RoomID string
}
