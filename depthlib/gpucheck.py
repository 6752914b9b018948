"""The GPU check, ``make gpu-check``: the GPU path end to end on any CUDA machine (chapter 11).

CI has no GPU, so this is how a change to anything the ``gpu`` profile, AMP, DDP or the CLI touches
is checked: ``pytest -m cuda`` (the CUDA-only tests), the chapters' data sets rendered once
(``render_sets``), every chapter of both editions on the ``gpu`` profile (the chapter runner), and
``python -m depthlib.bench``, each step with a time limit of its
own so one slow step cannot eat the others. It ends in one summary table (step or chapter, status,
seconds, key numbers), written to ``OUT/summary.md`` and printed. Usage:
``python -m depthlib.gpucheck [--out DIR] [--lang en|zh|both] [--chapters 04 05 ...] [--no-bench]
[--bench-args "--compile"] [--step-timeout S] [--jobs N] [--budget S]``.

On a machine lent for a few minutes, ``--budget`` bounds the whole check (each step gets at most
what is left, and ``--step-timeout`` caps one step) and ``--jobs`` runs that many chapters at once:
the chapters that finish are reported with their numbers, the rest as "out of time" or "not run".
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

from depthlib.chapter_report import noise_text

__all__ = ["run_step", "render_sets", "slowest_cells", "summary_table", "main"]

MIN_STEP_SECONDS = 10  # with less of the budget left, a step is not started ("not run")
STOPPED = "stopped"  # a step that SIGTERM or Ctrl-C ended; no other step starts after it


class _Terminated(Exception):
    """SIGTERM reached the check (``timeout``, a job scheduler) while a step ran."""


def _raise_terminated(signum, frame):
    raise _Terminated(signum)


def run_step(name: str, command: list[str], log: Path, timeout: float) -> dict:
    """Run ``command``, its output teed to ``log``; ``{"step", "status", "seconds", "detail"}``.

    The step runs in a process group of its own, so that on a time-out its children go too (the
    benchmark runs each setting in a process of its own, the chapter runner starts kernels) and
    none keeps the GPU. For the same reason Ctrl-C or SIGTERM to the check ends the step's whole
    group (a group of its own no longer gets the terminal's Ctrl-C): the step is then "stopped
    (...)", and ``main`` starts no other step but still writes the summary.
    """
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    with open(log, "w", encoding="utf-8") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
        try:
            returncode = process.wait(timeout=timeout)
            status = "ok" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            _kill_group(process)
            status = f"timed out after {timeout:.0f} s"
        except (KeyboardInterrupt, _Terminated) as stop:
            _kill_group(process)
            status = STOPPED + (" (SIGTERM)" if isinstance(stop, _Terminated) else " (Ctrl-C)")
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
    text = log.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return {"step": name, "status": status, "seconds": round(time.perf_counter() - start, 1),
            "detail": lines[-1][:200] if lines else ""}


def _kill_group(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group has already gone
        pass
    process.wait()


def render_sets() -> list[tuple[str, float]]:
    """Render (or find in the cache) every data set the chapters read, once, before they run.

    The chapters render their sets on first use; run several at once (``--jobs``) and each would
    render the same set beside the others. Prints one line per set with its seconds (the ``gpu``
    profile's two are what a T4 reader waits for on first use, on Colab's 2 cores rather than
    this machine's); returns ``[(name, seconds), ...]``.
    """
    from depthlib.data import dtu_synthetic, dtu_synthetic_full, nyu_synthetic
    from depthlib.profiles import PROFILES

    gpu, cpu = PROFILES["gpu"], PROFILES["cpu"]
    sets = [("nyu_synthetic(gpu)", lambda: nyu_synthetic(gpu)), ("dtu_synthetic(gpu)", lambda: dtu_synthetic(gpu)),
            ("nyu_synthetic(cpu)", lambda: nyu_synthetic(cpu)), ("dtu_synthetic(cpu)", lambda: dtu_synthetic(cpu)),
            ("dtu_synthetic_full(cpu)", lambda: dtu_synthetic_full(cpu))]  # chapters 09-12 read cpu sets
    times = []
    for name, build in sets:
        start = time.perf_counter()
        root = build()
        times.append((name, round(time.perf_counter() - start, 1)))
        print(f"{name}: {times[-1][1]:.1f} s ({root})", flush=True)
    print("sets: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times), flush=True)
    return times


def slowest_cells(notebook: Path, n: int = 3) -> str:
    """The ``n`` slowest cells of a notebook executed by papermill, e.g. "cell 14 41.2 s; cell 9 3.1 s"."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return ""
    timed = [(cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0, index)
             for index, cell in enumerate(cells) if cell.get("cell_type") == "code"]
    return "; ".join(f"cell {index} {seconds:.1f} s" for seconds, index in sorted(timed, reverse=True)[:n])


def _numbers(records: dict, limit: int = 6) -> str:
    parts = []
    for name, entry in list(records.items())[:limit]:
        value = entry["value"]
        if float(value).is_integer() and abs(value) >= 1000:  # a count: 49,152, not 4.915e+04
            text = f"{int(value):,}"
        else:
            text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
        parts.append(f"{name} {text}{' ' + entry['unit'] if entry.get('unit') else ''}")
    return "; ".join(parts)


def summary_table(steps: list[dict], chapters: dict | None, out: Path) -> str:
    """One Markdown table: the steps, then one row per chapter (status, seconds, key numbers, or
    the failing cell; first, any page noise: stderr or local paths in its outputs), then where each
    chapter spent its time."""
    rows = ["| step / chapter | status | seconds | key numbers / detail |", "|---|---|---:|---|"]
    for step in steps:
        rows.append(f"| {step['step']} | {step['status']} | {step['seconds']:.1f} | {step['detail']} |")
    slow = []
    for chapter in (chapters or {}).get("chapters", []):
        name = f"{chapter['lang']}/{chapter['chapter']}"
        if chapter["status"] == "ok":
            detail = _numbers(chapter.get("records", {}))
        else:
            error = chapter.get("error") or {}
            line = f" at `{error['line']}`" if error.get("line") else ""
            message = f" {error['message']}" if error.get("message") else ""
            where = f"cell {error['cell']}: " if error.get("cell") is not None else ""  # not run: no cell
            detail = f"{where}{error.get('ename')}:{message}{line}"[:240]
        if chapter.get("noise"):  # what its rendered page would show that it should not
            detail = f"page noise: {noise_text(chapter['noise'])[:240]}" + (f"; {detail}" if detail else "")
        rows.append(f"| {name} | {chapter['status']} | {chapter['seconds']:.1f} | {detail.replace('|', '/')} |")
        cells = slowest_cells(out / "chapters" / chapter["lang"] / f"{chapter['chapter']}.ipynb")
        if cells:
            slow.append(f"- {name}: {cells}")
    return "\n".join(rows + ([("\nSlowest cells:"), *slow] if slow else []))


def _device_label() -> str:
    from depthlib.bench import device_label

    return device_label()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m depthlib.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu-check", help="output folder (logs, executed chapters, summary)")
    parser.add_argument("--lang", choices=["en", "zh", "both"], default="both")
    parser.add_argument("--chapters", nargs="*", default=[], help="chapters to run (default: all)")
    parser.add_argument("--no-tests", action="store_true", help="skip pytest -m cuda")
    parser.add_argument("--no-chapters", action="store_true", help="skip the chapters")
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    parser.add_argument("--bench-args", default="", help="extra arguments for python -m depthlib.bench")
    parser.add_argument("--step-timeout", type=float, default=3600, help="seconds allowed per step")
    parser.add_argument("--jobs", type=int, default=1, help="chapters run at once (default: 1)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole check: each step gets at most what is left")
    return parser


def main(argv=None) -> int:
    """``make gpu-check``: the CUDA tests, the chapters, the benchmark; returns 1 when any failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.budget is not None and not args.budget > 0):
        parser.error(f"--jobs must be at least 1 and --budget positive, got {args.jobs} and {args.budget}")
    started = time.perf_counter()

    def limit() -> float:
        """Seconds the next step may take: the step time-out, or less when the budget runs short."""
        if args.budget is None:
            return args.step_timeout
        return min(args.step_timeout, args.budget - (time.perf_counter() - started))

    def step(name, command, log, budgeted=False):
        """Run one step within what is left; with ``budgeted`` the command gets ``--budget S`` and
        stops itself (the step's own time-out, 30 s later, is for a command that hangs)."""
        seconds = limit()
        stopped = any(s["status"].startswith(STOPPED) for s in steps)
        if stopped or seconds < MIN_STEP_SECONDS:
            steps.append({"step": name, "status": "not run", "seconds": 0.0,
                          "detail": "the check was stopped" if stopped else "the budget was spent"})
            return
        if budgeted:
            command = [*command, "--budget", f"{seconds:.0f}"]
        steps.append(run_step(name, command, log, seconds + 30 if budgeted else seconds))

    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; it checks the GPU path, so it needs a GPU machine", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    python, steps, chapters = sys.executable, [], None
    if not args.no_tests:
        # the CUDA tests' own file: other test modules need test-only packages (kornia, ...) that a
        # GPU machine may lack, and one import error would stop the whole collection
        step("pytest -m cuda", [python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                                "tests/test_cuda.py"], out / "pytest-cuda.log")
    if not args.no_chapters:
        # the sets first, once: chapters running at once would each render them
        step("render the chapters' data sets", [python, "-c", "from depthlib.gpucheck import render_sets; "
                                                "render_sets()"], out / "render.log")
        step(f"chapters ({args.lang}, gpu profile, {args.jobs} at a time)",
             [python, "-m", "depthlib.chapters", "run", "--lang", args.lang, "--profile", "gpu",
              "--out", str(out / "chapters"), "--no-progress", "--jobs", str(args.jobs), *args.chapters],
             out / "chapters.log", budgeted=True)
        summary = out / "chapters" / "summary.json"
        chapters = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None
    if not args.no_bench:
        step("python -m depthlib.bench " + args.bench_args,
             [python, "-m", "depthlib.bench", *shlex.split(args.bench_args)], out / "bench.md")
    table = summary_table(steps, chapters, out)
    text = f"# gpu-check: {_device_label()}, {date.today().isoformat()}\n\n{table}\n"
    bench = out / "bench.md"
    if bench.is_file() and not args.no_bench:
        text += "\n## Benchmark\n\n" + re.sub(r"(?m)^# ", "", bench.read_text(encoding="utf-8"))
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    failed = [s for s in steps if s["status"] != "ok"] + [
        c for c in (chapters or {}).get("chapters", []) if c["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
