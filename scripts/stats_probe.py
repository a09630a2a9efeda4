#!/usr/bin/env python3
"""Times GET /api/v1/websocket/stats on one keep-alive connection every 100 ms while the server holds at least
N WebSocket connections (from when it first does until it no longer does, at most 300 s), then prints one JSON
line. scripts/bench runs it beside the 19,000-connection run as a check on the load generator's own probe,
which shares the generator's saturated CPU: both measure the same (p90 169 vs 190 ms in one full run)."""
import json, socket, sys, time

port, token, held = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = (f"GET /api/v1/websocket/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()

def connect():
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            return s
        except OSError:
            time.sleep(0.1)
    sys.exit("stats probe: server not reachable")

def ask(s):
    """One request; (seconds, connections total) of the response."""
    started = time.perf_counter()
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += s.recv(65536)
    elapsed = time.perf_counter() - started
    return elapsed, json.loads(body)["connections"]["total"]

s = connect()
times, reached, deadline = [], False, time.time() + 300
while time.time() < deadline:
    try:
        elapsed, connections = ask(s)
    except (OSError, ValueError, KeyError, StopIteration):
        break
    if connections >= held:
        reached = True
        times.append(elapsed * 1000)
    elif reached:
        break
    time.sleep(0.1)
times.sort()
n = len(times)
result = {"scenario": "stats_probe", "connections_held": held, "requests": n}
if n:
    result.update(stats_ms_p50=round(times[n // 2], 2), stats_ms_p90=round(times[n * 9 // 10], 2),
                  stats_ms_max=round(times[-1], 2))
print(json.dumps(result, sort_keys=True))
