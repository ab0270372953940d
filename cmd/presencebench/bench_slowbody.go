package main

// bench_slowbody.go: the slowbody scenario. Slow request bodies (a
// slow-loris on the body rather than the headers) must not starve
// well-behaved clients: a normal heartbeat and list load is measured
// before and during --slow connections that send POST /v1/disconnect with
// Content-Length: 100 and then a byte every --dribble.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

// slowBodyLength is the Content-Length the slow connections announce.
const slowBodyLength = 100

type slowBodyResult struct {
	RunID       string `json:"runId"`
	Scenario    string `json:"scenario"`
	URL         string `json:"url"`
	Concurrency int    `json:"concurrency"`
	Slow        int    `json:"slow"`
	DribbleMs   int64  `json:"dribbleMs"`
	// Baseline is the normal load before the slow connections, Attack the
	// same load while they are open.
	Baseline slowBodyLoad `json:"baseline"`
	Attack   slowBodyLoad `json:"attack"`
	// SlowConnections is what happened to the slow connections.
	SlowConnections slowConnStats `json:"slowConnections"`
}

// slowBodyLoad is one phase of the normal load: heartbeats and lists, each
// at --concurrency.
type slowBodyLoad struct {
	Heartbeat loadPhase `json:"heartbeat"`
	List      loadPhase `json:"list"`
}

// loadPhase is a phase with its error rate (errors / all requests).
type loadPhase struct {
	phaseResult
	ErrorRate float64 `json:"errorRate"`
}

func withErrorRate(p phaseResult) loadPhase {
	l := loadPhase{phaseResult: p}
	if n := p.Requests + p.Errors; n > 0 {
		l.ErrorRate = round3(float64(p.Errors) / float64(n))
	}
	return l
}

func (p loadPhase) row(name string) string {
	return p.phaseResult.row(name) + fmt.Sprintf("\t%.1f%%", 100*p.ErrorRate)
}

type slowConnStats struct {
	// Opened counts the connections that sent their headers (--slow at
	// first, and one more each time the node closed one).
	Opened int64 `json:"opened"`
	// OpenSeconds is how long opening the first --slow took.
	OpenSeconds float64 `json:"openSeconds"`
	DialErrors  int64   `json:"dialErrors,omitempty"`
	FirstError  string  `json:"firstError,omitempty"`
	// ClosedByNode counts the connections the node answered or closed,
	// Answers their status lines, ClosedAfter the time from the headers to
	// the node's close.
	ClosedByNode int64            `json:"closedByNode"`
	Answers      map[string]int64 `json:"answers,omitempty"`
	ClosedAfter  latency          `json:"closedAfter"`
	// OpenAtEnd were still open when the attack phase ended.
	OpenAtEnd int64 `json:"openAtEnd"`
}

func (r *slowBodyResult) writeTable(w io.Writer) {
	fmt.Fprintf(w, "slowbody: %d slow connections (POST /v1/disconnect, Content-Length: %d, a byte every %s) against %s;\n"+
		"normal load: %d clients heartbeating and %d listing, %s per phase\n\n",
		r.Slow, slowBodyLength, time.Duration(r.DribbleMs)*time.Millisecond, r.URL, r.Concurrency, r.Concurrency,
		time.Duration(r.Baseline.Heartbeat.Seconds*float64(time.Second)).Round(100*time.Millisecond))
	tw := cliutil.Table(w)
	fmt.Fprintln(tw, phaseHeader+"\tERR%")
	fmt.Fprintln(tw, r.Baseline.Heartbeat.row("baseline heartbeat"))
	fmt.Fprintln(tw, r.Baseline.List.row("baseline list"))
	fmt.Fprintln(tw, r.Attack.Heartbeat.row("attack heartbeat"))
	fmt.Fprintln(tw, r.Attack.List.row("attack list"))
	tw.Flush()
	for _, p := range []loadPhase{r.Baseline.Heartbeat, r.Baseline.List, r.Attack.Heartbeat, r.Attack.List} {
		if p.Errors > 0 {
			fmt.Fprintf(w, "errors: %v (first: %s)\n", p.ErrorKinds, p.FirstError)
		}
	}
	s := r.SlowConnections
	fmt.Fprintf(w, "\nslow connections: %d opened (the first %d in %.1fs), %d closed by the node", s.Opened, r.Slow, s.OpenSeconds, s.ClosedByNode)
	if s.ClosedByNode > 0 {
		fmt.Fprintf(w, " after p50 %s, max %s; answers %v", fmtMs(s.ClosedAfter.P50Ms), fmtMs(s.ClosedAfter.MaxMs), s.Answers)
	}
	fmt.Fprintf(w, "; %d still open at the end\n", s.OpenAtEnd)
	if s.DialErrors > 0 {
		fmt.Fprintf(w, "dial errors: %d (first: %s)\n", s.DialErrors, s.FirstError)
	}
}

