package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/presencecluster/presence/lua"
	"github.com/presencecluster/presence/pkg/presence"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var _ presence.Store = (*Store)(nil)

// Connection buffer sizes for a node's Redis clients (set them in the
// client's options). go-redis's defaults, 32 KiB per direction and 128 KiB
// for pipelines, are made for large values and stay allocated with every
// pooled connection (a burst of calls leaves dozens): presence commands and
// replies are a few hundred bytes, and a full heartbeat batch (maxBatch
// scripts of about 350 bytes) is written in a few calls.
const (
	ReadBufferSize          = 4 << 10
	WriteBufferSize         = 4 << 10
	PipelineReadBufferSize  = 16 << 10
	PipelineWriteBufferSize = 32 << 10
)

// MaxIdleConns is how many idle connections a node's Redis clients keep
// (set it in the client's options). go-redis keeps every connection a
// burst opened (a reconnect wave, a churn of sockets), with its buffers,
// for good: idle ones are closed only when taken again (ConnMaxIdleTime),
// and the pool takes the most recent first, so the others stay. A node
// needs few at rest: its background work takes one or two at a time.
const MaxIdleConns = 8

// PipelinePoolSize is how many connections a node's Redis clients keep for
// pipelines (set it in the client's options), each with the larger
// pipeline buffers above. go-redis's default, 10, is reached by any burst
// (a churn of sockets runs the user-state steps of every join and leave as
// pipelines next to the heartbeat batches) and then kept, 0.5 MB with these
// buffers. The heartbeat batchers need one each; a pipeline that finds all
// of them busy runs at once on the main pool, with its smaller buffers.
const PipelinePoolSize = batchWorkers

// Config configures a Store. Zero values mean the documented defaults.
type Config struct {
	// Prefix of every key and channel. Zero means "presence".
	Prefix string
	// Retention is how long offline members are kept. Zero means 168h.
	Retention time.Duration
	// MaxSessionTimeout is the longest a session can live without a
	// heartbeat; keys live Retention + MaxSessionTimeout after the last
	// change. Zero means 25m (600 s × 2.5).
	MaxSessionTimeout time.Duration
	// CallTimeout bounds every call to Redis. Zero means 1.5s.
	CallTimeout time.Duration
	// ReapInterval is how often the reaper looks for due rooms. Zero means 250ms.
	ReapInterval time.Duration
	// ReapGrace: after a call found Redis unavailable, the reaper waits this
	// long before it reaps again, so that the nodes' keep-alives (which
	// could not reach Redis either) refresh their sessions first and a
	// store outage does not end sessions whose sockets stayed open. Zero
	// means 3s.
	ReapGrace time.Duration
	// NodeSkew is how much later than its deadline a node's lease is taken
	// for lapsed. A node renews its lease when a quarter of it has passed,
	// so its deadline is always at least 3/4 of the lease (1.5 s for the
	// shortest, 2 s) ahead of its own clock: with this allowance, a reaper
	// whose clock is up to 1 s ahead never takes a live node for dead.
	// Zero means 250ms.
	NodeSkew time.Duration
	// IndexShards is the number of deadline index keys. Zero means 1.
	IndexShards int
	// Cluster is Redis Cluster mode: events use sharded pub/sub
	// (SPUBLISH/SSUBSCRIBE), the deadline index is spread over IndexShards
	// keys (zero means 16), and a heartbeat lowers the index in a second
	// step when it needs to (the index lives in another slot).
	Cluster bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the store's metrics. Nil: not exported.
	Registerer prometheus.Registerer
	// Reader, when set, is a region-local read replica: lists and counts
	// (read-only scripts, EVALSHA_RO) and pub/sub subscriptions use it;
	// every write goes to the primary. Reads then lag writes by the
	// replication delay, at most ReplicaMaxLag (replica.go).
	Reader redis.UniversalClient
	// Webhooks: every event of the kinds it names is kept in its room's
	// outbox in Redis and POSTed to its URL by some node (webhooks.go).
	// An empty URL: off.
	Webhooks WebhookConfig
	// ReplicaMaxLag: while the Reader may be further behind the primary
	// than this, lists and counts read the primary. Zero means 2s.
	ReplicaMaxLag time.Duration
	// ReplicaProbe is how often the Reader's lag is measured. Zero means
	// 250ms.
	ReplicaProbe time.Duration
}

