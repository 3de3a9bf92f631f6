#!/usr/bin/env bash
# Compares the narcache binary cache handler with nginx serving the same
# files from disk: narinfo requests/s (many small files) and large-nar MB/s.
# Everything runs on 127.0.0.1 and stops by itself.
#
# Usage: bench/narcache.sh [seconds per run, default 10]
# Env: N (narinfos, 10000), SIZE_MB (large nar, 256), CONNS (32),
#      GO_PORT (17801), NGINX_PORT (17802).
set -euo pipefail

DUR=${1:-10}
N=${N:-10000}
SIZE_MB=${SIZE_MB:-256}
CONNS=${CONNS:-32}
GO_PORT=${GO_PORT:-17801}
NGINX_PORT=${NGINX_PORT:-17802}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/narcache-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers may run as an unprivileged user
GO_PID=""
NGINX_PID=""

cleanup() {
	[ -n "$GO_PID" ] && kill "$GO_PID" 2>/dev/null || true
	[ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx wrk go curl; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

(cd "$ROOT" && go build -o "$WORK/benchserver" ./narcache/internal/benchserver)
"$WORK/benchserver" -dir "$WORK" -n "$N" -size "$SIZE_MB" -listen "127.0.0.1:$GO_PORT" >"$WORK/server.log" 2>&1 &
GO_PID=$!

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
		root $WORK/www;
		add_header Cache-Control "public, max-age=3600";
	}
}
CONF

# Wait (bounded) for the Go server to have written the files and listen.
for _ in $(seq 1 600); do
	if curl -fs "http://127.0.0.1:$GO_PORT/nix-cache-info" >/dev/null 2>&1; then break; fi
	kill -0 "$GO_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
	sleep 0.2
done
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
for _ in $(seq 1 100); do
	if curl -fs -o /dev/null "http://127.0.0.1:$NGINX_PORT$(head -1 "$WORK/narinfos.txt")"; then break; fi
	sleep 0.1
done

cat >"$WORK/paths.lua" <<LUA
local paths = {}
for line in io.lines("$WORK/narinfos.txt") do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
	i = i % #paths + 1
	return wrk.format("GET", paths[i])
end
LUA

NAR=$(cat "$WORK/nar.txt")
# Same bytes from both servers?
sum1=$(curl -fs "http://127.0.0.1:$GO_PORT$NAR" | sha256sum); sum2=$(curl -fs "http://127.0.0.1:$NGINX_PORT$NAR" | sha256sum)
[ "$sum1" = "$sum2" ] || { echo "servers disagree: $sum1 vs $sum2" >&2; exit 1; }

rps() { awk '/^Requests\/sec:/ {print $2}'; }
mbps() {
	awk '/^Transfer\/sec:/ {
		v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
		f = (u == "GB") ? 1024 : (u == "MB") ? 1 : (u == "KB") ? 1/1024 : 1/1048576
		printf "%.1f\n", v * f }'
}
run() { wrk -t1 -c"$1" -d"${DUR}s" "${@:2}"; }

echo "narcache bench: $N narinfos, ${SIZE_MB} MiB nar, ${DUR}s per run, $(nproc) cores"
go_ni=$(run "$CONNS" -s "$WORK/paths.lua" "http://127.0.0.1:$GO_PORT" | rps)
ng_ni=$(run "$CONNS" -s "$WORK/paths.lua" "http://127.0.0.1:$NGINX_PORT" | rps)
go_nar=$(run 4 "http://127.0.0.1:$GO_PORT$NAR" | mbps)
ng_nar=$(run 4 "http://127.0.0.1:$NGINX_PORT$NAR" | mbps)

printf '%-26s %12s %12s %8s\n' "" narcache nginx ratio
printf '%-26s %12s %12s %8s\n' "narinfo req/s (c=$CONNS)" "$go_ni" "$ng_ni" "$(awk -v a="$go_ni" -v b="$ng_ni" 'BEGIN{printf "%.2f", a/b}')"
printf '%-26s %12s %12s %8s\n' "large nar MB/s (c=4)" "$go_nar" "$ng_nar" "$(awk -v a="$go_nar" -v b="$ng_nar" 'BEGIN{printf "%.2f", a/b}')"
