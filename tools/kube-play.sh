#!/usr/bin/env bash
# Plays the dev overlay with podman (podman 4.3, Debian 12):
#   tools/kube-play.sh up WORKDIR NETWORK   renders deploy/k8s/overlays/podman to WORKDIR/played.yaml and plays it
#   tools/kube-play.sh cleanup WORKDIR      removes the secrets and volumes that `podman kube down` leaves
# podman 4.3 stores a `kind: Secret` it plays as YAML and then cannot read it back ("secret ... is
# not valid JSON"), so the Secrets are created beforehand as podman secrets holding their data
# map as JSON (what kube play reads), and the rest of the YAML is played. Its `secret` volumes
# crash podman 4.3 (a nil pointer in VolumeFromSecret), so each becomes a hostPath folder in
# WORKDIR holding the same files with what Kubernetes would give them: the keys (or `items`) as
# files, owned by the pod's fsGroup, mode `defaultMode` (0644 when unset).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
action=${1:?usage: kube-play.sh up WORKDIR NETWORK | cleanup WORKDIR}
work=${2:?work directory}
python=$root/.venv/bin/python
case $action in
    up)
        network=${3:?network}
        "$root/.venv/bin/kubectl" kustomize "$root/deploy/k8s/overlays/podman" > "$work/rendered.yaml"
        "$python" - "$work" <<'PY'
import base64, json, os, subprocess, sys, yaml
work = sys.argv[1]
documents = [d for d in yaml.safe_load_all(open(f"{work}/rendered.yaml")) if d]
secrets = {d["metadata"]["name"]: d.get("data", {}) for d in documents if d["kind"] == "Secret"}
for deployment in (d for d in documents if d["kind"] == "Deployment"):
    pod = deployment["spec"]["template"]["spec"]
    group = pod.get("securityContext", {}).get("fsGroup", 0)
    for volume in pod.get("volumes", []):
        source = volume.pop("secret", None)
        if source is None:
            continue
        folder = f"{work}/secret-volumes/{deployment['metadata']['name']}/{volume['name']}"
        os.makedirs(folder, exist_ok=True)
        data = secrets[source["secretName"]]
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            path = f"{folder}/{item['path']}"
            with open(path, "wb") as out:
                out.write(base64.b64decode(data[item["key"]]))
            os.chown(path, 0, group)
            os.chmod(path, item.get("mode", source.get("defaultMode", 0o644)))
        volume["hostPath"] = {"path": folder, "type": "Directory"}
names = []
for secret in (d for d in documents if d["kind"] == "Secret"):
    name = secret["metadata"]["name"]
    subprocess.run(["podman", "secret", "rm", name], capture_output=True)
    subprocess.run(["podman", "secret", "create", name, "-"], input=json.dumps(secret.get("data", {})).encode(),
                   check=True, capture_output=True)
    names.append(name)
open(f"{work}/secrets", "w").write("\n".join(names))
# Volumes podman makes: one per claim, and one per ConfigMap a pod mounts.
claims = [d["metadata"]["name"] for d in documents if d["kind"] in ("PersistentVolumeClaim", "ConfigMap")]
open(f"{work}/volumes", "w").write("\n".join(claims))
yaml.safe_dump_all([d for d in documents if d["kind"] != "Secret"], open(f"{work}/played.yaml", "w"))
PY
        podman kube play --network "$network" "$work/played.yaml" > "$work/play.log" 2>&1 || { cat "$work/play.log"; exit 1; }
        ;;
    cleanup)
        # `|| [[ -n ... ]]`: the lists end without a newline, and a bare `read` skips that last line
        # (the data volume was left behind, and the next `kube play` refused to create it).
        while read -r name || [[ -n $name ]]; do [[ -n $name ]] && podman secret rm "$name" >/dev/null 2>&1 || true; done < "$work/secrets"
        while read -r claim || [[ -n $claim ]]; do [[ -n $claim ]] && podman volume rm -f "$claim" >/dev/null 2>&1 || true; done < "$work/volumes"
        ;;
esac
