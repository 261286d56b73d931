# SPDX-License-Identifier: Apache-2.0
"""The Debian package and the service it installs (SPEC "Installing and running
as a service"; docs/running-as-a-service.md).

Needs the .deb that `make deb` builds in the release tree (`make test` builds
it first): $SMWS_RELEASE_DIR, else build-release/ in the source tree. This
machine need not run systemd as PID 1, so the unit is checked offline
(systemd-analyze) and its ExecStart is run by hand, as the unit's user would
run it, in a tree unpacked from the .deb.
"""
import asyncio
import glob
import gzip
import json
import os
import stat as stat_mod
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import websockets

from smws_test import SOURCE_DIR, Proc, run, wait_for

TOOLS = ["sm-send", "sm-listen", "ws-relay", "ws-probe", "hitl-approve"]
RELEASE_DIR = os.environ.get("SMWS_RELEASE_DIR") or os.path.join(SOURCE_DIR, "build-release")
UNIT = "lib/systemd/system/smws-relay.service"
RUN_SCRIPT = "usr/libexec/smws/smws-relay-run"
DEFAULTS = "etc/default/smws-relay"
PROBE_UNIT = "lib/systemd/system/smws-probe.service"
PROBE_CONFIG = "etc/smws/probe.json"
# Stand-ins for the package's user and group (the test does not create users):
# the service runs as nobody:nogroup, a producer as another uid in that group.
SERVICE_UID, SERVICE_GID, PRODUCER_UID = 65534, 65534, 65533


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"project\(smws VERSION (\d+\.\d+\.\d+)", f.read()).group(1)


@pytest.fixture(scope="module")
def deb():
    debs = glob.glob(os.path.join(RELEASE_DIR, "smws_*.deb"))
    assert len(debs) == 1, f"expected one smws_*.deb in {RELEASE_DIR} (run `make deb`), found {debs}"
    return debs[0]


