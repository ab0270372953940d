package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// Privacy: an invisible member is alive for itself and offline in every
// other view; a hidden last seen is 0 in every other view.

// On and Off are privacy flag values (HeartbeatInput.Invisible,
// HideLastSeen).
var (
	On  = func() *bool { b := true; return &b }()
	Off = func() *bool { b := false; return &b }()
)

// BeatPrivacy is Beat with privacy flags (nil keeps the member's).
func (h *Harness) BeatPrivacy(user, room, session string, invisible, hideLastSeen *bool) *presence.HeartbeatOutput {
	h.T.Helper()
	out, err := h.Svc.Heartbeat(h.As(user), presence.HeartbeatInput{RoomID: room, SessionID: session,
		Invisible: invisible, HideLastSeen: hideLastSeen})
	if err != nil {
		h.T.Fatalf("heartbeat %s/%s/%s: %v", user, room, session, err)
	}
	return out
}

// Count reads a room's counts.
func (h *Harness) Count(room string) presence.RoomCount {
	h.T.Helper()
	c, err := h.Svc.Count(h.Admin(), room)
	if err != nil {
		h.T.Fatalf("count: %v", err)
	}
	return *c
}

// AdminMembers lists a room as an admin with includeInvisible.
func (h *Harness) AdminMembers(room string) *presence.RoomList {
	h.T.Helper()
	r, err := h.Svc.PrepareMembersQuery(h.Admin(), room, presence.MembersQuery{IncludeInvisible: true})
	if err != nil {
		h.T.Fatalf("members: %v", err)
	}
	l, err := h.Svc.ListPage(context.Background(), r)
	if err != nil {
		h.T.Fatalf("members: %v", err)
	}
	return l
}

func findMember(l *presence.RoomList, user string) presence.Member {
	for _, m := range l.Members {
		if m.UserID == user {
			return m
		}
	}
	return presence.Member{}
}

