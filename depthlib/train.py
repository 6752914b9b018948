"""One Trainer for both models: AMP, checkpoints with exact resume, DDP, progress and logs (chapters 05, 08, 11).

The Trainer knows nothing about depth: a *task* turns a batch into a dict of losses with a
``"total"`` entry (see :class:`DenseDepthTask`). Everything that makes a run reproducible is
seeded from ``TrainConfig.seed``: the data order of epoch ``e`` is a permutation drawn from
``seed + e`` (as ``DistributedSampler``), and each sample's augmentation is drawn from
``(seed, epoch, index)``, so a resumed run, a run with data-loading workers and a multi-process
run see exactly the same samples in the same order.
"""
from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from depthlib.checkpoint_io import (check_run_folder, clean_run_folder, export_weights, has_epoch_record,
                                    load_weights, read_log, read_torch_file, read_training_state, run_differences, save_atomic,
                                    trim_log)
from depthlib.runtime import (COMPILE_MODES, PROGRESS_ENV, distributed_context, forward_model, join_processes,
                              main_thread, model_for_processes, native_bf16, progress_bar, rng_state,
                              set_rng_state, to_channels_last)
from depthlib.tasks import DenseDepthTask, MVSNetTask

# the Trainer and its configuration live here; the objectives and checkpoint readers are re-exported
# so that chapters 05 and 08 import training from one place (the log plot is viz.plot_log)
__all__ = ["TrainConfig", "Trainer", "DenseDepthTask", "MVSNetTask", "load_weights", "export_weights", "read_log",
           "distributed_context", "progress_bar", "PROGRESS_ENV", "native_bf16", "to_channels_last"]


