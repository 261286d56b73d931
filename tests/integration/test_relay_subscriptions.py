# SPDX-License-Identifier: Apache-2.0
"""ws-relay subscriptions (SPEC "ws-relay subscriptions — one relay, many
topics"): ?type=/?machine= filters with globs, ?hitl=0, the subscribe
message, --route, --machine-history with its byte bound, ?since= with a
filter, the counters, and bad filters. Clients are Debian's
python3-websockets; each scenario ends with a marker event its client's
filter takes, so "exactly these events" is checked without waiting on time."""
import json
import re
import subprocess

from relay_support import Relay, recv_json, recv_until, run, ws_connect
from smws_test import tool


def sc(machine, state, **extra):
    return {"type": "state_change", "machine_id": machine, "state": state, **extra}


async def opened(url):
    """Connects and takes the initial snapshot; returns (ws, snapshot)."""
    ws = await ws_connect(url)
    first = await recv_json(ws)
    assert first["type"] == "initial", first
    return ws, first


async def until_marker(ws, marker):
    got = await recv_until(ws, lambda m: m.get("marker") == marker)
    return got


def strip(msgs):
    """(type, machine_id, n) of each message, for compact comparisons."""
    return [(m["type"], m.get("machine_id"), m.get("n")) for m in msgs]


def test_two_clients_with_different_filters_get_exactly_their_events():
    with Relay() as relay:
        async def scenario():
            by_machine, _ = await opened(relay.url + "?machine=w-1,db-*")
            by_type, _ = await opened(relay.url + "?type=queue_*&type=job")
            everything, _ = await opened(relay.url)
            relay.send(
                {"type": "queue_update", "machine_id": "w-1", "n": 1},
                {"type": "queue_update", "machine_id": "w-2", "n": 2},
                {"type": "log", "machine_id": "db-7", "n": 3},
                {"type": "job", "n": 4},                      # no machine_id
                {"type": "log", "n": 5},
                {"type": "queue_depth", "machine_id": "x", "n": 6},
                {"type": "end", "machine_id": "w-1", "marker": "m"},
                {"type": "job", "marker": "t"},
                {"type": "end", "marker": "all"},
            )
            got = await until_marker(by_machine, "m")
            assert strip(got) == [("queue_update", "w-1", 1), ("log", "db-7", 3),
                                  ("end", "w-1", None)]
            got = await until_marker(by_type, "t")
            assert strip(got) == [("queue_update", "w-1", 1), ("queue_update", "w-2", 2),
                                  ("job", None, 4), ("queue_depth", "x", 6), ("job", None, None)]
            got = await until_marker(everything, "all")
            assert [m.get("n") for m in got] == [1, 2, 3, 4, 5, 6, None, None, None]
            health = relay.healthz()
            assert health["subscribed"] == 2
            # 9 events: the machine client skipped 6, the type client 4.
            assert health["filtered_out"] == 10
            status, _, metrics = relay.http_get("/metrics")
            assert status == 200
            assert re.search(r"^ws_relay_subscriptions 2$", metrics, re.M)
            assert re.search(r"^ws_relay_filtered_out_total 10$", metrics, re.M)
            for ws in (by_machine, by_type, everything):
                await ws.close()
        run(scenario())


def test_a_filtered_snapshot_holds_only_the_machines_that_match():
    with Relay() as relay:
        relay.send(sc("w-1", "idle"), sc("w-2", "busy"), sc("db-1", "up"))
        async def scenario():
            # Wait until the relay has all three (an unfiltered snapshot shows them).
            while True:
                ws, snap = await opened(relay.url)
                await ws.close()
                if len(snap["machines"]) == 3:
                    break
            ws, snap = await opened(relay.url + "?machine=w-*")
            assert sorted(m["id"] for m in snap["machines"]) == ["w-1", "w-2"]
            await ws.close()
            ws, snap = await opened(relay.url + "?type=queue_update")  # types hide no machine
            assert len(snap["machines"]) == 3
            await ws.close()
        run(scenario())


def test_hitl_messages_reach_filtered_clients_unless_hitl_0():
    with Relay() as relay:
        async def scenario():
            approver, _ = await opened(relay.url + "?type=tick")
            panel, snap = await opened(relay.url + "?type=tick&hitl=0")
            assert snap["pending"] == []
            relay.send({"type": "interrupt", "interrupt_id": "i-1", "thread_id": "t",
                        "action_requests": [{"name": "deploy", "args": {}}]},
                       {"type": "tick", "marker": "x"})
            got = await until_marker(approver, "x")
            assert [m["type"] for m in got] == ["interrupt", "tick"]
            got = await until_marker(panel, "x")
            assert [m["type"] for m in got] == ["tick"]
            # A late opted-out client does not see the pending interrupt either.
            late, snap = await opened(relay.url + "?hitl=0")
            assert snap["pending"] == []
            late2, snap2 = await opened(relay.url + "?type=none")
            assert [p["interrupt_id"] for p in snap2["pending"]] == ["i-1"]
            # The decision goes to every client that did not opt out.
            await approver.send(json.dumps({"type": "decision", "interrupt_id": "i-1",
                                            "decisions": [{"type": "approve"}]}))
            got = await recv_until(late2, lambda m: m["type"] == "decision")
            assert got[-1]["interrupt_id"] == "i-1"
            relay.send({"type": "tick", "marker": "y"})
            got = await until_marker(panel, "y")
            assert [m["type"] for m in got] == ["tick"]
            for ws in (approver, panel, late, late2):
                await ws.close()
        run(scenario())


