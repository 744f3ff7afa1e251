#!/usr/bin/env bash
# What preparing a statement saves PostgreSQL's server, measured with pgbench (PostgreSQL's
# own tool): a primary-key read of a 300-byte value, sent unnamed and planned on every call
# (`-M extended`, what libpq's PQexecParams does) against prepared once per connection
# (`-M prepared`, what the StoragePostgres layer does since 12a57df), ROUNDS times each in
# turn. Prints transactions/s and the server's CPU per statement (the backends' CPU, counted
# by the postmaster when they exit). A measurement, not a test. Starts its own throwaway
# server through tools/with-postgres.sh (root: it runs the server as `postgres`).
#   bash tools/bench-postgres-statements.sh        (CLIENTS=4 STATEMENTS=10000 ROUNDS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${FABRIKAM_TEST_POSTGRES_URL:-} ]]; then exec bash tools/with-postgres.sh bash "$0" "$@"; fi
CLIENTS=${CLIENTS:-4}
STATEMENTS=${STATEMENTS:-10000}
ROUNDS=${ROUNDS:-2}
bin=/usr/lib/postgresql/15/bin
url=$FABRIKAM_TEST_POSTGRES_URL
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PGOPTIONS="-c client_min_messages=warning" psql "$url" -X -q -c "DROP TABLE IF EXISTS bench_kv" -c "CREATE TABLE bench_kv (k TEXT PRIMARY KEY, data BYTEA NOT NULL)" \
  -c "INSERT INTO bench_kv SELECT 'k' || g, decode(repeat('ab', 150), 'hex') FROM generate_series(1, 10000) g" -c "ANALYZE bench_kv"
printf '%s\n' '\set n random(1, 10000)' "SELECT data FROM bench_kv WHERE k = 'k' || :n;" > "$work/read.sql"
postmaster=$(head -1 "$(psql "$url" -X -A -t -c "SHOW data_directory")/postmaster.pid")
server_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat"; }
echo "pgbench: $CLIENTS clients, $STATEMENTS statements each, $(nproc) cores, $(date -u +%FT%TZ)"
echo "| mode | tps | server CPU µs per statement |"
echo "|---|---:|---:|"
for _ in $(seq 1 "$ROUNDS"); do
  for mode in extended prepared; do
    before=$(server_ticks)
    out=$("$bin/pgbench" "$url" -n -c "$CLIENTS" -j 1 -t "$STATEMENTS" -M "$mode" -f "$work/read.sql" 2>&1)
    after=$(server_ticks)
    tps=$(grep -o 'tps = [0-9.]*' <<<"$out" | awk '{printf "%.0f", $3}')
    us=$(echo "scale=1; ($after - $before) * 1000000 / $(getconf CLK_TCK) / ($CLIENTS * $STATEMENTS)" | bc)
    echo "| $([[ $mode == extended ]] && echo "unnamed (-M extended)" || echo "prepared (-M prepared)") | $tps | $us |"
  done
done
