package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// testCase is a case of the suite: a name and a test on a fresh harness.
type testCase struct {
	name string
	run  func(t *testing.T, h *Harness)
}

// contract is every case of the suite (leaseCases, ruleCases, pageCases and privacyCases
// join it).
var contract = append(append(append(append([]testCase{
	{"JoinAndList", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		if out.Interval != 10000 || out.RoomToken == "" || out.SessionToken == "" {
			t.Fatalf("heartbeat = %+v", out)
		}
		l := h.List(out.RoomToken)
		if l.RoomID != "lobby" || l.Version != 1 || len(l.Members) != 1 {
			t.Fatalf("list = %+v", l)
		}
		m := l.Members[0]
		if m.UserID != "u1" || !m.Online || m.Sessions != 1 || m.LastDisconnected != 0 || m.Data != nil {
			t.Fatalf("member = %+v", m)
		}
	}},
	{"TwoRoomsIsolated", func(t *testing.T, h *Harness) {
		a := h.Beat("u1", "a", "s1", 0)
		b := h.Beat("u2", "b", "s2", 0)
		if got := IDs(h.List(a.RoomToken)); !equal(got, []string{"u1"}) {
			t.Fatalf("room a = %v", got)
		}
		if got := IDs(h.List(b.RoomToken)); !equal(got, []string{"u2"}) {
			t.Fatalf("room b = %v", got)
		}
		if a.RoomToken == b.RoomToken {
			t.Fatal("two rooms share a token")
		}
	}},
	{"TimeoutToOffline", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", Sec)
		h.Advance(2400 * time.Millisecond)
		h.Reap()
		if m := h.Member(out.RoomToken, "u1"); !m.Online {
			t.Fatalf("offline before the timeout: %+v", m)
		}
		h.Advance(200 * time.Millisecond)
		if n := h.Reap(); n != 1 {
			t.Fatalf("reaped %d sessions, want 1", n)
		}
		m := h.Member(out.RoomToken, "u1")
		if m.Online || m.Sessions != 0 || m.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("after timeout: %+v (now %d)", m, h.Clock().UnixMilli())
		}
	}},
	{"HeartbeatsKeepOnline", func(t *testing.T, h *Harness) {
		var out *presence.HeartbeatOutput
		for i := 0; i < 10; i++ {
			out = h.Beat("u1", "lobby", "s1", Sec)
			h.Advance(2 * Sec)
			h.Reap()
		}
		if m := h.Member(out.RoomToken, "u1"); !m.Online {
			t.Fatalf("went offline while beating: %+v", m)
		}
		if v := h.List(out.RoomToken).Version; v != 1 {
			t.Fatalf("version = %d after keep-alives, want 1", v)
		}
	}},
	{"DisconnectAtOnce", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		if err := h.Svc.Disconnect(context.Background(), out.SessionToken); err != nil {
			t.Fatal(err)
		}
		m := h.Member(out.RoomToken, "u1")
		if m.Online || m.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("after disconnect: %+v", m)
		}
	}},
	{"TwoSessions", func(t *testing.T, h *Harness) {
		a := h.Beat("u1", "lobby", "tab1", 0)
		b := h.Beat("u1", "lobby", "tab2", 0)
		if m := h.Member(a.RoomToken, "u1"); m.Sessions != 2 {
			t.Fatalf("sessions = %d, want 2", m.Sessions)
		}
		if v := h.List(a.RoomToken).Version; v != 1 {
			t.Fatalf("a second tab changed the version to %d", v)
		}
		h.Svc.Disconnect(context.Background(), a.SessionToken)
		if m := h.Member(a.RoomToken, "u1"); !m.Online || m.Sessions != 1 {
			t.Fatalf("after first disconnect: %+v", m)
		}
		h.Svc.Disconnect(context.Background(), b.SessionToken)
		if m := h.Member(a.RoomToken, "u1"); m.Online {
			t.Fatalf("after last disconnect: %+v", m)
		}
	}},
	{"RejoinAfterTimeout", func(t *testing.T, h *Harness) {
		first := h.Beat("u1", "lobby", "s1", Sec)
		h.Advance(3 * Sec)
		h.Reap()
		second := h.Beat("u1", "lobby", "s1", Sec)
		if second.RoomToken != first.RoomToken {
			t.Fatal("room token changed on rejoin")
		}
		if second.SessionToken == first.SessionToken {
			t.Fatal("session token reused after a timeout")
		}
		// The old token must not end the new session.
		if err := h.Svc.Disconnect(context.Background(), first.SessionToken); err != nil {
			t.Fatal(err)
		}
		if m := h.Member(first.RoomToken, "u1"); !m.Online {
			t.Fatal("an old session token ended the newer session")
		}
	}},
	{"TimeoutWithoutReaperStillNewSession", func(t *testing.T, h *Harness) {
		// A heartbeat after the deadline, before any reaper ran, is a new session.
		first := h.Beat("u1", "lobby", "s1", Sec)
		ev := h.Subscribe("lobby")
		h.Advance(3 * Sec)
		second := h.Beat("u1", "lobby", "s1", Sec)
		if second.SessionToken == first.SessionToken {
			t.Fatal("expired session resumed")
		}
		got := h.Settle(ev, "lobby")
		if kinds(got) != "leave:u1 join:u1" || got[0].Version != 2 || got[1].Version != 3 || got[0].Member.Online || !got[1].Member.Online {
			t.Fatalf("events %v, want u1's leave (v2) then join (v3)", got)
		}
	}},
	{"SessionIDOfAnotherUserConflicts", func(t *testing.T, h *Harness) {
		h.Beat("u1", "lobby", "s1", 0)
		_, err := h.Svc.Heartbeat(h.As("u2"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1"})
		WantCode(t, err, presence.ECONFLICT)
	}},
	{"ForgedTokens", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		for _, tok := range []string{"", "garbage", out.RoomToken + "x", out.SessionToken, flipLast(out.RoomToken)} {
			_, err := h.Svc.List(context.Background(), tok, 0)
			WantCode(t, err, presence.EINVALID)
		}
		for _, tok := range []string{"", "garbage", out.RoomToken, flipLast(out.SessionToken)} {
			WantCode(t, h.Svc.Disconnect(context.Background(), tok), presence.EINVALID)
		}
		if m := h.Member(out.RoomToken, "u1"); !m.Online {
			t.Fatal("a forged token changed state")
		}
	}},
	{"RepeatedDisconnectIsNoop", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		for i := 0; i < 3; i++ {
			if err := h.Svc.Disconnect(context.Background(), out.SessionToken); err != nil {
				t.Fatal(err)
			}
		}
		if v := h.List(out.RoomToken).Version; v != 2 {
			t.Fatalf("version = %d, want 2 (join, leave)", v)
		}
	}},
	{"RoomTokenSharedByUsers", func(t *testing.T, h *Harness) {
		a := h.Beat("u1", "lobby", "s1", 0)
		b := h.Beat("u2", "lobby", "s2", 0)
		c := h.Beat("u1", "lobby", "s1", 0)
		if a.RoomToken != b.RoomToken || a.RoomToken != c.RoomToken {
			t.Fatal("room tokens differ")
		}
	}},
	{"Ordering", func(t *testing.T, h *Harness) {
		tok := map[string]*presence.HeartbeatOutput{}
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			tok[u] = h.Beat(u, "lobby", "s-"+u, 0)
			h.Advance(Sec)
		}
		h.Beat("u1", "lobby", "s-u1", 0) // a refresh keeps the face-pile stable
		h.Svc.Disconnect(context.Background(), tok["u2"].SessionToken)
		h.Advance(Sec)
		h.Svc.Disconnect(context.Background(), tok["u1"].SessionToken)
		got := IDs(h.List(tok["u1"].RoomToken))
		if want := []string{"u3", "u4", "u1", "u2"}; !equal(got, want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
		// Coming back online puts the user at the end of the online ones.
		h.Beat("u2", "lobby", "s-u2b", 0)
		got = IDs(h.List(tok["u1"].RoomToken))
		if want := []string{"u3", "u4", "u2", "u1"}; !equal(got, want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
	}},
	{"Limit", func(t *testing.T, h *Harness) {
		var out *presence.HeartbeatOutput
		for i := 0; i < 110; i++ {
			out = h.Beat(fmt.Sprintf("u%03d", i), "big", fmt.Sprintf("s%d", i), 0)
		}
		if n := len(h.List(out.RoomToken).Members); n != 104 {
			t.Fatalf("default limit gave %d members", n)
		}
		l, err := h.Svc.List(context.Background(), out.RoomToken, 7)
		if err != nil || len(l.Members) != 7 || l.Members[6].UserID != "u006" {
			t.Fatalf("limit 7: %v %v", err, l)
		}
		_, err = h.Svc.List(context.Background(), out.RoomToken, 1001)
		WantCode(t, err, presence.EINVALID)
		_, err = h.Svc.List(context.Background(), out.RoomToken, -1)
		WantCode(t, err, presence.EINVALID)
		c, err := h.Svc.Count(h.As("u000"), "big")
		if err != nil || c.Online != 110 || c.Sessions != 110 || c.Version != 110 {
			t.Fatalf("count = %+v, %v", c, err)
		}
	}},
	{"Data", func(t *testing.T, h *Harness) {
		out, err := h.Svc.Heartbeat(h.As("u1"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1", Data: json.RawMessage(`{"a": 1, "b": [1,2]}`)})
		if err != nil {
			t.Fatal(err)
		}
		if m := h.Member(out.RoomToken, "u1"); string(m.Data) != `{"a":1,"b":[1,2]}` {
			t.Fatalf("data = %s", m.Data)
		}
		if err := h.Svc.SetData(h.As("u1"), "lobby", "u1", json.RawMessage(`{"c":true}`)); err != nil {
			t.Fatal(err)
		}
		if m := h.Member(out.RoomToken, "u1"); string(m.Data) != `{"c":true}` {
			t.Fatalf("data not replaced whole: %s", m.Data)
		}
		v := h.List(out.RoomToken).Version
		if err := h.Svc.SetData(h.As("u1"), "lobby", "u1", json.RawMessage(`{"c":true}`)); err != nil {
			t.Fatal(err)
		}
		if h.List(out.RoomToken).Version != v {
			t.Fatal("setting the same data changed the version")
		}
		h.Svc.Disconnect(context.Background(), out.SessionToken)
		if m := h.Member(out.RoomToken, "u1"); m.Online || string(m.Data) != `{"c":true}` {
			t.Fatalf("offline member lost its data: %+v", m)
		}
		WantCode(t, h.Svc.SetData(h.As("u9"), "lobby", "u9", json.RawMessage(`1`)), presence.ENOTFOUND)
		WantCode(t, h.Svc.SetData(h.As("u2"), "lobby", "u1", json.RawMessage(`1`)), presence.EFORBIDDEN)
		if err := h.Svc.SetData(h.Admin(), "lobby", "u1", json.RawMessage(`null`)); err != nil {
			t.Fatal(err)
		}
		if m := h.Member(out.RoomToken, "u1"); m.Data != nil {
			t.Fatalf("null did not clear the data: %s", m.Data)
		}
	}},
	{"RemoveMember", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		h.Beat("u2", "lobby", "s2", 0)
		if err := h.Svc.RemoveMember(h.Admin(), "lobby", "u1"); err != nil {
			t.Fatal(err)
		}
		if got := IDs(h.List(out.RoomToken)); !equal(got, []string{"u2"}) {
			t.Fatalf("after remove: %v", got)
		}
		c, _ := h.Svc.Count(h.Admin(), "lobby")
		if c.Online != 1 || c.Sessions != 1 {
			t.Fatalf("count after remove = %+v", c)
		}
		// Its old session is gone: a heartbeat makes a new one.
		if again := h.Beat("u1", "lobby", "s1", 0); again.SessionToken == out.SessionToken {
			t.Fatal("removed member's session survived")
		}
	}},
	{"RemoveRoom", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 0)
		v := h.List(out.RoomToken).Version
		WantCode(t, h.Svc.RemoveRoom(h.As("u1"), "lobby"), presence.EFORBIDDEN)
		if err := h.Svc.RemoveRoom(h.Admin(), "lobby"); err != nil {
			t.Fatal(err)
		}
		if l := h.List(out.RoomToken); len(l.Members) != 0 {
			t.Fatalf("old token still lists %v", IDs(l))
		}
		again := h.Beat("u1", "lobby", "s1", 0)
		if again.RoomToken == out.RoomToken {
			t.Fatal("room token unchanged after removal")
		}
		l := h.List(again.RoomToken)
		if !equal(IDs(l), []string{"u1"}) || l.Version <= v {
			t.Fatalf("new life: %+v (old version %d)", l, v)
		}
		if l := h.List(out.RoomToken); len(l.Members) != 0 {
			t.Fatal("old token lists the room's new life")
		}
	}},
	{"UserRooms", func(t *testing.T, h *Harness) {
		a := h.Beat("u1", "a", "s1", 0)
		h.Beat("u1", "b", "s2", 0)
		h.Beat("u1", "c", "s3", 0)
		h.Svc.Disconnect(context.Background(), a.SessionToken)
		rooms, err := h.Svc.UserRooms(h.As("u1"), "u1", false, 0)
		if err != nil || len(rooms) != 3 || !rooms[0].Online || !rooms[1].Online || rooms[2].RoomID != "a" || rooms[2].Online || rooms[2].LastDisconnected == 0 {
			t.Fatalf("rooms = %+v, %v", rooms, err)
		}
		rooms, _ = h.Svc.UserRooms(h.As("u1"), "u1", true, 0)
		if len(rooms) != 2 {
			t.Fatalf("online rooms = %+v", rooms)
		}
		_, err = h.Svc.UserRooms(h.As("u2"), "u1", false, 0)
		WantCode(t, err, presence.EFORBIDDEN)
		h.Svc.RemoveMember(h.Admin(), "b", "u1")
		rooms, _ = h.Svc.UserRooms(h.Admin(), "u1", false, 0)
		if len(rooms) != 2 {
			t.Fatalf("after removal from b: %+v", rooms)
		}
	}},
	{"UserPresence", func(t *testing.T, h *Harness) {
		// Org-wide: online while a session lives in any room; rooms counts
		// the rooms where it does; a user of another org is never seen.
		get := func(ctx context.Context, user string) presence.UserPresence {
			t.Helper()
			p, err := h.Svc.UserPresence(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		if p := get(h.As("u2"), "u1"); p != (presence.UserPresence{UserID: "u1"}) {
			t.Fatalf("never seen: %+v", p)
		}
		a := h.Beat("u1", "a", "s1", 0)
		b := h.Beat("u1", "b", "s2", 0)
		h.Beat("u1", "b", "s3", 0)
		if p := get(h.As("u2"), "u1"); !p.Online || p.Rooms != 2 || p.LastDisconnected != 0 {
			t.Fatalf("online in 2 rooms: %+v", p)
		}
		other := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.Org + "-other", UserID: "u2", Verified: true})
		if p := get(other, "u1"); p != (presence.UserPresence{UserID: "u1"}) {
			t.Fatalf("another org: %+v", p)
		}
		h.Svc.Disconnect(context.Background(), a.SessionToken)
		h.Svc.Disconnect(context.Background(), b.SessionToken)
		if p := get(h.Admin(), "u1"); !p.Online || p.Rooms != 1 {
			t.Fatalf("online in 1 room: %+v", p)
		}
		h.Advance(time.Second)
		h.Svc.SignOut(h.As("u1"), "", false)
		if p := get(h.As("u1"), "u1"); p.Online || p.Rooms != 0 || p.LastDisconnected != h.Clock().UnixMilli() {
			t.Fatalf("offline: %+v (now %d)", p, h.Clock().UnixMilli())
		}
		_, err := h.Svc.UserPresence(context.Background(), "u1")
		WantCode(t, err, presence.EUNAUTHORIZED)
		_, err = h.Svc.UserPresence(h.As("u2"), "")
		WantCode(t, err, presence.EINVALID)
	}},
	{"SignOut", func(t *testing.T, h *Harness) {
		a := h.Beat("u1", "a", "s1", 0)
		b := h.Beat("u1", "b", "s2", 0)
		h.Beat("u1", "b", "s3", 0)
		h.Beat("u2", "b", "s4", 0)
		n, err := h.Svc.SignOut(h.As("u1"), "", false)
		if err != nil || n != 2 {
			t.Fatalf("signout = %d, %v", n, err)
		}
		if m := h.Member(a.RoomToken, "u1"); m.Online {
			t.Fatal("still online in a")
		}
		if m := h.Member(b.RoomToken, "u1"); m == nil || m.Online {
			t.Fatalf("in b: %+v", m)
		}
		if m := h.Member(b.RoomToken, "u2"); !m.Online {
			t.Fatal("signout of u1 touched u2")
		}
		if n, err := h.Svc.SignOut(h.As("u1"), "", false); err != nil || n != 0 {
			t.Fatalf("second signout = %d, %v", n, err)
		}
		n, err = h.Svc.SignOut(h.As("u1"), "", true)
		if err != nil || n != 2 || h.Member(b.RoomToken, "u1") != nil {
			t.Fatalf("signout forget = %d, %v", n, err)
		}
	}},
	{"ShorterIntervalPullsDeadlineIn", func(t *testing.T, h *Harness) {
		out := h.Beat("u1", "lobby", "s1", 60*Sec)
		h.Beat("u1", "lobby", "s1", Sec)
		h.Advance(2600 * time.Millisecond)
		h.Reap()
		if m := h.Member(out.RoomToken, "u1"); m.Online {
			t.Fatal("the shorter interval did not pull the deadline in")
		}
	}},
	{"SeventyExpireTogether", func(t *testing.T, h *Harness) {
		ev := h.Subscribe("crowd")
		var out *presence.HeartbeatOutput
		for i := 0; i < 70; i++ {
			out = h.Beat(fmt.Sprintf("u%d", i), "crowd", fmt.Sprintf("s%d", i), Sec)
		}
		h.Advance(3 * Sec)
		if n := h.Reap(); n != 70 {
			t.Fatalf("reaped %d, want 70", n)
		}
		for _, m := range h.List(out.RoomToken).Members {
			if m.Online {
				t.Fatalf("%s still online", m.UserID)
			}
		}
		got := h.Settle(ev, "crowd")
		if len(got) != 140 || Count(got[70:], presence.EventLeave) != 70 {
			t.Fatalf("%d events, want 70 joins then 70 leaves: %v", len(got), got)
		}
		for i, e := range got {
			if e.Version != int64(i+1) {
				t.Fatalf("event %d has version %d", i, e.Version)
			}
		}
	}},
	{"ShortSessionInRoomOfLongOnes", func(t *testing.T, h *Harness) {
		var out *presence.HeartbeatOutput
		for i := 0; i < 5; i++ {
			out = h.Beat(fmt.Sprintf("long%d", i), "mixed", fmt.Sprintf("l%d", i), 600*Sec)
		}
		h.Advance(Sec)
		h.Reap() // the room is not due: nothing to do
		h.Beat("short", "mixed", "s", Sec)
		h.Advance(2600 * time.Millisecond)
		if n := h.Reap(); n != 1 {
			t.Fatalf("reaped %d, want 1", n)
		}
		for _, m := range h.List(out.RoomToken).Members {
			if m.Online != (m.UserID != "short") {
				t.Fatalf("%+v", m)
			}
		}
	}},
	{"VersionsAndEvents", func(t *testing.T, h *Harness) {
		ev := h.Subscribe("ev")
		out := h.Beat("u1", "ev", "s1", 0)                                // join: v1
		h.Beat("u1", "ev", "s1", 0)                                       // keep-alive: nothing
		h.Beat("u1", "ev", "s2", 0)                                       // second tab: nothing
		h.Svc.SetData(h.As("u1"), "ev", "u1", json.RawMessage(`{"x":1}`)) // update: v2
		h.Svc.Disconnect(context.Background(), out.SessionToken)          // first tab ends: nothing
		h.Svc.SignOut(h.As("u1"), "", false)                              // leave: v3
		h.Svc.RemoveMember(h.Admin(), "ev", "u1")                         // remove: v4
		got := h.Settle(ev, "ev")
		if kinds(got) != "join:u1 update:u1 leave:u1 remove:u1" {
			t.Fatalf("events = %v", got)
		}
		for i, e := range got {
			if e.Version != int64(i+1) || e.Room != h.Room("ev") || e.Member == nil || e.Member.UserID != "u1" {
				t.Fatalf("event %d = %+v, want v%d of ev", i, e, i+1)
			}
		}
		want := []presence.Member{
			{UserID: "u1", Online: true, Sessions: 1},
			{UserID: "u1", Online: true, Sessions: 2, Data: json.RawMessage(`{"x":1}`)},
			{UserID: "u1", LastDisconnected: h.Clock().UnixMilli(), Data: json.RawMessage(`{"x":1}`)},
			{UserID: "u1"},
		}
		for i, m := range want {
			if fmt.Sprintf("%+v", *got[i].Member) != fmt.Sprintf("%+v", m) {
				t.Fatalf("%s member = %+v, want %+v", got[i].Kind, *got[i].Member, m)
			}
		}
	}},
	{"ProfileFromIdentity", func(t *testing.T, h *Harness) {
		ctx := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: h.Org, UserID: "u1", Name: "Ada \"L\"", Image: "https://x/a.png", Verified: true})
		out, err := h.Svc.Heartbeat(ctx, presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1", Name: "ignored"})
		if err != nil {
			t.Fatal(err)
		}
		if m := h.Member(out.RoomToken, "u1"); m.Name != "Ada \"L\"" || m.Image != "https://x/a.png" {
			t.Fatalf("profile = %+v", m)
		}
	}},
	{"UserIDMustBeSubject", func(t *testing.T, h *Harness) {
		_, err := h.Svc.Heartbeat(h.As("u1"), presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1", UserID: "u2"})
		WantCode(t, err, presence.EFORBIDDEN)
	}},
	{"OrgIsolation", func(t *testing.T, h *Harness) {
		a := h.Beat("u1", "lobby", "s1", 0)
		other := presence.NewContextWithIdentity(context.Background(), &presence.Identity{Org: "other", UserID: "u2", Verified: true})
		b, err := h.Svc.Heartbeat(other, presence.HeartbeatInput{RoomID: "lobby", SessionID: "s1"})
		if err != nil {
			t.Fatalf("same sessionId in another org: %v", err)
		}
		if got := IDs(h.List(a.RoomToken)); !equal(got, []string{"u1"}) {
			t.Fatalf("org acme sees %v", got)
		}
		if got := IDs(h.List(b.RoomToken)); !equal(got, []string{"u2"}) {
			t.Fatalf("org other sees %v", got)
		}
		l, _ := h.Svc.Members(other, "lobby", false, 0)
		if !equal(IDs(l), []string{"u2"}) {
			t.Fatalf("members of other = %v", IDs(l))
		}
	}},
	{"Retention", func(t *testing.T, h *Harness) {
		out := h.Beat("old", "lobby", "s1", 0)
		h.Svc.Disconnect(context.Background(), out.SessionToken)
		h.Advance(167 * time.Hour)
		if got := IDs(h.List(out.RoomToken)); !equal(got, []string{"old"}) {
			t.Fatalf("before the retention: %v", got)
		}
		h.Advance(2 * time.Hour)
		if got := IDs(h.List(out.RoomToken)); len(got) != 0 {
			t.Fatalf("after the retention, with no change to the room: %v", got)
		}
		h.Beat("new", "lobby", "s2", 0)
		if got := IDs(h.List(out.RoomToken)); !equal(got, []string{"new"}) {
			t.Fatalf("after retention: %v", got)
		}
	}},
}, ruleCases...), leaseCases...), pageCases...), privacyCases...)

// kinds renders events as "kind:userId ...".
func kinds(evs []presence.Event) string {
	out := ""
	for i, e := range evs {
		if i > 0 {
			out += " "
		}
		out += e.Kind + ":" + e.UserID
	}
	return out
}
