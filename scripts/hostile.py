"""scripts/hostile's driver: one fresh node per scenario (so RSS growth is the scenario's own), a healthy
subscriber on `system_status`, broadcasts through the HTTP API at 20/s, and the attack beside them.

Each scenario names the SPEC line it holds. Exit status non-zero on any violated bound."""
import base64
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from check_support import free_port, stop  # noqa: E402

BIN = sys.argv[1]
SELECTED = sys.argv[2:]


def frame(opcode, payload=b"", fin=True):
    """A masked client frame (RFC 6455 §5.2), with an all-zero mask so the payload goes as is."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


def upgrade_request(path="/ws"):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


class Node:
    def __init__(self, *flags):
        self.port = free_port()
        self.secret = secrets.token_hex(32)
        self.log = open(os.environ.get("HOSTILE_NODE_LOG", os.devnull), "a")
        self.process = subprocess.Popen(
            [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--jwt-secret", self.secret,
             "--log-level", "error", *flags], stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.admin = self.token("ops", "admin")

    def token(self, user, role="user"):
        return subprocess.run([BIN, "token", "--sub", user, "--role", role, "--jwt-secret", self.secret],
                              capture_output=True, text=True, timeout=30).stdout.strip()

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.process.poll() is None

    def request(self, method, path, body=None, token=None, timeout=5):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")

    def stop(self):
        stop(self.process, self.log)


class Subscriber(threading.Thread):
    """A healthy, reading client on system_status: the data values it received, in order."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        self.sock.sendall(upgrade_request("/ws?subscribe=system_status"))
        self.received = []
        self.buffer = b""
        self.running = True
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.start()

    def run(self):
        self.sock.settimeout(0.5)
        while self.running:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.buffer += chunk
            while len(self.buffer) >= 2:
                opcode, length, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
                if length == 126:
                    if len(self.buffer) < 4:
                        break
                    length, offset = struct.unpack(">H", self.buffer[2:4])[0], 4
                elif length == 127:
                    if len(self.buffer) < 10:
                        break
                    length, offset = struct.unpack(">Q", self.buffer[2:10])[0], 10
                if len(self.buffer) < offset + length:
                    break
                payload, self.buffer = self.buffer[offset:offset + length], self.buffer[offset + length:]
                if opcode == 0x9:
                    self.sock.sendall(frame(0xA, payload))
                elif opcode == 0x1:
                    message = json.loads(payload)
                    if message.get("type") == "message" and message.get("event") == "tick":
                        self.received.append(message["data"])

    def close(self):
        self.running = False
        self.sock.close()


def run_scenario(name, spec, attack, seconds=4.0, rss_limit_mib=16, flags=(), after=None):
    node = Node(*flags)
    failures = []
    try:
        subscriber = Subscriber(node)
        time.sleep(0.3)
        rss_before = node.rss_kib()
        stop_attack = threading.Event()
        attacker = threading.Thread(target=attack, args=(node, stop_attack), daemon=True)
        attacker.start()
        sent, health_worst, peak = 0, 0.0, rss_before
        started = time.time()
        while time.time() - started < seconds:
            sent += 1
            try:
                node.request("POST", "/api/v1/websocket/broadcast",
                             {"channel": "system_status", "event": "tick", "data": sent}, token=node.admin)
            except Exception as error:  # noqa: BLE001 - reported as a failure below
                failures.append(f"broadcast {sent} failed: {error}")
            if sent % 5 == 0:
                t0 = time.time()
                try:
                    node.request("GET", "/api/v1/websocket/health", timeout=1)
                except Exception as error:  # noqa: BLE001
                    failures.append(f"/health did not answer within 1 s: {error}")
                health_worst = max(health_worst, time.time() - t0)
            peak = max(peak, node.rss_kib())
            time.sleep(0.05)
        stop_attack.set()
        attacker.join(timeout=10)
        deadline = time.time() + 5
        while len(subscriber.received) < sent and time.time() < deadline:
            time.sleep(0.05)
        subscriber.close()
        if after:
            failures += after(node)
        growth_mib = (peak - rss_before) / 1024
        if not node.alive():
            failures.append("the node died")
        if subscriber.received != list(range(1, sent + 1)):
            failures.append(f"the subscriber got {len(subscriber.received)} of {sent} broadcasts (in order: "
                            f"{subscriber.received == sorted(subscriber.received)})")
        if growth_mib > rss_limit_mib:
            failures.append(f"RSS grew {growth_mib:.1f} MiB, over {rss_limit_mib} MiB")
        print(f"{'ok  ' if not failures else 'FAIL'} {name:<34} {spec:<22} {seconds:4.1f} s  RSS +{growth_mib:5.1f} MiB "
              f"(limit {rss_limit_mib})  subscriber {len(subscriber.received)}/{sent}  /health worst "
              f"{health_worst * 1000:.0f} ms" + ("".join(f"\n     {f}" for f in failures)))
    finally:
        node.stop()
    return not failures


