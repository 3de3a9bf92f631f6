#!/usr/bin/env bash
# flake.sh PKG N [go test flags...]: run one package's tests N times in a
# row with the race detector and report how long that took. Any failure
# fails the script, with the failing run's output kept in a file.
#   scripts/flake.sh ./node 20
#   scripts/flake.sh ./consensus 20 -run TestRaft
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: scripts/flake.sh PKG N [go test flags...]" >&2
  exit 2
fi
pkg=$1 runs=$2
shift 2
. scripts/deps.sh
install_missing
out=$(mktemp -t flake.XXXXXX)
start=$(date +%s)
# -count=N runs every test N times in one process; a test that leaks
# state into the next run fails here as well.
if ! go test -race -count="$runs" -timeout 90m "$@" "$pkg" >"$out" 2>&1; then
  grep -E '^(--- FAIL|FAIL|panic:)|condition not met' "$out" | head -40 >&2 || true
  echo "flake.sh: $pkg failed within $runs runs after $(( $(date +%s) - start )) s; full output in $out" >&2
  exit 1
fi
tail -1 "$out"
echo "flake.sh: $pkg passed $runs runs in a row in $(( $(date +%s) - start )) s"
rm -f "$out"
