# SPDX-License-Identifier: Apache-2.0
"""The tests' one WebSocket frame codec and a byte-level client that can send
frames a well-behaved library never would (unmasked, bad opcodes, broken
UTF-8). relay_support.RawWs is built on the same codec; the relay launcher is
relay_support.Relay.

Every wait is bounded: socket timeouts."""
import socket
import ssl
import struct

MASK = b"\x11\x22\x33\x44"


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None, key=MASK):
    """Bytes of one frame; everything a test may want to get wrong is a
    parameter (length: the length to announce, whatever the payload's)."""
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
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def frame_header(buf):
    """(fin, opcode, header length, payload length) of the server frame at
    the start of buf, or None while buf holds less than its header. Server
    frames are never masked (asserted)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    assert b1 & 0x80 == 0, "server frames must not be masked"
    n, pos = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    return bool(b0 & 0x80), b0 & 0x0F, pos, n


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
        need = 2
        while (header := frame_header(self.buf)) is None:
            self._need(need)
            need += 1
        _, opcode, pos, n = header
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return opcode, payload

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
