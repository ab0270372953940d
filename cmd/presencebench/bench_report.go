package main

// bench_report.go: `presencebench report --dir DIR` turns the files a
// scripts/bench.sh run leaves in DIR into the Markdown table of the README's
// Benchmarks section: each result, its baseline (redis-benchmark on the same
// Redis, same concurrency, same run) or target, the ratio, and pass/fail.
//
// Files read (each optional; a missing one is reported as not measured):
//
//	machine.json        {"nproc","model","go","redis","kernel","date"}
//	rb-heartbeat.csv    redis-benchmark --csv, EVALSHA heartbeat.lua, unpipelined
//	                    (or rb-heartbeat-before.csv and -after.csv: the higher counts)
//	rb-heartbeat-p16.csv  the same with -P 16
//	rb-list.csv         redis-benchmark --csv, EVALSHA list.lua on the listed room
//	heartbeat.json, connections.json, sockchurn.json, fanout.json, list.json,
//	expiry.json         presencebench ... --json
//	heartbeat-create.json  the run that made the heartbeat sessions (optional)
//	list-c1.json        the list scenario at concurrency 1 (optional)
//	redis-memory.json   {"sessions","rooms","before","after"} (INFO used_memory)
//	commands.txt        the commands that ran, one per line
//	cpu.txt             per phase: name, seconds, machine busy cores, cores of
//	                    this run, cores of other processes (a shared machine)

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/presencecluster/presence/cmd/internal/cliutil"
)

type reportRow struct {
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Baseline string  `json:"baseline"`
	Ratio    float64 `json:"ratio"`      // measured / baseline (or / target); 0 when not measured
	RatioOf  string  `json:"ratioOf"`    // "baseline" or "target"
	Goal     string  `json:"goal"`       // the target
	Result   string  `json:"result"`     // PASS, FAIL, not measured
	Details  string  `json:"details"`    // how, sizes
	Value    float64 `json:"value"`      // the measured number in Measured's unit
	Limit    float64 `json:"limit"`      // the target's number
	Higher   bool    `json:"higherIsOk"` // the target is a floor (throughput)
}

type machineInfo struct {
	Load   string `json:"load"` // load averages at the start
	Nproc  string `json:"nproc"`
	Model  string `json:"model"`
	Go     string `json:"go"`
	Redis  string `json:"redis"`
	Kernel string `json:"kernel"`
	Date   string `json:"date"`
}

// cpuPhase is one line of cpu.txt.
type cpuPhase struct {
	Seconds, Busy, Ours, Others float64
}

type reportResult struct {
	Machine  machineInfo         `json:"machine"`
	CPU      map[string]cpuPhase `json:"cpu,omitempty"`
	Rows     []reportRow         `json:"rows"`
	Extra    []string            `json:"extra"`
	Commands []string            `json:"commands"`
}

// rbResult is one redis-benchmark --csv line.
type rbResult struct {
	RPS, AvgMs, P50Ms, P95Ms, P99Ms, MaxMs float64
}

func readRB(path string) (*rbResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, r := range recs {
		if len(r) < 8 || r[0] == "test" {
			continue
		}
		v := make([]float64, 7)
		for i := 1; i < 8; i++ {
			if v[i-1], err = strconv.ParseFloat(r[i], 64); err != nil {
				return nil, fmt.Errorf("%s: bad number %q", path, r[i])
			}
		}
		return &rbResult{RPS: v[0], AvgMs: v[1], P50Ms: v[3], P95Ms: v[4], P99Ms: v[5], MaxMs: v[6]}, nil
	}
	return nil, fmt.Errorf("%s: no result line", path)
}

