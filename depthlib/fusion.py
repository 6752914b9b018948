"""Point clouds from depth maps: photometric and geometric filters, fusion, accuracy / completeness (chapter 10);
PLY files (``write_ply``, ``read_ply``) and the true surface (``surface_points``) are re-exported from ``depthlib.data``."""
from __future__ import annotations

__all__ = ["photometric_mask", "geometric_mask", "fuse_depth_maps", "fuse_scan", "write_ply", "read_ply",
           "nearest_distances", "accuracy_completeness", "voxel_downsample", "surface_points"]

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# re-exported, as chapter 10 uses them: PLY files live with the other formats, the ground-truth
# surface sampler with the renderer
from depthlib.data.io import as_point_array, read_ply, write_ply
from depthlib.data.scenes import surface_points, voxel_downsample
from depthlib.geometry import (backproject, bilinear_sample, camera_to_world, check_shape, depth_to_points,
                               full_precision, pixel_grid, project, world_to_camera)

# Conventions: as depthlib.geometry (OpenCV camera frame, extrinsic world->camera, integer pixel
# coordinates are pixel centres, z-depth). Depth maps are torch (V, 1, H, W) float in scene units
# (metres for the renderer, millimetres for DTU), 0 = no depth; K is at the depth-map resolution.
# Point clouds are NumPy (N, 3) float32 in the same units; colours are (N, 3) uint8 RGB.


def photometric_mask(confidence: torch.Tensor, threshold: float = 0.8) -> torch.Tensor:
    """Pixels whose photometric confidence (MVSNet's probability mass) exceeds ``threshold``.

    confidence: any shape, e.g. (V, 1, H, W) in [0, 1]. Returns a bool tensor of the same shape.

    Example:
        >>> photometric_mask(torch.tensor([0.5, 0.8, 0.9])).tolist()
        [False, False, True]
    """
    return torch.as_tensor(confidence) > threshold


@full_precision
def geometric_mask(ref_depth, ref_K, ref_E, src_depths, src_Ks, src_Es, pixel_threshold: float = 1.0,
                   depth_threshold: float = 0.01, min_views: int = 3):
    """MVSNet's geometric consistency of a reference depth map with S source depth maps.

    Each reference pixel p with depth d goes to the source view, picks up the source depth there
    (bilinear) and comes back: p' with depth d'. The pair is consistent where |p' - p| < pixel_threshold
    (pixels) and |d' - d| / d < depth_threshold.
    Args:
        ref_depth: (1, 1, H, W); ref_K (1, 3, 3); ref_E (1, 4, 4) world->camera.
        src_depths: (S, 1, h, w); src_Ks (S, 3, 3); src_Es (S, 4, 4). Depth 0 = none.
        min_views: sources a pixel must agree with (0 turns the filter off).
    Returns:
        mask (1, 1, H, W) bool (valid and consistent with >= min_views sources); fused_depth
        (1, 1, H, W), the mean of d and the consistent d' (MVSNet's average); consistent (S, 1, H, W) bool.
    """
    ref_depth, ref_K, ref_E = (torch.as_tensor(x).float() for x in (ref_depth, ref_K, ref_E))
    src_depths, src_Ks, src_Es = (torch.as_tensor(x).float() for x in (src_depths, src_Ks, src_Es))
    check_shape(ref_depth.dim() == 4 and ref_depth.shape[:2] == (1, 1), "ref_depth", ref_depth, "(1, 1, H, W)")
    check_shape(tuple(ref_K.shape) == (1, 3, 3), "ref_K", ref_K, "(1, 3, 3)")
    check_shape(tuple(ref_E.shape) == (1, 4, 4), "ref_E", ref_E, "(1, 4, 4)")
    check_shape(src_depths.dim() == 4 and src_depths.shape[1] == 1 and src_depths.shape[0] >= 1
           and min(src_depths.shape[-2:]) >= 2, "src_depths", src_depths, "(S, 1, h, w) with S >= 1, h, w >= 2")
    n_src = src_depths.shape[0]
    check_shape(tuple(src_Ks.shape) == (n_src, 3, 3), "src_Ks", src_Ks, f"({n_src}, 3, 3) like src_depths")
    check_shape(tuple(src_Es.shape) == (n_src, 4, 4), "src_Es", src_Es, f"({n_src}, 4, 4) like src_depths")
    height, width = ref_depth.shape[-2:]
    # reference pixel -> world -> source camera -> source pixel (u_s, v_s), where the source depth is sampled
    world = camera_to_world(backproject(ref_depth, ref_K), ref_E).expand(n_src, -1, -1, -1)
    uv_src, _ = project(world_to_camera(world, src_Es), src_Ks)
    src_depth = bilinear_sample(src_depths, uv_src)[0]                             # (S, 1, H, W)
    # back: X_s = d_s K_s^-1 [u_s, v_s, 1] -> world -> reference camera -> (p', d')
    homogeneous = torch.cat([torch.nan_to_num(uv_src), torch.ones_like(src_depth)], 1).reshape(n_src, 3, -1)
    back = (torch.linalg.inv(src_Ks) @ homogeneous) * src_depth.reshape(n_src, 1, -1)
    back = world_to_camera(camera_to_world(back, src_Es), ref_E.expand(n_src, -1, -1))
    uv_back, depth_back = project(back, ref_K.expand(n_src, -1, -1))
    pixels = pixel_grid(height, width, ref_depth.device)[:2].reshape(2, height, width)  # [u, v] of each pixel
    pixel_error = torch.linalg.vector_norm(uv_back.reshape(n_src, 2, height, width) - pixels, dim=1, keepdim=True)
    depth_back = depth_back.reshape(n_src, 1, height, width)
    relative_error = (depth_back - ref_depth).abs() / ref_depth.clamp(min=1e-12)
    valid = (ref_depth > 0) & (src_depth > 0)
    consistent = valid & (pixel_error < pixel_threshold) & (relative_error < depth_threshold)  # NaN compares False
    count = consistent.sum(0, keepdim=True)
    fused_depth = (ref_depth + torch.where(consistent, depth_back, 0).sum(0, keepdim=True)) / (count + 1)
    return (ref_depth > 0) & (count >= min_views), fused_depth, consistent


