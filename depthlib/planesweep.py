"""The classical plane sweep (chapter 07): warp the source views onto fronto-parallel planes, score
each plane by photometric consistency (ZNCC or SAD over a window), and read the depth off the cost
volume by winner-take-all or by soft-argmin (``depth_regression``, which MVSNet shares). The
baseline ``depthlib.metrics.evaluate_mvsnet(baseline=True)`` compares MVSNet with; and
``count_seeing_sources``, the source views that see each pixel at its depth (where the sweep fails).
"""
from __future__ import annotations

__all__ = ["depth_regression", "check_mvs_inputs", "plane_sweep_depth", "count_seeing_sources"]

import numpy as np
import torch
import torch.nn.functional as F

from depthlib.geometry import homography_warp


def depth_regression(prob_volume: torch.Tensor, depth_values: torch.Tensor) -> torch.Tensor:
    """Soft argmin: the expected depth sum_d p_d * depth_d. prob_volume (B, D, h, w); depth_values
    (B, D) or (B, D, h, w). Returns (B, 1, h, w)."""
    if depth_values.dim() == 2:
        depth_values = depth_values[:, :, None, None]
    return (prob_volume * depth_values).sum(dim=1, keepdim=True)


def check_mvs_inputs(owner: str, imgs, proj, depth_values, min_planes: int = 1) -> tuple:
    """(B, V, H, W, D) of a multi-view network's inputs; a ValueError naming ``owner`` and the
    mismatched shape unless imgs is a float (B, V, 3, H, W) with V >= 2, proj (B, V, 4, 4) and
    depth_values (B, D) with D >= ``min_planes``, increasing along D. The order is checked when
    depth_values is on the CPU (on a GPU, reading it back would make the host wait for the device)."""
    if imgs.dim() != 5 or imgs.shape[2] != 3 or imgs.shape[1] < 2:
        raise ValueError(f"{owner}: imgs {tuple(imgs.shape)}, expected (B, V, 3, H, W) with V >= 2 views")
    if not imgs.is_floating_point():
        raise ValueError(f"{owner}: imgs are {imgs.dtype}, expected a floating-point tensor (for uint8 images: "
                         "imgs.float() / 255)")
    batch, views, _, height, width = imgs.shape
    if tuple(proj.shape) != (batch, views, 4, 4):
        raise ValueError(f"{owner}: proj {tuple(proj.shape)} does not match imgs {tuple(imgs.shape)}; "
                         f"expected ({batch}, {views}, 4, 4), one projection per view")
    if depth_values.dim() != 2 or depth_values.shape[0] != batch or depth_values.shape[1] < min_planes:
        raise ValueError(f"{owner}: depth_values {tuple(depth_values.shape)}, expected ({batch}, D)"
                         + (f" with D >= {min_planes}" if min_planes > 1 else ""))
    if depth_values.device.type == "cpu" and depth_values.shape[1] > 1:
        # read as a NumPy view: host memory, no device to wait for (and no tensor read in a training
        # step, which tests/test_gpu_path.py counts as a stand-in for GPU syncs)
        planes = depth_values.detach().numpy()
        increasing = (np.diff(planes, axis=1) > 0).all(axis=1)  # NaN fails too
        if not increasing.all():  # equal planes give a NaN refined depth, decreasing ones reversed bands
            sample = int(np.flatnonzero(~increasing)[0])
            raise ValueError(f"{owner}: depth_values of sample {sample} are not increasing "
                             f"({planes[sample, :4].tolist()}...); expected planes from near to far")
    return batch, views, height, width, depth_values.shape[1]


# ----------------------------------------------------------------------------- classical baseline

