#!/usr/bin/env bash
# `make bench-scaled`: durable delivery intake and end-to-end completion on the scaled system
# (PostgreSQL, NATS JetStream, every service in network namespaces; tools/run-scaled.sh) with one
# and with two replicas of everything, against the embedded default (SQLite, tools/run.sh), in
# one run on one machine. Needs root (namespaces). Release build, as bench-ingestion.
#
# For each system, fresh, in this order (SYSTEMS="embedded scaled-1 scaled-2"):
#   1. end-to-end batch: E2E_DELIVERIES deliveries through the gateway(s) (JSON, E2E_CONCURRENCY
#      at once, round-robin over the gateway replicas), each accepted id followed to a final
#      stage in Delivery's store: completions/s, accept->final p50/p99, and every accepted id read
#      back through the gateway (tools/scaled/bench_e2e.py). Before the intake load, so the intake
#      backlog does not sit in front of it.
#   2. intake: h2load sends REQUESTS CreateDelivery calls straight to Ingestion as
#      bench-ingestion does (same body, CLIENTS connections x STREAMS streams); with N replicas,
#      N h2load processes at once, one per replica address, CLIENTS/N connections and REQUESTS/N
#      each, from the load namespace. Accepted: Ingestion's own grpc_server_handled_total{OK}
#      for CreateDelivery, summed over replicas. CPU per request: the utime+stime ticks of every
#      process of the system (services; on the scaled system also PostgreSQL's and NATS's
#      processes, shown apart) over the load, divided by accepted requests (h2load not counted;
#      the system drains the backlog while it takes more, and that work is in the figure).
#   3. the backlog: waits (at most DRAIN_SECONDS) until Delivery's store holds a final stage for
#      as many deliveries as were accepted (batch + intake): completions/s from the start of the
#      load, and every process's CPU from the start of the load to the end, per accepted request.
#   4. nothing accepted lost: how many accepted deliveries did not reach a final stage (a count,
#      not per id: h2load's requests are identical and their ids are made by Ingestion; the
#      batch's ids are checked one by one, in the store and through the gateway).
# INTAKE_ALONE=1: every Workflow process (the request queue's consumers) is stopped (SIGSTOP) over
# the intake load and continued (SIGCONT) after it, on every system alike, so the intake tier has
# the machine to itself, as on a cluster where Workflow runs on other hosts: without it, on one
# machine the backlog's sagas share the cores with the intake and the faster the backlog drains,
# the lower the intake figure. Accepted requests still wait durably on the queue; the backlog
# drains after the load, and is measured as without it.
# PG_TOP_STATEMENTS=N: on the scaled systems, also PostgreSQL's N statements that took the most
# time over the intake load (pg_stat_statements, loaded for this run through FABRIKAM_PG_OPTIONS).
# A measurement, not a test: nothing is asserted about the figures. Everything it starts is
# stopped on exit (trap): run.sh's processes, the namespaces (prefix fabb, its own state folder,
# so it runs beside a `make run-scaled` or scaled-test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-20000}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-16}
E2E_DELIVERIES=${E2E_DELIVERIES:-300}
E2E_CONCURRENCY=${E2E_CONCURRENCY:-8}
E2E_SECONDS=${E2E_SECONDS:-300}
DRAIN_SECONDS=${DRAIN_SECONDS:-600}
SYSTEMS=${SYSTEMS:-"embedded scaled-1 scaled-2"}
PG_TOP_STATEMENTS=${PG_TOP_STATEMENTS:-}
INTAKE_ALONE=${INTAKE_ALONE:-}
[[ -z $PG_TOP_STATEMENTS ]] || export FABRIKAM_PG_OPTIONS="${FABRIKAM_PG_OPTIONS:-} -c shared_preload_libraries=pg_stat_statements"
[[ $(id -u) == 0 ]] || { echo "bench-scaled: needs root (network namespaces)" >&2; exit 1; }
bash tools/install-deps.sh >/dev/null

