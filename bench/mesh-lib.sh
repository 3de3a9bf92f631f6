# Shared by bench/mesh-*.sh and bench/builds.sh: build the binaries, run
# drvmesh nodes on 127.0.0.1 and clean up every process started. Source it
# from the repository root after setting RUNS (MESHBENCH=0: no load
# generator). A script may define its own start_node after sourcing.
set -eu

tmp=$(mktemp -d)
cleanup() {
	for f in "$tmp"/*.pid; do
		[ -e "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	chmod -R u+w "$tmp" 2>/dev/null || true # Nix stores are read-only
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$tmp/drvmesh" ./cmd/drvmesh
if [ "${MESHBENCH:-1}" = 1 ]; then
	go build -o "$tmp/meshbench" ./bench/meshbench
fi

# Each node takes four ports from its HTTP port up; nodes are 10 apart.
base=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 2000 * 10))
port() { echo $((base + 10 * $1)); }
url() { echo "http://127.0.0.1:$(port "$1")"; }

# start_node I [join-token]: bootstrap (no token), join through node 1, or
# resume from an existing data dir (token "resume").
start_node() {
	i=$1
	tok=${2:-}
	set -- --data-dir "$tmp/n$i" --name "n$i" --listen "127.0.0.1:$(port "$i")" --builder none
	if [ -z "$tok" ] || [ "$tok" = resume ]; then
		"$tmp/drvmesh" node "$@" 2>>"$tmp/n$i.log" &
	else
		"$tmp/drvmesh" join "127.0.0.1:$(port 1)" --token "$tok" "$@" 2>>"$tmp/n$i.log" &
	fi
	echo $! >"$tmp/n$i.pid"
}

# stop_node I [signal]: stop node I and wait for it to exit.
stop_node() {
	pid=$(cat "$tmp/n$1.pid")
	kill "-${2:-TERM}" "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$tmp/n$1.pid"
}

status() { "$tmp/drvmesh" status --json --server "$(url "$1")" 2>/dev/null; }

# wait_for SECONDS CMD...: poll until CMD succeeds.
wait_for() {
	limit=$(($(date +%s) + $1))
	shift
	until "$@"; do
		if [ "$(date +%s)" -gt "$limit" ]; then
			echo "timed out waiting for: $*" >&2
			return 1
		fi
		sleep 0.05
	done
}

# voters_on I N: node I sees N voters and a leader.
voters_on() { status "$1" | jq -e "(.voters | length) == $2 and .leader != \"\"" >/dev/null; }

# same_leader I...: every listed node names the same leader.
same_leader() {
	l=""
	for i in "$@"; do
		x=$(status "$i" | jq -r .leader) || return 1
		[ -n "$x" ] || return 1
		[ -z "$l" ] || [ "$l" = "$x" ] || return 1
		l=$x
	done
}

# wait_file SECONDS FILE: wait until FILE exists and is not empty.
file_ready() { [ -s "$1" ]; }
