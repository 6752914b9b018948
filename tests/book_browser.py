"""The machinery of the browser test (tests/test_browser.py): a built HTML book served on localhost
and every page of it opened in headless Chromium; local copies of the CDN files the pages load.

    python tests/book_browser.py fetch-assets    # `make browser-assets`: the CDN copies, once

`crawl_book(html_dir, chromium, sync_playwright)` opens every page of the book (every document in the
build's search index, plus `index.html`, `genindex.html` and `search.html`) in a fresh browser
context with a 1280 x 900 window, as a first-time reader would open it, and records for each page
(`PageResult`) what the test's claims are about:

- the HTTP status and the page it lands on (`index.html` redirects to the toc's root page);
- its same-origin `<a href>` and `<img>` URLs, each distinct URL then fetched once, with each
  `#fragment` looked up among the target page's ids;
- console errors, uncaught page errors, failed requests and blocked external requests;
- the math: `.math` elements, MathJax's `mjx-container`s, TeX errors (`mjx-merror`), undefined
  macros and raw TeX (`$...$`, `\\(`, `\\[`) left in the prose;
- on chapter pages (built from `chapters/{en,zh}/*.ipynb`): the links (the Colab button among them),
  the result of clicking the link to the other-language edition, and every exercise's hint and
  solution (collapsed dropdowns) before and after a click on its toggle button, and what a click
  on the link in a solution's title does (before and after the dropdowns were opened);
- every code block (`div.highlight pre`, cell outputs excluded) measured in the page once every
  dropdown is open: how many columns of the code font its area shows, whether it scrolls
  horizontally, and which lines are wider than the area;
- the interactive 3D point clouds (`depthlib.viz.show_point_clouds`, chapters 00 and 10 of an
  executed build): whether each `.depthlib-plot3d` view became a plotly graph with a drawn WebGL
  canvas, its static fallback image replaced.

Screenshots of the landing page and two chapters (one per edition) go next to the HTML folder
(`<html>/../screenshots/`, or `$DEPTHBOOK_SCREENSHOTS`), taken before any click.

Offline by design. The pages load MathJax 3 from a CDN; the 3D-view pages load plotly.js from the
book's own `_static/` (_ext/plotly_pages.py). Those CDN requests are answered from a local copy of
the same files (`CDN_MIRRORS`, fetched from the npm registry by `fetch-assets`), so MathJax really
typesets the pages. The book loads no widget JavaScript (see _config.yml). Every other external
request is blocked and recorded: a page of this book should need nothing from the network to
render. Links to external sites (GitHub, Colab) are not followed.

Chromium is Debian's `chromium` (`$CHROMIUM` overrides the path), driven by the `playwright`
package, which never downloads a browser of its own here. The HTML folder is `$DEPTHBOOK_HTML`, else
`_build/html` (`make book`), else `_build/structural/_build/html` (`make book-structure`).
"""
from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML_CANDIDATES = (ROOT / "_build" / "html", ROOT / "_build" / "structural" / "_build" / "html")
ASSETS = Path(os.environ.get("DEPTHBOOK_BROWSER_ASSETS", ROOT / ".cache" / "browser-assets"))
EDITIONS = ("en", "zh")

# CDN folders the built pages load from, answered from local copies of the same npm packages:
# (URL prefix ending in "/", npm package whose files the prefix maps to).
CDN_MIRRORS = (
    # Sphinx's default mathjax_path (every page with math); npm's mathjax@3 is jsDelivr's mathjax@3.
    ("https://cdn.jsdelivr.net/npm/mathjax@3/", "mathjax@3"),
    # No widget manager: the book loads no widget JavaScript (_config.yml), so a page that asks for
    # require.js or @jupyter-widgets/html-manager fails the test as a blocked request.
)

