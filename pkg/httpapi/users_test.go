package httpapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/redistest"
)

// Users across rooms: GET /v1/users/{userId}/presence and the WebSocket
// watchUsers, on real Redis (and Cluster), real HTTP and WebSockets.

// userPresence asks a node for a user's org-wide state.
func userPresence(t testing.TB, base, user string, headers ...string) map[string]any {
	t.Helper()
	s := &stack{t: t.(*testing.T), url: base}
	user, query, _ := strings.Cut(user, "?")
	if query != "" {
		query = "?" + query
	}
	r := s.do("GET", "/v1/users/"+user+"/presence"+query, nil, headers...)
	if r.status != 200 {
		t.Fatalf("presence of %s: %d %s", user, r.status, r.body)
	}
	return r.json(t)
}

// userFrames returns the "user" frames a client got about user.
func (c *wsClient) userFrames(user string) []map[string]any {
	var out []map[string]any
	for _, m := range c.messages() {
		if m["type"] == "user" && m["userId"] == user {
			out = append(out, m)
		}
	}
	return out
}

// userView is what a client believes of user: its watchingUsers answers
// and user frames, applied in order.
func (c *wsClient) userView(user string) (online, known bool) {
	for _, m := range c.messages() {
		switch m["type"] {
		case "watchingUsers":
			for _, x := range m["users"].([]any) {
				u := x.(map[string]any)
				if u["userId"] == user {
					online, known = u["online"].(bool), true
				}
			}
		case "user":
			if m["userId"] == user {
				online, known = m["online"].(bool), true
			}
		}
	}
	return online, known
}

