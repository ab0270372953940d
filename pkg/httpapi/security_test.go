package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

// Security tests: what a caller of one org, a holder of one token, or a
// hostile id can and cannot reach (SECURITY.md). They complement TestAuth,
// TestBadInput and TestWebSocketAuth.

func secBearer(t testing.TB, sub, org string, extra ...any) string {
	c := map[string]any{"sub": sub}
	if org != "" {
		c["org_id"] = org
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return "Authorization: Bearer " + jwt(t, c)
}

const secAdmin = "Authorization: Bearer " + adminToken

// secOrgState is every key of one org's rooms and users, with contents.
func (s *stack) secOrgState(org string) string {
	s.t.Helper()
	var out []string
	for _, line := range strings.Split(s.state(), "\n") {
		if strings.Contains(line, "{"+org+"::") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// secMembers lists a room by id as the admin of an org.
func (s *stack) secMembers(org, room string) presence.RoomList {
	s.t.Helper()
	r := s.do("GET", "/v1/rooms/"+url.PathEscape(room)+"/members?org="+org, nil, secAdmin)
	if r.status != 200 {
		s.t.Fatalf("members of %s/%s: %d %s", org, room, r.status, r.body)
	}
	var l presence.RoomList
	json.Unmarshal(r.body, &l)
	return l
}

func secUsers(l presence.RoomList) string {
	var u []string
	for _, m := range l.Members {
		u = append(u, fmt.Sprintf("%s:%v:%s", m.UserID, m.Online, m.Data))
	}
	sort.Strings(u)
	return strings.Join(u, " ")
}

// secDecode splits a room or session token into its kind, fields and MAC
// (format in pkg/presence/token.go).
func secDecode(t *testing.T, tok string) (byte, []string, []byte) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 17 {
		t.Fatalf("token %q: %v", tok, err)
	}
	payload, mac := b[:len(b)-16], b[len(b)-16:]
	var fields []string
	for rest := payload[1:]; len(rest) > 0; {
		l, k := binary.Uvarint(rest)
		fields = append(fields, string(rest[k:k+int(l)]))
		rest = rest[k+int(l):]
	}
	return payload[0], fields, mac
}

func secEncode(kind byte, fields []string, mac []byte) string {
	b := []byte{kind}
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return base64.RawURLEncoding.EncodeToString(append(b, mac...))
}

// TestSecurityRoomTokenAcrossOrgs: a room token is a capability, not tied to
// a user or an org. A user of org B holding org A's token may watch org A's
// room over WebSocket (as anyone may list it with /v1/list); the token gives
// nothing else: not org A's room by id, no join, no writes.
func TestSecurityRoomTokenAcrossOrgs(t *testing.T) {
	srv := redistest.Start(t)
	n := startNodes(t, srv, 1, nodeOpts{auth: true})[0]
	s := &stack{t: t, url: n.url}

	ada := dialWS(t, n.url, secBearer(t, "ada", "acme"))
	tokA := ada.join(1, map[string]any{"roomId": "lobby", "sessionId": "a1", "data": map[string]any{"org": "acme"}})["roomToken"].(string)

	eveHdr := secBearer(t, "eve", "other")
	eve := dialWS(t, n.url, eveHdr)
	// A socket lives in its org: another org's room token cannot be
	// watched on it (it would mix two orgs' "lobby" on one socket).
	eve.send(map[string]any{"type": "watch", "id": 1, "roomToken": tokA})
	if w := eve.reply(float64(1)); w["type"] != "error" || w["code"] != "permission_denied" {
		t.Fatalf("watch with another org's token: %v", w)
	}
	s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "b1"}, secBearer(t, "bob", "acme"))
	time.Sleep(200 * time.Millisecond)
	if evs := eve.events("lobby"); len(evs) != 0 {
		t.Fatalf("org A's events reached org B's socket: %v", evs)
	}

	// Nothing else: eve's "lobby" is org B's room, by id, by join, by write.
	eve2 := dialWS(t, n.url, eveHdr)
	j := eve2.join(1, map[string]any{"roomId": "lobby", "sessionId": "e1"})
	if got := fmt.Sprint(j["members"]); strings.Contains(got, "ada") || !strings.Contains(got, "userId:eve") {
		t.Fatalf("eve joined %v", j)
	}
	if j["roomToken"] == tokA {
		t.Fatal("org B's lobby has org A's room token")
	}
	r := s.do("GET", "/v1/rooms/lobby/members", nil, eveHdr)
	if r.status != 200 || strings.Contains(string(r.body), "ada") || strings.Contains(string(r.body), "bob") {
		t.Fatalf("eve's members of lobby: %d %s", r.status, r.body)
	}
	// A user "ada" of org B is not org A's ada.
	adaB := secBearer(t, "ada", "other")
	if r := s.do("PUT", "/v1/rooms/lobby/members/ada/data", `{"org":"other"}`, adaB); r.status != 404 {
		t.Fatalf("ada of org B sets data in lobby: %d %s", r.status, r.body)
	}
	if r := s.do("PUT", "/v1/rooms/lobby/members/ada/data", `{"org":"other"}`, eveHdr); r.status != 403 {
		t.Fatalf("eve sets ada's data: %d %s", r.status, r.body)
	}
	// The token is not a session token, and lists org A's room only.
	if r := s.do("POST", "/v1/disconnect", tokA, eveHdr); r.status != 400 {
		t.Fatalf("disconnect with a room token: %d", r.status)
	}
	l := s.list(tokA)
	if secUsers(l) != `ada:true:{"org":"acme"} bob:true:` {
		t.Fatalf("org A's lobby after org B's attempts: %s", secUsers(l))
	}
	time.Sleep(200 * time.Millisecond)
	for _, m := range eve.messages() {
		if strings.Contains(fmt.Sprint(m), "userId:eve") {
			t.Fatalf("org B's own room leaked into the watch of org A's: %v", m)
		}
	}
}

