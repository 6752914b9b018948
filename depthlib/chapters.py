"""Chapters as programs: the key numbers a chapter records, and running chapters headless (the appendix).

A chapter calls ``record("delta1", metrics["delta1"])`` next to the numbers it wants reported. In
the book or in Jupyter this only remembers the value; under the chapter runner
(``python -m depthlib.chapters run``), which sets ``DEPTHLIB_RECORD_FILE`` for the kernel, every
record is also appended to that file as one JSON line, and the runner gathers them into a summary.

Usage: ``python -m depthlib.chapters run [--lang en|zh|both] [--profile cpu|gpu|auto] [--out DIR]
[--book DIR] [--timeout S] [--jobs N] [--budget S] [-p NAME VALUE ...] [CHAPTER ...]`` executes
chapters with papermill (a failing chapter is reported with its cell, and the run goes on; ``--jobs``
runs several at once, ``--budget`` stops the whole run after that many seconds and reports what it did)
and writes ``DIR/<lang>/NN_name.ipynb``, ``DIR/summary.json`` and ``DIR/summary.md``; ``python -m
depthlib.chapters list`` lists the chapters. The statuses and the summary table are in
``depthlib.chapter_report``.
"""
from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import numbers
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

from depthlib.chapter_report import (NOT_FINISHED, NOT_RUN, OUT_OF_TIME, UNFINISHED, describe_failure,
                                     page_noise, summary_markdown, write_summary)

__all__ = ["RECORD_ENV", "record", "recorded", "list_chapters", "resolve_chapters", "chapter_parameters",
           "run_chapter", "run_chapters", "summary_markdown", "write_summary", "main"]

RECORD_ENV = "DEPTHLIB_RECORD_FILE"
_records: dict[str, dict] = {}


def _as_number(name, value):
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # 0-d tensor / NumPy scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"record({name!r}): expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"record({name!r}): expected a finite number, got {value}")
    return value


def record(name: str, value, unit: str | None = None):
    """Record one key number of the running chapter, e.g. ``record("less_one", 0.95)``.

    Args:
        name: a short identifier (letters, digits, ``_ . -``), unique within the chapter.
        value: a finite real number (Python, NumPy or a 0-d tensor).
        unit: optional unit for the summary table, e.g. ``"mm"`` or ``"s"``.
    Returns:
        ``value`` as a float, so a cell can record and print in one line.
    """
    if not name or not all(ch.isalnum() or ch in "_.-" for ch in name):
        raise ValueError(f"record: name must be letters, digits, '_', '.', '-', got {name!r}")
    value = _as_number(name, value)
    entry = {"name": name, "value": value, "unit": unit}
    _records[name] = entry
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    return value


def recorded() -> dict[str, float]:
    """The numbers recorded so far in this process, ``{name: value}``."""
    return {name: entry["value"] for name, entry in _records.items()}


# --- the runner -----------------------------------------------------------------------------------

LANGS = ("en", "zh")
_ENGINE = "depthlib-nbclient"
_engine_registered = False


def _papermill():
    """papermill, with the ``depthlib-nbclient`` engine registered; a clear error when missing."""
    global _engine_registered
    try:
        import papermill
        from papermill import engines
        from papermill.clientwrap import PapermillNotebookClient
    except ImportError as error:  # papermill is in the book / test extras, not a core dependency
        raise ImportError('running chapters needs papermill: pip install "depthlib[book]"') from error
    if _engine_registered:
        return papermill

    class Client(PapermillNotebookClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.widget_registry = {}  # no mimic of ipywidgets.Output (see Engine)

    class Engine(engines.NBClientEngine):
        """papermill's nbclient engine, less nbclient's mimic of the ipywidgets Output widget.

        The mimic answers each output with a comm message on the shell channel, where nbclient
        waits for the cell's reply; in chapter 01 that reply was then often noticed only when the
        cell timeout ran out (a 0.3 s widget cell took the full 600 s; cf. jupyter/nbclient#312).
        Headless runs lose only the outputs recorded inside Output widgets.
        """

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = engines.remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            return Client(nb_man, kernel_name=kernel_name, timeout=execution_timeout, startup_timeout=start_timeout,
                          log=engines.logger, **kwargs).execute()

    engines.papermill_engines.register(_ENGINE, Engine)
    _engine_registered = True
    return papermill


def _chapter_dir(book, lang: str) -> Path:
    if lang not in LANGS:
        raise ValueError(f"unknown edition {lang!r}, expected one of {LANGS} (or 'both' for run_chapters)")
    folder = Path(book) / "chapters" / lang
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: expected the book's root, the folder holding "
                                f"chapters/{lang}/NN_name.ipynb")
    return folder


