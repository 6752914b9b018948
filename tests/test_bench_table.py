"""Tests for depthlib.bench_table: each row's speed-up is over the first setting of its model and phase,
settings that ran out of memory say so, and the peak-memory column is left out on request."""
import pytest

from depthlib.bench_table import step_time_rows

INPUTS = {"DenseDepth": ("DenseDepth-small", "96x128 x4"), "MVSNet": ("MVSNet", "128x160 D=32 x2")}


def stats(seconds, peak=100.0):
    return {"seconds": seconds, "peak MiB": peak}


def test_speed_up_is_over_the_first_setting_of_the_same_model_and_phase():
    timed = {("DenseDepth", "fp32 eager"): stats(1.0), ("DenseDepth", "AMP + channels_last"): stats(0.5, 70.4),
             ("MVSNet", "train fp32"): stats(0.3), ("MVSNet", "train AMP"): stats(0.2),
             ("MVSNet", "infer fp32"): stats(0.1), ("MVSNet", "infer AMP"): stats(0.08)}
    rows = step_time_rows(timed, INPUTS)
    assert [row["speed-up"] for row in rows] == ["1.00x", "2.00x", "1.00x", "1.50x", "1.00x", "1.25x"]
    assert rows[1] == {"model": "DenseDepth-small", "input": "96x128 x4", "mode": "AMP + channels_last",
                       "step (s)": "0.500", "speed-up": "2.00x", "peak MiB": "70"}
    assert rows[3]["input"] == "128x160 D=32 x2"
    assert all(row["peak MiB"] == "-" for row in step_time_rows(timed, INPUTS, peak_memory=False))


def test_settings_out_of_memory_show_so_and_leave_their_speed_ups_blank():
    timed = {("MVSNet", "train fp32"): None, ("MVSNet", "train AMP"): stats(0.2),
             ("MVSNet", "infer fp32"): stats(0.1), ("MVSNet", "infer AMP"): None}
    rows = step_time_rows(timed, INPUTS)
    assert [(row["step (s)"], row["speed-up"]) for row in rows] == [
        ("out of memory", "-"), ("0.200", "-"), ("0.100", "1.00x"), ("out of memory", "-")]


def test_a_model_without_its_columns_is_an_error():
    with pytest.raises(ValueError, match="'CasMVSNet' has no entry in inputs"):
        step_time_rows({("CasMVSNet", "infer fp32"): stats(1.0)}, INPUTS)
