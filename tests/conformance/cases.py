# SPDX-License-Identifier: Apache-2.0
"""The conformance table: RFC 6455 cases in the spirit of Autobahn|Testsuite,
each run against ws-relay (server role: we are the client) and, where the
case makes sense in that direction, against ws-probe and hitl-approve
(client role: a fixture server plays the peer). tests/integration/
test_conformance.py runs them; docs/conformance.md is the result table and
test_conformance.py checks that it lists exactly these cases.

A case is frames to send, then what must happen:
  ok            the connection stays open and works: a ping "alive" gets its
                pong; a relay also shows the message (a JSON object on stdout,
                else an error reply to the sender)
  pong          a pong with the payload of the last ping sent comes back
                (earlier pings may or may not get theirs), then as ok
  close:C       the peer closes with code C (and then TCP)
  echo:C        the peer answers our close with code C (and then TCP)
  reply-error   (relay) the sender gets {"type":"error",...}, then as ok
  A or B        either outcome conforms
The frames are the same for both roles; a client-role fixture sends them
unmasked (as a server must), a server-role test masked (as a client must).
`with_handshake` (client role) sends the frames in the same write as the
101 response, before the client has read anything. `split` marks a case whose last frame is only sent if the peer has not
already failed the connection: "fails fast" means it closed before it.
"""
import json
import struct

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def F(op, payload=b"", fin=True, rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    return (op, payload, fin, rsv)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def obj_of_size(n):
    """A compact JSON object of exactly n bytes."""
    base = '{"type":"c","p":""}'
    return base[:-2] + "x" * (n - len(base)) + base[-2:]


KOSME = "κόσμε".encode()
CASES = []


def case(cid, section, title, frames, server=None, client=None, split=False, with_handshake=False):
    CASES.append(dict(id=cid, section=section, title=title, frames=frames,
                      server=server, client=client, split=split, with_handshake=with_handshake))


# 1 Framing
for n in (0, 125, 126, 127, 65535, 65536):
    payload = obj_of_size(n) if n >= 19 else ""
    case(f"1.1.{n}", "1.1", f"text message, {n}-byte payload", [F(TEXT, payload)],
         server="reply-error" if n < 19 else "ok", client="ok")
case("1.2.1", "1.2", "binary message, 125 bytes", [F(BINARY, bytes(125))],
     server="reply-error", client="ok")
case("1.2.2", "1.2", "binary message, 65536 bytes", [F(BINARY, bytes(range(256)) * 256)],
     server="reply-error", client="ok")
case("1.3", "1.1", "a bad frame (RSV=4) in the same write as the 101 response",
     [F(TEXT, "x", rsv=4)], client="close:1002", with_handshake=True)

# 2 Ping/pong
case("2.1", "2.1", "ping without payload", [F(PING)], server="pong", client="pong")
case("2.2", "2.2", "ping with 125-byte text payload", [F(PING, "p" * 125)],
     server="pong", client="pong")
case("2.3", "2.3", "ping with binary payload", [F(PING, b"\x00\xff\xfe\xfd")],
     server="pong", client="pong")
case("2.5", "2.5", "ping with 126-byte payload", [F(PING, "p" * 126)],
     server="close:1002", client="close:1002")
case("2.6", "2.6", "unsolicited pong", [F(PONG, "unsolicited")], server="ok", client="ok")
case("2.9", "2.9", "unsolicited pong, then ping", [F(PONG, "x"), F(PING, "y")],
     server="pong", client="pong")
case("2.10", "2.10", "ten pings in a row: the latest is answered (RFC 6455 5.5.3)",
     [F(PING, f"ping-{i}") for i in range(10)], server="pong", client="pong")

# 3 Reserved bits
for rsv, op, what in ((1, TEXT, "text"), (2, TEXT, "text"), (4, PING, "ping"),
                      (7, BINARY, "binary"), (3, CLOSE, "close")):
    payload = close_payload(1000) if op == CLOSE else ("x" if op != BINARY else b"\x01")
    case(f"3.rsv{rsv}.{what}", "3", f"RSV={rsv} on a {what} frame", [F(op, payload, rsv=rsv)],
         server="close:1002", client="close:1002")

# 4 Opcodes
for op in (3, 4, 5, 6, 7):
    case(f"4.1.{op}", "4.1", f"reserved data opcode {op}", [F(op, "x")],
         server="close:1002", client="close:1002")
for op in (0xB, 0xC, 0xD, 0xE, 0xF):
    case(f"4.2.{op}", "4.2", f"reserved control opcode {op}", [F(op, "x")],
         server="close:1002", client="close:1002")

# 5 Fragmentation
case("5.1", "5.1", "fragmented ping", [F(PING, "a", fin=False), F(CONT, "b")],
     server="close:1002", client="close:1002")
case("5.2", "5.2", "fragmented pong", [F(PONG, "a", fin=False), F(CONT, "b")],
     server="close:1002", client="close:1002")
case("5.3", "5.3", "text in two fragments", [F(TEXT, '{"type":', fin=False), F(CONT, '"frag"}')],
     server="ok", client="ok")
case("5.6", "5.6", "text in two fragments with a ping between",
     [F(TEXT, '{"type":', fin=False), F(PING, "mid"), F(CONT, '"frag"}')],
     server="pong", client="pong")
case("5.9", "5.9", "continuation without a message", [F(CONT, "x")],
     server="close:1002", client="close:1002")
case("5.15", "5.15", "a new text frame inside a fragmented message",
     [F(TEXT, '{"type":', fin=False), F(TEXT, '"x"}')], server="close:1002", client="close:1002")
case("5.19", "5.19", "a text object in 1-byte fragments with pings between",
     [F(TEXT, "{", fin=False)] + [f for ch in '"type":"tiny"' for f in (F(CONT, ch, fin=False), F(PING, "f"))]
     + [F(CONT, "}")], server="pong", client="pong")

# 6 UTF-8
case("6.1", "6.2", "valid multi-byte UTF-8", [F(TEXT, '{"type":"' + KOSME.decode() + '"}')],
     server="ok", client="ok")
whole = ('{"type":"' + KOSME.decode() + '"}').encode()
case("6.2", "6.4", "valid UTF-8 split inside a character, 1-byte fragments",
     [F(TEXT, whole[:1], fin=False)] + [F(CONT, whole[i:i + 1], fin=False) for i in range(1, len(whole) - 1)]
     + [F(CONT, whole[-1:])], server="ok", client="ok")
for cid, title, data in (("6.3", "an invalid byte (0xFF)", b"\xff"),
                         ("6.5", "a UTF-16 surrogate (U+D800 as ED A0 80)", b"\xed\xa0\x80"),
                         ("6.6", "an overlong encoding of '/' (C0 AF)", b"\xc0\xaf"),
                         ("6.7", "a code point above U+10FFFF (F4 90 80 80)", b"\xf4\x90\x80\x80"),
                         ("6.8", "a message that ends inside a character", KOSME[:-1])):
    case(cid, "6.3" if cid != "6.8" else "6.4", f"text with {title}", [F(TEXT, b'"' + data)],
         server="close:1007", client="close:1007")
case("6.9", "6.4.1", "invalid UTF-8 in the first of two fragments fails fast",
     [F(TEXT, KOSME + b"\xf4\x90\x80\x80", fin=False), F(CONT, b"edited")],
     server="close:1007", client="close:1007", split=True)
case("6.10", "6.4.2", "invalid UTF-8 split across fragments fails at the byte that breaks it",
     [F(TEXT, KOSME + b"\xf4", fin=False), F(CONT, b"\x90\x80\x80", fin=False), F(CONT, b"edited")],
     server="close:1007", client="close:1007", split=True)
case("6.11", "7.5.1", "close reason that is not UTF-8", [F(CLOSE, close_payload(1000, b"\xff"))],
     server="close:1002", client="close:1002")

# 7 Close handling
case("7.1.1", "7.1.1", "close 1000", [F(CLOSE, close_payload(1000))], server="echo:1000", client="echo:1000")
case("7.1.3", "7.1.3", "close, then a text frame (ignored)", [F(CLOSE, close_payload(1000)), F(TEXT, "late")],
     server="echo:1000", client="echo:1000")
case("7.3.1", "7.3.1", "close without payload: the answer is not 1005 on the wire",
     [F(CLOSE)], server="echo:none or echo:1000", client="echo:none or echo:1000")
case("7.3.2", "7.3.2", "close with a 1-byte payload", [F(CLOSE, b"\x03")],
     server="close:1002", client="close:1002")
case("7.3.4", "7.3.4", "close 1000 with a 123-byte reason", [F(CLOSE, close_payload(1000, b"r" * 123))],
     server="echo:1000", client="echo:1000")
case("7.3.6", "7.3.6", "close with a 124-byte reason (126-byte payload)",
     [F(CLOSE, close_payload(1000, b"r" * 124))], server="close:1002", client="close:1002")
for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):
    case(f"7.7.{code}", "7.7", f"valid close code {code}", [F(CLOSE, close_payload(code))],
         server=f"echo:{code}", client=f"echo:{code}")
