#!/usr/bin/env bash
# `make measure-containers`: what the containers cost and how they behave, measured on this
# machine with podman (figures in docs/benchmarks.md, "Containers"; summary in README.md).
#
#  1. image sizes (podman's figure: the compressed-layer-free size of every layer);
#  2. start: `podman run` of each image to its health answering SERVING (host network, ports
#     from FABRIKAM_PORT_BASE, default 27000), median of 3;
#  3. `podman-compose up` from nothing (a new volume) to the first delivery the gateway accepts
#     (202), ROUNDS times (default 3);
#  4. each container's memory once the system has been idle for 15 s (resident set of its
#     processes, from /proc);
#  5. a rolling restart of every backend service under public load, all nine at once as
#     `kubectl rollout restart` would: for each, a second container with the same settings and
#     network alias starts and passes its health check; then the old one leaves the service's
#     name while it still serves (Kubernetes: out of the Service's endpoints, preStop), and once
#     every caller has resolved the name again (the RPC client re-resolves every 30 s) it gets
#     SIGTERM and drains. FABRIKAM_ROLL=sigterm skips the leaving: the old ones stay in the
#     names until they stop, as a compose roll without that step would have it; load
#     is tools/roll-load.py through the gateway (POST /v1/deliveries and GET status) for the whole roll;
#     every non-2xx answer, error or timeout counts as failed, and each kind of failure is listed
#     with its status, message and when it happened (tools/roll-load.py records every request).
#     Then the gateway alone, restarted in place (one published port: nothing can stand in for it
#     without a load balancer).
# Needs 127.0.0.1:8080 free. FABRIKAM_SKIP_IMAGES=1 uses the images already built;
# FABRIKAM_MEASURE=roll measures only the rolling restart (after one compose up);
# FABRIKAM_ROLL_LOGS=DIR keeps every request of the load and every container's log there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rounds=${ROUNDS:-3}
base=${FABRIKAM_PORT_BASE:-27000}
tag=${FABRIKAM_TAG:-dev}
project=fabrikam-measure
work=$(mktemp -d)
bash tools/install-container-deps.sh
bash tools/install-deps.sh
if [[ ${FABRIKAM_SKIP_IMAGES:-} != 1 ]]; then bash tools/container-images.sh; fi
probe=.build/container-bin/health-probe
[[ -x $probe ]] || { echo "no $probe: run tools/container-images.sh --prebuilt first"; exit 1; }

down() {
    podman-compose -p "$project" -f compose.yaml down >/dev/null 2>&1 || true
    for name in $(podman ps -a --format '{{.Names}}' | grep -- "^${project}_.*_surge$"); do podman rm -f "$name" >/dev/null 2>&1 || true; done
    # Whatever of the project is left (a run once left the engines' volumes and network behind,
    # still held by a container), then its networks and volumes.
    podman ps -a -q --filter "label=io.podman.compose.project=$project" | xargs -r podman rm -f -t 5 >/dev/null 2>&1 || true
    for network in backend engines; do podman network rm -f "${project}_$network" >/dev/null 2>&1 || true; done
    for volume in postgres nats; do podman volume rm -f "${project}_$volume" >/dev/null 2>&1 || true; done
}
trap 'down; rm -rf "$work"' EXIT
down