// TestSecuritySessionTokenBoundToRoom: a session token names its org, room,
// session and epoch under one MAC. Moving any field to another room's value
// (or splicing two tokens) is a forgery: 400, and no session ends.
func TestSecuritySessionTokenBoundToRoom(t *testing.T) {
	s := newStack(t, stackOpts{})
	roomX, sessX := s.mustBeat(map[string]any{"roomId": "x", "sessionId": "tab", "userId": "u1"})
	roomY, sessY := s.mustBeat(map[string]any{"roomId": "y", "sessionId": "tab", "userId": "u1"})
	kind, fx, macX := secDecode(t, sessX)
	_, fy, macY := secDecode(t, sessY)
	if kind != 's' || len(fx) != 4 || fx[1] != "x" || fy[1] != "y" {
		t.Fatalf("session tokens: %c %q %q", kind, fx, fy)
	}
	with := func(f []string, i int, v string) []string {
		g := slices.Clone(f)
		g[i] = v
		return g
	}
	forged := map[string]string{
		"room of X swapped to Y":        secEncode('s', with(fx, 1, "y"), macX),
		"room and epoch of Y, MAC of X": secEncode('s', with(with(fx, 1, "y"), 3, fy[3]), macX),
		"payload of Y, MAC of X":        secEncode('s', fy, macX),
		"payload of X, MAC of Y":        secEncode('s', fx, macY),
		"org swapped":                   secEncode('s', with(fy, 0, "acme"), macY),
		"epoch of X on Y":               secEncode('s', with(fy, 3, fx[3]), macY),
		"session id changed":            secEncode('s', with(fy, 2, "other"), macY),
		"kind changed to room":          secEncode('r', []string{fy[0], fy[1], fy[3]}, macY),
	}
	before := s.state()
	for name, tok := range forged {
		for _, body := range []any{tok, map[string]string{"sessionToken": tok}} {
			if r := s.do("POST", "/v1/disconnect", body); r.status != 400 || r.code() != "invalid_argument" {
				t.Fatalf("%s: disconnect = %d %s", name, r.status, r.body)
			}
		}
	}
	// Room tokens forged the same way do not list.
	_, rx, rmacX := secDecode(t, roomX)
	if r := s.do("GET", "/v1/list?roomToken="+secEncode('r', with(rx, 1, "y"), rmacX), nil); r.status != 400 {
		t.Fatalf("forged room token: %d %s", r.status, r.body)
	}
	if after := s.state(); after != before {
		t.Fatalf("forged tokens changed state:\n%s\n%s", before, after)
	}
	// The true token of X ends X only.
	if r := s.do("POST", "/v1/disconnect", sessX); r.status != 204 {
		t.Fatalf("disconnect X: %d", r.status)
	}
	if got := secUsers(s.list(roomX)); got != "u1:false:" {
		t.Fatalf("room x: %s", got)
	}
	if got := secUsers(s.list(roomY)); got != "u1:true:" {
		t.Fatalf("room y after X's disconnect: %s", got)
	}
}

