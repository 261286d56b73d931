# SPDX-License-Identifier: Apache-2.0
"""Misbehaving WebSocket servers for ws-probe's tests, one per failure mode.

Run as a script: `/usr/bin/python3 probe_fixtures.py MODE [ARG] [--tls CERT KEY]`. The server
binds 127.0.0.1 port 0, prints "PORT <n>" on stdout, and serves every
connection in its own thread until killed. Raw sockets, not a WebSocket
library, because the point is to misbehave precisely: drop with FIN or RST,
answer with a wrong accept key, stall the send loop.

Modes (timings are short so the tests stay fast):
  healthy      greets, then a timestamped "tick" every 0.2 s; answers pings and close
  proxied      healthy, with proxy/CDN headers and a forced permessage-deflate
  waits        greets once, then drops (FIN) when the client says nothing for 0.5 s;
               echoes when the client speaks
  idle S       sends at 0, 0.6 and 1.2 s, then drops (FIN) after S s (default 1.5)
               without any frame in either direction
  idlegreet S  greets once, then drops (FIN) after S s (default 1.5) without any
               frame in either direction, pings included: a proxy's idle timer
  waitsdata S  greets once, answers pings, drops (FIN) when no data message
               comes within S s (default 1.5): an application waiting for input
  rstgreet     greets, a second message at 0.3 s, then a reset (RST) at 0.5 s
  deflate      forces permessage-deflate (no context takeover) and sends its
               greeting and a timestamped "tick" every 0.2 s compressed (RSV1)
  rst          a message every 0.3 s for 1.5 s, then a reset (RST) 0.2 s later
  ping         pings every 0.3 s; closes 1008 "ping timeout" when a pong is 1 s late
  appping      {"type":"ping"} every 0.3 s; closes 1008 when no {"type":"pong"} within 1 s
  close CODE   greets, then sends close CODE 0.3 s later
  refuse403    HTTP 403 with a body
  plain200     HTTP 200 without upgrading
  badaccept    101 with a wrong Sec-WebSocket-Accept
  noupgrade    101 without the Upgrade header
  hang         accepts TCP, never answers the upgrade
  stall        timestamped messages every 0.1 s, but the loop blocks 1.3 s once
               and then sends the backlog in a burst
  echo         echoes text messages; closes cleanly
  headers      echo, greeting with {"type":"headers","headers":{request headers}}
"""
import base64
import hashlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    headers = {}
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