def _pair_list(pairs, n_views: int, min_views: int):
    """[(ref, [src, ...])] from pair-file entries ([(ref, [(src, score), ...])]) or plain lists; checked."""
    if pairs is None:
        pairs = [(ref, [v for v in range(n_views) if v != ref]) for ref in range(n_views)]
    checked = []
    for ref, sources in pairs:
        sources = [int(s[0]) if isinstance(s, (tuple, list)) else int(s) for s in sources]
        for view in [int(ref), *sources]:
            if not 0 <= view < n_views:
                raise ValueError(f"pairs: view {view} (reference {ref}) is out of range, expected 0..{n_views - 1} "
                                 f"for {n_views} depth maps")
        if int(ref) in sources:
            raise ValueError(f"pairs: reference view {ref} lists itself as a source, expected other views")
        if len(sources) < max(min_views, 1):
            raise ValueError(f"pairs: reference view {ref} has {len(sources)} source views, expected at least one "
                             f"and min_views={min_views} (else no pixel could be kept)")
        checked.append((int(ref), sources))
    return checked


def _checked_images(images, n_views: int, height: int, width: int) -> torch.Tensor:
    images = torch.as_tensor(images)
    check_shape(images.dim() == 4 and images.shape[:2] == (n_views, 3), "images", images,
           f"({n_views}, 3, H_img, W_img) like depths")
    if images.shape[-2] % height or images.shape[-1] % width:
        raise ValueError(f"images have shape {tuple(images.shape)}, expected a whole multiple of the depth maps' "
                         f"{height}x{width} (MVSNet: 4x)")
    return images


