#!/usr/bin/env bash
# The test suite: vet, every package's tests with the race detector, and a
# short run of each fuzz target. Installs what it needs (nix-bin, ...) on a
# Debian machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_missing
go version
nix-store --version

fuzztime=${FUZZTIME:-10s}

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 25m ./...

# fuzz_target PKG NAME runs one target for $fuzztime. Go 1.26's fuzzing
# coordinator can report "context deadline exceeded" as a failure when the
# time runs out while a worker is mid-input (golang/go#75804, fixed in Go
# 1.27); such a run wrote no failing input, so it is run once more. A
# failing input, or any other failure, fails at once.
fuzz_target() {
  log=$(mktemp)
  for attempt in 1 2; do
    if go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1" 2>&1 | tee "$log"; then
      rm -f "$log"
      return 0
    fi
    if grep -q "Failing input written to" "$log" || ! grep -q "context deadline exceeded" "$log"; then
      break
    fi
    echo "== $2: the fuzzing coordinator's deadline race (no failing input); running it again"
  done
  rm -f "$log"
  return 1
}

echo "== fuzz targets, $fuzztime each"
for target in \
  "./store FuzzParseDerivation" \
  "./store FuzzNarReader" \
  "./store FuzzParseNarInfo" \
  "./store FuzzNix32" \
  "./store FuzzParseSexp" \
  "./gossip FuzzDecodeMeta" \
  "./consensus FuzzFSM_ApplyEntry"; do
  set -- $target
  fuzz_target "$1" "$2"
done
echo "== all tests passed"