// TestSecurityTokensOfAnotherSecret: tokens signed by a node with another
// token secret (another deployment, or a node whose PRESENCE_TOKEN_SECRET
// differs) are 400 everywhere, even for a room and session with the same
// names.
func TestSecurityTokensOfAnotherSecret(t *testing.T) {
	srv := redistest.Start(t)
	a := newStack(t, stackOpts{redis: srv})
	b := newStack(t, stackOpts{redis: srv}) // another prefix: another generated secret
	body := map[string]any{"roomId": "lobby", "sessionId": "tab", "userId": "u1"}
	roomA, sessA := a.mustBeat(body)
	roomB, _ := b.mustBeat(body)
	if roomA == roomB {
		t.Fatal("two secrets gave the same room token")
	}
	before := b.state()
	if r := b.do("GET", "/v1/list?roomToken="+roomA, nil); r.status != 400 || r.code() != "invalid_argument" {
		t.Fatalf("list with another secret's token: %d %s", r.status, r.body)
	}
	if r := b.do("POST", "/v1/disconnect", sessA); r.status != 400 || r.code() != "invalid_argument" {
		t.Fatalf("disconnect with another secret's token: %d %s", r.status, r.body)
	}
	if b.state() != before || secUsers(b.list(roomB)) != "u1:true:" {
		t.Fatal("another secret's token changed something")
	}

	// Over WebSocket too.
	na := startNodes(t, srv, 1, nodeOpts{})[0]
	nb := startNodes(t, srv, 1, nodeOpts{})[0]
	tok := httpBeat(t, na.url, body)["roomToken"]
	c := dialWS(t, nb.url)
	c.send(map[string]any{"type": "watch", "id": 1, "roomToken": tok})
	if r := c.reply(float64(1)); r["type"] != "error" || r["code"] != "invalid_argument" {
		t.Fatalf("watch with another secret's token: %v", r)
	}
}

