package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/auth/authtest"
	"github.com/presencecluster/presence/pkg/redistest"
)

func authHS256(t testing.TB, claims map[string]any) string {
	return authtest.HS256(t, hsSecret, claims)
}

func TestBadInput(t *testing.T) {
	s := newStack(t, stackOpts{})
	room, sess := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "s1", "userId": "u1"})
	long := strings.Repeat("x", 257)
	big := `"` + strings.Repeat("d", 4100) + `"`
	huge := `{"roomId":"lobby","sessionId":"s1","userId":"u1","name":"` + strings.Repeat("n", 70<<10) + `"}`
	hb := func(fields string) string { return `{"roomId":"lobby","sessionId":"s1","userId":"u1"` + fields + `}` }
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"not json", "POST", "/v1/heartbeat", `{nope`, 400, "invalid_argument"},
		{"array body", "POST", "/v1/heartbeat", `[1]`, 400, "invalid_argument"},
		{"empty body", "POST", "/v1/heartbeat", ``, 400, "invalid_argument"},
		{"roomId number", "POST", "/v1/heartbeat", `{"roomId":1,"sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"roomId missing", "POST", "/v1/heartbeat", `{"sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"sessionId missing", "POST", "/v1/heartbeat", `{"roomId":"lobby","userId":"u1"}`, 400, "invalid_argument"},
		{"userId missing", "POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"s1"}`, 400, "invalid_argument"},
		{"roomId too long", "POST", "/v1/heartbeat", `{"roomId":"` + long + `","sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"roomId newline", "POST", "/v1/heartbeat", `{"roomId":"a\nb","sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"roomId NUL", "POST", "/v1/heartbeat", `{"roomId":"a\u0000b","sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"roomId open brace", "POST", "/v1/heartbeat", `{"roomId":"a{b","sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"roomId close brace", "POST", "/v1/heartbeat", `{"roomId":"a}b","sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"roomId 10KB", "POST", "/v1/heartbeat", `{"roomId":"` + strings.Repeat("r", 10000) + `","sessionId":"s1","userId":"u1"}`, 400, "invalid_argument"},
		{"sessionId control", "POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"s\t1","userId":"u1"}`, 400, "invalid_argument"},
		{"sessionId too long", "POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"` + long + `","userId":"u1"}`, 400, "invalid_argument"},
		{"userId too long", "POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"s1","userId":"` + long + `"}`, 400, "invalid_argument"},
		{"userId control", "POST", "/v1/heartbeat", `{"roomId":"lobby","sessionId":"s1","userId":"u\u001b"}`, 400, "invalid_argument"},
		{"interval low", "POST", "/v1/heartbeat", hb(`,"interval":999`), 400, "invalid_argument"},
		{"interval high", "POST", "/v1/heartbeat", hb(`,"interval":600001`), 400, "invalid_argument"},
		{"interval zero", "POST", "/v1/heartbeat", hb(`,"interval":0`), 400, "invalid_argument"},
		{"interval negative", "POST", "/v1/heartbeat", hb(`,"interval":-5`), 400, "invalid_argument"},
		{"interval string", "POST", "/v1/heartbeat", hb(`,"interval":"10000"`), 400, "invalid_argument"},
		{"interval fraction", "POST", "/v1/heartbeat", hb(`,"interval":1500.5`), 400, "invalid_argument"},
		{"interval huge", "POST", "/v1/heartbeat", hb(`,"interval":1e300`), 400, "invalid_argument"},
		{"data over limit", "POST", "/v1/heartbeat", hb(`,"data":` + big), 413, "payload_too_large"},
		{"name control", "POST", "/v1/heartbeat", hb(`,"name":"a\u0007"`), 400, "invalid_argument"},
		{"name wrong type", "POST", "/v1/heartbeat", hb(`,"name":{}`), 400, "invalid_argument"},
		{"body over 64KiB", "POST", "/v1/heartbeat", huge, 413, "payload_too_large"},
		{"list no token", "GET", "/v1/list", ``, 400, "invalid_argument"},
		{"list forged token", "GET", "/v1/list?roomToken=" + room[:len(room)-3] + "abc", ``, 400, "invalid_argument"},
		{"list session token", "GET", "/v1/list?roomToken=" + sess, ``, 400, "invalid_argument"},
		{"list limit zero", "GET", "/v1/list?roomToken=" + room + "&limit=0", ``, 400, "invalid_argument"},
		{"list limit text", "GET", "/v1/list?roomToken=" + room + "&limit=ten", ``, 400, "invalid_argument"},
		{"list limit high", "GET", "/v1/list?roomToken=" + room + "&limit=1001", ``, 400, "invalid_argument"},
		{"disconnect forged json", "POST", "/v1/disconnect", `{"sessionToken":"` + sess + `x"}`, 400, "invalid_argument"},
		{"disconnect forged text", "POST", "/v1/disconnect", "garbage", 400, "invalid_argument"},
		{"disconnect room token", "POST", "/v1/disconnect", room, 400, "invalid_argument"},
		{"disconnect empty", "POST", "/v1/disconnect", ``, 400, "invalid_argument"},
		{"disconnect wrong type", "POST", "/v1/disconnect", `{"sessionToken":5}`, 400, "invalid_argument"},
		{"signout no user", "POST", "/v1/signout", ``, 400, "invalid_argument"},
		{"signout bad forget", "POST", "/v1/signout?userId=u1&forget=maybe", ``, 400, "invalid_argument"},
		{"members bad limit", "GET", "/v1/rooms/lobby/members?limit=-3", ``, 400, "invalid_argument"},
		{"members bad onlineOnly", "GET", "/v1/rooms/lobby/members?onlineOnly=2x", ``, 400, "invalid_argument"},
		{"members brace room", "GET", "/v1/rooms/a%7Bb/members", ``, 400, "invalid_argument"},
		{"count newline room", "GET", "/v1/rooms/a%0Ab/count", ``, 400, "invalid_argument"},
		{"data empty", "PUT", "/v1/rooms/lobby/members/u1/data", ``, 400, "invalid_argument"},
		{"data not json", "PUT", "/v1/rooms/lobby/members/u1/data", `{x`, 400, "invalid_argument"},
		{"data over limit", "PUT", "/v1/rooms/lobby/members/u1/data", big, 413, "payload_too_large"},
		{"data of non-member", "PUT", "/v1/rooms/lobby/members/nobody/data", `1`, 404, "not_found"},
		{"user rooms bad limit", "GET", "/v1/users/u1/rooms?limit=x", ``, 400, "invalid_argument"},
		{"admin bad org", "DELETE", "/v1/rooms/lobby?org=a%20b", ``, 204, ""},
		{"unknown path", "GET", "/v1/nothing", ``, 404, "not_found"},
		{"unknown root", "GET", "/nothing/at/all", ``, 404, "not_found"},
		{"wrong method", "GET", "/v1/heartbeat", ``, 405, "invalid_argument"},
	}
	for _, tc := range cases {
		if tc.status == 204 {
			continue // covered with auth on (the org only matters with an admin token)
		}
		t.Run(tc.name, func(t *testing.T) {
			before := s.state()
			r := s.do(tc.method, tc.path, tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%s %s = %d %s, want %d %s", tc.method, tc.path, r.status, r.body, tc.status, tc.code)
			}
			if after := s.state(); after != before {
				t.Fatalf("state changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	if l := s.list(room); len(l.Members) != 1 || !l.Members[0].Online {
		t.Fatalf("after bad input: %+v", l)
	}
}

func TestHTTPFlow(t *testing.T) {
	s := newStack(t, stackOpts{})
	room, s1 := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "s1", "userId": "ada", "name": "Ada", "image": "https://img/ada.png", "data": map[string]any{"cursor": 3}})
	r := s.do("GET", "/v1/list?roomToken="+room, nil)
	etag := r.header.Get("ETag")
	if r.status != 200 || etag == "" {
		t.Fatalf("list: %d %v", r.status, r.header)
	}
	want := `{"roomId":"lobby","version":1,"members":[{"userId":"ada","online":true,"lastDisconnected":0,"sessions":1,"data":{"cursor":3},"name":"Ada","image":"https://img/ada.png"}]}`
	if string(r.body) != want {
		t.Fatalf("list body\n got %s\nwant %s", r.body, want)
	}
	if r := s.do("GET", "/v1/list?roomToken="+room, nil, "If-None-Match: "+etag); r.status != 304 {
		t.Fatalf("If-None-Match: %d", r.status)
	}
	// A second tab changes no version but does change the list (sessions: 2).
	_, s2 := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "s2", "userId": "ada"})
	r = s.do("GET", "/v1/list?roomToken="+room, nil, "If-None-Match: "+etag)
	if r.status != 200 || r.header.Get("ETag") == etag {
		t.Fatalf("second tab: %d %s", r.status, r.body)
	}
	// navigator.sendBeacon: the bare token as text/plain.
	req, _ := http.NewRequest("POST", s.url+"/v1/disconnect", strings.NewReader(s1))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 204 {
		t.Fatalf("beacon disconnect: %v %v", res.StatusCode, err)
	}
	if r := s.do("POST", "/v1/disconnect", map[string]string{"sessionToken": s2}); r.status != 204 {
		t.Fatalf("json disconnect: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/v1/disconnect", map[string]string{"sessionToken": s2}); r.status != 204 {
		t.Fatalf("repeated disconnect: %d", r.status)
	}
	if m := s.list(room).Members[0]; m.Online || m.LastDisconnected == 0 {
		t.Fatalf("after disconnect: %+v", m)
	}

	// Room ids with "/" and "%" travel percent-encoded.
	for _, id := range []string{"a/b", "100%", "sp ace", "ünï/cödé"} {
		s.mustBeat(map[string]any{"roomId": id, "sessionId": "x-" + id, "userId": "bob"})
		r := s.do("GET", "/v1/rooms/"+url.PathEscape(id)+"/count", nil)
		if r.status != 200 || r.json(t)["online"] != float64(1) || r.json(t)["roomId"] != id {
			t.Fatalf("count of %q: %d %s", id, r.status, r.body)
		}
	}
	r = s.do("GET", "/v1/users/bob/rooms", nil)
	if rooms := r.json(t)["rooms"].([]any); len(rooms) != 4 {
		t.Fatalf("bob's rooms: %s", r.body)
	}
	if r := s.do("PUT", "/v1/rooms/a%2Fb/members/bob/data", `{"typing":true}`); r.status != 204 {
		t.Fatalf("put data: %d %s", r.status, r.body)
	}
	r = s.do("GET", "/v1/rooms/a%2Fb/members?onlineOnly=true", nil)
	if !strings.Contains(string(r.body), `"data":{"typing":true}`) {
		t.Fatalf("members: %s", r.body)
	}
	if r := s.do("POST", "/v1/signout?userId=bob", nil); r.status != 200 || r.json(t)["rooms"] != float64(4) {
		t.Fatalf("signout: %d %s", r.status, r.body)
	}
	r = s.do("GET", "/v1/users/bob/rooms?onlineOnly=true", nil)
	if rooms := r.json(t)["rooms"].([]any); len(rooms) != 0 {
		t.Fatalf("online rooms after signout: %s", r.body)
	}
	if r := s.do("DELETE", "/v1/rooms/lobby/members/ada", nil); r.status != 204 {
		t.Fatalf("remove member: %d", r.status)
	}
	if r := s.do("DELETE", "/v1/rooms/lobby", nil); r.status != 204 {
		t.Fatalf("remove room: %d", r.status)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := s.do("GET", p, nil); r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
	}
	r = s.do("OPTIONS", "/v1/heartbeat", nil, "Origin: https://app.example", "Access-Control-Request-Method: POST")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("CORS preflight with auth off: %d %v", r.status, r.header)
	}
}

func TestAuth(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	tok := func(sub, org string, extra ...any) string {
		c := map[string]any{"sub": sub}
		if org != "" {
			c["org_id"] = org
		}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i].(string)] = extra[i+1]
		}
		return "Authorization: Bearer " + jwt(t, c)
	}
	ada := tok("ada", "acme", "name", "Ada L.", "picture", "https://img/ada")
	bob := tok("bob", "acme")
	eve := tok("eve", "other")
	admin := "Authorization: Bearer " + adminToken

	body := map[string]any{"roomId": "lobby", "sessionId": "s1"}
	for name, h := range map[string]string{
		"no token":    "",
		"garbage":     "Authorization: Bearer abc.def.ghi",
		"expired":     tok("ada", "acme", "exp", time.Now().Add(-time.Hour).Unix()),
		"nbf future":  tok("ada", "acme", "nbf", time.Now().Add(time.Hour).Unix()),
		"alg none":    "Authorization: Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + b64(`{"sub":"ada","exp":9999999999}`) + ".",
		"wrong key":   "Authorization: Bearer " + authtest.HS256(t, []byte("another-secret-another-secret-0123"), map[string]any{"sub": "ada"}),
		"bad org":     tok("ada", "acme corp"),
		"admin token": admin, // the admin token is no user: heartbeat needs a userId
	} {
		t.Run(name, func(t *testing.T) {
			var r resp
			if h == "" {
				r = s.beat(body)
			} else {
				r = s.beat(body, h)
			}
			want := 401
			if name == "admin token" {
				want = 400
			}
			if r.status != want {
				t.Fatalf("%d %s, want %d", r.status, r.body, want)
			}
		})
	}
	room, _ := s.mustBeat(body, ada)
	if m := s.list(room).Members[0]; m.UserID != "ada" || m.Name != "Ada L." || m.Image != "https://img/ada" {
		t.Fatalf("member from JWT: %+v", m)
	}
	if r := s.beat(map[string]any{"roomId": "lobby", "sessionId": "s2", "userId": "bob"}, ada); r.status != 403 {
		t.Fatalf("userId != sub: %d", r.status)
	}
	if r := s.beat(map[string]any{"roomId": "lobby", "sessionId": "s1"}, bob); r.status != 409 {
		t.Fatalf("sessionId of another user: %d", r.status)
	}
	// Org isolation: eve's "lobby" is another room.
	eveRoom, _ := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "s1"}, eve)
	if eveRoom == room {
		t.Fatal("two orgs share a room token")
	}
	if l := s.list(eveRoom); len(l.Members) != 1 || l.Members[0].UserID != "eve" {
		t.Fatalf("eve's lobby: %+v", l)
	}
	r := s.do("GET", "/v1/rooms/lobby/members", nil, eve)
	if strings.Contains(string(r.body), "ada") || !strings.Contains(string(r.body), "eve") {
		t.Fatalf("org other's members endpoint: %s", r.body)
	}
	if r := s.do("GET", "/v1/rooms/lobby/count", nil, eve); r.json(t)["online"] != float64(1) {
		t.Fatalf("eve's count: %s", r.body)
	}
	// rooms claim.
	docs := tok("dora", "acme", "rooms", []string{"doc-*"})
	if r := s.beat(map[string]any{"roomId": "lobby", "sessionId": "d1"}, docs); r.status != 403 {
		t.Fatalf("rooms claim, lobby: %d", r.status)
	}
	if r := s.beat(map[string]any{"roomId": "doc-1", "sessionId": "d1"}, docs); r.status != 200 {
		t.Fatalf("rooms claim, doc-1: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/v1/rooms/lobby/members", nil, docs); r.status != 403 {
		t.Fatalf("rooms claim, members: %d", r.status)
	}
	// That user or an admin.
	if r := s.do("PUT", "/v1/rooms/lobby/members/ada/data", `{"a":1}`, bob); r.status != 403 {
		t.Fatalf("bob sets ada's data: %d", r.status)
	}
	if r := s.do("PUT", "/v1/rooms/lobby/members/ada/data", `{"a":1}`, ada); r.status != 204 {
		t.Fatalf("ada sets her data: %d", r.status)
	}
	if r := s.do("GET", "/v1/users/ada/rooms", nil, bob); r.status != 403 {
		t.Fatalf("bob reads ada's rooms: %d", r.status)
	}
	if r := s.do("GET", "/v1/users/ada/rooms?org=acme", nil, admin); r.status != 200 || !strings.Contains(string(r.body), "lobby") {
		t.Fatalf("admin reads ada's rooms: %d %s", r.status, r.body)
	}
	// Admin endpoints.
	if r := s.do("DELETE", "/v1/rooms/lobby", nil); r.status != 401 {
		t.Fatalf("remove room without token: %d", r.status)
	}
	if r := s.do("DELETE", "/v1/rooms/lobby", nil, ada); r.status != 403 {
		t.Fatalf("remove room as a user: %d", r.status)
	}
	if r := s.do("DELETE", "/v1/rooms/lobby", nil, "Authorization: Bearer wrong-admin-token"); r.status != 401 {
		t.Fatalf("remove room with a wrong admin token: %d", r.status)
	}
	if r := s.do("DELETE", "/v1/rooms/lobby?org=a%20b", nil, admin); r.status != 400 {
		t.Fatalf("admin with a bad org: %d", r.status)
	}
	if r := s.do("DELETE", "/v1/rooms/lobby?org=acme", nil, admin); r.status != 204 {
		t.Fatalf("remove room as admin: %d %s", r.status, r.body)
	}
	if l := s.list(room); len(l.Members) != 0 {
		t.Fatalf("removed room lists %+v", l)
	}
	if l := s.list(eveRoom); len(l.Members) != 1 {
		t.Fatal("removing acme's lobby touched other's lobby")
	}
	if r := s.do("POST", "/v1/signout?forget=true", nil, eve); r.status != 200 || r.json(t)["rooms"] != float64(1) {
		t.Fatalf("signout: %d %s", r.status, r.body)
	}
	if l := s.list(eveRoom); len(l.Members) != 0 {
		t.Fatalf("after signout with forget: %+v", l)
	}
	if r := s.do("OPTIONS", "/v1/heartbeat", nil, "Origin: https://evil.example", "Access-Control-Request-Method: POST"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS allowed an origin with auth on and no origins configured")
	}
}

func TestAnonymousEmpty(t *testing.T) {
	s := newStack(t, stackOpts{auth: true, anonymousEmpty: true})
	before := s.state()
	r := s.beat(map[string]any{"roomId": "lobby", "sessionId": "s1"})
	if r.status != 200 || string(r.body) != `{"roomToken":"","sessionToken":""}`+"\n" {
		t.Fatalf("anonymous heartbeat: %d %q", r.status, r.body)
	}
	if s.state() != before {
		t.Fatal("an anonymous heartbeat stored something")
	}
}

// TestRedisDown: with Redis gone, requests fail with 503 within 2 s; when it
// is back, the node serves again by itself, and is ready once its pub/sub
// connection is back too.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	s := newStack(t, stackOpts{redis: srv})
	room, _ := s.mustBeat(map[string]any{"roomId": "lobby", "sessionId": "s1", "userId": "u1"})
	srv.Stop()
	for _, req := range []func() resp{
		func() resp { return s.beat(map[string]any{"roomId": "lobby", "sessionId": "s1", "userId": "u1"}) },
		func() resp { return s.do("GET", "/v1/list?roomToken="+room, nil) },
		func() resp { return s.do("GET", "/readyz", nil) },
	} {
		start := time.Now()
		r := req()
		if r.status != 503 || r.code() != "unavailable" || time.Since(start) > 2*time.Second {
			t.Fatalf("with Redis down: %d %s after %v", r.status, r.body, time.Since(start))
		}
	}
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.beat(map[string]any{"roomId": "lobby", "sessionId": "s1", "userId": "u1"})
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Ready again once pub/sub has reconnected too (a moment later).
	for r := s.do("GET", "/readyz", nil); r.status != 200; r = s.do("GET", "/readyz", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("readyz after recovery: %d", r.status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := s.list(room); len(l.Members) != 1 {
		t.Fatalf("after recovery: %+v", l)
	}
}

func b64(s string) string {
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(fmt.Sprint(base64Std(s))), "=")
}
