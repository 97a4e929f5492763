#!/usr/bin/env bash
# Benchmark `nixpki verify -r` against `nix store verify -r --sigs-needed 1` on the
# same signed closure of at least 1 GiB in the machine's own store, in one run,
# alternating the two tools ROUNDS times. Both check every path's contents (NAR hash
# from the file system) and signatures: Nix against the plain public key, nixpki
# against the certificate of that key (chain to the root of a CA made here).
#
# The closure mixes sizes the way real ones do: 16 paths holding one 40 MiB file,
# 48 paths of 64 files × 128 KiB, and 32 paths of 1,000 files × 4 KiB in nested
# directories (1.1 GiB, 96 paths, ~35,000 files). It is built once per NONCE and
# reused by later runs.
#
# Page cache: both tools read files through it. The closure was just built (or is
# read once by a warm-up run of each tool), so every timed run reads from a warm
# cache, the same for both; say so when quoting the numbers.
#
#   sudo bash bench/verify-vs-nix.sh               # ROUNDS=7
#   ROUNDS=11 NONCE=again sudo -E bash bench/verify-vs-nix.sh
#   BASELINE=/path/to/other/nixpki sudo -E bash bench/verify-vs-nix.sh
#
# With BASELINE, a third column times that nixpki binary (another build, e.g. of
# an earlier commit) in the same rotation, to compare two builds side by side.
#
# Needs root (single-user Nix without a daemon), Debian's nix-bin and Go.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
NONCE=${NONCE:-bench-1}

for tool in nix nix-build nix-store go; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install -y nix-bin; Go 1.26+)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root: single-user Nix without a daemon" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/verify-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME="$work/xdg"
export NIX_CONFIG='experimental-features = nix-command
build-users-group =
sandbox = false
substituters ='

go build -o "$work/nixpki" ./cmd/nixpki

cat >"$work/closure.nix" <<EOF
let
  mk = name: script: derivation {
    inherit name; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
    builder = "/bin/sh"; args = [ "-c" script ]; nonce = "$NONCE";
  };
  big = i: mk "big-\${toString i}" "head -c 41943040 /dev/urandom > \$out";
  mid = i: mk "mid-\${toString i}" ''
    mkdir -p \$out/lib
    for f in \$(seq 1 64); do head -c 131072 /dev/urandom > \$out/lib/f\$f.so; done
  '';
  small = i: mk "small-\${toString i}" ''
    for d in \$(seq 1 20); do
      mkdir -p \$out/share/d\$d/sub
      for f in \$(seq 1 25); do head -c 4096 /dev/urandom > \$out/share/d\$d/f\$f.py; done
      for f in \$(seq 1 25); do head -c 4096 /dev/urandom > \$out/share/d\$d/sub/g\$f.py; done
    done
  '';
  all = map big (builtins.genList (x: x) 16) ++ map mid (builtins.genList (x: x) 48)
     ++ map small (builtins.genList (x: x) 32);
in mk "bench-closure" "echo \${toString all} > \$out"
EOF
echo "== building the closure (nonce $NONCE)"
out=$(nix-build --no-out-link "$work/closure.nix" 2>/dev/null)
paths=$(nix-store -qR "$out" | wc -l)
bytes=$(nix path-info -S "$out" | awk '{print $2}')
files=$(nix-store -qR "$out" | xargs -I{} find {} -type f | wc -l)
echo "closure: $out: $paths paths, $files files, $((bytes / 1048576)) MiB of NAR"
[ "$bytes" -ge $((1 << 30)) ] || { echo "closure is smaller than 1 GiB" >&2; exit 1; }

echo "== signing it with a key certified by a fresh CA"
"$work/nixpki" init --dir "$work/ca" --name VerifyBench --dns ca.internal >/dev/null
nix-store --generate-binary-cache-key bench-1 "$work/bench.sec" "$work/bench.pub"
"$work/nixpki" nix certify --dir "$work/ca" --public "$work/bench.pub" --subject bench --targets '*' --out "$work/bench.crt" >/dev/null
"$work/nixpki" nix crl --dir "$work/ca" --out "$work/nix.crl" >/dev/null
nix store sign -k "$work/bench.sec" -r "$out"
pub=$(cat "$work/bench.pub")

