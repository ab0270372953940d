#!/usr/bin/env bash
# Benchmarks: builds presenced and presencebench, starts its own redis-server
# (loopback, no persistence) and nodes, measures the baselines (redis-benchmark
# on an EVALSHA of the real heartbeat.lua and list.lua, same Redis, same
# concurrency, same run) and the scenarios of `presencebench`, prints each
# result against its baseline or target, and rewrites the README's Benchmarks
# section (between the bench:start and bench:end markers).
#
#   scripts/bench.sh                      # default sizes (about 15 minutes)
#   BENCH_SMALL=1 scripts/bench.sh        # a tiny run (CI smoke test, ~1 min)
#   BENCH_README=0 scripts/bench.sh       # do not touch README.md
#   BENCH_REPORT_FROM=/tmp/presence-bench.X scripts/bench.sh   # re-render a run's report
#
# Every size is an environment variable (defaults below). Results (JSON,
# logs, the Markdown) stay in $BENCH_OUT. Everything it starts is stopped by
# pid on exit. It fails (non-zero) when a step fails; a missed target is a
# result (FAIL in the table), not a failure of the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

small=${BENCH_SMALL:-0}
pick() { if [ "$small" = 1 ]; then echo "$2"; else echo "$1"; fi; }

OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/presence-bench.XXXXXX")}
PORT=${BENCH_PORT:-17300}                                      # redis; nodes PORT+1...
CONC=${BENCH_CONCURRENCY:-64}                                  # heartbeat and redis-benchmark -c
HB_DURATION=${BENCH_HB_DURATION:-$(pick 20s 2s)}
HB_SESSIONS=${BENCH_HB_SESSIONS:-$(pick 10000 500)}
HB_ROOMS=${BENCH_HB_ROOMS:-$(pick 100 10)}
RB_REQUESTS=${BENCH_RB_REQUESTS:-$(pick 400000 20000)}         # redis-benchmark -n (unpipelined)
RB_REQUESTS_P16=${BENCH_RB_REQUESTS_P16:-$(pick 1000000 50000)}
MEM_SESSIONS=${BENCH_MEM_SESSIONS:-$(pick 100000 2000)}
MEM_ROOMS=${BENCH_MEM_ROOMS:-$(pick 10000 200)}
LIST_MEMBERS=${BENCH_LIST_MEMBERS:-$(pick 10000 500)}
LIST_CONC=${BENCH_LIST_CONCURRENCY:-4}
LIST_DURATION=${BENCH_LIST_DURATION:-$(pick 10s 1s)}
RB_LIST_REQUESTS=${BENCH_RB_LIST_REQUESTS:-$(pick 20000 1000)}
FAN_RATE=${BENCH_FANOUT_RATE:-1000}
FAN_DURATION=${BENCH_FANOUT_DURATION:-$(pick 20s 2s)}
FAN_ROOMS=${BENCH_FANOUT_ROOMS:-10}
FAN_WATCHERS=${BENCH_FANOUT_WATCHERS:-10}
EXP_SESSIONS=${BENCH_EXPIRY_SESSIONS:-$(pick 10000 200)}
EXP_ROOMS=${BENCH_EXPIRY_ROOMS:-100}
EXP_INTERVAL=${BENCH_EXPIRY_INTERVAL:-$(pick 10s 2s)}
# Sockets: a node holds at most ~19,950 (open files are capped at 20,000 per
# process here), so 19,000 per node; 2 nodes x 19,000 = 38,000 sockets, more
# than one source address's ~28,000 ephemeral ports, hence the 8 source
# addresses. BENCH_SOCKET_NODES=4 BENCH_SOCKETS=76000 opens 76,000, but on 2
# cores the 6 client processes saturate the machine, Redis answers keep-alive
# pipelines later than the nodes' 1 s read timeout, and sessions of open
# sockets expire (docs/benchmarks.md).
SOCK_NODES=${BENCH_SOCKET_NODES:-2}
SOCKETS=${BENCH_SOCKETS:-$(pick 38000 400)}
SOURCE_ADDRS=${BENCH_SOURCE_ADDRS:-127.0.0.2-127.0.0.9}
PER_PROCESS=${BENCH_PER_PROCESS:-$(pick 15000 150)}
ROOM_SIZE=${BENCH_ROOM_SIZE:-10}
SOCK_INTERVAL=${BENCH_SOCKET_INTERVAL:-10s}
GC_WAIT=${BENCH_GC_WAIT:-$(pick 150s 0s)}
DIAL_CONC=${BENCH_DIAL_CONCURRENCY:-25}                        # per process: a join storm beyond it overloads the nodes
CHURN_RATE=${BENCH_CHURN_RATE:-1000}                           # sockchurn: sockets per second (issue 14)
CHURN_WARMUP=${BENCH_CHURN_WARMUP:-$(pick 10s 1s)}              # sockchurn: a churn before the before sample
CHURN_DURATION=${BENCH_CHURN_DURATION:-$(pick 60s 3s)}
README_UPDATE=${BENCH_README:-1}

