#!/bin/sh
# Failover time: in a 3-node mesh of real drvmesh processes, kill -9 the
# leader and time until a survivor accepts a write (an upload of a fresh
# content-addressed source: PUT /api/v1/nars, one raft entry), then
# restart the killed node and repeat. Goal: median <= 1 s.
# Usage: bench/mesh-failover.sh   (RUNS=7 by default)
RUNS=${RUNS:-7}
cd "$(dirname "$0")/.."
. bench/mesh-lib.sh

start_node 1
wait_for 30 file_ready "$tmp/n1/admin-token"
admin=$(cat "$tmp/n1/admin-token")
join=$(cat "$tmp/n1/join-token")
wait_for 30 voters_on 1 1
start_node 2 "$join"
wait_for 30 voters_on 1 2
start_node 3 "$join"
wait_for 60 voters_on 1 3
wait_for 30 same_leader 1 2 3

: >"$tmp/times"
run=1
while [ "$run" -le "$RUNS" ]; do
	leader=$(status 1 | jq -r .leader)
	i=${leader#n}
	survivors=""
	for j in 1 2 3; do
		[ "$j" = "$i" ] || survivors="$survivors${survivors:+,}$(url "$j")"
	done
	t0=$(date +%s%N)
	stop_node "$i" KILL
	ms=$("$tmp/meshbench" write --urls "$survivors" --token "$admin" --since "$t0" --timeout 30s)
	echo "run $run: killed leader $leader, write accepted after $ms ms"
	echo "$ms" >>"$tmp/times"
	start_node "$i" resume
	wait_for 60 voters_on "$i" 3
	wait_for 60 same_leader 1 2 3
	run=$((run + 1))
done
printf 'mesh-failover (kill -9 leader -> write accepted, ms): '
"$tmp/meshbench" stats <"$tmp/times"
