"""Faults of training runs (issue 14): nothing lost, nothing silent.

Each test states the fault, the exact exception (type and words) and which files stay untouched.
The Trainer runs on the toy model of toy_training.py, so every case takes a fraction of a second.
"""
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from depthlib.checkpoint_io import load_model_state, read_torch_file, run_differences, save_atomic
from depthlib.train import DenseDepthTask, TrainConfig, Trainer, export_weights, load_weights, read_log

sys.path.insert(0, str(Path(__file__).parent))
from toy_training import ToyNet, ToySet, ToyTask, make_trainer  # noqa: E402


def _bytes(path):
    return Path(path).read_bytes()


# ----------------------------------------------------------------------------- lost work

def test_new_run_into_a_folder_holding_a_run_is_refused_and_the_run_untouched(tmp_path):
    make_trainer(tmp_path).fit(stop_after=3)
    checkpoint, log = _bytes(tmp_path / "checkpoint.pt"), _bytes(tmp_path / "log.jsonl")
    with pytest.raises(FileExistsError, match=r"already holds a training run \(checkpoint\.pt, log\.jsonl\): "
                                              r"continue it with resume=True, or .* overwrite=True"):
        make_trainer(tmp_path).fit()
    assert _bytes(tmp_path / "checkpoint.pt") == checkpoint and _bytes(tmp_path / "log.jsonl") == log
    with pytest.raises(ValueError, match="resume=True and overwrite=True together"):
        make_trainer(tmp_path).fit(resume=True, overwrite=True)


def test_overwrite_starts_again_with_a_fresh_log(tmp_path):
    make_trainer(tmp_path).fit(stop_after=4)
    trainer = make_trainer(tmp_path)
    trainer.fit(overwrite=True)
    steps = [r["step"] for r in read_log(tmp_path) if "total" in r]
    assert steps == [2, 4, 6, 8, 10, 12]  # one run, from step 0: no records of the deleted run
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 12


def test_export_refuses_its_own_checkpoint_and_any_file_but_an_earlier_export(tmp_path):
    make_trainer(tmp_path / "run").fit(stop_after=2)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    original = _bytes(checkpoint)
    with pytest.raises(ValueError, match=r"is the checkpoint itself; fp16 weights over it would end the run"):
        export_weights(checkpoint, checkpoint)
    with pytest.raises(ValueError, match="is the checkpoint itself"):
        export_weights(checkpoint, tmp_path / "run" / ".." / "run" / "checkpoint.pt")  # another spelling
    make_trainer(tmp_path / "other").fit(stop_after=2)
    other = _bytes(tmp_path / "other" / "checkpoint.pt")
    with pytest.raises(FileExistsError, match=r"exists and is a training checkpoint; refusing to replace it"):
        export_weights(checkpoint, tmp_path / "other" / "checkpoint.pt")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt exists and is not an exported weights file"):
        export_weights(checkpoint, tmp_path / "notes.txt")
    assert _bytes(checkpoint) == original and _bytes(tmp_path / "other" / "checkpoint.pt") == other
    assert (tmp_path / "notes.txt").read_text() == "mine"
    first = export_weights(checkpoint, tmp_path / "w.pt")
    assert export_weights(checkpoint, first, half=False) == first  # an earlier export may be replaced
    assert load_weights(first)[0]["body.0.weight"].dtype == torch.float32


