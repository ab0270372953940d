package redisstore

// webhooks.go: webhook delivery. Every room event that the webhooks want is
// appended to the room's outbox (a stream in the room's slot) by the same
// script that makes the change (lua/lib.lua publish), so an event is stored
// exactly when it happens, whichever node ran the script and whatever
// becomes of that node afterwards.
//
// The index protocol. The webhook index (one sorted set) holds the rooms
// whose outbox may hold events, scored by when a sender may take the room
// next.
//
//   - A node that ran a script that appended to an outbox adds the room to
//     the index, ZADD NX now (a second step: the index lives in another
//     slot), and wakes its own sender. NX: a room that is claimed or backing
//     off keeps its score.
//   - A sender claims the due rooms (webhook_claim.lua: their score moves to
//     the end of the claim), reads their oldest events (at most
//     webhookBatch in all), POSTs them in one request, and then, per room:
//     removes the acknowledged (or dropped) events (webhook_ack.lua, which
//     answers how many are left); if some are left, makes the room due now;
//     if none, (1) removes it from the index, then (2) reads the outbox's
//     length again and, if an event came meanwhile, adds the room back (ZADD
//     NX now). A failed request counts an attempt and makes the room due
//     after the backoff instead (webhook_retry.lua).
//
// Step (2) closes the race with a script that appends while the room is
// being removed: either its append came before (2), which sees it, or
// after, and then its ZADD NX comes after (1). A node that dies between a
// script and its ZADD NX leaves an outbox that no index entry points to:
// the heal (every HealInterval, one node at a time) SCANs for outboxes and
// adds them again (ZADD NX).
//
// Every step is safe to run twice: a claim run again claims the same rooms
// or none, the removal of an event already removed removes nothing, a
// retry counted twice backs off one step longer, ZADD NX and ZREM are
// idempotent. A sender that dies after a request was acknowledged but
// before it removed the events leaves them to be sent again once its claim
// ends: at least once, and a duplicate carries the same id.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// WebhookEvents are the event names a webhook may send.
var WebhookEvents = []string{"join", "leave", "update", "remove"}

// WebhookConfig configures webhook delivery (Config.Webhooks). Zero values
// mean the defaults; an empty URL means webhooks are off.
type WebhookConfig struct {
	// URL receives the events (POST).
	URL string
	// Secret signs each request (X-Presence-Signature).
	Secret string
	// Events are the event names sent. Zero means join and leave.
	Events []string
	// MaxAge: an event not delivered this long after it happened is
	// dropped (and counted). Zero means 1h.
	MaxAge time.Duration
	// Timeout bounds one request; without an answer by then the attempt
	// failed. Zero means 5s.
	Timeout time.Duration
	// Poll is how often a sender looks for due rooms when nothing woke it
	// (jittered 0.5-1.5x). Zero means 100ms.
	Poll time.Duration
	// Claim is how long a sender holds the rooms it claimed: longer than
	// one request. Zero means 3 × Timeout.
	Claim time.Duration
	// MinBackoff and MaxBackoff bound the delay after a failed request (it
	// doubles from MinBackoff, at most MaxBackoff, times a jitter of
	// 0.75-1). Zero means 1s and 60s.
	MinBackoff, MaxBackoff time.Duration
	// HealInterval is how often one node looks for outboxes missing from
	// the index (a node died between a script and its index write). Zero
	// means 1m.
	HealInterval time.Duration
	// Client sends the requests. Nil: a client of its own, which follows
	// no redirect.
	Client *http.Client
}

const (
	webhookBatch    = 100 // events per request
	webhookRooms    = 100 // rooms per claim
	backlogRooms    = 1000
	failureTTL      = 24 * time.Hour
	backlogInterval = 5 * time.Second
	outboxMargin    = 10 * time.Minute // past the max age: senders drop (and count) events before their key expires
)

