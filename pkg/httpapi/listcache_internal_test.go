package httpapi

import (
	"fmt"
	"strings"
	"testing"
)

// TestListCacheBounded: the cache keeps the pages it last used within its
// bytes, one page per list (a new stamp replaces the old page), and never
// a page bigger than an eighth of them.
func TestListCacheBounded(t *testing.T) {
	c := newListCache(8000, nil)
	page := func(room, stamp string, n int) *listPage {
		k := pageKey{org: "o", room: room, limit: 104}
		return &listPage{key: k, stamp: stamp, etag: listETag(k, stamp), body: []byte(strings.Repeat("x", n))}
	}
	for i := 0; i < 40; i++ {
		c.put(page(fmt.Sprint("r", i), "1", 500))
		if i == 0 {
			c.get(pageKey{org: "o", room: "r0", limit: 104}) // r0 stays recently used
		}
		if c.size > c.max {
			t.Fatalf("size %d over %d", c.size, c.max)
		}
	}
	if len(c.pages) != c.lru.Len() || len(c.pages) < 10 || len(c.pages) > 12 {
		t.Fatalf("%d pages, %d in the LRU list", len(c.pages), c.lru.Len())
	}
	if c.get(pageKey{org: "o", room: "r1", limit: 104}) != nil || c.get(pageKey{org: "o", room: "r39", limit: 104}) == nil {
		t.Fatal("not least recently used out first")
	}
	if c.get(pageKey{org: "o", room: "r1", limit: 103}) != nil || c.get(pageKey{org: "o", room: "r39", limit: 104, online: true}) != nil {
		t.Fatal("another list's page")
	}
	size := c.size
	c.put(page("r39", "2", 500))
	if p := c.get(pageKey{org: "o", room: "r39", limit: 104}); p == nil || p.stamp != "2" || c.size != size {
		t.Fatalf("replaced page: %+v, size %d, was %d", p, c.size, size)
	}
	c.put(page("big", "1", 1001))
	if c.get(pageKey{org: "o", room: "big", limit: 104}) != nil {
		t.Fatal("a page over max/8 was kept")
	}
	off := newListCache(-1, nil)
	off.put(page("r", "1", 1))
	if off.get(pageKey{org: "o", room: "r", limit: 104}) != nil {
		t.Fatal("cache off kept a page")
	}
}

// TestListCacheListing: a request that read the stamp another one is
// listing waits for that page; another stamp lists on its own.
func TestListCacheListing(t *testing.T) {
	c := newListCache(1<<20, nil)
	k := pageKey{org: "o", room: "r", limit: 104}
	a, mine := c.listing(k, "s1")
	if !mine {
		t.Fatal("first listing not mine")
	}
	b, mine := c.listing(k, "s1")
	if mine || b != a {
		t.Fatal("same stamp: not the listing in progress")
	}
	d, mine := c.listing(k, "s2")
	if !mine || d == a {
		t.Fatal("another stamp joined an older listing")
	}
	p := &listPage{key: k, stamp: "s1", body: []byte("{}")}
	go c.finish(k, a, p)
	<-b.done
	if b.page != p {
		t.Fatal("waiter did not get the page")
	}
	if c.inflight[k] != d {
		t.Fatal("an older listing's end removed the newer one")
	}
	c.finish(k, d, nil)
	if len(c.inflight) != 0 {
		t.Fatal("listing left in flight")
	}
}
