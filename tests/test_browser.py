"""The rendered book in a real browser: every page of a built HTML book, in headless Chromium.

tests/book_browser.py serves the HTML folder on localhost and opens every page in a fresh 1280 x
900 window, with every request kept on this machine (the CDN files from local copies, everything
else blocked); these tests are the claims about what it found:

- every page loads (HTTP 200; `index.html` lands on the toc's root page);
- every same-origin link resolves, its `#fragment` included, and every image loads and decodes;
- no console error, uncaught page error, failed request or request to another site;
- math is typeset by MathJax: no untypeset element, TeX error, undefined macro or raw TeX;
- each chapter page (both editions) carries the Colab button for its own notebook and a link to
  the other edition of the same chapter that loads when clicked;
- each chapter page shows every hint and solution of its notebook's exercises collapsed, and a
  click on its button shows it (the worked answer of a solution); the link to its exercise in a
  solution's title goes to the exercise and opens or closes no dropdown;
- each chapter numbers its own exercises (12.1, 12.2, ...; A.1 in the appendix) and titles them,
  their hints and their solutions in the page's language;
- at a 1280 px window every code block shows at least 78 columns of the code font, and no code
  line scrolls out of its block;
- on an executed build (`make book`) the interactive 3D point clouds of chapters 00 and 10 load (a
  structural build has no outputs: that test skips there, with the reason);
- the screenshots (landing page, one chapter per edition) are saved.

The tests skip, with the reason, when no book is built, when no Chromium is installed, when the
`playwright` package is missing or when the local CDN copies have not been fetched
(`make browser-assets`). With `DEPTHBOOK_BROWSER_REQUIRED=1` (set by `.ci/run` once it has installed
Chromium and the CDN copies) each of those is a failure instead.
"""
from __future__ import annotations

import contextlib
import os

import pytest

import book_browser
from book_browser import CODE_COLUMNS, EDITIONS, ROOT, VIEW_CHAPTERS, VIEW_CLASS, VIEWPORT

REQUIRED = os.environ.get("DEPTHBOOK_BROWSER_REQUIRED") == "1"


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (DEPTHBOOK_BROWSER_REQUIRED=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def crawl(request) -> book_browser.Crawl:
    html_dir = book_browser.find_html_dir()
    if html_dir is None or not (html_dir / "searchindex.js").is_file():
        _unavailable("no built book: run `make book` or `make book-structure` (or set DEPTHBOOK_HTML)"
                     + (f"; {html_dir} has no searchindex.js" if html_dir else ""))
    chromium = book_browser.find_chromium()
    if chromium is None:
        _unavailable("no Chromium: install Debian's `chromium` package (or set CHROMIUM=/path/to/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the `playwright` package is not installed (pip install -e '.[test]')")
    missing = book_browser.missing_assets()
    if missing:
        _unavailable(f"local CDN copies missing ({', '.join(missing)}): run `make browser-assets`")
    result = book_browser.crawl_book(html_dir, chromium, sync_playwright)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(result.summary()))
    return result


def test_every_book_page_loads(crawl):
    assert len(crawl.pages) >= 3, f"only {sorted(crawl.pages)} in {crawl.html_dir}"
    assert not crawl.report("page loads"), "\n" + crawl.report("page loads")
    landing = crawl.pages["index.html"]
    assert landing.final_url == crawl.base + book_browser.landing_page(crawl.html_dir), landing.final_url


def test_internal_links_resolve(crawl):
    checked = [u for u in crawl.url_status if u.endswith(".html")]
    assert checked, "no internal page links found at all"
    assert not crawl.report("internal links"), "\n" + crawl.report("internal links")


def test_images_load_and_decode(crawl):
    assert not crawl.report("images"), "\n" + crawl.report("images")


def test_no_console_errors_or_failed_requests(crawl):
    problems = "\n".join(filter(None, (crawl.report(c) for c in
                                       ("console errors", "failed requests", "external requests"))))
    assert not problems, "\n" + problems


def test_math_is_typeset(crawl):
    with_math = [r for r in crawl.pages.values() if r.math.get("elements")]
    assert with_math, "no page of the book has math: the math check would be vacuous"
    assert not crawl.report("math"), "\n" + crawl.report("math")
    for res in with_math:
        assert res.math["containers"] >= res.math["elements"], (res.rel, res.math)


