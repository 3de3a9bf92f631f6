#!/usr/bin/env bash
# A testbed of real drvmesh hosts on this one machine, each in its own
# network namespace, and the faults to hit them with. Run as root.
#
#   scripts/testbed.sh up 3            # build drvmesh, start h1 (bootstrap), h2 and h3 (join)
#   scripts/testbed.sh status
#   scripts/testbed.sh cut h1          # partition h1 from the other hosts
#   scripts/testbed.sh exec client curl -s http://10.213.0.12:7700/api/v1/status
#   scripts/testbed.sh heal
#   scripts/testbed.sh down            # remove everything, even after a crash
#
# Every packet stays on this machine: the bridge, the hosts and the client
# live in namespaces created here, on a private /24 that exists only inside
# them, with no default route anywhere. docs/testbed.md explains each
# command; `scripts/testbed.sh help` lists them.
set -euo pipefail
shopt -s inherit_errexit # a failing command in $(...) fails the substitution

root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
	cat <<'EOF'
usage: scripts/testbed.sh [-d DIR] COMMAND [ARGS]

State lives in DIR (-d, else $TESTBED_DIR, else /tmp/drvmesh-testbed).
H is a host (h1, h2, ...) or "client" where it makes sense.

  up N [--builder none|nix] [--scale X] [--disk SIZE] [-- NODE-FLAGS...]
                        build drvmesh (or use $TESTBED_BIN), create the namespaces,
                        start N hosts: h1 bootstraps, the others join through h1
  down [--all]          stop every host, remove namespaces, bridge, tmpfs mounts
                        and DIR; --all: every testbed on this machine
  status                hosts, processes, raft views, faults, disk use
  kill H [SIGNAL]       send SIGNAL (default KILL) to H's process and wait for it to die
  stop H                stop H gracefully (SIGTERM) and wait
  start H               start H again from its data dir (or join, if it never ran)
  pause H / resume H    SIGSTOP / SIGCONT H's process
  cut H [H...]          partition these hosts (and "client", if named) from the other
                        hosts, both directions; cuts add up until heal
  cut-oneway FROM TO    drop packets from FROM to TO only
  netem H 'SPEC'        tc netem SPEC on both directions of H's link, e.g. 'delay 100ms loss 5%'
  heal                  undo every cut and netem
  fill-disk H           fill H's data dir (a small tmpfs) until writes fail
  free-disk H           remove what fill-disk wrote
  exec H CMD...         run CMD inside H's namespace (H may be client)
  ns H · addr H · url H · log H
                        H's namespace name, address, base URL, log file
EOF
}

dir=${TESTBED_DIR:-/tmp/drvmesh-testbed}
if [ "${1:-}" = "-d" ]; then
	dir=$2
	shift 2
fi
dir=$(realpath -m -- "$dir")

# Names. Namespace names are global, so they carry a prefix derived from
# the state dir's path: two testbeds with different dirs never collide,
# and `down` finds what a crashed `up` left even if DIR's files are gone.
prefix=dmtb-$(printf %s "$dir" | sha256sum | cut -c1-8)
net=${TESTBED_NET:-10.213.0} # the /24, first three octets
port=7700

say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'testbed: %s\n' "$*" >&2
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] || die "run as root (network namespaces, tmpfs mounts and nft need it)"
}

need_bed() {
	need_root
	nhosts >/dev/null
}

# The number of hosts of the running testbed.
nhosts() {
	[ -s "$dir/hosts" ] || die "no testbed in $dir (run: scripts/testbed.sh up N)"
	cat "$dir/hosts"
}

# host_index H prints N for hN, failing for anything else.
host_index() {
	case $1 in
	h[1-9] | h[1-9][0-9] | h[1-9][0-9][0-9]) ;;
	*) die "$1 is not a host (h1..h$(nhosts))" ;;
	esac
	local i=${1#h}
	[ "$i" -le "$(nhosts)" ] || die "$1 is not a host (h1..h$(nhosts))"
	echo "$i"
}

