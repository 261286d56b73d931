# SPDX-License-Identifier: Apache-2.0
"""A real redis-server for the ws-relay group tests (Debian's redis-server).

Each RedisServer runs on a free 127.0.0.1 port with a temp dir of its own,
never the system's instance; it is stopped by PID. start() waits for the
server's "Ready to accept connections" line (with a timeout), not a sleep.
`appendonly=True` keeps an AOF in the temp dir (fsync always), so a kill and
restart on the same port and dir keeps the data; restart(empty=True) starts
it on the same port with a fresh dir: Redis "lost its data".
"""
import os
import signal
import subprocess
import threading
import time

from smws_test import free_port, rmtree, short_tmpdir


class RedisServer:
    def __init__(self, *extra, appendonly=False, start=True):
        self.port = free_port()
        self.extra = list(extra)
        self.appendonly = appendonly
        self.dir = short_tmpdir()
        self.proc = None
        if start:
            self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout=15.0):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--daemonize", "no", "--loglevel", "notice"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args + self.extra, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        ready = threading.Event()
        seen = []

        def read(out):
            for raw in out:
                seen.append(raw.decode("utf-8", "replace"))
                if b"Ready to accept connections" in raw:
                    ready.set()
        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise TimeoutError("redis-server did not become ready:\n" + "".join(seen[-20:]))

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, empty=False):
        """Kills it and starts it again on the same port (same dir, or a new
        empty one)."""
        self.kill()
        if empty:
            rmtree(self.dir)
            self.dir = short_tmpdir()
        self.start()

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip()

    def close(self):
        self.kill()
        rmtree(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_health(relay, status, timeout=15.0):
    """Waits until the relay's /healthz answers HTTP `status`; returns its JSON."""
    import json
    deadline = time.monotonic() + timeout
    last = None
    while True:
        code, _, body = relay.http_get("/healthz")
        last = (code, body)
        if code == status:
            return json.loads(body)
        if time.monotonic() > deadline:
            raise TimeoutError(f"/healthz never answered {status}; last {last}")
        time.sleep(0.05)
