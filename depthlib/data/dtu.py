"""DTU in MVSNet's training layout (cam.txt, pair.txt, PFM depth): writer and Dataset (chapter 01).

Layout (millimetres, like the real ``dtu_training`` download):
``Cameras/{view:08d}_cam.txt`` (real downloads: ``Cameras/train/``; K at depth-map resolution),
``Cameras/pair.txt`` (shared by all scans), ``Rectified/scan{N}_train/rect_{view+1:03d}_{light}_r5000.png``,
``Depths/scan{N}_train/depth_map_{view:04d}.pfm`` (image size / 4, 0 = invalid),
``Depths/scan{N}_train/depth_visual_{view:04d}.png`` (0 invalid, > 10 valid), ``lists/{split}.txt``.
"""
__all__ = ["DTU_TRAIN_SCANS", "DTU_VAL_SCANS", "DTU_TEST_SCANS", "view_selection_scores", "write_dtu_like",
           "DTUMVS", "plane_spacing", "check_mvs_sizes", "scan_name", "depth_visual", "view_tensors"]

import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..geometry import projection_matrix
from .io import read_cam_file, read_image, read_pair_file, read_pfm, write_cam_file, write_pair_file, write_pfm

# MVSNet's published DTU split (lists/dtu/train.txt, val.txt, test.txt of MVSNet / MVSNet_pytorch).
DTU_TRAIN_SCANS = tuple(f"scan{i}" for i in (
    2, 6, 7, 8, 14, 16, 18, 19, 20, 22, 30, 31, 36, 39, 41, 42, 44, 45, 46, 47, 50, 51, 52, 53, 55, 57, 58, 60,
    61, 63, 64, 65, 68, 69, 70, 71, 72, 74, 76, 83, 84, 85, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99,
    100, 101, 102, 103, 104, 105, 107, 108, 109, 111, 112, 113, 115, 116, 119, 120, 121, 122, 123, 124, 125,
    126, 127, 128))
DTU_VAL_SCANS = tuple(f"scan{i}" for i in (3, 5, 17, 21, 28, 35, 37, 38, 40, 43, 56, 59, 66, 67, 82, 86, 106, 117))
DTU_TEST_SCANS = tuple(f"scan{i}" for i in (
    1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118))
_BUILTIN_SPLITS = {"train": DTU_TRAIN_SCANS, "val": DTU_VAL_SCANS, "test": DTU_TEST_SCANS}
_DTU_DEPTH_NUM = 192  # planes that DTU's depth_interval (2.5 mm) was chosen for: 425 + 191 x 2.5 = 902.5 mm


def view_selection_scores(depths, K, extrinsics, theta0=5.0, sigma1=1.0, sigma2=10.0, rel_tol=0.01):
    """MVSNet's view-selection score s(r, v) = sum over points p of G(theta_rv(p)).

    Points p are the valid pixels of the reference depth map that the source view sees (its
    projected depth agrees with the bilinearly sampled source depth map within ``rel_tol``); theta is the angle
    (degrees) between the two viewing rays at p; G = exp(-(theta - theta0)^2 / (2 sigma1^2)) for
    theta <= theta0, else exp(-(theta - theta0)^2 / (2 sigma2^2)).
    Args: depths (V, h, w) z-depth (0 = invalid); K (3, 3) at depth resolution; extrinsics (V, 4, 4).
    Returns: (V, V) float64 scores, row = reference view, zero diagonal.
    """
    depths, K, extrinsics = np.asarray(depths, np.float64), np.asarray(K, np.float64), np.asarray(extrinsics)
    if depths.ndim != 3 or extrinsics.shape != (len(depths), 4, 4) or K.shape != (3, 3):
        raise ValueError(f"view_selection_scores: depths {depths.shape}, K {K.shape}, extrinsics "
                         f"{extrinsics.shape}; expected (V, h, w), (3, 3), (V, 4, 4)")
    n_views, height, width = depths.shape
    rotations, translations = extrinsics[:, :3, :3], extrinsics[:, :3, 3]
    centres = -np.einsum("vji,vj->vi", rotations, translations)  # C = -R^T t
    rows, cols = np.mgrid[0:height, 0:width]
    rays = np.linalg.inv(K) @ np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)])  # K^-1 [u, v, 1]
    scores = np.zeros((n_views, n_views))
    for ref in range(n_views):
        valid = depths[ref].ravel() > 0
        points_cam = rays[:, valid] * depths[ref].ravel()[valid]
        points = rotations[ref].T @ (points_cam - translations[ref][:, None])  # world, (3, N)
        for src in range(n_views):
            if src == ref:
                continue
            in_src = rotations[src] @ points + translations[src][:, None]
            z = in_src[2]
            seen, src_depth = _sample_depth(depths[src], K @ in_src)
            seen &= np.abs(src_depth - z) <= rel_tol * z
            to_ref = centres[ref][:, None] - points[:, seen]
            to_src = centres[src][:, None] - points[:, seen]
            cosine = (to_ref * to_src).sum(0) / (np.linalg.norm(to_ref, axis=0) * np.linalg.norm(to_src, axis=0))
            theta = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
            sigma = np.where(theta <= theta0, sigma1, sigma2)
            scores[ref, src] = np.exp(-((theta - theta0) ** 2) / (2 * sigma ** 2)).sum()
    return scores


