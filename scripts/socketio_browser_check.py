"""scripts/socketio-browser-check's browser half: starts a node on a free loopback port, serves a page that loads
socket.io's browser bundle from a second loopback port, and loads it LOADS times in headless Chromium. Each load
must connect (default options), get the ack of `subscribe`, and receive a broadcast made after the ack. Prints
one line per failed load and the totals; exits non-zero on any failure. Every wait is bounded."""
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from check_support import free_port, stop

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

binary, bundle, loads = sys.argv[1], sys.argv[2], int(sys.argv[3])


port = free_port()
secret = secrets.token_hex(32)
site = tempfile.mkdtemp(prefix="sio-browser-")
shutil.copy(bundle, os.path.join(site, "socket.io.min.js"))
with open(os.path.join(site, "index.html"), "w") as page:
    page.write(f"""<!doctype html><html><body><script src="socket.io.min.js"></script><script>
window.result = {{connected: false, ack: null, event: null, transport: null}};
const socket = io("http://127.0.0.1:{port}");
socket.on("connect", () => {{
  window.result.connected = true;
  socket.emit("subscribe", "system_status", (ack) => {{ window.result.ack = ack; }});
}});
socket.on("notice", (message) => {{
  window.result.event = message;
  window.result.transport = socket.io.engine.transport.name;
}});
</script></body></html>""")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=site, **kwargs)

    def log_message(self, *args):
        pass


pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=pages.serve_forever, daemon=True).start()
page_url = f"http://127.0.0.1:{pages.server_address[1]}/index.html"

node_log = open(os.path.join(site, "node.log"), "w")
node = subprocess.Popen(
    [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--jwt-secret", secret,
     "--connect-rate-per-ip", "10000", "--log-level", "warning"],
    stdout=subprocess.DEVNULL, stderr=node_log)
token = subprocess.run([binary, "token", "--sub", "ops", "--role", "admin", "--jwt-secret", secret],
                       capture_output=True, text=True, timeout=30).stdout.strip()


def broadcast(seq):
    body = json.dumps({"channel": "system_status", "event": "notice", "data": {"n": seq}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/websocket/broadcast", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-gpu"):
    options.add_argument(argument)
browser = None
failures = []
upgraded = 0
try:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    for load in range(1, loads + 1):
        browser.get(page_url)
        try:
            WebDriverWait(browser, 10).until(lambda b: b.execute_script("return window.result.ack !== null"))
            broadcast(load)
            WebDriverWait(browser, 10).until(lambda b: b.execute_script("return window.result.event !== null"))
        except Exception:
            pass
        result = browser.execute_script("return window.result")
        ack = result.get("ack") or {}
        event = result.get("event") or {}
        if not (result.get("connected") and ack.get("ok") and (event.get("data") or {}).get("n") == load):
            failures.append(load)
            print(f"load {load}: FAIL {json.dumps(result)}")
        elif result.get("transport") == "websocket":
            upgraded += 1
finally:
    if browser is not None:
        browser.quit()
    stop(node, node_log)
    pages.shutdown()
    shutil.rmtree(site, ignore_errors=True)

print(f"socket.io browser client: {loads - len(failures)} of {loads} loads connected, got their subscribe ack and a "
      f"broadcast ({upgraded} of them on WebSocket by then)")
print(f"{loads - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
