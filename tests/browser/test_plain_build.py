"""A plain `jupyter-book build` gives the site `make book` gives: the book's Sphinx extension
(tools/sphinx_site.py) copies MathJax, require.js and the widget manager into the site itself, so
a formula is typeset offline; without those files the build stops and says to run `npm ci`.

Builds a one-page book with the book's own _config.yml settings (the pages of the real book take
a minute to build; the asset copying does not depend on them) into a temporary folder."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from sitepaths import ROOT

pytestmark = pytest.mark.browser

PAGE = """# One formula

Inline $e^{i\\pi} + 1 = 0$ and a display:

$$
\\operatorname{softmax}(x)_i = \\frac{e^{x_i}}{\\sum_j e^{x_j}}
$$
"""


def make_book(folder: Path) -> Path:
    """A one-page book whose _config.yml is the real one, less the bibliography."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.pop("bibtex_bibfiles", None)
    config["sphinx"]["config"].pop("bibtex_reference_style", None)
    config["sphinx"]["local_extensions"] = {"sphinx_site": str(ROOT / "tools")}
    config["exclude_patterns"] = ["_build"]
    folder.mkdir()
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (folder / "index.md").write_text(PAGE)
    shutil.copytree(ROOT / "_static", folder / "_static")
    return folder


def jupyter_book(book: Path, **env) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run([str(exe), "build", str(book), "-W", "-n", "--keep-going"], cwd=book,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})


@pytest.fixture(scope="module")
def plain_site(tmp_path_factory) -> Path:
    if not (ROOT / "node_modules").is_dir():
        pytest.skip("node_modules is missing: run `npm ci` (or `make book`) first")
    book = make_book(tmp_path_factory.mktemp("plain") / "book")
    result = jupyter_book(book)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return book / "_build" / "html"


def test_plain_build_copies_the_front_end_files(plain_site):
    for rel in ("_static/offline/mathjax/tex-mml-chtml.js", "_static/offline/require.js",
                "_static/offline/html-manager/embed-amd.js", "favicon.ico"):
        assert (plain_site / rel).is_file(), f"plain jupyter-book build left out {rel}"
    html = (plain_site / "index.html").read_text()
    assert "_static/offline/mathjax/tex-mml-chtml.js" in html


def test_plain_build_typesets_math_offline(plain_site, browser):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(plain_site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        failed = []
        page.on("response", lambda r: r.status >= 400 and failed.append(r.url))
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html", wait_until="load")
        page.evaluate("async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
                      " await MathJax.startup.promise; }")
        assert page.locator("mjx-container").count() == 2, "MathJax did not typeset both formulas"
        assert failed == []
    finally:
        context.close()
        httpd.shutdown()
        httpd.server_close()


def test_build_without_the_assets_says_to_run_npm_ci(tmp_path):
    book = make_book(tmp_path / "book")
    (tmp_path / "empty").mkdir()
    result = jupyter_book(book, LMBOOK_NODE_MODULES=str(tmp_path / "empty"))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "run `npm ci`" in out and "mathjax missing" in out
    assert not (book / "_build" / "html" / "index.html").exists()
