// Package webhooktest is a webhook receiver for tests and benchmarks: an
// HTTP server on 127.0.0.1 that checks each request as the README tells
// receivers to (method, content type, a fresh timestamp, the signature over
// the raw body, 1-100 events), answers as the test says, and keeps the
// events of the requests it acknowledged, with when each arrived. It takes
// the event type from redisstore (which sends them) and checks the rest on
// its own.
package webhooktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/redisstore"
)

// Event is one event of a webhook request, as the product defines it, and
// when it arrived.
type Event struct {
	redisstore.WebhookEvent
	// Arrived is when the request that carried it arrived.
	Arrived time.Time `json:"-"`
}

// Hang, returned by Status, leaves the request without an answer until
// the sender gives up.
const Hang = -1

// Receiver is a webhook receiver.
type Receiver struct {
	Secret string
	// Status answers request n (from 1): 0 means 200 (204 for every
	// second one: any 2xx acknowledges); Hang means no answer. Set it
	// before Start.
	Status func(n int) int

	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	requests []time.Time
	all      []Event // of every well-formed request
	acked    []Event
	bad      []string

	inflight, maxInflight atomic.Int32
}

// Start serves on ln (nil: a free port of 127.0.0.1).
func (r *Receiver) Start(ln net.Listener) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
	}
	r.ln = ln
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return nil
}

// URL is the receiver's URL.
func (r *Receiver) URL() string { return "http://" + r.ln.Addr().String() }

// Close stops the server.
func (r *Receiver) Close() {
	if r.srv != nil {
		r.srv.Close()
	}
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	in := r.inflight.Add(1)
	defer r.inflight.Add(-1)
	for {
		m := r.maxInflight.Load()
		if in <= m || r.maxInflight.CompareAndSwap(m, in) {
			break
		}
	}
	body, _ := io.ReadAll(req.Body)
	now := time.Now()
	r.mu.Lock()
	r.requests = append(r.requests, now)
	n := len(r.requests)
	r.mu.Unlock()
	events, problem := Check(r.Secret, req, body)
	if problem != "" {
		r.mu.Lock()
		r.bad = append(r.bad, problem)
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.all = append(r.all, events...)
	r.mu.Unlock()
	status := 0
	if r.Status != nil {
		status = r.Status(n)
	}
	switch status {
	case Hang:
		<-req.Context().Done()
		return
	case 0:
		status = http.StatusOK
		if n%2 == 0 {
			status = http.StatusNoContent
		}
	}
	if status >= 200 && status < 300 {
		for i := range events {
			events[i].Arrived = now
		}
		r.mu.Lock()
		r.acked = append(r.acked, events...)
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

// Check checks a request as a receiver must and returns its events, or
// what is wrong with it.
func Check(secret string, req *http.Request, body []byte) ([]Event, string) {
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		return nil, "method or content type: " + req.Method + " " + req.Header.Get("Content-Type")
	}
	ts := req.Header.Get("X-Presence-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return nil, "timestamp " + ts
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(req.Header.Get("X-Presence-Signature")), []byte(want)) {
		return nil, "signature " + req.Header.Get("X-Presence-Signature")
	}
	var b struct {
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Events) < 1 || len(b.Events) > 100 {
		return nil, fmt.Sprintf("body of %d events: %v", len(b.Events), err)
	}
	for _, e := range b.Events {
		if len(e.ID) != 32 || e.Org == "" || e.RoomID == "" || e.Version < 1 || e.UserID == "" || e.TimeMs < 1 || len(e.Member) == 0 {
			return nil, fmt.Sprintf("event %+v", e)
		}
	}
	return b.Events, ""
}

// Events returns the events of the acknowledged requests, in arrival order
// (with any duplicates).
func (r *Receiver) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.acked...)
}

// All returns the events of every well-formed request, acknowledged or
// not: a retry must carry the ids of the first attempt.
func (r *Receiver) All() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.all...)
}

// Distinct is how many distinct event ids were acknowledged.
func (r *Receiver) Distinct() int {
	seen := map[string]bool{}
	for _, e := range r.Events() {
		seen[e.ID] = true
	}
	return len(seen)
}

// Arrivals returns when each request arrived, acknowledged or not.
func (r *Receiver) Arrivals() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.requests...)
}

// Bad returns what was wrong with the requests refused.
func (r *Receiver) Bad() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// MaxInflight is the most requests it served at once.
func (r *Receiver) MaxInflight() int { return int(r.maxInflight.Load()) }

// Verify checks what was acknowledged: each room's first deliveries in
// version order, no id twice unless dups, and no refused request. It
// returns each room's events (first deliveries) and the problems.
func (r *Receiver) Verify(dups bool) (map[string][]Event, []string) {
	problems := r.Bad()
	seen := map[string]int{}
	rooms := map[string][]Event{}
	last := map[string]int64{}
	for _, e := range r.Events() {
		seen[e.ID]++
		if seen[e.ID] > 1 {
			if !dups {
				problems = append(problems, fmt.Sprintf("event %s (%s v%d) delivered twice", e.ID, e.RoomID, e.Version))
			}
			continue
		}
		key := e.Org + "/" + e.RoomID
		if e.Version <= last[key] {
			problems = append(problems, fmt.Sprintf("room %s: version %d after %d", key, e.Version, last[key]))
		}
		last[key] = e.Version
		rooms[e.RoomID] = append(rooms[e.RoomID], e)
	}
	return rooms, problems
}