def list_chapters(book=".", lang: str = "en") -> list[Path]:
    """The chapter notebooks of one edition, in order.

    Args:
        book: the book's root folder (holding ``chapters/en`` and ``chapters/zh``).
        lang: "en" or "zh".
    Returns:
        paths of ``chapters/<lang>/NN_*.ipynb`` sorted by name.
    """
    return sorted(p for p in _chapter_dir(book, lang).glob("*.ipynb") if p.name[:2].isdigit())


def resolve_chapters(chapters=None, book=".", lang: str = "en") -> list[tuple[str, Path]]:
    """Turn chapter names into ``(lang, notebook path)`` pairs.

    Args:
        chapters: None (every chapter) or names, each a number ("05"), a stem ("05_training") or
            a path to a notebook; a path runs as given, labelled with its folder's name when
            that is "en" or "zh".
        book: the book's root folder.
        lang: "en", "zh" or "both" (every named chapter in both editions).
    Returns:
        a list of ``(lang, path)``, editions in the order en, zh.
    """
    langs = LANGS if lang == "both" else (lang,)
    pairs = []
    for edition in langs:
        known = list_chapters(book, edition)
        if not chapters:
            pairs += [(edition, path) for path in known]
            continue
        for name in chapters:
            name = str(name)
            if name.endswith(".ipynb") or os.sep in name or "/" in name:
                path = Path(name)
                if not path.is_file():
                    raise FileNotFoundError(f"chapter notebook {path} does not exist")
                label = path.parent.name if path.parent.name in LANGS else edition
                if (label, path) not in pairs:
                    pairs.append((label, path))
                continue
            number = name.zfill(2) if name.isdigit() else None
            found = [p for p in known if p.stem == name or (number and p.stem.split("_")[0] == number)]
            if len(found) != 1:
                stems = ", ".join(p.stem for p in known)
                raise ValueError(f"unknown chapter {name!r} in chapters/{edition}: expected a number, "
                                 f"a stem or a notebook path; chapters are {stems}")
            pairs.append((edition, found[0]))
    return pairs


def chapter_parameters(notebook) -> list[str] | None:
    """The names a chapter's ``parameters`` cell assigns, in order: what ``-p NAME VALUE`` can set.

    Returns None when the notebook has no cell tagged ``parameters`` or its source is not plain
    Python (then nothing is known, and every parameter is passed on).
    """
    import ast

    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    tagged = [c for c in cells
              if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        return None
    source = tagged[0]["source"]
    try:
        tree = ast.parse(source if isinstance(source, str) else "".join(source))
    except SyntaxError:
        return None
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        else:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def _split_parameters(todo, parameters) -> tuple[list[dict], dict[str, list[str]]]:
    """Each chapter's share of ``parameters`` (those its parameters cell declares), and what each left out.

    papermill injects a name a notebook does not declare with no more than a warning, so ``-p sed 3``
    (a typo) or ``-p seed 3`` for chapter 10 (which has no seed) would run as if nothing were asked.
    A name that no chapter of the run declares is refused; one that only some declare goes to those,
    and the summary names the chapters left without it.
    """
    parameters = dict(parameters or {})
    declared = [chapter_parameters(notebook) for _, notebook in todo]
    known = [names for names in declared if names is not None]
    if len(known) == len(declared):
        for name in parameters:
            if name != "profile" and not any(name in names for names in known):
                offered = sorted({n for names in known for n in names})
                raise ValueError(f"no chapter of this run has a parameter {name!r} (-p {name} ...); "
                                 f"their parameters are {', '.join(offered)}")
    shares, left_out = [], {}
    for (edition, notebook), names in zip(todo, declared):
        kept = {k: v for k, v in parameters.items() if names is None or k == "profile" or k in names}
        shares.append(kept)
        if len(kept) < len(parameters):
            left_out[f"{edition}/{notebook.stem}"] = [k for k in parameters if k not in kept]
    return shares, left_out


def _read_records(path: Path) -> dict[str, dict]:
    """Records a kernel appended to ``path`` (JSON lines), the last value of each name."""
    records = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a kernel killed mid-write leaves a partial line
                continue
            records[entry["name"]] = {"value": entry["value"], "unit": entry.get("unit")}
    return records


@contextlib.contextmanager
def _kernel_sockets(folder: str):
    """Engine arguments that give a chapter's kernel Unix-socket (IPC) channels of its own.

    With TCP, jupyter_client picks five free ports and the kernel binds them a moment later; two
    kernels starting at once (``--jobs``) can pick the same port, and the loser dies at start
    ("Address already in use", then "Kernel didn't respond in 60 seconds"). Socket files in a
    folder of the chapter's own cannot collide. A socket path holds at most 107 bytes, so a long
    ``folder`` is replaced by a short one under /tmp, removed afterwards. Not POSIX: TCP.
    """
    if os.name != "posix":
        yield {}
        return
    from traitlets.config import Config

    short = None
    if len(os.path.join(folder, "kernel-00000")) > 100:
        folder = short = tempfile.mkdtemp(prefix="depthlib-k-", dir="/tmp")
    try:
        yield {"config": Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}})}
    finally:
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)


