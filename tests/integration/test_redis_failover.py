# SPDX-License-Identifier: Apache-2.0
"""ws-relay through Redis that fails over (SPEC "ws-relay across machines",
"Redis that fails over" and the epoch rule): Sentinel discovery and
following, WAIT with --redis-replicas, and epochs that never hide a loss.

Real peers: Debian's redis-server (master and replicas) and redis-sentinel,
each on a free port with a temp dir, stopped by PID
(tests/support/redis_support.py). The Sentinel runs with fast settings
(down after 1 s, failover timeout 3 s), so a failover takes a few seconds."""
import json
import os
import signal
import threading
import time

from relay_support import RawWs, Relay
from redis_support import RedisServer, Sentinel, start_replica, wait_health
from smws_test import free_port, wait_for


def client(relay, query=""):
    return RawWs(relay.port, path="/ws/events" + query, timeout=20)


def initial(ws):
    msg = ws.recv_json(timeout=20)
    assert msg["type"] == "initial", msg
    return msg


def health(relay):
    """(HTTP status, the /healthz JSON)."""
    code, _, body = relay.http_get("/healthz")
    return code, json.loads(body)


def on_new_master(relay, old_port):
    code, h = health(relay)
    return code == 200 and h.get("redis_master") not in (None, f"127.0.0.1:{old_port}")


def sentinel_relay(sentinels, *extra):
    args = []
    for s in sentinels:
        args += ["--redis-sentinel", s]
    return Relay(*args, "--redis-master", "mymaster", *extra)