def _chapter_pages(crawl):
    chapters = [r for r in crawl.pages.values() if r.chapter]
    editions = {r.chapter[0] for r in chapters}
    assert editions == set(EDITIONS), f"chapter pages found for {sorted(editions)} only"
    return chapters


def test_chapter_pages_have_colab_button(crawl):
    missing = []
    for res in _chapter_pages(crawl):
        expected = book_browser.colab_url(*res.chapter)
        if expected not in res.links:
            colab = [u for u in res.links if "colab.research.google.com" in u]
            missing.append(f"{res.rel}: no Colab button to {expected} (Colab links: {colab})")
        notebook = ROOT / "chapters" / res.chapter[0] / f"{res.chapter[1]}.ipynb"
        if not notebook.is_file():
            missing.append(f"{res.rel}: the Colab button's notebook {notebook.relative_to(ROOT)} is not in the repository")
    assert not missing, "\n" + "\n".join(missing)


def test_chapter_pages_link_the_other_edition(crawl):
    chapters = _chapter_pages(crawl)
    assert not crawl.report("other edition"), "\n" + crawl.report("other edition")
    followed = [r for r in chapters if r.other_edition.get("status") == 200]
    assert len(followed) == len(chapters), [r.rel for r in chapters if r not in followed]


def test_exercise_hints_and_solutions_start_collapsed_and_open_on_click(crawl):
    problems = [line for line in crawl.report("dropdowns").splitlines() if line]
    chapters = _chapter_pages(crawl)
    for res in sorted(chapters, key=lambda r: r.rel):
        on_page = {kind: sum(d["kind"] == kind for d in res.dropdowns) for kind in book_browser.DROPDOWNS}
        in_notebook = book_browser.notebook_directives(*res.chapter)
        if on_page != in_notebook:
            problems.append(f"{res.rel}: {on_page} on the page, {in_notebook} in the notebook")
        for drop in res.dropdowns:
            before, after = drop["before"], drop["after"]
            if before["shown"] or before["expanded"] != "false":
                problems.append(f"{res.rel}: {drop['kind']} {before['title']!r} is open before any click "
                                f"({before['shown']} of {before['parts']} parts shown)")
            if not after["parts"] or after["shown"] != after["parts"] or not after["text"] \
                    or after["expanded"] != "true":
                problems.append(f"{res.rel}: {drop['kind']} {after['title']!r} not shown after a click on its "
                                f"button ({after['shown']} of {after['parts']} parts, {after['text']} characters)")
    kinds = {d["kind"] for res in chapters for d in res.dropdowns}
    assert kinds == set(book_browser.DROPDOWNS), f"only {sorted(kinds)} found: the check would be vacuous"
    assert not problems, "\n" + "\n".join(problems)


def test_a_link_in_a_solution_title_follows_the_link_and_toggles_nothing(crawl):
    """sphinx-togglebutton made the whole title clickable: the link in "Solution to Exercise 9.1"
    toggled the last dropdown clicked (or threw "button is not defined"); _static/toggle-title-links.js."""
    problems, clicks = [], 0
    for res in sorted(_chapter_pages(crawl), key=lambda r: r.rel):
        for click in res.link_clicks:
            clicks += 1
            if click["changed"]:
                problems.append(f"{res.rel}: clicking {click['href']} in a solution title {click['when']} "
                                f"opened or closed {click['changed']} dropdown(s)")
            if not click["url"].endswith(click["href"]):
                problems.append(f"{res.rel}: clicking {click['href']} {click['when']} went to {click['url']}")
    assert clicks, "no solution title with a link was clicked: the check would be vacuous"
    assert not problems, "\n" + "\n".join(problems)


# How a chapter page titles its exercises, their hints and their solutions, by edition
# (_ext/exercise_labels.py); {n} is the exercise's number within its chapter, e.g. 12.1.
EXERCISE_TITLES = {"en": {"exercise": "Exercise {n}", "hint": "Hint", "solution": "Solution to Exercise {n}"},
                   "zh": {"exercise": "练习 {n}", "hint": "提示", "solution": "练习 {n} 的解答"}}


