#!/usr/bin/env python3
"""Build the website: make sure node_modules holds the front-end libraries the site serves itself
(tools/vendor_assets.py: MathJax, require.js, the widget manager; `npm ci` when it does not), run
`jupyter-book build . -W -n --keep-going` into _build/html (the build copies those libraries into
the site: tools/sphinx_site.py), then report the site's size.

    python tools/build_book.py [extra jupyter-book flags]
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def site_size(html: Path) -> tuple[int, int]:
    files = [p for p in html.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv):
    flags = argv or ["-W", "-n", "--keep-going"]
    import vendor_assets  # tools/vendor_assets.py, beside this file
    vendor_assets.ensure_node_modules()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), *flags]
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc != 0:
        return rc
    html = ROOT / "_build" / "html"
    n, size = site_size(html)
    print(f"site: {html}/index.html ({n} files, {size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