func runSlowBody(ctx context.Context, b *bench) (benchResult, error) {
	o := b.o
	ep := mustEndpoint(o.urls[0])
	res := &slowBodyResult{RunID: o.runID, Scenario: "slowbody", URL: ep.url, Concurrency: o.concurrency, Slow: o.slow,
		DribbleMs: o.dribble.Milliseconds()}

	// The normal load: worker w refreshes its own session in one room, and
	// lists that room.
	room := b.id("slow", 0)
	hbClients := make([]*hclient, o.concurrency)
	listClients := make([]*hclient, o.concurrency)
	beats := make([][]byte, o.concurrency)
	for w := range hbClients {
		hbClients[w] = newHClient(ep, o.reqTimeout)
		listClients[w] = newHClient(ep, o.reqTimeout)
		beats[w] = buildRequest(ep, o.token, "POST", "/v1/heartbeat", heartbeatBody(room, b.id("s", w), b.id("u", w), time.Minute))
	}
	defer func() {
		for w := range hbClients {
			hbClients[w].close()
			listClients[w].close()
		}
	}()
	first, err := hbClients[0].do(beats[0])
	if err == nil {
		err = first.expect(200)
	}
	if err != nil {
		return nil, fmt.Errorf("first heartbeat: %w", err)
	}
	roomToken := jsonString(first.body, "roomToken")
	if roomToken == "" {
		return nil, errors.New("first heartbeat: no room token")
	}
	list := buildRequest(ep, o.token, "GET", "/v1/list?roomToken="+url.QueryEscape(roomToken), nil)
	load := func(label string) slowBodyLoad {
		until := time.Now().Add(o.duration)
		var l slowBodyLoad
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			l.Heartbeat = withErrorRate(b.runPhase(label+" heartbeat", o.concurrency, until, ctx.Done(), func(w, i int) error {
				r, err := hbClients[w].do(beats[w])
				if err != nil {
					return err
				}
				return r.expect(200)
			}))
		}()
		go func() {
			defer wg.Done()
			l.List = withErrorRate(b.runPhase(label+" list", o.concurrency, until, ctx.Done(), func(w, i int) error {
				r, err := listClients[w].do(list)
				if err != nil {
					return err
				}
				return r.expect(200)
			}))
		}()
		wg.Wait()
		return l
	}

	b.logf("baseline: heartbeats and lists at concurrency %d for %s", o.concurrency, o.duration)
	res.Baseline = load("baseline")
	if err := ctx.Err(); err != nil {
		return res, err
	}

	b.logf("opening %d slow connections (a byte every %s)", o.slow, o.dribble)
	atk := newSlowAttack(ep, o)
	openStart := time.Now()
	atk.start(ctx)
	openSeconds := round3(time.Since(openStart).Seconds())
	b.logf("attack: heartbeats and lists at concurrency %d for %s", o.concurrency, o.duration)
	res.Attack = load("attack")
	res.SlowConnections = atk.stop(openSeconds)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if s := res.SlowConnections; s.DialErrors > 0 && s.Opened < int64(o.slow) {
		return res, fmt.Errorf("only %d of %d slow connections opened; first error: %s", s.Opened, o.slow, s.FirstError)
	}
	for _, p := range []struct {
		what string
		p    loadPhase
	}{{"baseline heartbeats", res.Baseline.Heartbeat}, {"baseline lists", res.Baseline.List},
		{"heartbeats during the attack", res.Attack.Heartbeat}, {"lists during the attack", res.Attack.List}} {
		if err := b.checkErrors(p.what, p.p.Errors, p.p.FirstError); err != nil {
			return res, err
		}
	}
	return res, nil
}

