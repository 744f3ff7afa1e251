"""End-to-end completion batch of tools/bench-scaled.sh: N deliveries through the gateway(s), each
accepted id followed to a final stage in Delivery's store, then read back through the gateway.

    python3 tools/scaled/bench_e2e.py --gateways HOST:PORT[,HOST:PORT...] --store sqlite:PATH|postgres
        [-n 300] [-c 8] [--timeout 300]

Requests go round-robin over the gateways (the demo key, a unique Idempotency-Key each), from
`-c` threads, one fresh connection per request. Accept time: when the 202 arrived (this
machine's clock). Final time: the delivery's `update_time` in Delivery's store (the same clock;
every process runs on this machine) once its stage is COMPLETED, CANCELLED or FAILED. The store
is polled once a second (sqlite: the file; postgres: `psql -h postgres`, run inside the load
namespace). After the batch is final, or the timeout, every accepted id is read through a gateway
(GET /v1/deliveries/{id}/status): an id it does not know is lost.

Prints one line: accepted rejected wall_s completions_per_s p50_s p99_s completed failed
cancelled not_final unknown_to_status
"""
import argparse
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fab import DELIVERY, http, sql  # noqa: E402

FINAL = {5: "completed", 6: "cancelled", 7: "failed"}


def rows(store, ids):
    """{delivery_id: (stage, update_time)} of the ids Delivery's store holds."""
    if store == "postgres":
        out = sql("SELECT delivery_id, stage, update_time FROM delivery.deliveries")
        found = {r[0]: (int(r[1]), float(r[2])) for r in out}
    else:
        path = store.split(":", 1)[1]
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            found = {r[0]: (int(r[1]), float(r[2])) for r in db.execute("SELECT delivery_id, stage, update_time FROM deliveries")}
            db.close()
        except sqlite3.Error:
            found = {}
    return {i: found[i] for i in ids if i in found}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("-c", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    gateways = [(g.rsplit(":", 1)[0], int(g.rsplit(":", 1)[1])) for g in args.gateways.split(",")]

    accepted = {}  # id -> accept time
    rejected = []
    lock = threading.Lock()
    counter = iter(range(args.n))
    run = f"{os.getpid()}-{int(time.time())}"

    def worker():
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            host, port = gateways[n % len(gateways)]
            try:
                answer = http(host, "POST", "/v1/deliveries", body=DELIVERY, port=port, timeout=30,
                              headers={"Idempotency-Key": f"bench-{run}-{n}"})
                ok = answer.status == 202 and answer.json.get("deliveryId")
            except OSError as error:
                answer, ok = error, False
            with lock:
                if ok:
                    accepted[answer.json["deliveryId"]] = time.time()
                else:
                    rejected.append(repr(answer))

    start = time.time()
    threads = [threading.Thread(target=worker) for _ in range(args.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in rejected[:3]:
        print(f"bench-e2e: rejected: {r}", file=sys.stderr)

    ids = set(accepted)
    deadline = start + args.timeout
    found = {}
    while time.time() < deadline:
        found = rows(args.store, ids)
        if all(i in found and found[i][0] in FINAL for i in ids):
            break
        time.sleep(1)
    final = {i: v for i, v in found.items() if v[0] in FINAL}
    end = max((v[1] for v in final.values()), default=time.time())
    wall = end - start
    latencies = sorted(final[i][1] - accepted[i] for i in final)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    by_stage = {name: sum(1 for v in final.values() if FINAL[v[0]] == name) for name in FINAL.values()}

    # Every accepted id, read through a gateway: one it does not know is lost.
    unknown = 0
    for k, i in enumerate(sorted(ids)):
        host, port = gateways[k % len(gateways)]
        try:
            answer = http(host, "GET", f"/v1/deliveries/{i}/status", port=port, timeout=30)
            if answer.status != 200:
                unknown += 1
                print(f"bench-e2e: {i} status: {answer!r}", file=sys.stderr)
        except OSError as error:
            unknown += 1
            print(f"bench-e2e: {i} status: {error!r}", file=sys.stderr)
    print(f"{len(ids)} {len(rejected)} {wall:.1f} {len(final) / wall if wall > 0 else 0:.1f} {pick(0.5):.2f} {pick(0.99):.2f} "
          f"{by_stage['completed']} {by_stage['failed']} {by_stage['cancelled']} {len(ids) - len(final)} {unknown}")


if __name__ == "__main__":
    main()
