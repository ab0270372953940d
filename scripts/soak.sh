#!/usr/bin/env bash
# Soak test: N WebSocket clients (and N/5 HTTP ones) with join/leave churn
# across 3 real presenced nodes on one redis-server, for a duration; then it
# checks that every room's list is the truth, every client's view matches it,
# every user that left was announced exactly once, and the nodes' goroutines
# and open files are back to normal.
#
#   scripts/soak.sh [duration] [clients]     e.g. scripts/soak.sh 10m 300
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=${1:-2m}
clients=${2:-100}
SOAK_DURATION=$duration SOAK_CLIENTS=$clients \
	go test -count=1 -run '^TestSoak$' -timeout 0 -v ./cmd/presenced
