#!/usr/bin/env python3
"""Print the built website to one PDF, in table-of-contents order, with headless Chromium.

    python tools/build_book.py && python tools/print_book.py [--out _build/pdf/lmbook.pdf]

Every page's article (front page, chapters, bibliography) is put on one temporary page of the
built site, with MathJax and the stored widget state of every chapter, so math and widgets print
as the website shows them; Chromium (tools/ensure_chromium.sh) renders it offline and prints it.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import re
from html import escape as html_escape
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
sys.path.insert(0, str(ROOT / "tests" / "browser"))
from conftest import CHROMIUM_ARGS, find_chromium  # noqa: E402  (the browser tests' settings)

ARTICLE = re.compile(r'(<article class="bd-article">)(.*)(</article>)', re.S)
STATE = re.compile(r'<script type="application/vnd\.jupyter\.widget-state\+json">.*?</script>', re.S)
PRINT_CSS = """<style>
  .lmbook-print-chapter { break-before: page; }
  .lmbook-print-chapter:first-child { break-before: auto; }
  .bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header-article, .prev-next-footer,
  .bd-footer, .bd-footer-content, .headerlink, #jb-print-docs-body { display: none !important; }
  /* paper cannot scroll sideways: long code and output lines wrap instead of being cut */
  pre { white-space: pre-wrap !important; overflow-wrap: anywhere; overflow: visible !important; }
</style>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def toc_docnames() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [str(Path(c["file"]).with_suffix("")) if Path(c["file"]).suffix else c["file"]
                            for c in toc.get("chapters", [])]


def print_page(docnames: list[str]) -> str:
    """One HTML page (it lives in the chapters' folder) holding every page's article."""
    pages = [(SITE / f"{d}.html").read_text() for d in docnames]
    folders = {Path(d).parent for d in docnames}
    if len(folders) != 1:
        raise SystemExit(f"print_book: pages in several folders ({folders}): relative links would break")
    # The first page with widgets brings the widget manager's scripts; else the front page.
    shell = next((p for p in pages if STATE.search(p)), pages[0])
    articles = "\n".join(f'<section class="lmbook-print-chapter">{ARTICLE.search(p).group(2)}</section>'
                         for p in pages)
    html = ARTICLE.sub(lambda m: m.group(1) + articles + m.group(3), shell, count=1)
    states = [s for p in pages for s in STATE.findall(p)]
    if states:
        first = STATE.search(html)
        html = html[:first.start()] + "\n".join(states) + html[first.end():]
    import yaml

    title = html_escape(yaml.safe_load((ROOT / "_config.yml").read_text())["title"])
    html = re.sub(r"<title>.*?</title>", lambda m: f"<title>{title}</title>", html, count=1, flags=re.S)
    return html.replace("</head>", PRINT_CSS + "\n</head>", 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "lmbook.pdf")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        raise SystemExit("print_book: no Chromium; run tools/ensure_chromium.sh")
    docnames = toc_docnames()
    tmp = SITE / Path(docnames[0]).parent / "_print.html"
    tmp.write_text(print_page(docnames))
    handler = functools.partial(_Quiet, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            offsite = []
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1:")
                       else (offsite.append(r.request.url), r.abort()))
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{tmp.relative_to(SITE).as_posix()}",
                      wait_until="networkidle", timeout=120_000)
            page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
            views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
            if views:
                page.wait_for_function("n => document.querySelectorAll('.widget-subarea > *').length >= n",
                                       arg=views, timeout=60_000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.emulate_media(media="print")
            page.pdf(path=str(args.out), format="A4", print_background=True,
                     margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
            browser.close()
    finally:
        httpd.shutdown()
        tmp.unlink(missing_ok=True)
    if offsite:
        print(f"print_book: blocked requests to other hosts: {offsite[:5]}", file=sys.stderr)
    print(f"print_book: {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, {len(docnames)} pages of the site)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
