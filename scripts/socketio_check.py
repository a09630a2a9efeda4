"""Socket.IO compatibility (SPEC §9) checked with a client no one here wrote: PyPI's python-socketio.

Run by scripts/socketio-check (part of the test command), which installs the client into .venv-socketio and
passes the `switchboard` binary. Each test runs against a live node on a loopback port started here, with
both client configurations where it matters: the default transports (polling, then the upgrade to
WebSocket) and transports=['websocket'].
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import aiohttp
import socketio

from check_support import free_port, stop

BIN = os.environ["SWITCHBOARD_BIN"]
SECRET = "socketio-check-" + "s" * 32
HEARTBEAT_MS = 400
TRANSPORTS = {"default": None, "websocket": ["websocket"]}


def token(sub, role="user", tier=None, ttl="1h"):
    args = [BIN, "token", "--sub", sub, "--role", role, "--ttl", ttl, "--jwt-secret", SECRET]
    if tier:
        args += ["--tier", tier]
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout.strip()


class Node:
    """A `switchboard serve` process on a free loopback port, stopped by PID."""

    def __init__(self, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        # The check's defaults, each replaced by a flag the test gives.
        defaults = {"--heartbeat-ms": str(HEARTBEAT_MS), "--socketio-ping-timeout-ms": "1500", "--connect-rate-per-ip": "100000",
                    "--max-connections-per-ip": "1000", "--block-after-failures": "1000"}
        given = set(flags[0::2])
        chosen = [item for name, value in defaults.items() if name not in given for item in (name, value)]
        self.process = subprocess.Popen(
            [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--jwt-secret", SECRET, *chosen, *flags],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("switchboard did not start")

    def stop(self):
        stop(self.process, self.log)


NODE = None
ADMIN = None


def setUpModule():
    global NODE, ADMIN
    NODE = Node()
    ADMIN = token("check-admin", role="admin")


def tearDownModule():
    NODE.stop()


class Recorder:
    """A python-socketio AsyncClient that records every event it receives."""

    def __init__(self, transports=None, **client_options):
        self.client = socketio.AsyncClient(reconnection=False, **client_options)
        self.transports = transports
        self.events = []
        self.disconnected = asyncio.Event()
        self.client.on("*", self._record)
        self.client.on("disconnect", self._disconnect)

    async def _record(self, event, *args):
        self.events.append((event, args[0] if args else None))

    async def _disconnect(self, *args):
        self.disconnected.set()

    async def connect(self, auth=None, url=None):
        await self.client.connect(url or NODE.url, transports=self.transports, auth=auth, wait_timeout=10)
        return self

    async def call(self, event, data=None, timeout=10):
        return await self.client.call(event, data, timeout=timeout)

    def messages(self, channel):
        return [data for _, data in self.events if isinstance(data, dict) and data.get("channel") == channel and "seq" in data]

    async def wait_for(self, channel, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.messages(channel)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.messages(channel)

    async def close(self):
        if self.client.connected:
            await self.client.disconnect()


async def api(method, path, body=None, bearer=None, url=None):
    headers = {"Authorization": f"Bearer {bearer or ADMIN}"}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, (url or NODE.url) + path, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)


async def broadcast(channel, data, event="quote", url=None):
    status, body = await api("POST", "/api/v1/websocket/broadcast", {"channel": channel, "event": event, "data": data}, url=url)
    assert status == 200, (status, body)
    return body


def without_epoch(ack):
    """A subscribe ack without its `epoch` (SPEC §5), which must be a non-empty string."""
    ack = dict(ack)
    epoch = ack.pop("epoch", None)
    assert isinstance(epoch, str) and epoch, f"subscribe ack without an epoch: {ack}"
    return ack


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


class ConnectTests(unittest.TestCase):
    def test_connect_without_and_with_a_token_on_both_transports(self):
        async def check(name, transports):
            anonymous = await Recorder(transports).connect()
            self.assertTrue(anonymous.client.connected, name)
            user = await Recorder(transports).connect(auth={"token": token(f"sio-{name}")})
            status, body = await api("GET", f"/api/v1/websocket/connections/sio-{name}")
            self.assertEqual(status, 200)
            [connection] = body["connections"]
            self.assertEqual(connection["role"], "user")
            self.assertTrue(connection["transport"].startswith("socketio-"), connection)
            await anonymous.close()
            await user.close()

        for name, transports in TRANSPORTS.items():
            run(check(name, transports))

    def test_sessions_count_in_stats_and_in_metrics_under_their_transport(self):
        async def check():
            async def figures():
                _, stats = await api("GET", "/api/v1/websocket/stats")
                async with aiohttp.ClientSession() as session:
                    async with session.get(NODE.url + "/metrics") as response:
                        metrics = await response.text()
                line = next(l for l in metrics.splitlines() if l.startswith('switchboard_connections{role="user",transport="socketio"}'))
                return stats["connections"]["total"] + 1000 * stats["connections"]["byTransport"]["socketio"], float(line.split()[-1])
            before_total, before_gauge = await figures()
            clients = [await Recorder(transports).connect(auth={"token": token("sio-metrics")}) for transports in TRANSPORTS.values()]
            total, gauge = await figures()
            self.assertEqual((total - before_total, gauge - before_gauge), (2002, 2), "total and byTransport.socketio both +2")
            for client in clients:
                await client.close()
            await asyncio.sleep(0.3)
            total, gauge = await figures()
            self.assertEqual((total - before_total, gauge - before_gauge), (0, 0))
        run(check())

    def test_a_bad_token_is_a_connect_error_with_the_spec_code_and_no_reconnect(self):
        async def check(transports):
            client = socketio.AsyncClient(reconnection=True)
            errors = []
            client.on("connect_error", lambda data: errors.append(data))
            with self.assertRaises(socketio.exceptions.ConnectionError):
                await client.connect(NODE.url, transports=transports, auth={"token": "not-a-jwt"}, wait_timeout=10)
            self.assertEqual(len(errors), 1, errors)
            self.assertEqual(errors[0]["data"]["code"], "UNAUTHORIZED")
            await asyncio.sleep(1.0)
            self.assertFalse(client.connected)
            self.assertEqual(len(errors), 1, "the client must not try again by itself")

        for transports in TRANSPORTS.values():
            run(check(transports))

    def test_events_sent_before_the_connect_is_answered_are_handled_after_it_in_order(self):
        async def check():
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(NODE.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
                self.assertTrue((await ws.receive()).data.startswith("0{"))
                # A token not seen before is verified off the loop: both events arrive while it is checked.
                await ws.send_str("40" + json.dumps({"token": token("sio-eager", tier="premium")}))
                await ws.send_str('421["subscribe","trading_signals:eager"]')
                await ws.send_str('422["ping"]')
                frames = []
                while len(frames) < 3:
                    data = (await asyncio.wait_for(ws.receive(), 10)).data
                    if data != "2":
                        frames.append(data)
                self.assertTrue(frames[0].startswith("40{"), frames)
                self.assertEqual(without_epoch(json.loads(frames[1][3:])[0]), {"ok": True, "channel": "trading_signals:eager"})
                self.assertEqual(json.loads(frames[2][3:]), [{"ok": True}])
                self.assertTrue(frames[1].startswith("431[") and frames[2].startswith("432["), frames)
                await ws.close()
        run(check())

    def test_other_namespaces_are_refused(self):
        async def check():
            client = socketio.AsyncClient(reconnection=False)
            with self.assertRaises(socketio.exceptions.ConnectionError):
                await client.connect(NODE.url, namespaces=["/other"], transports=["websocket"], wait_timeout=5)
        run(check())

    def test_the_per_user_pool_refuses_a_connect_past_the_limit(self):
        async def check():
            user_token = token("sio-pool")
            clients = [await Recorder(["websocket"]).connect(auth={"token": user_token}) for _ in range(10)]
            client = socketio.AsyncClient(reconnection=False)
            errors = []
            client.on("connect_error", lambda data: errors.append(data))
            with self.assertRaises(socketio.exceptions.ConnectionError):
                await client.connect(NODE.url, auth={"token": user_token}, wait_timeout=10)
            self.assertEqual(errors[0]["data"]["code"], "CONNECTION_LIMIT")
            await clients[0].close()
            await asyncio.sleep(0.2)
            again = await Recorder(None).connect(auth={"token": user_token})  # the slot came back
            for other in clients[1:] + [again]:
                await other.close()
        run(check())

    def test_the_message_rate_limit_answers_through_the_ack(self):
        async def check():
            client = await Recorder(["websocket"]).connect()
            replies = await asyncio.gather(*(client.call("ping") for _ in range(30)))
            limited = [reply for reply in replies if not reply["ok"]]
            self.assertTrue(limited, "30 pings at once are over the burst of 20")
            self.assertTrue(all(reply["code"] == "RATE_LIMITED" for reply in limited), limited)
            self.assertGreaterEqual(len(replies) - len(limited), 19)
            await client.close()
        run(check())

    def test_idle_sessions_outlive_three_ping_intervals(self):
        async def check(transports):
            client = await Recorder(transports).connect()
            await asyncio.sleep(4 * HEARTBEAT_MS / 1000 + 0.3)
            self.assertTrue(client.client.connected)
            self.assertEqual(await client.call("ping"), {"ok": True})
            await client.close()

        for transports in TRANSPORTS.values():
            run(check(transports))


class ChannelTests(unittest.TestCase):
    def test_subscribe_acks_and_forbidden(self):
        async def check(transports):
            client = await Recorder(transports).connect()
            self.assertEqual(without_epoch(await client.call("subscribe", "market_data:SIO1")), {"ok": True, "channel": "market_data:SIO1"})
            denied = await client.call("subscribe", "admin")
            self.assertEqual((denied["ok"], denied["code"]), (False, "FORBIDDEN"))
            bad = await client.call("subscribe", "no such channel!")
            self.assertEqual((bad["ok"], bad["code"]), (False, "BAD_REQUEST"))
            self.assertEqual(await client.call("unsubscribe", "market_data:SIO1"), {"ok": True, "channel": "market_data:SIO1"})
            await client.close()

        for transports in TRANSPORTS.values():
            run(check(transports))

    def test_broadcasts_from_the_api_arrive_once_and_in_order(self):
        async def check(name, transports):
            channel = f"trading_signals:sio-order-{name}"
            client = await Recorder(transports).connect(auth={"token": token("trader", tier="premium")})
            self.assertTrue((await client.call("subscribe", channel))["ok"])
            for index in range(40):
                await broadcast(channel, {"i": index}, event="signal")
            received = await client.wait_for(channel, 40)
            self.assertEqual([m["data"]["i"] for m in received], list(range(40)))
            self.assertEqual([m["seq"] for m in received], list(range(1, 41)))
            self.assertTrue(all(isinstance(m["ts"], int) for m in received))
            self.assertTrue(all(event == "signal" for event, data in client.events if data in received))
            await client.close()

        for name, transports in TRANSPORTS.items():
            run(check(name, transports))

    def test_recovery_with_since(self):
        async def check(name, transports):
            channel = f"trading_signals:sio-recover-{name}"
            for index in range(5):
                await broadcast(channel, {"i": index}, event="signal")
            client = await Recorder(transports).connect(auth={"token": token("trader", tier="premium")})
            ack = await client.call("subscribe", {"channel": channel, "since": 2})
            self.assertEqual(without_epoch(ack), {"ok": True, "channel": channel, "recovered": True})
            received = await client.wait_for(channel, 3)
            self.assertEqual([m["seq"] for m in received], [3, 4, 5])
            await client.close()

        for name, transports in TRANSPORTS.items():
            run(check(name, transports))

    def test_admins_publish_users_do_not_and_reserved_names_are_refused(self):
        async def check():
            admin = await Recorder(["websocket"]).connect(auth={"token": ADMIN})
            watcher = await Recorder(["websocket"]).connect()
            channel = "market_data:SIO-PUB"
            await watcher.call("subscribe", channel)
            published = await admin.call("publish", {"channel": channel, "event": "quote", "data": {"up": True}})
            self.assertTrue(published["ok"], published)
            [message] = await watcher.wait_for(channel, 1)
            self.assertEqual(message["data"], {"up": True})
            refused = await admin.call("publish", {"channel": "system_status", "event": "disconnect", "data": 1})
            self.assertEqual((refused["ok"], refused["code"]), (False, "BAD_REQUEST"))
            user = await Recorder(["websocket"]).connect(auth={"token": token("sio-user")})
            denied = await user.call("publish", {"channel": "system_status", "event": "status", "data": 1})
            self.assertEqual((denied["ok"], denied["code"]), (False, "FORBIDDEN"))
            status, _ = await api("POST", "/api/v1/websocket/broadcast", {"channel": "system_status", "event": "connect", "data": 1})
            self.assertEqual(status, 400)
            for client in (admin, watcher, user):
                await client.close()
        run(check())

    def test_a_fresh_token_in_an_auth_event(self):
        async def check():
            client = await Recorder(["websocket"]).connect(auth={"token": token("sio-refresh", ttl="30s")})
            ack = await client.call("auth", token("sio-refresh", tier="premium"))
            self.assertEqual((ack["ok"], ack["userId"], ack["tier"]), (True, "sio-refresh", "premium"))
            bad = await client.call("auth", "nope")
            self.assertEqual((bad["ok"], bad["code"]), (False, "UNAUTHORIZED"))
            await client.close()
        run(check())


class SessionEndTests(unittest.TestCase):
    def test_an_admin_disconnect_ends_the_session_without_reconnecting(self):
        async def check(name, transports):
            client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1)
            reconnects = []
            client.on("connect", lambda: reconnects.append(1))
            gone = asyncio.Event()
            reasons = []
            client.on("disconnect", lambda *args: (reasons.append(args[0] if args else None), gone.set()))
            await client.connect(NODE.url, transports=transports, auth={"token": token(f"sio-kick-{name}")}, wait_timeout=10)
            status, body = await api("POST", f"/api/v1/websocket/disconnect/user/sio-kick-{name}", {"reason": "bye"})
            self.assertEqual((status, body["disconnected"]), (200, 1))
            await asyncio.wait_for(gone.wait(), 10)
            self.assertEqual(reasons, [client.reason.SERVER_DISCONNECT])
            await asyncio.sleep(1.0)
            self.assertEqual(len(reconnects), 1, "a server DISCONNECT must not be followed by a reconnect")
            self.assertFalse(client.connected)
            status, body = await api("GET", f"/api/v1/websocket/connections/sio-kick-{name}")
            self.assertEqual(body["connections"], [])
            await client.disconnect()

        for name, transports in TRANSPORTS.items():
            run(check(name, transports))

    def test_a_shutdown_ends_the_transport_and_the_client_reconnects(self):
        async def check():
            node = Node()
            try:
                client = socketio.AsyncClient(reconnection=False)
                gone = asyncio.Event()
                reasons = []
                client.on("disconnect", lambda *args: (reasons.append(args[0] if args else None), gone.set()))
                await client.connect(node.url, transports=["websocket"], wait_timeout=10)
                node.process.terminate()
                await asyncio.wait_for(gone.wait(), 15)
                # The transport ended, not the Socket.IO session: a client with reconnection on tries again.
                self.assertEqual(len(reasons), 1)
                self.assertNotEqual(reasons[0], client.reason.SERVER_DISCONNECT)
                await client.disconnect()
            finally:
                node.stop()
        run(check())


class UpgradeTests(unittest.TestCase):
    def test_the_default_client_upgrades_to_websocket(self):
        async def check():
            client = await Recorder(None).connect()
            self.assertEqual(client.client.transport(), "websocket")
            await client.close()
        run(check())

    def test_a_publish_stream_runs_through_the_upgrade_with_every_seq_once_and_in_order(self):
        # python-socketio upgrades before it sends CONNECT, so no event of its crosses the upgrade. This client
        # is Engine.IO by hand (aiohttp) to hold the session on polling while messages flow, then upgrade it.
        async def check():
            publishing = asyncio.Event()
            sent = 0

            async def publish():
                nonlocal sent
                while not publishing.is_set() and sent < 5000:
                    status, _ = await api("POST", "/api/v1/websocket/broadcast", {"userId": "sio-upgrade", "event": "fill", "data": {"i": sent}})
                    self.assertEqual(status, 200)
                    sent += 1

            received = []  # (transport, seq)

            def take(packet, transport):
                if packet.startswith("42"):
                    name, data = json.loads(packet[2:])
                    if name == "fill":
                        received.append((transport, data["seq"]))

            async with aiohttp.ClientSession() as session:
                url = NODE.url + "/socket.io/?EIO=4&transport=polling"
                async with session.get(url) as response:
                    sid = json.loads((await response.text())[1:])["sid"]
                url += "&sid=" + sid
                async with session.post(url, data="40" + json.dumps({"token": token("sio-upgrade")})) as response:
                    self.assertEqual(await response.text(), "ok")
                publisher = asyncio.create_task(publish())

                async def poll_until_noop():
                    while True:
                        async with session.get(url) as response:
                            body = await response.text()
                        for packet in body.split("\x1e"):
                            if packet == "6":
                                return
                            if packet == "2":
                                async with session.post(url, data="3"):
                                    pass
                            take(packet, "polling")

                polling = asyncio.create_task(poll_until_noop())
                deadline = time.monotonic() + 10
                while len(received) < 30 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                ws = await session.ws_connect(NODE.url.replace("http", "ws") + f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
                await ws.send_str("2probe")
                self.assertEqual((await ws.receive()).data, "3probe")
                await asyncio.wait_for(polling, 10)
                await ws.send_str("5")

                async def read_websocket(until, seconds):
                    """Takes the WebSocket's messages (answering pings) until `until()` or `seconds` pass."""
                    deadline = time.monotonic() + seconds
                    while not until() and time.monotonic() < deadline:
                        try:
                            message = await asyncio.wait_for(ws.receive(), 0.5)
                        except asyncio.TimeoutError:
                            continue
                        if message.data == "2":
                            await ws.send_str("3")
                        take(message.data, "websocket")

                await read_websocket(lambda: False, 0.5)  # the stream goes on over WebSocket for a while
                publishing.set()
                await publisher
                await read_websocket(lambda: bool(received) and received[-1][1] >= sent, 10)
                await ws.close()
            seqs = [seq for _, seq in received]
            self.assertEqual(seqs, list(range(seqs[0], sent + 1)), f"{len(seqs)} received from seq {seqs[0]} of {sent}")
            transports = [transport for transport, _ in received]
            self.assertGreaterEqual(transports.count("polling"), 30)
            self.assertGreater(transports.count("websocket"), 10)
            self.assertEqual(transports, sorted(transports, key=lambda t: t == "websocket"), "polling after websocket")
        run(check())