def _sample_depth(depth, pixels):
    """Bilinear depth at projected points (3, N) = K @ X; valid where z > 0 and all 4 neighbours are > 0."""
    import torch

    from depthlib.geometry import bilinear_sample

    z = pixels[2]
    uv = np.where(z > 0, pixels[:2] / np.where(z > 0, z, 1.0), np.nan)
    samples, complete = bilinear_sample(torch.from_numpy(np.ascontiguousarray(depth, np.float64))[None, None],
                                        torch.from_numpy(uv)[None])
    return complete[0, 0].numpy(), samples[0, 0].numpy()


def _ranked_pairs(scores, top_k=10):
    """pair.txt entries: for each reference view, the other views by decreasing score (top_k kept)."""
    pairs = []
    for ref in range(len(scores)):
        others = sorted((v for v in range(len(scores)) if v != ref), key=lambda v: (-scores[ref, v], v))
        pairs.append((ref, [(v, round(float(scores[ref, v]), 2)) for v in others[:top_k]]))
    return pairs


def depth_visual(depth):
    """8-bit visualisation of a depth map: 0 where invalid, 20..255 (near..far) where valid."""
    valid = depth > 0
    if not valid.any():
        return np.zeros(depth.shape, np.uint8)
    low, high = depth[valid].min(), depth[valid].max()
    scaled = (depth - low) / max(high - low, 1e-12)
    return np.where(valid, np.round(20 + 235 * scaled), 0).astype(np.uint8)


def view_tensors(images, intrinsics, extrinsics, ref_cam: dict, n_depths: int, interval_scale=None) -> dict:
    """A multi-view sample's float32 tensors, reference view first.

    images: V (H, W, 3) uint8 arrays; intrinsics: V (3, 3) at the depth maps' resolution; extrinsics:
    V (4, 4) world->camera; ref_cam: the reference's camera file (``read_cam_file``). Returns ``imgs``
    (V, 3, H, W) in [0, 1], ``proj_matrices`` (V, 4, 4) = [[K @ [R|t]], [0, 0, 0, 1]], ``intrinsics``,
    ``extrinsics``, ``depth_values`` (D,) from the reference's depth_min, ``depth_interval`` (see
    ``plane_spacing``), in the camera files' unit (mm for DTU).
    """
    intrinsics, extrinsics = np.stack(intrinsics), np.stack(extrinsics)
    depth_interval = plane_spacing(ref_cam, n_depths, interval_scale)
    depth_values = ref_cam["depth_min"] + depth_interval * np.arange(n_depths)
    return {"imgs": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0,
            "proj_matrices": torch.from_numpy(projection_matrix(intrinsics, extrinsics)).float(),
            "intrinsics": torch.from_numpy(intrinsics).float(),
            "extrinsics": torch.from_numpy(extrinsics).float(),
            "depth_values": torch.from_numpy(depth_values).float(),
            "depth_interval": torch.tensor(depth_interval, dtype=torch.float32)}