// Store is the presence store on Redis.
type Store struct {
	rdb  redis.UniversalClient
	read redis.UniversalClient // Reader, or rdb
	cfg  Config
	keys Keys
	// index1 is the deadline index key when there is only one (else "").
	index1 string
	ttl    int64 // ms
	pub    string
	log    *slog.Logger

	heartbeat, endSession, endUser, setData, removeRoom, reap, list, count *redis.Script
	reapNode, renewLease, declareDead, forgetNode                          *redis.Script
	listStamp, clock, userState, clearPending                              *redis.Script
	scripts                                                                []*redis.Script
	sources                                                                []string // of scripts

	secretMu    sync.Mutex
	secret      string
	incarnation string

	hbQueue chan *hbRequest // nil until Open: heartbeats go out one by one

	index *indexCache // user index entries written recently

	lower lowerLater // deadline index entries a heartbeat could not lower

	lastOutage atomic.Int64 // unix ns of the last call that found Redis unavailable
	lag        replicaLag
	met        *storeMetrics
	hooks      *webhooks // nil: webhooks off

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewStore returns a Store on rdb. Call Open to load the scripts and start
// the reaper.
func NewStore(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "presence"
	}
	if cfg.Retention == 0 {
		cfg.Retention = 168 * time.Hour
	}
	if cfg.MaxSessionTimeout == 0 {
		cfg.MaxSessionTimeout = 25 * time.Minute
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 1500 * time.Millisecond
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = 250 * time.Millisecond
	}
	if cfg.NodeSkew == 0 {
		cfg.NodeSkew = 250 * time.Millisecond
	}
	if cfg.ReapGrace == 0 {
		cfg.ReapGrace = 3 * time.Second
	}
	if cfg.ReplicaMaxLag == 0 {
		cfg.ReplicaMaxLag = 2 * time.Second
	}
	if cfg.ReplicaProbe == 0 {
		cfg.ReplicaProbe = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Cluster && cfg.IndexShards == 0 {
		cfg.IndexShards = 16
	}
	s := &Store{
		rdb:  rdb,
		read: rdb,
		cfg:  cfg,
		keys: Keys{Prefix: cfg.Prefix, Shards: cfg.IndexShards},
		ttl:  (cfg.Retention + cfg.MaxSessionTimeout).Milliseconds(),
		pub:  "PUBLISH",
		log:  cfg.Logger,
	}
	if cfg.Cluster {
		s.pub = "SPUBLISH"
	}
	if s.keys.NumShards() == 1 {
		s.index1 = s.keys.DeadlineShard(0)
	}
	if cfg.Reader != nil {
		s.read = cfg.Reader
	}
	s.met = newStoreMetrics(cfg.Registerer)
	s.index = newIndexCache(min(30*time.Minute, cfg.Retention/2))
	if cfg.Registerer != nil {
		rdb.AddHook(latencyHook{s.met.latency})
		if cfg.Reader != nil {
			cfg.Reader.AddHook(latencyHook{s.met.latency})
		}
	}
	if cfg.Webhooks.URL != "" {
		s.hooks = newWebhooks(cfg.Webhooks, cfg.Registerer)
	}
	load := func(name string) *redis.Script {
		src := lua.Source(name)
		sc := redis.NewScript(src)
		s.scripts = append(s.scripts, sc)
		s.sources = append(s.sources, src)
		return sc
	}
	s.heartbeat = load("heartbeat")
	s.endSession = load("end_session")
	s.endUser = load("end_user")
	s.setData = load("set_data")
	s.removeRoom = load("remove_room")
	s.reap = load("reap")
	s.reapNode = load("reap_node")
	s.renewLease = load("renew_lease")
	s.declareDead = load("declare_dead")
	s.forgetNode = load("forget_node")
	s.list = load("list")
	s.listStamp = load("list_stamp")
	s.count = load("count")
	if s.hooks != nil {
		s.hooks.claim = load("webhook_claim")
		s.hooks.ack = load("webhook_ack")
		s.hooks.retry = load("webhook_retry")
	}
	s.clock = load("clock")
	s.userState = load("user_state")
	s.clearPending = load("clear_pending")
	return s
}

// Keys returns the store's key builder.
func (s *Store) Keys() Keys { return s.keys }

// Client returns the store's Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Open loads the scripts and starts the reaper. It fails if Redis cannot be
// reached.
func (s *Store) Open(ctx context.Context) error {
	if err := s.loadScripts(ctx); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if _, err := s.LostData(ctx); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	ctx, s.cancel = context.WithCancel(context.Background())
	s.startBatcher(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runReaper(ctx)
	}()
	if s.hooks != nil {
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			s.runWebhooks(ctx)
		}()
		go func() {
			defer s.wg.Done()
			s.runWebhookUpkeep(ctx)
		}()
	}
	if s.read != s.rdb {
		s.probeReplica(ctx)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runReplicaProbe(ctx)
		}()
	}
	return nil
}

