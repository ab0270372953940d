package httpapi

// listcache.go: GET /v1/list and GET /v1/rooms/{roomId}/members. Their ETag
// is made of the list's stamp (presence.ListStamper: what the room's state
// is, read in one small read) and the query, not of the body, so that
// If-None-Match costs that small read only; and the node keeps the last
// page of each list it served, with its stamp, so that an unchanged room's
// page is served without listing it again. A page is served from the cache
// only when the stamp read for this request is the one the page was listed
// with: the stamp fixes the page (room, limit and onlineOnly being the same),
// so a cached page is never stale, whichever Redis (primary, replica,
// cluster node) the stamp came from. Pages asked with a cursor (the pages
// after the first) have ETags of their own (the cursor is part of them) but
// are not cached: a room read page by page would push every first page out.

import (
	"container/list"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/prometheus/client_golang/prometheus"
)

// pageKey names a list page: everything but the room's state that its
// body depends on. (The token's epoch is in the stamp: a list asked with a
// removed room's epoch has a stamp of its own.)
type pageKey struct {
	org, room string
	limit     int
	online    bool
	cursor    string // "" for a first page; never cached otherwise
}

// listPage is a cached page; never changed once made.
type listPage struct {
	key   pageKey
	stamp string
	etag  string
	body  []byte
}

func (p *listPage) size() int64 {
	return int64(len(p.body)+len(p.stamp)+len(p.etag)+len(p.key.org)+len(p.key.room)) + 160 // map, list element, struct
}

// listCache keeps the last page served of each list, least recently used
// out first, within max bytes. A page bigger than an eighth of max is not
// kept. It also knows the lists being read (listing).
type listCache struct {
	mu       sync.Mutex
	max      int64
	size     int64
	pages    map[pageKey]*list.Element // of *listPage
	lru      *list.List                // front: most recently used
	inflight map[pageKey]*listing

	// Answers by source (presence_list_answers_total).
	notModified, fromCache, fromStore prometheus.Counter
}

func newListCache(maxBytes int64, reg prometheus.Registerer) *listCache {
	c := &listCache{max: maxBytes, pages: map[pageKey]*list.Element{}, lru: list.New(), inflight: map[pageKey]*listing{}}
	answers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "presence_list_answers_total",
		Help: "List answers (/v1/list, /v1/rooms/{roomId}/members) by source: not_modified (304 after the stamp read), cache (the node's page, after the stamp read), store (the list script ran).",
	}, []string{"source"})
	c.notModified = answers.WithLabelValues("not_modified")
	c.fromCache = answers.WithLabelValues("cache")
	c.fromStore = answers.WithLabelValues("store")
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "presence_list_cache_bytes",
		Help: "Bytes of the node's cache of list pages (about).",
	}, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(c.size)
	})
	if reg != nil {
		reg.MustRegister(answers, size)
	}
	return c
}

func (c *listCache) get(k pageKey) *listPage {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.pages[k]
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*listPage)
}

func (c *listCache) put(p *listPage) {
	n := p.size()
	if n > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.pages[p.key]; e != nil {
		c.size += n - e.Value.(*listPage).size()
		e.Value = p
		c.lru.MoveToFront(e)
	} else {
		c.pages[p.key] = c.lru.PushFront(p)
		c.size += n
	}
	for c.size > c.max {
		e := c.lru.Back()
		old := e.Value.(*listPage)
		c.lru.Remove(e)
		delete(c.pages, old.key)
		c.size -= old.size()
	}
}

// listing is a list being read by one request for a stamp it read: other
// requests that read the same stamp wait for its page. The page it gets
// shows that stamp's state (stamps never come back: if the state is at the
// stamp before and after, it was in between), or another one if the room
// changed meanwhile (waiters then list themselves).
type listing struct {
	stamp string
	done  chan struct{}
	page  *listPage // set before done is closed; nil when the list failed
}

// listing returns the listing of page k at stamp, or a new one that the
// caller (mine) must finish.
func (c *listCache) listing(k pageKey, stamp string) (f *listing, mine bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.inflight[k]; f != nil && f.stamp == stamp {
		return f, false
	}
	f = &listing{stamp: stamp, done: make(chan struct{})}
	c.inflight[k] = f // an older stamp's listing still ends for its waiters
	return f, true
}