@pytest.fixture(scope="module")
def root(deb):
    """The .deb unpacked into a temporary root, readable by the service user."""
    path = tempfile.mkdtemp(prefix="smws-pkg-", dir="/tmp")
    os.chmod(path, 0o755)
    r = run(["dpkg-deb", "-x", deb, path])
    assert r.returncode == 0, r.stderr
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmp():
    path = tempfile.mkdtemp(prefix="smws-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def deb_field(deb, field):
    r = run(["dpkg-deb", "-f", deb, field])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_deb_holds_binaries_man_pages_completions_unit_docs_and_conffile(deb):
    r = run(["dpkg-deb", "-c", deb])
    assert r.returncode == 0, r.stderr
    listed = {}
    for line in r.stdout.splitlines():
        fields = line.split()
        listed[fields[-1].lstrip(".")] = fields[0]
    expected = [f"/usr/bin/{t}" for t in TOOLS]
    expected += [f"/usr/share/man/man1/{t}.1.gz" for t in TOOLS]
    expected += [f"/usr/share/bash-completion/completions/{t}" for t in TOOLS]
    expected += [f"/usr/share/zsh/vendor-completions/_{t}" for t in TOOLS]
    expected += [f"/usr/share/fish/vendor_completions.d/{t}.fish" for t in TOOLS]
    expected += ["/" + PROBE_UNIT, "/" + PROBE_CONFIG, "/usr/share/doc/smws/monitoring.md",
                 "/usr/share/doc/smws/monitoring/alerts.yml", "/usr/share/doc/smws/monitoring/alerts_test.yml",
                 "/usr/share/doc/smws/monitoring/grafana-smws.json"]
    expected += ["/" + UNIT, "/" + RUN_SCRIPT, "/" + DEFAULTS,
                 "/usr/share/doc/smws/copyright", "/usr/share/doc/smws/changelog.gz",
                 "/usr/share/doc/smws/README.md", "/usr/share/doc/smws/running-as-a-service.md",
                 "/usr/share/lintian/overrides/smws"]
    missing = [p for p in expected if p not in listed]
    assert not missing, f"missing from the .deb: {missing}"
    for t in TOOLS:
        assert listed[f"/usr/bin/{t}"] == "-rwxr-xr-x"
    assert listed["/" + RUN_SCRIPT] == "-rwxr-xr-x"
    # It may hold the token: root only (systemd reads it before dropping privileges).
    assert listed["/" + DEFAULTS] == "-rw-------"
    assert listed["/" + PROBE_CONFIG] == "-rw-r--r--"  # names token files, holds no secret

    with tempfile.TemporaryDirectory() as ctrl:
        r = run(["dpkg-deb", "-e", deb, ctrl])
        assert r.returncode == 0, r.stderr
        with open(os.path.join(ctrl, "conffiles"), encoding="utf-8") as f:
            assert f.read().split() == ["/" + DEFAULTS, "/" + PROBE_CONFIG]
        for script in ("postinst", "prerm", "postrm"):
            assert os.access(os.path.join(ctrl, script), os.X_OK), script


def test_the_deb_version_is_the_project_version_and_dependencies_come_from_the_binaries(deb):
    version = project_version()
    assert deb_field(deb, "Version") == version
    assert os.path.basename(deb) == f"smws_{version}_{deb_field(deb, 'Architecture')}.deb"
    depends = deb_field(deb, "Depends")
    # ws-relay links POCO and OpenSSL; shlibdeps names their packages.
    for library in ("libc6", "libstdc++6", "libpoconet80", "libpoconetssl80", "libssl3"):
        assert re.search(rf"(^|, ){re.escape(library)} ", depends), depends
    assert re.search(r"(^|, )adduser(,|$)", depends), depends


def test_the_changelog_names_the_package_version(root):
    with gzip.open(os.path.join(root, "usr/share/doc/smws/changelog.gz"), "rt") as f:
        first = f.readline()
    assert first.startswith(f"smws ({project_version()}) "), first


@pytest.mark.parametrize("name", TOOLS)
def test_each_unpacked_binary_prints_its_version(root, name):
    r = run([os.path.join(root, "usr/bin", name), "--version"], timeout=10)
    assert r.returncode == 0, r.stderr
    # NAME VERSION; in a git checkout the version carries the git description.
    # The second line names the licence (issue 24).
    assert re.fullmatch(rf"{re.escape(name)} {re.escape(project_version())}(\+git\.[0-9A-Za-z.]+)?\n"
                        r"License: Apache-2\.0\n", r.stdout), r.stdout


def deb822_paragraphs(path):
    """The paragraphs of a deb822 file (Debian's copyright-format 1.0) as
    dicts; a continuation line (leading space) extends the field before it."""
    paragraphs, fields, name = [], {}, None
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            if not line.strip():
                if fields:
                    paragraphs.append(fields)
                fields, name = {}, None
            elif line[0] in " \t":
                assert name, f"{path}: continuation line before any field: {line!r}"
                fields[name] += "\n" + line[1:]
            else:
                name, sep, value = line.partition(":")
                assert sep and re.fullmatch(r"[!-9;-~]+", name), f"{path}: not a field: {line!r}"
                assert name not in fields, f"{path}: {name} twice in one paragraph"
                fields[name] = value.strip()
    if fields:
        paragraphs.append(fields)
    return paragraphs


def test_copyright_is_machine_readable_and_names_apache_2(root, deb):
    paragraphs = deb822_paragraphs(os.path.join(root, "usr/share/doc/smws/copyright"))
    header, rest = paragraphs[0], paragraphs[1:]
    assert header["Format"] == "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    files = [p for p in rest if "Files" in p]
    assert files and files[0]["Files"] == "*" and files[0]["License"] == "Apache-2.0", files
    assert all(p["Copyright"] for p in files)
    # Every licence a Files paragraph names has its text in a stand-alone paragraph.
    texts = {p["License"].split("\n")[0]: p["License"] for p in rest if "Files" not in p}
    for p in files:
        assert p["License"] in texts, p
    assert "/usr/share/common-licenses/Apache-2.0" in texts["Apache-2.0"]
    # What sm-send and sm-listen carry from their static link: glibc, the GCC
    # runtime and libstdc++, and the two header-only libraries.
    for name in ["LGPL-2.1+", "GPL-3+ with GCC-exception-3.1 exception", "BSD-3-clause", "Expat"]:
        assert name in texts, name
    assert all(word in header["Comment"] for word in ["GNU C Library", "libstdc++", "CLI11", "nlohmann/json"])
    # The maintainer is the project's role address, not the old placeholder.
    assert "example.org" not in deb_field(deb, "Maintainer")


def test_lintian_reports_no_errors(deb):
    r = run(["lintian", "--display-info", "--no-tag-display-limit", deb], timeout=300)
    tags = [line for line in r.stdout.splitlines() if re.match(r"[EWIPXO]: ", line)]
    errors = [t for t in tags if t.startswith("E: ")]
    assert not errors, "\n".join(tags)
    # The release build is hardened (cmake/Hardening.cmake).
    assert not [t for t in tags if "hardening-" in t], "\n".join(tags)
    # The copyright file passes lintian's copyright-format checks (a Debian
    # copyright tag names "copyright" or "dep5").
    assert not [t for t in tags if "copyright" in t or "dep5" in t], "\n".join(tags)
    # The warnings docs/running-as-a-service.md explains; a new one fails
    # here so that it is looked at (and explained or fixed).
    warnings = [t for t in tags if t.startswith("W: ")]
    assert warnings == ["W: smws: non-standard-file-perm 0600 != 0644 [etc/default/smws-relay]"], \
        "\n".join(tags)


def offline_root(root, tmp):
    """A root for systemd-analyze: the unpacked package plus the host's units
    (the unit's default dependencies, sysinit.target and so on)."""
    offline = os.path.join(tmp, "root")
    shutil.copytree(root, offline, symlinks=True)
    units = os.path.join(offline, "lib/systemd/system")
    for entry in os.listdir("/lib/systemd/system"):
        if not os.path.lexists(os.path.join(units, entry)):
            source = os.path.join("/lib/systemd/system", entry)
            if os.path.isfile(source) and not os.path.islink(source):
                shutil.copy(source, units)
    return offline


@pytest.mark.parametrize("unit", [UNIT, PROBE_UNIT])
def test_systemd_analyze_verifies_the_unit(root, tmp, unit):
    offline = offline_root(root, tmp)
    # MANPATH: verify checks that the Documentation= man pages exist.
    r = run(["systemd-analyze", "verify", f"--root={offline}", "/" + unit], timeout=60,
            env={"MANPATH": os.path.join(offline, "usr/share/man")})
    assert r.returncode == 0 and not r.stdout and not r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("unit", [UNIT, PROBE_UNIT])
def test_systemd_analyze_rates_the_units_exposure_under_5(root, unit):
    r = run(["systemd-analyze", "security", "--offline=yes", os.path.join(root, unit)], timeout=60)
    assert r.returncode == 0, r.stderr
    name = os.path.basename(unit)
    m = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", r.stdout)
    assert m, r.stdout
    print(f"{name} exposure {m.group(1)}")
    assert float(m.group(1)) < 5.0, r.stdout


def test_the_probe_units_exec_start_serves_with_the_packaged_config(root, tmp):
    """smws-probe.service's ExecStart by hand, as user smws would run it:
    the packaged ws-probe and /etc/smws/probe.json, port 0 for the unit's
    9116; a loopback /probe answers, a foreign target is refused, SIGTERM
    ends it with 0."""
    with open(os.path.join(root, PROBE_UNIT), encoding="utf-8") as f:
        unit = f.read()
    assert "User=smws\n" in unit and "Environment=SMWS_PROBE_LISTEN=127.0.0.1:9116\n" in unit
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
    assert exec_start == ["/usr/bin/ws-probe", "--serve", "${SMWS_PROBE_LISTEN}", "--config", "/" + PROBE_CONFIG]
    argv = [os.path.join(root, exec_start[0].lstrip("/")), "--serve", "127.0.0.1:0",
            "--config", os.path.join(root, PROBE_CONFIG)]
    with Proc(as_user(SERVICE_UID, SERVICE_GID) + argv) as proc:
        line = proc.p.stderr.readline().decode()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/probe", line)
        assert m, line
        port = int(m.group(1))
        import urllib.error
        import urllib.request

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        status, body = get("/probe?module=ws_1s&target=ws://127.0.0.1:9/ws")
        assert status == 200 and 'probe_websocket_cause_info{cause="unreachable"' in body, body
        status, body = get("/probe?target=ws://192.0.2.1/ws")
        assert status == 403, body
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(timeout=20) == 0


def test_every_man_page_renders_without_groff_warnings(root):
    for name in TOOLS:
        with gzip.open(os.path.join(root, f"usr/share/man/man1/{name}.1.gz"), "rb") as f:
            page = f.read()
        r = subprocess.run(["groff", "-ww", "-z", "-man", "-Tutf8"], input=page,
                           capture_output=True, timeout=30)
        assert r.returncode == 0 and not r.stderr, f"{name}.1: {r.stderr.decode()}"


def clean_make_env():
    # Not the jobserver of a `make test` that may be running this test.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return env


def test_make_install_puts_completions_where_bash_zsh_and_fish_load_them(tmp):
    dest = os.path.join(tmp, "dest")
    r = subprocess.run(["make", "-C", SOURCE_DIR, "install", f"DESTDIR={dest}", "PREFIX=/usr/local",
                        f"RELEASE_DIR={RELEASE_DIR}"],
                       capture_output=True, text=True, timeout=600, env=clean_make_env())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    share = os.path.join(dest, "usr/local/share")
    # Another prefix, the same layout: the unit runs the script of its own prefix.
    with open(os.path.join(dest, "usr/local/lib/systemd/system/smws-relay.service"), encoding="utf-8") as f:
        unit = f.read()
    assert "ExecStart=/usr/local/libexec/smws/smws-relay-run\n" in unit
    assert "EnvironmentFile=-/usr/local/etc/default/smws-relay\n" in unit
    with open(os.path.join(dest, "usr/local/lib/systemd/system/smws-probe.service"), encoding="utf-8") as f:
        probe_unit = f.read()
    assert "--config /usr/local/etc/smws/probe.json\n" in probe_unit
    assert "ExecStart=/usr/local/bin/ws-probe --serve" in probe_unit
    assert os.path.isfile(os.path.join(dest, "usr/local/etc/smws/probe.json"))
    assert os.path.isfile(os.path.join(dest, "usr/local/etc/default/smws-relay"))

    bash_dir = os.path.join(share, "bash-completion/completions")
    zsh_dir = os.path.join(share, "zsh/vendor-completions")
    fish_dir = os.path.join(share, "fish/vendor_completions.d")
    for name in TOOLS:
        r = run(["bash", "--norc", "--noprofile", "-c",
                 f'source "{bash_dir}/{name}" && complete -p {name}'], timeout=30)
        assert r.returncode == 0 and name in r.stdout, f"bash {name}: {r.stdout}{r.stderr}"
        # zsh's compinit reads #compdef lines from fpath and records the function.
        r = run(["zsh", "-f", "-c",
                 f'fpath=("{zsh_dir}" $fpath); autoload -Uz compinit; compinit -u -D; '
                 f'print -r -- "${{_comps[{name}]}}"'], timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == f"_{name}", f"zsh {name}: {r.stdout}{r.stderr}"
        # fish offers the tool's options once the directory is on its path
        # (and the tool on PATH; without the file it offers nothing).
        r = run(["fish", "--no-config", "-c",
                 f'set -p fish_complete_path "{fish_dir}"; complete -C"{name} --"'],
                timeout=30, env={"PATH": os.path.join(dest, "usr/local/bin") + ":/usr/bin:/bin"})
        assert r.returncode == 0 and "--help" in r.stdout, f"fish {name}: {r.stdout}{r.stderr}"


def unit_line(root, key):
    with open(os.path.join(root, UNIT), encoding="utf-8") as f:
        values = [line.split("=", 1)[1].strip() for line in f if line.startswith(key + "=")]
    assert len(values) == 1, f"{key}= {values}"
    return values[0]


def defaults_env(root):
    """/etc/default/smws-relay as systemd's EnvironmentFile= reads it."""
    env = {}
    with open(os.path.join(root, DEFAULTS), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
    return env


def as_user(uid, gid, groups=()):
    """Prefix for a command that runs as uid:gid (when this test is root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}",
            "--groups=" + ",".join(map(str, groups)) if groups else "--clear-groups", "--"]


class Service:
    """The unit's ExecStart run by hand: the unit's command line, the
    environment of its defaults file with paths moved to a temp dir (and port
    0), the unit's user, and SIGTERM to the main process only, as systemd
    sends it with the unit's KillMode=mixed."""

    def __init__(self, root, tmp, **overrides):
        assert unit_line(root, "KillMode") == "mixed"
        assert unit_line(root, "User") == "smws"
        self.exec_start = unit_line(root, "ExecStart")
        # The unit's RuntimeDirectory= (0750, the service's group): the socket's directory.
        self.run_dir = os.path.join(tmp, "run")
        os.mkdir(self.run_dir, 0o750)
        if os.geteuid() == 0:
            os.chown(self.run_dir, SERVICE_UID, SERVICE_GID)
            os.chown(tmp, SERVICE_UID, SERVICE_GID)
        self.socket = os.path.join(self.run_dir, "events.sock")
        env = defaults_env(root)
        assert env["SM_SOCKET"] == "/run/smws/events.sock"
        assert env["SMWS_AUDIT"].startswith("/var/lib/smws/")
        env.update(SM_SOCKET=self.socket, SMWS_LISTEN="127.0.0.1:0",
                   SMWS_AUDIT=os.path.join(tmp, "audit.ndjson"), PATH="/usr/bin:/bin")
        env.update(overrides)
        # The command line is the unit's, inside the unpacked root.
        argv = as_user(SERVICE_UID, SERVICE_GID) + [os.path.join(root, self.exec_start.lstrip("/"))]
        self.proc = Proc(argv, env=env)
        self.p = self.proc.p
        self.stderr_lines = []
        self._partial = b""

    def read_stderr_until(self, pattern, timeout=15.0):
        """Reads stderr lines until one matches; returns the match."""
        fd = self.p.stderr.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                for line in self.stderr_lines:
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no stderr line matching {pattern!r}: {self.stderr_lines}")
                if sel.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise EOFError(f"stderr ended before {pattern!r}: {self.stderr_lines}")
                    self._partial += chunk
                    *complete, self._partial = self._partial.split(b"\n")
                    self.stderr_lines += [l.decode("utf-8", "replace") + "\n" for l in complete]

    def rest_of_stderr(self):
        """The whole of stderr, once the process has exited."""
        fd = self.p.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        self.stderr_lines += [l.decode("utf-8", "replace") + "\n" for l in complete]
        return self.stderr_lines


def send_as(root, uid, gid, groups, socket_path, *args):
    return run(as_user(uid, gid, groups) + [os.path.join(root, "usr/bin/sm-send"),
                                            "--socket", socket_path, "--strict", *args], timeout=30)


async def watch(url, service, root, tmp):
    async with websockets.connect(url, open_timeout=10, close_timeout=10) as ws:
        initial = await asyncio.wait_for(ws.recv(), 10)
        assert '"type":"initial"' in initial
        # A producer in the service's group reaches the socket.
        r = await asyncio.to_thread(send_as, root, PRODUCER_UID, PRODUCER_UID, [SERVICE_GID],
                                    service.socket, "state_change", "-m", "worker-1",
                                    "--state", "processing", "job_id=42")
        assert r.returncode == 0, r.stderr
        event = await asyncio.wait_for(ws.recv(), 10)
        assert '"machine_id":"worker-1"' in event and '"state":"processing"' in event
        # systemctl stop: SIGTERM to the main process (the script) only.
        service.p.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        return closed.value


def test_the_units_exec_start_runs_the_pipeline_and_a_stop_ends_it_cleanly(root, tmp):
    service = Service(root, tmp)
    with service.proc:
        m = service.read_stderr_until(r"ws-relay: listening on (ws://\S+)")
        wait_for(lambda: os.path.exists(service.socket), what="the datagram socket")
        if os.geteuid() == 0:
            st = os.stat(service.socket)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (SERVICE_UID, SERVICE_GID, 0o660)
        closed = asyncio.run(watch(m.group(1), service, root, tmp))
        assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
        assert service.p.wait(timeout=20) == 0
        lines = service.rest_of_stderr()
    assert not os.path.exists(service.socket), "sm-listen left its socket behind"
    # Journal-friendly: every line names its tool first, no colour codes.
    for line in lines:
        assert re.match(r"(sm-listen|ws-relay|smws-relay-run): ", line), lines
        assert "\x1b" not in line, lines


IMPOSTOR_UID = 65532


def forge_reply(reply_to, text):
    """A datagram to reply_to from a member of the service's group that is
    not the service: sm-send must not take it for the relay's answer."""
    code = ("import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "s.sendto(sys.argv[2].encode(), sys.argv[1])")
    return run(as_user(IMPOSTOR_UID, IMPOSTOR_UID, [SERVICE_GID]) + ["/usr/bin/python3", "-c", code, reply_to, text],
               timeout=30)


async def approve_from_a_browser(url, service, root):
    async with websockets.connect(url, open_timeout=10, close_timeout=10) as ws:
        assert '"type":"initial"' in await asyncio.wait_for(ws.recv(), 10)
        sender = asyncio.create_task(asyncio.to_thread(
            send_as, root, PRODUCER_UID, PRODUCER_UID, [SERVICE_GID], service.socket,
            "--wait-reply", "30", "--json",
            '{"type":"interrupt","interrupt_id":"deploy-7","action_requests":[{"name":"deploy"}]}'))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if msg.get("type") == "interrupt":
                break
        # reply_to never reaches a client (SPEC "Replies bound to their
        # request"); the impostor finds the socket in the shared directory.
        assert "reply_to" not in msg, msg
        reply_dir = os.path.join(service.run_dir, "reply")
        socks = [os.path.join(d, n) for d, _, names in os.walk(reply_dir) for n in names
                 if stat_mod.S_ISSOCK(os.stat(os.path.join(d, n)).st_mode)]
        assert len(socks) == 1, socks
        reply_to = socks[0]
        assert reply_to.startswith(os.path.join(service.run_dir, "reply") + "/"), reply_to
        st = os.stat(reply_to)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (PRODUCER_UID, SERVICE_GID, 0o660)
        forged = await asyncio.to_thread(forge_reply, reply_to, json.dumps(
            {"type": "decision", "interrupt_id": "deploy-7", "decisions": [{"type": "reject"}]}))
        assert forged.returncode == 0, forged.stderr
        await ws.send(json.dumps({"type": "decision", "interrupt_id": "deploy-7",
                                  "decisions": [{"type": "approve"}], "decided_by": "ops"}))
        return await asyncio.wait_for(sender, 30)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as other users")
def test_wait_reply_from_a_producer_in_the_services_group_gets_the_relays_answer_only(root, tmp):
    service = Service(root, tmp)
    with service.proc:
        m = service.read_stderr_until(r"ws-relay: listening on (ws://\S+)")
        wait_for(lambda: os.path.exists(service.socket), what="the datagram socket")
        st = os.stat(os.path.join(service.run_dir, "reply"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (SERVICE_UID, SERVICE_GID, 0o3770)
        r = asyncio.run(approve_from_a_browser(m.group(1), service, root))
        # The relay's approve, not the impostor's reject.
        assert r.returncode == 0, r.stderr
        assert '"type":"approve"' in r.stdout, r.stdout
        assert f"ignoring a reply from uid {IMPOSTOR_UID}" in r.stderr, r.stderr
        service.p.send_signal(signal.SIGTERM)
        assert service.p.wait(timeout=20) == 0
    assert not os.listdir(os.path.join(service.run_dir, "reply")), "sm-send left its reply socket"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as other users")
def test_a_producer_outside_the_services_group_is_refused(root, tmp):
    service = Service(root, tmp)
    with service.proc:
        service.read_stderr_until(r"ws-relay: listening on")
        wait_for(lambda: os.path.exists(service.socket), what="the datagram socket")
        r = send_as(root, PRODUCER_UID, PRODUCER_UID, [], service.socket, "state_change")
        assert r.returncode == 77, r.stderr
        service.p.send_signal(signal.SIGTERM)
        assert service.p.wait(timeout=20) == 0


def test_when_one_tool_fails_the_other_is_stopped_and_the_status_kept_for_restart(root, tmp):
    # ws-relay cannot start (a usage error); sm-listen must not linger.
    service = Service(root, tmp, SMWS_LISTEN="not-an-address")
    with service.proc:
        assert service.p.wait(timeout=20) == 64
        lines = service.rest_of_stderr()
    assert any("smws-relay-run: ws-relay exited with status 64; stopping sm-listen" in l
               for l in lines), lines
    assert not os.path.exists(service.socket)
