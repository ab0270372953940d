package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

// TestStormWebSocket: a storm of 3,000 joins and leaves through node A's
// HTTP API while watchers listen on node B. Every watcher gets at most 20
// frames of the room in any second (batches above that), ends with the
// room's true list, and a watcher that comes after the storm (a room of
// more than 1,000 members) gets the whole room in its snapshot, as a
// resync does.
func TestStormWebSocket(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startNodes(t, srv, 2, nodeOpts{})
	a, b := nodes[0], nodes[1]
	token := httpBeat(t, a.url, map[string]any{"roomId": "storm", "sessionId": "seed", "userId": "seed"})["roomToken"].(string)
	var watchers []*wsClient
	for i := range 4 {
		w := dialWS(t, b.url)
		w.send(map[string]any{"type": "watch", "id": 1, "roomToken": token})
		if r := w.reply(float64(1)); r["type"] != "watching" {
			t.Fatalf("watcher %d: %v", i, r)
		}
		watchers = append(watchers, w)
	}

	// 3,000 changes from 8 clients: 1,500 users join, a third of them
	// leave again (an HTTP disconnect).
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := time.Now()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 1500; i += 8 {
				body, _ := json.Marshal(map[string]any{"roomId": "storm", "sessionId": fmt.Sprintf("s%04d", i), "userId": fmt.Sprintf("u%04d", i), "interval": 600000})
				res, err := http.Post(a.url+"/v1/heartbeat", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				var out struct{ SessionToken string }
				json.NewDecoder(res.Body).Decode(&out)
				res.Body.Close()
				if res.StatusCode != 200 {
					errs <- fmt.Errorf("heartbeat %d: %d", i, res.StatusCode)
					return
				}
				if i%3 == 0 {
					body, _ := json.Marshal(map[string]any{"sessionToken": out.SessionToken})
					res, err := http.Post(a.url+"/v1/disconnect", "application/json", bytes.NewReader(body))
					if err != nil {
						errs <- err
						return
					}
					res.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("3,000 changes in %v", time.Since(start))

	want := listAll(t, a.url, "storm")
	if len(want.Members) != 1501 {
		t.Fatalf("the room has %d members, want 1501", len(want.Members))
	}
	wantView := map[string]bool{}
	for _, m := range want.Members {
		wantView[m.UserID] = m.Online
	}
	for i, w := range watchers {
		deadline := time.Now().Add(20 * time.Second)
		for fmt.Sprint(w.view("storm")) != fmt.Sprint(wantView) {
			if time.Now().After(deadline) {
				got := w.view("storm")
				t.Fatalf("watcher %d: %d members (online %d), want %d (online %d)", i, len(got), len(online(got)), len(wantView), len(online(wantView)))
			}
			time.Sleep(20 * time.Millisecond)
		}
		w.mu.Lock()
		var at []time.Time
		batches := 0
		for k, m := range w.msgs {
			if m["roomId"] == "storm" && m["type"] != "watching" {
				at = append(at, w.at[k])
			}
			if m["type"] == "batch" {
				batches++
			}
		}
		w.mu.Unlock()
		if most := mostInWindow(at, time.Second); most > 20 {
			t.Errorf("watcher %d got %d frames of the room in one second, want at most 20", i, most)
		}
		if batches == 0 {
			t.Errorf("watcher %d got no batch in %d frames", i, len(at))
		}
		t.Logf("watcher %d: %d frames, %d batches", i, len(at), batches)
	}

	// After the storm, a room of more than 1,000 members: a new watcher's
	// snapshot has all of them, in the list's order.
	late := dialWS(t, b.url)
	late.send(map[string]any{"type": "watch", "id": 1, "roomToken": token})
	r := late.reply(float64(1))
	ms := r["members"].([]any)
	if len(ms) != len(want.Members) {
		t.Fatalf("a snapshot of %d members, want %d", len(ms), len(want.Members))
	}
	for i, m := range ms {
		if id := m.(map[string]any)["userId"]; id != want.Members[i].UserID {
			t.Fatalf("snapshot member %d is %v, want %s", i, id, want.Members[i].UserID)
		}
	}
}

// listAll reads a room's whole list, page by page (it must not change
// meanwhile).
func listAll(t *testing.T, base, room string) *presence.RoomList {
	t.Helper()
	s := &stack{t: t, url: base}
	var all presence.RoomList
	cursor := ""
	for {
		r := s.do("GET", "/v1/rooms/"+room+"/members?limit=1000&cursor="+url.QueryEscape(cursor), nil)
		var l presence.RoomList
		if err := json.Unmarshal(r.body, &l); err != nil || r.status != 200 {
			t.Fatalf("members: %d %s", r.status, r.body)
		}
		if all.Version != 0 && l.Version != all.Version {
			t.Fatalf("the room changed while it was listed: %d, then %d", all.Version, l.Version)
		}
		all.Version = l.Version
		all.Members = append(all.Members, l.Members...)
		if l.Next == "" {
			return &all
		}
		cursor = l.Next
	}
}

// mostInWindow returns the most of the times (in order) in any window w.
func mostInWindow(at []time.Time, w time.Duration) int {
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	most, j := 0, 0
	for i := range at {
		for at[i].Sub(at[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}
