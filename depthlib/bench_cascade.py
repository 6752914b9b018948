"""Benchmarks of the cascade against MVSNet (chapter 12): ``python -m depthlib.bench casmvsnet``.

Inference at the paper's 512x640 with 3 views: MVSNet sweeping D = 192 planes at 1/4 resolution
against CasMVSNet's 48 / 32 / 8 hypotheses at 1/4, 1/2 and full resolution, and the cascade's
training step at the profile's size. Every setting runs in a fresh process, so its peak memory is
its own. Memory: "tensors MiB" is the peak of PyTorch's allocator during a step, above what it held
before (CUDA: ``max_memory_allocated``; CPU: the allocation events of ``torch.profiler``): the
run's tensors and the kernels' work buffers, the measure the comparison with MVSNet uses. "peak MiB"
is the whole process's peak (CUDA: the same allocator peak; CPU: peak resident set, with Python,
the libraries, their thread pools and caches), "above start MiB" that peak minus what the process
held before the measured input's first pass.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

__all__ = ["mvs_rig", "mvs_step_stats", "run_isolated", "bench_casmvsnet"]


def mvs_rig(batch, views, height, width, depths, near=0.5, far=1.5):
    """A forward-facing rig as ``bench.mvsnet_step_stats`` uses (view v shifted sideways by 5 % of the
    depth per view), random images, planes from ``near`` to ``far``, and ground truth at every scale.
    Returns a DTUMVSFull-like batch dict (``proj_matrices`` with K at 1/4 of the image)."""
    import torch

    K = torch.tensor([[width / 4.0, 0, width / 8 - 0.5], [0, width / 4.0, height / 8 - 0.5], [0, 0, 1]])
    proj = torch.eye(4).repeat(batch, views, 1, 1)
    for v in range(views):
        proj[:, v, :3, :4] = K @ torch.cat([torch.eye(3), torch.tensor([[0.05 * v], [0.0], [0.0]])], dim=1)
    out = {"imgs": torch.rand(batch, views, 3, height, width), "proj_matrices": proj,
           "depth_values": torch.linspace(near, far, depths).repeat(batch, 1),
           "depth_interval": torch.full((batch,), (far - near) / (depths - 1))}
    for scale, name in ((1, "full"), (2, "half"), (4, "quarter")):
        out[f"depth_{name}"] = near + (far - near) * torch.rand(batch, 1, height // scale, width // scale)
        out[f"mask_{name}"] = torch.ones(batch, 1, height // scale, width // scale, dtype=torch.bool)
    out["depth"], out["mask"] = out["depth_quarter"], out["mask_quarter"]
    return out


def _rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def mvs_step_stats(model="casmvsnet", height=512, width=640, depths=192, views=3, batch=1, amp=False, train=False,
                   steps=3, warmup=1, device=None) -> dict:
    """Time ``model`` ("casmvsnet" with the paper's stages, or "mvsnet" with refinement) on ``mvs_rig``:
    training steps through the Trainer's own step, or inference (eval, no_grad, in-place volumes).
    ``depths``: MVSNet's planes; the cascade reads its range and base interval from them.
    A first step on a 32x32 input sets the runtime up (thread pools, kernel caches: hundreds of MiB on
    the CPU that do not depend on the input), then ``above start`` counts from there.
    Returns seconds per step, samples/s, ``peak MiB`` and ``above start MiB`` (see the module doc)."""
    import torch
    from torch.utils.data import TensorDataset

    from depthlib.models import MVSNet
    from depthlib.models.casmvsnet import CasMVSNet, CasMVSNetTask
    from depthlib.train import MVSNetTask, TrainConfig, Trainer

    if model not in ("casmvsnet", "mvsnet"):
        raise ValueError(f"mvs_step_stats: model {model!r}, expected 'casmvsnet' or 'mvsnet'")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    torch.manual_seed(0)
    net, task = (CasMVSNet(), CasMVSNetTask()) if model == "casmvsnet" else (MVSNet(), MVSNetTask())
    batch_dict = mvs_rig(batch, views, height, width, depths)
    config = TrainConfig(batch_size=batch, amp="auto" if amp else "off", progress=False, device=device)
    trainer = Trainer(net, TensorDataset(batch_dict["imgs"]), task, "unused", config)
    if not train:
        trainer.model.eval()

    def step(inputs):
        if train:
            return trainer.train_step(inputs)
        with torch.no_grad(), torch.autocast(trainer.device.type, dtype=trainer.amp_dtype or torch.float32,
                                             enabled=trainer.amp_dtype is not None):
            trainer.model(inputs["imgs"], inputs["proj_matrices"], inputs["depth_values"])

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step(trainer.to_device(mvs_rig(batch, views, 32, 32, depths)))  # the runtime's one-time set-up, on a tiny input
    sync()
    batch_dict = trainer.to_device(batch_dict)
    start_memory = torch.cuda.memory_allocated() / 2**20 if cuda else _rss_mib()
    for _ in range(warmup):
        step(batch_dict)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step(batch_dict)
    sync()
    seconds = (time.perf_counter() - start) / steps
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        tensors = peak - start_memory
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tensors = _allocator_peak_mib(lambda: step(batch_dict))
    return {"seconds": seconds, "samples/s": batch / seconds, "peak MiB": peak, "above start MiB": peak - start_memory,
            "tensors MiB": tensors, "amp": str(trainer.amp_dtype)}


def _allocator_peak_mib(step) -> float:
    """Peak of the bytes held by PyTorch's CPU allocator during ``step()``, above what it held before:
    the allocation and free events of ``torch.profiler`` (``profile_memory=True``) summed in time order.
    The CPU counterpart of ``torch.cuda.max_memory_allocated``: tensors and the kernels' work buffers,
    whatever the process's threads, malloc arenas and library caches hold besides."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def run_isolated(**kwargs) -> dict:
    """``mvs_step_stats(**kwargs)`` in a fresh Python process (so its peak memory is its own)."""
    out = subprocess.run([sys.executable, "-m", "depthlib.bench", "_mvs_one", json.dumps(kwargs)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_casmvsnet(steps=3, size=(512, 640), depths=192, train_size=(128, 160), train_batch=2,
                    columns=None) -> list[dict]:
    """Rows: MVSNet (D = ``depths``) and CasMVSNet inference at ``size`` (fp32, and AMP on CUDA), the
    cascade's share of MVSNet's peak memory and run time, and a cascade training step at ``train_size``.
    ``columns``: the keys to keep (``bench_models`` keeps the seven of its table)."""
    import torch

    cuda = torch.cuda.is_available()
    height, width = size
    rows = []
    for name, amp in [("fp32", False)] + ([("AMP", True)] if cuda else []):
        stats = {model: run_isolated(model=model, height=height, width=width, depths=depths, amp=amp, steps=steps)
                 for model in ("mvsnet", "casmvsnet")}
        base = stats["mvsnet"]
        for model, label in (("mvsnet", f"MVSNet D={depths}"), ("casmvsnet", "CasMVSNet 48/32/8")):
            s = stats[model]
            rows.append({"model": label, "input": f"{height}x{width} V=3 x1",
                         "mode": f"infer {name}", "step (s)": f"{s['seconds']:.3f}",
                         "samples/s": f"{s['samples/s']:.2f}", "speed-up": f"{s['samples/s'] / base['samples/s']:.2f}x",
                         "peak MiB": f"{s['peak MiB']:.0f}", "above start MiB": f"{s['above start MiB']:.0f}",
                         "tensors MiB": f"{s['tensors MiB']:.0f}",
                         "memory vs MVSNet": f"{s['tensors MiB'] / base['tensors MiB']:.0%} "
                                             f"(whole process {s['peak MiB'] / base['peak MiB']:.0%})"})
    height, width = train_size
    s = run_isolated(model="casmvsnet", height=height, width=width, depths=depths, batch=train_batch, train=True, steps=steps)
    rows.append({"model": "CasMVSNet 48/32/8", "input": f"{height}x{width} V=3 x{train_batch}", "mode": "train fp32",
                 "step (s)": f"{s['seconds']:.3f}", "samples/s": f"{s['samples/s']:.2f}", "speed-up": "1.00x",
                 "peak MiB": f"{s['peak MiB']:.0f}", "above start MiB": f"{s['above start MiB']:.0f}",
                 "tensors MiB": f"{s['tensors MiB']:.0f}", "memory vs MVSNet": ""})
    keep = columns or ["model", "input", "mode", "step (s)", "samples/s", "speed-up", "tensors MiB", "peak MiB",
                       "memory vs MVSNet"]
    return [{key: row[key] for key in keep} for row in rows]
