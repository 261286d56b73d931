# SPDX-License-Identifier: Apache-2.0
"""ws-relay --redis: several relays, one stream, through a real Redis
(SPEC "ws-relay across machines — one stream through Redis").

Every test starts its own redis-server (tests/support/redis_support.py) and
at least one relay; clients are RawWs (blocking, answers pings)."""
import json
import os
import socket
import subprocess
import threading

import pytest

from relay_support import RawWs, Relay
from redis_support import RedisServer, wait_health
from smws_test import Proc, run, rmtree, short_tmpdir, tool, wait_for


def group(redis, *extra):
    return Relay("--redis", redis.url, *extra)


def client(relay, query=""):
    return RawWs(relay.port, path="/ws/events" + query, timeout=15)


def initial(ws):
    msg = ws.recv_json(timeout=15)
    assert msg["type"] == "initial", msg
    return msg


def collect(ws, n, timeout=15.0, skip=("ping",)):
    """The next n messages (app pings skipped)."""
    out = []
    while len(out) < n:
        msg = ws.recv_json(timeout=timeout)
        if msg.get("type") not in skip:
            out.append(msg)
    return out


def test_events_from_two_stdins_reach_three_relays_in_one_order():
    # c names Redis by host name (resolved off its loop thread).
    with RedisServer() as redis, group(redis) as a, group(redis) as b, \
            Relay("--redis", redis.url.replace("127.0.0.1", "localhost"),
                  "--redis-history", "5") as c:
        clients = [client(r) for r in (a, b, c)]
        for ws in clients:
            assert initial(ws)["seq"] == 0
        for i in range(10):
            a.send({"type": "from_a", "n": i})
            b.send({"type": "from_b", "n": i})
        seen = [collect(ws, 20) for ws in clients]
        assert [m["seq"] for m in seen[0]] == list(range(1, 21))
        assert seen[0] == seen[1] == seen[2]
        for source in ("from_a", "from_b"):
            assert [m["n"] for m in seen[0] if m["type"] == source] == list(range(10))

        # ?since= on a relay the client did not use before: exactly after N.
        resumed = client(b, "?since=13")
        assert collect(resumed, 7) == seen[0][13:]
        # Below what a relay holds (c keeps 5): gap, snapshot, then the held ones.
        old = client(c, "?since=2")
        gap = old.recv_json()
        assert gap == {"type": "gap", "from": 3, "to": 15}
        assert old.recv_json()["type"] == "initial"
        assert collect(old, 5) == seen[0][15:]


def test_a_relay_started_late_serves_the_groups_machines_and_pending():
    with RedisServer() as redis, group(redis) as a:
        watcher = client(a)
        initial(watcher)
        a.send({"type": "state_change", "machine_id": "w1", "state": "idle", "timestamp": 1.0},
               {"type": "state_change", "machine_id": "w1", "state": "busy", "timestamp": 2.0},
               {"type": "state_change", "machine_id": "w2", "state": "up", "timestamp": 3.0},
               {"type": "interrupt", "interrupt_id": "i-late", "thread_id": "t",
                "action_requests": [{"name": "deploy", "args": {}}]})
        collect(watcher, 4)
        with group(redis) as late:
            snap = initial(client(late))
            assert snap["seq"] == 4
            machines = {m["id"]: m for m in snap["machines"]}
            assert machines["w1"]["current_state"] == "busy"
            assert machines["w1"]["previous_state"] == "idle"
            assert machines["w1"]["last_activity"] == 2.0
            assert machines["w2"]["current_state"] == "up"
            assert [p["interrupt_id"] for p in snap["pending"]] == ["i-late"]


