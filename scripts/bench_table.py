"""Prints scripts/bench's JSON lines as tables, with ratios against the peers of the same run.

"reader us/d" is the load generator's own CPU per delivery: on loopback, TCP work the kernel does for a
send can be charged to the reading process instead of the sender, so both are shown."""
import json
import sys

def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
fan = [r for r in rows if r["scenario"] == "fanout"]
table = [r for r in fan if "stats_ms_p50" not in r]
print()
print(f"{'fanout':<42}{'deliv/s':>10}{'lost':>8}{'dup':>6}{'ooo':>6}{'p50 ms':>9}{'p99 ms':>9}{'p999 ms':>9}"
      f"{'max ms':>9}{'user us/d':>11}{'total us/d':>11}{'reader us/d':>12}")
for r in table:
    name = (f"{r['target']} {r['subscribers']}x{r['rate']}{' batch' if r['batch'] else ''}{' ' + r['variant'] if 'variant' in r else ''}"
            + (f" #{r['round']}" if 'round' in r else ''))
    print(f"{name:<42}{r['delivered_per_second']:>10}{r['lost']:>8}{r['duplicated']:>6}{r['out_of_order']:>6}"
          f"{r['latency_ms_p50']:>9}{r['latency_ms_p99']:>9}{r['latency_ms_p999']:>9}{r['latency_ms_max']:>9}"
          f"{r['server_user_us_per_delivery']:>11}{r['server_total_us_per_delivery']:>11}"
          f"{r.get('generator_total_us_per_delivery', 0):>12}")
held = [r for r in fan if "stats_ms_p50" in r]
if held:
    print()
    print(f"{'held':<24}{'connections':>12}{'delivered':>11}{'lost':>8}{'stats p50 ms':>14}{'stats p90 ms':>14}{'stats max ms':>14}")
    for r in held:
        print(f"{r['target']:<24}{r['subscribers']:>12}{r['delivered']:>11}{r['lost']:>8}{r['stats_ms_p50']:>14}{r.get('stats_ms_p90', 0):>14}{r['stats_ms_max']:>14}")
    for r in (r for r in rows if r["scenario"] == "stats_probe" and r.get("requests")):
        print(f"{'  separate-process probe':<24}{r['connections_held']:>12}{'':>11}{'':>8}{r['stats_ms_p50']:>14}"
              f"{r['stats_ms_p90']:>14}{r['stats_ms_max']:>14}")
idle = [r for r in rows if r["scenario"] == "idle"]
print()
print(f"{'idle (connect storm)':<24}{'connections':>12}{'conn+sub/s':>12}{'user us/conn':>14}{'total us/conn':>15}{'KiB/conn':>10}")
idle_name = lambda r: r['target'] + (' ' + r['variant'] if 'variant' in r else '')
for r in idle:
    name = idle_name(r) + (f" #{r['round']}" if 'round' in r else '')
    print(f"{name:<24}{r['connections']:>12}{r.get('connects_subscribes_per_second', r.get('connects_per_second')):>12}"
          f"{r.get('server_user_us_per_connection', ''):>14}{r.get('server_total_us_per_connection', ''):>15}{r['server_kib_per_connection']:>10}")
# Switchboard's rows against nchan's of the same round (scripts/bench runs them in alternated rounds), then the
# medians of those ratios.
rounds = {}
for r in idle:
    if "connects_subscribes_per_second" in r:
        rounds.setdefault(r.get('round'), {})[idle_name(r)] = r
ratios = {}
over_floor = {}
for number, peers in sorted(rounds.items(), key=lambda item: item[0] or 0):
    if "nchan" not in peers:
        continue
    n = peers["nchan"]
    for name in (name for name in peers if name.startswith(("switchboard", "floor"))):
        s = peers[name]
        rate = s['connects_subscribes_per_second'] / max(n['connects_subscribes_per_second'], 1)
        cpu = s['server_total_us_per_connection'] / max(n['server_total_us_per_connection'], 1)
        ratios.setdefault(name, []).append((rate, cpu))
        print(f"{name} / nchan{f' (round {number})' if number else ''}: connects + subscribes per second {rate:.2f}, "
              f"server total CPU per connection {cpu:.2f}")
    # The node's CPU per connection over NIO's floor's (a canned-answer server on the same channels), like for like.
    for variant in ("", " subscribe-in-url"):
        node, floor = peers.get("switchboard" + variant), peers.get("floor" + variant)
        if node and floor:
            cpu = node['server_total_us_per_connection'] / max(floor['server_total_us_per_connection'], 1)
            user = node['server_user_us_per_connection'] / max(floor['server_user_us_per_connection'], 1)
            over_floor.setdefault("switchboard" + variant, []).append((cpu, user))
            print(f"switchboard{variant} / floor{f' (round {number})' if number else ''}: server total CPU per connection "
                  f"{cpu:.2f}, user {user:.2f}")
