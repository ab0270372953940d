#!/usr/bin/env bash
# Installs what the test suite needs and is missing; scripts/test.sh runs
# it first (and .ci/run runs scripts/test.sh). When everything is there it
# changes nothing and takes a moment.
#
#   redis-server, redis-cli   the tests start their own Redis (>= 7.0)
#   redis-sentinel            HA tests
#   nginx                     the local cluster behind a load balancer
#   gcc                       go test -race needs cgo
#   chromium                  the browser test of clients/js (or CHROMIUM_PATH)
#   clients/js/node_modules   npm ci, from package-lock.json
#
# System packages come from apt-get (Debian/Ubuntu), as root or through
# sudo. Where it cannot install them (not root and no sudo, or no apt-get)
# it prints what to install and exits 1, changing nothing. Go and Node.js
# (>= 20.19, with npm) must be installed beforehand: Debian's are too old.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1; }

# Debian packages for the missing commands.
pkgs=()
if ! have redis-server; then
	pkgs+=(redis-server redis-tools)
elif ! have redis-cli; then
	pkgs+=(redis-tools)
fi
if ! have redis-sentinel; then
	pkgs+=(redis-sentinel)
fi
# Debian installs nginx in /usr/sbin, which is not on a user's PATH.
if ! have nginx && [ ! -x /usr/sbin/nginx ]; then
	pkgs+=(nginx-light)
fi
if ! have gcc; then
	pkgs+=(gcc libc6-dev)
fi
if ! have chromium && [ ! -x "${CHROMIUM_PATH:-/nonexistent}" ]; then
	pkgs+=(chromium)
fi

# What apt-get cannot provide.
others=()
if ! have go; then
	others+=("Go (the version of go.mod's go directive): https://go.dev/dl/")
fi
if ! have node || ! have npm; then
	others+=("Node.js >= 20.19 with npm: https://nodejs.org/en/download")
elif ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
	others+=("Node.js >= 20.19 (found $(node --version)): https://nodejs.org/en/download")
fi

if ((${#pkgs[@]} > 0)); then
	sudo=()
	if [ "$(id -u)" -ne 0 ] && have sudo && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
		sudo=(sudo)
	fi
	if have apt-get && { [ "$(id -u)" -eq 0 ] || ((${#sudo[@]} > 0)); }; then
		apt=(${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get)
		echo "==> apt-get install ${pkgs[*]}"
		if ! "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}"; then
			"${apt[@]}" update
			"${apt[@]}" install -y --no-install-recommends "${pkgs[@]}"
		fi
	else
		{
			echo "scripts/setup.sh: the tests need packages that are not installed, and this script"
			echo "cannot install them here (it needs apt-get, and root or sudo). Install them:"
			echo
			echo "    apt-get install -y --no-install-recommends ${pkgs[*]}"
			echo
			echo "(as root; on other systems: Redis >= 7.0 with redis-cli and redis-sentinel,"
			echo "nginx, a C compiler and Chromium), then run scripts/test.sh again."
			for o in ${others[@]+"${others[@]}"}; do
				echo "Also install $o"
			done
		} >&2
		exit 1
	fi
fi

if ((${#others[@]} > 0)); then
	{
		echo "scripts/setup.sh: the tests need what this script cannot install:"
		for o in ${others[@]+"${others[@]}"}; do
			echo "    $o"
		done
	} >&2
	exit 1
fi

# The JavaScript client's dependencies (vitest, playwright-core, ...), from
# its package-lock.json: when missing, and always on CI (a clean install).
if [ ! -d clients/js/node_modules ] || [ "${CI:-}" = true ]; then
	echo "==> npm ci (clients/js), node $(node --version)"
	(cd clients/js && npm ci --no-audit --no-fund)
fi
