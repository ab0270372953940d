package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/redistest"
)

func eventKinds(evs []map[string]any) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprintf("%s:%s@%v", e["event"], e["member"].(map[string]any)["userId"], e["version"]))
	}
	return strings.Join(s, " ")
}

// TestRealtimeAcrossNodes: a watcher on node A sees what happens through
// nodes B and C, over WebSockets and HTTP, in version order; keep-alives and
// second tabs produce nothing.
func TestRealtimeAcrossNodes(t *testing.T) {
	realtimeAcrossNodes(t, startNodes(t, redistest.Start(t), 3, nodeOpts{}))
}

// TestRealtimeAcrossNodesCluster: the same on a real Redis Cluster (sharded
// pub/sub).
func TestRealtimeAcrossNodesCluster(t *testing.T) {
	realtimeAcrossNodes(t, startNodes(t, nil, 3, nodeOpts{cluster: redistest.StartCluster(t)}))
}

func realtimeAcrossNodes(t *testing.T, nodes []*node) {
	a, b, c := nodes[0], nodes[1], nodes[2]

	w := dialWS(t, a.url)
	joined := w.join(1, map[string]any{"roomId": "lobby", "sessionId": "w1", "userId": "watcher"})
	if joined["version"] != float64(1) || joined["roomToken"] == "" || joined["sessionToken"] == "" {
		t.Fatalf("joined = %v", joined)
	}
	// A pure watcher on C, by room token.
	pw := dialWS(t, c.url)
	pw.send(map[string]any{"type": "watch", "id": "w", "roomToken": joined["roomToken"]})
	if r := pw.reply("w"); r["type"] != "watching" || r["version"] != float64(1) {
		t.Fatalf("watching = %v", r)
	}

	x := dialWS(t, b.url)
	x.join(1, map[string]any{"roomId": "lobby", "sessionId": "x1", "userId": "xavier", "interval": 1000})
	w.waitFor("join of xavier", func(m map[string]any) bool { return m["type"] == "presence" && m["event"] == "join" })

	httpBeat(t, c.url, map[string]any{"roomId": "lobby", "sessionId": "y1", "userId": "yara"})
	x.send(map[string]any{"type": "update", "id": 2, "roomId": "lobby", "data": map[string]any{"typing": true}})
	if r := x.reply(float64(2)); r["type"] != "updated" {
		t.Fatalf("update reply: %v", r)
	}
	// A second tab of xavier, on node C: no event.
	x2 := dialWS(t, c.url)
	x2.join(1, map[string]any{"roomId": "lobby", "sessionId": "x2", "userId": "xavier"})
	// Keep-alives: xavier's 1 s session is refreshed by node B a few times.
	time.Sleep(3 * time.Second)
	want := "join:xavier@2 join:yara@3 update:xavier@4"
	if got := eventKinds(w.events("lobby")); got != want {
		t.Fatalf("events at A: %s, want %s", got, want)
	}
	if got := eventKinds(pw.events("lobby")); got != want {
		t.Fatalf("events at the watcher: %s, want %s", got, want)
	}
	// The second tab closes: nothing; the first closes: leave at once.
	x2.conn.Close(websocket.StatusNormalClosure, "")
	time.Sleep(300 * time.Millisecond)
	x.conn.Close(websocket.StatusNormalClosure, "")
	w.waitFor("leave of xavier", func(m map[string]any) bool { return m["event"] == "leave" })
	time.Sleep(200 * time.Millisecond)
	if got := eventKinds(w.events("lobby")); got != want+" leave:xavier@5" {
		t.Fatalf("events at A: %s", got)
	}
	w.waitView("lobby", "watcher", "yara")
	pw.waitView("lobby", "watcher", "yara")

	// Leave, unwatch, ping.
	w.send(map[string]any{"type": "leave", "id": 9, "roomId": "lobby"})
	if r := w.reply(float64(9)); r["type"] != "left" {
		t.Fatalf("left = %v", r)
	}
	pw.waitView("lobby", "yara")
	pw.send(map[string]any{"type": "unwatch", "id": 10, "roomId": "lobby"})
	if r := pw.reply(float64(10)); r["type"] != "unwatched" {
		t.Fatalf("unwatched = %v", r)
	}
	pw.send(map[string]any{"type": "ping", "id": "p"})
	if r := pw.reply("p"); r["type"] != "pong" {
		t.Fatalf("pong = %v", r)
	}
}

