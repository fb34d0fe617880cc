"""The website as readers see it: every page of the built site, opened in headless Chromium.

For every page in the table of contents (and any other chapter page that was built) one visit checks:
title and chapter heading; math typeset by MathJax (and none left raw); every image loaded; widget
views rendered from the stored widget state; no console error, no failed request, and no request
to any host but the local server (the site works offline); every same-site link and #anchor
resolves; the Colab button of a notebook chapter opens that notebook from the repository and
branch in _config.yml. A screenshot of each page goes to _build/screenshots/.
"""
from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from sitepaths import ROOT, SCREENSHOTS, SITE

pytestmark = pytest.mark.browser

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_docnames() -> list[str]:
    names = [TOC["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                names.append(str(Path(e["file"]).with_suffix("")) if Path(e["file"]).suffix in (".md", ".ipynb")
                             else e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []):
                walk(part.get("chapters"))

    walk(TOC.get("chapters"))
    for part in TOC.get("parts", []):
        walk(part.get("chapters"))
    return names


def site_docnames() -> list[str]:
    """The toc's pages, then any other page built under chapters/ (a test must not miss one)."""
    names = toc_docnames()
    built = sorted(p.relative_to(SITE).with_suffix("").as_posix() for p in (SITE / "chapters").glob("*.html")
                   if not p.name.startswith("_"))  # _print.html: tools/print_book.py's temporary page
    return names + [n for n in built if n not in names]


DOCNAMES = site_docnames()
GENERATED = ["search", "genindex"]  # pages Sphinx makes itself


def source_of(docname: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{docname}{suffix}").is_file():
            return ROOT / f"{docname}{suffix}"
    return None


def prose_of(source: Path) -> str:
    """The markdown a page was made from, without code (code may hold `$` signs that are not math)."""
    if source.suffix == ".ipynb":
        nb = json.loads(source.read_text())
        text = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    else:
        text = source.read_text()
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


MATH_IN_SOURCE = re.compile(r"\$\$|\\begin\{|(?<![\$\\])\$(?=\S)[^$\n]*[\\^_{}][^$\n]*(?<=\S)\$(?!\d)")


INLINE_MATH = re.compile(r'<span class="math notranslate nohighlight">\\\((.*?)\\\)</span>', re.S)
DOLLAR_AMOUNT = re.compile(r"\s*[\d.,]+\s*(?:[kKMB]|million|billion)?\s+[A-Za-z]{2,}")  # "5 and " from "$5 and $10"


@lru_cache(maxsize=None)
def anchors_in(path: Path) -> frozenset[str]:
    text = path.read_text(errors="replace")
    return frozenset(html.unescape(a) for a in re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", text))


def target_file(url_path: str) -> Path:
    rel = unquote(url_path).lstrip("/")
    if rel == "" or rel.endswith("/"):
        rel += "index.html"
    return SITE / rel


def colab_url(docname: str) -> str:
    repo = CONFIG["repository"]["url"].rstrip("/").removesuffix(".git")
    owner_repo = urlsplit(repo).path.strip("/")
    base = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{base}/github/{owner_repo}/blob/{CONFIG['repository']['branch']}/{docname}.ipynb"


JS_HEADING = """() => {
  const hs = Array.from(document.querySelectorAll('article h1'));
  return hs.map(h => { const c = h.cloneNode(true);
    c.querySelectorAll('.headerlink').forEach(e => e.remove()); return c.textContent.trim(); });
}"""

JS_MATH = """() => {
  const math = Array.from(document.querySelectorAll('.math'));
  const article = document.querySelector('article') || document.body;
  const c = article.cloneNode(true);
  c.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
  return {
    math: math.length,
    unrendered: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80)),
    text: c.textContent,
  };
}"""

JS_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => { i.loading = 'eager'; return i.decode().catch(() => null); }));
  return imgs.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth}));
}"""

JS_WIDGETS = """() => ({
  views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  state: document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]').length,
  rendered: Array.from(document.querySelectorAll('.widget-subarea'))
      .filter(d => d.querySelector('.jupyter-widgets, .lm-Widget') && d.getBoundingClientRect().height > 0).length,
  requirejs: typeof window.requirejs,
})"""


def check_links(visit, base_url: str) -> list[str]:
    """Every same-site <a href> on the page points at a file of the site, and its #anchor exists there."""
    problems = []
    hrefs = visit.page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.href)")
    here = urlsplit(visit.page.url)
    for href in sorted(set(hrefs)):
        u = urlsplit(href)
        if u.scheme not in ("http", "https") or u.netloc != urlsplit(base_url).netloc:
            continue
        target = target_file(u.path)
        if not target.is_file():
            problems.append(f"broken link: {href} (no file {target.relative_to(SITE)})")
            continue
        fragment = unquote(u.fragment)
        if fragment and target.suffix == ".html" and fragment not in anchors_in(target):
            if u.path == here.path and visit.page.locator(f"[id={json.dumps(fragment)}]").count():
                continue  # an id made by the page's scripts
            problems.append(f"broken anchor: {href} (no id '{fragment}' in {target.relative_to(SITE)})")
    return problems


