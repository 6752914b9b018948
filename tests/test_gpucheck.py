"""make gpu-check's own logic (its GPU steps run only on a CUDA machine)."""
import json
import os
import sys
import time

import pytest
import torch

from depthlib import gpucheck
from processes import ended_within


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
         "error": {"cell": 34, "ename": "AssertionError", "message": "", "line": "assert a < b"}},
        {"lang": "en", "chapter": "11_scaling_up", "status": "ok", "seconds": 8.0,
         "records": {"speedup": {"value": 2.25, "unit": None}},
         "noise": [{"cell": 12, "kind": "stderr", "text": "UserWarning: Detected call of lr_scheduler.step()"}]}]}
    steps = [{"step": "pytest -m cuda", "status": "ok", "seconds": 50.0, "detail": "14 passed"}]
    table = gpucheck.summary_table(steps, chapters, tmp_path)
    assert "| pytest -m cuda | ok | 50.0 | 14 passed |" in table
    assert "| en/05_training | ok | 20.5 | abs_rel 0.25; step 0.031 s; points 49,152; flops 2,500,000,000 |" in table
    assert "| en/07_plane_sweep | failed | 9.0 | cell 34: AssertionError: at `assert a < b` |" in table
    assert ("| en/11_scaling_up | ok | 8.0 | page noise: cell 12 stderr: UserWarning: Detected call of "
            "lr_scheduler.step(); speedup 2.25 |") in table
    assert "- en/05_training: cell 1 12.0 s; cell 2 3.0 s; cell 0 0.5 s" in table


def _step_with_a_child(pid_file):
    """Python code for a step that starts a child (sleeping 60 s), writes its pid, then sleeps 60 s."""
    return ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")


