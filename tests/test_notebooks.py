"""Notebook conventions: both editions match, notebooks are clean, and papermill parameters work.

nbval itself (`pytest --nbval-lax chapters/`) executes every notebook; these tests check the rules
around them (DESIGN.md, "Notebook conventions").
"""
import io
import json
import re
import tokenize
from pathlib import Path

import pytest
import yaml

# the widest code line: what the rendered code area shows at a 1280 px wide window
# (_static/code-width.css; tests/test_browser.py measures it in Chromium)
from book_browser import CODE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
EDITIONS = ("en", "zh")


def _notebooks(lang):
    return sorted((ROOT / "chapters" / lang).glob("*.ipynb"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _code_signature(source):
    """Code with comments dropped and string literals blanked: what en and zh must share."""
    tokens = []
    for tok in tokenize.generate_tokens(io.StringIO(source + "\n").readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                        tokenize.ENDMARKER):
            continue
        name = tokenize.tok_name.get(tok.type, "")
        if tok.type == tokenize.STRING or name == "FSTRING_START":
            tokens.append("<str>")
        elif name not in ("FSTRING_MIDDLE", "FSTRING_END"):
            tokens.append(tok.string)
    return " ".join(tokens)


ALL = [path for lang in EDITIONS for path in _notebooks(lang)]


def test_both_editions_have_the_same_chapters():
    en, zh = ({p.name for p in _notebooks(lang)} for lang in EDITIONS)
    assert en and en == zh


@pytest.mark.parametrize("name", [p.name for p in _notebooks("en")])
def test_editions_share_their_code_cells(name):
    cells = {lang: [_code_signature(_source(c)) for c in _load(ROOT / "chapters" / lang / name)["cells"]
                    if c["cell_type"] == "code"] for lang in EDITIONS}
    assert len(cells["en"]) == len(cells["zh"]), f"{name}: {len(cells['en'])} en vs {len(cells['zh'])} zh code cells"
    for k, (en, zh) in enumerate(zip(cells["en"], cells["zh"])):
        assert en == zh, f"{name}: code cell {k + 1} differs beyond comments and strings"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_stored_without_outputs_and_has_a_parameters_cell(path):
    cells = _load(path)["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored outputs"
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "first code cell must be tagged parameters"
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# "), "title first"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_links_its_other_edition_and_installs_from_the_book_repository(path):
    repo_url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    cells = _load(path)["cells"]
    other = "zh" if path.parent.name == "en" else "en"
    assert f"../{other}/{path.name}" in _source(cells[0]), f"title cell must link ../{other}/{path.name}"
    setup = _source([c for c in cells if c["cell_type"] == "code"][1])
    assert "google.colab" in setup and f"git+{repo_url}@" in setup, "second code cell installs depthlib on Colab"
    urls = set(re.findall(r"git\+(https://[^@\"']+)", "".join(_source(c) for c in cells)))
    assert urls == {repo_url}, f"install urls {urls} differ from _config.yml's {repo_url}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_has_summary_and_exercises_sections(path):
    text = "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
    assert re.search(r"^## (Summary|小结)", text, re.M) and re.search(r"^## (Exercises|练习)", text, re.M)


def test_papermill_runs_a_chapter_with_an_overridden_parameter(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(ROOT / "chapters/en/00_introduction.ipynb"), str(out),
                               parameters={"profile": "cpu", "seed": 3}, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False)
    cells = _load(out)["cells"]
    injected = [c for c in cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(injected) == 1 and "seed = 3" in _source(injected[0])
    printed = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "profile: cpu" in printed
    assert "room_0003" in printed  # the override reached the rendering: room 3, not room 0


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_widget_cells_leave_no_dead_widget_in_the_rendered_book(path):
    # the rendered book loads no widget JavaScript (_config.yml): a widget cell's output would be a
    # kernel-less slider or a stale text repr, so it is removed there (the static figure stays)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"]
    assert config["nb_ipywidgets_js"] == {}
    assert ["html", "application/vnd.jupyter.widget-view+json", None] in config["nb_mime_priority_overrides"]
    for cell in _load(path)["cells"]:
        if cell["cell_type"] == "code" and re.search(r"\binteractive?\(", _source(cell)):
            assert "remove-output" in cell["metadata"].get("tags", []), _source(cell)[:200]


def test_book_build_loads_every_local_extension():
    # Jupyter Book appends local_extensions to its default extension list, but an explicit
    # sphinx.config.extensions list replaces that list: each local extension must be named in it too
    from jupyter_book.config import get_final_config

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    final, _ = get_final_config(user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
                                sourcedir=ROOT)
    for name in config["sphinx"]["local_extensions"]:
        assert name in final["extensions"], (name, final["extensions"])
        assert (ROOT / config["sphinx"]["local_extensions"][name] / f"{name}.py").is_file()


def test_book_build_loads_the_code_width_css():
    # Jupyter Book adds _static/ to the static path and every .css in it to every page
    from jupyter_book.config import get_final_config

    final, _ = get_final_config(user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
                                sourcedir=ROOT)
    assert (ROOT / "_static" / "code-width.css").is_file()
    assert "_static" in final["html_static_path"] and "code-width.css" in final["html_css_files"], \
        (final.get("html_static_path"), final.get("html_css_files"))


def test_book_build_executes_without_nbclients_output_widget_mimic():
    import sys

    import nbclient.client
    import nbformat

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["sphinx"]["local_extensions"]["nbclient_no_output_widget"] == "_ext"
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import nbclient_no_output_widget as extension
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    original = nbclient.client.NotebookClient.__init__
    assert nbclient.client.NotebookClient(nbformat.v4.new_notebook()).widget_registry  # the mimic, by default
    try:
        extension.setup(app=None)
        extension.setup(app=None)  # idempotent: one wrapper
        assert nbclient.client.NotebookClient.__init__.__wrapped__ is original
        assert nbclient.client.NotebookClient(nbformat.v4.new_notebook()).widget_registry == {}
    finally:
        nbclient.client.NotebookClient.__init__ = original


def test_exercises_are_numbered_within_their_chapter():
    # Nothing in the table of contents is section-numbered, so Sphinx numbers every exercise of the
    # book with one counter ("Exercise 117" in chapter 12); _ext/exercise_labels renumbers them
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import exercise_labels as extension
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    assert extension.chapter_label("chapters/en/12_cascade") == 12
    assert extension.chapter_label("chapters/zh/00_introduction") == 0
    assert extension.chapter_label("chapters/zh/appendix_chapters_as_programs") == "A"
    assert extension.chapter_label("intro") is None
    assert extension.is_chinese("chapters/zh/09_refinement_and_loss") and not extension.is_chinese("chapters/en/09_refinement_and_loss")
    env = SimpleNamespace(toc_fignumbers={
        "chapters/en/12_cascade": {"exercise": {"b": (118,), "a": (117,), "c": (119,)}, "figure": {"f": (40,)}},
        "chapters/zh/appendix_chapters_as_programs": {"exercise": {"x": (230,)}},
        "intro": {"exercise": {"y": (1,)}},
    })
    extension.number_exercises_by_chapter(None, env)
    assert env.toc_fignumbers["chapters/en/12_cascade"] == {
        "exercise": {"a": (12, 1), "b": (12, 2), "c": (12, 3)}, "figure": {"f": (40,)}}
    assert env.toc_fignumbers["chapters/zh/appendix_chapters_as_programs"]["exercise"] == {"x": ("A", 1)}
    assert env.toc_fignumbers["intro"]["exercise"] == {"y": (1,)}  # not a chapter: left as Sphinx numbered it


# --- exercises, hidden bookkeeping cells, readable code lines (issue 13) ---------------------------

FENCE = re.compile(r"^(`{3,})\{(exercise|solution|hint)\}[ \t]*(\S*)[ \t]*$")


def _directives(text):
    """The sphinx-exercise / hint directives of a markdown text, as dicts with their options."""
    found, lines = [], text.split("\n")
    for i, line in enumerate(lines):
        match = FENCE.match(line)
        if not match:
            continue
        fence, kind, argument = match.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == fence), None)
        assert end is not None, f"unclosed {kind} directive: {line}"
        body = lines[i + 1:end]
        options = dict(re.match(r":(\w+):\s*(.*)", b).groups() for b in body
                       if re.match(r":(\w+):", b))
        found.append({"kind": kind, "argument": argument, "options": options,
                      "body": "\n".join(b for b in body if not re.match(r":\w+:", b)).strip()})
    return found


def _label_prefix(path):
    stem = path.stem.split("_")[0]
    chapter = f"ch{stem}" if stem.isdigit() else stem
    return ("zh-" if path.parent.name == "zh" else "") + chapter


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_exercise_is_numbered_with_a_hint_and_a_worked_solution(path):
    cells = [_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown"]
    text = "\n".join(cells)
    directives = _directives(text)
    exercises = [d for d in directives if d["kind"] == "exercise"]
    solutions = {d["argument"]: d for d in directives if d["kind"] == "solution"}
    assert exercises, "no {exercise} directive"
    prefix = _label_prefix(path)
    labels = [d["options"].get("label") for d in exercises]
    assert labels == [f"{prefix}-ex{k}" for k in range(1, len(labels) + 1)], labels
    for exercise, label in zip(exercises, labels):
        assert "{hint}" in exercise["body"], f"{label}: no hint"
        solution = solutions.pop(label, None)
        assert solution is not None, f"{label}: no solution"
        assert solution["options"].get("class") == "dropdown", f"{label}: solution not collapsed"
        assert len(solution["body"]) > 150, f"{label}: the solution is too short to be worked"
    assert not solutions, f"solutions without an exercise: {sorted(solutions)}"
    section = text[text.index("## Exercises" if path.parent.name == "en" else "## 练习"):]
    section = re.split(r"^## ", section[3:], maxsplit=1, flags=re.M)[0]  # up to the next section (References)
    outside = re.sub(r"^(`{3,})\{.*?^\1$", "", section, flags=re.M | re.S)
    assert not re.search(r"^\d+\. ", outside, re.M), "a numbered exercise outside the directives"


RECORD_CALL = re.compile(r"^\s*record\(", re.M)


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_numbers_live_in_hidden_cells(path):
    # record(...) bookkeeping and the asserts that pin one checkpoint's numbers run under nbval and
    # the chapter runner, but the rendered book hides them (tag remove-cell), and such a cell holds
    # nothing a reader should see or need: no output, no name a later cell uses.
    cells = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    for k, cell in enumerate(cells):
        text = _source(cell)
        hidden = "remove-cell" in cell["metadata"].get("tags", [])
        if RECORD_CALL.search(text):
            assert hidden, f"code cell {k + 1} calls record() but is not tagged remove-cell"
        if hidden:
            assert RECORD_CALL.search(text) or re.search(r"^\s*assert\b", text, re.M), \
                f"hidden code cell {k + 1} neither records nor asserts"
            assert not re.search(r"\b(print|display|plt\.\w+)\(", text), \
                f"hidden code cell {k + 1} shows something"


def _columns(line):
    """Display width in a monospace font: CJK characters take two columns."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_code_lines_fit_the_rendered_code_area(path):
    long = []
    for k, cell in enumerate(_load(path)["cells"]):
        text = _source(cell)
        if cell["cell_type"] == "code":
            code = text.split("\n")
        else:  # fenced code blocks of markdown cells, also inside directives
            code, stack = [], []
            for line in text.split("\n"):
                match = re.match(r"^(`{3,})(.*)$", line)
                if match:
                    ticks, rest = match.groups()
                    if not rest.strip() and stack and stack[-1][0] == ticks:
                        stack.pop()
                    else:
                        stack.append((ticks, "directive" if rest.startswith("{") else "code"))
                elif stack and stack[-1][1] == "code":
                    code.append(line)
        long += [f"cell {k}: {line}" for line in code if _columns(line) > CODE_COLUMNS]
    assert not long, f"{len(long)} code lines wider than {CODE_COLUMNS} columns:\n" + "\n".join(long[:10])


def test_both_editions_quote_the_same_training_settings():
    # chapter 11's sourced table of training settings is the one place the book states them; the
    # Chinese edition translates it, so every row must carry the same numbers
    def rows(lang, label):
        cells = _load(ROOT / "chapters" / lang / "11_scaling_up.ipynb")["cells"]
        text = next(_source(c) for c in cells if f"({label})=" in _source(c))
        table = [line for line in text.split("\n") if line.startswith("|") and not line.startswith("|---")]
        return [sorted(re.findall(r"\d+(?:\.\d+)?", line)) for line in table]

    en, zh = rows("en", "training-settings"), rows("zh", "zh-training-settings")
    assert len(en) > 20 and en == zh


REFERENCE_HEADINGS = {"en": "## References", "zh": "## 参考文献"}
REFERENCE_ENTRY = re.compile(r"^(\d+)\. (.+)$", re.M)


@pytest.mark.parametrize("name", [p.name for p in _notebooks("en")])
def test_every_chapter_ends_with_the_same_references_in_both_editions(name):
    """The last section is the papers and code the chapter builds on: numbered entries, each an author
    and year, a note on what the chapter takes from it, and the same links in the same order in both
    editions (the notes are translated, the citations are not)."""
    entries = {}
    for lang in EDITIONS:
        last = _source(_load(ROOT / "chapters" / lang / name)["cells"][-1])
        assert last.startswith(REFERENCE_HEADINGS[lang] + "\n"), f"{lang}/{name}: the last cell is not the references"
        found = REFERENCE_ENTRY.findall(last)
        assert [int(k) for k, _ in found] == list(range(1, len(found) + 1)) and found, f"{lang}/{name}: numbering"
        for _, entry in found:
            assert re.search(r"\(\d{4}\)\.|\]\(https://", entry), f"{lang}/{name}: neither a year nor a link: {entry}"
            assert re.search(r" (—|——) \S", entry), f"{lang}/{name}: no note on what the chapter uses: {entry}"
        entries[lang] = found
    en, zh = entries["en"], entries["zh"]
    assert len(en) == len(zh)
    for (_, a), (_, b) in zip(en, zh):
        assert a.split(" — ")[0] == b.split(" —— ")[0], f"{name}: the citations differ:\n{a}\n{b}"
        assert all(url.startswith("https://") for url in re.findall(r"\]\(([^)]+)\)", a))


# The notation page (chapters/{en,zh}/notation.md): a row is "| $symbol$ ... | meaning | `code` | [NN](chapter) |"
# (no symbol or meaning on the page contains a literal "|": they write \mid and \lvert)
NOTATION_LINK = re.compile(r"^\[(\d\d)\]\((\d\d_\w+\.ipynb)\)$")
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.S)


def _notation_rows(lang):
    text = (ROOT / "chapters" / lang / "notation.md").read_text(encoding="utf-8")
    rows = []
    for line in text.split("\n"):
        if not line.startswith("| $"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"{lang}/notation.md: not 4 columns: {line}"
        link = NOTATION_LINK.match(cells[3])
        assert link, f"{lang}/notation.md: the last column is not a chapter link: {line}"
        rows.append((cells[0], cells[1], cells[2], *link.groups()))
    return rows


def _chapter_math(path):
    return [(a or b) for c in _load(path)["cells"] if c["cell_type"] == "markdown"
            for a, b in MATH.findall(_source(c))]


def test_notation_page_lists_the_same_symbols_in_both_editions():
    en, zh = ([(sym, re.findall(r"`[^`]+`", code), num, target) for sym, _, code, num, target in _notation_rows(lang)]
              for lang in EDITIONS)
    assert len(en) > 40 and en == zh
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert all(f"file: chapters/{lang}/notation\n" in toc for lang in EDITIONS)


@pytest.mark.parametrize("lang", EDITIONS)
def test_notation_page_symbols_are_written_so_in_the_chapter_it_names(lang):
    """Every symbol of the notation page occurs, written exactly so, in a formula of the chapter its row
    links to, and every identifier in its code column exists in depthlib or in that chapter's code: a
    chapter that renames a symbol, or code that renames a name, must update the page."""
    library = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "depthlib").rglob("*.py"))
    for symbols, _, code, num, target in _notation_rows(lang):
        path = ROOT / "chapters" / lang / target
        assert target.startswith(num + "_") and path.is_file(), f"{lang}/notation.md: bad link {target}"
        maths = _chapter_math(path)
        for symbol in re.findall(r"\$(.+?)\$", symbols):
            assert any(symbol in m for m in maths), f"{lang}/notation.md: ${symbol}$ is not in {target}'s formulas"
        chapter_code = "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "code")
        for name in re.findall(r"`([^`]+)`", code):
            for ident in re.findall(r"[A-Za-z_]\w+", name):
                assert re.search(rf"\b{ident}\b", library + chapter_code), f"{lang}/notation.md: `{ident}` not found"
