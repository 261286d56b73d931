# SPDX-License-Identifier: Apache-2.0
"""ws-relay: what flows from stdin to clients — order, snapshot, history,
refresh, --seq and ?since=N resume, invalid lines. Clients are Debian's
python3-websockets and Node's ws; nothing here was written by us except the
glue in tests/support/relay_support.py."""
import pytest
import asyncio
import json

from relay_support import (NodeClient, Relay, event, recv_json, recv_until, run,
                           ws_connect)


async def connected(url, n=1, **kw):
    """Opens n python clients and takes each one's initial snapshot."""
    clients = []
    for _ in range(n):
        ws = await ws_connect(url, **kw)
        first = await recv_json(ws)
        assert first["type"] == "initial", first
        clients.append(ws)
    return clients


async def close_all(clients):
    for ws in clients:
        await ws.close()


async def sync_through(relay, ws, marker):
    """Sends a marker event and waits until `ws` has it: everything written
    to stdin before it has then been ingested by the relay."""
    relay.send(event(-1, marker=marker))
    await recv_until(ws, lambda m: m.get("marker") == marker)


@pytest.mark.tsan
def test_every_client_gets_every_event_in_stdin_order():
    with Relay() as relay:
        async def scenario():
            clients = await connected(relay.url, 3)
            with NodeClient(relay.url) as node:
                node.wait(lambda e: "message" in e and json.loads(e["message"])["type"] == "initial")
                relay.send(*[event(i) for i in range(1, 301)])
                for ws in clients:
                    got = [(await recv_json(ws))["n"] for _ in range(300)]
                    assert got == list(range(1, 301))
                node_got = node.messages_until(lambda m: m.get("n") == 300)
                assert [m["n"] for m in node_got] == list(range(1, 301))
            await close_all(clients)
        run(scenario())


def test_late_joiner_gets_a_snapshot_of_every_machine():
    with Relay() as relay:
        async def scenario():
            [early] = await connected(relay.url)
            relay.send(
                {"type": "state_change", "machine_id": "w-1", "state": "idle", "timestamp": 100.5,
                 "data": {"job": 1}},
                {"type": "state_change", "machine_id": "w-2", "state": "busy", "previous_state": "new",
                 "timestamp": 101},
                {"type": "log", "machine_id": "w-1", "state": "ignored"},
                {"type": "state_change", "machine_id": "w-1", "state": "processing",
                 "timestamp": 102.25, "data": {"job": 2}})
            await sync_through(relay, early, "m1")
            async with ws_connect(relay.url) as late:
                snap = await recv_json(late)
            assert snap["type"] == "initial"
            assert isinstance(snap["timestamp"], (int, float))
            assert snap["pending"] == []
            machines = {m["id"]: m for m in snap["machines"]}
            assert machines == {
                "w-1": {"id": "w-1", "current_state": "processing", "previous_state": "idle",
                        "last_activity": 102.25, "data": {"job": 2}},
                "w-2": {"id": "w-2", "current_state": "busy", "previous_state": "new",
                        "last_activity": 101, "data": {}},
            }
            await early.close()
        run(scenario())


def test_snapshot_is_followed_by_the_last_history_events_then_the_live_stream():
    with Relay("--history", "3") as relay:
        async def scenario():
            [early] = await connected(relay.url)
            relay.send(*[event(i) for i in range(1, 6)])
            await recv_until(early, lambda m: m.get("n") == 5)
            async with ws_connect(relay.url) as late:
                snap = await recv_json(late)
                assert snap["type"] == "initial"
                assert [(await recv_json(late))["n"] for _ in range(3)] == [3, 4, 5]
                relay.send(event(6))
                assert (await recv_json(late))["n"] == 6
            await early.close()
        run(scenario())


def test_refresh_sends_that_client_a_new_snapshot_only():
    with Relay() as relay:
        async def scenario():
            asker, other = await connected(relay.url, 2)
            relay.send({"type": "state_change", "machine_id": "m", "state": "a"})
            await recv_json(asker)
            await recv_json(other)
            await asker.send(json.dumps({"type": "refresh"}))
            snap = await recv_json(asker)
            assert snap["type"] == "initial"
            assert [m["current_state"] for m in snap["machines"]] == ["a"]
            # The other client saw no snapshot: its next message is the next event.
            relay.send(event(7))
            assert (await recv_json(other))["n"] == 7
            assert (await recv_json(asker))["n"] == 7
            await close_all([asker, other])
        run(scenario())


def test_seq_stamps_every_broadcast_event_in_order():
    with Relay("--seq") as relay:
        async def scenario():
            [ws] = await connected(relay.url)
            relay.send(*[event(i, seq=999) for i in range(1, 6)])
            got = [await recv_json(ws) for _ in range(5)]
            assert [m["seq"] for m in got] == [1, 2, 3, 4, 5]
            assert [m["n"] for m in got] == [1, 2, 3, 4, 5]
            await ws.close()
        run(scenario())