# Flags known to keep headless Chromium quiet on a closed network (no background connections).
CHROMIUM_ARGS = (
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
)
ARTICLE = "article.bd-article"  # sphinx-book-theme's page body (sidebars and header excluded)
# Chapters whose fused point clouds are interactive 3D views (depthlib.viz.show_point_clouds).
VIEW_CHAPTERS = ("00_introduction", "10_point_clouds")
VIEW_CLASS = "depthlib-plot3d"  # depthlib.viz.PLOT3D_CLASS; its data-state ends "interactive" or "static"
VIEWPORT = {"width": 1280, "height": 900}  # the window every page is opened in
# The widest code line the notebooks may hold (tests/test_notebooks.py checks the sources): the
# code area at a 1280 px window must show this many columns (_static/code-width.css).
CODE_COLUMNS = 78
# The dropdowns of the exercises, by directive: sphinx-exercise's solution admonition and the hint
# admonition inside each exercise; `:class: dropdown` makes sphinx-togglebutton collapse each behind
# a button.toggle-button in its title.
DROPDOWNS = {"hint": "div.hint", "solution": "div.solution"}
# The link to its exercise in a solution's title ("Solution to Exercise 9.1"), inside the clickable
# title of a dropdown (_static/toggle-title-links.js).
SOLUTION_LINK = "div.solution > .admonition-title a"


# --------------------------------------------------------------------------------------------
# local CDN copies


def _asset_dir(spec: str) -> Path:
    return ASSETS / spec.replace("/", "__")


def missing_assets() -> list[str]:
    return [spec for _, spec in CDN_MIRRORS if not (_asset_dir(spec) / ".complete").is_file()]


def _fetch_npm(spec: str, dest: Path, tmp: Path) -> str:
    """`npm pack` (the package's files only: no dependencies, no install scripts), unpacked."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"npm not found: cannot fetch {spec} (install Debian's npm)")
    out = subprocess.run([npm, "pack", "--silent", spec], cwd=tmp, check=True,
                         capture_output=True, text=True).stdout.split()
    with tarfile.open(tmp / out[-1]) as tar:
        for member in tar.getmembers():
            # npm tarballs hold one top folder ("package/"); keep the regular files under it
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2 or ".." in parts:
                continue
            target = dest.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return json.loads((dest / "package.json").read_text())["version"]


def fetch_assets() -> None:
    """Fetch every CDN_MIRRORS package into ASSETS (once; later calls find them)."""
    for _, spec in CDN_MIRRORS:
        dest = _asset_dir(spec)
        if (dest / ".complete").is_file():
            print(f"browser assets: {spec} already in {dest}")
            continue
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as tmp:
            version = _fetch_npm(spec, dest, Path(tmp))
        (dest / ".complete").write_text(f"{spec} {version}\n")
        print(f"browser assets: {spec} -> {version} in {dest}")


def mirrored_file(url: str) -> Path | None:
    """The local copy answering a CDN URL, or None when the URL is not mirrored."""
    bare = url.split("#")[0].split("?")[0]
    for prefix, spec in CDN_MIRRORS:
        if not bare.startswith(prefix):
            continue
        base = _asset_dir(spec).resolve()
        path = (base / urllib.parse.unquote(bare[len(prefix):])).resolve()
        return path if path.is_file() and path.is_relative_to(base) else None
    return None


# --------------------------------------------------------------------------------------------
# what a crawl records


@dataclass
class PageResult:
    rel: str                      # path of the page in the HTML folder
    seconds: float = 0.0
    status: int | None = None
    final_url: str = ""
    problems: dict[str, list[str]] = field(default_factory=dict)   # check name -> messages
    links: list[str] = field(default_factory=list)       # absolute hrefs of every <a>
    images: list[dict] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    chapter: tuple[str, str] | None = None              # (edition, stem) for chapter pages
    article_links: list[str] = field(default_factory=list)
    other_edition: dict = field(default_factory=dict)
    outputs: int = 0                                    # cell outputs on the page (0: not executed)
    views: list[dict] = field(default_factory=list)     # the 3D point-cloud views and what they show
    dropdowns: list[dict] = field(default_factory=list)  # each hint / solution before and after its click
    exercises: list[str] = field(default_factory=list)  # the title of each exercise, in page order
    link_clicks: list[dict] = field(default_factory=list)  # a solution title's link clicked: what changed
    code: list[dict] = field(default_factory=list)      # each code block's columns and wide lines
    display_math: dict = field(default_factory=dict)    # display equations laid out, and the wider ones
    listening: bool = field(default=True, repr=False)   # off once the visit leaves the page

    def add(self, check: str, message: str) -> None:
        if self.listening:
            self.problems.setdefault(check, []).append(message)


@dataclass(repr=False)
class Crawl:
    html_dir: Path
    base: str
    pages: dict[str, PageResult]
    url_status: dict[str, int]
    missing_fragments: dict[str, list[str]]
    screenshots: list[Path]
    seconds: float
    stale_files: list[str]

    def report(self, check: str) -> str:
        """Every page's problems of one check, one line each ("" when there are none)."""
        return "\n".join(f"{rel}: {message}" for rel, res in sorted(self.pages.items())
                         for message in res.problems.get(check, []))

    def summary(self) -> list[str]:
        """What the crawl covered, for the test's log."""
        lines = [f"browser: {len(self.pages)} pages of {self.html_dir} in {self.seconds:.1f} s "
                 f"({len(self.url_status)} distinct internal URLs checked)",
                 f"browser: screenshots {', '.join(str(p) for p in self.screenshots)}"]
        code = [block for res in self.pages.values() for block in res.code]
        if code:
            lines.append(f"browser: {len(code)} code blocks at a {VIEWPORT['width']} px window show "
                         f"{min(b['columns'] for b in code):.1f} to {max(b['columns'] for b in code):.1f} "
                         f"columns of the code font")
        if shutil.which("fc-list") and not subprocess.run(["fc-list", ":lang=zh"], capture_output=True,
                                                           text=True).stdout.strip():
            lines.append("browser: no CJK font installed, so the Chinese screenshots show boxes "
                         "(apt-get install fonts-wqy-microhei); the checks do not depend on it")
        if self.stale_files:
            lines.append(f"browser: {len(self.stale_files)} .html files in the folder are not part of "
                         f"this build and were not visited (left by an earlier build), e.g. "
                         f"{self.stale_files[:2]}")
        return lines


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return shutil.which("chromium")