echo "building (release)" >&2
if ! swift build -c release >/dev/null; then echo "bench-scaled: swift build -c release failed" >&2; exit 1; fi
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
# As bench-ingestion: a large, fast fleet; sagas that find no free drone within their retries
# fail and are compensated (a final state too).
export FABRIKAM_DRONES=${FABRIKAM_DRONES:-300} FABRIKAM_TIME_SCALE=${FABRIKAM_TIME_SCALE:-1000} FABRIKAM_TICK_MS=${FABRIKAM_TICK_MS:-200}
export FABRIKAM_LOG_LEVEL=warning FABRIKAM_BIN_DIR=$bin
export FABRIKAM_NETNS_PREFIX=fabb FABRIKAM_SCALED_DIR=/tmp/fabrikam-scaled-fabb
P=$FABRIKAM_NETNS_PREFIX
base=${FABRIKAM_BENCH_PORT_BASE:-26151}
launcher=""
paused=()
cleanup() {
  if (( ${#paused[@]} > 0 )); then kill -CONT "${paused[@]}" 2>/dev/null || true; fi
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  bash tools/run-scaled.sh --down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash tools/bench/create-delivery-request.sh "$work/create.bin"

# inns NS CMD...: CMD inside namespace NS, or here when NS is empty.
inns() { local ns=$1; shift; if [[ -n $ns ]]; then ip netns exec "$ns" "$@"; else "$@"; fi; }

# cpu PIDS... > file: "pid ticks comm" per live process (utime + stime from /proc/PID/stat).
cpu() { python3 - "$@" <<'PY'
import sys, time
print("t", time.monotonic())
for pid in sys.argv[1:]:
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    comm = s[s.index("(") + 1:s.rindex(")")].replace(" ", "_")
    f = s[s.rindex(")") + 2:].split()
    print(pid, int(f[11]) + int(f[12]), comm)
PY
}
# cpu_delta BEFORE AFTER ACCEPTED ENGINES_REGEX: prints "total_us_per_req services_us_per_req
# engines_us_per_req busy_cores window_s" and writes the per-process breakdown to AFTER.top.
cpu_delta() { python3 - "$@" <<'PY'
import os, re, sys
tick = os.sysconf("SC_CLK_TCK")
read = lambda p: {l.split()[0]: (float(l.split()[1]), l.split()[2] if l.split()[0] != "t" else "") for l in open(p) if l.strip()}
before, after = read(sys.argv[1]), read(sys.argv[2])
seconds = after.pop("t")[0] - before.pop("t")[0]
accepted, engines = max(1, int(sys.argv[3])), re.compile(sys.argv[4])
by_comm = {}
for pid, (t, comm) in after.items():
    d = t - before.get(pid, (0, comm))[0]
    name = "postgres" if comm.startswith("postgres") else comm
    by_comm[name] = by_comm.get(name, 0) + d
eng = sum(v for k, v in by_comm.items() if engines.search(k))
tot = sum(by_comm.values())
us = lambda t: t * 1e6 / tick / accepted
with open(sys.argv[2] + ".top", "w") as out:
    for k, v in sorted(by_comm.items(), key=lambda kv: -kv[1]):
        out.write(f"{k} {v * 1000 / tick:.0f}ms {us(v):.1f}us/req\n")
print(f"{us(tot):.1f} {us(tot - eng):.1f} {us(eng):.1f} {tot / tick / seconds:.2f} {seconds:.2f}")
PY
}

# load NS URL... : h2load once per URL at the same time (CLIENTS and REQUESTS split over them);
# prints "rps p50_ms p99_ms failed wall_s".
load() {
  local ns=$1; shift
  local k=$#; local i=0; local pids=()
  for url in "$@"; do
    inns "$ns" h2load -c $((CLIENTS / k)) -m "$STREAMS" -n $((REQUESTS / k)) -d "$work/create.bin" \
      -H "content-type: application/grpc" -H "te: trailers" --log-file="$work/h2load-$i.log" "$url" > "$work/h2load-$i.out" 2>&1 &
    pids+=($!); i=$((i + 1))
  done
  for p in "${pids[@]}"; do wait "$p"; done
  python3 - "$work" "$k" <<'PY'
import re, sys
work, k = sys.argv[1], int(sys.argv[2])
lat, done, failed, wall = [], 0, 0, 0.0
for i in range(k):
    out = open(f"{work}/h2load-{i}.out").read()
    m = re.search(r"finished in ([\d.]+)(ms|s)", out)
    wall = max(wall, float(m.group(1)) / (1000 if m.group(2) == "ms" else 1))
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    done += int(r.group(4)); failed += int(r.group(5))
    lat += [int(l.split()[2]) for l in open(f"{work}/h2load-{i}.log") if l.strip()]
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"{done / wall:.0f} {pick(0.5):.2f} {pick(0.99):.2f} {failed} {wall:.2f}")
PY
}

# handled NS HOST:PORT... : CreateDelivery calls Ingestion answered, "ok other", summed.
handled() {
  local ns=$1; shift; local ok=0 other=0
  for a in "$@"; do
    read -r o t < <(inns "$ns" curl -sf "http://$a/metrics" | awk '
      /^grpc_server_handled_total/ && /grpc_method="CreateDelivery"/ { if ($0 ~ /grpc_code="OK"/) o += $NF; else t += $NF }
      END { printf "%d %d\n", o, t }')
    ok=$((ok + o)); other=$((other + t))
  done
  echo "$ok $other"
}

# saga_calls NS HOST:PORT... : Workflow's outgoing calls, mean ms and count per method, summed
# over replicas (grpc_client_handling_seconds): where a saga's time goes.
saga_calls() {
  local ns=$1; shift
  for a in "$@"; do inns "$ns" curl -sf "http://$a/metrics" || true; done | python3 -c '
import re, sys
sums, counts = {}, {}
for line in sys.stdin:
    m = re.match(r"grpc_client_handling_seconds_(sum|count)\{(.*)\} (\S+)", line)
    if not m:
        continue
    method = re.search(r"grpc_method=\"([^\"]+)\"", m.group(2)).group(1)
    (sums if m.group(1) == "sum" else counts)[method] = (sums if m.group(1) == "sum" else counts).get(method, 0) + float(m.group(3))
print("; ".join(f"{k} {sums.get(k, 0) / c * 1000:.1f} ms x{c:.0f}" for k, c in sorted(counts.items(), key=lambda kv: -sums.get(kv[0], 0)) if c))'
}

rows=()
details=()
for system in $SYSTEMS; do
  echo "== $system" >&2
  case $system in
    embedded)
      export FABRIKAM_DATA_DIR="$work/embedded" FABRIKAM_PORT_BASE=$base
      bash tools/run.sh --no-build > "$work/run.log" 2>&1 &
      launcher=$!
      for _ in $(seq 1 300); do grep -q "system up" "$work/run.log" && break; sleep 0.1; done
      grep -q "system up" "$work/run.log" || { cat "$work/run.log"; exit 1; }
      unset FABRIKAM_DATA_DIR FABRIKAM_PORT_BASE
      ns="" gateways="127.0.0.1:$((base + 9))" store="sqlite:$work/embedded/delivery.sqlite"
      urls=("http://127.0.0.1:$((base + 5))/fabrikam.dronedelivery.ingestion.v1.IngestionService/CreateDelivery")
      metrics=("127.0.0.1:$((base + 5 + 100))")
      procs() { cat "$work"/embedded/pids/*.pid; }
      workflow_metrics=("127.0.0.1:$((base + 6 + 100))")
      # Not final: rows Delivery holds short of a final stage, requests still queued, dead letters.
      pending() { echo "$(sqlite3 "$work/embedded/delivery.sqlite" "SELECT COUNT(*) FROM deliveries WHERE stage NOT IN (5, 6, 7)") \
        $(sqlite3 "$work/embedded/broker.sqlite" "SELECT COUNT(*) FROM messages WHERE queue = 'delivery-requests'") \
        $(sqlite3 "$work/embedded/broker.sqlite" "SELECT COUNT(*) FROM dead_letters WHERE queue = 'delivery-requests'")"; }
      final() { sqlite3 "$work/embedded/delivery.sqlite" "SELECT COUNT(*) FROM deliveries WHERE stage IN (5, 6, 7)" 2>/dev/null || echo 0; }
      label="embedded default (SQLite, 1 process each)"
      ;;
    scaled-*)
      replicas=${system#scaled-}
      export FABRIKAM_REPLICAS=$replicas
      bash tools/run-scaled.sh --down >/dev/null 2>&1
      bash tools/run-scaled.sh --up --no-build > "$work/run.log" 2>&1 || { cat "$work/run.log"; exit 1; }
      hosts=(); for i in $(seq 1 "$replicas"); do hosts+=("198.18.0.$((10 + i))"); done
      ns=$P-load store=postgres
      gateways=$(printf '%s:8080,' "${hosts[@]}"); gateways=${gateways%,}
      urls=(); metrics=()
      for a in "${hosts[@]}"; do
        urls+=("http://$a:15056/fabrikam.dronedelivery.ingestion.v1.IngestionService/CreateDelivery"); metrics+=("$a:15156")
      done
      procs() { for h in data a b c d; do ip netns pids "$P-$h" 2>/dev/null || true; done; }
      workflow_metrics=(); for a in "${hosts[@]}"; do workflow_metrics+=("$a:15157"); done
      pending() { echo "$(ip netns exec "$P-data" psql -h 198.18.0.10 -U app -d fabrikam -X -A -t \
                            -c "SELECT COUNT(*) FROM delivery.deliveries WHERE stage NOT IN (5, 6, 7)") \
        $(ip netns exec "$P-data" curl -s "http://198.18.0.10:8222/jsz?streams=true" | python3 -c '
import json, sys
d = {s["name"]: s["state"]["messages"] for a in json.load(sys.stdin).get("account_details", []) for s in a.get("stream_detail", [])}
print(d.get("fabrikam_Q_delivery-requests", 0), d.get("fabrikam_DLQ", 0))')"; }
      final() { ip netns exec "$P-data" psql -h 198.18.0.10 -U app -d fabrikam -X -A -t \
                  -c "SELECT COUNT(*) FROM delivery.deliveries WHERE stage IN (5, 6, 7)" 2>/dev/null || echo 0; }
      label="scaled, $replicas replica$([[ $replicas == 1 ]] || echo s) (PostgreSQL + JetStream)"
      ;;
    *) echo "bench-scaled: unknown system $system (embedded, scaled-1 .. scaled-4)" >&2; exit 2 ;;
  esac
  sleep 2  # the simulator registers its fleet

  read -r e_acc e_rej e_wall e_rate e_p50 e_p99 e_done e_failed e_cancelled e_notfinal e_unknown < <(
    inns "$ns" timeout $((E2E_SECONDS + 120)) python3 tools/scaled/bench_e2e.py --gateways "$gateways" --store "$store" \
      -n "$E2E_DELIVERIES" -c "$E2E_CONCURRENCY" --timeout "$E2E_SECONDS")

  read -r ok0 other0 < <(handled "$ns" "${metrics[@]}")
  statements() { ip netns exec "$P-data" psql -h 198.18.0.10 -U app -d fabrikam -X -q "$@"; }
  if [[ -n $PG_TOP_STATEMENTS && $system == scaled-* ]]; then
    statements -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
  fi
  if [[ -n $INTAKE_ALONE ]]; then
    for p in $(procs); do [[ $(cat "/proc/$p/comm" 2>/dev/null) == workflow-servic* ]] && paused+=("$p"); done
    (( ${#paused[@]} > 0 )) || { echo "bench-scaled: INTAKE_ALONE: no Workflow process found on $system" >&2; exit 1; }
    kill -STOP "${paused[@]}"
    label="$label, Workflow paused over the intake"
  fi
  cpu $(procs) > "$work/cpu-before"
  read -r rps p50 p99 h2failed wall < <(load "$ns" "${urls[@]}")
  cpu $(procs) > "$work/cpu-after"
  if (( ${#paused[@]} > 0 )); then kill -CONT "${paused[@]}"; paused=(); fi
  if [[ -n $PG_TOP_STATEMENTS && $system == scaled-* ]]; then
    echo "$system: PostgreSQL's top statements over the intake load (ms total, calls, ms mean, rows):" >&2
    statements -A -F ' | ' -t -c "SELECT round(total_exec_time)::bigint, calls, round((total_exec_time / calls)::numeric, 3), rows,
        left(regexp_replace(query, '\s+', ' ', 'g'), 160) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $PG_TOP_STATEMENTS" >&2
  fi
  read -r ok1 other1 < <(handled "$ns" "${metrics[@]}")
  accepted=$((ok1 - ok0)); rejected=$((other1 - other0))
  read -r us_total us_services us_engines busy window < <(cpu_delta "$work/cpu-before" "$work/cpu-after" "$accepted" '^(postgres|nats-server)$')
  top=$(head -6 "$work/cpu-after.top" | tr '\n' ';' | sed 's/;$//; s/;/; /g')

  expect=$((e_acc + accepted))
  start=$(date +%s.%N)
  while (( $(final) < expect )) && (( $(date +%s) - ${start%.*} < DRAIN_SECONDS )); do sleep 1; done
  drain=$(echo "$(date +%s.%N) - $start + $wall" | bc)
  cpu $(procs) > "$work/cpu-drained"
  nfinal=$(final)
  notfinal=$(( expect - nfinal ))
  read -r in_delivery queued dead < <(pending)
  calls=$(saga_calls "$ns" "${workflow_metrics[@]}")
  # The whole cost of an accepted delivery: every process's CPU from the start of the load until
  # the backlog is final, per accepted request; and the completions per second of that backlog.
  read -r us_drained _ < <(cpu_delta "$work/cpu-before" "$work/cpu-drained" "$accepted" '^(postgres|nats-server)$')
  drain_rate=$(echo "scale=0; ($nfinal - $e_acc) / $drain" | bc)

  rows+=("| $label | $rps | $p50 | $p99 | $((h2failed + rejected)) | $us_total | $us_services | $us_engines | $e_rate | $e_p50 | $e_p99 | $((e_acc)) / $e_done / $e_failed | $e_notfinal + $e_unknown | $drain_rate | $us_drained | $notfinal of $expect |")
  details+=("$system: not final at the end: $notfinal = $in_delivery in Delivery short of a final stage + $queued still queued + $dead dead letters + $((notfinal - in_delivery - queued - dead)) unaccounted (a request being taken counts twice). Workflow's calls (mean, count): $calls")
  details+=("$system: intake $accepted accepted in ${wall} s, backlog final after $(printf %.0f "$drain") s; CPU over the intake: $busy cores busy over ${window} s; by process (ms, µs/accepted request): $top")
  echo "${rows[-1]}" >&2

  case $system in
    embedded) kill -TERM "$launcher"; wait "$launcher" 2>/dev/null || true; launcher="" ;;
    *) bash tools/run-scaled.sh --down >/dev/null ;;
  esac
done

cat <<TABLE
bench-scaled: h2load -n $REQUESTS -c $CLIENTS -m $STREAMS CreateDelivery into Ingestion$([[ -z $INTAKE_ALONE ]] || echo " (INTAKE_ALONE: Workflow stopped over it)"); end-to-end batch $E2E_DELIVERIES deliveries through the gateway(s), $E2E_CONCURRENCY at once; $(nproc) cores, everything on this machine, release build; $(date -u +%FT%TZ)

| system | intake req/s | p50 ms | p99 ms | failed | intake CPU µs/req (all) | services | engines | batch completions/s | batch accept→final p50 s | p99 s | batch accepted / completed / failed | batch not final + unknown to status | backlog completions/s | CPU µs/req, load start to backlog final | accepted not final at the end |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$(printf '%s\n' "${rows[@]}")

$(printf '%s\n' "${details[@]}")
TABLE