def run_chapter(notebook, executed, parameters=None, timeout=600, progress=True, deadline=None) -> dict:
    """Execute one chapter with papermill and collect the numbers it records.

    Args:
        notebook: the chapter notebook; it runs in its own folder.
        executed: where to write the executed notebook (also written when the chapter fails).
        parameters: papermill parameters, e.g. ``{"profile": "cpu"}``; a tuple reaches the notebook
            as a list.
        timeout: seconds allowed per cell.
        progress: show papermill's cell progress bar.
        deadline: None, or a ``time.time()`` after which no cell may run: a chapter still running
            then stops with status "out of time"; one that would start later is "not run".
    Returns:
        ``{"status": "ok" | "failed" | "out of time" | "not run", "seconds", "records": {name:
        {"value", "unit"}}, "error", "noise"}``; ``error`` (None when ok) holds ``cell`` (index in
        the notebook), ``execution_count``, ``ename``, ``message`` and, when the traceback shows it,
        the failing ``line``; ``noise`` lists what the rendered page would show that it should not
        (``chapter_report.page_noise``: stderr, this machine's paths), which does not change the
        status.
    """
    papermill = _papermill()
    notebook, executed = Path(notebook), Path(executed)
    if deadline is not None and time.time() >= deadline:
        return {"status": NOT_RUN, "seconds": 0.0, "records": {}, "noise": [],
                "error": {"ename": "NotRun", "message": "the run's time budget was spent before it started"}}
    executed.parent.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(RECORD_ENV)
    error = None
    limits = {}
    if deadline is not None:  # each cell may run until the deadline (at least 1 s: nbclient reads 0 as "none")
        limits["timeout_func"] = lambda cell: max(1.0, min(timeout or math.inf, deadline - time.time()))
    with tempfile.TemporaryDirectory(prefix="depthlib-records-") as folder, _kernel_sockets(folder) as sockets:
        record_file = Path(folder) / "records.jsonl"
        os.environ[RECORD_ENV] = str(record_file)  # the kernel inherits the environment
        start = time.perf_counter()
        try:
            # papermill writes a tuple as the string of it: a list is what it writes as a literal
            papermill.execute_notebook(str(notebook), str(executed),
                                       parameters={name: list(value) if isinstance(value, tuple) else value
                                                   for name, value in (parameters or {}).items()},
                                       kernel_name="python3", cwd=str(notebook.resolve().parent),
                                       execution_timeout=timeout, progress_bar=progress, engine_name=_ENGINE,
                                       **limits, **sockets)
        except Exception as caught:  # a cell's error, a timeout, a dead kernel: reported, and on we go
            error = describe_failure(caught, executed)
        finally:
            seconds = time.perf_counter() - start
            if previous is None:
                os.environ.pop(RECORD_ENV, None)
            else:
                os.environ[RECORD_ENV] = previous
        records = _read_records(record_file)
    status = "failed" if error else "ok"
    where = notebook.resolve()
    book = where.parents[min(2, len(where.parents) - 1)]  # BOOK/chapters/en/NN.ipynb
    noise = page_noise(executed, (tempfile.gettempdir(), Path.home(), book))
    if error and error.get("ename") == "CellTimeoutError" and deadline is not None and time.time() >= deadline - 1:
        status = OUT_OF_TIME
        error["message"] = f"stopped when the run's time budget ran out ({error['message']})"
    return {"status": status, "seconds": round(seconds, 1), "records": records, "error": error, "noise": noise}