func readJSONFile[T any](dir, name string) (*T, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &v, nil
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func runReport(ctx context.Context, b *bench) (benchResult, error) {
	dir := b.o.dir
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--dir %s: not a directory", dir)
	}
	rep := &reportResult{}
	var problems []string
	missing := func(name string, err error) {
		if !errors.Is(err, fs.ErrNotExist) {
			problems = append(problems, err.Error())
		}
	}
	if m, err := readJSONFile[machineInfo](dir, "machine.json"); err == nil {
		rep.Machine = *m
	} else {
		missing("machine.json", err)
	}
	rep.CPU = readCPU(filepath.Join(dir, "cpu.txt"))
	notMeasured := func(target, goal, why string) reportRow {
		return reportRow{Target: target, Goal: goal, Result: "not measured", Measured: "-", Baseline: "-", Details: why}
	}

	// 1. Heartbeat throughput vs. redis-benchmark EVALSHA.
	hb, herr := readJSONFile[heartbeatResult](dir, "heartbeat.json")
	// The baseline: the higher of the unpipelined runs (before and after the
	// node's run, or a single one).
	var rb1, rbBefore, rbAfter *rbResult
	rerr := fs.ErrNotExist
	for _, name := range []string{"rb-heartbeat.csv", "rb-heartbeat-before.csv", "rb-heartbeat-after.csv"} {
		r, err := readRB(filepath.Join(dir, name))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				rerr = err
			}
			continue
		}
		switch name {
		case "rb-heartbeat-before.csv":
			rbBefore = r
		case "rb-heartbeat-after.csv":
			rbAfter = r
		}
		if rb1 == nil || r.RPS > rb1.RPS {
			rb1 = r
		}
	}
	if rb1 != nil && errors.Is(rerr, fs.ErrNotExist) {
		rerr = nil
	}
	rb16, _ := readRB(filepath.Join(dir, "rb-heartbeat-p16.csv"))
	const hbTarget = "HTTP heartbeat throughput, one node"
	switch {
	case herr != nil || hb.Refresh == nil:
		missing("heartbeat.json", herr)
		rep.Rows = append(rep.Rows, notMeasured(hbTarget, ">= 1.0x redis-benchmark EVALSHA (unpipelined, same concurrency)", "heartbeat scenario did not run"))
	case rerr != nil:
		missing("rb-heartbeat.csv", rerr)
		rep.Rows = append(rep.Rows, notMeasured(hbTarget, ">= 1.0x redis-benchmark EVALSHA (unpipelined, same concurrency)", "no redis-benchmark baseline"))
	default:
		ratio := hb.Refresh.Rate / rb1.RPS
		row := reportRow{Target: hbTarget, Measured: fmt.Sprintf("%.0f/s", hb.Refresh.Rate),
			Baseline: fmt.Sprintf("%.0f/s EVALSHA", rb1.RPS), Ratio: round2(ratio), RatioOf: "baseline",
			Goal: ">= 1.0x", Result: verdict(ratio >= 1.0), Value: hb.Refresh.Rate, Limit: rb1.RPS, Higher: true,
			Details: fmt.Sprintf("keep-alive heartbeats of %d sessions over %d rooms, concurrency %d; latency %s",
				hb.Sessions, hb.Rooms, hb.Concurrency, hb.Refresh.Latency)}
		if rb16 != nil {
			row.Details += fmt.Sprintf("; vs EVALSHA -P 16: %.0f/s (%.2fx)", rb16.RPS, hb.Refresh.Rate/rb16.RPS)
		}
		rep.Rows = append(rep.Rows, row)
		created := hb.Create
		if hc, err := readJSONFile[heartbeatResult](dir, "heartbeat-create.json"); err == nil {
			created = hc.Create // the sessions were made by an earlier run
		}
		rep.Extra = append(rep.Extra, fmt.Sprintf("Heartbeat, new sessions (a join each): %.0f/s, %s.", created.Rate, created.Latency))
		line := fmt.Sprintf("redis-benchmark EVALSHA heartbeat.lua (the real script, a keep-alive's KEYS and ARGV), -c %d: %.0f/s (p50 %.2f ms, p99 %.2f ms) unpipelined",
			hb.Concurrency, rb1.RPS, rb1.P50Ms, rb1.P99Ms)
		if rbBefore != nil && rbAfter != nil {
			line += fmt.Sprintf(" (the higher of %.0f/s before and %.0f/s after the node's run)", rbBefore.RPS, rbAfter.RPS)
		}
		rep.Extra = append(rep.Extra, line+pipelined(rb16)+".")
	}

	// 2. Redis memory per session.
	const memTarget = "Redis memory per session"
	if rm, err := readJSONFile[struct {
		Sessions int   `json:"sessions"`
		Rooms    int   `json:"rooms"`
		Before   int64 `json:"before"`
		After    int64 `json:"after"`
	}](dir, "redis-memory.json"); err == nil && rm.Sessions > 0 {
		per := float64(rm.After-rm.Before) / float64(rm.Sessions)
		rep.Rows = append(rep.Rows, reportRow{Target: memTarget, Measured: fmt.Sprintf("%.0f B", per), Baseline: "-",
			Ratio: round2(per / 200), RatioOf: "target", Goal: "<= 200 B", Result: verdict(per <= 200), Value: per, Limit: 200,
			Details: fmt.Sprintf("INFO used_memory before/after %d sessions over %d rooms (one user each) made through a node: %d -> %d bytes",
				rm.Sessions, rm.Rooms, rm.Before, rm.After)})
	} else {
		missing("redis-memory.json", err)
		rep.Rows = append(rep.Rows, notMeasured(memTarget, "<= 200 B", "memory step did not run"))
	}

	// 3. Node memory per idle WebSocket.
	const sockTarget = "Node memory per idle WebSocket (one joined room)"
	if cr, err := readJSONFile[connectionsResult](dir, "connections.json"); err == nil && len(cr.Nodes) > 0 {
		worst := cr.Nodes[0]
		var minSock int64 = -1
		for _, n := range cr.Nodes {
			if n.RSSPerSocket > worst.RSSPerSocket {
				worst = n
			}
			if minSock < 0 || n.Sockets < minSock {
				minSock = n.Sockets
			}
		}
		rep.Rows = append(rep.Rows, reportRow{Target: sockTarget, Measured: fmt.Sprintf("%.1f KB RSS", worst.RSSPerSocket/1000),
			Baseline: "-", Ratio: round2(worst.RSSPerSocket / 12000), RatioOf: "target", Goal: "<= 12 KB",
			Result: verdict(worst.RSSPerSocket <= 12000), Value: worst.RSSPerSocket, Limit: 12000,
			Details: fmt.Sprintf("%d sockets over %d nodes (>= %d per node), rooms of %d, %d source addresses, %d client processes; worst node: heap %.1f KB + stacks %.1f KB per socket, %.1f goroutines per socket",
				cr.Opened, len(cr.Nodes), minSock, cr.RoomSize, cr.SourceAddrs, cr.Processes, worst.HeapPerSocket/1000, worst.StackPerSocket/1000, worst.GoroutinesPer)})
		if cr.Idle != nil && cr.Opened > 0 && cr.Idle.Seconds > 0 {
			// Every command (those run by scripts too) per idle socket per
			// interval: the sockets' sessions live by their node's lease.
			per := func(n int64) float64 {
				return float64(n) / cr.Idle.Seconds * float64(cr.IntervalMs) / 1000 / float64(cr.Opened)
			}
			cmds, evals := per(cr.Idle.Commands), per(cr.Idle.Evalsha)
			ok := cr.Idle.Publish == 0 && cmds <= 0.01 && cr.LeavesWhileOpen == 0 && cr.EndedWhileOpen == 0
			rep.Rows = append(rep.Rows, reportRow{Target: "Idle sockets: Redis commands per socket per interval",
				Measured: fmt.Sprintf("%.4f (%.4f EVALSHA), %d PUBLISH", cmds, evals, cr.Idle.Publish),
				Baseline: "-", Ratio: round2(cmds / 0.01), RatioOf: "target", Goal: "<= 0.01, 0 PUBLISH", Result: verdict(ok),
				Value: cmds, Limit: 0.01,
				Details: fmt.Sprintf("%.0f commands/s (all kinds) over %.0fs with %d idle sockets, interval %.0fs; %d live sessions before and %d after the window; %d leaves published while they were open",
					cr.Idle.CommandsPerS, cr.Idle.Seconds, cr.Opened, float64(cr.IntervalMs)/1000, cr.SessionsAlive, cr.SessionsAliveEnd, cr.LeavesWhileOpen)})
		}
	} else {
		missing("connections.json", err)
		rep.Rows = append(rep.Rows, notMeasured(sockTarget, "<= 12 KB", "connections scenario did not run"))
	}
	if hb != nil && hb.Redis != nil {
		rep.Rows = append(rep.Rows, reportRow{Target: "Keep-alive heartbeat publishes nothing",
			Measured: fmt.Sprintf("%d PUBLISH in %d keep-alives", hb.Redis.Publish, hb.Redis.Operations), Baseline: "-",
			RatioOf: "target", Goal: "0 PUBLISH", Result: verdict(hb.Redis.Publish == 0), Value: float64(hb.Redis.Publish),
			Details: fmt.Sprintf("%.2f Redis commands per HTTP heartbeat (EVALSHA + index updates, pipelined)", hb.Redis.PerOperation)})
	}

	// Socket churn (issue 14): nothing left behind, every event once.
	const churnTarget = "Socket churn: no leak, every join and leave once"
	const churnGoal = "goroutines back, RSS within 10 %, one join and one leave per user"
	if sr, err := readJSONFile[sockChurnResult](dir, "sockchurn.json"); err == nil && sr.Started > 0 {
		measured := fmt.Sprintf("goroutines %+.0f, RSS %+.1f %%, %d/%d users exactly once", sr.GoroutinesDelta, sr.RSSChangePct, sr.Exact, sr.Started)
		if sr.Fresh != nil {
			measured += fmt.Sprintf(" (before: after a %d-socket warm-up; from the fresh node RSS %+.1f %%)", sr.WarmupSockets, sr.FreshRSSPct)
		}
		rep.Rows = append(rep.Rows, reportRow{Target: churnTarget,
			Measured: measured,
			Baseline: "-", RatioOf: "target", Goal: churnGoal, Result: verdict(sr.GoroutinesBack && sr.RSSWithin10 && sr.EventsExact),
			Value: sr.RSSChangePct, Limit: 10,
			Details: fmt.Sprintf("%d sockets at %.0f/s (target %.0f/s) for %.0f s, each joining a room of %d and closing with a close frame when joined; at most %d open at once; goroutines %.0f -> %.0f, RSS %s -> %s, heap %s -> %s (after a GC: %s, %s); %d joins and %d leaves published, missing %d/%d, duplicates %d/%d; %d failed",
				sr.Started, sr.StartRate, sr.Rate, sr.DurationS, sr.RoomSize, sr.MaxOpen, sr.Before.Goroutines, sr.After.Goroutines,
				mb(sr.Before.RSS), mb(sr.After.RSS), mb(sr.Before.HeapInuse), mb(sr.After.HeapInuse), cliutil.YesNo(sr.GCBefore), cliutil.YesNo(sr.GCAfter),
				sr.Joins, sr.Leaves, sr.MissingJoins, sr.MissingLeaves, sr.DuplicateJoins, sr.DuplicateLeaves, sr.Failed)})
	} else {
		missing("sockchurn.json", err)
		rep.Rows = append(rep.Rows, notMeasured(churnTarget, churnGoal, "sockchurn scenario did not run"))
	}

	// 4. Cross-node delivery.
	const fanTarget = "Cross-node event delivery p99"
	if fr, err := readJSONFile[fanoutResult](dir, "fanout.json"); err == nil && fr.Delivery.Count > 0 {
		ok := fr.Delivery.P99Ms <= 5 && fr.Missing == 0 && !fr.SameNode
		rep.Rows = append(rep.Rows, reportRow{Target: fanTarget, Measured: fmt.Sprintf("%.2f ms", fr.Delivery.P99Ms), Baseline: "-",
			Ratio: round2(fr.Delivery.P99Ms / 5), RatioOf: "target", Goal: "<= 5 ms at 1,000 joins+leaves/s",
			Result: verdict(ok), Value: fr.Delivery.P99Ms, Limit: 5,
			Details: fmt.Sprintf("%.0f joins+leaves/s (%d) through A, %d rooms x %d watchers on B; p50 %.2f ms, p999 %.2f ms, max %.2f ms; %d of %d delivered",
				fr.Achieved, fr.Joins+fr.Leaves, fr.Rooms, fr.Watchers, fr.Delivery.P50Ms, fr.Delivery.P999Ms, fr.Delivery.MaxMs, fr.Delivered, fr.Expected)})
	} else {
		missing("fanout.json", err)
		rep.Rows = append(rep.Rows, notMeasured(fanTarget, "<= 5 ms", "fanout scenario did not run"))
	}

	// 5. List.
	const listTarget = "List of a 10,000-member room (limit 104), HTTP p99"
	if lr, err := readJSONFile[listResult](dir, "list.json"); err == nil && lr.Plain.Requests > 0 {
		row := reportRow{Target: listTarget, Measured: fmt.Sprintf("%.2f ms (304: %.2f ms)", lr.Plain.Latency.P99Ms, lr.ETag.Latency.P99Ms),
			Baseline: "-", Ratio: round2(lr.Plain.Latency.P99Ms / 2), RatioOf: "target", Goal: "<= 2 ms",
			Result: verdict(lr.Plain.Latency.P99Ms <= 2 && lr.ETag.Latency.P99Ms <= 2), Value: lr.Plain.Latency.P99Ms, Limit: 2,
			Details: fmt.Sprintf("%d members, limit %d, concurrency %d: %.0f/s p50 %.2f ms; with If-None-Match %.0f/s p50 %.2f ms; body %d bytes",
				lr.Members, lr.Limit, lr.Concurrency, lr.Plain.Rate, lr.Plain.Latency.P50Ms, lr.ETag.Rate, lr.ETag.Latency.P50Ms, lr.BodyBytes)}
		if rbl, err := readRB(filepath.Join(dir, "rb-list.csv")); err == nil {
			row.Baseline = fmt.Sprintf("p99 %.2f ms EVALSHA list.lua", rbl.P99Ms)
			row.Details += fmt.Sprintf("; redis-benchmark EVALSHA list.lua at the same concurrency: %.0f/s, p50 %.2f ms, p99 %.2f ms (%.1fx of it)",
				rbl.RPS, rbl.P50Ms, rbl.P99Ms, lr.Plain.Latency.P99Ms/rbl.P99Ms)
		}
		rep.Rows = append(rep.Rows, row)
		if l1, err := readJSONFile[listResult](dir, "list-c1.json"); err == nil && l1.Plain.Requests > 0 {
			rep.Extra = append(rep.Extra, fmt.Sprintf("List of the same room one request at a time (concurrency 1): p50 %.2f ms, p99 %.2f ms, %.0f/s; with If-None-Match p50 %.2f ms, p99 %.2f ms.",
				l1.Plain.Latency.P50Ms, l1.Plain.Latency.P99Ms, l1.Plain.Rate, l1.ETag.Latency.P50Ms, l1.ETag.Latency.P99Ms))
		}
	} else {
		missing("list.json", err)
		rep.Rows = append(rep.Rows, notMeasured(listTarget, "<= 2 ms", "list scenario did not run"))
	}

	// 6. Expiry after kill -9.
	const expTarget = "Every leave delivered after kill -9 of a node"
	if er, err := readJSONFile[expiryResult](dir, "expiry.json"); err == nil && er.Sessions > 0 {
		goal := fmt.Sprintf("<= timeout + 2 s = %.1f s", float64(er.BoundMs)/1000)
		details := fmt.Sprintf("%d sessions (WebSockets) over %d rooms on the killed node, interval %.0f s x %.1f", er.Sessions, er.Rooms,
			float64(er.IntervalMs)/1000, er.TimeoutFactor)
		if er.NodeLeaseMs > 0 {
			goal = fmt.Sprintf("<= min(timeout, lease) + 2 s = %.1f s", float64(er.BoundMs)/1000)
			details += fmt.Sprintf(", node lease %.0f s", float64(er.NodeLeaseMs)/1000)
		}
		details += fmt.Sprintf("; first leave %.2f s, p50 %.2f s, p99 %.2f s after the kill", er.FirstMs/1000, er.P50Ms/1000, er.P99Ms/1000)
		if er.RedisWatched {
			details += fmt.Sprintf("; published (PSUBSCRIBE) %d, last %.2f s, duplicates %d", er.RedisLeaves, er.RedisLastMs/1000, er.RedisDuplicates)
		}
		rep.Rows = append(rep.Rows, reportRow{Target: expTarget, Measured: fmt.Sprintf("%.2f s (%d/%d)", er.LastMs/1000, er.Leaves, er.Sessions),
			Baseline: "-", Ratio: round2(er.LastMs / float64(er.BoundMs)), RatioOf: "target",
			Goal: goal, Result: verdict(er.Complete && er.Pass && er.Duplicates == 0 && er.RedisDuplicates == 0),
			Value: er.LastMs / 1000, Limit: float64(er.BoundMs) / 1000, Details: details})
	} else {
		missing("expiry.json", err)
		rep.Rows = append(rep.Rows, notMeasured(expTarget, "<= timeout + 2 s", "expiry scenario did not run"))
	}

	if b, err := os.ReadFile(filepath.Join(dir, "commands.txt")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				rep.Commands = append(rep.Commands, l)
			}
		}
	}
	// A shared machine: how busy other processes kept it during each phase.
	for i := range rep.Rows {
		name := rowPhase(rep.Rows[i].Target)
		if c, ok := rep.CPU[name]; ok {
			rep.Rows[i].Details += fmt.Sprintf(" [%s: %.1f s; this run %.2f cores, other processes %.2f of %s]",
				name, c.Seconds, c.Ours, c.Others, cliutil.OrDash(rep.Machine.Nproc))
		}
	}
	if len(problems) > 0 {
		return rep, fmt.Errorf("unreadable results: %s", strings.Join(problems, "; "))
	}
	return rep, nil
}