class MixedTests(unittest.TestCase):
    def test_native_and_socketio_clients_see_the_same_messages_with_the_same_seq(self):
        async def check():
            channel = "market_data:SIO-MIX"
            polling = await Recorder(["polling"]).connect()
            websocket = await Recorder(["websocket"]).connect()
            for client in (polling, websocket):
                self.assertTrue((await client.call("subscribe", channel))["ok"])
            native = []
            subscribed = asyncio.Event()
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(NODE.url.replace("http", "ws") + f"/ws?subscribe={channel}") as ws:
                    async def read():
                        # Reading all along also answers the server's pings (aiohttp's autoping).
                        async for message in ws:
                            frame = json.loads(message.data)
                            if frame["type"] == "subscribed":
                                subscribed.set()
                            elif frame["type"] == "message":
                                native.append({"channel": frame["channel"], "data": frame["data"], "seq": frame["seq"], "ts": frame["ts"]})
                                if len(native) == 10:
                                    return
                    reader = asyncio.create_task(read())
                    await asyncio.wait_for(subscribed.wait(), 10)
                    for index in range(10):
                        await broadcast(channel, {"price": index, "text": 'quote "x" \\ y'}, event="quote")
                        await asyncio.sleep(0.15)  # past the 100 ms throttle window: every one goes out
                    await asyncio.wait_for(reader, 10)
            expected = native
            self.assertEqual(len(expected), 10)
            self.assertEqual(await polling.wait_for(channel, 10), expected)
            self.assertEqual(await websocket.wait_for(channel, 10), expected)
            for client in (polling, websocket):
                await client.close()
        run(check())


