//go:build race

package presence_test

// raceEnabled: the race detector makes sync.Pool drop items, so allocation
// counts of pooled code are not checked.
const raceEnabled = true