def test_a_decision_race_has_one_winner_and_the_waiting_sm_send_gets_it():
    tmp = short_tmpdir()
    sock = os.path.join(tmp, "events.sock")
    try:
        with RedisServer() as redis, group(redis) as a, group(redis) as b, group(redis) as c:
            # sm-listen | relay a, by a forwarding thread (Relay owns a's stdin).
            listen = Proc([tool("sm-listen"), "--socket", sock])

            def forward():
                for raw in listen.p.stdout:
                    try:
                        a.send_raw(raw)
                    except (BrokenPipeError, ValueError):
                        return
            threading.Thread(target=forward, daemon=True).start()
            watchers = {name: client(r) for name, r in (("a", a), ("b", b), ("c", c))}
            for ws in watchers.values():
                initial(ws)
            deciders = [client(b), client(c)]
            for ws in deciders:
                initial(ws)
            wait_for(lambda: os.path.exists(sock), 10, what="sm-listen to bind")
            asker = Proc([tool("sm-send"), "--socket", sock, "interrupt", "@interrupt_id=i-race",
                          "@thread_id=t-1",
                          '@action_requests:=[{"name":"deploy","args":{"env":"prod"}}]',
                          "--wait-reply", "30"])
            for ws in list(watchers.values()) + deciders:
                assert collect(ws, 1)[0]["interrupt_id"] == "i-race"
            for n, ws in enumerate(deciders):
                ws.send_text(json.dumps({"type": "decision", "interrupt_id": "i-race",
                                         "decisions": [{"type": "approve"}],
                                         "decided_by": f"d{n}"}))
            # Each decider sees the one decision; the loser also gets "not pending".
            results = [collect(ws, 1)[0] for ws in deciders]
            extra = []
            for ws, first in zip(deciders, results):
                if first["type"] == "error":
                    extra.append(first)
                    assert collect(ws, 1)[0]["type"] == "decision"
                else:
                    assert first["type"] == "decision"
                    # the loser's error may come before or after the broadcast
            errors = extra
            winners = {json.dumps(m, sort_keys=True) for ws_msgs in [results] for m in ws_msgs
                       if m["type"] == "decision"}
            decisions = [collect(ws, 1)[0] for ws in watchers.values()]
            assert all(d["type"] == "decision" for d in decisions)
            assert len({d["decided_by"] for d in decisions}) == 1
            winner = decisions[0]["decided_by"]
            loser = deciders[0] if winner == "d1" else deciders[1]
            if not errors:
                err = collect(loser, 1)[0]
                errors.append(err)
            assert errors[0]["error"] == "not pending"
            assert winners  # at least one decider saw the broadcast first
            assert asker.wait(timeout=20) == 0
            reply = json.loads(asker.p.stdout.read())
            assert reply["decided_by"] == winner
            # The origin relay printed it once; the others did not.
            line = json.loads(a.stdout_line(timeout=10))
            assert line["interrupt_id"] == "i-race" and line["decided_by"] == winner
            a.send({"type": "after"})
            b.send({"type": "after"})
            collect(watchers["a"], 2)
            assert a.stdout_pending() == []
            assert b.stdout_pending() == [] and c.stdout_pending() == []
            listen.kill()
    finally:
        rmtree(tmp)


def test_a_timeout_is_resolved_once_for_the_group():
    with RedisServer() as redis, group(redis) as a, group(redis) as b, group(redis) as c:
        ws = client(c)
        initial(ws)
        a.send({"type": "interrupt", "interrupt_id": "i-t", "timeout": 0.5,
                "action_requests": [{"name": "deploy", "args": {}}]})
        assert collect(ws, 1)[0]["type"] == "interrupt"
        decision = collect(ws, 1)[0]
        assert decision["type"] == "decision" and decision["timed_out"] is True
        # Whatever the three relays proposed, the stream holds one decision.
        b.send({"type": "marker"})
        assert collect(ws, 1)[0]["type"] == "marker"
        entries = redis.cli("XRANGE", "smws", "-", "+")
        assert entries.count('"type":"decision"') == 1


def test_a_paused_redis_degrades_the_relay_without_blocking_it():
    with RedisServer() as redis, group(redis, "--ping-interval", "0.5", "--ping-timeout", "60") as a:
        ws = client(a)
        initial(ws)
        a.send({"type": "interrupt", "interrupt_id": "i-p", "action_requests": [{"name": "x"}]})
        assert collect(ws, 1)[0]["seq"] == 1
        redis.pause()
        try:
            health = wait_health(a, 503)
            assert health["status"] == "degraded" and health["redis"] == "down"
            assert health["relay_id"]
            # A decision cannot be recorded: the client is told, it is counted.
            ws.send_text(json.dumps({"type": "decision", "interrupt_id": "i-p",
                                     "decisions": [{"type": "approve"}]}))
            refused = collect(ws, 1)[0]
            assert refused["type"] == "error" and "redis is unavailable" in refused["error"]
            assert "ws_relay_redis_decisions_unavailable_total 1" in a.http_get("/metrics")[2]
            a.send({"type": "while_paused", "n": 1}, {"type": "while_paused", "n": 2})
            pings = ws.pings
            # The loop still answers HTTP and pings while Redis is stopped.
            wait_health(a, 503)
            import time
            deadline = time.monotonic() + 10
            while ws.pings == pings:
                assert time.monotonic() < deadline
                try:
                    msg = ws.recv(timeout=0.6)
                    assert msg[0] != "close", msg
                except (TimeoutError, socket.timeout):
                    pass
        finally:
            redis.resume()
        try:
            got = collect(ws, 2, timeout=20)
        except Exception:
            print(a.stderr_text())
            raise
        assert [(m["type"], m.get("n"), m["seq"]) for m in got] == [
            ("while_paused", 1, 2), ("while_paused", 2, 3)]
        assert wait_health(a, 200)["redis"] == "up"


