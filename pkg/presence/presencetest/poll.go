package presencetest

import (
	"testing"
	"time"
)

// Eventually polls cond every millisecond until it holds, and fails the test
// after within: the way tests of this project wait (never sleep and hope).
func Eventually(tb testing.TB, what string, within time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
