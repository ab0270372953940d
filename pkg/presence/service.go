package presence

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// ServiceConfig configures a Service. Zero values mean the documented defaults.
type ServiceConfig struct {
	// TimeoutFactor: a session is dead after interval × factor. Zero means 2.5.
	TimeoutFactor float64
	// MaxDataBytes limits a member's data. Zero means 4096.
	MaxDataBytes int
	// Node is this node's label ("node@region"), recorded on its sessions.
	Node string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Service applies the presence rules: it checks input and permissions, turns
// intervals into deadlines, issues and verifies tokens, and calls the Store.
// HTTP and WebSocket handlers both go through it.
type Service struct {
	store  Store
	tokens *Tokens
	cfg    ServiceConfig
}

// NewService returns a Service over store.
func NewService(store Store, tokens *Tokens, cfg ServiceConfig) *Service {
	if cfg.TimeoutFactor == 0 {
		cfg.TimeoutFactor = 2.5
	}
	if cfg.MaxDataBytes == 0 {
		cfg.MaxDataBytes = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{store: store, tokens: tokens, cfg: cfg}
}

// Store returns the service's store.
func (s *Service) Store() Store { return s.store }

// Tokens returns the service's token signer.
func (s *Service) Tokens() *Tokens { return s.tokens }

// Timeout returns the session timeout for a heartbeat interval.
func (s *Service) Timeout(interval time.Duration) time.Duration {
	return time.Duration(float64(interval) * s.cfg.TimeoutFactor)
}

// HeartbeatInput is a heartbeat request. UserID, Name and Image are taken
// from the request only when the caller is not a verified JWT user.
type HeartbeatInput struct {
	RoomID    string
	SessionID string
	Interval  time.Duration // zero means 10s
	Data      json.RawMessage
	UserID    string
	Name      string
	Image     string
	// HeldBy, when set, is the node generation (Keeper.Hold) that holds the
	// session for an open WebSocket: it lives by that node's lease.
	HeldBy string
	// Invisible and HideLastSeen, when non-nil, set the member's privacy
	// flags (nil keeps them; a new member's are false). An invisible
	// member is offline to everyone else (lists, counts, events, users'
	// presence, webhooks); a hidden last seen shows the others
	// lastDisconnected 0.
	Invisible, HideLastSeen *bool
}

// HeartbeatOutput is the answer to a heartbeat.
type HeartbeatOutput struct {
	RoomToken    string  `json:"roomToken"`
	SessionToken string  `json:"sessionToken"`
	Interval     int64   `json:"interval"`
	Room         RoomRef `json:"-"`
	Version      int64   `json:"-"`
	// UserID and SessionEpoch are the session's user and epoch (what a
	// node that holds the session needs to end it later).
	UserID       string `json:"-"`
	SessionEpoch string `json:"-"`
}

// Heartbeat creates or refreshes the caller's session in a room.
func (s *Service) Heartbeat(ctx context.Context, in HeartbeatInput) (*HeartbeatOutput, error) {
	user, err := s.actingUser(ctx, in.UserID)
	if err != nil {
		return nil, err
	}
	room, err := s.room(ctx, in.RoomID)
	if err != nil {
		return nil, err
	}
	if err := ValidateSessionID(in.SessionID); err != nil {
		return nil, err
	}
	interval, err := ValidateInterval(in.Interval)
	if err != nil {
		return nil, err
	}
	data, err := s.normalizeData(in.Data)
	if err != nil {
		return nil, err
	}
	// A session that lives by its deadline names no node (bytes per session
	// count: the store holds millions); a held one names its holder.
	hb := &Heartbeat{Room: room, UserID: user, SessionID: in.SessionID, Data: data,
		Invisible: in.Invisible, HideLastSeen: in.HideLastSeen}
	if in.HeldBy != "" {
		hb.Node, hb.Held = in.HeldBy, true
	}
	id := IdentityFromContext(ctx)
	if id.Verified {
		hb.Name, hb.Image, hb.SetProfile = id.Name, id.Image, true
	} else if in.Name != "" || in.Image != "" {
		hb.Name, hb.Image, hb.SetProfile = in.Name, in.Image, true
	}
	if err := ValidateText("name", hb.Name, MaxNameBytes); err != nil {
		return nil, err
	}
	if err := ValidateText("image", hb.Image, MaxImageBytes); err != nil {
		return nil, err
	}
	hb.Now = s.cfg.Now()
	hb.Deadline = hb.Now.Add(s.Timeout(interval))
	res, err := s.store.Heartbeat(ctx, hb)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	return &HeartbeatOutput{
		RoomToken:    s.tokens.RoomToken(room, res.RoomEpoch),
		SessionToken: s.tokens.SessionToken(room, in.SessionID, res.SessionEpoch),
		Interval:     interval.Milliseconds(),
		Room:         room,
		Version:      res.Version,
		UserID:       user,
		SessionEpoch: res.SessionEpoch,
	}, nil
}

// List returns the members of the room that roomToken names.
func (s *Service) List(ctx context.Context, roomToken string, limit int) (*RoomList, error) {
	r, err := s.PrepareList(roomToken, limit, "")
	if err != nil {
		return nil, err
	}
	return s.ListPage(ctx, r)
}

// ListRequest is a checked list request: a room and a query of it (Now
// set), for ListPage and ListStamp.
type ListRequest struct {
	Room  RoomRef
	Query ListQuery
	// Cursor is the cursor the page was asked with ("" for the first).
	Cursor string
}

// PrepareList checks a list request by room token (List); a cursor (a
// page's Next) asks for the page after it.
func (s *Service) PrepareList(roomToken string, limit int, cursor string) (ListRequest, error) {
	room, epoch, err := s.tokens.ParseRoomToken(roomToken)
	if err != nil {
		return ListRequest{}, err
	}
	if limit, err = ValidateLimit(limit); err != nil {
		return ListRequest{}, err
	}
	r := ListRequest{Room: room, Query: ListQuery{Epoch: epoch, Limit: limit, Now: s.cfg.Now()}}
	if err := s.withCursor(&r, cursor, epoch); err != nil {
		return ListRequest{}, err
	}
	return r, nil
}

// withCursor adds a cursor to a checked request: it must be of the same
// room and query, and of the room's life that the room token names (epoch;
// "" for a list by room id: the cursor's own, so that its pages stay in the
// life of the first, and are empty at version 0 once the room is removed).
func (s *Service) withCursor(r *ListRequest, cursor, epoch string) error {
	if cursor == "" {
		return nil
	}
	e, pos, err := s.tokens.ParseCursor(cursor, r.Room, r.Query.OnlineOnly)
	if err != nil {
		return err
	}
	if epoch != "" && e != epoch {
		return Errorf(EINVALID, "the cursor is of another list")
	}
	r.Query.Epoch, r.Query.After, r.Cursor = e, &pos, cursor
	return nil
}

// ListPage returns the list that a checked request asks for, with the
// cursor of the next page when more members follow.
func (s *Service) ListPage(ctx context.Context, r ListRequest) (*RoomList, error) {
	l, err := s.store.List(ctx, r.Room, r.Query)
	if err == nil && l.More != nil {
		l.Next = s.tokens.Cursor(r.Room, l.Epoch, r.Query.OnlineOnly, *l.More)
	}
	if err == nil && r.Query.IncludeInvisible {
		l.Stamp = "" // it does not follow invisible members' sessions
	}
	return l, err
}

// ListStamp returns the stamp of the list that ListPage(r) would return now
// (see ListStamper), in one small read; ok is false when the store has no
// stamps.
func (s *Service) ListStamp(ctx context.Context, r ListRequest) (stamp string, ok bool, err error) {
	st, ok := s.store.(ListStamper)
	if !ok || r.Query.IncludeInvisible {
		return "", false, nil
	}
	stamp, err = st.ListStamp(ctx, r.Room, r.Query)
	return stamp, err == nil, err
}

// Snapshot returns the state of a room as a WebSocket shows it (joined,
// watching, sync): all its members, at one version (snapshotAll). A
// non-empty epoch that is not the room's any more (the room was removed)
// yields an empty, Stale list. A snapshot is at least at minVersion
// (ListQuery.MinVersion).
func (s *Service) Snapshot(ctx context.Context, room RoomRef, epoch string, minVersion int64) (*RoomList, error) {
	return s.snapshotAll(ctx, room, ListQuery{Epoch: epoch, Limit: MaxListLimit, Now: s.cfg.Now(), MinVersion: minVersion})
}

// WatchRoom checks that the caller may follow the room a room token names
// on a connection of its org, and returns the room and its epoch. A token
// of another org is fine for an HTTP list, but a connection lives in its
// org: two orgs' rooms of the same id must not mix on it (admins excepted).
func (s *Service) WatchRoom(ctx context.Context, roomToken string) (RoomRef, string, error) {
	room, epoch, err := s.tokens.ParseRoomToken(roomToken)
	if err != nil {
		return RoomRef{}, "", err
	}
	id := IdentityFromContext(ctx)
	if id == nil {
		return RoomRef{}, "", Errorf(EUNAUTHORIZED, "authentication required")
	}
	if room.Org != id.Org && !id.Admin {
		return RoomRef{}, "", Errorf(EFORBIDDEN, "the room token is of another org")
	}
	if !id.MayAccessRoom(room.RoomID) {
		return RoomRef{}, "", Errorf(EFORBIDDEN, "the token does not grant room %q", room.RoomID)
	}
	return room, epoch, nil
}

// Disconnect ends the session that sessionToken names. It is idempotent, and
// an old token never ends a newer session with the same id.
func (s *Service) Disconnect(ctx context.Context, sessionToken string) error {
	room, sid, epoch, err := s.tokens.ParseSessionToken(sessionToken)
	if err != nil {
		return err
	}
	return s.store.EndSession(ctx, room, sid, epoch, s.cfg.Now())
}

// EndSession ends a session of the caller by id (WebSocket leave/close).
func (s *Service) EndSession(ctx context.Context, room RoomRef, sessionID, sessionEpoch string) error {
	return s.store.EndSession(ctx, room, sessionID, sessionEpoch, s.cfg.Now())
}

// SignOut ends all of the caller's sessions in every room of its org; with
// forget it also forgets the memberships. It returns the number of rooms
// where that changed something (so a second sign-out returns 0).
func (s *Service) SignOut(ctx context.Context, userID string, forget bool) (int, error) {
	user, err := s.actingUser(ctx, userID)
	if err != nil {
		return 0, err
	}
	org := IdentityFromContext(ctx).Org
	rooms, err := s.store.UserRooms(ctx, org, user, 0)
	if err != nil {
		return 0, fmt.Errorf("signout: %w", err)
	}
	n := 0
	for _, r := range rooms {
		ok, err := s.store.EndUser(ctx, RoomRef{Org: org, RoomID: r.RoomID}, user, forget, s.cfg.Now())
		if err != nil {
			return n, fmt.Errorf("signout: %w", err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// Members lists a room by id for a user of its org or an admin.
func (s *Service) Members(ctx context.Context, roomID string, onlineOnly bool, limit int) (*RoomList, error) {
	r, err := s.PrepareMembers(ctx, roomID, onlineOnly, limit, "")
	if err != nil {
		return nil, err
	}
	return s.ListPage(ctx, r)
}

// MembersQuery is what a list by room id asks for.
type MembersQuery struct {
	OnlineOnly bool
	Limit      int
	Cursor     string
	// IncludeInvisible: admin only (else EFORBIDDEN); invisible members
	// keep their place among the offline ones, so it cannot be combined
	// with OnlineOnly (EINVALID).
	IncludeInvisible bool
}

// PrepareMembers checks a list request by room id (Members).
func (s *Service) PrepareMembers(ctx context.Context, roomID string, onlineOnly bool, limit int, cursor string) (ListRequest, error) {
	return s.PrepareMembersQuery(ctx, roomID, MembersQuery{OnlineOnly: onlineOnly, Limit: limit, Cursor: cursor})
}

// PrepareMembersQuery checks a list request by room id.
func (s *Service) PrepareMembersQuery(ctx context.Context, roomID string, mq MembersQuery) (ListRequest, error) {
	room, err := s.room(ctx, roomID)
	if err != nil {
		return ListRequest{}, err
	}
	limit, err := ValidateLimit(mq.Limit)
	if err != nil {
		return ListRequest{}, err
	}
	if mq.IncludeInvisible {
		if !IdentityFromContext(ctx).Admin {
			return ListRequest{}, Errorf(EFORBIDDEN, "includeInvisible is for admin calls only")
		}
		if mq.OnlineOnly {
			return ListRequest{}, Errorf(EINVALID, "includeInvisible cannot be combined with onlineOnly")
		}
	}
	onlineOnly, cursor := mq.OnlineOnly, mq.Cursor
	r := ListRequest{Room: room, Query: ListQuery{Limit: limit, OnlineOnly: onlineOnly, Now: s.cfg.Now(), IncludeInvisible: mq.IncludeInvisible}}
	if err := s.withCursor(&r, cursor, ""); err != nil {
		return ListRequest{}, err
	}
	return r, nil
}

// Count summarises a room in O(1).
func (s *Service) Count(ctx context.Context, roomID string) (*RoomCount, error) {
	room, err := s.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return s.store.Count(ctx, room)
}

// RoomCount returns the counts of a room a connection watches in count
// mode (WatchRoom's room and epoch). A non-empty epoch that is not the
// room's any more (the room was removed) yields zeros and live false, as
// Snapshot yields an empty list.
func (s *Service) RoomCount(ctx context.Context, room RoomRef, epoch string) (n *RoomCount, live bool, err error) {
	if epoch != "" {
		// One member read only: the epoch check, as a list does it.
		l, err := s.store.List(ctx, room, ListQuery{Epoch: epoch, Limit: 1, Now: s.cfg.Now()})
		if err != nil {
			return nil, false, err
		}
		if l.Stale {
			return &RoomCount{RoomID: room.RoomID, Version: l.Version}, false, nil
		}
	}
	n, err = s.store.Count(ctx, room)
	return n, err == nil, err
}

// SetData replaces a member's data. Only that user or an admin may.
func (s *Service) SetData(ctx context.Context, roomID, userID string, data json.RawMessage) error {
	room, err := s.room(ctx, roomID)
	if err != nil {
		return err
	}
	if err := s.mayActFor(ctx, userID); err != nil {
		return err
	}
	if data == nil {
		return Errorf(EINVALID, "data is required")
	}
	if data, err = s.normalizeData(data); err != nil {
		return err
	}
	return s.store.SetData(ctx, room, userID, data, s.cfg.Now())
}

// RemoveMember ends a user's sessions in a room and forgets the member.
func (s *Service) RemoveMember(ctx context.Context, roomID, userID string) error {
	room, err := s.room(ctx, roomID)
	if err != nil {
		return err
	}
	if err := s.mayActFor(ctx, userID); err != nil {
		return err
	}
	_, err = s.store.EndUser(ctx, room, userID, true, s.cfg.Now())
	return err
}

// RemoveRoom forgets a room. Admin only.
func (s *Service) RemoveRoom(ctx context.Context, roomID string) error {
	room, err := s.room(ctx, roomID)
	if err != nil {
		return err
	}
	if !IdentityFromContext(ctx).Admin {
		return Errorf(EFORBIDDEN, "admin only")
	}
	return s.store.RemoveRoom(ctx, room, s.cfg.Now())
}

// UserRooms lists a user's rooms, online first. Only that user or an admin may.
func (s *Service) UserRooms(ctx context.Context, userID string, onlineOnly bool, limit int) ([]UserRoom, error) {
	if err := s.mayActFor(ctx, userID); err != nil {
		return nil, err
	}
	limit, err := ValidateLimit(limit)
	if err != nil {
		return nil, err
	}
	rooms, err := s.store.UserRooms(ctx, IdentityFromContext(ctx).Org, userID, 0)
	if err != nil {
		return nil, err
	}
	out := rooms[:0]
	for _, r := range rooms {
		if onlineOnly && !r.Online {
			continue
		}
		out = append(out, r)
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// actingUser returns the user a request acts as: the JWT subject for a
// verified identity (a different bodyUserID is EFORBIDDEN), else bodyUserID.
func (s *Service) actingUser(ctx context.Context, bodyUserID string) (string, error) {
	id := IdentityFromContext(ctx)
	if id == nil {
		return "", Errorf(EUNAUTHORIZED, "authentication required")
	}
	if id.Verified {
		if bodyUserID != "" && bodyUserID != id.UserID {
			return "", Errorf(EFORBIDDEN, "userId must be the token's subject")
		}
		return id.UserID, nil
	}
	if err := ValidateUserID(bodyUserID); err != nil {
		return "", err
	}
	return bodyUserID, nil
}

// Room checks roomID and the caller's right to it, and scopes it to the
// caller's org.
func (s *Service) Room(ctx context.Context, roomID string) (RoomRef, error) {
	return s.room(ctx, roomID)
}

func (s *Service) room(ctx context.Context, roomID string) (RoomRef, error) {
	id := IdentityFromContext(ctx)
	if id == nil {
		return RoomRef{}, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if err := ValidateRoomID(roomID); err != nil {
		return RoomRef{}, err
	}
	if !id.MayAccessRoom(roomID) {
		return RoomRef{}, Errorf(EFORBIDDEN, "the token does not grant room %q", roomID)
	}
	return RoomRef{Org: id.Org, RoomID: roomID}, nil
}

func (s *Service) mayActFor(ctx context.Context, userID string) error {
	if err := ValidateUserID(userID); err != nil {
		return err
	}
	id := IdentityFromContext(ctx)
	if id == nil {
		return Errorf(EUNAUTHORIZED, "authentication required")
	}
	if !id.Admin && id.UserID != userID {
		return Errorf(EFORBIDDEN, "only %q or an admin may do this", userID)
	}
	return nil
}

// normalizeData checks data and compacts it. nil stays nil (keep the data);
// JSON null becomes an empty, non-nil value (clear the data).
func (s *Service) normalizeData(data json.RawMessage) (json.RawMessage, error) {
	if data == nil {
		return nil, nil
	}
	if len(data) > s.cfg.MaxDataBytes*2 {
		return nil, Errorf(ETOOLARGE, "data must be at most %d bytes", s.cfg.MaxDataBytes)
	}
	if err := CheckJSONText(data); err != nil {
		return nil, Errorf(EINVALID, "data: %s", err.(*Error).Message)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, Errorf(EINVALID, "data must be JSON")
	}
	if buf.Len() > s.cfg.MaxDataBytes {
		return nil, Errorf(ETOOLARGE, "data must be at most %d bytes", s.cfg.MaxDataBytes)
	}
	if buf.String() == "null" {
		return json.RawMessage{}, nil
	}
	return buf.Bytes(), nil
}
