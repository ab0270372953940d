package demo_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/presencecluster/presence/pkg/demo"
)

// TestClientCopyIsCurrent: the client served by the demo is the client of
// clients/js, byte for byte.
func TestClientCopyIsCurrent(t *testing.T) {
	src, err := os.ReadFile("../../clients/js/src/client.js")
	if err != nil {
		t.Fatal(err)
	}
	served := get(t, "/presence.js", http.StatusOK)
	if !bytes.Equal(src, served) {
		t.Fatal("pkg/demo/static/presence.js differs from clients/js/src/client.js: run `go generate ./pkg/demo`")
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/demo", demo.Handler()))
	defer srv.Close()
	for _, tc := range []struct {
		path, status, ctype, contains string
	}{
		{"/demo/", "200 OK", "text/html; charset=utf-8", `<script type="module" src="./app.js">`},
		{"/demo/app.js", "200 OK", "text/javascript; charset=utf-8", `from './presence.js'`},
		{"/demo/presence.js", "200 OK", "text/javascript; charset=utf-8", "export class PresenceClient"},
		{"/demo/nope.js", "404 Not Found", "", ""},
	} {
		res, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Status != tc.status {
			t.Errorf("%s: status %s, want %s", tc.path, res.Status, tc.status)
			continue
		}
		if tc.ctype != "" && res.Header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, res.Header.Get("Content-Type"), tc.ctype)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("%s: body lacks %q", tc.path, tc.contains)
		}
		if res.StatusCode == http.StatusOK {
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Cache-Control"} {
				if res.Header.Get(h) == "" {
					t.Errorf("%s: no %s header", tc.path, h)
				}
			}
		}
	}
}

func get(t *testing.T, path string, status int) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	demo.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != status {
		t.Fatalf("GET %s: %d, want %d", path, rec.Code, status)
	}
	return rec.Body.Bytes()
}
