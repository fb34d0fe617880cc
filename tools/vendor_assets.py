#!/usr/bin/env python3
"""Copy the front-end libraries the website needs into the built site, so that it works offline.

    python tools/vendor_assets.py [--out _build/html/_static/offline]

The pages load three libraries that Sphinx and myst-nb would otherwise fetch from CDNs:
- MathJax 3 (renders the math): `mathjax_path` in _config.yml points at offline/mathjax/;
- require.js and the Jupyter widgets HTML manager (render the stored widget state, e.g. tqdm
  progress bars and the attention explorer): `nb_ipywidgets_js` in _config.yml points at them.

The versions are pinned in package.json / package-lock.json; `npm ci` installs them into
node_modules/ (git-ignored). `make book` (tools/build_book.py) runs `npm ci` when node_modules does
not match the lock file. Every Sphinx build copies the files into the site itself (the extension
tools/sphinx_site.py calls :func:`sync`), so a plain `jupyter-book build .` gives the same site;
it stops with a message that says to run `npm ci` when node_modules does not match. Files are
copied only when missing or changed.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# $LMBOOK_NODE_MODULES points elsewhere (the browser tests use it to build without the assets)
NODE_MODULES = Path(os.environ.get("LMBOOK_NODE_MODULES") or ROOT / "node_modules")
PACKAGES = ("mathjax", "requirejs", "@jupyter-widgets/html-manager")  # what ASSETS come from
OUT = ROOT / "_build" / "html" / "_static" / "offline"

# (source under node_modules, destination under OUT). A directory is copied whole.
MATHJAX = "mathjax/es5"
WIDGETS = "@jupyter-widgets/html-manager/dist"
ASSETS = [
    # The combined TeX + MathML input, CommonHTML output component (Sphinx's default choice), plus
    # every directory it may load lazily: TeX extensions (autoload), fonts, the menu, a11y/speech.
    (f"{MATHJAX}/tex-mml-chtml.js", "mathjax/tex-mml-chtml.js"),
    *[(f"{MATHJAX}/{d}", f"mathjax/{d}") for d in ("a11y", "adaptors", "input", "output", "sre", "ui")],
    ("mathjax/LICENSE", "mathjax/LICENSE"),
    ("requirejs/require.js", "require.js"),
    # embed-amd.js bundles the base, controls and output widgets and their CSS; the font files
    # beside it (Font Awesome, used by widget icons) are loaded relative to the script. Browsers
    # take the woff2 files (woff as a fallback); the eot/ttf/svg copies for old browsers are left out.
    (f"{WIDGETS}/embed-amd.js", "html-manager/embed-amd.js"),
    *[(f"{WIDGETS}/{ext}", "html-manager") for ext in ("*.woff2", "*.woff")],
    ("@jupyter-widgets/html-manager/package.json", "html-manager/package.json"),  # version, BSD-3-Clause
]


def problems() -> list[str]:
    """Why node_modules cannot give the assets ([] when it can): a package missing, or at
    another version than package-lock.json pins, or an asset file missing."""
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    out = []
    for name in PACKAGES:
        want = lock.get(f"node_modules/{name}", {}).get("version")
        meta = NODE_MODULES / name / "package.json"
        have = json.loads(meta.read_text()).get("version") if meta.is_file() else None
        if have != want:
            out.append(f"{name} {have or 'missing'} (package-lock.json pins {want})")
    if not out:
        out = [f"node_modules/{src} missing" for src, _ in ASSETS if not any(NODE_MODULES.glob(src))]
    return out


def missing_message(found: list[str]) -> str:
    return ("the website's MathJax, require.js and widget manager come from npm, and node_modules does "
            f"not match package-lock.json ({'; '.join(found)}): run `npm ci` in {ROOT} (needs Node.js; "
            "Debian: apt-get install npm), or `make book`, which runs it")


def ensure_node_modules() -> None:
    """`npm ci` unless node_modules already matches package-lock.json."""
    found = problems()
    if not found:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("vendor_assets: " + missing_message(found))
    print(f"vendor_assets: npm ci ({'; '.join(found)})", flush=True)
    subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=ROOT, check=True)


def sync_file(src: Path, dst: Path) -> bool:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and filecmp.cmp(src, dst, shallow=True):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return True


def sync(out: Path) -> tuple[int, int, int]:
    """Make `out` hold exactly the assets (copy what is missing or changed, delete the rest);
    returns (files, files copied now, bytes)."""
    files = copied = size = 0
    wanted = set()
    for src_pattern, dst_name in ASSETS:
        sources = sorted(NODE_MODULES.glob(src_pattern))
        if not sources:
            raise SystemExit(f"vendor_assets: node_modules/{src_pattern} is missing; delete node_modules and retry")
        for src in sources:
            if src.is_dir():
                pairs = [(f, out / dst_name / f.relative_to(src)) for f in src.rglob("*") if f.is_file()]
            elif "*" in src_pattern:
                pairs = [(src, out / dst_name / src.name)]
            else:
                pairs = [(src, out / dst_name)]
            for s, d in pairs:
                wanted.add(d)
                files += 1
                size += s.stat().st_size
                copied += sync_file(s, d)
    for stale in [f for f in out.rglob("*") if f.is_file() and f not in wanted]:
        stale.unlink()
    return files, copied, size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    ensure_node_modules()
    files, copied, size = sync(args.out.resolve())
    print(f"vendor_assets: {files} files ({size / 2**20:.1f} MiB) in {args.out}, {copied} copied now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