// rowPhase is the cpu.txt phase of a report row.
func rowPhase(target string) string {
	switch {
	case strings.HasPrefix(target, "HTTP heartbeat"), strings.HasPrefix(target, "Keep-alive"):
		return "heartbeat"
	case strings.HasPrefix(target, "Redis memory"):
		return "memory"
	case strings.HasPrefix(target, "Node memory"), strings.HasPrefix(target, "Idle sockets"):
		return "connections"
	case strings.HasPrefix(target, "Socket churn"):
		return "sockchurn"
	case strings.HasPrefix(target, "Cross-node"):
		return "fanout"
	case strings.HasPrefix(target, "List"):
		return "list"
	case strings.HasPrefix(target, "Every leave"):
		return "expiry"
	}
	return ""
}

// readCPU reads cpu.txt ("name seconds busy ours others" per line).
func readCPU(path string) map[string]cpuPhase {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]cpuPhase{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 5 {
			continue
		}
		var v [4]float64
		ok := true
		for i := range v {
			var err error
			if v[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
				ok = false
			}
		}
		if ok {
			out[f[0]] = cpuPhase{Seconds: v[0], Busy: v[1], Ours: v[2], Others: v[3]}
		}
	}
	return out
}

func pipelined(r *rbResult) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf(", %.0f/s with -P 16", r.RPS)
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// writeTable prints the Markdown of the README's Benchmarks section.
func (r *reportResult) writeTable(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Measured with `scripts/bench.sh` on %s: %s cores (%s), %s, Redis %s, Linux %s, load average at the start %s. Redis, the nodes and the load generators share the machine (loopback); the baselines ran in the same run. In brackets: the CPU this run and other processes used during each measurement.\n\n",
		cliutil.OrDash(m.Date), cliutil.OrDash(m.Nproc), cliutil.OrDash(m.Model), cliutil.OrDash(m.Go), cliutil.OrDash(m.Redis), cliutil.OrDash(m.Kernel), cliutil.OrDash(m.Load))
	fmt.Fprintln(w, "| target | measured | baseline | ratio | goal | result |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, row := range r.Rows {
		ratio := "-"
		if row.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx %s", row.Ratio, row.RatioOf)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | **%s** |\n", row.Target, row.Measured, row.Baseline, ratio, row.Goal, row.Result)
	}
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		fmt.Fprintf(w, "- %s: %s.\n", row.Target, row.Details)
	}
	for _, e := range r.Extra {
		fmt.Fprintf(w, "- %s\n", e)
	}
	if len(r.Commands) > 0 {
		fmt.Fprintln(w, "\nCommands (scripts/bench.sh ran them, in this order):\n\n```sh")
		for _, c := range r.Commands {
			fmt.Fprintln(w, c)
		}
		fmt.Fprintln(w, "```")
	}
}
