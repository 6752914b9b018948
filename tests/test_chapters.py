"""depthlib.chapters: recorded key numbers, and the papermill runner on a tiny book and on real chapters."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

from depthlib import chapters
from depthlib.chapters import RECORD_ENV, record, recorded
from depthlib.profiles import PROFILES
from processes import running

ROOT = Path(__file__).resolve().parents[1]


# --- record ---------------------------------------------------------------------------------------

def test_record_returns_a_float_and_appends_json_lines_when_the_env_var_is_set(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    path = tmp_path / "records.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(path))
    assert record("loss", torch.tensor(0.25)) == 0.25
    assert record("count", np.int64(7), unit="px") == 7.0
    assert record("loss", 0.125) == 0.125  # recorded again: the newer value
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"name": "loss", "value": 0.25, "unit": None}, {"name": "count", "value": 7.0, "unit": "px"},
                     {"name": "loss", "value": 0.125, "unit": None}]
    assert recorded()["loss"] == 0.125 and recorded()["count"] == 7.0


def test_record_without_the_env_var_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.delenv(RECORD_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert record("quiet", 1) == 1.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, value", [("bad name", 1.0), ("", 1.0), ("x", float("nan")), ("x", float("inf")),
                                         ("x", True), ("x", "3"), ("x", [1.0]), ("x", None)])
def test_record_rejects_bad_names_and_values(name, value):
    with pytest.raises(ValueError, match="record"):
        record(name, value)


def test_record_rejects_a_tensor_with_more_than_one_element():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="real number"):
        record("x", torch.ones(2))


# --- chapter names --------------------------------------------------------------------------------

def test_chapters_resolve_by_number_stem_or_path_and_unknown_names_fail_clearly(tmp_path):
    en = {p.stem: p for p in chapters.list_chapters(ROOT, "en")}
    assert list(en)[:2] == ["00_introduction", "01_cameras_and_data"]
    stem = next(s for s in en if s.startswith("05_"))
    assert chapters.resolve_chapters(["5", "05", stem], ROOT, "en") == [("en", en[stem])] * 3
    zh_path = ROOT / "chapters" / "zh" / en[stem].name
    assert chapters.resolve_chapters([str(zh_path)], ROOT, "en") == [("zh", zh_path)]
    both = chapters.resolve_chapters(["00"], ROOT, "both")
    assert [(lang, p.parent.name, p.name) for lang, p in both] == [("en", "en", en["00_introduction"].name),
                                                                    ("zh", "zh", en["00_introduction"].name)]
    with pytest.raises(ValueError, match="unknown chapter '99'.*00_introduction"):
        chapters.resolve_chapters(["99"], ROOT, "en")
    with pytest.raises(FileNotFoundError, match="chapters/en"):
        chapters.resolve_chapters(None, tmp_path, "en")
    with pytest.raises(ValueError, match="edition"):
        chapters.run_chapters(["00"], lang="fr", book=ROOT, out=tmp_path)


def test_runner_names_the_extra_to_install_when_papermill_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "papermill", None)  # makes `import papermill` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "depthlib\[book\]"'):
        chapters.run_chapters(["00"], book=ROOT, out=tmp_path)


# --- the runner on a tiny book --------------------------------------------------------------------

def _write_notebook(path, *code_cells, parameters='profile = "auto"\nseed = 0'):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell(parameters)
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), parameters,
                *(nbformat.v4.new_code_cell(source) for source in code_cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def tiny_book(tmp_path):
    """00 records a number, then fails in its 2nd code cell after the parameters; 01 records and passes."""
    book = tmp_path / "book"
    _write_notebook(book / "chapters/en/00_broken.ipynb",
                    'from depthlib.chapters import record\nrecord("before", 1.5)',
                    'value = 1\nassert value == 2, "value must be 2"',
                    'record("after", 2.0)')
    _write_notebook(book / "chapters/en/01_numbers.ipynb",
                    "from depthlib.chapters import record\n"
                    'record("square", (seed + 2) ** 2, unit="px")\n'
                    'record("profile_is_cpu", float(profile == "cpu"))\n'
                    'print("done")',
                    'import tempfile, warnings\nwarnings.warn("a warning the page would show")\n'
                    'print("scratch in", tempfile.gettempdir())')
    return book


def test_cli_runs_on_after_a_failing_chapter_and_reports_its_cell(tiny_book, tmp_path, monkeypatch, capsys):
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    out = tmp_path / "out"
    status = chapters.main(["run", "--book", str(tiny_book), "--out", str(out), "--profile", "cpu",
                            "-p", "seed", "3", "--no-progress"])
    assert status == 1
    assert RECORD_ENV not in os.environ  # restored after the run
    printed = capsys.readouterr().out
    assert "[1/2] en/00_broken: running" in printed and "[2/2] en/01_numbers: ok" in printed

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["failed"] == 1 and [c["chapter"] for c in summary["chapters"]] == ["00_broken", "01_numbers"]
    broken, numbers = summary["chapters"]
    assert broken["status"] == "failed"
    assert broken["records"] == {"before": {"value": 1.5, "unit": None}}  # "after" never ran
    error = broken["error"]
    # cells: title 0, parameters 1, record 2, assert 3; In [2] is the injected parameters cell
    assert error["cell"] == 3 and error["execution_count"] == 4
    assert error["ename"] == "AssertionError" and error["message"] == "value must be 2"
    assert error["line"].startswith("assert value == 2")
    assert numbers["status"] == "ok" and numbers["error"] is None  # page noise does not fail a chapter
    assert broken["noise"] == []
    noise = {n["kind"]: n for n in numbers["noise"]}  # in the order the kernel flushed its streams
    assert len(numbers["noise"]) == 2 and {n["cell"] for n in numbers["noise"]} == {3}
    assert "UserWarning: a warning the page would show" in noise["stderr"]["text"]
    assert noise["local path"]["text"].startswith("scratch in /")
    assert numbers["records"] == {"square": {"value": 25.0, "unit": "px"},  # seed 3 reached the kernel
                                  "profile_is_cpu": {"value": 1.0, "unit": None}}

    nbformat = pytest.importorskip("nbformat")
    for name in ("00_broken", "01_numbers"):
        executed = nbformat.read(out / "en" / f"{name}.ipynb", as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    table = (out / "summary.md").read_text(encoding="utf-8")
    assert "| en/00_broken | failed |" in table and "cell 3 (In [4]): AssertionError: value must be 2" in table
    assert "| en/01_numbers | ok |" in table and "square 25 px; profile_is_cpu 1" in table
    assert "1 failed, 1 with page noise" in table and "**page noise: cell 3 " in table
    assert table in printed


def test_a_cell_over_the_timeout_and_a_dead_kernel_fail_their_chapter_only(tmp_path, monkeypatch):
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    book = tmp_path / "book"
    _write_notebook(book / "chapters/zh/00_slow.ipynb", "x = 1", "import time\ntime.sleep(120)")
    _write_notebook(book / "chapters/zh/01_dies.ipynb", "import os\nos._exit(1)")
    summary = chapters.run_chapters(None, lang="zh", book=book, out=tmp_path / "out", timeout=4, progress=False)
    slow, dies = summary["chapters"]
    assert (slow["status"], slow["error"]["cell"], slow["error"]["ename"]) == ("failed", 3, "CellTimeoutError")
    assert slow["seconds"] < 60
    assert (dies["status"], dies["error"]["cell"], dies["error"]["ename"]) == ("failed", 2, "DeadKernelError")
    assert (tmp_path / "out/zh/00_slow.ipynb").is_file() and summary["failed"] == 2


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
@pytest.mark.parametrize("tmpdir_length", [10, 120], ids=["short-tmpdir", "long-tmpdir"])
def test_kernels_talk_over_sockets_of_their_own_so_parallel_starts_cannot_collide(tmp_path, monkeypatch,
                                                                                 tmpdir_length):
    # over TCP two kernels starting at once (--jobs) could pick the same free port: one died at start
    # ("Address already in use", reported as "Kernel didn't respond in 60 seconds")
    pytest.importorskip("papermill")
    tmpdir = tmp_path / ("t" * tmpdir_length)  # a long TMPDIR: the socket path must still fit 107 bytes
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)
    book = tmp_path / "book"
    _write_notebook(book / "chapters/en/00_sockets.ipynb",
                    "import json\nfrom ipykernel import get_connection_info\n"
                    "info = json.loads(get_connection_info())\n"
                    "assert info['transport'] == 'ipc', info\nassert len(info['ip']) < 100, info['ip']")
    before = set(Path("/tmp").glob("depthlib-k-*"))
    summary = chapters.run_chapters(None, book=book, out=tmp_path / "out", progress=False)
    assert summary["chapters"][0]["status"] == "ok", summary["chapters"][0]["error"]
    assert set(Path("/tmp").glob("depthlib-k-*")) <= before and not list(tmpdir.iterdir())  # nothing left


def test_jobs_run_chapters_at_once_each_with_its_own_records_and_threads(tmp_path, monkeypatch, capsys):
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    book, meet = tmp_path / "book", tmp_path / "meet"
    meet.mkdir()
    # each chapter leaves its mark, then waits up to 60 s for the other's: run one after the
    # other, the first would wait in vain and fail; run at once, both meet
    for name, me, other in (("00_a", "a", "b"), ("01_b", "b", "a")):
        _write_notebook(book / f"chapters/en/{name}.ipynb",
                        "import os, time\nfrom pathlib import Path\nfrom depthlib.chapters import record\n"
                        f"meet = Path({str(meet)!r})\n(meet / {me!r}).touch()\n"
                        f"start = time.time()\nwhile not (meet / {other!r}).exists():\n"
                        "    assert time.time() - start < 60, 'the other chapter never started'\n"
                        "    time.sleep(0.1)\n"
                        f"record({me!r}, seed)\nrecord('threads', int(os.environ['OMP_NUM_THREADS']))")
    out = tmp_path / "out"
    assert chapters.main(["run", "--book", str(book), "--out", str(out), "--jobs", "2", "-p", "seed", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [c["chapter"] for c in summary["chapters"]] == ["00_a", "01_b"]  # the order they were named in
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert [c["records"] for c in summary["chapters"]] == [
        {"a": {"value": 4.0, "unit": None}, "threads": {"value": threads, "unit": None}},
        {"b": {"value": 4.0, "unit": None}, "threads": {"value": threads, "unit": None}}]
    assert "OMP_NUM_THREADS" not in os.environ  # restored after the run
    assert "2 at a time" in capsys.readouterr().out


def test_a_budget_stops_the_running_chapter_and_skips_the_rest(tmp_path, monkeypatch):
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    book = tmp_path / "book"
    _write_notebook(book / "chapters/en/00_slow.ipynb", "from depthlib.chapters import record\nrecord('x', 1)",
                    "import time\ntime.sleep(300)")
    _write_notebook(book / "chapters/en/01_quick.ipynb", "x = 1")
    summary = chapters.run_chapters(None, book=book, out=tmp_path / "out", timeout=600, progress=False, budget=6)
    slow, quick = summary["chapters"]
    assert slow["status"] == "out of time" and slow["error"]["cell"] == 3 and slow["seconds"] < 120
    assert slow["records"] == {"x": {"value": 1.0, "unit": None}}  # what it did before the budget ran out
    assert quick["status"] == "not run" and quick["records"] == {}
    assert (summary["failed"], summary["unfinished"]) == (0, 2)
    table = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "2 unfinished (budget 6 s)" in table and "| en/01_quick | not run |" in table


def test_the_summary_written_during_a_run_names_the_chapters_not_finished(tmp_path, monkeypatch):
    """A run killed outright (no handler runs) leaves the summary of its last finished chapter: the
    chapters still waiting or running must be in it, not silently missing."""
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    book, out = tmp_path / "book", tmp_path / "out"
    seen = tmp_path / "seen.json"
    _write_notebook(book / "chapters/en/00_first.ipynb", "x = 1")
    # the second chapter copies the summary as it stands while it runs
    _write_notebook(book / "chapters/en/01_reads.ipynb",
                    f"import shutil\nshutil.copy({str(out / 'summary.json')!r}, {str(seen)!r})")
    _write_notebook(book / "chapters/en/02_last.ipynb", "x = 2")
    summary = chapters.run_chapters(None, book=book, out=out, progress=False)
    during = json.loads(seen.read_text(encoding="utf-8"))
    assert [(c["chapter"], c["status"]) for c in during["chapters"]] == [
        ("00_first", "ok"), ("01_reads", "not finished"), ("02_last", "not finished")]
    assert during["unfinished"] == 2
    assert [c["status"] for c in summary["chapters"]] == ["ok"] * 3 and summary["unfinished"] == 0
    table = chapters.summary_markdown(during)
    assert "3 chapter(s), 0 failed, 2 unfinished (written while the run went on" in table
    assert "| en/02_last | not finished |" in table


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_killing_the_runner_ends_its_jobs_workers_and_their_kernels(tmp_path):
    """``--jobs`` workers run their chapters on their own: killed alone (SIGKILL, which no handler
    sees), the runner must not leave them and their kernels running (on a lent GPU, for minutes)."""
    import signal
    import subprocess

    pytest.importorskip("papermill")
    book, marks = tmp_path / "book", tmp_path / "marks"
    marks.mkdir()
    for name in ("00_a", "01_b"):  # each kernel notes its pid and its worker's, then sleeps
        _write_notebook(book / f"chapters/en/{name}.ipynb",
                        "import os, time\n"
                        f"open({str(marks / name)!r}, 'w').write(f'{{os.getpid()}} {{os.getppid()}}')\n"
                        "time.sleep(300)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop(RECORD_ENV, None)
    env["TMPDIR"] = str(tmp_path)  # the killed runner cannot remove its record folder
    runner = subprocess.Popen([sys.executable, "-m", "depthlib.chapters", "run", "--book", str(book), "--jobs", "2",
                               "--out", str(tmp_path / "out"), "--no-progress"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = []
    try:
        start = time.time()
        while len(list(marks.iterdir())) < 2 or any(not m.read_text() for m in marks.iterdir()):
            assert time.time() - start < 90 and runner.poll() is None, "the chapters never started"
            time.sleep(0.2)
        pids = [int(pid) for mark in marks.iterdir() for pid in mark.read_text().split()]  # kernels, workers
        assert all(map(running, pids))
        runner.kill()
        runner.wait()
        start = time.time()
        while any(map(running, pids)) and time.time() - start < 30:
            time.sleep(0.2)
        assert not any(map(running, pids)), f"still running after the runner was killed: {pids}"
    finally:
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if runner.poll() is None:
            runner.kill()


@pytest.mark.parametrize("option", [{"jobs": 0}, {"jobs": 1.5}, {"budget": 0}, {"budget": float("nan")}])
def test_bad_jobs_or_budget_are_refused(tmp_path, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        chapters.run_chapters(["00"], book=ROOT, out=tmp_path, **option)


# --- the runner on two real chapters --------------------------------------------------------------

def test_runner_executes_two_real_chapters_and_summarises_their_key_numbers(tmp_path):
    pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    timeout = 240
    summary = chapters.run_chapters(["00", "01"], profile="cpu", book=ROOT, out=tmp_path, timeout=timeout,
                                    progress=False)
    assert [c["status"] for c in summary["chapters"]] == ["ok", "ok"], summary
    assert [c["noise"] for c in summary["chapters"]] == [[], []]  # nothing on stderr, no local paths
    intro, cameras = (c["records"] for c in summary["chapters"])
    assert 0.2 < intro["room_depth_min"]["value"] < intro["room_depth_max"]["value"] < 15
    assert intro["room_depth_min"]["unit"] == "m"
    height, width = PROFILES["cpu"].nyu_render_size
    assert intro["room_points"]["value"] == height * width  # one point per pixel of the room image
    assert 0 <= intro["view_depth_disagreement"]["value"] < 0.01
    assert 1.1 < cameras["ray_over_z_max"]["value"] < 2
    assert cameras["resize_error_exact"]["value"] < cameras["resize_error_naive"]["value"] / 2
    assert cameras["nyu_train_png_error"]["unit"] == "cm" and cameras["dtu_depth_interval"]["value"] > 0
    # chapter 01 has an ipywidgets cell, which nbclient's Output-widget mimic held for the whole timeout
    executed = nbformat.read(tmp_path / "en" / "01_cameras_and_data.ipynb", as_version=4)
    slowest = max(c.metadata.papermill["duration"] or 0 for c in executed.cells)
    assert slowest < timeout / 2
    table = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| en/00_introduction | ok |" in table and "| en/01_cameras_and_data | ok |" in table
    assert f"room_points {height * width:,}" in table and "resize_error_naive " in table


def _code_cells(path, hidden=True):
    """Sources of a notebook's code cells; hidden=False leaves out the cells tagged remove-cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and (hidden or "remove-cell" not in c["metadata"].get("tags", []))]


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*/*.ipynb")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_chapters_import_record_before_using_it_and_no_cell_shows_its_return_value(path):
    import ast

    imported = False
    shown_cells = set(_code_cells(path, hidden=False))  # the rendered book hides remove-cell cells
    for source in _code_cells(path):
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython syntax (magics): not a cell that records
            continue
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "record"]
        imported = imported or any(isinstance(n, ast.ImportFrom) and n.module == "depthlib.chapters"
                                   and any(a.name == "record" for a in n.names) for n in ast.walk(tree))
        assert not calls or imported, f"record(...) used before `from depthlib.chapters import record`:\n{source}"
        last = tree.body[-1] if tree.body else None
        shown = (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and last.value in calls
                 and source in shown_cells)
        assert not shown, f"a cell ending in record(...) would print its value in the book:\n{source}"


def test_cli_parameters_read_as_papermill_reads_them_and_tuples_as_literals():
    value = chapters._parameter_value
    assert value("3") == 3 and value("0.5") == 0.5 and value("None") is None and value("True") is True
    assert value("scan9") == "scan9" and value("(5, 20)") == (5, 20) and value("[1, 2]") == [1, 2]
    for bad in ("(5,", "(foo, 1)", "[1] + [2]"):
        with pytest.raises(ValueError, match=r"-p show .*expected a tuple or list"):
            value(bad, "show")


def test_a_tuple_parameter_reaches_the_chapter_as_a_sequence_not_its_string(tmp_path, monkeypatch):
    """papermill writes a tuple as its string ("(5, 20)"); chapter 09's ``show`` needs the numbers."""
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    notebook = tmp_path / "book/chapters/en/00_pair.ipynb"
    _write_notebook(notebook, "from depthlib.chapters import record\n"
                              "record('second', seed[1])")
    result = chapters.run_chapter(notebook, tmp_path / "out.ipynb", {"seed": (5, 20)}, progress=False)
    assert result["status"] == "ok", result["error"]
    assert result["records"] == {"second": {"value": 20.0, "unit": None}}


def test_chapter_parameters_are_the_names_the_parameters_cell_assigns():
    en = ROOT / "chapters/en"
    assert chapters.chapter_parameters(en / "05_training.ipynb") == ["profile", "data_root", "epochs", "seed"]
    assert "seed" not in chapters.chapter_parameters(en / "10_point_clouds.ipynb")
    for edition in ("en", "zh"):  # every chapter can be given a profile
        for path in chapters.list_chapters(ROOT, edition):
            assert "profile" in chapters.chapter_parameters(path), path


def test_a_parameter_no_chapter_has_is_refused_before_anything_runs(tiny_book, tmp_path, capsys):
    """papermill only warns about a name the notebook does not declare: ``-p sed 3`` would run seed 0."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        chapters.main(["run", "--book", str(tiny_book), "--out", str(out), "-p", "sed", "3", "--no-progress"])
    assert stop.value.code == 2 and not out.exists()
    error = capsys.readouterr().err
    assert "no chapter of this run has a parameter 'sed'" in error and "profile, seed" in error


def test_a_parameter_only_some_chapters_have_reaches_those_and_the_summary_names_the_rest(tmp_path, monkeypatch,
                                                                                        capsys):
    pytest.importorskip("papermill")
    monkeypatch.delenv(RECORD_ENV, raising=False)
    book = tmp_path / "book"
    _write_notebook(book / "chapters/en/00_seeded.ipynb",
                    "from depthlib.chapters import record\nrecord('seed', seed)")
    _write_notebook(book / "chapters/en/01_unseeded.ipynb",
                    "from depthlib.chapters import record\nrecord('has_seed', float('seed' in globals()))",
                    parameters='profile = "auto"\nscan = "scan9"')
    out = tmp_path / "out"
    assert chapters.main(["run", "--book", str(book), "--out", str(out), "-p", "seed", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "en/01_unseeded has no parameter seed: it runs without it" in printed
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    seeded, unseeded = summary["chapters"]
    assert seeded["records"]["seed"]["value"] == 3.0 and unseeded["records"]["has_seed"]["value"] == 0.0
    assert summary["left_out"] == {"en/01_unseeded": ["seed"]}
    assert "en/01_unseeded ran without `seed` (not among its parameters)" in (out / "summary.md").read_text()
