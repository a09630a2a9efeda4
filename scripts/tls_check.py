"""TLS and compression on the node (SPEC §12) against a live `switchboard serve --compression true` with a
test CA made here by openssl.

Run by scripts/tls-check (part of the test command) with SWITCHBOARD_BIN set. Checks: HTTPS and wss:// on
one port, TLS 1.2 and 1.3, plain HTTP refused, a native WebSocket and a Socket.IO client receiving
broadcasts, a certificate reload on SIGHUP that new connections see while an open connection keeps
receiving, and a bad new file refused with a log line while the current certificate stays; and aiohttp's
permessage-deflate client (not ours) beside a plain one on one channel: the same messages, its own
compressed requests answered, compressed bytes counted in stats.
"""

import asyncio
import json
import os
import signal
import subprocess
import socket
import ssl
import tempfile
import time
import unittest

import aiohttp
import socketio

from check_support import free_port, stop

BIN = os.environ["SWITCHBOARD_BIN"]
SECRET = "tls-check-" + "t" * 32


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificate(directory, serial):
    """A P-256 server certificate for 127.0.0.1, signed by the directory's CA, as server.pem / server.key."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "next.key",
            "-out", "next.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "next.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(serial),
            "-out", "next.pem", "-days", "2", "-extfile", "ext.cnf", cwd=directory)
    # Replaced by rename, as a deployment tool would: the server never reads half a file.
    os.replace(os.path.join(directory, "next.key"), os.path.join(directory, "server.key"))
    os.replace(os.path.join(directory, "next.pem"), os.path.join(directory, "server.pem"))


class TLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp()
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
                "-out", "ca.pem", "-days", "2", "-subj", "/CN=Switchboard test CA", cwd=cls.directory)
        make_certificate(cls.directory, 1001)
        cls.context = ssl.create_default_context(cafile=os.path.join(cls.directory, "ca.pem"))
        cls.port = free_port()
        cls.url = f"https://127.0.0.1:{cls.port}"
        cls.log_path = os.path.join(cls.directory, "server.log")
        cls.log = open(cls.log_path, "wb")
        cls.process = subprocess.Popen(
            [BIN, "serve", "--host", "127.0.0.1", "--port", str(cls.port), "--jwt-secret", SECRET,
             "--tls-cert", os.path.join(cls.directory, "server.pem"), "--tls-key", os.path.join(cls.directory, "server.key"),
             "--connect-rate-per-ip", "100000", "--compression", "true"],
            stdout=cls.log, stderr=cls.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                cls.serial()
                break
            except OSError:
                time.sleep(0.05)
        cls.admin = subprocess.run([BIN, "token", "--sub", "tls-admin", "--role", "admin", "--ttl", "1h", "--jwt-secret", SECRET],
                                   check=True, capture_output=True, text=True).stdout.strip()

    @classmethod
    def tearDownClass(cls):
        stop(cls.process, cls.log)

    @classmethod
    def serial(cls, **versions):
        """The serial number of the certificate a new TLS connection is shown."""
        context = ssl.create_default_context(cafile=os.path.join(cls.directory, "ca.pem"))
        for name, value in versions.items():
            setattr(context, name, value)
        with socket.create_connection(("127.0.0.1", cls.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return int(tls.getpeercert()["serialNumber"], 16), tls.version()

    def session(self):
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context))

    async def broadcast(self, channel, data):
        async with self.session() as session:
            async with session.post(self.url + "/api/v1/websocket/broadcast", headers={"Authorization": f"Bearer {self.admin}"},
                                    json={"channel": channel, "event": "quote", "data": data}) as response:
                self.assertEqual(response.status, 200)

    def test_tls_1_2_and_1_3_and_no_plain_http(self):
        self.assertEqual(self.serial(maximum_version=ssl.TLSVersion.TLSv1_2)[1], "TLSv1.2")
        self.assertEqual(self.serial(minimum_version=ssl.TLSVersion.TLSv1_3)[1], "TLSv1.3")
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            raw.sendall(b"GET /api/v1/websocket/health HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.settimeout(5)
            try:
                answer = raw.recv(100)
            except (ConnectionResetError, socket.timeout):
                answer = b""
            self.assertFalse(answer.startswith(b"HTTP/1.1 200"), answer)

    def test_wss_and_socketio_over_tls_receive_broadcasts_and_survive_a_certificate_reload(self):
        async def check():
            channel = "market_data:TLS"
            async with self.session() as session:
                async with session.ws_connect(self.url.replace("https", "wss") + f"/ws?subscribe={channel}") as ws:
                    received = []

                    async def read():
                        async for message in ws:
                            frame = json.loads(message.data)
                            if frame["type"] == "message":
                                received.append(frame["data"]["n"])

                    reader = asyncio.create_task(read())
                    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context))
                    sio = socketio.AsyncClient(reconnection=False, http_session=http)
                    sio_received = []
                    sio.on("quote", lambda data: sio_received.append(data["data"]["n"]))
                    await sio.connect(self.url, transports=["websocket"], wait_timeout=10)
                    self.assertTrue((await sio.call("subscribe", channel, timeout=10))["ok"])
                    await asyncio.sleep(0.3)
                    await self.broadcast(channel, {"n": 1})
                    await self.wait(lambda: received == [1] and sio_received == [1])

                    async with self.session() as stats_session:
                        async with stats_session.get(self.url + "/api/v1/websocket/stats", headers={"Authorization": f"Bearer {self.admin}"}) as response:
                            connections = (await response.json())["connections"]
                    self.assertEqual((connections["tls"], connections["total"]), (2, 2), connections)
                    async with self.session() as metrics_session:
                        async with metrics_session.get(self.url + "/metrics") as response:
                            metrics = await response.text()
                    self.assertIn("switchboard_tls_connections 2", metrics, "SPEC §12: metrics count TLS connections too")
                    self.assertEqual(self.serial()[0], 1001)
                    make_certificate(self.directory, 2002)
                    self.process.send_signal(signal.SIGHUP)
                    await self.wait(lambda: self.serial()[0] == 2002)
                    # Open connections keep their TLS session and go on receiving.
                    await asyncio.sleep(0.15)
                    await self.broadcast(channel, {"n": 2})
                    await self.wait(lambda: received == [1, 2] and sio_received == [1, 2])

                    # A bad new file is refused with a log line; the current certificate stays.
                    with open(os.path.join(self.directory, "server.pem"), "w") as f:
                        f.write("not a certificate\n")
                    self.process.send_signal(signal.SIGHUP)
                    await self.wait(lambda: b"reload refused" in self.read_log())
                    self.assertEqual(self.serial()[0], 2002)
                    await asyncio.sleep(0.15)
                    await self.broadcast(channel, {"n": 3})
                    await self.wait(lambda: received == [1, 2, 3] and sio_received == [1, 2, 3])
                    await sio.disconnect()
                    await http.close()
                    reader.cancel()

        asyncio.run(asyncio.wait_for(check(), 60))

    def test_a_deflate_client_and_a_plain_one_get_the_same_messages(self):
        async def check():
            channel = "system_status"
            url = self.url.replace("https", "wss") + f"/ws?subscribe={channel}"
            async with self.session() as session:
                # aiohttp offers permessage-deflate with compress=15 and inflates what it receives itself.
                async with session.ws_connect(url, compress=15) as deflating, session.ws_connect(url) as plain:
                    self.assertEqual((deflating.compress, plain.compress), (15, 0))
                    for ws in (deflating, plain):
                        await self.receive_until(ws, "subscribed")
                    # Its own messages go compressed too: the server inflates them.
                    await deflating.send_str(json.dumps({"type": "ping", "id": 7}))
                    self.assertEqual((await self.receive_until(deflating, "pong"))["id"], 7)
                    quote = {"symbol": "AAPL", "bid": 189.42, "ask": 189.44, "venue": "consolidated", "padding": "x" * 300}
                    for n in range(3):
                        await self.broadcast(channel, dict(quote, n=n))
                    for n in range(3):
                        got = (await deflating.receive(timeout=10)).data
                        expected = (await plain.receive(timeout=10)).data
                        self.assertEqual(got, expected)
                        self.assertEqual(json.loads(got)["data"]["n"], n)
                    async with session.get(self.url + "/api/v1/websocket/stats", headers={"Authorization": f"Bearer {self.admin}"}) as response:
                        counted = (await response.json())["bytes"]
                    self.assertGreater(counted["compressedOut"], 0, counted)
                    self.assertLess(counted["compressedOut"], counted["compressedRaw"], counted)

        asyncio.run(asyncio.wait_for(check(), 60))

    async def receive_until(self, ws, kind):
        """The next frame of type `kind`, skipping others (welcome, replays)."""
        while True:
            frame = json.loads((await ws.receive(timeout=10)).data)
            if frame["type"] == kind:
                return frame

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    async def wait(self, condition, timeout=10):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail("condition not met in time")
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    unittest.main(verbosity=2)
