package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence"
)

// fuzzTokenSecret signs the room tokens of testdata/fuzz/FuzzListQuery.
const fuzzTokenSecret = "httpapi-fuzz-token-secret-0123456789"

// fuzzAPI is a real node (Redis store, auth off, token secret
// fuzzTokenSecret) for fuzz targets: newStack needs a *testing.T, and a
// fuzz target builds its stack once, not per input.
func fuzzAPI(tb testing.TB) (http.Handler, *presence.Tokens) {
	tb.Helper()
	// Internal errors would be logged; the fuzz checks fail on them anyway.
	n := httpapitest.Start(tb, httpapitest.Options{TokenSecret: fuzzTokenSecret, Quiet: true})
	return n.API, n.Tokens
}

func fzServe(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var fzErrorStatus = map[string]int{
	"invalid_argument": 400, "unauthenticated": 401, "permission_denied": 403, "not_found": 404,
	"conflict": 409, "payload_too_large": 413, "rate_limited": 429, "unavailable": 503,
}

// fzCheckErrorBody checks that an error answer is exactly the contract's
// {"error":{"code","message"}} with the code of its status.
func fzCheckErrorBody(t *testing.T, what string, status int, body []byte) {
	t.Helper()
	var e map[string]map[string]string
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || len(e) != 1 || e["error"] == nil || len(e["error"]) != 2 {
		t.Fatalf("%s: %d with body %q, not the contract's error JSON", what, status, body)
	}
	if fzErrorStatus[e["error"]["code"]] != status || e["error"]["message"] == "" {
		t.Fatalf("%s: %d with error %q", what, status, body)
	}
}

// FuzzHeartbeatBody: any body posted to /v1/heartbeat (auth off) is
// answered 200, 400, 403, 409 or 413, never 5xx; errors carry the
// contract's error JSON; a 200 carries tokens of the requested room.
func FuzzHeartbeatBody(f *testing.F) {
	api, tokens := fuzzAPI(f)
	f.Add([]byte(`{"roomId":"lobby","sessionId":"s1","userId":"u1"}`))
	// The outside test's findings: raw invalid UTF-8, lone surrogates.
	f.Add([]byte("{\"roomId\":\"r\",\"sessionId\":\"m1\",\"userId\":\"u1\",\"data\":\"\xff\xfe\"}"))
	f.Add([]byte(`{"roomId":"r\ud800","sessionId":"m1","userId":"bob\udfff"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/heartbeat", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := fzServe(api, r)
		if !utf8.Valid(w.Body.Bytes()) {
			t.Fatalf("heartbeat %q: answer %q is not UTF-8", body, w.Body.Bytes())
		}
		switch w.Code {
		case 200:
		case 400, 403, 409, 413:
			fzCheckErrorBody(t, "heartbeat", w.Code, w.Body.Bytes())
			return
		default:
			t.Fatalf("heartbeat %q: %d %s", body, w.Code, w.Body.Bytes())
		}
		var out struct {
			RoomToken, SessionToken string
			Interval                int64
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("heartbeat %q: 200 with %q", body, w.Body.Bytes())
		}
		// The server read the body with encoding/json too: same roomId.
		var in struct {
			RoomID    string `json:"roomId"`
			SessionID string `json:"sessionId"`
		}
		json.Unmarshal(body, &in)
		room, _, err := tokens.ParseRoomToken(out.RoomToken)
		if err != nil || room != (presence.RoomRef{Org: "default", RoomID: in.RoomID}) {
			t.Fatalf("heartbeat %q: room token of %+v (%v)", body, room, err)
		}
		sroom, sid, _, err := tokens.ParseSessionToken(out.SessionToken)
		if err != nil || sroom != room || sid != in.SessionID {
			t.Fatalf("heartbeat %q: session token of %+v %q (%v)", body, sroom, sid, err)
		}
		if out.Interval < 1000 || out.Interval > 600000 {
			t.Fatalf("heartbeat %q: interval %d", body, out.Interval)
		}
		if presence.ValidateRoomID(room.RoomID) != nil || presence.ValidateSessionID(sid) != nil {
			t.Fatalf("heartbeat %q: accepted invalid ids", body)
		}
		// Nothing accepted was repaired on the way: two spellings never
		// become one id, and what is stored reads back as valid UTF-8 (a
		// browser closes a socket on a text frame that is not).
		if !utf8.Valid(body) {
			t.Fatalf("heartbeat %q: accepted invalid UTF-8", body)
		}
		if lower := strings.ToLower(string(body)); !strings.Contains(lower, `\ufffd`) && !strings.ContainsRune(lower, utf8.RuneError) &&
			strings.ContainsRune(room.RoomID+sid, utf8.RuneError) {
			t.Fatalf("heartbeat %q: ids decoded with a replacement character", body)
		}
		l := fzServe(api, httptest.NewRequest("GET", "/v1/list?roomToken="+out.RoomToken, nil))
		if l.Code != 200 || !utf8.Valid(l.Body.Bytes()) {
			t.Fatalf("heartbeat %q, then list: %d %q", body, l.Code, l.Body.Bytes())
		}
	})
}

// FuzzListQuery: any roomToken and limit, sent escaped or raw, gets 200
// or 400, never 5xx.
func FuzzListQuery(f *testing.F) {
	api, tokens := fuzzAPI(f)
	beat := httptest.NewRequest("POST", "/v1/heartbeat", bytes.NewReader([]byte(`{"roomId":"lobby","sessionId":"s1","userId":"ada","interval":600000}`)))
	if w := fzServe(api, beat); w.Code != 200 {
		f.Fatalf("heartbeat: %d %s", w.Code, w.Body.Bytes())
	}
	f.Add(tokens.RoomToken(presence.RoomRef{Org: "default", RoomID: "lobby"}, "0"), "")
	f.Fuzz(func(t *testing.T, roomToken, limit string) {
		escaped := url.Values{"roomToken": {roomToken}, "limit": {limit}}.Encode()
		for _, q := range []string{escaped, "roomToken=" + roomToken + "&limit=" + limit} {
			r := httptest.NewRequest("GET", "/v1/list", nil)
			r.URL.RawQuery = q
			w := fzServe(api, r)
			switch w.Code {
			case 200:
				var l presence.RoomList
				if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil || l.Members == nil {
					t.Fatalf("list ?%s: 200 with %q", q, w.Body.Bytes())
				}
				if q == escaped {
					room, _, err := tokens.ParseRoomToken(roomToken)
					if err != nil || room.RoomID != l.RoomID {
						t.Fatalf("list ?%s: 200 for room %q with a token of %+v (%v)", q, l.RoomID, room, err)
					}
				}
			case 400:
				fzCheckErrorBody(t, "list ?"+q, w.Code, w.Body.Bytes())
			default:
				t.Fatalf("list ?%s: %d %s", q, w.Code, w.Body.Bytes())
			}
		}
	})
}
