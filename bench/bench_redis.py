#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""ws-relay --redis (a group of relays through one Redis stream) against a
single relay and against Redis's own ceiling, all in the same run, with the
same load client (bench/relay_load_client.cpp) and a redis-server of its own:

  throughput  100-byte events into relay A's stdin; A and B each serve 10
              clients; events/s until every client has every event (zero
              loss required), against (1) one relay with 10 clients and (2)
              redis-benchmark's pipelined XADD rate on the same Redis, the
              engine's ceiling here
  latency     stdin write -> client receipt at 10,000 events/s: a client of
              relay B (the event goes A -> Redis -> B) against a client of a
              single relay; p50/p99 added by the round trip
  memory      RSS of a group relay and of a single relay, each after holding
              the same clients and the same events
  client      the tail's reading (XREAD COUNT 1000, events copied out)
              through hiredis and through POCO's Redis client, one thread
              each (bench/redis_client_compare.cpp): docs/architecture.md
  replicas    the group's throughput and latency with a replica and
              --redis-replicas 0 and 1 (WAIT before an append counts and
              before a tailed entry is delivered), as ratios to the group
              on a single Redis in the same run (issue 22)
  failover    a master with two replicas and a Sentinel (down after 1 s):
              the time from the master's SIGKILL to the first event a
              client of relay B receives after it, with events flowing into
              relay A's stdin every 5 ms

Goals (issue 11): group appends >= 0.5x the XADD ceiling with zero loss;
p99 added <= 2 ms on a quiet machine. The machine is shared (2 cores for
Redis, two relays, the load clients and this driver), so read the ratios.

Env: SMWS_BIN_DIR (ws-relay), SMWS_BENCH_DIR (relay_load_client).
Options: --quick (smaller counts); --only-failover (the replicas and
failover parts only).
"""
import contextlib
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
import bench_relay  # noqa: E402  (Server, Load, event_line, Lines)
from redis_support import RedisServer, Sentinel, start_replica  # noqa: E402

QUICK = "--quick" in sys.argv
RELAY_ARGS = ["--max-queue", "1000000", "--max-queue-bytes", "1099511627776",
              "--max-clients-per-ip", "1000000"]


class Relay(bench_relay.Server):
    """ws-relay with extra flags (bench_relay.Server takes its flags from a global)."""

    def __init__(self, *extra):
        saved = bench_relay.RELAY_ARGS
        bench_relay.RELAY_ARGS = RELAY_ARGS + list(extra)
        try:
            super().__init__("relay")
        finally:
            bench_relay.RELAY_ARGS = saved


def http_get(relay, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read().decode()


def wait_healthy(relay, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(relay, "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("relay never became healthy")


def metrics(relay):
    """The relay's /metrics samples as {name: value}."""
    out = {}
    for line in http_get(relay, "/metrics")[1].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def results_once_numbered(relays, loads, n, grace=10.0, timeout=300.0):
    """Every load's summary. A client that misses events (a resync) would wait
    for its --timeout: once every relay has numbered event n, the loads get
    `grace` seconds to finish and are then stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(metrics(r).get("ws_relay_last_seq", 0) >= n for r in relays):
            break
        time.sleep(0.05)
    end = time.monotonic() + grace
    results = []
    for load in loads:
        try:
            results.append(load.result(max(0.1, end - time.monotonic())))
        except TimeoutError:
            results.append(load.stop())
    return results


@contextlib.contextmanager
def relays_for(group, replicas=None):
    """Relays A and B in a group on a Redis of their own (each healthy), or
    one single relay; all stopped, and Redis closed, on exit. replicas: a
    replica beside the Redis and --redis-replicas that many."""
    redis = RedisServer() if group else None
    replica = start_replica(redis) if group and replicas is not None else None
    extra = ["--redis-replicas", str(replicas)] if replica else []
    relays = []
    try:
        if group:
            # The default --redis-history (10,000): a burst of n events is
            # far longer, so A's appends wait for the tails (flow control)
            # rather than let Redis trim entries no relay has read yet.
            relays = [Relay("--redis", redis.url, *extra), Relay("--redis", redis.url, *extra)]
            for r in relays:
                wait_healthy(r)
        else:
            relays = [Relay()]
        yield relays
    finally:
        for r in relays:
            r.stop()
        if replica:
            replica.close()
        if redis:
            redis.close()


def throughput(n, group, replicas=None):
    """events/s from A's stdin until every client (10 per relay) has all n."""
    with relays_for(group, replicas) as relays:
        loads = [bench_relay.Load(r, 10, expect=n, timeout=300) for r in relays]
        for load in loads:
            load.ready()
        data = b"".join(bench_relay.event_line(i) for i in range(n))
        t0 = time.monotonic_ns()
        writer = threading.Thread(target=relays[0].write, args=(data,), daemon=True)
        writer.start()
        if group:
            results = results_once_numbered(relays, loads, n)
        else:
            results = [load.result(600) for load in loads]
        writer.join(60)
        last = max(r["last_ns"] for r in results)
        elapsed = (last - t0) / 1e9
        rss = [r.status("VmRSS") / 1024 for r in relays]
        m = [metrics(r) for r in relays]
        return {"rate": n / elapsed if elapsed > 0 else 0,
                "complete": sum(r["complete"] for r in results),
                "clients": 10 * len(relays), "rss_mib": rss,
                "resyncs": sum(x.get("ws_relay_redis_resyncs_total", 0) for x in m),
                "waits": m[0].get("ws_relay_redis_append_waits_total", 0),
                "batches": m[0].get("ws_relay_redis_append_batches_total", 0)}