// TestSyncAfterPubSubKill: when the nodes' pub/sub connections are killed,
// their sockets get a sync, and events flow again.
func TestSyncAfterPubSubKill(t *testing.T) {
	srv := redistest.Start(t)
	syncAfterPubSubKill(t, startNodes(t, srv, 2, nodeOpts{}), []*redistest.Server{srv})
}

// TestSyncAfterPubSubKillCluster: the same on a Redis Cluster: every
// master kills its pub/sub clients; the nodes subscribe again where the
// channels live.
func TestSyncAfterPubSubKillCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	syncAfterPubSubKill(t, startNodes(t, nil, 2, nodeOpts{cluster: cl}), cl.Servers)
}

func syncAfterPubSubKill(t *testing.T, nodes []*node, servers []*redistest.Server) {
	w := dialWS(t, nodes[0].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher"})
	for _, srv := range servers {
		if err := srv.Client(t).ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil && !strings.Contains(err.Error(), "No such client") {
			t.Fatal(err)
		}
	}
	w.waitFor("sync", func(m map[string]any) bool { return m["type"] == "sync" && m["roomId"] == "r" })
	httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "z", "userId": "zoe"})
	w.waitView("r", "watcher", "zoe")
}

// TestRedisRestartWithDataLoss: Redis restarts empty; the nodes put their
// sockets' sessions back within one interval and the watchers end with the
// true member list.
func TestRedisRestartWithDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher", "interval": 1000})
	var clients []*wsClient
	for i, n := range nodes {
		c := dialWS(t, n.url)
		c.join(1, map[string]any{"roomId": "r", "sessionId": fmt.Sprint("s", i), "userId": fmt.Sprint("u", i), "interval": 1000})
		clients = append(clients, c)
	}
	w.waitView("r", "watcher", "u0", "u1")
	srv.Restart(t)
	start := time.Now()
	w.waitFor("sync after the restart", func(m map[string]any) bool { return m["type"] == "sync" })
	w.waitView("r", "watcher", "u0", "u1")
	deadline := time.Now().Add(5 * time.Second)
	for fmt.Sprint(trueOnline(t, nodes[1].url, "r")) != "[u0 u1 watcher]" {
		if time.Now().After(deadline) {
			t.Fatalf("sessions not put back: %v", trueOnline(t, nodes[1].url, "r"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("sessions back and watcher converged %v after the restart", time.Since(start))
	// Events flow again.
	clients[0].conn.Close(websocket.StatusNormalClosure, "")
	w.waitView("r", "watcher", "u1")
}

// TestResumeAfterAbruptDrop: a socket lost without a close frame keeps its
// session; the client resumes it on another node with no leave and no join.
func TestResumeAfterAbruptDrop(t *testing.T) {
	resumeAfterAbruptDrop(t, startNodes(t, redistest.Start(t), 3, nodeOpts{}))
}

func TestResumeAfterAbruptDropCluster(t *testing.T) {
	resumeAfterAbruptDrop(t, startNodes(t, nil, 3, nodeOpts{cluster: redistest.StartCluster(t)}))
}

func resumeAfterAbruptDrop(t *testing.T, nodes []*node) {
	w := dialWS(t, nodes[2].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher"})
	c := dialWS(t, nodes[0].url)
	c.join(1, map[string]any{"roomId": "r", "sessionId": "tab", "userId": "ada", "interval": 1000})
	w.waitView("r", "watcher", "ada")
	c.drop()
	time.Sleep(500 * time.Millisecond)
	c2 := dialWS(t, nodes[1].url)
	c2.join(1, map[string]any{"roomId": "r", "sessionId": "tab", "userId": "ada", "interval": 1000})
	time.Sleep(4 * time.Second) // longer than the 2.5 s timeout: node B keeps it alive
	if got := eventKinds(w.events("r")); got != "join:ada@2" {
		t.Fatalf("events: %s, want only ada's first join", got)
	}
	if got := fmt.Sprint(trueOnline(t, nodes[2].url, "r")); got != "[ada watcher]" {
		t.Fatalf("online: %s", got)
	}
}

// TestAbruptDropExpires: with no resume, the dropped session ends at its
// deadline (interval × 2.5 + reaper) with one leave.
func TestAbruptDropExpires(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	w := dialWS(t, nodes[1].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher"})
	c := dialWS(t, nodes[0].url)
	c.join(1, map[string]any{"roomId": "r", "sessionId": "tab", "userId": "ada", "interval": 1000})
	w.waitView("r", "watcher", "ada")
	dropped := time.Now()
	c.drop()
	w.waitView("r", "watcher")
	if d := time.Since(dropped); d > 2500*time.Millisecond+2*time.Second+time.Second {
		t.Fatalf("leave after %v", d)
	}
	if got := eventKinds(w.events("r")); got != "join:ada@2 leave:ada@3" {
		t.Fatalf("events: %s", got)
	}
}

// TestDrain: a node shutting down closes its sockets with 1012 and leaves
// their sessions to be resumed elsewhere: no leave, no join.
func TestDrain(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	w := dialWS(t, nodes[1].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher"})
	var clients []*wsClient
	for i := 0; i < 3; i++ {
		c := dialWS(t, nodes[0].url)
		c.join(1, map[string]any{"roomId": "r", "sessionId": fmt.Sprint("s", i), "userId": fmt.Sprint("u", i), "interval": 1000})
		clients = append(clients, c)
	}
	w.waitView("r", "watcher", "u0", "u1", "u2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	nodes[0].api.Drain(ctx)
	cancel()
	for _, c := range clients {
		deadline := time.Now().Add(3 * time.Second)
		for c.closeErr() == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if st := websocket.CloseStatus(c.closeErr()); st != websocket.StatusServiceRestart {
			t.Fatalf("close status %v (%v), want 1012", st, c.closeErr())
		}
	}
	if _, err := tryDialWS(t, nodes[0].url, true); err == nil {
		t.Fatal("a draining node accepted a socket")
	}
	if r := (&stack{t: t, url: nodes[0].url}).do("GET", "/readyz", nil); r.status != 503 {
		t.Fatalf("readyz of a draining node: %d", r.status)
	}
	for i := range clients {
		c := dialWS(t, nodes[1].url)
		c.join(1, map[string]any{"roomId": "r", "sessionId": fmt.Sprint("s", i), "userId": fmt.Sprint("u", i), "interval": 1000})
	}
	time.Sleep(3 * time.Second)
	if got := len(w.events("r")); got != 3 {
		t.Fatalf("events: %s, want the 3 first joins only", eventKinds(w.events("r")))
	}
	w.waitView("r", "watcher", "u0", "u1", "u2")
}

// TestSlowConsumer: a socket that does not read never blocks the node; its
// queue overflows, and it gets a sync once it reads again.
func TestSlowConsumer(t *testing.T) {
	srv := redistest.Start(t)
	// The slow socket stays unread for as long as the updates take (long
	// under -race on a busy machine): neither its writes nor the pings it
	// cannot answer meanwhile may drop it.
	// No storm coalescing: every update is a frame, and the queue overflows.
	nodes := startNodes(t, srv, 1, nodeOpts{queue: 8, roomFrames: 1 << 20, writeTimeout: 2 * time.Minute, pingInterval: 2 * time.Minute})
	n := nodes[0]
	fast := dialWS(t, n.url)
	fast.join(1, map[string]any{"roomId": "r", "sessionId": "f", "userId": "fast"})
	slow, err := tryDialWS(t, n.url, false)
	if err != nil {
		t.Fatal(err)
	}
	slow.send(map[string]any{"type": "join", "id": 1, "roomId": "r", "sessionId": "s", "userId": "slow"})
	time.Sleep(200 * time.Millisecond)
	s := &stack{t: t, url: n.url}
	s.mustBeat(map[string]any{"roomId": "r", "sessionId": "b", "userId": "big"})
	big := strings.Repeat("x", 4000)
	const updates = 1500
	for i := 0; i < updates; i++ {
		if r := s.do("PUT", "/v1/rooms/r/members/big/data", fmt.Sprintf(`{"n":%d,"pad":%q}`, i, big)); r.status != 204 {
			t.Fatalf("update %d: %d", i, r.status)
		}
	}
	// The node kept serving: the fast socket's view reaches the last state
	// (through events, or a sync if even it fell behind on a loaded machine).
	fast.waitFor("last update", func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m), fmt.Sprintf("n:%d ", updates-1))
	})
	fast.waitView("r", "big", "fast", "slow")
	close(slow.reading)
	slow.waitFor("sync", func(m map[string]any) bool { return m["type"] == "sync" })
	slow.waitFor("the last state", func(m map[string]any) bool {
		if m["type"] != "sync" && m["type"] != "presence" {
			return false
		}
		return strings.Contains(fmt.Sprint(m), fmt.Sprintf("n:%d ", updates-1))
	})
	slow.waitView("r", "big", "fast", "slow")
}

func TestRateLimitAndLimits(t *testing.T) {
	srv := redistest.Start(t)
	n := startNodes(t, srv, 1, nodeOpts{maxRooms: 2})[0]

	c := dialWS(t, n.url)
	c.send("not an object")
	c.send(map[string]any{"type": "dance", "id": 1})
	c.send(map[string]any{"type": "join", "id": 2, "roomId": 5})
	c.send(map[string]any{"type": "join", "id": 3, "roomId": "a{b", "sessionId": "s", "userId": "u"})
	c.send(map[string]any{"type": "ping", "id": map[string]any{}})
	c.send(map[string]any{"type": "leave", "id": 4, "roomId": "nowhere"})
	for _, id := range []any{float64(1), float64(2), float64(3), float64(4)} {
		if r := c.reply(id); r["type"] != "error" {
			t.Fatalf("reply %v = %v", id, r)
		}
	}
	if r := c.reply(float64(4)); r["code"] != "not_found" {
		t.Fatalf("leave of a room not joined: %v", r)
	}
	c.join(5, map[string]any{"roomId": "r1", "sessionId": "s1", "userId": "u"})
	c.join(6, map[string]any{"roomId": "r2", "sessionId": "s2", "userId": "u"})
	c.send(map[string]any{"type": "join", "id": 7, "roomId": "r3", "sessionId": "s3", "userId": "u"})
	if r := c.reply(float64(7)); r["code"] != "limit_exceeded" {
		t.Fatalf("third room: %v", r)
	}

	// A message over 16 KiB closes the socket (1009).
	big := dialWS(t, n.url)
	big.send(map[string]any{"type": "ping", "pad": strings.Repeat("x", 17<<10)})
	deadline := time.Now().Add(3 * time.Second)
	for big.closeErr() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := websocket.CloseStatus(big.closeErr()); st != websocket.StatusMessageTooBig {
		t.Fatalf("big message: close %v", st)
	}

	// Over 50 messages per second: rate_limited, then close 1008.
	r := dialWS(t, n.url)
	for i := 0; i < 120; i++ {
		b := []byte(fmt.Sprintf(`{"type":"ping","id":%d}`, i))
		if err := r.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
			break
		}
	}
	r.waitFor("rate_limited", func(m map[string]any) bool { return m["code"] == "rate_limited" })
	deadline = time.Now().Add(3 * time.Second)
	for r.closeErr() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := websocket.CloseStatus(r.closeErr()); st != websocket.StatusPolicyViolation {
		t.Fatalf("rate limit: close %v (%v)", st, r.closeErr())
	}
	// The node is fine.
	c.send(map[string]any{"type": "ping", "id": "after"})
	c.reply("after")
}

func TestWebSocketAuth(t *testing.T) {
	srv := redistest.Start(t)
	n := startNodes(t, srv, 1, nodeOpts{auth: true})[0]
	if _, err := tryDialWS(t, n.url, true); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("no token: %v", err)
	}
	tok := jwt(t, map[string]any{"sub": "ada", "org_id": "acme"})
	c := dialWS(t, n.url, "query: access_token="+tok)
	r := c.join(1, map[string]any{"roomId": "lobby", "sessionId": "s"})
	if !strings.Contains(fmt.Sprint(r["members"]), "userId:ada") {
		t.Fatalf("joined: %v", r)
	}
	c.send(map[string]any{"type": "join", "id": 2, "roomId": "lobby", "sessionId": "s2", "userId": "bob"})
	if r := c.reply(float64(2)); r["code"] != "permission_denied" {
		t.Fatalf("userId other than sub: %v", r)
	}
	c2 := dialWS(t, n.url, "Authorization: Bearer "+jwt(t, map[string]any{"sub": "eve", "org_id": "other"}))
	c2.join(1, map[string]any{"roomId": "lobby", "sessionId": "s"})
	time.Sleep(200 * time.Millisecond)
	if len(c.events("lobby")) != 0 || len(c2.events("lobby")) != 0 {
		t.Fatal("events crossed orgs")
	}
	// Browser origins: none are allowed with auth on and no CORS origins.
	if _, err := tryDialWS(t, n.url, true, "Authorization: Bearer "+tok, "Origin: https://evil.example"); err == nil {
		t.Fatal("a foreign origin was accepted")
	}
}

// TestEndedElsewhere: a sign-out over HTTP ends a socket's session; the
// node does not put it back, and tells the socket.
func TestEndedElsewhere(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	w := dialWS(t, nodes[1].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher"})
	c := dialWS(t, nodes[0].url)
	c.join(1, map[string]any{"roomId": "r", "sessionId": "s", "userId": "ada", "interval": 1000})
	w.waitView("r", "watcher", "ada")
	s := &stack{t: t, url: nodes[1].url}
	if r := s.do("POST", "/v1/signout?userId=ada", nil); r.status != 200 || r.json(t)["rooms"] != float64(1) {
		t.Fatalf("signout: %d %s", r.status, r.body)
	}
	w.waitView("r", "watcher")
	c.waitFor("left (ended)", func(m map[string]any) bool { return m["type"] == "left" && m["reason"] == "ended" })
	time.Sleep(2500 * time.Millisecond) // two keep-alive intervals: nothing comes back
	if got := fmt.Sprint(trueOnline(t, nodes[1].url, "r")); got != "[watcher]" {
		t.Fatalf("online after sign-out: %s", got)
	}
	if got := eventKinds(w.events("r")); got != "join:ada@2 leave:ada@3" {
		t.Fatalf("events: %s", got)
	}
	// The socket is still usable.
	c.join(2, map[string]any{"roomId": "r", "sessionId": "s2", "userId": "ada"})
	w.waitView("r", "watcher", "ada")
}

// TestRoomRemovedSyncsWatchers: removing a room sends its sockets a sync
// with no members.
func TestRoomRemovedSyncsWatchers(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	tok := httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "s", "userId": "ada"})["roomToken"]
	w.send(map[string]any{"type": "watch", "id": 1, "roomToken": tok})
	w.reply(float64(1))
	w.waitView("r", "ada")
	s := &stack{t: t, url: nodes[1].url}
	if r := s.do("DELETE", "/v1/rooms/r", nil); r.status != 204 {
		t.Fatalf("remove room: %d", r.status)
	}
	m := w.waitFor("sync", func(m map[string]any) bool { return m["type"] == "sync" })
	if len(m["members"].([]any)) != 0 || m["version"] != float64(2) {
		t.Fatalf("sync after removal: %v", m)
	}
}

// TestClusterSlotMoves: a room's slot migrates to another master while a
// watcher follows the room; the node follows the channel to its new master
// (Redis sends sunsubscribe) and the watcher keeps seeing the truth.
func TestClusterSlotMoves(t *testing.T) {
	cl := redistest.StartCluster(t)
	nodes := startNodes(t, nil, 2, nodeOpts{cluster: cl})
	w := dialWS(t, nodes[0].url)
	w.join(1, map[string]any{"roomId": "r", "sessionId": "w", "userId": "watcher"})
	httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "a", "userId": "ada"})
	w.waitView("r", "watcher", "ada")
	to := cl.MoveSlot(t, "{default::r}")
	t.Logf("slot of {default::r} moved to %s", to)
	w.waitFor("sync after the move", func(m map[string]any) bool { return m["type"] == "sync" })
	httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "b", "userId": "bob"})
	w.waitView("r", "watcher", "ada", "bob")
	// The session data moved too: a fresh list through the other node agrees.
	if got := fmt.Sprint(trueOnline(t, nodes[1].url, "r")); got != "[ada bob watcher]" {
		t.Fatalf("online after the move: %s", got)
	}
}