# ns_of H: the namespace of a host, the client or the bridge.
ns_of() {
	case $1 in
	client | br) echo "$prefix-$1" ;;
	*)
		host_index "$1" >/dev/null
		echo "$prefix-$1"
		;;
	esac
}

# ip_of H: the address of a host or the client. The bridge has none.
ip_of() {
	local i
	case $1 in
	client) echo "$net.2" ;;
	*)
		i=$(host_index "$1")
		echo "$net.$((10 + i))"
		;;
	esac
}

in_ns() { # NS CMD...
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

client_curl() { in_ns "$prefix-client" curl -fsS --max-time "${CURL_TIMEOUT:-2}" "$@"; }

# alive PID: the process exists and is not a zombie (hosts are children
# of init, which may be slow to reap them, or never, in a container).
alive() {
	local st
	st=$(proc_state "$1")
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# proc_state PID: its state letter (R, S, T for stopped, Z...), or nothing.
proc_state() { sed -n 's/.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || true; }

host_pid() { # H: the pid of H's process if it is alive
	local f="$dir/$1/pid" p
	[ -s "$f" ] || return 1
	p=$(cat "$f")
	alive "$p" || return 1
	# A recycled pid belongs to another process: check it is in H's namespace.
	[ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$(stat -L -c %i "/run/netns/$(ns_of "$1")" 2>/dev/null)" ] || return 1
	echo "$p"
}

# ---- up ------------------------------------------------------------------

cmd_up() {
	need_root
	local n=${1:-}
	[[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 200 ] || die "up N: N hosts, 1..200"
	shift
	local builder=none scale=1 disk=64m
	local flags=()
	while [ $# -gt 0 ]; do
		case $1 in
		--builder) builder=$2; shift 2 ;;
		--scale) scale=$2; shift 2 ;;
		--disk) disk=$2; shift 2 ;;
		--) shift; flags=("$@"); break ;;
		*) die "up: unknown option $1" ;;
		esac
	done
	case $builder in none | nix) ;; *) die "up: --builder none or nix" ;; esac
	if ip netns list | grep -q "^$prefix-"; then
		die "a testbed is already up in $dir (scripts/testbed.sh -d $dir down first)"
	fi
	command -v nft >/dev/null && command -v curl >/dev/null && command -v jq >/dev/null || {
		cd "$root"
		. scripts/deps.sh
		install_missing
	}
	mkdir -p "$dir"
	{
		printf 'builder=%q\nscale=%q\ndisk=%q\n' "$builder" "$scale" "$disk"
		printf 'flags=('
		[ ${#flags[@]} -eq 0 ] || printf '%q ' "${flags[@]}"
		printf ')\n'
	} >"$dir/config"
	echo "$n" >"$dir/hosts"

	if [ -n "${TESTBED_BIN:-}" ]; then
		cp "$TESTBED_BIN" "$dir/drvmesh"
	else
		say "building drvmesh into $dir"
		(cd "$root" && go build -o "$dir/drvmesh" ./cmd/drvmesh)
	fi

	say "creating namespaces $prefix-{br,client,h1..h$n} on $net.0/24"
	local br=$prefix-br
	ip netns add "$br"
	in_ns "$br" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
	ip -n "$br" link add br0 type bridge
	ip -n "$br" link set dev br0 up
	local h
	for h in client $(seq -f 'h%g' 1 "$n"); do
		add_member "$h"
	done
	check_isolated

	say "starting $n hosts"
	start_host h1
	wait_until 30 "h1 to serve HTTP and write its join token" h1_ready
	for h in $(seq -f 'h%g' 2 "$n"); do
		start_host "$h"
	done
	wait_until 60 "all $n hosts to be raft members" members_are "$n"
	say "up: $n hosts; admin token in $dir/h1/data/admin-token"
	cmd_status
}

# add_member H: a namespace for H with eth0 on the bridge at H's address.
add_member() {
	local h=$1 ns br=$prefix-br
	ns=$(ns_of "$h")
	ip netns add "$ns"
	in_ns "$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
	ip -n "$ns" link set dev lo up
	ip -n "$ns" link add eth0 type veth peer name "$h" netns "$br"
	ip -n "$br" link set dev "$h" master br0
	ip -n "$br" link set dev "$h" up
	ip -n "$ns" addr add "$(ip_of "$h")/24" dev eth0
	ip -n "$ns" link set dev eth0 up
	if [ "$h" != client ]; then
		mkdir -p "$dir/$h/data"
		mountpoint -q "$dir/$h/data" || mount -t tmpfs -o "size=$(. "$dir/config"; echo "$disk"),mode=0700" "$prefix-$h" "$dir/$h/data"
	fi
}

# check_isolated fails unless no namespace of the testbed has a default
# route or forwards IP: nothing leaves the machine.
check_isolated() {
	local ns
	for ns in $(ip netns list | awk -v p="$prefix-" 'index($1, p) == 1 {print $1}'); do
		[ -z "$(ip -n "$ns" route show default)" ] || die "$ns has a default route"
		[ "$(in_ns "$ns" cat /proc/sys/net/ipv4/ip_forward)" = 0 ] || die "$ns forwards IP"
	done
}

start_host() {
	local h=$1 i ns data join=()
	i=$(host_index "$h")
	ns=$(ns_of "$h")
	data=$dir/$h/data
	if host_pid "$h" >/dev/null; then die "$h is running"; fi
	mountpoint -q "$data" || die "$h has no data dir (is the testbed up?)"
	# shellcheck disable=SC1091
	. "$dir/config"
	local args=(--data-dir "$data" --name "$h" --listen "$(ip_of "$h"):$port" --builder "$builder" --timing-scale "$scale")
	local env=(HOME="$dir/$h/home")
	mkdir -p "$dir/$h/home"
	if [ "$builder" = nix ]; then
		# As scripts/demo.sh: a chroot store per host, /bin/sh from the machine.
		mkdir -p "$dir/$h/store"
		args+=(--nix-store "local?root=$dir/$h/store")
		env+=(NIX_CONFIG=$'sandbox = true\nextra-sandbox-paths = /bin /usr /lib /lib64\nbuild-users-group =\nexperimental-features = nix-command')
	fi
	local cmd=node
	# A host whose data dir holds a node resumes; a new one joins through h1.
	if [ "$i" != 1 ] && [ -z "$(ls -A "$data" | grep -v '^fill$')" ]; then
		[ -s "$dir/h1/data/join-token" ] || die "h1 has no join token yet"
		cmd=join
		join=("$(ip_of h1):$port")
		env+=(DRVMESH_JOIN_TOKEN="$(cat "$dir/h1/data/join-token")") # not in ps's view of argv
	fi
	# setsid: the host outlives this script and ignores its terminal's ^C.
	(exec setsid ip netns exec "$ns" env "${env[@]}" "$dir/drvmesh" "$cmd" "${join[@]}" "${args[@]}" ${flags[@]+"${flags[@]}"} \
		</dev/null >>"$dir/$h/log" 2>&1) &
	echo $! >"$dir/$h/pid"
}

h1_ready() { [ -s "$dir/h1/data/join-token" ] && client_curl "http://$(ip_of h1):$port/api/v1/status" >/dev/null 2>&1; }

# members_are N: h1 counts N raft servers (voters and nonvoters) and a leader.
members_are() {
	client_curl "http://$(ip_of h1):$port/api/v1/status" 2>/dev/null |
		jq -e --argjson n "$1" '(.voters + .nonvoters | length) == $n and .leader != ""' >/dev/null
}

wait_until() { # SECONDS WHAT CMD...
	local limit=$(($(date +%s) + $1)) what=$2
	shift 2
	until "$@"; do
		[ "$(date +%s)" -lt "$limit" ] || die "timed out waiting for $what (logs: $dir/h*/log)"
		sleep 0.1
	done
}

# ---- down ----------------------------------------------------------------

# teardown PREFIX DIR: kill every process in the testbed's namespaces,
# unmount its tmpfs mounts, delete the namespaces (which deletes the veths
# and the bridge in them) and DIR. Safe to run again and on a half-made
# testbed.
teardown() {
	local p=$1 d=$2 nss ns pid
	nss=$(ip netns list | awk -v p="$p-" 'index($1, p) == 1 {print $1}')
	for ns in $nss; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			# Never this script, its caller, or a process that asked to be
			# spared (a test with a thread inside a namespace).
			case " $$ $PPID ${TESTBED_SPARE_PIDS:-} " in *" $pid "*) continue ;; esac
			kill -KILL "$pid" 2>/dev/null || true
		done
	done
	local limit=$(($(date +%s) + 10))
	for ns in $nss; do
		while [ -n "$(ip netns pids "$ns" 2>/dev/null | grep -vxF -e "$$" -e "$PPID" $(for s in ${TESTBED_SPARE_PIDS:-}; do printf -- '-e %s ' "$s"; done))" ] && [ "$(date +%s)" -lt "$limit" ]; do sleep 0.05; done
	done
	# tmpfs mounts are named after the prefix, so they are found without DIR.
	awk -v p="$p-" 'index($1, p) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount "$(printf '%b' "$m")" 2>/dev/null || umount -l "$(printf '%b' "$m")" || true
	done
	for ns in $nss; do
		ip netns del "$ns" 2>/dev/null || true
	done
	if [ -n "$d" ] && [ -d "$d" ]; then
		chmod -R u+w "$d" 2>/dev/null || true # Nix stores are read-only
		rm -rf "$d"
	fi
}

