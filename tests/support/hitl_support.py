# SPDX-License-Identifier: Apache-2.0
"""Helpers for the human-in-the-loop integration tests (tests/integration/test_hitl.py).

- Stack: `sm-listen --socket S | ws-relay --listen 127.0.0.1:0 ...`, the
  SPEC's pipeline, as two real processes joined by a pipe; or ws-relay alone
  with its stdin a pipe the test writes interrupts to (Stack(listener=False)).
  The relay's bound port comes from its stderr line "listening on ws://...".
- Watcher: a WebSocket client (python3-websockets, asyncio on its own
  thread) that records every message and can send; waits are bounded.
- ReplySocket: a bound AF_UNIX datagram socket standing in for a waiting
  sm-send, to see the relay's reply datagram.
- Pty: a child process on a pseudo-terminal (python's pty module) with an
  expect() on its screen output, for hitl-approve's interactive prompt.

Every wait takes a timeout; every process is killed when its context ends.
"""
import asyncio
import http.client
import json
import os
import pty
import queue
import re
import signal
import socket
import subprocess
import termios
import threading
import time

import websockets

from smws_test import Proc, short_tmpdir, rmtree, tool, wait_for

LISTEN_RE = re.compile(r"listening on (wss?://[^\s/]+:\d+/\S*)")


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def deploy_interrupt(interrupt_id=None, timeout=None, **extra):
    """The SPEC's example interrupt, with the fields a test wants."""
    event = {
        "type": "interrupt",
        "thread_id": "t-1",
        "action_requests": [{"name": "deploy", "args": {"env": "prod"},
                             "description": "Deploy build 42"}],
        "review_configs": [{"action_name": "deploy",
                            "allowed_decisions": ["approve", "edit", "reject"]}],
    }
    if interrupt_id is not None:
        event["interrupt_id"] = interrupt_id
    if timeout is not None:
        event["timeout"] = timeout
    event.update(extra)
    return event