def test_a_failed_write_leaves_the_old_file_and_no_tmp(tmp_path, monkeypatch):
    make_trainer(tmp_path / "run").fit(stop_after=2)
    first = export_weights(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.pt")
    before = _bytes(first)

    def disk_full(obj, path):
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_weights(tmp_path / "run" / "checkpoint.pt", first)
    assert _bytes(first) == before and not (tmp_path / "w.pt.tmp").exists()


def test_checkpoint_is_fsynced_before_the_rename_and_its_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_atomic({"x": torch.ones(2)}, tmp_path / "checkpoint.pt")
    assert events == ["fsync file", "rename checkpoint.pt.tmp -> checkpoint.pt", "fsync folder"]
    events.clear()
    make_trainer(tmp_path / "run", epochs=1).fit()
    assert events[-3:] == ["fsync file", "rename checkpoint.pt.tmp -> checkpoint.pt", "fsync folder"]


def test_stale_tmp_left_by_a_kill_is_removed_when_the_run_goes_on(tmp_path, capsys):
    make_trainer(tmp_path).fit(stop_after=3)
    (tmp_path / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-save leaves it
    resumed = make_trainer(tmp_path)
    resumed.fit(resume=True)
    assert not (tmp_path / "checkpoint.pt.tmp").exists() and resumed.step == 12
    assert "removed" in capsys.readouterr().err


class _FailingValidation:
    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        raise ValueError("test/00000_depth.png: cannot decode the image")


def test_failing_validation_keeps_every_epoch_and_is_logged_and_reported(tmp_path, capsys):
    evaluate = _FailingValidation()
    settings = TrainConfig(epochs=2, batch_size=4, lr=1e-2, log_every=2, progress=False, seed=7)
    trainer = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings, evaluate=evaluate)
    history = trainer.fit()
    assert evaluate.calls == 2 and len(history) == 2 and trainer.step == 12
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 12)  # both epochs saved although validation failed
    assert [epoch for epoch, _ in trainer.failed_validations] == [0, 1]
    errors = [r["val_error"] for r in read_log(tmp_path) if "val_error" in r]
    assert errors == ["ValueError: test/00000_depth.png: cannot decode the image"] * 2
    assert "validation after epoch 0 failed: ValueError: test/00000_depth.png" in capsys.readouterr().err


def test_checkpoint_of_the_epoch_is_on_disk_before_validation_runs(tmp_path):
    seen = []

    def validate(model):
        seen.append(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"])
        return {"score": 1.0}
    settings = TrainConfig(epochs=2, batch_size=4, progress=False)
    Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings, evaluate=validate).fit()
    assert seen == [1, 2]



