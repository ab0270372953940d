package redisstore

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// storeMetrics are the Redis-side metrics of a node.
type storeMetrics struct {
	reaped     prometheus.Counter
	heartbeats prometheus.Counter
	received   prometheus.Counter
	reconnects prometheus.Counter
	// replicaBehind counts lists read again from the primary: the replica
	// had not reached a version the node knew of.
	replicaBehind prometheus.Counter
	latency       *prometheus.HistogramVec
	// replicaLag and replicaStale: how far behind the primary the read
	// replica may be, and whether reads go to the primary because of it
	// (replica.go). Zero without a replica.
	replicaLag   prometheus.Gauge
	replicaStale prometheus.Gauge
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		reaped:     prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_sessions_reaped_total", Help: "Sessions ended by this node's reaper (deadline passed)."}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_heartbeats_total", Help: "Heartbeats run by this node (HTTP and keep-alives of its sockets' sessions)."}),
		received:   prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_events_received_total", Help: "Room events this node received from Redis pub/sub."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_pubsub_reconnects_total", Help: "Pub/sub subscriptions restored after a lost connection (rooms)."}),
		replicaBehind: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_replica_behind_total",
			Help: "Snapshots and syncs read again from the primary because the replica lagged behind the version asked for."}),
		replicaLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "presence_replica_lag_seconds",
			Help: "How far behind the primary the region's read replica may be (an upper bound, measured every 250 ms; 0 without a replica)."}),
		replicaStale: prometheus.NewGauge(prometheus.GaugeOpts{Name: "presence_replica_stale",
			Help: "1 while the replica lags more than PRESENCE_REPLICA_MAX_LAG and lists and counts read the primary."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "presence_redis_call_duration_seconds",
			Help:    "Redis round trips (a pipeline counts once) by command.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2},
		}, []string{"cmd"}),
	}
	if reg != nil {
		reg.MustRegister(m.reaped, m.heartbeats, m.received, m.reconnects, m.replicaBehind, m.replicaLag, m.replicaStale, m.latency)
	}
	return m
}

// latencyHook times every Redis round trip.
type latencyHook struct{ h *prometheus.HistogramVec }

func (l latencyHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l latencyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		l.h.WithLabelValues(cmd.Name()).Observe(time.Since(start).Seconds())
		return err
	}
}

func (l latencyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	pipeline := l.h.WithLabelValues("pipeline") // every batch of heartbeats: looked up once
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		pipeline.Observe(time.Since(start).Seconds())
		return err
	}
}