def test_subscribe_mid_stream_switches_the_view_with_a_snapshot():
    with Relay() as relay:
        async def scenario():
            ws, _ = await opened(relay.url)
            relay.send(sc("w-1", "idle", n=1), sc("w-2", "busy", n=2), {"type": "e", "marker": "a"})
            await until_marker(ws, "a")
            await ws.send(json.dumps({"type": "subscribe", "machines": ["w-2"]}))
            snap = await recv_json(ws)
            assert snap["type"] == "initial"
            assert [m["id"] for m in snap["machines"]] == ["w-2"]
            relay.send(sc("w-1", "busy", n=3), sc("w-2", "idle", n=4),
                       {"type": "e", "machine_id": "w-2", "marker": "b"})
            got = await until_marker(ws, "b")
            assert [m.get("n") for m in got] == [4, None]
            # A refresh is a snapshot of the client's view too.
            await ws.send(json.dumps({"type": "refresh"}))
            snap = await recv_json(ws)
            assert snap["type"] == "initial"
            assert [m["id"] for m in snap["machines"]] == ["w-2"]
            # Back to everything: empty lists.
            await ws.send(json.dumps({"type": "subscribe", "types": [], "machines": []}))
            snap = await recv_json(ws)
            assert sorted(m["id"] for m in snap["machines"]) == ["w-1", "w-2"]
            relay.send(sc("w-1", "idle", n=5), {"type": "e", "marker": "c"})
            got = await until_marker(ws, "c")
            assert [m.get("n") for m in got] == [5, None]
            await ws.close()
        run(scenario())


def test_a_subscribe_of_the_wrong_shape_gets_an_error_and_changes_nothing():
    with Relay() as relay:
        async def scenario():
            ws, _ = await opened(relay.url + "?machine=w-1")
            for bad in ({"type": "subscribe", "machines": "w-2"},
                        {"type": "subscribe", "types": [""]},
                        {"type": "subscribe", "machines": ["w-2", 7]}):
                await ws.send(json.dumps(bad))
                reply = await recv_json(ws)
                assert reply["type"] == "error", reply
                assert "must be a list of non-empty strings" in reply["error"]
            relay.send(sc("w-2", "x", n=1), sc("w-1", "y", n=2, marker="m"))
            got = await until_marker(ws, "m")
            assert [m["n"] for m in got] == [2]
            await ws.close()
        run(scenario())
        assert relay.stdout_pending() == []  # a subscribe is never forwarded to stdout


def test_a_route_serves_an_old_url_scheme_unchanged():
    with Relay("--route", "/api/v1/ws/queue=type:queue_update",
               "--route", "/api/v1/ws/workflows=type:workflow_*") as relay:
        base = f"ws://127.0.0.1:{relay.port}"
        async def scenario():
            queue, _ = await opened(base + "/api/v1/ws/queue")
            flows, _ = await opened(base + "/api/v1/ws/workflows")
            narrowed, _ = await opened(base + "/api/v1/ws/workflows?type=workflow_done")
            everything, _ = await opened(relay.url)
            relay.send({"type": "queue_update", "n": 1}, {"type": "workflow_started", "n": 2},
                       {"type": "workflow_done", "n": 3}, {"type": "other", "n": 4},
                       {"type": "queue_update", "marker": "q"},
                       {"type": "workflow_done", "marker": "w"})
            assert [m.get("n") for m in await until_marker(queue, "q")] == [1, None]
            assert [m.get("n") for m in await until_marker(flows, "w")] == [2, 3, None]
            assert [m.get("n") for m in await until_marker(narrowed, "w")] == [3, None]
            assert [m.get("n") for m in await until_marker(everything, "w")] == [1, 2, 3, 4,
                                                                                None, None]
            for ws in (queue, flows, narrowed, everything):
                await ws.close()
        run(scenario())
        status, _, _ = relay.http_get("/api/v1/ws/queue")
        assert status == 426  # a route is a WebSocket path like --path


