package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// trimMemory returns freed heap to the operating system once a burst has
// passed. A storm of connections (a deploy, a reconnect wave) leaves
// garbage: after the GC its pages are free but stay resident, and Go's
// scavenger keeps up to the heap goal (about twice the live heap) before
// it gives any back. A presence node's load is mostly idle sockets, so that
// memory would stay for good in the RSS operators size nodes by. Every
// period, when more than a quarter of the heap (and at least 1 MiB) is
// free but resident for two looks in a row, it frees it (a forced GC and a
// scavenge: milliseconds of CPU per 100 MB of heap, at most once a minute).
func trimMemory(ctx context.Context, period time.Duration) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},    // free, not yet returned
		{Name: "/memory/classes/heap/objects:bytes"}, // live and unswept objects
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var last time.Time
	seen := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		free, used := samples[0].Value.Uint64(), samples[1].Value.Uint64()
		if free < 1<<20 || free < used/4 {
			seen = 0
			continue
		}
		if seen++; seen < 2 || time.Since(last) < time.Minute {
			continue
		}
		debug.FreeOSMemory()
		last, seen = time.Now(), 0
	}
}
