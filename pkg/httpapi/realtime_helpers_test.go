package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/presencecluster/presence/pkg/auth"
	"github.com/presencecluster/presence/pkg/httpapi"
	"github.com/presencecluster/presence/pkg/httpapi/httpapitest"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

// node is one presence node (store, subscriber, hub) on a shared Redis.
type node struct {
	url string
	api *httpapi.Server
}

type nodeOpts struct {
	queue      int
	maxRooms   int
	roomFrames int
	auth       bool
	cluster    *redistest.Cluster // run on this Redis Cluster instead of srv
	// writeTimeout: a write to a socket that does not read fails after it.
	writeTimeout time.Duration
	// pingInterval: a socket that does not answer a ping within it is
	// dropped (zero: 2s).
	pingInterval time.Duration
}

// startNodes starts n nodes on one Redis (or cluster) and key prefix.
func startNodes(t *testing.T, srv *redistest.Server, n int, o nodeOpts) []*node {
	t.Helper()
	opts := httpapitest.Options{Redis: srv, Cluster: o.cluster, Queue: o.queue, MaxRooms: o.maxRooms, RoomFrames: o.roomFrames, WriteTimeout: o.writeTimeout, PingInterval: o.pingInterval}
	if o.auth {
		opts.Auth = &auth.Config{HS256Secret: hsSecret, AdminToken: adminToken}
	}
	var nodes []*node
	for _, tn := range httpapitest.StartMany(t, n, opts) {
		nodes = append(nodes, &node{url: tn.URL, api: tn.API})
	}
	return nodes
}

// wsClient is a WebSocket client that records every message it receives.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
	raw  net.Conn

	mu      sync.Mutex
	msgs    []map[string]any
	at      []time.Time // when each message came
	closed  error
	reading chan struct{} // closed to let the reader start (slow consumers)
	pings   atomic.Int64  // the node's ping frames received
}

func dialWS(t testing.TB, base string, headers ...string) *wsClient {
	t.Helper()
	c, err := tryDialWS(t, base, true, headers...)
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	return c
}

func tryDialWS(t testing.TB, base string, read bool, headers ...string) (*wsClient, error) {
	c := &wsClient{t: t, reading: make(chan struct{})}
	if read {
		close(c.reading)
	}
	h := http.Header{}
	path := "/v1/ws"
	for _, hd := range headers {
		k, v, _ := strings.Cut(hd, ": ")
		if k == "query" {
			path += "?" + v
			continue
		}
		h.Set(k, v)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := conn.(*net.TCPConn); ok && !read {
			// A client that does not read: a tiny receive window, so that
			// the server's writes block soon (as over a slow network).
			tc.SetReadBuffer(64 << 10)
		}
		c.raw = conn
		return conn, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, res, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+path,
		&websocket.DialOptions{HTTPHeader: h, HTTPClient: &http.Client{Transport: tr},
			OnPingReceived: func(context.Context, []byte) bool { c.pings.Add(1); return true }})
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("status %d: %w", res.StatusCode, err)
		}
		return nil, err
	}
	conn.SetReadLimit(1 << 24)
	c.conn = conn
	go func() {
		<-c.reading
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.mu.Lock()
				c.closed = err
				c.mu.Unlock()
				return
			}
			// A browser closes a socket on a text frame that is not UTF-8.
			if !utf8.Valid(b) {
				panic(fmt.Sprintf("server sent invalid UTF-8 %q", b))
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				panic(fmt.Sprintf("server sent non-JSON %q", b))
			}
			c.mu.Lock()
			c.msgs, c.at = append(c.msgs, m), append(c.at, time.Now())
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c, nil
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// messages returns a copy of what was received so far.
func (c *wsClient) messages() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]map[string]any(nil), c.msgs...)
}

// waitFor polls until some received message satisfies ok (5 s at most) and
// returns it.
func (c *wsClient) waitFor(what string, ok func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for {
		for _, m := range c.messages() {
			if ok(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s; got %v", what, c.messages())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reply waits for the reply with the given id.
func (c *wsClient) reply(id any) map[string]any {
	c.t.Helper()
	return c.waitFor(fmt.Sprintf("reply %v", id), func(m map[string]any) bool { return m["id"] == id })
}

// join joins a room and returns the joined reply.
func (c *wsClient) join(id float64, fields map[string]any) map[string]any {
	c.t.Helper()
	msg := map[string]any{"type": "join", "id": id}
	for k, v := range fields {
		msg[k] = v
	}
	c.send(msg)
	r := c.reply(id)
	if r["type"] != "joined" {
		c.t.Fatalf("join: %v", r)
	}
	return r
}

// events returns the presence events received for a room.
func (c *wsClient) events(room string) []map[string]any {
	var out []map[string]any
	for _, m := range c.messages() {
		if m["type"] == "presence" && m["roomId"] == room {
			out = append(out, m)
		}
	}
	return out
}

// view is a client's picture of a room, built from its snapshots and events
// as a client library would: a snapshot (joined, watching, sync) replaces
// it, events change it.
func (c *wsClient) view(room string) map[string]bool {
	v := map[string]bool{}
	for _, m := range c.messages() {
		if m["roomId"] != room {
			continue
		}
		switch m["type"] {
		case "joined", "watching", "sync":
			v = map[string]bool{}
			for _, x := range m["members"].([]any) {
				mem := x.(map[string]any)
				v[mem["userId"].(string)] = mem["online"].(bool)
			}
		case "presence":
			applyChange(v, m)
		case "batch":
			for _, ch := range m["changes"].([]any) {
				applyChange(v, ch.(map[string]any))
			}
		}
	}
	return v
}

// applyChange applies a presence event or a batch's change to a view.
func applyChange(v map[string]bool, m map[string]any) {
	mem := m["member"].(map[string]any)
	if m["event"] == "remove" {
		delete(v, mem["userId"].(string))
	} else {
		v[mem["userId"].(string)] = mem["online"].(bool)
	}
}

func online(v map[string]bool) []string {
	var out []string
	for u, on := range v {
		if on {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

// waitView polls until the client's view of room has exactly these users online.
func (c *wsClient) waitView(room string, want ...string) {
	c.t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := online(c.view(room))
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("view of %s: online %v, want %v; messages %v", room, got, want, c.messages())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drop cuts the TCP connection without a close frame.
func (c *wsClient) drop() { c.raw.Close() }

func (c *wsClient) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// httpBeat sends an HTTP heartbeat to a node (auth off).
func httpBeat(t testing.TB, base string, body map[string]any) map[string]any {
	t.Helper()
	s := &stack{t: t.(*testing.T), url: base}
	r := s.beat(body)
	if r.status != 200 {
		t.Fatalf("heartbeat: %d %s", r.status, r.body)
	}
	return r.json(t)
}

// trueOnline lists the room's online users through a node's HTTP API.
func trueOnline(t testing.TB, base, room string) []string {
	s := &stack{t: t.(*testing.T), url: base}
	r := s.do("GET", "/v1/rooms/"+room+"/members?onlineOnly=true", nil)
	var l presence.RoomList
	json.Unmarshal(r.body, &l)
	var out []string
	for _, m := range l.Members {
		out = append(out, m.UserID)
	}
	sort.Strings(out)
	return out
}