def xadd_ceiling(n):
    """redis-benchmark's pipelined XADD of a 100-byte field, requests/s."""
    with RedisServer() as redis:
        payload = bench_relay.event_line(0).decode().strip()
        out = subprocess.run(["redis-benchmark", "-p", str(redis.port), "-n", str(n), "-P", "64",
                              "-q", "XADD", "ceiling", "*", "e", payload],
                             capture_output=True, text=True, timeout=300).stdout
        m = re.search(r"([\d.]+) requests per second", out)
        return float(m.group(1)) if m else float("nan")


def client_compare(n):
    """The tail's reading through hiredis and through POCO's Redis client
    (bench/redis_client_compare.cpp), entries/s each."""
    path = os.path.join(os.path.dirname(bench_relay.LOAD), "redis_client_compare")
    with RedisServer() as redis:
        out = subprocess.run([path, str(redis.port), str(n)], capture_output=True, text=True,
                             timeout=300).stdout
    import json
    return json.loads(out)


def latency(group, rate=10000, seconds=3.0, replicas=None):
    with relays_for(group, replicas) as relays:
        # In a group, A's stdin and B's clients: the whole round trip.
        target = relays[1] if group else relays[0]
        total = int(rate * seconds)
        load = bench_relay.Load(target, 10, expect=total, timeout=120)
        load.ready()
        interval = 1e9 / rate
        start = time.monotonic_ns() + 1_000_000
        fd = relays[0].fd
        for i in range(total):
            d = start + i * interval - time.monotonic_ns()
            if d > 0:
                time.sleep(d / 1e9)
            os.write(fd, bench_relay.event_line(i, time.monotonic_ns()))
        r = results_once_numbered(relays, [load], total)[0] if group else load.result(120)
        return {"p50_us": r["lat_p50_us"], "p99_us": r["lat_p99_us"], "max_us": r["lat_max_us"],
                "complete": r["complete"]}


def failover_gap(interval=0.005):
    """Seconds from the master's SIGKILL to the first event a client of relay
    B receives after it (events into A's stdin every `interval`)."""
    import json
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
    from relay_support import RawWs  # noqa: E402
    master = RedisServer()
    reps = [start_replica(master) for _ in range(2)]
    sentinel = Sentinel(master.port)
    for _ in reps:
        sentinel.wait_line("+slave slave", timeout=15)
    args = ["--redis-sentinel", sentinel.address, "--redis-master", sentinel.name]
    relays = []
    try:
        relays = [Relay(*args), Relay(*args)]
        for r in relays:
            wait_healthy(r)
        ws = RawWs(relays[1].port, timeout=30)
        ws.recv_json()  # initial
        stop = threading.Event()

        def feed():
            n = 0
            while not stop.is_set():
                n += 1
                os.write(relays[0].fd, (json.dumps({"type": "tick", "n": n}) + "\n").encode())
                time.sleep(interval)
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        time.sleep(0.5)
        while ws.recv_json().get("type") != "tick":
            pass
        mark = len(sentinel.lines)
        killed = time.monotonic()
        master.kill()
        # Drain what was in flight, then wait for the first event after a pause.
        last = time.monotonic()
        while True:
            msg = ws.recv_json(timeout=60)
            now = time.monotonic()
            if msg.get("type") == "ping":
                continue
            # The first message (an event, or a resync's gap) after the pause.
            if now - last > 0.5:
                first_after = now
                break
            last = now
        sentinel.wait_line("+switch-master", timeout=30, after=mark)
        stop.set()
        writer.join(5)
        return first_after - killed
    finally:
        for r in relays:
            r.stop()
        sentinel.close()
        for r in reps:
            r.close()
        master.close()


