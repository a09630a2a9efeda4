#!/usr/bin/env python3
"""A trading platform's own backend, as Switchboard's connect and subscribe proxies meet it (SPEC §14).

Python's standard library only. It keeps what such a platform already has:

- login sessions in Redis (hash `session:<id>`: userId, role, tier; one hour), behind a signed cookie
  `sid=<id>.<HMAC-SHA256 of the id>`;
- trade rooms and their members in Redis (set `room:<id>:members`).

And it answers Switchboard:

- POST /switchboard/connect (connect-proxy-url): the client's Cookie (or `data.sid`: the Socket.IO CONNECT auth
  object, or a `/ws` `auth` message's data) is looked up: 200 {"userId","role","tier"} for a live session,
  {"anonymous":true} for a client with no session at all (public market data stays public), 401 for a session
  that is forged, unknown or expired;
- POST /switchboard/subscribe (subscribe-proxy-url): 200 {"allow":true} for a member of room:<id>, 403 otherwise.

Its own API, what its web app calls:

- POST /login {"userId","role"?,"tier"?} -> Set-Cookie: sid=... (no password: this is an example);
- POST /rooms/<id>/members {"userId"}: joins the room, and has Switchboard subscribe the user's open connections
  (POST /api/v1/websocket/subscribe);
- DELETE /rooms/<id>/members/<userId>: leaves it, and has Switchboard unsubscribe them with a reason.

For tests: POST /control/delay {"ms"} holds every proxy answer that long (a slow backend), and
POST /control/switchboard {"url","adminToken"} names the Switchboard node after the start (`--port 0` picks a
free port, printed on the first line: a test starts the backend before the node that asks it).

    backend.py --port 8090 --redis 127.0.0.1:6379 --secret S --switchboard http://127.0.0.1:8080 --admin-token T
"""

import argparse
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSION_SECONDS = 3600
ROOM = re.compile(r"^room:([A-Za-z0-9_.-]+)$")


class Redis:
    """Just enough of RESP2 for HSET/HGETALL/EXPIRE/SADD/SREM/SISMEMBER, one connection per call."""

    def __init__(self, host, port):
        self.address = (host, port)

    def call(self, *args):
        with socket.create_connection(self.address, timeout=2) as connection:
            command = b"*%d\r\n" % len(args) + b"".join(
                b"$%d\r\n%s\r\n" % (len(part), part) for part in (str(a).encode() for a in args))
            connection.sendall(command)
            return self._read(connection.makefile("rb"))

    def _read(self, stream):
        line = stream.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else stream.read(size + 2)[:-2].decode()
        if kind == b"*":
            return [self._read(stream) for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)


class Platform:
    def __init__(self, redis, secret, switchboard, admin_token):
        self.redis = redis
        self.secret = secret.encode()
        self.switchboard = switchboard.rstrip("/")
        self.admin_token = admin_token
        self.delay = 0.0

    # Sessions behind a signed cookie.
    def sign(self, session_id):
        return hmac.new(self.secret, session_id.encode(), hashlib.sha256).hexdigest()

    def login(self, user_id, role, tier):
        session_id = secrets.token_hex(16)
        key = "session:" + session_id
        self.redis.call("HSET", key, "userId", user_id, "role", role, "tier", tier or "")
        self.redis.call("EXPIRE", key, SESSION_SECONDS)
        return "sid=%s.%s" % (session_id, self.sign(session_id))

    def session(self, cookie_value):
        session_id, _, signature = (cookie_value or "").partition(".")
        if not session_id or not hmac.compare_digest(signature, self.sign(session_id)):
            return None
        fields = self.redis.call("HGETALL", "session:" + session_id) or []
        session = dict(zip(fields[::2], fields[1::2]))
        return session or None

    # Rooms, and Switchboard told of every change.
    def join(self, room, user_id):
        self.redis.call("SADD", "room:%s:members" % room, user_id)
        return self.tell("subscribe", {"userId": user_id, "channel": "room:" + room})

    def leave(self, room, user_id):
        self.redis.call("SREM", "room:%s:members" % room, user_id)
        return self.tell("unsubscribe", {"userId": user_id, "channel": "room:" + room, "reason": "removed from room " + room})

    def is_member(self, room, user_id):
        return self.redis.call("SISMEMBER", "room:%s:members" % room, user_id) == 1

    def tell(self, action, body):
        request = urllib.request.Request(
            "%s/api/v1/websocket/%s" % (self.switchboard, action), data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.admin_token})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)


def cookie(header, name):
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class Handler(BaseHTTPRequestHandler):
    platform = None  # set in main
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def do_POST(self):
        platform = self.platform
        body = self.body()
        if self.path == "/switchboard/connect":
            time.sleep(platform.delay)
            data = body.get("data") or {}
            value = cookie((body.get("headers") or {}).get("Cookie"), "sid") or (data.get("sid") if isinstance(data, dict) else None)
            if value is None:
                return self.answer(200, {"anonymous": True})
            session = platform.session(value)
            if session is None:
                return self.answer(401, {"error": "no live session"})
            return self.answer(200, {"userId": session["userId"], "role": session["role"], "tier": session["tier"] or None})
        if self.path == "/switchboard/subscribe":
            time.sleep(platform.delay)
            room = ROOM.match(body.get("channel") or "")
            allowed = bool(room and body.get("userId") and platform.is_member(room.group(1), body["userId"]))
            return self.answer(200 if allowed else 403, {"allow": allowed})
        if self.path == "/login":
            cookie_value = platform.login(body["userId"], body.get("role", "user"), body.get("tier"))
            return self.answer(200, {"cookie": cookie_value}, {"Set-Cookie": cookie_value + "; HttpOnly; Path=/"})
        room = re.match(r"^/rooms/([A-Za-z0-9_.-]+)/members$", self.path)
        if room:
            return self.answer(200, platform.join(room.group(1), body["userId"]))
        if self.path == "/control/switchboard":
            platform.switchboard = body["url"].rstrip("/")
            platform.admin_token = body["adminToken"]
            return self.answer(200, {"switchboard": platform.switchboard})
        if self.path == "/control/delay":
            platform.delay = float(body.get("ms", 0)) / 1000
            return self.answer(200, {"delayMs": body.get("ms", 0)})
        self.answer(404, {"error": "no such route"})

    def do_DELETE(self):
        self.body()  # read, so that a kept-alive connection's next request starts where it should
        member = re.match(r"^/rooms/([A-Za-z0-9_.-]+)/members/([A-Za-z0-9_.-]+)$", self.path)
        if member:
            return self.answer(200, self.platform.leave(member.group(1), member.group(2)))
        self.answer(404, {"error": "no such route"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="127.0.0.1:6379", help="host:port of the platform's Redis")
    parser.add_argument("--secret", required=True, help="key that signs the session cookie")
    parser.add_argument("--switchboard", default="", help="base URL of a Switchboard node's API")
    parser.add_argument("--admin-token", default="", help="an admin token for Switchboard's subscribe API")
    arguments = parser.parse_args()
    host, _, port = arguments.redis.rpartition(":")
    Handler.platform = Platform(Redis(host, int(port)), arguments.secret, arguments.switchboard, arguments.admin_token)
    ThreadingHTTPServer.request_queue_size = 128  # a reconnect storm's connects arrive together
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    server.daemon_threads = True
    print("platform backend listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
