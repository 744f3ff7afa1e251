#!/usr/bin/env python3
"""Checks that the deployment files agree with the code and with each other (tools/validate-deploy.sh).

deploy/services.tsv is the one table of processes, executables and ports. Checked against it:
ServiceKit's DefaultPort and the gateway's default port (the code; a warning only, since
containers set their ports themselves), compose.yaml (one service
per line, its build arguments and every endpoint), and the rendered Kubernetes base (one
Deployment and Service per line, container port, probe port, the endpoints ConfigMap). The
call graph in tools/run-service.sh (which service is given which other's address) must equal the
NetworkPolicies' allowed edges. deploy/k8s/base/gateway.json must equal config/gateway.json.
Prints every disagreement and exits 1 if there is any.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
problems = []
warnings = []


def problem(text):
    problems.append(text)


def warning(text):
    warnings.append(text)


table = []
for line in (root / "deploy/services.tsv").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
        name, executable, port, health = line.split("\t")
        table.append({"name": name, "executable": executable, "port": int(port), "health": health})
by_name = {row["name"]: row for row in table}

# The code's default ports (make run's). Containers set every port explicitly (FABRIKAM_PORT),
# so a difference is worth a warning, not a failure: they work either way.
swift = (root / "Sources/ServiceKit/Configuration.swift").read_text()
defaults = {name.lower(): int(port) for name, port in re.findall(r"static let (\w+) = (\d+)", swift)}
for row in table:
    if row["name"] == "gateway":
        gateway_default = json.loads((root / "config/gateway.json").read_text()).get("port")
        if gateway_default != row["port"]:
            warning(f"gateway: services.tsv says {row['port']}, config/gateway.json says {gateway_default}")
    elif defaults.get(row["name"]) != row["port"]:
        warning(f"{row['name']}: services.tsv says {row['port']}, DefaultPort says {defaults.get(row['name'])}")

# The call graph: run-service.sh passes each caller its callees' addresses.
run_service = (root / "tools/run-service.sh").read_text()
edges = set()
for name in by_name:
    match = re.search(rf"^\s*{name}\)\s*exec(.*?);;", run_service, re.S | re.M)
    if not match:
        continue
    for callee in re.findall(r'--(\w+) "\$\(address (\w+)\)"', match.group(1)):
        edges.add((name, callee[1]))

# compose.yaml
compose = yaml.safe_load((root / "compose.yaml").read_text())
if set(compose["services"]) != set(by_name):
    problem(f"compose.yaml services {sorted(compose['services'])} differ from services.tsv {sorted(by_name)}")
for name, service in compose["services"].items():
    row = by_name.get(name)
    if not row:
        continue
    arguments = service.get("build", {}).get("args", {})
    if arguments.get("SERVICE") != row["executable"] or str(arguments.get("PORT")) != str(row["port"]):
        problem(f"compose.yaml {name}: build args {arguments} do not match {row['executable']}:{row['port']}")
    environment = service.get("environment", {})
    for other in table:
        if other["health"] == "grpc":
            wanted = f"{other['name']}:{other['port']}"
            if environment.get(f"FABRIKAM_{other['name'].upper()}") != wanted:
                problem(f"compose.yaml {name}: FABRIKAM_{other['name'].upper()} is not {wanted}")

# The Kubernetes base, rendered.
rendered = subprocess.run([str(root / ".venv/bin/kubectl"), "kustomize", str(root / "deploy/k8s/base")],
                          check=True, capture_output=True, text=True).stdout
documents = [d for d in yaml.safe_load_all(rendered) if d]
kinds = {}
for document in documents:
    kinds.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]:
    if set(kinds.get(kind, {})) != set(by_name):
        problem(f"base {kind}s {sorted(kinds.get(kind, {}))} differ from services.tsv")
for name, deployment in kinds.get("Deployment", {}).items():
    row = by_name.get(name)
    if not row:
        continue
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if container["ports"][0]["containerPort"] != row["port"]:
        problem(f"base Deployment {name}: containerPort {container['ports'][0]['containerPort']}, not {row['port']}")
    variables = {v["name"]: v.get("value") for v in container.get("env", [])}
    if variables.get("FABRIKAM_PORT") != str(row["port"]):
        problem(f"base Deployment {name}: FABRIKAM_PORT {variables.get('FABRIKAM_PORT')}, not {row['port']}")
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
        spec = container.get(probe, {})
        if row["health"] == "grpc" and spec.get("grpc", {}).get("port") != row["port"]:
            problem(f"base Deployment {name}: {probe} is not gRPC health on {row['port']}")
        if row["health"].startswith("http:") and spec.get("httpGet", {}).get("path") != row["health"][5:]:
            problem(f"base Deployment {name}: {probe} is not GET {row['health'][5:]}")
endpoints = kinds.get("ConfigMap", {}).get("fabrikam-endpoints", {}).get("data", {})
for row in table:
    if row["health"] == "grpc" and endpoints.get(f"FABRIKAM_{row['name'].upper()}") != f"{row['name']}:{row['port']}":
        problem(f"fabrikam-endpoints: FABRIKAM_{row['name'].upper()} is not {row['name']}:{row['port']}")

# NetworkPolicies: one ingress allow per edge, and each caller's egress to exactly its callees.
allowed_in, allowed_out = set(), set()
for policy in kinds.get("NetworkPolicy", {}).values():
    target = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            caller = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            if caller:
                allowed_in.add((caller, target))
                if [p["port"] for p in rule.get("ports", [])] != [by_name[target]["port"]]:
                    problem(f"NetworkPolicy {policy['metadata']['name']}: ports are not {by_name[target]['port']}")
    for rule in policy["spec"].get("egress", []):
        for peer in rule.get("to", []):
            callee = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            if callee and not peer.get("namespaceSelector"):
                allowed_out.add((target, callee))
if not edges:
    # tools/run-service.sh is written another way now: say so rather than fail on the format.
    warning("no call-graph edges read from tools/run-service.sh (its format changed?): NetworkPolicy edges not compared")
    edges = allowed_in
for label, allowed in [("ingress", allowed_in), ("egress", allowed_out)]:
    for edge in sorted(edges - allowed):
        problem(f"NetworkPolicies: no {label} allow for {edge[0]} -> {edge[1]} (tools/run-service.sh wires it)")
    for edge in sorted(allowed - edges):
        problem(f"NetworkPolicies: {label} allow for {edge[0]} -> {edge[1]}, which no service calls")

if json.loads((root / "deploy/k8s/base/gateway.json").read_text()) != json.loads((root / "config/gateway.json").read_text()):
    problem("deploy/k8s/base/gateway.json differs from config/gateway.json (copy it)")

for text in warnings:
    print(f"check-deploy: warning: {text}")
for text in problems:
    print(f"check-deploy: {text}")
print(f"check-deploy: {len(edges)} call-graph edges, {len(table)} processes; "
      f"{'no disagreement' if not problems else f'{len(problems)} disagreement(s)'}")
sys.exit(1 if problems else 0)
