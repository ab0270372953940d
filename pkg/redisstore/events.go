package redisstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/presence"
)

// wireEvent is an event as the Lua scripts publish it on a room's channel
// (lua/lib.lua publish, lua/end_session.lua for "ended"). Only this package
// knows the encoding; the rest of the node sees presence.Event.
type wireEvent struct {
	Version   int64            `json:"version"`
	Event     string           `json:"event"`
	UserID    string           `json:"userId"`
	Member    *presence.Member `json:"member"`
	SessionID string           `json:"sessionId"`
	Epoch     string           `json:"epoch"`
	Node      string           `json:"node"`
}

// DecodeEvent decodes an event published on room's channel. Invalid UTF-8
// (data stored by an older node, which did not refuse it) is repaired with
// U+FFFD, as lists repair it.
func DecodeEvent(room presence.RoomRef, payload []byte) (presence.Event, error) {
	if !utf8.Valid(payload) {
		payload = bytes.ToValidUTF8(payload, []byte("\uFFFD"))
	}
	var w wireEvent
	if err := json.Unmarshal(payload, &w); err != nil {
		return presence.Event{}, fmt.Errorf("event of room %q: %w", room.RoomID, err)
	}
	if w.Event == "" {
		return presence.Event{}, fmt.Errorf("event of room %q: no kind", room.RoomID)
	}
	return presence.Event{Room: room, Version: w.Version, Kind: w.Event, UserID: w.UserID, Member: w.Member,
		SessionID: w.SessionID, Epoch: w.Epoch, Node: w.Node}, nil
}
