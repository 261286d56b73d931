# SPDX-License-Identifier: Apache-2.0
"""ws-relay: how it treats each client — messages from clients, slow and
silent clients, pings, limits, origin and token checks, shutdown. Clients
are python3-websockets and Node's ws, plus a raw-socket client
(relay_support.RawWs) where a misbehaving peer is needed: one that stops
reading or never answers a ping, which the libraries will not do."""
import asyncio
import json
import signal
import subprocess

import pytest
import websockets

from relay_support import (LISTEN_RE, HandshakeRefused, NodeClient, RawWs, Relay, event,
                           expect_close, feed_in_step, recv_json, run, ws_connect)
from smws_test import Proc, tool, wait_for


def metric(relay, name):
    """The value of one Prometheus sample on /metrics."""
    status, _, body = relay.http_get("/metrics")
    assert status == 200, (status, body)
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{body}")


def padded_lines(n, size):
    """n events of about `size` bytes each, numbered 1..n."""
    return [json.dumps(event(i, pad="x" * size), separators=(",", ":")) for i in range(1, n + 1)]


def lines_to_overflow(max_queue, size):
    """Enough events of `size` bytes to overflow a stalled client's queue even
    after the kernel buffers between us took their share (the relay's send
    buffer may autotune to net.ipv4.tcp_wmem's max; our SO_RCVBUF is tiny)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem_max = int(f.read().split()[2])
    return (2 * wmem_max) // size + 4 * max_queue + 100


# --- client messages ----------------------------------------------------------

@pytest.mark.tsan
def test_a_client_json_object_is_printed_on_stdout_as_one_compact_line():
    with Relay() as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                sent = {"type": "chat", "text": "héllo \"you\"", "nested": {"a": [1, 2.5, None]}}
                await ws.send(json.dumps(sent, indent=2))
                line = await asyncio.get_running_loop().run_in_executor(None, relay.stdout_line)
                assert "\n" not in line and "  " not in line
                assert json.loads(line) == sent
                ordered = '{"z":1,"a":{"y":2,"b":[3,"c"]},"type":"x"}'
                await ws.send(ordered)
                line = await asyncio.get_running_loop().run_in_executor(None, relay.stdout_line)
                assert line == ordered  # keys keep the client's order
        run(scenario())
        with NodeClient(relay.url) as node:
            node.wait(lambda e: "message" in e)
            node.send('{"from":"node","n":1}')
            assert json.loads(relay.stdout_line()) == {"from": "node", "n": 1}


@pytest.mark.parametrize("text", ["hello", "[1,2]", "42", '"a string"', "null", '{"type":'])
def test_non_json_and_json_non_objects_get_an_error_reply_and_the_client_stays(text):
    with Relay() as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                await ws.send(text)
                reply = await recv_json(ws)
                assert reply["type"] == "error"
                assert isinstance(reply["error"], str) and reply["error"]
                relay.send(event(1))
                assert (await recv_json(ws))["n"] == 1
                await ws.send('{"type":"after"}')
                line = await asyncio.get_running_loop().run_in_executor(None, relay.stdout_line)
                assert json.loads(line) == {"type": "after"}  # the bad one printed nothing
        run(scenario())


def test_a_binary_message_gets_an_error_reply_and_nothing_reaches_stdout():
    # Pins a bug: binary frames were handled as text, so one holding invalid
    # UTF-8 made the JSON code throw ("internal error" and an error on stderr).
    with Relay() as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                for payload in (b'{"type":"bin"}', b"\xff\xfe not utf-8"):
                    await ws.send(payload)
                    reply = await recv_json(ws)
                    assert reply["type"] == "error"
                    assert "binary" in reply["error"]
                await ws.send('{"type":"after"}')
                line = await asyncio.get_running_loop().run_in_executor(None, relay.stdout_line)
                assert json.loads(line) == {"type": "after"}  # neither binary one was printed
        run(scenario())
        assert "internal error" not in relay.stderr_text()


@pytest.mark.tsan
def test_an_unread_stdout_bounds_the_backlog_in_bytes_not_only_in_lines(tmp_path):
    # Pins a bug: the stdout backlog was capped at 100,000 lines only, and a
    # line can be --max-message (1 MiB), so a client could grow the relay by
    # ~100 GB while nobody read its stdout. The byte cap is 64 MiB: 80
    # messages of ~1 MB must already be over it.
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        proc = Proc([tool("ws-relay"), "--listen", "127.0.0.1:0"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err)  # stdout is never read
    with proc:
        line = wait_for(lambda: LISTEN_RE.search(err_path.read_text()), timeout=15,
                        what="ws-relay's listening line")
        url = f"{line.group(1)}://{line.group(2)}:{line.group(3)}{line.group(4)}"

        async def scenario():
            async with ws_connect(url) as ws:
                await recv_json(ws)
                big = json.dumps({"type": "big", "pad": "x" * 1_000_000})
                for _ in range(80):
                    await ws.send(big)
        run(scenario(), timeout=120)
        wait_for(lambda: "stdout is not being read" in err_path.read_text(), timeout=30,
                 what="the relay dropping stdout lines")
        assert proc.p.poll() is None  # still serving


# --- slow clients ---------------------------------------------------------------

# The fast client is fed in steps (relay_support.feed_in_step): ws-relay
# ingests stdin far faster than a Node client that reports each message to
# this test can read, so an unpaced burst would rightly make it "slow" too.

def test_a_stalled_client_that_never_takes_its_close_is_dropped():
    with Relay() as relay:
        stalled = RawWs(relay.port, rcvbuf=4096)
        assert stalled.recv_json()["type"] == "initial"
        with NodeClient(relay.url) as fast:
            fast.wait(lambda e: "message" in e)
            feed_in_step(relay, fast, padded_lines(lines_to_overflow(1024, 1000), 1000),
                         until=lambda: metric(relay, "ws_relay_slow_client_closes_total") >= 1)
            # It never reads its close 1013, so the relay gives up on the TCP
            # connection (after 2 s, the SPEC says) and counts one client.
            wait_for(lambda: relay.healthz()["clients"] == 1, timeout=15,
                     what="the stalled connection to be dropped")
        stalled.close_socket()


@pytest.mark.tsan
def test_a_client_that_stops_reading_is_closed_1013_and_the_fast_one_gets_everything():
    with Relay() as relay:
        slow = RawWs(relay.port, rcvbuf=4096)
        assert slow.recv_json()["type"] == "initial"
        with NodeClient(relay.url) as fast:
            fast.wait(lambda e: "message" in e)
            lines = padded_lines(lines_to_overflow(1024, 1000), 1000)
            # The slow client reads nothing until the relay has given up on it...
            written, got = feed_in_step(
                relay, fast, lines,
                until=lambda: metric(relay, "ws_relay_slow_client_closes_total") >= 1)
            assert metric(relay, "ws_relay_slow_client_closes_total") == 1, \
                f"{written} events of 1 kB did not overflow the stalled client"
            # ...while the fast one got every event, in order, and stays open.
            assert [m["n"] for m in got] == list(range(1, written + 1))
            relay.send(event(written + 1))
            assert fast.messages_until(lambda m: m.get("n") == written + 1)[-1]["n"] == written + 1
        # Reading now, within the 2 s the relay waits, it finds the close 1013.
        while True:
            msg = slow.recv(timeout=10)
            if msg[0] == "close":
                break
        assert msg[1] == 1013, msg


@pytest.mark.parametrize("policy", ["disconnect", "drop"])
def test_a_client_that_stops_reading_before_a_quiet_spell_is_closed_1008_not_left_open(policy):
    # The queue limit is out of reach, and the ping waits behind what the
    # kernel holds for a peer that takes nothing, so neither the queue nor
    # the ping's timeout (counted from its write) can fire: the relay sees
    # that the peer's TCP takes no byte while the ping waits, or never
    # received the ping, and the ping times out.
    with Relay("-v", "--ping-interval", "0.5", "--ping-timeout", "1", "--max-queue", "1000000",
               "--max-queue-bytes", "1099511627776", "--slow-client", policy) as relay:
        stalled = RawWs(relay.port, rcvbuf=4096)
        assert stalled.recv_json()["type"] == "initial"
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
        lines = padded_lines(2 * wmem_max // 1000 + 100, 1000)
        for i in range(0, len(lines), 500):
            relay.send_raw("".join(line + "\n" for line in lines[i:i + 500]).encode())
        # Then quiet: nothing more is sent.
        wait_for(lambda: metric(relay, "ws_relay_ping_timeouts_total") >= 1, timeout=30,
                 what="the relay to close the client that stopped reading")
        assert metric(relay, "ws_relay_slow_client_closes_total") == 0
        assert relay.wait_stderr(r"client \d+ \(127\.0\.0\.1:\d+\) did not answer pings \(it "
                                  r"(has not yet received the ping: it reads too slowly|"
                                  r"has taken no byte in 1 s, the ping waiting behind them: it stopped reading)"
                                  r"\); closing with 1008")
        # Reading now, within the 2 s the relay waits, it finds the close.
        while True:
            msg = stalled.recv(timeout=10)
            if msg[0] == "close":
                break
        assert msg[1:] == (1008, "ping timeout"), msg


def test_under_slow_client_drop_every_event_is_delivered_or_counted():
    with Relay("--slow-client", "drop", "--seq") as relay:
        slow = RawWs(relay.port, rcvbuf=4096)
        assert slow.recv_json()["type"] == "initial"
        with NodeClient(relay.url) as fast:
            fast.wait(lambda e: "message" in e)
            lines = padded_lines(lines_to_overflow(1024, 1000), 1000)
            n, got = feed_in_step(relay, fast, lines)
            assert [m["n"] for m in got] == list(range(1, n + 1))
            assert metric(relay, "ws_relay_slow_client_closes_total") == 0
            relay.send(event(n + 1))  # the newest event is never the one dropped
            fast.messages_until(lambda m: m.get("n") == n + 1)
        delivered, dropped = [], 0
        while True:
            m = slow.recv_json(timeout=30)
            if m["type"] == "dropped":
                assert m["count"] > 0
                dropped += m["count"]
            else:
                delivered.append(m["n"])
                if m["n"] == n + 1:
                    break
        assert delivered == sorted(delivered)  # order kept among what was delivered
        assert dropped > 0, "the slow client was never slow: raise n"
        assert len(delivered) + dropped == n + 1
        assert relay.healthz()["dropped"] == dropped
        slow.close_socket()


# --- keepalive --------------------------------------------------------------------

def test_a_silent_client_that_answers_pings_survives_many_ping_intervals():
    with Relay("--ping-interval", "0.2") as relay:
        with NodeClient(relay.url) as node:
            pings = 0
            while pings < 8:  # 8 intervals: 4x the default --ping-timeout
                ev = node.next(timeout=10)
                assert "close" not in ev and "eof" not in ev, ev
                pings += 1 if ev.get("ping") else 0
            relay.send(event(1))
            got = node.messages_until(lambda m: m.get("n") == 1)
            assert got[-1]["n"] == 1
            assert metric(relay, "ws_relay_ping_timeouts_total") == 0


def test_a_client_that_never_answers_pings_is_closed_1008_ping_timeout():
    with Relay("--ping-interval", "0.2") as relay:
        async def scenario():
            async with ws_connect(relay.url) as healthy:  # websockets answers pings
                await recv_json(healthy)
                mute = RawWs(relay.port)
                loop = asyncio.get_running_loop()
                msg = await loop.run_in_executor(None, lambda: _until_close(mute, pong=False))
                assert msg == ("close", 1008, "ping timeout")
                assert mute.pings >= 1
                relay.send(event(1))
                assert (await recv_json(healthy))["n"] == 1
        run(scenario())
        assert metric(relay, "ws_relay_ping_timeouts_total") == 1


def test_app_ping_lets_a_client_that_answers_only_app_pongs_survive():
    with Relay("--app-ping", "--ping-interval", "0.2") as relay:
        raw = RawWs(relay.port)
        assert raw.recv_json(pong=False)["type"] == "initial"
        app_pings = 0
        while app_pings < 8:  # 8 intervals: 4x the default --ping-timeout
            msg = raw.recv(timeout=10, pong=False)  # WebSocket pings go unanswered
            assert msg[0] == "text", msg
            if json.loads(msg[1]).get("type") == "ping":
                app_pings += 1
                raw.send_text('{"type":"pong"}')
        relay.send(event(1))
        while True:
            m = raw.recv_json(timeout=10, pong=False)
            if m.get("type") != "ping":
                break
        assert m["n"] == 1
        assert metric(relay, "ws_relay_ping_timeouts_total") == 0
        assert relay.stdout_pending() == []  # app pongs are consumed, not printed


def _until_close(raw, pong):
    while True:
        msg = raw.recv(timeout=10, pong=pong)
        if msg[0] == "close":
            return msg


# --- limits ------------------------------------------------------------------------

def test_max_clients_refuses_one_more_with_503():
    with Relay("--max-clients", "2") as relay:
        a = RawWs(relay.port)
        b = RawWs(relay.port)
        with pytest.raises(HandshakeRefused) as refused:
            RawWs(relay.port)
        assert refused.value.status == 503
        a.send_close()
        assert _until_close(a, pong=True)[1] == 1000
        a.close_socket()

        def third_gets_in():
            try:
                return RawWs(relay.port)
            except HandshakeRefused:
                return None
        c = wait_for(third_gets_in, timeout=10, what="a freed slot")
        assert c.recv_json()["type"] == "initial"
        for raw in (b, c):
            raw.close_socket()


def test_a_message_over_max_message_closes_that_client_1009_only():
    with Relay("--max-message", "100") as relay:
        async def scenario():
            async with ws_connect(relay.url) as bystander, ws_connect(relay.url) as big:
                await recv_json(bystander)
                await recv_json(big)
                exact = json.dumps({"type": "fits", "pad": ""})
                exact = json.dumps({"type": "fits", "pad": "x" * (100 - len(exact))})
                assert len(exact) == 100
                await big.send(exact)
                line = await asyncio.get_running_loop().run_in_executor(None, relay.stdout_line)
                assert json.loads(line)["type"] == "fits"  # the limit is inclusive
                await big.send(exact[:-2] + 'x"}')  # 101 bytes
                code, _ = await expect_close(big)
                assert code == 1009
                relay.send(event(1))
                assert (await recv_json(bystander))["n"] == 1
        run(scenario())


# --- security -------------------------------------------------------------------------

def test_allow_origin_refuses_other_origins_with_403_but_not_clients_without_origin():
    with Relay("--allow-origin", "http://good.example") as relay:
        with pytest.raises(HandshakeRefused) as refused:
            RawWs(relay.port, headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
        assert RawWs(relay.port, headers={"Origin": "http://good.example"}).recv_json()["type"] == "initial"
        assert RawWs(relay.port).recv_json()["type"] == "initial"  # no Origin: not a browser

        async def library_client():
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
                async with ws_connect(relay.url, origin="http://evil.example"):
                    pass
            assert e.value.status_code == 403
            async with ws_connect(relay.url, origin="http://good.example") as ws:
                assert (await recv_json(ws))["type"] == "initial"
        run(library_client())


def test_by_default_only_the_same_host_origin_is_allowed():
    with Relay() as relay:
        same = f"http://127.0.0.1:{relay.port}"
        assert RawWs(relay.port, headers={"Origin": same}).recv_json()["type"] == "initial"
        with pytest.raises(HandshakeRefused) as refused:
            RawWs(relay.port, headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403


def test_token_is_required_on_the_websocket_path_and_pages_but_not_healthz():
    with Relay("--token", "s3cret") as relay:
        async def scenario():
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
                async with ws_connect(relay.url):
                    pass
            assert e.value.status_code == 401
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
                async with ws_connect(relay.url, extra_headers={"Authorization": "Bearer wrong"}):
                    pass
            assert e.value.status_code == 401
            async with ws_connect(relay.url, extra_headers={"Authorization": "Bearer s3cret"}) as ws:
                assert (await recv_json(ws))["type"] == "initial"
            async with ws_connect(relay.url + "?token=s3cret") as ws:
                assert (await recv_json(ws))["type"] == "initial"
        run(scenario())
        assert relay.http_get("/healthz")[0] == 200
        for path in ("/", "/metrics"):
            assert relay.http_get(path)[0] == 401, path
            assert relay.http_get(path, headers={"Authorization": "Bearer s3cret"})[0] == 200, path
            assert relay.http_get(path + "?token=s3cret")[0] == 200, path


def test_token_from_the_environment():
    with Relay(env={"WS_RELAY_TOKEN": "from-env"}) as relay:
        with pytest.raises(HandshakeRefused) as refused:
            RawWs(relay.port)
        assert refused.value.status == 401
        assert RawWs(relay.port, path="/ws/events?token=from-env").recv_json()["type"] == "initial"


# --- shutdown ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_closes_every_client_with_1001_and_exits_0(sig):
    with Relay() as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                with NodeClient(relay.url) as node:
                    node.wait(lambda e: "message" in e)
                    relay.proc.signal(sig)
                    code, _ = await expect_close(ws)
                    assert code == 1001
                    closed = node.wait(lambda e: "close" in e)[-1]
                    assert closed["close"] == 1001
        run(scenario())
        assert relay.wait() == 0


@pytest.mark.tsan
def test_exit_on_eof_delivers_everything_then_closes_1001_and_exits_0():
    with Relay("--exit-on-eof") as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                relay.send(*[event(i) for i in range(1, 501)])
                relay.close_stdin()
                got = [(await recv_json(ws))["n"] for _ in range(500)]
                assert got == list(range(1, 501))
                code, _ = await expect_close(ws)
                assert code == 1001
        run(scenario())
        assert relay.wait() == 0


def test_exit_on_eof_does_not_wait_for_ever_on_a_client_that_stopped_reading():
    with Relay("--exit-on-eof", "--drain-timeout", "0.5", "--max-queue", "100000") as relay:
        stalled = RawWs(relay.port, rcvbuf=4096)
        assert stalled.recv_json()["type"] == "initial"
        relay.send_in_background(padded_lines(lines_to_overflow(16, 1000), 1000)).join(60)
        relay.close_stdin()
        assert relay.wait(timeout=30) == 0
        stalled.close_socket()


def test_without_exit_on_eof_the_relay_keeps_serving_the_last_state():
    with Relay() as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                relay.send({"type": "state_change", "machine_id": "m", "state": "final"})
                relay.close_stdin()
                assert (await recv_json(ws))["state"] == "final"
            async with ws_connect(relay.url) as late:
                snap = await recv_json(late)
                assert [m["current_state"] for m in snap["machines"]] == ["final"]
        run(scenario())
        assert relay.proc.p.poll() is None
