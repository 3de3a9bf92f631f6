# Sourced by the scripts: installs what drvmesh's scripts need on a Debian
# machine (as root), or says what to install.
install_missing() {
  local need=()
  command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)     # ip, tc: the network-namespace testbed
  command -v nft >/dev/null 2>&1 || need+=(nftables)    # the testbed's cuts
  command -v jq >/dev/null 2>&1 || need+=(jq)
  command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev) # cgo, for the race detector
  [ -x /usr/local/go/bin/go ] && case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) export PATH="$PATH:/usr/local/go/bin" ;; esac
  command -v unzip >/dev/null 2>&1 || command -v go >/dev/null 2>&1 || need+=(unzip)
  if [ ${#need[@]} -gt 0 ]; then
    install_packages "${need[@]}"
  fi
  command -v go >/dev/null 2>&1 || install_go
}

install_packages() {
  local need=("$@")
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]}; install them (sudo apt-get install -y ${need[*]}) and try again" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
}

# install_go fetches the Go toolchain go.mod names from the Go module
# proxy (the same module the go command's GOTOOLCHAIN switch uses).
install_go() {
  local want dir url
  want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
  dir="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/drvmesh-go/go$want"
  if [ ! -x "$dir/go/bin/go" ]; then
    url="${GOPROXY:-https://proxy.golang.org}"; url="${url%%,*}"
    echo "== fetching Go $want from the module proxy"
    mkdir -p "$dir"
    curl -fsSL "$url/golang.org/toolchain/@v/v0.0.1-go$want.linux-amd64.zip" -o "$dir/go.zip"
    unzip -q "$dir/go.zip" -d "$dir/x"
    mv "$dir/x/golang.org/toolchain@v0.0.1-go$want.linux-amd64" "$dir/go"
    rm -rf "$dir/x" "$dir/go.zip"
  fi
  export PATH="$dir/go/bin:$PATH"
}
# A distribution Go older than go.mod's fetches the right toolchain.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