// TestSecurityOrgIsolationHTTP: every /v1/rooms/... and /v1/users/...
// endpoint, called by users of org B (one of them with the same user id as
// a user of org A), and by the admin choosing org B, neither returns nor
// changes org A's data.
func TestSecurityOrgIsolationHTTP(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	adaA := secBearer(t, "ada", "acme", "name", "Ada of A")
	s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "a1", "data": map[string]any{"secret": "A-SECRET"}}, adaA)
	s.mustBeat(map[string]any{"roomId": "a-only", "sessionId": "a2", "data": map[string]any{"secret": "A-SECRET"}}, adaA)
	s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "b1"}, secBearer(t, "bob", "acme"))
	eve := secBearer(t, "eve", "other")
	s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "e1"}, eve)
	adaB := secBearer(t, "ada", "other") // same user id, other org
	acme := s.secOrgState("acme")
	if acme == "" {
		t.Fatal("no keys of org acme")
	}

	type call struct {
		who, method, path, body string
		status                  int
		want                    string // in the answer
	}
	const none = `"version":0,"members":[]`
	for _, c := range []call{
		{eve, "GET", "/v1/rooms/lobby/members", "", 200, `"members":[{"userId":"eve"`},
		{eve, "GET", "/v1/rooms/a-only/members", "", 200, none},
		{eve, "GET", "/v1/rooms/lobby/count", "", 200, `"online":1,"sessions":1`},
		{eve, "GET", "/v1/rooms/a-only/count", "", 200, `"online":0,"sessions":0`},
		{eve, "PUT", "/v1/rooms/lobby/members/ada/data", `{"x":1}`, 403, ""},
		{eve, "DELETE", "/v1/rooms/lobby/members/ada", "", 403, ""},
		{eve, "DELETE", "/v1/rooms/lobby", "", 403, ""},
		{eve, "DELETE", "/v1/rooms/a-only", "", 403, ""},
		{eve, "GET", "/v1/users/ada/rooms", "", 403, ""},
		{eve, "GET", "/v1/users/eve/rooms", "", 200, `"rooms":[{"roomId":"lobby"`},
		{adaB, "GET", "/v1/rooms/a-only/members", "", 200, none},
		{adaB, "GET", "/v1/rooms/a-only/count", "", 200, `"online":0`},
		{adaB, "PUT", "/v1/rooms/lobby/members/ada/data", `{"x":1}`, 404, ""},
		{adaB, "PUT", "/v1/rooms/a-only/members/ada/data", `null`, 404, ""},
		{adaB, "DELETE", "/v1/rooms/lobby/members/ada", "", 204, ""},
		{adaB, "DELETE", "/v1/rooms/a-only/members/ada", "", 204, ""},
		{adaB, "GET", "/v1/users/ada/rooms", "", 200, `"rooms":[]`},
		{adaB, "POST", "/v1/signout", "", 200, `{"rooms":0}`},
		{adaB, "POST", "/v1/signout?forget=true", "", 200, `{"rooms":0}`},
		{secAdmin, "GET", "/v1/rooms/a-only/members?org=other", "", 200, none},
		{secAdmin, "GET", "/v1/rooms/a-only/count?org=other", "", 200, `"online":0`},
		{secAdmin, "GET", "/v1/users/ada/rooms?org=other", "", 200, `"rooms":[]`},
		{secAdmin, "PUT", "/v1/rooms/a-only/members/ada/data?org=other", `{"x":1}`, 404, ""},
		{secAdmin, "DELETE", "/v1/rooms/a-only/members/ada?org=other", "", 204, ""},
		{secAdmin, "DELETE", "/v1/rooms/a-only?org=other", "", 204, ""},
		{secAdmin, "POST", "/v1/signout?org=other&userId=ada&forget=true", "", 200, `{"rooms":0}`},
	} {
		r := s.do(c.method, c.path, c.body, c.who)
		if r.status != c.status || !strings.Contains(string(r.body), c.want) {
			t.Fatalf("%s %s as %.40s...: %d %s, want %d with %s", c.method, c.path, c.who, r.status, r.body, c.status, c.want)
		}
		for _, leak := range []string{"A-SECRET", "bob", "Ada of A", "acme"} {
			if strings.Contains(string(r.body), leak) {
				t.Fatalf("%s %s as org B shows org A's data: %s", c.method, c.path, r.body)
			}
		}
	}
	if got := s.secOrgState("acme"); got != acme {
		t.Fatalf("org B changed org A's keys:\nbefore:\n%s\nafter:\n%s", acme, got)
	}
	if got := secUsers(s.secMembers("acme", "lobby")); got != `ada:true:{"secret":"A-SECRET"} bob:true:` {
		t.Fatalf("org A's lobby: %s", got)
	}
	if got := secUsers(s.secMembers("acme", "a-only")); got != `ada:true:{"secret":"A-SECRET"}` {
		t.Fatalf("org A's a-only: %s", got)
	}
}