for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
    case(f"7.9.{code}", "7.9", f"invalid close code {code} on the wire", [F(CLOSE, close_payload(code))],
         server="close:1002", client="close:1002")

# 9 Limits (the relay runs with --max-message 131072; clients keep their defaults)
case("9.1.1", "9.1", "text message at the relay's --max-message (131072 bytes)",
     [F(TEXT, obj_of_size(131072))], server="ok", client="ok")
case("9.1.2", "9.1", "text message one byte over --max-message", [F(TEXT, obj_of_size(131073))],
     server="close:1009")
case("9.1.3", "9.2", "fragments that pass --max-message fail before the last one",
     [F(TEXT, obj_of_size(131072)[:65536], fin=False), F(CONT, "x" * 65537, fin=False),
      F(CONT, "}")], server="close:1009", split=True)
case("9.4", "9.4", "a 1 MiB binary message in 64 KiB fragments",
     [F(BINARY, bytes(65536), fin=False)] + [F(CONT, bytes(65536), fin=False)] * 14 + [F(CONT, bytes(65536))],
     client="ok")


def expected_json(c):
    """The JSON object the relay must print for an ok text case, or None."""
    if c["server"] not in ("ok", "pong"):
        return None
    data = b"".join(p for op, p, _, _ in c["frames"] if op in (TEXT, CONT))
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def conforms(got, expect):
    return got in expect.split(" or ")
