"""The papers' published results, quoted and never measured here, and rows that set depthlib's
numbers beside them (chapter 11). A row of such a table is a label, not a comparison: the data,
resolution and protocol differ (chapter 11, section 5)."""
from __future__ import annotations

__all__ = ["DENSEDEPTH_NYU", "MVSNET_DTU", "paper_rows"]

# Alhashim & Wonka (2018), Table 1: NYU Depth v2 test set (654 images, Eigen crop, flip TTA), metres
DENSEDEPTH_NYU = {"delta1": 0.846, "delta2": 0.974, "delta3": 0.994, "abs_rel": 0.123, "rmse": 0.465,
                  "log10": 0.053}
# Yao et al. (2018), Table 1: DTU evaluation set (22 scans, fused point clouds, DTU's code), mm
MVSNET_DTU = {"accuracy": 0.396, "completeness": 0.527, "overall": 0.462}


def paper_rows(model: str, paper: dict, ours: dict, columns, labels=None, ours_format: str = "{:.3f}") -> list[dict]:
    """Rows for ``depthlib.bench.format_table``: one metric per row, the paper's number beside ours.

    model: the first column's header; paper: {key: quoted number}, written with 3 decimals ("-" for a
    key it lacks); ours: {key: measured number}; columns: the headers of the paper's and our column;
    labels: {row label: key} (default: the keys of ``paper``); ours_format: how our number is written.

    Example:
        >>> paper_rows("DenseDepth", {"rmse": 0.465}, {"rmse": 0.4}, ("paper", "ours"))
        [{'DenseDepth': 'rmse', 'paper': '0.465', 'ours': '0.400'}]
    """
    if len(columns) != 2:
        raise ValueError(f"paper_rows: columns {columns!r}, expected two headers (the paper's, ours)")
    labels = {key: key for key in paper} if labels is None else labels
    missing = [key for key in labels.values() if key not in ours]
    if missing:
        raise ValueError(f"paper_rows: no {missing} among our numbers {sorted(ours)}")
    rows = []
    for label, key in labels.items():
        quoted = "-" if paper.get(key) is None else f"{paper[key]:.3f}"
        rows.append({model: label, columns[0]: quoted, columns[1]: ours_format.format(ours[key])})
    return rows
