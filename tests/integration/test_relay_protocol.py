# SPDX-License-Identifier: Apache-2.0
"""ws-relay at the byte level: RFC 6455 violations get their close codes,
fragmented messages are reassembled, control frames are answered, the
handshake is checked, and wss keeps the same guarantees.

Clients here are raw sockets (tests/support/ws_raw.py) for what a library
would refuse to send, and Debian's python3-websockets for the wss client."""
import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
import websockets

from relay_support import Relay
from smws_test import rmtree, short_tmpdir
from ws_raw import RawClient, frame

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


@pytest.fixture
def relay():
    with Relay("--ping-interval", "0") as r:
        yield r


def opened(relay, **kw):
    c = RawClient(relay.port, **kw)
    assert c.status == 101, c.head
    op, payload = c.recv_frame()
    assert op == TEXT and json.loads(payload)["type"] == "initial"
    return c


def assert_closed_with(client, code):
    got, reason = client.close_code()
    assert got == code, (got, reason)
    # The server then ends the TCP connection (after our close or its grace).
    client.send(frame(CLOSE, b"\x03\xe8"))
    assert client.wait_eof()


def test_unmasked_client_frame_is_closed_1002(relay):
    with opened(relay) as c:
        c.send(frame(TEXT, '{"type":"x"}', mask=False))
        assert_closed_with(c, 1002)


def test_unknown_opcode_is_closed_1002(relay):
    with opened(relay) as c:
        c.send(frame(0x3, "?"))
        assert_closed_with(c, 1002)


def test_reserved_bits_without_extension_are_closed_1002(relay):
    with opened(relay) as c:
        c.send(frame(TEXT, '{"type":"x"}', rsv=0b100))
        assert_closed_with(c, 1002)


def test_control_frame_over_125_bytes_is_closed_1002(relay):
    with opened(relay) as c:
        c.send(frame(PING, b"p" * 126))
        assert_closed_with(c, 1002)


def test_fragmented_control_frame_is_closed_1002(relay):
    with opened(relay) as c:
        c.send(frame(PING, b"p", fin=False))
        assert_closed_with(c, 1002)


def test_continuation_without_a_start_is_closed_1002(relay):
    with opened(relay) as c:
        c.send(frame(CONT, "abc"))
        assert_closed_with(c, 1002)


def test_invalid_utf8_text_is_closed_1007(relay):
    with opened(relay) as c:
        c.send(frame(TEXT, b'{"type":"\xc3\x28"}'))
        assert_closed_with(c, 1007)


def test_message_over_max_message_is_closed_1009():
    with Relay("--ping-interval", "0", "--max-message", "100") as r:
        with opened(r) as c:
            c.send(frame(TEXT, json.dumps({"type": "x", "pad": "y" * 120})))
            assert_closed_with(c, 1009)
        # A message of exactly the limit is fine.
        with opened(r) as c:
            msg = json.dumps({"type": "x", "pad": ""})
            msg = msg[:-2] + "y" * (100 - len(msg)) + '"}'
            assert len(msg) == 100
            c.send(frame(TEXT, msg))
            assert json.loads(r.stdout_line()) == json.loads(msg)


def test_fragmented_message_is_reassembled_with_pings_between(relay):
    with opened(relay) as c:
        c.send(frame(TEXT, '{"type":"he', fin=False))
        c.send(frame(PING, b"mid"))
        c.send(frame(CONT, 'llo","n":', fin=False))
        c.send(frame(CONT, "42}"))
        assert c.recv_until(PONG) == b"mid"
        assert json.loads(relay.stdout_line()) == {"type": "hello", "n": 42}


def test_text_split_inside_a_utf8_character_is_accepted(relay):
    with opened(relay) as c:
        data = '{"type":"caf\u00e9"}'.encode()
        cut = data.index(b"\xc3") + 1
        c.send(frame(TEXT, data[:cut], fin=False))
        c.send(frame(CONT, data[cut:]))
        assert json.loads(relay.stdout_line()) == {"type": "caf\u00e9"}


