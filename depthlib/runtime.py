"""What a training process needs from its machine: device, precision, processes, RNG, progress (05, 11).

The Trainer (``depthlib.train``) builds on these: ``distributed_context`` reads torchrun's
environment; ``training_device`` picks this process's GPU; ``native_bf16`` tells a GPU that computes
in bf16 from one that only emulates it (AMP's dtype); ``to_channels_last`` converts 2D and 3D
convolutions' weights; ``rng_state`` / ``set_rng_state`` capture every generator for an exact
resume; ``progress_bar`` is the bar ``$DEPTHLIB_PROGRESS`` picks.
"""
from __future__ import annotations

__all__ = ["distributed_context", "training_device", "join_processes", "model_for_processes", "forward_model",
           "COMPILE_MODES", "native_bf16", "to_channels_last", "rng_state", "set_rng_state", "progress_bar",
           "PROGRESS_ENV", "main_thread"]

import io
import os
import random
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.std import tqdm as tqdm_std

# torch.compile's modes (``TrainConfig.compile``, ``--compile MODE``): "reduce-overhead" also replays
# the compiled graphs as CUDA graphs, one launch for a whole graph's kernels (for launch-bound
# steps); "max-autotune" also times kernel variants and picks the fastest
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def distributed_context():
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def rng_state():
    """Every random generator's state (torch CPU and CUDA, NumPy, Python) as CPU tensors and tuples,
    for a checkpoint (``torch.load(weights_only=True)`` reads it back); ``set_rng_state`` restores it."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    np_state = np.random.get_state()
    state["numpy"] = (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore ``rng_state()``; every state must be a CPU tensor (as ``torch.load(map_location="cpu")``
    gives them), since the generators' setters take CPU byte tensors whatever the device."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def join_processes(requested_device) -> tuple:
    """(rank, world_size, device) of this training process: its device (``training_device``) made
    current, and under torchrun the process group joined (NCCL on CUDA, gloo on the CPU)."""
    rank, world_size, local_rank = distributed_context()
    device = training_device(requested_device, local_rank, world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the default CUDA stream use this GPU, not GPU 0
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def model_for_processes(model: nn.Module, device, world_size: int, sync_bn: bool) -> nn.Module:
    """The model on ``device``; with ``sync_bn`` and several processes its BatchNorms become
    ``SyncBatchNorm`` (statistics of the global batch; CUDA only)."""
    if sync_bn and world_size > 1:
        if torch.device(device).type != "cuda":
            raise ValueError("TrainConfig.sync_bn: SyncBatchNorm needs CUDA (NCCL); this run is on the CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(device)


def forward_model(model: nn.Module, device, world_size: int, compile) -> nn.Module:
    """What the training step calls: the model, wrapped in DDP under several processes and in
    ``torch.compile`` when asked (the unwrapped model keeps the weights and the checkpoints).
    ``compile``: False, True (torch.compile's default mode) or one of ``COMPILE_MODES``."""
    wrapped = model
    if world_size > 1:
        device = torch.device(device)
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if not compile:
        return wrapped
    return torch.compile(wrapped, mode=None if compile is True else compile)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put every 4-D parameter (2D convolutions) in ``channels_last`` and every 5-D one (3D
    convolutions, MVSNet's cost regulariser) in ``channels_last_3d``, in place; returns ``model``.
    (``model.to(memory_format=torch.channels_last)`` refuses models with 3D convolutions.)"""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for param in model.parameters():
        if param.dim() in formats:
            param.data = param.data.contiguous(memory_format=formats[param.dim()])
    return model


def native_bf16(device=None) -> bool:
    """True where the CUDA GPU computes in bf16 natively (compute capability 8.0+: A100, H100, RTX 30xx).

    ``torch.cuda.is_bf16_supported()`` also says True on a T4 (7.5), which only emulates bf16, slowly:
    AMP there must be fp16 with a GradScaler. False without CUDA.
    """
    if not torch.cuda.is_available():
        return False
    device = torch.device("cuda" if device is None else device)
    if device.type != "cuda":
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # PyTorch < 2.3 has no including_emulation; it did not count emulation then
        return torch.cuda.get_device_capability(device)[0] >= 8 and torch.cuda.is_bf16_supported()


def training_device(requested: Optional[str], local_rank: int, world_size: int) -> torch.device:
    """The device a Trainer process runs on: ``requested``, where plain "cuda" (or None with CUDA
    available) means this process's own GPU, ``cuda:LOCAL_RANK``."""
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    return device


def main_thread() -> bool:
    """Whether this is the main thread (the only one that may install a signal handler)."""
    import threading
    return threading.current_thread() is threading.main_thread()


PROGRESS_ENV = "DEPTHLIB_PROGRESS"


def progress_bar(**kwargs):
    """The Trainer's tqdm bar; ``$DEPTHLIB_PROGRESS`` picks the kind.

    "auto" (default): ``tqdm.auto``, a widget in Jupyter and Colab, text in a terminal. "line": no
    bar while training, then the bar's final state as one line on stdout when it closes, for
    notebooks executed without a browser whose outputs are kept (``make book`` sets it: a widget
    shows nothing without a live kernel, and a text bar's carriage-return updates would each become
    a line of the page). "off": no bar. Anything else is an error.
    """
    kind = os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if kind not in ("auto", "line", "off"):
        raise ValueError(f"${PROGRESS_ENV}={kind!r}: expected 'auto', 'line' or 'off'")
    if kind == "off":
        kwargs["disable"] = True
    if kind == "line":
        return _FinalLineBar(**kwargs)
    from tqdm.auto import tqdm
    return tqdm(dynamic_ncols=True, **kwargs)


class _FinalLineBar(tqdm_std):
    """A tqdm bar that draws nothing while it runs and prints its final state once, on stdout."""

    def __init__(self, **kwargs):
        kwargs.setdefault("ascii", False)  # block characters: the page is UTF-8 whatever the sink says
        super().__init__(file=io.StringIO(), ncols=78, **kwargs)  # the book's 78 columns

    def close(self):
        closing = not self.disable  # tqdm.close disables the bar: a second close prints nothing
        super().close()
        if closing:
            print(self, flush=True)
