#!/usr/bin/env bash
# Benchmark nixpki's ACME server (durable SQLite: WAL, synchronous=FULL) against Pebble
# (Debian's `pebble`, in memory) in one run: both servers run side by side on loopback
# and bench/acmeload drives them in turn, alternating, ROUNDS times each, with complete
# http-01 orders (new order → challenge → finalize → download) at concurrency C. It
# prints each run, the medians, the ratio of orders/s and each server's CPU time per
# order (from /proc/PID/stat). A Pebble run that stalls (Pebble 2.4 can deadlock under
# concurrent load) is retried after restarting Pebble, and said so.
#
#   bash bench/acme-vs-pebble.sh            # ROUNDS=3 N=2000 C=8
#   ROUNDS=5 N=3000 C=8 bash bench/acme-vs-pebble.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
N=${N:-2000}
C=${C:-8}
WARMUP=${WARMUP:-100}
HTTP01=${HTTP01:-127.0.0.1:5002}
NIX_PORT=${NIX_PORT:-18443}
PEBBLE_PORT=${PEBBLE_PORT:-14000}

command -v pebble >/dev/null || { echo "pebble is not installed: apt-get install -y pebble" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/acme-bench.XXXXXX") # on disk: the durable store must really sync
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/nixpki" ./cmd/nixpki
go build -o "$work/acmeload" ./bench/acmeload

wait_up() { # URL CAFILE
	for _ in $(seq 1 100); do
		curl -sf --cacert "$2" -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "server at $1 did not come up" >&2
	return 1
}

"$work/nixpki" serve --dir "$work/nixpki-data" --listen "127.0.0.1:$NIX_PORT" --http-listen "" \
	--acme-http-port "${HTTP01##*:}" >"$work/nixpki.out" 2>"$work/nixpki.log" &
nix_pid=$!
pids+=("$nix_pid")
nix_dir="https://localhost:$NIX_PORT/acme/acme/directory"
wait_up "$nix_dir" "$work/nixpki-data/root.crt"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/pebble.key" -out "$work/pebble.crt" 2>/dev/null
cat >"$work/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$((PEBBLE_PORT + 1))",
  "certificate": "$work/pebble.crt", "privateKey": "$work/pebble.key",
  "httpPort": ${HTTP01##*:}, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
peb_dir="https://localhost:$PEBBLE_PORT/dir"
peb_pid=
start_pebble() {
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 pebble -config "$work/pebble.json" >"$work/pebble.log" 2>&1 &
	peb_pid=$!
	pids+=("$peb_pid")
	wait_up "$peb_dir" "$work/pebble.crt"
}
start_pebble

# run LABEL DIR CAFILE PID: one measured run; prints acmeload's line.
run() {
	"$work/acmeload" -label "$1" -dir "$2" -ca "$3" -pid "$4" -c "$C" -n "$N" -warmup "$WARMUP" -listen "$HTTP01"
}

results="$work/results"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
	run nixpki "$nix_dir" "$work/nixpki-data/root.crt" "$nix_pid" | tee -a "$results"
	for try in 1 2 3; do
		if out=$(run pebble "$peb_dir" "$work/pebble.crt" "$peb_pid"); then
			echo "$out" | tee -a "$results"
			break
		fi
		echo "pebble run $round stalled or failed (try $try): restarting Pebble" | tee -a "$work/restarts"
		kill "$peb_pid" 2>/dev/null || true
		wait "$peb_pid" 2>/dev/null || true
		start_pebble
	done
done

echo
awk -v rounds="$ROUNDS" '
function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{
	s = $1; n[s]++
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[s, kv[1], n[s]] = kv[2] }
}
END {
	split("orders_per_s p50_ms p99_ms server_cpu_ms_per_order server_peak_rss_mb requests_per_order", keys, " ")
	for (si = 1; si <= 2; si++) {
		s = si == 1 ? "nixpki" : "pebble"
		line = sprintf("%-7s median of %d runs:", s, n[s])
		for (k = 1; k <= 6; k++) {
			delete a; for (i = 1; i <= n[s]; i++) a[i] = v[s, keys[k], i]
			m[s, keys[k]] = median(a, n[s]); line = line sprintf(" %s=%s", keys[k], m[s, keys[k]])
		}
		print line
	}
	printf "ratio nixpki/pebble orders_per_s = %.2f; server CPU per order: nixpki %.2f ms, pebble %.2f ms\n",
		m["nixpki", "orders_per_s"] / m["pebble", "orders_per_s"], m["nixpki", "server_cpu_ms_per_order"], m["pebble", "server_cpu_ms_per_order"]
}' "$results"
if [ -s "$work/restarts" ]; then
	echo "Pebble was restarted $(wc -l <"$work/restarts") time(s) after a stalled run."
fi
