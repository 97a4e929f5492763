#!/usr/bin/env bash
# Benchmark nixpki's ACME server on PostgreSQL in one run, side by side with nixpki on
# SQLite and with step-ca on the same PostgreSQL cluster. Four servers run at once on
# loopback and bench/acmeload drives them in turn, alternating, ROUNDS times each, with
# complete http-01 orders (new order → challenge → finalize → download) at concurrency C:
#
#   sqlite   nixpki serve, embedded SQLite (the default)
#   pg-1     nixpki serve on PostgreSQL, one replica
#   pg-2     two nixpki serve replicas on one PostgreSQL database behind bench/rrproxy,
#            a round-robin TCP proxy (no stickiness: a worker's consecutive requests
#            alternate between the replicas)
#   step-ca  step-ca v0.30.2 on the same PostgreSQL cluster (its own database)
#
# PostgreSQL (Debian's, 15 or newer) runs as an unprivileged user in a temporary
# directory on a unix socket, with its default durability (fsync on). "Total CPU per
# order" counts the server process(es) and the whole cluster: the postmaster's own and
# its reaped children's CPU time, plus its live children (backends, WAL writer,
# checkpointer, autovacuum). Everything shares the machine's CPUs, so the summary also
# gives the orders/s that the CPU time of an order (server, database, proxy and load
# generator together) allows: CPUs × 1000 ms / that. step-ca is built outside the
# repository into a cache directory on first use (go install, from the Go module proxy;
# without cgo, so without its YubiKey support, which needs libpcsclite).
#
#   bash bench/acme-postgres.sh                       # ROUNDS=3 N=2000 N_STEPCA=400 C=8
#   ROUNDS=5 N=3000 C=8 bash bench/acme-postgres.sh
#   PPROF_DIR=/some/dir bash bench/acme-postgres.sh   # also a CPU profile of pg-1's
#                                                     # server in the last round
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
N=${N:-2000}
N_STEPCA=${N_STEPCA:-400}
C=${C:-8}
CONNS=${CONNS:-2}
WARMUP=${WARMUP:-100}
WARMUP_STEPCA=${WARMUP_STEPCA:-40}
HTTP01=${HTTP01:-127.0.0.1:5002}
PORT=${PORT:-18460} # PORT … PORT+5 on loopback
STEPCA_VERSION=v0.30.2
STEPCA_CACHE=${STEPCA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nixpki-bench/step-ca-$STEPCA_VERSION}
PG_USER=${PG_USER:-nobody} # PostgreSQL refuses to run as root

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2; exit 1; }
command -v setpriv >/dev/null || { echo "setpriv is missing: apt-get install -y util-linux" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/acme-pg-bench.XXXXXX") # on disk: commits must really sync
pids=()
pg() { # run a PostgreSQL program as PG_USER
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --clear-groups "$pgbin/$1" "${@:2}"
	else
		"$pgbin/$1" "${@:2}"
	fi
}
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -f "$work/pg/data/postmaster.pid" ] && pg pg_ctl -D "$work/pg/data" -m fast -t 30 stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nixpki=${NIXPKI:-$work/nixpki} # NIXPKI: an already built nixpki to measure instead
[ -n "${NIXPKI:-}" ] || go build -o "$work/nixpki" ./cmd/nixpki
go build -o "$work/acmeload" ./bench/acmeload
go build -o "$work/rrproxy" ./bench/rrproxy
if [ ! -x "$STEPCA_CACHE/step-ca" ]; then
	echo "building step-ca $STEPCA_VERSION into $STEPCA_CACHE" >&2
	(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$STEPCA_CACHE" go install "github.com/smallstep/certificates/cmd/step-ca@$STEPCA_VERSION")
fi

wait_up() { # URL CAFILE
	for _ in $(seq 1 200); do
		curl -sf --cacert "$2" -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "server at $1 did not come up" >&2
	return 1
}

# PostgreSQL: a private cluster on a unix socket in $work/pg.
mkdir -p "$work/pg"
if [ "$(id -u)" = 0 ]; then
	chmod 711 "$work" # PG_USER passes through to its own directory, sees nothing else
	chown "$PG_USER" "$work/pg"
fi
pg initdb -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >"$work/initdb.log"
pg pg_ctl -D "$work/pg/data" -o "-c listen_addresses= -k $work/pg -c max_connections=200" \
	-l "$work/pg/log" -w -t 60 start >/dev/null
pg_pid=$(head -n 1 "$work/pg/data/postmaster.pid")
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work/pg" -U postgres "$@"; }
url() { echo "postgres://$1@/$2?host=$work/pg&sslmode=disable"; } # ROLE DATABASE
psql -d postgres -c "CREATE ROLE nixpki LOGIN" -c "CREATE DATABASE nixpki_one" -c "CREATE DATABASE nixpki_two"
for db in nixpki_one nixpki_two; do # serve runs with DML rights only
	psql -d "$db" \
		-c "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO nixpki" \
		-c "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO nixpki"
done

# nixpki: one CA, copied into both PostgreSQL databases and into each server's directory.
"$nixpki" init --dir "$work/ca" --name bench --external-url http://127.0.0.1:1 >"$work/init.log"
for db in nixpki_one nixpki_two; do
	"$nixpki" db migrate --dir "$work/ca" --database-url "$(url postgres "$db")" >>"$work/init.log"
	"$nixpki" db copy --from "$work/ca" --to "$(url postgres "$db")" >>"$work/init.log"
done
for d in sqlite one two-a two-b; do cp -a "$work/ca" "$work/$d"; done
root=$work/ca/root.crt
serve() { # NAME PORT [ARGS...]
	"$nixpki" serve --dir "$work/$1" --listen "127.0.0.1:$2" --http-listen "" --acme-http-port "${HTTP01##*:}" "${@:3}" \
		>"$work/$1.out" 2>"$work/$1.log" &
	pids+=($!)
}
serve sqlite "$PORT"
sqlite_pid=$!
pprof_addr=127.0.0.1:$((PORT + 6))
NIXPKI_PPROF=${PPROF_DIR:+$pprof_addr} serve one $((PORT + 1)) --database-url "$(url nixpki nixpki_one)"
one_pid=$!
proxy="127.0.0.1:$((PORT + 2))"
serve two-a $((PORT + 3)) --database-url "$(url nixpki nixpki_two)" --external-https-url "https://localhost:${proxy##*:}"
two_a=$!
serve two-b $((PORT + 4)) --database-url "$(url nixpki nixpki_two)" --external-https-url "https://localhost:${proxy##*:}"
two_b=$!
"$work/rrproxy" -listen "$proxy" -backends "127.0.0.1:$((PORT + 3)),127.0.0.1:$((PORT + 4))" 2>"$work/rrproxy.log" &
proxy_pid=$!
pids+=("$proxy_pid")
for p in "$PORT" $((PORT + 1)) $((PORT + 3)) $((PORT + 4)); do
	wait_up "https://localhost:$p/acme/acme/directory" "$root"
done

# step-ca: a root and an intermediate made with openssl, an ACME provisioner, its
# database "stepca" (step-ca creates it) in the same cluster.
s=$work/stepca
mkdir -p "$s"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench step-ca Root" \
	-addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout "$s/root.key" -out "$s/root.crt" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=bench step-ca Intermediate" \
	-keyout "$s/int.key" -out "$s/int.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$s/int.ext"
openssl x509 -req -in "$s/int.csr" -CA "$s/root.crt" -CAkey "$s/root.key" -CAcreateserial -days 2 \
	-extfile "$s/int.ext" -out "$s/int.crt" 2>/dev/null
cat >"$s/ca.json" <<JSON
{"root": "$s/root.crt", "crt": "$s/int.crt", "key": "$s/int.key",
 "address": "127.0.0.1:$((PORT + 5))", "dnsNames": ["localhost", "127.0.0.1"], "logger": {"format": "text"},
 "db": {"type": "postgresql", "dataSource": "$(url postgres "")", "database": "stepca"},
 "authority": {"provisioners": [{"type": "ACME", "name": "acme"}]},
 "tls": {"minVersion": 1.2, "maxVersion": 1.3}}
JSON
"$STEPCA_CACHE/step-ca" --insecure --acme-http-port "${HTTP01##*:}" "$s/ca.json" >"$work/step-ca.log" 2>&1 &
stepca_pid=$!
pids+=("$stepca_pid")
wait_up "https://localhost:$((PORT + 5))/acme/acme/directory" "$s/root.crt"

# run LABEL DIR CAFILE N WARMUP [ACMELOAD ARGS...]: one measured run, acmeload's line.
run() {
	timeout 900 "$work/acmeload" -label "$1" -dir "$2" -ca "$3" -n "$4" -warmup "$5" -c "$C" -conns "$CONNS" \
		-listen "$HTTP01" "${@:6}" || echo "$1 run failed (exit $?)" >&2
}
results="$work/results"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
	{
		prof_pid=
		run sqlite "https://localhost:$PORT/acme/acme/directory" "$root" "$N" "$WARMUP" -pid "$sqlite_pid"
		if [ -n "${PPROF_DIR:-}" ] && [ "$round" = "$ROUNDS" ]; then # a profile from the middle of the run
			(sleep 3 && curl -sf -o "$PPROF_DIR/pg-1.pprof" "http://$pprof_addr/debug/pprof/profile?seconds=${PPROF_SECONDS:-5}" &&
				cp "$nixpki" "$PPROF_DIR/nixpki") &
			prof_pid=$!
		fi
		run pg-1 "https://localhost:$((PORT + 1))/acme/acme/directory" "$root" "$N" "$WARMUP" -pid "$one_pid" -dbpid "$pg_pid"
		[ -z "$prof_pid" ] || wait "$prof_pid" || echo "no profile of pg-1" >&2
		run pg-2 "https://$proxy/acme/acme/directory" "$root" "$N" "$WARMUP" \
			-pid "$two_a,$two_b" -dbpid "$pg_pid" -lbpid "$proxy_pid"
		run step-ca "https://localhost:$((PORT + 5))/acme/acme/directory" "$s/root.crt" "$N_STEPCA" "$WARMUP_STEPCA" \
			-pid "$stepca_pid" -dbpid "$pg_pid"
	} | tee -a "$results"
done

echo
echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg), $("$pgbin/postgres" --version)"
awk -v cpus="$(nproc)" '
function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{
	s = $1; n[s]++
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[s, kv[1], n[s]] = kv[2] }
	if (v[s, "total_cpu_ms_per_order", n[s]] == "") v[s, "total_cpu_ms_per_order", n[s]] = v[s, "server_cpu_ms_per_order", n[s]]
}
END {
	split("orders_per_s p50_ms p99_ms server_cpu_ms_per_order db_cpu_ms_per_order total_cpu_ms_per_order lb_cpu_ms_per_order client_cpu_ms_per_order server_peak_rss_mb requests_per_order", keys, " ")
	split("sqlite pg-1 pg-2 step-ca", servers, " ")
	for (si = 1; si <= 4; si++) {
		s = servers[si]
		if (!n[s]) { printf "%-7s no successful run\n", s; continue }
		line = sprintf("%-7s median of %d runs:", s, n[s])
		for (k = 1; k <= 10; k++) {
			delete a; for (i = 1; i <= n[s]; i++) a[i] = v[s, keys[k], i] + 0
			m[s, keys[k]] = median(a, n[s]); line = line sprintf(" %s=%s", keys[k], m[s, keys[k]])
		}
		# Everything runs on these CPUs: the CPU time of an order (server, database,
		# proxy and load generator) caps orders/s at cpus / that.
		all = m[s, "total_cpu_ms_per_order"] + m[s, "lb_cpu_ms_per_order"] + m[s, "client_cpu_ms_per_order"]
		print line sprintf(" cpu_bound_orders_per_s=%.0f", all > 0 ? cpus * 1000 / all : 0)
	}
	if (n["pg-1"] && n["step-ca"]) printf "pg-1/step-ca orders_per_s = %.2f\n", m["pg-1", "orders_per_s"] / m["step-ca", "orders_per_s"]
	if (n["pg-1"] && n["pg-2"]) printf "pg-2/pg-1 orders_per_s = %.2f\n", m["pg-2", "orders_per_s"] / m["pg-1", "orders_per_s"]
	if (n["pg-1"] && n["sqlite"]) printf "pg-1/sqlite orders_per_s = %.2f\n", m["pg-1", "orders_per_s"] / m["sqlite", "orders_per_s"]
}' "$results"