class HostileInputTests(unittest.TestCase):
    async def handshake(self, session):
        async with session.get(NODE.url + "/socket.io/?EIO=4&transport=polling") as response:
            self.assertEqual(response.status, 200)
            text = await response.text()
        return json.loads(text[1:])["sid"]

    def test_a_handshake_without_connect_and_a_client_that_stops_answering_pings_are_dropped(self):
        async def check():
            node = Node("--auth-timeout-ms", "500")
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(node.url + "/socket.io/?EIO=4&transport=polling") as response:
                        sid = json.loads((await response.text())[1:])["sid"]
                    await asyncio.sleep(1.2)
                    async with session.get(node.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}") as response:
                        self.assertEqual((await response.json())["code"], 1, "no CONNECT within the connect timeout")
                    # A WebSocket session that never answers a ping: gone after pingInterval + pingTimeout.
                    ws = await session.ws_connect(node.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
                    self.assertTrue((await ws.receive()).data.startswith("0{"))
                    await ws.send_str("40")
                    self.assertTrue((await ws.receive()).data.startswith("40{"))
                    started = time.monotonic()
                    pings = 0
                    while True:
                        message = await asyncio.wait_for(ws.receive(), 10)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        pings += message.data == "2"
                    elapsed = time.monotonic() - started
                    self.assertEqual(pings, 1)
                    self.assertLess(elapsed, (HEARTBEAT_MS + 1500) / 1000 + 1.5)
                    self.assertGreater(elapsed, 1.5)
                    await ws.close()
            finally:
                node.stop()
        run(check())

    def test_a_slow_consumer_is_dropped_and_the_others_get_everything(self):
        async def check():
            # Pings far apart: the stalled client answers none, and under a loaded machine the 500 broadcasts may take
            # longer than the check's usual 400 ms + 1.5 s ping timeout, which would end it before its outbox fills.
            node = Node("--outbound-buffer-bytes", "65536", "--heartbeat-ms", "60000", "--socketio-ping-timeout-ms", "60000")
            try:
                channel = "trading_signals:sio-slow"
                admin = token("check-admin", role="admin")
                healthy = await Recorder(["websocket"]).connect(auth={"token": admin}, url=node.url)
                self.assertTrue((await healthy.call("subscribe", channel))["ok"])
                # A raw client with a small receive buffer that subscribes and then never reads again.
                stalled = socket.socket()
                stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stalled.connect(("127.0.0.1", node.port))
                stalled.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                def masked(text):  # a client text frame with a zero mask
                    payload = text.encode()
                    length = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
                    return bytes([0x81]) + length + bytes(4) + payload
                def read_until(marker):
                    seen = b""
                    stalled.settimeout(10)
                    while marker not in seen:
                        chunk = stalled.recv(4096)
                        self.assertTrue(chunk, "closed before " + marker.decode())
                        seen += chunk
                read_until(b"0{")
                stalled.sendall(masked("40" + json.dumps({"token": admin})))
                read_until(b"40{")  # a client emits only once CONNECT is answered
                stalled.sendall(masked(f'420["subscribe","{channel}"]'))
                read_until(b"430[")
                # 8 MB: more than the kernel's buffers on loopback, NIO's 64 KiB and the outbox's 64 KiB together.
                padding = "x" * 16_000
                for index in range(500):
                    await broadcast(channel, {"i": index, "pad": padding}, event="signal", url=node.url)
                received = await healthy.wait_for(channel, 500)
                self.assertEqual([m["data"]["i"] for m in received], list(range(500)))
                _, stats = await api("GET", "/api/v1/websocket/stats", bearer=admin, url=node.url)
                self.assertEqual(stats["slowConsumerDisconnects"], 1)
                stalled.close()
                await healthy.close()
            finally:
                node.stop()
        run(check())

    def test_engineio_errors(self):
        async def check():
            async with aiohttp.ClientSession() as session:
                for query, status, code in [
                    ("EIO=3&transport=polling", 400, 5),
                    ("EIO=4&transport=carrier-pigeon", 400, 0),
                    ("EIO=4&transport=polling&sid=unknown", 400, 1),
                ]:
                    async with session.get(NODE.url + "/socket.io/?" + query) as response:
                        self.assertEqual(response.status, status, query)
                        self.assertEqual((await response.json())["code"], code, query)
                async with session.post(NODE.url + "/socket.io/?EIO=4&transport=polling") as response:
                    self.assertEqual((response.status, (await response.json())["code"]), (400, 2))
        run(check())

    def test_bad_packets_huge_bodies_and_overlapping_polls_end_only_their_session(self):
        async def check():
            bystander = await Recorder(["websocket"]).connect()
            await bystander.call("subscribe", "market_data:SIO-BYSTANDER")
            async with aiohttp.ClientSession() as session:
                base = NODE.url + "/socket.io/?EIO=4&transport=polling&sid="
                # A packet of an unknown type: refused, and the session is gone.
                sid = await self.handshake(session)
                async with session.post(base + sid, data=b"9garbage") as response:
                    self.assertEqual(response.status, 400)
                async with session.get(base + sid) as response:
                    self.assertEqual((await response.json())["code"], 1)
                # A body over maxPayload (max-message-bytes): 413, the session ends.
                sid = await self.handshake(session)
                async with session.post(base + sid, data=b"4" + b"x" * 200_000) as response:
                    self.assertEqual(response.status, 413)
                await asyncio.sleep(0.1)
                async with session.get(base + sid) as response:
                    self.assertEqual((await response.json())["code"], 1)
                # Two GETs at once: the second is refused and the session closes (the first gets a close packet).
                sid = await self.handshake(session)
                first = asyncio.create_task(session.get(base + sid))
                await asyncio.sleep(0.2)
                async with session.get(base + sid) as response:
                    self.assertEqual(response.status, 400)
                async with await first as response:
                    self.assertEqual(await response.text(), "1")
                # A flood of handshakes that never CONNECT: each is dropped after the connect timeout.
                for _ in range(50):
                    await self.handshake(session)
            await broadcast("market_data:SIO-BYSTANDER", {"still": "here"})
            messages = await bystander.wait_for("market_data:SIO-BYSTANDER", 1)
            self.assertEqual(messages[-1]["data"], {"still": "here"})
            self.assertTrue(bystander.client.connected)
            await bystander.close()
        run(check())


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLATFORM_NAMESPACES = """namespaces:
  - { name: market_data, topic: required, throttle-ms: 100, conflate: true, last-value: true, history: 100 }
  - { name: trading_signals, min-role: user, tiers: [premium, enterprise], topic: required, history: 100 }
  - { name: system_status, topic: forbidden, last-value: true }
  - { name: user, min-role: user, owner-only: true, topic: required, history: 100 }
  - { name: admin, min-role: admin, topic: forbidden }
  - { name: room, min-role: user, topic: required, history: 20, grant: required, subscribe-proxy: true }
"""


class PlatformTests(unittest.TestCase):
    """SPEC §14 with python-socketio: a node whose connect and subscribe proxies are examples/platform-backend,
    run here with a Redis of its own; the client brings the platform's session cookie, or its id in `auth`."""

    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.TemporaryDirectory()
        redis_port, backend_port = free_port(), free_port()
        cls.redis_log = tempfile.TemporaryFile()
        cls.redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", cls.directory.name], stdout=cls.redis_log, stderr=cls.redis_log, stdin=subprocess.DEVNULL)
        config = os.path.join(cls.directory.name, "switchboard.yaml")
        with open(config, "w") as file:
            file.write(PLATFORM_NAMESPACES)
        proxy = f"http://127.0.0.1:{backend_port}/switchboard"
        cls.node = Node("--config", config, "--connect-proxy-url", proxy + "/connect", "--subscribe-proxy-url", proxy + "/subscribe",
                        "--proxy-timeout-ms", "3000")
        cls.backend_url = f"http://127.0.0.1:{backend_port}"
        cls.backend_log = tempfile.TemporaryFile()
        cls.backend = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples/platform-backend/backend.py"), "--port", str(backend_port),
             "--redis", f"127.0.0.1:{redis_port}", "--secret", "check-cookie-key", "--switchboard", cls.node.url,
             "--admin-token", token("platform", role="admin")], stdout=cls.backend_log, stderr=cls.backend_log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", backend_port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        stop(cls.backend, cls.backend_log)
        cls.node.stop()
        stop(cls.redis, cls.redis_log)
        cls.directory.cleanup()

    async def backend_call(self, method, path, body):
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.backend_url + path, json=body) as response:
                return response.status, await response.json()

    def test_a_session_cookie_or_its_id_in_auth_connects_as_the_platforms_user(self):
        async def check(name, transports):
            user = f"sio-platform-{name}"
            status, login = await self.backend_call("POST", "/login", {"userId": user, "tier": "premium"})
            self.assertEqual(status, 200)
            cookie = login["cookie"]
            await self.backend_call("POST", "/rooms/3/members", {"userId": user})
            # The browser's cookie, on the handshake (and every polling request).
            by_cookie = Recorder(transports)
            await by_cookie.client.connect(self.node.url, transports=transports, headers={"Cookie": cookie}, wait_timeout=10)
            # No cookie: the session id in the CONNECT auth object.
            by_auth = Recorder(transports)
            await by_auth.connect(auth={"sid": cookie.split("=", 1)[1]}, url=self.node.url)
            status, listed = await api("GET", f"/api/v1/websocket/connections/{user}", url=self.node.url)
            self.assertEqual(status, 200)
            self.assertEqual(len(listed["connections"]), 2, listed)
            # A room member subscribes (the subscribe proxy agrees); another room is FORBIDDEN.
            ack = await by_cookie.call("subscribe", "room:3")
            self.assertTrue(ack["ok"], ack)
            refused = await by_auth.call("subscribe", "room:4")
            self.assertEqual((refused["ok"], refused["code"]), (False, "FORBIDDEN"), refused)
            # A forged session: the CONNECT is refused.
            forged = Recorder(transports)
            with self.assertRaises(socketio.exceptions.ConnectionError):
                await forged.connect(auth={"sid": "forged.0000"}, url=self.node.url)
            for client in (by_cookie, by_auth, forged):
                await client.close()

        for name, transports in TRANSPORTS.items():
            with self.subTest(transports=name):
                run(check(name, transports))


if __name__ == "__main__":
    unittest.main(verbosity=2)