// Close stops the reaper. It does not close the Redis client. Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
	})
	return nil
}

// loadScripts loads every script, with one Redis in one round trip (a node
// in a far region spent one per script: 15 × 100 ms overran the call
// timeout). The Cluster client loads each script on every master itself.
func (s *Store) loadScripts(ctx context.Context) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if s.cfg.Cluster {
		for _, sc := range s.scripts {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, src := range s.sources {
			p.ScriptLoad(ctx, src) // not Script.Load: it would take the queued reply ("") for the hash
		}
		return nil
	})
	return err
}

// notAfter is the bound of a write sent at now (lib.lua late): the caller
// gives up after the call timeout; a second more covers the clocks of the
// node and of Redis.
func (s *Store) notAfter(now time.Time) int64 {
	return now.UnixMilli() + (s.cfg.CallTimeout + time.Second).Milliseconds()
}

func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	return s.wrap("ping", s.rdb.Ping(ctx).Err())
}

// Heartbeat creates or refreshes a session, in one round trip: the script,
// the deadline index and the user's room index go in one pipeline, with any
// other heartbeats waiting at the same moment (see batch.go).
func (s *Store) Heartbeat(ctx context.Context, hb *presence.Heartbeat) (presence.HeartbeatResult, error) {
	if s.hbQueue != nil {
		return s.batchedHeartbeat(ctx, hb) // bounded by CallTimeout
	}
	res, errs := s.HeartbeatMany(ctx, []*presence.Heartbeat{hb})
	return res[0], errs[0]
}

