package client_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/presencecluster/presence/pkg/client"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/redistest"
)

func memberIDs(ms []presence.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.UserID)
	}
	return out
}

// TestPages: the page iterators and ListAll read every member once, in
// list order, over real HTTP; a change shows in a later page's version.
func TestPages(t *testing.T) {
	n := startNodes(t, redistest.Start(t), 1)[0]
	c := &client.Client{BaseURL: n.url}
	var room string
	for i := range 40 {
		hb, err := c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "big", SessionID: fmt.Sprint("s", i), UserID: fmt.Sprintf("u%02d", (i*3)%40)})
		if err != nil {
			t.Fatal(err)
		}
		room = hb.RoomToken
		if i%3 == 0 {
			if err := c.Disconnect(ctx(t), hb.SessionToken); err != nil {
				t.Fatal(err)
			}
		}
	}
	full, err := c.List(ctx(t), room, 1000)
	if err != nil || len(full.Members) != 40 || full.Next != "" {
		t.Fatalf("list: %+v, %v", full, err)
	}
	want := memberIDs(full.Members)

	var got []string
	pages := 0
	for p, err := range c.ListPages(ctx(t), room, 7) {
		if err != nil {
			t.Fatal(err)
		}
		if p.Version != full.Version {
			t.Fatalf("page %d: version %d, want %d", pages, p.Version, full.Version)
		}
		pages++
		got = append(got, memberIDs(p.Members)...)
	}
	if pages != 6 || !slices.Equal(got, want) {
		t.Fatalf("%d pages: %v, want %v", pages, got, want)
	}
	all, err := c.ListAll(ctx(t), room, 9)
	if err != nil || !slices.Equal(memberIDs(all.Members), want) || all.Version != full.Version || all.Next != "" {
		t.Fatalf("ListAll: %v, %v", all, err)
	}
	online, err := c.Members(ctx(t), "big", true, 1000)
	if err != nil {
		t.Fatal(err)
	}
	allOnline, err := c.MembersAll(ctx(t), "big", true, 4)
	if err != nil || len(online.Members) != 26 || !slices.Equal(memberIDs(allOnline.Members), memberIDs(online.Members)) {
		t.Fatalf("MembersAll online: %v, %v; want %v", allOnline, err, memberIDs(online.Members))
	}

	// A change between two pages: the later page has another version.
	pages = 0
	var first int64
	for p, err := range c.MembersPages(ctx(t), "big", false, 10) {
		if err != nil {
			t.Fatal(err)
		}
		if pages++; pages == 1 {
			first = p.Version
			if _, err := c.Heartbeat(ctx(t), client.HeartbeatRequest{RoomID: "big", SessionID: "late", UserID: "late"}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if p.Version == first {
			t.Fatalf("page %d after a join: version %d as the first", pages, p.Version)
		}
		break // stops the iterator
	}
	if pages != 2 {
		t.Fatalf("%d pages read", pages)
	}

	// A forged cursor.
	_, err = c.ListPage(ctx(t), room, 5, "forged")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 400 || e.Code != "invalid_argument" {
		t.Fatalf("forged cursor: %v", err)
	}
}
