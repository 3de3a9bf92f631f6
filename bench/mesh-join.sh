#!/bin/sh
# Join time: from the start of `drvmesh join` to every node of a 3-node
# mesh of real drvmesh processes listing the new node alive in
# GET /api/v1/nodes (what `drvmesh nodes --json` shows). Each run joins a
# fresh third node and stops it gracefully afterwards. Goal: median <= 2 s.
# Usage: bench/mesh-join.sh   (RUNS=7 by default)
RUNS=${RUNS:-7}
cd "$(dirname "$0")/.."
. bench/mesh-lib.sh

start_node 1
wait_for 30 file_ready "$tmp/n1/join-token"
join=$(cat "$tmp/n1/join-token")
wait_for 30 file_ready "$tmp/n1/admin-token"
admin=$(cat "$tmp/n1/admin-token")
wait_for 30 voters_on 1 1
start_node 2 "$join"
wait_for 30 voters_on 1 2

: >"$tmp/times"
run=1
while [ "$run" -le "$RUNS" ]; do
	i=$((run + 2))
	t0=$(date +%s%N)
	start_node "$i" "$join"
	ms=$("$tmp/meshbench" member --urls "$(url 1),$(url 2),$(url "$i")" --name "n$i" --token "$admin" --since "$t0" --timeout 30s)
	echo "run $run: n$i seen alive by all 3 nodes after $ms ms"
	echo "$ms" >>"$tmp/times"
	stop_node "$i" TERM
	wait_for 30 voters_on 1 2
	run=$((run + 1))
done
printf 'mesh-join (drvmesh join start -> member alive on all nodes, ms): '
"$tmp/meshbench" stats <"$tmp/times"
