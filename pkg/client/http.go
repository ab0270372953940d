package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// defaultHTTP is the HTTP client used when Client.HTTP is nil.
var defaultHTTP = &http.Client{Timeout: 5 * time.Second}

// maxAnswerBytes bounds the answers read (a list of 1000 members with 4 KiB
// of data each is about 4 MiB).
const maxAnswerBytes = 32 << 20

// Client calls the HTTP API of a presence node (README: HTTP API). Its zero value
// is not usable: set BaseURL. A Client is safe for concurrent use.
type Client struct {
	// BaseURL is the node's base URL, such as "http://localhost:8080".
	BaseURL string
	// Token, when set, is sent as "Authorization: Bearer <Token>": a user's
	// JWT, or the admin token. Empty with auth off.
	Token string
	// HTTP is the HTTP client; nil means a shared client with a 5 s timeout.
	HTTP *http.Client
}

// HeartbeatRequest is the body of POST /v1/heartbeat.
type HeartbeatRequest struct {
	RoomID    string
	SessionID string
	// UserID names the user with auth off; with a JWT leave it empty.
	UserID string
	// Name and Image set the member's profile with auth off (ignored with a
	// JWT: the claims are used).
	Name, Image string
	// Interval is the heartbeat interval (whole milliseconds, 1 s–600 s);
	// zero means the server's default (10 s).
	Interval time.Duration
	// Data, when non-nil, replaces the member's data (any JSON;
	// json.RawMessage("null") clears it). Nil keeps it.
	Data json.RawMessage
	// Invisible and HideLastSeen, when non-nil, set the member's privacy
	// flags: invisible is offline to everyone else (its own
	// UserRooms/UserPresence show the truth); hideLastSeen shows the others
	// lastDisconnected 0. Nil keeps the member's setting.
	Invisible, HideLastSeen *bool
}

// HeartbeatResponse is the answer to a heartbeat.
type HeartbeatResponse struct {
	// RoomToken is the capability to list the room (Client.List, Conn.Watch).
	RoomToken string
	// SessionToken is the capability to end this session (Client.Disconnect).
	SessionToken string
	// Interval is the interval the server applied.
	Interval time.Duration
}

// Heartbeat creates or refreshes a session (POST /v1/heartbeat).
func (c *Client) Heartbeat(ctx context.Context, req HeartbeatRequest) (*HeartbeatResponse, error) {
	body := struct {
		RoomID    string          `json:"roomId"`
		SessionID string          `json:"sessionId"`
		Interval  int64           `json:"interval,omitempty"`
		Data      json.RawMessage `json:"data,omitempty"`
		UserID    string          `json:"userId,omitempty"`
		Name      string          `json:"name,omitempty"`
		Image     string          `json:"image,omitempty"`
		Invisible *bool           `json:"invisible,omitempty"`
		HideLast  *bool           `json:"hideLastSeen,omitempty"`
	}{req.RoomID, req.SessionID, req.Interval.Milliseconds(), req.Data, req.UserID, req.Name, req.Image, req.Invisible, req.HideLastSeen}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("presence: heartbeat: %w", err)
	}
	var out struct {
		RoomToken    string `json:"roomToken"`
		SessionToken string `json:"sessionToken"`
		Interval     int64  `json:"interval"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/heartbeat", nil, b, &out); err != nil {
		return nil, err
	}
	return &HeartbeatResponse{RoomToken: out.RoomToken, SessionToken: out.SessionToken,
		Interval: time.Duration(out.Interval) * time.Millisecond}, nil
}

// List lists the room named by a room token (GET /v1/list); no JWT is
// needed. limit 0 means the server's default (104).
func (c *Client) List(ctx context.Context, roomToken string, limit int) (*presence.RoomList, error) {
	q := url.Values{"roomToken": {roomToken}}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out presence.RoomList
	if err := c.do(ctx, http.MethodGet, "/v1/list", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Disconnect ends the session named by a session token now (POST
// /v1/disconnect); no JWT is needed. It is idempotent.
func (c *Client) Disconnect(ctx context.Context, sessionToken string) error {
	b, _ := json.Marshal(map[string]string{"sessionToken": sessionToken})
	return c.do(ctx, http.MethodPost, "/v1/disconnect", nil, b, nil)
}

// SignOut ends all the user's sessions in every room of its org (POST
// /v1/signout) and returns how many rooms the user was a member of. userID
// names the user with auth off (or the admin token); leave it empty with a
// JWT. With forget, the memberships are forgotten too.
func (c *Client) SignOut(ctx context.Context, userID string, forget bool) (rooms int, err error) {
	q := url.Values{}
	if userID != "" {
		q.Set("userId", userID)
	}
	if forget {
		q.Set("forget", "true")
	}
	var out struct {
		Rooms int `json:"rooms"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/signout", q, nil, &out); err != nil {
		return 0, err
	}
	return out.Rooms, nil
}

