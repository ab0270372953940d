package main

// bench_list.go: the list scenario.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

type listResult struct {
	RunID       string      `json:"runId"`
	Scenario    string      `json:"scenario"`
	URLs        []string    `json:"urls"`
	Members     int         `json:"members"`
	Limit       int         `json:"limit"`
	Concurrency int         `json:"concurrency"`
	Create      phaseResult `json:"create"`
	// Offline: with --offline, every member disconnected after its creation.
	Offline *phaseResult `json:"offline,omitempty"`
	// Plain lists without If-None-Match (200 with the body).
	Plain phaseResult `json:"plain"`
	// ETag lists with the body's ETag in If-None-Match (304, no body).
	ETag       phaseResult `json:"etag"`
	BodyBytes  int         `json:"bodyBytes"`
	ETagValue  string      `json:"etagValue"`
	Changed    int64       `json:"changed"` // 200 answers in the If-None-Match phase
	RoomID     string      `json:"roomId"`
	OnlineSeen int64       `json:"online"` // the room's online count after the creation
	// Pages: --pages whole reads of the room page by page.
	Pages *pagesResult `json:"pages,omitempty"`
}

// pagesResult is the room read page by page (limit a page, following next),
// Reads times in a row, one request at a time.
type pagesResult struct {
	Reads        int       `json:"reads"`
	PagesPerRead int       `json:"pagesPerRead"`
	ReadMs       []float64 `json:"readMs"` // each whole read, in order
	Page         latency   `json:"page"`   // each page's request
}

func (r *listResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "list: room of %d members (%s), limit %d, concurrency %d, nodes %v; body %d bytes\n\n",
		r.Members, r.RoomID, r.Limit, r.Concurrency, r.URLs, r.BodyBytes)
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, phaseHeader)
	fmt.Fprintln(tw, r.Create.row("create members"))
	if r.Offline != nil {
		fmt.Fprintln(tw, r.Offline.row("disconnect members"))
	}
	fmt.Fprintln(tw, r.Plain.row("list (200)"))
	fmt.Fprintln(tw, r.ETag.row("list If-None-Match (304)"))
	tw.Flush()
	if p := r.Pages; p != nil {
		fmt.Fprintf(w, "\nthe room page by page (limit %d, %d pages), %d reads: %s ms each\n", r.Limit, p.PagesPerRead, p.Reads, fmtFloats(p.ReadMs))
		fmt.Fprintf(w, "a page: p50 %s  p90 %s  p99 %s  max %s\n", fmtMs(p.Page.P50Ms), fmtMs(p.Page.P90Ms), fmtMs(p.Page.P99Ms), fmtMs(p.Page.MaxMs))
	}
	for _, p := range []phaseResult{r.Create, r.Plain, r.ETag} {
		if p.Errors > 0 {
			fmt.Fprintf(w, "errors: %v (first: %s)\n", p.ErrorKinds, p.FirstError)
		}
	}
}