def until_n(ws, last_n, timeout=40.0):
    """Messages (app pings skipped) up to the event with "n" == last_n."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"event n={last_n} never came; last {out[-5:]}")
        msg = ws.recv_json(timeout=left)
        if msg.get("type") == "ping":
            continue
        out.append(msg)
        if msg.get("n") == last_n:
            return out


def stop_reading(relay, redis, others):
    """SIGSTOPs relay so that it reads nothing more: its connections are cut
    too (an XREAD answered while it is stopped would wait in its socket and
    be read at SIGCONT); the other relays reconnect at once."""
    os.kill(relay.pid, signal.SIGSTOP)
    before = [o.metrics().get("ws_relay_redis_reconnects_total", 0) for o in others]
    redis.cli("CLIENT", "KILL", "TYPE", "normal")
    for o, n in zip(others, before):
        o.wait_metric("ws_relay_redis_reconnects_total", lambda v, n=n: v > n, timeout=20)
        wait_health(o, 200)


class Feeder:
    """Writes numbered events into a relay's stdin from a thread, one every
    `interval` seconds, until stop(); returns the last n written."""

    def __init__(self, relay, interval=0.01):
        self.relay, self.interval = relay, interval
        self.n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.n += 1
            self.relay.send({"type": "tick", "n": self.n})
            time.sleep(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)
        return self.n


def failover_group(replicas):
    """A master with two replicas and a Sentinel watching them (two, so one
    remains to acknowledge WAIT after the other is promoted)."""
    master = RedisServer()
    reps = [start_replica(master) for _ in range(replicas)]
    sentinel = Sentinel(master.port)
    # The Sentinel learns the replicas from the master's INFO.
    wait_for(lambda: sentinel.master() == ("127.0.0.1", master.port), 10, interval=0.05,
             what="the Sentinel naming the master")
    for _ in range(replicas):
        sentinel.wait_line("+slave slave", timeout=15)
    return master, reps, sentinel


def close_all(*servers):
    for s in servers:
        try:
            s.close()
        except Exception:  # noqa: BLE001 - cleanup of what may be gone
            pass


def kill_master_and_wait(master, sentinel):
    mark = len(sentinel.lines)
    master.kill()
    sentinel.wait_line("+switch-master", timeout=30, after=mark)


def test_sentinel_failover_with_replicas_loses_nothing_and_shows_no_gap():
    master, reps, sentinel = failover_group(2)
    try:
        # The first Sentinel listed is not there: the relays ask the next.
        dead = f"127.0.0.1:{free_port()}"
        sentinels = [dead, sentinel.address]
        with sentinel_relay(sentinels, "--redis-replicas", "1", "--redis-wait-timeout", "0.5") as a, \
                sentinel_relay(sentinels, "--redis-replicas", "1", "--redis-wait-timeout", "0.5") as b:
            health = wait_health(b, 200)
            assert health["redis_master"] == f"127.0.0.1:{master.port}", health
            ws = client(b)
            initial(ws)
            feeder = Feeder(a)
            wait_for(lambda: feeder.n >= 50, 10, interval=0.01, what="50 events written")
            kill_master_and_wait(master, sentinel)
            wait_for(lambda: on_new_master(b, master.port), 30, interval=0.05,
                     what="relay b on the promoted master")
            # Events keep flowing after the failover: 20 more written.
            after = feeder.n
            wait_for(lambda: feeder.n >= after + 20, 10, interval=0.01, what="20 events after the failover")
            last = feeder.stop()
            got = until_n(ws, last)
            assert [m for m in got if m.get("type") in ("gap", "initial")] == [], \
                [m for m in got if m.get("type") != "tick"][:3]
            assert [m["n"] for m in got] == list(range(1, last + 1))
            seqs = [m["seq"] for m in got]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            health = b.healthz()
            assert health["redis_master"] != f"127.0.0.1:{master.port}"
            metrics = b.http_get("/metrics")[2]
            assert "ws_relay_redis_failovers_total 1" in metrics, metrics
            assert f'ws_relay_redis_master_info{{address="{health["redis_master"]}"}} 1' in metrics
    finally:
        close_all(sentinel, *reps, master)


def test_sentinel_failover_without_replicas_shows_every_event_or_a_gap():
    master, reps, sentinel = failover_group(1)
    try:
        with sentinel_relay([sentinel.address]) as a, sentinel_relay([sentinel.address]) as b:
            wait_health(b, 200)
            ws = client(b)
            initial(ws)
            feeder = Feeder(a)
            wait_for(lambda: feeder.n >= 50, 10, interval=0.01, what="50 events written")
            kill_master_and_wait(master, sentinel)
            wait_for(lambda: on_new_master(b, master.port), 30, interval=0.05,
                     what="relay b on the promoted master")
            after = feeder.n
            wait_for(lambda: feeder.n >= after + 20, 10, interval=0.01, what="20 events after the failover")
            last = feeder.stop()
            got = until_n(ws, last)
            # Every n once and in order, or a gap/resync before the jump.
            expected = 1
            announced = False
            for m in got:
                if m.get("type") in ("gap", "initial"):
                    announced = True
                    continue
                if m["n"] != expected:
                    assert announced and m["n"] > expected, (m, expected)
                expected = m["n"] + 1
                announced = False
            assert expected == last + 1
    finally:
        close_all(sentinel, *reps, master)


def test_wait_with_a_replica_stopped_counts_the_timeout_and_catches_up():
    master = RedisServer()
    replica = start_replica(master)
    try:
        with Relay("--redis", master.url, "--redis-replicas", "1", "--redis-wait-timeout", "0.2") as a:
            ws = client(a)
            initial(ws)
            a.send({"type": "tick", "n": 1})
            assert until_n(ws, 1)[-1]["seq"] == 1
            replica.pause()
            a.send({"type": "tick", "n": 2})
            a.wait_metric("ws_relay_redis_wait_timeouts_total", lambda v: v >= 1, timeout=15)
            replica.resume()
            got = until_n(ws, 2)
            assert [(m["n"], m["seq"]) for m in got] == [(2, 2)]
    finally:
        close_all(replica, master)


def test_redis_wiped_while_a_relay_is_stopped_gives_old_since_a_gap_or_snapshot():
    """The bug of issue 22: after Redis restarts without its data, a client
    resuming with ?since=N from before the wipe got the new epoch's events
    numbered on from N, with no gap and no snapshot."""
    with RedisServer() as redis, Relay("--redis", redis.url) as a, Relay("--redis", redis.url) as b:
        wa = client(a)
        initial(wa)
        wb = client(b)
        initial(wb)
        a.send(*[{"type": "tick", "n": n} for n in range(1, 4)])
        assert [m["seq"] for m in until_n(wb, 3)] == [1, 2, 3]
        # b stops reading; a goes on alone.
        stop_reading(b, redis, [a])
        try:
            a.send(*[{"type": "tick", "n": n} for n in range(4, 7)])
            assert [m["seq"] for m in until_n(wa, 6)] == [1, 2, 3, 4, 5, 6]
            redis.restart(empty=True)
            # a finds the new epoch first, then b (which had read up to 3).
            wait_for(lambda: health(a)[0] == 200 and redis.cli("HGET", "smws:meta", "epoch"), 20,
                     interval=0.05, what="relay a up on the wiped Redis")
        finally:
            os.kill(b.pid, signal.SIGCONT)
        wait_health(b, 200)
        b.wait_metric("ws_relay_redis_resyncs_total", lambda v: v >= 1, timeout=20)
        a.send({"type": "tick", "n": 7})
        assert until_n(wb, 7)[-1]["seq"] == 7
        # A client of a that saw seq 6 before the wipe resumes on either relay:
        # a gap or a fresh snapshot, never seq 7 as if nothing happened.
        for relay in (a, b):
            late = client(relay, "?since=6")
            first = late.recv_json(timeout=20)
            while first.get("type") == "ping":
                first = late.recv_json(timeout=20)
            assert first["type"] in ("gap", "initial"), (relay.port, first)


def test_a_relay_stopped_before_a_wipe_and_back_first_cannot_reuse_numbers_seen():
    """The stopped relay (b, at seq 3) finds the wiped Redis first and starts
    the new epoch at 3; a, which had seen up to 6, then raises it: a ?since=
    of up to 6 is from before the epoch on every relay."""
    with RedisServer() as redis, Relay("--redis", redis.url) as a, Relay("--redis", redis.url) as b:
        wa = client(a)
        initial(wa)
        wb = client(b)
        initial(wb)
        a.send(*[{"type": "tick", "n": n} for n in range(1, 4)])
        until_n(wb, 3)
        stopped = [b.pid]
        stop_reading(b, redis, [a])
        try:
            a.send(*[{"type": "tick", "n": n} for n in range(4, 7)])
            until_n(wa, 6)
            os.kill(a.pid, signal.SIGSTOP)
            stopped.append(a.pid)
            redis.restart(empty=True)
            os.kill(b.pid, signal.SIGCONT)
            stopped.remove(b.pid)
            wait_for(lambda: redis.cli("HGET", "smws:meta", "start") == "3", 20, interval=0.05,
                     what="b starting the new epoch at its seq 3")
            b.send({"type": "tick", "n": 100})  # numbered 4 in the new epoch
            assert until_n(wb, 100)[-1]["seq"] == 4
            resyncs = b.metrics().get("ws_relay_redis_resyncs_total", 0)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        wait_for(lambda: redis.cli("HGET", "smws:meta", "start") == "6", 20, interval=0.05,
                 what="a raising the epoch's start to its seq 6")
        b.wait_metric("ws_relay_redis_resyncs_total", lambda v: v > resyncs, timeout=20)
        for relay in (a, b):
            for since in (4, 6):
                late = client(relay, f"?since={since}")
                first = late.recv_json(timeout=20)
                while first.get("type") == "ping":
                    first = late.recv_json(timeout=20)
                assert first["type"] in ("gap", "initial"), (relay.port, since, first)
        a.send({"type": "tick", "n": 101})
        got = until_n(wb, 101)
        assert got[-1]["seq"] > 6


def test_a_promoted_replica_without_the_last_entries_is_a_gap_for_every_relay():
    """What a failover without --redis-replicas can lose, made certain: the
    Redis the relays reconnect to lacks the last entries they saw (as a
    replica that had not received them would). Not a silent loss: a new
    epoch, the resync gap and a fresh snapshot on both relays, numbers going
    on above what they had seen, and an old ?since= gets a gap or snapshot."""
    with RedisServer() as redis, Relay("--redis", redis.url) as a, Relay("--redis", redis.url) as b:
        wa, wb = client(a), client(b)
        initial(wa)
        initial(wb)
        a.send(*[{"type": "tick", "n": n} for n in range(1, 6)])
        until_n(wa, 5)
        until_n(wb, 5)
        epoch = redis.cli("HGET", "smws:meta", "epoch")
        # The "promoted replica" had only up to seq 3.
        redis.cli("XDEL", "smws", "4-0", "5-0")
        redis.cli("HSET", "smws:meta", "seq", "3")
        redis.cli("CLIENT", "KILL", "TYPE", "normal")
        for ws in (wa, wb):
            gap = ws.recv_json(timeout=20)
            while gap.get("type") == "ping":
                gap = ws.recv_json(timeout=20)
            assert gap["type"] == "gap" and gap["reason"] == "resync" and gap["epoch"] != epoch, gap
            assert ws.recv_json(timeout=20)["type"] == "initial"
        assert redis.cli("HGET", "smws:meta", "start") == "5"
        a.send({"type": "tick", "n": 6})
        assert until_n(wb, 6)[-1]["seq"] == 6
        for relay in (a, b):
            late = client(relay, "?since=4")
            first = late.recv_json(timeout=20)
            assert first == {"type": "gap", "from": 5, "to": 5} or first["type"] == "initial", first
