#!/usr/bin/env bash
# `make images`: one container image per service (deploy/services.tsv), from the top-level
# Dockerfile, tagged fabrikam/<name>:$FABRIKAM_TAG (default dev); and the two engines compose and
# the dev overlay run, from Debian's packages (deploy/engines/): fabrikam/postgres:15 and
# fabrikam/nats:2.9 (a registry's official postgres and nats images can replace them).
#
#   tools/container-images.sh [--source | --prebuilt] [NAME...]
#
# --source   compile inside the official Swift image (what a user with a registry does);
# --prebuilt build the release binaries on this host (swift build -c release
#            --static-swift-stdlib, stripped into .build/container-bin) and copy them in through
#            the Dockerfile's prebuilt stage: for machines that cannot pull the Swift image.
# Without either, --source when the Swift image is here or can be pulled, else --prebuilt.
# CONTAINER_ENGINE=docker uses docker instead of podman.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
engine=${CONTAINER_ENGINE:-podman}
tag=${FABRIKAM_TAG:-dev}
swift_image=${SWIFT_IMAGE:-docker.io/library/swift:6.3-bookworm}
mode=auto
wanted=()
for argument in "$@"; do
    case $argument in
        --source) mode=source ;;
        --prebuilt) mode=prebuilt ;;
        -*) echo "unknown option $argument (--source, --prebuilt)" >&2; exit 2 ;;
        *) wanted+=("$argument") ;;
    esac
done
if [[ $engine == podman ]]; then bash tools/install-container-deps.sh; fi

if [[ $mode == auto ]]; then
    if $engine image exists "$swift_image" 2>/dev/null || $engine pull -q "$swift_image" >/dev/null 2>&1; then
        mode=source
    else
        mode=prebuilt
        echo "images: $swift_image cannot be pulled here; building the binaries on this host (--prebuilt)"
    fi
fi

# name executable port health, from the one table.
declare -a names executables ports healths
while IFS=$'\t' read -r name executable port health; do
    [[ -z $name || $name == \#* ]] && continue
    names+=("$name"); executables+=("$executable"); ports+=("$port"); healths+=("$health")
done < deploy/services.tsv
for name in "${wanted[@]}"; do
    [[ " ${names[*]} postgres nats " == *" $name "* ]] || { echo "unknown service $name (one of: ${names[*]} postgres nats)" >&2; exit 2; }
done

if [[ $mode == prebuilt ]]; then
    bash tools/install-deps.sh
    started=$(date +%s)
    swift build -c release --static-swift-stdlib
    echo "images: release build took $(( $(date +%s) - started )) s"
    bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
    rm -rf .build/container-bin
    mkdir -p .build/container-bin
    for executable in "${executables[@]}" health-probe; do
        strip -o ".build/container-bin/$executable" "$bin/$executable"
    done
fi

format=()
# podman writes OCI images by default, which have no HEALTHCHECK.
if [[ $engine == podman ]]; then format=(--format docker); fi
# The engines first: a second each once cached. Only with no service named, or when named.
for image in postgres:15 nats:2.9; do
    name=${image%%:*}
    if ((${#wanted[@]} > 0)) && [[ " ${wanted[*]} " != *" $name "* ]]; then continue; fi
    started=$(date +%s%N)
    $engine build -q "${format[@]}" -t "fabrikam/$image" "deploy/engines/$name" >/dev/null
    printf 'images: fabrikam/%s (%s ms)\n' "$image" $(( ($(date +%s%N) - started) / 1000000 ))
done

version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for i in "${!names[@]}"; do
    name=${names[$i]}
    if ((${#wanted[@]} > 0)) && [[ " ${wanted[*]} " != *" $name "* ]]; then continue; fi
    probe_path=""
    [[ ${healths[$i]} == http:* ]] && probe_path=${healths[$i]#http:}
    started=$(date +%s%N)
    $engine build -q "${format[@]}" \
        --build-arg BINARIES="$mode" --build-arg SWIFT_IMAGE="$swift_image" \
        --build-arg SERVICE="${executables[$i]}" --build-arg PORT="${ports[$i]}" \
        --build-arg PROBE_HTTP_PATH="$probe_path" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
        -t "fabrikam/$name:$tag" . >/dev/null
    printf 'images: fabrikam/%s:%s (%s ms)\n' "$name" "$tag" $(( ($(date +%s%N) - started) / 1000000 ))
done
