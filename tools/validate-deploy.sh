#!/usr/bin/env bash
# `make validate-deploy`: every deployment file checked offline, no container started.
#   hadolint (Dockerfile and the engines' deploy/engines/*/Dockerfile), yamllint (compose.yaml, deploy/), docker-compose config (compose.yaml),
#   kubectl kustomize (every overlay), kubernetes-validate --strict (Kubernetes 1.37 schemas),
#   checkov (the Dockerfiles and every rendered overlay; skips argued in deploy/checkov.yaml and the
#   dev overlay), tools/check-deploy.py (files agree with the code and each other).
# Tools: .venv (tools/requirements.txt) and Debian's docker-compose.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tools/install-deps.sh
if ! command -v docker-compose >/dev/null; then
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq docker-compose >/dev/null
fi
venv=$root/.venv/bin
kubernetes_version=1.37.0
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
failures=0
step() {  # step NAME COMMAND...: runs one check, prints its output only when it fails
    if output=$("${@:2}" 2>&1); then
        echo "  ok: $1"
    else
        echo "  FAILED: $1"; echo "$output" | tail -40 | sed 's/^/    /'; failures=$((failures + 1))
    fi
}

echo "== deployment files, offline"
dockerfiles=(Dockerfile deploy/engines/*/Dockerfile)
step "hadolint ${dockerfiles[*]}" "$venv/hadolint" "${dockerfiles[@]}"
step "yamllint compose.yaml deploy/" "$venv/yamllint" --strict -c deploy/yamllint.yaml compose.yaml deploy/
step "docker-compose config (compose.yaml)" docker-compose -f compose.yaml config -q
overlays=()
for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    overlays+=("$name")
    step "kubectl kustomize overlays/$name" bash -c "'$venv/kubectl' kustomize '$overlay' > '$rendered/$name.yaml'"
    step "kubernetes-validate --strict overlays/$name (Kubernetes $kubernetes_version)" \
        "$venv/kubernetes-validate" --strict --quiet -k "$kubernetes_version" "$rendered/$name.yaml"
done
for name in "${overlays[@]}"; do
    [[ $name == podman ]] && continue  # podman's adaptations only; checkov judges what a cluster runs
    step "checkov overlays/$name" "$venv/checkov" --quiet --compact --skip-download --framework kubernetes \
        --config-file deploy/checkov.yaml -f "$rendered/$name.yaml"
done
for dockerfile in "${dockerfiles[@]}"; do
    step "checkov $dockerfile" "$venv/checkov" --quiet --compact --skip-download --framework dockerfile -f "$dockerfile"
done
step "check-deploy: files agree with the code and with each other" "$venv/python" tools/check-deploy.py
if ((failures > 0)); then echo "deployment validation: $failures check(s) failed"; exit 1; fi
echo "deployment validation: every check passed"
