"""The chaos test (issue 15 item 6) against the scaled system, run from the load host by
tools/scaled-test.sh --chaos (`make chaos-test`) after the end-to-end test.

Under a steady load of deliveries through both gateways (FABRIKAM_CHAOS_RATE per second in all,
default 2; each request has an Idempotency-Key and is retried with the same key, on the other
gateway, after a connection error, a 5xx or a 429, so "accepted" means a 202 was received):
  - every FABRIKAM_CHAOS_STEP seconds (default 12) the next service in
    accounts package dronescheduler deliveryhistory simulator delivery supervisor workflow
    ingestion gateway gets SIGKILL on one replica (a, b, a, ... in turn), started again 3 s later
    (tools/scaled/start-service.sh);
  - PostgreSQL is crashed (pg_ctl -m immediate) and started again after the fourth service, and
    nats-server is SIGKILLed and started again on its store after the eighth.
Then the load stops and the test waits (bounded, FABRIKAM_CHAOS_DRAIN seconds, default 300: a
Supervisor claim held by a killed replica lasts 120 s) and asserts, naming every offender:
  1. every accepted delivery reaches a final stage: its status through the gateway (public API);
  2. no drone is held by a finished delivery: no active assignment in Drone Scheduler's store and
     no flight in the simulator's store belongs to a delivery in a final stage (SQL);
  3. no drone flies two deliveries: per drone, the spans [first HEADED_TO_PICKUP, final event]
     of its deliveries in Delivery History do not overlap (SQL on deliveryhistory.events), and
     neither do Drone Scheduler's assignments [assign_time, release_time] (SQL);
  4. no event is lost from a delivery's history: every stage change among Delivery's tracking
     events (read back through the gateway, GET :track after sequence 0) is in Delivery History
     (through the gateway, GET /history) under its event id (<delivery>-<sequence>) and stage;
     nothing is left in Delivery's outbox (SQL).
Why SQL for 2 and 3: fleet assignments and flights are not in the public API, and reading the
stores' rows avoids trusting the services under test to report on themselves; both stores are
the services' own, read after the load, on the PostgreSQL every replica shares.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fab import DELIVERY, FINAL, HOSTS, Failed, check, http, sql, stage_of, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
P = os.environ.get("FABRIKAM_NETNS_PREFIX", "fab")
STATE = os.environ.get("FABRIKAM_SCALED_DIR", f"/tmp/fabrikam-scaled-{P}")
RATE = float(os.environ.get("FABRIKAM_CHAOS_RATE", "2"))
STEP = float(os.environ.get("FABRIKAM_CHAOS_STEP", "12"))
DRAIN = float(os.environ.get("FABRIKAM_CHAOS_DRAIN", "300"))
ORDER = ["accounts", "package", "dronescheduler", "deliveryhistory", "simulator", "delivery", "supervisor",
         "workflow", "ingestion", "gateway"]
FINAL_NUMBERS = {5: "DELIVERY_STAGE_COMPLETED", 6: "DELIVERY_STAGE_CANCELLED", 7: "DELIVERY_STAGE_FAILED"}
replicas = sorted(HOSTS)[: int(os.environ.get("FABRIKAM_REPLICAS", "2"))]
run = f"{os.getpid()}-{int(time.time())}"
t0 = time.monotonic()


def log(text):
    print(f"chaos [{time.monotonic() - t0:6.1f} s]: {text}", flush=True)


class Load:
    """Deliveries at RATE per second in all, one thread per gateway replica."""

    def __init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted = {}      # delivery id -> (idempotency key, gateway that answered 202)
        self.not_accepted = []  # (key, last answer)
        self.retries = 0
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(len(replicas))]

    def loop(self, index):
        interval = len(replicas) / RATE
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            next_at += interval
            self.one(index, f"chaos-{run}-{index}-{n}")
            n += 1
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def one(self, index, key):
        deadline = time.monotonic() + 60
        attempt = 0
        last = None
        while time.monotonic() < deadline:
            h = replicas[(index + attempt) % len(replicas)]
            try:
                answer = http(HOSTS[h], "POST", "/v1/deliveries", body=DELIVERY, headers={"Idempotency-Key": key}, timeout=15)
                last = answer
                if answer.status == 202:
                    with self.lock:
                        self.accepted[answer.json["deliveryId"]] = (key, h)
                    return
                if answer.status not in (429, 500, 502, 503, 504):
                    break
            except OSError as error:
                last = error
            attempt += 1
            with self.lock:
                self.retries += 1
            time.sleep(0.5)
        with self.lock:
            self.not_accepted.append((key, repr(last)))


def pid_of(name):
    with open(os.path.join(STATE, "pids", f"{name}.pid")) as f:
        return int(f.read().strip())


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def kill_and_restart(service, host):
    pid = pid_of(f"{host}-{service}")
    os.kill(pid, signal.SIGKILL)
    wait_until(f"{service} on {host} (pid {pid}) to exit", 15, lambda: gone(pid), every=0.05)
    log(f"SIGKILL {service} on {host} (pid {pid})")
    time.sleep(3)  # down for a while, as a crashed pod would be before its restart
    out = subprocess.run(["bash", os.path.join(ROOT, "tools/scaled/start-service.sh"), host, service],
                         capture_output=True, text=True, timeout=90)
    check(out.returncode == 0, f"restarting {service} on {host}: {out.stdout}{out.stderr}")
    log(f"restarted {service} on {host}: {out.stdout.strip()}")


def engine(action):
    started = time.monotonic()
    out = subprocess.run(["bash", os.path.join(ROOT, "tools/scaled/engines.sh"), action], capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, f"engines.sh {action}: {out.stdout}{out.stderr}")
    log(f"{action}: {out.stdout.strip()} ({time.monotonic() - started:.1f} s)")


def chaos_schedule():
    for i, service in enumerate(ORDER):
        step_start = time.monotonic()
        kill_and_restart(service, replicas[i % len(replicas)])
        if service == "deliveryhistory":
            engine("restart-postgres")
        if service == "workflow":
            engine("restart-nats")
        time.sleep(max(0.0, STEP - (time.monotonic() - step_start)))


def timestamp(text):
    """Seconds since the epoch of an RFC 3339 time as the JSON mapping writes it."""
    from datetime import datetime
    check(text, "an event without a time")
    main, _, rest = text.rstrip("Z").partition(".")
    fraction = float("0." + rest) if rest else 0.0
    return datetime.fromisoformat(main + "+00:00").timestamp() + fraction


failures = []


def failed(message):
    log(f"FAILED {message}")
    failures.append(message)


def verdict(ok, message):
    if not ok:
        failed(message)


BREAK = {b for b in os.environ.get("FABRIKAM_CHAOS_BREAK", "").split(",") if b}


def sabotage(ids):
    """FABRIKAM_CHAOS_BREAK=history,held,overlap: damages the stores after the drain, as a lost
    event, an unreleased drone and a doubly assigned drone would, so that checks 4, 2 and 3 are
    seen failing (the test's own check that it can fail; never set in CI)."""
    if "history" in BREAK:
        victim = ids[len(ids) // 2]
        sql(f"DELETE FROM deliveryhistory.events WHERE delivery_id = '{victim}' AND stage = 4")
        log(f"BREAK history: deleted {victim}'s HEADED_TO_DROPOFF event from Delivery History")
    if "held" in BREAK:
        row = sql("UPDATE dronescheduler.assignments SET active = 1, release_time = NULL WHERE assignment_id = "
                  "(SELECT max(assignment_id) FROM dronescheduler.assignments) RETURNING drone_id, delivery_id")
        log(f"BREAK held: the last assignment made active again: {row}")
    if "overlap" in BREAK:
        row = sql("UPDATE dronescheduler.assignments SET release_time = release_time + 100000 WHERE assignment_id = "
                  "(SELECT min(assignment_id) FROM dronescheduler.assignments WHERE release_time IS NOT NULL) RETURNING drone_id, delivery_id")
        log(f"BREAK overlap: an early assignment released 100000 s later: {row}")


def final_in_store(ids):
    rows = sql("SELECT delivery_id, stage FROM delivery.deliveries WHERE delivery_id IN (%s)" % ",".join(f"'{i}'" for i in ids))
    return {r[0]: int(r[1]) for r in rows}


def main():
    load = Load()
    log(f"load: {RATE}/s through gateways {', '.join(replicas)}; a kill every {STEP} s")
    for t in load.threads:
        t.start()
    time.sleep(STEP)  # steady load before the first kill
    chaos_schedule()
    load.stop.set()
    for t in load.threads:
        t.join(timeout=90)
    ids = sorted(load.accepted)
    log(f"load stopped: {len(ids)} accepted, {len(load.not_accepted)} never accepted, {load.retries} retries")
    for key, last in load.not_accepted[:10]:
        log(f"  not accepted: {key}: {last}")
    check(ids, "nothing was accepted")
    check(not load.not_accepted, f"{len(load.not_accepted)} requests retried for 60 s over every gateway were never accepted "
          f"(the system was unavailable that long): {load.not_accepted[:5]}")

    # 1. Every accepted delivery reaches a final stage (waited for in the store, then read through
    # the public API).
    def all_final():
        stages = {}
        for chunk in range(0, len(ids), 200):
            stages.update(final_in_store(ids[chunk:chunk + 200]))
        pending = [i for i in ids if stages.get(i) not in FINAL_NUMBERS]
        return (not pending, pending)
    drain_start = time.monotonic()
    last_report = 0
    while True:
        try:
            done, pending = all_final()
        except Failed as error:
            done, pending = False, [str(error)]
        if done:
            break
        if time.monotonic() - drain_start > DRAIN:
            details = []
            for i in pending[:20]:
                answer = http(HOSTS[replicas[0]], "GET", f"/v1/deliveries/{i}/status")
                details.append(f"{i} (Idempotency-Key {load.accepted.get(i, ('?',))[0]}): {answer}")
            raise Failed(f"{len(pending)} accepted deliveries not final after {DRAIN:.0f} s of drain:\n  " + "\n  ".join(details))
        if time.monotonic() - last_report > 15:
            log(f"drain: {len(pending)} not final yet")
            last_report = time.monotonic()
        time.sleep(1)
    log(f"every accepted delivery is final in Delivery's store after {time.monotonic() - drain_start:.1f} s of drain")
    outcome = {}
    for n, i in enumerate(ids):
        h = HOSTS[replicas[n % len(replicas)]]
        stage = wait_until(f"status of {i}", 30, lambda: stage_of(h, i) or None)
        check(stage in FINAL, f"1: {i} is {stage} through the gateway")
        outcome[stage] = outcome.get(stage, 0) + 1
    log(f"1 OK: all {len(ids)} accepted deliveries final through the gateways: {outcome}")

    sabotage(ids)

    # 2. No drone held by a finished delivery (releases follow the final event: waited for, bounded).
    finals = ",".join(str(n) for n in FINAL_NUMBERS)
    held_query = ("SELECT a.drone_id, a.delivery_id, d.stage FROM dronescheduler.assignments a JOIN delivery.deliveries d "
                  f"USING (delivery_id) WHERE a.active = 1 AND d.stage IN ({finals})")
    flying_query = ("SELECT f.drone_id, f.delivery_id, d.stage FROM simulator.flights f JOIN delivery.deliveries d "
                    f"USING (delivery_id) WHERE d.stage IN ({finals})")
    try:
        wait_until("no drone held or flown for a finished delivery", 30, lambda: not sql(held_query) and not sql(flying_query))
        log("2 OK: no active assignment and no flight belongs to a finished delivery")
    except Failed:
        failed(f"2: drones held by finished deliveries: assignments {sql(held_query)}, flights {sql(flying_query)}")

    # 4 (read first, 3 uses it). No event lost between Delivery, the stream and Delivery History.
    wait_until("Delivery's outbox to be empty", 60, lambda: sql("SELECT count(*) FROM delivery.outbox")[0][0] == "0")
    lost, phantom, checked = [], [], 0
    spans = {}  # drone -> [(start, end, delivery)]
    history_deadline = time.monotonic() + 75
    for n, i in enumerate(ids):
        h = HOSTS[replicas[n % len(replicas)]]
        tracked = http(h, "GET", f"/v1/deliveries/{i}:track?afterSequence=0", timeout=30)
        check(tracked.status == 200, f"4: tracking {i}: {tracked}")
        events = [json.loads(line) for line in tracked.body.splitlines() if line.strip()]
        events = [e.get("result", e) for e in events]
        changes, previous = {}, None
        for e in sorted(events, key=lambda e: int(e.get("sequence", 0))):
            if e.get("stage") != previous:
                changes[f"{i}-{e.get('sequence')}"] = e.get("stage")
            previous = e.get("stage")
        # History consumes the event stream on its own: an event a killed History replica held
        # comes back after the ack wait (30 s), and later events of that delivery wait behind it.
        # So each history is read until it holds every stage change, within one shared bound.
        while True:
            history = wait_until(f"history of {i}", 30, lambda: (a := http(h, "GET", f"/v1/deliveries/{i}/history")).status == 200 and a)
            recorded = history.json.get("events", [])
            by_id = {e["eventId"]: e.get("stage") for e in recorded}
            if all(by_id.get(k) == v for k, v in changes.items()) or time.monotonic() > history_deadline:
                break
            time.sleep(0.5)
        for event_id, stage in changes.items():
            if by_id.get(event_id) != stage:
                lost.append((event_id, stage, by_id.get(event_id)))
        for event_id, stage in by_id.items():
            if changes.get(event_id) != stage:
                phantom.append((event_id, stage))
        checked += len(changes)
        # 3's spans: from a drone's first HEADED_TO_PICKUP for this delivery to the next event
        # naming another drone, or the final event.
        recorded.sort(key=lambda e: int(e.get("sequence", 0)))
        drone, start = None, None
        for e in recorded:
            when = timestamp(e.get("eventTime"))
            if drone and (e.get("droneId") != drone or e.get("stage") in FINAL):
                spans.setdefault(drone, []).append((start, when, i))
                drone = None
            if e.get("stage") == "DELIVERY_STAGE_HEADED_TO_PICKUP" and not drone:
                drone, start = e.get("droneId"), when
        if drone:
            spans.setdefault(drone, []).append((start, float("inf"), i))
    verdict(not lost, f"4: stage changes missing from history (event id, stage, history's): {lost[:20]} ({len(lost)} in all)")
    verdict(not phantom, f"4: history events that are no stage change of Delivery's: {phantom[:20]} ({len(phantom)} in all)")
    if not lost and not phantom:
        log(f"4 OK: all {checked} stage changes of {len(ids)} deliveries are in their histories, nothing else is; the outbox is empty")

    # 3. No drone flies two deliveries at once.
    overlaps = []
    for drone, list_ in spans.items():
        list_.sort()
        for (s1, e1, d1), (s2, e2, d2) in zip(list_, list_[1:]):
            if s2 < e1:
                overlaps.append((drone, d1, d2))
    verdict(not overlaps, f"3: a drone flew two deliveries at once (drone, first, second), by history: {overlaps[:20]}")
    by_history = len(overlaps)
    assignments = {}
    for drone, delivery, assigned, released in sql("SELECT drone_id, delivery_id, assign_time, coalesce(release_time, 'Infinity') "
                                                   "FROM dronescheduler.assignments ORDER BY drone_id, assign_time, assignment_id"):
        assignments.setdefault(drone, []).append((float(assigned), float(released), delivery))
    for drone, list_ in assignments.items():
        for (s1, e1, d1), (s2, e2, d2) in zip(list_, list_[1:]):
            if s2 < e1:
                overlaps.append((drone, d1, d2))
    verdict(len(overlaps) == by_history, f"3: a drone was assigned two deliveries at once (drone, first, second): {overlaps[by_history:][:20]}")
    if not overlaps:
        log(f"3 OK: no drone's deliveries overlap: {sum(map(len, spans.values()))} flights of {len(spans)} drones by history, "
            f"{sum(map(len, assignments.values()))} assignments")
    if failures:
        raise Failed(f"{len(failures)} checks failed:\n  " + "\n  ".join(failures))
    log(f"OK in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except Failed as failure:
        print(f"chaos: FAILED: {failure}", flush=True)
        sys.exit(1)
