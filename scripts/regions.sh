#!/usr/bin/env bash
# Starts two regions on this machine, to try what a second region does:
#
#   region A: the Redis primary and node A
#   region B: a Redis replica and node B; node B writes to the primary and
#             the replica replicates through a latency proxy (cmd/netproxy),
#             so both cross-region links take --rtt per round trip
#
#   scripts/regions.sh [--rtt 40ms] [--base-port 7400] [--state-dir DIR]
#
# It prints the URLs, the proxies' pids (kill -USR1 <pid> cuts a link,
# kill -USR2 <pid> heals it) and the command that cuts both, then follows the
# nodes' logs. Ctrl-C (or kill <the script's pid>) stops everything it
# started, by the pids it recorded.
#
# Ports: base (node A), base+1 (node B), base+2 (primary), base+3 (replica),
# base+4 (node B -> primary proxy), base+5 (replication proxy).
#
# Needs: go, redis-server (Debian: apt-get install -y redis-server).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rtt=40ms
base=7400
state=${TMPDIR:-/tmp}/presence-regions-$(id -u)
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while (($# > 0)); do
	case $1 in
	--rtt) rtt=${2:?--rtt needs a value} && shift 2 ;;
	--base-port) base=${2:?--base-port needs a value} && shift 2 ;;
	--state-dir) state=${2:?--state-dir needs a value} && shift 2 ;;
	-h | --help) usage && exit 0 ;;
	*) echo "regions.sh: unknown option: $1 (see --help)" >&2 && exit 2 ;;
	esac
done
[[ $base =~ ^[0-9]+$ ]] || { echo "regions.sh: --base-port: not a number: $base" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "regions.sh: redis-server not found (apt-get install -y redis-server)" >&2; exit 1; }
# One-way delay: half the round trip (a Go duration).
ms=${rtt%ms}
[[ $ms =~ ^[0-9]+$ ]] || { echo "regions.sh: --rtt must be whole milliseconds, such as 40ms" >&2; exit 2; }
oneway="$((ms / 2))ms"

node_a=$base node_b=$((base + 1)) primary=$((base + 2)) replica=$((base + 3))
wan=$((base + 4)) repl=$((base + 5))
mkdir -p "$state"
echo "building presenced and netproxy into $state ..."
(cd "$repo" && go build -o "$state/presenced" ./cmd/presenced && go build -o "$state/netproxy" ./cmd/netproxy)

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping ${#pids[@]} processes: ${pids[*]}"
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT
start() { # name, command...
	local name=$1
	shift
	"$@" >"$state/$name.log" 2>&1 &
	pids+=($!)
	echo "$!" >"$state/$name.pid"
}
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "regions.sh: nothing listens on $1: see $state/*.log" >&2
	exit 1
}

start redis-primary redis-server --port "$primary" --bind 127.0.0.1 --save '' --appendonly no
wait_port "$primary"
start proxy-wan "$state/netproxy" --listen "127.0.0.1:$wan" --target "127.0.0.1:$primary" --delay "$oneway"
start proxy-repl "$state/netproxy" --listen "127.0.0.1:$repl" --target "127.0.0.1:$primary" --delay "$oneway"
wait_port "$wan"
wait_port "$repl"
start redis-replica redis-server --port "$replica" --bind 127.0.0.1 --save '' --appendonly no --replicaof 127.0.0.1 "$repl"
wait_port "$replica"
secret=regions-sh-token-secret-0123456789
PRESENCE_ADDR=127.0.0.1:$node_a PRESENCE_REDIS_URL=redis://127.0.0.1:$primary PRESENCE_REGION=a PRESENCE_NODE_ID=node-a \
	PRESENCE_TOKEN_SECRET=$secret PRESENCE_DEMO=on start node-a "$state/presenced"
PRESENCE_ADDR=127.0.0.1:$node_b PRESENCE_REDIS_URL=redis://127.0.0.1:$wan PRESENCE_REDIS_REPLICA_URL=redis://127.0.0.1:$replica \
	PRESENCE_REGION=b PRESENCE_NODE_ID=node-b PRESENCE_TOKEN_SECRET=$secret PRESENCE_DEMO=on start node-b "$state/presenced"
wait_port "$node_a"
wait_port "$node_b"

cat <<EOF

two regions, $rtt round trip between them (logs and pids in $state):
  region A  node  http://127.0.0.1:$node_a  (demo: http://127.0.0.1:$node_a/demo/)
            Redis primary  redis://127.0.0.1:$primary
  region B  node  http://127.0.0.1:$node_b  (demo: http://127.0.0.1:$node_b/demo/)
            Redis replica  redis://127.0.0.1:$replica
  links     node B -> primary: netproxy pid $(cat "$state/proxy-wan.pid") on :$wan
            replication:       netproxy pid $(cat "$state/proxy-repl.pid") on :$repl
  cut both: kill -USR1 $(cat "$state/proxy-wan.pid") $(cat "$state/proxy-repl.pid")
  heal:     kill -USR2 $(cat "$state/proxy-wan.pid") $(cat "$state/proxy-repl.pid")
  readyz:   curl -s http://127.0.0.1:$node_b/readyz
Ctrl-C stops everything.

EOF
tail -n +1 -F "$state/node-a.log" "$state/node-b.log" "$state/proxy-wan.log" "$state/proxy-repl.log" &
pids+=($!)
wait "${pids[0]}"