def test_a_step_that_times_out_takes_its_child_processes_with_it(tmp_path):
    # the benchmark runs each setting in a process of its own: on a time-out none may live on
    pid_file = tmp_path / "grandchild.pid"
    slow = gpucheck.run_step("nested", [sys.executable, "-c", _step_with_a_child(pid_file)], tmp_path / "n.log",
                             timeout=3)
    assert slow["status"] == "timed out after 3 s" and slow["seconds"] < 30
    grandchild = int(pid_file.read_text())
    if not ended_within(grandchild):
        pytest.fail(f"the step's child {grandchild} outlived its time-out")


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_stopping_the_check_stops_its_running_step_too(tmp_path, stop):
    # timeout(1) sends SIGTERM, Ctrl-C SIGINT, to the check alone: the step's own process group would
    # get neither and run on (on a lent machine: holding the GPU into the next command)
    import signal
    import subprocess

    pid_file = tmp_path / "grandchild.pid"
    step = _step_with_a_child(pid_file)
    # a process started in the background by a non-interactive shell (as CI may be) inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt: the check gets a terminal's handling back
    check = ("import signal, sys; from pathlib import Path; from depthlib import gpucheck; "
             "signal.signal(signal.SIGINT, signal.default_int_handler); print(gpucheck.run_step("
             f"'s', [sys.executable, '-c', {step!r}], Path({str(tmp_path / 's.log')!r}), 60)['status'])")
    parent = subprocess.Popen([sys.executable, "-c", check], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if pid_file.is_file() and pid_file.read_text():
                break
            time.sleep(0.1)
        parent.send_signal(getattr(signal, stop))
        printed, _ = parent.communicate(timeout=30)
    finally:
        parent.kill()
        parent.wait()
    assert printed.strip() == {"SIGTERM": "stopped (SIGTERM)", "SIGINT": "stopped (Ctrl-C)"}[stop]
    grandchild = int(pid_file.read_text())
    if not ended_within(grandchild):
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail(f"the step's child {grandchild} outlived the check's {stop}")


def test_a_budget_bounds_every_step_and_the_chapters_run_with_jobs(tmp_path, monkeypatch):
    clock, calls = [0.0], []
    took = {"pytest": 10.0, "render": 5.0, "chapters": 50.0, "python": 5.0}  # seconds on a fake clock

    def fake_step(name, command, log, timeout):
        calls.append((name, command, timeout))
        clock[0] += took[name.split()[0]]
        return {"step": name, "status": "ok", "seconds": took[name.split()[0]], "detail": ""}

    monkeypatch.setattr(gpucheck, "run_step", fake_step)
    monkeypatch.setattr(gpucheck, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    monkeypatch.setattr(gpucheck, "_device_label", lambda: "a test GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    status = gpucheck.main(["--out", str(tmp_path), "--budget", "100", "--step-timeout", "60", "--jobs", "3"])
    assert status == 0
    (_, _, tests), (render, render_command, _), (name, chapters, runner), (_, _, bench) = calls
    assert tests == 60  # the step time-out caps a step while the budget has more
    assert render.startswith("render") and "render_sets()" in render_command[-1]  # the sets, before the chapters
    assert chapters[chapters.index("--jobs") + 1] == "3" and "3 at a time" in name
    assert chapters[chapters.index("--budget") + 1] == "60"  # the runner stops itself at its budget...
    assert runner == 90  # ...and the step kills it only 30 s later, if it hangs
    assert bench == 35  # what is left of 100 s after 10 + 5 + 50

    clock[0], calls[:] = 0.0, []
    took["chapters"] = 80.0  # now the chapters leave 5 s: too little to start the benchmark
    assert gpucheck.main(["--out", str(tmp_path), "--budget", "100", "--step-timeout", "90"]) == 1
    assert [name.split()[0] for name, _, _ in calls] == ["pytest", "render", "chapters"]
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| python -m depthlib.bench  | not run | 0.0 | the budget was spent |" in summary

    def stopped_step(name, command, log, timeout):  # SIGTERM while the CUDA tests run
        calls.append((name, command, timeout))
        return {"step": name, "status": "stopped (SIGTERM)", "seconds": 3.0, "detail": ""}

    calls[:] = []
    monkeypatch.setattr(gpucheck, "run_step", stopped_step)
    assert gpucheck.main(["--out", str(tmp_path)]) == 1
    assert len(calls) == 1  # nothing else started; the summary is still written
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| pytest -m cuda | stopped (SIGTERM) |" in summary and summary.count("the check was stopped") == 3


def test_bad_jobs_or_budget_are_refused_by_the_gpu_check(tmp_path):
    for bad in (["--jobs", "0"], ["--budget", "-5"]):
        with pytest.raises(SystemExit):
            gpucheck.main(["--out", str(tmp_path), *bad])


def test_chapters_out_of_budget_show_their_status_not_a_cell(tmp_path):
    chapters = {"chapters": [{"lang": "zh", "chapter": "12_cascade", "status": "not run", "seconds": 0.0,
                              "records": {}, "error": {"ename": "NotRun", "message": "budget spent"}}]}
    table = gpucheck.summary_table([], chapters, tmp_path)
    assert "| zh/12_cascade | not run | 0.0 | NotRun: budget spent |" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_without_a_gpu_it_says_so_and_stops(tmp_path, capsys):
    assert gpucheck.main(["--out", str(tmp_path)]) == 2
    assert "needs a GPU machine" in capsys.readouterr().err


def test_the_sets_are_rendered_once_before_the_chapters_and_found_in_the_cache_after(tmp_path, monkeypatch, capsys):
    import dataclasses

    from depthlib import profiles
    from depthlib.data import nyu_synthetic

    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path))
    for name in ("cpu", "gpu"):  # tiny sets; the gpu one a size of its own
        monkeypatch.setitem(profiles.PROFILES, name, dataclasses.replace(
            profiles.PROFILES[name], nyu_render_size=(48, 64) if name == "cpu" else (64, 96), nyu_train=2,
            nyu_test=1, mvs_size=(32, 40) if name == "cpu" else (32, 48), mvs_views_per_scan=3, mvs_train_scans=1, mvs_test_scans=1, mvs_lights=1))
    first = gpucheck.render_sets()
    assert [name for name, _ in first] == ["nyu_synthetic(gpu)", "dtu_synthetic(gpu)", "nyu_synthetic(cpu)",
                                           "dtu_synthetic(cpu)", "dtu_synthetic_full(cpu)"]
    assert nyu_synthetic(profiles.PROFILES["gpu"]).parent == tmp_path  # where the chapters will look
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 4  # 2 NYU, 2 DTU (full = cpu's + raw)
    assert capsys.readouterr().out.splitlines()[-1].startswith("sets: nyu_synthetic(gpu) ")
    again = gpucheck.render_sets()
    assert all(seconds < 1.0 for _, seconds in again)  # cached: nothing rendered twice


def test_every_cuda_test_lives_in_the_file_gpu_check_runs():
    # gpu-check runs `pytest -m cuda tests/test_cuda.py` alone (other test modules import test-only
    # packages a GPU machine may lack), so a CUDA test written anywhere else would never run
    from pathlib import Path

    elsewhere = [path.name for path in Path(__file__).parent.glob("test_*.py")
                 if path.name != "test_cuda.py" and "mark.cuda" in path.read_text(encoding="utf-8")
                 and path.name != Path(__file__).name]
    assert elsewhere == [], f"CUDA tests outside tests/test_cuda.py: {elsewhere}"
    assert "tests/test_cuda.py" in Path(gpucheck.__file__).read_text(encoding="utf-8")