cmd_down() {
	need_root
	if [ "${1:-}" = "--all" ]; then
		local p
		local p d
		for p in $( (ip netns list | awk '{print $1}'; awk '{print $1}' /proc/self/mounts) |
			sed -n 's/^\(dmtb-[0-9a-f]\{8\}\)-.*/\1/p' | sort -u); do
			# A testbed's dir is where its hosts' tmpfs data dirs hang.
			d=$(awk -v p="$p-" 'index($1, p) == 1 {print $2; exit}' /proc/self/mounts)
			d=$(printf '%b' "${d%/h*/data}")
			[ "dmtb-$(printf %s "$d" | sha256sum | cut -c1-8)" = "$p" ] || d=""
			say "removing testbed $p${d:+ in $d}"
			teardown "$p" "$d"
		done
		rm -rf "$dir"
		return
	fi
	teardown "$prefix" "$dir"
}

# ---- processes -----------------------------------------------------------

cmd_kill() {
	local h=$1 sig=${2:-KILL} pid
	pid=$(host_pid "$h") || die "$h is not running"
	kill -CONT "$pid" 2>/dev/null || true
	kill "-$sig" "$pid"
	local limit=$(($(date +%s) + 40))
	while alive "$pid"; do
		[ "$(date +%s)" -lt "$limit" ] || die "$h (pid $pid) did not exit after SIG$sig"
		sleep 0.05
	done
	rm -f "$dir/$h/pid"
}

