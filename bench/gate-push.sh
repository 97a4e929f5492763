#!/usr/bin/env bash
# Benchmark the gate: push a closure of at least 200 paths and 200 MiB through
# `nixpki nix push` (its own uploader: NARs dumped from the store, compressed and signed
# in the client, several uploads in flight, over HTTP on loopback; the gate decompresses,
# hashes, checks and fsyncs every NAR and logs every admission) against
# `nix copy --to 'file://…?compression=zstd'` of the same closure, alternating, ROUNDS
# times each, in one run. Columns:
#   - file:// zstd: the baseline (level 3, Nix's default zstd level);
#   - file://, then sync: the same copy until it is on disk (Nix does not fsync a
#     file:// cache; the gate makes every NAR and admission durable before it answers);
#   - file:// zstd level 2: at the level nix push writes by default
#     (--compression-level 2), so that a ratio compares equal levels too (a
#     --compression-level in PUSH_FLAGS makes that comparison unequal);
#   - http:// to bench/gate-push-null, a cache that discards everything: what Nix's
#     HTTP upload costs by itself;
#   - gate push --compression zstd: every NAR zstd-compressed (level 2), as file://
#     does;
#   - gate push (default, --compression auto): zstd (level 2), except NARs that look
#     incompressible, sent and stored uncompressed;
#   - file:// none and gate push --compression none: uncompressed on both sides.
# Then the gate's peak RSS (VmHWM from /proc/PID/status) while it takes one BIG_MIB MiB
# NAR.
#
# DATA chooses the closure:
#   random  PATHS paths × SIZE_MIB MiB of random bytes (incompressible: compression
#           costs file:// almost nothing, so the gate's own work weighs most);
#   go      PATHS paths holding the files of the Go installation that builds the
#           benchmark (GOROOT: sources, binaries, archives, test data; ~230 MiB,
#           15,000 files), in order, the same number of files to each path: paths of
#           varied sizes and contents that compress like real ones (~3.5×).
#
# Each measurement starts with the page cache dropped and the closure read back in
# (settle, below). Each round writes to fresh directories and nothing is deleted until
# the end: on a
# journal-less ext4, creating files right after deleting many costs extra (the
# allocator skips recently freed inodes), which would weigh on whichever side ran
# after a deletion.
#
# Needs root and Debian's nix-bin (single-user Nix, no daemon), like the tests.
#
#   bash bench/gate-push.sh                   # DATA=random PATHS=200 SIZE_MIB=1 ROUNDS=3 BIG_MIB=1024
#   DATA=go BIG_MIB=0 bash bench/gate-push.sh # a compressible closure, no big NAR
#   PUSH_FLAGS=--via-nix-copy bash bench/gate-push.sh   # the gate behind nix copy
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-random}
PATHS=${PATHS:-200}
SIZE_MIB=${SIZE_MIB:-1}
ROUNDS=${ROUNDS:-3}
BIG_MIB=${BIG_MIB:-1024}
PORT=${PORT:-18599}

command -v nix >/dev/null || { echo "nix is not installed: apt-get install -y nix-bin" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/gate-bench.XXXXXX") # on disk: fsync must be real
gate_pid=""
cleanup() {
	[ -n "$gate_pid" ] && kill "$gate_pid" 2>/dev/null || true
	[ -n "${null_pid:-}" ] && kill "$null_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
export NIX_CONFIG=$'experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters =\nmax-jobs = auto'
export XDG_CACHE_HOME="$work/xdg"

go build -o "$work/nixpki" ./cmd/nixpki
go build -o "$work/null" ./bench/gate-push-null
N="$work/nixpki"
NULL_PORT=$((PORT - 1))
"$work/null" -listen "127.0.0.1:$NULL_PORT" &
null_pid=$!
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }

# The closure: PATHS leaves and a top path referencing them all.
nonce=$(date +%s%N)
case "$DATA" in
random) leaf_script="head -c $((SIZE_MIB << 20)) /dev/urandom > \$out # $nonce" ;;
go)
	goroot=$(go env GOROOT)
	mkdir -p "$work/lists"
	(cd "$goroot" && find . -type f | LC_ALL=C sort) >"$work/files"
	total=$(wc -l <"$work/files")
	awk -v dir="$work/lists" -v n="$PATHS" -v total="$total" '{ print > (dir "/" int((NR - 1) * n / total)) }' "$work/files"
	leaf_script="mkdir -p \$out && tar -C $goroot -cf - -T $work/lists/\${toString i} | tar -C \$out -xf - # $nonce"
	;;
