"""What scripts/socketio_check.py and scripts/tls_check.py share: a free loopback port, and stopping a
server process they started (by its handle: SIGTERM, then SIGKILL after 15 s)."""

import socket
import subprocess


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process, log):
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