cmd_pause() {
	local pid
	pid=$(host_pid "$1") || die "$1 is not running"
	kill -"$2" "$pid"
}

# ---- faults --------------------------------------------------------------

# Cuts are drop rules in the bridge namespace's nft table, on the bridge's
# forward hook: the packets vanish in the "switch", silently, as on a real
# network; no host sees an error from its own kernel.
nft_br() { in_ns "$prefix-br" nft "$@"; }

ensure_table() {
	nft_br list table bridge testbed >/dev/null 2>&1 && return
	nft_br -f - <<'EOF'
table bridge testbed {
	chain faults {
		type filter hook forward priority 0; policy accept;
	}
}
EOF
}

drop_rule() { # FROM-IP TO-IP [COMMENT]
	nft_br add rule bridge testbed faults ip saddr "$1" ip daddr "$2" drop comment "\"${3:-cut}\""
}

cmd_cut() {
	[ $# -ge 1 ] || die "cut H [H...]"
	local n h g in_group
	n=$(nhosts)
	local group=()
	for h in "$@"; do
		ip_of "$h" >/dev/null
		group+=("$h")
	done
	ensure_table
	for h in $(seq -f 'h%g' 1 "$n"); do
		in_group=0
		for g in "${group[@]}"; do [ "$g" = "$h" ] && in_group=1; done
		[ $in_group = 1 ] && continue
		for g in "${group[@]}"; do
			drop_rule "$(ip_of "$g")" "$(ip_of "$h")" "cut $g-$h"
			drop_rule "$(ip_of "$h")" "$(ip_of "$g")" "cut $h-$g"
		done
	done
}

cmd_cut_oneway() {
	[ $# -eq 2 ] || die "cut-oneway FROM TO"
	ip_of "$1" >/dev/null
	ip_of "$2" >/dev/null
	ensure_table
	drop_rule "$(ip_of "$1")" "$(ip_of "$2")" "oneway $1-$2"
}

# netem applies the qdisc on H's eth0 (what H sends) and on H's bridge port
# (what H receives). On a kernel without sch_netem, "loss P%" and "rate R"
# are emulated instead (nft drops a random share, tbf shapes); delay and
# the rest need netem.
cmd_netem() {
	[ $# -eq 2 ] || die "netem H 'SPEC' (e.g. 'delay 100ms loss 5%')"
	local h=$1 spec=$2 ns err
	ns=$(ns_of "$h")
	ip_of "$h" >/dev/null
	# shellcheck disable=SC2086
	if err=$(tc -n "$ns" qdisc replace dev eth0 root netem $spec 2>&1); then
		# shellcheck disable=SC2086
		tc -n "$prefix-br" qdisc replace dev "$h" root netem $spec
		return
	fi
	case $err in
	*unknown*) ;;
	*) die "netem $h: tc: $err" ;;
	esac
	emulate_netem "$h" "$spec"
}

emulate_netem() { # H SPEC
	local h=$1 loss="" rate=""
	set -- $2
	while [ $# -gt 0 ]; do
		case $1 in
		loss) [[ ${2:-} =~ ^([0-9]+(\.[0-9]+)?)%?$ ]] || die "netem: loss P%"; loss=${BASH_REMATCH[1]}; shift 2 ;;
		rate) [ -n "${2:-}" ] || die "netem: rate RATE"; rate=$2; shift 2 ;;
		*) die "this kernel has no sch_netem (tc netem: unknown qdisc); only 'loss P%' and 'rate R' can be emulated, not '$1'" ;;
		esac
	done
	if [ -n "$loss" ]; then
		# One chain per host, flushed on each call: a second netem replaces
		# the first, as tc qdisc replace does.
		ensure_table
		nft_br list chain bridge testbed "netem-$h" >/dev/null 2>&1 || {
			nft_br add chain bridge testbed "netem-$h"
			nft_br add rule bridge testbed faults jump "netem-$h"
		}
		nft_br flush chain bridge testbed "netem-$h"
		local permille
		permille=$(awk -v p="$loss" 'BEGIN { printf "%d", p * 10 }')
		nft_br add rule bridge testbed "netem-$h" ip saddr "$(ip_of "$h")" numgen random mod 1000 lt "$permille" drop comment "\"loss $loss% from $h\""
		nft_br add rule bridge testbed "netem-$h" ip daddr "$(ip_of "$h")" numgen random mod 1000 lt "$permille" drop comment "\"loss $loss% to $h\""
	fi
	if [ -n "$rate" ]; then
		tc -n "$(ns_of "$h")" qdisc replace dev eth0 root tbf rate "$rate" burst 32kb latency 400ms
		tc -n "$prefix-br" qdisc replace dev "$h" root tbf rate "$rate" burst 32kb latency 400ms
	fi
	say "this kernel has no sch_netem: emulated${loss:+ $loss% loss}${rate:+ rate $rate} each way"
}

