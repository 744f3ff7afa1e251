#!/usr/bin/env python3
"""Checks that the deployment files agree with the code and with each other (tools/validate-deploy.sh).

deploy/services.tsv is the one table of processes, executables and ports. Checked against it:
ServiceKit's ServicePorts (make run's default ports; a warning only, since containers set their
ports themselves), compose.yaml (one service per line, its build arguments and every endpoint),
and the rendered Kubernetes base (one Deployment and Service per line, container port, probe
port, the endpoints ConfigMap). The call graph read from Sources/Servers/*/main.swift (which
service is configured with which other's address) must equal the NetworkPolicies' allowed edges. deploy/k8s/base/gateway.json must equal config/gateway.json.
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

# The code's default ports (make run's): ServicePorts.defaultBase plus each service's place in
# ServicePorts.Service, the gateway ServicePorts.defaultGatewayPort. Containers set every port
# explicitly (FABRIKAM_PORT), so a difference is worth a warning, not a failure: they work either way.
swift = (root / "Sources/ServiceKit/ServicePorts.swift").read_text()
base = int(re.search(r"static let defaultBase = (\d+)", swift).group(1))
gateway_port = int(re.search(r"static let defaultGatewayPort = (\d+)", swift).group(1))
cases = re.search(r"enum Service\b[^{]*\{\s*case (.*?)\n\s*\n", swift, re.S).group(1)
order = [(m.group(2) or m.group(1)).lower() for m in re.finditer(r'(\w+)(?:\s*=\s*"(\w+)")?', cases)]
defaults = {name: base + offset for offset, name in enumerate(order)}
defaults["gateway"] = gateway_port
for row in table:
    if row["name"] == "gateway":
        gateway_default = json.loads((root / "config/gateway.json").read_text()).get("port", gateway_port)
        if gateway_default != row["port"]:
            warning(f"gateway: services.tsv says {row['port']}, config/gateway.json says {gateway_default}")
    elif defaults.get(row["name"]) != row["port"]:
        warning(f"{row['name']}: services.tsv says {row['port']}, ServicePorts says {defaults.get(row['name'])}")

# The call graph: each executable reads its callees' addresses from its configuration
# (`configuration.address("NAME", ...)` or `downstream("NAME", ...)`; the gateway from its list of
# upstream names).
edges = set()
store_users, broker_users = set(), set()
for row in table:
    source = root / "Sources/Servers" / row["executable"] / "main.swift"
    if not source.exists():
        problem(f"{row['name']}: no {source.relative_to(root)} to read its callees from")
        continue
    text = source.read_text()
    callees = set(re.findall(r'(?:address|downstream)\("(\w+)"', text))
    upstream_list = re.search(r'for name in \[([^\]]*)\]\s*\{\s*settings\.upstreams', text)
    if upstream_list:
        callees |= set(re.findall(r'"(\w+)"', upstream_list.group(1)))
    edges |= {(row["name"], callee) for callee in callees if callee in by_name}
    if "serviceStore(" in text:
        store_users.add(row["name"])
    if "openBroker(" in text:
        broker_users.add(row["name"])

# compose.yaml
compose = yaml.safe_load((root / "compose.yaml").read_text())
engines = {"postgres", "nats"}
if set(compose["services"]) != set(by_name) | engines:
    problem(f"compose.yaml services {sorted(compose['services'])} differ from services.tsv {sorted(by_name)} plus {sorted(engines)}")
for name, service in compose["services"].items():
    if name not in by_name:
        continue
    environment = service.get("environment", {})
    on_engines = "engines" in service.get("networks", [])
    for users, variable in [(store_users, "FABRIKAM_STORE"), (broker_users, "FABRIKAM_BROKER")]:
        if name in users and not str(environment.get(variable, "")).split("://")[0] in ("postgresql", "nats"):
            problem(f"compose.yaml {name}: opens an engine in main.swift but {variable} names none")
    if (name in store_users | broker_users) != on_engines:
        problem(f"compose.yaml {name}: on the engines network: {on_engines}, uses an engine: {name in store_users | broker_users}")
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
    problem("no call-graph edges read from Sources/Servers/*/main.swift (their format changed?)")
for label, allowed in [("ingress", allowed_in), ("egress", allowed_out)]:
    for edge in sorted(edges - allowed):
        problem(f"NetworkPolicies: no {label} allow for {edge[0]} -> {edge[1]} (its main.swift calls it)")
    for edge in sorted(allowed - edges):
        problem(f"NetworkPolicies: {label} allow for {edge[0]} -> {edge[1]}, which no service calls")



def selected(selector):
    """The app names a podSelector picks: matchLabels or an `In` matchExpression."""
    names = set()
    if "app.kubernetes.io/name" in selector.get("matchLabels", {}):
        names.add(selector["matchLabels"]["app.kubernetes.io/name"])
    for expression in selector.get("matchExpressions", []):
        if expression["key"] == "app.kubernetes.io/name" and expression["operator"] == "In":
            names |= set(expression["values"])
    return names


# The engines' edges in the overlays that run on them: exactly the services whose main.swift
# opens a store reach PostgreSQL (5432), a broker NATS (4222), in and out (dev, in the cluster);
# out (prod, external addresses).
for overlay, directions in [("dev", ["ingress", "egress"]), ("prod", ["egress"])]:
    rendered_overlay = subprocess.run([str(root / ".venv/bin/kubectl"), "kustomize", str(root / "deploy/k8s/overlays" / overlay)],
                                      check=True, capture_output=True, text=True).stdout
    policies = [d for d in yaml.safe_load_all(rendered_overlay) if d and d["kind"] == "NetworkPolicy"]
    for engine, port, users in [("postgres", 5432, store_users), ("nats", 4222, broker_users)]:
        allowed = {"ingress": set(), "egress": set()}
        for policy in policies:
            spec = policy["spec"]
            for rule in spec.get("ingress", []):
                if engine in selected(spec["podSelector"]) and [p["port"] for p in rule.get("ports", [])] == [port]:
                    for peer in rule.get("from", []):
                        allowed["ingress"] |= selected(peer.get("podSelector", {}))
            for rule in spec.get("egress", []):
                if [p["port"] for p in rule.get("ports", [])] == [port]:
                    if any(engine in selected(peer.get("podSelector", {})) or "ipBlock" in peer for peer in rule.get("to", [])):
                        allowed["egress"] |= selected(spec["podSelector"])
        for direction in directions:
            if allowed[direction] != users:
                problem(f"overlays/{overlay}: {direction} to {engine}:{port} allowed for {sorted(allowed[direction])}, "
                        f"but the services that use it are {sorted(users)}")
if not store_users or not broker_users:
    problem("no serviceStore/openBroker read from Sources/Servers/*/main.swift (their format changed?)")

if json.loads((root / "deploy/k8s/base/gateway.json").read_text()) != json.loads((root / "config/gateway.json").read_text()):
    problem("deploy/k8s/base/gateway.json differs from config/gateway.json (copy it)")

for text in warnings:
    print(f"check-deploy: warning: {text}")
for text in problems:
    print(f"check-deploy: {text}")
print(f"check-deploy: {len(edges)} call-graph edges, {len(table)} processes, {len(store_users)} on PostgreSQL, "
      f"{len(broker_users)} on NATS; "
      f"{'no disagreement' if not problems else f'{len(problems)} disagreement(s)'}")
sys.exit(1 if problems else 0)
