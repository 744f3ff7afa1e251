#!/usr/bin/env bash
# `make container-test`: the system in containers, for real, on this machine.
#
#   tools/container-test.sh [compose] [kube] [docker]   (all three by default)
#
#  compose: `podman-compose up` of compose.yaml, then the README's "A first delivery" block, run
#           as written, against the gateway on 127.0.0.1:8080; every container's image health
#           check; non-root and read-only checked in a running container; the engines really
#           used; `down`.
#  kube:    `podman kube play` of the rendered dev overlay (deploy/k8s/overlays/podman), the same
#           README block, the engines really used, `podman kube down`.
#  docker:  the same compose.yaml on Docker Engine (Debian's docker.io, a daemon of this test's own:
#           its own socket and data folder, no iptables rules, no default bridge) with Debian's
#           docker-compose 1.29 (the Compose v2 plugin is not packaged in Debian 12), the images
#           handed over from podman (`podman save | docker load`), the README block, the engines
#           really used, `docker-compose down -v`, the daemon stopped. Run last: it is the slowest.
# Every stage also checks the credentials: no password in any container's environment, and NATS
# refusing a client that does not log in.
# "The engines really used": in the PostgreSQL container, every service that opens a store
# (serviceStore in its main.swift) has its schema, migrated, and the README's delivery is a row
# of delivery.deliveries with its events in deliveryhistory.events; in the NATS container,
# JetStream's streams hold Ingestion's queue and the delivery-events topic with messages. A
# service left on SQLite (its store URL lost) fails these even if the delivery went through.
# Images come from tools/container-images.sh (built on this host when the Swift image cannot be
# pulled); FABRIKAM_SKIP_IMAGES=1 uses the images already here. Needs 127.0.0.1:8080 free.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
stages=("$@")
((${#stages[@]} > 0)) || stages=(compose kube docker)
# The container engine the checks below talk to (the docker stage switches it).
ctr=podman
work=$(mktemp -d)
project=fabrikam-test
kube_network=fabrikam-kube-test
failures=0

bash tools/install-container-deps.sh
bash tools/install-deps.sh
if [[ ${FABRIKAM_SKIP_IMAGES:-} != 1 ]]; then bash tools/container-images.sh; fi
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
    echo "127.0.0.1:8080 is in use: the containers publish the gateway there (stop what listens on it)"; exit 1
fi

compose_down() {  # the compose project, its networks and its volumes (the engines' data)
    podman-compose -p "$project" -f compose.yaml down >/dev/null 2>&1 || true
    for network in backend engines; do podman network rm -f "${project}_$network" >/dev/null 2>&1 || true; done
    for volume in postgres nats; do podman volume rm -f "${project}_$volume" >/dev/null 2>&1 || true; done
}

cleanup() {
    if [[ -f $work/compose-up ]]; then
        compose_down
    fi
    if [[ -f $work/kube-up ]]; then
        podman kube down "$work/played.yaml" >/dev/null 2>&1 || true
        bash tools/kube-play.sh cleanup "$work" >/dev/null 2>&1 || true
        podman network rm -f "$kube_network" >/dev/null 2>&1 || true
    fi
    if [[ -f $work/docker-up ]]; then docker_down; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The docker stage's own Docker Engine: a private socket and data folder, so a Docker already on
# the machine is left alone; no iptables rules and no docker0 (compose's networks are bridges
# of their own, the gateway is published on 127.0.0.1 by docker-proxy), so the host's firewall
# and podman's networks are untouched.
docker_dir=/var/tmp/fabrikam-docker-test
docker_start() {
    command -v dockerd >/dev/null || { echo "dockerd is not installed (tools/install-container-deps.sh installs docker.io)"; exit 1; }
    mkdir -p "$docker_dir"
    dockerd --data-root "$docker_dir/data" --exec-root "$docker_dir/exec" --pidfile "$docker_dir/dockerd.pid" \
        -H "unix://$docker_dir/docker.sock" --iptables=false --ip-masq=false --bridge=none \
        >"$work/dockerd.log" 2>&1 &
    for _ in $(seq 1 300); do
        DOCKER_HOST=unix://$docker_dir/docker.sock docker version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "dockerd did not start within 30 s:"; tail -20 "$work/dockerd.log"; exit 1
}
docker_down() {  # the project, its volumes and networks, then the daemon and its data
    DOCKER_HOST=unix://$docker_dir/docker.sock docker-compose -p "$project" -f compose.yaml down -v >/dev/null 2>&1 || true
    if [[ -f $docker_dir/dockerd.pid ]]; then
        local pid; pid=$(cat "$docker_dir/dockerd.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    # Mounts the daemon may leave (overlay layers, the netns of containers) before the folder goes.
    grep -o "$docker_dir[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$docker_dir"
}

check() {  # check NAME COMMAND...: one named check, counted
    if "${@:2}"; then echo "  ok: $1"; else echo "  FAILED: $1"; failures=$((failures + 1)); fi
}

wait_for_gateway() {  # up to 60 s for GET /healthz on 127.0.0.1:8080
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null --max-time 1 http://127.0.0.1:8080/healthz; then return 0; fi
        sleep 0.1
    done
    echo "the gateway did not answer on 127.0.0.1:8080 within 60 s; the containers:"
    podman ps -a --format '  {{.Names}} {{.Status}}'
    # What podman or the services said: a container that never started, or one that exited.
    grep -i -m 5 'error' "$work/compose.log" 2>/dev/null | sed 's/^/  compose: /'
    for container in $(podman ps -a --format '{{.Names}}'); do
        podman logs --tail 3 "$container" 2>&1 | sed "s/^/  $container: /"
    done
    return 1
}

services=()  # the processes of deploy/services.tsv
while IFS=$'\t' read -r name _; do [[ -z $name || $name == \#* ]] || services+=("$name"); done < deploy/services.tsv

wait_for_services() {  # wait_for_services CONTAINER...: up to 120 s for each one's own health probe
    # The gateway answers before the services behind it: each waits for its engines first
    # (FABRIKAM_ENGINE_WAIT_SECONDS), the engines for their first start (initdb).
    local deadline=$((SECONDS + 120)) container
    for container in "$@"; do
        until $ctr exec "$container" health-probe >/dev/null 2>&1; do
            if ((SECONDS > deadline)); then
                echo "  $container did not become healthy within 120 s:"; $ctr logs --tail 5 "$container" 2>&1 | sed 's/^/    /'
                return 1
            fi
            sleep 0.5
        done
    done
}

# The services that keep a store, each in the PostgreSQL schema of its name (ServiceKit's
# serviceStore(configuration, service: NAME, ...)), read from the code as check-deploy.py does.
schemas=$(grep -ho 'serviceStore(configuration, service: "[a-z]*"' Sources/Servers/*/main.swift | sed -E 's/.*"([a-z]+)"/\1/' | sort)

no_restarts() {  # no_restarts CONTAINER...: each service waited for its engines instead of exiting
    # Started together with the engines, a service that gave up at once on PostgreSQL or NATS
    # would have exited and been restarted (restart policy): FABRIKAM_ENGINE_WAIT_SECONDS works
    # when no container was restarted.
    local container count
    for container in "$@"; do
        count=$($ctr inspect --format '{{.RestartCount}}' "$container" 2>&1)
        [[ $count == 0 ]] || { echo "    $container restarted $count time(s):"; $ctr logs --tail 3 "$container" 2>&1 | sed 's/^/      /'; return 1; }
    done
}

engine_checks() {  # engine_checks POSTGRES_CONTAINER NATS_CONTAINER DELIVERY_OUTPUT
    local postgres=$1 nats=$2 out=$3 id schema
    id=$(grep -o '"deliveryId":"dlv-[^"]*"' "$out" | head -1 | cut -d'"' -f4)
    sql() { $ctr exec "$postgres" psql -U fabrikam -d fabrikam -Atc "$1" 2>&1; }
    check "PostgreSQL: a schema for each of the $(wc -w <<<"$schemas") services with a store" test -n "$schemas"
    for schema in $schemas; do
        check "PostgreSQL: schema $schema migrated (schema_migrations)" \
            bash -c '[[ $1 =~ ^[1-9][0-9]*$ ]] || { echo "    $1"; false; }' _ "$(sql "select count(*) from $schema.schema_migrations")"
    done
    check "PostgreSQL: the README's delivery ${id:-(no id)} is a row of delivery.deliveries" \
        test "$(sql "select count(*) from delivery.deliveries where delivery_id = '${id:-none}'")" = 1
    check "PostgreSQL: its events are in deliveryhistory.events" \
        bash -c '[[ $1 =~ ^[1-9][0-9]*$ ]]' _ "$(sql "select count(*) from deliveryhistory.events where delivery_id = '${id:-none}'")"
    $ctr exec "$nats" wget -q -O - 'http://127.0.0.1:8222/jsz?streams=true' > "$work/jsz.json" 2>&1 || true
    check "JetStream: Ingestion's queue and the delivery-events topic are streams with messages" \
        python3 - "$work/jsz.json" <<'PY'
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except ValueError:
    print("    no JetStream report:", open(sys.argv[1]).read()[:200]); sys.exit(1)
streams = {s["name"]: s["state"]["messages"] for a in report.get("account_details", []) for s in a.get("stream_detail", [])}
queue = [n for n in streams if "_Q_" in n]
topic = [n for n in streams if n.endswith("_T_delivery-events") and streams[n] > 0]
if not queue or not topic:
    print(f"    streams (messages): {streams}"); sys.exit(1)
PY
}

credential_checks() {  # credential_checks NATS_CONTAINER CONTAINER...: secrets stay files
    local nats=$1 container leaks=""; shift
    # The development passwords (deploy/compose/dev-secrets, the dev overlay's Secret).
    for container in "$nats" "$@"; do
        if $ctr inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$container" 2>&1 | grep -q -e fabrikam-dev-only -e fabrikam-nats-dev-only; then
            leaks+=" $container"
        fi
    done
    check "no password in any container's environment (secrets are mounted files)" test -z "$leaks"
    [[ -z $leaks ]] || echo "    in the environment of:$leaks"
    # The NATS protocol by hand: CONNECT without credentials, then PING; the server answers -ERR.
    check "NATS refuses a client without credentials (-ERR 'Authorization Violation')" bash -c '
        answer=$($1 exec "$2" bash -c "exec 3<>/dev/tcp/127.0.0.1/4222; printf \"CONNECT {\\\"verbose\\\":false}\\r\\nPING\\r\\n\" >&3; timeout 2 cat <&3" 2>&1)
        grep -q "Authorization Violation" <<<"$answer" || { echo "    NATS answered: ${answer:0:300}"; false; }' _ "$ctr" "$nats"
}

# The README's first delivery, exactly as the README writes it, in a shell of its own.
first_delivery() {
    local out=$1
    awk '/^### A first delivery/ {section=1} section && /^```sh/ {code=1; next} code && /^```/ {exit} code' README.md > "$work/first-delivery.sh"
    [[ -s $work/first-delivery.sh ]] || { echo "no 'A first delivery' block found in README.md"; return 1; }
    (cd "$work" && timeout 120 bash -e "$work/first-delivery.sh") > "$out" 2>&1
}

delivery_checks() {  # delivery_checks OUTPUT_FILE: what the README says each command shows
    local out=$1
    # Not anchored at a line start: the registration's JSON before it ends without a newline.
    check "POST /v1/deliveries answers 202 Accepted with a Location" \
        bash -c 'grep -q "HTTP/1.1 202 Accepted" "$1" && grep -qi "^location: /v1/deliveries/dlv-" "$1"' _ "$out"
    check "the status names a stage" grep -q '"stage":"DELIVERY_STAGE_' "$out"
    check "the tracking stream reaches DELIVERY_STAGE_COMPLETED" grep -q 'DELIVERY_STAGE_COMPLETED' "$out"
    check "the history lists the delivery's events" grep -q '"events":\[{' "$out"
    check "the summary joins delivery, package and drone" grep -q '"package":{' "$out"
    # What the README block got instead, when it was not accepted.
    grep -q "HTTP/1.1 202 Accepted" "$out" || head -c 2000 "$out" | sed 's/^/    /'
}

compose_checks() {  # compose_checks TAG: compose.yaml is up (on $ctr); the README's delivery and every check of it
    local tag=$1
    wait_for_gateway
    wait_for_services $(for name in "${services[@]}"; do echo "${project}_${name}_1"; done)
    echo "  up and answering in $(( ($(date +%s%N) - started) / 1000000 )) ms"
    if first_delivery "$work/$tag-delivery.out"; then :; else echo "  the README block failed:"; cat "$work/$tag-delivery.out"; fi
    delivery_checks "$work/$tag-delivery.out"
    engine_checks "${project}_postgres_1" "${project}_nats_1" "$work/$tag-delivery.out"
    credential_checks "${project}_nats_1" $(for name in "${services[@]}"; do echo "${project}_${name}_1"; done) "${project}_postgres_1"
    check "no service was restarted while the engines started (each waited for them)" \
        no_restarts $(for name in "${services[@]}"; do echo "${project}_${name}_1"; done)
}

if [[ " ${stages[*]} " == *" compose "* ]]; then
    echo "== compose: podman-compose up (compose.yaml)"
    touch "$work/compose-up"
    started=$(date +%s%N)
    podman-compose -p "$project" -f compose.yaml up -d >"$work/compose.log" 2>&1 || { tail -20 "$work/compose.log"; exit 1; }
    compose_checks compose
    for container in $(podman ps --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
        check "$container: the image's health check passes" podman healthcheck run "$container"
    done
    gateway=$(podman ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=gateway" --format '{{.Names}}')
    check "runs as uid 10001" test "$(podman exec "$gateway" cat /proc/self/status | awk '/^Uid:/ {print $2}')" = 10001
    check "the root filesystem is read-only" bash -c "! podman exec $gateway sh -c ': > /usr/local/bin/x' 2>/dev/null"
    check "no capabilities" test "$(podman exec "$gateway" awk '/^CapEff:/ {print $2}' /proc/self/status)" = 0000000000000000
    compose_down
    rm -f "$work/compose-up"
    check "compose down leaves no container" test -z "$(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}')"
fi

if [[ " ${stages[*]} " == *" kube "* ]]; then
    echo "== kube: podman kube play (deploy/k8s/overlays/podman: the dev overlay as podman plays it)"
    touch "$work/kube-up"
    podman network create "$kube_network" >/dev/null 2>&1 || true
    started=$(date +%s%N)
    bash tools/kube-play.sh up "$work" "$kube_network"
    wait_for_gateway
    wait_for_services $(for name in "${services[@]}"; do echo "${name}-pod-0-${name}"; done)
    echo "  up and answering in $(( ($(date +%s%N) - started) / 1000000 )) ms"
    if first_delivery "$work/kube-delivery.out"; then :; else echo "  the README block failed:"; cat "$work/kube-delivery.out"; fi
    delivery_checks "$work/kube-delivery.out"
    engine_checks postgres-pod-0-postgres nats-pod-0-nats "$work/kube-delivery.out"
    credential_checks nats-pod-0-nats $(for name in "${services[@]}"; do echo "${name}-pod-0-${name}"; done) postgres-pod-0-postgres
    check "no service was restarted while the engines started (each waited for them)" \
        no_restarts $(for name in "${services[@]}"; do echo "${name}-pod-0-${name}"; done)
    # The services and the two engines.
    check "every Deployment runs one pod" test "$(podman pod ps --filter status=running --format '{{.Name}}' | grep -c -- '-pod-0$')" = $((${#services[@]} + 2))
    podman kube down "$work/played.yaml" >/dev/null
    bash tools/kube-play.sh cleanup "$work"
    podman network rm -f "$kube_network" >/dev/null 2>&1 || true
    rm -f "$work/kube-up"
fi

if [[ " ${stages[*]} " == *" docker "* ]]; then
    echo "== docker: docker-compose up (compose.yaml) on Docker Engine"
    touch "$work/docker-up"
    # Debian's docker CLI, the daemon's own version, even where another docker sits earlier on PATH.
    export PATH=/usr/bin:$PATH
    docker_start
    export DOCKER_HOST=unix://$docker_dir/docker.sock
    ctr=docker
    started=$(date +%s%N)
    # The images podman built (or pulled), under the names compose.yaml gives them.
    images=$(for name in "${services[@]}"; do echo "localhost/fabrikam/$name:${FABRIKAM_TAG:-dev}"; done)
    images+=" localhost/fabrikam/postgres:15 localhost/fabrikam/nats:2.9"
    podman save -m --format docker-archive $images 2>/dev/null | docker load -q >/dev/null
    for image in $images; do docker tag "$image" "${image#localhost/}"; done
    echo "  images handed over in $(( ($(date +%s%N) - started) / 1000000 )) ms"
    started=$(date +%s%N)
    docker-compose -p "$project" -f compose.yaml up -d --no-build >"$work/docker-compose.log" 2>&1 || { tail -20 "$work/docker-compose.log"; exit 1; }
    compose_checks docker
    for name in "${services[@]}" postgres nats; do
        check "${project}_${name}_1: the image's health check reports healthy" \
            bash -c 'for _ in $(seq 1 40); do [[ $(docker inspect --format "{{.State.Health.Status}}" "$1") == healthy ]] && exit 0; sleep 0.5; done; docker inspect --format "{{.State.Health.Status}}" "$1"; false' _ "${project}_${name}_1"
    done
    check "runs as uid 10001, read-only, no capabilities" bash -c '
        [[ $(docker exec "$1" awk "/^Uid:/ {print \$2}" /proc/self/status) == 10001 ]] &&
        ! docker exec "$1" sh -c ": > /usr/local/bin/x" 2>/dev/null &&
        [[ $(docker exec "$1" awk "/^CapEff:/ {print \$2}" /proc/self/status) == 0000000000000000 ]]' _ "${project}_gateway_1"
    # Replicas in containers: a second of every backend service (the gateway keeps its one
    # published port), found by the callers through Docker's DNS, which answers a service's name
    # with every replica's address; then the first of each is stopped, and the README's delivery
    # must go through the second ones alone (the callers re-resolve when a connection fails).
    backends=(); for name in "${services[@]}"; do [[ $name == gateway ]] || backends+=("$name"); done
    docker-compose -p "$project" -f compose.yaml up -d --no-build --no-recreate \
        $(for name in "${backends[@]}"; do echo "--scale $name=2"; done) >>"$work/docker-compose.log" 2>&1 \
        || { tail -20 "$work/docker-compose.log"; exit 1; }
    if wait_for_services $(for name in "${backends[@]}"; do echo "${project}_${name}_2"; done); then
        echo "  a second replica of each of the ${#backends[@]} backend services is serving"
        docker stop -t 30 $(for name in "${backends[@]}"; do echo "${project}_${name}_1"; done) >/dev/null
        check "only the second replicas of the backend services run" bash -c \
            '[[ -z $(docker ps --format "{{.Names}}" | grep -E "_1\$" | grep -vE "_(gateway|postgres|nats)_1\$") ]] &&
             (($(docker ps --format "{{.Names}}" | grep -cE "_2\$") == $1))' _ "${#backends[@]}"
        if first_delivery "$work/docker-replicas.out"; then :; else echo "  the README block failed on the second replicas:"; cat "$work/docker-replicas.out"; fi
        delivery_checks "$work/docker-replicas.out"
    else
        check "a second replica of every backend service becomes healthy" false
    fi
    docker_down
    rm -f "$work/docker-up"
    ctr=podman
fi

if ((failures > 0)); then echo "container tests: $failures check(s) failed"; exit 1; fi
echo "container tests: every check passed"
