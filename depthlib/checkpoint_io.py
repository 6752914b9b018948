"""Safe checkpoint files and run folders: durable writes, loads that name the file, run checks (chapter 05).

Nothing here knows a model. ``save_atomic`` writes through ``NAME.tmp``, fsyncs it, renames it into
place and fsyncs the folder, so a crash leaves the old file or the complete new one;
``read_torch_file`` loads with ``weights_only=True`` and turns every failure into one line naming
the file; ``check_run_folder`` keeps a new run from overwriting an old one; ``run_differences``
compares what a checkpoint was trained with against the current run; ``trim_log`` drops log
records that a resumed run will write again. ``load_weights`` / ``export_weights`` read and pack a
checkpoint's model weights, and ``load_model`` rebuilds any model from them with a builder the model
module passes in (the model modules load through here; this module imports none of them).
"""
from __future__ import annotations

__all__ = ["save_atomic", "read_torch_file", "load_model_state", "load_weights", "load_model", "export_weights",
           "check_export_target", "check_run_folder",
           "clean_run_folder", "run_differences", "trim_log", "has_epoch_record", "read_log", "read_training_state", "ARCHITECTURE_KEYS"]

import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import torch

ARCHITECTURE_KEYS = ("model", "encoder", "refine")  # metadata no flag can change: the weights would not fit


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; NTFS journals renames
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def save_atomic(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` through ``path.tmp``: written, fsync'ed, renamed, folder fsync'ed.

    A kill or a power loss at any moment leaves either the previous file or the complete new one
    (and at worst a stale ``.tmp``, which ``clean_run_folder`` removes). Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)  # a path: torch's own file writer
        handle = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except BaseException:  # a failed write (disk full, an error, Ctrl-C) leaves no half file behind
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    return path


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


def read_torch_file(path, map_location="cpu", mmap: bool = False):
    """``torch.load(path, weights_only=True)``; a missing, truncated or foreign file is one line naming it.

    FileNotFoundError when absent; ValueError when unreadable (a cut-off copy, another format) or
    when it holds objects a weights-only load refuses (no pickled code ever runs). ``mmap=True``
    reads tensors lazily: cheap for looking at a large checkpoint's metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint or weights file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:  # another file, or pickled objects: never run them
        _, found, reason = str(error).partition("WeightsUnpickler error:")
        reason = " ".join(reason.split()).split(". ")[0][:200] if found else _first_line(error)
        raise ValueError(f"{path}: not a depthlib checkpoint or weights file; a weights-only load refuses it "
                         f"({reason})") from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"{path}: cannot read it as a PyTorch checkpoint ({_first_line(error)}); a truncated "
                         "copy or download, or another kind of file?") from error


def load_model_state(model: torch.nn.Module, weights: dict, source) -> None:
    """``model.load_state_dict(weights)``, with a mismatch reported in one line: counts and a few keys."""
    own = model.state_dict()
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    shapes = [key for key in own if key in weights and tuple(own[key].shape) != tuple(weights[key].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})" for keys, what in
                 ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "shape mismatches")) if keys]
        raise ValueError(f"{source}: its weights do not fit this {type(model).__name__}: {'; '.join(parts)}; "
                         "saved from another model, or with other options?")
    model.load_state_dict(weights)


def check_export_target(out, checkpoint) -> None:
    """Weights exported from ``checkpoint`` may replace an earlier export at ``out``; never the checkpoint
    itself (ValueError), another training checkpoint or any other file (FileExistsError)."""
    out, checkpoint = Path(out), Path(checkpoint)
    if checkpoint.exists() and out.exists() and out.samefile(checkpoint):
        raise ValueError(f"export: --out {out} is the checkpoint itself; fp16 weights over it would end the run "
                         "(no optimiser state to resume from): choose another --out")
    if not out.exists():
        return
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder, expected the file to export to")
    try:
        state = read_torch_file(out, mmap=True)
    except ValueError:
        state = None
    if not isinstance(state, dict) or "model" not in state or "optimizer" in state:
        what = "a training checkpoint" if isinstance(state, dict) and "optimizer" in state else \
            "not an exported weights file"
        raise FileExistsError(f"{out} exists and is {what}; refusing to replace it: choose another --out "
                              "(or delete it yourself)")


def check_run_folder(out_dir, resume: bool, overwrite: bool, flags=("--resume", "--overwrite")) -> None:
    """FileExistsError when a new run (not ``resume``) would write into a folder that holds a run
    (``checkpoint.pt`` or ``log.jsonl``) without ``overwrite``; ValueError for both flags at once.
    ``flags`` are the two ways on, as the caller spells them."""
    if resume and overwrite:
        raise ValueError(f"{flags[0]} and {flags[1]} together: continue the run in {out_dir} or start it again, "
                         "not both")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: is a file, expected a run folder")
    found = [name for name in ("checkpoint.pt", "log.jsonl") if (out_dir / name).is_file()]
    if found and not resume and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a training run ({', '.join(found)}): continue it with "
                              f"{flags[0]}, or delete it and start again with {flags[1]}")


def clean_run_folder(out_dir, everything: bool = False) -> None:
    """Remove a ``checkpoint.pt.tmp`` left by a killed save (said on stderr); with ``everything`` also the
    run's ``checkpoint.pt`` and ``log.jsonl`` (a run started again)."""
    names = ("checkpoint.pt.tmp", "checkpoint.pt", "log.jsonl") if everything else ("checkpoint.pt.tmp",)
    for name in names:
        path = Path(out_dir) / name
        if path.is_file():
            path.unlink()
            if name.endswith(".tmp"):
                print(f"removed {path}, an unfinished checkpoint left by an interrupted save", file=sys.stderr)


def _difference_text(changes: dict, side: int) -> str:
    return ", ".join(f"{key}={values[side]!r}" for key, values in changes.items())


def run_differences(stored: dict, current: dict, source, accept: bool = False, ignore=("init",)) -> dict:
    """{key: (stored, current)} for the keys both dicts hold (minus ``ignore``) whose values differ.

    A difference in ``ARCHITECTURE_KEYS`` is always a ValueError (the weights would not fit); any
    other is a ValueError naming every difference in one line unless ``accept``. ``source`` names
    the stored file in the message. Tuples and lists compare equal (JSON-like metadata).
    """
    def normal(value):
        return list(value) if isinstance(value, tuple) else value

    keys = [key for key in stored if key in current and key not in ignore]
    changes = {key: (stored[key], current[key]) for key in keys if normal(stored[key]) != normal(current[key])}
    fixed = {key: value for key, value in changes.items() if key in ARCHITECTURE_KEYS}
    if fixed:
        raise ValueError(f"{source} holds {_difference_text(fixed, 0)}; this run builds {_difference_text(fixed, 1)}: "
                         "the weights do not fit (pass matching options)")
    if changes and not accept:
        raise ValueError(f"{source} was trained with {_difference_text(changes, 0)}; this run has "
                         f"{_difference_text(changes, 1)}: pass the same options, or accept the change "
                         "(--accept-changes, accept_changes=True)")
    return changes


def trim_log(path, step: int) -> int:
    """Drop the records of a ``log.jsonl`` logged after ``step`` (a killed run logs steps its resumed run
    trains again) and any line cut off by a kill, so each step is logged once. Returns lines dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line, record in _log_lines(lines) if record.get("step", 0) <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
    return len(lines) - len(kept)


def _log_lines(lines):
    """(line, record) for each line of a log that holds a JSON object; a line cut off by a kill is skipped."""
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield line, record


def has_epoch_record(path, epoch: int, step: int) -> bool:
    """Whether the ``log.jsonl`` at ``path`` holds the record of ``epoch`` ending at ``step`` (a resumed
    run logs an epoch record its stopped run saved but may not have logged)."""
    path = Path(path)
    if not path.is_file():
        return False
    return any("seconds" in record and (record.get("epoch"), record.get("step")) == (epoch, step)
               for _, record in _log_lines(path.read_text(encoding="utf-8").splitlines()))


def load_weights(path, map_location="cpu"):
    """(model state dict, metadata) from a training checkpoint or an exported weights file.

    A missing, truncated or foreign file is an error naming the path, in one line."""
    path = Path(path)
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{path}: expected a depthlib checkpoint or weights file (a dict with 'model')")
    return state["model"], state.get("metadata", {})


def export_weights(checkpoint, out, half: bool = True) -> Path:
    """Write the model weights (fp16 with ``half``) and metadata of a checkpoint: a small file to ship.

    Written through a temporary file and renamed; ``out`` may replace an earlier export, never the
    checkpoint itself, another training checkpoint or any other file (ValueError / FileExistsError)."""
    checkpoint, out = Path(checkpoint), Path(out)
    check_export_target(out, checkpoint)
    weights, metadata = load_weights(checkpoint)
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    return save_atomic({"model": weights, "metadata": metadata}, out)


def load_model(path, kind: str, build, map_location="cpu", default_kind=None):
    """A ``kind`` model rebuilt from a training checkpoint or exported weights, in eval mode.

    ``build(metadata)`` returns the untrained network the file's metadata describes; the weights
    (fp16 in exported files) load as fp32 with every key checked, and the metadata stays on
    ``model.metadata``. ``path`` may name a file shipped in the repository's ``data/``. A file of
    another model is a ValueError naming both (``default_kind``: what a file without a ``model``
    entry holds, for files written before the entry existed)."""
    from depthlib.data.download import shipped_file

    weights, metadata = load_weights(shipped_file(path), map_location)
    found = metadata.get("model", default_kind)
    if found != kind:
        raise ValueError(f"{path} holds a {found!r} model, expected {kind!r}")
    model = build(metadata)
    load_model_state(model, {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, path)
    model.metadata = metadata
    return model.eval()


def read_log(path) -> list:
    """The records of a ``log.jsonl`` (a folder or the file itself); a bad line names the file and line."""
    path = Path(path)
    path = path / "log.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON record ({error.msg}); a line cut off by a kill? "
                                 "Resuming the run removes it") from None
    return records


TRAINING_STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "step", "step_in_epoch", "rng")


def read_training_state(path) -> dict:
    """A Trainer checkpoint's full state (``Trainer.state_dict()``), loaded on the CPU: the RNG states
    must stay CPU tensors, and the optimiser moves its state to the parameters' device itself.
    FileNotFoundError / ValueError name the file when it is missing or is not a training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    state = read_torch_file(path)
    missing = set(TRAINING_STATE_KEYS) - set(state if isinstance(state, dict) else {})
    if missing:
        raise ValueError(f"{path}: not a depthlib training checkpoint (missing {sorted(missing)})")
    return state