func runList(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	eps := make([]endpoint, len(o.urls))
	for i, u := range o.urls {
		eps[i] = mustEndpoint(u)
	}
	room := b.id("list", 0)
	res := &listResult{RunID: o.runID, Scenario: "list", URLs: o.urls, Members: o.members, Limit: o.limit, Concurrency: o.concurrency, RoomID: room}

	// The members: one heartbeat each, with the longest interval, so that
	// none expires during the run.
	const create = 64
	clients := make([]*hclient, create)
	for w := range clients {
		clients[w] = newHClient(eps[w%len(eps)], o.reqTimeout)
	}
	var tokMu sync.Mutex
	roomToken := ""
	sessions := make([]string, o.members) // session tokens, for --offline
	b.logf("creating a room of %d members", o.members)
	res.Create = b.runPhase("create", create, time.Time{}, ctx.Done(), func(w, i int) error {
		m := w + i*create
		if m >= o.members {
			return errStop
		}
		body := heartbeatBody(room, b.id("s", m), b.id("u", m), 10*time.Minute)
		r, err := clients[w].do(buildRequest(clients[w].ep, o.token, "POST", "/v1/heartbeat", body))
		if err != nil {
			return err
		}
		if err := r.expect(200); err != nil {
			return err
		}
		if m == 0 {
			tokMu.Lock()
			roomToken = jsonString(r.body, "roomToken")
			tokMu.Unlock()
		}
		sessions[m] = jsonString(r.body, "sessionToken")
		return nil
	})
	if o.offline && res.Create.Errors == 0 {
		// Each member's one session ends: the room is all offline, most
		// recent first, with many members per millisecond of
		// lastDisconnected (ties, ordered by userId).
		b.logf("disconnecting the %d members", o.members)
		p := b.runPhase("offline", create, time.Time{}, ctx.Done(), func(w, i int) error {
			m := w + i*create
			if m >= o.members {
				return errStop
			}
			r, err := clients[w].do(buildRequest(clients[w].ep, o.token, "POST", "/v1/disconnect", []byte(sessions[m])))
			if err != nil {
				return err
			}
			return r.expect(204)
		})
		res.Offline = &p
		if err := b.checkErrors("disconnects", p.Errors, p.FirstError); err != nil {
			return res, err
		}
	}
	for _, c := range clients {
		c.close()
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := b.checkErrors("heartbeats", res.Create.Errors, res.Create.FirstError); err != nil {
		return res, err
	}
	if res.Create.Errors > 0 || roomToken == "" {
		return res, errors.New("the room was not created (no room token)")
	}
	// The room must hold them all (a count through the first node).
	cc := newHClient(eps[0], o.reqTimeout)
	defer cc.close()
	cr, err := cc.do(buildRequest(eps[0], o.token, "GET", "/v1/rooms/"+url.PathEscape(room)+"/count", nil))
	if err == nil {
		err = cr.expect(200)
	}
	if err != nil {
		return res, fmt.Errorf("count of the room: %w", err)
	}
	res.OnlineSeen, _ = strconv.ParseInt(jsonNumber(cr.body, "online"), 10, 64)
	if want := int64(o.members); res.OnlineSeen != want && !o.offline || o.offline && res.OnlineSeen != 0 {
		return res, fmt.Errorf("the room has %d members online, want %d (--offline %v)", res.OnlineSeen, want, o.offline)
	}

	path := "/v1/list?roomToken=" + url.QueryEscape(roomToken) + "&limit=" + strconv.Itoa(o.limit)
	first, err := cc.do(buildRequest(eps[0], o.token, "GET", path, nil))
	if err == nil {
		err = first.expect(200)
	}
	if err != nil {
		return res, fmt.Errorf("list: %w", err)
	}
	res.BodyBytes, res.ETagValue = len(first.body), first.etag
	if res.ETagValue == "" {
		return res, errors.New("list: no ETag")
	}
	if n := countMembers(first.body); n != min(o.limit, o.members) {
		return res, fmt.Errorf("list: %d members in the answer, want %d", n, min(o.limit, o.members))
	}

	listers := make([]*hclient, o.concurrency)
	for w := range listers {
		listers[w] = newHClient(eps[w%len(eps)], o.reqTimeout)
	}
	defer func() {
		for _, c := range listers {
			c.close()
		}
	}()
	plain := make([][]byte, len(eps))
	cond := make([][]byte, len(eps))
	for i, ep := range eps {
		plain[i] = buildRequest(ep, o.token, "GET", path, nil)
		cond[i] = buildRequest(ep, o.token, "GET", path, nil, "If-None-Match: "+res.ETagValue)
	}
	b.logf("listing for %s without If-None-Match", o.duration)
	res.Plain = b.runPhase("list", o.concurrency, time.Now().Add(o.duration), ctx.Done(), func(w, i int) error {
		r, err := listers[w].do(plain[w%len(eps)])
		if err != nil {
			return err
		}
		if err := r.expect(200); err != nil {
			return err
		}
		if len(r.body) != res.BodyBytes {
			return fmt.Errorf("body of %d bytes, want %d", len(r.body), res.BodyBytes)
		}
		return nil
	})
	var changed atomic.Int64
	b.logf("listing for %s with If-None-Match", o.duration)
	res.ETag = b.runPhase("list-etag", o.concurrency, time.Now().Add(o.duration), ctx.Done(), func(w, i int) error {
		r, err := listers[w].do(cond[w%len(eps)])
		if err != nil {
			return err
		}
		if r.status == 200 {
			changed.Add(1)
			return nil
		}
		return r.expect(304)
	})
	res.Changed = changed.Load()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	firstErr := res.Plain.FirstError
	if firstErr == "" {
		firstErr = res.ETag.FirstError
	}
	if err := b.checkErrors("lists", res.Plain.Errors+res.ETag.Errors, firstErr); err != nil {
		return res, err
	}
	if o.pages > 0 {
		b.logf("reading the room page by page %d times", o.pages)
		res.Pages, err = readPages(ctx, cc, o.token, roomToken, o.limit, o.members, o.pages)
	}
	return res, err
}

// readPages reads the room of roomToken page by page, reads times, one
// request at a time, and checks that each read gives every one of members
// once, all at one version and in the same order as the first read.
func readPages(ctx context.Context, c *hclient, token, roomToken string, limit, members, reads int) (*pagesResult, error) {
	res := &pagesResult{Reads: reads}
	var h hist
	var first []string
	for n := range reads {
		var ids []string
		version := int64(-1)
		cursor := ""
		pages := 0
		t0 := time.Now()
		for {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			path := "/v1/list?roomToken=" + url.QueryEscape(roomToken) + "&limit=" + strconv.Itoa(limit)
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			p0 := time.Now()
			r, err := c.do(buildRequest(c.ep, token, "GET", path, nil))
			if err == nil {
				err = r.expect(200)
			}
			if err != nil {
				return res, fmt.Errorf("read %d, page %d: %w", n, pages, err)
			}
			h.add(time.Since(p0))
			pages++
			var page struct {
				Version int64 `json:"version"`
				Members []struct {
					UserID string `json:"userId"`
				} `json:"members"`
				Next string `json:"next"`
			}
			if err := json.Unmarshal(r.body, &page); err != nil {
				return res, fmt.Errorf("read %d, page %d: %w", n, pages, err)
			}
			if version >= 0 && page.Version != version {
				return res, fmt.Errorf("read %d, page %d: version %d, the first page's %d (the room changed)", n, pages, page.Version, version)
			}
			version = page.Version
			for _, m := range page.Members {
				ids = append(ids, m.UserID)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		res.ReadMs = append(res.ReadMs, round3(float64(time.Since(t0).Microseconds())/1000))
		res.PagesPerRead = pages
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			seen[id] = true
		}
		if len(ids) != members || len(seen) != members {
			return res, fmt.Errorf("read %d: %d members, %d different, want %d", n, len(ids), len(seen), members)
		}
		if first == nil {
			first = ids
		} else if !slices.Equal(first, ids) {
			return res, fmt.Errorf("read %d: another order than the first read", n)
		}
	}
	res.Page = h.summary()
	return res, nil
}

func fmtFloats(v []float64) string {
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

// jsonNumber extracts the number value of "key" from a small JSON object.
func jsonNumber(body []byte, key string) string {
	k := `"` + key + `":`
	s := string(body)
	for i := 0; i+len(k) <= len(s); i++ {
		if s[i:i+len(k)] == k {
			j := i + len(k)
			e := j
			for e < len(s) && (s[e] == '-' || (s[e] >= '0' && s[e] <= '9')) {
				e++
			}
			return s[j:e]
		}
	}
	return ""
}

// countMembers counts the members of a list answer.
func countMembers(body []byte) int {
	n := 0
	k := []byte(`{"userId":`)
	for i := 0; i+len(k) <= len(body); i++ {
		if string(body[i:i+len(k)]) == string(k) {
			n++
		}
	}
	return n
}