def test_ping_is_answered_with_the_same_payload(relay):
    with opened(relay) as c:
        c.send(frame(PING, b"abc"))
        assert c.recv_until(PONG) == b"abc"


def test_client_close_is_echoed_then_tcp_closed(relay):
    with opened(relay) as c:
        c.send(frame(CLOSE, b"\x03\xe8bye"))
        code, _ = c.close_code()
        assert code == 1000
        assert c.wait_eof()


def test_close_echo_reaches_a_client_that_half_closed_after_its_close(relay):
    # Regression: EOF right behind the close frame used to free the
    # connection before the queued echo was written.
    import socket
    with opened(relay) as c:
        c.send(frame(CLOSE, b"\x03\xe8"))
        c.sock.shutdown(socket.SHUT_WR)
        code, _ = c.close_code()
        assert code == 1000


def test_bad_close_code_is_a_protocol_error(relay):
    with opened(relay) as c:
        c.send(frame(CLOSE, b"\x03\xed"))  # 1005 may not be sent
        assert_closed_with(c, 1002)


def test_violation_closes_only_the_offender(relay):
    with opened(relay) as good, opened(relay) as bad:
        bad.send(frame(TEXT, "x", mask=False))
        assert_closed_with(bad, 1002)
        relay.send_raw(('{"type":"still","n":1}\n').encode())
        op, payload = good.recv_frame()
        assert (op, json.loads(payload)) == (TEXT, {"type": "still", "n": 1})


