package httpapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/redistest"
)

// Privacy over real HTTP and WebSockets on a real Redis: invisible members
// are offline to everyone else, alive for themselves; hideLastSeen shows
// the others lastDisconnected 0; includeInvisible is for admins.

func memberOf(l presence.RoomList, user string) presence.Member {
	for _, m := range l.Members {
		if m.UserID == user {
			return m
		}
	}
	return presence.Member{}
}

func TestPrivacyHTTP(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	ada, bob := secBearer(t, "ada", "acme"), secBearer(t, "bob", "acme")
	admin := "Authorization: Bearer " + adminToken
	room, _ := s.mustBeat(map[string]any{"roomId": "r1", "sessionId": "b1"}, bob)
	_, adaTok := s.mustBeat(map[string]any{"roomId": "r1", "sessionId": "a1"}, ada)
	first := s.do("GET", "/v1/list?roomToken="+room, nil)
	etag := first.header.Get("ETag")

	// A wrong type is 400 and changes nothing.
	before := s.state()
	for _, body := range []map[string]any{
		{"roomId": "r1", "sessionId": "a1", "invisible": "yes"},
		{"roomId": "r1", "sessionId": "a1", "hideLastSeen": 1},
		{"roomId": "r1", "sessionId": "a2", "invisible": true, "hideLastSeen": "no"},
	} {
		if r := s.beat(body, ada); r.status != 400 || r.code() != "invalid_argument" {
			t.Fatalf("%v: %d %s", body, r.status, r.body)
		}
	}
	if after := s.state(); after != before {
		t.Fatalf("a refused heartbeat changed Redis:\n%s\nthen\n%s", before, after)
	}

	// Invisible: offline for the others, in lists, counts and presence.
	s.mustBeat(map[string]any{"roomId": "r1", "sessionId": "a1", "invisible": true}, ada)
	s.mustBeat(map[string]any{"roomId": "r1", "sessionId": "a2"}, ada) // a second tab, invisible too
	r := s.do("GET", "/v1/list?roomToken="+room, nil, "If-None-Match: "+etag)
	if r.status != 200 || r.header.Get("ETag") == etag {
		t.Fatalf("list after turning invisible: %d, ETag %s (was %s)", r.status, r.header.Get("ETag"), etag)
	}
	var l presence.RoomList
	json.Unmarshal(r.body, &l)
	if m := memberOf(l, "ada"); m.UserID != "ada" || m.Online || m.Sessions != 0 || m.LastDisconnected == 0 || m.Invisible {
		t.Fatalf("ada as bob sees her: %+v", m)
	}
	if m := memberOf(s.list(room), "bob"); !m.Online {
		t.Fatalf("bob: %+v", m)
	}
	var firstList presence.RoomList
	json.Unmarshal(first.body, &firstList)
	if l.Version != firstList.Version+1 {
		t.Fatalf("version %d after turning invisible, want %d", l.Version, firstList.Version+1)
	}
	if c := s.do("GET", "/v1/rooms/r1/count", nil, bob).json(t); c["online"] != 1.0 || c["sessions"] != 1.0 {
		t.Fatalf("count = %v", c)
	}
	if m := s.do("GET", "/v1/rooms/r1/members", nil, bob); memberOf(decodeList(t, m.body), "ada").Online {
		t.Fatalf("members as bob: %s", m.body)
	}
	if p := userPresence(t, s.url, "ada", bob); p["online"] != false || p["rooms"] != 0.0 {
		t.Fatalf("ada's presence to bob: %v", p)
	}
	if p := userPresence(t, s.url, "ada", ada); p["online"] != true || p["rooms"] != 1.0 {
		t.Fatalf("ada's own presence: %v", p)
	}
	rooms := s.do("GET", "/v1/users/ada/rooms", nil, ada).json(t)["rooms"].([]any)
	if own := rooms[0].(map[string]any); own["online"] != true || own["invisible"] != true {
		t.Fatalf("ada's own rooms: %v", rooms)
	}

	// includeInvisible: admins only.
	if r := s.do("GET", "/v1/rooms/r1/members?includeInvisible=true", nil, bob); r.status != 403 || r.code() != "permission_denied" {
		t.Fatalf("includeInvisible as bob: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/v1/list?includeInvisible=true&roomToken="+room, nil); r.status != 403 {
		t.Fatalf("includeInvisible on /v1/list: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/v1/rooms/r1/members?includeInvisible=true&onlineOnly=true&org=acme", nil, admin); r.status != 400 {
		t.Fatalf("includeInvisible with onlineOnly: %d %s", r.status, r.body)
	}
	r = s.do("GET", "/v1/rooms/r1/members?includeInvisible=true&org=acme", nil, admin)
	if m := memberOf(decodeList(t, r.body), "ada"); r.status != 200 || !m.Invisible || !m.Online || m.Sessions != 2 {
		t.Fatalf("includeInvisible as admin: %d %s", r.status, r.body)
	}
	if m := memberOf(decodeList(t, s.do("GET", "/v1/rooms/r1/members?org=acme", nil, admin).body), "ada"); m.Online || m.Invisible {
		t.Fatalf("admin without includeInvisible: %+v", m)
	}

	// Visible again: online, a new version and ETag.
	etag = s.do("GET", "/v1/list?roomToken="+room, nil).header.Get("ETag")
	s.mustBeat(map[string]any{"roomId": "r1", "sessionId": "a1", "invisible": false, "hideLastSeen": true}, ada)
	r = s.do("GET", "/v1/list?roomToken="+room, nil, "If-None-Match: "+etag)
	if m := memberOf(decodeList(t, r.body), "ada"); r.status != 200 || !m.Online || m.Sessions != 2 {
		t.Fatalf("visible again: %d %s", r.status, r.body)
	}

	// hideLastSeen: the others see 0, ada the time.
	s.do("POST", "/v1/disconnect", map[string]any{"sessionToken": adaTok})
	s.do("POST", "/v1/signout", nil, ada)
	if m := memberOf(s.list(room), "ada"); m.Online || m.LastDisconnected != 0 {
		t.Fatalf("hidden last seen: %+v", m)
	}
	if p := userPresence(t, s.url, "ada", bob); p["online"] != false || p["lastDisconnected"] != 0.0 {
		t.Fatalf("ada's presence to bob: %v", p)
	}
	if p := userPresence(t, s.url, "ada", ada); p["online"] != false || p["lastDisconnected"] == 0.0 {
		t.Fatalf("ada's own presence: %v", p)
	}
}

func decodeList(t *testing.T, b []byte) presence.RoomList {
	t.Helper()
	var l presence.RoomList
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("list %s: %v", b, err)
	}
	return l
}

// TestPrivacyWebSocket: a watcher on another node sees a leave when a member
// turns invisible (by joining again with invisible), nothing of its second
// session, and a join when it turns visible; watchUsers shows it offline
// meanwhile, and its own user presence stays online.
func TestPrivacyWebSocket(t *testing.T) {
	nodes := startNodes(t, redistest.Start(t), 2, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	w.join(1, map[string]any{"roomId": "r1", "sessionId": "w1", "userId": "wat"})
	watchUsers(t, w, 2, "ada")
	ada := dialWS(t, nodes[1].url)
	ada.join(1, map[string]any{"roomId": "r1", "sessionId": "t1", "userId": "ada"})
	w.waitView("r1", "ada", "wat")
	w.waitUser("ada", true)

	ada.join(2, map[string]any{"roomId": "r1", "sessionId": "t1", "userId": "ada", "invisible": true})
	w.waitView("r1", "wat")
	w.waitUser("ada", false)
	if p := userPresence(t, nodes[0].url, "ada"); p["online"] != true {
		// Auth is off: the caller names no user, so it is the admin, who sees the truth.
		t.Fatalf("ada's presence to the admin: %v", p)
	}
	// A second tab of the invisible member: nothing.
	tab := dialWS(t, nodes[1].url)
	tab.join(1, map[string]any{"roomId": "r1", "sessionId": "t2", "userId": "ada"})
	if j := tab.join(2, map[string]any{"roomId": "r1", "sessionId": "t2", "userId": "ada"}); memberOfMsg(j, "ada")["online"] != false {
		t.Fatalf("the invisible member's own snapshot shows it as the others do: %v", j)
	}
	// A wrong type: an error, nothing changed.
	ada.send(map[string]any{"type": "join", "id": 3, "roomId": "r1", "sessionId": "t1", "userId": "ada", "invisible": "no"})
	if e := ada.reply(3.0); e["type"] != "error" || e["code"] != "invalid_argument" {
		t.Fatalf("join with a wrong type: %v", e)
	}

	ada.join(4, map[string]any{"roomId": "r1", "sessionId": "t1", "userId": "ada", "invisible": false})
	w.waitView("r1", "ada", "wat")
	w.waitUser("ada", true)
	var kinds []string
	for _, e := range w.events("r1") {
		if e["member"].(map[string]any)["userId"] == "ada" {
			kinds = append(kinds, e["event"].(string))
		}
	}
	if got := kinds; len(got) != 3 || got[0] != "join" || got[1] != "leave" || got[2] != "join" {
		t.Fatalf("the watcher's events of ada: %v", got)
	}
	presencetest.Eventually(t, "ada with both sessions", 10*time.Second, func() bool {
		l := decodeList(t, (&stack{t: t, url: nodes[0].url}).do("GET", "/v1/rooms/r1/members", nil).body)
		return memberOf(l, "ada").Sessions == 2
	})
	checkNoRepeat(t, w, "ada")
}

// memberOfMsg returns a member of a joined/watching/sync frame.
func memberOfMsg(m map[string]any, user string) map[string]any {
	for _, x := range m["members"].([]any) {
		if mm := x.(map[string]any); mm["userId"] == user {
			return mm
		}
	}
	return nil
}