// TestSecurityWebSocketEventsStayInOrg: two orgs, the same room id, the
// same user id, activity in both through two nodes: each socket sees only
// its own org's events and snapshots.
func TestSecurityWebSocketEventsStayInOrg(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{auth: true})
	wa := dialWS(t, nodes[0].url, secBearer(t, "watcher", "acme"))
	wa.join(1, map[string]any{"roomId": "lobby", "sessionId": "w", "data": map[string]any{"org": "acme"}})
	wb := dialWS(t, nodes[1].url, secBearer(t, "watcher", "other"))
	wb.join(1, map[string]any{"roomId": "lobby", "sessionId": "w", "data": map[string]any{"org": "other"}})

	samA := dialWS(t, nodes[1].url, secBearer(t, "sam", "acme"))
	samA.join(1, map[string]any{"roomId": "lobby", "sessionId": "s", "data": map[string]any{"org": "acme"}})
	sb := &stack{t: t, url: nodes[0].url}
	sb.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "s", "data": map[string]any{"org": "other"}}, secBearer(t, "sam", "other"))
	samA.send(map[string]any{"type": "update", "id": 2, "roomId": "lobby", "data": map[string]any{"org": "acme", "n": 2}})
	samA.reply(float64(2))
	sb.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "o", "data": map[string]any{"org": "other"}}, secBearer(t, "olga", "other"))
	samA.send(map[string]any{"type": "leave", "id": 3, "roomId": "lobby"})
	samA.reply(float64(3))

	wa.waitFor("leave of sam", func(m map[string]any) bool { return m["event"] == "leave" })
	wb.waitView("lobby", "watcher", "sam", "olga")
	time.Sleep(300 * time.Millisecond)
	if got, want := eventKinds(wa.events("lobby")), "join:sam@2 update:sam@3 leave:sam@4"; got != want {
		t.Fatalf("acme's events: %s, want %s", got, want)
	}
	if got, want := eventKinds(wb.events("lobby")), "join:sam@2 join:olga@3"; got != want {
		t.Fatalf("other's events: %s, want %s", got, want)
	}
	for org, c := range map[string]*wsClient{"acme": wa, "other": wb} {
		for _, m := range c.messages() {
			b, _ := json.Marshal(m)
			if strings.Contains(string(b), `"org":"`) && !strings.Contains(string(b), `"org":"`+org+`"`) {
				t.Fatalf("%s's socket got another org's data: %s", org, b)
			}
		}
	}
}

// TestSecurityRoomsClaim: a JWT whose rooms claim is ["doc-*"] cannot watch
// lobby by its token, join it, or read or change it by id; "*" does not
// cross "/".
func TestSecurityRoomsClaim(t *testing.T) {
	srv := redistest.Start(t)
	n := startNodes(t, srv, 1, nodeOpts{auth: true})[0]
	s := &stack{t: t, url: n.url}
	lobbyTok, _ := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "a1"}, secBearer(t, "ada", "acme"))
	docTok, _ := s.mustBeat(map[string]any{"roomId": "doc-1", "sessionId": "a2"}, secBearer(t, "ada", "acme"))
	dora := secBearer(t, "dora", "acme", "rooms", []string{"doc-*"})

	c := dialWS(t, n.url, dora)
	c.send(map[string]any{"type": "watch", "id": 1, "roomToken": lobbyTok})
	c.send(map[string]any{"type": "join", "id": 2, "roomId": "lobby", "sessionId": "d1"})
	c.send(map[string]any{"type": "join", "id": 3, "roomId": "doc-x/lobby", "sessionId": "d1"})
	c.send(map[string]any{"type": "update", "id": 4, "roomId": "lobby", "data": 1})
	for _, id := range []float64{1, 2, 3, 4} {
		if r := c.reply(id); r["type"] != "error" || r["code"] != "permission_denied" {
			t.Fatalf("message %v: %v", id, r)
		}
	}
	c.send(map[string]any{"type": "watch", "id": 5, "roomToken": docTok})
	if r := c.reply(float64(5)); r["type"] != "watching" {
		t.Fatalf("watch doc-1: %v", r)
	}
	c.join(6, map[string]any{"roomId": "doc-2", "sessionId": "d2"})
	for _, call := range [][3]string{
		{"GET", "/v1/rooms/lobby/members", ""},
		{"GET", "/v1/rooms/lobby/count", ""},
		{"PUT", "/v1/rooms/lobby/members/dora/data", `{"x":1}`},
		{"DELETE", "/v1/rooms/lobby/members/dora", ""},
		{"GET", "/v1/rooms/doc-x%2Flobby/count", ""},
		{"POST", "/v1/heartbeat", `{"roomId":"doc-x/y","sessionId":"d3"}`},
	} {
		if r := s.do(call[0], call[1], call[2], dora); r.status != 403 || r.code() != "permission_denied" {
			t.Fatalf("%s %s: %d %s", call[0], call[1], r.status, r.body)
		}
	}
	if got := fmt.Sprint(secOnline(s, "lobby")); got != "[ada]" {
		t.Fatalf("lobby: %s", got)
	}
	// Documented: /v1/list takes no JWT, so the claim does not apply there;
	// the room token alone decides.
	if r := s.do("GET", "/v1/list?roomToken="+lobbyTok, nil, dora); r.status != 200 {
		t.Fatalf("list by token: %d", r.status)
	}
}

