#!/usr/bin/env python3
"""Summarises a chrome-trace profile written by `hrm bench --profile FILE`: self and total time per op."""
import json
import sys
from collections import defaultdict

events = [e for e in json.load(open(sys.argv[1])) if e.get("ph") == "X"]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
by_thread = defaultdict(list)
for e in events:
    by_thread[e.get("tid")].append(e)
self_t, total_t, count = defaultdict(float), defaultdict(float), defaultdict(int)
for evs in by_thread.values():
    evs.sort(key=lambda e: (e["ts"], -e["dur"]))
    stack = []
    for e in evs:
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            self_t[stack[-1]["name"]] -= e["dur"]
        self_t[e["name"]] += e["dur"]
        total_t[e["name"]] += e["dur"]
        count[e["name"]] += 1
        stack.append(e)
whole = sum(v for v in self_t.values())
print(f"{'op':45s} {'self ms':>9s} {'self %':>7s} {'total ms':>9s} {'calls':>7s}")
for name, t in sorted(self_t.items(), key=lambda kv: -kv[1])[:top]:
    print(f"{name[:45]:45s} {t/1000:9.1f} {100*t/whole:6.1f}% {total_t[name]/1000:9.1f} {count[name]:7d}")
