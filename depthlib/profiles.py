"""The ``cpu`` / ``gpu`` run profiles that size every notebook and CLI run (all chapters)."""
from __future__ import annotations

__all__ = ["Profile", "PROFILES", "resolve_profile_name", "get_profile", "strict_fp32"]

import contextlib
import dataclasses
import os
import warnings

import torch

_ENV_VAR = "DEPTHLIB_PROFILE"
_warned_no_cuda = False  # the "gpu profile without CUDA" warning is given once per process


@dataclasses.dataclass(frozen=True)
class Profile:
    """Run sizes for one profile; sizes are (H, W) pixels, counts are frames / scans / views.

    ``densedepth_encoder``: DenseDepth's encoder ("small" keeps a CPU step near 0.25 s);
    ``nyu_*``: monocular set (model input size, rendered size, frame counts); ``mvs_*``: multi-view
    set (image size, views per scan, scans, lights); ``n_views`` / ``n_depths``: MVSNet views and
    depth planes; then training loop sizes. ``device`` is "cuda" or "cpu".
    """

    name: str
    device: str
    densedepth_encoder: str
    nyu_size: tuple[int, int]
    nyu_render_size: tuple[int, int]
    nyu_train: int
    nyu_test: int
    mvs_size: tuple[int, int]
    mvs_views_per_scan: int
    mvs_train_scans: int
    mvs_test_scans: int
    mvs_lights: int
    n_views: int
    n_depths: int
    batch_size: int
    epochs: int
    num_workers: int


PROFILES = {
    "cpu": Profile(name="cpu", device="cpu", densedepth_encoder="small",
                   nyu_size=(96, 128), nyu_render_size=(192, 256),
                   nyu_train=256, nyu_test=64, mvs_size=(128, 160), mvs_views_per_scan=12,
                   mvs_train_scans=8, mvs_test_scans=2, mvs_lights=3, n_views=3, n_depths=32,
                   batch_size=4, epochs=2, num_workers=0),  # about a minute per chapter on 2 cores
    # At most 10 minutes per chapter on Colab's free T4, renders included (about 90 s on a
    # datacentre GPU). Sizes are half the papers' (NYU 480x640, DTU 512x640 with 192 planes), and
    # the sets small enough that Colab's 2 CPU threads render them in a minute or two (measured
    # on a 2-core CPU: 40 s for the NYU-like set, 30 frames/s at 240x320; 54 s for the DTU-like
    # one); 6 epochs are 750 DenseDepth and 864 MVSNet steps (an
    # epoch of the DTU-like set is 1,152 samples: 24 scans x 16 views x 3 lights), so chapter 08
    # trains 2 of them on this profile (288 steps) to stay within a T4's 10 minutes.
    # Paper-scale runs use the real data through the CLI (chapter 11).
    "gpu": Profile(name="gpu", device="cuda", densedepth_encoder="densenet169",
                   nyu_size=(240, 320), nyu_render_size=(240, 320),
                   nyu_train=1000, nyu_test=200, mvs_size=(256, 320), mvs_views_per_scan=16,
                   mvs_train_scans=24, mvs_test_scans=4, mvs_lights=3, n_views=3, n_depths=96,
                   batch_size=8, epochs=6, num_workers=2),
}


def resolve_profile_name(name: str = "auto") -> str:
    """Turn "auto" / "cpu" / "gpu" into a profile name.

    "cpu" and "gpu" are returned as is. "auto" uses $DEPTHLIB_PROFILE when it is set (to "cpu",
    "gpu" or "auto", any case), else "gpu" if CUDA is available, else "cpu".

    Example:
        >>> resolve_profile_name("cpu")
        'cpu'
    """
    choices = ["auto", *PROFILES]
    if name not in choices:
        raise ValueError(f"unknown profile {name!r}, expected one of {choices}")
    if name != "auto":
        return name
    from_env = os.environ.get(_ENV_VAR, "").strip().lower()
    if from_env and from_env not in choices:
        raise ValueError(f"${_ENV_VAR}={os.environ[_ENV_VAR]!r} is not a profile, expected one of {choices}")
    if from_env in PROFILES:
        return from_env
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str = "auto", **overrides) -> Profile:
    """The resolved profile, with ``overrides`` applied (e.g. ``epochs=1``).

    ``device`` is "cuda" when CUDA is available, else "cpu"; the "gpu" profile without CUDA
    warns once and runs on the CPU. An unknown override field raises ValueError.

    Example:
        >>> get_profile("cpu", epochs=1).epochs
        1
    """
    global _warned_no_cuda
    resolved = resolve_profile_name(name)
    fields = [field.name for field in dataclasses.fields(Profile)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown profile field(s) {unknown}, expected some of {fields}")
    cuda = torch.cuda.is_available()
    if resolved == "gpu" and not cuda and not _warned_no_cuda:
        warnings.warn("profile 'gpu' asked for but CUDA is not available: running on the CPU "
                      "with GPU-sized runs (slow)", stacklevel=2)
        _warned_no_cuda = True
    device = "cuda" if cuda else "cpu"
    return dataclasses.replace(PROFILES[resolved], **{"device": device, **overrides})


_TF32_API_WARNING = "Please use the new API settings to control TF32"  # PyTorch 2.9-2.11, at allow_tf32


@contextlib.contextmanager
def strict_fp32():
    """Within this block CUDA computes float32 convolutions and matrix products in full float32.

    By default PyTorch lets cuDNN run float32 convolutions in TF32 on Ampere and newer GPUs: tensor
    cores with float32's range but a 10-bit mantissa (about 3 significant digits), fast for training
    but nowhere near float32 round-off. Chapters compare a from-scratch layer with the library's
    inside this block, so "equal" means equal to float32 round-off on every device. No effect on
    the CPU. The previous settings are restored on exit.

    It uses the ``allow_tf32`` flags, which every PyTorch 2.x has. PyTorch 2.9 added the finer
    ``fp32_precision`` settings and warns, once per process, at a use of the flags ("Please use the
    new API settings to control TF32 behavior"), a warning a chapter would show; that one warning is
    silenced here. The newer settings are not used instead: once one of them is set to "ieee",
    reading ``torch.backends.cudnn.allow_tf32`` raises a RuntimeError (PyTorch 2.14), and
    ``torch.compile`` reads it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TF32_API_WARNING, category=UserWarning)
        conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TF32_API_WARNING, category=UserWarning)
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul
