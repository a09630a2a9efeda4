# Sourced by scripts/socketio-check and scripts/tls-check: the Python clients they drive live nodes with
# (PyPI's python-socketio and aiohttp), installed into .venv-socketio when missing, and a built `switchboard`.
venv=${SOCKETIO_VENV:-.venv-socketio}
if ! "$venv/bin/python" -c 'import socketio, aiohttp' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'python-socketio>=5.11,<6' 'aiohttp>=3.9,<4'
fi
bin="$(swift build --show-bin-path)/switchboard"
[ -x "$bin" ] || swift build --product switchboard
