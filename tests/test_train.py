"""Trainer: exact resume (epoch end, mid-epoch, SIGINT, SIGKILL), DDP equivalence, NaN stop, logs."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from depthlib.train import TrainConfig, Trainer, read_log
from depthlib.viz import plot_log

sys.path.insert(0, str(Path(__file__).parent))
from toy_training import ToyNet, ToySet, ToyTask, make_trainer  # noqa: E402


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    trainer = make_trainer(tmp_path_factory.mktemp("straight"))
    history = trainer.fit()
    return trainer, history


def test_straight_run_trains_and_checkpoints_every_epoch(straight_run):
    trainer, history = straight_run
    assert [h["epoch"] for h in history] == [0, 1] and trainer.step == 2 * trainer.steps_per_epoch == 12
    assert history[1]["train_total"] < history[0]["train_total"]
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (2, 12, 0)


@pytest.mark.parametrize("stop_after", [6, 3], ids=["epoch-end", "mid-epoch"])
def test_stop_and_resume_gives_identical_weights(tmp_path, straight_run, stop_after):
    first = make_trainer(tmp_path)
    first.fit(stop_after=stop_after)
    assert first.step == stop_after
    resumed = make_trainer(tmp_path, model_seed=123)  # different init: everything must come from the checkpoint
    resumed.fit(resume=True)
    assert resumed.step == 12
    _assert_same_weights(_weights(resumed), _weights(straight_run[0]))
    # and the log loses nothing: each epoch's record averages all its steps, those before the stop too
    assert _epoch_means(tmp_path) == _epoch_means(straight_run[0].out_dir)


def _epoch_means(run_dir):
    """The epoch records of a run's log without their times: [(epoch, step, train_total, train_mse)]."""
    return [(r["epoch"], r["step"], r["train_total"], r["train_mse"]) for r in read_log(run_dir) if "seconds" in r]


def test_sigint_writes_a_checkpoint_and_resume_finishes_identically(tmp_path, straight_run):
    trainer = make_trainer(tmp_path)
    original_loss = trainer.task.loss

    def loss_then_interrupt(model, batch):
        if trainer.task.calls == 4:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C or a notebook's interrupt button sends
        return original_loss(model, batch)

    trainer.task.loss = loss_then_interrupt
    with pytest.raises(KeyboardInterrupt, match="checkpoint saved"):
        trainer.fit()
    assert torch.load(trainer.checkpoint_path, weights_only=True)["step"] == 5  # the step in flight finished
    resumed = make_trainer(tmp_path)
    resumed.fit(resume=True)
    _assert_same_weights(_weights(resumed), _weights(straight_run[0]))


def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(tmp_path, straight_run):
    script = Path(__file__).parent / "toy_training.py"
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path), "2", "0.3"])
    checkpoint = tmp_path / "checkpoint.pt"
    deadline = time.time() + 60
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.4)  # let it get into the next steps, then kill it without warning
    process.kill()
    process.wait()
    state = torch.load(checkpoint, weights_only=True)
    assert 2 <= state["step"] < 12, "the run must die mid-training, after a checkpoint"
    resumed = make_trainer(tmp_path)
    resumed.fit(resume=True)
    assert resumed.step == 12
    _assert_same_weights(_weights(resumed), _weights(straight_run[0]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = make_trainer(out_dir, batch_size=2, dropout=False)
    trainer.fit()
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = make_trainer(tmp_path / "single", batch_size=4, dropout=False)
    single.fit()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, start_method="spawn")
    ddp_weights = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]  # written by rank 0
    for key, value in _weights(single).items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-5, atol=1e-6)  # float summation order only
    assert len(read_log(tmp_path / "ddp")) == len(read_log(tmp_path / "single"))  # rank 0 alone logged


def test_nan_loss_stops_training_naming_the_step_and_the_parts(tmp_path):
    trainer = Trainer(ToyNet(), ToySet(), ToyTask(nan_at_step=3), tmp_path,
                      TrainConfig(epochs=1, batch_size=4, progress=False))
    with pytest.raises(FloatingPointError, match=r"step 3 .*total=nan, mse="):
        trainer.fit()
    assert not trainer.checkpoint_path.exists()  # nothing non-finite is saved


