"""The end-to-end delivery test against the scaled system (tools/run-scaled.sh), run from the load
host: `ip netns exec fab-load python3 tools/scaled/e2e.py`.

Per gateway replica (198.18.0.11 and .12, port 8080), the README's first delivery and what
GatewayFlowTests' "whole delivery over public JSON" checks, crossing replicas on purpose:
  - a business registers through gateway X (public POST /v1/accounts) and gets its key;
  - it asks for a delivery through X (202, Location) and repeats the same Idempotency-Key
    through the other gateway Y: the same delivery (idempotency holds across replicas);
  - the Location answers through Y at once; tracking over SSE through Y ends at
    DELIVERY_STAGE_COMPLETED; the history (through X) holds the completion, without repeated
    event ids; the summary answers.
Then deliveries with the demo key through the name `gateway` (which resolves to both).
Shown, and asserted: both gateway replicas answered requests (each one's own
http_server_requests_total on its metrics port went up by at least what was sent to it), and
every replica of the services the gateways call (accounts, ingestion, delivery, deliveryhistory)
served calls (clients balance over a name's addresses). Bounded: every wait has a limit, the
whole test about a minute at FABRIKAM_TIME_SCALE=60.
"""
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fab import DELIVERY, DEMO_KEY, FINAL, HOSTS, Failed, check, gateway_requests, http, server_calls, stage_of, wait_until

PORTS = {"accounts": 15051, "package": 15052, "dronescheduler": 15053, "delivery": 15054, "deliveryhistory": 15055,
         "ingestion": 15056, "workflow": 15057, "supervisor": 15058, "simulator": 15059}
replicas = sorted(HOSTS)[: int(os.environ.get("FABRIKAM_REPLICAS", "2"))]
gateways = {h: HOSTS[h] for h in replicas}
sent = {h: 0 for h in replicas}
lock = threading.Lock()


def via(h, *args, **kwargs):
    with lock:
        sent[h] += 1
    return http(gateways[h], *args, **kwargs)


def log(text):
    print(f"e2e-scaled: {text}", flush=True)


def track_sse(h, delivery_id, key, timeout):
    """Reads the SSE stream through gateway h until it ends; returns the events' stages."""
    answer = via(h, "GET", f"/v1/deliveries/{delivery_id}:track", key=key, headers={"Accept": "text/event-stream"}, timeout=timeout)
    check(answer.status == 200, f"track through {h}: {answer}")
    events = [json.loads(line[5:]) for line in answer.body.splitlines() if line.startswith("data:")]
    stages = [e.get("stage") for e in events]
    sequences = [int(e.get("sequence", 0)) for e in events]
    return stages, sequences, answer.body


def one_business(x, y, results):
    """The README's first delivery, registered and asked for through x, repeated, read and tracked through y."""
    try:
        account = via(x, "POST", "/v1/accounts", key=None, body={"displayName": f"Shop {x}", "contactEmail": f"me@{x}.example"})
        check(account.status in (200, 201), f"register through {x}: {account}")
        key = re.search(r'"secret":"([^"]+)"', account.body)
        check(key, f"no key in {account}")
        key = key.group(1)
        request_key = f"order-{x}-{os.getpid()}"
        created = via(x, "POST", "/v1/deliveries", key=key, body=DELIVERY, headers={"Idempotency-Key": request_key})
        check(created.status == 202, f"create through {x}: {created}")
        delivery_id = created.json.get("deliveryId")
        check(delivery_id and created.headers.get("location") == f"/v1/deliveries/{delivery_id}/status", f"202 without its Location: {created} {created.headers}")
        again = via(y, "POST", "/v1/deliveries", key=key, body=DELIVERY, headers={"Idempotency-Key": request_key})
        check(again.status == 202 and again.json.get("deliveryId") == delivery_id,
              f"the same Idempotency-Key through {y} answered another delivery: {again} (first {delivery_id})")
        status = via(y, "GET", f"/v1/deliveries/{delivery_id}/status", key=key)
        check(status.status == 200, f"Location through {y} did not answer at once: {status}")
        first_stage = re.search(r'"stage":"([A-Z_]+)"', status.body)
        log(f"{x}: business registered, {delivery_id} accepted through gateway {x}, same key through {y} -> same id, "
            f"status through {y}: {first_stage and first_stage.group(1)}")
        stages, sequences, body = track_sse(y, delivery_id, key, timeout=120)
        check(stages and stages[-1] == "DELIVERY_STAGE_COMPLETED", f"SSE through {y} ended without COMPLETED: {body[-500:]}")
        check(sequences == list(range(sequences[0], sequences[0] + len(sequences))), f"SSE events' sequences have a gap: {sequences}")
        log(f"{x}: tracked through gateway {y} over SSE: {len(sequences)} events, sequences {sequences[0]}..{sequences[-1]} without a gap, last {stages[-1]}")
        history = wait_until(f"history of {delivery_id} with its completion", 30, lambda: (
            (a := via(x, "GET", f"/v1/deliveries/{delivery_id}/history", key=key)).status == 200
            and "DELIVERY_STAGE_COMPLETED" in a.body and a))
        events = history.json.get("events", [])
        event_ids = [e.get("eventId") for e in events]
        check(len(event_ids) == len(set(event_ids)), f"history repeats events: {event_ids}")
        summary = via(y, "GET", f"/v1/deliveries/{delivery_id}/summary", key=key)
        check(summary.status == 200 and delivery_id in summary.body, f"summary through {y}: {summary}")
        log(f"{x}: history through gateway {x}: {len(events)} events ({', '.join(e.get('stage', '?').replace('DELIVERY_STAGE_', '') for e in events)}); summary through {y}")
        results[x] = delivery_id
    except Exception as error:  # reported by the main thread
        results[x] = error