def test_frames_sent_with_the_handshake_are_not_lost(relay):
    import socket
    s = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    req = (f"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    s.sendall(req + frame(TEXT, '{"type":"early"}'))
    assert json.loads(relay.stdout_line()) == {"type": "early"}
    s.close()


def test_handshake_without_key_is_400(relay):
    with RawClient(relay.port, key=None) as c:
        assert c.status == 400
        assert "Sec-WebSocket-Key" in c.buf.decode()


def test_handshake_with_wrong_version_is_426(relay):
    with RawClient(relay.port, version="8") as c:
        assert c.status == 426
        assert "Sec-WebSocket-Version: 13" in c.head


def test_plain_get_on_the_websocket_path_is_426(relay):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/ws/events", timeout=10)
        assert False, "expected an HTTP error"
    except urllib.error.HTTPError as e:
        assert e.code == 426


def test_garbage_instead_of_http_gets_400(relay):
    import socket
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
        s.sendall(b"HELLO THERE\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 400 ")


@pytest.fixture
def tls_files():
    d = short_tmpdir()
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    yield cert, key
    rmtree(d)


def test_wss_broadcast_ping_and_violation(tls_files):
    cert, key = tls_files
    with Relay("--tls-cert", cert, "--tls-key", key, "--ping-interval", "0.2") as r:
        assert r.url.startswith("wss://")
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False

        async def session():
            async with websockets.connect(r.url, ssl=ctx) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert first["type"] == "initial"
                events = [{"type": "e", "n": i, "pad": "x" * 3000} for i in range(300)]
                r.send_raw(("".join(json.dumps(e) + "\n" for e in events)).encode())
                for e in events:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == e
                await ws.send('{"type":"from-tls"}')
                # Pings (every 0.2 s) are answered by the library: still open after 1 s.
                await asyncio.sleep(1.0)
                pong = await ws.ping()
                await asyncio.wait_for(pong, 10)

        asyncio.run(session())
        assert json.loads(r.stdout_line()) == {"type": "from-tls"}
        with RawClient(r.port, tls=True) as c:
            assert c.status == 101
            c.recv_frame()
            c.send(frame(TEXT, b"\xff"))
            assert_closed_with(c, 1007)
        # https on the same port
        hctx = ssl.create_default_context(cafile=cert)
        hctx.check_hostname = False
        with urllib.request.urlopen(f"https://127.0.0.1:{r.port}/healthz", context=hctx,
                                    timeout=10) as resp:
            assert json.loads(resp.read())["status"] == "ok"


def test_missing_tls_key_file_is_reported(tls_files):
    cert, _ = tls_files
    from smws_test import run, tool
    res = run([tool("ws-relay"), "--listen", "127.0.0.1:0", "--tls-cert", cert,
               "--tls-key", "/nonexistent/key.pem"], timeout=10)
    assert res.returncode == 66
    assert "/nonexistent/key.pem" in res.stderr


@pytest.mark.tsan
def test_stdin_from_a_regular_file_is_read_too():
    # epoll cannot watch a regular file: the relay reads it on a thread.
    from smws_test import LISTEN_RE, LinePump, Proc, tool
    d = short_tmpdir()
    try:
        path = os.path.join(d, "events.ndjson")
        with open(path, "w") as f:
            for i in range(3):
                f.write(json.dumps({"type": "e", "n": i}) + "\n")
        with open(path) as stdin, Proc([tool("ws-relay"), "--listen", "127.0.0.1:0",
                                        "--history", "10"], stdin=stdin) as p:
            m = LISTEN_RE.search(LinePump(p.p.stderr).wait_match(LISTEN_RE, 10))
            assert m

            async def session():
                async with websockets.connect(f"ws://127.0.0.1:{m.group(3)}/ws/events") as ws:
                    got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
                    assert got[0]["type"] == "initial"
                    assert [e["n"] for e in got[1:]] == [0, 1, 2]

            asyncio.run(session())
    finally:
        rmtree(d)


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


def test_a_slow_client_that_cannot_take_its_1013_loses_its_tcp_connection():
    # SPEC edge rule: close 1013 is queued; if the client has not taken it
    # within 2 s the TCP connection is dropped. The client here never reads,
    # so the close frame cannot even reach its kernel.
    from smws_test import wait_for
    with Relay("--ping-interval", "0", "--max-queue", "16") as r:
        c = RawClient(r.port, rcvbuf=4096)
        assert c.status == 101
        line = json.dumps({"type": "e", "pad": "x" * 5000}) + "\n"
        r.send_raw((line * 2000).encode())  # 10 MB: more than every buffer on the way
        wait_for(lambda: metric(r.port, "ws_relay_slow_client_closes_total") == 1, timeout=20,
                 what="the 1013 close")
        # Only the /metrics request itself is left once the grace has passed.
        wait_for(lambda: metric(r.port, "ws_relay_tcp_connections") == 1, timeout=20,
                 what="the stalled TCP connection to be dropped")
        c.close()


def test_wss_slow_client_is_closed_and_dropped_like_a_plain_one(tls_files):
    # Non-blocking SSL_write: a TLS client that stops reading must not stall
    # the loop either; it gets 1013 and then loses TCP after the grace.
    from smws_test import wait_for
    cert, key = tls_files
    with Relay("--tls-cert", cert, "--tls-key", key, "--ping-interval", "0",
               "--max-queue", "16") as r:
        stalled = RawClient(r.port, tls=True, rcvbuf=4096)
        assert stalled.status == 101
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False

        def metric_tls(name):
            with urllib.request.urlopen(f"https://127.0.0.1:{r.port}/metrics", context=ctx,
                                        timeout=10) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith(name + " "):
                        return float(line.split()[1])

        line = json.dumps({"type": "e", "pad": "x" * 5000}) + "\n"
        r.send_raw((line * 2000).encode())
        wait_for(lambda: metric_tls("ws_relay_slow_client_closes_total") == 1, timeout=20,
                 what="the 1013 close")
        wait_for(lambda: metric_tls("ws_relay_tcp_connections") == 1, timeout=20,
                 what="the stalled TLS connection to be dropped")
        # The relay still serves wss after that.
        async def fresh():
            async with websockets.connect(r.url, ssl=ctx) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "initial"
        asyncio.run(fresh())
        stalled.close()


def test_a_file_that_is_not_a_pem_certificate_is_bad_data(tls_files):
    from smws_test import run, tool
    cert, key = tls_files
    bogus = os.path.join(os.path.dirname(cert), "bogus.pem")
    with open(bogus, "w") as f:
        f.write("not a certificate\n")
    res = run([tool("ws-relay"), "--listen", "127.0.0.1:0", "--tls-cert", bogus,
               "--tls-key", key], timeout=10)
    assert res.returncode == 65, res.stderr
    assert "bogus.pem" in res.stderr


def test_http_reply_reaches_a_client_that_half_closed_after_its_request(relay):
    # Regression: EOF right behind the request freed the connection before
    # the reply was written (nc -N, socat and friends half-close).
    import socket
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["status"] == "ok"


def test_a_request_head_over_16_kib_gets_431(relay):
    import socket
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20000 + b"\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 431 ")