def test_log_records_steps_and_epochs_and_plots(straight_run):
    trainer, _ = straight_run
    records = read_log(trainer.out_dir)
    steps = [r for r in records if "total" in r]
    epochs = [r for r in records if "train_total" in r]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12] and len(epochs) == 2
    ax = plot_log(trainer.out_dir, keys=("total", "mse"))
    assert len(ax.lines) == 4
    import matplotlib.pyplot as plt
    plt.close("all")


def test_bad_settings_and_missing_checkpoint_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="schedule 'linear'"):
        Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, TrainConfig(schedule="linear"))
    with pytest.raises(ValueError, match="too few for one batch of 64"):
        Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, TrainConfig(batch_size=64))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path, TrainConfig()).load_checkpoint()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_raises_the_lr_linearly_over_its_steps_then_follows_the_schedule(tmp_path, schedule):
    def lrs(warmup_steps):
        config = TrainConfig(epochs=2, batch_size=4, lr=1e-2, schedule=schedule, warmup_steps=warmup_steps,
                             log_every=1, progress=False)
        trainer = Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path / str(warmup_steps), config)
        first = trainer.optimizer.param_groups[0]["lr"]  # the lr of the first step
        trainer.fit()
        return [first] + [r["lr"] for r in read_log(trainer.out_dir) if "lr" in r]  # then after each step

    warmed, plain = lrs(4), lrs(0)
    assert len(warmed) == 13 and plain[0] == pytest.approx(1e-2)
    assert warmed[:4] == pytest.approx([k / 4 * p for k, p in zip((1, 2, 3, 4), plain)])
    assert warmed[4:] == pytest.approx(plain[4:])


def test_densedepth_task_compares_half_resolution_output_with_normalised_valid_target():
    from depthlib.train import DenseDepthTask

    depth = torch.full((2, 1, 32, 48), 2.0)  # 2 m everywhere, except two invalid pixels
    depth[0, 0, 4, 4], depth[1, 0, 10, 20] = 0.0, float("nan")
    batch = {"image": torch.rand(2, 3, 32, 48), "depth": depth, "mask": torch.isfinite(depth) & (depth > 0)}
    task = DenseDepthTask(max_depth=10.0)
    exact = task.loss(lambda images: torch.full((2, 1, 16, 24), 5.0), batch)  # 10 / 2 m = 5
    assert all(torch.isfinite(v) for v in exact.values()) and exact["total"].item() == pytest.approx(0.0, abs=1e-6)
    off = task.loss(lambda images: torch.full((2, 1, 16, 24), 6.0), batch)
    assert off["depth"].item() == pytest.approx(1.0) and off["total"].item() > 0.1


def test_progress_env_line_prints_one_final_line_off_prints_nothing_bad_value_raises(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEPTHLIB_PROGRESS", "line")
    Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path / "line", TrainConfig(epochs=2, batch_size=4)).fit()
    out = capsys.readouterr()
    assert "\r" not in out.out and "train:" not in out.err
    lines = [line for line in out.out.splitlines() if line.startswith("train:")]
    assert len(lines) == 1, out.out  # one clean line for the whole run, its final state
    assert re.match(r"train: 100%\|.*\| 12/12 \[.*epoch=1, loss=\d", lines[0]), lines[0]
    monkeypatch.setenv("DEPTHLIB_PROGRESS", "off")
    Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path / "off", TrainConfig(epochs=1, batch_size=4)).fit()
    out = capsys.readouterr()
    assert "train:" not in out.out + out.err
    monkeypatch.setenv("DEPTHLIB_PROGRESS", "widget")
    with pytest.raises(ValueError, match=r"DEPTHLIB_PROGRESS='widget': expected 'auto', 'line' or 'off'"):
        Trainer(ToyNet(), ToySet(), ToyTask(), tmp_path / "bad", TrainConfig(epochs=1, batch_size=4)).fit()