def replicas_and_failover(n):
    print("with a replica: --redis-replicas 0 and 1 against the group on a single Redis", flush=True)
    base = throughput(n, group=True)
    r0 = throughput(n, group=True, replicas=0)
    r1 = throughput(n, group=True, replicas=1)
    for name, r in (("single Redis", base), ("replica, --redis-replicas 0", r0), ("replica, --redis-replicas 1", r1)):
        print(f"  {name:28s} {r['rate']:,.0f} events/s ({r['rate'] / base['rate']:.2f}x; "
              f"{r['complete']}/{r['clients']} clients complete, {r['resyncs']:.0f} resyncs)", flush=True)
    secs = 1.0 if QUICK else 3.0
    lb = latency(True, seconds=secs)
    l0 = latency(True, seconds=secs, replicas=0)
    l1 = latency(True, seconds=secs, replicas=1)
    for name, r in (("single Redis", lb), ("replica, --redis-replicas 0", l0), ("replica, --redis-replicas 1", l1)):
        print(f"  A->Redis->B {name:28s} p50 {r['p50_us']:.0f} us  p99 {r['p99_us']:.0f} us "
              f"({r['p99_us'] / lb['p99_us']:.2f}x p99; {r['complete']}/10 complete)", flush=True)
    gap = failover_gap()
    print(f"failover (Sentinel, down-after 1000 ms): master killed -> first event at a client of B "
          f"after {gap:.2f} s (goal: within detection + 1 s = 2 s: {bench_relay.verdict(gap <= 2.0)})",
          flush=True)


def main():
    for path in (bench_relay.RELAY, bench_relay.LOAD):
        if not os.path.exists(path):
            print(f"bench_redis: missing {path}", file=sys.stderr)
            return 69
    n = 20000 if QUICK else 100000
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f}", flush=True)
    if "--only-failover" in sys.argv:
        replicas_and_failover(n)
        return 0
    print(f"throughput: {n} events of 100 bytes into relay A's stdin", flush=True)
    single = throughput(n, group=False)
    grp = throughput(n, group=True)
    ceiling = xadd_ceiling(max(n, 100000))
    print(f"  single relay, 10 clients:      {single['rate']:,.0f} events/s "
          f"({single['complete']}/{single['clients']} clients complete)", flush=True)
    print(f"  group A+B, 10 clients each:    {grp['rate']:,.0f} events/s "
          f"({grp['complete']}/{grp['clients']} clients complete; {grp['batches']:.0f} append "
          f"batches, {grp['waits']:.0f} held for A's tail, {grp['resyncs']:.0f} resyncs)", flush=True)
    print(f"  redis-benchmark XADD -P 64:    {ceiling:,.0f} requests/s", flush=True)
    lossless = grp["complete"] == grp["clients"]
    print(f"      group {grp['rate'] / single['rate']:.2f}x single relay; "
          f"{grp['rate'] / ceiling:.2f}x the XADD ceiling (goal >= 0.5x with zero loss: "
          f"{bench_relay.verdict(grp['rate'] / ceiling >= 0.5 and lossless)})", flush=True)
    print(f"  memory after the run: group relays {grp['rss_mib'][0]:.1f} / {grp['rss_mib'][1]:.1f} MiB, "
          f"single relay {single['rss_mib'][0]:.1f} MiB "
          f"({grp['rss_mib'][0] / single['rss_mib'][0]:.2f}x)", flush=True)

    cmp = client_compare(n)
    print(f"tail reading (XREAD COUNT 1000, {cmp['entries']} entries, one thread, blocking):", flush=True)
    print(f"  hiredis {cmp['hiredis_per_s']:,.0f} entries/s, POCO Redis::Client "
          f"{cmp['poco_per_s']:,.0f} entries/s (hiredis {cmp['hiredis_per_s'] / cmp['poco_per_s']:.1f}x)",
          flush=True)

    secs = 1.0 if QUICK else 3.0
    print("latency: stdin write -> receipt, 10,000 events/s, 10 clients", flush=True)
    s, g = latency(False, seconds=secs), latency(True, seconds=secs)
    print(f"  single relay  p50 {s['p50_us']:.0f} us  p99 {s['p99_us']:.0f} us  max {s['max_us']:.0f} us"
          f"  ({s['complete']}/10 complete)", flush=True)
    print(f"  A->Redis->B   p50 {g['p50_us']:.0f} us  p99 {g['p99_us']:.0f} us  max {g['max_us']:.0f} us"
          f"  ({g['complete']}/10 complete)", flush=True)
    added99 = g["p99_us"] - s["p99_us"]
    print(f"      added: p50 {g['p50_us'] - s['p50_us']:.0f} us, p99 {added99:.0f} us "
          f"({g['p99_us'] / s['p99_us']:.2f}x single; goal p99 added <= 2 ms: "
          f"{bench_relay.verdict(added99 <= 2000)})", flush=True)
    replicas_and_failover(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
