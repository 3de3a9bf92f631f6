#!/usr/bin/env bash
# Compares the narcache binary cache handler with nginx serving the same
# files from disk: narinfo requests/s (many small files) and large-nar MB/s.
#
# nginx runs one worker (one core). narcache runs twice, as two processes:
# once with GOMAXPROCS=1 (the same one core) and once with the Go default
# (every core, shared with wrk). Each round runs every server once, in an
# order that rotates from round to round; the table shows the median of the
# rounds and each run's value. The load average is printed before and after
# every round, since other work on the machine skews the numbers; the
# servers' own CPU time per narinfo request (user+sys of the server
# processes over the run, from /proc) is skewed much less by it.
# Everything runs on 127.0.0.1 and stops by itself.
#
# Usage: bench/narcache.sh [seconds per run, default 10]
# Env: ROUNDS (3), N (narinfos, 10000), SIZE_MB (large nar, 256),
#      CONNS (32), GO_PORT (17801; GO_PORT+2 for the default GOMAXPROCS),
#      NGINX_PORT (17802), BENCHSERVER (a prebuilt benchserver binary, to
#      compare builds; default: build this tree's).
set -euo pipefail

DUR=${1:-10}
ROUNDS=${ROUNDS:-3}
N=${N:-10000}
SIZE_MB=${SIZE_MB:-256}
CONNS=${CONNS:-32}
GO_PORT=${GO_PORT:-17801}
GO2_PORT=$((GO_PORT + 2))
NGINX_PORT=${NGINX_PORT:-17802}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/narcache-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers may run as an unprivileged user
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx wrk go curl; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

BIN=${BENCHSERVER:-}
if [ -z "$BIN" ]; then
	BIN="$WORK/benchserver"
	(cd "$ROOT" && go build -o "$BIN" ./narcache/internal/benchserver)
fi

# start_go NAME PORT PROCS: start a benchserver in $WORK/NAME and wait
# (bounded) until it has written its files and listens.
start_go() {
	mkdir -p "$WORK/$1"
	if [ "$3" = default ]; then
		env -u GOMAXPROCS "$BIN" -dir "$WORK/$1" -n "$N" -size "$SIZE_MB" -listen "127.0.0.1:$2" >"$WORK/$1/server.log" 2>&1 &
	else
		GOMAXPROCS=$3 "$BIN" -dir "$WORK/$1" -n "$N" -size "$SIZE_MB" -listen "127.0.0.1:$2" >"$WORK/$1/server.log" 2>&1 &
	fi
	local pid=$!
	PIDS+=("$pid")
	PID[$1]=$pid
	for _ in $(seq 1 900); do
		if curl -fs "http://127.0.0.1:$2/nix-cache-info" >/dev/null 2>&1; then return; fi
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$1/server.log" >&2; exit 1; }
		sleep 0.2
	done
	echo "benchserver $1 did not start" >&2
	exit 1
}
declare -A PID
start_go go1 "$GO_PORT" 1
start_go go2 "$GO2_PORT" default

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	types { text/x-nix-narinfo narinfo; application/x-nix-nar nar; }
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $WORK/go1/www;
		add_header Cache-Control "public, max-age=3600";
	}
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
PID[nginx]=$!
for _ in $(seq 1 100); do
	if curl -fs -o /dev/null "http://127.0.0.1:$NGINX_PORT$(head -1 "$WORK/go1/narinfos.txt")"; then break; fi
	sleep 0.1
done

cat >"$WORK/paths.lua" <<LUA
local paths = {}
for line in io.lines("$WORK/go1/narinfos.txt") do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
	i = i % #paths + 1
	return wrk.format("GET", paths[i])
end
LUA

NAR=$(cat "$WORK/go1/nar.txt")
# Same bytes from every server?
declare -A URL=([go1]="http://127.0.0.1:$GO_PORT" [go2]="http://127.0.0.1:$GO2_PORT" [nginx]="http://127.0.0.1:$NGINX_PORT")
ref=$(curl -fs "${URL[nginx]}$NAR" | sha256sum)
for s in go1 go2; do
	sum=$(curl -fs "${URL[$s]}$NAR" | sha256sum)
	[ "$sum" = "$ref" ] || { echo "$s and nginx disagree on $NAR: $sum vs $ref" >&2; exit 1; }
done
ni=$(head -1 "$WORK/go1/narinfos.txt")
[ "$(curl -fs "${URL[go1]}$ni")" = "$(curl -fs "${URL[nginx]}$ni")" ] || { echo "narinfo bodies differ" >&2; exit 1; }

rps() { awk '/^Requests\/sec:/ {print $2}'; }
mbps() {
	awk '/^Transfer\/sec:/ {
		v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
		f = (u == "GB") ? 1024 : (u == "MB") ? 1 : (u == "KB") ? 1/1024 : 1/1048576
		printf "%.1f\n", v * f }'
}
run() { wrk -t1 -c"$1" -d"${DUR}s" "${@:2}"; }
# ticks PID: CPU clock ticks (user+sys) used so far by PID and its children.
ticks() {
	local t=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)
load() { cut -d' ' -f1-3 /proc/loadavg; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "narcache bench: $N narinfos, ${SIZE_MB} MiB nar, ${DUR}s per run, $ROUNDS rounds, $(nproc) cores"
declare -A NI NARS CPU
servers=(go1 go2 nginx)
for r in $(seq 1 "$ROUNDS"); do
	echo "round $r: load before $(load)"
	for k in 0 1 2; do
		s=${servers[$(((r - 1 + k) % 3))]}
		t0=$(ticks "${PID[$s]}")
		run "$CONNS" -s "$WORK/paths.lua" "${URL[$s]}" >"$WORK/wrk.out"
		t1=$(ticks "${PID[$s]}")
		NI[$s]+="$(rps <"$WORK/wrk.out") "
		reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
		CPU[$s]+="$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}') "
	done
	for k in 0 1 2; do
		s=${servers[$(((r - 1 + k) % 3))]}
		NARS[$s]+="$(run 4 "${URL[$s]}$NAR" | mbps) "
	done
	echo "round $r: load after  $(load)"
done

row() { # label go1-values go2-values nginx-values
	local a b c
	a=$(echo "$2" | median) b=$(echo "$3" | median) c=$(echo "$4" | median)
	printf '%-24s %11s %11s %11s %7s %7s\n' "$1" "$a" "$b" "$c" \
		"$(awk -v x="$a" -v y="$c" 'BEGIN{printf "%.2f", x/y}')" "$(awk -v x="$b" -v y="$c" 'BEGIN{printf "%.2f", x/y}')"
	printf '%-24s %11s %11s %11s\n' "  runs" "$(echo $2 | tr ' ' /)" "$(echo $3 | tr ' ' /)" "$(echo $4 | tr ' ' /)"
}
echo
echo "medians; go1 = narcache GOMAXPROCS=1, go2 = narcache GOMAXPROCS default ($(nproc)); nginx 1 worker;"
echo "ratios narcache/nginx (for CPU per request, lower is better)"
printf '%-24s %11s %11s %11s %7s %7s\n' "" go1 go2 nginx go1/ng go2/ng
row "narinfo req/s (c=$CONNS)" "${NI[go1]}" "${NI[go2]}" "${NI[nginx]}"
row "narinfo server CPU us/req" "${CPU[go1]}" "${CPU[go2]}" "${CPU[nginx]}"
row "large nar MB/s (c=4)" "${NARS[go1]}" "${NARS[go2]}" "${NARS[nginx]}"
