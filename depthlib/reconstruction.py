"""A rendered DTU-like scan end to end: depth maps of every view (an MVSNet's, or the exact ones),
filtered and fused into one point cloud, and scored against the renderer's own surface with DTU's
accuracy and completeness (chapter 10 builds each step; chapter 11 quotes the result).

Usage: ``score_scan(root, "scan9", model=load_mvsnet("mvsnet-synthetic.pt"))``.
"""
from __future__ import annotations

__all__ = ["FUSION_DEFAULTS", "score_scan"]

import torch

from depthlib.data import DTUMVS
from depthlib.data.scenes import object_scene
from depthlib.fusion import accuracy_completeness, fuse_depth_maps, surface_points

# MVSNet's filter: confidence > 0.8, and a round trip within 1 px and 1 % in at least 3 source views
FUSION_DEFAULTS = dict(photometric_threshold=0.8, pixel_threshold=1.0, depth_threshold=0.01,
                       min_views=3)


def _scan_samples(root, scan: str, n_views: int, n_depths: int):
    scan_set = DTUMVS(root, "test", n_views=n_views, n_depths=n_depths, scans=[scan])
    if len(scan_set) == 0:
        raise ValueError(f"scan {scan!r} has no test samples in {root}: expected a test scan of "
                         f"the set (e.g. 'scan9')")
    samples = sorted((scan_set[i] for i in range(len(scan_set))), key=lambda s: int(s["view_ids"][0]))
    return scan_set, {key: torch.stack([s[key] for s in samples]) for key in samples[0]
                      if torch.is_tensor(samples[0][key])}


@torch.no_grad()
def score_scan(root, scan: str, model=None, n_views: int = 3, n_depths: int = 32, data_seed: int = 0,
               max_dist: float = 20.0, depth_key: str = "refined_depth", **thresholds) -> dict:
    """Fuse one scan's depth maps and score the cloud against the scene's true surface.

    Args:
        root: a DTU-like folder written by ``write_dtu_like`` / ``dtu_synthetic`` (millimetres).
        scan: a test scan, e.g. "scan9"; its scene is ``object_scene(10000 * data_seed + 9)``.
        model: an MVSNet (run on every reference view, on its own device), or None for the exact
            depth maps (the upper bound of fusion at this resolution).
        n_views, n_depths: the MVSNet samples' views and depth planes.
        max_dist: mm; distances above it are dropped, as in the DTU protocol.
        depth_key: which depth map of the model's output to fuse ("refined_depth" or "depth").
        thresholds: override ``FUSION_DEFAULTS`` (photometric_threshold, pixel_threshold,
            depth_threshold, min_views).
    Returns:
        dict with ``points`` (count) and ``accuracy``, ``completeness``, ``overall`` (their mean),
        in mm, plus the shares of points kept under ``max_dist`` as ``accuracy_completeness``
        reports them.
    """
    unknown = set(thresholds) - set(FUSION_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown fusion thresholds {sorted(unknown)}, expected some of "
                         f"{sorted(FUSION_DEFAULTS)}")
    scan_set, batch = _scan_samples(root, scan, n_views, n_depths)
    K, E = batch["intrinsics"][:, 0], batch["extrinsics"][:, 0]
    if model is None:
        depth, confidence = batch["depth"] * batch["mask"], None
        thresholds = {"photometric_threshold": 0.0, **thresholds}
    else:
        device = next(model.parameters()).device
        out = model.eval()(*(batch[key].to(device) for key in ("imgs", "proj_matrices", "depth_values")))
        depth, confidence = out[depth_key].cpu(), out["photometric_confidence"].cpu()
    points, _, _ = fuse_depth_maps(depth, confidence, K, E, batch["imgs"][:, 0], scan_set.pairs,
                                   **{**FUSION_DEFAULTS, **thresholds})
    E_metres = E.double().clone()
    E_metres[:, :3, 3] /= 1000                       # the renderer works in metres
    scene = object_scene(10_000 * data_seed + int(scan.removeprefix("scan")))
    height, width = batch["depth"].shape[-2:]
    surface = surface_points(scene, K[0].double(), E_metres, height, width, upsample=8, spacing=1.5,
                             units_per_metre=1000)
    return {"points": len(points), **accuracy_completeness(points, surface, max_dist=max_dist)}
