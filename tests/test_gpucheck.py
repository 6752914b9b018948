"""make gpu-check's own logic (its GPU steps run only on a CUDA machine)."""
import json
import sys

import pytest
import torch

from depthlib import gpucheck


def test_a_step_reports_its_status_time_and_last_line(tmp_path):
    ok = gpucheck.run_step("echo", [sys.executable, "-c", "print('first'); print('last line')"],
                           tmp_path / "ok.log", timeout=60)
    assert ok["status"] == "ok" and ok["detail"] == "last line" and ok["seconds"] >= 0
    bad = gpucheck.run_step("fail", [sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "bad.log", 60)
    assert bad["status"] == "failed (exit 3)"
    slow = gpucheck.run_step("slow", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "s.log", 1)
    assert slow["status"] == "timed out after 1 s"


def test_the_summary_has_a_row_per_step_and_chapter_and_the_slowest_cells(tmp_path):
    executed = tmp_path / "chapters" / "en"
    executed.mkdir(parents=True)
    cells = [{"cell_type": "code", "metadata": {"papermill": {"duration": d}}} for d in (0.5, 12.0, 3.0)]
    (executed / "05_training.ipynb").write_text(json.dumps({"cells": cells}))
    chapters = {"chapters": [
        {"lang": "en", "chapter": "05_training", "status": "ok", "seconds": 20.5,
         "records": {"abs_rel": {"value": 0.25, "unit": None}, "step": {"value": 0.031, "unit": "s"},
                     "points": {"value": 49152.0, "unit": None}, "flops": {"value": 2.5e9, "unit": None}}},
        {"lang": "en", "chapter": "07_plane_sweep", "status": "failed", "seconds": 9.0, "records": {},
         "error": {"cell": 34, "ename": "AssertionError", "message": "", "line": "assert a < b"}}]}
    steps = [{"step": "pytest -m cuda", "status": "ok", "seconds": 50.0, "detail": "14 passed"}]
    table = gpucheck.summary_table(steps, chapters, tmp_path)
    assert "| pytest -m cuda | ok | 50.0 | 14 passed |" in table
    assert "| en/05_training | ok | 20.5 | abs_rel 0.25; step 0.031 s; points 49,152; flops 2,500,000,000 |" in table
    assert "| en/07_plane_sweep | failed | 9.0 | cell 34: AssertionError: at `assert a < b` |" in table
    assert "- en/05_training: cell 1 12.0 s; cell 2 3.0 s; cell 0 0.5 s" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_without_a_gpu_it_says_so_and_stops(tmp_path, capsys):
    assert gpucheck.main(["--out", str(tmp_path)]) == 2
    assert "needs a GPU machine" in capsys.readouterr().err