cmd_heal() {
	nft_br delete table bridge testbed 2>/dev/null || true
	local h
	for h in $(seq -f 'h%g' 1 "$(nhosts)") client; do
		tc -n "$(ns_of "$h")" qdisc del dev eth0 root 2>/dev/null || true
		tc -n "$prefix-br" qdisc del dev "$h" root 2>/dev/null || true
	done
}

cmd_fill_disk() {
	local data
	host_index "$1" >/dev/null
	data=$dir/$1/data
	mountpoint -q "$data" || die "$1 has no data dir"
	dd if=/dev/zero of="$data/fill" bs=1M status=none 2>/dev/null || true
	df -h "$data" | tail -1 >&2
}

cmd_free_disk() {
	host_index "$1" >/dev/null
	rm -f "$dir/$1/data/fill"
}

# ---- status --------------------------------------------------------------

cmd_status() {
	local n h pid state st
	n=$(nhosts)
	printf 'testbed %s (namespaces %s-*), %s hosts on %s.0/24\n' "$dir" "$prefix" "$n" "$net"
	printf '%-6s %-18s %-8s %-8s %-7s %-6s %-6s %s\n' host address pid process leader term commit voters
	for h in $(seq -f 'h%g' 1 "$n"); do
		state=dead pid=-
		if pid=$(host_pid "$h"); then
			state=running
			[ "$(proc_state "$pid")" = T ] && state=paused
		else
			pid=-
		fi
		st=$(CURL_TIMEOUT=1 client_curl "http://$(ip_of "$h"):$port/api/v1/status" 2>/dev/null |
			jq -r '[(.leader | if . == "" then "-" else . end), .term, .commit_index, (.voters | join(","))] | @tsv' 2>/dev/null) || st=$'-\t-\t-\t(no answer)'
		IFS=$'\t' read -r l t c v <<<"$st"
		printf '%-6s %-18s %-8s %-8s %-7s %-6s %-6s %s\n' "$h" "$(ip_of "$h"):$port" "$pid" "$state" "$l" "$t" "$c" "$v"
	done
	local rules
	rules=$(nft_br list table bridge testbed 2>/dev/null | sed -n 's/.*comment "\(.*\)".*/\1/p' | tr "\n" " " || true)
	echo "drops: ${rules:-none}"
	local q="" x
	for h in $(seq -f 'h%g' 1 "$n"); do
		x=$(tc -n "$(ns_of "$h")" qdisc show dev eth0 2>/dev/null | grep -o -e 'netem.*' -e 'tbf.*' || true)
		[ -z "$x" ] || q="$q $h: $x;"
	done
	echo "netem:${q:- none}"
	printf 'disk:'
	for h in $(seq -f 'h%g' 1 "$n"); do
		printf ' %s %s' "$h" "$(df -h --output=used,size "$dir/$h/data" 2>/dev/null | tail -1 | awk '{print $1 "/" $2}')"
	done
	echo
}