def main():
    start = time.monotonic()
    check(len(replicas) >= 1, "no replicas")
    for h, address in gateways.items():
        answer = wait_until(f"gateway {h} ({address}) healthy", 30, lambda: (a := http(address, "GET", "/healthz", key=None)).status == 200 and a)
    before = {h: gateway_requests(gateways[h]) for h in replicas}
    calls_before = {(s, h): server_calls(HOSTS[h], p) for s, p in PORTS.items() for h in replicas}

    results = {}
    threads = []
    for i, x in enumerate(replicas):
        y = replicas[(i + 1) % len(replicas)]
        t = threading.Thread(target=one_business, args=(x, y, results))
        t.start()
        threads.append(t)

    # Deliveries with the demo key through the name `gateway` (both addresses): each request
    # opens a new connection, which takes the first address glibc gives, so these show the name
    # resolves, not the balance; the balance is shown by the addresses above.
    by_name = []
    for n in range(4):
        created = http("gateway", "POST", "/v1/deliveries", body=DELIVERY, headers={"Idempotency-Key": f"by-name-{os.getpid()}-{n}"})
        check(created.status == 202, f"create through the name gateway: {created}")
        by_name.append(created.json["deliveryId"])
    for t in threads:
        t.join(timeout=180)
    for x in replicas:
        check(x in results, f"the flow through gateway {x} did not finish in time")
        if isinstance(results[x], Exception):
            raise results[x]
    for delivery_id in by_name:
        final = wait_until(f"{delivery_id} final", 120, lambda: (s := stage_of("gateway", delivery_id)) in FINAL and s)
        check(final == "DELIVERY_STAGE_COMPLETED", f"{delivery_id} ended {final}")
    log(f"{len(by_name)} deliveries through the name 'gateway' completed")

    after = {h: gateway_requests(gateways[h]) for h in replicas}
    for h in replicas:
        served = after[h] - before[h]
        log(f"gateway {h} ({gateways[h]}): answered {served:.0f} requests (sent to it by address: {sent[h]})")
        check(served >= sent[h] > 0, f"gateway {h} answered {served:.0f} requests, {sent[h]} were sent to it")
    table = []
    for s, p in PORTS.items():
        counts = {h: server_calls(HOSTS[h], p) - calls_before[(s, h)] for h in replicas}
        table.append(f"{s} " + "/".join(f"{counts[h]:.0f}" for h in replicas))
        if s in ("accounts", "ingestion", "delivery", "deliveryhistory") and len(replicas) > 1:
            check(all(c > 0 for c in counts.values()), f"{s}: not every replica served calls ({counts})")
    log("RPC calls served per replica (" + "/".join(replicas) + "): " + ", ".join(table))
    log(f"OK in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except Failed as failure:
        print(f"e2e-scaled: FAILED: {failure}", flush=True)
        sys.exit(1)
