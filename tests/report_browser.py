"""Open an HTML file in headless Chromium over the Chrome DevTools Protocol and report what the browser saw:
console errors and exceptions, network requests, load time, figure contents, unresolved links, a screenshot.

Used by tests/test_report_browser.py and runnable on its own (it prints the numbers the README quotes)::

    python tests/report_browser.py demo-run/report.html [--screenshot docs/report-screenshot.png [--at '#sec-0']]
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--remote-debugging-port=0", "--window-size=1366,900"]

CHECKS = """(() => {
  const plots = [...document.querySelectorAll('figure .plot, .explot')];
  const empty = plots.filter(d => { const fd = d._fullData || [];
    const drawn = d.querySelectorAll('.main-svg .trace, .main-svg path.point, canvas').length;
    return !fd.length || !drawn || !fd.some(t => (t.x && t.x.length) || (t.y && t.y.length)); }).length;
  const noHover = plots.filter(d => !(d._fullData || []).every(t => t.hoverinfo !== 'skip' &&
    t.hoverinfo !== 'none' && (t.hovertemplate || t.hoverinfo))).length;
  const links = [...document.querySelectorAll('a[href^="#"]')];
  const broken = links.filter(a => !document.getElementById(decodeURIComponent(a.getAttribute('href').slice(1))))
    .map(a => a.getAttribute('href'));
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {start: window.nnkscopeStart, plots: plots.length, allDrawn: window.nnkscopeAllDrawn || null, empty,
          noHover, links: links.length, broken, ready: window.nnkscopeReady || null, open: window.nnkscopeOpen || null,
          plotly: window.nnkscopePlotly || null,
          load: nav ? nav.loadEventEnd : null, fcp: fcp ? fcp.startTime : null, images: document.images.length,
          brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
          sections: document.querySelectorAll('main section').length,
          unavailable: document.querySelectorAll('.unavailable').length, text: document.body.innerText};
})()"""


class CDP:
    """A minimal DevTools client on one page target (synchronous; events are collected while waiting)."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []

    def send(self, method: str, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60):
        end = time.time() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while time.time() < end:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)

    def evaluate(self, expr: str):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")


def inspect(page: Path, screenshot: Path | None = None, actions: str = "") -> dict:
    """Load ``page`` in a fresh headless Chromium; return what it saw (see ``CHECKS``) plus ``errors`` (console
    errors, exceptions, error log entries), ``requests`` (every URL other than the page itself and inline
    data/blob URLs), ``after`` (the value of the JavaScript ``actions``, run after the checks)."""
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # Chromium may still write there
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            port = None
            end = time.time() + 60
            while port is None and time.time() < end:
                line = proc.stderr.readline()
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                port = int(m.group(1)) if m else None
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
            cdp = CDP(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Network", "Log", "Performance"):
                cdp.send(f"{domain}.enable")
            cdp.send("Emulation.setDeviceMetricsOverride", width=1366, height=900, deviceScaleFactor=1, mobile=False)
            t0 = time.perf_counter()
            cdp.send("Page.navigate", url=page.as_uri())
            cdp.wait_for("Page.loadEventFired")
            wall = time.perf_counter() - t0
            for _ in range(600):
                if cdp.evaluate("window.nnkscopeReady || null") is not None:
                    break
                time.sleep(0.05)
            # main-thread busy time until the page is ready: what opening costs, robust to a shared CPU
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            for _ in range(600):  # figures off screen are drawn while idle after load
                if cdp.evaluate("window.nnkscopeAllDrawn || null") is not None:
                    break
                time.sleep(0.1)
            out = cdp.evaluate(CHECKS)
            out["wall_load_s"] = wall
            out["main_thread_s"] = metrics.get("TaskDuration")
            out["script_s"] = metrics.get("ScriptDuration")
            out["after"] = cdp.evaluate(actions) if actions else None
            time.sleep(0.3)
            if screenshot is not None:
                shot = cdp.send("Page.captureScreenshot", format="png")
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            cdp.evaluate("1")  # flush pending events
            errors, requests = [], []
            for ev in cdp.events:
                m, p = ev.get("method"), ev.get("params", {})
                if m == "Runtime.exceptionThrown":
                    errors.append(json.dumps(p["exceptionDetails"])[:500])
                elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    errors.append(json.dumps(p.get("args"))[:500])
                elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                    errors.append(p["entry"].get("text", "")[:500])
                elif m == "Network.requestWillBeSent":
                    url = p["request"]["url"]
                    if url != page.as_uri() and not url.startswith(("data:", "blob:")):
                        requests.append(url)
            out["errors"], out["requests"] = errors, requests
            cdp.ws.close()
            return out
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    args = sys.argv[1:]
    shot = Path(args[args.index("--screenshot") + 1]) if "--screenshot" in args else None
    at = args[args.index("--at") + 1] if "--at" in args else ""  # CSS selector scrolled to before the screenshot
    target = Path(args[0])
    res = inspect(target, shot, f"document.querySelector({json.dumps(at)}).scrollIntoView()" if at else "")
    res.pop("text")
    print(json.dumps({"size_mb": round(target.stat().st_size / 2**20, 2), **res}, indent=1))