@pytest.mark.parametrize("docname", DOCNAMES + GENERATED)
def test_page(load, server, docname):
    page_file = SITE / f"{docname}.html"
    assert page_file.is_file(), f"{docname} is in _toc.yml but {page_file.relative_to(ROOT)} was not built"
    visit = load(f"{docname}.html")
    page = visit.page
    problems = visit.problems()

    # Title and chapter heading.
    title = page.title()
    headings = page.evaluate(JS_HEADING)
    if docname not in GENERATED:
        if len(headings) != 1:
            problems.append(f"expected one <h1> in the article, found {headings}")
        elif not title.startswith(headings[0]):
            problems.append(f"title {title!r} does not start with the heading {headings[0]!r}")
        m = re.match(r"(\d\d)_", Path(docname).name)
        if m and headings and not headings[0].startswith(f"{int(m.group(1))}. "):
            problems.append(f"chapter heading {headings[0]!r} should start with '{int(m.group(1))}. '")
    if CONFIG["title"] not in title:
        problems.append(f"title {title!r} lacks the book's title {CONFIG['title']!r}")

    # Math: every math element typeset by MathJax, no TeX error, no raw delimiters left in the text.
    math = page.evaluate(JS_MATH)
    if math["unrendered"]:
        problems.append(f"{len(math['unrendered'])} math elements not typeset by MathJax, e.g. {math['unrendered'][:3]}")
    if math["errors"]:
        problems.append(f"MathJax could not typeset: {math['errors'][:5]}")
    raw = sorted({d for d in ("$$", "\\[", "\\(", "\\begin{") if d in math["text"]})
    if raw:
        problems.append(f"raw math delimiters {raw} in the visible text")
    source = source_of(docname)
    if source is not None and MATH_IN_SOURCE.search(prose_of(source)) and math["containers"] == 0:
        problems.append(f"{source.name} has math but the page shows no MathJax output")

    money = [m for m in INLINE_MATH.findall(page_file.read_text()) if DOLLAR_AMOUNT.match(html.unescape(m))]
    if money:
        problems.append(f"dollar amounts typeset as math (write \\$ for a literal dollar sign): {money[:3]}")

    # Images.
    for img in page.evaluate(JS_IMAGES):
        if img["width"] == 0:
            problems.append(f"image did not load: {img['src']}")

    # Widgets rendered from the stored state.
    w = page.evaluate(JS_WIDGETS)
    if w["views"]:
        if not w["state"]:
            problems.append(f"{w['views']} widget views but no widget state stored: re-execute the notebook with "
                            "tools/execute_notebooks.py (it stores the state)")
        elif w["rendered"] < w["views"]:
            problems.append(f"only {w['rendered']} of {w['views']} widget views rendered (requirejs: {w['requirejs']})")

    # Colab launch button of a notebook chapter.
    colab = sorted(set(page.evaluate(
        "() => Array.from(document.querySelectorAll('a[href*=\"colab.research.google.com\"]'), a => a.href)")))
    if source is not None and source.suffix == ".ipynb":
        if colab != [colab_url(docname)]:
            problems.append(f"Colab link(s) {colab}, expected [{colab_url(docname)}]")

    problems += check_links(visit, server)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{docname.replace('/', '__')}.png"), full_page=True)
    assert not problems, f"{docname}.html:\n  " + "\n  ".join(problems)