def connect_from(node, source, timeout=2):
    """A TCP connection to the node from the loopback address `source` (each attacker gets its own IP, so the
    checks from 127.0.0.1 are never under its limits)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", node.port))
    return sock


def open_raw(node, path="/ws", rcvbuf=None, source=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source:
        sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", node.port))
    sock.sendall(upgrade_request(path))
    return sock


def ping_flood(node, stop_event):
    """A client that never reads streams pings (issue 33, defect 1)."""
    batch = frame(0x9) * 20000
    for _ in range(50):
        if stop_event.is_set():
            return
        sock = open_raw(node, rcvbuf=4096)
        try:
            for _ in range(100):
                if stop_event.is_set():
                    break
                sock.sendall(batch)
        except OSError:
            pass  # closed by the node (4008): the next one tries again
        finally:
            sock.close()


def auth_close_burst(node, stop_event):
    """Upgrade, auth, five subscribes and FIN in one write, again and again (issue 33, defect 2)."""
    token = node.token("ghost")
    burst = upgrade_request() + frame(0x1, json.dumps({"type": "auth", "token": token}).encode())
    for topic in "abcde":
        burst += frame(0x1, json.dumps({"type": "subscribe", "channel": f"market_data:{topic}"}).encode())
    for _ in range(2000):
        if stop_event.is_set():
            return
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        sock.sendall(burst)
        sock.close()
        time.sleep(0.002)


def empty_continuations(node, stop_event):
    """A text frame without FIN, then empty continuation frames without end (issue 33, defect 7)."""
    batch = frame(0x0, fin=False) * 20000
    for _ in range(200):
        if stop_event.is_set():
            return
        sock = open_raw(node)
        try:
            sock.sendall(frame(0x1, b"{", fin=False))
            for _ in range(50):
                sock.sendall(batch)
        except OSError:
            pass  # closed with 1009
        finally:
            sock.close()


def other_namespace_connects(node, stop_event):
    """Socket.IO CONNECTs to namespaces that do not exist, before the main CONNECT (issue 33, defect 4)."""
    batch = frame(0x1, b"40/x,") * 2000
    for _ in range(200):
        if stop_event.is_set():
            return
        sock = open_raw(node, "/socket.io/?EIO=4&transport=websocket", rcvbuf=4096)
        try:
            for _ in range(20):
                sock.sendall(batch)
        except OSError:
            pass  # the session ended
        finally:
            sock.close()


def subscribe_churn(node, stop_event):
    """Connections that each subscribe to 50 random channel names at upgrade, then close (issue 34, defect 1)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    for _ in range(400):
        if stop_event.is_set():
            return
        names = ",".join("market_data:" + "".join(secrets.choice(letters) for _ in range(10)) for _ in range(50))
        sock = open_raw(node, "/ws?subscribe=" + names)
        try:
            seen = b""
            deadline = time.time() + 5
            while seen.count(b'"subscribed"') < 50 and time.time() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                seen += chunk
        except OSError:
            pass
        finally:
            sock.close()


def channels_back_to_baseline(node):
    """Within 1 s of the last close, only the subscriber's channel is left (SPEC §4)."""
    deadline = time.time() + 1
    while True:
        _, body = node.request("GET", "/api/v1/websocket/stats", token=node.admin)
        total = body["channels"]["total"]
        if total <= 1:
            return []
        if time.time() > deadline:
            return [f"channels.total is {total} 1 s after the last close (baseline 1)"]
        time.sleep(0.05)