def test_since_resumes_from_history_without_a_snapshot():
    with Relay("--seq", "--history", "10") as relay:
        async def scenario():
            [early] = await connected(relay.url)
            relay.send(*[event(i) for i in range(1, 6)])
            await recv_until(early, lambda m: m.get("n") == 5)
            async with ws_connect(relay.url + "?since=2") as back:
                got = [await recv_json(back) for _ in range(3)]
                assert [m.get("seq") for m in got] == [3, 4, 5], got
                relay.send(event(6))
                assert (await recv_json(back))["seq"] == 6
            async with ws_connect(relay.url + "?since=6") as current:
                relay.send(event(7))
                assert (await recv_json(current))["seq"] == 7  # nothing missed, nothing replayed
            await early.close()
        run(scenario())


def test_since_with_events_no_longer_held_gets_a_gap_then_snapshot_then_held_events():
    with Relay("--seq", "--history", "2") as relay:
        async def scenario():
            [early] = await connected(relay.url)
            relay.send(*[event(i) for i in range(1, 7)])
            await recv_until(early, lambda m: m.get("n") == 6)
            async with ws_connect(relay.url + "?since=1") as back:
                gap = await recv_json(back)
                assert gap == {"type": "gap", "from": 2, "to": 4}
                snap = await recv_json(back)
                assert snap["type"] == "initial"
                assert [(await recv_json(back))["seq"] for _ in range(2)] == [5, 6]
            await early.close()
        run(scenario())


def test_invalid_stdin_lines_are_reported_with_their_number_and_skipped():
    with Relay() as relay:
        async def scenario():
            [ws] = await connected(relay.url)
            relay.send(event(1), "not json", event(2), "[1,2]", '{"type":""}', "",
                       '{"no_type":1}', '{"type":7}', event(3))
            got = [(await recv_json(ws))["n"] for _ in range(3)]
            assert got == [1, 2, 3]
            for n in (2, 4, 5, 7, 8):
                relay.wait_stderr(rf"\bline {n}\b")
            assert "line 6" not in relay.stderr_text()  # a blank line is skipped silently
            assert relay.healthz()["events_in"] == 3
            await ws.close()
        run(scenario())


def test_invalid_utf8_on_stdin_is_skipped_not_sent_as_a_text_frame():
    with Relay() as relay:
        async def scenario():
            [ws] = await connected(relay.url)
            relay.send_raw(b'{"type":"bad","s":"\xff\xfe"}\n')
            relay.send(event(1))
            assert (await recv_json(ws))["n"] == 1  # and the connection is intact
            relay.wait_stderr(r"\bline 1\b")
            await ws.close()
        run(scenario())


def test_app_ping_messages_and_app_pongs_are_not_forwarded():
    with Relay("--app-ping", "--ping-interval", "0.2") as relay:
        async def scenario():
            [ws] = await connected(relay.url)
            ping = await recv_until(ws, lambda m: m.get("type") == "ping")
            assert isinstance(ping[-1]["timestamp"], (int, float))
            await ws.send(json.dumps({"type": "pong"}))
            await ws.send(json.dumps({"type": "chat", "text": "after the pong"}))
            line = await asyncio.get_running_loop().run_in_executor(None, relay.stdout_line)
            assert json.loads(line) == {"type": "chat", "text": "after the pong"}
            await ws.close()
        run(scenario())


@pytest.mark.tsan
def test_a_burst_larger_than_a_pipe_buffer_arrives_whole_and_in_order():
    """Regression: one stdin read posts thousands of events at once; ws-relay
    used to count them all against --max-queue (1024) before writing any, and
    closed a client that was keeping up with 1013. 20,000 x 60 bytes fit in
    the kernel's socket buffers, so no reading client may be closed here."""
    with Relay() as relay:
        async def scenario():
            [ws] = await connected(relay.url)
            n = 20000
            writer = relay.send_in_background(
                [json.dumps(event(i, pad="x" * 40), separators=(",", ":")) for i in range(1, n + 1)])
            for i in range(1, n + 1):
                assert (await recv_json(ws))["n"] == i
            writer.join(10)
            await ws.close()
        run(scenario(), timeout=100)


def test_events_are_forwarded_byte_for_byte_with_unknown_fields_untouched():
    with Relay() as relay:
        async def scenario():
            [ws] = await connected(relay.url)
            line = ('{"type":"note", "text":"h\u00e9llo \\"q\\" \u2713 \\u00e9",'
                    ' "n":1.50, "x":{"deep":[true,null]}}')
            relay.send_raw(line.encode() + b"\n")
            assert await asyncio.wait_for(ws.recv(), 10) == line
            await ws.close()
        run(scenario())


def test_a_since_that_is_not_a_number_is_a_fresh_connect():
    with Relay("--seq", "--history", "5") as relay:
        async def scenario():
            [early] = await connected(relay.url)
            relay.send(event(1))
            await recv_until(early, lambda m: m.get("n") == 1)
            async with ws_connect(relay.url + "?since=abc") as ws:
                assert (await recv_json(ws))["type"] == "initial"
                assert (await recv_json(ws))["seq"] == 1  # then the history
            await early.close()
        run(scenario())
