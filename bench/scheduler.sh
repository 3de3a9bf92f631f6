#!/bin/sh
# Farm-scale scheduler benchmarks: 100,000 queued builds, 1,000 nodes.
# Goals: a full round (Planner.Reset + Plan) <= 50 ms; an incremental round
# after one build finishes or one node frees a slot <= 1 ms.
# Usage: bench/scheduler.sh [extra go test flags]
set -eu
cd "$(dirname "$0")/.."
exec go test -run '^$' -bench 'Planner|Schedule' -benchmem -count=1 "$@" ./scheduler/