def test_machine_history_replays_a_machines_last_events_to_a_late_client():
    with Relay("--machine-history", "3") as relay:
        async def scenario():
            probe, _ = await opened(relay.url)
            relay.send(*[{"type": "log", "machine_id": "m1", "n": i} for i in range(1, 6)],
                       {"type": "log", "machine_id": "m2", "n": 100},
                       {"type": "log", "machine_id": "m1", "n": 6, "marker": "done"})
            await until_marker(probe, "done")
            ws, _ = await opened(relay.url + "?machine=m1")
            got = await until_marker(ws, "done")
            assert [m["n"] for m in got] == [4, 5, 6]
            await ws.close()
            ws, _ = await opened(relay.url + "?machine=m2,m1")
            got = await until_marker(ws, "done")
            assert [m["n"] for m in got] == [4, 5, 100, 6]  # merged, oldest first
            # subscribe: snapshot, then the held history of the machines named
            await ws.send(json.dumps({"type": "subscribe", "machines": ["m2"]}))
            assert (await recv_json(ws))["type"] == "initial"
            assert (await recv_json(ws))["n"] == 100
            await ws.close()
            await probe.close()
        run(scenario())


def test_the_byte_bound_evicts_the_least_recently_active_machine_first():
    # Each event is 56 bytes of text (+3 for its type, +2 per machine id):
    # 400 bytes hold two machines' three events each but not three machines'.
    with Relay("--machine-history", "3", "--machine-history-bytes", "400") as relay:
        events = []
        for m in ("m1", "m2", "m3"):
            events += [{"type": "log", "machine_id": m, "n": i, "pad": "x" * 10} for i in range(3)]
        relay.send(*events)
        async def scenario():
            probe, _ = await opened(relay.url)
            relay.send({"type": "sync", "marker": "s"})
            await until_marker(probe, "s")
            ws, _ = await opened(relay.url + "?machine=m1,m2,m3")
            relay.send({"type": "log", "machine_id": "m3", "marker": "end"})
            got = await until_marker(ws, "end")
            held = {m["machine_id"] for m in got if "n" in m}
            assert held == {"m2", "m3"}, got  # m1 was the least recently active
            status, _, metrics = relay.http_get("/metrics")
            evictions = int(re.search(r"^ws_relay_machine_history_evictions_total (\d+)$",
                                      metrics, re.M).group(1))
            assert evictions >= 1
            held_bytes = int(re.search(r"^ws_relay_machine_history_bytes (\d+)$",
                                       metrics, re.M).group(1))
            assert 0 < held_bytes <= 400
            await probe.close()
            await ws.close()
        run(scenario())


def test_since_with_a_filter_replays_only_matching_events():
    with Relay("--seq", "--history", "100") as relay:
        async def scenario():
            watcher, _ = await opened(relay.url)
            relay.send(sc("w-1", "a", n=1), sc("w-2", "b", n=2))
            got = await recv_until(watcher, lambda m: m.get("n") == 2)
            resume_after = got[0]["seq"]  # w-1's first event
            relay.send(sc("w-1", "c", n=3), sc("w-2", "d", n=4), {"type": "e", "marker": "x"})
            await until_marker(watcher, "x")
            ws = await ws_connect(relay.url + f"?machine=w-1&since={resume_after}")
            relay.send(sc("w-1", "e", n=5, marker="live"))
            got = await until_marker(ws, "live")
            # No snapshot (nothing was lost), only w-1's events after the seq.
            assert [m.get("n") for m in got] == [3, 5]
            seqs = [m["seq"] for m in got]
            assert seqs[1] > seqs[0] + 1  # holes in seq that are not loss
            await ws.close()
            await watcher.close()
        run(scenario())


def test_a_bad_query_filter_gets_an_error_and_the_default_view():
    with Relay("--route", "/q=type:queue_update") as relay:
        async def scenario():
            ws = await ws_connect(f"ws://127.0.0.1:{relay.port}/q?machine=a,,b")
            err = await recv_json(ws)
            assert err["type"] == "error" and "empty glob" in err["error"], err
            assert (await recv_json(ws))["type"] == "initial"
            relay.send({"type": "other", "n": 1}, {"type": "queue_update", "marker": "q"})
            got = await until_marker(ws, "q")
            assert [m["type"] for m in got] == ["queue_update"]  # the route's filter stands
            await ws.close()
        run(scenario())


def test_bad_route_flags_are_usage_errors():
    for args, words in (
            (["--route", "/x=typo:a"], "unknown key 'typo'"),
            (["--route", "/x=type:"], "empty glob"),
            (["--route", "x=type:a"], "must start with '/'"),
            (["--route", "/x"], "PATH=FILTER"),
            (["--route", "/ws/events=type:a"], "already served"),
            (["--route", "/x=type:a", "--route", "/x=type:b"], "routed twice")):
        p = subprocess.run([tool("ws-relay"), "--listen", "127.0.0.1:0", *args],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        assert p.returncode == 64, (args, p.returncode, p.stderr)
        assert words in p.stderr.decode(), (args, p.stderr)