def _colors_at_depth_resolution(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, k H, l W) uint8 or float in [0, 1] -> (3, H, W) uint8: the mean of each k x l block
    (pixel-centre exact: depth pixel u covers image pixels k u .. k u + k - 1)."""
    scale = 1.0 if image.dtype == torch.uint8 else 255.0
    pooled = F.avg_pool2d(image[None].float() * scale, (image.shape[-2] // height, image.shape[-1] // width))
    return pooled[0].round().clamp(0, 255).to(torch.uint8)


def fuse_depth_maps(depths, confidences, Ks, extrinsics, images=None, pairs=None, photometric_threshold: float = 0.8,
                    pixel_threshold: float = 1.0, depth_threshold: float = 0.01, min_views: int = 3):
    """Filter each reference depth map (photometric, then geometric) and fuse the survivors into one cloud.

    Args:
        depths: (V, 1, H, W) scene units, 0 = none. confidences: (V, 1, H, W) in [0, 1], or None (no
            photometric filter). Ks: (V, 3, 3) at depth resolution. extrinsics: (V, 4, 4) world->camera.
        images: (V, 3, kH, lW) uint8 (or float in [0, 1]) for the colours, or None. The filters run on
            the depth maps' device; confidences and cameras may be on another, the images anywhere.
        pairs: [(ref, [src, ...])] view indices (``read_pair_file`` entries work); None: every view is a
            reference with all the others as sources. Thresholds: see :func:`geometric_mask`.
    Returns:
        (points (N, 3) float32 world, colors (N, 3) uint8 or None, stats) with stats ``photometric``,
        ``geometric``, ``mask`` (V, 1, H, W) bool, ``fused_depth`` (V, 1, H, W), ``points_per_view`` (V,)
        and ``counts``: reference pixels in all, with depth, passing each filter, and kept.
    """
    _check_thresholds(photometric_threshold, pixel_threshold, depth_threshold, min_views)
    depths = torch.as_tensor(depths).float()
    # the cameras and confidences go where the depth maps are (a GPU's, straight from a network)
    Ks, extrinsics = (torch.as_tensor(x).float().to(depths.device) for x in (Ks, extrinsics))
    check_shape(depths.dim() == 4 and depths.shape[1] == 1, "depths", depths, "(V, 1, H, W)")
    n_views, _, height, width = depths.shape
    check_shape(tuple(Ks.shape) == (n_views, 3, 3), "Ks", Ks, f"({n_views}, 3, 3) like depths")
    check_shape(tuple(extrinsics.shape) == (n_views, 4, 4), "extrinsics", extrinsics, f"({n_views}, 4, 4) like depths")
    if confidences is None:
        confidences = torch.ones_like(depths)
    confidences = torch.as_tensor(confidences).to(depths.device)
    check_shape(confidences.shape == depths.shape, "confidences", confidences, f"{tuple(depths.shape)} like depths")
    images = None if images is None else _checked_images(images, n_views, height, width)
    stats = {name: torch.zeros_like(depths, dtype=torch.bool) for name in ("photometric", "geometric", "mask")}
    stats["fused_depth"], stats["points_per_view"] = torch.zeros_like(depths), np.zeros(n_views, np.int64)
    points, point_colors = [], []
    for ref, sources in _pair_list(pairs, n_views, min_views):
        one, src = slice(ref, ref + 1), torch.tensor(sources, dtype=torch.long, device=depths.device)
        geometric, fused_depth, _ = geometric_mask(depths[one], Ks[one], extrinsics[one], depths[src], Ks[src],
                                                   extrinsics[src], pixel_threshold, depth_threshold, min_views)
        photometric = photometric_mask(confidences[one], photometric_threshold) & (depths[one] > 0)
        keep = (photometric & geometric).reshape(-1)
        world = depth_to_points(fused_depth, Ks[one], extrinsics[one]).reshape(3, -1)
        points.append(world[:, keep].T)
        if images is not None:
            colors = _colors_at_depth_resolution(images[ref], height, width).reshape(3, -1)
            point_colors.append(colors[:, keep.to(colors.device)].T)  # images may stay on the CPU
        stats["photometric"][ref], stats["geometric"][ref] = photometric[0], geometric[0]
        stats["mask"][ref], stats["fused_depth"][ref] = keep.reshape(1, height, width), fused_depth[0]
        stats["points_per_view"][ref] = int(keep.sum())
    references = sorted({ref for ref, _ in _pair_list(pairs, n_views, min_views)})
    stats["counts"] = {"pixels": len(references) * height * width,
                       "with_depth": int((depths[references] > 0).sum()),
                       **{name: int(stats[name][references].sum()) for name in ("photometric", "geometric")},
                       "kept": int(stats["mask"].sum())}
    points = torch.cat(points).cpu().numpy() if points else np.zeros((0, 3), np.float32)
    colors = None if images is None else (torch.cat(point_colors).cpu().numpy() if point_colors
                                          else np.zeros((0, 3), np.uint8))
    return points, colors, stats


def _check_thresholds(photometric_threshold, pixel_threshold, depth_threshold, min_views) -> None:
    """Finite thresholds in their real ranges; min_views a non-negative int (0 turns the filter off)."""
    finite = all(np.isfinite(np.float64(x)) for x in (photometric_threshold, pixel_threshold, depth_threshold))
    if not finite or not 0 <= photometric_threshold < 1 or not pixel_threshold > 0 or not depth_threshold > 0 \
            or not isinstance(min_views, (int, np.integer)) or min_views < 0:
        raise ValueError(f"fusion thresholds: photometric {photometric_threshold!r}, pixel {pixel_threshold!r}, "
                         f"depth {depth_threshold!r}, min_views {min_views!r}; expected 0 <= photometric < 1 "
                         "(confidence > it is kept), pixel > 0, depth > 0 and an integer min_views >= 0")


def _read_view(folder: Path, depth_folder: str, view: int):
    from depthlib.data.io import read_cam_file, read_image, read_pfm

    paths = {"depth": folder / depth_folder / f"{view:08d}.pfm",
             "confidence": folder / "confidence" / f"{view:08d}.pfm", "cam": folder / "cams" / f"{view:08d}_cam.txt"}
    images = [folder / "images" / f"{view:08d}{suffix}" for suffix in (".png", ".jpg")]
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; expected one {name} file per view of pair.txt "
                                    "(the layout written by `python -m depthlib infer mvsnet`)")
    if not any(path.is_file() for path in images):
        raise FileNotFoundError(f"{images[0]}: no such file (nor .jpg); expected one image per view of pair.txt")
    depth, confidence = read_pfm(paths["depth"])[0], read_pfm(paths["confidence"])[0]
    if depth.ndim != 2 or confidence.shape != depth.shape:
        raise ValueError(f"{paths['confidence']} is {confidence.shape} but {paths['depth']} is {depth.shape}; "
                         "expected two (H, W) maps of the same size")
    cam = read_cam_file(paths["cam"])
    (cx, cy), (height, width) = cam["intrinsic"][:2, 2], depth.shape
    if not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5):
        raise ValueError(f"{paths['cam']}: principal point ({cx:g}, {cy:g}) lies outside the {width}x{height} "
                         f"depth map {paths['depth']}; expected K at the depth-map resolution")
    image = read_image(next(path for path in images if path.is_file()))
    return depth, confidence, cam, image


def fuse_scan(folder, depth_folder: str = "depth_est", **thresholds):
    """:func:`fuse_depth_maps` over a folder written by ``python -m depthlib infer mvsnet``.

    Reads ``pair.txt``, ``{depth_folder}/{view:08d}.pfm``, ``confidence/{view:08d}.pfm``,
    ``cams/{view:08d}_cam.txt`` (K at the depth-map resolution) and ``images/{view:08d}.png|jpg`` for
    every view that pair.txt names; ``thresholds``: those of :func:`fuse_depth_maps`.
    Returns (points, colors, stats) as :func:`fuse_depth_maps`, in the files' units; stats["views"]
    gives the view id of each index.
    """
    from depthlib.data.io import read_pair_file

    folder = Path(folder)
    pair_entries = read_pair_file(folder / "pair.txt")
    if not pair_entries:
        raise ValueError(f"{folder / 'pair.txt'}: lists no view, expected the views written by 'infer mvsnet'")
    views = sorted({ref for ref, _ in pair_entries} | {src for _, sources in pair_entries for src, _ in sources})
    index = {view: i for i, view in enumerate(views)}
    loaded = [_read_view(folder, depth_folder, view) for view in views]
    for view, (depth, _, _, image) in zip(views, loaded):
        if depth.shape != loaded[0][0].shape or image.shape != loaded[0][3].shape:
            raise ValueError(f"{folder}: view {view} has a {depth.shape} depth map and a {image.shape} image, "
                             f"expected {loaded[0][0].shape} and {loaded[0][3].shape} like view {views[0]}")
    depths, confidences, cams, images = zip(*loaded)
    pairs = [(index[ref], [index[src] for src, _ in sources]) for ref, sources in pair_entries]
    points, colors, stats = fuse_depth_maps(
        torch.from_numpy(np.stack(depths))[:, None], torch.from_numpy(np.stack(confidences))[:, None],
        np.stack([cam["intrinsic"] for cam in cams]), np.stack([cam["extrinsic"] for cam in cams]),
        torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), pairs, **thresholds)
    stats["views"] = views
    return points, colors, stats


# ----------------------------------------------------------------------------- evaluation


def nearest_distances(query, reference, method: str = "auto", block: int = 2048) -> np.ndarray:
    """Distance from each query point to its nearest reference point (exact), float64 (N,).

    query: (N, 3); reference: (M, 3), M >= 1; finite coordinates. ``method``: "kdtree" (scipy's cKDTree, O(N log M), one
    thread per torch thread), "cdist" (blocks of torch.cdist in float64, O(N M): small clouds only),
    or "auto" (kdtree when scipy is installed).
    """
    query = as_point_array(query, "query", finite=True).astype(np.float64)
    reference = as_point_array(reference, "reference", finite=True)
    reference = reference.astype(np.float64)
    if len(reference) == 0:
        raise ValueError("reference has shape (0, 3), expected at least one point")
    if method == "auto":
        try:
            import scipy.spatial  # noqa: F401
            method = "kdtree"
        except ImportError:
            method = "cdist"
            if len(query) * len(reference) > 1e10:
                warnings.warn(f"scipy is not installed, so nearest_distances compares all {len(query)} x "
                              f"{len(reference)} pairs (slow); `pip install scipy` for a KD-tree", stacklevel=2)
    if method == "kdtree":
        from scipy.spatial import cKDTree

        return cKDTree(reference).query(query, workers=torch.get_num_threads())[0]
    if method != "cdist":
        raise ValueError(f"method {method!r}, expected 'auto', 'kdtree' or 'cdist'")
    centre = reference.mean(0)  # centred float64 coordinates keep the |a|^2 - 2ab + |b|^2 expansion exact enough
    query, reference = torch.from_numpy(query - centre), torch.from_numpy(reference - centre)
    nearest = torch.full((len(query),), float("inf"), dtype=torch.float64)
    for start in range(0, len(query), block):
        rows = slice(start, start + block)
        for ref_start in range(0, len(reference), block):
            distance = torch.cdist(query[rows], reference[ref_start:ref_start + block]).amin(1)
            nearest[rows] = torch.minimum(nearest[rows], distance)
    return nearest.numpy()


def accuracy_completeness(pred_points, gt_points, max_dist=None, method: str = "auto") -> dict:
    """The DTU point-cloud metrics: accuracy = mean distance pred -> nearest gt point, completeness =
    mean distance gt -> nearest pred point, overall = their mean (scene units; lower is better).

    pred_points: (N, 3); gt_points: (M, 3); finite coordinates. ``max_dist``: distances above it are dropped before the
    means, as the DTU protocol does (20 mm there); ``accuracy_kept`` / ``completeness_kept`` give the
    fraction kept (a mean over nothing is NaN). ``method``: see :func:`nearest_distances`.

    Example:
        >>> accuracy_completeness(np.zeros((1, 3)), np.array([[0.0, 0, 0], [0, 0, 2]]))["completeness"]
        1.0
    """
    pred_points = as_point_array(pred_points, "pred_points", finite=True)
    gt_points = as_point_array(gt_points, "gt_points", finite=True)
    for name, cloud in (("pred_points", pred_points), ("gt_points", gt_points)):
        if len(cloud) == 0:
            raise ValueError(f"{name} has shape (0, 3), expected at least one point")
    result = {}
    for key, distance in (("accuracy", nearest_distances(pred_points, gt_points, method)),
                          ("completeness", nearest_distances(gt_points, pred_points, method))):
        kept = distance if max_dist is None else distance[distance <= max_dist]
        result[key] = float(kept.mean()) if len(kept) else float("nan")
        result[f"{key}_kept"] = len(kept) / len(distance)
    result["overall"] = (result["accuracy"] + result["completeness"]) / 2
    return result