def test_redis_killed_and_restarted_with_its_aof_loses_nothing_within_the_buffer():
    with RedisServer(appendonly=True) as redis, group(redis, "--redis-buffer", "3") as a:
        ws = client(a)
        initial(ws)
        a.send({"type": "e", "n": 1})
        assert collect(ws, 1)[0]["seq"] == 1
        redis.kill()
        wait_health(a, 503)
        a.send({"type": "e", "n": 2}, {"type": "e", "n": 3})
        redis.start()
        got = collect(ws, 2, timeout=20)
        assert [(m["n"], m["seq"]) for m in got] == [(2, 2), (3, 3)]
        # Past the buffer: the oldest are dropped, counted and shown as a gap.
        redis.kill()
        wait_health(a, 503)
        a.send(*[{"type": "e", "n": n} for n in range(4, 10)])
        wait_for(lambda: "ws_relay_redis_buffer_dropped_total 3" in a.http_get("/metrics")[2], 10,
                 interval=0.05, what="3 buffered events counted as dropped in /metrics")
        redis.start()
        got = collect(ws, 4, timeout=20)
        assert got[0]["type"] == "gap" and got[0]["dropped"] == 3
        assert [m["n"] for m in got[1:]] == [7, 8, 9]
        assert [m["seq"] for m in got] == [4, 5, 6, 7]


def test_redis_restarted_empty_is_a_new_epoch_and_clients_resync():
    with RedisServer() as redis, group(redis) as a, group(redis) as b:
        ws = client(b)
        initial(ws)
        a.send({"type": "state_change", "machine_id": "m", "state": "s1"}, {"type": "x"})
        assert [m["seq"] for m in collect(ws, 2)] == [1, 2]
        epoch = redis.cli("HGET", "smws:meta", "epoch")
        redis.restart(empty=True)
        try:
            gap = collect(ws, 1, timeout=20)[0]
        except TimeoutError:
            print(b.stderr_text())
            raise
        assert gap["type"] == "gap" and gap["reason"] == "resync" and gap["epoch"] != epoch
        assert ws.recv_json()["type"] == "initial"
        a.send({"type": "y"})
        got = collect(ws, 1, timeout=20)
        while got[-1]["type"] in ("gap", "initial"):
            got = collect(ws, 1, timeout=20)
        # Numbers never go back: the new epoch starts after what the relays had.
        assert got[-1]["type"] == "y" and got[-1]["seq"] > 2
        # A ?since= from the old epoch gets no old event presented as new.
        late = client(a, "?since=1")
        first = late.recv_json()
        assert first["type"] in ("gap", "initial"), first


def test_a_malformed_redis_url_exits_64_naming_it():
    r = run([tool("ws-relay"), "--listen", "127.0.0.1:0", "--redis", "redis://host:99999"],
            timeout=20)
    assert r.returncode == 64
    assert "redis://host:99999" in r.stderr and "port" in r.stderr
    r = run([tool("ws-relay"), "--listen", "127.0.0.1:0"], env={"WS_RELAY_REDIS": "http://x"},
            timeout=20)
    assert r.returncode == 64 and "must start with redis://" in r.stderr


def test_a_wrong_password_is_a_clear_error_and_the_relay_stays_up_degraded():
    with RedisServer("--requirepass", "right") as redis:
        wrong = redis.url.replace("redis://", "redis://:wrong@")
        with Relay("--redis", wrong) as a:
            a.wait_stderr("redis: authentication failed", timeout=15)
            health = wait_health(a, 503)
            assert health["redis"] == "down"
            assert any("authentication failed" in r for r in health["reasons"])
            ws = client(a)
            assert ws.recv_json(timeout=15)["type"] == "initial"
            assert a.proc.p.poll() is None


def test_redis_unreachable_at_start_is_degraded_serving_then_catches_up():
    with RedisServer(start=False) as redis, group(redis) as a:
        ws = client(a)
        assert initial(ws)["seq"] == 0  # served without the group's state
        assert wait_health(a, 503)["redis"] == "down"
        a.send({"type": "early"})
        redis.start()
        assert wait_health(a, 200)["redis"] == "up"
        got = collect(ws, 1, timeout=20)[0]
        assert got["type"] == "early" and got["seq"] == 1
