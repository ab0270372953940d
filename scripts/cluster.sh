#!/usr/bin/env bash
# Starts the topology of docker-compose.yml from local binaries, without
# Docker: one redis-server, three presenced nodes (built with go build) and
# nginx with deploy/nginx.conf, all on loopback.
#
#   scripts/cluster.sh up     [options]   start, follow the logs; Ctrl-C stops all
#   scripts/cluster.sh start  [options]   start in the background, then return
#   scripts/cluster.sh stop   [options]   stop what start started (by pid)
#   scripts/cluster.sh status [options]   show the processes; exit 1 if one is down
#   scripts/cluster.sh config [options]   print the services and node settings
#
# Options:
#   --state-dir DIR      pids, logs, binaries, nginx prefix
#                        (default: ${TMPDIR:-/tmp}/presence-cluster-$UID)
#   --port N             load balancer port (default 8080)
#   --node-ports A,B,C   node ports (default: port+1, port+2, port+3)
#   --redis-port N       Redis port (default: port+4)
#
# The nodes' shared settings come from deploy/cluster.env, as in
# docker-compose.yml; each node gets PRESENCE_ADDR, PRESENCE_REDIS_URL and
# PRESENCE_NODE_ID (presenced-1..3) and nothing else from the environment.
# nginx runs as the calling user, with the state directory as its prefix, a
# byte-identical copy of deploy/nginx.conf and generated include files (the
# upstream is deploy/nginx/compose-upstream.conf with loopback addresses).
# Processes are only ever stopped by the pids this script recorded, after
# checking that each pid still runs the program it started.
#
# Needs: go, redis-server, nginx (PATH or /usr/sbin/nginx). Debian:
# apt-get install -y redis-server nginx-light
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=(presenced-1 presenced-2 presenced-3)
env_file=deploy/cluster.env
nginx_conf=deploy/nginx.conf
nginx_upstream=deploy/nginx/compose-upstream.conf
compose_port=8080 # the nodes' port in docker-compose.yml

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

cmd=${1:-}
case $cmd in
-h | --help | help)
	usage
	exit 0
	;;
'')
	usage >&2
	exit 2
	;;
esac
shift
state=${TMPDIR:-/tmp}/presence-cluster-$(id -u)
port=8080
node_ports=
redis_port=
while (($# > 0)); do
	case $1 in
	--state-dir) state=${2:?--state-dir needs a value} && shift 2 ;;
	--port) port=${2:?--port needs a value} && shift 2 ;;
	--node-ports) node_ports=${2:?--node-ports needs a value} && shift 2 ;;
	--redis-port) redis_port=${2:?--redis-port needs a value} && shift 2 ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown option: $1 (see scripts/cluster.sh --help)" ;;
	esac
done
[[ $port =~ ^[0-9]+$ ]] || die "--port: not a number: $port"
if [[ -z $node_ports ]]; then
	node_ports="$((port + 1)),$((port + 2)),$((port + 3))"
fi
IFS=, read -r -a node_port <<<"$node_ports"
((${#node_port[@]} == ${#nodes[@]})) || die "--node-ports: need ${#nodes[@]} ports, got '$node_ports'"
redis_port=${redis_port:-$((port + 4))}
for p in "${node_port[@]}" "$redis_port"; do
	[[ $p =~ ^[0-9]+$ ]] || die "not a port number: $p"
done
if [[ -d $state ]]; then state=$(cd "$state" && pwd -P); fi

# shared_env prints deploy/cluster.env's settings, one KEY=value a line.
shared_env() {
	local line n=0
	while IFS= read -r line || [[ -n $line ]]; do
		n=$((n + 1))
		[[ -z $line || $line == \#* ]] && continue
		[[ $line =~ ^PRESENCE_[A-Z0-9_]+=[^[:space:]\"\'\$\`]*$ ]] ||
			die "$env_file:$n: not a plain PRESENCE_KEY=value line: $line"
		echo "$line"
	done <"$repo/$env_file"
}

# node_env i prints every environment variable of node i (0-based).
node_env() {
	shared_env
	echo "PRESENCE_ADDR=127.0.0.1:${node_port[$1]}"
	echo "PRESENCE_REDIS_URL=redis://127.0.0.1:$redis_port"
	echo "PRESENCE_NODE_ID=${nodes[$1]}"
}

# shutdown_seconds prints the nodes' PRESENCE_SHUTDOWN_TIMEOUT in whole
# seconds (default 10s), rounded up.
shutdown_seconds() {
	local v
	v=$(shared_env | sed -n 's/^PRESENCE_SHUTDOWN_TIMEOUT=//p')
	v=${v:-10s}
	case $v in
	*ms) echo $((${v%ms} / 1000 + 1)) ;;
	*m) echo $((${v%m} * 60)) ;;
	*s) echo "${v%s}" ;;
	*) echo 10 ;;
	esac
}

nginx_bin() {
	if command -v nginx >/dev/null 2>&1; then
		command -v nginx
	elif [[ -x /usr/sbin/nginx ]]; then
		echo /usr/sbin/nginx
	else
		die "nginx not found (Debian: apt-get install -y nginx-light)"
	fi
}

# --- processes, by pid only -------------------------------------------------

pidfile() { echo "$state/pids/$1.pid"; }

# alive pid exe: the process runs (not a zombie) and, where /proc tells,
# runs the executable exe (so a reused pid is never signalled).
alive() {
	local pid=$1 exe=$2 st
	kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/stat ]]; then
		st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
		[[ $st != Z && $st != X ]] || return 1
		if [[ -n $exe && -e /proc/$pid/exe ]]; then
			[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
		fi
	fi
	return 0
}

# exe_of name: the executable a service runs.
exe_of() {
	case $1 in
	redis) readlink -f "$(command -v redis-server)" ;;
	nginx) readlink -f "$(nginx_bin)" ;;
	*) echo "$state/bin/presenced" ;;
	esac
}

