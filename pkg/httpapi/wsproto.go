package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/presence"
)

// clientMessage is any message a client sends on /v1/ws (README: GET /v1/ws).
type clientMessage struct {
	Type string `json:"type"`
	// ID is echoed in the reply: a number or a string.
	ID        json.RawMessage `json:"id,omitempty"`
	RoomID    string          `json:"roomId"`
	SessionID string          `json:"sessionId"`
	Interval  *int64          `json:"interval"`
	Data      json.RawMessage `json:"data"`
	UserID    string          `json:"userId"`
	Name      string          `json:"name"`
	Image     string          `json:"image"`
	RoomToken string          `json:"roomToken"`
	Mode      string          `json:"mode"`
	UserIDs   []string        `json:"userIds"`
	// join's privacy flags (absent: keep the member's setting).
	Invisible    *bool `json:"invisible"`
	HideLastSeen *bool `json:"hideLastSeen"`
}

var clientTypes = map[string]bool{"join": true, "leave": true, "update": true, "watch": true, "unwatch": true, "ping": true,
	"watchUsers": true, "unwatchUsers": true}

// decodeClientMessage parses and checks one client frame. The returned
// message carries its id even when the error is set, when the id could be read.
func decodeClientMessage(b []byte) (*clientMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, presence.Errorf(presence.EINVALID, "a message must be a JSON object")
	}
	if err := presence.CheckJSONText(b); err != nil {
		// Answer with the id when it can be read intact.
		var idOnly struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(b, &idOnly) == nil && len(idOnly.ID) > 0 && validID(idOnly.ID) && presence.CheckJSONText(idOnly.ID) == nil {
			return &clientMessage{ID: idOnly.ID}, err
		}
		return nil, err
	}
	var m clientMessage
	if err := json.Unmarshal(b, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			// Recover the id, so the error can be matched to the request.
			var idOnly struct {
				ID json.RawMessage `json:"id"`
			}
			json.Unmarshal(b, &idOnly)
			if validID(idOnly.ID) {
				return &clientMessage{ID: idOnly.ID}, presence.Errorf(presence.EINVALID, "%s has the wrong type", te.Field)
			}
			return nil, presence.Errorf(presence.EINVALID, "%s has the wrong type", te.Field)
		}
		return nil, presence.Errorf(presence.EINVALID, "the message is not valid JSON")
	}
	if !validID(m.ID) {
		return nil, presence.Errorf(presence.EINVALID, "id must be a number or a string")
	}
	if !clientTypes[m.Type] {
		return &clientMessage{ID: m.ID}, presence.Errorf(presence.EINVALID, "unknown message type %q", m.Type)
	}
	return &m, nil
}

func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return true
	}
	if len(id) > 128 {
		return false
	}
	switch id[0] {
	case '"':
		var s string
		return json.Unmarshal(id, &s) == nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var f float64
		return json.Unmarshal(id, &f) == nil
	}
	return false
}

// Server → client messages.

type replyMsg struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id,omitempty"`
	RoomID string          `json:"roomId,omitempty"`
	Reason string          `json:"reason,omitempty"`
}

type snapshotMsg struct {
	Type         string            `json:"type"`
	ID           json.RawMessage   `json:"id,omitempty"`
	RoomID       string            `json:"roomId"`
	RoomToken    string            `json:"roomToken,omitempty"`
	SessionToken string            `json:"sessionToken,omitempty"`
	Version      int64             `json:"version"`
	Members      []presence.Member `json:"members"`
}

type errorMsg struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

type presenceMsg struct {
	Type    string           `json:"type"`
	RoomID  string           `json:"roomId"`
	Version int64            `json:"version"`
	Event   string           `json:"event"`
	Member  *presence.Member `json:"member"`
}

// batchMsg is a room's events of versions fromVersion..version coalesced
// (storms): the last change of each user, in version order.
type batchMsg struct {
	Type        string        `json:"type"`
	RoomID      string        `json:"roomId"`
	FromVersion int64         `json:"fromVersion"`
	Version     int64         `json:"version"`
	Changes     []batchChange `json:"changes"`
}

type batchChange struct {
	Event  string           `json:"event"`
	UserID string           `json:"userId"`
	Member *presence.Member `json:"member"`
}

// countMsg answers a watch in count mode ("watching", with the request's
// id) and carries a count-mode room's later counts ("count").
type countMsg struct {
	Type     string          `json:"type"`
	ID       json.RawMessage `json:"id,omitempty"`
	RoomID   string          `json:"roomId"`
	Version  int64           `json:"version"`
	Online   int64           `json:"online"`
	Sessions int64           `json:"sessions"`
}

func encodeCount(typ string, id json.RawMessage, n *presence.RoomCount) []byte {
	b, _ := json.Marshal(countMsg{Type: typ, ID: id, RoomID: n.RoomID, Version: n.Version, Online: n.Online, Sessions: n.Sessions})
	return validText(b)
}

// usersMsg answers watchUsers.
type usersMsg struct {
	Type  string                  `json:"type"`
	ID    json.RawMessage         `json:"id,omitempty"`
	Users []presence.UserPresence `json:"users"`
}

// userMsg is a watched user's change.
type userMsg struct {
	Type string `json:"type"`
	presence.UserPresence
}

func encodeUser(p presence.UserPresence) []byte {
	b, _ := json.Marshal(userMsg{Type: "user", UserPresence: p})
	return validText(b)
}

// encodeUpdate encodes what the core hands a socket: a presence event, a
// sync, a count-mode room's counts, or a watched user's change.
func encodeUpdate(u *presence.Update) []byte {
	if u.User != nil {
		return encodeUser(*u.User)
	}
	if u.Count != nil {
		return encodeCount("count", nil, u.Count)
	}
	if u.Sync != nil {
		return encodeSync(u.Sync)
	}
	if u.Batch != nil {
		m := batchMsg{Type: "batch", RoomID: u.Room.RoomID, FromVersion: u.Batch.FromVersion, Version: u.Version,
			Changes: make([]batchChange, len(u.Batch.Changes))}
		for i, ev := range u.Batch.Changes {
			m.Changes[i] = batchChange{Event: ev.Kind, UserID: ev.UserID, Member: ev.Member}
		}
		b, _ := json.Marshal(m)
		return validText(b)
	}
	b, _ := json.Marshal(presenceMsg{Type: "presence", RoomID: u.Room.RoomID, Version: u.Version, Event: u.Event.Kind, Member: u.Event.Member})
	return validText(b)
}

func encodeSync(l *presence.RoomList) []byte {
	b, _ := json.Marshal(snapshotMsg{Type: "sync", RoomID: l.RoomID, Version: l.Version, Members: l.Members})
	return validText(b)
}

// validText returns b as valid UTF-8. Never needed with what the node builds
// (inputs are checked, stored data is repaired when read), but a browser
// closes a socket on an invalid text frame, so every frame is checked once
// more: a shared update once per node, not once per socket.
func validText(b []byte) []byte {
	if !utf8.Valid(b) {
		return bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	return b
}