// TestIdleSocketsCostRedisNothing: sockets joined to rooms (interval 1 s),
// each watching 100 users, make no Redis call of their own while idle: over 3 s, 60 idle sockets
// cost a few lease renewals and reaper reads of the node, not a keep-alive
// per socket per interval (which would be 180 script calls).
func TestIdleSocketsCostRedisNothing(t *testing.T) {
	srv := redistest.Start(t)
	n := httpapitest.Start(t, httpapitest.Options{Redis: srv})
	var socks []*wsClient
	for i := 0; i < 60; i++ {
		c := dialWS(t, n.URL)
		c.join(1, map[string]any{"roomId": fmt.Sprint("r", i/2), "sessionId": fmt.Sprint("s", i), "userId": fmt.Sprint("u", i), "interval": 1000})
		// Each also watches 100 users (friends online): no more cost idle.
		var friends []string
		for j := 0; j < 100; j++ {
			friends = append(friends, fmt.Sprint("u", (i+j)%200))
		}
		watchUsers(t, c, 2, friends...)
		socks = append(socks, c)
	}
	rdb := srv.Client(t)
	calls := func() (scripts, all int64) {
		info, err := rdb.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") {
				continue
			}
			var n int64
			fmt.Sscanf(strings.TrimPrefix(rest, "calls="), "%d", &n)
			all += n
			if name == "cmdstat_evalsha" || name == "cmdstat_eval" {
				scripts += n
			}
		}
		return scripts, all
	}
	time.Sleep(500 * time.Millisecond) // let the joins' own calls finish
	s0, a0 := calls()
	time.Sleep(3 * time.Second)
	s1, a1 := calls()
	// A node renews its lease every 2.5 s / 4 here (about 5 script calls in
	// 3 s), and its reaper reads two keys every 50 ms (the tests' reap
	// interval: about 120 commands); none of it grows with the sockets.
	if s1-s0 > 20 || a1-a0 > 300 {
		t.Fatalf("60 idle sockets over 3 s cost %d script calls and %d commands in all", s1-s0, a1-a0)
	}
	t.Logf("60 idle sockets over 3 s: %d script calls, %d commands in all", s1-s0, a1-a0)
	for _, c := range socks {
		if c.closeErr() != nil {
			t.Fatalf("a socket closed: %v", c.closeErr())
		}
	}
}

