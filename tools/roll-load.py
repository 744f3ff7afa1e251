#!/usr/bin/env python3
"""Paced HTTP/1.1 load that records every request (tools/measure-containers.sh, rolling restart).

    roll-load.py --url URL --rps R --seconds S --out FILE [--method POST --body FILE]
                 [--header 'Name: value' ...] [--connections N]

R requests per second for S seconds on a fixed schedule, each sent at its time on whichever of N
keep-alive connections is free (default 4 R + 8: four seconds of requests may wait on slow
answers at once): open-loop, like many independent users, so one slow answer delays no other
request (a few connections, as with `h2load -c 4 --rps`, queue the requests behind a slow one and
send them in a burst afterwards, which the gateway's rate limit then refuses). As urllib3 does, a
kept-alive connection the server has closed meanwhile is not used again (a request sent on it
would fail without the server ever seeing it). Every request is one line of FILE, tab-separated: start (ms since the epoch), HTTP status (0: no answer:
connection refused, reset or timed out), milliseconds to the whole answer, and for a failure the
answer's body or the error (one line, 300 characters at most). A non-2xx answer is a failure.
The standard library only, so CI needs nothing more.
"""
import argparse
import http.client
import select
import threading
import time
import urllib.parse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int)
    parser.add_argument("--rps", type=float, default=10)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.url)
    target = url.path + ("?" + url.query if url.query else "")
    body = open(args.body, "rb").read() if args.body else None
    headers = dict(h.split(": ", 1) for h in args.header)
    lines, lock = [], threading.Lock()
    start = time.time() + 0.1
    end = start + args.seconds

    next_slot = [0]
    connections = args.connections or int(4 * args.rps) + 8

    def dropped(connection):  # the server closed it (or sent something unasked) while it was idle
        return connection.sock is None or bool(select.select([connection.sock], [], [], 0)[0])

    def client():
        connection = None
        while True:
            with lock:
                slot = next_slot[0]
                next_slot[0] += 1
            due = start + slot / args.rps
            if due >= end:
                break
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            began = time.time()
            status, detail = 0, ""
            try:
                if connection is not None and dropped(connection):
                    connection.close()
                    connection = None
                if connection is None:
                    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=args.timeout)
                connection.request(args.method, target, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                status = answer.status
                if not 200 <= status < 300:
                    detail = data.decode("utf-8", "replace")
                if answer.getheader("connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except Exception as error:  # noqa: BLE001 - every failure is recorded, none stops the load
                detail = f"{type(error).__name__}: {error}"
                if connection is not None:
                    connection.close()
                connection = None
            took = (time.time() - began) * 1000
            detail = " ".join(detail.split())[:300]
            with lock:
                lines.append(f"{int(began * 1000)}\t{status}\t{took:.1f}\t{detail}\n")

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(args.out, "w") as out:
        out.writelines(sorted(lines))


if __name__ == "__main__":
    main()