// waitUser polls until the client believes user is online (or not).
func (c *wsClient) waitUser(user string, want bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if on, ok := c.userView(user); ok && on == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s online=%v never seen; messages %v", user, want, c.messages())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkNoRepeat fails if a client got the same online state of a user
// twice in a row.
func checkNoRepeat(t *testing.T, c *wsClient, user string) {
	t.Helper()
	var last *bool
	for _, m := range c.messages() {
		var on bool
		switch {
		case m["type"] == "user" && m["userId"] == user:
			on = m["online"].(bool)
			if last != nil && *last == on {
				t.Fatalf("%s online=%v sent twice in a row: %v", user, on, c.messages())
			}
		case m["type"] == "watchingUsers":
			found := false
			for _, x := range m["users"].([]any) {
				if u := x.(map[string]any); u["userId"] == user {
					on, found = u["online"].(bool), true
				}
			}
			if !found {
				continue
			}
		default:
			continue
		}
		last = &on
	}
}

func watchUsers(t testing.TB, c *wsClient, id any, users ...string) map[string]any {
	t.Helper()
	if n, ok := id.(int); ok {
		id = float64(n) // as JSON reads it back
	}
	c.send(map[string]any{"type": "watchUsers", "id": id, "userIds": users})
	r := c.reply(id)
	if r["type"] != "watchingUsers" {
		t.Fatalf("watchUsers: %v", r)
	}
	return r
}

func TestUserPresenceHTTP(t *testing.T) {
	s := newStack(t, stackOpts{auth: true})
	ada, bob, eve := secBearer(t, "ada", "acme"), secBearer(t, "bob", "acme"), secBearer(t, "eve", "other")
	offline := func(m map[string]any) bool {
		return m["online"] == false && m["rooms"] == float64(0) && m["lastDisconnected"] == float64(0)
	}
	// Never seen: 200 and offline.
	if m := userPresence(t, s.url, "ada", bob); !offline(m) || m["userId"] != "ada" {
		t.Fatalf("never seen: %v", m)
	}
	_, s1 := s.mustBeat(map[string]any{"roomId": "r1", "sessionId": "a1"}, ada)
	_, s2 := s.mustBeat(map[string]any{"roomId": "r2", "sessionId": "a2"}, ada)
	s.mustBeat(map[string]any{"roomId": "r2", "sessionId": "a3"}, ada) // a second tab: one room
	if m := userPresence(t, s.url, "ada", bob); m["online"] != true || m["rooms"] != float64(2) || m["lastDisconnected"] != float64(0) {
		t.Fatalf("online in 2 rooms: %v", m)
	}
	// Another org sees exactly what it would of a user never seen.
	if m := userPresence(t, s.url, "ada", eve); !offline(m) {
		t.Fatalf("other org: %v", m)
	}
	if m := userPresence(t, s.url, "ada?org=other", secAdmin); !offline(m) {
		t.Fatalf("admin of the other org: %v", m)
	}
	if m := userPresence(t, s.url, "ada?org=acme", secAdmin); m["rooms"] != float64(2) {
		t.Fatalf("admin: %v", m)
	}
	s.do("POST", "/v1/disconnect", map[string]any{"sessionToken": s1})
	if m := userPresence(t, s.url, "ada", bob); m["online"] != true || m["rooms"] != float64(1) {
		t.Fatalf("online in 1 room: %v", m)
	}
	before := time.Now().UnixMilli()
	s.do("POST", "/v1/disconnect", map[string]any{"sessionToken": s2})
	if m := userPresence(t, s.url, "ada", bob); m["online"] != true {
		t.Fatalf("second tab still there: %v", m)
	}
	s.do("POST", "/v1/signout", nil, ada)
	m := userPresence(t, s.url, "ada", bob)
	if m["online"] != false || m["rooms"] != float64(0) || m["lastDisconnected"].(float64) < float64(before) {
		t.Fatalf("offline: %v", m)
	}
	// Bad input and no identity.
	if r := s.do("GET", "/v1/users/ada/presence", nil); r.status != 401 {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/v1/users/"+strings.Repeat("x", 257)+"/presence", nil, bob); r.status != 400 {
		t.Fatalf("long id: %d %s", r.status, r.body)
	}
}

// TestWatchUsersAcrossNodes: watchers on two nodes get each change of a
// user's org-wide online state once, whichever node the user is on.
func TestWatchUsersAcrossNodes(t *testing.T) {
	watchUsersAcrossNodes(t, startNodes(t, redistest.Start(t), 2, nodeOpts{}))
}

// TestWatchUsersAcrossNodesCluster: the same on a real Redis Cluster (the
// user's state in another slot than the rooms, sharded pub/sub).
func TestWatchUsersAcrossNodesCluster(t *testing.T) {
	watchUsersAcrossNodes(t, startNodes(t, nil, 2, nodeOpts{cluster: redistest.StartCluster(t)}))
}

func watchUsersAcrossNodes(t *testing.T, nodes []*node) {
	a, b := nodes[0], nodes[1]
	w1, w2 := dialWS(t, a.url), dialWS(t, b.url)
	for _, w := range []*wsClient{w1, w2} {
		r := watchUsers(t, w, 1, "ada", "bob", "ada")
		if len(r["users"].([]any)) != 3 {
			t.Fatalf("one entry per requested id: %v", r)
		}
	}
	ada := dialWS(t, b.url)
	ada.join(1, map[string]any{"roomId": "r1", "sessionId": "t1", "userId": "ada"})
	w1.waitUser("ada", true)
	w2.waitUser("ada", true)
	// A second room, over HTTP on the other node: still online, no event.
	httpBeat(t, a.url, map[string]any{"roomId": "r2", "sessionId": "h1", "userId": "ada"})
	if m := userPresence(t, a.url, "ada"); m["rooms"] != float64(2) {
		t.Fatalf("2 rooms: %v", m)
	}
	ada.send(map[string]any{"type": "leave", "id": 2, "roomId": "r1"})
	ada.reply(float64(2))
	s := &stack{t: t, url: a.url}
	s.do("POST", "/v1/signout?userId=ada", nil)
	w1.waitUser("ada", false)
	w2.waitUser("ada", false)
	for _, w := range []*wsClient{w1, w2} {
		if n := len(w.userFrames("ada")); n != 2 {
			t.Fatalf("want 2 user frames (online, offline), got %v", w.userFrames("ada"))
		}
		if f := w.userFrames("ada")[1]; f["lastDisconnected"].(float64) == 0 || f["rooms"] != float64(0) {
			t.Fatalf("offline frame: %v", f)
		}
		if len(w.userFrames("bob")) != 0 {
			t.Fatalf("bob never changed: %v", w.userFrames("bob"))
		}
	}
	// Unwatch: no more frames.
	w1.send(map[string]any{"type": "unwatchUsers", "id": "u", "userIds": []string{"ada"}})
	if r := w1.reply("u"); r["type"] != "unwatchedUsers" {
		t.Fatalf("unwatch: %v", r)
	}
	ada.join(3, map[string]any{"roomId": "r1", "sessionId": "t2", "userId": "ada"})
	w2.waitUser("ada", true)
	time.Sleep(200 * time.Millisecond) // nothing may come: a short look
	if n := len(w1.userFrames("ada")); n != 2 {
		t.Fatalf("unwatched user still sent: %v", w1.userFrames("ada"))
	}
}

// TestWatchUsersConcurrent: many parallel joins and leaves of one user over
// many rooms, from two nodes, end in the exact state, and watchers end
// there, never getting one state twice in a row.
func TestWatchUsersConcurrent(t *testing.T) {
	nodes := startNodes(t, redistest.Start(t), 2, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	w2 := dialWS(t, nodes[1].url)
	watchUsers(t, w, 1, "ada")
	watchUsers(t, w2, 1, "ada")
	const rooms = 16
	kept := make([]string, rooms) // per room, the session a round kept
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		keep := round%2 == 0 // even rounds end with rooms 0-7 online
		for i := 0; i < rooms; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := nodes[(i+round)%2].url
				s := &stack{t: t, url: base}
				for j := 0; j < 4; j++ {
					r := httpBeat(t, base, map[string]any{"roomId": fmt.Sprint("room", i), "sessionId": fmt.Sprint("s", i, "-", round, "-", j), "userId": "ada"})
					if j == 1 && kept[i] != "" { // the session the last round kept
						s.do("POST", "/v1/disconnect", map[string]any{"sessionToken": kept[i]})
						kept[i] = ""
					}
					if j < 3 || !keep || i >= rooms/2 {
						time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
						s.do("POST", "/v1/disconnect", map[string]any{"sessionToken": r["sessionToken"]})
					} else {
						kept[i] = r["sessionToken"].(string)
					}
				}
			}()
		}
		wg.Wait()
		want := 0
		if keep {
			want = rooms / 2
		}
		presencetest.Eventually(t, "the exact state", 10*time.Second, func() bool {
			m := userPresence(t, nodes[round%2].url, "ada")
			if m["rooms"] != float64(want) || m["online"] != (want > 0) {
				t.Logf("round %d: %v, want %d rooms", round, m, want)
				time.Sleep(100 * time.Millisecond)
				return false
			}
			return true
		})
		w.waitUser("ada", want > 0)
		w2.waitUser("ada", want > 0)
	}
	checkNoRepeat(t, w, "ada")
	checkNoRepeat(t, w2, "ada")
}