// TestHeldSessionEndedByToken: a socket's session ended through its session
// token while its user stays online elsewhere (no leave event) is reported
// to the socket all the same ("ended" notice), and the node stops holding it.
func TestHeldSessionEndedByToken(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	c := dialWS(t, nodes[0].url)
	joined := c.join(1, map[string]any{"roomId": "r", "sessionId": "ws-tab", "userId": "ada"})
	httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "http-tab", "userId": "ada"})
	r, err := http.Post(nodes[1].url+"/v1/disconnect", "text/plain", strings.NewReader(joined["sessionToken"].(string)))
	if err != nil || r.StatusCode != 204 {
		t.Fatalf("disconnect: %v %v", r, err)
	}
	r.Body.Close()
	c.waitFor("left (ended)", func(m map[string]any) bool { return m["type"] == "left" && m["reason"] == "ended" })
	deadline := time.Now().Add(5 * time.Second)
	for nodes[0].api.KeptSessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the node still holds %d sessions", nodes[0].api.KeptSessions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := trueOnline(t, nodes[1].url, "r"); fmt.Sprint(got) != "[ada]" {
		t.Fatalf("online %v: ada has her HTTP session", got)
	}
}

// TestCloseWhileRedisPaused: sockets closed with a close frame while Redis
// takes no writes cannot end their sessions at once; the sessions then go
// to their ordinary deadline (the node retries until Redis answers) instead
// of staying held, online for good, by a node that let them go.
func TestCloseWhileRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	var socks []*wsClient
	for i := 0; i < 5; i++ {
		c := dialWS(t, nodes[0].url)
		c.join(1, map[string]any{"roomId": "r", "sessionId": fmt.Sprint("s", i), "userId": fmt.Sprint("u", i), "interval": 3000})
		socks = append(socks, c)
	}
	if got := trueOnline(t, nodes[1].url, "r"); len(got) != 5 {
		t.Fatalf("online %v", got)
	}
	rdb := srv.Client(t)
	if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", "6000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	for _, c := range socks {
		c.conn.Close(websocket.StatusNormalClosure, "bye")
	}
	// 6 s of pause + the sessions' timeout (3 s × 2.5) + the reaper.
	deadline := paused.Add(6*time.Second + 7500*time.Millisecond + 3*time.Second)
	for {
		got := trueOnline(t, nodes[1].url, "r")
		if len(got) == 0 {
			t.Logf("offline %v after the pause began", time.Since(paused).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still online %v after %v", got, time.Since(paused))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