func userPresence(t *testing.T, h *Harness, ctx context.Context, user string) presence.UserPresence {
	t.Helper()
	p, err := h.Svc.UserPresence(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wantOnlyAppearance fails unless the only event of user, a member that
// arrived invisible, is its appearance as an offline member never seen.
func wantOnlyAppearance(t *testing.T, evs []presence.Event, user string) {
	t.Helper()
	n := 0
	for _, e := range evs {
		if e.UserID != user {
			continue
		}
		if n++; n > 1 || e.Kind != presence.EventUpdate || e.Member == nil || e.Member.Online || e.Member.LastDisconnected != 0 || e.Member.Sessions != 0 {
			t.Fatalf("events of the invisible member: %+v", e)
		}
	}
	if n != 1 {
		t.Fatalf("the invisible member's appearance: %d events", n)
	}
}

var privacyCases = []testCase{
	{"PrivacyTurningInvisibleIsALeave", func(t *testing.T, h *Harness) {
		ev := h.Subscribe("lobby")
		out := h.Beat("u1", "lobby", "s1", 0)
		h.Beat("u2", "lobby", "s2", 0)
		v0 := h.List(out.RoomToken).Version
		h.Advance(Sec)
		went := h.Clock().UnixMilli()
		h.BeatPrivacy("u1", "lobby", "s1", On, nil)
		l := h.List(out.RoomToken)
		if m := findMember(l, "u1"); m.Online || m.Sessions != 0 || m.LastDisconnected != went || m.Invisible {
			t.Fatalf("invisible member as the others see it: %+v (went %d)", m, went)
		}
		if l.Version != v0+1 {
			t.Fatalf("version %d after turning invisible, want %d", l.Version, v0+1)
		}
		if c := h.Count("lobby"); c.Online != 1 || c.Sessions != 1 || c.Version != v0+1 {
			t.Fatalf("count = %+v", c)
		}
		// A second session, a keep-alive, a data-less beat without flags and
		// the end of that session: the others see nothing.
		h.Advance(Sec)
		s3 := h.Beat("u1", "lobby", "s3", 0)
		h.Beat("u1", "lobby", "s1", 0)
		if m := findMember(h.AdminMembers("lobby"), "u1"); !m.Invisible || !m.Online || m.Sessions != 2 || m.LastDisconnected != 0 {
			t.Fatalf("admin includeInvisible: %+v", m)
		}
		if err := h.Svc.Disconnect(context.Background(), s3.SessionToken); err != nil {
			t.Fatal(err)
		}
		if c := h.Count("lobby"); c.Online != 1 || c.Sessions != 1 || c.Version != v0+1 {
			t.Fatalf("count after an invisible session came and went = %+v", c)
		}
		if m := h.Member(out.RoomToken, "u1"); m.Online || m.LastDisconnected != went {
			t.Fatalf("after its second session: %+v", m)
		}
		// Itself: alive.
		rooms, err := h.Svc.UserRooms(h.As("u1"), "u1", false, 0)
		if err != nil || len(rooms) != 1 || !rooms[0].Online || !rooms[0].Invisible || rooms[0].LastDisconnected != 0 {
			t.Fatalf("own rooms = %+v, %v", rooms, err)
		}
		if p := userPresence(t, h, h.As("u1"), "u1"); !p.Online || p.Rooms != 1 {
			t.Fatalf("own presence = %+v", p)
		}
		if p := userPresence(t, h, h.As("u2"), "u1"); p.Online || p.Rooms != 0 || p.LastDisconnected != went {
			t.Fatalf("presence to others = %+v", p)
		}
		// Visible again: a join, with its live session.
		h.BeatPrivacy("u1", "lobby", "s1", Off, nil)
		if m := h.Member(out.RoomToken, "u1"); !m.Online || m.Sessions != 1 || m.Invisible {
			t.Fatalf("visible again: %+v", m)
		}
		if c := h.Count("lobby"); c.Online != 2 || c.Sessions != 2 || c.Version != v0+2 {
			t.Fatalf("count visible again = %+v", c)
		}
		var mine []presence.Event
		for _, e := range h.Settle(ev, "lobby") {
			if e.UserID == "u1" {
				mine = append(mine, e)
			}
		}
		if len(mine) != 3 || mine[0].Kind != presence.EventJoin || mine[1].Kind != presence.EventLeave || mine[2].Kind != presence.EventJoin {
			t.Fatalf("u1's events = %+v", mine)
		}
		if m := mine[1].Member; m == nil || m.Online || m.Sessions != 0 || m.LastDisconnected != went {
			t.Fatalf("the leave's member = %+v", m)
		}
		if m := mine[2].Member; m == nil || !m.Online || m.Sessions != 1 {
			t.Fatalf("the join's member = %+v", m)
		}
	}},
	{"PrivacyInvisibleFromTheStart", func(t *testing.T, h *Harness) {
		ev := h.Subscribe("lobby")
		out := h.Beat("u2", "lobby", "s2", 0)
		a := h.BeatPrivacy("u1", "lobby", "s1", On, nil)
		// Absent flags keep the member's setting.
		h.BeatPrivacy("u1", "lobby", "s1", nil, nil)
		h.Beat("u1", "lobby", "s3", Sec)
		l := h.List(out.RoomToken)
		if m := findMember(l, "u1"); m.UserID != "u1" || m.Online || m.LastDisconnected != 0 || m.Sessions != 0 {
			t.Fatalf("never seen online: %+v in %+v", m, l.Members)
		}
		// It appeared as an offline member: an update (version 2).
		if l.Version != 2 {
			t.Fatalf("version = %d, want 2", l.Version)
		}
		// Its sessions end (a disconnect, a timeout): nothing to see.
		h.Svc.Disconnect(context.Background(), a.SessionToken)
		h.Advance(3 * Sec)
		h.Reap()
		if c := h.Count("lobby"); c.Online != 1 || c.Sessions != 1 || c.Version != 2 {
			t.Fatalf("count = %+v", c)
		}
		rooms, _ := h.Svc.UserRooms(h.As("u1"), "u1", false, 0)
		if len(rooms) != 1 || rooms[0].Online || rooms[0].LastDisconnected != h.Clock().UnixMilli() || !rooms[0].Invisible {
			t.Fatalf("own rooms after its sessions ended = %+v (now %d)", rooms, h.Clock().UnixMilli())
		}
		if m := findMember(h.AdminMembers("lobby"), "u1"); !m.Invisible || m.Online || m.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("admin includeInvisible: %+v", m)
		}
		wantOnlyAppearance(t, h.Settle(ev, "lobby"), "u1")
	}},
	{"PrivacyHideLastSeen", func(t *testing.T, h *Harness) {
		ev := h.Subscribe("lobby")
		out := h.BeatPrivacy("u1", "lobby", "s1", nil, On)
		h.Beat("u2", "lobby", "s2", 0)
		h.Advance(Sec)
		h.Svc.Disconnect(context.Background(), out.SessionToken)
		if m := h.Member(out.RoomToken, "u1"); m.Online || m.LastDisconnected != 0 {
			t.Fatalf("hidden last seen: %+v", m)
		}
		if p := userPresence(t, h, h.As("u2"), "u1"); p.Online || p.LastDisconnected != 0 {
			t.Fatalf("presence to others = %+v", p)
		}
		if p := userPresence(t, h, h.As("u1"), "u1"); p.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("own presence = %+v (now %d)", p, h.Clock().UnixMilli())
		}
		rooms, _ := h.Svc.UserRooms(h.As("u1"), "u1", false, 0)
		if len(rooms) != 1 || !rooms[0].HideLastSeen || rooms[0].LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("own rooms = %+v", rooms)
		}
		// Back, showing the last seen again: shown at the next leave.
		h.Advance(Sec)
		out = h.BeatPrivacy("u1", "lobby", "s1", nil, Off)
		h.Advance(Sec)
		h.Svc.Disconnect(context.Background(), out.SessionToken)
		if m := h.Member(out.RoomToken, "u1"); m.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("last seen shown again: %+v", m)
		}
		var leaves []presence.Event
		for _, e := range h.Settle(ev, "lobby") {
			if e.UserID == "u1" && e.Kind == presence.EventLeave {
				leaves = append(leaves, e)
			}
		}
		if len(leaves) != 2 || leaves[0].Member.LastDisconnected != 0 || leaves[1].Member.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("leaves = %+v", leaves)
		}
	}},
	{"PrivacyHideWhileInvisibleIsAnUpdate", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		h.Advance(Sec)
		h.BeatPrivacy("u1", "lobby", "s1", On, nil)
		v := h.List(out.RoomToken).Version
		h.BeatPrivacy("u1", "lobby", "s1", nil, On)
		l := h.List(out.RoomToken)
		if m := findMember(l, "u1"); m.Online || m.LastDisconnected != 0 || l.Version != v+1 {
			t.Fatalf("hidden while invisible: %+v, version %d (was %d)", m, l.Version, v)
		}
		// The same flags again change nothing.
		h.BeatPrivacy("u1", "lobby", "s1", On, On)
		if l := h.List(out.RoomToken); l.Version != v+1 {
			t.Fatalf("version %d after a heartbeat with unchanged flags, want %d", l.Version, v+1)
		}
	}},
	{"PrivacySignOutAndRemove", func(t *testing.T, h *Harness) {
		ev := h.Subscribe("lobby")
		out := h.BeatPrivacy("u1", "lobby", "s1", On, On)
		h.Beat("u1", "lobby", "s2", 0)
		if n, err := h.Svc.SignOut(h.As("u1"), "", false); err != nil || n != 1 {
			t.Fatalf("signout = %d, %v", n, err)
		}
		rooms, _ := h.Svc.UserRooms(h.As("u1"), "u1", false, 0)
		if len(rooms) != 1 || rooms[0].Online {
			t.Fatalf("own rooms after sign-out = %+v", rooms)
		}
		wantOnlyAppearance(t, h.Settle(ev, "lobby"), "u1")
		// Forgotten: its flags too; it comes back visible.
		if err := h.Svc.RemoveMember(h.As("u1"), "lobby", "u1"); err != nil {
			t.Fatal(err)
		}
		h.Beat("u1", "lobby", "s3", 0)
		if m := h.Member(out.RoomToken, "u1"); !m.Online || m.Sessions != 1 {
			t.Fatalf("back after removal: %+v", m)
		}
	}},
	{"PrivacyIncludeInvisibleIsForAdmins", func(t *testing.T, h *Harness) {
		h.BeatPrivacy("u1", "lobby", "s1", On, nil)
		_, err := h.Svc.PrepareMembersQuery(h.As("u1"), "lobby", presence.MembersQuery{IncludeInvisible: true})
		WantCode(t, err, presence.EFORBIDDEN)
		_, err = h.Svc.PrepareMembersQuery(h.Admin(), "lobby", presence.MembersQuery{IncludeInvisible: true, OnlineOnly: true})
		WantCode(t, err, presence.EINVALID)
		if l, _ := h.Svc.Members(h.Admin(), "lobby", false, 0); findMember(l, "u1").Online || findMember(l, "u1").Invisible {
			t.Fatalf("an admin list without includeInvisible: %+v", l.Members)
		}
	}},
	{"PrivacyLiveInvisibleMemberOutlivesRetention", func(t *testing.T, h *Harness) {
		h.BeatPrivacy("u1", "lobby", "s1", On, nil)
		// Eight days of keep-alives, every 20 minutes (interval 10 min):
		// the member is alive, so it is kept, whatever its place says.
		for i := 0; i < 8*24*3; i++ {
			h.Advance(20 * time.Minute)
			h.Beat("u2", "lobby", "s2", 10*time.Minute)
			h.Beat("u1", "lobby", "s1", 10*time.Minute)
		}
		if m := findMember(h.AdminMembers("lobby"), "u1"); !m.Invisible || !m.Online || m.Sessions != 1 {
			t.Fatalf("live invisible member after 8 days: %+v", m)
		}
	}},
}
