package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

// node is one presence node (store, subscriber, hub) on a shared Redis,
// auth off.
type node struct {
	url string
	api *httpapi.Server
}

// startNodes starts n nodes on one Redis and key prefix.
func startNodes(t *testing.T, srv *redistest.Server, n int) []*node {
	t.Helper()
	return startNodesWith(t, n, httpapitest.Options{Redis: srv})
}

// startNodesWith starts n nodes with o (quiet) on one Redis and key prefix.
func startNodesWith(t *testing.T, n int, o httpapitest.Options) []*node {
	t.Helper()
	o.Quiet = true
	var nodes []*node
	for _, tn := range httpapitest.StartMany(t, n, o) {
		nodes = append(nodes, &node{url: tn.URL, api: tn.API})
	}
	return nodes
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls f until it returns nil (10 s at most).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dial(t *testing.T, cfg client.ConnConfig) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx(t), cfg)
	if err != nil {
		t.Fatalf("dial %v: %v", cfg.URLs, err)
	}
	t.Cleanup(func() { c.Abandon() })
	return c
}

func mustJoin(t *testing.T, c *client.Conn, room, session string, interval time.Duration, data string) *client.Joined {
	t.Helper()
	var d json.RawMessage
	if data != "" {
		d = json.RawMessage(data)
	}
	j, err := c.Join(ctx(t), room, session, interval, d)
	if err != nil {
		t.Fatalf("join %s/%s: %v", room, session, err)
	}
	return j
}

// wantError checks that err is a *client.Error with this code and status.
func wantError(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v (%T), want a *client.Error %s", what, err, err, code)
	}
	if e.Code != code || e.Status != status || e.Message == "" {
		t.Fatalf("%s: %+v, want code %s status %d and a message", what, e, code, status)
	}
}

// listString renders a list with everything a member shows.
func listString(l *presence.RoomList) string {
	if l == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%d:", l.RoomID, l.Version)
	for _, m := range l.Members {
		var data bytes.Buffer
		if len(m.Data) > 0 {
			json.Compact(&data, m.Data)
		}
		fmt.Fprintf(&b, " {%s on=%v ld=%d s=%d d=%s n=%q i=%q}", m.UserID, m.Online, m.LastDisconnected, m.Sessions, data.String(), m.Name, m.Image)
	}
	return b.String()
}

func userIDs(l *presence.RoomList) string {
	var ids []string
	for _, m := range l.Members {
		s := m.UserID
		if !m.Online {
			s += "(off)"
		}
		ids = append(ids, s)
	}
	return strings.Join(ids, " ")
}

// viewIsTruth reports whether conn's view of room equals the room's list.
func viewIsTruth(hc *client.Client, conn *client.Conn, room string) error {
	truth, err := hc.Members(context.Background(), room, false, 1000)
	if err != nil {
		return err
	}
	if got, want := listString(conn.View(room)), listString(truth); got != want {
		return fmt.Errorf("view  %s\n truth %s", got, want)
	}
	return nil
}

// recorder keeps the presence events a Conn receives.
type recorder struct {
	mu  sync.Mutex
	evs []client.Event
}

func (r *recorder) on(e client.Event) {
	if e.Type == "presence" {
		r.mu.Lock()
		r.evs = append(r.evs, e)
		r.mu.Unlock()
	}
}

func (r *recorder) kinds() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.evs {
		s = append(s, fmt.Sprintf("%s:%s@%d", e.Event, e.Member.UserID, e.Version))
	}
	return strings.Join(s, " ")
}

// watcher dials a Conn on base that watches room (through its room token)
// and records its events.
func watcher(t *testing.T, base, roomToken string) (*client.Conn, *recorder) {
	t.Helper()
	rec := &recorder{}
	w := dial(t, client.ConnConfig{URLs: []string{base}, OnEvent: rec.on})
	if _, err := w.Watch(ctx(t), roomToken); err != nil {
		t.Fatalf("watch: %v", err)
	}
	return w, rec
}

func onlineIn(hc *client.Client, room string) (string, error) {
	l, err := hc.Members(context.Background(), room, true, 0)
	if err != nil {
		return "", err
	}
	return userIDs(l), nil
}

