# SPDX-License-Identifier: Apache-2.0
"""Shared helpers for the integration tests (run by /usr/bin/python3 -m pytest).

Every helper is bounded in time: processes are killed when a test ends, waits
take a timeout, ports come from the kernel (bind to port 0), addresses are
127.0.0.1 only.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

BIN_DIR = os.environ.get("SMWS_BIN_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin")
SOURCE_DIR = os.environ.get("SMWS_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")


def tool(name):
    """Absolute path of a built tool in build/bin."""
    path = os.path.abspath(os.path.join(BIN_DIR, name))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} not built at {path}")
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmpdir():
    """A fresh directory with a short path (Unix socket paths max 107 bytes)."""
    return tempfile.mkdtemp(prefix="smws-", dir="/tmp")


def wait_for(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Polls predicate() until it is truthy; raises TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A child process that is always stopped: use as a context manager."""

    def __init__(self, args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, env=None, **kw):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.args = args
        self.p = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr,
                                  env=full_env, start_new_session=True, **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)

    def wait(self, timeout=10.0):
        return self.p.wait(timeout=timeout)

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass


def run(args, input=None, timeout=30.0, env=None):
    """Runs a command to completion; returns CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(args, input=input, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


# --- a ws-relay's (or any of our servers') bound address --------------------

# The one "listening on" line every server of ours prints on stderr (ws-relay,
# the benchmarks' baselines): scheme, host (IPv6 in brackets), port, path.
LISTEN_RE = re.compile(r"listening on (wss?)://([^\s/\[\]:]+|\[[^\]]+\]):(\d+)(/\S*)")


class LinePump:
    """Reads a child's pipe (stdout or stderr) on a thread of its own, so the
    child never blocks on a full pipe and every wait can time out. Keeps every
    line (decoded, without its newline): search them with wait_match(), or
    take them in order with next()."""

    def __init__(self, pipe, until=None):
        """until: a regex; once a line matches it the pump stops reading
        (the pipe stays open and fills up: a reader that went away)."""
        self._lines = []
        self._taken = 0
        self._eof = False
        self._cond = threading.Condition()
        self._until = re.compile(until) if isinstance(until, str) else until
        threading.Thread(target=self._run, args=(pipe,), daemon=True).start()

    def _run(self, pipe):
        try:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
                if self._until and self._until.search(line):
                    return  # no EOF: the pipe is left unread
        except (ValueError, OSError):
            pass  # Proc.kill() closed the pipe under us: that is the end too
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def text(self):
        with self._cond:
            return "\n".join(self._lines)

    def wait_match(self, pattern, timeout=10.0):
        """The first line so far or to come that matches pattern (a regex or
        a compiled one); TimeoutError naming what was seen."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            checked = 0
            while True:
                for line in self._lines[checked:]:
                    if rx.search(line):
                        return line
                checked = len(self._lines)
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "the pipe closed" if self._eof else f"{timeout}s passed"
                    raise TimeoutError(f"no line matching {rx.pattern!r} ({why}); so far:\n"
                                       + "\n".join(self._lines[-20:]))
                self._cond.wait(left)

    def next(self, timeout=10.0):
        """The next line not yet taken; None at EOF; TimeoutError if none comes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._taken == len(self._lines):
                left = deadline - time.monotonic()
                if self._eof:
                    return None
                if left <= 0:
                    raise TimeoutError(f"no line within {timeout}s")
                self._cond.wait(left)
            self._taken += 1
            return self._lines[self._taken - 1]

    def pending(self):
        """The lines not yet taken, without waiting (and takes them)."""
        with self._cond:
            out = self._lines[self._taken:]
            self._taken = len(self._lines)
            return out
