"""Shared helpers for the integration tests (run by /usr/bin/python3 -m pytest).

Every helper is bounded in time: processes are killed when a test ends, waits
take a timeout, ports come from the kernel (bind to port 0), addresses are
127.0.0.1 only.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
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
