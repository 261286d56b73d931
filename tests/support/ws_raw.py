"""Raw WebSocket plumbing for protocol tests: a ws-relay starter that reads
the bound address from stderr, and a byte-level client that can send frames a
well-behaved library never would (unmasked, bad opcodes, broken UTF-8).

Every wait is bounded: socket timeouts, select() with a deadline."""
import base64
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import time

from smws_test import Proc, tool

LISTEN_RE = re.compile(r"listening on (wss?)://([^:/\]]+|\[[^\]]+\]):(\d+)(/\S*)")


def read_line(stream, timeout):
    """One line from a binary pipe within timeout seconds (b'' at EOF)."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete line within {timeout}s (got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            return buf
        buf += chunk
    return buf


class Relay:
    """ws-relay on 127.0.0.1 with a kernel-chosen port; use as a context manager."""

    def __init__(self, *args, env=None):
        self.proc = Proc([tool("ws-relay"), "--listen", "127.0.0.1:0", *args],
                         stdin=subprocess.PIPE, env=env)
        self.stderr_lines = []
        while True:
            line = read_line(self.proc.p.stderr, 10).decode()
            if not line:
                raise RuntimeError("ws-relay exited before listening: " + "".join(self.stderr_lines))
            self.stderr_lines.append(line)
            m = LISTEN_RE.search(line)
            if m:
                self.scheme, self.host, self.port, self.path = m.group(1), m.group(2), int(m.group(3)), m.group(4)
                self.url = f"{self.scheme}://127.0.0.1:{self.port}{self.path}"
                break

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()

    def send_stdin(self, text):
        self.proc.p.stdin.write(text.encode())
        self.proc.p.stdin.flush()

    def stdout_line(self, timeout=10):
        return read_line(self.proc.p.stdout, timeout).decode()


MASK = b"\x11\x22\x33\x44"


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """Bytes of one frame; everything a test may want to get wrong is a parameter."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
        head += MASK
    return head + payload


class RawClient:
    """A WebSocket client at the byte level."""

    def __init__(self, port, path="/ws/events", headers=None, key="dGhlIHNhbXBsZSBub25jZQ==",
                 version="13", tls=False, timeout=10, rcvbuf=0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        if rcvbuf:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Version: {version}"]
        if key is not None:
            lines.append(f"Sec-WebSocket-Key: {key}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1]) if head else 0
        self.head = head.decode(errors="replace")

    def send(self, data):
        self.sock.sendall(data)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def recv_frame(self):
        """(opcode, payload) of the next frame from the server (which must not mask)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return b0 & 0x0F, payload

    def recv_until(self, opcode):
        """Skips other frames (answering nothing) until one with opcode."""
        while True:
            op, payload = self.recv_frame()
            if op == opcode:
                return payload

    def close_code(self):
        """Reads until the server's close frame: (code, reason)."""
        payload = self.recv_until(0x8)
        if len(payload) < 2:
            return 1005, ""
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def wait_eof(self):
        """True once the server closed TCP (reads and discards until then)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return True
            if not chunk:
                return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
