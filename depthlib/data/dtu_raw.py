"""Full-resolution DTU depth maps in CasMVSNet's ``Depths_raw`` layout: writer and Dataset (chapter 12).

MVSNet's DTU training set has depth maps at a quarter of the image size (``Depths/``). A cascade
supervises every stage, the last one at the image size, so CasMVSNet (Gu et al. 2020) trains on the
*raw* depth maps that come with the same preprocessed download as a separate archive:

``Depths_raw/scan{N}/depth_map_{view:04d}.pfm`` (float32, millimetres, 1600x1200 for DTU, i.e. the
original camera resolution, 0 = no depth) and ``Depths_raw/scan{N}/depth_visual_{view:04d}.png``
(8 bit; > 10 = valid), next to ``Cameras/``, ``Rectified/`` and ``Depths/`` (note ``scan{N}``, not
``scan{N}_train``). The 640x512 training images are the 1600x1200 originals halved to 800x600 and
centre-cropped; CasMVSNet's ``dtu_yao.py`` gives the raw depth the same treatment: every second
pixel (nearest-neighbour halving), then the centre crop, and the coarser stages by nearest-neighbour
down-sampling of that.

Here each stage's map is sampled from the raw map at the pixel *centres* of its own grid: with a
crop margin (my, mx) in halved pixels, pixel (v, u) of the map at 1/s of the image size reads raw
pixel (2 s v + s - 1 + 2 my, 2 s u + s - 1 + 2 mx). For s = 1 that is exactly CasMVSNet's even
pixel; for s = 2 and 4 it is the pixel-centre convention of the rest of depthlib (``dtu_yao.py``
takes the top-left pixel of each block instead). The synthetic writer renders raw maps for which
this sampling is exact: twice the image size plus DTU's relative crop margins.
"""
from __future__ import annotations

__all__ = ["RAW_SCALES", "raw_depth_path", "raw_crop_margins", "sample_raw_map", "write_raw_depths",
           "DTUMVSFull", "dtu_synthetic_full"]

import multiprocessing as mp
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .dtu import DTUMVS, depth_visual
from .io import read_pair_file, read_pfm, write_pfm

RAW_SCALES = {1: "full", 2: "half", 4: "quarter"}  # image size / map size -> item key suffix
_DTU_MARGIN = (44 / 512, 80 / 640)  # DTU: 600x800 halved originals cropped to 512x640


def raw_depth_path(root, scan: str, view: int) -> Path:
    """``root/Depths_raw/{scan}/depth_map_{view:04d}.pfm`` (the mask is ``depth_visual_{view:04d}.png``)."""
    return Path(root) / "Depths_raw" / scan / f"depth_map_{view:04d}.pfm"


