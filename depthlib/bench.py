"""Benchmarks that print tables (speed targets live here, never in unit tests).

Usage: ``python -m depthlib.bench`` (one table for both models on the device at hand: step time,
throughput and peak memory, fp32 eager vs the fast path), ``python -m depthlib.bench render [--frames N]``
(the renderer's frames/s),
``python -m depthlib.bench densedepth [--compile [MODE]]`` (training step time, images/s and peak
memory, fp32 eager vs the fast path: AMP on CUDA + channels_last [+ torch.compile, in its default
mode or the one named, e.g. reduce-overhead for CUDA graphs]) and
``python -m depthlib.bench mvsnet`` (training and inference step time and peak memory, fp32 vs AMP) and
``python -m depthlib.bench casmvsnet`` (the cascade against MVSNet at 512x640, see ``depthlib.bench_cascade``).
Each setting runs in a fresh process, so its peak memory is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from depthlib.bench_kernels import kernel_times
from depthlib.cli_args import compile_mode

__all__ = ["bench_render", "bench_densedepth", "densedepth_step_stats", "bench_mvsnet", "mvsnet_step_stats",
           "mvsnet_batch", "bench_models", "bench_variants", "kernel_breakdown", "device_label",
           "format_table", "main"]


def format_table(rows: list[dict]) -> str:
    """Render a list of dicts (same keys) as a Markdown table."""
    keys = list(rows[0])
    cells = [[str(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda items: "| " + " | ".join(x.ljust(w) for x, w in zip(items, widths)) + " |"  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths]), *map(line, cells)])


def _rate(fn, n_frames):
    start = time.perf_counter()
    fn()
    return n_frames / (time.perf_counter() - start)


def bench_render(frames: int = 64, sizes=((128, 160), (480, 640)), workers=(1, 2)) -> list[dict]:
    """Frames per second of the synthetic renderer (rooms with shadows; DTU-like scans, 1 light per image)."""
    from depthlib.data.scenes import object_scan, room_frames

    list(room_frames(1, 32, 40))  # warm-up: imports, caches
    rows = []
    for height, width in sizes:
        n = frames if height * width <= 128 * 160 else max(4, frames // 8)
        for w in workers:
            fps = _rate(lambda: list(room_frames(n, height, width, seed=100, workers=w)), n)
            rows.append({"scene": "room (NYU-like)", "size": f"{height}x{width}", "workers": w,
                         "frames": n, "frames/s": f"{fps:.1f}"})
        n_views = 12 if height * width <= 128 * 160 else 4
        fps = _rate(lambda: object_scan(0, n_views=n_views, height=height, width=width, n_lights=1), n_views)
        rows.append({"scene": "objects (DTU-like)", "size": f"{height}x{width}", "workers": 1,
                     "frames": n_views, "frames/s": f"{fps:.1f}"})
    return rows


def densedepth_step_stats(encoder="densenet169", height=480, width=640, batch=8, fast=False, compile=False,
                          steps=5, warmup=2, device=None, amp=None, channels_last=None,
                          cudnn_benchmark=False) -> dict:
    """Time DenseDepth training steps (forward, backward, Adam) through the Trainer's own step.

    ``fast``: AMP (bf16 / fp16, CUDA only) + channels_last; ``amp`` / ``channels_last`` set either
    alone; ``compile`` adds torch.compile (True: its default mode; or a mode's name, as
    ``TrainConfig.compile``); ``cudnn_benchmark`` lets cuDNN time its algorithms.
    Returns seconds per step, images/s and peak memory in MiB (CUDA allocator, else process RSS).
    """
    import torch
    from torch.utils.data import TensorDataset

    from depthlib.models import DenseDepth
    from depthlib.train import DenseDepthTask, TrainConfig, Trainer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    images = torch.rand(batch, 3, height, width)
    depth = 1 + 9 * torch.rand(batch, 1, height, width)
    amp = fast if amp is None else amp
    channels_last = fast if channels_last is None else channels_last
    config = TrainConfig(batch_size=batch, amp="auto" if amp else "off", channels_last=channels_last,
                         compile=compile, cudnn_benchmark=cudnn_benchmark, progress=False, device=device)
    trainer = Trainer(DenseDepth(encoder), TensorDataset(images), DenseDepthTask(), "unused", config)
    batch_dict = trainer.to_device({"image": images, "depth": depth, "mask": depth > 0})
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        trainer.train_step(batch_dict)
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch_dict)
    sync()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"seconds": seconds, "images/s": batch / seconds, "peak MiB": peak, "amp": str(trainer.amp_dtype)}


def bench_densedepth(compile=False, encoders=None, steps=5) -> list[dict]:
    """fp32 eager vs the fast path: 480x640 batch 8 on CUDA, the cpu profile's size (96x128, batch 4) on CPU."""
    import torch

    cuda = torch.cuda.is_available()
    height, width, batch = (480, 640, 8) if cuda else (96, 128, 4)
    encoders = encoders or (["densenet169"] if cuda else ["densenet169", "small"])
    modes = [("fp32 eager", False, False), ("AMP + channels_last" if cuda else "channels_last", True, False)]
    if compile:
        modes.append((_compiled("fast + compile", compile), True, compile))
    rows = []
    for encoder in encoders:
        base = None
        for name, fast, compiled in modes:
            args = json.dumps(dict(encoder=encoder, height=height, width=width, batch=batch, fast=fast,
                                   compile=compiled, steps=steps))
            out = subprocess.run([sys.executable, "-m", "depthlib.bench", "_densedepth_one", args],
                                 capture_output=True, text=True, check=True).stdout
            stats = json.loads(out.strip().splitlines()[-1])
            base = base or stats["images/s"]
            rows.append({"model": f"DenseDepth-{encoder}", "input": f"{height}x{width} x{batch}", "mode": name,
                         "step (s)": f"{stats['seconds']:.3f}", "images/s": f"{stats['images/s']:.1f}",
                         "speed-up": f"{stats['images/s'] / base:.2f}x", "peak MiB": f"{stats['peak MiB']:.0f}"})
    return rows


