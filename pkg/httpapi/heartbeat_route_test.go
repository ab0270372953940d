package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
)

// POST /v1/heartbeat skips Echo's router (Server.ServeHTTP): the answer,
// its headers included, is the one Echo's routing gives, for good and bad
// requests, with and without an allowed Origin.
func TestHeartbeatPathSameAsEcho(t *testing.T) {
	n := httpapitest.Start(t, httpapitest.Options{Quiet: true, Metrics: true, CORSOrigins: []string{"https://app.example"}})
	body := `{"roomId":"lobby","sessionId":"s1","userId":"u1","interval":600000}`
	for _, tc := range []struct {
		name, body string
		header     []string
	}{
		{"ok", body, nil},
		{"origin", body, []string{"Origin", "https://app.example"}},
		{"other origin", body, []string{"Origin", "https://evil.example"}},
		{"bad json", `{"roomId":`, nil},
		{"wrong type", `{"roomId":1}`, []string{"Origin", "https://app.example"}},
		{"not an object", `[]`, nil},
		{"empty", ``, nil},
		{"too large", `{"roomId":"` + strings.Repeat("a", 70<<10) + `"}`, nil},
		{"conflict", `{"roomId":"lobby","sessionId":"s1","userId":"u2"}`, nil},
		{"pretty", body, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "/v1/heartbeat"
			if tc.name == "pretty" {
				target += "?pretty"
			}
			var got [2]*httptest.ResponseRecorder
			for i, h := range []http.Handler{n.API, n.API.Echo()} {
				r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(tc.body))
				r.Header.Set("Content-Type", "application/json")
				for j := 0; j+1 < len(tc.header); j += 2 {
					r.Header.Set(tc.header[j], tc.header[j+1])
				}
				got[i] = httptest.NewRecorder()
				h.ServeHTTP(got[i], r)
			}
			fast, echo := got[0], got[1]
			if fast.Code != echo.Code || fast.Body.String() != echo.Body.String() {
				t.Errorf("fast path %d %q, Echo %d %q", fast.Code, fast.Body, echo.Code, echo.Body)
			}
			for k := range echo.Header() {
				if strings.Join(fast.Header()[k], ",") != strings.Join(echo.Header()[k], ",") {
					t.Errorf("header %s: fast path %q, Echo %q", k, fast.Header()[k], echo.Header()[k])
				}
			}
			if len(fast.Header()) != len(echo.Header()) {
				t.Errorf("headers: fast path %v, Echo %v", fast.Header(), echo.Header())
			}
		})
	}
	// Both are counted under the route.
	m := httptest.NewRecorder()
	n.API.ServeHTTP(m, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(m.Body.String(), `presence_http_requests_total{route="/v1/heartbeat",status="200"} 8`) {
		t.Errorf("metrics: %s", grepLines(m.Body.String(), "presence_http_requests_total"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