// webhooks is the delivery state of a Store with webhooks on.
type webhooks struct {
	cfg       WebhookConfig
	outboxTTL int64  // ms: MaxAge and a margin (lib.lua)
	events    string // "join,leave" (lib.lua)
	wake      chan struct{}
	// claimN is how many rooms a round claims: webhookRooms while rooms
	// hold few events each (one request carries many rooms), fewer when
	// they hold many (one request carries a few rooms' events: fewer Redis
	// calls per event).
	claimN atomic.Int64
	// warned is when a failed request was last logged (unix ns).
	warned atomic.Int64

	claim, ack, retry *redis.Script

	delivered, retried, dropped prometheus.Counter
	backlog                     prometheus.Gauge
}

func newWebhooks(cfg WebhookConfig, reg prometheus.Registerer) *webhooks {
	if len(cfg.Events) == 0 {
		cfg.Events = []string{"join", "leave"}
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = time.Hour
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Claim == 0 {
		cfg.Claim = 3 * cfg.Timeout
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.HealInterval == 0 {
		cfg.HealInterval = time.Minute
	}
	if cfg.Client == nil {
		// A redirect is not followed (it would turn the POST into a GET,
		// or send the events where the URL does not say): it fails, as
		// any answer that is not 2xx.
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_webhook_events_total",
		Help: "Webhook events by outcome: delivered (acknowledged with a 2xx), retried (in a failed request), dropped (older than the max age)."},
		[]string{"result"})
	h := &webhooks{
		cfg:       cfg,
		outboxTTL: (cfg.MaxAge + outboxMargin).Milliseconds(),
		events:    strings.Join(cfg.Events, ","),
		wake:      make(chan struct{}, 1),
		delivered: events.WithLabelValues("delivered"),
		retried:   events.WithLabelValues("retried"),
		dropped:   events.WithLabelValues("dropped"),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "presence_webhook_backlog",
			Help: "Webhook events waiting in Redis, cluster-wide (every node reports the same; estimated beyond 1000 rooms)."}),
	}
	h.claimN.Store(webhookRooms)
	if reg != nil {
		reg.MustRegister(events, h.backlog)
	}
	return h
}

// keyTTL is the time to live of the outboxes, and of the index and the
// attempts once nobody writes them any more (webhooks turned off): every
// write sets it again.
func (h *webhooks) keyTTL() time.Duration { return time.Duration(h.outboxTTL) * time.Millisecond }

// signal wakes the node's sender (it looks for due rooms at once).
func (h *webhooks) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// roomCall returns the KEYS and ARGV of a room script that may publish
// events: with webhooks on, the room's outbox and its two ARGV are added
// (lua/lib.lua).
func (s *Store) roomCall(rk RoomKeys, args ...any) ([]string, []any) {
	if s.hooks == nil {
		return rk.List[:], args
	}
	return append(rk.List[:], rk.Webhooks), append(args, s.hooks.outboxTTL, s.hooks.events)
}

// indexHooked adds rooms whose scripts appended to their outbox to the
// webhook index, and wakes this node's sender. A failure is only logged:
// the heal finds those outboxes.
func (s *Store) indexHooked(ctx context.Context, tags ...string) {
	if s.hooks == nil || len(tags) == 0 {
		return
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.queueHooked(ctx, p, tags)
		return nil
	})
	if err != nil {
		s.log.Warn("webhook index", "err", err, "rooms", len(tags))
	}
	s.hooks.signal()
}

// queueHooked queues the webhook index writes of rooms whose scripts
// appended to their outbox (ZADD NX now: a claimed or backing-off room
// keeps its score).
func (s *Store) queueHooked(ctx context.Context, p redis.Pipeliner, tags []string) {
	if s.hooks == nil || len(tags) == 0 {
		return
	}
	idx, now := s.keys.WebhookIndex(), float64(time.Now().UnixMilli())
	for _, tag := range tags {
		p.ZAddNX(ctx, idx, redis.Z{Score: now, Member: tag})
	}
	p.PExpire(ctx, idx, s.hooks.keyTTL())
}

