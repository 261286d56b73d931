#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""make soak: ws-relay under a mixed load for SOAK_S seconds, then a report.

The load, all at once, on 127.0.0.1 (one asyncio process plays every peer):
  - steady events on stdin (--rate per second, state_change for a bounded
    set of machines, other types), with malformed and oversize lines mixed in;
  - well-behaved clients that stay for the whole run and check that every
    broadcast arrives, in order, by its --seq number;
  - clients joining and leaving (snapshot, a few messages, close);
  - one slow client (reads a message every 0.5 s for 20 s; the relay
    closes it, 1008 because its TCP never even received a ping, or 1013 by
    its queue limit; it then reads fast to reach that close frame, and
    reconnects);
  - one client that never answers pings (must be closed 1008 every time; it
    reconnects);
  - malformed client messages (not JSON, binary, over --max-message: 1009);
  - HITL: interrupts on stdin, decisions from a client, each broadcast back.

Pass criteria (exit 1 otherwise), with the run cut into ten windows:
  - RSS of the last window within 10 % of the second (after warm-up): for the
    default 600 s, the last minute against the second minute;
  - no message lost by a well-behaved client;
  - every connection of the silent client closed with 1008 ping timeout;
  - the slow client closed (1008 or 1013, read by it) after every slow
    phase, and at least one phase run;
  - every interrupt decided and its decision broadcast.
