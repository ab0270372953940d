package redisstore

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/redis/go-redis/v9"
)

// How a node knows how far behind the primary its region's replica is.
//
// Every ReplicaProbe the node writes the primary's time into the clock key
// (clock.lua, on the primary: one small write, whatever the load) and reads
// the key back on the replica. The replica holds everything the primary had
// at the newest time it shows, so it is at most (the primary's time now -
// that time) behind: the lag. It grows by itself while nothing new arrives,
// so a cut replication link, a replica that is down, or a primary out of
// reach (no new stamps) all count as lag, and it needs no clock agreement:
// the primary's time now is the node's clock plus the offset measured at
// the last write. The figure is an upper bound, coarse by up to one probe
// period (250 ms).
//
// Above ReplicaMaxLag, lists and counts read the primary (and answer 503
// when it is out of reach too) until the replica is back within the bound.
// Pub/sub stays on the replica: its events arrive as late as the replica,
// in order, and a node that sees a version gap sends a sync (read from the
// primary while the replica lags).

// replicaLag is what the probe learnt.
type replicaLag struct {
	seen   atomic.Int64 // newest primary time (unix ms) read on the replica; 0: none yet
	offset atomic.Int64 // the primary's clock - the node's (ms), at the last write
	stale  atomic.Bool
}

// clockTTL is how long the clock key lives after the last probe (ms).
const clockTTL = 60_000

// ReplicaLag returns how far behind the primary the read replica may be at
// now (an upper bound), and whether reads go to the primary because of it.
// ok is false when the store has no replica.
func (s *Store) ReplicaLag(now time.Time) (lag time.Duration, stale, ok bool) {
	if s.read == s.rdb {
		return 0, false, false
	}
	return s.lagAt(now), s.lag.stale.Load(), true
}

func (s *Store) lagAt(now time.Time) time.Duration {
	seen := s.lag.seen.Load()
	if seen == 0 {
		return time.Duration(math.MaxInt64)
	}
	d := now.UnixMilli() + s.lag.offset.Load() - seen
	return time.Duration(max(d, 0)) * time.Millisecond
}

// reader is the client for lists and counts: the replica while it is within
// the bound, else the primary.
func (s *Store) reader() redis.UniversalClient {
	if s.read == s.rdb {
		return s.rdb
	}
	if stale := s.lagAt(time.Now()) > s.cfg.ReplicaMaxLag; stale {
		s.setStale(true)
		return s.rdb
	}
	return s.read
}

// setStale records whether reads go to the primary, and logs the change.
func (s *Store) setStale(stale bool) {
	if s.lag.stale.Swap(stale) == stale {
		return
	}
	if stale {
		s.met.replicaStale.Set(1)
		s.log.Warn("the replica is behind the primary by more than PRESENCE_REPLICA_MAX_LAG: lists and counts read the primary",
			"max_lag", s.cfg.ReplicaMaxLag)
	} else {
		s.met.replicaStale.Set(0)
		s.log.Info("the replica is within PRESENCE_REPLICA_MAX_LAG again: lists and counts read it", "lag", s.lagAt(time.Now()))
	}
}

// Versions reads the rooms' versions on the primary, in one round trip (a
// node whose replica lags compares them with what it delivered:
// presence.Realtime.CatchUp).
func (s *Store) Versions(ctx context.Context, rooms []presence.RoomRef) ([]int64, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	cmds := make([]*redis.Cmd, len(rooms))
	err := s.pipelined(ctx, func(p redis.Pipeliner) {
		for i, room := range rooms {
			rk := s.keys.Room(room)
			cmds[i] = s.count.EvalShaRO(ctx, p, rk.List[:])
		}
	})
	if err != nil {
		return nil, s.wrap("versions", err)
	}
	out := make([]int64, len(rooms))
	for i, c := range cmds {
		if v, err := c.Int64Slice(); err == nil && len(v) == 3 {
			out[i] = v[0]
		}
	}
	return out, nil
}

// runReplicaProbe measures the replica's lag every ReplicaProbe.
func (s *Store) runReplicaProbe(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReplicaProbe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.probeReplica(ctx)
		}
	}
}

// probeReplica writes the primary's time and reads the newest one the
// replica has. Either may fail: then the lag simply grows.
func (s *Store) probeReplica(ctx context.Context) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	sent := time.Now()
	if ms, err := s.clock.Run(ctx, s.rdb, []string{s.keys.Clock()}, clockTTL).Int64(); err == nil {
		mid := sent.Add(time.Since(sent) / 2)
		s.lag.offset.Store(ms - mid.UnixMilli())
	}
	if v, err := s.read.Get(ctx, s.keys.Clock()).Int64(); err == nil && v > s.lag.seen.Load() {
		s.lag.seen.Store(v)
	}
	lag := s.lagAt(time.Now())
	s.met.replicaLag.Set(min(lag, time.Hour).Seconds())
	s.setStale(lag > s.cfg.ReplicaMaxLag)
}
