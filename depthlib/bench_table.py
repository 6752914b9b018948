"""The step-time table of settings timed in this process (chapter 11): a row per setting, with its
speed-up over the first setting of the same model and phase. ``depthlib.bench`` times the settings
(``densedepth_step_stats``, ``mvsnet_step_stats``) and renders the rows (``format_table``)."""
from __future__ import annotations

__all__ = ["PHASES", "step_time_rows"]

PHASES = ("train", "infer")  # a mode's first word, when it is one of these, names its phase


def step_time_rows(stats: dict, inputs: dict, peak_memory: bool = True) -> list[dict]:
    """Rows for ``format_table``: model, input, mode, step (s), speed-up, peak MiB.

    stats: {(model, mode): step statistics with ``seconds`` (per step) and ``peak MiB``, or None for a
    setting that ran out of memory}, in the order of the table. The speed-up is over the first
    setting of the same model and phase (``PHASES``: "train fp32" and "train AMP" share one; "fp32
    eager" has none); "-" where either ran out of memory. inputs: {model: (model column, input
    column)}. peak_memory=False leaves that column "-" (a CPU process's peak only grows over a run).

    Example:
        >>> stats = {("M", "fp32"): {"seconds": 2.0, "peak MiB": 9.0}, ("M", "AMP"): None}
        >>> [row["step (s)"] for row in step_time_rows(stats, {"M": ("M", "8x8")})]
        ['2.000', 'out of memory']
    """
    rows, baselines = [], {}
    for (model, mode), result in stats.items():
        if model not in inputs:
            raise ValueError(f"step_time_rows: model {model!r} has no entry in inputs {sorted(inputs)}")
        words = mode.split()
        baseline = baselines.setdefault((model, words[0] if words and words[0] in PHASES else ""), result)
        name, size = inputs[model]
        row = {"model": name, "input": size, "mode": mode, "step (s)": "out of memory", "speed-up": "-",
               "peak MiB": "-"}
        if result is not None:
            row["step (s)"] = f"{result['seconds']:.3f}"
            if baseline is not None:
                row["speed-up"] = f"{baseline['seconds'] / result['seconds']:.2f}x"
            if peak_memory:
                row["peak MiB"] = f"{result['peak MiB']:.0f}"
        rows.append(row)
    return rows
