#!/usr/bin/env python3
"""Build the website: `jupyter-book build . -W -n --keep-going` into _build/html, copy the front-end
libraries it serves itself into it (tools/vendor_assets.py: MathJax, require.js, the widget manager),
then report its size.

    python tools/build_book.py [extra jupyter-book flags]
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def site_size(html: Path) -> tuple[int, int]:
    files = [p for p in html.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv):
    flags = argv or ["-W", "-n", "--keep-going"]
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), *flags]
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc != 0:
        return rc
    html = ROOT / "_build" / "html"
    import vendor_assets  # tools/vendor_assets.py, beside this file
    vendor_assets.main(["--out", str(html / "_static" / "offline")])
    # Browsers may ask for /favicon.ico before they read the page's <link rel="icon">: serve the
    # same icon there (PNG data; browsers sniff it), so that request never fails.
    shutil.copyfile(ROOT / "_static" / "favicon.png", html / "favicon.ico")
    n, size = site_size(html)
    print(f"site: {html}/index.html ({n} files, {size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