def mvsnet_step_stats(height=128, width=160, depths=32, views=3, batch=2, amp=False, train=True, steps=5,
                      warmup=2, device=None, channels_last=False, cudnn_benchmark=False, compile=False) -> dict:
    """Time MVSNet (with refinement) steps: training (forward, backward, Adam, through the Trainer's
    own step) or inference (eval mode, no_grad, in-place cost volume). ``amp``: autocast (bf16 /
    fp16, CUDA only); ``channels_last``: the Trainer's (channels_last_3d for the 3D U-Net);
    ``cudnn_benchmark``: cuDNN times its algorithms; ``compile``: torch.compile (True or a mode's
    name, as ``TrainConfig.compile``), inference included. Returns seconds per step, samples/s and
    peak memory in MiB (CUDA allocator, else process RSS)."""
    import torch
    from torch.utils.data import TensorDataset

    from depthlib.models import MVSNet
    from depthlib.train import MVSNetTask, TrainConfig, Trainer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch_dict = mvsnet_batch(height, width, depths, views, batch)
    config = TrainConfig(batch_size=batch, amp="auto" if amp else "off", channels_last=channels_last,
                         cudnn_benchmark=cudnn_benchmark, compile=compile, progress=False, device=device)
    trainer = Trainer(MVSNet(), TensorDataset(batch_dict["imgs"]), MVSNetTask(), "unused", config)
    batch_dict = trainer.to_device(batch_dict)
    if train:
        step = lambda: trainer.train_step(batch_dict)  # noqa: E731
    else:
        trainer.model.eval()

        def step():
            with torch.no_grad(), torch.autocast(trainer.device.type, dtype=trainer.amp_dtype or torch.float32,
                                                 enabled=trainer.amp_dtype is not None):
                trainer.forward_model(batch_dict["imgs"], batch_dict["proj_matrices"], batch_dict["depth_values"])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"seconds": seconds, "samples/s": batch / seconds, "peak MiB": peak, "amp": str(trainer.amp_dtype)}


