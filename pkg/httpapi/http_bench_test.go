package httpapi_test

// Benchmarks of the HTTP handlers on a real redis-server, called through
// Server.ServeHTTP (no network: what the node itself spends per request):
//
//	go test -run XXX -bench HTTP -benchtime 2s ./pkg/httpapi
//	go test -run XXX -bench HTTPHeartbeat -cpuprofile cpu.out ./pkg/httpapi
//
// The fan-out of one event to local connections is BenchmarkFanout
// (pkg/presence/realtime_bench_test.go).

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
)

// benchServer is a node (auth off, metrics registered as in presenced) on
// its own redis-server.
func benchServer(b *testing.B) *httpapi.Server {
	b.Helper()
	return httpapitest.Start(b, httpapitest.Options{Quiet: true, Metrics: true, PoolSize: 64}).API
}

func serve(_ testing.TB, api http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	api.ServeHTTP(w, req)
	return w
}

func heartbeatJSON(room string, i int) string {
	return fmt.Sprintf(`{"roomId":%q,"sessionId":"s%d","userId":"u%d","interval":600000}`, room, i, i)
}

// BenchmarkHTTPHeartbeatRefresh: keep-alive heartbeats (POST /v1/heartbeat)
// of 10,000 sessions over 100 rooms from 64 goroutines.
func BenchmarkHTTPHeartbeatRefresh(b *testing.B) {
	api := benchServer(b)
	bodies := make([]string, 10000)
	for i := range bodies {
		bodies[i] = heartbeatJSON(fmt.Sprint("r", i%100), i)
		if w := serve(b, api, http.MethodPost, "/v1/heartbeat", bodies[i]); w.Code != 200 {
			b.Fatalf("heartbeat: %d %s", w.Code, w.Body)
		}
	}
	var next atomic.Int64
	parallelReuse(b, api, func() string { return bodies[int(next.Add(1))%len(bodies)] })
}

// parallelReuse is parallel for POST /v1/heartbeat with a request and a
// ResponseWriter per goroutine, reused (the body and the answer reset each
// time): the allocations reported are the node's own.
func parallelReuse(b *testing.B, api http.Handler, body func() string) {
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		rd := strings.NewReader("")
		req := httptest.NewRequest(http.MethodPost, "/v1/heartbeat", rd)
		w := &reusedWriter{h: http.Header{}}
		for pb.Next() {
			s := body()
			rd.Reset(s)
			req.Body, req.ContentLength = io.NopCloser(rd), int64(len(s))
			clear(w.h)
			w.code, w.body = 0, w.body[:0]
			api.ServeHTTP(w, req)
			if w.code != 200 {
				b.Errorf("%d %s", w.code, w.body)
				return
			}
		}
	})
	if start >= 0 && b.N > 0 {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N)/1e3, "cpu-µs/op")
	}
}

// reusedWriter is a minimal http.ResponseWriter for parallelReuse.
type reusedWriter struct {
	h    http.Header
	code int
	body []byte
}

func (w *reusedWriter) Header() http.Header { return w.h }
func (w *reusedWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *reusedWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// BenchmarkHTTPHarness is what the harness of BenchmarkHTTPHeartbeatRefresh
// costs (a reused request and writer, and a handler that writes an answer
// the size of a heartbeat's), with the same parallelism: subtract it to get
// what the node spends.
func BenchmarkHTTPHarness(b *testing.B) {
	answer := []byte(`{"roomToken":"cgdkZWZhdWx0AnIwATCdtPm7rzXyDa7Pw1-zo6uD","sessionToken":"cwdkZWZhdWx0AnIwAnMwCGJwVXJ2TWRMtYxl0a_XKNz2aS1iYgwhXw","interval":600000}` + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(answer)
	})
	body := heartbeatJSON("r1", 1)
	parallelReuse(b, h, func() string { return body })
}

// BenchmarkHTTPList10k: GET /v1/list of a 10,000-member room, limit 104,
// without and with If-None-Match.
func BenchmarkHTTPList10k(b *testing.B) {
	api := benchServer(b)
	var token string
	for i := 0; i < 10000; i++ {
		w := serve(b, api, http.MethodPost, "/v1/heartbeat", heartbeatJSON("big", i))
		if w.Code != 200 {
			b.Fatalf("heartbeat: %d %s", w.Code, w.Body)
		}
		if i == 0 {
			token = jsonField(w.Body.Bytes(), "roomToken")
		}
	}
	target := "/v1/list?limit=104&roomToken=" + url.QueryEscape(token)
	first := serve(b, api, http.MethodGet, target, "")
	etag := first.Header().Get("ETag")
	if first.Code != 200 || etag == "" || bytes.Count(first.Body.Bytes(), []byte(`"userId"`)) != 104 {
		b.Fatalf("list: %d %q %d bytes", first.Code, etag, first.Body.Len())
	}
	for _, tc := range []struct {
		name   string
		header []string
		code   int
	}{{"200", nil, 200}, {"304", []string{"If-None-Match", etag}, 304}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if w := serve(b, api, http.MethodGet, target, "", tc.header...); w.Code != tc.code {
					b.Fatalf("list: %d, want %d", w.Code, tc.code)
				}
			}
		})
	}
}

func jsonField(body []byte, key string) string {
	k := []byte(`"` + key + `":"`)
	i := bytes.Index(body, k)
	if i < 0 {
		return ""
	}
	rest := body[i+len(k):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}
