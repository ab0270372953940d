package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
)

// exchange sends raw on a new connection to addr and returns the raw bytes
// of the n answers that follow (Date masked), and whether the server then
// closed the connection.
func exchange(t *testing.T, addr, raw string, n int) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &got))
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d of %q: %v (read %q)", i+1, raw, err, got.String())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = br.ReadByte()
	closed := errors.Is(err, io.EOF)
	return dateRE.ReplaceAllString(got.String(), "Date: <date>\r\n"), closed
}

var dateRE = regexp.MustCompile(`Date: [^\r]*\r\n`)

func hb(body string, headers ...string) string {
	var b strings.Builder
	b.WriteString("POST /v1/heartbeat HTTP/1.1\r\nHost: node.example\r\nContent-Type: application/json\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestLaneAnswersAsNetHTTP sends the same raw requests to the node through
// net/http alone and through its heartbeat lane, and expects the same bytes
// back (Date aside), the same connection handling, and the lane to have
// answered the plain heartbeats itself.
func TestLaneAnswersAsNetHTTP(t *testing.T) {
	n := httpapitest.Start(t, httpapitest.Options{Quiet: true, CORSOrigins: []string{"https://app.example"}})
	plain := httptest.NewServer(n.API)
	t.Cleanup(plain.Close)
	laneAddr := strings.TrimPrefix(n.URL, "http://")
	plainAddr := strings.TrimPrefix(plain.URL, "http://")

	ok := `{"roomId":"lane","sessionId":"s1","userId":"u1","interval":10000}`
	big := `{"roomId":"lane","sessionId":"s1","userId":"u1","name":"` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		name    string
		raw     string
		answers int
		lane    int64 // answers the lane gives itself
	}{
		{"heartbeat", hb(ok), 1, 1},
		{"cors", hb(ok, "Origin: https://app.example"), 1, 1},
		{"cors other origin", hb(ok, "Origin: https://evil.example"), 1, 1},
		{"wrong type", hb(`{"roomId":"lane","sessionId":"s1","userId":"u1","interval":"x"}`), 1, 1},
		{"not json", hb(`{"roomId":`), 1, 1},
		{"unknown room chars", hb(`{"roomId":"a b","sessionId":"s1","userId":"u1"}`), 1, 1},
		{"connection close", hb(ok, "Connection: close"), 1, 1},
		{"connection keep-alive", hb(ok, "Connection: keep-alive"), 1, 1},
		{"lower-case names", "POST /v1/heartbeat HTTP/1.1\r\nhost: x\r\ncontent-length: " + itoa(len(ok)) + "\r\n\r\n" + ok, 1, 1},
		{"pipelined", hb(ok) + hb(ok), 2, 2},
		{"then another route", hb(ok) + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2, 1},
		{"another route first", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + hb(ok), 2, 0},
		{"query", strings.Replace(hb(ok), "/v1/heartbeat", "/v1/heartbeat?pretty", 1), 1, 0},
		{"body too large", hb(big), 1, 0},
		{"chunked", "POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + fmtHex(len(ok)) + "\r\n" + ok + "\r\n0\r\n\r\n", 1, 0},
		{"no host", "POST /v1/heartbeat HTTP/1.1\r\nContent-Length: " + itoa(len(ok)) + "\r\n\r\n" + ok, 1, 0},
		{"http/1.0", strings.Replace(hb(ok), "HTTP/1.1", "HTTP/1.0", 1), 1, 0},
		{"expect", hb(ok, "Expect: 100-continue"), 2, 0},
		{"repeated header", hb(ok, "X-A: 1", "X-A: 2"), 1, 0},
		{"folded header", hb(ok, "X-A: 1", " 2"), 1, 0},
		{"signed length", strings.Replace(hb(ok), "Content-Length: ", "Content-Length: +", 1), 1, 0},
		{"two lengths", hb(ok, "Content-Length: "+itoa(len(ok))), 1, 0},
		{"empty body", hb(""), 1, 0},
		{"get", strings.Replace(hb(ok), "POST", "GET", 1), 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, wantClosed := exchange(t, plainAddr, tc.raw, tc.answers)
			before := n.Lane.Served()
			got, gotClosed := exchange(t, laneAddr, tc.raw, tc.answers)
			if got != want {
				t.Errorf("lane answered\n%s\nnet/http answered\n%s", got, want)
			}
			if gotClosed != wantClosed {
				t.Errorf("connection closed after the answers: lane %v, net/http %v", gotClosed, wantClosed)
			}
			if served := n.Lane.Served() - before; served != tc.lane {
				t.Errorf("the lane answered %d requests itself, want %d", served, tc.lane)
			}
		})
	}
}

func fmtHex(n int) string { return strconv.FormatInt(int64(n), 16) }

// TestLaneSplitRequest: a request whose body comes in a later packet is
// handed to net/http with what was read, and answered.
func TestLaneSplitRequest(t *testing.T) {
	n := httpapitest.Start(t, httpapitest.Options{Quiet: true})
	c, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	raw := hb(`{"roomId":"lane","sessionId":"s1","userId":"u1"}`)
	cut := strings.Index(raw, "\r\n\r\n") + 4
	io.WriteString(c, raw[:cut])
	time.Sleep(50 * time.Millisecond) // let the head arrive alone
	io.WriteString(c, raw[cut:])
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n.Lane.HandedOver() == 0 {
		t.Error("the split request was not handed to net/http")
	}
}

// laneHeartbeat starts a lane with idle timeout idle in front of a node,
// and sends it one heartbeat on a new keep-alive connection: it returns the
// lane, its server, and the connection's reader, after the answer.
func laneHeartbeat(t *testing.T, idle time.Duration) (*httpapi.Lane, *http.Server, *bufio.Reader) {
	n := httpapitest.Start(t, httpapitest.Options{Quiet: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lane := n.API.NewLane(ln, httpapi.LaneConfig{HeaderTimeout: 10 * time.Second, IdleTimeout: idle, WriteTimeout: 10 * time.Second})
	srv := &http.Server{Handler: n.API}
	go srv.Serve(lane)
	t.Cleanup(func() { srv.Close(); lane.CloseAll() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, hb(`{"roomId":"lane","sessionId":"s1","userId":"u1"}`))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("heartbeat: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if lane.Served() != 1 {
		t.Fatalf("served %d, want 1 (handed over %d)", lane.Served(), lane.HandedOver())
	}
	return lane, srv, br
}

// TestLaneShutdown: Shutdown closes the lane's idle keep-alive connections
// and returns.
func TestLaneShutdown(t *testing.T) {
	lane, srv, br := laneHeartbeat(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	if err := lane.Shutdown(ctx); err != nil {
		t.Fatalf("lane shutdown: %v", err)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection after Shutdown: read %v, want EOF", err)
	}
}

// TestLaneIdleTimeout: an idle keep-alive connection of the lane is closed
// after IdleTimeout.
func TestLaneIdleTimeout(t *testing.T) {
	_, _, br := laneHeartbeat(t, 500*time.Millisecond)
	start := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
}
