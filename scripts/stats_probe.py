#!/usr/bin/env python3
"""Times GET /api/v1/websocket/stats on one keep-alive connection every 100 ms while the server holds at least
N WebSocket connections (from when it first does until it no longer does, at most 300 s), then prints one JSON
line. scripts/bench runs it beside the 19,000-connection run as a check on the load generator's own probe,
which shares the generator's saturated CPU: both measure the same (p90 169 vs 190 ms in one full run). It also
reports the times to the kernel's receive timestamps of the responses (kernel_ms_*), which leave out this
process's own wait for a CPU: they match the times it sees, so the delay is the server's."""
import json, socket, struct, sys, time

# Linux value; Python does not always export the name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

port, token, held = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = (f"GET /api/v1/websocket/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()

def connect():
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            return s
        except OSError:
            time.sleep(0.1)
    sys.exit("stats probe: server not reachable")

def ask(s):
    """One request; (seconds seen by this process, seconds to the kernel's receive time of the response's last
    bytes, connections total). The second leaves out this process's own wait for a CPU, which on a saturated
    machine can be most of the first."""
    started = time.time()
    s.sendall(request)
    data, received_at = b"", started

    def read():
        nonlocal received_at
        chunk, ancillary, _, _ = s.recvmsg(65536, 1024)
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                received_at = seconds + nanoseconds / 1e9
        if not chunk:
            raise OSError("closed")
        return chunk

    while b"\r\n\r\n" not in data:
        data += read()
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += read()
    seen = time.time() - started
    if not head.startswith(b"HTTP/1.1 2"):
        status = head.split(b"\r\n")[0].decode()
        sys.exit(f"stats probe: {status} {body.decode(errors='replace')}")
    return seen, received_at - started, json.loads(body)["connections"]["total"]

s = connect()
times, kernel_times, reached, deadline = [], [], False, time.time() + 300
while time.time() < deadline:
    try:
        elapsed, kernel_elapsed, connections = ask(s)
    except (OSError, ValueError, KeyError, StopIteration):
        break
    if connections >= held:
        reached = True
        times.append(elapsed * 1000)
        kernel_times.append(kernel_elapsed * 1000)
    elif reached:
        break
    time.sleep(0.1)
times.sort()
kernel_times.sort()
n = len(times)
result = {"scenario": "stats_probe", "connections_held": held, "requests": n}
if n:
    result.update(stats_ms_p50=round(times[n // 2], 2), stats_ms_p90=round(times[n * 9 // 10], 2),
                  stats_ms_max=round(times[-1], 2), kernel_ms_p50=round(kernel_times[n // 2], 2),
                  kernel_ms_p90=round(kernel_times[n * 9 // 10], 2), kernel_ms_max=round(kernel_times[-1], 2))
print(json.dumps(result, sort_keys=True))
