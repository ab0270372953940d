//go:build race

package redisstore

// raceEnabled: the race detector makes sync.Pool drop items, so allocation
// counts of pooled code are not checked.
const raceEnabled = true