def pages_with_linked_widgets() -> list[str]:
    """Pages whose stored widget state holds jslink/jsdlink models: controls that work without Python."""
    return [d for d in DOCNAMES if (SITE / f"{d}.html").is_file()
            and re.search(r'"model_name": "(Directional)?LinkModel"', (SITE / f"{d}.html").read_text())]


JS_WIDGET_LOOK = """() => Array.from(document.querySelectorAll('.widget-subarea')).map(a =>
  Array.from(a.querySelectorAll('img')).filter(i => i.getBoundingClientRect().height > 0)
    .map(i => i.src.length + ':' + i.src.slice(-48)).join('|'))"""


@pytest.mark.parametrize("docname", pages_with_linked_widgets())
def test_linked_widgets_respond(load, docname):
    """Moving a slider of a linked widget (e.g. the attention explorer) changes what it shows, in
    the static page, with no kernel behind it."""
    visit = load(f"{docname}.html")
    page = visit.page
    sliders = page.locator(".widget-subarea .noUi-target")
    if sliders.count() == 0:
        pytest.skip(f"{docname}: linked widgets, but no slider to move")
    before_look = page.evaluate(JS_WIDGET_LOOK)
    before_values = page.locator(".widget-subarea .widget-readout").all_inner_texts()
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        page.mouse.click(box["x"] + 0.8 * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_timeout(300)
    assert page.locator(".widget-subarea .widget-readout").all_inner_texts() != before_values, "the sliders did not move"
    assert page.evaluate(JS_WIDGET_LOOK) != before_look, "moving the sliders changed nothing the widgets show"
    assert not visit.problems(), visit.problems()


def test_front_page_is_the_site_root(load):
    visit = load("index.html")
    visit.page.wait_for_url(re.compile(rf"/{re.escape(TOC['root'])}\.html$"), timeout=10_000)
    assert not visit.problems(), visit.problems()


def test_search_finds_attention(load):
    visit = load("search.html?q=attention")
    results = visit.page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=15_000)
    hrefs = results.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert results.count() >= 1 and any("chapters/" in h for h in hrefs), hrefs
    assert not visit.problems(), visit.problems()


def test_no_page_loads_from_another_host(site):
    """Static check of every built HTML file: no <script src> or <link href> to another host."""
    offending = []
    for path in sorted(site.rglob("*.html")):
        for tag in re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", path.read_text(errors="replace")):
            if re.search(r"""<link\b""", tag) and not re.search(r"""rel=["']?(stylesheet|preload|modulepreload|icon)""", tag):
                continue  # rel=next/prev/search/index... are links, not loads
            for url in re.findall(r"""\b(?:src|href)=["']((?:https?:)?//[^"']+)""", tag):
                offending.append(f"{path.relative_to(site)}: {url}")
    assert not offending, "pages load from another host:\n  " + "\n  ".join(offending[:20])


def test_every_page_has_an_icon(site):
    """Browsers ask every site for an icon: without one each page logs a 404 in the console."""
    missing = []
    for path in sorted(site.rglob("*.html")):
        if path.relative_to(site).parts[0].startswith("_"):
            continue  # _static/*.html are theme templates, not pages
        text = path.read_text(errors="replace")
        m = re.search(r"""<link\b[^>]*\brel=["']?(?:shortcut )?icon\b[^>]*\bhref=["']([^"']+)""", text)
        if not text.lstrip().startswith("<meta") and (m is None or not (path.parent / m.group(1)).is_file()):
            missing.append(str(path.relative_to(site)))
    assert not missing, f"pages without a working <link rel=icon>: {missing[:10]}"


def test_offline_assets_were_vendored(site):
    offline = site / "_static" / "offline"
    for rel in ("mathjax/tex-mml-chtml.js", "mathjax/output/chtml/fonts/woff-v2", "require.js",
                "html-manager/embed-amd.js"):
        assert (offline / rel).exists(), f"{offline / rel} is missing: build with tools/build_book.py"