class Lines:
    """Collects a binary pipe's lines on a thread; wait() for a matching one."""

    def __init__(self, pipe):
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._run, args=(pipe,), daemon=True).start()

    def _run(self, pipe):
        for raw in pipe:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait(self, predicate, timeout=10.0, what="line"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise TimeoutError(f"no {what} within {timeout}s; lines:\n" + "\n".join(self.lines[-20:]))
                self.cond.wait(min(left, 0.2))

    def text(self):
        with self.cond:
            return "\n".join(self.lines)

    def json_lines(self):
        out = []
        with self.cond:
            for line in self.lines:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


class Stack:
    """sm-listen | ws-relay (listener=True) or ws-relay fed by the test."""

    def __init__(self, *relay_args, listener=True, listen="127.0.0.1:0", timeout=15.0):
        self.dir = short_tmpdir()
        self.socket = os.path.join(self.dir, "events.sock")
        self.listener = None
        relay_cmd = [tool("ws-relay"), "--listen", listen, *relay_args]
        if listener:
            self.listener = Proc([tool("sm-listen"), "--socket", self.socket],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.relay = Proc(relay_cmd, stdin=self.listener.p.stdout)
            self.listener.p.stdout.close()  # the relay holds the read end now
            self.listener.p.stdout = None
            self.listener_err = Lines(self.listener.p.stderr)
            wait_for(lambda: os.path.exists(self.socket), timeout, what="sm-listen's socket")
        else:
            self.relay = Proc(relay_cmd, stdin=subprocess.PIPE)
        self.err = Lines(self.relay.p.stderr)
        self.out = Lines(self.relay.p.stdout)
        try:
            line = self.err.wait(lambda l: LISTEN_RE.search(l), timeout, what="listening line")
        except TimeoutError:
            self.close()
            raise
        self.url = LISTEN_RE.search(line).group(1)
        self.port = int(re.search(r":(\d+)/", self.url).group(1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.relay.kill()
        if self.listener:
            self.listener.kill()
        rmtree(self.dir)

    def feed(self, *events):
        """Writes events to ws-relay's stdin (Stack(listener=False) only)."""
        data = "".join((e if isinstance(e, str) else compact(e)) + "\n" for e in events)
        self.relay.p.stdin.write(data.encode())
        self.relay.p.stdin.flush()

    def sm_send(self, *args, background=False):
        """sm-send --socket S ARGS...: a Proc when background, else its result."""
        cmd = [tool("sm-send"), "--socket", self.socket, *args]
        if background:
            return Proc(cmd)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def clients(self):
        """Connected WebSocket clients, from the relay's /healthz."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            return json.loads(conn.getresponse().read())["clients"]
        finally:
            conn.close()

    def health(self):
        """(HTTP status, JSON body) of the relay's /healthz."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def metric(self, name):
        """The value of one unlabelled metric in the relay's /metrics."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            for line in conn.getresponse().read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
            return None
        finally:
            conn.close()

    def decisions_on_stdout(self):
        return [m for m in self.out.json_lines() if m.get("type") == "decision"]


class Watcher:
    """A WebSocket client on its own asyncio thread that keeps every message."""

    def __init__(self, url, timeout=10.0):
        self.url = url
        self.messages = []
        self.cond = threading.Condition()
        self.closed = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"no connection to {url} within {timeout}s")
        if self._error:
            raise self._error

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        # Let the library finish its closing handshake tasks, then stop.
        pending = asyncio.all_tasks(self._loop)
        if pending:
            self._loop.run_until_complete(asyncio.wait(pending, timeout=5))
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.close()

    async def _main(self):
        try:
            self.ws = await websockets.connect(self.url, ping_interval=None, max_size=None,
                                               open_timeout=10, close_timeout=2)
        except Exception as e:  # reported to the constructor
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                with self.cond:
                    self.messages.append(msg)
                    self.cond.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:
                pass

    def send(self, obj):
        text = obj if isinstance(obj, str) else compact(obj)
        asyncio.run_coroutine_threadsafe(self.ws.send(text), self._loop).result(10)

    def wait(self, predicate, timeout=10.0, what="message", start=0):
        """First message (from index start on) with predicate(msg) true."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for msg in self.messages[start:]:
                    if predicate(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise TimeoutError(f"no {what} within {timeout}s; got {self.messages[-6:]}")
                self.cond.wait(min(left, 0.2))

    def count(self):
        with self.cond:
            return len(self.messages)

    def of_type(self, type_, interrupt_id=None):
        with self.cond:
            return [m for m in self.messages if m.get("type") == type_ and
                    (interrupt_id is None or m.get("interrupt_id") == interrupt_id)]

    def interrupt(self, predicate=lambda m: True, timeout=10.0):
        """Waits for a live interrupt or one in a snapshot's pending list."""
        def find(msg):
            if msg.get("type") == "interrupt" and predicate(msg):
                return True
            if msg.get("type") == "initial":
                return any(predicate(p) for p in msg.get("pending", []))
            return False
        msg = self.wait(find, timeout, what="interrupt")
        if msg["type"] == "interrupt":
            return msg
        return next(p for p in msg["pending"] if predicate(p))

    def snapshot(self, timeout=10.0):
        """Asks for a fresh snapshot and returns it."""
        start = self.count()
        self.send({"type": "refresh"})
        return self.wait(lambda m: m.get("type") == "initial", timeout, what="snapshot", start=start)

    def close(self):
        if not self.closed and not self._loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self.ws.close(), self._loop).result(5)
            except Exception:
                pass
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ReplySocket:
    """A bound AF_UNIX datagram socket: what a waiting sm-send binds."""

    def __init__(self):
        self.dir = short_tmpdir()
        self.path = os.path.join(self.dir, "reply.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def recv(self, timeout=10.0):
        self.sock.settimeout(timeout)
        return json.loads(self.sock.recv(1 << 20))

    def close(self):
        self.sock.close()
        rmtree(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Pty:
    """A child on a pseudo-terminal; expect() waits for text on its screen."""

    def __init__(self, args, env=None, cols=120, rows=40):
        full_env = dict(os.environ)
        full_env.update(env or {})
        master, slave = pty.openpty()
        import fcntl
        import struct
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        self.p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=full_env,
                                  start_new_session=True, close_fds=True)
        os.close(slave)
        self.buffer = ""
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.buffer += data.decode("utf-8", "replace")
                self.cond.notify_all()

    def expect(self, pattern, timeout=10.0, start=0):
        """Waits until pattern (a regex) appears after offset start; returns
        the offset just past the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.buffer, start)
                if m:
                    return m.end()
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise TimeoutError(f"{pattern!r} not shown within {timeout}s; screen:\n"
                                       + self.buffer[-3000:])
                self.cond.wait(min(left, 0.2))

    def mark(self):
        with self.cond:
            return len(self.buffer)

    def text(self):
        with self.cond:
            return self.buffer

    def type(self, text):
        os.write(self.master, text.encode())

    def wait(self, timeout=10.0):
        return self.p.wait(timeout=timeout)

    def close(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)
        try:
            os.close(self.master)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def hitl_approve(*args, input=None, timeout=30.0, env=None):
    """Runs hitl-approve to completion without a TTY; CompletedProcess."""
    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return subprocess.run([tool("hitl-approve"), *args], input=input, capture_output=True,
                          text=True, timeout=timeout, env=full_env,
                          stdin=None if input is not None else subprocess.DEVNULL)