// TestWatchUsersReaped: an HTTP session that expires takes its user
// offline for watchers.
func TestWatchUsersReaped(t *testing.T) {
	nodes := startNodes(t, redistest.Start(t), 2, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	watchUsers(t, w, 1, "ada")
	httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "s", "userId": "ada", "interval": 1000})
	w.waitUser("ada", true)
	w.waitUser("ada", false) // 2.5 s later
	if m := userPresence(t, nodes[0].url, "ada"); m["online"] != false || m["lastDisconnected"].(float64) == 0 {
		t.Fatalf("after reaping: %v", m)
	}
}

// TestWatchUsersNodeDeath: a node holding a user's socket session dies
// (its lease lapses, nothing released): the session ends by the lease,
// and watchers on another node see the user offline.
func TestWatchUsersNodeDeath(t *testing.T) {
	nodes := httpapitest.StartMany(t, 2, httpapitest.Options{Redis: redistest.Start(t)})
	w := dialWS(t, nodes[0].URL)
	watchUsers(t, w, 1, "ada")
	ada := dialWS(t, nodes[1].URL)
	ada.join(1, map[string]any{"roomId": "r", "sessionId": "s", "userId": "ada", "interval": 1000})
	w.waitUser("ada", true)
	// The node "dies": it stops renewing its lease and never ends or
	// releases its sessions.
	nodes[1].Realtime.Close()
	start := time.Now()
	w.waitUser("ada", false)
	t.Logf("offline %v after the node stopped", time.Since(start))
	checkNoRepeat(t, w, "ada")
}

