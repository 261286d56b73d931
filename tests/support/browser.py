# SPDX-License-Identifier: Apache-2.0
"""Headless Chromium for the dashboard tests (tests/integration/test_dashboard*.py).

Debian's `chromium`, driven through Debian's `chromium-driver` with
python3-selenium. Chromium runs headless with a fresh profile in a temp dir,
with everything that would reach the network off (this machine's network is
closed, and a test must not depend on one), on 127.0.0.1 pages only.

- Browser: a context manager around one WebDriver session; wait_js() polls
  a JavaScript expression until it is truthy (every wait has a timeout),
  console_errors() returns what the page logged as errors (a CSP violation
  shows up there), set_color_scheme() emulates prefers-color-scheme, and
  screenshot() writes a PNG.
- cdp(): Chrome DevTools commands (heap size, media emulation).
- CuttableProxy: a TCP forwarder on 127.0.0.1 between the browser and the
  relay that a test can cut (every connection dropped without a close
  frame, new ones refused) and resume: "the connection is lost" on demand,
  while the relay itself runs on and keeps its seq and history.
- screenshot_dir(): where screenshots go, under the build folder.

The chromedriver process (and the chromium it starts) is stopped by its PID
when the context ends, whatever happened.
"""
import json
import os
import signal
import socket
import threading
import time

from selenium import webdriver
from selenium.common.exceptions import JavascriptException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from smws_test import BIN_DIR, rmtree, short_tmpdir

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--mute-audio", "--password-store=basic",
    # Timers and animation frames of a page in the background are throttled;
    # the tests measure a page that a person is looking at.
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    # performance.memory with exact figures (not bucketed) for the heap report.
    "--enable-precise-memory-info",
]


class Browser:
    def __init__(self, width=1400, height=1000, extra_flags=()):
        self.profile = short_tmpdir()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS + list(extra_flags):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(CHROMEDRIVER, log_path=os.devnull)
        try:
            self.driver = webdriver.Chrome(service=self.service, options=options)
        except Exception:
            self._stop_service()
            rmtree(self.profile)
            raise
        self.driver.set_page_load_timeout(20)
        self.driver.set_script_timeout(20)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.driver.quit()
        except Exception:
            pass
        self._stop_service()
        rmtree(self.profile)

    def _stop_service(self):
        process = getattr(self.service, "process", None)
        if process is not None and process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
            except (OSError, Exception):
                pass

    # --- page ---------------------------------------------------------------
    def get(self, url):
        self.driver.get(url)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait_js(self, expression, timeout=10.0, what=None):
        """Polls `return (expression)` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = self.driver.execute_script(f"return ({expression});")
                if value:
                    return value
            except JavascriptException as err:
                last_error = err
            if time.monotonic() > deadline:
                detail = f" (last error: {last_error.msg})" if last_error else ""
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or expression}{detail}")
            time.sleep(0.05)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css):
        return self.find(css).text

    def counters(self):
        return self.js("return window.smwsDashboard.counters();")

    def console_errors(self):
        """Messages the page logged at level SEVERE since the last call."""
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException:
            return []
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def cdp(self, command, params=None):
        return self.driver.execute_cdp_cmd(command, params or {})

    def set_color_scheme(self, scheme):
        """'light' or 'dark': what the page's prefers-color-scheme sees."""
        self.cdp("Emulation.setEmulatedMedia",
                 {"features": [{"name": "prefers-color-scheme", "value": scheme}]})

    def heap_used(self):
        """JS heap in use, in bytes, after a full garbage collection."""
        self.cdp("HeapProfiler.enable")
        self.cdp("HeapProfiler.collectGarbage")
        return self.cdp("Runtime.getHeapUsage")["usedSize"]

    def screenshot(self, path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        # The whole page, not only the window: size the viewport to it.
        metrics = self.cdp("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width, height = int(size["width"]), min(int(size["height"]), 4000)
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        try:
            self.driver.save_screenshot(path)
        finally:
            self.cdp("Emulation.clearDeviceMetricsOverride")
        return path


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def screenshot_dir():
    """build/screenshots (next to build/bin, whichever build tree runs)."""
    path = os.path.join(os.path.abspath(os.path.join(BIN_DIR, "..")), "screenshots")
    os.makedirs(path, exist_ok=True)
    return path


class CuttableProxy:
    """127.0.0.1:port -> 127.0.0.1:target, on threads. cut() drops every
    forwarded connection (the browser sees 1006) and refuses new ones until
    resume(). `requests` holds the first line of each forwarded request,
    `heads` its whole head (what a proxy's access log could show)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.requests = []
        self.heads = []
        self._lock = threading.Lock()
        self._pairs = []           # GUARDED_BY(_lock): (client, upstream) sockets
        self._open = True          # GUARDED_BY(_lock): forward new connections
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                forwarding = self._open
            if not forwarding:
                _hard_close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, from_client):
        first = from_client
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if first:
                    self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                    self.heads.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                    first = False
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self._lock:
            self._open = False
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _hard_close(client)
            _hard_close(upstream)

    def resume(self):
        with self._lock:
            self._open = True

    def close(self):
        self._stop.set()
        self.cut()
        self.listener.close()
        self._thread.join(timeout=5)


def _hard_close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
