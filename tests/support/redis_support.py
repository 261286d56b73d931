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


class Sentinel:
    """Debian's redis-sentinel watching one master (`name`) on a free port,
    with a config file in a temp dir of its own (Sentinel rewrites it), and
    fast settings so a test's failover takes seconds: the master is down
    after `down_after_ms` without a reply, and a failover that stalls is
    retried after `failover_timeout_ms`. Stopped by PID. start() waits for
    its "+monitor master" line. Context manager."""

    def __init__(self, master_port, name="mymaster", down_after_ms=1000, failover_timeout_ms=3000):
        self.port = free_port()
        self.name = name
        self.dir = short_tmpdir()
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\ndaemonize no\n"
                    f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
                    f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                    f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                    f"sentinel parallel-syncs {name} 2\n")
        self.lines = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(["redis-sentinel", self.conf], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.wait_line("+monitor master", timeout=15)
        except TimeoutError:
            self.close()
            raise

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _read(self):
        for raw in self.proc.stdout:
            with self._cv:
                self.lines.append(raw.decode("utf-8", "replace"))
                self._cv.notify_all()

    def wait_line(self, text, timeout=15.0, after=0):
        """Waits for a log line containing text (from line index `after` on);
        returns the number of lines seen so far."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if any(text in line for line in self.lines[after:]):
                    return len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"redis-sentinel never logged {text!r}:\n" + "".join(self.lines[-20:]))
                self._cv.wait(left)

    def master(self):
        """(host, port) the Sentinel names as the master now."""
        r = subprocess.run(["redis-cli", "-p", str(self.port), "SENTINEL", "get-master-addr-by-name",
                            self.name], capture_output=True, text=True, timeout=10)
        host, port = r.stdout.split()
        return host, int(port)

    def close(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        rmtree(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def start_replica(master):
    """A redis-server replicating `master`, returned once its link is up."""
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port))
    deadline = time.monotonic() + 15
    while "master_link_status:up" not in replica.cli("INFO", "replication"):
        if time.monotonic() > deadline:
            replica.close()
            raise TimeoutError("the replica never synced with its master")
        time.sleep(0.05)
    return replica
