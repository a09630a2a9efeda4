"""Parses a live node's /metrics with prometheus_client's text parser and checks that it moves with traffic.

Usage: check-metrics.py http://127.0.0.1:PORT   (a node started with --demo, which publishes quotes)
"""
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

EXPECTED = {
    "switchboard_connections": "gauge",
    "switchboard_connection_attempts": "counter",
    "switchboard_subscriptions": "gauge",
    "switchboard_messages_published": "counter",
    "switchboard_messages_delivered": "counter",
    "switchboard_messages_dropped": "counter",
    "switchboard_bytes_received": "counter",
    "switchboard_bytes_sent": "counter",
    "switchboard_auth_failures": "counter",
    "switchboard_rate_limited": "counter",
    "switchboard_slow_consumer_disconnects": "counter",
    "switchboard_delivery_latency_seconds": "histogram",
}
FORBIDDEN_LABELS = {"topic", "user", "userId", "ip", "channel"}


def scrape(base):
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return families


def total(families, name):
    return sum(sample.value for sample in families[name].samples if sample.name == name + "_total")


def main():
    base = sys.argv[1]
    first = scrape(base)
    problems = []
    for name, kind in EXPECTED.items():
        if name not in first:
            problems.append(f"missing metric family {name}")
        elif first[name].type != kind:
            problems.append(f"{name} is a {first[name].type}, expected {kind}")
    for family in first.values():
        for sample in family.samples:
            bad = FORBIDDEN_LABELS & set(sample.labels)
            if bad:
                problems.append(f"{sample.name} carries unbounded labels {sorted(bad)}")
    time.sleep(1.5)
    second = scrape(base)
    before, after = total(first, "switchboard_messages_published"), total(second, "switchboard_messages_published")
    if after <= before:
        problems.append(f"switchboard_messages_published_total did not move with the demo feed ({before} -> {after})")
    for problem in problems:
        print("FAIL:", problem)
    print(f"{len(first)} metric families parsed; messages published {before:.0f} -> {after:.0f}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