// TestWatchUsersDataLoss: Redis loses its data (FLUSHALL, then a restart):
// the watchers converge to the truth: socket sessions come back (put back by
// their node), HTTP sessions that do not heartbeat again are gone.
func TestWatchUsersDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	w.join(1, map[string]any{"roomId": "r0", "sessionId": "w", "userId": "watcher", "interval": 1000})
	watchUsers(t, w, 2, "ada", "bob")
	ada := dialWS(t, nodes[1].url)
	ada.join(1, map[string]any{"roomId": "r", "sessionId": "s", "userId": "ada", "interval": 1000})
	httpBeat(t, nodes[1].url, map[string]any{"roomId": "r", "sessionId": "b", "userId": "bob", "interval": 600000})
	w.waitUser("ada", true)
	w.waitUser("bob", true)
	if err := srv.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	w.waitUser("bob", false)
	presencetest.Eventually(t, "ada back", 10*time.Second, func() bool {
		return userPresence(t, nodes[0].url, "ada")["online"] == true
	})
	w.waitUser("ada", true)
	srv.Restart(t)
	presencetest.Eventually(t, "ada back after the restart", 15*time.Second, func() bool {
		return userPresence(t, nodes[0].url, "ada")["online"] == true
	})
	// Events flow again after the restart.
	ada.conn.Close(websocket.StatusNormalClosure, "")
	w.waitUser("ada", false)
	checkNoRepeat(t, w, "ada")
}

// TestWatchUsersLimitAndInput: at most 1000 users per socket, counted
// across messages; more is limit_exceeded and changes nothing; bad input
// is an error frame.
func TestWatchUsersLimitAndInput(t *testing.T) {
	nodes := startNodes(t, redistest.Start(t), 1, nodeOpts{})
	w := dialWS(t, nodes[0].url)
	ids := func(from, n int) []string {
		var out []string
		for i := from; i < from+n; i++ {
			out = append(out, fmt.Sprint("u", i))
		}
		return out
	}
	watchUsers(t, w, 1, ids(0, 600)...)
	watchUsers(t, w, 2, ids(0, 10)...) // already watched: counted once
	w.send(map[string]any{"type": "watchUsers", "id": 3, "userIds": ids(600, 401)})
	if r := w.reply(float64(3)); r["type"] != "error" || r["code"] != "limit_exceeded" {
		t.Fatalf("over the limit: %v", r)
	}
	// Nothing changed: u600 is not watched, and 400 more still fit.
	httpBeat(t, nodes[0].url, map[string]any{"roomId": "r", "sessionId": "s", "userId": "u600"})
	watchUsers(t, w, 4, ids(600, 400)...)
	w.send(map[string]any{"type": "watchUsers", "id": 5, "userIds": []string{"one-too-many"}})
	if r := w.reply(float64(5)); r["code"] != "limit_exceeded" {
		t.Fatalf("1001st: %v", r)
	}
	if len(w.userFrames("u600")) != 0 {
		t.Fatalf("u600 was not watched when it joined: %v", w.userFrames("u600"))
	}
	for i, bad := range []string{
		`{"type":"watchUsers","id":10,"userIds":"ada"}`,
		`{"type":"watchUsers","id":11,"userIds":[]}`,
		`{"type":"watchUsers","id":12}`,
		`{"type":"watchUsers","id":13,"userIds":["a\u0000b"]}`,
		`{"type":"watchUsers","id":14,"userIds":[1]}`,
		`{"type":"unwatchUsers","id":15}`,
	} {
		if err := w.conn.Write(context.Background(), websocket.MessageText, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if r := w.reply(float64(10 + i)); r["type"] != "error" || r["code"] != "invalid_argument" {
			t.Fatalf("%s: %v", bad, r)
		}
	}
	// The socket still works.
	w.send(map[string]any{"type": "ping", "id": "p"})
	w.reply("p")
}

// TestWatchUsersOrgIsolation: a socket of another org watching the same
// user id sees a user never seen, and none of its changes.
func TestWatchUsersOrgIsolation(t *testing.T) {
	nodes := startNodes(t, redistest.Start(t), 2, nodeOpts{auth: true})
	acme := dialWS(t, nodes[0].url, secBearer(t, "bob", "acme"))
	other := dialWS(t, nodes[0].url, secBearer(t, "eve", "other"))
	watchUsers(t, acme, 1, "ada")
	watchUsers(t, other, 1, "ada")
	ada := dialWS(t, nodes[1].url, secBearer(t, "ada", "acme"))
	ada.join(1, map[string]any{"roomId": "r", "sessionId": "s"})
	acme.waitUser("ada", true)
	r := watchUsers(t, other, 2, "ada")
	if u := r["users"].([]any)[0].(map[string]any); u["online"] != false || u["rooms"] != float64(0) {
		t.Fatalf("other org sees ada: %v", u)
	}
	time.Sleep(200 * time.Millisecond) // nothing may come: a short look
	if len(other.userFrames("ada")) != 0 {
		t.Fatalf("other org got ada's change: %v", other.messages())
	}
}
