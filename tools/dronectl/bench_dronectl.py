#!/usr/bin/env python3
"""Whole-process cost of dronectl against `buf curl` (tools/bench-dronectl.sh runs this).

Each command runs to completion as its own process; wall time is measured around spawn and
wait, peak memory is the child's maxrss from wait4. Commands take turns in every round, so
drift of this shared machine hits all of them alike. Prints a Markdown table.

Usage: bench_dronectl.py --dronectl BIN --buf BIN --unary-port P --stream-port Q [--rounds N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def run_once(argv, stdin=None):
    """(seconds, peak KiB, exit status, stdout lines) of one run."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines = 0
    for chunk in iter(lambda: process.stdout.read(1 << 16), b""):
        lines += chunk.count(b"\n")
    process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {process.returncode}")
    return elapsed, usage.ru_maxrss, lines


def summarize(name, samples):
    times = sorted(s[0] * 1000 for s in samples)
    memory = sorted(s[1] / 1024 for s in samples)
    return name, statistics.median(times), times[int(len(times) * 0.9) - 1], statistics.median(memory), max(memory)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dronectl", required=True)
    parser.add_argument("--buf", required=True)
    parser.add_argument("--unary-port", type=int, required=True)
    parser.add_argument("--stream-port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    unary = f"127.0.0.1:{args.unary_port}"
    commands = {
        "dronectl, generated (`dronectl health check`)": [args.dronectl, "health", "check", "--server", unary],
        "dronectl, reflection (`dronectl call .../Check`)": [args.dronectl, "call", "grpc.health.v1.Health/Check", "--server", unary, "-d", "{}"],
        "buf curl, reflection": [args.buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}",
                                 f"http://{unary}/grpc.health.v1.Health/Check"],
    }
    samples = {name: [] for name in commands}
    for argv in commands.values():
        run_once(argv)  # warm the page cache
    names = list(commands)
    for round_number in range(args.rounds):
        # Rotate the order every round.
        for name in names[round_number % len(names):] + names[:round_number % len(names)]:
            samples[name].append(run_once(commands[name]))

    print(f"One unary call (grpc.health.v1.Health/Check on our interop server), {args.rounds} rounds, whole process:\n")
    print("| command | wall p50 ms | wall p90 ms | peak RSS p50 MiB | peak RSS max MiB |")
    print("|---|---:|---:|---:|---:|")
    rows = [summarize(name, samples[name]) for name in names]
    for name, p50, p90, memory, memory_max in rows:
        print(f"| {name} | {p50:.1f} | {p90:.1f} | {memory:.1f} | {memory_max:.1f} |")
    buf = rows[-1]
    for name, p50, _, memory, _ in rows[:-1]:
        print(f"\n{name}: {p50 / buf[1]:.2f}x buf curl's wall time, {memory / buf[3]:.2f}x its peak memory", end="")
    print("\n")

    stream = f"127.0.0.1:{args.stream_port}"
    print("A server stream printed to a pipe (grpcio's TestService.StreamingOutputCall, 16-byte payloads, reflection):\n")
    print("| messages | command | lines printed | wall s | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|")
    for count in (1000, 10000, 100000):
        for name, argv in (
            ("dronectl call", [args.dronectl, "call", "grpc.testing.TestService/StreamingOutputCall", "--server", stream,
                               "-H", f"x-bench-repeat: {count}", "-d", '{"responseParameters":[{"size":16}]}']),
            ("buf curl", [args.buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-H", f"x-bench-repeat: {count}",
                          "-d", '{"responseParameters":[{"size":16}]}', f"http://{stream}/grpc.testing.TestService/StreamingOutputCall"]),
        ):
            elapsed, peak, lines = run_once(argv)
            print(f"| {count} | {name} | {lines} | {elapsed:.2f} | {peak / 1024:.1f} |")


if __name__ == "__main__":
    main()