// secOnline lists the online users of org acme's room, as the admin.
func secOnline(s *stack, room string) []string {
	var out []string
	for _, m := range s.secMembers("acme", room).Members {
		if m.Online {
			out = append(out, m.UserID)
		}
	}
	return out
}

// TestSecurityOversizedAuthorization: a 100 KB Authorization header is a
// 4xx, never a 5xx: 401 from the API ("too large", not parsed), 431 from a
// server with presenced's 32 KiB header limit.
func TestSecurityOversizedAuthorization(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	room, _ := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "a1"}, secBearer(t, "ada", "acme"))
	huge := "Authorization: Bearer " + strings.Repeat("a", 50<<10) + "." + strings.Repeat("b", 50<<10) + ".c"
	before := s.state()
	for _, c := range [][3]string{
		{"POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"x"}`},
		{"POST", "/v1/signout", ""},
		{"GET", "/v1/rooms/lobby/members", ""},
		{"DELETE", "/v1/rooms/lobby", ""},
		{"GET", "/v1/users/ada/rooms", ""},
	} {
		r := s.do(c[0], c[1], c[2], huge)
		if r.status < 400 || r.status >= 500 {
			t.Fatalf("%s %s with a 100 KB header: %d %s", c[0], c[1], r.status, r.body)
		}
	}
	// /v1/list reads no header: the token decides.
	if r := s.do("GET", "/v1/list?roomToken="+room, nil, huge); r.status != 200 {
		t.Fatalf("list with a 100 KB header: %d", r.status)
	}
	if s.state() != before {
		t.Fatal("a 100 KB header changed state")
	}

	// Behind presenced's header limit (MaxHeaderBytes 32 KiB): 431.
	n := startNodes(t, redistest.Start(t), 1, nodeOpts{auth: true})[0]
	if r := (&stack{t: t, url: n.url}).do("GET", "/v1/ws", nil, huge); r.status != 401 {
		t.Fatalf("WebSocket upgrade with a 100 KB header: %d %s", r.status, r.body)
	}
	hs := httptest.NewUnstartedServer(n.api)
	hs.Config.MaxHeaderBytes = 32 << 10
	hs.Start()
	t.Cleanup(hs.Close)
	for _, path := range []string{"/v1/rooms/lobby/members", "/v1/ws", "/v1/list?roomToken=" + room} {
		r := (&stack{t: t, url: hs.URL}).do("GET", path, nil, huge)
		if r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%s behind a 32 KiB header limit: %d", path, r.status)
		}
	}
}

