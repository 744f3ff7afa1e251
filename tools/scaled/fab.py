"""Helpers for the scaled tests (tools/scaled/e2e.py, tools/scaled/chaos.py): HTTP through the
gateways, the gateways' metrics, SQL on the data host's PostgreSQL. Standard library only; run
inside the load namespace (`ip netns exec fab-load python3 ...`), where `gateway`, `postgres` and
the hosts' addresses resolve through /etc/netns/fab-load/hosts."""
import http.client as httpclient
import json
import os
import re
import subprocess
import time

DEMO_KEY = os.environ.get("FABRIKAM_SEED_API_KEY") or "fdk_local_demo_key"
NET = "198.18.0"
HOSTS = {"a": f"{NET}.11", "b": f"{NET}.12", "c": f"{NET}.13", "d": f"{NET}.14"}
DELIVERY = {"pickupLocation": {"latitude": 47.6101, "longitude": -122.3421},
            "dropoffLocation": {"latitude": 47.6205, "longitude": -122.3493},
            "packageInfo": {"size": "PACKAGE_SIZE_SMALL", "weight": 1.5}}
FINAL = {"DELIVERY_STAGE_COMPLETED", "DELIVERY_STAGE_FAILED", "DELIVERY_STAGE_CANCELLED"}


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    def __repr__(self):
        return f"{self.status} {self.body[:300]!r}"


def http(host, method, path, body=None, key=DEMO_KEY, headers=None, timeout=20, port=8080):
    """One request on a fresh connection to `host` (an address or a name) on the gateway port."""
    connection = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            h["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=h)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
    finally:
        connection.close()


def metrics(host, port):
    """The Prometheus text of a process's admin endpoint, as {series: value}."""
    answer = http(host, "GET", "/metrics", key=None, port=port, timeout=10)
    check(answer.status == 200, f"metrics of {host}:{port}: {answer}")
    out = {}
    for line in answer.body.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            pass
    return out


def gateway_requests(host, method=None, route=None):
    """How many HTTP requests a gateway replica answered (http_server_requests_total), optionally
    of one method and route template."""
    total = 0.0
    for series, value in metrics(host, 8180).items():
        if not series.startswith("http_server_requests_total"):
            continue
        if method and f'method="{method}"' not in series:
            continue
        if route and f'route="{route}"' not in series:
            continue
        total += value
    return total


def server_calls(host, port):
    """RPC calls a service replica started (grpc_server_started_total), health checks left out."""
    return sum(value for series, value in metrics(host, port + 100).items()
               if series.startswith("grpc_server_started_total") and 'grpc_service="grpc.health' not in series)


def sql(query):
    """Rows of a query on the scaled PostgreSQL (database fabrikam), as lists of strings."""
    out = subprocess.run(["psql", "-h", "postgres", "-U", "app", "-d", "fabrikam", "-X", "-A", "-t", "-F", "\t",
                          "-v", "ON_ERROR_STOP=1", "-c", query], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, f"psql: {out.stderr.strip()} ({query})")
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def wait_until(what, timeout, condition, every=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except (OSError, httpclient.HTTPException) as error:
            last = error
        time.sleep(every)
    raise Failed(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def stage_of(host, delivery_id, key=DEMO_KEY):
    answer = http(host, "GET", f"/v1/deliveries/{delivery_id}/status", key=key)
    if answer.status != 200:
        return None
    match = re.search(r'"stage":"([A-Z_]+)"', answer.body)
    return match.group(1) if match else None
