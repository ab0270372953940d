package presence

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// PagesLister is implemented by a store that can read several pages of a
// room in one atomic step: the pages of one version of the room.
type PagesLister interface {
	// ListPages returns List(ctx, room, q) for each of qs, all read in one
	// atomic step.
	ListPages(ctx context.Context, room RoomRef, qs []ListQuery) ([]*RoomList, error)
}

// snapshotPagesAttempts is how many times a snapshot of a room of more than
// one page is read again because the room changed while it was read.
const snapshotPagesAttempts = 8

// snapshotAll reads the whole room (every member q shows, at one version):
// one page when it fits (the common case), else page after page. When the
// room changed between the pages, the same pages (each a little longer, so
// that members who moved meanwhile are still caught) are read again in one
// atomic step (PagesLister), which must cover the room without a hole;
// otherwise it starts again.
func (s *Service) snapshotAll(ctx context.Context, room RoomRef, q ListQuery) (*RoomList, error) {
	backoff := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		first, err := s.store.List(ctx, room, q)
		if err != nil || first.More == nil || first.Stale {
			return first, err
		}
		pages := []*RoomList{first}
		qs := []ListQuery{q}
		consistent := true
		for l := first; l.More != nil; {
			pq := q
			pq.Epoch, pq.After, pq.MinVersion = first.Epoch, l.More, 0
			if l, err = s.store.List(ctx, room, pq); err != nil {
				return nil, err
			}
			if l.Stale || l.Version != first.Version {
				consistent = false
				break
			}
			pages, qs = append(pages, l), append(qs, pq)
		}
		if consistent {
			return joinPages(pages), nil
		}
		if pl, ok := s.store.(PagesLister); ok {
			for i := range qs {
				qs[i].Limit += q.Limit // the overlap: members that moved meanwhile
			}
			again, err := pl.ListPages(ctx, room, qs)
			if err != nil {
				return nil, err
			}
			if pages := covered(again, qs); pages != nil {
				return joinPages(pages), nil
			}
		}
		if attempt == snapshotPagesAttempts {
			return nil, Errorf(EUNAVAILABLE, "the room changed while it was read, %d times", attempt+1)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("snapshot: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// covered returns the pages read at one version (page i after the position
// qs[i].After) that cover the room without a hole: each page reaches the
// position the next starts after, the last one the room's end. Nil when
// they do not.
func covered(pages []*RoomList, qs []ListQuery) []*RoomList {
	v := pages[0].Version
	for i, l := range pages {
		if l.Stale || l.Version != v {
			return nil
		}
		if l.More == nil {
			return pages[:i+1] // the room's end: the pages after add nothing
		}
		// A page ends before the next one starts: a hole. (An online
		// member's position is its online sequence, and its score grows
		// with its sessions: the same member with fewer sessions now
		// looks short, and the room is read again.)
		if i == len(pages)-1 || comparePositions(*l.More, *qs[i+1].After) < 0 {
			return nil
		}
	}
	return nil
}

func comparePositions(a, b ListPosition) int {
	if c := cmp.Compare(a.Score, b.Score); c != 0 {
		return c
	}
	return cmp.Compare(a.UserID, b.UserID)
}

// joinPages concatenates pages of one version, each member once (pages
// read again overlap).
func joinPages(pages []*RoomList) *RoomList {
	n := 0
	for _, l := range pages {
		n += len(l.Members)
	}
	out := *pages[0]
	out.Members = make([]Member, 0, n)
	out.More, out.Next = nil, ""
	seen := make(map[string]struct{}, n)
	for _, l := range pages {
		for _, m := range l.Members {
			if _, dup := seen[m.UserID]; !dup {
				seen[m.UserID] = struct{}{}
				out.Members = append(out.Members, m)
			}
		}
	}
	return &out
}
