#!/usr/bin/env bash
# Benchmark `nixpki verify -r` against `nix store verify -r --sigs-needed 1` on the
# same signed closure of at least 1 GiB in the machine's own store, in one run,
# rotating the tools ROUNDS times. Both check every path's contents (NAR hash
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
# nixpki runs twice per round: as built (sixteen paths at once per core with the
# AVX-512 kernel where the CPU has it) and with NIXPKI_SHA256=generic
# (crypto/sha256, one path at a time: what CPUs without AVX-512 run). With
# BASELINE, another column times that nixpki binary (another build, e.g. of an
# earlier commit) in the same rotation, to compare builds side by side.
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

# The tools timed, in rotation: Nix, nixpki as built, nixpki forced to
# crypto/sha256 one path at a time (what CPUs without AVX-512 run), and with
# BASELINE another nixpki build.
names=("nix store verify" "nixpki verify" "nixpki verify, generic")
cmds=("$(printf '%q ' "${nix_cmd[@]}")" "$(printf '%q ' "${ours_cmd[@]}")" "NIXPKI_SHA256=generic $(printf '%q ' "${ours_cmd[@]}")")
if [ -n "${BASELINE:-}" ]; then
	names+=("baseline")
	cmds+=("$(printf '%q ' "$BASELINE" "${ours_cmd[@]:1}")")
fi
n=${#cmds[@]}

# run I: run tool I, check the exit status, print "wall-ms cpu-ms" (CPU = user +
# system time of the command and its threads: less disturbed than wall time when
# other work shares the machine).
run() {
	local TIMEFORMAT='%R %U %S' t
	t=$({ time eval "env ${cmds[$1]}" >/dev/null 2>"$work/stderr"; } 2>&1) || { echo "${names[$1]} failed:" >&2; cat "$work/stderr" >&2; exit 1; }
	awk '{printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000}' <<<"$t"
}

echo "== warm-up (one run of each; fills the page cache the same for all)"
for i in $(seq 0 $((n - 1))); do run "$i" >/dev/null; done

echo "== $ROUNDS rounds, rotating the order (wall ms / CPU ms)"
declare -A wall cpu
for r in $(seq 1 "$ROUNDS"); do
	line="round $(printf %2d "$r"):"
	for k in $(seq 0 $((n - 1))); do
		i=$(((k + r) % n))
		read -r w c < <(run "$i")
		wall[$i]+="$w " cpu[$i]+="$c "
	done
	for i in $(seq 0 $((n - 1))); do
		line+=$(printf '  %s %d / %d;' "${names[$i]}" "$(awk '{print $NF}' <<<"${wall[$i]}")" "$(awk '{print $NF}' <<<"${cpu[$i]}")")
	done
	echo "$line   (load $(cut -d' ' -f1 /proc/loadavg))"
done

median() { printf '%s\n' $@ | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mib=$((bytes / 1048576))
echo "== result: medians of $ROUNDS rounds ($(nproc) cores, $(nix --version), $mib MiB of NAR)"
nw=$(median ${wall[0]}) nc=$(median ${cpu[0]})
for i in $(seq 0 $((n - 1))); do
	w=$(median ${wall[$i]}) c=$(median ${cpu[$i]})
	awk -v name="${names[$i]}$([ "$i" -eq 3 ] && echo " ($BASELINE)")" -v w="$w" -v c="$c" -v nw="$nw" -v nc="$nc" -v mib="$mib" \
		'BEGIN {printf "%-32s %6d ms wall (%4d MiB/s), %6d ms CPU: %.2fx / %.2fx of nix store verify\n", name, w, mib * 1000 / w, c, nw / w, nc / c}'
done
