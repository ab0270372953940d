package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/presencecluster/presence/pkg/httpapi"
)

type pageBody struct {
	RoomID  string `json:"roomId"`
	Version int64  `json:"version"`
	Members []struct {
		UserID string `json:"userId"`
		Online bool   `json:"online"`
	} `json:"members"`
	Next *string `json:"next"`
}

func (n *listNode) page(target string, header ...string) (listAnswer, pageBody) {
	n.t.Helper()
	a := n.do("GET", target, "", header...)
	var b pageBody
	if a.code == 200 {
		if err := json.Unmarshal([]byte(a.body), &b); err != nil {
			n.t.Fatalf("%s: %v: %s", target, err, a.body)
		}
	}
	return a, b
}

// readAll follows next from the first page of target (a list URL without
// cursor) and returns the userIds read and the versions of the pages.
func (n *listNode) readAll(target string, limit int) (ids []string, versions []int64) {
	n.t.Helper()
	cursor := ""
	for range 1000 {
		t := fmt.Sprintf("%s&limit=%d", target, limit)
		if cursor != "" {
			t += "&cursor=" + url.QueryEscape(cursor)
		}
		a, b := n.page(t)
		if a.code != 200 {
			n.t.Fatalf("%s: %d %s", t, a.code, a.body)
		}
		for _, m := range b.Members {
			ids = append(ids, m.UserID)
		}
		versions = append(versions, b.Version)
		if b.Next == nil {
			return ids, versions
		}
		if len(b.Members) != limit || *b.Next == "" {
			n.t.Fatalf("%s: %d members, next %q", t, len(b.Members), *b.Next)
		}
		cursor = *b.Next
	}
	n.t.Fatal("more than 1000 pages")
	return nil, nil
}

// TestListPages: both list routes page with cursors (every member once, in
// list order), cursors of another room or query are 400, and the ETag of a
// cursor's page is its own.
func TestListPages(t *testing.T) {
	n := newListNode(t, httpapi.Config{})
	var room string
	for i := range 23 {
		var sess string
		room, sess = n.beat(fmt.Sprintf("u%02d", (i*5)%23), fmt.Sprint("s", i))
		if i%4 == 1 {
			n.mustDo(204, "POST", "/v1/disconnect", sess)
		}
	}
	base := "/v1/list?roomToken=" + url.QueryEscape(room)
	a, full := n.page(base + "&limit=1000")
	if full.Next != nil || strings.Contains(a.body, `"next"`) || len(full.Members) != 23 {
		t.Fatalf("whole list: %s", a.body)
	}
	var want []string
	for _, m := range full.Members {
		want = append(want, m.UserID)
	}
	for _, limit := range []int{1, 4, 10, 22, 23} {
		ids, versions := n.readAll(base, limit)
		if !slices.Equal(ids, want) {
			t.Fatalf("limit %d: %v, want %v", limit, ids, want)
		}
		for _, v := range versions {
			if v != full.Version {
				t.Fatalf("limit %d: versions %v, want %d", limit, versions, full.Version)
			}
		}
	}
	// By room id (admin route; auth off), all and online only.
	ids, _ := n.readAll("/v1/rooms/lobby/members?org=default", 5)
	if !slices.Equal(ids, want) {
		t.Fatalf("members: %v, want %v", ids, want)
	}
	var online []string
	for _, m := range full.Members {
		if m.Online {
			online = append(online, m.UserID)
		}
	}
	if ids, _ := n.readAll("/v1/rooms/lobby/members?onlineOnly=true", 3); !slices.Equal(ids, online) || len(online) != 17 {
		t.Fatalf("online members: %v, want %v", ids, online)
	}

	// A cursor's page has its own ETag: 304 with it, 200 with the first
	// page's, and a new one after a change.
	a1, p1 := n.page(base + "&limit=5")
	cur := *p1.Next
	second := base + "&limit=5&cursor=" + url.QueryEscape(cur)
	a2, p2 := n.page(second)
	if a2.etag == "" || a2.etag == a1.etag || p2.Members[0].UserID != want[5] {
		t.Fatalf("second page: etag %s (first %s): %s", a2.etag, a1.etag, a2.body)
	}
	if r := n.do("GET", second, "", "If-None-Match", a2.etag); r.code != 304 {
		t.Fatalf("second page with its ETag: %d", r.code)
	}
	if r := n.do("GET", second, "", "If-None-Match", a1.etag); r.code != 200 || r.body != a2.body {
		t.Fatalf("second page with the first's ETag: %d %s", r.code, r.body)
	}
	if r := n.do("GET", base+"&limit=5", "", "If-None-Match", a2.etag); r.code != 200 {
		t.Fatalf("first page with the second's ETag: %d", r.code)
	}
	// Pages after the first are not cached; the first is.
	store, cache := n.answers("store"), n.answers("cache")
	n.page(second)
	n.page(base + "&limit=5")
	if n.answers("store") != store+1 || n.answers("cache") != cache+1 {
		t.Fatalf("answers: store %d -> %d, cache %d -> %d", store, n.answers("store"), cache, n.answers("cache"))
	}
	n.beat("newcomer", "n1")
	r, p := n.page(second, "If-None-Match", a2.etag)
	if r.code != 200 || r.etag == a2.etag || p.Version == p1.Version {
		t.Fatalf("second page after a join: %d etag %s version %d (first page's %d)", r.code, r.etag, p.Version, p1.Version)
	}

	// Refused cursors: 400, whatever the room holds.
	hall := n.do("POST", "/v1/heartbeat", `{"roomId":"hall","sessionId":"h1","userId":"ada"}`)
	hallToken := jsonField([]byte(hall.body), "roomToken")
	for name, target := range map[string]string{
		"garbage":      base + "&cursor=garbage",
		"tampered":     base + "&cursor=" + url.QueryEscape(cur[:len(cur)-1]+string("AB"[boolIndex(cur[len(cur)-1] == 'A')])),
		"room token":   base + "&cursor=" + url.QueryEscape(room),
		"other room":   "/v1/list?roomToken=" + url.QueryEscape(hallToken) + "&cursor=" + url.QueryEscape(cur),
		"other room 2": "/v1/rooms/hall/members?cursor=" + url.QueryEscape(cur),
		"other query":  "/v1/rooms/lobby/members?onlineOnly=true&cursor=" + url.QueryEscape(cur),
	} {
		r := n.do("GET", target, "")
		if r.code != 400 || !strings.Contains(r.body, `"code":"invalid_argument"`) || !strings.Contains(r.body, "cursor") {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	// The same list by room id takes the room token's cursor.
	if r := n.do("GET", "/v1/rooms/lobby/members?limit=5&cursor="+url.QueryEscape(cur), ""); r.code != 200 {
		t.Fatalf("members with a list cursor: %d %s", r.code, r.body)
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}