// slowAttack keeps --slow connections sending their bodies a byte at a
// time: each of its goroutines opens one, and opens another when the node
// closes it.
type slowAttack struct {
	ep      endpoint
	o       benchOpts
	head    []byte
	done    chan struct{}
	wg      sync.WaitGroup
	opened  atomic.Int64
	openEnd atomic.Int64
	dialErr errCounter

	mu      sync.Mutex
	closed  hist
	answers map[string]int64
}

func newSlowAttack(ep endpoint, o benchOpts) *slowAttack {
	head := fmt.Sprintf("POST %s/v1/disconnect HTTP/1.1\r\nHost: %s\r\nUser-Agent: presencebench\r\n"+
		"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n", ep.base, ep.host, slowBodyLength)
	return &slowAttack{ep: ep, o: o, head: []byte(head), done: make(chan struct{}), answers: map[string]int64{}}
}

// start opens the connections, --dial-concurrency at a time, and returns
// when each has sent its headers (or failed to).
func (a *slowAttack) start(ctx context.Context) {
	sem := make(chan struct{}, a.o.dialConc)
	var first sync.WaitGroup
	first.Add(a.o.slow)
	for i := 0; i < a.o.slow; i++ {
		sem <- struct{}{}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.keep(ctx, func() { <-sem; first.Done() })
		}()
	}
	first.Wait()
}

// keep holds one slow connection open at a time until stop; opened is
// called once the first has sent its headers.
func (a *slowAttack) keep(ctx context.Context, opened func()) {
	var once sync.Once
	defer once.Do(opened)
	for {
		select {
		case <-a.done:
			return
		case <-ctx.Done():
			return
		default:
		}
		conn, err := (&net.Dialer{Timeout: a.o.reqTimeout, KeepAlive: -1}).DialContext(ctx, "tcp", a.ep.addr)
		if err == nil {
			conn.SetWriteDeadline(time.Now().Add(a.o.reqTimeout))
			if _, err = conn.Write(append(a.head[:len(a.head):len(a.head)], 'x')); err != nil {
				conn.Close()
			}
		}
		if err != nil {
			a.dialErr.add(err)
			once.Do(opened)
			select { // do not spin on a refusing node
			case <-a.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		a.opened.Add(1)
		once.Do(opened)
		a.dribble(conn)
		conn.Close()
	}
}

// dribble sends the rest of the body a byte every --dribble until the node
// answers or closes the connection, or the attack stops.
func (a *slowAttack) dribble(conn net.Conn) {
	start := time.Now()
	sent := 1
	buf := make([]byte, 512)
	var answer []byte
	stopped := make(chan struct{})
	go func() { // unblock the read when the attack stops
		select {
		case <-a.done:
			conn.SetReadDeadline(time.Now())
		case <-stopped:
		}
	}()
	defer close(stopped)
	next := start.Add(a.o.dribble)
	for {
		conn.SetReadDeadline(next)
		n, err := conn.Read(buf)
		if n > 0 && len(answer) < 200 {
			answer = append(answer, buf[:n]...)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			select {
			case <-a.done:
				a.openEnd.Add(1)
				return
			default:
			}
			if sent < slowBodyLength && len(answer) == 0 {
				conn.SetWriteDeadline(time.Now().Add(a.o.reqTimeout))
				conn.Write([]byte{'x'})
				sent++
			}
			next = time.Now().Add(a.o.dribble)
			continue
		}
		if err != nil { // EOF or reset: the node closed it
			status := "closed without an answer"
			if line, _, _ := strings.Cut(string(answer), "\r\n"); strings.HasPrefix(line, "HTTP/1.") && len(line) >= 12 {
				status = line[9:12]
			}
			a.mu.Lock()
			a.closed.add(time.Since(start))
			a.answers[status]++
			a.mu.Unlock()
			return
		}
	}
}

// stop ends the attack and returns its statistics.
func (a *slowAttack) stop(openSeconds float64) slowConnStats {
	close(a.done)
	a.wg.Wait()
	n, _, first := a.dialErr.snapshot()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := slowConnStats{Opened: a.opened.Load(), OpenSeconds: openSeconds, DialErrors: n, FirstError: first,
		ClosedByNode: int64(a.closed.n), ClosedAfter: a.closed.summary(), OpenAtEnd: a.openEnd.Load()}
	if len(a.answers) > 0 {
		s.Answers = a.answers
	}
	return s
}
