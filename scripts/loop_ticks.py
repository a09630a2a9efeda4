#!/usr/bin/env python3
"""Reads `perf script -F tid,time,event,trace` of raw_syscalls:sys_enter and syscalls:sys_exit_epoll_wait (on
stdin) and prints how long the busiest thread's event-loop ticks took: from an epoll_wait returning to the next
one starting, with the syscalls in between. scripts/loop-ticks feeds it; a tick is as long as every socket of
that loop waits for its turn."""
import collections
import sys

NAMES = {0: "read", 1: "write", 3: "close", 20: "writev", 44: "sendto", 51: "getsockname", 52: "getpeername",
         232: "epoll_wait", 233: "epoll_ctl", 288: "accept4", 318: "getrandom", 286: "timerfd_settime", 10: "mprotect"}
EPOLL_WAIT = 232

rows = []
for line in sys.stdin:
    parts = line.split()
    if len(parts) < 3:
        continue
    tid, time = parts[0], float(parts[1].rstrip(":"))
    if "exit_epoll_wait" in parts[2]:
        rows.append((tid, time, -1))
    elif len(parts) > 4 and parts[3] == "NR":
        rows.append((tid, time, int(parts[4])))
if not rows:
    sys.exit("no samples: was perf allowed to trace the server?")
loop = collections.Counter(row[0] for row in rows).most_common(1)[0][0]
ticks, started, calls = [], None, None
for tid, time, number in rows:
    if tid != loop:
        continue
    if number == -1:
        started, calls = time, collections.Counter()
    elif number == EPOLL_WAIT and started is not None:
        ticks.append((time - started, calls))
        started = None
    elif calls is not None:
        calls[NAMES.get(number, str(number))] += 1
ticks = [tick for tick in ticks if tick[1]["close"] < 5]  # the clients' close at the end is not the storm
if not ticks:
    sys.exit("no ticks seen")
durations = sorted(tick[0] * 1e3 for tick in ticks)
upgrades = sorted(tick[1]["writev"] for tick in ticks)
n = len(ticks)
at = lambda values, q: values[min(n - 1, int(n * q))]
print(f"ticks {n}: p50 {at(durations, .5):.3f} ms, p99 {at(durations, .99):.3f} ms, p99.9 {at(durations, .999):.3f} ms, "
      f"max {durations[-1]:.3f} ms")
print(f"writev calls (upgrades answered) per tick: p99 {at(upgrades, .99)}, p99.9 {at(upgrades, .999)}, max {upgrades[-1]}")
print("longest ticks:")
for duration, calls in sorted(ticks, key=lambda tick: -tick[0])[:5]:
    print(f"  {duration * 1e3:.2f} ms: " + ", ".join(f"{name} {count}" for name, count in calls.most_common(6)))