@dataclasses.dataclass
class TrainConfig:
    """Training settings. ``amp="auto"``: bf16 on CUDA GPUs with native bf16 (Ampere and newer), else
    fp16 with a GradScaler (a T4 emulates bf16, slowly); off on the CPU. ``checkpoint_every``: also
    checkpoint every N steps (the last epoch's end is always saved). ``schedule``: "constant" or
    "cosine" (per step, over the whole run). ``warmup_steps``: the learning rate rises linearly over
    the first N optimiser steps (lr / N, 2 lr / N, ..., lr), times the schedule; 0: no warm-up (for
    a large batch with a proportionally larger lr, Goyal et al. 2017). ``channels_last``: 2D convolutions' weights and image
    batches in channels_last, 3D convolutions' weights in channels_last_3d. ``cudnn_benchmark``:
    let cuDNN time its algorithms for each new input shape and keep the fastest (faster steps at a
    fixed size; not bit-reproducible between runs). ``compile``: torch.compile the model, in its
    default mode (True) or the one named (e.g. "reduce-overhead", which replays the compiled graphs
    as CUDA graphs). ``sync_bn``: under DDP, BatchNorm statistics over the global batch
    (``nn.SyncBatchNorm``, CUDA only) instead of each process's share. ``device``: None or "cuda"
    picks ``cuda:LOCAL_RANK`` under torchrun (else cuda:0, else the CPU)."""

    epochs: int = 1
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    grad_clip: Optional[float] = None
    amp: str = "auto"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: Union[bool, str] = False
    num_workers: int = 0
    seed: int = 0
    checkpoint_every: Optional[int] = None
    log_every: int = 10
    progress: bool = True
    sync_bn: bool = False
    device: Optional[str] = None

    def __post_init__(self):
        """Every number in its real range and finite; 0 is never read as "off" or "the default"."""
        def number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def count(value, low):
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        problems = [f"{name}={getattr(self, name)!r} (expected {rule})" for name, ok, rule in (
            ("epochs", count(self.epochs, 0), "an integer >= 0"),
            ("batch_size", count(self.batch_size, 1), "an integer >= 1"),
            ("lr", number(self.lr) and self.lr >= 0, "a finite number >= 0"),
            ("weight_decay", number(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("grad_clip", self.grad_clip is None or number(self.grad_clip) and self.grad_clip > 0,
             "None or a finite number > 0"),
            ("num_workers", count(self.num_workers, 0), "an integer >= 0"),
            ("seed", count(self.seed, 0), "an integer >= 0"),
            ("warmup_steps", count(self.warmup_steps, 0), "an integer >= 0"),
            ("checkpoint_every", self.checkpoint_every is None or count(self.checkpoint_every, 1),
             "None or an integer >= 1"),
            ("log_every", count(self.log_every, 1), "an integer >= 1"),
            ("compile", isinstance(self.compile, bool) or self.compile in COMPILE_MODES,
             f"True, False or a torch.compile mode: {', '.join(COMPILE_MODES)}")) if not ok]
        if problems:
            raise ValueError("TrainConfig: " + "; ".join(problems))


class _SeededSamples(Dataset):
    """Draw each sample's randomness (augmentation) from (seed, epoch, index), not from global state."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            return self.dataset[index]


class Trainer:
    """Train ``model`` on ``train_set`` with ``task.loss(model, batch) -> dict`` (``"total"`` is optimised).

    Writes ``out_dir/checkpoint.pt`` (atomically) at every epoch end, and ``out_dir/log.jsonl``
    (one JSON record per logged step and per epoch). ``fit(resume=True)`` continues exactly from
    the checkpoint. Under ``torchrun`` it trains with DDP (gloo on CPU, nccl on CUDA); rank 0
    alone logs and checkpoints.
    """

    def __init__(self, model, train_set, task, out_dir, config: Optional[TrainConfig] = None,
                 evaluate: Optional[Callable] = None, metadata: Optional[dict] = None):
        config = TrainConfig() if config is None else config
        if config.schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.schedule {config.schedule!r}, expected 'constant' or 'cosine'")
        if config.batch_size < 1 or config.epochs < 0:
            raise ValueError(f"TrainConfig: batch_size={config.batch_size}, epochs={config.epochs}; "
                             "expected batch_size >= 1 and epochs >= 0")
        self.config, self.task, self.evaluate = config, task, evaluate
        self.metadata = dict(metadata or {})  # saved with every checkpoint: what model this is, its sizes
        self.out_dir = Path(out_dir)
        self.rank, self.world_size, self.device = join_processes(config.device)
        self.model = model_for_processes(model, self.device, self.world_size, config.sync_bn)
        if config.channels_last:
            to_channels_last(self.model)
        if config.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.samples = _SeededSamples(train_set, config.seed)
        self.sampler = DistributedSampler(self.samples, num_replicas=self.world_size, rank=self.rank,
                                          shuffle=True, seed=config.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"train_set has {len(train_set)} samples: too few for one batch of "
                             f"{config.batch_size} on each of {self.world_size} process(es)")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_factor(config.schedule, max(1, config.epochs * self.steps_per_epoch),
                                       config.warmup_steps))
        self.forward_model = forward_model(self.model, self.device, self.world_size, config.compile)
        self.epoch, self.step, self.step_in_epoch = 0, 0, 0
        self._epoch_progress = _new_epoch_progress()  # loss sums, steps and seconds of the epoch so far
        self._epoch_clock = None  # perf_counter() at which the running epoch would have started
        self._pending_record = None  # an epoch's record between its checkpoint and its log line
        self._interrupted = False

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        """``out_dir/checkpoint.pt``: where the run's checkpoint is written and resumed from."""
        return self.out_dir / "checkpoint.pt"

    def state_dict(self) -> dict:
        """Everything a resumed run needs: weights, optimiser, scheduler, scaler, counters, RNG states,
        the running epoch's loss sums and an epoch record not yet logged, config and metadata."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
                "rng": rng_state(), "config": dataclasses.asdict(self.config), "metadata": self.metadata,
                "epoch_progress": {**self._epoch_progress, "seconds": self._epoch_seconds()},
                "pending_record": self._pending_record}

    def _epoch_seconds(self) -> float:
        """Seconds trained in the running epoch, over every run that trained in it."""
        if self._epoch_clock is None:
            return self._epoch_progress["seconds"]
        return time.perf_counter() - self._epoch_clock

    def save_checkpoint(self, path=None) -> Optional[Path]:
        """Write the full training state atomically (temp file + rename); rank 0 only."""
        if self.rank != 0:
            return None
        path = Path(path) if path else self.checkpoint_path
        return save_atomic(self.state_dict(), path)

    def load_checkpoint(self, path=None) -> None:
        """Restore model, optimiser, scaler, scheduler, counters and RNG states (weights_only load)."""
        state = read_training_state(Path(path) if path else self.checkpoint_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.step_in_epoch = state["epoch"], state["step"], state["step_in_epoch"]
        # what the interrupted run had gathered for its epoch record (checkpoints before these keys: none)
        self._epoch_progress = state.get("epoch_progress") or _new_epoch_progress()
        self._epoch_clock, self._pending_record = None, state.get("pending_record")
        set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in state["rng"].items()})

    # ------------------------------------------------------------------ training
    def _amp_dtype(self):
        if self.config.amp not in ("auto", "off", "bf16", "fp16"):
            raise ValueError(f"TrainConfig.amp {self.config.amp!r}, expected 'auto', 'off', 'bf16' or 'fp16'")
        if self.device.type != "cuda" or self.config.amp == "off":
            return None
        if self.config.amp == "auto":
            return torch.bfloat16 if native_bf16(self.device) else torch.float16
        return torch.bfloat16 if self.config.amp == "bf16" else torch.float16

    def to_device(self, batch: dict) -> dict:
        """The batch's tensors on the training device (4-D float ones in ``channels_last`` when the
        config asks for it); what ``train_step`` expects and the benchmarks time."""
        def move(value):
            if not torch.is_tensor(value):
                return value
            value = value.to(self.device, non_blocking=True)
            if self.config.channels_last and value.dim() == 4 and value.is_floating_point():
                value = value.contiguous(memory_format=torch.channels_last)
            return value
        return {key: move(value) for key, value in batch.items()}

    def _epoch_loader(self) -> DataLoader:
        """This epoch's batches, minus those a resumed run has already trained on."""
        indices = list(self.sampler)[self.step_in_epoch * self.config.batch_size:]
        # A private generator: iterating the loader must not consume the global RNG (exact resume).
        return DataLoader(self.samples, batch_size=self.config.batch_size, sampler=indices, drop_last=True,
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.config.seed))

    def train_step(self, batch: dict) -> dict:
        """One optimiser step on a batch already on the device (``to_device``): forward under the
        config's autocast, backward through the scaler, step, schedule; returns the losses as floats.
        ``fit`` calls it for every batch; the benchmarks time it alone."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = self.task.loss(self.forward_model, batch)
        total = losses["total"]
        # The one read-back from the device in a step: every loss in one copy, here where the
        # finiteness check needs it anyway. Another read after the optimiser step (``.item()`` per
        # loss) would drain the GPU's queue a second time, and the CPU could not launch the next
        # step's forward while the GPU still runs this step's backward: a launch-bound step
        # (DenseNet's thousands of small kernels, chapter 11) pays for that wait in full.
        values = dict(zip(losses, torch.stack([v.detach().float().reshape(()) for v in losses.values()])
                          .tolist()))
        if not math.isfinite(values["total"]):
            parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise FloatingPointError(f"non-finite loss at epoch {self.epoch}, step {self.step} "
                                     f"(step {self.step_in_epoch} of the epoch): {parts}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # GradScaler skips the optimiser step when a gradient overflowed (and lowers its scale):
        # the schedule then skips it too, so the learning rate follows the steps really taken.
        if scale is None or self.scaler.get_scale() >= scale:
            self.scheduler.step()
        return values

    def _log(self, record: dict) -> None:
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")

    def _on_sigint(self, signum, frame):
        self._interrupted = True

    def fit(self, resume: bool = False, stop_after: Optional[int] = None, *, overwrite: bool = False,
            accept_changes: bool = False) -> list:
        """Train to ``config.epochs``; returns the per-epoch records.

        ``resume=True`` continues from ``out_dir/checkpoint.pt`` when it exists; the checkpoint's
        model metadata and optimisation settings must match this run's (ValueError naming the
        difference) unless ``accept_changes=True``. A new run (``resume=False``) refuses a folder
        that already holds a run (FileExistsError) unless ``overwrite=True``, which deletes its
        checkpoint and log first. A ``checkpoint.pt.tmp`` left by a killed save is removed. Ctrl-C
        (SIGINT) finishes the current step, writes a checkpoint and raises KeyboardInterrupt.
        ``stop_after=N`` stops after N steps of this call with a checkpoint, as an interrupt would
        (the chapters use it to show resuming). A failed validation (``evaluate``) is logged as
        ``val_error``, kept in ``failed_validations`` and printed; training goes on.
        """
        check_run_folder(self.out_dir, resume, overwrite, flags=("resume=True", "overwrite=True"))
        self.failed_validations = []
        if self.rank == 0:
            clean_run_folder(self.out_dir, everything=overwrite)
        if resume and self.checkpoint_path.is_file():
            changes = self._compare_with_checkpoint(accept_changes)
            self.load_checkpoint()
            self._apply_changes(changes)
            if self.rank == 0:
                trim_log(self.out_dir / "log.jsonl", self.step)
        previous = signal.signal(signal.SIGINT, self._on_sigint) if main_thread() else None
        try:
            return self._fit(stop_after)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _fit(self, stop_after):
        history, done_here = [], 0
        total_steps = self.config.epochs * self.steps_per_epoch
        bar = progress_bar(total=total_steps, initial=self.step, disable=not self.config.progress or self.rank != 0,
                           desc="train", unit="step")
        try:
            if self._pending_record is not None:  # the last run stopped after an epoch's checkpoint, before its
                history.append(self._close_epoch(self._pending_record, resumed=True))  # record was logged
            while self.epoch < self.config.epochs:
                self.samples.epoch = self.epoch
                self.sampler.set_epoch(self.epoch)
                self.model.train()
                progress = self._epoch_progress  # a resumed epoch's record averages all its steps
                self._epoch_clock = time.perf_counter() - progress["seconds"]
                for batch in self._epoch_loader():
                    self._check_valid_depth(batch)
                    losses = self.train_step(self.to_device(batch))
                    self.step, self.step_in_epoch, done_here = self.step + 1, self.step_in_epoch + 1, done_here + 1
                    for k, v in losses.items():
                        progress["sums"][k] = progress["sums"].get(k, 0.0) + v
                    progress["count"] += 1
                    bar.update(1)
                    bar.set_postfix(epoch=self.epoch, loss=f"{losses['total']:.4f}", refresh=False)
                    if self.step % self.config.log_every == 0:
                        self._log({"epoch": self.epoch, "step": self.step,
                                   "lr": self.scheduler.get_last_lr()[0], **losses})
                    if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self._interrupted or (stop_after is not None and done_here >= stop_after):
                        self.save_checkpoint()
                        if self._interrupted:
                            raise KeyboardInterrupt(f"interrupted at step {self.step}; checkpoint saved")
                        return history
                record = {"epoch": self.epoch, "step": self.step, "seconds": round(self._epoch_seconds(), 2),
                          **{f"train_{k}": v / max(progress["count"], 1) for k, v in progress["sums"].items()}}
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
                self._epoch_progress, self._epoch_clock = _new_epoch_progress(), None
                # the checkpoint holds the record until it is logged: a validation that fails, or a kill
                # while it runs, must lose neither the epoch's training nor its record
                self._pending_record = record
                self.save_checkpoint()
                history.append(self._close_epoch(record))
        finally:
            bar.close()
        return history

    def _close_epoch(self, record: dict, resumed: bool = False) -> dict:
        """Validate (when there is ``evaluate``) and log an epoch's record; ``resumed``: it comes from the
        checkpoint of a run stopped before logging it, so it is logged only if that run did not."""
        if not (resumed and has_epoch_record(self.out_dir / "log.jsonl", record["epoch"], record["step"])):
            if self.evaluate is not None:
                # every process validates (the same weights, the same result): none waits in a
                # collective while rank 0 alone validates, which NCCL ends with a time-out
                record.update(self._validate(record["epoch"]))
            self._log(record)
        self._pending_record = None
        return record

    # ------------------------------------------------------------------ faults: resume checks, bad data
    _RESUME_CONFIG = ("batch_size", "lr", "weight_decay", "schedule", "warmup_steps", "grad_clip", "seed")

    def _compare_with_checkpoint(self, accept_changes: bool) -> dict:
        """{name: (stored, current)} of the metadata and optimisation settings in which the checkpoint and
        this run differ; a one-line ValueError unless ``accept_changes`` (see ``run_differences``)."""
        state = read_torch_file(self.checkpoint_path, mmap=True)
        if not isinstance(state, dict):
            raise ValueError(f"{self.checkpoint_path}: holds a {type(state).__name__}, expected a depthlib checkpoint")
        stored_meta, stored_config = state.get("metadata") or {}, state.get("config") or {}
        for key in _KEEP_ON_RESUME:
            if self.metadata.get(key) is None and stored_meta.get(key) is not None:
                self.metadata[key] = stored_meta[key]
        config = dataclasses.asdict(self.config)
        pick = self._RESUME_CONFIG
        return run_differences({**stored_meta, **{k: stored_config[k] for k in pick if k in stored_config}},
                               {**self.metadata, **{k: config[k] for k in pick}}, self.checkpoint_path,
                               accept=accept_changes)

    def _apply_changes(self, changes: dict) -> None:
        """Make accepted changes of lr, weight decay and batch size take effect (the optimiser, scheduler and
        position in the epoch came back with the stored ones), and log what was accepted."""
        if not changes:
            return
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.config.weight_decay
            group["initial_lr"] = self.config.lr
        self.scheduler.base_lrs = [self.config.lr] * len(self.optimizer.param_groups)
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor
        if "batch_size" in changes:  # the samples already seen in this epoch stay behind
            self.step_in_epoch = self.step_in_epoch * changes["batch_size"][0] // self.config.batch_size
        self._log({"epoch": self.epoch, "step": self.step,
                   "accepted_changes": {key: list(values) for key, values in changes.items()}})

    def _check_valid_depth(self, batch) -> None:
        """ValueError naming the samples when the task says a batch has no valid depth pixel (0, NaN, inf):
        training on it gives a zero loss and zero gradients, a silent no-op."""
        counter = getattr(self.task, "valid_pixels", None)
        if counter is None or int(counter(batch).sum()) > 0:
            return
        size = self.config.batch_size
        indices = list(self.sampler)[self.step_in_epoch * size:(self.step_in_epoch + 1) * size]
        describe = getattr(self.samples.dataset, "describe", None)
        names = [describe(i) if describe else f"sample {i}" for i in indices[:4]]
        more = f" and {len(indices) - 4} more" if len(indices) > 4 else ""
        raise ValueError(f"no valid depth pixel (depth > 0 and finite) in the batch of epoch {self.epoch}, step "
                         f"{self.step}: samples {indices}: {'; '.join(names)}{more}; check these depth files")

    def _validate(self, epoch: int) -> dict:
        """``val_*`` metrics, or ``val_error`` when validation fails (printed and kept in failed_validations)."""
        try:
            return {f"val_{k}": v for k, v in self.evaluate(self.model).items()}
        except Exception as error:  # noqa: BLE001 - any failure: the epoch's checkpoint is already saved
            message = f"{type(error).__name__}: {error}"
            self.failed_validations.append((epoch, message))
            print(f"validation after epoch {epoch} failed: {message} (the epoch's checkpoint is saved; "
                  "training goes on)", file=sys.stderr, flush=True)
            return {"val_error": message}


def _lr_factor(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    """The learning rate's factor at optimiser step ``step`` (0-based): warm-up times schedule."""
    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if schedule == "constant":
            return ramp
        return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return factor


def _new_epoch_progress() -> dict:
    return {"sums": {}, "count": 0, "seconds": 0.0}


_KEEP_ON_RESUME = ("init",)  # metadata a resume keeps from the checkpoint: where the run started


