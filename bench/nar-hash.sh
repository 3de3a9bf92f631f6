#!/usr/bin/env bash
# Times `drvmesh nar hash PATH` against `nix-hash --type sha256 --base32 PATH`
# on the same tree, after a warm-up read, and checks that both print the
# same hash. Usage: bench/nar-hash.sh [PATH] [RUNS]
set -euo pipefail

tree=${1:-/usr/lib/x86_64-linux-gnu}
runs=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(mktemp -d)/drvmesh
trap 'rm -rf "$(dirname "$bin")"' EXIT

command -v nix-hash >/dev/null || { echo "nix-hash not found" >&2; exit 1; }
(cd "$root" && go build -o "$bin" ./cmd/drvmesh)

# NAR size, and a warm-up read of every file into the page cache.
size=$("$bin" nar dump "$tree" | wc -c)
echo "tree: $tree, NAR size $size bytes, $runs runs each"

# now_ns prints a timestamp in nanoseconds.
now_ns() { date +%s%N; }

# The two commands run alternately, so that load from other processes
# affects both alike.
ours_cmd=("$bin" nar hash "$tree")
nix_cmd=(nix-hash --type sha256 --base32 "$tree")
ours_t=() nix_t=()
for _ in $(seq "$runs"); do
	t0=$(now_ns); ours=$("${ours_cmd[@]}"); t1=$(now_ns)
	theirs=$("${nix_cmd[@]}"); t2=$(now_ns)
	ours_t+=($((t1 - t0))) nix_t+=($((t2 - t1)))
done

# report NAME TIMES...: prints the best and median MB/s.
report() {
	local name=$1; shift
	local sorted best median
	sorted=$(printf '%s\n' "$@" | sort -n)
	best=$(head -n1 <<<"$sorted")
	median=$(sed -n "$((($# + 1) / 2))p" <<<"$sorted")
	awk -v n="$name" -v s="$size" -v b="$best" -v m="$median" 'BEGIN {
		printf "%-9s best %6.0f MB/s (%.3f s)  median %6.0f MB/s (%.3f s)\n",
			n, s / (b / 1e9) / 1e6, b / 1e9, s / (m / 1e9) / 1e6, m / 1e9 }'
}
report drvmesh "${ours_t[@]}"
report nix-hash "${nix_t[@]}"

echo "drvmesh:  $ours"
echo "nix-hash: $theirs"
if [[ "$ours" != "$theirs" ]]; then
	echo "MISMATCH" >&2
	exit 1
fi
echo "hashes equal"
