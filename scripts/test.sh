#!/usr/bin/env bash
# Runs the whole test suite. First scripts/setup.sh installs what is missing
# (redis-server, redis-sentinel, nginx, gcc for -race, chromium, the npm
# packages of clients/js), or says what to install and stops here. Needs Go
# and Node.js (>= 20.19). The tests start their own redis-server processes
# on free loopback ports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
echo "==> $(go version); $(redis-server --version | cut -d' ' -f1-3); node $(node --version)"

echo "==> gofmt -l cmd pkg"
unformatted=$(gofmt -l cmd pkg)
if [ -n "$unformatted" ]; then
	echo "scripts/test.sh: not gofmt-formatted (run gofmt -w):" >&2
	echo "$unformatted" >&2
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
# Debian's chromium (/usr/bin/chromium, or CHROMIUM_PATH). scripts/setup.sh
# installed chromium and the npm packages.
echo "==> npm test (clients/js)"
(cd clients/js && npm test)
echo "==> npm run test:browser (clients/js)"
(cd clients/js && npm run test:browser)

echo "==> all tests passed"