// HeartbeatMany runs many heartbeats in one pipeline (one round trip).
func (s *Store) HeartbeatMany(ctx context.Context, hbs []*presence.Heartbeat) ([]presence.HeartbeatResult, []error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	calls := make([]*hbCall, len(hbs))
	err := s.pipelined(ctx, func(p redis.Pipeliner) {
		for i, hb := range hbs {
			calls[i] = s.queueHeartbeat(ctx, p, hb)
		}
	})
	s.met.heartbeats.Add(float64(len(hbs)))
	res := make([]presence.HeartbeatResult, len(hbs))
	errs := make([]error, len(hbs))
	var lower, index []*presence.Heartbeat
	var hooked []string
	var users []userStep
	for i, c := range calls {
		cmd := &c.cmd
		e := cmd.Err()
		if e == nil && err != nil && !errors.Is(err, redis.Nil) && !isScriptError(err) {
			e = err
		}
		if e != nil {
			errs[i] = s.wrap("heartbeat", e)
			continue
		}
		// {roomEpoch, sessionEpoch, version, lowered, created, hooked,
		// changed users...}, read as strings: fewer allocations than a []any of
		// them.
		v := cmd.Val()
		if len(v) < 6 {
			errs[i] = fmt.Errorf("heartbeat: unexpected reply %v", v)
			continue
		}
		if v[3] == "1" {
			lower = append(lower, hbs[i])
		}
		if v[5] == "1" {
			hooked = append(hooked, Tag(hbs[i].Room))
		}
		version, _ := strconv.ParseInt(v[2], 10, 64)
		res[i] = presence.HeartbeatResult{
			RoomEpoch:    v[0],
			SessionEpoch: v[1],
			Version:      version,
			Ended:        version < 0,
		}
		// The user index: a created session, or a pair this node has not
		// written for a while (see userindex.go). A socket's session is
		// created once and never heartbeats again (it lives by the node's
		// lease): its entry is written without a place in the cache, which
		// would otherwise grow with every connection that comes and goes.
		created := v[4] == "1"
		if hb := hbs[i]; !res[i].Ended && !hb.Release &&
			(created && hb.Held || s.index.due(indexKey{hb.Room.Org, hb.UserID, hb.Room.RoomID}, hb.Now) || created) {
			index = append(index, hb)
			if v[4] != "1" && len(v) == 6 {
				// A pair this node had not written for a while (or ever: a
				// client that moved from a dead node): its user's state
				// is computed again (users.go).
				users = append(users, userStep{room: hb.Room, at: hb.Now.UnixMilli(), users: []string{hb.UserID}})
			}
		}
		if len(v) > 6 {
			users = append(users, userStep{room: hbs[i].Room, at: hbs[i].Now.UnixMilli(), users: v[6:]})
		}
	}
	for _, c := range calls {
		c.release()
	}
	if len(index) > 0 || len(lower) > 0 || len(hooked) > 0 {
		// One more round trip, after the scripts have run (never before: see
		// the reaper's index protocol; and in a cluster the index is in
		// another slot): the deadline index where a script lowered its
		// room's earliest deadline, the user index entries due, and the
		// webhook index of rooms whose scripts wrote their outbox.
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			s.queueHooked(ctx, p, hooked)
			for _, hb := range lower {
				tag := Tag(hb.Room)
				p.ZAddLT(ctx, s.keys.Deadlines(tag), redis.Z{Score: float64(hb.Deadline.UnixMilli()), Member: tag})
			}
			if len(index) > 0 {
				s.queueIndex(ctx, p, index, index[0].Now)
			}
			return nil
		})
		if err != nil {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = s.wrap("heartbeat", err)
				}
			}
			// A retry of the heartbeat would not lower the index again (the
			// room's x is already down): the reaper does it (Reap).
			s.lower.add(lower)
			// The user index entries are written again by the next
			// heartbeats (a user's state is read from the index).
			for _, hb := range index {
				s.index.forget(indexKey{hb.Room.Org, hb.UserID, hb.Room.RoomID})
			}
			// Their users' states wait for those entries: the marks the
			// scripts left in the rooms have the reaper, or the next
			// heartbeat's index write, run the second step.
			users = nil
		}
		if len(hooked) > 0 {
			s.hooks.signal()
		}
	}
	// The second step of the users who came online or went offline runs
	// after the index entries are written (it reads them).
	s.syncUsers(ctx, users)
	return res, errs
}

// isScriptError reports whether err is an error reply of one script (the
// pipeline's error is the first command error; others may have succeeded).
func isScriptError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !isUnavailable(err)
}

// inGrace reports whether Redis was unavailable within the reap grace.
func (s *Store) inGrace() bool {
	last := s.lastOutage.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < s.cfg.ReapGrace
}

func (s *Store) queueHeartbeat(ctx context.Context, p redis.Pipeliner, hb *presence.Heartbeat) *hbCall {
	c := s.heartbeatCall(ctx, hb)
	_ = p.Process(ctx, &c.cmd)
	// The deadline index is lowered after the pipeline, and only when the
	// script says so (HeartbeatMany): a keep-alive moves a deadline later.
	return c
}

// EndSession ends one session if its epoch matches.
func (s *Store) EndSession(ctx context.Context, room presence.RoomRef, sessionID, epoch string, now time.Time) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	keys, args := s.roomCall(rk, now.UnixMilli(), rk.Events, s.pub, s.ttl, sessionID, epoch, s.notAfter(now))
	v, err := s.endSession.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return s.wrap("end session", err)
	}
	if len(v) > 0 && toInt(v[0]) == 1 {
		s.indexHooked(ctx, rk.Tag)
	}
	s.syncUsers(ctx, stepsOf(room, now.UnixMilli(), changedUsers(v, 1)))
	return nil
}

// EndUser ends all of a user's sessions in a room, forgetting it with forget.
func (s *Store) EndUser(ctx context.Context, room presence.RoomRef, userID string, forget bool, now time.Time) (bool, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	f := "0"
	if forget {
		f = "1"
	}
	keys, args := s.roomCall(rk, now.UnixMilli(), rk.Events, s.pub, s.ttl, userID, f, s.notAfter(now))
	v, err := s.runWithVisit(ctx, room, now, s.endUser, keys, args...)
	if err != nil {
		return false, s.wrap("end user", err)
	}
	changed := len(v) > 0 && toInt(v[0]) == 1
	if changed {
		s.indexHooked(ctx, rk.Tag)
	}
	s.syncUsers(ctx, stepsOf(room, now.UnixMilli(), changedUsers(v, 1)))
	return changed, nil
}