def dtu_splits(scans, n_test=None):
    """The last ``n_test`` scans (None: a fifth, at least one) -> test and val, the rest -> train; one
    scan (or ``n_test`` 0) -> that list for all three."""
    scans = list(scans)
    if n_test is None:
        n_test = max(1, len(scans) // 5) if len(scans) > 1 else 0
    if not 0 <= n_test < max(len(scans), 1):
        raise ValueError(f"dtu_splits: {n_test} test scans of {len(scans)}, expected fewer test scans than scans")
    if n_test == 0:
        return {"train": scans, "val": scans, "test": scans}
    return {"train": scans[:-n_test], "val": scans[-n_test:], "test": scans[-n_test:]}


def scan_name(scan):
    """``12`` or ``"scan12"`` -> ``"scan12"`` (DTU's folder name); ValueError for anything else."""
    name = f"scan{scan}" if isinstance(scan, (int, np.integer)) else str(scan)
    if not re.fullmatch(r"scan\d+", name):
        raise ValueError(f"scan {scan!r}: expected an int or a name like 'scan12'")
    return name


def plane_spacing(cam: dict, n_depths: int, interval_scale=None) -> float:
    """The depth interval of ``n_depths`` planes for a camera file's depth range (millimetres).

    ``interval_scale`` None: n_depths planes from the first to the last of the file's planes (its
    ``depth_num``, else DTU's 192); a number: the file's ``depth_interval`` times it (MVSNet's
    ``interval_scale``, e.g. 1.06 with 192 planes)."""
    if interval_scale is None:
        depth_num = cam["depth_num"] or _DTU_DEPTH_NUM
        return cam["depth_interval"] * (depth_num - 1) / max(n_depths - 1, 1)
    return cam["depth_interval"] * float(interval_scale)


def check_mvs_sizes(owner, n_views, n_depths, interval_scale):
    """Views and planes: positive ints; interval_scale: None or a finite positive number."""
    for name, value in (("n_views", n_views), ("n_depths", n_depths)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name}={value!r}, expected a positive integer")
    if interval_scale is not None and not (isinstance(interval_scale, (int, float, np.floating))
                                           and math.isfinite(interval_scale) and interval_scale > 0):
        raise ValueError(f"{owner}: interval_scale={interval_scale!r}, expected None or a finite positive number "
                         "(a negative one sweeps planes towards negative depths)")


def _write_scan(job):
    """Render one scan and write its images and depth files; returns what the shared files need."""
    root, scan_id, seed, n_views, height, width, n_lights, units_per_metre = job
    from depthlib.data.scenes import object_scan  # lazy: the renderer is only needed to write

    # one camera rig (seeded `seed`) for every scan: DTU's robot arm, one Cameras/ folder
    scan = object_scan(seed * 10_000 + scan_id, n_views, height, width, n_lights=n_lights, camera_seed=seed)
    depths = scan["depths"] * units_per_metre
    image_dir, depth_dir = root / f"Rectified/scan{scan_id}_train", root / f"Depths/scan{scan_id}_train"
    image_dir.mkdir(exist_ok=True)
    depth_dir.mkdir(exist_ok=True)
    for view in range(n_views):
        for light in range(n_lights):
            Image.fromarray(scan["images"][view, light]).save(image_dir / f"rect_{view + 1:03d}_{light}_r5000.png")
        write_pfm(depth_dir / f"depth_map_{view:04d}.pfm", depths[view].astype(np.float32))
        Image.fromarray(depth_visual(depths[view])).save(depth_dir / f"depth_visual_{view:04d}.png")
    return {"K": scan["K"], "K_depth": scan["K_depth"], "extrinsics": scan["extrinsics"],
            "scores": view_selection_scores(scan["depths"], scan["K_depth"], scan["extrinsics"]),  # metres
            "near": scan["depth_range"][0] * units_per_metre, "far": scan["depth_range"][1] * units_per_metre}


def write_dtu_like(root, n_scans, n_views=12, height=128, width=160, n_lights=7, seed=0, scan_ids=None,
                   splits=None, units_per_metre=1000.0, workers=1):
    """Render DTU-like object scans and write them in MVSNet's training layout (see the module doc).

    Scan N shows scene ``seed * 10000 + N``; all scans share one camera rig (seeded ``seed``) and one
    K, as DTU's robot arm does. Depths, translations and the depth range are in scene units
    (``units_per_metre=1000``: millimetres, like DTU). The cam files' depth line is
    "depth_min depth_interval" whose 192 planes (0..191) cover all scans, like DTU's "425 2.5".
    ``splits``: dict split -> scan ids (default: last fifth -> val and test). ``workers`` > 1 renders
    scans in forked processes (same files). Returns ``root``.
    """
    scan_ids = list(range(1, n_scans + 1)) if scan_ids is None else [int(s) for s in scan_ids]
    if len(scan_ids) != n_scans or n_scans < 1 or n_views < 2 or n_lights < 1:
        raise ValueError(f"write_dtu_like: n_scans={n_scans} (scan_ids {scan_ids}), n_views={n_views}, "
                         f"n_lights={n_lights}; expected n_scans >= 1 ids, n_views >= 2, n_lights >= 1")
    if height % 4 or width % 4:
        raise ValueError(f"write_dtu_like: image size {height}x{width}, expected multiples of 4 "
                         "(depth maps are a quarter of the image size)")
    root = Path(root)
    for folder in ("Cameras", "Rectified", "Depths", "lists"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(root, scan_id, seed, n_views, height, width, n_lights, units_per_metre) for scan_id in scan_ids]
    from depthlib.data.scenes import parallel_map

    scans = list(parallel_map(_write_scan, [(job,) for job in jobs], workers))
    rig = scans[0]
    if any(not np.allclose(s["extrinsics"], rig["extrinsics"]) or not np.allclose(s["K"], rig["K"]) for s in scans):
        raise RuntimeError("object_scan gave different cameras for two scans; DTU needs one rig")
    near, far = min(s["near"] for s in scans), max(s["far"] for s in scans)
    margin = 0.02 * (far - near)
    depth_min = math.floor(near - margin)
    depth_interval = (far + margin - depth_min) / (_DTU_DEPTH_NUM - 1)  # planes 0..191 span the range
    for view in range(n_views):
        extrinsic = rig["extrinsics"][view].copy()
        extrinsic[:3, 3] *= units_per_metre
        write_cam_file(root / f"Cameras/{view:08d}_cam.txt", extrinsic, rig["K_depth"], depth_min, depth_interval)
    write_pair_file(root / "Cameras/pair.txt", _ranked_pairs(sum(s["scores"] for s in scans)))
    splits = dtu_splits(scan_ids) if splits is None else splits
    for split in ("train", "val", "test"):
        names = [scan_name(s) for s in splits.get(split, [])]
        (root / f"lists/{split}.txt").write_text("".join(name + "\n" for name in names), encoding="utf-8")
    return root


class DTUMVS(Dataset):
    """Multi-view samples from MVSNet's DTU training layout (real or written by ``write_dtu_like``).

    One sample per (scan, light, reference view) with the first ``n_views - 1`` source views of
    pair.txt, as MVSNet_pytorch. Scans: ``scans``, else ``root/lists/{split}.txt``, else MVSNet's
    published split. Lights: all on disk (train) or the middle one (3 for DTU; val / test).
    ``interval_scale=None`` spreads ``n_depths`` planes from the first to the last of the cam file's
    planes (depth_num, else 192); a number multiplies the file's interval (MVSNet: 1.06 with 192 planes).
    Items: imgs [V, 3, H, W] in [0, 1]; proj_matrices, extrinsics [V, 4, 4]; intrinsics [V, 3, 3] (at
    depth-map resolution); depth, mask [1, h, w] (scene units: mm for DTU); depth_values [D];
    depth_interval (scalar); scan (str); view_ids [V]; light (int).
    """

    def __init__(self, root, split="train", n_views=3, n_depths=192, interval_scale=None, scans=None,
                 lights=None):
        if split not in _BUILTIN_SPLITS:
            raise ValueError(f"DTUMVS: split {split!r}, expected 'train', 'val' or 'test'")
        check_mvs_sizes("DTUMVS", n_views, n_depths, interval_scale)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such DTU folder (expected Cameras/, Rectified/, Depths/)")
        self.split, self.n_views, self.n_depths, self.interval_scale = split, n_views, n_depths, interval_scale
        listed = [(s, "scans=") for s in scans] if scans is not None else self._listed_scans()
        self.scans = [scan_name(s) for s, _ in listed]
        self._origin = {scan_name(s): origin for s, origin in listed}  # where each scan was named
        if not self.scans:
            where = "scans=[]" if scans is not None else self.root / "lists" / f"{split}.txt"
            raise ValueError(f"{where}: no scans; the {split} split is empty")
        train_cams = self.root / "Cameras" / "train"
        self.cam_dir = train_cams if train_cams.is_dir() else self.root / "Cameras"
        self.pairs = read_pair_file(self.root / "Cameras" / "pair.txt")
        if not self.pairs:
            raise ValueError(f"{self.root / 'Cameras' / 'pair.txt'}: lists no view, expected at least one")
        self.metas = self._build_metas(lights)
        self._cams = {}
        self._check_files()

    def _listed_scans(self):
        """[(scan, where it was named)] from lists/{split}.txt, else MVSNet's published split."""
        list_file = self.root / "lists" / f"{self.split}.txt"
        if list_file.is_file():
            lines = list_file.read_text(encoding="utf-8").splitlines()
            return [(line.strip(), f"line {n} of {list_file}") for n, line in enumerate(lines, 1) if line.strip()]
        return [(scan, f"MVSNet's published {self.split} split") for scan in _BUILTIN_SPLITS[self.split]]

    def _check_files(self):
        """Every file the samples name exists (images, reference depth maps and their visual masks), and
        every camera parses: checked once when the set is built, not when a sample happens to be read."""
        listings = {}
        for scan, light, ref_view, src_views in self.metas:
            rect, depths = self.root / "Rectified" / f"{scan}_train", self.root / "Depths" / f"{scan}_train"
            names = [(rect, f"rect_{view + 1:03d}_{light}_r5000.png") for view in [ref_view, *src_views]]
            names += [(depths, f"depth_map_{ref_view:04d}.pfm"), (depths, f"depth_visual_{ref_view:04d}.png")]
            for folder, name in names:
                if folder not in listings:
                    listings[folder] = set(os.listdir(folder))
                if name not in listings[folder]:
                    raise FileNotFoundError(f"{folder / name}: no such file (scan {scan} from {self._origin[scan]}, "
                                            f"light {light}, reference view {ref_view} of "
                                            f"{self.root / 'Cameras' / 'pair.txt'})")
        for view in sorted({v for _, _, ref, src in self.metas for v in (ref, *src)}):
            self.camera(view)

    def describe(self, index) -> str:
        """Where sample ``index`` comes from: scan, light, views and the list line that named the scan."""
        scan, light, ref_view, src_views = self.metas[index]
        return (f"{scan} light {light} views {[ref_view, *src_views]} ({self.root / 'Depths' / f'{scan}_train'}"
                f"/depth_map_{ref_view:04d}.pfm; {scan} from {self._origin[scan]})")

    def _lights_on_disk(self, scan):
        folder = self.root / "Rectified" / f"{scan}_train"
        pattern = re.compile(rf"rect_{self.pairs[0][0] + 1:03d}_(\d+)_r5000\.png")
        found = sorted(int(m.group(1)) for m in map(pattern.fullmatch, (p.name for p in folder.iterdir())) if m)
        if not found:
            raise FileNotFoundError(f"{folder}: no rect_{self.pairs[0][0] + 1:03d}_<light>_r5000.png image "
                                    "(expected one per light)")
        return found

    def _build_metas(self, lights):
        metas = []
        for scan in self.scans:
            for folder in (self.root / "Rectified" / f"{scan}_train", self.root / "Depths" / f"{scan}_train"):
                if not folder.is_dir():
                    raise FileNotFoundError(f"{folder}: no such scan folder (scan {scan}, split {self.split}, "
                                            f"from {self._origin[scan]})")
            scan_lights = lights
            if scan_lights is None:
                found = self._lights_on_disk(scan) if self.pairs else []
                middle = [3] if 3 in found else [found[len(found) // 2]] if found else []  # DTU: light 3
                scan_lights = found if self.split == "train" else middle
            for light in scan_lights:
                for ref_view, sources in self.pairs:
                    if len(sources) < self.n_views - 1:
                        raise ValueError(f"{self.root / 'Cameras/pair.txt'}: scan {scan} view {ref_view} has "
                                         f"{len(sources)} source views, expected >= n_views - 1 = {self.n_views - 1}")
                    metas.append((scan, int(light), ref_view, [v for v, _ in sources[:self.n_views - 1]]))
        return metas

    def __len__(self):
        return len(self.metas)

    def camera(self, view):
        """The cam.txt of ``view`` (read once): extrinsic, intrinsic, depth range."""
        if view not in self._cams:
            self._cams[view] = read_cam_file(self.cam_dir / f"{view:08d}_cam.txt")
        return self._cams[view]

    def _reference_depth(self, scan, view, image_path, image_shape):
        depth_path = self.root / "Depths" / f"{scan}_train" / f"depth_map_{view:04d}.pfm"
        visual_path = depth_path.with_name(f"depth_visual_{view:04d}.png")
        depth, _ = read_pfm(depth_path)
        if depth.ndim != 2 or (depth.shape[0] * 4, depth.shape[1] * 4) != image_shape:
            raise ValueError(f"{depth_path} is {depth.shape} but {image_path} is {image_shape}; expected the "
                             "depth map to be a quarter of the image size")
        if not visual_path.is_file():
            raise FileNotFoundError(f"{visual_path}: no such file")
        visual = read_image(visual_path)[..., 0]  # a grey PNG: any channel; errors name the file
        if visual.shape != depth.shape:
            raise ValueError(f"{visual_path} is {visual.shape} but {depth_path} is {depth.shape}; expected equal")
        depth = torch.from_numpy(depth)[None]
        return depth, torch.from_numpy(visual > 10)[None] & (depth > 0)

    def __getitem__(self, index):
        scan, light, ref_view, src_views = self.metas[index]
        view_ids = [ref_view] + src_views
        images, intrinsics, extrinsics = [], [], []
        for view in view_ids:
            path = self.root / "Rectified" / f"{scan}_train" / f"rect_{view + 1:03d}_{light}_r5000.png"
            images.append(read_image(path))
            if images[-1].shape != images[0].shape:
                raise ValueError(f"{path} is {images[-1].shape[:2]}, expected {images[0].shape[:2]} like the "
                                 "reference image")
            cam = self.camera(view)
            intrinsics.append(cam["intrinsic"])
            extrinsics.append(cam["extrinsic"])
        ref_path = self.root / "Rectified" / f"{scan}_train" / f"rect_{ref_view + 1:03d}_{light}_r5000.png"
        depth, mask = self._reference_depth(scan, ref_view, ref_path, images[0].shape[:2])
        views = view_tensors(images, intrinsics, extrinsics, self.camera(ref_view), self.n_depths,
                             self.interval_scale)
        return {**views, "depth": depth, "mask": mask, "scan": scan, "view_ids": torch.tensor(view_ids),
                "light": light}
