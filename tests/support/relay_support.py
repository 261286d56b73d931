# SPDX-License-Identifier: Apache-2.0
"""Helpers for the ws-relay integration tests.

- Relay: runs `ws-relay --listen 127.0.0.1:0 ...` with stdin a pipe, reads
  its stderr and stdout on threads (so neither pipe can fill up and stall
  it) and learns the bound port from the line
  "ws-relay: listening on ws://127.0.0.1:PORT/ws/events".
- ws_connect / recv_json: Debian's python3-websockets (10.x, asyncio).
- NodeClient: Node's `ws` package as a second, independent client
  (tests/support/relay_node_client.js).
- RawWs: a minimal blocking RFC 6455 client on a plain socket, for what
  the libraries will not do: stop reading, ignore pings, count frames. Its
  frames are ws_raw's codec (the tests' one), its line pumps and the
  "listening on" pattern smws_test's (LinePump, LISTEN_RE).

This Relay is the tests' one ws-relay launcher.
- http_get: plain HTTP requests to the relay's port.

Every wait takes a timeout; every process is killed when its context ends.
"""
import asyncio
import base64
import hashlib
import http.client
import json
import os
import queue
import socket
import struct
import subprocess
import threading
import time

import websockets

from smws_test import LISTEN_RE, LinePump, Proc, SOURCE_DIR, tool, wait_for
from ws_raw import frame, frame_header
NODE = "/usr/bin/node"
NODE_CLIENT = os.path.join(os.path.abspath(SOURCE_DIR), "tests", "support", "relay_node_client.js")


class Relay:
    """ws-relay listening on 127.0.0.1 (kernel-chosen port). Context manager."""

    def __init__(self, *args, env=None, listen="127.0.0.1:0", timeout=15.0,
                 read_stdout=True, read_stderr=True):
        """read_stdout=False: stdout is a pipe nobody reads. read_stderr=False:
        stderr is read up to the "listening on" line, then no more."""
        self.args = [tool("ws-relay"), "--listen", listen, *args]
        self.proc = Proc(self.args, stdin=subprocess.PIPE, env=env)
        self._stderr = LinePump(self.proc.p.stderr, until=None if read_stderr else LISTEN_RE)
        self._stdout = LinePump(self.proc.p.stdout) if read_stdout else None
        try:
            line = self.wait_stderr(LISTEN_RE, timeout=timeout)
        except TimeoutError:
            self.proc.kill()
            raise
        m = LISTEN_RE.search(line)
        self.scheme, self.host, self.port, self.path = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        self.url = f"{self.scheme}://{self.host}:{self.port}{self.path}"

    # --- process -----------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()

    @property
    def pid(self):
        return self.proc.p.pid

    def stderr_text(self):
        return self._stderr.text()

    def wait_stderr(self, pattern, timeout=10.0):
        """Returns the first stderr line (so far or to come) matching pattern
        (a regex or str); TimeoutError if none does in time or ws-relay exits."""
        return self._stderr.wait_match(pattern, timeout)

    def stdout_line(self, timeout=10.0):
        """Next line ws-relay printed on stdout (without '\\n'); None at EOF."""
        return self._stdout.next(timeout)

    def stdout_pending(self):
        """Lines already printed and not yet taken (without waiting)."""
        return self._stdout.pending()

    # --- stdin -------------------------------------------------------------
    def send(self, *events):
        """Writes each event (a dict, or a str sent as is) as one stdin line."""
        data = "".join((e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))) + "\n"
                       for e in events)
        self.send_raw(data.encode())

    def send_raw(self, data):
        self.proc.p.stdin.write(data)
        self.proc.p.stdin.flush()

    def send_in_background(self, lines):
        """Writes many lines from a thread (a pipe write may block while the
        relay catches up; an asyncio test must keep reading meanwhile)."""
        data = "".join(line + "\n" for line in lines).encode()

        def write():
            try:
                self.send_raw(data)
            except (BrokenPipeError, ValueError):
                pass  # the relay ended (or the test closed stdin): the test says so
        t = threading.Thread(target=write, daemon=True)
        t.start()
        return t

    def close_stdin(self):
        self.proc.p.stdin.close()

    def terminate(self):
        self.proc.signal(15)

    def wait(self, timeout=15.0):
        return self.proc.wait(timeout=timeout)

    # --- HTTP ----------------------------------------------------------------
    def http_get(self, path, headers=None, timeout=10.0, method="GET"):
        """(status, headers dict with lower-case names, body str)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def metrics(self, token=None):
        """/metrics as {sample: value}, a sample being its name with its
        labels as written: 'ws_relay_http_requests_total{status="200"}'."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, _, body = self.http_get("/metrics", headers=headers)
        assert status == 200, (status, body)
        out = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_metric(self, sample, predicate, token=None, timeout=10.0):
        """Scrapes /metrics until predicate(value of sample, 0 when absent)
        holds; returns the value."""
        got = []

        def check():
            got[:] = [self.metrics(token).get(sample, 0)]
            return predicate(got[0])
        wait_for(check, timeout=timeout, interval=0.05, what=sample)
        return got[0]

    def healthz(self):
        status, _, body = self.http_get("/healthz")
        assert status == 200, (status, body)
        return json.loads(body)


def event(n, **fields):
    """A small test event with a sequence number of the test's own."""
    return {"type": "tick", "n": n, **fields}


