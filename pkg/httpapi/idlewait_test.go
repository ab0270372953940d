//go:build linux

package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/redistest"
)

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(t *testing.T, fn string) int {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestPingedIdleSocketsKeepOneShallowGoroutine: an idle socket keeps one
// goroutine, waiting in the idle waiter (a small stack), also after it
// answered the node's pings and sent pings of its own: a control frame
// never leaves a goroutine inside the library's reader. And the socket
// still reads after them.
func TestPingedIdleSocketsKeepOneShallowGoroutine(t *testing.T) {
	srv := redistest.Start(t)
	n := startNodes(t, srv, 1, nodeOpts{pingInterval: 200 * time.Millisecond})[0]
	const sockets = 20
	var socks []*wsClient
	for i := 0; i < sockets; i++ {
		c := dialWS(t, n.url)
		c.join(1, map[string]any{"roomId": "r", "sessionId": fmt.Sprint("s", i), "userId": fmt.Sprint("u", i)})
		socks = append(socks, c)
	}
	// The node pings a socket quiet for an interval; each answers with a
	// pong. Half of them ping the node too.
	for i, c := range socks[:sockets/2] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.conn.Ping(ctx); err != nil {
			t.Fatalf("socket %d: the node did not answer a ping: %v", i, err)
		}
		cancel()
	}
	presencetest.Eventually(t, "every socket pinged three times", 10*time.Second, func() bool {
		for _, c := range socks {
			if c.pings.Load() < 3 {
				return false
			}
		}
		return true
	})
	presencetest.Eventually(t, "one goroutine per socket, in the idle waiter", 5*time.Second, func() bool {
		return goroutinesIn(t, "httpapi.(*socket).readLoop") == sockets &&
			goroutinesIn(t, "httpapi.idleWaiter.wait") == sockets &&
			goroutinesIn(t, "httpapi.(*socket).readOne") == 0
	})
	for i, c := range socks {
		if err := c.closeErr(); err != nil {
			t.Fatalf("socket %d closed: %v", i, err)
		}
	}
	// Messages after the control frames are read and answered.
	for i, c := range socks {
		c.send(map[string]any{"type": "leave", "id": 2, "roomId": "r"})
		if m := c.reply(2.0); m["type"] == "error" {
			t.Fatalf("socket %d: %v", i, m)
		}
	}
}
