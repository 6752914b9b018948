"""Argument types of the command line (``python -m depthlib``): every option checked when it is parsed.

Every number is checked for its real range and finiteness; a file option is checked to exist, so a
typo is reported at once, before any data set is rendered or read. An option left out is None and
means "the default": 0 always means zero (or is an error), never "the default".

Example:
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--epochs", type=positive)
    >>> parser.parse_args(["--epochs", "3"]).epochs
    3
"""
from __future__ import annotations

__all__ = ["integer", "real", "count", "positive", "views", "planes", "positive_real", "non_negative_real", "fraction",
           "size", "size32", "local_file", "weights_file", "pretrained",
           "compile_mode", "first_given", "nyu_root", "dtu_root", "data_label", "mvs_sizes", "report_error"]

import argparse
import math
import sys
from pathlib import Path


def report_error(message: str) -> None:
    """A user error as every command reports it: one line on stderr, ``python -m depthlib: error: ...``."""
    print(f"python -m depthlib: error: {message}", file=sys.stderr)


def integer(low: int, multiple: int = 1):
    """argparse type: an integer >= ``low`` (and a multiple of ``multiple``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or value % multiple:
            rule = f"an integer >= {low}" + (f" and a multiple of {multiple}" if multiple > 1 else "")
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value
    parse.__name__ = "integer"  # argparse names the type in "invalid integer value"
    return parse


def real(low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """argparse type: a finite number in [low, high] (open at an end with ``low_open`` / ``high_open``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            ends = ("(" if low_open else "[") + f"{low:g}, {high:g}" + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(f"expected a finite number in {ends}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


count, positive, views = integer(0), integer(1), integer(2)
planes = integer(8, multiple=8)  # MVSNet's 3D U-Net halves D three times
positive_real, non_negative_real = real(0.0, low_open=True), real(0.0)
fraction = real(0.0, 1.0)  # a weight in [0, 1]


def size(text: str, multiple: int = 1):
    """argparse type: HEIGHTxWIDTH with positive sides (multiples of ``multiple``) -> (height, width)."""
    try:
        height, width = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HEIGHTxWIDTH (e.g. 480x640), got {text!r}") from None
    if height < 1 or width < 1 or height % multiple or width % multiple:
        rule = "positive" + (f" multiples of {multiple}" if multiple > 1 else "")
        raise argparse.ArgumentTypeError(f"size {text!r}: expected {rule} HEIGHT and WIDTH")
    return height, width


def size32(text: str):
    """``size`` with multiples of 32 (MVSNet: H/4 and W/4 divisible by 8)."""
    return size(text, multiple=32)


def local_file(text: str) -> str:
    """argparse type: a file that exists here."""
    if not Path(text).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def weights_file(text: str) -> str:
    """argparse type: a local checkpoint or weights file, or a file the book ships (a bare name or
    data/NAME, found by ``depthlib.data.download.shipped_file``)."""
    if Path(text).expanduser().is_file() or Path(text).parent in (Path("."), Path("data")):
        return text
    raise argparse.ArgumentTypeError(f"{text}: no such file")


def pretrained(text: str) -> str:
    """argparse type: "none", "imagenet" or a local weights file."""
    return text if text in ("none", "imagenet") else local_file(text)


def compile_mode(text: str) -> str:
    """argparse type: one of torch.compile's modes (``depthlib.runtime.COMPILE_MODES``)."""
    from depthlib.runtime import COMPILE_MODES  # here, not at the top: --help needs no PyTorch

    if text not in COMPILE_MODES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch.compile mode; expected one of "
                                         f"{', '.join(COMPILE_MODES)}")
    return text


def first_given(value, *defaults):
    """``value`` unless the option was left out (None), else the first default that is not None: 0 is a
    value, never "the default"."""
    return next((v for v in (value, *defaults) if v is not None), None)


def nyu_root(spec: str, profile, n_train=None, n_test=None):
    """'synthetic' (the cached rendered set) or 'nyu:PATH' (a folder with data/ or nyu_data.zip)."""
    from depthlib.data import nyu_synthetic

    if spec == "synthetic":
        return nyu_synthetic(profile, n_train=n_train, n_test=n_test)
    if spec.startswith("nyu:"):
        return spec[4:]
    raise SystemExit(f"--data {spec!r}: expected 'synthetic' or 'nyu:PATH'")


def dtu_root(spec: str, profile, n_scans=None, size=None, full: bool = False):
    """'synthetic' (the cached rendered DTU-like set, at ``size`` if given, else the profile's; with
    ``Depths_raw/`` when ``full``) or 'dtu:PATH' (MVSNet's DTU training layout, at its own size)."""
    from depthlib.data import dtu_synthetic, dtu_synthetic_full

    if spec == "synthetic":
        return (dtu_synthetic_full if full else dtu_synthetic)(profile, n_scans=n_scans, size=size)
    if spec.startswith("dtu:"):
        if size is not None:
            raise SystemExit(f"--size {size[0]}x{size[1]} with --data {spec}: a DTU folder's images are used at "
                             "their own size; --size sets the size of --data synthetic")
        return spec[4:]
    raise SystemExit(f"--data {spec!r}: expected 'synthetic' or 'dtu:PATH'")


def data_label(spec: str) -> str:
    """What a checkpoint records about its data: 'synthetic', or the kind and folder name (no local path)."""
    kind, _, path = spec.partition(":")
    return f"{kind}:{Path(path).name}" if path else spec


def mvs_sizes(args, profile, metadata=None):
    """Views and planes: the options, else the checkpoint's metadata, else the profile's."""
    metadata = metadata or {}
    n_views = first_given(args.n_views, metadata.get("n_views"), profile.n_views)
    n_depths = first_given(args.n_depths, metadata.get("n_depths"), profile.n_depths)
    return n_views, n_depths
