package main

// bench_stats.go: latency histograms and the counters of a load phase.

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// hist is a log-linear latency histogram: 128 buckets per power of two of
// nanoseconds, so every recorded value is known within 0.8%. Not safe for
// concurrent use: each worker keeps its own and they are merged.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // ns
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = histSub + 48*histSub
)

func histBucket(v int64) int {
	if v < histSub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 1 - histSubBits
	i := histSub + shift*histSub + int(v>>shift) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := (i - histSub) / histSub
	mant := int64((i-histSub)%histSub + histSub)
	return mant<<shift + (int64(1)<<shift)/2
}

func (h *hist) add(d time.Duration) {
	v := int64(d)
	h.counts[histBucket(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0-1).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// latency is a histogram's summary, in milliseconds.
type latency struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	P999Ms float64 `json:"p999Ms"`
	MaxMs  float64 `json:"maxMs"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func (h *hist) summary() latency {
	if h.n == 0 {
		return latency{}
	}
	return latency{
		Count:  h.n,
		MeanMs: ms(time.Duration(h.sum / float64(h.n))),
		P50Ms:  ms(h.quantile(0.50)),
		P90Ms:  ms(h.quantile(0.90)),
		P99Ms:  ms(h.quantile(0.99)),
		P999Ms: ms(h.quantile(0.999)),
		MaxMs:  ms(time.Duration(h.max)),
	}
}

func (l latency) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p999 %s  max %s", fmtMs(l.P50Ms), fmtMs(l.P90Ms), fmtMs(l.P99Ms), fmtMs(l.P999Ms), fmtMs(l.MaxMs))
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

// lockedHist is a hist shared by a few goroutines.
type lockedHist struct {
	mu sync.Mutex
	h  hist
}

func (l *lockedHist) add(d time.Duration) {
	l.mu.Lock()
	l.h.add(d)
	l.mu.Unlock()
}

// errCounter counts failures by kind and keeps the first message.
type errCounter struct {
	n     atomic.Int64
	mu    sync.Mutex
	kinds map[string]int64
	first string
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	msg := err.Error()
	kind := msg
	if i := strings.Index(kind, ": "); i > 0 && strings.HasPrefix(kind, "status ") {
		kind = kind[:i]
	} else if len(kind) > 60 {
		kind = kind[:60]
	}
	e.mu.Lock()
	if e.kinds == nil {
		e.kinds = map[string]int64{}
	}
	e.kinds[kind]++
	if e.first == "" {
		e.first = msg
	}
	e.mu.Unlock()
}

func (e *errCounter) snapshot() (int64, map[string]int64, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var kinds map[string]int64
	if len(e.kinds) > 0 {
		kinds = map[string]int64{}
		for k, v := range e.kinds {
			kinds[k] = v
		}
	}
	return e.n.Load(), kinds, e.first
}

// phaseResult is one closed-loop load phase.
type phaseResult struct {
	Requests   int64            `json:"requests"` // completed without error
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"errorKinds,omitempty"`
	FirstError string           `json:"firstError,omitempty"`
	Seconds    float64          `json:"seconds"`
	Rate       float64          `json:"rate"` // requests per second
	Latency    latency          `json:"latency"`
}

func (p phaseResult) row(name string) string {
	return fmt.Sprintf("%s\t%d\t%d\t%.0f/s\t%s\t%s\t%s\t%s\t%s", name, p.Requests, p.Errors, p.Rate,
		fmtMs(p.Latency.P50Ms), fmtMs(p.Latency.P90Ms), fmtMs(p.Latency.P99Ms), fmtMs(p.Latency.P999Ms), fmtMs(p.Latency.MaxMs))
}

const phaseHeader = "PHASE\tOK\tERRORS\tRATE\tP50\tP90\tP99\tP999\tMAX"

// errStop ends a worker's loop in runPhase (no more work).
var errStop = fmt.Errorf("stop")

// runPhase runs workers goroutines, each calling op(worker, iteration)
// until op returns errStop, until is reached (if not zero) or stop is
// closed, timing each call. A nil error counts as a success.
func (b *bench) runPhase(label string, workers int, until time.Time, stop <-chan struct{}, op func(w, i int) error) phaseResult {
	hists := make([]hist, workers)
	var ok atomic.Int64
	var errs errCounter
	var wg sync.WaitGroup
	start := time.Now()
	var last int64
	lastAt := start
	stopProgress := b.progressEvery(func(time.Duration) string {
		n := ok.Load()
		now := time.Now()
		rate := float64(n-last) / now.Sub(lastAt).Seconds()
		last, lastAt = n, now
		return fmt.Sprintf("%s: %d ok  %.0f/s  errors %d", label, n, rate, errs.n.Load())
	})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[w]
			for i := 0; ; i++ {
				if !until.IsZero() && time.Now().After(until) {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				err := op(w, i)
				if err == errStop {
					return
				}
				if err != nil {
					errs.add(err)
					continue
				}
				h.add(time.Since(t0))
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	stopProgress()
	el := time.Since(start)
	var all hist
	for i := range hists {
		all.merge(&hists[i])
	}
	n, kinds, first := errs.snapshot()
	return phaseResult{
		Requests: ok.Load(), Errors: n, ErrorKinds: kinds, FirstError: first,
		Seconds: round3(el.Seconds()), Rate: math.Round(float64(ok.Load()) / el.Seconds()), Latency: all.summary(),
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
