# SPDX-License-Identifier: Apache-2.0
"""Helpers for the sm-send / sm-listen integration tests: a running sm-listen
whose stdout lines can be awaited, and raw datagram sockets for the test's
own side of the conversation. Every wait has a timeout."""
import json
import os
import pwd
import queue
import re
import socket
import subprocess
import threading

from smws_test import Proc, tool, wait_for


class Lines:
    """Collects a stream's lines on a thread so tests can wait for them."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.all = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream):
        for raw in iter(stream.readline, b""):
            self.q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.q.put(None)

    def next(self, timeout=10.0):
        """The next line; raises TimeoutError, or EOFError at end of stream."""
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout}s (got {len(self.all)} so far)")
        if line is None:
            self.q.put(None)
            raise EOFError(f"stream ended after {len(self.all)} lines")
        self.all.append(line)
        return line

    def take(self, n, timeout=10.0):
        return [self.next(timeout) for _ in range(n)]

    def rest(self, timeout=10.0):
        """Every remaining line until the stream ends."""
        out = []
        while True:
            try:
                out.append(self.next(timeout))
            except EOFError:
                return out


class Listener:
    """sm-listen on `path`, started and waited for (the socket is live);
    stdout and stderr collected as lines. Always stopped on exit."""

    def __init__(self, path, *args, env=None, stdout=subprocess.PIPE):
        self.path = path
        self.proc = Proc([tool("sm-listen"), "--socket", path, *args], env=env, stdout=stdout)
        self.out = Lines(self.proc.p.stdout) if stdout == subprocess.PIPE else None
        self.err = Lines(self.proc.p.stderr)

    def __enter__(self):
        try:
            wait_for(lambda: is_live(self.path) or self.proc.p.poll() is not None,
                     timeout=10, what="sm-listen to bind")
        except Exception:
            self.proc.kill()
            raise
        return self

    def __exit__(self, *exc):
        self.proc.kill()

    def events(self, n, timeout=10.0):
        return [json.loads(line) for line in self.out.take(n, timeout)]

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout)


def is_live(path):
    """True when a datagram socket is bound at path (a stale file is not)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def bound_socket(path):
    """A datagram socket the test itself binds (e.g. to play the relay)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s


def sender(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(path)
    return s


def leave_stale_socket(path):
    """A socket file with nobody behind it, as a killed listener leaves."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.close()
    assert os.path.exists(path)


def kernel_sender(pid, uid=None):
    """The "sender" sm-listen adds to an event sent by process pid (SPEC
    "Policies": from the kernel's credentials, never the datagram's)."""
    uid = os.getuid() if uid is None else uid
    return {"uid": uid, "user": pwd.getpwuid(uid).pw_name, "pid": pid}


def with_sender(line, pid, uid=None):
    """The line sm-listen prints for `line` (an event without a sender, as
    sent, trimmed) from process pid: the sender appended as its last member."""
    assert line.endswith("}")
    return line[:-1] + ',"sender":' + json.dumps(kernel_sender(pid, uid), separators=(",", ":")) + "}"


SENDER_AT_END = re.compile(r'(.*),"sender":(\{"uid":\d+(?:,"user":"[^"]*")?,"pid":-?\d+\})\}')


def without_sender(line, uid=None):
    """An sm-listen line with the "sender" it appended taken off again (after
    checking it names this uid, or `uid`): the event as sent, byte for byte."""
    m = SENDER_AT_END.fullmatch(line)
    assert m, f"no sender appended: {line[:200]}"
    sender = json.loads(m.group(2))
    expected = os.getuid() if uid is None else uid
    assert sender["uid"] == expected and sender["user"] == pwd.getpwuid(expected).pw_name, sender
    return m.group(1) + "}"