// WebhookEvent is one event of a webhook request.
type WebhookEvent struct {
	ID      string          `json:"id"`
	Org     string          `json:"org"`
	RoomID  string          `json:"roomId"`
	Version int64           `json:"version"`
	Event   string          `json:"event"`
	UserID  string          `json:"userId"`
	Member  json.RawMessage `json:"member"`
	TimeMs  int64           `json:"timeMs"`
}

// WebhookSignature is the X-Presence-Signature of a request body sent at
// timestamp (unix seconds): v1= and the lowercase hex HMAC-SHA256 of
// "<timestamp>.<body>".
func WebhookSignature(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// webhookID is an event's id: the same on every attempt, unique per event
// (the room, the outbox entry and the version).
func webhookID(tag, entry string, version int64) string {
	sum := sha256.Sum256([]byte(tag + "\x00" + entry + "\x00" + strconv.FormatInt(version, 10)))
	return hex.EncodeToString(sum[:16])
}

// entryTime is the unix ms of an outbox entry id ("<ms>-<seq>"): when its
// event happened, by Redis's clock.
func entryTime(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}

// hookRoom is a claimed room during one delivery round.
type hookRoom struct {
	tag  string
	rk   RoomKeys
	sent []string // entry ids in the request
	drop []string // entry ids too old to send
	left int64    // events left after the ack
}

// runWebhooks delivers until ctx is done: at once when this node caused an
// event, else every Poll.
func (s *Store) runWebhooks(ctx context.Context) {
	h := s.hooks
	var lastErr time.Time
	for {
		n, err := s.DeliverWebhooks(ctx)
		if err != nil && ctx.Err() == nil && time.Since(lastErr) > 10*time.Second {
			lastErr = time.Now()
			s.log.Warn("webhook delivery failed", "err", err)
		}
		if n > 0 && err == nil {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-time.After(h.cfg.Poll/2 + rand.N(h.cfg.Poll)):
		}
	}
}

// DeliverWebhooks runs one delivery round: it claims the due rooms, sends
// their oldest events in one request, and removes them when acknowledged
// or reschedules the rooms after the backoff. It returns how many rooms it
// claimed. A failed request is no error (it is counted and retried).
func (s *Store) DeliverWebhooks(ctx context.Context) (int, error) {
	h := s.hooks
	if h == nil {
		return 0, nil
	}
	now := time.Now()
	idx := s.keys.WebhookIndex()
	cctx, cancel := s.callCtx(ctx)
	tags, err := h.claim.Run(cctx, s.rdb, []string{idx}, now.UnixMilli(), h.cfg.Claim.Milliseconds(), h.claimN.Load()).StringSlice()
	cancel()
	if err != nil || len(tags) == 0 {
		return 0, s.wrap("webhooks", err)
	}
	rooms := make([]*hookRoom, 0, len(tags))
	for _, tag := range tags {
		r, ok := ParseTag(tag)
		if !ok {
			s.rdb.ZRem(ctx, idx, tag) // not a room's: nothing to send
			continue
		}
		rooms = append(rooms, &hookRoom{tag: tag, rk: s.keys.Room(r)})
	}
	if len(rooms) == 0 {
		return len(tags), nil
	}
	// Read each room's oldest events.
	per := int64(max(1, webhookBatch/len(rooms)))
	reads := make([]*redis.XMessageSliceCmd, len(rooms))
	cctx, cancel = s.callCtx(ctx)
	_, err = s.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		for i, r := range rooms {
			reads[i] = p.XRangeN(cctx, r.rk.Webhooks, "-", "+", per)
		}
		return nil
	})
	cancel()
	if err != nil {
		return len(tags), s.wrap("webhooks", err) // the claim ends by itself
	}
	cutoff := now.Add(-h.cfg.MaxAge).UnixMilli()
	events := make([]WebhookEvent, 0, webhookBatch)
	full := 0 // rooms that had per events or more
	for i, r := range rooms {
		if int64(len(reads[i].Val())) == per {
			full++
		}
		for _, m := range reads[i].Val() {
			if entryTime(m.ID) < cutoff {
				r.drop = append(r.drop, m.ID)
				continue
			}
			if len(events) == webhookBatch {
				break
			}
			ev, ok := s.webhookEvent(r, m)
			if !ok {
				r.drop = append(r.drop, m.ID) // not an event: nothing to send
				continue
			}
			events = append(events, ev)
			r.sent = append(r.sent, m.ID)
		}
	}
	switch n := h.claimN.Load(); {
	case len(events) == webhookBatch && 2*full >= len(rooms):
		h.claimN.Store(max(n/2, webhookBatch/20)) // deep rooms: fewer, fuller
	case len(events) < webhookBatch:
		h.claimN.Store(min(2*n, webhookRooms))
	}
	// A round that has claimed rooms finishes, even when the node is
	// shutting down (bounded by the request timeout and the call
	// timeouts): a drain does not make another node send the same events
	// again.
	ctx = context.WithoutCancel(ctx)
	var postErr error
	if len(events) > 0 {
		postErr = s.postWebhook(ctx, events)
	}
	return len(tags), s.finishWebhooks(ctx, rooms, len(events), postErr)
}

