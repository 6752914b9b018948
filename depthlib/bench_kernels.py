"""Where a training step's GPU time goes: CUDA kernels by category (``python -m depthlib.bench kernels``;
chapter 11 reads the table). ``kernel_times`` needs a CUDA GPU; ``kernel_category`` runs anywhere.
"""
from __future__ import annotations

import re

__all__ = ["KERNEL_CATEGORIES", "kernel_category", "kernel_times"]


KERNEL_CATEGORIES = (  # (category, regular expression over CUDA kernel names), first match wins
    ("layout (NCHW <-> NHWC)", r"nchwtonhwc|nhwctonchw|transpose|permute"),
    ("convolution", r"conv|xmma|implicit_gemm|fprop|dgrad|wgrad|winograd|cutlass|gemm|cudnn::(?!bn)"),
    ("batch norm", r"batch_norm|batchnorm|\bbn_|_bn_|welford"),
    ("concat / copy", r"cat|copy|contiguous"),
    ("element-wise", r"elementwise|threshold|relu|add|mul|div|sub|fill|where|clamp|pow|sqrt|exp|log"),
    ("reduction", r"reduce|sum|mean|norm|softmax"),
    ("pooling / sampling", r"pool|grid_sampler|upsample|interpolate"),
)


def kernel_category(name: str) -> str:
    """The category of a CUDA kernel's name (see ``KERNEL_CATEGORIES``), else "other"."""
    lowered = name.lower()
    for category, pattern in KERNEL_CATEGORIES:
        if re.search(pattern, lowered):
            return category
    return "other"


def kernel_times(step, steps: int = 3, warmup: int = 2) -> list[dict]:
    """Profile ``step()`` (a closure running one CUDA training step) with torch.profiler: rows of
    kernel category, GPU milliseconds per step, share of the step's kernel time and kernel launches
    per step, largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    totals, counts = {}, {}
    for event in prof.key_averages():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        micros = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        category = kernel_category(event.key)
        totals[category] = totals.get(category, 0.0) + micros
        counts[category] = counts.get(category, 0) + event.count
    whole = sum(totals.values()) or 1.0
    return [{"kernels": category, "ms / step": f"{micros / steps / 1000:.2f}", "share": f"{micros / whole:.0%}",
             "launches / step": counts[category] // steps}
            for category, micros in sorted(totals.items(), key=lambda kv: -kv[1])]
