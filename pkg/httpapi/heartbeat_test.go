package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
)

// decodeHeartbeatJSON is how a heartbeat body was decoded before the hand
// decoder (encoding/json alone): the reference it must match.
func decodeHeartbeatJSON(b []byte) (heartbeatRequest, error) {
	var req heartbeatRequest
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return req, presence.Errorf(presence.EINVALID, "the body must be a JSON object")
	}
	if err := json.Unmarshal(b, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return req, presence.Errorf(presence.EINVALID, "%s has the wrong type", te.Field)
		}
		return req, presence.Errorf(presence.EINVALID, "the body is not valid JSON")
	}
	return req, nil
}

// sameDecode fails unless decodeHeartbeat gives what encoding/json gives:
// the same error (code and message), or the same values.
func sameDecode(t *testing.T, body []byte) {
	t.Helper()
	if presence.CheckJSONText(body) != nil {
		return // refused before either decoder (checkBody)
	}
	got, gerr := decodeHeartbeat(body)
	want, werr := decodeHeartbeatJSON(body)
	if (gerr == nil) != (werr == nil) ||
		gerr != nil && (presence.ErrorCode(gerr) != presence.ErrorCode(werr) || presence.ErrorMessage(gerr) != presence.ErrorMessage(werr)) {
		t.Fatalf("%q: error %v, encoding/json: %v", body, gerr, werr)
	}
	if gerr != nil {
		return
	}
	if got.RoomID != want.RoomID || got.SessionID != want.SessionID || got.UserID != want.UserID ||
		got.Name != want.Name || got.Image != want.Image ||
		(got.Interval == nil) != (want.Interval == nil) || got.Interval != nil && *got.Interval != *want.Interval ||
		(got.Data == nil) != (want.Data == nil) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("%q: decoded %+v (interval %v), encoding/json %+v (interval %v)", body, got, ptr(got.Interval), want, ptr(want.Interval))
	}
}

func ptr(p *int64) string {
	if p == nil {
		return "nil"
	}
	return strconv.FormatInt(*p, 10)
}

var heartbeatBodies = []string{
	`{"roomId":"lobby","sessionId":"s1","userId":"u1","interval":600000}`,
	` { "roomId" : "lobby" , "sessionId":"s1" ,"userId":"u1","interval": 10000 , "name":"Ada","image":"https://x/y.png" } `,
	"{\n\t\"roomId\":\"é 日本\",\r\n\"sessionId\":\"s\",\"userId\":\"u\"}",
	`{}`, `{ }`, `{"roomId":""}`, `{"interval":0}`, `{"interval":-0}`, `{"interval":-5}`, `{"interval":007}`,
	`{"interval":123456789012345678}`, `{"interval":1234567890123456789}`, `{"interval":99999999999999999999}`,
	`{"interval":1.5}`, `{"interval":1e3}`, `{"interval":1E3}`, `{"interval":-}`, `{"interval":"600"}`, `{"interval":null}`,
	`{"interval":true}`, `{"interval":[1]}`, `{"interval":{}}`, `{"interval":600000,"interval":null}`,
	`{"roomId":"a","roomId":"b"}`, `{"roomId":"a","ROOMID":"b"}`, `{"RoomId":"a"}`, "{\"ſessionId\":\"x\"}", `{"roomId":null}`,
	`{"roomId":1}`, `{"roomId":{"a":1},"sessionId":2}`, `{"roomId":"a\"b"}`, `{"roomId":"a\u0062"}`, `{"roomId":"a\/b"}`,
	`{"roomId":"a` + "\t" + `b"}`, `{"roomId":"a"`, `{"roomId":"a",}`, `{"roomId":"a"} `, `{"roomId":"a"}x`, `{"roomId":"a"}{}`,
	`{"roomId" "a"}`, `{"roomId":"a" "sessionId":"b"}`, `{,}`, `{`, `{"`, `{"roomId`, `{"roomId":`, `{"roomId":"`,
	`{"data":{"x":[1,2,{"y":null}]},"roomId":"r"}`, `{"data":null}`, `{"data":"str"}`, `{"data":[1, 2 ]}`, `{"other":1,"roomId":"r"}`,
	`{"roomId":"r","sessionId":"s","userId":"u","interval":1000,"extra":{"deep":[[[[]]]]}}`,
	`[]`, `"x"`, `null`, ``, `  `, `{"roomId":"r"}` + "\u00a0", "\u00a0" + `{"roomId":"r"}`, `{"name":"</script>&"}`,
}

func TestDecodeHeartbeatMatchesEncodingJSON(t *testing.T) {
	for _, b := range heartbeatBodies {
		sameDecode(t, []byte(b))
	}
	// The usual bodies take the hand decoder: one allocation for the
	// strings, one for the interval.
	for i, b := range heartbeatBodies[:3] {
		body := bytes.TrimSpace([]byte(b))
		var req heartbeatRequest
		if !req.decodeFast(body) {
			t.Errorf("%q: not decoded by hand", b)
		}
		want := 2.0
		if i == 2 {
			want = 1 // no interval
		}
		if n := testing.AllocsPerRun(100, func() { decodeHeartbeat(body) }); n != want {
			t.Errorf("%q: %v allocations, want %v", b, n, want)
		}
	}
}

// FuzzHeartbeatDecode: the hand decoder accepts and refuses exactly what
// encoding/json did, with the same values. Its corpus starts with
// FuzzHeartbeatBody's.
func FuzzHeartbeatDecode(f *testing.F) {
	for _, b := range heartbeatBodies {
		f.Add([]byte(b))
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzHeartbeatBody")
	files, _ := os.ReadDir(dir)
	for _, e := range files {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		_, line, _ := strings.Cut(string(raw), "\n")
		line = strings.TrimSpace(line)
		if q, ok := strings.CutPrefix(line, "[]byte("); ok {
			if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
				f.Add([]byte(s))
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameDecode(t, body) })
}

// The hand-written answer is byte for byte what c.JSON writes, headers
// included.
func TestWriteHeartbeatMatchesJSON(t *testing.T) {
	s := &Server{echo: echo.New()}
	for _, out := range []presence.HeartbeatOutput{
		{RoomToken: "cgdkZWZhdWx0AnIwATCdtPm7rzXyDa7Pw1-zo6uD", SessionToken: "cwdkZWZh_-09", Interval: 600000},
		{RoomToken: "", SessionToken: "", Interval: 0},
		{RoomToken: "a<b&c>", SessionToken: "\u2028", Interval: -1}, // not base64url: through c.JSON
	} {
		for _, target := range []string{"/v1/heartbeat", "/v1/heartbeat?pretty"} {
			want := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest("POST", target, nil), want)
			if err := c.JSON(200, &out); err != nil {
				t.Fatal(err)
			}
			got := httptest.NewRecorder()
			c = s.echo.NewContext(httptest.NewRequest("POST", target, nil), got)
			if err := s.writeHeartbeat(c, &out); err != nil {
				t.Fatal(err)
			}
			if got.Code != want.Code || got.Body.String() != want.Body.String() ||
				len(got.Header()) != len(want.Header()) || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
				t.Errorf("%s %+v: %d %v %q, c.JSON: %d %v %q", target, out, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
		}
	}
}
