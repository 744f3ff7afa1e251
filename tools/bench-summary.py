#!/usr/bin/env python3
"""Turns ordo-one/benchmark's text report (--grouping metric) into the tables of docs/benchmarks.md (summarized in README.md).

Reads the report on stdin; prints markdown: per message and operation, the p50 time per
operation and mallocs per operation of ProtobufKit and swift-protobuf, and their ratio.
"""
import re
import sys

SCALE = {"": 1, "#": 1, "ns": 1, "K": 1e3, "M": 1e6, "G": 1e9}
row = re.compile(r"│\s*ProtobufBenchmarks:(?P<name>.+?)\s*(\((?P<unit>[^)]*)\))?\s*\*?\s*│(?P<cells>.*)$")

section = None
values = {}  # (section, name) -> p50
for line in sys.stdin:
    text = line.strip()
    if text.startswith("Malloc (total)"):
        section = "malloc"
    elif text.startswith("Time (wall clock)"):
        section = "time"
    elif text and not text.startswith(("│", "╒", "╞", "├", "╘")) and not text[0].isdigit():
        if section and not text.startswith("│"):
            section = None if not text.startswith(("Malloc", "Time")) else section
    match = row.match(text)
    if not match or section is None:
        continue
    cells = [c.strip() for c in match.group("cells").split("│")]
    p50 = float(cells[2])
    unit = match.group("unit") or ""
    values[(section, match.group("name").strip())] = p50 * SCALE.get(unit, 1)

def fmt_time(ns):
    return f"{ns / 1000:.1f} µs" if ns >= 10_000 else f"{ns:.0f} ns"

print("| message | operation | ProtobufKit | swift-protobuf | ProtobufKit / swift-protobuf | mallocs (ours / theirs) |")
print("|---|---|---:|---:|---:|---:|")
names = sorted({name.rsplit(": ", 1)[0] for (_, name) in values if name.endswith(": ProtobufKit")})
order = ["delivery request", "tracking update", "history page (500 events)"]
for message in order:
    for operation in ["encode", "decode", "to JSON", "from JSON"]:
        key = f"{message} {operation}"
        ours = values.get(("time", f"{key}: ProtobufKit"))
        theirs = values.get(("time", f"{key}: swift-protobuf"))
        if ours is None or theirs is None:
            continue
        m_ours = values.get(("malloc", f"{key}: ProtobufKit"), float("nan"))
        m_theirs = values.get(("malloc", f"{key}: swift-protobuf"), float("nan"))
        verdict = "faster" if ours < theirs else "slower"
        print(f"| {message} | {operation} | {fmt_time(ours)} | {fmt_time(theirs)} | {ours / theirs:.2f} ({verdict}) | {m_ours:.0f} / {m_theirs:.0f} |")

print()
print("| JSON parse (text to the same tree) | JSONScanner (ours) | jansson | Foundation JSONSerialization |")
print("|---|---:|---:|---:|")
for message in ["delivery request", "history page"]:
    ours = values.get(("time", f"JSON parse {message}: JSONScanner"))
    jansson = values.get(("time", f"JSON parse {message}: jansson"))
    foundation = values.get(("time", f"JSON parse {message}: Foundation"))
    if ours and jansson and foundation:
        print(f"| {message} | {fmt_time(ours)} | {fmt_time(jansson)} | {fmt_time(foundation)} |")