func (s *Store) webhookEvent(r *hookRoom, m redis.XMessage) (WebhookEvent, bool) {
	raw, _ := m.Values["e"].(string)
	var e struct {
		Version int64           `json:"version"`
		Event   string          `json:"event"`
		UserID  string          `json:"userId"`
		Member  json.RawMessage `json:"member"`
	}
	if err := json.Unmarshal([]byte(raw), &e); err != nil || e.Event == "" {
		return WebhookEvent{}, false
	}
	room, _ := ParseTag(r.tag)
	if len(e.Member) == 0 {
		e.Member = json.RawMessage("null")
	}
	return WebhookEvent{ID: webhookID(r.tag, m.ID, e.Version), Org: room.Org, RoomID: room.RoomID, Version: e.Version,
		Event: e.Event, UserID: e.UserID, Member: validUTF8(e.Member), TimeMs: entryTime(m.ID)}, true
}

// postWebhook sends one request and reports whether a 2xx acknowledged it.
func (s *Store) postWebhook(ctx context.Context, events []WebhookEvent) error {
	h := s.hooks
	// Members as the room's events have them, byte for byte: no HTML
	// escaping of their data.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Events []WebhookEvent `json:"events"`
	}{events}); err != nil {
		return err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "presenced-webhooks")
	req.Header.Set("X-Presence-Timestamp", ts)
	req.Header.Set("X-Presence-Signature", WebhookSignature(h.cfg.Secret, ts, body))
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		// Without the URL, whose query may hold a key: the error is logged
		// and kept in Redis for presencectl.
		var uerr *url.Error
		switch {
		case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("no answer within %v", h.cfg.Timeout)
		case errors.As(err, &uerr):
			return uerr.Err
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// finishWebhooks removes what was acknowledged or dropped and reschedules
// the rooms (see the index protocol at the top).
func (s *Store) finishWebhooks(ctx context.Context, rooms []*hookRoom, sent int, postErr error) error {
	h := s.hooks
	ok := postErr == nil
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	acks := make([]*redis.Cmd, len(rooms))
	dropped := 0
	if err := s.pipelined(ctx, func(p redis.Pipeliner) {
		for i, r := range rooms {
			ids := r.drop
			if ok {
				ids = append(ids, r.sent...)
			}
			args := make([]any, len(ids))
			for j, id := range ids {
				args[j] = id
			}
			dropped += len(r.drop)
			acks[i] = h.ack.EvalSha(ctx, p, []string{r.rk.Webhooks}, args...)
		}
	}); err != nil {
		return err // the claims end by themselves; nothing is lost
	}
	h.dropped.Add(float64(dropped))
	if ok {
		h.delivered.Add(float64(sent))
	} else {
		h.retried.Add(float64(sent))
	}
	idx, tries := s.keys.WebhookIndex(), s.keys.WebhookTries()
	now := time.Now().UnixMilli()
	var drained []*hookRoom
	err := s.pipelined(ctx, func(p redis.Pipeliner) {
		drained = drained[:0]
		for i, r := range rooms {
			r.left, _ = acks[i].Int64()
			switch {
			case !ok && len(r.sent) > 0:
				jitter := 0.75 + rand.Float64()/4
				h.retry.EvalSha(ctx, p, []string{idx, tries}, now, r.tag, h.cfg.MinBackoff.Milliseconds(),
					h.cfg.MaxBackoff.Milliseconds(), jitter)
			case r.left > 0:
				p.ZAdd(ctx, idx, redis.Z{Score: float64(now), Member: r.tag})
				if len(r.sent) > 0 {
					p.HDel(ctx, tries, r.tag)
				}
			default:
				p.ZRem(ctx, idx, r.tag)
				p.HDel(ctx, tries, r.tag)
				drained = append(drained, r)
			}
		}
		p.PExpire(ctx, idx, h.keyTTL())
		p.PExpire(ctx, tries, h.keyTTL())
	})
	if err != nil {
		return err
	}
	if !ok {
		s.recordWebhookFailure(ctx, postErr, sent)
		if last := h.warned.Load(); time.Since(time.Unix(0, last)) > 10*time.Second && h.warned.CompareAndSwap(last, time.Now().UnixNano()) {
			s.log.Warn("webhook request failed; retrying with backoff", "err", postErr, "events", sent)
		}
	}
	if len(drained) == 0 {
		return nil
	}
	// An event appended while the room was being removed: add it back.
	lens := make([]*redis.IntCmd, len(drained))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range drained {
			lens[i] = p.XLen(ctx, r.rk.Webhooks)
		}
		return nil
	}); err != nil {
		return err
	}
	var back []string
	for i, r := range drained {
		if lens[i].Val() > 0 {
			back = append(back, r.tag)
		}
	}
	if len(back) > 0 {
		s.indexHooked(ctx, back...)
	}
	return nil
}