"""
import argparse
import asyncio
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import websockets

LISTEN_RE = re.compile(r"listening on ws://([^\s/]+):(\d+)(/\S*)")
PING_INTERVAL, PING_TIMEOUT = 1.0, 2.0
SLOW_PHASE_S = 20.0  # how long the slow client reads slowly before catching up
MAX_QUEUE, MAX_MESSAGE = 256, 65536


class Stats:
    def __init__(self):
        self.c = {}

    def inc(self, key, n=1):
        self.c[key] = self.c.get(key, 0) + n


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def raw_connect(port, path, sock=None):
    """A WebSocket connection on asyncio streams: we decide what to answer."""
    if sock is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    return reader, writer


async def raw_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


def masked(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | op])
    head += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536
                                               else bytes([0x80 | 127]) + struct.pack("!Q", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Soak:
    def __init__(self, args, proc, port, path):
        self.args, self.proc, self.port, self.path = args, proc, port, path
        self.url = f"ws://127.0.0.1:{port}{path}"
        self.stats = Stats()
        self.deadline = time.monotonic() + args.seconds
        self.interrupts_sent = set()
        self.decisions_seen = set()
        self.rss = []  # (t, KiB)
        self.relay_lines = []  # the relay's last lines about closes

    def running(self):
        return time.monotonic() < self.deadline

    async def feed_stdin(self):
        """Steady events; now and then a malformed or oversize line, an interrupt."""
        w = self.proc.stdin
        n, start = 0, time.monotonic()
        while self.running():
            n += 1
            if n % 997 == 0:
                line = '{"type": broken'
                self.stats.inc("stdin_malformed")
            elif n % 4999 == 0:
                line = '{"type":"big","pad":"' + "x" * (1 << 20) + '"}'
                self.stats.inc("stdin_oversize")
            elif n % 1000 == 500:
                iid = f"i-{n}"
                self.interrupts_sent.add(iid)
                line = json.dumps({"type": "interrupt", "interrupt_id": iid, "thread_id": "soak",
                                   "action_requests": [{"name": "deploy", "args": {"n": n}}], "timeout": 30})
            elif n % 3 == 0:
                line = json.dumps({"type": "state_change", "machine_id": f"m-{n % 50}",
                                   "state": f"s{n % 7}", "data": {"n": n}})
            else:
                # ~400 bytes: enough bytes per second that the slow client's
                # kernel buffers fill within seconds and the relay's queue
                # for it overflows (1013), as on a real network.
                line = json.dumps({"type": "tick", "n": n, "pad": "p" * 360})
            w.write((line + "\n").encode())
            if n % 50 == 0:
                w.flush()
                # Pace to --rate: sleep until the next batch is due.
                due = start + n / self.args.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        w.flush()
        self.stats.inc("stdin_lines", n)

    async def well_behaved(self, idx):
        """Stays connected; every broadcast (seq) must arrive, in order."""
        async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
            port = ws.local_address[1]
            last = None
            while self.running():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except asyncio.TimeoutError:
                    continue
                except websockets.exceptions.ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd else None
                    self.stats.inc(f"well_behaved_closed_{code}")
                    at = self.args.seconds - (self.deadline - time.monotonic())
                    why = [line for line in self.relay_lines if f"127.0.0.1:{port})" in line]
                    print(f"soak: well-behaved client {idx} (port {port}) closed {code} at {at:.0f} s"
                          f" after seq {last}; relay: {why}", file=sys.stderr)
                    return
                msg = json.loads(raw)
                if msg.get("type") == "initial":
                    # History (events the snapshot already reflects) follows,
                    # then the live stream: one run of consecutive numbers
                    # from the first event on.
                    last = None
                    continue
                seq = msg.get("seq")
                if seq is None:
                    continue
                if last is not None and seq != last + 1:
                    self.stats.inc("lost", seq - last - 1 if seq > last else 1)
                    print(f"soak: client {idx}: seq {seq} after {last} ({msg.get('type')})", file=sys.stderr)
                last = seq
                self.stats.inc("delivered")
                if msg.get("type") == "decision":
                    self.decisions_seen.add(msg.get("interrupt_id"))
            self.stats.inc("well_behaved_ok")

    async def joiners(self):
        while self.running():
            t0 = time.monotonic()
            try:
                async with websockets.connect(self.url, max_size=None, max_queue=None, open_timeout=30,
                                              close_timeout=5) as ws:
                    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert first["type"] == "initial"
                    for _ in range(5):
                        await asyncio.wait_for(ws.recv(), 10)
                self.stats.inc("joins")
                self.stats.c["join_max_s"] = max(self.stats.c.get("join_max_s", 0), round(time.monotonic() - t0, 2))
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                self.stats.inc("join_errors")
                print(f"soak: joiner: {e!r}", file=sys.stderr)
            await asyncio.sleep(0.2)

    async def slow(self):
        """Reads one frame every 0.5 s for SLOW_PHASE_S, far behind the
        stream: the relay must close it, 1008 (its TCP never even received a
        ping: it reads too slowly) or 1013 (its queue overflowed). The close
        frame waits behind what the kernel holds, so it then reads at full
        speed to reach it, counts its code, and reconnects."""
        while self.running():
            # A small receive buffer, so the backlog is the relay's, not the kernel's.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader, writer = await raw_connect(self.port, self.path, sock)
            code = None
            try:
                phase_end = time.monotonic() + SLOW_PHASE_S
                while self.running() and time.monotonic() < phase_end and code is None:
                    op, payload = await asyncio.wait_for(raw_frame(reader), 30)
                    if op == 0x9:
                        writer.write(masked(0xA, payload))
                    if op == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    await asyncio.sleep(0.5)
                if code is None and time.monotonic() < phase_end:
                    writer.close()  # the run's end cut the phase short: not counted
                    break
                self.stats.inc("slow_connections")
                catch_up_end = time.monotonic() + 30
                while code is None and time.monotonic() < catch_up_end:
                    op, payload = await asyncio.wait_for(raw_frame(reader), 10)
                    if op == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.stats.inc(f"slow_closed_{code}" if code is not None else "slow_not_closed")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as e:
                self.stats.inc("slow_dropped_tcp")
                print(f"soak: slow client: {e!r}", file=sys.stderr)
            writer.close()

    async def silent(self):
        """Reads everything, answers no ping: each connection must end 1008."""
        while self.running():
            reader, writer = await raw_connect(self.port, self.path)
            self.stats.inc("silent_connections")
            opened = time.monotonic()
            try:
                while True:
                    op, payload = await asyncio.wait_for(raw_frame(reader), PING_INTERVAL + PING_TIMEOUT + 10)
                    if op == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        if code == 1008:
                            self.stats.inc("ping_timeouts_detected")
                            self.stats.c["ping_timeout_max_s"] = max(self.stats.c.get("ping_timeout_max_s", 0),
                                                                     round(time.monotonic() - opened, 2))
                        else:
                            self.stats.inc(f"silent_closed_{code}")
                        break
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as e:
                self.stats.inc("silent_not_closed")
                print(f"soak: silent client not closed 1008: {e!r}", file=sys.stderr)
            writer.close()
            if not self.running():
                # The last one may have been cut by the end of the run.
                break

    async def malformed(self):
        """Not JSON, binary, and oversize messages (1009), then reconnect."""
        while self.running():
            try:
                async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
                    await ws.send("not json {")
                    await ws.send(b"\x00\x01binary")
                    await ws.send(json.dumps({"type": "client_note", "n": 1}))
                    errors = 0
                    while errors < 2:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if msg.get("type") == "error":
                            errors += 1
                    self.stats.inc("error_replies", errors)
                    await ws.send("x" * (MAX_MESSAGE + 1))
                    try:
                        while True:
                            await asyncio.wait_for(ws.recv(), 10)
                    except websockets.exceptions.ConnectionClosed as e:
                        code = e.rcvd.code if e.rcvd else None
                        self.stats.inc(f"oversize_closed_{code}")
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                self.stats.inc("malformed_errors")
                print(f"soak: malformed client: {e!r}", file=sys.stderr)
            await asyncio.sleep(0.5)

    async def decider(self):
        """Approves every interrupt it sees."""
        async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
            while self.running():
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                except asyncio.TimeoutError:
                    continue
                if msg.get("type") == "interrupt":
                    await ws.send(json.dumps({"type": "decision", "interrupt_id": msg["interrupt_id"],
                                              "decisions": [{"type": "approve"}], "decided_by": "soak"}))
                    self.stats.inc("decisions_sent")

    async def sample_rss(self):
        start = time.monotonic()
        while self.running():
            self.rss.append((time.monotonic() - start, rss_kib(self.proc.pid)))
            await asyncio.sleep(1.0)

    def drain_stdout(self):
        """On a daemon thread: a blocked readline must not hold the exit."""
        for _ in self.proc.stdout:
            self.stats.inc("stdout_lines")

    async def run(self):
        threading.Thread(target=self.drain_stdout, daemon=True).start()
        tasks = [self.feed_stdin(), self.joiners(), self.slow(), self.silent(), self.malformed(),
                 self.decider(), self.sample_rss()] + [self.well_behaved(i) for i in range(4)]
        await asyncio.gather(*tasks)


def report(soak, seconds):
    s = soak.stats.c
    windows = 10
    width = seconds / windows
    per = []
    for w in range(windows):
        vals = [kib for t, kib in soak.rss if w * width <= t < (w + 1) * width]
        per.append(max(vals) if vals else 0)
    second, last = per[1], per[-1]
    growth = (last - second) / second if second else float("inf")
    pings_ok = s.get("silent_not_closed", 0) == 0 and s.get("ping_timeouts_detected", 0) >= max(1, s.get("silent_connections", 1) - 1)
    undecided = sorted(soak.interrupts_sent - soak.decisions_seen)
    rows = [
        ("duration", f"{seconds:.0f} s, stdin {s.get('stdin_lines', 0)} lines at ~{soak.args.rate:.0f}/s"),
        ("RSS per window (MiB)", " ".join(f"{kib / 1024:.1f}" for kib in per)),
        ("RSS last vs second window", f"{growth * 100:+.1f} % (limit +/-10 %)"),
        ("messages delivered to well-behaved clients", str(s.get("delivered", 0))),
        ("messages lost by well-behaved clients", str(s.get("lost", 0))),
        ("silent client: connections / closed 1008", f"{s.get('silent_connections', 0)} / {s.get('ping_timeouts_detected', 0)}"
         f" (longest {s.get('ping_timeout_max_s', 0)} s; ping {PING_INTERVAL} s, timeout {PING_TIMEOUT} s)"),
        ("slow client: connections / closes read, by code", f"{s.get('slow_connections', 0)} / "
         + (", ".join(f"{k[12:]}: {v}" for k, v in sorted(s.items()) if k.startswith("slow_closed_")) or "none")
         + f" (not closed: {s.get('slow_not_closed', 0)}, TCP dropped: {s.get('slow_dropped_tcp', 0)};"
         f" {SLOW_PHASE_S:.0f} s slow each)"),
        ("joins completed / errors", f"{s.get('joins', 0)} / {s.get('join_errors', 0)} (longest {s.get('join_max_s', 0)} s)"),
        ("malformed: error replies, oversize closes", f"{s.get('error_replies', 0)}, "
         + ", ".join(f"{k[16:]}: {v}" for k, v in sorted(s.items()) if k.startswith("oversize_closed_"))),
        ("stdin malformed / oversize lines", f"{s.get('stdin_malformed', 0)} / {s.get('stdin_oversize', 0)}"),
        ("interrupts sent / decided", f"{len(soak.interrupts_sent)} / {len(soak.interrupts_sent) - len(undecided)}"),
        ("client lines on stdout", str(s.get("stdout_lines", 0))),
    ]
    print("| soak | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    failures = []
    if not (abs(growth) <= 0.10):
        failures.append(f"RSS moved {growth * 100:+.1f} % between the second and the last window")
    if s.get("lost", 0):
        failures.append(f"{s['lost']} messages lost by well-behaved clients")
    if s.get("well_behaved_ok", 0) != 4:
        failures.append("a well-behaved client did not last the run")
    if not pings_ok:
        failures.append("the silent client was not closed 1008 every time")
    slow_codes = {k for k in s if k.startswith("slow_closed_")}
    if s.get("slow_not_closed", 0) or s.get("slow_dropped_tcp", 0) or slow_codes - {"slow_closed_1008", "slow_closed_1013"}:
        failures.append("the slow client was not closed 1008 or 1013 each time, or its close could not be read")
    if not s.get("slow_connections", 0):
        failures.append("the slow client never finished a slow phase")
    if undecided:
        failures.append(f"interrupts without a broadcast decision: {undecided[:5]}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="directory holding ws-relay")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=float, default=500, help="stdin events per second")
    args = ap.parse_args()
    proc = subprocess.Popen([os.path.join(args.bin, "ws-relay"), "--listen", "127.0.0.1:0", "--seq",
                             "--history", "100", "--max-queue", str(MAX_QUEUE),
                             "--max-message", str(MAX_MESSAGE), "--ping-interval", str(PING_INTERVAL),
                             "--ping-timeout", str(PING_TIMEOUT), "--hitl-timeout", "30", "-v"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        port = path = None
        while port is None:
            line = proc.stderr.readline().decode()
            if not line:
                sys.exit("soak: ws-relay exited before listening")
            m = LISTEN_RE.search(line)
            if m:
                port, path = int(m.group(2)), m.group(3)
        # Keep reading stderr (warnings about the bad lines) so it never fills.
        soak = Soak(args, proc, port, path)

        def drain_stderr():
            # Keeps the relay's lines about closes (-v), to explain a failure.
            for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                if "closing with" in line:
                    soak.relay_lines.append(line)
                    del soak.relay_lines[:-2000]
        threading.Thread(target=drain_stderr, daemon=True).start()
        asyncio.run(asyncio.wait_for(soak.run(), args.seconds + 120))
        failures = report(soak, args.seconds)
        if proc.poll() is not None:
            failures.append(f"ws-relay exited {proc.returncode} during the run")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    for f in failures:
        print(f"soak: FAIL: {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