*) echo "DATA=$DATA: use random or go" >&2; exit 1 ;;
esac
cat >"$work/closure.nix" <<EOF
let leaf = i: derivation { name = "blob-\${toString i}"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                           builder = "/bin/sh"; args = [ "-c" "$leaf_script" ]; };
    leaves = builtins.genList leaf $PATHS;
in derivation { name = "closure"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                builder = "/bin/sh"; args = [ "-c" "echo \${toString leaves} > \$out" ]; }
EOF
cat >"$work/big.nix" <<EOF
derivation { name = "big"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
             builder = "/bin/sh"; args = [ "-c" "head -c $((BIG_MIB << 20)) /dev/urandom > \$out # $nonce" ]; }
EOF
echo "== building the closure ($DATA, $PATHS paths)" >&2
top=$(nix-build --no-out-link "$work/closure.nix" 2>/dev/null)
count=$(nix path-info -r "$top" | wc -l)
bytes=$(nix path-info -rs "$top" | awk '{s += $2} END {print s}')

# A CA, a certified member key and a CRL, made once.
"$N" init --dir "$work/ca" --name Bench --dns ca.internal >/dev/null
nix-store --generate-binary-cache-key bench-1 "$work/bench.sec" "$work/bench.pub"
"$N" nix certify --dir "$work/ca" --public "$work/bench.pub" --subject bench --targets bench-gate --out "$work/bench.crt" >/dev/null
"$N" nix crl --dir "$work/ca" --out "$work/nix.crl" 2>/dev/null

# Before each measurement: flush and drop the page cache, then read the closure (and
# Nix's database) back in, so every column starts alike, its input in memory and
# nothing else. On this virtual machine page cache growing past what was used before
# is slow to allocate (fresh guest memory is faulted in from the host): without this,
# file:// (buffered writes) slowed from 0.7 to 1.2 s over five rounds while the gate
# (O_DIRECT writes) did not.
settle() {
	sync
	echo 1 >/proc/sys/vm/drop_caches
	find $(nix-store -qR "$top") -type f -print0 | xargs -0 cat >/dev/null
	cat /nix/var/nix/db/db.sqlite* "$N" $binaries >/dev/null 2>&1 || true
}
# The programs each side starts, read back in by settle too.
binaries="$(readlink -f "$(command -v nix)") $(ldd "$(command -v nix)" | awk '$3 ~ /^\// {print $3}' | xargs -r readlink -f)"

start_gate() { # DIR
	"$N" gate init --dir "$1" --name bench-gate --root "$work/ca/root.crt" >/dev/null
	"$N" gate serve --dir "$1" --listen "127.0.0.1:$PORT" >"$1.out" 2>"$1.err" &
	gate_pid=$!
	for _ in $(seq 1 100); do
		curl -sf -o /dev/null "http://127.0.0.1:$PORT/nix-cache-info" && return 0
		sleep 0.05
	done
	echo "gate did not start" >&2
	cat "$1.err" >&2
	exit 1
}
stop_gate() {
	kill "$gate_pid"
	wait "$gate_pid" 2>/dev/null || true
	gate_pid=""
}
push() { # DIR PATH COMPRESSION
	"$N" nix push --gate "http://127.0.0.1:$PORT" --cert "$work/bench.crt" --secret "$work/bench.sec" \
		--crl "$work/nix.crl" --compression "$3" ${PUSH_FLAGS:-} "$2" 2>"$1.push"
}
gate_round() { # DIR COMPRESSION: sets g to the push's seconds
	start_gate "$1"
	settle
	local t0 t1 admitted
	t0=$(now)
	push "$1" "$top" "$2" || { cat "$1.push" >&2; exit 1; }
	t1=$(now)
	admitted=$(grep -c '"type":"admission"' "$1/log/entries")
	[ "$admitted" -eq "$count" ] || { echo "the gate admitted $admitted of $count paths" >&2; exit 1; }
	stop_gate
	g=$(calc "$t1 - $t0")
}

nix_copy() { # XDG_CACHE_HOME URL: sets c to the seconds of nix copy --to URL
	settle
	local t0 t1
	t0=$(now)
	XDG_CACHE_HOME="$1" nix copy --to "$2" "$top" 2>"$work/copy.log"
	t1=$(now)
	c=$(calc "$t1 - $t0")
}

