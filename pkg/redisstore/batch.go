package redisstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// Concurrent heartbeats are sent together: a few workers each take every
// heartbeat waiting (up to maxBatch) and run them as one pipeline, so a node
// under load costs Redis one round trip per batch, not per heartbeat, while
// a lone heartbeat still goes out at once. (More workers, more pipelines in
// flight, did not serve more heartbeats on 2 cores: the batches got smaller
// and each heartbeat cost more CPU; docs/benchmarks.md.)
const (
	batchWorkers = 4
	maxBatch     = 256
)

// hbRequest is a heartbeat waiting for a batch. Pooled: done is buffered,
// the worker sends on it once.
type hbRequest struct {
	hb       *presence.Heartbeat
	deadline time.Time // the call's timeout (Config.CallTimeout)
	res      presence.HeartbeatResult
	err      error
	done     chan struct{}
}

var hbRequests = sync.Pool{New: func() any { return &hbRequest{done: make(chan struct{}, 1)} }}

func (s *Store) startBatcher(ctx context.Context) {
	s.hbQueue = make(chan *hbRequest, 4*maxBatch)
	for i := 0; i < batchWorkers; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runBatcher(ctx)
		}()
	}
}

func (s *Store) runBatcher(ctx context.Context) {
	batch := make([]*hbRequest, 0, maxBatch)
	hbs := make([]*presence.Heartbeat, 0, maxBatch)
	for {
		batch, hbs = batch[:0], hbs[:0]
		var r *hbRequest
		select {
		case <-ctx.Done():
			return
		case r = <-s.hbQueue:
		}
		now := time.Now()
		earliest := r.deadline
	more:
		for {
			// A heartbeat that waited out its timeout in the queue fails as
			// it would have while waiting: it is not sent.
			if now.Before(r.deadline) {
				batch = append(batch, r)
				hbs = append(hbs, r.hb)
				if r.deadline.Before(earliest) {
					earliest = r.deadline
				}
			} else {
				r.err = s.wrap("heartbeat", context.DeadlineExceeded)
				r.done <- struct{}{}
			}
			if len(batch) == maxBatch {
				break
			}
			select {
			case r = <-s.hbQueue:
			default:
				break more
			}
		}
		if len(batch) == 0 {
			continue
		}
		// The batch ends with its first heartbeat's timeout: each caller
		// gets its answer within its own.
		bctx, cancel := context.WithDeadline(context.Background(), earliest)
		res, errs := s.HeartbeatMany(bctx, hbs)
		cancel()
		for i, r := range batch {
			r.res, r.err = res[i], errs[i]
			r.done <- struct{}{}
		}
	}
}

// batchedHeartbeat queues hb for the batcher and waits for its result, at
// most CallTimeout (the worker sees to it: no timer per heartbeat).
func (s *Store) batchedHeartbeat(ctx context.Context, hb *presence.Heartbeat) (presence.HeartbeatResult, error) {
	r := hbRequests.Get().(*hbRequest)
	r.hb, r.deadline = hb, time.Now().Add(s.cfg.CallTimeout)
	select {
	case s.hbQueue <- r:
	default:
		// The queue is full: wait for room, within the timeout.
		t := time.NewTimer(time.Until(r.deadline))
		defer t.Stop()
		select {
		case s.hbQueue <- r:
		case <-t.C:
			return presence.HeartbeatResult{}, s.wrap("heartbeat", context.DeadlineExceeded)
		case <-ctx.Done():
			return presence.HeartbeatResult{}, s.wrap("heartbeat", ctx.Err())
		}
	}
	select {
	case <-r.done:
		res, err := r.res, r.err
		*r = hbRequest{done: r.done}
		hbRequests.Put(r)
		return res, err
	case <-ctx.Done():
		// The worker still holds r: it is not reused.
		return presence.HeartbeatResult{}, s.wrap("heartbeat", ctx.Err())
	}
}

// lowerLater holds the deadline index entries (room tag -> deadline, unix
// ms) that heartbeats' scripts lowered but whose ZADD LT failed: at most one
// per room.
type lowerLater struct {
	mu sync.Mutex
	m  map[string]int64
}

func (l *lowerLater) add(hbs []*presence.Heartbeat) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, hb := range hbs {
		l.put(Tag(hb.Room), hb.Deadline.UnixMilli())
	}
}

// put keeps the earlier deadline of a room (l.mu held).
func (l *lowerLater) put(tag string, deadline int64) {
	if l.m == nil {
		l.m = map[string]int64{}
	}
	if old, ok := l.m[tag]; !ok || deadline < old {
		l.m[tag] = deadline
	}
}

// lowerPending sends the ZADD LTs that failed (see lowerLater); they stay
// pending if this fails too.
func (s *Store) lowerPending(ctx context.Context) error {
	s.lower.mu.Lock()
	m := s.lower.m
	s.lower.m = nil
	s.lower.mu.Unlock()
	if len(m) == 0 {
		return nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for tag, d := range m {
			p.ZAddLT(ctx, s.keys.Deadlines(tag), redis.Z{Score: float64(d), Member: tag})
		}
		return nil
	})
	if err != nil {
		s.lower.mu.Lock()
		for tag, d := range m {
			s.lower.put(tag, d)
		}
		s.lower.mu.Unlock()
	}
	return err
}

