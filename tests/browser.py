"""Open reports/index.html in headless Chromium: every image and linked file must load; a screenshot.

The reports folder is served on 127.0.0.1 (an ephemeral port) together with a checker page that
loads index.html in an iframe (same origin), waits for every image, fetches every relative link and
writes what it found into its own DOM, which ``chromium --dump-dom`` prints.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHECKER = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="page" src="index.html" style="width:1400px;height:900px"></iframe>
<script>
document.getElementById('page').addEventListener('load', async () => {
  const doc = document.getElementById('page').contentDocument;
  const images = [...doc.images];
  await Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  const out = {title: doc.title, tables: doc.querySelectorAll('table').length,
               images: images.map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]), links: []};
  for (const a of doc.querySelectorAll('a[href]')) {
    const href = a.getAttribute('href');
    if (/^(https?:|#|mailto:)/.test(href)) { out.links.push([href, 'external', 0]); continue; }
    try { const r = await fetch(href); out.links.push([href, r.status, (await r.text()).length]); }
    catch (e) { out.links.push([href, String(e), 0]); }
  }
  document.getElementById('result').textContent = JSON.stringify(out);
});
</script></body></html>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def required() -> bool:
    """Whether the browser checks must run here: Chromium is installed, or MDEAUX_REQUIRE_BROWSER=1 (CI)."""
    return find_chromium() is not None or os.environ.get("MDEAUX_REQUIRE_BROWSER") == "1"


def chromium() -> str:
    """The Chromium binary; skips the test where none is installed, unless MDEAUX_REQUIRE_BROWSER=1 (CI)."""
    if found := find_chromium():
        return found
    message = "headless Chromium not found (Debian: apt-get install chromium); .ci/run installs it"
    if os.environ.get("MDEAUX_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` on http://127.0.0.1:<port>/, plus the checker page at /__check__.html."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/__check__.html":
                body = CHECKER.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _run(args: list[str], profile: str) -> str:
    out = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def check_index(reports: Path, screenshot: Path) -> dict:
    """Load ``reports/index.html`` in Chromium; what the checker page found; a full-page screenshot."""
    with serve(reports) as base, tempfile.TemporaryDirectory() as profile:
        dom = _run(["--virtual-time-budget=30000", "--dump-dom", f"{base}/__check__.html"], profile)
        found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
        assert found and found.group(1) != "pending", dom[-2000:]
        result = json.loads(html.unescape(found.group(1)))
        _run([f"--screenshot={screenshot}", "--window-size=1400,2400", f"{base}/index.html"], profile)
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, screenshot
    return result


def rendered_dom(page: Path) -> str:
    """The DOM of a local page after its scripts ran, loaded from file:// with the network off (no
    request leaves the machine: a page that needs a CDN renders nothing)."""
    with tempfile.TemporaryDirectory() as profile:
        return _run(["--virtual-time-budget=30000", "--proxy-server=127.0.0.1:9", "--dump-dom", page.resolve().as_uri()], profile)