def test_exercises_are_numbered_by_chapter_and_titled_in_the_pages_language(crawl):
    problems = []
    for res in sorted(_chapter_pages(crawl), key=lambda r: r.rel):
        edition, stem = res.chapter
        chapter = int(stem[:2]) if stem[:2].isdigit() else "A"
        count = book_browser.notebook_directives(edition, stem, ["exercise"])["exercise"]
        numbers = [f"{chapter}.{k}" for k in range(1, count + 1)]
        titles = EXERCISE_TITLES[edition]
        expected = {"exercise": [titles["exercise"].format(n=n) for n in numbers],
                    "hint": [titles["hint"]] * len(numbers),
                    "solution": [titles["solution"].format(n=n) for n in numbers]}
        found = {"exercise": res.exercises,
                 **{kind: [d["before"]["title"] for d in res.dropdowns if d["kind"] == kind]
                    for kind in ("hint", "solution")}}
        problems += [f"{res.rel}: {kind} titles {found[kind]}, expected {expected[kind]}"
                     for kind in expected if found[kind] != expected[kind]]
    assert any(res.exercises for res in _chapter_pages(crawl)), "no exercise found: the check would be vacuous"
    assert not problems, "\n" + "\n".join(problems)


def _code_blocks(crawl):
    assert crawl.pages and all(r.code for r in _chapter_pages(crawl)), \
        [r.rel for r in _chapter_pages(crawl) if not r.code]
    return [(rel, i, block) for rel, res in sorted(crawl.pages.items()) for i, block in enumerate(res.code)]


def test_code_area_shows_78_columns_at_1280_px(crawl):
    narrow = [f"{rel}: code block {i} ({block['first']!r}) shows {block['columns']:.1f} columns "
              f"at {block['font']} in a {VIEWPORT['width']} px window"
              + ("" if block["laidOut"] else " (not laid out)")
              for rel, i, block in _code_blocks(crawl) if block["columns"] < CODE_COLUMNS]
    assert not narrow, f"{len(narrow)} code areas narrower than {CODE_COLUMNS} columns:\n" + "\n".join(narrow)


def test_code_lines_fit_their_code_area_at_1280_px(crawl):
    cut = [f"{rel}: code block {i} scrolls by {block['overflow']} px; wider lines:\n    "
           + "\n    ".join(block["wide"])
           for rel, i, block in _code_blocks(crawl) if block["overflow"] > 0 or block["wide"]]
    assert not cut, f"{len(cut)} code blocks wider than their area:\n" + "\n".join(cut)


def test_display_equations_fit_the_text_column_at_1280_px(crawl):
    checked = sum(res.display_math.get("checked", 0) for res in crawl.pages.values())
    assert checked > 50, f"only {checked} display equations laid out: the check would be vacuous"
    wide = [f"{rel}: {eq['width']} px in {eq['room']} px: {eq['tex']}"
            for rel, res in sorted(crawl.pages.items()) for eq in res.display_math.get("wide", [])]
    assert not wide, f"{len(wide)} display equations wider than the text column:\n" + "\n".join(wide)


def test_point_cloud_3d_views_load(crawl):
    chapters = _chapter_pages(crawl)
    if not any(res.outputs for res in chapters):
        pytest.skip("a structural build (notebooks not executed, e.g. `make book-structure`): its pages have "
                    "no cell outputs, so no 3D view to check; `make book` builds the executed book")
    problems = [line for line in crawl.report("3d views").splitlines() if line]
    for res in sorted(chapters, key=lambda r: r.rel):
        if res.chapter[1] in VIEW_CHAPTERS and not res.views:
            problems.append(f"{res.rel}: no 3D point-cloud view (.{VIEW_CLASS})"
                            + ("" if res.outputs else ": the page was not executed"))
        for index, view in enumerate(res.views):
            if view["state"] != "interactive" or not view["plotly"] or not view["canvases"] or view["fallback"]:
                problems.append(f"{res.rel}: 3D view {index} did not load (state {view['state']!r}, plotly "
                                f"graph {view['plotly']}, {view['canvases']} drawn canvases, static image left "
                                f"{view['fallback']})")
    assert not problems, "\n" + "\n".join(problems)


def test_screenshots_saved(crawl):
    names = sorted(p.name for p in crawl.screenshots)
    assert len(names) == 3 and "landing.png" in names, names
    assert any(n.startswith("en-") for n in names) and any(n.startswith("zh-") for n in names), names
    for path in crawl.screenshots:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, path