def mvsnet_batch(height, width, depths, views, batch) -> dict:
    """A synthetic MVSNet training batch (seeded): a forward-facing rig in which view v is shifted
    sideways by v * 5 % of the depth, random images, depth in [0.5, 1.5]."""
    import torch

    torch.manual_seed(0)
    K = torch.tensor([[width / 4.0, 0, width / 8 - 0.5], [0, width / 4.0, height / 8 - 0.5], [0, 0, 1]])
    proj = torch.eye(4).repeat(batch, views, 1, 1)
    for v in range(views):
        proj[:, v, :3, :4] = K @ torch.cat([torch.eye(3), torch.tensor([[0.05 * v], [0.0], [0.0]])], dim=1)
    return {"imgs": torch.rand(batch, views, 3, height, width), "proj_matrices": proj,
            "depth_values": torch.linspace(0.5, 1.5, depths).repeat(batch, 1),
            "depth": 0.5 + torch.rand(batch, 1, height // 4, width // 4),
            "mask": torch.ones(batch, 1, height // 4, width // 4, dtype=torch.bool),
            "depth_interval": torch.full((batch,), 1.0 / (depths - 1))}


def bench_mvsnet(steps=5) -> list[dict]:
    """fp32 vs AMP, training and inference: 512x640 D=192 3 views on CUDA (batch 1), the cpu profile's
    128x160 D=32 3 views (batch 2) on CPU (where AMP is off, so only fp32 is timed)."""
    import torch

    cuda = torch.cuda.is_available()
    height, width, depths, batch = (512, 640, 192, 1) if cuda else (128, 160, 32, 2)
    modes = [("fp32", False)] + ([("AMP", True)] if cuda else [])
    rows = []
    for phase in ("train", "infer"):
        base = None
        for name, amp in modes:
            args = json.dumps(dict(height=height, width=width, depths=depths, views=3, batch=batch, amp=amp,
                                   train=phase == "train", steps=steps))
            out = subprocess.run([sys.executable, "-m", "depthlib.bench", "_mvsnet_one", args],
                                 capture_output=True, text=True, check=True).stdout
            stats = json.loads(out.strip().splitlines()[-1])
            base = base or stats["samples/s"]
            rows.append({"model": "MVSNet", "input": f"{height}x{width} D={depths} V=3 x{batch}",
                         "mode": f"{phase} {name}", "step (s)": f"{stats['seconds']:.3f}",
                         "samples/s": f"{stats['samples/s']:.2f}", "speed-up": f"{stats['samples/s'] / base:.2f}x",
                         "peak MiB": f"{stats['peak MiB']:.0f}"})
    return rows


def bench_models(compile=False, steps=5, encoders=None, casmvsnet_size=(512, 640),
                 casmvsnet_train_size=(128, 160)) -> list[dict]:
    """One table for both models: DenseDepth training and MVSNet training / inference, fp32 eager vs
    the fast path (AMP + channels_last for DenseDepth, AMP for MVSNet; on CPU, where AMP is off,
    DenseDepth's fast path is channels_last alone and MVSNet has fp32 rows only). Columns: model,
    input, mode, step (s), samples/s, speed-up over fp32, peak MiB. Then the cascade's rows
    (``bench_cascade.bench_casmvsnet``: MVSNet D=192 and CasMVSNet inference at ``casmvsnet_size``,
    speed-up relative to that MVSNet, and the cascade's training step at ``casmvsnet_train_size``)."""
    from depthlib.bench_cascade import bench_casmvsnet

    keys = ["model", "input", "mode", "step (s)", "samples/s", "speed-up", "peak MiB"]
    rows = []
    for row in bench_densedepth(compile=compile, encoders=encoders, steps=steps):
        row = dict(row, mode=f"train {row['mode']}")
        row["samples/s"] = row.pop("images/s")
        rows.append({k: row[k] for k in keys})
    return rows + bench_mvsnet(steps=steps) + bench_casmvsnet(steps=min(steps, 3), size=casmvsnet_size,
                                                                   train_size=casmvsnet_train_size, columns=keys)


def _compiled(name: str, compile) -> str:
    """A row's name with the compile mode when one is named: "fast + compile (reduce-overhead)"."""
    return name if compile is True else f"{name} ({compile})"


def _one(kind: str, settings: dict) -> dict:
    """One benchmark setting in a fresh process (its own peak memory); ``{"error": ...}`` if it failed."""
    out = subprocess.run([sys.executable, "-m", "depthlib.bench", kind, json.dumps(settings)],
                         capture_output=True, text=True)
    if out.returncode:
        lines = out.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1][:100]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_variants(compile=False, steps=5, groups=("densedepth", "mvsnet-train", "mvsnet-infer")) -> list[dict]:
    """Each switch of the fast path alone and together (GPU: the papers' sizes; CPU: the cpu
    profile's): AMP, channels_last, cudnn.benchmark [, torch.compile], for DenseDepth training and
    MVSNet training / inference; speed-up over each group's first row. What the default table's
    fast path is made of, measured rather than guessed. ``compile``: False, True (torch.compile's
    default mode) or a mode's name; it adds DenseDepth's fast path compiled, and MVSNet compiled in
    fp32 and in AMP (compilation fuses the float32 warp and variance volume's element-wise work)."""
    import torch

    cuda = torch.cuda.is_available()
    dd = dict(encoder="densenet169", height=480, width=640, batch=8) if cuda else \
        dict(encoder="small", height=96, width=128, batch=4)
    mvs = dict(height=512, width=640, depths=192, views=3, batch=1) if cuda else \
        dict(height=128, width=160, depths=32, views=3, batch=2)
    dd_modes = [("fp32", {}), ("fp32 + benchmark", {"cudnn_benchmark": True}),
                ("AMP", {"amp": True, "channels_last": False}), ("AMP + channels_last", {"fast": True}),
                ("AMP + channels_last + benchmark", {"fast": True, "cudnn_benchmark": True})]
    mvs_modes = [("fp32", {}), ("fp32 + benchmark", {"cudnn_benchmark": True}), ("AMP", {"amp": True}),
                 ("AMP + benchmark", {"amp": True, "cudnn_benchmark": True}),
                 ("AMP + channels_last + benchmark", {"amp": True, "channels_last": True, "cudnn_benchmark": True})]
    if compile:
        dd_modes.append((_compiled("AMP + channels_last + compile", compile), {"fast": True, "compile": compile}))
        mvs_modes += [(_compiled("fp32 + compile", compile), {"compile": compile}),
                      (_compiled("AMP + compile", compile), {"amp": True, "compile": compile})]
    known = {"densedepth": (f"DenseDepth-{dd['encoder']}", f"{dd['height']}x{dd['width']} x{dd['batch']}", "train",
                            "_densedepth_one", dd, dd_modes, "images/s")}
    for phase in ("train", "infer"):
        known[f"mvsnet-{phase}"] = ("MVSNet", f"{mvs['height']}x{mvs['width']} D={mvs['depths']} x{mvs['batch']}",
                                    phase, "_mvsnet_one", dict(mvs, train=phase == "train"), mvs_modes, "samples/s")
    unknown = sorted(set(groups) - set(known))
    if unknown:
        raise ValueError(f"bench_variants: unknown group(s) {unknown}, expected some of {sorted(known)}")
    rows = []
    for model, size, phase, kind, base_settings, modes, rate in (known[group] for group in groups):
        base = None
        for name, extra in modes:
            stats = _one(kind, dict(base_settings, steps=steps, **extra))
            row = {"model": model, "input": size, "mode": f"{phase} {name}"}
            if "error" in stats:
                rows.append(dict(row, **{"step (s)": "failed", "samples/s": stats["error"], "speed-up": "",
                                         "peak MiB": ""}))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                continue
            base = base or stats[rate]
            rows.append(dict(row, **{"step (s)": f"{stats['seconds']:.4f}", "samples/s": f"{stats[rate]:.2f}",
                                     "speed-up": f"{stats[rate] / base:.2f}x", "peak MiB": f"{stats['peak MiB']:.0f}"}))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # a stopped run keeps its rows
    return rows


def kernel_breakdown(model: str = "densedepth", fast: bool = True, steps: int = 3, warmup: int = 2) -> list[dict]:
    """Where a training step's GPU time goes, by kernel category (``bench_kernels.kernel_times``; CUDA only).

    ``model``: "densedepth" (DenseNet-169, 480x640 batch 8) or "mvsnet" (512x640, D=192, batch 1);
    ``fast``: the fast path (AMP [+ channels_last for DenseDepth]) instead of fp32. Rows: category,
    GPU milliseconds per step, share of the step's kernel time, number of kernel launches per step.
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("kernel_breakdown: needs a CUDA GPU (it times CUDA kernels)")
    if model not in ("densedepth", "mvsnet"):
        raise ValueError(f"kernel_breakdown: model {model!r}, expected 'densedepth' or 'mvsnet'")
    return kernel_times(_profiled_step(model, fast), steps=steps, warmup=warmup)


def _profiled_step(model: str, fast: bool):
    """A closure running one training step of ``model`` through the Trainer (for kernel_breakdown)."""
    import torch
    from torch.utils.data import TensorDataset

    from depthlib.models import DenseDepth, MVSNet
    from depthlib.train import DenseDepthTask, MVSNetTask, TrainConfig, Trainer

    torch.manual_seed(0)
    if model == "densedepth":
        images, depth = torch.rand(8, 3, 480, 640), 1 + 9 * torch.rand(8, 1, 480, 640)
        batch = {"image": images, "depth": depth, "mask": depth > 0}
        net, task = DenseDepth("densenet169"), DenseDepthTask()
    else:
        settings = dict(height=512, width=640, depths=192, views=3, batch=1)
        batch, net, task = mvsnet_batch(**settings), MVSNet(), MVSNetTask()
    config = TrainConfig(batch_size=1, amp="auto" if fast else "off", channels_last=fast and model == "densedepth",
                         progress=False, device="cuda")
    trainer = Trainer(net, TensorDataset(torch.zeros(1)), task, "unused", config)
    batch = trainer.to_device(batch)
    return lambda: trainer.train_step(batch)


def device_label() -> str:
    """The device the benchmarks run on, e.g. ``NVIDIA H100 80GB HBM3, torch 2.14.1`` or ``CPU x86_64, 2 cores``."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return f"{name}, torch {torch.__version__}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m depthlib.bench", description=__doc__.splitlines()[0])
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_densedepth_one"]:  # one setting, in its own process (see bench_densedepth)
        print(json.dumps(densedepth_step_stats(**json.loads(argv[1]))))
        return
    if argv[:1] == ["_mvsnet_one"]:
        print(json.dumps(mvsnet_step_stats(**json.loads(argv[1]))))
        return
    if argv[:1] == ["_mvs_one"]:  # MVSNet or the cascade, for bench_cascade
        from depthlib.bench_cascade import mvs_step_stats
        print(json.dumps(mvs_step_stats(**json.loads(argv[1]))))
        return
    parser.add_argument("what", nargs="?", default="models",
                        choices=["models", "render", "densedepth", "mvsnet", "variants", "kernels",
                                 "casmvsnet"],
                        help="what to benchmark (default: both models in one table); variants: each fast-path "
                             "switch alone and together; kernels: a training step's GPU time by kernel kind; casmvsnet: the "
                             "cascade against MVSNet D=192 at 512x640")
    parser.add_argument("--model", choices=["densedepth", "mvsnet"], default="densedepth",
                        help="kernels: which model")
    parser.add_argument("--fp32", action="store_true", help="kernels: profile the fp32 step, not the fast path")
    parser.add_argument("--groups", nargs="+", default=["densedepth", "mvsnet-train", "mvsnet-infer"],
                        help="variants: which groups of rows (densedepth, mvsnet-train, mvsnet-infer)")
    parser.add_argument("--frames", type=int, default=64, help="render: frames per measurement at 128x160")
    parser.add_argument("--compile", nargs="?", const=True, default=False, type=compile_mode, metavar="MODE",
                        help="densedepth, models, variants: also time torch.compile, in its default mode or in "
                             "MODE (e.g. reduce-overhead: CUDA graphs)")
    parser.add_argument("--steps", type=int, default=5,
                        help="timed steps per setting (default 5; casmvsnet: at most 3; render and kernels: not used)")
    args = parser.parse_args(argv)
    print(f"# depthlib.bench {args.what}: {device_label()}, {time.strftime('%Y-%m-%d')}")
    if args.what == "models":
        print(format_table(bench_models(args.compile, steps=args.steps)))
    elif args.what == "render":
        print(format_table(bench_render(args.frames)))
    elif args.what == "densedepth":
        print(format_table(bench_densedepth(args.compile, steps=args.steps)))
    elif args.what == "variants":
        print(format_table(bench_variants(args.compile, steps=args.steps, groups=args.groups)))
    elif args.what == "kernels":
        try:
            print(format_table(kernel_breakdown(args.model, fast=not args.fp32)))
        except RuntimeError as error:  # no CUDA here: one line, not a traceback
            sys.exit(f"python -m depthlib.bench kernels: {error}")
    elif args.what == "casmvsnet":
        from depthlib.bench_cascade import bench_casmvsnet
        print(format_table(bench_casmvsnet(steps=min(args.steps, 3))))
    else:
        print(format_table(bench_mvsnet(steps=args.steps)))


if __name__ == "__main__":
    main()