def raw_crop_margins(raw_shape, image_shape):
    """(my, mx): the crop margins, in halved raw pixels, that centre an image of ``image_shape`` (H, W)
    in a raw map of ``raw_shape`` (Hr, Wr) halved; raises if the halved raw map is smaller."""
    (raw_h, raw_w), (height, width) = raw_shape, image_shape
    if raw_h // 2 < height or raw_w // 2 < width:
        raise ValueError(f"raw depth map {raw_h}x{raw_w} halved is {raw_h // 2}x{raw_w // 2}, smaller than "
                         f"the {height}x{width} image; expected a map of at least twice the image size")
    return (raw_h // 2 - height) // 2, (raw_w // 2 - width) // 2


def sample_raw_map(raw: np.ndarray, image_shape, scale: int) -> np.ndarray:
    """The map at 1/``scale`` of ``image_shape`` (H, W), sampled from a raw map (Hr, Wr) at pixel
    centres (see the module doc). Returns (H / scale, W / scale), same dtype."""
    height, width = image_shape
    if height % scale or width % scale:
        raise ValueError(f"image {height}x{width} is not divisible by the stage scale {scale}")
    my, mx = raw_crop_margins(raw.shape, image_shape)
    rows = 2 * scale * np.arange(height // scale) + scale - 1 + 2 * my
    cols = 2 * scale * np.arange(width // scale) + scale - 1 + 2 * mx
    return raw[np.ix_(rows, cols)]


def write_raw_depths(root, seed: int = 0, scans=None, units_per_metre: float = 1000.0, workers: int = 1):
    """Render ``Depths_raw/`` for a set written by ``write_dtu_like(root, ..., seed=seed)``.

    Scan N's scene is ``object_scene(seed * 10000 + N)`` and the rig ``arc_cameras(V, H, W, seed)``, as
    the writer drew them; each raw map is rendered at 2 (H + 2 my) x 2 (W + 2 mx) with DTU's relative
    crop margins and K_raw = 2 K + (2 mx, 2 my) on the principal point, so raw pixel (2 v + 2 my,
    2 u + 2 mx) is image pixel (v, u). Each scan is checked against its quarter-size ``Depths/`` maps
    (same rays): a wrong ``seed`` raises. A scan folder appears complete or not at all; scans already
    there are kept. ``workers`` > 1 renders scans in forked processes. Returns ``root``.
    """
    root = Path(root)
    views = sorted({ref for ref, _ in read_pair_file(root / "Cameras" / "pair.txt")})
    scans = scans if scans is not None else sorted(
        (p.name[:-len("_train")] for p in (root / "Rectified").iterdir() if re.fullmatch(r"scan\d+_train", p.name)),
        key=lambda name: int(name[4:]))
    first = root / "Rectified" / f"{scans[0]}_train" / f"rect_{views[0] + 1:03d}_0_r5000.png"
    with Image.open(first) as image:
        width, height = image.size
    jobs = [(root, scan, seed, views, height, width, units_per_metre) for scan in scans
            if not (root / "Depths_raw" / scan).is_dir()]
    if workers > 1 and len(jobs) > 1 and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            pool.map(_write_raw_scan, jobs)
    else:
        for job in jobs:
            _write_raw_scan(job)
    return root


def _write_raw_scan(job):
    from depthlib.data.raycast import Camera, trace
    from depthlib.data.scenes import arc_cameras, object_scene

    root, scan, seed, views, height, width, units_per_metre = job
    my, mx = round(height * _DTU_MARGIN[0]), round(width * _DTU_MARGIN[1])
    cameras = arc_cameras(len(views), height, width, seed=seed)
    scene = object_scene(seed * 10_000 + int(scan[4:]))
    out = root / "Depths_raw" / scan
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{scan}.tmp-", dir=out.parent))
    try:
        for view in views:
            K = cameras[view].K.copy()
            K[:2] *= 2
            K[0, 2], K[1, 2] = 2 * (cameras[view].K[0, 2] + mx), 2 * (cameras[view].K[1, 2] + my)
            raw_camera = Camera(K, cameras[view].extrinsic, 2 * (height + 2 * my), 2 * (width + 2 * mx))
            depth = (trace(scene, raw_camera).depth * units_per_metre).astype(np.float32)
            _check_against_quarter(root, scan, view, depth, (height, width), seed)
            write_pfm(tmp / f"depth_map_{view:04d}.pfm", depth)
            Image.fromarray(depth_visual(depth)).save(tmp / f"depth_visual_{view:04d}.png")
        os.replace(tmp, out)
    except OSError:
        if not out.is_dir():  # not another process finishing first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_against_quarter(root, scan, view, raw, image_shape, seed):
    quarter_path = root / "Depths" / f"{scan}_train" / f"depth_map_{view:04d}.pfm"
    quarter = read_pfm(quarter_path)[0]
    sampled = sample_raw_map(raw, image_shape, 4)
    if sampled.shape != quarter.shape or not np.allclose(sampled, quarter, rtol=1e-4, atol=1e-3):
        raise ValueError(f"write_raw_depths: the depth rendered for {scan} view {view} with seed {seed} does "
                         f"not match {quarter_path}; pass the seed the set was written with")


class DTUMVSFull(DTUMVS):
    """``DTUMVS`` plus the reference view's depth at every cascade resolution, from ``Depths_raw/``.

    Items are ``DTUMVS``'s (``depth`` / ``mask`` still from the quarter-size ``Depths/``) plus
    ``depth_full`` / ``mask_full`` (1, H, W), ``depth_half`` / ``mask_half`` (1, H/2, W/2) and
    ``depth_quarter`` / ``mask_quarter`` (1, H/4, W/4), sampled from the raw map (module doc); the
    mask is ``depth_visual > 10`` and depth > 0. ``n_depths`` defaults to 192, DTU's native planes:
    the cascade reads its depth range and base interval from them.
    """

    def __init__(self, root, split="train", n_views=3, n_depths=192, interval_scale=None, scans=None, lights=None):
        super().__init__(root, split, n_views=n_views, n_depths=n_depths, interval_scale=interval_scale,
                         scans=scans, lights=lights)
        for scan in self.scans:
            folder = self.root / "Depths_raw" / scan
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: no such folder; the cascade needs CasMVSNet's full-resolution "
                                        "depth maps (Depths_raw/scanN/depth_map_VVVV.pfm, the Depths_raw archive "
                                        "of the DTU training set; for a rendered set: write_raw_depths)")

    def __getitem__(self, index):
        item = super().__getitem__(index)
        scan, view = item["scan"], int(item["view_ids"][0])
        path = raw_depth_path(self.root, scan, view)
        raw = read_pfm(path)[0]
        visual_path = path.with_name(f"depth_visual_{view:04d}.png")
        if not visual_path.is_file():
            raise FileNotFoundError(f"{visual_path}: no such file")
        with Image.open(visual_path) as visual_file:
            visual = np.asarray(visual_file.convert("L"))
        if raw.ndim != 2 or visual.shape != raw.shape:
            raise ValueError(f"{path} is {raw.shape} and {visual_path} is {visual.shape}; expected two equal "
                             "(H, W) maps")
        image_shape = tuple(item["imgs"].shape[-2:])
        for scale, name in RAW_SCALES.items():
            depth = torch.from_numpy(np.ascontiguousarray(sample_raw_map(raw, image_shape, scale)))[None]
            valid = torch.from_numpy(np.ascontiguousarray(sample_raw_map(visual, image_shape, scale) > 10))[None]
            item[f"depth_{name}"], item[f"mask_{name}"] = depth, valid & (depth > 0) & torch.isfinite(depth)
        return item


def dtu_synthetic_full(profile=None, *, n_scans=None, n_views=None, size=None, n_lights=None, seed=0,
                       cache_dir=None):
    """``dtu_synthetic`` (same arguments, same cached set) with ``Depths_raw/`` rendered into it the
    first time, for ``DTUMVSFull``. Returns the set's root."""
    from depthlib.data.synthetic import dtu_synthetic

    root = dtu_synthetic(profile, n_scans=n_scans, n_views=n_views, size=size, n_lights=n_lights, seed=seed,
                         cache_dir=cache_dir)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return write_raw_depths(root, seed=seed, workers=workers)
