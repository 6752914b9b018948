"""MVSNet's *test* layout of one scan (what ``infer mvsnet`` reads, chapter 10): a writer that copies a
scan of the training layout into it, and the Dataset that reads it.

Layout: ``images/{view:08d}.jpg|png``, ``cams/{view:08d}_cam.txt`` (K at the image resolution, as
DTU's test download) and ``pair.txt``.
"""
__all__ = ["MVSScan", "write_mvs_scan"]

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .dtu import DTUMVS, check_mvs_sizes, scan_name, view_tensors
from .io import read_cam_file, read_image, read_pair_file, read_pfm, write_cam_file, write_pair_file


def write_mvs_scan(root, scan, out_dir, light=None):
    """Copy one scan of the training layout into MVSNet's *test* layout (what ``infer mvsnet`` reads).

    Writes ``out_dir/images/{view:08d}.png`` (one light: ``light``, default the middle one),
    ``out_dir/cams/{view:08d}_cam.txt`` with K scaled to the *image* resolution (as DTU's test
    download), and ``out_dir/pair.txt``. Returns ``out_dir``.
    """
    from depthlib.geometry import scale_intrinsics

    root, out_dir, scan = Path(root), Path(out_dir), scan_name(scan)
    dataset = DTUMVS(root, "test", n_views=1, n_depths=1, scans=[scan], lights=None if light is None else [light])
    light = dataset.metas[0][1]
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "cams").mkdir(exist_ok=True)
    for view, _ in dataset.pairs:
        image = read_image(root / "Rectified" / f"{scan}_train" / f"rect_{view + 1:03d}_{light}_r5000.png")
        Image.fromarray(image).save(out_dir / "images" / f"{view:08d}.png")
        cam = dataset.camera(view)
        depth_shape = read_pfm(root / "Depths" / f"{scan}_train" / f"depth_map_{view:04d}.pfm")[0].shape
        scale_y, scale_x = image.shape[0] / depth_shape[0], image.shape[1] / depth_shape[1]
        write_cam_file(out_dir / "cams" / f"{view:08d}_cam.txt", cam["extrinsic"],
                       scale_intrinsics(cam["intrinsic"], scale_x, scale_y), cam["depth_min"], cam["depth_interval"],
                       cam["depth_num"], cam["depth_max"])
    write_pair_file(out_dir / "pair.txt", dataset.pairs)
    return out_dir


class MVSScan(Dataset):
    """One scan in MVSNet's test layout: ``images/{view:08d}.jpg|png``, ``cams/{view:08d}_cam.txt``
    (K at the image resolution, as DTU's test download) and ``pair.txt``.

    One item per reference view of pair.txt, in the ``DTUMVS`` item format without depth / mask:
    imgs [V, 3, H, W] (resized to ``size`` = (H, W) when given), proj_matrices / extrinsics
    [V, 4, 4] and intrinsics [V, 3, 3] at the depth-map resolution H/4 x W/4, depth_values [D],
    depth_interval, view_ids [V]. ``interval_scale`` as in ``DTUMVS``.
    """

    def __init__(self, scan_dir, n_views=3, n_depths=192, size=None, interval_scale=None):
        self.root = Path(scan_dir)
        for needed in ("images", "cams", "pair.txt"):
            if not (self.root / needed).exists():
                raise FileNotFoundError(f"{self.root / needed}: missing; expected MVSNet's test layout "
                                        "(images/, cams/, pair.txt)")
        check_mvs_sizes("MVSScan", n_views, n_depths, interval_scale)
        self.n_views, self.n_depths, self.size, self.interval_scale = n_views, n_depths, size, interval_scale
        self.pairs = read_pair_file(self.root / "pair.txt")
        if not self.pairs:
            raise ValueError(f"{self.root / 'pair.txt'}: lists no view, expected at least one")
        for ref_view, sources in self.pairs:
            if len(sources) < n_views - 1:
                raise ValueError(f"{self.root / 'pair.txt'}: view {ref_view} has {len(sources)} source views, "
                                 f"expected >= n_views - 1 = {n_views - 1}")
        views = sorted({v for ref, sources in self.pairs for v in (ref, *(s for s, _ in sources[:n_views - 1]))})
        for view in views:  # every file pair.txt names exists, and every camera parses, before any sample is read
            self.image_path(view)
        self._cams = {view: read_cam_file(self.root / "cams" / f"{view:08d}_cam.txt") for view in views}

    def __len__(self):
        return len(self.pairs)

    def image_path(self, view):
        """``images/0000000V.jpg`` (or ``.png``) of view ``view``; FileNotFoundError naming both."""
        for suffix in (".jpg", ".png"):
            path = self.root / "images" / f"{view:08d}{suffix}"
            if path.is_file():
                return path
        raise FileNotFoundError(f"{self.root / 'images'}: no {view:08d}.jpg or .png")

    def __getitem__(self, index):
        from depthlib.geometry import scale_intrinsics

        ref_view, sources = self.pairs[index]
        view_ids = [ref_view] + [v for v, _ in sources[:self.n_views - 1]]
        images, intrinsics, extrinsics, cams = [], [], [], []
        for view in view_ids:
            path = self.image_path(view)
            image = Image.fromarray(read_image(path))  # errors name the file
            original = image.size  # (W, H)
            if self.size is not None:
                image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
            images.append(np.asarray(image, dtype=np.uint8))
            if images[-1].shape != images[0].shape:
                raise ValueError(f"{path} is {images[-1].shape[:2]}, expected {images[0].shape[:2]} like the "
                                 "reference image")
            height, width = images[-1].shape[:2]
            if height % 4 or width % 4:
                raise ValueError(f"{path}: image {height}x{width}, expected multiples of 4 (pass size=)")
            cam = self._cams[view]
            cams.append(cam)
            # K at the file's image size -> the (resized) image -> the depth map (a quarter)
            intrinsics.append(scale_intrinsics(cam["intrinsic"], width / original[0] / 4, height / original[1] / 4))
            extrinsics.append(cam["extrinsic"])
        views = view_tensors(images, intrinsics, extrinsics, cams[0], self.n_depths, self.interval_scale)
        return {**views, "view_ids": torch.tensor(view_ids)}
