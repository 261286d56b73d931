# SPDX-License-Identifier: Apache-2.0
"""Everything ws-relay counts is in /metrics (issue 14, loose ends), and a
refused handshake is visible on stderr at the default verbosity, naming the
flag that would let the client in, rate-limited per address."""
import re
import socket

from relay_support import HandshakeRefused, RawWs, Relay, event
from ws_raw import frame

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REFUSED = "refused a WebSocket from"


def refused_status(port, headers=None, path="/ws/events"):
    try:
        RawWs(port, path=path, headers=headers).close_socket()
    except HandshakeRefused as e:
        return e.status
    raise AssertionError("the upgrade was accepted")


def bad_upgrade(port):
    """An upgrade without Sec-WebSocket-Key: 400."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "closed without an answer"
            head += chunk
        return int(head.split()[1])


def test_metrics_count_http_statuses_refusals_by_reason_and_writes_refused():
    with Relay("--token", TOKEN, "--max-clients", "1", "--allow-origin", "https://ok.example") as relay:
        assert relay.http_get("/healthz")[0] == 200
        assert relay.http_get("/nope")[0] == 404
        assert relay.http_get("/metrics")[0] == 401
        port = relay.port
        assert refused_status(port, {"Origin": "http://localhost:5173", **AUTH}) == 403
        assert refused_status(port) == 401
        assert refused_status(port, {"Authorization": "Bearer wrong"}) == 401
        assert bad_upgrade(port) == 400
        # One client that never reads, on a small receive window.
        stalled = RawWs(port, headers=AUTH, rcvbuf=4096)
        assert refused_status(port, AUTH) == 503
        big = "x" * 4000
        relay.send(*[event(i, pad=big) for i in range(2500)])  # 10 MB: more than socket buffers hold
        m = relay.metrics(TOKEN)
        assert m['ws_relay_handshakes_refused_total{reason="origin"}'] == 1
        assert m['ws_relay_handshakes_refused_total{reason="token"}'] == 2
        assert m['ws_relay_handshakes_refused_total{reason="max_clients"}'] == 1
        assert m['ws_relay_handshakes_refused_total{reason="bad_upgrade"}'] == 1
        assert m['ws_relay_handshakes_refused_total{reason="shutting_down"}'] == 0
        assert m['ws_relay_http_requests_total{status="101"}'] == 1
        assert m['ws_relay_http_requests_total{status="200"}'] == 1  # /healthz (this scrape is counted after)
        assert m['ws_relay_http_requests_total{status="404"}'] == 1
        assert m['ws_relay_http_requests_total{status="401"}'] == 3  # /metrics and two upgrades
        assert m['ws_relay_http_requests_total{status="403"}'] == 1
        assert m['ws_relay_http_requests_total{status="400"}'] == 1
        assert m['ws_relay_http_requests_total{status="503"}'] == 1
        # The stalled client's socket filled up: a write took nothing.
        relay.wait_metric("ws_relay_writes_refused_total", lambda v: v >= 1, token=TOKEN)
        stalled.close_socket()


def test_stdout_lines_dropped_are_counted_when_nobody_reads_stdout():
    with Relay(read_stdout=False) as relay:
        client = RawWs(relay.port)
        # More client messages than the output backlog holds (100,000 lines).
        one = frame(1, '{"type":"note","n":1}')
        client.sock.sendall(one * 130000)
        relay.wait_metric("ws_relay_stdout_dropped_total", lambda v: v > 0, timeout=30)
        relay.wait_stderr("stdout is not being read")
        client.close_socket()


def test_machines_evicted_from_the_snapshot_table_are_counted():
    with Relay() as relay:
        # The table holds 100,000 machines; the oldest of 100,005 go.
        lines = "".join('{"type":"state_change","machine_id":"m%d","state":{}}\n' % i
                        for i in range(100005))
        relay.send_raw(lines.encode())
        evicted = relay.wait_metric("ws_relay_machines_evicted_total", lambda v: v == 5, timeout=30)
        assert evicted == 5
        assert relay.metrics()["ws_relay_machines"] == 100000


def test_a_refused_origin_is_logged_once_naming_the_flag_that_allows_it():
    with Relay("--token", TOKEN) as relay:
        assert refused_status(relay.port, {"Origin": "http://localhost:5173", **AUTH}) == 403
        line = relay.wait_stderr(REFUSED)
        assert "--allow-origin http://localhost:5173" in line, line
        assert "403" in line
        # A wrong token from another address is named without the token.
        assert refused_status(relay.port, {"Authorization": "Bearer not-the-token"}) == 401
        relay.send("not json")  # a warning of its own, after the refusals
        relay.wait_stderr("stdin line 1")
        text = relay.stderr_text()
        assert TOKEN not in text and "not-the-token" not in text
        # Both refusals came from 127.0.0.1: the second is within the first's
        # interval and not logged.
        assert text.count(REFUSED) == 1, text


def advised_origins(line):
    """The ORIGINs of the --allow-origin flags a refusal line advises."""
    advice = line.split("to allow it:", 1)[1]
    return re.findall(r"--allow-origin (\S+)", advice)


def accepted(port, origin):
    try:
        RawWs(port, headers={"Origin": origin}).close_socket()
        return True
    except HandshakeRefused as e:
        assert e.status == 403, e.status
        return False


def test_the_logged_origin_advice_applied_as_is_keeps_the_relays_own_page_working():
    dev = "http://localhost:5173"
    with Relay() as relay:
        port = relay.port
        assert not accepted(port, dev)
        assert accepted(port, f"http://127.0.0.1:{port}")  # the same-host default
        origins = advised_origins(relay.wait_stderr(REFUSED))
    # Every --allow-origin given replaces the same-host default, so the advice
    # names the relay's own origin too: a new relay on the same port, started
    # with exactly the advised flags, lets in both the refused origin and the
    # page the relay serves at / (the browser's Origin being its URL's).
    assert origins[0] == dev, origins
    flags = [arg for o in origins for arg in ("--allow-origin", o)]
    with Relay(*flags, listen=f"127.0.0.1:{port}") as relay:
        assert accepted(port, dev)
        assert accepted(port, f"http://127.0.0.1:{port}")
        assert not accepted(port, "http://elsewhere.example")
        line = relay.wait_stderr(REFUSED)
    # With a list already given, the one origin to add is all the advice says.
    assert advised_origins(line) == ["http://elsewhere.example"], line


def test_a_burst_of_refusals_from_one_address_logs_a_bounded_number_of_lines():
    with Relay("--max-clients", "1") as relay:
        keep = RawWs(relay.port)
        for _ in range(50):
            assert refused_status(relay.port) == 503
        relay.send("not json")
        relay.wait_stderr("stdin line 1")
        lines = [l for l in relay.stderr_text().splitlines() if REFUSED in l]
        assert 1 <= len(lines) <= 2, lines
        assert "--max-clients" in lines[0], lines[0]
        assert relay.metrics()['ws_relay_handshakes_refused_total{reason="max_clients"}'] == 50
        keep.close_socket()