# ---- main ----------------------------------------------------------------

cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
status) need_bed; cmd_status ;;
kill) need_bed; [ $# -ge 1 ] || die "kill H [SIGNAL]"; cmd_kill "$1" "${2:-KILL}" ;;
stop) need_bed; [ $# -eq 1 ] || die "stop H"; cmd_kill "$1" TERM ;;
start) need_bed; [ $# -eq 1 ] || die "start H"; start_host "$1" ;;
pause) need_bed; [ $# -eq 1 ] || die "pause H"; cmd_pause "$1" STOP ;;
resume) need_bed; [ $# -eq 1 ] || die "resume H"; cmd_pause "$1" CONT ;;
cut) need_bed; cmd_cut "$@" ;;
cut-oneway) need_bed; cmd_cut_oneway "$@" ;;
netem) need_bed; cmd_netem "$@" ;;
heal) need_bed; cmd_heal ;;
fill-disk) need_bed; [ $# -eq 1 ] || die "fill-disk H"; cmd_fill_disk "$1" ;;
free-disk) need_bed; [ $# -eq 1 ] || die "free-disk H"; cmd_free_disk "$1" ;;
exec)
	need_bed
	[ $# -ge 2 ] || die "exec H CMD..."
	ns=$(ns_of "$1")
	shift
	exec ip netns exec "$ns" "$@"
	;;
ns) ns_of "${1:?ns H}" ;;
addr)
	a=$(ip_of "${1:?addr H}")
	case $1 in client) echo "$a" ;; *) echo "$a:$port" ;; esac
	;;
url)
	a=$(ip_of "${1:?url H}")
	echo "http://$a:$port"
	;;
log) host_index "${1:?log H}" >/dev/null && echo "$dir/$1/log" ;;
help | -h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