// SetData replaces a member's data.
func (s *Store) SetData(ctx context.Context, room presence.RoomRef, userID string, data json.RawMessage, now time.Time) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	keys, args := s.roomCall(rk, now.UnixMilli(), rk.Events, s.pub, s.ttl, userID, string(data), s.notAfter(now))
	v, err := s.setData.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err == nil && len(v) == 2 && v[1] == 1 {
		s.indexHooked(ctx, rk.Tag) // the update went to the room's outbox
	}
	return s.wrap("set data", err)
}

// RemoveRoom forgets a room.
func (s *Store) RemoveRoom(ctx context.Context, room presence.RoomRef, now time.Time) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	v, err := s.runWithVisit(ctx, room, now, s.removeRoom, rk.List[:], now.UnixMilli(), rk.Events, s.pub, s.ttl, nonce(), s.notAfter(now))
	if err != nil {
		return s.wrap("remove room", err)
	}
	s.syncUsers(ctx, stepsOf(room, now.UnixMilli(), changedUsers(v, 1)))
	return nil
}

// visitDelay is how soon after a sign-out or a removal the reaper visits
// the room (runWithVisit): later than the marks' minimum age (lua/reap.lua).
const visitDelay = 3 * time.Second

// runWithVisit runs a room script that may end sessions held by other
// nodes' sockets (a sign-out, a member or room removal), sending first, in
// the same pipeline, a deadline index entry that brings a reaper to the
// room in visitDelay. Such a room may have no deadline of its own (and its
// sockets' nodes are alive): should this node die before the users' second
// step, the reaper's visit runs it (users.go). Sign-outs and removals are
// rare; the visit costs one reap.lua call.
func (s *Store) runWithVisit(ctx context.Context, room presence.RoomRef, now time.Time, sc *redis.Script, keys []string, args ...any) ([]any, error) {
	tag := Tag(room)
	var cmd *redis.Cmd
	err := s.pipelined(ctx, func(p redis.Pipeliner) {
		p.ZAddLT(ctx, s.keys.Deadlines(tag), redis.Z{Score: float64(now.Add(visitDelay).UnixMilli()), Member: tag})
		cmd = sc.EvalSha(ctx, p, keys, args...)
	})
	if err != nil && !isScriptError(err) {
		return nil, err
	}
	return cmd.Slice()
}

// List returns a room's members, and the stamp of what it shows (see
// ListStamp).
func (s *Store) List(ctx context.Context, room presence.RoomRef, q presence.ListQuery) (*presence.RoomList, error) {
	rd := s.reader()
	v, err := s.runList(ctx, rd, s.list, room, q)
	if err != nil {
		return nil, s.wrap("list", err)
	}
	l, err := parseList(room.RoomID, v)
	if err != nil || l.Version >= q.MinVersion || l.Stale || rd == s.rdb {
		return l, err
	}
	// The replica lags behind a version the caller knows of (its own
	// join, the event that asked for a sync): the primary has it.
	s.met.replicaBehind.Inc()
	if v, err = s.runList(ctx, s.rdb, s.list, room, q); err != nil {
		return nil, s.wrap("list", err)
	}
	return parseList(room.RoomID, v)
}

// The order set holds presence order scores (presence.OrderScore; lua/lib.lua
// OFFLINE and ONLINE_MAX are the same numbers): offline members are scored
// OFFLINE - lastDisconnected; online ones by join sequence × 1024 + live
// sessions, below ONLINE_MAX.

