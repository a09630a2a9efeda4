"""Holds N subscribed WebSocket connections and times GET /stats at N = 10 and N = 10,000.

Usage: stats_scale.py PORT ADMIN_TOKEN SERVER_PID. Connections are spread over 127.0.0.2-127.0.0.21.
"""
import asyncio
import base64
import json
import os
import statistics
import sys
import time
import urllib.request

PORT, TOKEN, SERVER_PID = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
STEPS = [10, 10_000]
SAMPLES = 200


def masked_text(text):
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def open_connection(index):
    source = f"127.0.0.{2 + index % 20}"
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.decode(errors="replace"))
    writer.write(masked_text(json.dumps({"type": "subscribe", "channel": f"market_data:S{index % 500}"})))
    await writer.drain()
    return reader, writer


def time_get(path):
    """Sorted request times in ms for SAMPLES GETs of `path` (a new HTTP connection each), and the last body."""
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    timings = []
    body = {}
    for _ in range(SAMPLES):
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.loads(response.read())
        timings.append((time.perf_counter() - start) * 1000)
    return sorted(timings), body


def rss_kib():
    with open(f"/proc/{SERVER_PID}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


async def main():
    held = []
    # /health does no stats work: it is the control for what 10k open sockets cost any request on this machine.
    print(f"{'connections':>12} {'stats p50 ms':>13} {'p99 ms':>8} {'health p50 ms':>14} {'p99 ms':>8} "
          f"{'stats/health':>13} {'server RSS MiB':>15}")
    for target in STEPS:
        started = time.perf_counter()
        while len(held) < target:
            batch = min(500, target - len(held))
            held += await asyncio.gather(*(open_connection(len(held) + i) for i in range(batch)))
        opened = time.perf_counter() - started
        await asyncio.sleep(1.0)
        health, _ = await asyncio.to_thread(time_get, "/api/v1/websocket/health")
        stats, body = await asyncio.to_thread(time_get, "/api/v1/websocket/stats")
        reported = body["connections"]["total"]
        p50, p99 = statistics.median(stats), stats[int(len(stats) * 0.99) - 1]
        h50, h99 = statistics.median(health), health[int(len(health) * 0.99) - 1]
        print(f"{reported:>12} {p50:>13.3f} {p99:>8.3f} {h50:>14.3f} {h99:>8.3f} {p50 / h50:>13.2f} "
              f"{rss_kib() / 1024:>15.1f}   (opened in {opened:.1f} s)")
        print(json.dumps({"connections": reported, "stats_p50_ms": round(p50, 3), "stats_p99_ms": round(p99, 3),
                          "health_p50_ms": round(h50, 3), "stats_over_health": round(p50 / h50, 2)}))
    for _, writer in held:
        writer.close()


asyncio.run(main())