# BENCH_REPORT_FROM=DIR: no run; the report of an earlier run's results
# (its BENCH_OUT), printed and written into the README.
report_from=${BENCH_REPORT_FROM:-}

for tool in go redis-server redis-cli redis-benchmark; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "scripts/bench.sh: $tool not found on PATH (Debian: apt-get install -y redis-server redis-tools)" >&2
		exit 1
	fi
done
if [ -n "$report_from" ]; then
	OUT=$report_from
	mkdir -p "$OUT/bin"
	go build -o "$OUT/bin/presencebench" ./cmd/presencebench
fi
mkdir -p "$OUT/bin" "$OUT/logs"
if [ -z "$report_from" ]; then
	: >"$OUT/commands.txt"
	: >"$OUT/cpu.txt"
fi
echo "==> results in $OUT"

# ---- processes: started here, stopped by pid on exit ------------------------
pids=()
cleanup() {
	local status=$?
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$status" != 0 ]; then
		echo "scripts/bench.sh: FAILED (exit $status); logs in $OUT/logs" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() { # stop one process we started
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# http_ready PORT: GET /readyz answers 200 (bash's /dev/tcp: no curl needed).
http_ready() {
	local line
	{ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	read -r -t 2 line <&3 || true
	exec 3>&- 3<&-
	[[ "$line" == *" 200 "* ]]
}

# record CMD...: run a command, logging it (with paths made relative) in
# commands.txt for the README.
record() {
	local shown="" a
	for a in "$@"; do
		if [ -z "$a" ]; then
			a="''"
		elif ! [[ "$a" =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
			a="'$a'"
		fi
		shown+="${shown:+ }$a"
	done
	shown=${shown//$OUT\/bin\//}
	shown=${shown//$OUT\//\$OUT\/}
	echo "$shown" >>"$OUT/commands.txt"
	echo "+ $shown" >&2
	"$@"
}

REDIS_URL="redis://127.0.0.1:$PORT"
rcli() { redis-cli -p "$PORT" "$@"; }

# start_node NAME PORT: a presenced on 127.0.0.1:PORT; its pid in NODE_PID.
# Storm coalescing is raised out of the way (PRESENCE_WS_ROOM_FRAMES): the
# fanout and expiry scenarios time and count every event one by one, at up
# to 100 events per second per room (`presencebench storm` measures
# coalescing itself, on nodes with the default).
start_node() {
	local name=$1 port=$2
	PRESENCE_ADDR="127.0.0.1:$port" PRESENCE_REDIS_URL="$REDIS_URL" PRESENCE_NODE_ID="$name" \
		PRESENCE_WS_ROOM_FRAMES="${BENCH_ROOM_FRAMES:-100000}" \
		PRESENCE_LOG_LEVEL=warn "$OUT/bin/presenced" >"$OUT/logs/$name.log" 2>&1 &
	NODE_PID=$!
	pids+=("$NODE_PID")
	for _ in $(seq 200); do
		if http_ready "$port"; then
			return 0
		fi
		if ! kill -0 "$NODE_PID" 2>/dev/null; then
			echo "node $name exited at start:" >&2
			tail -20 "$OUT/logs/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "node $name not ready on port $port" >&2
	exit 1
}

used_memory() { rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p'; }

# ---- CPU accounting: this machine may be shared -------------------------------
# phase_begin / phase_end NAME write to cpu.txt, per scenario: its seconds, the
# cores the whole machine was busy, the cores this run used (redis, nodes,
# and the presencebench that ran, with its children), and the rest: other
# processes on the machine, which the report shows next to the results.
machine_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; } # jiffies (1/100 s)
proc_ticks() {
	local p t=0
	for p in "$@"; do
		if [ -r "/proc/$p/stat" ]; then
			t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat")))
		fi
	done
	echo "$t"
}
children_ticks() { # CPU of this shell's waited-for children into $1
	# (`times` in this shell, not in a $(...) subshell, which has no children)
	times >"$OUT/.times"
	printf -v "$1" '%s' "$(tail -1 "$OUT/.times" | awk '{
		n = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] }
		printf "%d\n", n * 100 }')"
}
phase_begin() {
	ph_t0=$(date +%s%N)
	ph_m0=$(machine_busy)
	ph_p0=$(proc_ticks "${pids[@]}")
	children_ticks ph_c0
}
phase_end() {
	local t1 m1 p1 c1
	t1=$(date +%s%N)
	m1=$(machine_busy)
	p1=$(proc_ticks "${pids[@]}")
	children_ticks c1
	awk -v n="$1" -v dt="$(((t1 - ph_t0) / 1000000))" -v m="$((m1 - ph_m0))" -v o="$((p1 - ph_p0 + c1 - ph_c0))" 'BEGIN {
		s = dt / 1000; f = (m - o) / 100 / s; if (f < 0) f = 0
		printf "%s %.1f %.2f %.2f %.2f\n", n, s, m / 100 / s, o / 100 / s, f }' >>"$OUT/cpu.txt"
	tail -1 "$OUT/cpu.txt" | awk '{printf "    (%s: %.1fs; machine busy %.2f cores, this run %.2f, other processes %.2f)\n", $1, $2, $3, $4, $5}'
}

# wait_quiet: wait (up to BENCH_QUIET_WAIT seconds) until the machine is
# nearly idle, so other work does not skew the results.
wait_quiet() {
	local deadline=$(($(date +%s) + ${BENCH_QUIET_WAIT:-120})) m0 m1 busy
	while :; do
		m0=$(machine_busy)
		sleep 3
		m1=$(machine_busy)
		busy=$(((m1 - m0) / 3))
		if [ "$busy" -le 25 ]; then
			echo "    machine quiet: $busy% of a core busy"
			return 0
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "    WARNING: the machine is busy ($busy% of a core used by other processes); results will be skewed" >&2
			return 0
		fi
		echo "    waiting for the machine to be quiet ($busy% of a core busy)"
	done
}

if [ -z "$report_from" ]; then
# ---- build, machine ---------------------------------------------------------
echo "==> build"
go build -o "$OUT/bin/presenced" ./cmd/presenced
go build -o "$OUT/bin/presencebench" ./cmd/presencebench
bench="$OUT/bin/presencebench"

model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- cmd pkg lua 2>/dev/null)" ]; then revision="$revision+local changes"; fi
cat >"$OUT/machine.json" <<EOF
{"load":"$(cut -d' ' -f1-3 /proc/loadavg)","nproc":"$(nproc)","model":"${model:-unknown}","go":"$(go env GOVERSION)","redis":"$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')","kernel":"$(uname -r)","date":"$(date -u +%Y-%m-%dT%H:%MZ) (commit $revision)"}
EOF

# ---- Redis and the first node -----------------------------------------------
echo "==> redis-server on 127.0.0.1:$PORT"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
	--dir "$OUT" --logfile "$OUT/logs/redis.log" &
pids+=($!)
for _ in $(seq 100); do
	rcli PING >/dev/null 2>&1 && break
	sleep 0.1
done
rcli PING >/dev/null
A=$((PORT + 1))
B=$((PORT + 2))
start_node bench-a "$A"
A_PID=$NODE_PID
URL_A="http://127.0.0.1:$A"
URL_B="http://127.0.0.1:$B"

# ---- Redis memory per session ------------------------------------------------
echo "==> Redis memory: $MEM_SESSIONS sessions over $MEM_ROOMS rooms"
rcli MEMORY PURGE >/dev/null 2>&1 || true
mem_before=$(used_memory)
phase_begin
record "$bench" heartbeat --url "$URL_A" --sessions "$MEM_SESSIONS" --rooms "$MEM_ROOMS" \
	--duration 0 --interval 10m --concurrency "$CONC" --run-id mem --uuid-ids --json >"$OUT/mem-heartbeat.json"
phase_end memory
mem_after=$(used_memory)
echo "{\"sessions\":$MEM_SESSIONS,\"rooms\":$MEM_ROOMS,\"before\":$mem_before,\"after\":$mem_after}" >"$OUT/redis-memory.json"
echo "used_memory $mem_before -> $mem_after: $(((mem_after - mem_before) / MEM_SESSIONS)) bytes per session"
# Where it goes: MEMORY USAGE of one room's keys and one user index bucket.
{
	for k in room order profile; do
		echo "presence:{default::bench-mem-r0}:$k $(rcli MEMORY USAGE "presence:{default::bench-mem-r0}:$k")"
	done
	bucket=$(rcli --scan --pattern 'presence:users:{default:*}' | awk 'NR == 1')
	echo "$bucket $(rcli MEMORY USAGE "$bucket") bytes, $(rcli ZCARD "$bucket") entries"
	echo "dbsize $(rcli DBSIZE)"
	rcli INFO memory | tr -d '\r' | grep -E '^(used_memory|used_memory_dataset|used_memory_overhead|mem_fragmentation_ratio):'
} >"$OUT/redis-memory-breakdown.txt"

# ---- heartbeat: the sessions ------------------------------------------------------
# First each session's first heartbeat (a join each), which also gives the
# baseline its realistic room. (A 10 min interval: these sessions must not
# expire, and be reaped, while the later scenarios run.)
echo "==> heartbeat: $HB_SESSIONS new sessions over $HB_ROOMS rooms, concurrency $CONC"
wait_quiet
phase_begin
record "$bench" heartbeat --url "$URL_A" --sessions "$HB_SESSIONS" --rooms "$HB_ROOMS" \
	--interval 10m --concurrency "$CONC" --duration 0 --run-id hb --json >"$OUT/heartbeat-create.json"
phase_end heartbeat-create

# ---- redis-benchmark baseline: EVALSHA of the real heartbeat.lua --------------
# The script the node runs (lib.lua prepended, as lua.Source does), with the
# KEYS and ARGV of a keep-alive of a session of one of those rooms (a room
# of HB_SESSIONS/HB_ROOMS sessions; a refresh changes nothing), exactly as
# the node sends it during the measured phase.
hb_sha=$(cat lua/lib.lua lua/heartbeat.lua | rcli -x SCRIPT LOAD | tr -d '\r')
now_ms=$(($(date +%s) * 1000))
rbk='presence:{default::bench-hb-r0}'
# KEYS: room, order, profile, webhook outbox ("": webhooks off), deadline
# index; ARGV as the node sends a keep-alive, then the room's tag and the two
# privacy flags ("": unchanged).
hb_args=(EVALSHA "$hb_sha" 5 "$rbk:room" "$rbk:order" "$rbk:profile" "" "presence:deadlines:{0}"
	"$now_ms" "$rbk:events" PUBLISH 606300000 604800000 bench-hb-s0 bench-hb-u0 "$((now_ms + 1500000))"
	bench0ep "" 0 "" 0 "" 0 1 "$((now_ms + 3600000))" "default::bench-hb-r0" "" "")
# The shape must match what the node sends: the same number of arguments
# (MONITOR during one heartbeat through the node).
(timeout 3 redis-cli -p "$PORT" MONITOR >"$OUT/monitor.txt" 2>/dev/null || true) &
mon=$!
sleep 0.5
"$bench" heartbeat --url "$URL_A" --sessions 1 --rooms 1 --concurrency 1 --duration 0 --run-id shape --progress 0 >/dev/null
wait "$mon" || true
node_line=$(grep -i -m1 '"evalsha" "'"$hb_sha"'"' "$OUT/monitor.txt" || true)
if [ -z "$node_line" ]; then
	echo "scripts/bench.sh: the node did not run heartbeat.lua as $hb_sha (lib.lua + heartbeat.lua changed shape?)" >&2
	exit 1
fi
node_argc=$(($(grep -o '"\([^"\\]\|\\.\)*"' <<<"$node_line" | wc -l)))
if [ "$node_argc" != "${#hb_args[@]}" ]; then
	echo "scripts/bench.sh: the node's EVALSHA has $node_argc arguments, the baseline ${#hb_args[@]}: update hb_args" >&2
	echo "node: $node_line" >&2
	exit 1
fi
if ! grep -q '"606300000" "604800000"' <<<"$node_line"; then
	echo "scripts/bench.sh: the node's key TTL or retention differ from the baseline's: update hb_args" >&2
	echo "node: $node_line" >&2
	exit 1
fi
reply=$(rcli "${hb_args[@]}" 2>&1)
if [ "$(wc -l <<<"$reply")" -lt 6 ] || [ "$(sed -n 2p <<<"$reply")" = "" ]; then
	echo "scripts/bench.sh: heartbeat.lua baseline call failed: $reply" >&2
	exit 1
fi
rb_heartbeat() { # FILE PIPELINE REQUESTS
	wait_quiet
	phase_begin
	record redis-benchmark -p "$PORT" -c "$CONC" -n "$3" -P "$2" --csv "${hb_args[@]}" >"$OUT/$1"
	phase_end "${1%.csv}"
	tail -1 "$OUT/$1"
}
echo "==> baseline: redis-benchmark EVALSHA heartbeat.lua, -c $CONC"
rb_heartbeat rb-heartbeat-before.csv 1 "$RB_REQUESTS"
rb_heartbeat rb-heartbeat-p16.csv 16 "$RB_REQUESTS_P16"

# ---- heartbeat through one node: keep-alives ---------------------------------------
echo "==> heartbeat: $HB_SESSIONS sessions refreshed, concurrency $CONC, $HB_DURATION"
wait_quiet
phase_begin
record "$bench" --redis-url "$REDIS_URL" heartbeat --url "$URL_A" --sessions "$HB_SESSIONS" --rooms "$HB_ROOMS" \
	--interval 10m --concurrency "$CONC" --duration "$HB_DURATION" --redis-stats --run-id hb --json >"$OUT/heartbeat.json"
phase_end heartbeat
echo "==> baseline again (after the node's run; the report takes the higher one)"
rb_heartbeat rb-heartbeat-after.csv 1 "$RB_REQUESTS"

# ---- list ------------------------------------------------------------------------
echo "==> list: a room of $LIST_MEMBERS members, concurrency $LIST_CONC"
wait_quiet
phase_begin
record "$bench" list --url "$URL_A" --members "$LIST_MEMBERS" --concurrency "$LIST_CONC" \
	--duration "$LIST_DURATION" --run-id list --json >"$OUT/list.json"
phase_end list
# The same room, one request at a time (no queueing on Redis).
phase_begin
record "$bench" list --url "$URL_A" --members "$LIST_MEMBERS" --concurrency 1 \
	--duration "$LIST_DURATION" --run-id list --json >"$OUT/list-c1.json"
phase_end list-c1
list_sha=$(cat lua/lib.lua lua/list.lua | rcli -x SCRIPT LOAD | tr -d '\r')
lk='presence:{default::bench-list-list0}'
list_args=(EVALSHA "$list_sha" 3 "$lk:room" "$lk:order" "$lk:profile"
	0 104 0 "$(($(date +%s) * 1000))" 604800000)
if [ "$(rcli "${list_args[@]}" | wc -l)" -lt 100 ]; then
	echo "scripts/bench.sh: list.lua baseline call does not list the room" >&2
	exit 1
fi
echo "==> baseline: redis-benchmark EVALSHA list.lua, -c $LIST_CONC"
phase_begin
record redis-benchmark -p "$PORT" -c "$LIST_CONC" -n "$RB_LIST_REQUESTS" --csv "${list_args[@]}" >"$OUT/rb-list.csv"
phase_end rb-list
tail -1 "$OUT/rb-list.csv"

# ---- fan-out across two nodes ---------------------------------------------------------
start_node bench-b "$B"
B_PID=$NODE_PID
echo "==> fanout: $FAN_RATE joins+leaves/s through A, watchers on B"
wait_quiet
phase_begin
record "$bench" fanout --url "$URL_A" --url "$URL_B" --rate "$FAN_RATE" --duration "$FAN_DURATION" \
	--rooms "$FAN_ROOMS" --watchers "$FAN_WATCHERS" --run-id fan --json >"$OUT/fanout.json"
phase_end fanout

# ---- expiry after kill -9 ---------------------------------------------------------------
echo "==> expiry: $EXP_SESSIONS sessions on a node killed with SIGKILL, leaves watched on B"
phase_begin
record "$bench" --redis-url "$REDIS_URL" expiry --presenced-bin "$OUT/bin/presenced" --url "$URL_B" \
	--sessions "$EXP_SESSIONS" --rooms "$EXP_ROOMS" --interval "$EXP_INTERVAL" --run-id exp --json >"$OUT/expiry.json"
phase_end expiry

# ---- idle sockets: fresh nodes -----------------------------------------------------------
stop_pid "$A_PID"
stop_pid "$B_PID"
sock_urls=()
sock_pids=()
for i in $(seq 1 "$SOCK_NODES"); do
	start_node "bench-s$i" $((PORT + 10 + i))
	sock_urls+=("http://127.0.0.1:$((PORT + 10 + i))")
	sock_pids+=("$NODE_PID")
done
joined=$(
	IFS=,
	echo "${sock_urls[*]}"
)
echo "==> connections: $SOCKETS sockets over $SOCK_NODES nodes, source addresses $SOURCE_ADDRS"
wait_quiet
phase_begin
record "$bench" --redis-url "$REDIS_URL" connections --url "$joined" --sockets "$SOCKETS" \
	--source-addrs "$SOURCE_ADDRS" --per-process "$PER_PROCESS" --room-size "$ROOM_SIZE" --interval "$SOCK_INTERVAL" \
	--dial-concurrency "$DIAL_CONC" --gc-wait "$GC_WAIT" --redis-stats --run-id conn --json >"$OUT/connections.json"
phase_end connections

# ---- socket churn: a fresh node, warmed up by a short churn of its own first ----------
for pid in "${sock_pids[@]}"; do
	stop_pid "$pid"
done
start_node bench-churn $((PORT + 20))
echo "==> sockchurn: $CHURN_RATE sockets/s for $CHURN_DURATION (after a $CHURN_WARMUP warm-up), each joins a room and closes"
wait_quiet
phase_begin
record "$bench" --redis-url "$REDIS_URL" sockchurn --url "http://127.0.0.1:$((PORT + 20))" --rate "$CHURN_RATE" \
	--duration "$CHURN_DURATION" --room-size "$ROOM_SIZE" --source-addrs "$SOURCE_ADDRS" --gc-wait "$GC_WAIT" \
	--warmup "$CHURN_WARMUP" --run-id churn --json >"$OUT/sockchurn.json"
phase_end sockchurn

fi # the run

# ---- report ----------------------------------------------------------------------------
"$OUT/bin/presencebench" report --dir "$OUT" >"$OUT/report.md"
echo
cat "$OUT/report.md"
if [ "$README_UPDATE" = 1 ]; then
	start='<!-- bench:start'
	end='<!-- bench:end -->'
	if [ "$(grep -c "^$start" README.md)" != 1 ] || [ "$(grep -c "^$end" README.md)" != 1 ]; then
		echo "scripts/bench.sh: README.md must hold one '$start ...' and one '$end' line" >&2
		exit 1
	fi
	awk -v start="$start" -v end="$end" -v report="$OUT/report.md" '
		index($0, start) == 1 { print; print ""; while ((getline line < report) > 0) print line; print ""; skip = 1; next }
		index($0, end) == 1 { skip = 0 }
		!skip { print }
	' README.md >"$OUT/README.md.new"
	cp "$OUT/README.md.new" README.md
	echo "==> README.md: Benchmarks section rewritten"
fi
echo "==> done: $OUT"
