# SPDX-License-Identifier: Apache-2.0
"""Pre-auth exhaustion (issue 20, SPEC "Hostile input at the edges", Per
address): --max-clients-per-ip and at most 64 unfinished handshakes per
address, each 503 with Retry-After while other addresses get in; the
open-file limit raised at start and checked against --max-clients.

Every test talks to 127.0.0.1; "another address" is 127.0.0.2, a loopback
address too, used as the source of a connection when the kernel lets us
bind it (Linux does)."""
import os
import re
import socket
import subprocess

import pytest

from relay_support import HandshakeRefused, RawWs, Relay
from smws_test import SOURCE_DIR, run, tool, wait_for

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def connect(port, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def upgrade_head(sock, port):
    """Sends an upgrade on sock; returns (status, head) of the reply."""
    sock.sendall((f"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split()[1]), head


def second_loopback_ok():
    try:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.close()
        return True
    except OSError:
        return False


def test_max_clients_per_ip_refuses_the_next_one_with_503_and_retry_after():
    with Relay("--max-clients-per-ip", "3") as relay:
        held = [RawWs(relay.port) for _ in range(3)]
        with pytest.raises(HandshakeRefused) as refused:
            RawWs(relay.port)
        assert refused.value.status == 503
        assert "Retry-After: 5" in refused.value.head
        line = relay.wait_stderr("503")
        assert "--max-clients-per-ip" in line, line
        if second_loopback_ok():
            with connect(relay.port, "127.0.0.2") as other:
                assert upgrade_head(other, relay.port)[0] == 101
        # A slot frees when a client leaves.
        held.pop().close_socket()
        wait_for(lambda: relay.healthz()["clients"] <= 3, what="a client gone")
        RawWs(relay.port).close_socket()
        for c in held:
            c.close_socket()
        assert relay.metrics()['ws_relay_handshakes_refused_total{reason="max_clients_per_ip"}'] == 1


def test_64_idle_handshakes_from_one_address_get_the_65th_a_503_while_another_address_gets_in():
    with Relay() as relay:
        idle = [connect(relay.port) for _ in range(63)]
        # The relay has accepted those 63 (TCP connections held, the scrape's
        # own included); the scrape is itself a handshake from 127.0.0.1, so
        # the 64th idle one comes after it. Connections are accepted in the
        # order they were made: the 64th before the next one.
        wait_for(lambda: relay.metrics().get("ws_relay_tcp_connections", 0) >= 64,
                 what="63 idle connections accepted")
        idle.append(connect(relay.port))
        with connect(relay.port) as late:
            status, head = upgrade_head(late, relay.port)
        assert status == 503, head
        assert "Retry-After: 5" in head
        if second_loopback_ok():
            with connect(relay.port, "127.0.0.2") as other:
                assert upgrade_head(other, relay.port)[0] == 101
        line = relay.wait_stderr("in their handshake")
        assert "127.0.0.1" in line, line
        for s in idle:
            s.close()
        # Once they are gone, the address gets in again.
        def admitted():
            with connect(relay.port) as s:
                return upgrade_head(s, relay.port)[0] == 101
        wait_for(admitted, what="127.0.0.1 admitted again")
        assert relay.metrics()['ws_relay_handshakes_refused_total{reason="handshakes_per_ip"}'] >= 1


def prlimit_relay(nofile, *args):
    return run(["prlimit", f"--nofile={nofile}:{nofile}", "--", tool("ws-relay"),
                "--listen", "127.0.0.1:0", "--exit-on-eof", *args], input="", timeout=30)


def test_a_relay_whose_clients_do_not_fit_its_open_file_limit_refuses_to_start_with_64():
    res = prlimit_relay(1024)  # the default --max-clients 10000 needs 11,088
    assert res.returncode == 64, res.stderr
    assert "--max-clients 10000 needs 11088 open files" in res.stderr, res.stderr
    assert "limit is 1024" in res.stderr and "LimitNOFILE=65536" in res.stderr, res.stderr
    assert "listening on" not in res.stderr
    # What fits starts (and, stdin empty, exits 0 with --exit-on-eof).
    res = prlimit_relay(2048, "--max-clients", "900")
    assert res.returncode == 0, res.stderr
    assert "listening on" in res.stderr


def test_the_soft_open_file_limit_is_raised_to_the_hard_one():
    with Relay() as relay:
        limits = open(f"/proc/{relay.pid}/limits").read()
        m = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
        assert m and m.group(1) == m.group(2), limits


def test_the_packaged_unit_sets_limitnofile():
    unit = open(os.path.join(SOURCE_DIR, "packaging", "smws-relay.service.in")).read()
    assert re.search(r"^LimitNOFILE=65536$", unit, re.M), unit
