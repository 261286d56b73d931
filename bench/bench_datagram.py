#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""sm-send / sm-listen benchmarks (issue 2), each against baselines measured
in the same run; the figures that matter are the ratios.

Ingest: N events of ~120 bytes (as sent, timestamp included) through
`sm-send -` -> sm-listen -> /dev/null, zero loss checked (sm-listen --count N
must print all N). Baselines:
  ceiling  bench/raw_dgram_ceiling: a minimal sendmmsg/recvmmsg pair on the
           same socket type, doing nothing with the bytes;
  seed     the seed design: a Python receiver doing json.loads/json.dumps per
           datagram, fed by the raw sender (so it measures the receiver).
Rounds are interleaved (ceiling, ours, seed, ceiling, ...) and medians
compared, because the machine is shared and its load drifts.

Start-up: median wall time of `sm-send state_change -m w1 --state busy` (a
listener bound, so it really sends) against /bin/true and `socat -u` sending
the same datagram, timed by bench/spawn_timer (posix_spawn, no shell).

Environment: SMWS_BIN_DIR (release binaries), SMWS_BENCH_DIR (bench/*.cpp
binaries), SMWS_BENCH_EVENTS (default 1000000), SMWS_BENCH_ROUNDS (default 3),
SMWS_BENCH_SPAWNS (default 1000).
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SMWS_BIN_DIR") or os.path.join(HERE, "..", "build-release", "bin")
BENCH = os.environ.get("SMWS_BENCH_DIR") or os.path.join(HERE, "..", "build-release", "bench")
N = int(os.environ.get("SMWS_BENCH_EVENTS", "1000000"))
ROUNDS = int(os.environ.get("SMWS_BENCH_ROUNDS", "3"))
SPAWNS = int(os.environ.get("SMWS_BENCH_SPAWNS", "1000"))
TIMEOUT = 600

SEED_RECEIVER = r"""
import json, os, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print("ready", flush=True)
out = open("/dev/null", "w")
got = 0
while got < n:
    event = json.loads(s.recv(65536))
    out.write(json.dumps(event, separators=(",", ":")) + "\n")
    got += 1
out.flush()
os.unlink(path)
print(got, flush=True)
"""


def live(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_live(path, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while not live(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} never became live")
        time.sleep(0.01)


def make_events(path):
    with open(path, "w") as f:
        for i in range(N):
            f.write('{"type":"state_change","machine_id":"worker-%d","state":"processing",'
                    '"data":{"job":%d}}\n' % (i % 100, 100000 + i))


def ingest_ours(tmp, events):
    """sm-send - | sm-listen --count N; a lost event shows as sm-listen
    ending on its idle timeout with fewer than N printed."""
    sock = os.path.join(tmp, "ours.sock")
    listener = subprocess.Popen([os.path.join(BIN, "sm-listen"), "--socket", sock,
                                 "--count", str(N), "--idle-timeout", "10", "-v"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_live(sock, listener)
        start = time.monotonic()
        with open(events) as stdin:
            rc = subprocess.call([os.path.join(BIN, "sm-send"), "--socket", sock, "-"],
                                 stdin=stdin, timeout=TIMEOUT)
        listener.wait(timeout=TIMEOUT)
        seconds = time.monotonic() - start
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    err = listener.stderr.read()
    m = re.search(r"received (\d+) datagrams: (\d+) printed, \d+ filtered out by --type, (\d+) invalid", err)
    if rc != 0 or not m or int(m.group(2)) != N or int(m.group(3)) != 0:
        raise RuntimeError(f"ingest lost events or failed (sm-send rc={rc}): {err.strip()}")
    return N / seconds


def ingest_ceiling(tmp):
    out = subprocess.check_output([os.path.join(BENCH, "raw_dgram_ceiling"),
                                   os.path.join(tmp, "ceiling.sock"), str(N), "120"],
                                  text=True, timeout=TIMEOUT)
    fields = dict(kv.split("=") for kv in out.split())
    if int(fields["lost"]) != 0:
        raise RuntimeError(f"ceiling lost datagrams: {out}")
    return float(fields["rate"])


def ingest_seed(tmp):
    sock = os.path.join(tmp, "seed.sock")
    receiver = subprocess.Popen([sys.executable, "-c", SEED_RECEIVER, sock, str(N)],
                                stdout=subprocess.PIPE, text=True)
    try:
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError("seed receiver did not start")
        start = time.monotonic()
        subprocess.check_call([os.path.join(BENCH, "raw_dgram_ceiling"), "--send", sock, str(N),
                               "120"], timeout=TIMEOUT)
        got = int(receiver.stdout.readline())
        seconds = time.monotonic() - start
        receiver.wait(timeout=TIMEOUT)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    if got != N:
        raise RuntimeError(f"seed receiver got {got} of {N}")
    return N / seconds


def spawn_median(args, stdin_file):
    out = subprocess.check_output([os.path.join(BENCH, "spawn_timer"), str(SPAWNS), stdin_file,
                                   *args], text=True, timeout=TIMEOUT)
    return float(dict(kv.split("=") for kv in out.split())["median_us"])


def startup(tmp):
    sock = os.path.join(tmp, "startup.sock")
    event = os.path.join(tmp, "event.json")
    with open(event, "w") as f:
        f.write('{"type":"state_change","machine_id":"w1","state":"busy"}\n')
    listener = subprocess.Popen([os.path.join(BIN, "sm-listen"), "--socket", sock],
                                stdout=subprocess.DEVNULL)
    commands = {
        "/bin/true": ["/bin/true"],
        "sm-send": [os.path.join(BIN, "sm-send"), "--socket", sock, "state_change", "-m", "w1",
                    "--state", "busy"],
    }
    socat = shutil.which("socat")
    if socat:
        commands["socat -u"] = [socat, "-u", "STDIN", f"UNIX-SENDTO:{sock}"]
    results = {name: [] for name in commands}
    try:
        wait_live(sock, listener)
        for _ in range(ROUNDS):
            for name, args in commands.items():
                results[name].append(spawn_median(args, event))
    finally:
        listener.terminate()
        listener.wait(timeout=10)
    return {name: statistics.median(v) for name, v in results.items()}


def main():
    for path in (os.path.join(BIN, "sm-send"), os.path.join(BIN, "sm-listen"),
                 os.path.join(BENCH, "raw_dgram_ceiling"), os.path.join(BENCH, "spawn_timer")):
        if not os.path.exists(path):
            print(f"missing {path}: run `make release` first", file=sys.stderr)
            return 2
    tmp = tempfile.mkdtemp(prefix="smws-bench-", dir="/tmp")
    try:
        events = os.path.join(tmp, "events.ndjson")
        make_events(events)
        print(f"ingest: {N} events, {ROUNDS} interleaved rounds (median rates)", flush=True)
        rates = {"ceiling": [], "sm-send | sm-listen": [], "seed (python)": []}
        for r in range(ROUNDS):
            rates["ceiling"].append(ingest_ceiling(tmp))
            rates["sm-send | sm-listen"].append(ingest_ours(tmp, events))
            rates["seed (python)"].append(ingest_seed(tmp))
            print("  round %d: %s" % (r + 1, ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items())),
                  flush=True)
        med = {k: statistics.median(v) for k, v in rates.items()}
        ours = med["sm-send | sm-listen"]
        for k, v in med.items():
            print(f"  {k:22s} {v:12,.0f} events/s")
        print(f"  ours / ceiling = {ours / med['ceiling']:.2f}   (goal >= 0.5)")
        print(f"  ours / seed    = {ours / med['seed (python)']:.2f}   (goal >= 5)")
        print("  loss: none (every run printed all events)")

        print(f"start-up: median of {SPAWNS} runs x {ROUNDS} rounds", flush=True)
        times = startup(tmp)
        for k, v in times.items():
            print(f"  {k:22s} {v:8.1f} us")
        print(f"  sm-send / /bin/true = {times['sm-send'] / times['/bin/true']:.2f}   (goal <= 2)")
        if "socat -u" in times:
            print(f"  sm-send / socat -u  = {times['sm-send'] / times['socat -u']:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
