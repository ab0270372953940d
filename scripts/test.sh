#!/usr/bin/env bash
# Runs the whole test suite. Needs Go, a C compiler (for -race) and
# redis-server on PATH: the tests start their own redis-server processes on
# free loopback ports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v redis-server >/dev/null 2>&1; then
	echo "scripts/test.sh: redis-server not found on PATH." >&2
	echo "The tests run against a real Redis (>= 7.0). On Debian/Ubuntu: apt-get install -y redis-server" >&2
	exit 1
fi

echo "==> go vet ./..."
go vet ./...

echo "==> go test -race -count=1 -timeout 15m ./..."
go test -race -count=1 -timeout 15m ./...

# ---------------------------------------------------------------------------
# Later test suites go here (keep each one failing the script on error):
#   - JavaScript client: unit tests
#   - browser tests (client against a running presenced)
# ---------------------------------------------------------------------------

# JavaScript client (clients/js): unit tests, React hooks, and the client
# against a presenced the tests build and start; then the demo page in
# Debian's chromium (/usr/bin/chromium, or CHROMIUM_PATH). Needs Node.js
# (>= 20.19); .ci/run installs chromium and the npm packages.
[ -d clients/js/node_modules ] || (cd clients/js && npm ci --no-audit --no-fund)
echo "==> npm test (clients/js)"
(cd clients/js && npm test)
echo "==> npm run test:browser (clients/js)"
(cd clients/js && npm run test:browser)

echo "==> all tests passed"
