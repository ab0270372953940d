package main

// bench_metrics.go: a node's /metrics (memory, sockets) and Redis's command
// statistics, sampled around a scenario.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// nodeMetrics is a sample of a node's /metrics.
type nodeMetrics struct {
	HeapInuse  float64 `json:"heapInuseBytes"`
	StackInuse float64 `json:"stackInuseBytes"`
	RSS        float64 `json:"residentBytes"`
	Goroutines float64 `json:"goroutines"`
	Sockets    float64 `json:"sockets"`
	Delivered  float64 `json:"eventsDelivered"`
	Syncs      float64 `json:"syncsSent"`
	Overflows  float64 `json:"socketOverflows"`
	GCs        float64 `json:"gcCycles"`
	CPU        float64 `json:"cpuSeconds"`
}

var metricNames = map[string]func(m *nodeMetrics) *float64{
	"go_memstats_heap_inuse_bytes":    func(m *nodeMetrics) *float64 { return &m.HeapInuse },
	"go_memstats_stack_inuse_bytes":   func(m *nodeMetrics) *float64 { return &m.StackInuse },
	"process_resident_memory_bytes":   func(m *nodeMetrics) *float64 { return &m.RSS },
	"go_goroutines":                   func(m *nodeMetrics) *float64 { return &m.Goroutines },
	"presence_websockets":             func(m *nodeMetrics) *float64 { return &m.Sockets },
	"presence_events_delivered_total": func(m *nodeMetrics) *float64 { return &m.Delivered },
	"presence_syncs_sent_total":       func(m *nodeMetrics) *float64 { return &m.Syncs },
	"presence_socket_overflows_total": func(m *nodeMetrics) *float64 { return &m.Overflows },
	"go_gc_duration_seconds_count":    func(m *nodeMetrics) *float64 { return &m.GCs },
	"process_cpu_seconds_total":       func(m *nodeMetrics) *float64 { return &m.CPU },
}

// scrapeNode reads a node's /metrics. The memory metrics must be there.
func scrapeNode(ctx context.Context, base, token string, timeout time.Duration) (nodeMetrics, error) {
	var m nodeMetrics
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return m, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// Uncompressed: the node keeps the gzip writers of a compressed answer
	// pooled (about 1 MB each), which would count in the heap that the
	// next scrape measures.
	req.Header.Set("Accept-Encoding", "identity")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("metrics of %s: %w", base, err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return m, fmt.Errorf("metrics of %s: status %d", base, res.StatusCode)
	}
	return parseMetrics(res.Body, base)
}

// goroutineScrapes is how many scrapes settleGoroutines takes.
const goroutineScrapes = 5

// settleGoroutines sets m.Goroutines to the fewest of a few more scrapes
// of base, 100 ms apart. A scrape counts goroutines while the Prometheus
// registry gathers with workers of its own, and how many it has started
// at that moment varies (it starts one more whenever the metrics channel
// is momentarily empty): one scrape may read the node's count +1.
func settleGoroutines(ctx context.Context, base, token string, timeout time.Duration, m *nodeMetrics) error {
	for range goroutineScrapes - 1 {
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		n, err := scrapeNode(ctx, base, token, timeout)
		if err != nil {
			return err
		}
		m.Goroutines = min(m.Goroutines, n.Goroutines)
	}
	return nil
}

