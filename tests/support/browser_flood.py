# SPDX-License-Identifier: Apache-2.0
"""The dashboard under a flood: N events/s written to ws-relay's stdin for S
seconds while headless Chromium shows the page. Shared by
tests/integration/test_dashboard_flood.py (does the page keep working?) and
bench/bench_dashboard.py (how well?).

measure() returns a dict:
  offered_eps     events per second actually written to the relay's stdin
  received        events the page counted
  frames_per_s    animation frames the browser ran during the flood
  dashboard_frames_per_s  frames in which the dashboard rendered something
  longest_task_ms longest PerformanceObserver "longtask" (0: none over 50 ms)
  long_tasks      how many long tasks
  heap_before / heap_after  JS heap in use after a full GC, bytes
  heap_per_second the heap in use once a second from the flood's start (no GC forced)
  max_log_rows    most rows the log held, sampled every 50 ms
  max_log_dom_rows  most log row elements in the DOM (only the rows in sight)
  decision_ms     click on Approve (mid-flood) to the decision on the relay's stdout
  connects        WebSocket connections the page opened (1: never lost it)
"""
import json
import threading
import time

INSTALL_PROBES = """
window.__flood = {longest: 0, longTasks: 0, frames: 0, maxRows: 0, maxDomRows: 0, heap: []};
// The JS heap in use once a second (garbage included: no GC is forced
// mid-flood), to see it level off once the bounded buffers are full.
setInterval(() => { window.__flood.heap.push(performance.memory.usedJSHeapSize); }, 1000);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    window.__flood.longTasks++;
    window.__flood.longest = Math.max(window.__flood.longest, e.duration);
  }
}).observe({type: 'longtask'});
(function frame() { window.__flood.frames++; requestAnimationFrame(frame); })();
setInterval(() => {
  const c = window.smwsDashboard.counters();
  window.__flood.maxRows = Math.max(window.__flood.maxRows, c.logRows);
  window.__flood.maxDomRows = Math.max(window.__flood.maxDomRows, c.logDomRows);
}, 50);
"""

STATES = ["idle", "fetching", "processing", "uploading", "done", "failed"]


def _line(i, machines):
    return json.dumps({"type": "state_change", "machine_id": f"worker-{i % machines:04d}",
                       "state": STATES[(i // machines) % len(STATES)],
                       "timestamp": time.time(), "data": {"job_id": f"job-{i}", "progress": i % 100}},
                      separators=(",", ":"))


def _write(stack, text):
    stack.relay.p.stdin.write(text.encode())
    stack.relay.p.stdin.flush()


def _feed(stack, rate, seconds, machines, start_index, stats):
    """Writes `rate` events/s in 10 ms slices, on schedule (catching up when a
    write blocked), for `seconds`."""
    slice_s = 0.01
    per_slice = max(1, int(rate * slice_s))
    i = start_index
    t0 = time.monotonic()
    next_at = t0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        if now < next_at:
            time.sleep(next_at - now)
            continue
        _write(stack, "".join(_line(k, machines) + "\n" for k in range(i, i + per_slice)))
        i += per_slice
        next_at += slice_s
    stats["written"] = i - start_index
    stats["elapsed"] = time.monotonic() - t0


def measure(browser, stack, rate=5000, seconds=10.0, machines=1000, approve_mid_flood=True):
    page = f"http://127.0.0.1:{stack.port}/"
    browser.get(page)
    browser.wait_js("document.getElementById('conn').dataset.state === 'live'", timeout=20)
    browser.js("document.getElementById('decider').value = 'flood-tester'")
    # 1,000 machines in the table before the flood starts.
    _write(stack, "".join(_line(k, machines) + "\n" for k in range(machines)))
    browser.wait_js(f"window.smwsDashboard.counters().machines >= {machines}", timeout=60)
    browser.wait_js(f"window.smwsDashboard.counters().events >= {machines}", timeout=60)
    browser.js(INSTALL_PROBES)
    heap_before = browser.heap_used()
    frames0 = browser.js("return window.__flood.frames")
    dash_frames0 = browser.counters()["frames"]

    stats = {}
    feeder = threading.Thread(target=_feed, args=(stack, rate, seconds, machines, machines, stats),
                              daemon=True)
    t0 = time.monotonic()
    feeder.start()
    decision_ms = None
    if approve_mid_flood:
        time.sleep(seconds / 2)  # the flood's midpoint, on the feeder's clock
        stack.feed({"type": "interrupt", "interrupt_id": "i-flood", "thread_id": "t-flood",
                    "action_requests": [{"name": "deploy", "args": {"env": "prod"}}], "timeout": 120})
        browser.wait_js("document.querySelector(\".card[data-interrupt='i-flood'] button[data-act='approve']\")",
                        timeout=30, what="the card under flood")
        clicked = time.monotonic()
        browser.find(".card[data-interrupt='i-flood'] button[data-act='approve']").click()
        stack.out.wait(lambda l: '"decision"' in l and '"i-flood"' in l, timeout=30,
                       what="the decision under flood")
        decision_ms = (time.monotonic() - clicked) * 1000
    feeder.join(timeout=seconds + 60)
    flood_s = time.monotonic() - t0
    frames = browser.js("return window.__flood.frames") - frames0
    dash_frames = browser.counters()["frames"] - dash_frames0
    # The interrupt and the relay's broadcast of the decision count as events too.
    extra = 2 if approve_mid_flood else 0
    expected = machines + stats["written"] + extra
    # Everything written reaches the page (the test's relay queue is large).
    browser.wait_js(f"window.smwsDashboard.counters().events >= {expected}", timeout=60,
                    what=f"the page to count all {expected} events")
    probes = browser.js("return window.__flood")
    heap_after = browser.heap_used()
    counters = browser.counters()
    return {
        "offered_eps": stats["written"] / stats["elapsed"],
        "written": stats["written"],
        "received": counters["events"] - machines - extra,
        "frames_per_s": frames / flood_s,
        "dashboard_frames_per_s": dash_frames / flood_s,
        "longest_task_ms": probes["longest"],
        "long_tasks": probes["longTasks"],
        "heap_before": heap_before,
        "heap_after": heap_after,
        "heap_per_second": probes["heap"],
        "max_log_rows": probes["maxRows"],
        "max_log_dom_rows": probes["maxDomRows"],
        "log_rows": counters["logRows"],
        "decision_ms": decision_ms,
        "connects": counters["connects"],
        "machines": counters["machines"],
    }


def idle_baseline(browser, stack, seconds=5.0):
    """The same page with nothing arriving: frames/s and long tasks at rest."""
    browser.get(f"http://127.0.0.1:{stack.port}/")
    browser.wait_js("document.getElementById('conn').dataset.state === 'live'", timeout=20)
    browser.js(INSTALL_PROBES)
    heap = browser.heap_used()
    frames0 = browser.js("return window.__flood.frames")
    time.sleep(seconds)  # a measurement over a fixed span, not a wait for an event
    probes = browser.js("return window.__flood")
    return {"frames_per_s": (probes["frames"] - frames0) / seconds, "longest_task_ms": probes["longest"],
            "long_tasks": probes["longTasks"], "heap": heap}