def _end_with_runner(runner_pid: int) -> None:
    """Initialiser of a ``--jobs`` worker: it ends when the runner does, however the runner ends.

    A worker runs its chapter to the end on its own, and its kernel lives as long as the worker
    (ipykernel exits when its parent does). So if the runner alone were killed (``kill PID``, a
    supervisor's SIGKILL), its workers and their kernels would go on training for minutes, on the
    GPU of a machine lent for a few. On Linux the kernel sends this worker SIGTERM when the runner
    exits (prctl PR_SET_PDEATHSIG); elsewhere nothing changes.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no prctl
        return
    if os.getppid() != runner_pid:  # the runner died before prctl took effect
        os._exit(1)


def _run_in_worker(task):
    """One chapter in a worker process of ``run_chapters(jobs=N)`` (its own RECORD_ENV and kernel)."""
    label, notebook, executed, parameters, timeout, deadline = task
    if deadline is None or time.time() < deadline:
        print(f"{label}: running", flush=True)
    return run_chapter(notebook, executed, parameters, timeout, progress=False, deadline=deadline)


def _run_in_pool(tasks, jobs: int, finish) -> None:
    """``run_chapters(jobs=N)``: each task in a worker process; ``finish(index, result)`` as each ends."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads is None:  # the kernels inherit it through the workers
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    try:
        # spawn: each worker a fresh interpreter (no forked torch / ZMQ state), its own environment
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_end_with_runner, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_run_in_worker, task): index for index, task in enumerate(tasks)}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # a worker that died: its chapter failed, the others go on
                    result = {"status": "failed", "seconds": 0.0, "records": {},
                              "error": describe_failure(error, tasks[index][2])}
                finish(index, result)
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)


def _check_run_arguments(profile, lang, jobs, budget) -> None:
    if profile not in ("cpu", "gpu", "auto"):
        raise ValueError(f"unknown profile {profile!r}, expected 'cpu', 'gpu' or 'auto'")
    if lang not in (*LANGS, "both"):
        raise ValueError(f"unknown edition {lang!r}, expected 'en', 'zh' or 'both'")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number of at least 1, got {jobs!r}")
    if budget is not None and not (isinstance(budget, (int, float)) and budget > 0 and math.isfinite(budget)):
        raise ValueError(f"budget must be a positive number of seconds or None, got {budget!r}")


def run_chapters(chapters=None, lang="en", profile="cpu", out="runs/chapters", book=".", timeout=600,
                 parameters=None, progress=True, jobs=1, budget=None) -> dict:
    """Execute chapters headless and write the executed notebooks and a summary of their key numbers.

    A failing chapter (an error in a cell, a cell over ``timeout``, a dead kernel) is reported with
    its failing cell and the run goes on with the next one.

    Args:
        chapters: None (every chapter of the edition) or names: "05", "05_training" or a path.
        lang: "en", "zh" or "both".
        profile: "cpu", "gpu" or "auto", passed to each chapter's ``profile`` parameter.
        out: output folder: ``out/<lang>/<stem>.ipynb``, ``out/summary.json``, ``out/summary.md``.
        book: the book's root folder.
        timeout: seconds allowed per cell.
        parameters: more papermill parameters (override ``profile`` too), e.g. ``{"seed": 1}``; each
            chapter gets those its parameters cell declares (``chapter_parameters``): a name no
            chapter of the run declares is a ValueError, and the chapters left without one are
            listed in the summary's ``left_out``.
        progress: show papermill's cell progress bar (the start / end line of a chapter always prints).
        jobs: chapters run at once, each in a worker process with its own kernel; with more than
            one, each kernel gets ``cpu_count // jobs`` threads (``OMP_NUM_THREADS``, unless set)
            and the chapters share the machine, so their times are upper bounds; with fewer
            threads the CPU adds in another order, so a chapter that trains can end at slightly
            different numbers than when run alone.
        budget: None, or seconds for the whole run: when they are spent, the chapters still
            running stop ("out of time") and the rest are "not run"; the summary keeps both.
    Returns:
        ``{"profile", "lang", "started", "seconds", "failed", "unfinished", "jobs", "budget",
        "chapters": [{"lang", "chapter", "notebook", "status", "seconds", "records", "error", "noise"},
        ...]}`` (``run_chapter`` describes a chapter's entries),
        as written to summary.json; chapters in the order they were named; and ``"left_out":
        {"en/10_point_clouds": ["seed"]}`` when a parameter did not reach every chapter.
    """
    _check_run_arguments(profile, lang, jobs, budget)
    todo = resolve_chapters(chapters, book, lang)
    _papermill()  # fail before the first chapter when papermill is missing
    shares, left_out = _split_parameters(todo, {"profile": profile, **(parameters or {})})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # every chapter has its row from the start ("not finished" until it ends), so a summary left by a
    # run killed outright (SIGKILL, a machine's time limit) names what never finished
    pending = [{"lang": edition, "chapter": notebook.stem, "notebook": f"{edition}/{notebook.name}",
                "status": NOT_FINISHED, "seconds": 0.0, "records": {}, "error": None, "noise": []}
               for edition, notebook in todo]
    summary = {"profile": profile, "lang": lang, "started": datetime.now().isoformat(timespec="seconds"),
               "seconds": 0.0, "failed": 0, "unfinished": len(todo), "jobs": jobs, "budget": budget,
               "chapters": list(pending)}
    start = time.perf_counter()
    deadline = None if budget is None else time.time() + budget
    if left_out:
        summary["left_out"] = left_out
        for chapter, names in left_out.items():
            them = "it" if len(names) == 1 else "them"
            print(f"{chapter} has no parameter {', '.join(names)}: it runs without {them}", flush=True)
    tasks = [(f"[{k}/{len(todo)}] {edition}/{notebook.stem}", notebook, out / edition / notebook.name, params,
              timeout, deadline) for k, ((edition, notebook), params) in enumerate(zip(todo, shares), 1)]
    write_summary(summary, out)

    def finish(index, result):
        summary["chapters"][index] = {**pending[index], **result}
        summary["failed"] = sum(c["status"] == "failed" for c in summary["chapters"])
        summary["unfinished"] = sum(c["status"] in UNFINISHED for c in summary["chapters"])
        summary["seconds"] = round(time.perf_counter() - start, 1)
        error = result["error"]
        note = f" in cell {error.get('cell', '?')}: {error['ename']}" if error and "cell" in error else ""
        print(f"{tasks[index][0]}: {result['status']}{note} ({result['seconds']:.1f} s)", flush=True)
        write_summary(summary, out)  # after every chapter: a stopped run keeps what it did

    if jobs == 1:
        for index, (label, notebook, executed, params, *_) in enumerate(tasks):
            if deadline is None or time.time() < deadline:
                print(f"{label}: running", flush=True)
            finish(index, run_chapter(notebook, executed, params, timeout, progress, deadline))
        return summary
    _run_in_pool(tasks, jobs, finish)
    return summary


