#!/usr/bin/env bash
# Compares the nar compressions narcache writes with the reference CLIs on
# one real tree, in the same run: narcache's zstd (klauspost/compress,
# SpeedDefault, one encoder goroutine, 8 MiB window) and xz (ulikunitz/xz,
# its default settings), through BenchmarkCompression, beside `zstd -19`,
# `zstd -3` and `xz -6`. Every tool runs single-threaded.
#
# The input is the NAR of the tree (nix-store --dump). The default tree is
# /usr/lib/gcc, about 120 MB of real compiler binaries and archives (cc1,
# cc1plus, lto1, libstdc++.a): the kind of output a build farm stores most.
# Pass another directory to measure it, e.g. /usr/local/go/src for text.
#
# MB/s are of uncompressed NAR bytes, for compression and decompression;
# ratio is compressed/uncompressed. "ingest" is narcache's whole Disk.Ingest
# path (NAR check, NarHash, FileHash, compression, write and rename). Other
# work on the machine skews the speeds; the load average is printed.
#
# Usage: bench/compression.sh [tree, default /usr/lib/gcc]
# Env: XZ_INGEST=1 also runs the (slow) xz ingest.
set -euo pipefail

TREE=${1:-/usr/lib/gcc}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/compression-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

for tool in go zstd xz nix-store; do
	command -v "$tool" >/dev/null || {
		echo "$tool is not installed (apt-get install -y zstd xz-utils)" >&2
		exit 1
	}
done

NAR="$WORK/tree.nar"
nix-store --dump "$TREE" >"$NAR"
SIZE=$(stat -c %s "$NAR")
echo "tree: $TREE, NAR $SIZE bytes ($((SIZE / 1000000)) MB)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# cli NAME COMPRESS DECOMPRESS EXT: time one CLI both ways and print a row.
cli() {
	local name=$1 comp=$2 decomp=$3 out="$WORK/out.$4" t0 t1 t2 csize
	t0=$(now)
	$comp <"$NAR" >"$out"
	t1=$(now)
	$decomp <"$out" >/dev/null
	t2=$(now)
	csize=$(stat -c %s "$out")
	rm -f "$out"
	awk -v n="$name" -v s="$SIZE" -v c="$csize" -v a="$t0" -v b="$t1" -v e="$t2" 'BEGIN {
		printf "%-26s %12.1f %12.1f %8.4f\n", n, s / 1e6 / (b - a), s / 1e6 / (e - b), c / s }'
}

INGEST=zstd
if [ "${XZ_INGEST:-}" = 1 ]; then
	INGEST='(zstd|xz)'
fi
# gobench REGEXP: run narcache's BenchmarkCompression subbenchmarks once.
gobench() {
	(cd "$ROOT" && DRVMESH_BENCH_NAR="$NAR" GOMAXPROCS=1 go test -run '^$' -bench "$1" \
		-benchtime 1x -count 1 ./narcache/)
}
{
	gobench 'BenchmarkCompression/(zstd|xz)/(compress|decompress)$'
	gobench "BenchmarkCompression/$INGEST/ingest\$"
} >"$WORK/go.txt"
grep -q '^BenchmarkCompression/' "$WORK/go.txt" || {
	cat "$WORK/go.txt" >&2
	exit 1
}
{
	printf "%-26s %12s %12s %8s\n" "codec" "comp MB/s" "decomp MB/s" "ratio"
	# Benchmark lines: name, iterations, ns, "ns/op", MB/s, "MB/s", [ratio, "ratio"].
	awk '/^BenchmarkCompression\// {
		split($1, p, "/"); sub(/-[0-9]+$/, "", p[3])
		mbs[p[2] "/" p[3]] = $5
		if ($8 == "ratio") ratio[p[2] "/" p[3]] = $7
	}
	END {
		n = split("zstd xz", cs, " ")
		for (i = 1; i <= n; i++) {
			c = cs[i]
			printf "%-26s %12.1f %12.1f %8.4f\n", "narcache " c, mbs[c "/compress"], mbs[c "/decompress"], ratio[c "/compress"]
			if ((c "/ingest") in mbs)
				printf "%-26s %12.1f %12s %8.4f\n", "narcache " c " ingest", mbs[c "/ingest"], "-", ratio[c "/ingest"]
		}
	}' "$WORK/go.txt"
	cli "zstd -3 (CLI)" "zstd -q -3 -T1 -c" "zstd -q -d -c" zst
	cli "zstd -19 (CLI)" "zstd -q -19 -T1 -c" "zstd -q -d -c" zst
	cli "xz -6 (CLI)" "xz -6 -T1 -c" "xz -d -c" xz
}
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
