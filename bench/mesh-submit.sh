#!/bin/sh
# Submit throughput: builds accepted per second by a 3-node mesh, in
# batches of 1000 written through a follower (BenchmarkMesh_Submit in
# node/mesh_bench_test.go). Goal: >= 20,000 builds/s. Five runs; the
# summary line gives the median.
# Usage: bench/mesh-submit.sh
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/meshbench" ./bench/meshbench
go test -run '^$' -bench 'BenchmarkMesh_Submit$' -benchtime 20x -count 5 ./node/ | tee "$tmp/out"
printf 'mesh-submit (builds/s through a follower, 1000/batch): '
awk '/^BenchmarkMesh_Submit/ { for (i = 1; i < NF; i++) if ($(i+1) == "builds/s") print $i }' "$tmp/out" | "$tmp/meshbench" stats
