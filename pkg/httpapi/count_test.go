package httpapi_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/redistest"
)

// A count watcher on node B of a room that 30 users join through node A
// within a second: at most one count frame per second, the last one the
// room's true count, and no presence or sync frames.
func TestWatchCountAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, redistest.Start(t), 2, nodeOpts{})
	a, b := nodes[0], nodes[1]
	first := httpBeat(t, a.url, map[string]any{"roomId": "big", "sessionId": "s", "userId": "u0"})
	w := dialWS(t, b.url)

	// A bad mode is an error that changes nothing.
	w.send(map[string]any{"type": "watch", "id": 1, "roomToken": first["roomToken"], "mode": "everything"})
	if r := w.reply(1.0); r["type"] != "error" || r["code"] != "invalid_argument" {
		t.Fatalf("bad mode: %v", r)
	}
	w.send(map[string]any{"type": "unwatch", "id": 2, "roomId": "big"})
	if r := w.reply(2.0); r["type"] != "error" || r["code"] != "not_found" {
		t.Fatalf("unwatch after a bad mode: %v", r)
	}

	w.send(map[string]any{"type": "watch", "id": 3, "roomToken": first["roomToken"], "mode": "count"})
	r := w.reply(3.0)
	if r["type"] != "watching" || r["roomId"] != "big" || r["online"] != 1.0 || r["sessions"] != 1.0 || r["members"] != nil {
		t.Fatalf("watching in count mode: %v", r)
	}

	start := time.Now()
	for i := 1; i <= 30; i++ {
		httpBeat(t, a.url, map[string]any{"roomId": "big", "sessionId": fmt.Sprintf("s%d", i), "userId": fmt.Sprintf("u%d", i)})
	}
	burst := time.Since(start)
	counts := func() []map[string]any {
		var out []map[string]any
		for _, m := range w.messages() {
			if m["type"] == "count" {
				out = append(out, m)
			}
		}
		return out
	}
	// The truth, as GET /v1/rooms/{roomId}/count reads it.
	s := &stack{t: t, url: a.url}
	var truth struct{ Version, Online, Sessions float64 }
	if err := json.Unmarshal(s.do("GET", "/v1/rooms/big/count", nil).body, &truth); err != nil || truth.Online != 31 {
		t.Fatalf("count: %+v %v", truth, err)
	}
	w.waitFor("the last count", func(m map[string]any) bool {
		return m["type"] == "count" && m["version"] == truth.Version
	})
	elapsed := time.Since(start)
	cs := counts()
	t.Logf("burst %v, %d count frames in %v: %v", burst, len(cs), elapsed, cs)
	if last := cs[len(cs)-1]; last["online"] != truth.Online || last["sessions"] != truth.Sessions || last["roomId"] != "big" {
		t.Errorf("last count %v, want %+v", last, truth)
	}
	// At most one per second (and one at the burst's start), generously.
	if limit := int(elapsed/time.Second) + 2; len(cs) > limit {
		t.Errorf("%d count frames in %v (burst %v): %v", len(cs), elapsed, burst, cs)
	}
	time.Sleep(1200 * time.Millisecond) // idle: nothing more
	if n := len(counts()); n != len(cs) {
		t.Errorf("%d count frames while idle", n-len(cs))
	}
	for _, m := range w.messages() {
		if m["type"] == "presence" || m["type"] == "sync" {
			t.Errorf("a count watcher got %v", m)
		}
	}

	// unwatch stops the counts.
	w.send(map[string]any{"type": "unwatch", "id": 4, "roomId": "big"})
	if r := w.reply(4.0); r["type"] != "unwatched" {
		t.Fatalf("unwatch: %v", r)
	}
	httpBeat(t, a.url, map[string]any{"roomId": "big", "sessionId": "late", "userId": "late"})
	time.Sleep(1500 * time.Millisecond)
	if n := len(counts()); n != len(cs) {
		t.Errorf("%d count frames after unwatch", n-len(cs))
	}
}

// "members" is the ordinary watch; a count-mode watch of the same room
// replaces it, and a watch in members mode replaces a count-mode one.
func TestWatchCountModes(t *testing.T) {
	t.Parallel()
	nodes := startNodes(t, redistest.Start(t), 2, nodeOpts{})
	first := httpBeat(t, nodes[0].url, map[string]any{"roomId": "r", "sessionId": "s0", "userId": "u0"})
	w := dialWS(t, nodes[1].url)
	w.send(map[string]any{"type": "watch", "id": 1, "roomToken": first["roomToken"], "mode": "members"})
	if r := w.reply(1.0); r["type"] != "watching" || r["members"] == nil {
		t.Fatalf("watch in members mode: %v", r)
	}
	w.send(map[string]any{"type": "watch", "id": 2, "roomToken": first["roomToken"], "mode": "count"})
	if r := w.reply(2.0); r["type"] != "watching" || r["online"] != 1.0 || r["members"] != nil {
		t.Fatalf("watch in count mode: %v", r)
	}
	after := len(w.messages())
	httpBeat(t, nodes[0].url, map[string]any{"roomId": "r", "sessionId": "s1", "userId": "u1"})
	w.waitFor("a count of 2", func(m map[string]any) bool { return m["type"] == "count" && m["online"] == 2.0 })
	for _, m := range w.messages()[after:] {
		if m["type"] == "presence" || m["type"] == "sync" {
			t.Errorf("after switching to count mode: %v", m)
		}
	}
	w.send(map[string]any{"type": "watch", "id": 3, "roomToken": first["roomToken"]})
	if r := w.reply(3.0); r["type"] != "watching" || r["members"] == nil {
		t.Fatalf("watch again in members mode: %v", r)
	}
	httpBeat(t, nodes[0].url, map[string]any{"roomId": "r", "sessionId": "s2", "userId": "u2"})
	w.waitFor("u2's join", func(m map[string]any) bool { return m["type"] == "presence" && m["version"] == 3.0 })
	time.Sleep(1200 * time.Millisecond)
	for _, m := range w.messages() {
		if m["type"] == "count" && m["online"] == 3.0 {
			t.Errorf("a count after switching back to members mode: %v", m)
		}
	}
}
