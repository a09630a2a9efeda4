# Sourced by scripts/bench and scripts/loop-ticks: the pieces both use to start a Switchboard node under a load
# generator on loopback.

# A free loopback port (the kernel's pick; released at once for the server to bind).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A fresh 32-byte HMAC secret (SPEC §2), hex.
new_secret() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }

# Waits up to 10 s for something to accept on 127.0.0.1:PORT.
wait_for_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# Writes the benchmarks' node settings to FILE: limits that hold 19,000 clients from one IP, and the `bench`
# namespace (no throttle, no history).
write_bench_config() {
    cat > "$1" <<YAML
max-connections: 19500
max-connections-per-ip: 19500
connect-rate-per-ip: 1000000
namespaces:
  - name: bench
    topic: optional
YAML
}