nix_cmd=(nix store verify -r --sigs-needed 1 --option trusted-public-keys "$pub" "$out")
ours_cmd=("$work/nixpki" verify -r --sigs-needed 1 --root "$work/ca/root.crt" --certs "$work/bench.crt" --crl "$work/nix.crl" "$out")
base_cmd=()
if [ -n "${BASELINE:-}" ]; then
	base_cmd=("$BASELINE" "${ours_cmd[@]:1}")
fi

# run CMD…: run, check the exit status, print "wall-ms cpu-ms" (CPU = user + system
# time of the command and its threads: less disturbed than wall time when other
# work shares the machine).
run() {
	local TIMEFORMAT='%R %U %S' t
	t=$({ time "$@" >/dev/null 2>"$work/stderr"; } 2>&1) || { echo "$* failed:" >&2; cat "$work/stderr" >&2; exit 1; }
	awk '{printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000}' <<<"$t"
}

echo "== warm-up (one run of each; fills the page cache the same for both)"
run "${nix_cmd[@]}" >/dev/null
run "${ours_cmd[@]}" >/dev/null
[ ${#base_cmd[@]} -eq 0 ] || run "${base_cmd[@]}" >/dev/null

echo "== $ROUNDS rounds, alternating (wall ms / CPU ms)"
nix_w=() nix_c=() ours_w=() ours_c=() base_w=() base_c=()
for i in $(seq 1 "$ROUNDS"); do
	cw=0 cc=0
	if [ $((i % 2)) -eq 1 ]; then
		read -r aw ac < <(run "${nix_cmd[@]}"); read -r bw bc < <(run "${ours_cmd[@]}")
		[ ${#base_cmd[@]} -eq 0 ] || read -r cw cc < <(run "${base_cmd[@]}")
	else
		[ ${#base_cmd[@]} -eq 0 ] || read -r cw cc < <(run "${base_cmd[@]}")
		read -r bw bc < <(run "${ours_cmd[@]}"); read -r aw ac < <(run "${nix_cmd[@]}")
	fi
	nix_w+=("$aw") nix_c+=("$ac") ours_w+=("$bw") ours_c+=("$bc") base_w+=("$cw") base_c+=("$cc")
	base=""
	[ ${#base_cmd[@]} -eq 0 ] || base=$(printf '   baseline %6d / %6d' "$cw" "$cc")
	printf 'round %2d: nix store verify %6d / %6d   nixpki verify %6d / %6d%s   (load %s)\n' "$i" "$aw" "$ac" "$bw" "$bc" "$base" "$(cut -d' ' -f1 /proc/loadavg)"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
nw=$(median "${nix_w[@]}") nc=$(median "${nix_c[@]}") ow=$(median "${ours_w[@]}") oc=$(median "${ours_c[@]}")
mib=$((bytes / 1048576))
echo "== result ($(nproc) cores, $(nix --version))"
echo "median wall: nix store verify ${nw} ms ($((mib * 1000 / nw)) MiB/s), nixpki verify ${ow} ms ($((mib * 1000 / ow)) MiB/s)"
echo "median CPU:  nix store verify ${nc} ms, nixpki verify ${oc} ms"
awk -v n="$nw" -v o="$ow" -v nc="$nc" -v oc="$oc" 'BEGIN {printf "nixpki verify / nix store verify speed: %.2fx by wall time, %.2fx by CPU time\n", n / o, nc / oc}'
if [ ${#base_cmd[@]} -gt 0 ]; then
	bw=$(median "${base_w[@]}") bc=$(median "${base_c[@]}")
	echo "median baseline ($BASELINE): ${bw} ms wall, ${bc} ms CPU"
	awk -v n="$nw" -v o="$bw" -v nc="$nc" -v oc="$bc" 'BEGIN {printf "baseline / nix store verify speed: %.2fx by wall time, %.2fx by CPU time\n", n / o, nc / oc}'
fi