def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a window x window box (same size, replicate-padded); x (N, C, H, W)."""
    pad = window // 2
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), window, stride=1)


def plane_sweep_depth(imgs: torch.Tensor, proj: torch.Tensor, depth_values: torch.Tensor, cost: str = "zncc",
                      window: int = 7, pool: int = 1, temperature: float = 0.05) -> dict:
    """Classical plane-sweep stereo: the same warping on images, a windowed photometric cost, no learning.

    imgs (B, V, 3, H, W), view 0 the reference; proj (B, V, 4, 4) with K at the image resolution;
    depth_values (B, D). ``cost``: "zncc" (1 - zero-mean normalised cross-correlation, robust to
    gain and offset) or "sad" (mean absolute difference) over a ``window`` x ``window`` box of the
    grey image, averaged over the source views. ``pool`` > 1 averages the cost over pool x pool
    blocks and returns depth at H/pool x W/pool (MVSNet's depth resolution with pool=4).
    Returns ``cost`` (B, D, h, w), ``depth`` (winner-take-all, B, 1, h, w) and ``soft_depth``
    (soft-argmin of softmax(-cost / temperature)). Pixels no source view sees get the largest cost.
    """
    if cost not in ("zncc", "sad"):
        raise ValueError(f"plane_sweep_depth: cost {cost!r}, expected 'zncc' or 'sad'")
    if window < 1 or window % 2 == 0 or pool < 1:
        raise ValueError(f"plane_sweep_depth: window={window}, pool={pool}; expected an odd window >= 1 "
                         "and pool >= 1")
    batch, views, height, width, _ = check_mvs_inputs("plane_sweep_depth", imgs, proj, depth_values)
    grey = imgs.mean(dim=2, keepdim=True)  # (B, V, 1, H, W)
    ref = grey[:, 0]
    depths = depth_values.shape[1]
    if cost == "zncc":  # the reference window statistics do not depend on the plane: once
        mu_r = _box_mean(ref, window)
        var_r = (_box_mean(ref ** 2, window) - mu_r ** 2).clamp(min=0)
        mu_r, var_r = mu_r.repeat_interleave(depths, 0), var_r.repeat_interleave(depths, 0)
    flat_r = ref.repeat_interleave(depths, 0)  # (B * D, 1, H, W), sample-major like the warped planes
    total = torch.zeros(batch, depths, height, width, dtype=imgs.dtype, device=imgs.device)
    for view in range(1, views):
        warped = homography_warp(grey[:, view], proj[:, view], proj[:, 0], depth_values)[:, 0]  # (B, D, H, W)
        seen = homography_warp(torch.ones_like(grey[:, view]), proj[:, view], proj[:, 0], depth_values)[:, 0]
        flat_w = warped.reshape(batch * depths, 1, height, width)
        if cost == "sad":
            c = _box_mean((flat_w - flat_r).abs(), window)
            worst = 1.0
        else:
            mu_w = _box_mean(flat_w, window)
            cov = _box_mean(flat_w * flat_r, window) - mu_w * mu_r
            var_w = (_box_mean(flat_w ** 2, window) - mu_w ** 2).clamp(min=0)
            c = 1 - cov / torch.sqrt(var_w * var_r + 1e-6)
            worst = 2.0
        c = c.reshape(batch, depths, height, width)
        c = torch.where(seen > 0.999, c, torch.full_like(c, worst))  # outside the source image
        total += c
    cost_volume = total / (views - 1)
    if pool > 1:
        cost_volume = F.avg_pool2d(cost_volume, pool)
    index = cost_volume.argmin(dim=1, keepdim=True)
    values = depth_values[:, :, None, None].expand(-1, -1, *cost_volume.shape[-2:])
    prob = F.softmax(-cost_volume / temperature, dim=1)
    return {"cost": cost_volume, "depth": torch.gather(values, 1, index),
            "soft_depth": depth_regression(prob, depth_values)}


def count_seeing_sources(proj: torch.Tensor, depth: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """How many source views see each reference pixel inside their image, at the pixel's own depth.

    proj: (B, V, 4, 4), view 0 the reference, K at the image resolution; depth: (B, 1, h, w) per-pixel
    depth (e.g. the ground truth, mm for DTU) at 1/scale of the image. Each depth pixel stands for a
    scale x scale block of the image; a source sees it when the whole block, warped with
    ``homography_warp`` at that depth, lands inside the source image (mean of a warped image of ones
    > 0.999). Occlusion is not modelled. Returns (B, 1, h, w) int64 in 0 .. V-1 (meaningless where
    depth <= 0: mask those out), on the inputs' device, without waiting for it.
    """
    if proj.dim() != 4 or proj.shape[1] < 2 or proj.shape[2:] != (4, 4):
        raise ValueError(f"count_seeing_sources: proj {tuple(proj.shape)}, expected (B, V, 4, 4) with V >= 2")
    if depth.dim() != 4 or depth.shape[:2] != (proj.shape[0], 1) or scale < 1:
        raise ValueError(f"count_seeing_sources: depth {tuple(depth.shape)}, scale={scale}; expected "
                         f"({proj.shape[0]}, 1, h, w) and scale >= 1")
    full = F.interpolate(depth, scale_factor=scale, mode="nearest")  # (B, 1, H, W): each block at its depth
    ones = torch.ones_like(full)
    seen = [F.avg_pool2d(homography_warp(ones, proj[:, view], proj[:, 0], full)[:, :, 0], scale) > 0.999
            for view in range(1, proj.shape[1])]
    return torch.stack(seen).sum(dim=0)