echo "| round | file:// zstd (s) | file://, then sync (s) | file:// zstd level 2 (s) | http:// to a discarding server (s) | gate, zstd (s) | gate, auto (s) | file:// none (s) | gate, none (s) | gate zstd / file:// zstd | gate auto / file:// zstd | gate zstd / file:// level 2 | gate auto / file:// level 2 | gate none / file:// none |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
fns=()
gns=()
fs=()
fds=()
f2s=()
ns=()
zs=()
as=()
for r in $(seq 1 "$ROUNDS"); do
	settle
	t0=$(now)
	XDG_CACHE_HOME="$work/xdg-f$r" nix copy --to "file://$work/cache-$r?compression=zstd" "$top" 2>"$work/copy.log"
	t1=$(now)
	sync
	t2=$(now)
	f=$(calc "$t1 - $t0")
	fd=$(calc "$t2 - $t0")

	nix_copy "$work/xdg-2$r" "file://$work/cache-2-$r?compression=zstd&compression-level=2"
	f2=$c

	nix_copy "$work/xdg-n$r" "http://127.0.0.1:$NULL_PORT?compression=zstd&secret-key=$work/bench.sec"
	nn=$c

	gate_round "$work/gate-zstd-$r" zstd
	z=$g
	gate_round "$work/gate-auto-$r" auto
	a=$g

	nix_copy "$work/xdg-u$r" "file://$work/cache-none-$r?compression=none"
	fn=$c
	gate_round "$work/gate-none-$r" none
	gn=$g
	fns+=("$fn")
	gns+=("$gn")
	fs+=("$f")
	fds+=("$fd")
	f2s+=("$f2")
	ns+=("$nn")
	zs+=("$z")
	as+=("$a")
	printf '| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n' "$r" "$f" "$fd" "$f2" "$nn" "$z" "$a" "$fn" "$gn" \
		"$(calc "$z / $f")" "$(calc "$a / $f")" "$(calc "$z / $f2")" "$(calc "$a / $f2")" "$(calc "$gn / $fn")"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
fm=$(median "${fs[@]}")
fdm=$(median "${fds[@]}")
f2m=$(median "${f2s[@]}")
nm=$(median "${ns[@]}")
zm=$(median "${zs[@]}")
am=$(median "${as[@]}")
fnm=$(median "${fns[@]}")
gnm=$(median "${gns[@]}")
stored=$(du -sm "$work/cache-1" "$work/cache-2-1" "$work/gate-zstd-1/nar" "$work/gate-auto-1/nar" | awk '{printf "%s%s MiB", (NR > 1 ? ", " : ""), $1}')
printf '\nClosure (%s): %d paths, %.0f MiB. Median: file:// %.2f s (then sync: %.2f s), discarding http:// %.2f s, gate zstd %.2f s (%.2f×; %.2f× file:// then sync), gate auto %.2f s (%.2f×; %.2f×). Stored (file://, file:// level 2, gate zstd, gate auto): %s\n' \
	"$DATA" "$count" "$(calc "$bytes / 1048576")" "$fm" "$fdm" "$nm" "$zm" "$(calc "$zm / $fm")" "$(calc "$zm / $fdm")" "$am" "$(calc "$am / $fm")" "$(calc "$am / $fdm")" "$stored"
printf 'At equal zstd levels (2), median: file:// %.2f s, gate zstd %.2f×, gate auto %.2f×\n' "$f2m" "$(calc "$zm / $f2m")" "$(calc "$am / $f2m")"
printf 'Uncompressed on both sides, median: file:// none %.2f s, gate none %.2f s (%.2f×)\n' "$fnm" "$gnm" "$(calc "$gnm / $fnm")"
[ "$BIG_MIB" -gt 0 ] || exit 0

# Peak RSS while taking one big NAR. The path is built only now: writing and hashing
# it before the rounds left file:// 50% slower in all of them (page cache reclaim on
# this virtual machine).
echo "== building one $BIG_MIB MiB path" >&2
big=$(nix-build --no-out-link "$work/big.nix" 2>/dev/null)
start_gate "$work/gate-big"
idle=$(awk '/VmHWM/ {print $2}' "/proc/$gate_pid/status")
t0=$(now)
push "$work/gate-big" "$big" zstd || { cat "$work/gate-big.push" >&2; exit 1; }
t1=$(now)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$gate_pid/status")
stop_gate
printf 'Big NAR: %d MiB pushed in %.1f s; gate VmHWM %.1f MiB after start, %.1f MiB after taking it\n' \
	"$BIG_MIB" "$(calc "$t1 - $t0")" "$(calc "$idle / 1024")" "$(calc "$peak / 1024")"
