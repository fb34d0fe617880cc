"""A small Sphinx extension (loaded through `sphinx: local_extensions:` in _config.yml) that fixes the
console errors and failed requests pages of a Jupyter Book 1.0.4 site show with this pinned stack,
so that the browser tests (tests/browser) can demand none at all:

1. Inline scripts registered during the build are emitted twice (once with filename None, once
   with ''), and sphinx-thebe's `const THEBE_JS_URL = ...` declared twice is a SyntaxError
   ("Identifier 'THEBE_JS_URL' has already been declared"). Duplicates are dropped per page.
2. pydata-sphinx-theme 0.17 logs "Got invalid theme mode: ." unless the template variable
   `default_mode` is set: it becomes "auto" (follow the reader's light/dark setting).
3. Pages with widgets load the widget manager from _static/offline/html-manager/ (see
   tools/vendor_assets.py). Its bundled modules load their icon fonts from paths derived from
   their require.js module names (chapters/@jupyter-widgets/...: 404): require.js is told that
   those modules live in the folder that holds the fonts.
4. The widgets typeset their labels with MathJax 2's `MathJax.Hub.Queue`, which MathJax 3 lacks
   ("Cannot read properties of undefined (reading 'Queue')"): a shim maps it onto MathJax 3's
   `typesetPromise`.
5. The site serves MathJax, require.js and the widget manager itself (tools/vendor_assets.py):
   every HTML build copies them into _static/offline/ when it finishes, and stops at its start,
   with a message that says to run `npm ci`, when node_modules does not hold them. So a plain
   `jupyter-book build .` gives the same site as `make book`. /favicon.ico is written too
   (browsers may ask for it before they read the page's icon link).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

import vendor_assets  # tools/vendor_assets.py: local_extensions puts tools/ on sys.path

EMBED_SCRIPT = "embed-amd.js"

# Runs after the deferred MathJax 3 script and before the widget manager renders (on `load`).
MATHJAX2_HUB_SHIM = """document.addEventListener("DOMContentLoaded", function () {
  var MJ = window.MathJax;
  if (!MJ || MJ.Hub || !MJ.startup || !MJ.startup.promise) return;
  MJ.Hub = {Queue: function () {
    Array.prototype.forEach.call(arguments, function (job) {
      if (Array.isArray(job) && job[0] === "Typeset") {
        MJ.startup.promise = MJ.startup.promise.then(function () {
          return MJ.typesetPromise(job[2] ? [job[2]] : undefined);
        }).catch(function (err) { console.error("MathJax could not typeset a widget:", err); });
      }
    });
  }};
});"""


def _filename(js) -> str:
    return getattr(js, "filename", js) or ""


def _script_key(js) -> tuple:
    return (_filename(js), tuple(sorted(getattr(js, "attributes", {}).items())))


def widget_support(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files") or []
    embed = next((js for js in scripts if _filename(js).endswith("/" + EMBED_SCRIPT)), None)
    if embed is None:
        return
    folder = _filename(embed).rsplit("/", 1)[0]  # e.g. _static/offline/html-manager
    if "://" not in folder:
        folder = context["pathto"](folder, resource=True)
    # The bundled modules (@jupyter-widgets/base, controls, html-manager/dist/libembed-amd...) find
    # their fonts beside their require.js module URL: map those URLs onto the folder of the fonts.
    paths = {"@jupyter-widgets": folder, "@jupyter-widgets/html-manager/dist": folder}
    body = (f"window.__jupyter_widgets_assets_path__ = {json.dumps(folder + '/')};\n"
            f"if (window.requirejs) requirejs.config({{paths: {json.dumps(paths)}}});")
    app.add_js_file(None, body=body, priority=getattr(embed, "priority", 500))
    scripts.insert(scripts.index(embed), scripts.pop())  # between require.js and the widget manager
    app.add_js_file(None, body=MATHJAX2_HUB_SHIM, priority=499)


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def default_theme_mode(app, pagename, templatename, context, doctree) -> None:
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def check_assets(app) -> None:
    if app.builder.format == "html":
        found = vendor_assets.problems()
        if found:
            raise ExtensionError("sphinx_site: " + vendor_assets.missing_message(found))


def copy_assets(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    files, copied, size = vendor_assets.sync(out / "_static" / "offline")
    favicon = Path(app.confdir) / "_static" / "favicon.png"
    if favicon.is_file():  # PNG data under the name browsers ask for; they sniff the type
        shutil.copyfile(favicon, out / "favicon.ico")
    print(f"sphinx_site: {files} front-end files ({size / 2**20:.1f} MiB) in _static/offline, "
          f"{copied} copied now")


def setup(app):
    # A config value that changes whenever this file does, so that Sphinx rewrites every page then.
    app.add_config_value("sphinx_site_version", hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12],
                         "html")
    # After the handlers that add scripts (myst-nb adds the widget scripts at the default 500).
    app.connect("html-page-context", default_theme_mode, priority=900)
    app.connect("html-page-context", widget_support, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts, priority=901)
    app.connect("builder-inited", check_assets)
    app.connect("build-finished", copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