def test_a_ping_flood_from_a_client_that_does_not_read_is_answered_once(relay):
    # Only the latest ping needs a pong (RFC 6455 5.5.3): 20,000 pings from a
    # client that reads nothing must not queue 20,000 pongs. It reads once
    # at the end and finds one pong, with the latest payload, and the
    # connection is still fine.
    with opened(relay) as c:
        c.send(b"".join(frame(PING, str(i).encode()) for i in range(20000)))
        c.send(frame(TEXT, '{"type":"after-flood"}'))
        assert json.loads(relay.stdout_line()) == {"type": "after-flood"}
        pongs = []
        c.send(frame(TEXT, '{"type":"refresh"}'))
        while True:
            op, payload = c.recv_frame()
            if op == PONG:
                pongs.append(payload)
            elif op == TEXT and json.loads(payload)["type"] == "initial":
                break
        assert pongs[-1] == b"19999"
        assert len(pongs) < 20000


@pytest.mark.tsan
def test_random_bytes_from_many_clients_leave_the_relay_serving(relay):
    # Garbage after a good handshake, and garbage instead of a handshake:
    # each such client is closed; nobody else notices.
    import random
    import socket
    rng = random.Random(6455)
    with opened(relay) as watcher:
        for i in range(40):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
            if i % 2:
                c = RawClient(relay.port)
                try:
                    c.send(junk)
                    c.wait_eof()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                c.close()
            else:
                with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
                    try:
                        s.sendall(junk + b"\r\n\r\n")
                        while s.recv(4096):
                            pass
                    except (BrokenPipeError, ConnectionResetError):
                        pass
        relay.send_raw(('{"type":"survived"}\n').encode())
        op, payload = watcher.recv_frame()
        assert (op, json.loads(payload)) == (TEXT, {"type": "survived"})


def wait_stderr(relay, needle, timeout=20):
    """The relay's stderr line (it runs with -v) containing needle."""
    return relay.wait_stderr(re.escape(needle), timeout)


BACKLOG_LINE = json.dumps({"type": "e", "pad": "x" * 5000}) + "\n"
BACKLOG_COUNT = 4000  # 20 MB: far more than the kernel buffers of one connection


def test_sigterm_during_a_long_drain_ends_it_within_the_close_grace():
    # Pins bug 2 (signal half): during the --exit-on-eof drain a SIGTERM was
    # ignored (begin_shutdown returned at once when already shutting down),
    # so a client that never reads held the exit for the whole drain. Now the
    # signal cuts every grace to the 2 s close grace.
    with Relay("-v", "--ping-interval", "0", "--max-queue", "100000", "--max-queue-bytes", "1099511627776",
               "--exit-on-eof", "--drain-timeout", "60") as r:
        c = RawClient(r.port, rcvbuf=4096)  # never reads: its close cannot go out
        assert c.status == 101
        r.send_raw((BACKLOG_LINE * BACKLOG_COUNT).encode())
        r.proc.p.stdin.close()
        wait_stderr(r, "stdin ended")
        r.proc.signal(signal.SIGTERM)
        # Bound well below the 60 s drain, well above the 2 s grace.
        assert r.proc.wait(timeout=10) == 0
        c.close()