# read_pid name: the recorded pid of a service that still runs, or nothing.
read_pid() {
	local f pid
	f=$(pidfile "$1")
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	if alive "$pid" "$(exe_of "$1")"; then echo "$pid"; fi
}

# stop_services seconds name...: SIGTERM to each, then wait up to seconds
# for all of them, then SIGKILL to those left.
stop_services() {
	local grace=$1 name pid deadline
	local -a left
	shift
	local -A pids=()
	for name in "$@"; do
		pid=$(read_pid "$name")
		if [[ -n $pid ]]; then
			pids[$name]=$pid
			kill -TERM "$pid" 2>/dev/null || true
		fi
		rm -f "$(pidfile "$name")"
	done
	deadline=$((SECONDS + grace))
	while :; do
		left=()
		for name in "${!pids[@]}"; do
			if alive "${pids[$name]}" ""; then left+=("$name"); fi
		done
		((${#left[@]} > 0)) || break
		if ((SECONDS >= deadline)); then
			for name in "${left[@]}"; do
				echo "cluster.sh: $name (pid ${pids[$name]}) still runs after ${grace}s: SIGKILL" >&2
				kill -KILL "${pids[$name]}" 2>/dev/null || true
			done
			sleep 0.2
			break
		fi
		sleep 0.1
	done
	for name in "${!pids[@]}"; do
		echo "stopped $name (pid ${pids[$name]})"
	done
}

stop_all() {
	[[ -d $state/pids ]] || return 0
	# Nodes first: they drain (close sockets with 1012, finish requests)
	# while nginx still carries the close frames; then nginx, then Redis.
	stop_services $(($(shutdown_seconds) + 5)) "${nodes[@]}"
	stop_services 10 nginx
	stop_services 10 redis
}

# spawn name logfile cmd...: start cmd in its own session (Ctrl-C in the
# terminal does not reach it; stop_all stops it in order), record its pid.
spawn() {
	local name=$1 log=$2 pid
	shift 2
	setsid "$@" </dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$(pidfile "$name")"
}

# http_status port path: the status code of GET path, or nothing.
http_status() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
		IFS=' ' read -r -t 3 _ code _ <&3 || exit 0
		echo "$code"
	) 2>/dev/null
}

redis_ping() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == +PONG* ]]
	) 2>/dev/null
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for name what seconds check...: until check succeeds; fails if the
# service's process ended or the time is up.
wait_for() {
	local name=$1 what=$2 secs=$3
	shift 3
	local deadline=$((SECONDS + secs))
	until "$@"; do
		if [[ -z $(read_pid "$name") ]]; then
			fail "$name exited before $what; its log ($state/logs/$name.log):" "$name"
		fi
		if ((SECONDS >= deadline)); then
			fail "$name: not $what after ${secs}s; its log ($state/logs/$name.log):" "$name"
		fi
		sleep 0.1
	done
}

fail() {
	echo "cluster.sh: $1" >&2
	if [[ -n ${2:-} && -f $state/logs/$2.log ]]; then tail -n 30 "$state/logs/$2.log" >&2; fi
	stop_all >&2
	exit 1
}

node_ready() { [[ $(http_status "${node_port[$1]}" /readyz) == 200 ]]; }
lb_ready() { [[ $(http_status "$port" /readyz) == 200 ]]; }

