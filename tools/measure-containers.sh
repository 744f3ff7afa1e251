#!/usr/bin/env bash
# `make measure-containers`: what the containers cost and how they behave, measured on this
# machine with podman (figures in README.md, "Containers").
#
#  1. image sizes (podman's figure: the compressed-layer-free size of every layer);
#  2. start: `podman run` of each image to its health answering SERVING (host network, ports
#     from FABRIKAM_PORT_BASE, default 27000), median of 3;
#  3. `podman-compose up` from nothing (a new volume) to the first delivery the gateway accepts
#     (202), ROUNDS times (default 3);
#  4. each container's memory once the system has been idle for 15 s (resident set of its
#     processes, from /proc);
#  5. a rolling restart of every backend service under public load: for each, a second
#     container with the same settings and network alias starts, passes its health check, and
#     once every caller has resolved the name again (the RPC client re-resolves every 30 s) the
#     old one gets SIGTERM and drains, all nine at once as `kubectl rollout restart` would; load
#     is h2load through the gateway (POST /v1/deliveries and GET status) for the whole roll;
#     every non-2xx answer, error or timeout counts as failed. Then the gateway alone, restarted
#     in place (one published port: nothing can stand in for it without a load balancer).
# Needs 127.0.0.1:8080 free. FABRIKAM_SKIP_IMAGES=1 uses the images already built.
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
    podman network rm -f "${project}_backend" >/dev/null 2>&1 || true
    podman volume rm -f "${project}_data" >/dev/null 2>&1 || true
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

echo "## Idle memory (resident, after 15 s idle)"
echo
sleep 15
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

echo "## Rolling restart under load"
echo
id=$(sed -nE 's/.*"deliveryId":"([^"]+)".*/\1/p' "$work/last-post")
load() {  # load SECONDS: public traffic through the gateway, in the background
    h2load --h1 -c 2 --rps 10 -D "$1" -d "$work/delivery.json" -H "Authorization: Bearer $key" \
        -H 'content-type: application/json' http://127.0.0.1:8080/v1/deliveries > "$work/load-post.txt" 2>&1 &
    h2load --h1 -c 4 --rps 25 -D "$1" -H "Authorization: Bearer $key" \
        "http://127.0.0.1:8080/v1/deliveries/$id/status" > "$work/load-get.txt" 2>&1 &
}
summary() {  # summary FILE: "N requests, N 2xx, N failed"
    awk '/^requests:/ {total=$2; failed=$8; errored=$10; timeout=$12}
         /^status codes:/ {ok=$3}
         END {printf "%d requests, %d answered 2xx, %d failed (non-2xx, errors, timeouts)", total, ok, total-ok}' "$1"
}
backends=()
for i in "${!names[@]}"; do [[ ${names[$i]} == gateway ]] || backends+=("${names[$i]}"); done
load 75
roll_started=$(now_ms)
sleep 5
for name in "${backends[@]}"; do
    podman container clone --name "${project}_${name}_surge" "${project}_${name}_1" >/dev/null
    podman start "${project}_${name}_surge" >/dev/null
done
for name in "${backends[@]}"; do
    for _ in $(seq 1 300); do podman healthcheck run "${project}_${name}_surge" >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "- the nine replacements served after $(( $(now_ms) - roll_started - 5000 )) ms; waiting 35 s for every caller to resolve them"
sleep 35
stop_started=$(now_ms)
stoppers=()
for name in "${backends[@]}"; do podman stop -t 30 "${project}_${name}_1" >/dev/null & stoppers+=($!); done
wait "${stoppers[@]}"
echo "- the nine old containers drained and stopped in $(( $(now_ms) - stop_started )) ms"
wait
echo "- POST /v1/deliveries (2 clients x 10/s): $(summary "$work/load-post.txt")"
echo "- GET status (4 clients x 25/s): $(summary "$work/load-get.txt")"
echo
echo "Gateway restarted in place (podman restart: SIGTERM, drain, start), same load for 20 s:"
load 20
sleep 5
gateway_started=$(now_ms)
podman restart -t 30 "${project}_gateway_1" >/dev/null
echo "- back in $(( $(now_ms) - gateway_started )) ms"
wait
echo "- POST /v1/deliveries: $(summary "$work/load-post.txt")"
echo "- GET status: $(summary "$work/load-get.txt")"