declare -a names executables ports healths
while IFS=$'\t' read -r name executable port health; do
    [[ -z $name || $name == \#* ]] && continue
    names+=("$name"); executables+=("$executable"); ports+=("$port"); healths+=("$health")
done < deploy/services.tsv
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
key=fdk_local_demo_key
cat > "$work/delivery.json" <<'JSON'
{"pickupLocation": {"latitude": 47.6101, "longitude": -122.3421},
 "dropoffLocation": {"latitude": 47.6205, "longitude": -122.3493},
 "packageInfo": {"size": "PACKAGE_SIZE_SMALL", "weight": 1.5}}
JSON
post_delivery() {  # prints the HTTP status (000 when nothing answered)
    curl -s -o "$work/last-post" -w '%{http_code}' --max-time 5 -X POST http://127.0.0.1:8080/v1/deliveries \
        -H "Authorization: Bearer $key" -d @"$work/delivery.json" || true
}

if [[ ${FABRIKAM_MEASURE:-all} != roll ]]; then
echo "## Images"
echo
echo "| image | size | service binary (stripped) |"
echo "|---|---:|---:|"
for i in "${!names[@]}"; do
    size=$(podman image inspect "fabrikam/${names[$i]}:$tag" --format '{{.Size}}')
    binary=$(stat -c %s ".build/container-bin/${executables[$i]}")
    printf '| fabrikam/%s | %.0f MB | %.1f MB |\n' "${names[$i]}" "$(echo "$size / 1000000" | bc -l)" "$(echo "$binary / 1000000" | bc -l)"
done
echo
echo "Shared by every image: debian:bookworm-slim $(podman image inspect docker.io/library/debian:bookworm-slim --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'), the C libraries and health-probe ($(stat -c %s .build/container-bin/health-probe | awk '{printf "%.1f MB", $1/1e6}'))."
echo

echo "## Start: podman run to SERVING (median of 3)"
echo
echo "| image | ms |"
echo "|---|---:|"
for i in "${!names[@]}"; do
    port=$((base + i))
    samples=()
    for _ in 1 2 3; do
        started=$(now_ms)
        id=$(podman run -d --init --network host --read-only -v /var/lib/fabrikam \
            -e FABRIKAM_LISTEN_HOST=127.0.0.1 -e FABRIKAM_PORT="$port" "fabrikam/${names[$i]}:$tag" 2>/dev/null)
        for _ in $(seq 1 1000); do
            if [[ ${healths[$i]} == grpc ]]; then
                "$probe" --port "$port" --timeout-ms 200 2>/dev/null && break
            else
                "$probe" --port "$port" --http-path "${healths[$i]#http:}" --timeout-ms 200 2>/dev/null && break
            fi
            sleep 0.01
        done
        samples+=($(( $(now_ms) - started )))
        podman rm -f -v "$id" >/dev/null 2>&1
    done
    echo "| fabrikam/${names[$i]} | $(printf '%s\n' "${samples[@]}" | median) |"
done
echo

fi

echo "## podman-compose up to the first accepted delivery"
echo
samples=()
for round in $(seq 1 "$rounds"); do
    started=$(now_ms)
    podman-compose -p "$project" -f compose.yaml up -d >"$work/up.log" 2>&1 || { tail "$work/up.log"; exit 1; }
    up_done=$(now_ms)
    for _ in $(seq 1 1200); do [[ $(post_delivery) == 202 ]] && break; sleep 0.05; done
    accepted=$(now_ms)
    [[ $(cat "$work/last-post") == *deliveryId* ]] || { echo "no delivery accepted in round $round"; exit 1; }
    echo "- round $round: podman-compose up returned after $((up_done - started)) ms; first 202 at $((accepted - started)) ms"
    samples+=($((accepted - started)))
    ((round == rounds)) || down
done
echo "- median: $(printf '%s\n' "${samples[@]}" | median) ms"
echo

sleep 15  # idle (memory below), and the first delivery scheduled (its status is read under load)
if [[ ${FABRIKAM_MEASURE:-all} != roll ]]; then
echo "## Idle memory (resident, after 15 s idle)"
echo
echo "| container | RSS MiB |"
echo "|---|---:|"
for name in "${names[@]}"; do
    container=${project}_${name}_1
    pid=$(podman inspect "$container" --format '{{.State.Pid}}')
    total=0
    for p in $pid $(pgrep -P "$pid"); do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${rss:-0}))
    done
    printf '| %s | %.1f |\n' "$name" "$(echo "$total / 1024" | bc -l)"
done
echo

fi