def _parameter_value(text: str, name: str = "VALUE"):
    """A ``-p NAME VALUE`` value as papermill's CLI reads it: bool, None, int, float or str; and, where
    papermill needs ``-y``, a tuple or list written as a Python literal (chapter 09's ``show``:
    ``-p show "(5, 20)"``)."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lstrip().startswith(("(", "[")):
        import ast

        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"-p {name} {text!r}: expected a tuple or list of Python literals, e.g. \"(5, 20)\"")
        return value
    return text


def main(argv=None) -> int:
    """``python -m depthlib.chapters run|list ...``; returns the exit status (1: a chapter failed)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m depthlib.chapters",
                                     description="Run the book's chapters headless with papermill.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute chapters; write executed notebooks and a summary")
    run.add_argument("chapters", nargs="*", metavar="CHAPTER", help="05, 05_training or a path (default: all)")
    run.add_argument("--lang", choices=[*LANGS, "both"], default="en")
    run.add_argument("--profile", choices=["cpu", "gpu", "auto"], default="cpu",
                     help="the chapters' profile (default: cpu; auto: gpu when CUDA is there)")
    run.add_argument("--out", default="runs/chapters", help="output folder (default: runs/chapters)")
    run.add_argument("--book", default=".", help="the book's root folder (default: .)")
    run.add_argument("--timeout", type=float, default=600, help="seconds per cell (default: 600)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a papermill parameter, e.g. -p seed 3 or -p show \"(5, 20)\" (repeatable)")
    run.add_argument("--jobs", type=int, default=1, help="chapters run at once (default: 1)")
    run.add_argument("--budget", type=float, default=None,
                     help="seconds for the whole run: then running chapters stop and the rest are not run")
    run.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    listing = commands.add_parser("list", help="list the chapters of an edition")
    listing.add_argument("--lang", choices=[*LANGS, "both"], default="en")
    listing.add_argument("--book", default=".")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for edition, path in resolve_chapters(None, args.book, args.lang):
                print(f"{edition}  {path.stem}")
            return 0
        parameters = {name: _parameter_value(value, name) for name, value in args.parameter}
        summary = run_chapters(args.chapters or None, lang=args.lang, profile=args.profile, out=args.out,
                               book=args.book, timeout=args.timeout, parameters=parameters,
                               progress=not args.no_progress and args.jobs == 1, jobs=args.jobs,
                               budget=args.budget)
    except (ValueError, FileNotFoundError, ImportError) as error:
        parser.exit(2, f"error: {error}\n")
    print(summary_markdown(summary), end="")
    print(f"wrote {Path(args.out) / 'summary.md'} and summary.json")
    return 1 if summary["failed"] or summary["unfinished"] else 0


if __name__ == "__main__":
    sys.exit(main())
