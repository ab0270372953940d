package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
)

// pageCases pin cursor pages (ListQuery.After, RoomList.More and the
// Service's cursors): read page by page, an unchanged room gives every
// member once, in list order.
var pageCases = []testCase{
	{"PagesEveryMemberOnceInOrder", func(t *testing.T, h *Harness) {
		tok := pagesRoom(h, "big")
		full := h.List(tok) // limit 104: all of them
		want := IDs(full)
		if len(want) != 31 || full.Next != "" {
			t.Fatalf("full list: %d members, next %q: %v", len(want), full.Next, want)
		}
		for _, limit := range []int{1, 2, 3, 5, 7, 30, 31} {
			got, versions := readPages(t, h, limit, func(cursor string) (presence.ListRequest, error) {
				return h.Svc.PrepareList(tok, limit, cursor)
			})
			if !equal(got, want) {
				t.Fatalf("limit %d: pages give\n%v\nthe list is\n%v", limit, got, want)
			}
			for _, v := range versions {
				if v != full.Version {
					t.Fatalf("limit %d: versions %v, list %d", limit, versions, full.Version)
				}
			}
		}
		// Online only, by room id.
		online, err := h.Svc.Members(h.Admin(), "big", true, 1000)
		if err != nil || len(online.Members) != 12 {
			t.Fatalf("online = %v, %v", online, err)
		}
		for _, limit := range []int{1, 4, 5, 12} {
			got, _ := readPages(t, h, limit, func(cursor string) (presence.ListRequest, error) {
				return h.Svc.PrepareMembers(h.Admin(), "big", true, limit, cursor)
			})
			if !equal(got, IDs(online)) {
				t.Fatalf("online, limit %d: pages give %v, the list is %v", limit, got, IDs(online))
			}
		}
	}},
	{"PagesAcrossChanges", func(t *testing.T, h *Harness) {
		ctx := context.Background()
		tok := pagesRoom(h, "big")
		want := IDs(h.List(tok))
		page := func(limit int, cursor string) *presence.RoomList {
			t.Helper()
			r, err := h.Svc.PrepareList(tok, limit, cursor)
			if err != nil {
				t.Fatal(err)
			}
			l, err := h.Svc.ListPage(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		// A second tab of the page's last (online) member changes its
		// order score, not its place: the next page is the same.
		p1 := page(3, "")
		last := p1.Members[2].UserID
		h.Beat(last, "big", last+"-tab2", time.Minute)
		p2 := page(3, p1.Next)
		if p2.Version != p1.Version || !equal(IDs(p2), want[3:6]) {
			t.Fatalf("after a second tab: v%d %v, want v%d %v", p2.Version, IDs(p2), p1.Version, want[3:6])
		}
		// The page's last member (one of offline ties) is forgotten: the
		// version moves, and the next page still starts after its place.
		i := 12 + 5 + 4 + 4 // in the ten ties of lastDisconnected (the oldest)
		p := page(i, "")
		gone := p.Members[i-1].UserID
		if err := h.Svc.RemoveMember(h.Admin(), "big", gone); err != nil {
			t.Fatal(err)
		}
		next := page(5, p.Next)
		if next.Version == p.Version || !equal(IDs(next), want[i:i+5]) {
			t.Fatalf("after removing %s: v%d %v, want another version than %d and %v", gone, next.Version, IDs(next), p.Version, want[i:i+5])
		}
		// A join: later pages show another version.
		p1 = page(5, "")
		h.Beat("newcomer", "big", "n1", time.Minute)
		if p2 := page(5, p1.Next); p2.Version == p1.Version {
			t.Fatalf("a join did not change the version of the next page (%d)", p2.Version)
		}
	}},
	{"CursorsAreBound", func(t *testing.T, h *Harness) {
		tok := pagesRoom(h, "big")
		other := h.Beat("someone", "other", "s1", time.Minute).RoomToken
		r, err := h.Svc.PrepareList(tok, 2, "")
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.Svc.ListPage(context.Background(), r)
		if err != nil || l.Next == "" {
			t.Fatalf("first page: %v, %v", l, err)
		}
		cur := l.Next
		for name, c := range map[string]string{"garbage": "garbage", "tampered": flipLast(cur), "room token": tok, "truncated": cur[:len(cur)-3]} {
			_, err := h.Svc.PrepareList(tok, 2, c)
			WantCode(t, err, presence.EINVALID)
			if err != nil && err.Error() == "" {
				t.Fatalf("%s: no message", name)
			}
		}
		_, err = h.Svc.PrepareList(other, 2, cur) // another room
		WantCode(t, err, presence.EINVALID)
		_, err = h.Svc.PrepareMembers(h.Admin(), "other", false, 2, cur)
		WantCode(t, err, presence.EINVALID)
		_, err = h.Svc.PrepareMembers(h.Admin(), "big", true, 2, cur) // another query
		WantCode(t, err, presence.EINVALID)
		if _, err = h.Svc.PrepareMembers(h.Admin(), "big", false, 2, cur); err != nil {
			t.Fatalf("the same list by room id: %v", err)
		}
		// Another org's room of the same id.
		_, err = h.Svc.PrepareMembers(presence.NewContextWithIdentity(context.Background(),
			&presence.Identity{Org: "other-org", Admin: true}), "big", false, 2, cur)
		WantCode(t, err, presence.EINVALID)
		// The room is removed: its cursors go with its old room tokens
		// (empty, version 0); with a new room token they are refused.
		if err := h.Svc.RemoveRoom(h.Admin(), "big"); err != nil {
			t.Fatal(err)
		}
		r, err = h.Svc.PrepareMembers(h.Admin(), "big", false, 2, cur)
		if err != nil {
			t.Fatal(err)
		}
		if l, err := h.Svc.ListPage(context.Background(), r); err != nil || l.Version != 0 || len(l.Members) != 0 || l.Next != "" {
			t.Fatalf("page of a removed room: %+v, %v", l, err)
		}
		fresh := h.Beat("u1", "big", "again", time.Minute).RoomToken
		_, err = h.Svc.PrepareList(fresh, 2, cur)
		WantCode(t, err, presence.EINVALID)
	}},
}

// pagesRoom makes a room of 31 members and returns its room token: 12
// online (join order, some with two sessions), then 19 offline: 5 that
// went offline one by one, 4 at the same millisecond before, 10 at another
// before (the list shows the most recent first).
func pagesRoom(h *Harness, room string) string {
	h.T.Helper()
	var tok string
	offline := func(prefix string, n int, apart bool) {
		var sessions []string
		for i := range n {
			sessions = append(sessions, h.Beat(fmt.Sprintf("%s%02d", prefix, (i*7)%n), room, fmt.Sprint(prefix, i), time.Minute).SessionToken)
		}
		for _, s := range sessions {
			if err := h.Svc.Disconnect(context.Background(), s); err != nil {
				h.T.Fatal(err)
			}
			if apart {
				h.Advance(time.Millisecond)
			}
		}
		h.Advance(time.Second)
	}
	offline("tie-a", 10, false)
	offline("tie-b", 4, false)
	offline("one", 5, true)
	for i := range 12 {
		out := h.Beat(fmt.Sprintf("on%02d", (i*5)%12), room, fmt.Sprint("on", i), time.Minute)
		if i%3 == 0 {
			h.Beat(fmt.Sprintf("on%02d", (i*5)%12), room, fmt.Sprint("on", i, "b"), time.Minute)
		}
		tok = out.RoomToken
	}
	return tok
}

// readPages reads a list page by page from the first, following Next, and
// returns the userIds in the order read and each page's version.
func readPages(t *testing.T, h *Harness, limit int, prepare func(cursor string) (presence.ListRequest, error)) (ids []string, versions []int64) {
	t.Helper()
	cursor := ""
	for n := 0; ; n++ {
		if n > 100 {
			t.Fatalf("limit %d: more than 100 pages", limit)
		}
		r, err := prepare(cursor)
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.Svc.ListPage(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Members) > limit || (l.Next != "" && len(l.Members) != limit) {
			t.Fatalf("limit %d: a page of %d members, next %q", limit, len(l.Members), l.Next)
		}
		ids = append(ids, IDs(l)...)
		versions = append(versions, l.Version)
		if l.Next == "" {
			return ids, versions
		}
		cursor = l.Next
	}
}