// Members lists a room (GET /v1/rooms/{roomId}/members). limit 0 means the
// server's default (104).
func (c *Client) Members(ctx context.Context, roomID string, onlineOnly bool, limit int) (*presence.RoomList, error) {
	q := url.Values{}
	if onlineOnly {
		q.Set("onlineOnly", "true")
	}
	return c.members(ctx, roomID, q, limit)
}

// MembersIncludeInvisible lists a room as an admin sees it with
// ?includeInvisible=true: invisible members as they are, with Invisible
// set. Admin token only (else an *Error "permission_denied").
func (c *Client) MembersIncludeInvisible(ctx context.Context, roomID string, limit int) (*presence.RoomList, error) {
	q := url.Values{"includeInvisible": {"true"}}
	return c.members(ctx, roomID, q, limit)
}

func (c *Client) members(ctx context.Context, roomID string, q url.Values, limit int) (*presence.RoomList, error) {
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out presence.RoomList
	if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+url.PathEscape(roomID)+"/members", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Count summarises a room (GET /v1/rooms/{roomId}/count); zeros for an
// unknown room.
func (c *Client) Count(ctx context.Context, roomID string) (*presence.RoomCount, error) {
	var out presence.RoomCount
	if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+url.PathEscape(roomID)+"/count", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetData replaces a member's data (PUT /v1/rooms/{roomId}/members/{userId}/data).
// nil data clears it (sent as null). A user who is not a member is a
// not_found *Error.
func (c *Client) SetData(ctx context.Context, roomID, userID string, data json.RawMessage) error {
	if data == nil {
		data = json.RawMessage("null")
	}
	return c.do(ctx, http.MethodPut, "/v1/rooms/"+url.PathEscape(roomID)+"/members/"+url.PathEscape(userID)+"/data", nil, data, nil)
}

// RemoveMember ends a user's sessions in a room and forgets the member
// (DELETE /v1/rooms/{roomId}/members/{userId}).
func (c *Client) RemoveMember(ctx context.Context, roomID, userID string) error {
	return c.do(ctx, http.MethodDelete, "/v1/rooms/"+url.PathEscape(roomID)+"/members/"+url.PathEscape(userID), nil, nil, nil)
}

// RemoveRoom forgets a whole room (DELETE /v1/rooms/{roomId}; admin only):
// its old room tokens list nothing afterwards.
func (c *Client) RemoveRoom(ctx context.Context, roomID string) error {
	return c.do(ctx, http.MethodDelete, "/v1/rooms/"+url.PathEscape(roomID), nil, nil, nil)
}

// UserRooms lists the rooms a user is, or recently was, a member of (GET
// /v1/users/{userId}/rooms), online ones first.
func (c *Client) UserRooms(ctx context.Context, userID string, onlineOnly bool) ([]presence.UserRoom, error) {
	q := url.Values{}
	if onlineOnly {
		q.Set("onlineOnly", "true")
	}
	var out struct {
		Rooms []presence.UserRoom `json:"rooms"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(userID)+"/rooms", q, nil, &out); err != nil {
		return nil, err
	}
	return out.Rooms, nil
}

// UserPresence returns a user's org-wide state (GET
// /v1/users/{userId}/presence): online while it has a live session in any
// room of the org.
func (c *Client) UserPresence(ctx context.Context, userID string) (presence.UserPresence, error) {
	var out presence.UserPresence
	err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(userID)+"/presence", nil, nil, &out)
	return out, err
}

// do sends one request. path is already escaped. A non-2xx answer is an
// *Error; a 2xx answer is decoded into out when out is not nil.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("presence: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("presence: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("presence: %s %s: reading the answer: %w", method, path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return answerError(res.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("presence: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// answerError turns a non-2xx answer into an *Error.
func answerError(status int, body []byte) *Error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &Error{Status: status, Message: msg}
}