def pipelining_non_readers(node, stop_event):
    """The issue's reproduction: 300 keep-alive HTTP connections from one IP (127.0.0.2, so the checks from
    127.0.0.1 stay under its cap), each with a 4 KB receive buffer, pipelining GET /metrics and never reading
    (issue 34, defect 11)."""
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 50
    sockets = []
    try:
        for _ in range(300):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind(("127.0.0.2", 0))
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", node.port))
            except BlockingIOError:
                pass
            sockets.append(sock)
        for _ in range(2000):
            if stop_event.is_set():
                break
            for sock in sockets:
                try:
                    sock.send(request)
                except OSError:
                    pass  # full, or closed by the node: a non-reader does not care
            time.sleep(0.01)
    finally:
        for sock in sockets:
            sock.close()


def trickled_requests(node, stop_event):
    """Connections from 127.0.0.3 that trickle a head or a huge body a byte at a time (issue 34, defect 3)."""
    starts = [b"GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
              b"POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{"]
    sockets = []
    try:
        for index in range(30):
            sock = connect_from(node, "127.0.0.3", timeout=2)
            sock.sendall(starts[index % 2])
            sockets.append(sock)
        for _ in range(400):
            if stop_event.is_set():
                break
            for sock in sockets:
                try:
                    sock.send(b"a")
                except OSError:
                    pass
            time.sleep(0.1)
        node.still_open = sum(1 for sock in sockets if not closed_by_peer(sock))
    finally:
        for sock in sockets:
            sock.close()


def closed_by_peer(sock):
    """Whether the node closed `sock` (whatever it sent first is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def header_flood(node, stop_event):
    """Heads that never end: header lines pushed as fast as the node takes them (issue 34, defect 12)."""
    lines = b"X-Endless: " + b"y" * 100 + b"\r\n"
    for _ in range(200):
        if stop_event.is_set():
            return
        sock = socket.socket()
        sock.bind(("127.0.0.4", 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", node.port))
            sock.sendall(b"GET /api/v1/websocket/health HTTP/1.1\r\n")
            for _ in range(2000):
                sock.sendall(lines * 10)
        except OSError:
            pass  # answered 431 and closed
        finally:
            sock.close()


def trickles_cut(node):
    """request-timeout-ms is 1 s and the attack lasts 4: the node has closed every trickling connection."""
    left = getattr(node, "still_open", None)
    return [] if left == 0 else [f"{left} trickling connections still open after 4 s"]


def raw_frame(opcode, payload, fin=True, mask=True, rsv=0):
    """A frame with every bit chosen by the caller (RFC 6455 §5.2), masked with an all-zero key when `mask`."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n, bit = len(payload), (0x80 if mask else 0)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    return head + (b"\0\0\0\0" if mask else b"") + payload


def malformed_frames(node, stop_event):
    """Oversized, unmasked, reserved-bit, unknown-opcode, bad-UTF-8 and lying-length frames, one kind per
    connection, round after round (SPEC §3 close codes, §7)."""
    kinds = [
        raw_frame(0x1, b"x" * 70_000),                       # over max-message-bytes: 1009
        raw_frame(0x1, b'{"type":"ping"}', mask=False),      # unmasked: 1002
        raw_frame(0x1, b'{"type":"ping"}', rsv=0x40),        # RSV1 without deflate: 1002
        raw_frame(0x3, b"?"),                                # reserved opcode: 1002
        raw_frame(0x1, b"\xff\xfe\xfd"),                     # bad UTF-8: 1007
        raw_frame(0x9, b"p" * 200),                          # control frame over 125 bytes: 1002
        bytes([0x81, 0xFF]) + struct.pack(">Q", 2 ** 63 - 1) + b"\0\0\0\0",  # a length no client has
        raw_frame(0x8, b"\x03"),                             # close with a one-byte payload: 1002
    ]
    for round_ in range(200):
        for payload in kinds:
            if stop_event.is_set():
                return
            sock = open_raw(node)
            try:
                sock.sendall(payload)
                sock.recv(4096)
            except OSError:
                pass
            finally:
                sock.close()