// TestSecurityAccessTokenOnlyOnWebSocket: ?access_token= authenticates a
// WebSocket upgrade only (browsers cannot set its headers); on any other
// path it is ignored, so a JWT, or the admin token, in a URL (logged by
// proxies) gets 401.
func TestSecurityAccessTokenOnlyOnWebSocket(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	ada := secBearer(t, "ada", "acme")
	s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "a1"}, ada)
	tok := url.QueryEscape(strings.TrimPrefix(ada, "Authorization: Bearer "))
	before := s.state()
	for _, c := range [][3]string{
		{"POST", "/v1/heartbeat?access_token=" + tok, `{"roomId":"lobby","sessionId":"a2"}`},
		{"POST", "/v1/signout?access_token=" + tok, ""},
		{"GET", "/v1/rooms/lobby/members?access_token=" + tok, ""},
		{"GET", "/v1/rooms/lobby/count?access_token=" + tok, ""},
		{"PUT", "/v1/rooms/lobby/members/ada/data?access_token=" + tok, `{"x":1}`},
		{"DELETE", "/v1/rooms/lobby/members/ada?access_token=" + tok, ""},
		{"GET", "/v1/users/ada/rooms?access_token=" + tok, ""},
		{"DELETE", "/v1/rooms/lobby?org=acme&access_token=" + url.QueryEscape(adminToken), ""},
		{"GET", "/v1/users/ada/rooms?org=acme&access_token=" + url.QueryEscape(adminToken), ""},
	} {
		if r := s.do(c[0], c[1], c[2]); r.status != 401 || r.code() != "unauthenticated" {
			t.Fatalf("%s %s: %d %s", c[0], c[1], r.status, r.body)
		}
	}
	if s.state() != before {
		t.Fatal("a request with ?access_token= changed state")
	}
}

// TestSecurityAdminMalformedOrg: the admin token with an invalid ?org= is
// 400 on every endpoint that takes it, and changes nothing.
func TestSecurityAdminMalformedOrg(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "a1", "userId": "ada"}, secAdmin)
	before := s.state()
	orgs := []string{"a b", "a:b", "a::b", "{x}", "x}", "a/b", "a\x00", "a\nb", "é", "a%", strings.Repeat("o", 129)}
	calls := [][3]string{
		{"POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"a2","userId":"ada"}`},
		{"POST", "/v1/signout?userId=ada&forget=true", ""},
		{"GET", "/v1/rooms/lobby/members", ""},
		{"GET", "/v1/rooms/lobby/count", ""},
		{"PUT", "/v1/rooms/lobby/members/ada/data", `{"x":1}`},
		{"DELETE", "/v1/rooms/lobby/members/ada", ""},
		{"DELETE", "/v1/rooms/lobby", ""},
		{"GET", "/v1/users/ada/rooms", ""},
	}
	for _, org := range orgs {
		for _, c := range calls {
			sep := "?"
			if strings.Contains(c[1], "?") {
				sep = "&"
			}
			path := c[1] + sep + "org=" + url.QueryEscape(org)
			if r := s.do(c[0], path, c[2], secAdmin); r.status != 400 || r.code() != "invalid_argument" {
				t.Fatalf("%s %s: %d %s", c[0], path, r.status, r.body)
			}
		}
	}
	if s.state() != before {
		t.Fatal("an admin call with a malformed org changed state")
	}
	// The same calls with a valid org work (the org was the only fault).
	if r := s.do("GET", "/v1/rooms/lobby/count?org=default", nil, secAdmin); r.status != 200 || r.json(t)["online"] != float64(1) {
		t.Fatalf("count with org=default: %d %s", r.status, r.body)
	}
}