func parseMetrics(r io.Reader, base string) (nodeMetrics, error) {
	var m nodeMetrics
	found := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if p, ok := metricNames[name]; ok {
			v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
			if err != nil {
				return m, fmt.Errorf("metrics of %s: bad value in %q", base, line)
			}
			*p(&m) = v
			found[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("metrics of %s: %w", base, err)
	}
	for _, need := range []string{"go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "presence_websockets"} {
		if !found[need] {
			return m, fmt.Errorf("metrics of %s: no %s (is it a presenced node with metrics?)", base, need)
		}
	}
	return m, nil
}

// redisStats is a sample of INFO commandstats and stats.
type redisStats struct {
	at       time.Time
	calls    map[string]int64 // command -> calls
	total    int64            // total_commands_processed
	memory   int64            // used_memory
	channels int64            // pubsub_channels
}

func (b *bench) readRedisStats(ctx context.Context) (*redisStats, error) {
	if b.c.RDB == nil {
		if err := b.c.Connect(ctx); err != nil {
			return nil, fmt.Errorf("--redis-stats: %w", err)
		}
	}
	cctx, cancel := b.c.Call(ctx)
	defer cancel()
	info, err := b.c.RDB.Info(cctx, "commandstats", "stats", "memory").Result()
	if err != nil {
		return nil, fmt.Errorf("--redis-stats: INFO: %w", err)
	}
	s := &redisStats{at: time.Now(), calls: map[string]int64{}}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, "cmdstat_"):
			// cmdstat_evalsha:calls=4,usec=...
			for _, f := range strings.Split(v, ",") {
				if n, ok := strings.CutPrefix(f, "calls="); ok {
					s.calls[strings.TrimPrefix(k, "cmdstat_")], _ = strconv.ParseInt(n, 10, 64)
				}
			}
		case k == "total_commands_processed":
			s.total, _ = strconv.ParseInt(v, 10, 64)
		case k == "used_memory":
			s.memory, _ = strconv.ParseInt(v, 10, 64)
		case k == "pubsub_channels":
			s.channels, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if s.total == 0 {
		return nil, fmt.Errorf("--redis-stats: INFO has no total_commands_processed")
	}
	return s, nil
}

// redisDelta is what Redis ran between two samples. Commands called by
// scripts are counted too (PUBLISH from heartbeat.lua is a PUBLISH).
type redisDelta struct {
	Seconds       float64          `json:"seconds"`
	Commands      int64            `json:"commands"` // total_commands_processed: with those run by scripts
	CommandsPerS  float64          `json:"commandsPerSecond"`
	Calls         map[string]int64 `json:"calls"` // per command, including those run by scripts
	Evalsha       int64            `json:"evalsha"`
	EvalshaPerS   float64          `json:"evalshaPerSecond"`
	Publish       int64            `json:"publish"`
	PublishPerS   float64          `json:"publishPerSecond"`
	PerOperation  float64          `json:"commandsPerOperation,omitempty"` // commands (with scripts') per counted operation
	Operations    int64            `json:"operations,omitempty"`
	MemoryDeltaB  int64            `json:"usedMemoryDeltaBytes"`
	PubsubChannel int64            `json:"pubsubChannels"`
}

func (s *redisStats) delta(after *redisStats, ops int64) *redisDelta {
	sec := after.at.Sub(s.at).Seconds()
	d := &redisDelta{Seconds: round3(sec), Commands: after.total - s.total, Calls: map[string]int64{},
		MemoryDeltaB: after.memory - s.memory, PubsubChannel: after.channels, Operations: ops}
	for k, v := range after.calls {
		if n := v - s.calls[k]; n > 0 {
			d.Calls[k] = n
		}
	}
	// INFO itself is one command of the window.
	d.Commands--
	d.Calls["info"]--
	if d.Calls["info"] <= 0 {
		delete(d.Calls, "info")
	}
	d.Evalsha = d.Calls["evalsha"]
	d.Publish = d.Calls["publish"] + d.Calls["spublish"]
	if sec > 0 {
		d.CommandsPerS = math.Round(float64(d.Commands) / sec)
		d.EvalshaPerS = math.Round(float64(d.Evalsha) / sec)
		d.PublishPerS = math.Round(float64(d.Publish)/sec*10) / 10
	}
	if ops > 0 {
		d.PerOperation = math.Round(float64(d.Commands)/float64(ops)*100) / 100
	}
	return d
}

func (d *redisDelta) writeTable(w io.Writer) {
	fmt.Fprintf(w, "Redis over %.1fs: %d commands (%.0f/s), EVALSHA %d (%.0f/s), PUBLISH %d (%.1f/s)",
		d.Seconds, d.Commands, d.CommandsPerS, d.Evalsha, d.EvalshaPerS, d.Publish, d.PublishPerS)
	if d.Operations > 0 {
		fmt.Fprintf(w, ", %.2f commands per operation", d.PerOperation)
	}
	fmt.Fprintln(w)
	var parts []string
	for _, k := range sortedKeys(d.Calls) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, d.Calls[k]))
	}
	fmt.Fprintf(w, "calls (with those run by scripts): %s\n", strings.Join(parts, " "))
}