// hbCall is one heartbeat's EVALSHA: the command, its arguments and the
// values they point to. go-redis writes a *string or *int64 argument as its
// value, and a BinaryMarshaler as its bytes, so no argument is boxed on its
// own; and calls are pooled (HeartbeatMany releases them), so a heartbeat's
// command costs no allocation but its keys'.
type hbCall struct {
	cmd                      redis.StringSliceCmd
	sha                      string
	rk                       RoomKeys
	now, deadline, retention int64
	notAfter                 int64
	epoch                    epochBytes
	profile, data            string
	index                    string              // the deadline index key, for one Redis
	args                     [3 + 5 + 20 + 2]any // evalsha, sha, 3-5; up to 5 KEYS; 20 ARGV; the webhooks' 2 ARGV
}

var hbCalls = sync.Pool{New: func() any { return new(hbCall) }}

// heartbeatCall returns the EVALSHA command of hb (lua/heartbeat.lua).
func (s *Store) heartbeatCall(ctx context.Context, hb *presence.Heartbeat) *hbCall {
	c := hbCalls.Get().(*hbCall)
	c.sha = s.heartbeat.Hash()
	c.rk = s.keys.Room(hb.Room)
	c.now, c.deadline, c.retention = hb.Now.UnixMilli(), hb.Deadline.UnixMilli(), s.cfg.Retention.Milliseconds()
	c.notAfter = s.notAfter(hb.Now) // late calls change nothing (lib.lua late)
	if hb.Held {
		c.deadline = heldScore // the session lives by its node's lease
	}
	var setProfile, setData, keepAlive any = "0", "0", "0"
	if hb.SetProfile {
		setProfile, c.profile = "1", hb.Name+"\t"+hb.Image
	}
	if hb.Data != nil {
		setData, c.data = "1", string(hb.Data)
	}
	switch {
	case hb.Release:
		keepAlive = "2"
	case hb.KeepAlive:
		keepAlive = "1"
	}
	var epoch any = &hb.SessionEpoch
	if hb.SessionEpoch == "" {
		c.epoch.fill()
		epoch = &c.epoch
	}
	// Whether to end the room's expired sessions first: not right after an
	// outage (see ReapGrace).
	var reap any = "1"
	if s.inGrace() {
		reap = "0"
	}
	args := append(c.args[:0], "evalsha", &c.sha, 3, &c.rk.List[0], &c.rk.List[1], &c.rk.List[2])
	if !s.cfg.Cluster {
		// One Redis: the script lowers the deadline index itself (KEYS[5]);
		// KEYS[4] is the webhook outbox, or "" when webhooks are off.
		c.index = s.index1
		if c.index == "" {
			c.index = s.keys.Deadlines(c.rk.Tag)
		}
		args[2] = 5
		if s.hooks != nil {
			args = append(args, &c.rk.Webhooks, &c.index)
		} else {
			args = append(args, "", &c.index)
		}
	} else if s.hooks != nil {
		args[2] = 4
		args = append(args, &c.rk.Webhooks)
	}
	args = append(args, &c.now, &c.rk.Events, &s.pub, &s.ttl, &c.retention,
		&hb.SessionID, &hb.UserID, &c.deadline, epoch, &hb.Node,
		setProfile, &c.profile, setData, &c.data, keepAlive, reap, &c.notAfter, &c.rk.Tag,
		flagArg(hb.Invisible), flagArg(hb.HideLastSeen))
	if s.hooks != nil {
		args = append(args, &s.hooks.outboxTTL, &s.hooks.events)
	}
	c.cmd = *redis.NewStringSliceCmd(ctx, args...)
	c.cmd.SetFirstKeyPos(3)
	return c
}

// flagArg is a privacy flag's ARGV (lua/heartbeat.lua 19, 20): "" keeps
// the member's setting. Constant strings: no allocation.
func flagArg(b *bool) any {
	switch {
	case b == nil:
		return ""
	case *b:
		return "1"
	}
	return "0"
}

// release returns c to the pool once its reply has been read.
func (c *hbCall) release() {
	*c = hbCall{}
	hbCalls.Put(c)
}

// epochBytes is a new session's epoch: 48 random bits, 8 characters (it is
// stored with every session, so bytes count). It only tells apart the
// sessions that one sessionId had in one room.
type epochBytes [8]byte

func (e *epochBytes) fill() {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	base64.RawURLEncoding.Encode(e[:], b[:6])
}

// MarshalBinary is the epoch as go-redis writes it.
func (e *epochBytes) MarshalBinary() ([]byte, error) { return e[:], nil }

// nonce returns a new epoch.
func nonce() string {
	var e epochBytes
	e.fill()
	return string(e[:])
}