for name, pairs in over_floor.items():
    if len(pairs) > 1:
        print(f"{name} / floor, median of {len(pairs)} rounds: server total CPU per connection "
              f"{median([cpu for cpu, _ in pairs]):.2f}, user {median([user for _, user in pairs]):.2f}")
for name, pairs in ratios.items():
    if len(pairs) > 1:
        print(f"{name} / nchan, median of {len(pairs)} rounds: connects + subscribes per second "
              f"{median([rate for rate, _ in pairs]):.2f}, server total CPU per connection {median([cpu for _, cpu in pairs]):.2f}")
light = {r["target"]: r for r in fan if r["rate"] == 100 and "variant" not in r}
variants = [r for r in fan if r["rate"] == 100 and "variant" in r]
if "switchboard" in light and "nchan" in light:
    s, n = light["switchboard"], light["nchan"]
    print()
    print("ratios at 1000 x 100 msg/s (switchboard / nchan): "
          f"user CPU per delivery {s['server_user_us_per_delivery'] / max(n['server_user_us_per_delivery'], 1e-9):.2f}, "
          f"total CPU per delivery {s['server_total_us_per_delivery'] / max(n['server_total_us_per_delivery'], 1e-9):.2f}, "
          f"p99 latency {s['latency_ms_p99'] / max(n['latency_ms_p99'], 1e-9):.2f}")
    both = lambda r: r['server_total_us_per_delivery'] + r.get('generator_total_us_per_delivery', 0)
    print("server + reader CPU per delivery at 1000 x 100 msg/s (switchboard / nchan): "
          f"{both(s):.2f} / {both(n):.2f} us = {both(s) / max(both(n), 1e-9):.2f}")
    for v in variants:
        print(f"with {v['variant']} (switchboard / nchan): "
              f"user CPU per delivery {v['server_user_us_per_delivery'] / max(n['server_user_us_per_delivery'], 1e-9):.2f}, "
              f"total CPU per delivery {v['server_total_us_per_delivery'] / max(n['server_total_us_per_delivery'], 1e-9):.2f}, "
              f"p99 latency {v['latency_ms_p99'] / max(n['latency_ms_p99'], 1e-9):.2f}, "
              f"server + reader {both(v) / max(both(n), 1e-9):.2f}")
# Cluster rows (scripts/bench --cluster): two nodes + Redis against one node and against two nginx + nchan + Redis.
by_variant = {r.get("variant"): r for r in fan if r["rate"] == 100}
for r in (r for r in fan if r.get("variant") == "2 nodes + Redis" and r["rate"] != 100):
    print(f"cluster at {r['subscribers']} x {r['rate']} msg/s: Redis CPU per publish {r.get('redis_cpu_us_per_publish')} us, "
          f"Redis commands per publish {r.get('redis_commands_per_publish')} (scripts {r.get('redis_scripts_per_publish')}), "
          f"p99 {r['latency_ms_p99']} ms, total CPU per delivery {r['server_total_us_per_delivery']} us")