def decompression_bombs(node, stop_event):
    """permessage-deflate messages that inflate far past max-message-bytes (SPEC §12, §13): closed with 1009
    without the node inflating them whole."""
    import zlib
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"\0" * 50_000_000) + deflater.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4] if bomb.endswith(b"\x00\x00\xff\xff") else bomb
    request = (upgrade_request()[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    for _ in range(200):
        if stop_event.is_set():
            return
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        try:
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            sock.sendall(raw_frame(0x1, bomb, rsv=0x40))
            sock.recv(4096)
        except OSError:
            pass
        finally:
            sock.close()


def malformed_socketio_packets(node, stop_event):
    """Garbage Engine.IO and Socket.IO packets on both transports (SPEC §9, §7)."""
    garbage = [b"", b"9", b"4", b"42", b"42[", b'42["subscribe"', b"4" + b"[" * 5000, b'42["x",' + b"1," * 3000 + b"1]",
               b"40/" + b"a" * 3000 + b",", b"6", b"2probe" * 100, b"\xff\xfe", b'43{"a":1}', b"451-[\"x\"]"]
    for _ in range(100):
        if stop_event.is_set():
            return
        sock = open_raw(node, "/socket.io/?EIO=4&transport=websocket", rcvbuf=4096)
        try:
            for packet in garbage:
                sock.sendall(raw_frame(0x1, packet))
        except OSError:
            pass
        finally:
            sock.close()
        try:
            handshake = urllib.request.urlopen(f"http://127.0.0.1:{node.port}/socket.io/?EIO=4&transport=polling", timeout=2)
            sid = json.loads(handshake.read()[1:])["sid"]
            for packet in garbage:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{node.port}/socket.io/?EIO=4&transport=polling&sid={sid}", data=packet, method="POST")
                try:
                    urllib.request.urlopen(request, timeout=2).read()
                except Exception:  # noqa: BLE001 - a 400 ends the session, as it should
                    break
        except Exception:  # noqa: BLE001 - the pool or the rate may refuse: that is the node holding its bounds
            pass


def long_poll_hoarding(node, stop_event):
    """Polling sessions from one IP (127.0.0.5) that each hold a GET open and never CONNECT, far past the per-IP
    pool (SPEC §9, §13)."""
    sockets = []
    try:
        for _ in range(300):
            if stop_event.is_set():
                break
            try:
                sock = connect_from(node, "127.0.0.5", timeout=2)
                sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = sock.recv(4096)
                if b" 200 " in answer.split(b"\r\n", 1)[0] and b'"sid":"' in answer:
                    sid = answer.split(b'"sid":"', 1)[1].split(b'"', 1)[0].decode()
                    sock.sendall(f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                sockets.append(sock)
            except OSError:
                pass
        while not stop_event.is_set():
            time.sleep(0.05)
    finally:
        for sock in sockets:
            sock.close()


def hs256(secret, claims):
    """A JWT signed with HS256 (RFC 7519), its claims as given."""
    import hashlib
    import hmac

    def part(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")
    signing = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(hmac.new(secret.encode(), signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + signature).decode()


def absurd_claims(node, stop_event):
    """Correctly signed tokens with absurd claims, at upgrade, in `auth` and on the HTTP API (SPEC §2, §13)."""
    now = int(time.time())
    tokens = [hs256(node.secret, claims) for claims in [
        {"sub": "x", "role": "admin", "exp": 1e17}, {"sub": "x", "role": "admin", "exp": 1e300},
        {"sub": "x", "role": "admin", "exp": -1}, {"sub": "x", "role": "admin", "exp": "soon"},
        {"sub": "x", "role": "admin", "exp": now + 60, "nbf": now + 3600}, {"sub": "x", "role": "admin", "iat": 1e300},
        {"sub": "x" * 5000, "role": "admin"}, {"sub": "x", "role": "emperor"}, {"sub": 12, "role": "admin"},
    ]]
    for _ in range(100):
        for token in tokens:
            if stop_event.is_set():
                return
            # From 127.0.0.7: the failures block that IP (as they should), not the checks' 127.0.0.1.
            try:
                sock = open_raw(node, f"/ws?token={token}", source="127.0.0.7")
                sock.recv(4096)
                sock.close()
                sock = open_raw(node, source="127.0.0.7")
                sock.sendall(raw_frame(0x1, json.dumps({"type": "auth", "token": token}).encode()))
                sock.recv(4096)
                sock.close()
                sock = connect_from(node, "127.0.0.7", timeout=2)
                sock.sendall(f"GET /api/v1/websocket/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                             "Connection: close\r\n\r\n".encode())
                sock.recv(4096)
                sock.close()
            except OSError:
                pass  # refusals and closes are the point


def connect_storm(node, stop_event):
    """WebSocket connects from one IP (127.0.0.6) past its pool and connect rate, held open (SPEC §3, §7)."""
    sockets = []
    try:
        for _ in range(3000):
            if stop_event.is_set():
                break
            try:
                sock = connect_from(node, "127.0.0.6", timeout=2)
                sock.sendall(upgrade_request())
                sockets.append(sock)
            except OSError:
                pass
            if len(sockets) >= 1500:
                for sock in sockets[:500]:
                    sock.close()
                del sockets[:500]
    finally:
        for sock in sockets:
            sock.close()


def no_ghosts(node):
    """Within 1 s of the last close, the user has no connection left (SPEC §13)."""
    deadline = time.time() + 1
    while True:
        _, body = node.request("GET", "/api/v1/websocket/connections/ghost", token=node.admin)
        left = len(body.get("connections", [])) if isinstance(body, dict) else -1
        if left == 0:
            return []
        if time.time() > deadline:
            return [f"{left} connections of the user still listed 1 s after the last close"]
        time.sleep(0.05)


SCENARIOS = {
    "ping-flood-from-a-non-reader": ("SPEC §3 heartbeat, §13", ping_flood, {}),
    "close-during-auth-bursts": ("SPEC §13 leaves nothing", auth_close_burst,
                                 {"flags": ("--connect-rate-per-ip", "100000"), "after": no_ghosts}),
    "empty-continuation-flood": ("SPEC §7, §13", empty_continuations, {"flags": ("--connect-rate-per-ip", "100000")}),
    "socketio-other-namespace-connects": ("SPEC §7 every packet", other_namespace_connects, {"flags": ("--connect-rate-per-ip", "100000")}),
    "random-channel-subscribe-churn": ("SPEC §4 channel lifetime", subscribe_churn,
                                       {"flags": ("--connect-rate-per-ip", "100000"), "after": channels_back_to_baseline}),
    "pipelining-http-non-readers": ("SPEC §13 HTTP", pipelining_non_readers, {"rss_limit_mib": 64}),
    "trickled-heads-and-bodies": ("SPEC §13 HTTP time", trickled_requests,
                                  {"flags": ("--request-timeout-ms", "1000"), "after": trickles_cut}),
    "endless-header-lines": ("SPEC §13 HTTP 431", header_flood, {}),
    "oversized-and-malformed-frames": ("SPEC §3 close codes, §7", malformed_frames, {"flags": ("--connect-rate-per-ip", "100000")}),
    "decompression-bombs": ("SPEC §12, §13", decompression_bombs,
                            {"flags": ("--connect-rate-per-ip", "100000", "--compression", "true")}),
    "malformed-socketio-packets": ("SPEC §9, §7", malformed_socketio_packets, {"flags": ("--connect-rate-per-ip", "100000")}),
    "long-poll-hoarding": ("SPEC §9, §13 pools", long_poll_hoarding, {"flags": ("--connect-rate-per-ip", "100000")}),
    "tokens-with-absurd-claims": ("SPEC §2, §13", absurd_claims, {"flags": ("--connect-rate-per-ip", "100000")}),
    "connect-storm-past-the-pools": ("SPEC §3 pools, §7 rate", connect_storm, {}),
}

if SELECTED == ["--list"]:
    print("\n".join(SCENARIOS))
    sys.exit(0)
results = []
for name, (spec, attack, options) in SCENARIOS.items():
    if SELECTED and name not in SELECTED:
        continue
    results.append(run_scenario(name, spec, attack, **options))
passed = sum(results)
print(f"hostile: {passed} passed, {len(results) - passed} failed")
sys.exit(0 if all(results) else 1)