// WebhookFailure is the last failed webhook request.
type WebhookFailure struct {
	TimeMs int64  `json:"timeMs"`
	Error  string `json:"error"`
	Events int    `json:"events"`
}

func (s *Store) recordWebhookFailure(ctx context.Context, err error, events int) {
	b, _ := json.Marshal(WebhookFailure{TimeMs: time.Now().UnixMilli(), Error: err.Error(), Events: events})
	if err := s.rdb.Set(ctx, s.keys.WebhookFailure(), b, failureTTL).Err(); err != nil {
		s.log.Debug("record webhook failure", "err", err)
	}
}

// WebhookStatus is what the webhook index holds.
type WebhookStatus struct {
	// Rooms with events waiting, and how many of them are due now.
	Rooms, Due int64
	// Events waiting: exact up to 1000 rooms, else estimated from the
	// first 1000 (Estimated).
	Events    int64
	Estimated bool
	// Retrying: rooms whose last request failed.
	Retrying int64
	// LastFailure is the last failed request within a day, or nil.
	LastFailure *WebhookFailure
}

// WebhookStatus reads the webhook backlog (it works with webhooks off too:
// presencectl).
func (s *Store) WebhookStatus(ctx context.Context) (WebhookStatus, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var st WebhookStatus
	idx := s.keys.WebhookIndex()
	var rooms, due, retrying *redis.IntCmd
	var tags *redis.StringSliceCmd
	var failure *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rooms = p.ZCard(ctx, idx)
		due = p.ZCount(ctx, idx, "-inf", itoa(time.Now().UnixMilli()))
		retrying = p.HLen(ctx, s.keys.WebhookTries())
		tags = p.ZRange(ctx, idx, 0, backlogRooms-1)
		failure = p.Get(ctx, s.keys.WebhookFailure())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return st, s.wrap("webhook status", err)
	}
	st.Rooms, st.Due, st.Retrying = rooms.Val(), due.Val(), retrying.Val()
	if b := failure.Val(); b != "" {
		var f WebhookFailure
		if json.Unmarshal([]byte(b), &f) == nil {
			st.LastFailure = &f
		}
	}
	lens := make([]*redis.IntCmd, len(tags.Val()))
	if len(lens) > 0 {
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, tag := range tags.Val() {
				if r, ok := ParseTag(tag); ok {
					lens[i] = p.XLen(ctx, s.keys.Room(r).Webhooks)
				}
			}
			return nil
		}); err != nil {
			return st, s.wrap("webhook status", err)
		}
	}
	for _, c := range lens {
		if c != nil {
			st.Events += c.Val()
		}
	}
	if n := int64(len(lens)); st.Rooms > n && n > 0 {
		st.Events, st.Estimated = st.Events*st.Rooms/n, true
	}
	return st, nil
}