func TestHTTPClient(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	n := startNodes(t, srv, 1)[0]
	c := &client.Client{BaseURL: n.url + "/"}
	room := "docs/a b?#%+é"

	ada, err := c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "tab-1", UserID: "ada",
		Name: "Ada", Image: "https://img/ada", Interval: 30 * time.Second, Data: json.RawMessage(`{"s": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ada.RoomToken == "" || ada.SessionToken == "" || ada.Interval != 30*time.Second {
		t.Fatalf("heartbeat: %+v", ada)
	}
	grace, err := c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "phone", UserID: "grace"})
	if err != nil {
		t.Fatal(err)
	}
	if grace.RoomToken != ada.RoomToken || grace.Interval != 10*time.Second {
		t.Fatalf("second heartbeat: %+v (room token %s)", grace, ada.RoomToken)
	}

	l, err := c.List(ctx(t), ada.RoomToken, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := room + "@2: {ada on=true ld=0 s=1 d={\"s\":1} n=\"Ada\" i=\"https://img/ada\"} {grace on=true ld=0 s=1 d= n=\"\" i=\"\"}"
	if got := listString(l); got != want {
		t.Fatalf("list:\n got %s\nwant %s", got, want)
	}
	if l, err := c.List(ctx(t), ada.RoomToken, 1); err != nil || userIDs(l) != "ada" {
		t.Fatalf("list limit 1: %v %v", l, err)
	}
	m, err := c.Members(ctx(t), room, false, 0)
	if err != nil || listString(m) != want {
		t.Fatalf("members: %s %v", listString(m), err)
	}
	cnt, err := c.Count(ctx(t), room)
	if err != nil || *cnt != (presence.RoomCount{RoomID: room, Version: 2, Online: 2, Sessions: 2}) {
		t.Fatalf("count: %+v %v", cnt, err)
	}

	if err := c.SetData(ctx(t), room, "grace", json.RawMessage(`{"x":[2]}`)); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Members(ctx(t), room, false, 0); string(m.Members[1].Data) != `{"x":[2]}` || m.Version != 3 {
		t.Fatalf("after set data: %s", listString(m))
	}
	if err := c.SetData(ctx(t), room, "grace", nil); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Members(ctx(t), room, false, 0); m.Members[1].Data != nil {
		t.Fatalf("nil data should clear: %s", listString(m))
	}
	wantError(t, "set data of a non-member", c.SetData(ctx(t), room, "nobody", json.RawMessage(`1`)), "not_found", 404)

	rooms, err := c.UserRooms(ctx(t), "ada", false)
	if err != nil || len(rooms) != 1 || rooms[0] != (presence.UserRoom{RoomID: room, Online: true}) {
		t.Fatalf("user rooms: %+v %v", rooms, err)
	}

	if err := c.Disconnect(ctx(t), ada.SessionToken); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(ctx(t), ada.SessionToken); err != nil {
		t.Fatalf("disconnect is idempotent: %v", err)
	}
	if on, _ := onlineIn(c, room); on != "grace" {
		t.Fatalf("online after disconnect: %s", on)
	}
	if m, _ := c.Members(ctx(t), room, false, 0); userIDs(m) != "grace ada(off)" || m.Members[1].LastDisconnected == 0 {
		t.Fatalf("members after disconnect: %s", listString(m))
	}
	if rooms, err := c.UserRooms(ctx(t), "ada", true); err != nil || len(rooms) != 0 {
		t.Fatalf("ada's online rooms: %+v %v", rooms, err)
	}
	wantError(t, "disconnect with a forged token", c.Disconnect(ctx(t), "garbage"), "invalid_argument", 400)

	if n, err := c.SignOut(ctx(t), "grace", false); err != nil || n != 1 {
		t.Fatalf("sign-out: %d %v", n, err)
	}
	if cnt, _ := c.Count(ctx(t), room); cnt.Online != 0 || cnt.Sessions != 0 {
		t.Fatalf("count after sign-out: %+v", cnt)
	}
	if n, err := c.SignOut(ctx(t), "grace", true); err != nil || n != 1 {
		t.Fatalf("sign-out with forget: %d %v", n, err)
	}
	if err := c.RemoveMember(ctx(t), room, "ada"); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Members(ctx(t), room, false, 0); len(m.Members) != 0 {
		t.Fatalf("members after removals: %s", listString(m))
	}

	// Errors become *client.Error.
	_, err = c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "s", UserID: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "s", UserID: "bob"})
	wantError(t, "another user's sessionId", err, "conflict", 409)
	_, err = c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "s2", UserID: "bob", Interval: 500 * time.Millisecond})
	wantError(t, "interval too short", err, "invalid_argument", 400)
	_, err = c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "s2", UserID: "bob", Data: json.RawMessage(`"` + strings.Repeat("x", 5000) + `"`)})
	wantError(t, "data too large", err, "payload_too_large", 413)
	_, err = c.List(ctx(t), "garbage", 0)
	wantError(t, "list with a forged token", err, "invalid_argument", 400)
	_, err = c.Members(ctx(t), room, false, 1001)
	wantError(t, "limit over 1000", err, "invalid_argument", 400)

	// Removing the room: old tokens list nothing, a new heartbeat gets a new token.
	if err := c.RemoveRoom(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	if l, err := c.List(ctx(t), ada.RoomToken, 0); err != nil || len(l.Members) != 0 {
		t.Fatalf("old token after removal: %v %v", l, err)
	}
	if cnt, err := c.Count(ctx(t), "never-used"); err != nil || *cnt != (presence.RoomCount{RoomID: "never-used"}) {
		t.Fatalf("count of an unknown room: %+v %v", cnt, err)
	}
	again, err := c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "s", UserID: "carol"})
	if err != nil || again.RoomToken == ada.RoomToken {
		t.Fatalf("heartbeat after removal: %+v %v", again, err)
	}

	// An answer that is not the contract's error JSON still is an *Error.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer proxy.Close()
	_, err = (&client.Client{BaseURL: proxy.URL}).Count(ctx(t), "r")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "" || e.Message != "bad gateway" {
		t.Fatalf("non-JSON error: %#v", err)
	}
}

// TestConnAcrossNodes: joins, updates, leaves and watches over two nodes,
// mixed with HTTP changes; every Conn's View converges to the room's list
// (order, versions, data, lastDisconnected), and refusals are *client.Error.
func TestConnAcrossNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Every event one by one: a burst of ten changes must not be
	// coalesced into batches (TestStormView is the Conn under coalescing).
	nodes := startNodesWith(t, 2, httpapitest.Options{Redis: srv, RoomFrames: 1000})
	hc := &client.Client{BaseURL: nodes[0].url}
	const room = "r/1"
	converged := func(conns ...*client.Conn) {
		t.Helper()
		for _, c := range conns {
			eventually(t, "view converges", func() error { return viewIsTruth(hc, c, room) })
		}
	}

	ada := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "ada", Name: "Ada"})
	j := mustJoin(t, ada, room, "a1", 0, `{"v":1}`)
	if j.RoomID != room || j.RoomToken == "" || j.SessionToken == "" || j.Version != 1 || len(j.Members) != 1 || j.Members[0].Name != "Ada" {
		t.Fatalf("joined: %+v", j)
	}
	if err := viewIsTruth(hc, ada, room); err != nil {
		t.Fatalf("view right after Join: %v", err)
	}
	bob := dial(t, client.ConnConfig{URLs: []string{nodes[1].url}, UserID: "bob"})
	mustJoin(t, bob, room, "b1", 5*time.Second, "")
	rec := &recorder{}
	w := dial(t, client.ConnConfig{URLs: []string{nodes[1].url}, OnEvent: rec.on})
	wj, err := w.Watch(ctx(t), j.RoomToken)
	if err != nil || wj.RoomID != room || wj.Version != 2 || wj.RoomToken != j.RoomToken || wj.SessionToken != "" {
		t.Fatalf("watching: %+v %v", wj, err)
	}
	converged(ada, bob, w)

	// HTTP changes and Conn changes, through both nodes.
	if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "c1", UserID: "carol", Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := ada.Update(ctx(t), room, json.RawMessage(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := bob.Leave(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	if v := bob.View(room); v != nil {
		t.Fatalf("bob's view after leaving: %s", listString(v))
	}
	converged(ada, w)
	if got := userIDs(w.View(room)); got != "ada carol bob(off)" {
		t.Fatalf("order after bob left: %s", got)
	}
	mustJoin(t, bob, room, "b1", 0, `"back"`)
	converged(ada, bob, w)
	if got := userIDs(w.View(room)); got != "ada carol bob" {
		t.Fatalf("order after bob came back (last online): %s", got)
	}
	if err := (&client.Client{BaseURL: nodes[1].url}).SetData(ctx(t), room, "carol", json.RawMessage(`[1,2]`)); err != nil {
		t.Fatal(err)
	}
	dave, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "d1", UserID: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hc.Disconnect(ctx(t), dave.SessionToken); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // dave and erin disconnect in different milliseconds
	if err := hc.RemoveMember(ctx(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.SignOut(ctx(t), "erin", false); err != nil { // not a member: nothing
		t.Fatal(err)
	}
	erin, _ := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "e1", UserID: "erin"})
	hc.Disconnect(ctx(t), erin.SessionToken)
	converged(ada, bob, w)
	if got := userIDs(w.View(room)); got != "ada bob erin(off) dave(off)" {
		t.Fatalf("final order: %s", got)
	}
	if got := rec.kinds(); got != "join:carol@3 update:ada@4 leave:bob@5 join:bob@6 update:carol@7 join:dave@8 leave:dave@9 remove:carol@10 join:erin@11 leave:erin@12" {
		t.Fatalf("watcher's events: %s", got)
	}

	// Refusals.
	_, err = dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "eve"}).Join(ctx(t), room, "a1", 0, nil)
	wantError(t, "join with ada's sessionId", err, "conflict", 0)
	wantError(t, "update of a room not joined", ada.Update(ctx(t), "elsewhere", json.RawMessage(`1`)), "not_found", 0)
	_, err = w.Watch(ctx(t), "garbage")
	wantError(t, "watch with a forged token", err, "invalid_argument", 0)
	_, err = ada.Join(ctx(t), room, "a2", 100*time.Millisecond, nil)
	wantError(t, "join with a bad interval", err, "invalid_argument", 0)
	if err := viewIsTruth(hc, ada, room); err != nil {
		t.Fatalf("a refused join changed the view: %v", err)
	}

	if err := ada.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := w.Unwatch(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	if v := w.View(room); v != nil {
		t.Fatalf("view after unwatch: %s", listString(v))
	}
	wantError(t, "unwatch again", w.Unwatch(ctx(t), room), "not_found", 0)
	wantError(t, "leave a room not joined", w.Leave(ctx(t), room), "not_found", 0)

	s := w.Stats()
	if !s.Connected || s.URL != nodes[1].url || s.Events != 10 || s.Errors != 3 || s.Reconnects != 0 {
		t.Fatalf("watcher stats: %+v", s)
	}
	if s := ada.Stats(); s.Errors != 2 || s.Events != 11 {
		t.Fatalf("ada's stats: %+v", s)
	}
}

// TestReconnectAfterDrop: a dropped connection is resumed on the next node
// with the same sessionId and the latest data: a watcher elsewhere sees no
// leave and no join, and the view is the new snapshot.
func TestReconnectAfterDrop(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 3)
	hc := &client.Client{BaseURL: nodes[2].url}
	const room = "r"

	ada := dial(t, client.ConnConfig{URLs: []string{nodes[0].url, nodes[1].url}, UserID: "ada", Reconnect: true})
	j := mustJoin(t, ada, room, "tab", time.Second, `{"k":"v"}`)
	w, rec := watcher(t, nodes[2].url, j.RoomToken)
	if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: room, SessionID: "g", UserID: "grace", Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ada sees grace", func() error { return viewIsTruth(hc, ada, room) })

	ada.DropConnection()
	eventually(t, "reconnect to node 1", func() error {
		if s := ada.Stats(); s.Reconnects != 1 || !s.Connected || s.URL != nodes[1].url {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	// Same sessionId: one session, not two (the old one would live 2.5 s).
	if c, _ := hc.Count(ctx(t), room); c.Sessions != 2 || c.Online != 2 {
		t.Fatalf("count after reconnect: %+v", c)
	}
	if err := viewIsTruth(hc, ada, room); err != nil {
		t.Fatalf("view after reconnect: %v", err)
	}
	// A change while ada was away reaches ada's new socket.
	if err := hc.SetData(ctx(t), room, "grace", json.RawMessage(`"busy"`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ada's view after reconnect", func() error { return viewIsTruth(hc, ada, room) })

	// New data, then a second drop: back to node 0, with the new data.
	if err := ada.Update(ctx(t), room, json.RawMessage(`{"k":"w"}`)); err != nil {
		t.Fatal(err)
	}
	ada.DropConnection()
	eventually(t, "reconnect to node 0", func() error {
		if s := ada.Stats(); s.Reconnects != 2 || !s.Connected || s.URL != nodes[0].url {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	time.Sleep(3500 * time.Millisecond) // past the 2.5 s timeout: the new node keeps the session
	if got := rec.kinds(); got != "join:grace@2 update:grace@3 update:ada@4" {
		t.Fatalf("watcher's events: %s (no leave or join of ada expected)", got)
	}
	l, _ := hc.Members(ctx(t), room, false, 0)
	if got := listString(l); got != `r@4: {ada on=true ld=0 s=1 d={"k":"w"} n="" i=""} {grace on=true ld=0 s=1 d="busy" n="" i=""}` {
		t.Fatalf("room after the drops: %s", got)
	}
	if err := viewIsTruth(hc, ada, room); err != nil {
		t.Fatal(err)
	}
	if err := viewIsTruth(hc, w, room); err != nil {
		t.Fatal(err)
	}
}

// TestReconnectAfterDrain: a draining node closes with 1012; the Conn moves
// to the other node and resumes silently. A Conn without Reconnect ends,
// with the close code in Err.
func TestReconnectAfterDrain(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2)
	hc := &client.Client{BaseURL: nodes[1].url}
	const room = "r"

	ada := dial(t, client.ConnConfig{URLs: []string{nodes[0].url, nodes[1].url}, UserID: "ada", Reconnect: true})
	j := mustJoin(t, ada, room, "tab", time.Second, `1`)
	bob := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "bob"})
	mustJoin(t, bob, room, "tab-b", time.Minute, "")
	w, rec := watcher(t, nodes[1].url, j.RoomToken)
	eventually(t, "watcher sees ada and bob", func() error { return viewIsTruth(hc, w, room) })

	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	nodes[0].api.Drain(dctx)
	cancel()
	eventually(t, "reconnect to node 1", func() error {
		if s := ada.Stats(); s.Reconnects != 1 || !s.Connected || s.URL != nodes[1].url {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	select {
	case <-bob.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bob's Conn (no Reconnect) did not end")
	}
	if st := websocket.CloseStatus(bob.Err()); st != websocket.StatusServiceRestart {
		t.Fatalf("bob's end: %v (status %d), want 1012", bob.Err(), st)
	}
	if _, err := bob.Join(ctx(t), room, "x", 0, nil); err == nil || err != bob.Err() {
		t.Fatalf("join on an ended Conn: %v", err)
	}
	time.Sleep(3500 * time.Millisecond) // past ada's 2.5 s timeout
	if got := rec.kinds(); got != "" {
		t.Fatalf("watcher's events: %s, want none", got)
	}
	if c, _ := hc.Count(ctx(t), room); c.Sessions != 2 || c.Online != 2 {
		t.Fatalf("count after the drain: %+v", c)
	}
	if err := viewIsTruth(hc, ada, room); err != nil {
		t.Fatal(err)
	}
}

// TestAbandonExpires: Abandon sends no close frame: the session outlives
// the socket, then expires at its deadline (interval × 2.5 + reaper).
func TestAbandonExpires(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2)
	hc := &client.Client{BaseURL: nodes[1].url}
	ada := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "ada", Reconnect: true})
	j := mustJoin(t, ada, "r", "tab", time.Second, "")
	_, rec := watcher(t, nodes[1].url, j.RoomToken)

	start := time.Now()
	ada.Abandon()
	if err := ada.Err(); err != client.ErrClosed {
		t.Fatalf("Err after Abandon: %v", err)
	}
	if err := ada.Ping(ctx(t)); err != client.ErrClosed {
		t.Fatalf("ping after Abandon: %v", err)
	}
	time.Sleep(time.Second)
	if on, _ := onlineIn(hc, "r"); on != "ada" {
		t.Fatalf("online 1 s after Abandon: %q (the session should outlive the socket)", on)
	}
	eventually(t, "ada goes offline", func() error {
		if on, err := onlineIn(hc, "r"); err != nil || on != "" {
			return fmt.Errorf("online %q %v", on, err)
		}
		return nil
	})
	if d := time.Since(start); d > 2500*time.Millisecond+2*time.Second {
		t.Fatalf("offline after %v", d)
	}
	eventually(t, "watcher sees the leave", func() error {
		if got := rec.kinds(); got != "leave:ada@2" {
			return fmt.Errorf("events %q", got)
		}
		return nil
	})
	if s := ada.Stats(); s.Reconnects != 0 || s.Connected {
		t.Fatalf("stats after Abandon: %+v", s)
	}
}

// TestCloseLeavesAtOnce: Close sends a close frame, which ends the session
// now (its timeout is 25 s); while reconnecting, Close ends the sessions
// over HTTP instead.
func TestCloseLeavesAtOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2)
	hc := &client.Client{BaseURL: nodes[1].url}
	ada := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "ada", Reconnect: true})
	j := mustJoin(t, ada, "r", "tab", 10*time.Second, "")
	_, rec := watcher(t, nodes[1].url, j.RoomToken)

	start := time.Now()
	if err := ada.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "leave", func() error {
		if got := rec.kinds(); got != "leave:ada@2" {
			return fmt.Errorf("events %q", got)
		}
		return nil
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("leave after %v", d)
	}
	if err := ada.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := ada.Join(ctx(t), "r", "tab", 0, nil); err != client.ErrClosed {
		t.Fatalf("join after Close: %v", err)
	}

	// Its only node drains: the Conn keeps trying to reconnect (503); Close
	// then ends the session through POST /v1/disconnect.
	bob := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "bob", Reconnect: true})
	mustJoin(t, bob, "r", "tab-b", 10*time.Second, "")
	eventually(t, "bob online", func() error {
		if on, _ := onlineIn(hc, "r"); on != "bob" {
			return fmt.Errorf("online %q", on)
		}
		return nil
	})
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	nodes[0].api.Drain(dctx)
	cancel()
	eventually(t, "bob disconnected", func() error {
		if s := bob.Stats(); s.Connected {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // a few refused reconnects
	if on, _ := onlineIn(hc, "r"); on != "bob" {
		t.Fatalf("online during the drain: %q", on)
	}
	start = time.Now()
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	if on, _ := onlineIn(hc, "r"); on != "" || time.Since(start) > 2*time.Second {
		t.Fatalf("online after Close: %q (after %v)", on, time.Since(start))
	}
	if s := bob.Stats(); s.Reconnects != 0 {
		t.Fatalf("bob reconnected to a draining node: %+v", s)
	}
}

// TestEndedElsewhere: a session ended by someone else (sign-out) is not
// rejoined after a reconnect; the rooms still used are.
func TestEndedElsewhere(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2)
	hc := &client.Client{BaseURL: nodes[1].url}
	ada := dial(t, client.ConnConfig{URLs: []string{nodes[0].url, nodes[1].url}, UserID: "ada", Reconnect: true})
	mustJoin(t, ada, "a", "tab", time.Second, "")
	j := mustJoin(t, ada, "b", "tab", time.Second, "")
	grace, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "c", SessionID: "g", UserID: "grace", Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ada.Watch(ctx(t), grace.RoomToken); err != nil {
		t.Fatal(err)
	}
	if err := hc.RemoveMember(ctx(t), "a", "ada"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "view of room a dropped", func() error {
		if v := ada.View("a"); v != nil {
			return fmt.Errorf("view %s", listString(v))
		}
		return nil
	})
	ada.DropConnection()
	eventually(t, "reconnect", func() error {
		if s := ada.Stats(); s.Reconnects != 1 || !s.Connected {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	if on, _ := onlineIn(hc, "a"); on != "" {
		t.Fatalf("room a after the reconnect: online %q", on)
	}
	if on, _ := onlineIn(hc, "b"); on != "ada" {
		t.Fatalf("room b after the reconnect: online %q", on)
	}
	if ada.View("a") != nil || ada.View("b") == nil || ada.View("b").Version != j.Version {
		t.Fatalf("views: a %s, b %s", listString(ada.View("a")), listString(ada.View("b")))
	}
	// The watch is restored too: a change of room c reaches the view.
	if err := hc.SetData(ctx(t), "c", "grace", json.RawMessage(`2`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "view of the watched room", func() error { return viewIsTruth(hc, ada, "c") })
	if v := ada.View("c"); v.Version != 2 {
		t.Fatalf("watched view: %s", listString(v))
	}
}

// scriptedConn dials a Conn to a scripted server (the real one never sends
// stale or early events) and joins room "r": the server answers the join
// with a snapshot at version 5 (ada online, bob offline since 100), and the
// i-th ping with the frames of steps[i], then the pong.
func scriptedConn(t *testing.T, cfg client.ConnConfig, steps ...[]string) *client.Conn {
	t.Helper()
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		step := 0
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var m struct {
				Type string          `json:"type"`
				ID   json.RawMessage `json:"id"`
			}
			json.Unmarshal(b, &m)
			var out []string
			switch m.Type {
			case "join":
				out = append(out, `{"type":"joined","id":`+string(m.ID)+`,"roomId":"r","roomToken":"rt","sessionToken":"st","version":5,`+
					`"members":[{"userId":"ada","online":true,"sessions":1},{"userId":"bob","online":false,"lastDisconnected":100,"sessions":0}]}`)
			case "ping":
				out = append(out, steps[step]...)
				step++
				out = append(out, `{"type":"pong","id":`+string(m.ID)+`}`)
			}
			for _, o := range out {
				if err := ws.Write(context.Background(), websocket.MessageText, []byte(o)); err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(fake.Close)
	cfg.URLs = []string{fake.URL}
	c := dial(t, cfg)
	if j := mustJoin(t, c, "r", "s", 0, ""); j.Version != 5 || len(j.Members) != 2 || j.RoomToken != "rt" || j.SessionToken != "st" {
		t.Fatalf("joined: %+v", j)
	}
	return c
}

// wantViews pings once per step of the script and checks the view of room
// "r" after each.
func wantViews(t *testing.T, c *client.Conn, views ...string) {
	t.Helper()
	for i, want := range views {
		if err := c.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got := listString(c.View("r")); got != want {
			t.Fatalf("step %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// presenceFrame is a presence event of room "r".
func presenceFrame(version int64, event, member string) string {
	return fmt.Sprintf(`{"type":"presence","roomId":"r","version":%d,"event":%q,"member":%s}`, version, event, member)
}

// TestViewVersionRules: events apply at view version + 1 (an early one is
// held until then), each version once; members keep the server's order; a
// sync replaces the view.
func TestViewVersionRules(t *testing.T) {
	t.Parallel()
	script := []string{
		presenceFrame(5, "update", `{"userId":"ada","online":true,"sessions":1,"data":"stale"}`),
		presenceFrame(7, "join", `{"userId":"zed","online":true,"sessions":1}`),
		presenceFrame(6, "join", `{"userId":"carol","online":true,"sessions":1}`),
		presenceFrame(6, "leave", `{"userId":"carol","online":false,"lastDisconnected":50,"sessions":0}`),
		presenceFrame(7, "leave", `{"userId":"ada","online":false,"lastDisconnected":100,"sessions":0}`),
		presenceFrame(8, "update", `{"userId":"bob","online":false,"lastDisconnected":100,"sessions":0,"data":1}`),
		`{"type":"presence","roomId":"other","version":1,"event":"join","member":{"userId":"o","online":true,"sessions":1}}`,
	}
	script2 := []string{
		presenceFrame(9, "leave", `{"userId":"ada","online":false,"lastDisconnected":100,"sessions":0}`),
	}
	script3 := []string{
		presenceFrame(10, "join", `{"userId":"ada","online":true,"sessions":1}`),
		presenceFrame(11, "remove", `{"userId":"bob","online":false,"lastDisconnected":100,"sessions":0}`),
		presenceFrame(12, "future", `{"userId":"carol","online":false,"lastDisconnected":1,"sessions":0}`),
	}
	script4 := []string{
		`{"type":"sync","roomId":"r","version":20,"members":[{"userId":"x","online":true,"sessions":2}]}`,
		presenceFrame(20, "leave", `{"userId":"x","online":false,"lastDisconnected":1,"sessions":0}`),
		presenceFrame(21, "join", `{"userId":"y","online":true,"sessions":1}`),
	}
	script5 := []string{`{"type":"presence","roomId":"r","version":22,"event":"reset"}`}
	var mu sync.Mutex
	var types []string
	c := scriptedConn(t, client.ConnConfig{OnEvent: func(e client.Event) {
		mu.Lock()
		types = append(types, e.Type)
		mu.Unlock()
	}}, script, script2, script3, script4, script5)
	wantViews(t, c,
		// The stale update (5) is ignored; zed's early join (7) waits for
		// carol's join (6), then applies; the second 6 and 7 are ignored.
		`r@8: {ada on=true ld=0 s=1 d= n="" i=""} {carol on=true ld=0 s=1 d= n="" i=""} {zed on=true ld=0 s=1 d= n="" i=""} {bob on=false ld=100 s=0 d=1 n="" i=""}`,
		// ada and bob left at the same time: ordered by userId.
		`r@9: {carol on=true ld=0 s=1 d= n="" i=""} {zed on=true ld=0 s=1 d= n="" i=""} {ada on=false ld=100 s=0 d= n="" i=""} {bob on=false ld=100 s=0 d=1 n="" i=""}`,
		// ada comes back: after the others online. An unknown kind moves
		// the version only.
		`r@12: {carol on=true ld=0 s=1 d= n="" i=""} {zed on=true ld=0 s=1 d= n="" i=""} {ada on=true ld=0 s=1 d= n="" i=""}`,
		// A sync replaces everything; the event at its version is ignored.
		`r@21: {x on=true ld=0 s=2 d= n="" i=""} {y on=true ld=0 s=1 d= n="" i=""}`,
		// A reset empties the view.
		`r@22:`,
	)
	if c.View("other") != nil {
		t.Fatal("a view of a room never joined")
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(types, " "); !strings.HasPrefix(got, "joined presence") || !strings.HasSuffix(got, "sync presence presence pong presence pong") || len(types) != 21 {
		t.Fatalf("OnEvent saw %d: %s", len(types), got)
	}
	if s := c.Stats(); s.Events != 14 || s.Syncs != 1 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestViewHoldsEventsAhead: events ahead of the view are held until the
// gap fills, or until a sync: then the held ones at or below its version
// are dropped and the ones right after it applied.
func TestViewHoldsEventsAhead(t *testing.T) {
	t.Parallel()
	c := scriptedConn(t, client.ConnConfig{},
		[]string{ // all ahead of version 5: held
			presenceFrame(7, "join", `{"userId":"zed","online":true,"sessions":1}`),
			presenceFrame(9, "leave", `{"userId":"ada","online":false,"lastDisconnected":200,"sessions":0}`),
			presenceFrame(8, "join", `{"userId":"cy","online":true,"sessions":1}`),
			presenceFrame(12, "join", `{"userId":"eve","online":true,"sessions":1}`),
			presenceFrame(7, "join", `{"userId":"dup","online":true,"sessions":1}`),
		},
		[]string{ // the gap fills: 6, then the held 7, 8 and 9; 12 waits
			presenceFrame(6, "join", `{"userId":"carol","online":true,"sessions":1}`),
		},
		[]string{ // 11 is held; the sync at 11 drops it and applies 12
			presenceFrame(11, "join", `{"userId":"ghost","online":true,"sessions":1}`),
			`{"type":"sync","roomId":"r","version":11,"members":[{"userId":"carol","online":true,"sessions":1},{"userId":"zed","online":true,"sessions":1},{"userId":"ada","online":false,"lastDisconnected":200,"sessions":0}]}`,
		},
		[]string{ // a sync with nothing held right after it
			presenceFrame(15, "join", `{"userId":"fay","online":true,"sessions":1}`),
			`{"type":"sync","roomId":"r","version":13,"members":[{"userId":"zed","online":true,"sessions":1}]}`,
			presenceFrame(14, "update", `{"userId":"zed","online":true,"sessions":1,"data":2}`),
		},
	)
	wantViews(t, c,
		`r@5: {ada on=true ld=0 s=1 d= n="" i=""} {bob on=false ld=100 s=0 d= n="" i=""}`,
		`r@9: {carol on=true ld=0 s=1 d= n="" i=""} {zed on=true ld=0 s=1 d= n="" i=""} {cy on=true ld=0 s=1 d= n="" i=""} {ada on=false ld=200 s=0 d= n="" i=""} {bob on=false ld=100 s=0 d= n="" i=""}`,
		`r@12: {carol on=true ld=0 s=1 d= n="" i=""} {zed on=true ld=0 s=1 d= n="" i=""} {eve on=true ld=0 s=1 d= n="" i=""} {ada on=false ld=200 s=0 d= n="" i=""}`,
		`r@15: {zed on=true ld=0 s=1 d=2 n="" i=""} {fay on=true ld=0 s=1 d= n="" i=""}`,
	)
}

// TestViewHoldBound: a view holds at most 1000 events ahead; one more drops
// them all, and the view waits for a sync.
func TestViewHoldBound(t *testing.T) {
	t.Parallel()
	ahead := func(from, to int64) []string {
		var out []string
		for v := from; v <= to; v++ {
			out = append(out, presenceFrame(v, "update", fmt.Sprintf(`{"userId":"ada","online":true,"sessions":1,"data":%d}`, v)))
		}
		return out
	}
	c := scriptedConn(t, client.ConnConfig{},
		ahead(7, 1006), // 1000 held
		append(ahead(6, 6), ahead(1008, 2008)...), // 6 to 1006 apply; 1001 held again: dropped
		ahead(1007, 1007),                         // 1007 applies; nothing follows it
		append(ahead(1009, 1009), // held
			`{"type":"sync","roomId":"r","version":1008,"members":[{"userId":"ada","online":true,"sessions":1}]}`),
	)
	wantViews(t, c,
		`r@5: {ada on=true ld=0 s=1 d= n="" i=""} {bob on=false ld=100 s=0 d= n="" i=""}`,
		`r@1006: {ada on=true ld=0 s=1 d=1006 n="" i=""} {bob on=false ld=100 s=0 d= n="" i=""}`,
		`r@1007: {ada on=true ld=0 s=1 d=1007 n="" i=""} {bob on=false ld=100 s=0 d= n="" i=""}`,
		`r@1009: {ada on=true ld=0 s=1 d=1009 n="" i=""}`,
	)
}

// TestRateLimitEndsConn: a socket closed for its message rate (1008) is not
// reconnected: the Conn ends, and Err carries the close code.
func TestRateLimitEndsConn(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 1)
	c := dial(t, client.ConnConfig{URLs: []string{nodes[0].url}, UserID: "ada", Reconnect: true})
	var wg sync.WaitGroup
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Ping(ctx(t))
		}()
	}
	wg.Wait()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the Conn did not end; stats %+v", c.Stats())
	}
	if st := websocket.CloseStatus(c.Err()); st != websocket.StatusPolicyViolation {
		t.Fatalf("Err: %v (status %d), want 1008", c.Err(), st)
	}
	if s := c.Stats(); s.Errors < 1 || s.Reconnects != 0 || s.Connected {
		t.Fatalf("stats: %+v", s)
	}
}

// TestWatchUsers: the Go client's org-wide user presence against real
// nodes: Client.UserPresence, Conn.WatchUsers with its "user" events and
// Users view, kept across a reconnect, and UnwatchUsers.
func TestWatchUsers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2)
	hc := &client.Client{BaseURL: nodes[1].url}
	var mu sync.Mutex
	var frames []presence.UserPresence
	w := dial(t, client.ConnConfig{URLs: []string{nodes[0].url, nodes[1].url}, UserID: "watcher", Reconnect: true,
		OnEvent: func(e client.Event) {
			if e.User != nil {
				mu.Lock()
				frames = append(frames, *e.User)
				mu.Unlock()
			}
		}})
	got, err := w.WatchUsers(ctx(t), "ada", "bob")
	if err != nil || len(got) != 2 || got[0].UserID != "ada" || got[0].Online {
		t.Fatalf("WatchUsers = %+v, %v", got, err)
	}
	isOnline := func(user string, want bool) func() error {
		return func() error {
			if p := w.Users()[user]; p.Online != want {
				return fmt.Errorf("%s: %+v", user, p)
			}
			return nil
		}
	}
	ada := dial(t, client.ConnConfig{URLs: []string{nodes[1].url}, UserID: "ada"})
	mustJoin(t, ada, "r1", "t1", time.Second, "")
	mustJoin(t, ada, "r2", "t2", time.Second, "")
	eventually(t, "ada online", isOnline("ada", true))
	if p, err := hc.UserPresence(ctx(t), "ada"); err != nil || !p.Online || p.Rooms != 2 {
		t.Fatalf("UserPresence = %+v, %v", p, err)
	}
	// Reconnected, the watcher gets the states afresh; a change while it
	// was away is in them.
	w.DropConnection()
	if _, err := hc.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "r", SessionID: "b", UserID: "bob", Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob online after the reconnect", isOnline("bob", true))
	if err := ada.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ada offline", isOnline("ada", false))
	if p := w.Users()["ada"]; p.LastDisconnected == 0 || p.Rooms != 0 {
		t.Fatalf("ada offline: %+v", p)
	}
	if err := w.UnwatchUsers(ctx(t), "ada"); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Users()["ada"]; ok {
		t.Fatal("unwatched user still in Users")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(frames) < 2 || frames[0] != (presence.UserPresence{UserID: "ada", Online: true, Rooms: 1}) {
		t.Fatalf("user frames: %+v", frames)
	}
}