// TestSecurityKeyLayoutIDs: ids that could break the Redis key layout
// "<p>:{<org>::<roomId>}:...". Braces, control characters and over-long ids
// are 400 on every endpoint and change nothing; "::" and ":" are allowed and
// stay isolated (orgs cannot contain ':', so the first "::" splits the tag).
func TestSecurityKeyLayoutIDs(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	s.mustBeat(map[string]any{"roomId": "b", "sessionId": "s", "userId": "u"}, secAdmin)

	refused := []string{"a}b", "{x", "x}:room", "a\nb", "a\x00b", "\x7f", strings.Repeat("r", 10<<10), strings.Repeat("r", 257)}
	before := s.state()
	for _, room := range refused {
		p := "/v1/rooms/" + url.PathEscape(room)
		for _, c := range [][3]string{
			{"GET", p + "/members", ""},
			{"GET", p + "/count", ""},
			{"PUT", p + "/members/u/data", `{"x":1}`},
			{"DELETE", p + "/members/u", ""},
			{"DELETE", p, ""},
		} {
			if r := s.do(c[0], c[1], c[2], secAdmin); r.status != 400 || r.code() != "invalid_argument" {
				t.Fatalf("%s %.80s: %d %s", c[0], c[1], r.status, r.body)
			}
		}
		body := map[string]any{"roomId": room, "sessionId": "s", "userId": "u"}
		if r := s.beat(body, secBearer(t, "u", "a")); r.status != 400 {
			t.Fatalf("heartbeat in %q: %d", room, r.status)
		}
	}
	if s.state() != before {
		t.Fatal("a refused id changed state")
	}

	// Allowed look-alikes: each (org, room) is its own room.
	pairs := [][2]string{
		{"default", "b"}, {"a", "b"}, {"default", "a::b"}, {"a", "::b"}, {"a", "b::"}, {"a", ":b"}, {"default", "a"},
		{"default", "lobby"}, {"default", "lobby:events"}, {"default", "lobby:room"}, {"a.b", "c"}, {"a", "b.c"},
	}
	beat := func(org, room, user string) string {
		r := s.do("POST", "/v1/heartbeat?org="+org, map[string]any{"roomId": room, "sessionId": "s", "userId": user}, secAdmin)
		if r.status != 200 {
			t.Fatalf("heartbeat %s/%s: %d %s", org, room, r.status, r.body)
		}
		return r.json(t)["roomToken"].(string)
	}
	tokens := map[string]bool{}
	for i, p := range pairs[1:] {
		tok := beat(p[0], p[1], fmt.Sprint("user", i+1))
		if tokens[tok] {
			t.Fatalf("%v shares a room token", p)
		}
		tokens[tok] = true
		if got := secUsers(s.list(tok)); got != fmt.Sprintf("user%d:true:", i+1) {
			t.Fatalf("list of %v: %s", p, got)
		}
	}
	check := func(skip int) {
		t.Helper()
		for i, p := range pairs {
			want := fmt.Sprintf("user%d:true:", i)
			if i == 0 {
				want = "u:true:"
			}
			if i == skip {
				want = ""
			}
			if got := secUsers(s.secMembers(p[0], p[1])); got != want {
				t.Fatalf("members of %v: %q, want %q", p, got, want)
			}
		}
	}
	check(-1)
	for _, key := range []string{"{a::b}:room", "{default::a::b}:room", "{a::::b}:room", "{a::b::}:room", "{default::lobby:events}:room"} {
		if n, _ := s.rdb.Exists(context.Background(), s.prefix+":"+key).Result(); n != 1 {
			t.Fatalf("key %s missing", key)
		}
	}
	// Removing org a's room b touches none of the look-alikes.
	if r := s.do("DELETE", "/v1/rooms/b?org=a", nil, secAdmin); r.status != 204 {
		t.Fatalf("remove a/b: %d", r.status)
	}
	check(1)

	// User ids may hold braces and "::": their room indexes stay apart.
	users := [][3]string{{"default", "x", "r-x"}, {"default", "x}:rooms", "r-brace"}, {"default", "a::x", "r-colons"}, {"a", "x", "r-a"}, {"default", "{x", "r-open"}}
	for _, u := range users {
		s.do("POST", "/v1/heartbeat?org="+u[0], map[string]any{"roomId": u[2], "sessionId": "s", "userId": u[1]}, secAdmin)
	}
	for _, u := range users {
		r := s.do("GET", "/v1/users/"+url.PathEscape(u[1])+"/rooms?org="+u[0], nil, secAdmin)
		var got struct {
			UserID string
			Rooms  []presence.UserRoom
		}
		json.Unmarshal(r.body, &got)
		if r.status != 200 || got.UserID != u[1] || len(got.Rooms) != 1 || got.Rooms[0].RoomID != u[2] {
			t.Fatalf("rooms of %s/%q: %d %s", u[0], u[1], r.status, r.body)
		}
	}
}