func (c *listCache) finish(k pageKey, f *listing, p *listPage) {
	c.mu.Lock()
	if c.inflight[k] == f {
		delete(c.inflight, k)
	}
	c.mu.Unlock()
	f.page = p
	close(f.done)
}

// serveList answers a checked list request. With If-None-Match, or a
// cached page of the list, it first reads the stamp (one small read): a
// matching ETag gets 304, a cached page of that stamp is served as is, and
// a request that finds another one listing that very stamp waits for its
// page instead of listing it too. Otherwise the list is read, and its page
// cached with the stamp read with it. A store without stamps gets the ETag
// of the body, as before.
func (s *Server) serveList(c echo.Context, r presence.ListRequest) error {
	ctx := c.Request().Context()
	inm := c.Request().Header.Get("If-None-Match")
	key := pageKey{org: r.Room.Org, room: r.Room.RoomID, limit: r.Query.Limit, online: r.Query.OnlineOnly, cursor: r.Cursor}
	var cached *listPage
	if key.cursor == "" {
		cached = s.lists.get(key)
	}
	if inm != "" || cached != nil {
		stamp, ok, err := s.svc.ListStamp(ctx, r)
		if err != nil {
			return err
		}
		if ok {
			etag := listETag(key, stamp)
			if inm != "" && etagMatch(inm, etag) {
				s.lists.notModified.Inc()
				return notModified(c, etag)
			}
			if cached != nil && cached.stamp == stamp {
				s.lists.fromCache.Inc()
				return writeListBody(c, cached.etag, cached.body)
			}
			if key.cursor != "" {
				return s.listAndServe(c, r, key, inm, new(*listPage))
			}
			f, mine := s.lists.listing(key, stamp)
			if !mine {
				<-f.done // within the other request's store call timeout
				if p := f.page; p != nil && p.stamp == stamp {
					s.lists.fromCache.Inc()
					return writeListBody(c, p.etag, p.body)
				}
			} else {
				var page *listPage
				defer func() { s.lists.finish(key, f, page) }()
				return s.listAndServe(c, r, key, inm, &page)
			}
		}
	}
	return s.listAndServe(c, r, key, inm, new(*listPage))
}

// listAndServe reads a list, caches its page (and sets *page to it) and
// answers with it.
func (s *Server) listAndServe(c echo.Context, r presence.ListRequest, key pageKey, inm string, page **listPage) error {
	l, err := s.svc.ListPage(c.Request().Context(), r)
	if err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	s.lists.fromStore.Inc()
	var etag string
	if l.Stamp == "" {
		etag = quoted(fnv1a(fnvOffset, b))
	} else {
		etag = listETag(key, l.Stamp)
		*page = &listPage{key: key, stamp: l.Stamp, etag: etag, body: b}
		if !l.Stale && key.cursor == "" {
			s.lists.put(*page)
		}
	}
	if inm != "" && etagMatch(inm, etag) {
		return notModified(c, etag)
	}
	return writeListBody(c, etag, b)
}

func notModified(c echo.Context, etag string) error {
	c.Response().Header().Set("ETag", etag)
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.NoContent(http.StatusNotModified)
}

func writeListBody(c echo.Context, etag string, body []byte) error {
	c.Response().Header().Set("ETag", etag)
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSONBlob(http.StatusOK, body)
}

// listETag is the ETag of a list: FNV-1a (64 bits, base 36) of the page key
// (with the cursor, if any) and the stamp.
func listETag(k pageKey, stamp string) string {
	h := fnv1a(fnvOffset, k.org)
	h = fnv1a(h, "\x00"+k.room+"\x00")
	h = fnv1a(h, strconv.Itoa(k.limit))
	if k.online {
		h = fnv1a(h, "\x00online")
	}
	if k.cursor != "" {
		h = fnv1a(h, "\x00cursor\x00"+k.cursor)
	}
	return quoted(fnv1a(h, "\x00"+stamp))
}

const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

func fnv1a[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func quoted(h uint64) string { return `"` + strconv.FormatUint(h, 36) + `"` }
