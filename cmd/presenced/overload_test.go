package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/redistest"
)

// TestSlowLoris: a client that never finishes its headers is cut off after
// the header timeout; it cannot pin the node.
func TestSlowLoris(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL()}, func(m *Main) { m.Config.HeaderTimeout = 500 * time.Millisecond })
	conn, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	if err != nil {
		t.Fatalf("the node did not close a slow connection: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// TestSlowBody: clients that send their bodies slowly cannot take the
// in-flight slots. 300 connections (six times PRESENCE_MAX_INFLIGHT) send
// POST /v1/disconnect with Content-Length: 100 and then a byte every 200 ms,
// and open a new connection whenever the node closes one. Meanwhile other
// clients' heartbeats and lists all get 200, and each slow connection gets
// 400 and is closed after about the body timeout (1 s here).
func TestSlowBody(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_MAX_INFLIGHT": "50"},
		func(m *Main) { m.Config.BodyTimeout = time.Second })
	base := "http://" + m.Addr()
	roomToken, _ := post(t, base+"/v1/heartbeat", `{"roomId":"r","sessionId":"s","userId":"u"}`)["roomToken"].(string)

	const slow = 300
	type closed struct {
		after  time.Duration
		answer string
	}
	var (
		mu       sync.Mutex
		closures []closed
		stuck    []string // connections that ended another way
	)
	stop := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(slow)
	for i := 0; i < slow; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			var once sync.Once
			defer once.Do(started.Done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				after, answer, err := slowBody(m.Addr(), 200*time.Millisecond, stop, func() { once.Do(started.Done) })
				mu.Lock()
				if err != nil {
					stuck = append(stuck, err.Error())
				} else if answer != "" {
					closures = append(closures, closed{after, answer})
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() { close(stop); done.Wait() }()
	started.Wait()

	// Normal load while the slow connections hold on (2.5 s: more than two
	// rounds of them).
	hb := map[int]int{}
	ls := map[int]int{}
	until := time.Now().Add(2500 * time.Millisecond)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"roomId":"r","sessionId":"w%d","userId":"w%d"}`, w, w)
			for time.Now().Before(until) {
				c1 := status(t, "POST", base+"/v1/heartbeat", body)
				c2 := status(t, "GET", base+"/v1/list?roomToken="+roomToken, "")
				mu.Lock()
				hb[c1]++
				ls[c2]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(hb) != 1 || hb[200] < 8 || len(ls) != 1 || ls[200] < 8 {
		t.Errorf("during the slow bodies: heartbeats %v, lists %v; want only 200", hb, ls)
	}

	// Every slow connection was answered and closed, after about the body
	// timeout. Poll: the last ones may still be on their way.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n, nstuck := len(closures), len(stuck)
		mu.Unlock()
		if n >= slow || nstuck > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stuck) > 0 {
		t.Fatalf("%d slow connections not closed by the node; first: %s", len(stuck), stuck[0])
	}
	if len(closures) < slow {
		t.Fatalf("only %d slow connections closed by the node, want at least %d", len(closures), slow)
	}
	var longest time.Duration
	for _, c := range closures {
		if !strings.HasPrefix(c.answer, "HTTP/1.1 400 ") || !strings.Contains(c.answer, "\r\nConnection: close\r\n") ||
			!strings.Contains(c.answer, `"code":"invalid_argument","message":"the request body did not arrive in time"`) {
			t.Fatalf("answer to a slow body:\n%s", c.answer)
		}
		if c.after < 900*time.Millisecond || c.after > 4*time.Second {
			t.Fatalf("a slow connection was closed after %v (body timeout 1s)", c.after)
		}
		longest = max(longest, c.after)
	}
	t.Logf("%d slow connections closed, the last after %v; heartbeats %v, lists %v", len(closures), longest, hb, ls)
}

// slowBody sends POST /v1/disconnect with Content-Length: 100 (then calls
// sent) and the body a byte every interval, until the node answers and
// closes the connection (it returns how long that took and the answer) or
// stop is closed (an empty answer). After 8 s it gives up with an error.
func slowBody(addr string, interval time.Duration, stop <-chan struct{}, sent func()) (time.Duration, string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	start := time.Now()
	if _, err := fmt.Fprint(conn, "POST /v1/disconnect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nx"); err != nil {
		return 0, "", err
	}
	sent()
	var answer []byte
	buf := make([]byte, 1024)
	for {
		conn.SetReadDeadline(time.Now().Add(interval))
		n, err := conn.Read(buf)
		answer = append(answer, buf[:n]...)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			select {
			case <-stop:
				return 0, "", nil
			default:
			}
			if time.Since(start) > 8*time.Second {
				return 0, "", fmt.Errorf("still open after %v; read %q", time.Since(start), answer)
			}
			if len(answer) == 0 {
				conn.Write([]byte("x"))
			}
			continue
		}
		if err != nil { // EOF (or a reset after it): closed by the node
			if len(answer) == 0 {
				return 0, "", fmt.Errorf("closed without an answer after %v: %v", time.Since(start), err)
			}
			return time.Since(start), string(answer), nil
		}
	}
}

// status sends a request and returns the status of the answer.
func status(t *testing.T, method, url, body string) int {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestSlowBodyInTime: a body that arrives in time is served however it
// comes (in pieces, chunked), and the body limit still answers 413.
func TestSlowBodyInTime(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL()}, func(m *Main) { m.Config.BodyTimeout = time.Second })
	send := func(head string, parts ...string) string {
		t.Helper()
		conn, err := net.Dial("tcp", m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, head)
		for _, p := range parts {
			time.Sleep(300 * time.Millisecond)
			fmt.Fprint(conn, p)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %s", res.StatusCode, b)
	}
	body := `{"roomId":"r","sessionId":"s","userId":"u"}`
	got := send(fmt.Sprintf("POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)), body[:10], body[10:30], body[30:])
	if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "roomToken") {
		t.Errorf("body in three pieces, 0.9 s in all: %s", got)
	}
	got = send("POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		fmt.Sprintf("%x\r\n%s\r\n", 10, body[:10]), fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body)-10, body[10:]))
	if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "roomToken") {
		t.Errorf("chunked body: %s", got)
	}
	huge := `{"roomId":"r","pad":"` + strings.Repeat("x", 70<<10) + `"}`
	got = send(fmt.Sprintf("POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(huge), huge))
	if !strings.HasPrefix(got, "413 ") || !strings.Contains(got, "payload_too_large") {
		t.Errorf("body over 64 KiB: %.200s", got)
	}
	got = send("POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(huge), huge))
	if !strings.HasPrefix(got, "413 ") || !strings.Contains(got, "payload_too_large") {
		t.Errorf("chunked body over 64 KiB: %.200s", got)
	}
}

// TestMaxSockets: past PRESENCE_MAX_SOCKETS a WebSocket is refused with 503.
func TestMaxSockets(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_MAX_SOCKETS": "2"})
	url := "ws://" + m.Addr() + "/v1/ws"
	for i := 0; i < 2; i++ {
		c, _, err := websocket.Dial(context.Background(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
	}
	_, res, err := websocket.Dial(context.Background(), url, nil)
	if err == nil || res == nil || res.StatusCode != 503 {
		t.Fatalf("third socket: %v %v", res, err)
	}
}

// TestRedisPaused: while Redis does not answer (CLIENT PAUSE), every request
// gets 503 within 2 s, the node does not pile up goroutines, and it serves
// again once Redis answers.
func TestRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	m := MustRunMain(t, map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_MAX_INFLIGHT": "20"})
	base := "http://" + m.Addr()
	post(t, base+"/v1/heartbeat", `{"roomId":"r","sessionId":"s","userId":"u"}`)
	baseline := goroutines(t, base)
	if err := srv.Client(t).Do(context.Background(), "CLIENT", "PAUSE", "4000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var slowest time.Duration
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res, err := http.Post(base+"/v1/heartbeat", "application/json", strings.NewReader(fmt.Sprintf(`{"roomId":"r","sessionId":"s%d","userId":"u%d"}`, i, i)))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			mu.Lock()
			codes[res.StatusCode]++
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[503] != 100 || slowest > 2*time.Second {
		t.Fatalf("while paused: statuses %v, slowest %v", codes, slowest)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Post(base+"/v1/heartbeat", "application/json", strings.NewReader(`{"roomId":"r","sessionId":"s","userId":"u"}`))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no recovery after the pause")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for g := goroutines(t, base); g > baseline+10; g = goroutines(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d, baseline %d", g, baseline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goroutines reads go_goroutines from the node's metrics.
func goroutines(t testing.TB, base string) int {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "go_goroutines %d", &n); err == nil {
			return n
		}
	}
	t.Fatal("no go_goroutines metric")
	return 0
}
