"""The chapter runner's report: failing cells, failures, the summary table."""
from concurrent.futures.process import BrokenProcessPool

import pytest

from depthlib import chapter_report
from depthlib.chapter_report import NOT_FINISHED, describe_failure, summary_markdown


def _row(chapter, status, records=None, error=None, seconds=1.0):
    return {"lang": "en", "chapter": chapter, "notebook": f"en/{chapter}.ipynb", "status": status,
            "seconds": seconds, "records": records or {}, "error": error}


def test_the_summary_table_has_one_row_per_chapter_with_numbers_errors_and_unfinished_ones():
    summary = {"profile": "gpu", "seconds": 12.3, "jobs": 2, "budget": None, "chapters": [
        _row("05_training", "ok", {"abs_rel": {"value": 0.12345, "unit": None},
                                   "steps": {"value": 1200.0, "unit": "steps"}}),
        _row("07_plane_sweep", "failed", error={"cell": 37, "execution_count": 21, "ename": "AssertionError",
                                                "message": "a | b", "line": "assert x < y"}),
        _row("08_mvsnet", NOT_FINISHED, seconds=0.0)]}
    lines = summary_markdown(summary).splitlines()
    assert lines[0].startswith("# Chapter run: profile gpu, 3 chapter(s), 1 failed, 1 unfinished")
    assert "page noise" not in lines[0]
    assert "if it no longer runs, it was killed" in lines[0] and lines[0].endswith("12 s, 2 at a time")
    assert lines[4] == "| en/05_training | ok | 1.0 | abs_rel 0.1235; steps 1,200 steps |"
    # the failing cell and line are named, and a | in a message cannot break the table
    assert lines[5] == ("| en/07_plane_sweep | failed | 1.0 | **cell 37 (In [21]): AssertionError: a \\| b** "
                        "at `assert x < y` |")
    assert lines[6] == "| en/08_mvsnet | not finished | 0.0 |  |" and len(lines) == 7


def _executed(path, *cells):
    """An executed notebook as papermill writes it: its injected parameters cell first, then
    ``cells``, each (source, tags, outputs)."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell("seed = 3")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# chapter"), injected]
    for source, tags, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"], cell.outputs = list(tags), [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def _stream(name, text):
    return {"output_type": "stream", "name": name, "text": text}


def test_page_noise_finds_stderr_and_local_paths_the_rendered_page_would_show(tmp_path):
    home = tmp_path / "home" / "reader"
    png = "iVBORw0KGgo" + "/srv/" * 3 + "AAAA"  # base64 data that happens to spell a path
    notebook = _executed(
        tmp_path / "ch.ipynb",
        ("print('fine')", [], [_stream("stdout", "fine\n")]),
        ("warn()", [], [_stream("stderr", "\n/x.py:3: UserWarning: lr_scheduler.step() before\n  more\n")]),
        ("ckpt", [], [_stream("stdout", f"saved\nwrote {home}/runs/a.pt\n")]),
        ("show()", [], [{"output_type": "display_data", "metadata": {},
                         "data": {"text/plain": "<Figure>", "text/html": f'<img src="data:image/png;base64,{png}">'}}]),
        ("hidden()", ["remove-output"], [_stream("stderr", "hidden warning\n")]),
        ("quiet()", ["remove-stderr"], [_stream("stderr", "dropped\n"), _stream("stdout", f"{home}/x\n")]),
        ("table()", [], [{"output_type": "execute_result", "execution_count": 7, "metadata": {},
                          "data": {"text/plain": "tbl", "text/html": f"<td>{home}/data</td>"}}]),
    )
    noise = chapter_report.page_noise(notebook, [home, "/"])  # "/" alone is no one's path
    # cells: title 0, then 1..7 (papermill's injected cell not counted)
    assert noise == [{"cell": 2, "kind": "stderr", "text": "/x.py:3: UserWarning: lr_scheduler.step() before"},
                     {"cell": 3, "kind": "local path", "text": f"wrote {home}/runs/a.pt"},
                     {"cell": 6, "kind": "local path", "text": f"{home}/x"},
                     {"cell": 7, "kind": "local path", "text": f"<td>{home}/data</td>"}]
    assert chapter_report.page_noise(notebook, ["/srv"]) == noise[:1]  # the PNG's "/srv/" is no path
    assert chapter_report.page_noise(tmp_path / "missing.ipynb", [home]) == []
    summary = {"profile": "cpu", "seconds": 1.0, "chapters": [
        {**_row("11_scaling_up", "ok", {"speedup": {"value": 2.0, "unit": None}}), "noise": noise[:2]}]}
    lines = summary_markdown(summary).splitlines()
    assert lines[0] == "# Chapter run: profile cpu, 1 chapter(s), 0 failed, 1 with page noise, 1 s"
    assert lines[4] == ("| en/11_scaling_up | ok | 1.0 | **page noise: cell 2 stderr: /x.py:3: UserWarning: "
                        f"lr_scheduler.step() before; cell 3 local path: wrote {home}/runs/a.pt**; speedup 2 |")


def test_a_worker_that_died_is_described_by_its_exception_when_no_notebook_was_written(tmp_path):
    failure = describe_failure(BrokenProcessPool("A process in the process pool was terminated abruptly\nmore"),
                               tmp_path / "missing.ipynb")
    assert failure == {"ename": "BrokenProcessPool",
                       "message": "A process in the process pool was terminated abruptly"}


def test_the_failing_line_is_found_whatever_the_width_of_its_line_number(tmp_path):
    # IPython pads the arrow to the line number's width: "----> 2" in a short cell, "---> 10" further down
    nbformat = pytest.importorskip("nbformat")
    for number, arrow in ((2, "---->"), (10, "--->"), (100, "-->")):
        frame = f"Cell In[4], line {number}\n      1 x = 1\n\x1b[32m{arrow} {number}\x1b[39m y = 1 / 0\n"
        error = nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                       traceback=["-" * 20, frame])
        cell = nbformat.v4.new_code_cell("x = 1\ny = 1 / 0", execution_count=4, outputs=[error])
        path = tmp_path / f"executed_{number}.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), cell]), path)
        assert chapter_report.failing_cell(path) == {"cell": 1, "execution_count": 4, "line": "y = 1 / 0"}
