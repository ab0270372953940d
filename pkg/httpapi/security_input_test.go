package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

// Regression tests for the holes an outside security test found: invalid
// UTF-8 that cut browsers out of a room, ids that collapsed into one, the
// token of a removed room that still watched, the WebSocket Origin check
// that ignored the scheme, binary frames and unlimited ping frames.

// TestSecurityInvalidUTF8Refused: invalid UTF-8 or a lone surrogate
// anywhere in a JSON body is 400 and changes nothing, over HTTP and on the
// WebSocket (the exact requests of the report).
func TestSecurityInvalidUTF8Refused(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	ada := secBearer(t, "ada", "acme")
	s.mustBeat(map[string]any{"roomId": "r", "sessionId": "m0", "data": "ok"}, ada)
	before := s.state()

	for _, body := range []string{
		`{"roomId":"r","sessionId":"m1","data":"` + "\xff\xfe" + `"}`,
		`{"roomId":"r","sessionId":"m1","data":"\ud800"}`,
		`{"roomId":"r","sessionId":"m1","data":{"k":"\udfff"}}`,
		`{"roomId":"r","sessionId":"m1","name":"` + "\xc3\x28" + `"}`,
		`{"roomId":"r","sessionId":"m1","image":"https://x/\ud800"}`,
		`{"roomId":"r` + "\xff" + `","sessionId":"m1"}`,
		`{"roomId":"r\ud800","sessionId":"m1"}`,
		`{"roomId":"r\udfff","sessionId":"m1"}`,
		`{"roomId":"r","sessionId":"m1\ud800"}`,
		`{"roomId":"r\u202eb","sessionId":"m1"}`,
		`{"roomId":"r\u200b","sessionId":"m1"}`,
		`{"roomId":"\ufeffr","sessionId":"m1"}`,
	} {
		r := s.do("POST", "/v1/heartbeat", []byte(body), ada)
		if r.status != 400 || r.code() != "invalid_argument" || !utf8.Valid(r.body) {
			t.Errorf("heartbeat %q: %d %s", body, r.status, r.body)
		}
	}
	for _, body := range []string{`"` + "\xed\xa0\x80" + `"`, `"\ud800"`, `{"a":"` + "\xff" + `"}`} {
		r := s.do("PUT", "/v1/rooms/r/members/ada/data", []byte(body), ada)
		if r.status != 400 || r.code() != "invalid_argument" {
			t.Errorf("set data %q: %d %s", body, r.status, r.body)
		}
	}
	if r := s.do("POST", "/v1/disconnect", []byte(`{"sessionToken":"`+"\xff"+`"}`)); r.status != 400 {
		t.Errorf("disconnect with invalid UTF-8: %d %s", r.status, r.body)
	}

	c := dialWS(t, s.url, ada)
	for i, raw := range []string{
		`{"type":"update","id":3,"roomId":"r","data":"` + "\xc3\x28" + `"}`,
		`{"type":"join","id":4,"roomId":"r","sessionId":"m2","data":"\udfff"}`,
		`{"type":"join","id":5,"roomId":"r` + "\xff" + `","sessionId":"m2"}`,
	} {
		if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(raw)); err != nil {
			t.Fatal(err)
		}
		id := float64(3 + i)
		if m := c.reply(id); m["type"] != "error" || m["code"] != "invalid_argument" {
			t.Errorf("ws %q: %v", raw, m)
		}
	}
	if after := s.state(); after != before {
		t.Fatalf("refused requests changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// TestSecurityStoredInvalidUTF8Repaired: data with invalid UTF-8 that an
// older node stored never reaches a text frame raw: snapshots, events and
// lists show it repaired (U+FFFD), and the room keeps working.
func TestSecurityStoredInvalidUTF8Repaired(t *testing.T) {
	srv := redistest.Start(t)
	n := httpapitest.Start(t, httpapitest.Options{Redis: srv})
	ctx := context.Background()
	room := presence.RoomRef{Org: "default", RoomID: "old"}
	tok := httpBeat(t, n.URL, map[string]any{"roomId": "old", "sessionId": "s1", "userId": "bob", "data": "x"})["roomToken"].(string)
	// What an older node let through: raw invalid bytes in the data.
	profile := n.Prefix + ":{" + room.Org + "::" + room.RoomID + "}:profile"
	if err := n.Redis.HSet(ctx, profile, "d:bob", "\"\xff\xfe\"").Err(); err != nil {
		t.Fatal(err)
	}

	c := dialWS(t, n.URL) // its reader panics on a frame that is not UTF-8
	joined := c.join(1, map[string]any{"roomId": "old", "sessionId": "s2", "userId": "ann"})
	if !strings.Contains(mustJSON(t, joined["members"]), "\"\ufffd\"") {
		t.Fatalf("joined snapshot: %v", joined["members"])
	}
	// An event carrying bob's stored data: his leave.
	sess := httpBeat(t, n.URL, map[string]any{"roomId": "old", "sessionId": "s1", "userId": "bob"})["sessionToken"].(string)
	r, err := http.Post(n.URL+"/v1/disconnect", "text/plain", strings.NewReader(sess))
	if err != nil || r.StatusCode != 204 {
		t.Fatalf("disconnect: %v %v", r, err)
	}
	r.Body.Close()
	ev := c.waitFor("bob's leave", func(m map[string]any) bool { return m["type"] == "presence" && m["event"] == "leave" })
	if !strings.Contains(mustJSON(t, ev["member"]), "\"\ufffd\"") {
		t.Fatalf("leave event: %v", ev)
	}
	l := getJSON(t, n.URL+"/v1/list?roomToken="+tok)
	if b := mustJSON(t, l); !strings.Contains(b, "\"\ufffd\"") {
		t.Fatalf("list: %s", b)
	}
}

// TestSecurityRemovedRoomTokenWatch: after DELETE /v1/rooms/{roomId}, an
// old room token sees nothing of the room's new life on the WebSocket: a
// watch answers an empty room and gets no event; a socket that was watching
// gets the empty room at the removal and nothing after.
func TestSecurityRemovedRoomTokenWatch(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	ada := secBearer(t, "ada", "acme")
	bob := secBearer(t, "bob", "acme")
	oldTok, _ := s.mustBeat(map[string]any{"roomId": "r", "sessionId": "a1", "data": "old life"}, ada)

	early := dialWS(t, s.url, bob) // watching since before the removal
	early.send(map[string]any{"type": "watch", "id": 1, "roomToken": oldTok})
	if m := early.reply(float64(1)); m["type"] != "watching" || len(m["members"].([]any)) != 1 {
		t.Fatalf("watch before removal: %v", m)
	}

	if r := s.do("DELETE", "/v1/rooms/r?org=acme", nil, secAdmin); r.status != 204 {
		t.Fatalf("remove room: %d %s", r.status, r.body)
	}
	removal := early.waitFor("the removal", func(m map[string]any) bool {
		return m["type"] == "sync" && len(m["members"].([]any)) == 0
	})

	late := dialWS(t, s.url, bob) // watching with the old token after the removal
	late.send(map[string]any{"type": "watch", "id": 1, "roomToken": oldTok})
	if m := late.reply(float64(1)); m["type"] != "watching" || m["version"] != float64(0) || len(m["members"].([]any)) != 0 {
		t.Fatalf("watch with the old token: %v", m)
	}

	// The room's new life, seen by a socket that watches with the new token.
	newTok, _ := s.mustBeat(map[string]any{"roomId": "r", "sessionId": "a2", "data": "new life"}, ada)
	if newTok == oldTok {
		t.Fatal("the room token did not change with the removal")
	}
	fresh := dialWS(t, s.url, bob)
	fresh.send(map[string]any{"type": "watch", "id": 1, "roomToken": newTok})
	fresh.reply(float64(1))
	s.mustBeat(map[string]any{"roomId": "r", "sessionId": "c1", "data": "new member"}, secBearer(t, "cy", "acme"))
	fresh.waitFor("cy's join", func(m map[string]any) bool { return m["type"] == "presence" && m["event"] == "join" })
	// Round trips on the old sockets: whatever the hub handed them was
	// queued before their pong.
	for _, c := range []*wsClient{early, late} {
		c.send(map[string]any{"type": "ping", "id": "p"})
		c.reply("p")
	}
	time.Sleep(100 * time.Millisecond)
	for name, c := range map[string]*wsClient{"early": early, "late": late} {
		for _, m := range c.messages() {
			if m["roomId"] == "r" && m["type"] != "watching" && (m["type"] != "sync" || len(m["members"].([]any)) != 0) {
				t.Errorf("%s watcher with the old token got %v", name, m)
			}
			if strings.Contains(mustJSON(t, m), "new") {
				t.Errorf("%s watcher with the old token saw the new life: %v", name, m)
			}
		}
	}
	if v := removal["version"].(float64); v <= 1 {
		t.Errorf("removal sync at version %v", v)
	}
	if l := s.list(oldTok); len(l.Members) != 0 {
		t.Errorf("list with the old token: %+v", l)
	}
}

// TestSecurityWebSocketOriginScheme: the WebSocket Origin check is the
// HTTP CORS rule: scheme, host and port.
func TestSecurityWebSocketOriginScheme(t *testing.T) {
	n := httpapitest.Start(t, httpapitest.Options{CORSOrigins: []string{"https://app.example"}})
	for origin, want := range map[string]bool{
		"https://app.example":      true,
		"HTTPS://APP.EXAMPLE":      true,
		"http://app.example":       false,
		"https://app.example:8443": false,
		"https://evil.example":     false,
		"null":                     false,
	} {
		_, err := tryDialWS(t, n.URL, true, "Origin: "+origin)
		if (err == nil) != want {
			t.Errorf("WebSocket with Origin %s: %v, want allowed=%v", origin, err, want)
		}
		req, _ := http.NewRequest("OPTIONS", n.URL+"/v1/heartbeat", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin") != ""; got != want {
			t.Errorf("CORS preflight from %s: allowed=%v, want %v", origin, got, want)
		}
	}
	// Non-browser clients (no Origin) are allowed.
	dialWS(t, n.URL)
}

// TestSecurityBinaryFrames: the protocol is JSON text frames; a binary
// frame closes the socket with 1003.
func TestSecurityBinaryFrames(t *testing.T) {
	n := httpapitest.Start(t, httpapitest.Options{})
	c := dialWS(t, n.URL)
	if err := c.conn.Write(context.Background(), websocket.MessageBinary, []byte(`{"type":"ping","id":1}`)); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, websocket.StatusUnsupportedData)
}

// TestSecurityPingFramesRateLimited: WebSocket ping frames count toward the
// message rate limit like messages: past it they get no pong, and the
// socket is closed with 1008.
func TestSecurityPingFramesRateLimited(t *testing.T) {
	n := httpapitest.Start(t, httpapitest.Options{})
	c := dialWS(t, n.URL)
	answered := 0
	for i := 0; i < 500; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.conn.Ping(ctx)
		cancel()
		if err != nil {
			break
		}
		answered++
	}
	if answered >= 500 || answered < 40 {
		t.Fatalf("%d of 500 pings were answered at once (limit 50/s)", answered)
	}
	waitClosed(t, c, websocket.StatusPolicyViolation)
}

func waitClosed(t *testing.T, c *wsClient, want websocket.StatusCode) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.closeErr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the socket was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := websocket.CloseStatus(c.closeErr()); got != want {
		t.Fatalf("closed with %v (%v), want %v", got, c.closeErr(), want)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !utf8.Valid(b) {
		t.Fatalf("GET %s: %d %q", url, res.StatusCode, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