one, pair, nchan_pair = by_variant.get("one node"), by_variant.get("2 nodes + Redis"), by_variant.get("2 nginx + nchan + Redis")
if one and pair:
    # The compared rows run in alternated rounds (scripts/bench --cluster): each round's figures, then the
    # medians, which the targets are read from.
    def of(variant):
        return sorted((r for r in fan if r.get("variant") == variant and r["rate"] == 100 and "round" in r), key=lambda r: r["round"])
    ones, pairs, nchans = of("one node"), of("2 nodes + Redis"), of("2 nginx + nchan + Redis")
    if not (ones and pairs):  # rows without rounds: the single run
        ones, pairs, nchans = [one], [pair], [nchan_pair] if nchan_pair else []
    total = lambda r: r["server_total_us_per_delivery"]
    p99 = lambda r: r["latency_ms_p99"]
    print()
    for index, (o, c) in enumerate(zip(ones, pairs)):
        n = nchans[index] if index < len(nchans) else None
        print(f"cluster round {c.get('round', 1)}: p99 {p99(c)} ms vs one node {p99(o)} ms ({p99(c) - p99(o):+.2f} ms); "
              f"total CPU per delivery / one node {total(c) / max(total(o), 1e-9):.2f}"
              + (f", / nchan cluster {total(c) / max(total(n), 1e-9):.2f} (nchan p99 {p99(n)} ms)" if n else ""))
    m_one, m_pair = median([p99(r) for r in ones]), median([p99(r) for r in pairs])
    c_one, c_pair = median([total(r) for r in ones]), median([total(r) for r in pairs])
    print(f"cluster, median of {len(pairs)} round(s): Redis commands per publish {median([r.get('redis_commands_per_publish', 0) for r in pairs])} "
          f"(scripts {median([r.get('redis_scripts_per_publish', 0) for r in pairs])}), "
          f"Redis CPU per publish {median([r.get('redis_cpu_us_per_publish', 0) for r in pairs])} us; "
          f"p99 {m_pair} ms vs one node {m_one} ms ({m_pair - m_one:+.2f} ms); "
          f"total CPU per delivery (both nodes + Redis) / one node: {c_pair / max(c_one, 1e-9):.2f}")
    if nchans:
        c_nchan, m_nchan = median([total(r) for r in nchans]), median([p99(r) for r in nchans])
        print(f"cluster / nchan cluster, medians: total CPU per delivery (servers + Redis) {c_pair / max(c_nchan, 1e-9):.2f}, "
              f"p99 latency {m_pair / max(m_nchan, 1e-9):.2f}; "
              f"nchan Redis commands per publish {median([r.get('redis_commands_per_publish', 0) for r in nchans])}")
        quiet = by_variant.get("2 nodes + Redis, tcp-nodelay=false")
        if quiet:
            print(f"cluster with tcp-nodelay=false / nchan cluster (median): total CPU per delivery "
                  f"{total(quiet) / max(c_nchan, 1e-9):.2f}, p99 latency {p99(quiet) / max(m_nchan, 1e-9):.2f}")
storms = [r for r in rows if r["scenario"] == "storm"]
if storms:
    print()
    print(f"{'storm while receiving':<24}{'clients':>9}{'seconds':>9}{'conn+sub/s':>12}{'p99 before':>12}{'p99 during':>12}"
          f"{'max during':>12}{'stats p99 before':>18}{'stats p99 during':>18}{'stats max':>11}")
    for r in storms:
        print(f"{r['target']:<24}{r['connections']:>9}{r['storm_seconds']:>9}{r['connects_subscribes_per_second']:>12}"
              f"{r['baseline_latency_ms_p99']:>12}{r['storm_latency_ms_p99']:>12}{r['storm_latency_ms_max']:>12}"
              f"{r['baseline_stats_ms_p99']:>18}{r['storm_stats_ms_p99']:>18}{r['storm_stats_ms_max']:>11}")
quotes = [r for r in fan if r.get("quote")]
if quotes:
    print()
    def label(r):
        name = f"{r['target']} {r['subscribers']}x{r['rate']}" + (" batch" if r.get("batch") else "")
        return name + (" " + r["variant"] if "variant" in r else "")
    print(f"{'quote fanout':<36}{'wire B/deliv':>13}{'compressed':>12}{'total us/d':>12}{'lost':>6}")
    for r in quotes:
        print(f"{label(r):<36}{r['wire_bytes_per_delivery']:>13}"
              f"{r['compressed_frames']:>12}{r['server_total_us_per_delivery']:>12}{r['lost']:>6}")
    plain = [r for r in quotes if not r.get("deflate")]
    deflated = [r for r in quotes if r.get("deflate")]
    for a, b in zip(plain, deflated):
        print(f"{label(a)}: deflate / plain: bytes {b['wire_bytes_per_delivery'] / max(1, a['wire_bytes_per_delivery']):.2f}x, "
              f"CPU per delivery {b['server_total_us_per_delivery'] / max(1e-9, a['server_total_us_per_delivery']):.2f}x")