func parseList(roomID string, v []any) (*presence.RoomList, error) {
	if len(v) == 1 && toInt(v[0]) < 0 {
		// The token's epoch is not the room's: the room was removed.
		return &presence.RoomList{RoomID: roomID, Members: []presence.Member{}, Stale: true, Stamp: staleStamp}, nil
	}
	if len(v) < listHead || (len(v)-listHead)%6 != 0 {
		return nil, fmt.Errorf("list: unexpected reply of %d elements", len(v))
	}
	l := &presence.RoomList{RoomID: roomID, Version: toInt(v[0]), Members: make([]presence.Member, 0, (len(v)-listHead)/6),
		Stamp: listStamp(v), Epoch: toString(v[1])}
	var last presence.ListPosition
	for i := listHead; i < len(v); i += 6 {
		score, _ := strconv.ParseFloat(toString(v[i+1]), 64)
		last = presence.ListPosition{Score: int64(score), UserID: toString(v[i])}
		m := presence.MemberFromScore(last.UserID, last.Score)
		m.Sessions = int(toInt(v[i+2]))
		if d := toString(v[i+3]); d != "" {
			m.Data = validUTF8([]byte(d))
		}
		m.Name, m.Image = splitProfile(toString(v[i+4]))
		if p := toString(v[i+5]); p != "" {
			applyPrivacy(&m, p)
		}
		l.Members = append(l.Members, m)
	}
	// The page size is above the members when more follow (list.lua).
	if toInt(v[5]) > int64(len(l.Members)) && len(l.Members) > 0 {
		l.More = &last
	}
	return l, nil
}

// applyPrivacy applies a list member's privacy element (lua/list.lua): the
// lastDisconnected the others see ("<ms>"), or an invisible member's truth
// for an admin ("i<sessions>\t<lastDisconnected>").
func applyPrivacy(m *presence.Member, p string) {
	if p[0] != 'i' {
		m.LastDisconnected, _ = strconv.ParseInt(p, 10, 64)
		return
	}
	n, last, _ := strings.Cut(p[1:], "\t")
	k, _ := strconv.Atoi(n)
	m.Invisible, m.Sessions, m.Online = true, k, k > 0
	m.LastDisconnected = 0
	if !m.Online {
		m.LastDisconnected, _ = strconv.ParseInt(last, 10, 64)
	}
}

func splitProfile(p string) (name, image string) {
	name, image, _ = strings.Cut(p, "\t")
	return name, image
}

// Count returns a room's summary in O(1).
func (s *Store) Count(ctx context.Context, room presence.RoomRef) (*presence.RoomCount, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rk := s.keys.Room(room)
	v, err := s.count.RunRO(ctx, s.reader(), rk.List[:]).Int64Slice()
	if err != nil {
		return nil, s.wrap("count", err)
	}
	if len(v) != 3 {
		return nil, fmt.Errorf("count: unexpected reply %v", v)
	}
	return &presence.RoomCount{RoomID: room.RoomID, Version: v[0], Online: v[1], Sessions: v[2]}, nil
}

// maxUserRooms bounds the rooms a user's index returns.
const maxUserRooms = 1000

// pipelined runs a pipeline; if Redis lost the scripts (a restart), it loads
// them and runs the pipeline once more (every command in it is idempotent).
func (s *Store) pipelined(ctx context.Context, fn func(redis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { fn(p); return nil })
		if attempt == 0 && hasNoScript(cmds) {
			if lerr := s.loadScripts(ctx); lerr != nil {
				return lerr
			}
			continue
		}
		return err
	}
}

func hasNoScript(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// wrap turns a Redis error into the coded error the API shows: script
// refusals into their codes, an unreachable or failing-over Redis into
// EUNAVAILABLE; anything else stays internal.
func (s *Store) wrap(op string, err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "CONFLICT "):
		return presence.Errorf(presence.ECONFLICT, "%s", strings.TrimPrefix(msg, "CONFLICT "))
	case strings.HasPrefix(msg, "NOT_FOUND "):
		return presence.Errorf(presence.ENOTFOUND, "%s", strings.TrimPrefix(msg, "NOT_FOUND "))
	case strings.HasPrefix(msg, "LATE "):
		return fmt.Errorf("%s: %w", op, presence.Errorf(presence.EUNAVAILABLE, "the store ran the call too late: %s", strings.TrimPrefix(msg, "LATE ")))
	case isUnavailable(err):
		s.lastOutage.Store(time.Now().UnixNano())
		return fmt.Errorf("%s: %w: %w", op, presence.Errorf(presence.EUNAVAILABLE, "store unavailable"), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUnavailable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOSCRIPT", "MOVED", "ASK"} {
			if strings.HasPrefix(rerr.Error(), p) {
				return true
			}
		}
		return false
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || strings.Contains(err.Error(), "connection refused")
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// validUTF8 returns b with any invalid UTF-8 replaced by U+FFFD. Nodes
// refuse such data since it broke WebSocket text frames, but a room may
// still hold data that an older node stored: it is shown repaired (inside a
// JSON string, which is the only place the old nodes let it through), never
// raw.
func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}
