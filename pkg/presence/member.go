package presence

import (
	"encoding/json"
	"time"
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
}

// RoomCount is the O(1) summary of a room.
type RoomCount struct {
	RoomID   string `json:"roomId"`
	Version  int64  `json:"version"`
	Online   int64  `json:"online"`
	Sessions int64  `json:"sessions"`
}

// UserRoom is one room a user is (or was recently) a member of.
type UserRoom struct {
	RoomID           string `json:"roomId"`
	Online           bool   `json:"online"`
	LastDisconnected int64  `json:"lastDisconnected"`
}

// Event kinds, as published on a room's events channel.
const (
	EventJoin   = "join"   // a user's first live session began
	EventLeave  = "leave"  // a user's last live session ended
	EventUpdate = "update" // a member's data or profile changed
	EventRemove = "remove" // a member was forgotten
	EventReset  = "reset"  // the whole room was removed
)

// Event is one change of a room, in the room's version order.
type Event struct {
	Room    RoomRef
	Version int64
	Kind    string
	Member  Member
}

// RoomRef names a room inside an org.
type RoomRef struct {
	Org    string
	RoomID string
}

// UnixMilli converts t to unix milliseconds.
func UnixMilli(t time.Time) int64 { return t.UnixMilli() }
