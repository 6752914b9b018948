"""The chapter runner's report: statuses, where a failed chapter stopped, the summary table (appendix).

``depthlib.chapters`` runs the chapters; this module turns what it gathered into ``summary.json``
and ``summary.md``. A chapter's status is "ok", "failed" or one of ``UNFINISHED``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["OUT_OF_TIME", "NOT_RUN", "NOT_FINISHED", "UNFINISHED", "first_line", "failing_cell",
           "describe_failure", "page_noise", "noise_text", "summary_markdown", "write_summary"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

OUT_OF_TIME, NOT_RUN = "out of time", "not run"  # statuses of a run with a budget
NOT_FINISHED = "not finished"  # a chapter's row while it waits or runs: what a killed run leaves
UNFINISHED = (OUT_OF_TIME, NOT_RUN, NOT_FINISHED)
_PAPERMILL_CELLS = ("injected-parameters", "papermill-error-cell-tag")  # tags of the cells papermill inserts


def first_line(text, limit=300) -> str:
    """The first line of ``text`` without terminal colours, cut to ``limit`` characters."""
    text = _ANSI.sub("", str(text)).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failing_cell(executed: Path) -> dict:
    """Where an executed notebook stopped: ``{"cell", "execution_count", "line"}``.

    ``cell`` is the index in the source notebook (papermill's own cells not counted), ``line`` the
    failing line when the traceback shows it; a dead kernel leaves no error, so then the last cell
    that started; ``{}`` when there is no executed notebook.
    """
    import nbformat

    if not executed.is_file():
        return {}
    index, last_started = -1, {}
    for cell in nbformat.read(executed, as_version=4).cells:
        if any(tag in cell.get("metadata", {}).get("tags", []) for tag in _PAPERMILL_CELLS):
            continue
        index += 1
        state = cell.get("metadata", {}).get("papermill", {})
        found = {"cell": index, "execution_count": cell.get("execution_count")}
        last_started = found if state.get("start_time") else last_started
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors or state.get("exception") or state.get("status") == "running":
            lines = [_ANSI.sub("", line) for out in errors for entry in out.get("traceback", [])
                     for line in entry.splitlines()]
            arrows = [line.strip() for line in lines if re.match(r"-+> +\d", line.lstrip())]
            if arrows:  # IPython marks the failing line of each frame with an arrow padded to the line
                # number's width ("----> 2", "---> 10"); the first frame is the cell's
                found["line"] = first_line(arrows[0].split(None, 2)[-1])
            return found
    return last_started  # a dead kernel leaves no mark: the last cell that started


# jupyter-book's cell tags that keep a cell's outputs (or its stderr) off the rendered page
_HIDDEN_OUTPUTS, _HIDDEN_STDERR = ("remove-cell", "remove-output"), "remove-stderr"
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")  # base64 may spell "/tmp/" by chance


def page_noise(executed: Path, local_paths=()) -> list[dict]:
    """What an executed chapter would show on the rendered page that a reader should not see
    (DESIGN.md's notebook conventions): text on stderr (warnings, a stray progress bar) and this
    machine's own paths (a temporary folder, the home or the book folder) in any text output.

    Cells whose tags hide their outputs from the book (``remove-cell``, ``remove-output``;
    ``remove-stderr`` for stderr) do not count, nor do papermill's own cells. Returns
    ``[{"cell", "kind": "stderr" | "local path", "text"}]``, ``cell`` indexed as in the source
    notebook, ``text`` the first line concerned; ``[]`` when there is no executed notebook.
    """
    import nbformat

    if not executed.is_file():
        return []
    paths = sorted({str(p).rstrip("/") for p in local_paths if len(str(p).rstrip("/")) > 1}, key=len, reverse=True)
    noise, index = [], -1
    for cell in nbformat.read(executed, as_version=4).cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if any(tag in tags for tag in _PAPERMILL_CELLS):
            continue
        index += 1
        if cell.get("cell_type") != "code" or any(tag in tags for tag in _HIDDEN_OUTPUTS):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts = ["".join(output.get("text", ""))]
                if output.get("name") == "stderr" and _HIDDEN_STDERR not in tags and texts[0].strip():
                    noise.append({"cell": index, "kind": "stderr", "text": first_line(texts[0], 200)})
                    continue  # a warning names its file: one finding, not two
            else:
                data = output.get("data", {})
                texts = ["".join(data.get(kind, "")) for kind in ("text/plain", "text/html", "text/markdown")]
            for text in texts:
                text = _DATA_URI.sub("", text)
                found = next((path for path in paths if path in text), None)
                if found:
                    line = next(line for line in text.splitlines() if found in line)
                    noise.append({"cell": index, "kind": "local path", "text": first_line(line, 200)})
                    break
    return noise


def noise_text(noise: list[dict]) -> str:
    """``page_noise``'s findings in one line for a summary table; "" when there are none."""
    return "; ".join(f"cell {n['cell']} {n['kind']}: {n['text']}" for n in noise)


def describe_failure(error: BaseException, executed: Path) -> dict:
    """The failing chapter's cell, exception name and message, for the summary."""
    failure = failing_cell(executed)
    ename = getattr(error, "ename", None) or type(error).__name__
    evalue = getattr(error, "evalue", None)
    failure.update(ename=ename, message=first_line(evalue if evalue is not None else error))
    if failure.get("execution_count") is None and getattr(error, "exec_count", None) is not None:
        failure["execution_count"] = error.exec_count
    return failure


def _format_value(value: float) -> str:
    if value.is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _cell_text(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(summary: dict) -> str:
    """The run summary as Markdown: a heading line and one table row per chapter.

    Args:
        summary: the dict ``run_chapters`` returns.
    Returns:
        Markdown text: chapter | status | time (s) | key numbers (failing chapters: cell and error;
        chapters with ``noise``: what the rendered page would show, first).
    """
    chapters = summary["chapters"]
    failed = sum(c["status"] == "failed" for c in chapters)
    unfinished = sum(c["status"] in UNFINISHED for c in chapters)
    budget = f" (budget {summary['budget']:.0f} s)" if summary.get("budget") else ""
    more = f", {unfinished} unfinished{budget}" if unfinished else ""
    if any(c["status"] == NOT_FINISHED for c in chapters):
        more += " (written while the run went on; if it no longer runs, it was killed)"
    noisy = sum(bool(c.get("noise")) for c in chapters)
    more += f", {noisy} with page noise" if noisy else ""
    jobs = f", {summary['jobs']} at a time" if summary.get("jobs", 1) > 1 else ""
    lines = [f"# Chapter run: profile {summary['profile']}, {len(chapters)} chapter(s), {failed} failed{more}, "
             f"{summary['seconds']:.0f} s{jobs}", "",
             "| chapter | status | time (s) | key numbers |", "|---|---|---:|---|"]
    left_out = summary.get("left_out") or {}
    if left_out:  # before the table, after the heading's blank line
        lines[1:1] = ["", "; ".join(f"{chapter} ran without `{'`, `'.join(names)}` (not among its parameters)"
                                    for chapter, names in left_out.items())]
    for c in chapters:
        numbers = "; ".join(f"{name} {_format_value(r['value'])}" + (f" {r['unit']}" if r["unit"] else "")
                            for name, r in c["records"].items())
        if c["error"]:
            e = c["error"]
            where = f"cell {e.get('cell', '?')} (In [{e.get('execution_count') or ' '}])"
            line = f" at `{e['line']}`" if e.get("line") else ""
            numbers = f"**{where}: {e['ename']}: {e['message']}**{line}" + (f"; {numbers}" if numbers else "")
        if c.get("noise"):
            numbers = f"**page noise: {noise_text(c['noise'])}**" + (f"; {numbers}" if numbers else "")
        lines.append(f"| {c['lang']}/{c['chapter']} | {c['status']} | {c['seconds']:.1f} | {_cell_text(numbers)} |")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, out) -> tuple[Path, Path]:
    """Write ``out/summary.json`` and ``out/summary.md``; returns their paths."""
    out = Path(out)
    json_path, md_path = out / "summary.json", out / "summary.md"
    json_path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(summary_markdown(summary), encoding="utf-8")
    return json_path, md_path