class _KilledOnceValidation:
    """A validation that is killed the first time it runs (as a kill mid-validation), then scores 1."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        if self.calls == 1:
            raise KeyboardInterrupt("killed while validating")
        return {"score": 1.0}


def test_a_run_killed_while_validating_resumes_with_the_epoch_validated_and_logged_once(tmp_path):
    settings = TrainConfig(epochs=2, batch_size=4, lr=1e-2, log_every=2, progress=False, seed=7)
    evaluate = _KilledOnceValidation()
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings, evaluate=evaluate).fit()
    assert not [r for r in read_log(tmp_path) if "seconds" in r]  # killed before epoch 0 was logged
    resumed = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings, evaluate=evaluate)
    history = resumed.fit(resume=True)
    epochs = [r for r in read_log(tmp_path) if "seconds" in r]
    assert [(r["epoch"], r["val_score"]) for r in epochs] == [(0, 1.0), (1, 1.0)] and evaluate.calls == 3
    assert [r["epoch"] for r in history] == [0, 1] and all("train_total" in r for r in epochs)


def test_an_epoch_record_already_logged_is_not_logged_again_on_resume(tmp_path):
    # killed after epoch 0 was validated and logged, before the next checkpoint: the checkpoint still
    # holds the record as pending, and the log already has it
    settings = TrainConfig(epochs=2, batch_size=4, lr=1e-2, log_every=2, progress=False, seed=7)
    calls = []
    trainer = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings,
                      evaluate=lambda model: calls.append(1) or {"score": 1.0})
    original_loss = trainer.task.loss

    def crash_in_epoch_1(model, batch):
        if trainer.epoch == 1:
            raise RuntimeError("killed")
        return original_loss(model, batch)
    trainer.task.loss = crash_in_epoch_1
    with pytest.raises(RuntimeError, match="killed"):
        trainer.fit()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["pending_record"]["epoch"] == 0
    resumed = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings,
                      evaluate=lambda model: calls.append(1) or {"score": 1.0})
    resumed.fit(resume=True)
    assert [r["epoch"] for r in read_log(tmp_path) if "seconds" in r] == [0, 1] and len(calls) == 2


# ----------------------------------------------------------------------------- silent wrong results

class _DepthSet(Dataset):
    """Samples whose depth is all `value` (0 or NaN: no valid pixel), with a describe() naming them."""

    def __init__(self, value, n=8):
        self.value, self.n = value, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        depth = torch.full((1, 8, 8), self.value)
        return {"image": torch.rand(3, 8, 8), "depth": depth, "mask": torch.ones(1, 8, 8, dtype=torch.bool)}

    def describe(self, index):
        return f"depth/{index:04d}.png"


@pytest.mark.parametrize("value", [0.0, float("nan"), float("inf")], ids=["zero", "nan", "inf"])
def test_no_valid_depth_stops_at_the_first_batch_naming_its_samples(tmp_path, value):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3, padding=1), torch.nn.Softplus())
    trainer = Trainer(model, _DepthSet(value), DenseDepthTask(), tmp_path,
                      TrainConfig(epochs=1, batch_size=4, progress=False))
    with pytest.raises(ValueError, match=r"no valid depth pixel \(depth > 0 and finite\) in the batch of epoch 0, "
                                         r"step 0: samples \[\d, \d, \d, \d\]: depth/\d{4}\.png; depth/"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists() and trainer.step == 0  # nothing trained, nothing saved


def _metadata_run(tmp_path, **metadata):
    settings = TrainConfig(epochs=2, batch_size=4, lr=1e-2, log_every=2, progress=False, seed=7)
    base = {"model": "densedepth", "encoder": "small", "size": [8, 8], "max_depth": 10.0, "init": "w.pt"}
    return Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings, metadata={**base, **metadata})


def test_resume_with_another_depth_range_or_size_stops_with_one_line(tmp_path):
    _metadata_run(tmp_path).fit(stop_after=3)
    before = _bytes(tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError) as error:
        _metadata_run(tmp_path, max_depth=5.0, size=[16, 16]).fit(resume=True)
    message = str(error.value)
    assert "\n" not in message and "was trained with size=[8, 8], max_depth=10.0; this run has size=[16, 16], " \
                                   "max_depth=5.0" in message and "--accept-changes" in message
    assert _bytes(tmp_path / "checkpoint.pt") == before


def test_resume_with_another_lr_stops_and_accepting_it_makes_it_take_effect(tmp_path):
    _metadata_run(tmp_path).fit(stop_after=3)
    settings = TrainConfig(epochs=2, batch_size=4, lr=1e-3, log_every=2, progress=False, seed=7)
    changed = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, settings, metadata=_metadata_run(tmp_path).metadata)
    with pytest.raises(ValueError, match=r"was trained with lr=0\.01; this run has lr=0\.001"):
        changed.fit(resume=True)
    changed.fit(resume=True, accept_changes=True, stop_after=1)
    # the optimiser came back with lr 0.01; the accepted 0.001 is what it uses now (constant schedule)
    assert changed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    accepted = [r for r in read_log(tmp_path) if "accepted_changes" in r]
    assert accepted == [{"epoch": 0, "step": 3, "accepted_changes": {"lr": [0.01, 0.001]}}]


def test_resume_of_another_model_is_refused_even_when_changes_are_accepted(tmp_path):
    _metadata_run(tmp_path).fit(stop_after=3)
    with pytest.raises(ValueError, match=r"holds encoder='small'; this run builds encoder='densenet169': the weights "
                                         r"do not fit"):
        _metadata_run(tmp_path, encoder="densenet169").fit(resume=True, accept_changes=True)


def test_resume_keeps_where_the_run_started_from(tmp_path):
    _metadata_run(tmp_path).fit(stop_after=3)
    resumed = _metadata_run(tmp_path, init=None)  # --resume without --init: still the same run
    resumed.fit(resume=True)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["metadata"]["init"] == "w.pt"


def test_resume_after_a_kill_logs_each_step_once(tmp_path):
    make_trainer(tmp_path).fit(stop_after=4)
    with open(tmp_path / "log.jsonl", "a", encoding="utf-8") as log:  # what a SIGKILL after step 6 leaves
        log.write(json.dumps({"epoch": 1, "step": 6, "total": 1.0}) + "\n" + '{"epoch": 1, "st')
    with pytest.raises(ValueError, match=r"log\.jsonl:4: not a JSON record"):
        read_log(tmp_path)
    make_trainer(tmp_path).fit(resume=True)
    steps = [r["step"] for r in read_log(tmp_path) if "total" in r]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_run_differences_ignores_what_fine_tuning_may_change():
    stored = {"model": "mvsnet", "refine": True, "n_depths": 8, "data": "synthetic", "init": None}
    assert run_differences(stored, {**stored, "data": "dtu:dtu", "init": "a.pt"}, "a.pt",
                           ignore=("init", "data")) == {}
    with pytest.raises(ValueError, match=r"a\.pt holds refine=True; this run builds refine=False"):
        run_differences(stored, {**stored, "refine": False}, "a.pt", accept=True)
    assert run_differences(stored, {**stored, "n_depths": 16}, "a.pt", accept=True) == {"n_depths": (8, 16)}


def test_weights_of_another_model_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError) as error:
        load_model_state(ToyNet(), torch.nn.Linear(3, 2).state_dict(), "other.pt")
    message = str(error.value)
    assert "\n" not in message and message.startswith("other.pt: its weights do not fit this ToyNet: 4 missing keys")
    assert "2 unexpected keys (e.g. weight, bias)" in message


# ----------------------------------------------------------------------------- numbers and files

@pytest.mark.parametrize("field, value, words", [
    ("lr", float("nan"), "lr=nan (expected a finite number >= 0)"),
    ("lr", -1e-3, "lr=-0.001"),
    ("log_every", 0, "log_every=0 (expected an integer >= 1)"),
    ("checkpoint_every", 0, "checkpoint_every=0 (expected None or an integer >= 1)"),
    ("grad_clip", 0.0, "grad_clip=0.0 (expected None or a finite number > 0)"),
    ("batch_size", 2.5, "batch_size=2.5"),
    ("epochs", -1, "epochs=-1"),
    ("warmup_steps", -5, "warmup_steps=-5 (expected an integer >= 0)"),
    ("compile", "fast", "compile='fast' (expected True, False or a torch.compile mode: default, reduce-overhead"),
])
def test_train_config_rejects_numbers_out_of_range(field, value, words):
    with pytest.raises(ValueError, match=r"TrainConfig: .*" + words.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.").replace("[", r"\[")):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("max_depth", [0.0, -10.0, float("inf")])
def test_densedepth_task_rejects_a_non_positive_or_infinite_max_depth(max_depth):
    with pytest.raises(ValueError, match=rf"DenseDepthTask: max_depth={max_depth!r}, expected a finite positive"):
        DenseDepthTask(max_depth)


def test_truncated_or_foreign_checkpoint_is_one_line_naming_it(tmp_path):
    make_trainer(tmp_path).fit(stop_after=2)
    data = _bytes(tmp_path / "checkpoint.pt")
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])  # a copy that stopped halfway
    with pytest.raises(ValueError) as error:
        load_weights(tmp_path / "cut.pt")
    assert "\n" not in str(error.value) and "cut.pt: cannot read it as a PyTorch checkpoint" in str(error.value)
    (tmp_path / "checkpoint.pt").write_bytes(data[:len(data) // 2])  # --resume of a cut-off checkpoint
    with pytest.raises(ValueError, match=r"checkpoint\.pt: cannot read it as a PyTorch checkpoint"):
        make_trainer(tmp_path).fit(resume=True)
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pt: not a depthlib checkpoint or weights file; a weights-only "
                                         r"load refuses it \(Unsupported operand"):
        read_torch_file(tmp_path / "notes.pt")
    torch.save({"model": {"w": torch.ones(1)}, "extra": Path("x")}, tmp_path / "pickled.pt")  # a non-tensor object
    with pytest.raises(ValueError, match=r"pickled\.pt: .* refuses it \(Unsupported global: GLOBAL pathlib"):
        load_weights(tmp_path / "pickled.pt")
