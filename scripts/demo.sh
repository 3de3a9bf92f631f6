#!/usr/bin/env bash
# Start a local three-node drvmesh on embedded defaults, build the example
# derivation graph on it, and show which node built what and that every
# output substitutes from every node.
#
#   scripts/demo.sh            # run, then stop the mesh
#   scripts/demo.sh --keep     # leave the mesh running (stop: kill the pids it prints)
set -euo pipefail

keep=0
[ "${1:-}" = "--keep" ] && keep=1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

# 1. What the demo needs: Go (to build drvmesh) and Nix 2.8 (nix-bin).
. scripts/deps.sh
install_missing

work=$(mktemp -d /tmp/drvmesh-demo.XXXXXX)
say "building drvmesh into $work"
go build -o "$work/drvmesh" ./cmd/drvmesh
dm="$work/drvmesh"

# Builds in the demo use /bin/sh from the host inside the Nix sandbox.
export NIX_CONFIG=$'sandbox = true\nextra-sandbox-paths = /bin /usr /lib /lib64\nbuild-users-group =\nexperimental-features = nix-command'
export HOME="$work/home"

# 2. Three nodes, each with its own Nix store, on free ports.
free_base() {
  for base in 7700 17700 27700 37700; do
    ok=1
    for off in 0 1 2 3 20 21 22 23 40 41 42 43; do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((base + off))") 2>/dev/null; then ok=0; break; fi
    done
    [ $ok = 1 ] && { echo $base; return; }
  done
  echo "no free ports near 7700" >&2; exit 1
}
base=$(free_base)
pids=()
cleanup() {
  if [ $keep = 0 ]; then
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
}
trap cleanup EXIT

start_node() { # i extra-args...
  local i=$1; shift
  local port=$((base + (i - 1) * 20))
  "$dm" "$@" --data-dir "$work/n$i" --name "node$i" --listen "127.0.0.1:$port" \
    --nix-store "local?root=$work/store$i" --max-jobs 2 >"$work/node$i.log" 2>&1 &
  pids+=($!)
}
wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$1/api/v1/status" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node on port $1 did not come up; see $work/*.log" >&2; exit 1
}

say "starting a 3-node mesh (ports $base, $((base + 20)), $((base + 40)))"
start_node 1 node
wait_http "$base"
for _ in $(seq 1 100); do [ -s "$work/n1/join-token" ] && break; sleep 0.1; done
start_node 2 join "127.0.0.1:$base" --token-file "$work/n1/join-token"
start_node 3 join "127.0.0.1:$base" --token-file "$work/n1/join-token"
wait_http $((base + 20)); wait_http $((base + 40))
export DRVMESH_SERVER="http://127.0.0.1:$base" DRVMESH_TOKEN_FILE="$work/n1/admin-token"
for _ in $(seq 1 100); do
  [ "$("$dm" status --json | grep -o '"node[0-9]"' | wc -l)" -ge 4 ] && break
  sleep 0.1
done
"$dm" nodes

# 3. The example graph, instantiated into a client store, submitted with
# its closure through the second node.
say "instantiating examples/graph.nix"
client="local?root=$work/client"
drv=$(nix-instantiate --store "$client" examples/graph.nix -A app --argstr salt "$(date +%s%N)" 2>/dev/null)
echo "$drv"
say "submitting the closure of $(basename "$drv")"
mapfile -t ids < <("$dm" submit --closure --nix-store "$client" --server "http://127.0.0.1:$((base + 20))" "$drv")
printf '%s\n' "${ids[@]}"
say "following the builds"
"$dm" watch --quiet "${ids[@]}" >/dev/null
"$dm" builds --limit 10

# 4. Every output, substituted by a stock Nix client from every node.
say "substituting every output from every node (require-sigs, mesh key trusted)"
outs=$("$dm" builds --json --limit 10 | grep -o '"path": *"[^"]*"' | sed 's/.*"\(\/[^"]*\)"/\1/' | sort -u)
key=$("$dm" key)
for i in 1 2 3; do
  port=$((base + (i - 1) * 20))
  dest="$work/check$i"
  NIX_CONFIG="$NIX_CONFIG"$'\n'"substituters = http://127.0.0.1:$port"$'\n'"trusted-public-keys = $key"$'\n'"require-sigs = true" \
    HOME="$work/home$i" nix-store --store "local?root=$dest" --realise $outs >/dev/null 2>"$work/check$i.log" \
    || { echo "node$i: substitution failed, see $work/check$i.log" >&2; exit 1; }
  n=$(echo "$outs" | wc -w)
  echo "node$i: all $n outputs substituted and verified"
done
say "done: $(echo "$outs" | wc -w) outputs built by the mesh, served by every node"
if [ $keep = 1 ]; then
  echo "The mesh keeps running: $DRVMESH_SERVER (pids ${pids[*]}; data in $work)"
  echo "export DRVMESH_SERVER=$DRVMESH_SERVER DRVMESH_TOKEN=$DRVMESH_TOKEN"
fi
