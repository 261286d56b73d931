# SPDX-License-Identifier: Apache-2.0
"""Debian's nginx as a real reverse proxy in front of a WebSocket server, for
ws-probe's tests: a generated config in a temp prefix, a free port on
127.0.0.1, one process (master_process off) started by the test and stopped
by its PID. Skips the test when nginx is not installed (`make deps` installs it).
"""
import os
import shutil
import socket
import subprocess

import pytest

from smws_test import Proc, free_port, rmtree, short_tmpdir, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout {read_timeout}s;
      proxy_send_timeout {read_timeout}s;
      proxy_connect_timeout 2s;
    }}
  }}
}}
"""


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    """nginx proxying 127.0.0.1:upstream (plain HTTP + WebSocket upgrade) with
    proxy_read_timeout/proxy_send_timeout read_timeout seconds. .port, .url(path)."""

    def __init__(self, upstream, read_timeout=60):
        if not os.path.exists(NGINX):
            pytest.skip("nginx is not installed (make deps)")
        self.prefix = short_tmpdir()
        self.port = free_port()
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(prefix=self.prefix, port=self.port, upstream=upstream,
                                  read_timeout=read_timeout))
        self.proc = Proc([NGINX, "-p", self.prefix, "-c", conf, "-e", os.path.join(self.prefix, "error.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _accepts(self.port) or self.proc.p.poll() is not None, timeout=10,
                     what="nginx to listen")
            if self.proc.p.poll() is not None:
                raise RuntimeError("nginx exited: " + self.error_log())
        except Exception:
            self.close()
            raise

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    def error_log(self):
        try:
            with open(os.path.join(self.prefix, "error.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def close(self):
        self.proc.kill()
        rmtree(self.prefix)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
