"""Fixtures for the browser tests: the built site served on 127.0.0.1, and headless Chromium.

The site is _build/html (`make html` builds it; $LMBOOK_SITE_DIR overrides). Chromium is the Debian
package (/usr/bin/chromium; tools/ensure_chromium.sh installs it; $LMBOOK_CHROMIUM overrides),
driven by Playwright's Python package. Without a browser or a built site the tests skip with a
message, except under CI (CI=true), where that is a failure.

`load()` records every request a page makes to a host other than the local server (Chromium is
started so that no other host name resolves): the pages must work offline.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sitepaths import SITE  # noqa: E402
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # Offline for sure: every host name but the local server's fails to resolve. (The
                 # tests record every request to another host; they do not intercept requests, so
                 # the browser behaves as for a reader, favicon look-ups included.)
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def unavailable(reason: str):
    """Skip, or under CI fail: CI must run the browser tests."""
    if CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    candidates = [os.environ.get("LMBOOK_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="session")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        unavailable(f"no built site at {SITE}: run `make html` first")
    return SITE


@pytest.fixture(scope="session")
def server(site) -> str:
    """Base URL (ending in /) of a static file server for the site, on a free port of 127.0.0.1."""
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the Python package playwright is not installed (it is in the test extras: make install)")
    exe = find_chromium()
    if exe is None:
        unavailable("no Chromium found: run tools/ensure_chromium.sh (Debian package `chromium`), "
                    "or point $LMBOOK_CHROMIUM at a Chromium/Chrome binary")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@dataclass
class Visit:
    """What happened while a page loaded."""
    page: object
    console_errors: list = field(default_factory=list)
    failed_requests: list = field(default_factory=list)
    offsite_requests: list = field(default_factory=list)

    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"failed request: {r}" for r in self.failed_requests]
                + [f"request to another host (the site must work offline): {u}" for u in self.offsite_requests])


@pytest.fixture
def load(browser, server):
    """load(path) -> Visit: open site-relative `path` in a fresh context, wait until it has loaded,
    MathJax has typeset and the widget manager has run; record errors and off-site requests."""
    contexts = []
    local_host = urlsplit(server).netloc

    def _load(path: str, wait_for_widgets: bool = True) -> Visit:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        contexts.append(context)
        page = context.new_page()
        visit = Visit(page)

        def on_request(r):
            u = urlsplit(r.url)
            if u.scheme in ("http", "https", "ws", "wss") and u.netloc != local_host:
                visit.offsite_requests.append(r.url)

        context.on("request", on_request)
        page.on("console", lambda m: m.type == "error" and visit.console_errors.append(
            f"{m.text} ({m.location.get('url', '')}:{m.location.get('lineNumber', '')})"))
        page.on("pageerror", lambda e: visit.console_errors.append(f"uncaught {e}"))
        page.on("requestfailed", lambda r: urlsplit(r.url).netloc == local_host
                and visit.failed_requests.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and visit.failed_requests.append(f"{r.url} (HTTP {r.status})"))
        page.goto(server + path, wait_until="load")
        page.wait_for_load_state("networkidle")
        # MathJax typesets after load; startup.promise resolves when it is done.
        page.evaluate("async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
                      " await MathJax.startup.promise; }")
        if wait_for_widgets:
            n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
            if n_views and page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count():
                try:
                    page.wait_for_function(
                        "n => document.querySelectorAll('.widget-subarea > *').length >= n", arg=n_views,
                        timeout=15_000)
                except Exception:
                    pass  # the test reports how many views rendered
        return visit

    yield _load
    for c in contexts:
        c.close()
