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
    assert "if it no longer runs, it was killed" in lines[0] and lines[0].endswith("12 s, 2 at a time")
    assert lines[4] == "| en/05_training | ok | 1.0 | abs_rel 0.1235; steps 1,200 steps |"
    # the failing cell and line are named, and a | in a message cannot break the table
    assert lines[5] == ("| en/07_plane_sweep | failed | 1.0 | **cell 37 (In [21]): AssertionError: a \\| b** "
                        "at `assert x < y` |")
    assert lines[6] == "| en/08_mvsnet | not finished | 0.0 |  |" and len(lines) == 7


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
