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
def test_notebook_ends_with_summary_and_exercises(path):
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
