// Command presencebench is the load generator of a presence cluster: it
// drives running nodes over HTTP and WebSockets (and makes sessions there)
// to measure them. Each scenario measures one thing: heartbeat (HTTP
// heartbeat throughput and latency), connections (node memory and Redis
// commands per idle WebSocket), sockchurn (WebSockets that connect, join
// and close at a rate: leaks, and every join and leave once), fanout
// (cross-node event delivery), list (a big room's list), slowbody (slow
// request bodies), expiry (every leave after kill -9 of a node), webhooks
// (delivery delay and throughput to a receiver it serves); report
// renders the results of a scripts/bench.sh run as Markdown.
//
// Usage:
//
//	presencebench <scenario> [flags]
//
// Run `presencebench help` for the scenarios and flags. A progress line goes
// to stderr, the result table (or one JSON document with --json) to stdout.
// Exit status: 0 the run completed without errors, 1 requests failed (more
// than --max-errors), events were lost or a node was unreachable, 2 usage
// error.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

func main() { cliutil.Main(run) }

// run runs presencebench with args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	if args[0] == "help" {
		fmt.Fprint(stdout, benchUsage)
		return 0
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(stdout, benchUsage)
			return 0
		}
	}
	c := &cliutil.Env{Globals: cliutil.DefaultGlobals(getenv), Stdout: stdout, Stderr: stderr}
	defer c.Close()
	fs := flag.NewFlagSet("presencebench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	name, err := runBench(ctx, c, fs, args)
	if err == nil {
		return 0
	}
	return c.Fail("presencebench", name, err)
}
