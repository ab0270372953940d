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