def test_a_drain_does_not_wait_for_a_client_that_never_answers_our_close():
    # Pins bug 2 (close half): once our close frame was written and nothing
    # is left queued, only the client's close answer is awaited, and that
    # gets the 2 s close grace, not the rest of a long --drain-timeout.
    with Relay("-v", "--ping-interval", "0", "--exit-on-eof", "--drain-timeout", "60") as r:
        c = RawClient(r.port)  # neither reads nor answers
        assert c.status == 101
        r.send_raw(('{"type":"e"}\n').encode())
        r.proc.p.stdin.close()
        wait_stderr(r, "stdin ended")
        assert r.proc.wait(timeout=10) == 0
        # What it was sent is all there, ending with 1001.
        c.sock.settimeout(5)
        assert c.close_code()[0] == 1001
        c.close()


def test_sigterm_sends_1001_next_to_a_client_with_a_backlog():
    # Pins bug 3: on SIGTERM the close 1001 was queued behind the client's
    # whole backlog (begin_close with discard=false), so a client with more
    # queued than it could read within the 2 s grace lost TCP without ever
    # seeing 1001. Now unstarted data is discarded and 1001 goes out next;
    # only the --exit-on-eof drain still delivers queues first.
    from smws_test import wait_for
    # (Both queue bounds out of reach: the 20 MB backlog must stay queued.)
    with Relay("--ping-interval", "0", "--max-queue", "100000", "--max-queue-bytes", "1099511627776") as r:
        c = RawClient(r.port, rcvbuf=4096)  # paused: reads nothing yet
        assert c.status == 101
        r.send_raw((BACKLOG_LINE * BACKLOG_COUNT).encode())
        wait_for(lambda: metric(r.port, "ws_relay_events_in_total") == BACKLOG_COUNT,
                 timeout=60, what="every backlog event to be queued")
        r.proc.signal(signal.SIGTERM)
        # Resumes reading: what the kernel already held, then 1001.
        received = 0
        while True:
            op, payload = c.recv_frame()
            if op == CLOSE:
                break
            if op == TEXT:
                received += 1
        assert len(payload) >= 2 and int.from_bytes(payload[:2], "big") == 1001, payload
        # The queue was discarded, not delivered (received counts "initial" too).
        assert received < BACKLOG_COUNT
        c.send(frame(CLOSE, b"\x03\xe9"))
        assert c.wait_eof()
        assert r.proc.wait(timeout=10) == 0


def test_plain_http_and_ws_on_the_tls_port_get_400_naming_https_and_wss(tls_files):
    """Issue 14: plain HTTP sent to the TLS port was dropped without a word
    (a failed TLS handshake); now it is answered like nginx does."""
    cert, key = tls_files
    with Relay("--tls-cert", cert, "--tls-key", key) as r:
        status, _, body = r.http_get("/healthz")
        assert status == 400
        assert "https://" in body and "wss://" in body, body

        async def plain_ws():
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as refused:
                async with websockets.connect(f"ws://127.0.0.1:{r.port}/ws/events", open_timeout=10):
                    pass
            return refused.value.status_code
        assert asyncio.run(plain_ws()) == 400
        line = r.wait_stderr("refused a connection from")
        assert "https:// or wss://" in line, line
        # TLS clients are served as before, on the same port.
        hctx = ssl.create_default_context(cafile=cert)
        hctx.check_hostname = False
        with urllib.request.urlopen(f"https://127.0.0.1:{r.port}/metrics", context=hctx,
                                    timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'ws_relay_handshakes_refused_total{reason="not_tls"} 2' in metrics, metrics
        assert 'ws_relay_http_requests_total{status="400"} 2' in metrics
