// Package clitest runs a command's run function in tests (presencectl,
// presencebench) and checks its outcome.
package clitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// RunFunc is a command's entry point: it runs the command with args
// (without the program name) and returns the exit status.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int

// Result is the outcome of one run.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs the command with args and the environment env.
func Run(t testing.TB, run RunFunc, env map[string]string, args ...string) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	return Result{code, stdout.String(), stderr.String()}
}

// OK fails the test unless the run exited 0.
func (r Result) OK(t testing.TB) Result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// Expect runs the command with args and reports an error unless it exits
// with code and out is in its stdout (code 0) or stderr (otherwise).
func Expect(t testing.TB, run RunFunc, env map[string]string, code int, out string, args ...string) {
	t.Helper()
	r := Run(t, run, env, args...)
	where := r.Stderr
	if code == 0 {
		where = r.Stdout
	}
	if r.Code != code || !strings.Contains(where, out) {
		t.Errorf("%q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", args, r.Code, code, out, r.Stdout, r.Stderr)
	}
}

// Decode decodes s, which must be exactly one JSON document of T's fields.
func Decode[T any](t testing.TB, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", s)
	}
	return v
}
