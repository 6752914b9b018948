"""Tests for depthlib.published: the quoted numbers are the papers' (as chapter 11's text quotes
them) and the rows put each number in its column, a missing quote shown as "-"."""
import json
from pathlib import Path

import pytest

from depthlib.bench import format_table
from depthlib.published import DENSEDEPTH_NYU, MVSNET_DTU, paper_rows

ROOT = Path(__file__).resolve().parents[1]


def test_quoted_numbers_are_the_papers_tables_as_chapter_11_states_them():
    assert DENSEDEPTH_NYU == {"delta1": 0.846, "delta2": 0.974, "delta3": 0.994, "abs_rel": 0.123,
                              "rmse": 0.465, "log10": 0.053}
    assert MVSNET_DTU == {"accuracy": 0.396, "completeness": 0.527, "overall": 0.462}
    for lang in ("en", "zh"):   # the prose that quotes them carries the same numbers
        cells = json.loads((ROOT / "chapters" / lang / "11_scaling_up.ipynb").read_text(encoding="utf-8"))["cells"]
        text = "".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
        assert all(f"{value:.3f}" in text for value in (*DENSEDEPTH_NYU.values(), *MVSNET_DTU.values())), lang


def test_paper_rows_put_the_quote_and_our_number_side_by_side():
    columns = ("paper", "ours")
    rows = paper_rows("MVSNet", MVSNET_DTU, {"accuracy": 1.234, "overall": 2.0, "less": 0.91234}, columns,
                      {"accuracy (mm)": "accuracy", "less-one": "less"}, "{:.2f} (scan9)")
    assert rows == [{"MVSNet": "accuracy (mm)", "paper": "0.396", "ours": "1.23 (scan9)"},
                    {"MVSNet": "less-one", "paper": "-", "ours": "0.91 (scan9)"}]
    default = paper_rows("DenseDepth", {"rmse": 0.465, "delta1": 0.846}, {"delta1": 0.8, "rmse": 0.51}, columns)
    assert [row["DenseDepth"] for row in default] == ["rmse", "delta1"]           # the paper's order
    assert [row["ours"] for row in default] == ["0.510", "0.800"]
    assert format_table(default).splitlines()[0].split("|")[1].strip() == "DenseDepth"


def test_paper_rows_reject_missing_numbers_and_bad_columns():
    with pytest.raises(ValueError, match=r"no \['rmse'\] among our numbers \['delta1'\]"):
        paper_rows("DenseDepth", {"rmse": 0.465}, {"delta1": 0.8}, ("paper", "ours"))
    with pytest.raises(ValueError, match="two headers"):
        paper_rows("DenseDepth", {"rmse": 0.465}, {"rmse": 0.4}, ("paper",))