# --- python3-websockets ------------------------------------------------------

def ws_connect(url, **kw):
    """websockets.connect with bounded timeouts and no client-side pings
    (the relay's keepalive is what is under test)."""
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return websockets.connect(url, **kw)


async def recv_json(ws, timeout=10.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout=10.0):
    """Receives messages until predicate(msg) is true; returns all of them."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"predicate not met; got {got[-5:]}")
        msg = await recv_json(ws, left)
        got.append(msg)
        if predicate(msg):
            return got


async def expect_close(ws, timeout=10.0):
    """Reads until the relay closes the connection; returns (code, reason)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        return e.code, e.reason


def run(coro, timeout=60.0):
    """Runs one async scenario with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- Node's ws -----------------------------------------------------------------

class NodeClient:
    """A Node `ws` client in its own process; reports what it sees as NDJSON
    (open, message, ping, close, status, error). Context manager."""

    def __init__(self, url, headers=None):
        env = {"NODE_PATH": os.environ.get("NODE_PATH", "/usr/share/nodejs")}
        args = [NODE, NODE_CLIENT, url]
        if headers:
            args.append(json.dumps(headers))
        self.proc = Proc(args, stdin=subprocess.PIPE, env=env)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()

    def _read(self):
        for raw in self.proc.p.stdout:
            try:
                self.events.put(json.loads(raw))
            except ValueError:
                self.events.put({"garbled": raw.decode("utf-8", "replace")})
        self.events.put({"eof": True})

    def next(self, timeout=10.0):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"node client reported nothing within {timeout}s") from None

    def wait(self, predicate, timeout=10.0):
        """Returns every report up to and including the first that matches."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(ev)
            if predicate(ev):
                return seen
            if ev.get("eof"):
                raise AssertionError(f"node client ended before the condition; saw {seen[-5:]}")

    def messages_until(self, predicate, timeout=10.0):
        """Parsed messages received until one matches predicate."""
        out = []
        for ev in self.wait(lambda e: "message" in e and predicate(json.loads(e["message"]))
                            or "close" in e, timeout):
            if "close" in ev:
                raise AssertionError(f"closed {ev} before the expected message; got {out[-5:]}")
            if "message" in ev:
                out.append(json.loads(ev["message"]))
        return out

    def send(self, text):
        self.proc.p.stdin.write((text + "\n").encode())
        self.proc.p.stdin.flush()


def feed_in_step(relay, fast, lines, chunk=200, until=None):
    """Writes numbered event lines (n = 1, 2, ...) a chunk at a time, each
    time waiting until the NodeClient `fast` has the chunk's last event, so
    `fast` is never more than a chunk behind stdin however fast ws-relay
    ingests. Stops early once until() is true (checked after each chunk).
    Returns (lines written, the events `fast` received, in order)."""
    got = []
    written = 0
    while written < len(lines):
        part = lines[written:written + chunk]
        relay.send_raw("".join(line + "\n" for line in part).encode())
        written += len(part)
        got += fast.messages_until(lambda m, w=written: m.get("n") == w, timeout=30)
        if until and until():
            break
    return written, got


# --- a raw RFC 6455 client -------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeRefused(Exception):
    def __init__(self, status, head):
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status
        self.head = head


class RawWs:
    """Blocking WebSocket client on a plain socket. It answers nothing by
    itself: the test decides whether to read, to pong, to close."""

    def __init__(self, port, path="/ws/events", headers=None, rcvbuf=None, timeout=10.0,
                 host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the window the relay sees is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.pings = 0
        self.last_fin = True
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        head = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during the handshake")
            self.buf += chunk
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            raise HandshakeRefused(self.status, raw_head.decode("latin-1"))
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        assert self.headers.get("sec-websocket-accept") == accept

    def close_socket(self):
        self.sock.close()

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection ended (FIN) without a close frame")
            self.buf += chunk

    def recv_frame(self, timeout=10.0):
        """(opcode, payload bytes) of the next frame."""
        deadline = time.monotonic() + timeout
        need = 2
        while (header := frame_header(self.buf)) is None:
            self._fill(need, deadline)
            need += 1
        fin, opcode, off, n = header
        self._fill(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        self.last_fin = fin
        return opcode, payload

    def recv(self, timeout=10.0, pong=True):
        """Next data message as ("text", str) / ("binary", bytes), or
        ("close", code, reason). Pings are answered when pong is true and
        skipped otherwise; pongs are skipped."""
        deadline = time.monotonic() + timeout
        parts, kind = [], None
        while True:
            op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                self.pings += 1
                if pong:
                    self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                return ("close", code, payload[2:].decode("utf-8", "replace"))
            if op in (OP_TEXT, OP_BINARY):
                kind = op
            parts.append(payload)
            if not self.last_fin:
                continue  # fragmented message: continuation frames follow
            data = b"".join(parts)
            return ("text", data.decode("utf-8")) if kind == OP_TEXT else ("binary", data)

    def recv_json(self, timeout=10.0, pong=True):
        msg = self.recv(timeout, pong)
        assert msg[0] == "text", msg
        return json.loads(msg[1])

    def send_frame(self, opcode, payload, fin=True, mask=True):
        self.sock.sendall(frame(opcode, payload, fin=fin, mask=mask, key=os.urandom(4)))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_close(self, code=1000, reason=""):
        self.send_frame(OP_CLOSE, struct.pack(">H", code) + reason.encode())