def frame(opcode, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def close_frame(code, reason=""):
    return frame(0x8, struct.pack("!H", code) + reason.encode())


class Reader:
    """Parses the client's (masked) frames from a socket, with timeouts."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        opcode = b[0] & 0x0F
        n = b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            pos = 10
        masked = b[1] & 0x80
        mask = b[pos:pos + 4] if masked else b"\0\0\0\0"
        if masked:
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(b[pos:pos + n]))
        self.buf = b[pos + n:]
        return opcode, payload

    def next(self, timeout):
        """(opcode, payload), None on timeout, or ("eof", b"") when the client left."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            tls_buffered = hasattr(self.conn, "pending") and self.conn.pending() > 0
            if not tls_buffered:
                ready, _, _ = select.select([self.conn], [], [], left)
                if not ready:
                    return None
            try:
                chunk = self.conn.recv(65536)
            except OSError:
                return ("eof", b"")
            if not chunk:
                return ("eof", b"")
            self.buf += chunk


def upgrade(conn, extra=""):
    headers = read_request(conn)
    if headers is None:
        return None
    key = headers.get("sec-websocket-key", "")
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Accept: {accept_key(key)}\r\n{extra}\r\n").encode())
    return Reader(conn)


def stamp(kind, **fields):
    return json.dumps({"type": kind, "timestamp": time.time(), **fields})


def answer_close(conn, reader, payload):
    try:
        conn.sendall(frame(0x8, payload[:2] if len(payload) >= 2 else b""))
    except OSError:
        pass


def answer_control(conn, reader, opcode, payload):
    """What every fixture does with the client's control frames: a ping gets
    its pong, a close is echoed. True when the connection is closing."""
    if opcode == 0x9:
        conn.sendall(frame(0xA, payload))
    elif opcode == 0x8:
        answer_close(conn, reader, payload)
        return True
    return False


def serve_healthy(conn, extra=""):
    reader = upgrade(conn, extra)
    if not reader:
        return
    conn.sendall(frame(0x1, stamp("hello")))
    next_tick = time.monotonic() + 0.2
    while True:
        got = reader.next(max(0.0, next_tick - time.monotonic()))
        if got is None:
            conn.sendall(frame(0x1, stamp("tick")))
            next_tick += 0.2
            continue
        opcode, payload = got
        if opcode == "eof":
            return
        if answer_control(conn, reader, opcode, payload):
            return


def serve_waits(conn):
    reader = upgrade(conn)
    if not reader:
        return
    conn.sendall(frame(0x1, json.dumps({"type": "initial", "machines": []})))
    got = reader.next(0.5)
    if got is None or got[0] == "eof":
        return  # "handler returned": the socket closes with FIN, no close frame
    while got is not None and got[0] != "eof":
        opcode, payload = got
        if opcode == 0x1:
            conn.sendall(frame(0x1, payload))
        elif answer_control(conn, reader, opcode, payload):
            return
        got = reader.next(30)


def serve_idle(conn, idle, sends=(0.0, 0.6, 1.2)):
    reader = upgrade(conn)
    if not reader:
        return
    start = time.monotonic()
    sends = list(sends)
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if sends and now - start >= sends[0]:
            sends.pop(0)
            conn.sendall(frame(0x1, stamp("state_change")))
            last = time.monotonic()
            continue
        wait = idle - (now - last)
        if sends:
            wait = min(wait, start + sends[0] - now)
        if wait <= 0:
            return  # idle: drop without a close frame (FIN)
        got = reader.next(wait)
        if got is None:
            continue
        opcode, payload = got
        if opcode == "eof":
            return
        last = time.monotonic()
        if answer_control(conn, reader, opcode, payload):
            return


def serve_idlegreet(conn, idle):
    serve_idle(conn, idle, sends=(0.0,))


def serve_waitsdata(conn, wait):
    reader = upgrade(conn)
    if not reader:
        return
    conn.sendall(frame(0x1, json.dumps({"type": "initial", "machines": []})))
    deadline = time.monotonic() + wait
    while True:
        got = reader.next(max(0.0, deadline - time.monotonic()))
        if got is None or got[0] == "eof":
            return  # no message in time: the handler gives up (FIN, no close frame)
        opcode, payload = got
        if opcode == 0x1:
            conn.sendall(frame(0x1, payload))
            deadline = time.monotonic() + 30
        elif answer_control(conn, reader, opcode, payload):
            return


def serve_rstgreet(conn):
    reader = upgrade(conn)
    if not reader:
        return
    conn.sendall(frame(0x1, stamp("hello")))
    reader.next(0.3)
    conn.sendall(frame(0x1, stamp("tick")))
    reader.next(0.2)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def deflated(text):
    """One permessage-deflate message (RFC 7692 §7.2.1): raw DEFLATE, sync
    flushed, without the trailing 00 00 ff ff; RSV1 set on its frame."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = z.compress(text.encode()) + z.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    payload = data[:-4]
    head = frame(0x1, payload)
    return bytes([head[0] | 0x40]) + head[1:]


def serve_deflate(conn):
    reader = upgrade(conn, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                           "client_no_context_takeover\r\n")
    if not reader:
        return
    conn.sendall(deflated(stamp("hello", padding="x" * 200)))
    next_tick = time.monotonic() + 0.2
    while True:
        got = reader.next(max(0.0, next_tick - time.monotonic()))
        if got is None:
            conn.sendall(deflated(stamp("tick")))
            next_tick += 0.2
            continue
        opcode, payload = got
        if opcode == "eof":
            return
        if answer_control(conn, reader, opcode, payload):
            return


def serve_rst(conn):
    reader = upgrade(conn)
    if not reader:
        return
    for _ in range(6):  # traffic for 1.5 s, then a reset 0.2 s after the last message
        conn.sendall(frame(0x1, stamp("tick")))
        reader.next(0.3)
    reader.next(0.2)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def serve_ping(conn):
    reader = upgrade(conn)
    if not reader:
        return
    conn.sendall(frame(0x1, stamp("hello")))
    outstanding = None  # when the unanswered ping was sent
    next_ping = time.monotonic() + 0.3
    while True:
        now = time.monotonic()
        if outstanding is not None and now - outstanding > 1.0:
            conn.sendall(close_frame(1008, "ping timeout"))
            reader.next(1.0)
            return
        if now >= next_ping:
            conn.sendall(frame(0x9, b"keepalive"))
            if outstanding is None:
                outstanding = now
            next_ping = now + 0.3
            continue
        got = reader.next(min(next_ping - now, 0.05))
        if got is None:
            continue
        opcode, payload = got
        if opcode == "eof":
            return
        if opcode == 0xA:
            outstanding = None
        elif answer_control(conn, reader, opcode, payload):
            return


def serve_appping(conn):
    reader = upgrade(conn)
    if not reader:
        return
    outstanding = None
    next_ping = time.monotonic() + 0.3
    while True:
        now = time.monotonic()
        if outstanding is not None and now - outstanding > 1.0:
            conn.sendall(close_frame(1008, "no pong"))
            reader.next(1.0)
            return
        if now >= next_ping:
            conn.sendall(frame(0x1, json.dumps({"type": "ping"})))
            if outstanding is None:
                outstanding = now
            next_ping = now + 0.3
            continue
        got = reader.next(min(next_ping - now, 0.05))
        if got is None:
            continue
        opcode, payload = got
        if opcode == "eof":
            return
        if opcode == 0x1 and json.loads(payload).get("type") == "pong":
            outstanding = None
        elif answer_control(conn, reader, opcode, payload):
            return


def serve_close(conn, code):
    reader = upgrade(conn)
    if not reader:
        return
    conn.sendall(frame(0x1, stamp("hello")))
    reader.next(0.3)
    reasons = {1011: "internal error", 1013: "try again later", 1008: "policy violation"}
    conn.sendall(close_frame(code, reasons.get(code, "bye")))
    reader.next(1.0)  # the client's answer


def serve_stall(conn):
    reader = upgrade(conn)
    if not reader:
        return
    start = time.monotonic()
    backlog = []
    i = 0
    while time.monotonic() - start < 2.2:
        i += 1
        message = frame(0x1, stamp("tick", n=i))
        elapsed = time.monotonic() - start
        if 0.3 <= elapsed < 1.6:
            backlog.append(message)  # the send loop is "blocked": messages pile up
        else:
            if backlog:
                conn.sendall(b"".join(backlog))
                backlog = []
            conn.sendall(message)
        got = reader.next(0.1)
        if got and got[0] == 0x8:
            answer_close(conn, reader, got[1])
            return
        if got and got[0] == "eof":
            return
    got = reader.next(30)
    if got and got[0] == 0x8:
        answer_close(conn, reader, got[1])


def serve_raw(conn, response):
    if read_request(conn) is None:
        return
    conn.sendall(response.encode())
    time.sleep(0.2)


def serve_hang(conn):
    read_request(conn)
    time.sleep(30)


def serve_echo(conn, greet_with_headers=False):
    headers = read_request(conn)
    if headers is None:
        return
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Accept: {accept_key(headers.get('sec-websocket-key', ''))}\r\n\r\n").encode())
    reader = Reader(conn)
    if greet_with_headers:
        conn.sendall(frame(0x1, json.dumps({"type": "headers", "headers": headers})))
    while True:
        got = reader.next(30)
        if got is None or got[0] == "eof":
            return
        opcode, payload = got
        if opcode in (0x1, 0x2):
            conn.sendall(frame(opcode, payload))
        elif answer_control(conn, reader, opcode, payload):
            return


def handler(mode, arg):
    bad_key = "dGhlIHNhbXBsZSBub25jZQ=="
    table = {
        "healthy": lambda c: serve_healthy(c),
        "proxied": lambda c: serve_healthy(c, "Server: nginx/1.24.0\r\nVia: 1.1 varnish\r\n"
                                              "CF-RAY: 8a1b2c3d4e5f-FRA\r\n"
                                              "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        "waits": serve_waits,
        "idle": lambda c: serve_idle(c, float(arg or 1.5)),
        "rst": serve_rst,
        "idlegreet": lambda c: serve_idlegreet(c, float(arg or 1.5)),
        "waitsdata": lambda c: serve_waitsdata(c, float(arg or 1.5)),
        "rstgreet": serve_rstgreet,
        "deflate": serve_deflate,
        "ping": serve_ping,
        "appping": serve_appping,
        "close": lambda c: serve_close(c, int(arg or 1011)),
        "refuse403": lambda c: serve_raw(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                                            "Content-Length: 18\r\nConnection: close\r\n\r\norigin not allowed"),
        "plain200": lambda c: serve_raw(c, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                           "Content-Length: 13\r\nConnection: close\r\n\r\n<html></html>"),
        "badaccept": lambda c: serve_raw(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {bad_key}\r\n\r\n"),
        "noupgrade": lambda c: serve_raw(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                            "Sec-WebSocket-Accept: x\r\n\r\n"),
        "hang": serve_hang,
        "stall": serve_stall,
        "echo": serve_echo,
        "headers": lambda c: serve_echo(c, greet_with_headers=True),
    }
    return table[mode]


def read_line(stream, timeout, what):
    """One line from a child's pipe, waiting at most timeout seconds for it."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line from {what} within {timeout}s (got {data!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError(f"{what} closed its output (got {data!r})")
        data += chunk
    return data.decode()


class FixtureServer:
    """Context manager: runs this file as a fixture server; .url is its ws:// URL."""

    def __init__(self, mode, arg=None, path="/ws", tls=None):
        """tls: (cert file, key file) to serve wss://."""
        from smws_test import Proc  # only needed by tests, not by the server itself
        args = ["/usr/bin/python3", os.path.abspath(__file__), mode] + ([str(arg)] if arg is not None else [])
        if tls:
            args += ["--tls", *tls]
        self.proc = Proc(args)
        try:
            line = read_line(self.proc.p.stdout, 10, f"fixture server {mode}")
        except Exception:
            self.proc.kill()
            raise
        self.port = int(line.split()[1])
        self.url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()


def main():
    argv = sys.argv[1:]
    tls = None
    if "--tls" in argv:  # --tls CERT KEY: serve wss://
        i = argv.index("--tls")
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(argv[i + 1], argv[i + 2])
        del argv[i:i + 3]
    mode = argv[0]
    arg = argv[1] if len(argv) > 1 else None
    serve = handler(mode, arg)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    print(f"PORT {listener.getsockname()[1]}", flush=True)

    def run(conn):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                conn.settimeout(5)
                conn = tls.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            serve(conn)
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=run, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