def find_html_dir() -> Path | None:
    env = os.environ.get("DEPTHBOOK_HTML")
    if env:
        return Path(env).resolve()
    for candidate in HTML_CANDIDATES:
        if (candidate / "searchindex.js").is_file():
            return candidate
    return None


def _book_pages(html_dir: Path) -> tuple[list[str], list[str]]:
    """The pages of this build (from its search index) and any other .html files lying around."""
    text = (html_dir / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(text[text.index("(") + 1: text.rindex(")")])
    pages = sorted(f"{doc}.html" for doc in index["docnames"])
    pages += [p for p in ("index.html", "genindex.html", "search.html") if (html_dir / p).is_file()]
    on_disk = {p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")}
    stale = sorted(p for p in on_disk - set(pages)
                   if not p.startswith(("_static/", "_sources/", "_images/")))
    return pages, stale


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # the browser drops connections it no longer needs (a closed context); anything else is real
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


# Collects, in the page, what the checks need (after MathJax has finished).
PAGE_PROBE = r"""
(article) => {
  const main = document.querySelector(article) || document.body;
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  const articleLinks = [...main.querySelectorAll('a[href]')].map(a => a.href);
  const images = [...document.querySelectorAll('img')].map(img => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
    alt: img.alt || ''}));
  const maths = [...main.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                         .map(m => m.textContent.trim().slice(0, 80));
  const texErrors = [...main.querySelectorAll('mjx-merror')]
                         .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120));
  // MathJax's noundefined extension draws an unknown macro as red text, not as an error
  const undefinedMacros = [];
  const mj = window.MathJax && window.MathJax.startup;
  if (mj && mj.document && mj.toMML) {
    for (const item of mj.document.math) {
      const found = mj.toMML(item.root).match(/<mtext mathcolor="red">\\[^<]*<\/mtext>/g);
      if (found) undefinedMacros.push(`${String(item.math).slice(0, 80)} -> ${found.join(' ')}`);
    }
  }
  // raw TeX left in the prose (code, typeset math and outputs' <pre> are skipped)
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const rawTex = /\$\$|\$[^\s$][^$\n]*\$|\\\(|\\\)|\\\[|\\\]|\\(?:frac|begin|end|mathbf|mathrm|sum|sqrt|left|right|cdot|times)\b/;
  const raw = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    const m = node.textContent.match(rawTex);
    if (m) raw.push(node.textContent.trim().slice(0, 120));
  }
  const views = [...main.querySelectorAll('.depthlib-plot3d')].map(el => ({
    state: el.dataset.state || '', plotly: !!el.querySelector('.js-plotly-plot'),
    canvases: [...el.querySelectorAll('canvas')].filter(c => c.width > 0 && c.height > 0).length,
    fallback: !!el.querySelector('img')}));
  return {links, articleLinks, images, views, outputs: main.querySelectorAll('.cell_output').length,
          math: {elements: maths.length, containers: main.querySelectorAll('mjx-container').length,
                 untypeset, texErrors, undefinedMacros, raw,
                 mathjax: !!(window.MathJax && window.MathJax.version), version: (window.MathJax || {}).version || null},
          h1: (main.querySelector('h1') || {}).textContent || ''};
}
"""

# A 3D view decides once plotly.js and the page have loaded: "interactive" (drawn) or "static".
WAIT_FOR_VIEWS = r"""
(selector) => [...document.querySelectorAll(selector)].every(el => el.dataset.state && el.dataset.state !== 'loading')
"""

WAIT_FOR_MATHJAX = r"""
async () => {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  await document.fonts.ready;
}
"""

# What a reader sees of one hint or solution: the parts of its body (everything but the title)
# that are rendered (visibility visible, displayed, fully opaque, with a height), the text they
# show and the toggle button's aria-expanded.
DROPDOWN_STATE = r"""
(el) => {
  const body = [...el.children].filter(c => !c.classList.contains('admonition-title'));
  const shown = body.filter(c => {
    const s = getComputedStyle(c);
    return s.visibility === 'visible' && s.display !== 'none' && parseFloat(s.opacity) > 0.99
           && c.getBoundingClientRect().height > 0;
  });
  const button = el.querySelector('button.toggle-button');
  return {id: el.id, title: ((el.querySelector('.admonition-title') || {}).textContent || '').trim(),
          parts: body.length, shown: shown.length, text: shown.map(c => c.innerText).join('').trim().length,
          expanded: button ? button.getAttribute('aria-expanded') : null};
}
"""

# Every code block of the page body (cell outputs excluded: printed text, not code lines), laid
# out with every dropdown and collapsed cell open: the columns of the code font its area shows
# (inner width over the width of one character, measured with a ruler in the block's own font),
# whether it scrolls horizontally, and the lines wider than the area.
CODE_PROBE = r"""
(article) => {
  const main = document.querySelector(article) || document.body;
  for (const d of main.querySelectorAll('details')) d.open = true;
  for (const el of main.querySelectorAll('.toggle-hidden')) el.classList.remove('toggle-hidden');
  const blocks = [];
  for (const pre of main.querySelectorAll('div.highlight pre')) {
    if (pre.closest('.cell_output')) continue;
    const lines = pre.textContent.replace(/\n$/, '').split('\n');
    const style = getComputedStyle(pre);
    const width = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const ruler = document.createElement('span');
    ruler.textContent = '0'.repeat(100);
    pre.appendChild(ruler);
    const column = ruler.getBoundingClientRect().width / 100;
    const wide = [];
    for (const line of lines) {
      ruler.textContent = line;
      if (ruler.getBoundingClientRect().width > width + 0.5) wide.push(line);
    }
    ruler.remove();
    blocks.push({columns: column > 0 ? width / column : 0, laidOut: pre.clientWidth > 0,
                 overflow: pre.scrollWidth - pre.clientWidth, wide, first: lines[0].slice(0, 60),
                 inSolution: !!pre.closest('div.solution'), font: style.fontSize});
  }
  return blocks;
}
"""


# Every display equation of the page body, laid out like the code blocks above (dropdowns open):
# the width MathJax drew it at against the width of the block that holds it. A wider one is cut off
# at the right edge or scrolls sideways, and a reader misses its end. Its TeX comes from MathJax's
# own list of the page's math.
MATH_WIDTH_PROBE = r"""
(article) => {
  const main = document.querySelector(article) || document.body;
  const doc = window.MathJax && window.MathJax.startup && window.MathJax.startup.document;
  const items = doc ? [...doc.math] : [];
  const tex = (el) => {
    const item = items.find(i => i.typesetRoot === el);
    return (item ? String(item.math) : el.textContent).trim().replace(/\s+/g, ' ');
  };
  let checked = 0;
  const wide = [];
  for (const el of main.querySelectorAll('mjx-container[display="true"]')) {
    const drawn = el.querySelector('mjx-math');
    const room = Math.min(el.clientWidth, el.parentElement.clientWidth);
    if (!drawn || room <= 0) continue;  // not laid out
    checked += 1;
    const width = drawn.getBoundingClientRect().width;
    if (width > room + 1) wide.push({tex: tex(el).slice(0, 100), width: Math.round(width), room: Math.round(room)});
  }
  return {checked, wide};
}
"""


def _config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def colab_url(edition: str, stem: str) -> str:
    cfg = _config()
    repo = urllib.parse.urlparse(cfg["repository"]["url"]).path.strip("/")
    book = (cfg["repository"].get("path_to_book") or "").strip("/")
    path = "/".join(p for p in (book, "chapters", edition, f"{stem}.ipynb") if p)
    return f"{cfg['launch_buttons']['colab_url'].rstrip('/')}/github/{repo}/blob/{cfg['repository']['branch']}/{path}"


def landing_page(html_dir: Path) -> str:
    """The page a reader lands on: index.html, or the toc's root page when index.html redirects."""
    import yaml

    index = (html_dir / "index.html").read_text(encoding="utf-8", errors="replace").lower()
    if 'http-equiv="refresh"' not in index:
        return "index.html"
    return yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"] + ".html"


def crawl_book(html_dir: Path, chromium: str, sync_playwright) -> Crawl:
    started = time.monotonic()
    pages, stale = _book_pages(html_dir)
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shots_dir = Path(os.environ.get("DEPTHBOOK_SCREENSHOTS", html_dir.parent / "screenshots"))
    results: dict[str, PageResult] = {}
    targets = _screenshot_targets(html_dir, pages)
    shots_dir.mkdir(parents=True, exist_ok=True)
    for pattern in ("landing.png", "en-*.png", "zh-*.png"):   # this test's own earlier screenshots
        for old in shots_dir.glob(pattern):
            old.unlink()
    shots: list[Path] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         chromium_sandbox=False, args=list(CHROMIUM_ARGS))
            try:
                for rel in pages:
                    shot = shots_dir / f"{targets[rel]}.png" if rel in targets else None
                    results[rel] = _visit(browser, base, html_dir, rel, shot)
                    if shot is not None and shot.is_file():
                        shots.append(shot)
            finally:
                browser.close()
        url_status, fragments = _check_urls(base, results)
    finally:
        server.shutdown()
        server.server_close()
    return Crawl(html_dir, base, results, url_status, fragments, shots,
                 time.monotonic() - started, stale)


def _new_page(browser, base: str, result: PageResult | None):
    """A fresh context (empty storage, like a first visit) whose requests never leave localhost:
    same-origin requests go to the server, mirrored CDN files come from the local copies, every
    other request is blocked and recorded."""
    context = browser.new_context(viewport=dict(VIEWPORT))
    # 60 s, not Playwright's 30: the 3D-view pages parse 4.8 MB of plotly.js before their load event,
    # and a shared 2-core machine took 12-19 s per such page in one crawl
    context.set_default_timeout(60_000)

    def route(route):
        url = route.request.url
        if url.startswith(base) or url.startswith("data:"):
            route.continue_()
            return
        local = mirrored_file(url)
        if local is not None:
            route.fulfill(path=str(local), headers={"Access-Control-Allow-Origin": "*"})
            return
        if result is not None:
            result.add("external requests", f"blocked request to {url} (not mirrored in CDN_MIRRORS)")
        route.abort()

    context.route("**/*", route)
    return context, context.new_page()


def chapter_of(html_dir: Path, rel: str) -> tuple[str, str] | None:
    """(edition, stem) when the page was built from a notebook chapters/<edition>/<stem>.ipynb."""
    parts = rel.split("/")
    if (len(parts) == 3 and parts[0] == "chapters" and parts[1] in EDITIONS and parts[2].endswith(".html")
            and (html_dir / "_sources" / "chapters" / parts[1] / (parts[2][:-5] + ".ipynb")).is_file()):
        return parts[1], parts[2][:-5]
    return None


# After the load event a page is settled once no request it made has been open for QUIET_S (Playwright's
# "networkidle" rule), waiting at most QUIET_LIMIT_S. Counted from the page's own request events:
# Playwright's "networkidle" state never came on some pages while requests were routed (context.route),
# although every request had finished (seen on chapter 00's executed page, 4 of 5 loads).
QUIET_S = 0.5
QUIET_LIMIT_S = 30.0


class _Requests:
    """The requests of a page that have started and neither finished nor failed."""

    def __init__(self, page):
        self.open: dict[object, str] = {}
        self.changed = time.monotonic()
        page.on("request", self._start)
        page.on("requestfinished", self._end)
        page.on("requestfailed", self._end)

    def _start(self, request):
        self.open[request] = request.url
        self.changed = time.monotonic()

    def _end(self, request):
        self.open.pop(request, None)
        self.changed = time.monotonic()

    def wait_quiet(self, page) -> list[str]:
        """Wait until no request has been open for QUIET_S; the URLs still open at the limit."""
        limit = time.monotonic() + QUIET_LIMIT_S
        while time.monotonic() < limit:
            if not self.open and time.monotonic() - self.changed >= QUIET_S:
                return []
            page.wait_for_timeout(100)   # lets Playwright deliver the page's events meanwhile
        return sorted(self.open.values())


def _visit(browser, base: str, html_dir: Path, rel: str, screenshot: Path | None) -> PageResult:
    started = time.monotonic()
    result = PageResult(rel)
    result.chapter = chapter_of(html_dir, rel)
    context, page = _new_page(browser, base, result)

    def on_console(msg):
        if msg.type == "error":
            where = msg.location.get("url", "") if msg.location else ""
            result.add("console errors", f"{msg.text} [{where}]")

    page.on("console", on_console)
    page.on("pageerror", lambda err: result.add("console errors", f"uncaught: {err}"))
    page.on("response", lambda r: r.url.startswith(base) and r.status >= 400
            and result.add("failed requests", f"HTTP {r.status} {r.url}"))
    page.on("requestfailed", lambda r: r.url.startswith(base)
            and result.add("failed requests", f"{r.failure} {r.url}"))
    network = _Requests(page)
    try:
        response = page.goto(base + rel, wait_until="load")
        result.status = response.status if response else None
        if result.status != 200:
            result.add("page loads", f"HTTP {result.status}")
        if rel == "index.html" and landing_page(html_dir) != rel:   # a redirect: follow it
            page.wait_for_url(base + landing_page(html_dir), timeout=10_000)
            page.wait_for_load_state("load")
        pending = network.wait_quiet(page)
        if pending:
            result.add("failed requests", f"still loading {QUIET_LIMIT_S:.0f} s after the load event: "
                       + ", ".join(pending[:5]))
        page.evaluate(WAIT_FOR_MATHJAX)
        try:
            page.wait_for_function(WAIT_FOR_VIEWS, arg=f".{VIEW_CLASS}", timeout=30_000)
        except Exception as exc:  # noqa: BLE001 - reported by the 3D view check, with what the page shows
            result.add("3d views", f"a 3D view still loading after 30 s ({type(exc).__name__})")
        result.final_url = page.url
        probe = page.evaluate(PAGE_PROBE, ARTICLE)
        result.links, result.images, result.math = probe["links"], probe["images"], probe["math"]
        result.outputs, result.views = probe["outputs"], probe["views"]
        result.article_links = probe["articleLinks"]
        _check_page(result, probe)
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        if result.chapter:
            result.exercises = [text.strip() for text in page.locator(
                f"{ARTICLE} div.exercise > .admonition-title").all_text_contents()]
            _click_solution_link(page, result, "before any dropdown was opened")
            _open_dropdowns(page, result)
            _click_solution_link(page, result, "with every dropdown open")
        result.code = page.evaluate(CODE_PROBE, ARTICLE)
        result.display_math = page.evaluate(MATH_WIDTH_PROBE, ARTICLE)
        if result.chapter:
            result.listening = False   # the page followed below is checked on its own visit
            _follow_other_edition(page, base, result)
    except Exception as exc:  # noqa: BLE001 - any failure to drive the page is a finding about it
        result.listening = True
        result.add("page loads", f"{type(exc).__name__}: {exc}")
    finally:
        context.close()
        result.listening = True
    result.seconds = time.monotonic() - started
    return result


def _check_page(result: PageResult, probe: dict) -> None:
    math = probe["math"]
    if math["elements"]:
        if not math["mathjax"]:
            result.add("math", f"{math['elements']} math elements but MathJax did not load")
        for text in math["untypeset"]:
            result.add("math", f"math not typeset: {text!r}")
    for err in math["texErrors"]:
        result.add("math", f"TeX error: {err!r}")
    for text in math["undefinedMacros"]:
        result.add("math", f"undefined TeX macro: {text}")
    for text in math["raw"]:
        result.add("math", f"raw TeX in the prose: {text!r}")
    for img in probe["images"]:
        if not img["complete"] or img["width"] == 0:
            result.add("images", f"image not decoded: {img['src']} (alt {img['alt']!r})")


def _open_dropdowns(page, result: PageResult) -> None:
    """Click each hint's and solution's toggle button, as a reader would, recording what shows
    before the clicks and after them; the bodies' fade-in (0.3 s) is waited for, at most 5 s."""
    found = [(kind, element) for kind, selector in DROPDOWNS.items()
             for element in page.locator(f"{ARTICLE} {selector}").all()]
    result.dropdowns = [{"kind": kind, "before": element.evaluate(DROPDOWN_STATE)} for kind, element in found]
    for record, (_, element) in zip(result.dropdowns, found):
        button = element.locator("button.toggle-button")
        if button.count() != 1:
            result.add("dropdowns", f"{record['kind']} {record['before']['title']!r}: "
                                    f"{button.count()} toggle buttons")
            continue
        button.click()
    try:
        page.wait_for_function(f"(sel) => [...document.querySelectorAll(sel)].every(el => "
                               f"(s => s.parts > 0 && s.shown === s.parts)(({DROPDOWN_STATE})(el)))",
                               arg=", ".join(f"{ARTICLE} {sel}" for sel in DROPDOWNS.values()), timeout=5_000)
    except Exception:  # noqa: BLE001 - what did show is recorded below and judged by the test
        pass
    for record, (_, element) in zip(result.dropdowns, found):
        record["after"] = element.evaluate(DROPDOWN_STATE)


def _click_solution_link(page, result: PageResult, when: str) -> None:
    """Click the first solution title's link to its exercise, as a reader would, and record where
    the page went and how many dropdowns opened or closed (the toggle's fade is waited for)."""
    links = page.locator(f"{ARTICLE} {SOLUTION_LINK}")
    if links.count() == 0:
        return
    link = links.first
    selector = ", ".join(f"{ARTICLE} {sel}" for sel in DROPDOWNS.values())
    hidden = "(sel) => [...document.querySelectorAll(sel)].map(el => el.classList.contains('toggle-hidden'))"
    before, href = page.evaluate(hidden, selector), link.get_attribute("href")
    link.click()
    page.wait_for_timeout(500)
    after = page.evaluate(hidden, selector)
    result.link_clicks.append({"when": when, "href": href, "url": page.url,
                               "changed": sum(a != b for a, b in zip(before, after))})


def notebook_directives(edition: str, stem: str, kinds=DROPDOWNS) -> dict[str, int]:
    """How many of each directive (default: the DROPDOWNS) the chapter's notebook holds (fences in
    markdown cells)."""
    cells = json.loads((ROOT / "chapters" / edition / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return {kind: len(re.findall(rf"^`{{3,}}\{{{kind}\}}", text, re.MULTILINE)) for kind in kinds}


def _follow_other_edition(page, base: str, result: PageResult) -> None:
    def add(message):
        result.listening = True
        result.add("other edition", message)
        result.listening = False

    edition, stem = result.chapter
    other = "zh" if edition == "en" else "en"
    target = f"{base}chapters/{other}/{stem}.html"
    hits = [i for i, href in enumerate(result.article_links) if href.split("#")[0] == target]
    result.other_edition = {"target": target, "links": len(hits)}
    if not hits:
        add(f"no link to chapters/{other}/{stem}.html in the page body")
        return
    # the landed page is checked on its own visit: here it only has to arrive (HTTP 200, a title)
    with page.expect_navigation(wait_until="domcontentloaded") as nav:
        page.locator(f"{ARTICLE} a[href]").nth(hits[0]).click()
    response = nav.value
    landed = page.url.split("#")[0]
    h1 = page.evaluate(f"() => (document.querySelector('{ARTICLE} h1') || {{}}).textContent || ''")
    result.other_edition.update(landed=landed, status=response.status if response else None, h1=h1.strip())
    if landed != target or not response or response.status != 200 or not h1.strip():
        add(f"following the link to {target} landed on {landed} "
            f"(HTTP {response.status if response else None}, title {h1.strip()!r})")


def _check_urls(base: str, results: dict[str, PageResult]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Fetch every distinct same-origin link / image URL once; check #fragments against ids."""
    wanted: dict[str, set[str]] = {}
    for res in results.values():
        for url in res.links + [img["src"] for img in res.images]:
            if not url.startswith(base):
                continue
            bare, _, fragment = url.partition("#")
            wanted.setdefault(bare, set())
            if fragment:
                wanted[bare].add(urllib.parse.unquote(fragment))
    status: dict[str, int] = {}
    missing: dict[str, list[str]] = {}
    for bare, fragments in sorted(wanted.items()):
        try:
            with urllib.request.urlopen(bare, timeout=10) as resp:
                status[bare] = resp.status
                body = resp.read()
        except urllib.error.HTTPError as err:
            status[bare] = err.code
            continue
        if fragments and bare.split("?")[0].endswith(".html"):
            ids = _Ids()
            ids.feed(body.decode("utf-8", errors="replace"))
            lost = sorted(f for f in fragments if f not in ids.ids)
            if lost:
                missing[bare] = lost
    for res in results.values():
        for url in sorted(set(res.links)):
            bare, _, fragment = url.partition("#")
            if not bare.startswith(base):
                continue
            if status.get(bare) != 200:
                res.add("internal links", f"{url} -> HTTP {status.get(bare)}")
            elif fragment and urllib.parse.unquote(fragment) in missing.get(bare, []):
                res.add("internal links", f"{url} -> no element with id {urllib.parse.unquote(fragment)!r}")
        for img in res.images:
            if img["src"].startswith(base) and status.get(img["src"].split("#")[0]) != 200:
                res.add("images", f"{img['src']} -> HTTP {status.get(img['src'].split('#')[0])}")
            elif not img["src"].startswith((base, "data:")):
                res.add("images", f"external image {img['src']} (the book must render offline)")
    return status, missing


def _screenshot_targets(html_dir: Path, pages: list[str]) -> dict[str, str]:
    """page -> screenshot name: the landing page, the English chapter with the most math, and the
    Chinese chapter with the most math among the other chapters (by the built HTML)."""
    def math_count(rel):
        return (html_dir / rel).read_text(encoding="utf-8").count('class="math')

    def chapters(edition):
        found = [rel for rel in pages if chapter_of(html_dir, rel) and rel.split("/")[1] == edition]
        return sorted(found, key=lambda rel: (-math_count(rel), rel))

    targets = {"index.html": "landing"}
    en = chapters("en")
    if en:
        targets[en[0]] = "en-" + Path(en[0]).stem
    zh = [rel for rel in chapters("zh") if not en or Path(rel).stem != Path(en[0]).stem]
    if zh:
        targets[zh[0]] = "zh-" + Path(zh[0]).stem
    return targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tests/book_browser.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch-assets", help=f"fetch the CDN copies ({', '.join(s for _, s in CDN_MIRRORS)}) "
                                             f"from the npm registry into {ASSETS}, once")
    args = parser.parse_args(argv)
    if args.command == "fetch-assets":
        fetch_assets()


if __name__ == "__main__":
    main()