echo "## Rolling restart under load"
echo
id=$(sed -nE 's/.*"deliveryId":"([^"]+)".*/\1/p' "$work/last-post")
load() {  # load SECONDS NAME: public traffic through the gateway, in the background
    python3 tools/roll-load.py --rps 20 --seconds "$1" --out "$work/$2-post.tsv" \
        --method POST --body "$work/delivery.json" --header "Authorization: Bearer $key" \
        --header 'content-type: application/json' --url http://127.0.0.1:8080/v1/deliveries &
    python3 tools/roll-load.py --rps 100 --seconds "$1" --out "$work/$2-get.tsv" \
        --header "Authorization: Bearer $key" --url "http://127.0.0.1:8080/v1/deliveries/$id/status" &
}
summary() {  # summary FILE: "N requests, N answered 2xx, N failed"
    awk -F'\t' '{n++} $2 >= 200 && $2 < 300 {ok++} END {printf "%d requests, %d answered 2xx, %d failed (non-2xx, errors, timeouts)", n, ok, n-ok}' "$1"
}
failures() {  # failures FILE ORIGIN_MS: each kind of failure (status, message without ids), when
    awk -F'\t' -v origin="$2" '!($2 >= 200 && $2 < 300) {
            message = $4; gsub(/[0-9a-f]{8,}|[0-9]+(\.[0-9]+)?/, "#", message)
            kind = $2 " " substr(message, 1, 160); t = ($1 - origin) / 1000
            if (!(kind in count)) { first[kind] = t; order[++kinds] = kind }
            count[kind]++; last[kind] = t
        }
        END { for (i = 1; i <= kinds; i++) { k = order[i]; printf "  - %d x %s (from %.1f s to %.1f s)\n", count[k], k, first[k], last[k] } }' "$1"
}
save_logs() {  # the containers' logs, when FABRIKAM_ROLL_LOGS names a folder
    [[ -n ${FABRIKAM_ROLL_LOGS:-} ]] || return 0
    mkdir -p "$FABRIKAM_ROLL_LOGS"
    cp "$work"/*.tsv "$FABRIKAM_ROLL_LOGS"/ 2>/dev/null || true
    for container in $(podman ps -a --format '{{.Names}}' | grep -- "^${project}_"); do
        podman logs -t "$container" > "$FABRIKAM_ROLL_LOGS/$container.log" 2>&1 || true
    done
}
backends=()
for i in "${!names[@]}"; do [[ ${names[$i]} == gateway ]] || backends+=("${names[$i]}"); done
withdraw() {  # withdraw CONTAINER: out of its service's name, still serving at its address
    # What Kubernetes does to a terminating pod (out of the Service's endpoints, preStop runs):
    # podman's DNS drops a container's alias only when it leaves the network, so it leaves and
    # comes back at once with the same address and MAC but without the alias (the connections
    # open to it carry on; a few milliseconds without a link, within TCP's retransmission).
    # Every network it is on: a service on the engines network too answers to its name there,
    # and callers on both networks would still find it.
    local network address mac
    for network in $(podman inspect "$1" --format '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}'); do
        address=$(podman inspect "$1" --format "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}")
        mac=$(podman inspect "$1" --format "{{(index .NetworkSettings.Networks \"$network\").MacAddress}}")
        podman network disconnect "$network" "$1"
        podman network connect --ip "$address" --mac-address "$mac" "$network" "$1"
    done
}
roll=${FABRIKAM_ROLL:-withdraw}
load 75 roll
roll_started=$(now_ms)
sleep 5
for name in "${backends[@]}"; do
    podman container clone --name "${project}_${name}_surge" "${project}_${name}_1" >/dev/null
    podman start "${project}_${name}_surge" >/dev/null 2>&1
done
for name in "${backends[@]}"; do
    for _ in $(seq 1 300); do podman healthcheck run "${project}_${name}_surge" >/dev/null 2>&1 && break; sleep 0.1; done
done
served=$(( $(now_ms) - roll_started ))
seconds() { echo "$1 / 1000" | bc -l | xargs printf '%.1f'; }
if [[ $roll == withdraw ]]; then
    for name in "${backends[@]}"; do withdraw "${project}_${name}_1"; done
    echo "- t = 0: load starts; 5.0 s: the nine replacements start; $(seconds "$served") s: all serve, and the nine old ones leave the services' names ($(seconds $(( $(now_ms) - roll_started ))) s), still serving for 35 s while every caller resolves the names again (the RPC client re-resolves every 30 s; Kubernetes: endpoints removed, preStop)"
else
    echo "- t = 0: load starts; 5.0 s: the nine replacements start; $(seconds "$served") s: all serve; waiting 35 s for every caller to resolve them (the old ones stay in the names until they stop)"
fi
sleep 35
stop_started=$(now_ms)
stoppers=()
for name in "${backends[@]}"; do podman stop -t 30 "${project}_${name}_1" >/dev/null 2>&1 & stoppers+=($!); done
wait "${stoppers[@]}"
echo "- $(seconds $((stop_started - roll_started))) s: SIGTERM to the nine old containers; they drained and stopped in $(( $(now_ms) - stop_started )) ms"
wait
echo "- POST /v1/deliveries (20/s): $(summary "$work/roll-post.tsv")"
failures "$work/roll-post.tsv" "$roll_started"
echo "- GET status (100/s): $(summary "$work/roll-get.tsv")"
failures "$work/roll-get.tsv" "$roll_started"
echo
echo "Gateway restarted in place (podman restart: SIGTERM, drain, start), same load for 20 s:"
load 20 gateway
gateway_started=$(now_ms)
sleep 5
podman restart -t 30 "${project}_gateway_1" >/dev/null 2>&1
echo "- 5.0 s: SIGTERM; back in $(( $(now_ms) - gateway_started - 5000 )) ms"
wait
echo "- POST /v1/deliveries (20/s): $(summary "$work/gateway-post.tsv")"
failures "$work/gateway-post.tsv" "$gateway_started"
echo "- GET status (100/s): $(summary "$work/gateway-get.tsv")"
failures "$work/gateway-get.tsv" "$gateway_started"
save_logs
