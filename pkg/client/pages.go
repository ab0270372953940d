package client

// pages.go: reading a room's list page by page (cursor, next).

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/presencecluster/presence/pkg/presence"
)

// ErrRoomChanging is returned by ListAll and MembersAll when the room
// changed while each of their attempts read it.
var ErrRoomChanging = errors.New("presence: the room changed while it was read page by page")

// listAllAttempts is how many times ListAll reads a changing room.
const listAllAttempts = 5

// ListPage returns one page of a room's list (GET /v1/list with cursor):
// the first with an empty cursor, else the page after a page's Next. Its
// Next is empty on the last page.
func (c *Client) ListPage(ctx context.Context, roomToken string, limit int, cursor string) (*presence.RoomList, error) {
	q := url.Values{"roomToken": {roomToken}}
	return c.page(ctx, "/v1/list", q, limit, cursor)
}

// MembersPage returns one page of a room's members by room id (GET
// /v1/rooms/{roomId}/members with cursor), as ListPage.
func (c *Client) MembersPage(ctx context.Context, roomID string, onlineOnly bool, limit int, cursor string) (*presence.RoomList, error) {
	q := url.Values{}
	if onlineOnly {
		q.Set("onlineOnly", "true")
	}
	return c.page(ctx, "/v1/rooms/"+url.PathEscape(roomID)+"/members", q, limit, cursor)
}

func (c *Client) page(ctx context.Context, path string, q url.Values, limit int, cursor string) (*presence.RoomList, error) {
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out presence.RoomList
	if err := c.do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListPages reads a room's list page by page (limit members a page, 0:
// the server's default), from the first page to the last, and yields each
// page, or an error once (then it stops). A page's Version differs from the
// first's when the room changed in between: then pages may miss or repeat
// members, and the caller may start again.
//
//	for page, err := range c.ListPages(ctx, roomToken, 1000) {
//		if err != nil { ... }
//		for _, m := range page.Members { ... }
//	}
func (c *Client) ListPages(ctx context.Context, roomToken string, limit int) iter.Seq2[*presence.RoomList, error] {
	return pages(func(cursor string) (*presence.RoomList, error) { return c.ListPage(ctx, roomToken, limit, cursor) })
}

// MembersPages reads a room's members by room id page by page, as
// ListPages.
func (c *Client) MembersPages(ctx context.Context, roomID string, onlineOnly bool, limit int) iter.Seq2[*presence.RoomList, error] {
	return pages(func(cursor string) (*presence.RoomList, error) {
		return c.MembersPage(ctx, roomID, onlineOnly, limit, cursor)
	})
}

func pages(page func(cursor string) (*presence.RoomList, error)) iter.Seq2[*presence.RoomList, error] {
	return func(yield func(*presence.RoomList, error) bool) {
		cursor := ""
		for {
			l, err := page(cursor)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(l, nil) || l.Next == "" {
				return
			}
			cursor = l.Next
		}
	}
}

// ListAll reads a whole room's list page by page (limit members a page,
// 0: 1000) and returns it as one list of one version: when a page's
// version differs from the first's, it starts again, up to 5 times, then
// returns ErrRoomChanging.
func (c *Client) ListAll(ctx context.Context, roomToken string, limit int) (*presence.RoomList, error) {
	return all(func() iter.Seq2[*presence.RoomList, error] { return c.ListPages(ctx, roomToken, orMax(limit)) })
}

// MembersAll reads a whole room's members by room id, as ListAll.
func (c *Client) MembersAll(ctx context.Context, roomID string, onlineOnly bool, limit int) (*presence.RoomList, error) {
	return all(func() iter.Seq2[*presence.RoomList, error] {
		return c.MembersPages(ctx, roomID, onlineOnly, orMax(limit))
	})
}

func orMax(limit int) int {
	if limit == 0 {
		return presence.MaxListLimit
	}
	return limit
}

func all(read func() iter.Seq2[*presence.RoomList, error]) (*presence.RoomList, error) {
	for range listAllAttempts {
		var out *presence.RoomList
		changed := false
		for l, err := range read() {
			if err != nil {
				return nil, err
			}
			if out == nil {
				out = l
				continue
			}
			if l.Version != out.Version {
				changed = true
				break
			}
			out.Members = append(out.Members, l.Members...)
		}
		if !changed {
			out.Next = ""
			return out, nil
		}
	}
	return nil, ErrRoomChanging
}
