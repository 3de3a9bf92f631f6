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

echo "== fuzz targets, $fuzztime each"
for target in \
  "./store FuzzParseDerivation" \
  "./store FuzzNarReader" \
  "./store FuzzParseNarInfo" \
  "./store FuzzNix32" \
  "./store FuzzParseSexp" \
  "./gossip FuzzDecodeMeta"; do
  set -- $target
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1"
done
echo "== all tests passed"