// HealWebhooks adds every outbox that holds events to the webhook index
// (ZADD NX: a room claimed or backing off keeps its score). It SCANs the
// keyspace (every master of a cluster): the periodic repair for a node that
// died between a script and its index write. It returns how many rooms it
// added.
func (s *Store) HealWebhooks(ctx context.Context) (int, error) {
	pattern := globEscape(s.keys.Prefix+":{") + "*" + globEscape("}:webhooks")
	idx := s.keys.WebhookIndex()
	ttl := time.Hour + outboxMargin // the default max age
	if s.hooks != nil {
		ttl = s.hooks.keyTTL()
	}
	added := 0
	for _, node := range s.scanNodes(ctx) {
		var cursor uint64
		for {
			cctx, cancel := s.callCtx(ctx)
			keys, next, err := node.ScanType(cctx, cursor, pattern, scanCount, "stream").Result()
			if err != nil {
				cancel()
				return added, s.wrap("heal webhooks", err)
			}
			now := float64(time.Now().UnixMilli())
			var zs []redis.Z
			for _, k := range keys {
				tag := strings.TrimSuffix(strings.TrimPrefix(k, s.keys.Prefix+":{"), "}:webhooks")
				if r, ok := ParseTag(tag); ok && s.keys.Room(r).Webhooks == k {
					zs = append(zs, redis.Z{Score: now, Member: tag})
				}
			}
			if len(zs) > 0 {
				n, err := s.rdb.ZAddNX(cctx, idx, zs...).Result()
				if err == nil {
					err = s.rdb.PExpire(cctx, idx, ttl).Err()
				}
				if err != nil {
					cancel()
					return added, s.wrap("heal webhooks", err)
				}
				added += int(n)
			}
			cancel()
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return added, nil
}

// runWebhookUpkeep keeps the backlog gauge and, one node at a time (a lock
// key), heals the index every HealInterval.
func (s *Store) runWebhookUpkeep(ctx context.Context) {
	h := s.hooks
	lastHeal := time.Now().Add(-h.cfg.HealInterval / 2) // the first heal half an interval after start
	for {
		if st, err := s.WebhookStatus(ctx); err == nil {
			h.backlog.Set(float64(st.Events))
		}
		if time.Since(lastHeal) >= h.cfg.HealInterval {
			lastHeal = time.Now()
			cctx, cancel := s.callCtx(ctx)
			won, err := s.rdb.SetNX(cctx, s.keys.WebhookHeal(), "1", h.cfg.HealInterval*9/10).Result()
			cancel()
			if err == nil && won {
				if n, err := s.HealWebhooks(ctx); err != nil {
					s.log.Warn("webhook heal failed", "err", err)
				} else if n > 0 {
					s.log.Warn("webhook heal: rooms added to the index", "rooms", n)
					h.signal()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(backlogInterval, h.cfg.HealInterval)):
		}
	}
}