start_all() {
	local name i bin p
	command -v go >/dev/null 2>&1 || die "go not found"
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found (Debian: apt-get install -y redis-server)"
	bin=$(nginx_bin)
	for name in redis nginx "${nodes[@]}"; do
		[[ -z $(read_pid "$name") ]] || die "$name already runs (pid $(read_pid "$name")): scripts/cluster.sh stop --state-dir $state"
	done
	for p in "$port" "${node_port[@]}" "$redis_port"; do
		port_free "$p" || die "port $p is in use (choose others with --port, --node-ports, --redis-port)"
	done
	shared_env >/dev/null
	mkdir -p "$state"
	state=$(cd "$state" && pwd -P)
	mkdir -p "$state/bin" "$state/logs" "$state/pids" "$state/nginx" "$state/redis"
	rm -f "$state"/pids/*.pid "$state"/logs/*.log "$state/bin/presencectl"

	echo "building presenced and presencectl into $state/bin"
	(cd "$repo" && go build -o "$state/bin/presenced" ./cmd/presenced) || die "go build ./cmd/presenced failed"
	# presencectl is a convenience: the cluster runs without it.
	(cd "$repo" && go build -o "$state/bin/presencectl" ./cmd/presencectl) >"$state/logs/build-presencectl.log" 2>&1 ||
		echo "cluster.sh: warning: go build ./cmd/presencectl failed (see $state/logs/build-presencectl.log); going on without it" >&2

	spawn redis "$state/logs/redis.log" redis-server --bind 127.0.0.1 --port "$redis_port" \
		--save "" --appendonly no --dir "$state/redis"
	wait_for redis "answering PING" 10 redis_ping "$redis_port"

	for i in "${!nodes[@]}"; do
		local -a envs
		mapfile -t envs < <(node_env "$i")
		spawn "${nodes[$i]}" "$state/logs/${nodes[$i]}.log" env -i "${envs[@]}" "$state/bin/presenced"
	done
	for i in "${!nodes[@]}"; do
		wait_for "${nodes[$i]}" "ready" 30 node_ready "$i"
	done

	# nginx: the same main config, this topology's includes.
	cp "$repo/$nginx_conf" "$state/nginx/nginx.conf"
	local upstream
	upstream=$(<"$repo/$nginx_upstream")
	for i in "${!nodes[@]}"; do
		[[ $upstream == *"server ${nodes[$i]}:$compose_port "* ]] ||
			die "$nginx_upstream: no 'server ${nodes[$i]}:$compose_port' line"
		upstream=${upstream//"server ${nodes[$i]}:$compose_port "/"server 127.0.0.1:${node_port[$i]} "}
	done
	printf '# Written by scripts/cluster.sh from %s.\n%s\n' "$nginx_upstream" "$upstream" >"$state/nginx/presence-upstream.conf"
	printf '# Written by scripts/cluster.sh.\nlisten 127.0.0.1:%s;\n' "$port" >"$state/nginx/presence-listen.conf"
	"$bin" -t -q -p "$state/nginx/" -c "$state/nginx/nginx.conf" >>"$state/logs/nginx.log" 2>&1 ||
		fail "nginx -t refused the configuration:" nginx
	spawn nginx "$state/logs/nginx.log" "$bin" -p "$state/nginx/" -c "$state/nginx/nginx.conf"
	wait_for nginx "ready" 10 lb_ready

	echo "$port" >"$state/port"
	echo "presence cluster up: http://127.0.0.1:$port (WebSocket: ws://127.0.0.1:$port/v1/ws)"
	echo "  nodes: ${nodes[*]} on 127.0.0.1:${node_ports//,/, 127.0.0.1:}; redis: 127.0.0.1:$redis_port"
	echo "  state, logs and pids: $state"
	if [[ -x $state/bin/presencectl ]]; then
		echo "  presencectl: $state/bin/presencectl --redis-url redis://127.0.0.1:$redis_port rooms"
	fi
}

status_all() {
	local name pid down=0
	for name in redis "${nodes[@]}" nginx; do
		pid=$(read_pid "$name")
		if [[ -n $pid ]]; then
			echo "$name: running (pid $pid)"
		else
			echo "$name: not running"
			down=1
		fi
	done
	return $down
}

case $cmd in
start)
	start_all
	echo "  stop: scripts/cluster.sh stop --state-dir $state"
	;;
up)
	tail_pid=
	cleanup() {
		trap - INT TERM HUP EXIT
		[[ -z $tail_pid ]] || kill "$tail_pid" 2>/dev/null || true
		echo
		stop_all
	}
	trap 'cleanup; exit 130' INT TERM HUP
	trap cleanup EXIT
	start_all
	echo "  Ctrl-C stops everything. Logs follow."
	tail -n 0 -F "$state"/logs/{redis,nginx,presenced-*}.log &
	tail_pid=$!
	while :; do
		sleep 1 &
		wait $! || true
	done
	;;
stop) stop_all ;;
status) status_all ;;
config)
	for name in redis "${nodes[@]}" nginx; do echo "service $name"; done
	for i in "${!nodes[@]}"; do
		node_env "$i" | sed "s/^/env ${nodes[$i]} /"
	done
	echo "nginx-conf $nginx_conf"
	echo "nginx-upstream $nginx_upstream"
	;;
*)
	usage >&2
	exit 2
	;;
esac
