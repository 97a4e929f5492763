#!/usr/bin/env bash
# Benchmark the gate (issue 5): push a closure of PATHS paths × SIZE_MIB MiB of random
# bytes through `nixpki nix push` (its own uploader: NARs dumped from the store, zstd,
# signed in the client, several uploads in flight, over HTTP on loopback; the gate
# decompresses, hashes, checks and fsyncs every NAR and logs every admission) against
# `nix copy --to 'file://…?compression=zstd'` of the same closure, alternating, ROUNDS
# times each, in one run. A third column times `nix copy --to http://…` to
# bench/gate-push-null, a cache that discards everything: what Nix's HTTP upload costs
# by itself. Then the gate's peak RSS (VmHWM from
# /proc/PID/status) while it takes one BIG_MIB MiB NAR.
#
# Needs root and Debian's nix-bin (single-user Nix, no daemon), like the tests.
#
#   bash bench/gate-push.sh                   # PATHS=200 SIZE_MIB=1 ROUNDS=3 BIG_MIB=1024
#   PATHS=400 ROUNDS=5 bash bench/gate-push.sh
#   PUSH_FLAGS=--via-nix-copy bash bench/gate-push.sh   # the gate behind nix copy
set -euo pipefail
cd "$(dirname "$0")/.."
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

# The closure: PATHS leaves of random bytes and a top path referencing them all.
nonce=$(date +%s%N)
cat >"$work/closure.nix" <<EOF
let leaf = i: derivation { name = "blob-\${toString i}"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                           builder = "/bin/sh"; args = [ "-c" "head -c $((SIZE_MIB << 20)) /dev/urandom > \$out # $nonce" ]; };
    leaves = builtins.genList leaf $PATHS;
in derivation { name = "closure"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                builder = "/bin/sh"; args = [ "-c" "echo \${toString leaves} > \$out" ]; }
EOF
cat >"$work/big.nix" <<EOF
derivation { name = "big"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
             builder = "/bin/sh"; args = [ "-c" "head -c $((BIG_MIB << 20)) /dev/urandom > \$out # $nonce" ]; }
EOF
echo "== building $PATHS × $SIZE_MIB MiB and one $BIG_MIB MiB path" >&2
top=$(nix-build --no-out-link "$work/closure.nix" 2>/dev/null)
big=$(nix-build --no-out-link "$work/big.nix" 2>/dev/null)
count=$(nix path-info -r "$top" | wc -l)
bytes=$(nix path-info -rs "$top" | awk '{s += $2} END {print s}')

# A CA, a certified member key and a CRL, made once.
"$N" init --dir "$work/ca" --name Bench --dns ca.internal >/dev/null
nix-store --generate-binary-cache-key bench-1 "$work/bench.sec" "$work/bench.pub"
"$N" nix certify --dir "$work/ca" --public "$work/bench.pub" --subject bench --targets bench-gate --out "$work/bench.crt" >/dev/null
"$N" nix crl --dir "$work/ca" --out "$work/nix.crl" 2>/dev/null

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
push() { # DIR PATH
	"$N" nix push --gate "http://127.0.0.1:$PORT" --cert "$work/bench.crt" --secret "$work/bench.sec" \
		--crl "$work/nix.crl" --compression zstd ${PUSH_FLAGS:-} "$2" 2>"$1.push"
}

echo "| round | file:// zstd (s) | http:// to a discarding server (s) | gate push (s) | gate / file:// | gate / discarding server |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
fs=()
ns=()
gs=()
for r in $(seq 1 "$ROUNDS"); do
	rm -rf "$work/cache" "$work/xdg"
	sync
	t0=$(now)
	nix copy --to "file://$work/cache?compression=zstd" "$top" 2>"$work/copy.log"
	t1=$(now)
	f=$(calc "$t1 - $t0")

	rm -rf "$work/xdg"
	t0=$(now)
	nix copy --to "http://127.0.0.1:$NULL_PORT?compression=zstd&secret-key=$work/bench.sec" "$top" 2>"$work/copy.log"
	t1=$(now)
	nn=$(calc "$t1 - $t0")

	rm -rf "$work/gate" "$work/xdg"
	start_gate "$work/gate"
	sync
	t0=$(now)
	push "$work/gate" "$top" || { cat "$work/gate.push" >&2; exit 1; }
	t1=$(now)
	g=$(calc "$t1 - $t0")
	admitted=$(grep -c '"type":"admission"' "$work/gate/log/entries")
	[ "$admitted" -eq "$count" ] || { echo "the gate admitted $admitted of $count paths" >&2; exit 1; }
	stop_gate
	fs+=("$f")
	ns+=("$nn")
	gs+=("$g")
	printf '| %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n' "$r" "$f" "$nn" "$g" "$(calc "$g / $f")" "$(calc "$g / $nn")"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
fm=$(median "${fs[@]}")
nm=$(median "${ns[@]}")
gm=$(median "${gs[@]}")
printf '\nClosure: %d paths, %.0f MiB. Median: file:// %.2f s, discarding http:// %.2f s, gate %.2f s; gate / file:// %.2f×, gate / discarding http:// %.2f×\n' \
	"$count" "$(calc "$bytes / 1048576")" "$fm" "$nm" "$gm" "$(calc "$gm / $fm")" "$(calc "$gm / $nm")"

# Peak RSS while taking one big NAR.
rm -rf "$work/gate" "$work/xdg"
start_gate "$work/gate"
idle=$(awk '/VmHWM/ {print $2}' "/proc/$gate_pid/status")
t0=$(now)
push "$work/gate" "$big" || { cat "$work/gate.push" >&2; exit 1; }
t1=$(now)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$gate_pid/status")
stop_gate
printf 'Big NAR: %d MiB pushed in %.1f s; gate VmHWM %.1f MiB after start, %.1f MiB after taking it\n' \
	"$BIG_MIB" "$(calc "$t1 - $t0")" "$(calc "$idle / 1024")" "$(calc "$peak / 1024")"
