"""Depth accuracy metrics: the Eigen metrics, MVSNet's interval metrics, depth-edge regions, the Eigen crop
(chapters 06 and 09); ``evaluate`` and ``evaluate_mvsnet`` run them over whole datasets."""
from __future__ import annotations

__all__ = ["METRIC_NAMES", "depth_metrics", "less_k_interval", "mean_absolute_error", "EDGE_REGIONS",
           "depth_edge_regions", "edge_band_metrics", "edge_band_table", "eigen_crop", "evaluate", "evaluate_mvsnet",
           "interval_sums", "PooledIntervalMetrics", "metric_sums", "metrics_from_sums", "valid_depth"]

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from depthlib.geometry import scale_projection
from depthlib.losses import per_sample_scalar, valid_depth_mask
from depthlib.planesweep import plane_sweep_depth

# Conventions: depth maps in metres, any shape (B, 1, H, W) in practice. A pixel is valid where the
# optional bool mask is true and the ground truth is finite and > 0. Predictions are clamped below at
# MIN_PRED so every log stays finite; a NaN prediction is not masked out (it makes the error metrics
# NaN and counts as a miss in the deltas, as a broken model should). Sums run in float64.
METRIC_NAMES = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")
MIN_PRED = 1e-6  # metres


def valid_depth(pred: torch.Tensor, gt: torch.Tensor, mask) -> torch.Tensor:
    """Bool mask of valid pixels (shape of gt); ValueError on mismatched shapes."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} and gt {tuple(gt.shape)}, expected the same shape")
    if mask is not None and torch.broadcast_shapes(mask.shape, gt.shape) != gt.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected one that broadcasts to gt {tuple(gt.shape)}")
    return valid_depth_mask(gt, mask)


def _sum_dtype(device) -> torch.dtype:
    return torch.float32 if torch.device(device).type == "mps" else torch.float64  # MPS has no float64


def metric_sums(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The nine sums behind the Eigen metrics over the valid pixels: count, three delta counts,
    sum |e|/gt, sum e^2/gt, sum e^2, sum (log pred - log gt)^2, sum |log10 pred - log10 gt| (e = pred - gt)."""
    dtype = _sum_dtype(gt.device)
    pred = pred[valid].to(dtype).clamp(min=MIN_PRED)
    gt = gt[valid].to(dtype)
    ratio = torch.maximum(pred / gt, gt / pred)                     # max(pred/gt, gt/pred)
    error = pred - gt
    return torch.stack([
        torch.tensor(float(gt.numel()), dtype=dtype, device=gt.device),
        *[(ratio < 1.25 ** k).sum().to(dtype) for k in (1, 2, 3)],  # delta_k: ratio < 1.25^k
        (error.abs() / gt).sum(), (error ** 2 / gt).sum(), (error ** 2).sum(),
        ((torch.log(pred) - torch.log(gt)) ** 2).sum(), (torch.log10(pred) - torch.log10(gt)).abs().sum()])


def metrics_from_sums(sums) -> dict:
    """Turn ``metric_sums`` (summed over any number of batches) into the eight metrics."""
    count, d1, d2, d3, abs_rel, sq_rel, squared, squared_log, log10 = [float(s) for s in sums]
    if count == 0:
        raise ValueError("no valid pixel (mask & finite gt > 0 is empty): metrics are undefined")
    return {"delta1": d1 / count, "delta2": d2 / count, "delta3": d3 / count, "abs_rel": abs_rel / count,
            "sq_rel": sq_rel / count, "rmse": math.sqrt(squared / count),
            "rmse_log": math.sqrt(squared_log / count), "log10": log10 / count}


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, mask=None) -> dict:
    """The eight depth metrics of Eigen et al. (2014), pooled over all valid pixels of the batch.

    pred, gt: same shape, metres; mask: optional bool, broadcastable to gt. gt is in the denominators:
    delta_k = fraction with max(pred/gt, gt/pred) < 1.25^k; abs_rel = mean |pred - gt| / gt;
    sq_rel = mean (pred - gt)^2 / gt; rmse = sqrt(mean (pred - gt)^2); rmse_log = sqrt(mean
    (ln pred - ln gt)^2); log10 = mean |log10 pred - log10 gt|. Returns Python floats keyed by
    ``METRIC_NAMES``; ValueError if no pixel is valid.
    """
    return metrics_from_sums(metric_sums(pred, gt, valid_depth(pred, gt, mask)))


def interval_sums(pred: torch.Tensor, gt: torch.Tensor, mask, depth_interval, ks=(1, 3)) -> dict:
    """The sums behind MVSNet's metrics over the valid pixels, to add over batches and divide by ``n``:
    ``n`` (valid pixels), ``less_{k}`` (pixels with |pred - gt| <= k * depth_interval, for each k in
    ``ks``) and ``abs_error`` (sum of |pred - gt|, float64). Shapes and units as ``less_k_interval``."""
    valid = valid_depth(pred, gt, mask)
    interval = per_sample_scalar(depth_interval, gt, "depth_interval").expand_as(gt)[valid]
    dtype = _sum_dtype(gt.device)
    error = (pred[valid].to(dtype) - gt[valid].to(dtype)).abs()
    sums = {"n": float(valid.sum()), "abs_error": float(error.sum())}
    sums.update({f"less_{k}": float((error <= k * interval).sum()) for k in ks})
    return sums


def less_k_interval(pred: torch.Tensor, gt: torch.Tensor, mask, depth_interval, k: float) -> float:
    """Fraction of valid pixels with |pred - gt| <= k * depth_interval (MVSNet's less-one / less-three).

    pred, gt: (B, ...) in one depth unit (mm for DTU); mask: bool broadcastable to gt, or None;
    depth_interval: a positive number or (B,) tensor (per-sample plane spacing, gt's unit); k: e.g. 1 or 3.
    """
    sums = interval_sums(pred, gt, mask, depth_interval, ks=(k,))
    if not sums["n"]:
        raise ValueError("less_k_interval: no valid pixel (mask & finite gt > 0 is empty)")
    return sums[f"less_{k}"] / sums["n"]


def mean_absolute_error(pred: torch.Tensor, gt: torch.Tensor, mask=None) -> float:
    """Mean |pred - gt| over valid pixels, in the depth maps' unit (mm for DTU; MVSNet's depth error).
    Shapes as ``depth_metrics``."""
    sums = interval_sums(pred, gt, mask, 1.0, ks=())
    if not sums["n"]:
        raise ValueError("mean_absolute_error: no valid pixel (mask & finite gt > 0 is empty)")
    return sums["abs_error"] / sums["n"]


class PooledIntervalMetrics:
    """MVSNet's less-one, less-three and MAE pooled over every valid pixel of many batches, for several
    depth maps at once (``prefix`` names each: "" for the initial depth, "refined_", "band_", ...).

    ``add(prefix, pred, gt, mask, depth_interval)`` per batch; ``result()`` gives
    ``{prefix + "less_one" | "less_three" | "mae": value}`` for every prefix that saw a valid pixel.
    """

    def __init__(self):
        self.sums = {}

    def add(self, prefix: str, pred, gt, mask, depth_interval) -> None:
        """Add one batch: pred, gt, mask (B, H, W) or (B, 1, H, W), depth in gt's unit (mm for DTU);
        depth_interval a number or (B,) tensor in the same unit."""
        for key, value in interval_sums(pred.float(), gt, mask, depth_interval).items():
            self.sums[prefix + key] = self.sums.get(prefix + key, 0.0) + value

    def result(self) -> dict:
        """``{prefix + "less_one" | "less_three" | "mae": value}`` (mae in the depth unit)."""
        out = {}
        for key, n in self.sums.items():
            if key.endswith("n") and key[:-1] + "abs_error" in self.sums and n:
                prefix = key[:-1]
                out.update({prefix + "less_one": self.sums[prefix + "less_1"] / n,
                            prefix + "less_three": self.sums[prefix + "less_3"] / n,
                            prefix + "mae": self.sums[prefix + "abs_error"] / n})
        return out


EDGE_REGIONS = ("outline", "depth_edge", "flat")


def depth_edge_regions(gt: torch.Tensor, mask=None, depth_interval=1.0, threshold: float = 2.0,
                       radius: int = 1) -> dict:
    """Sort the valid pixels of a ground-truth depth map by their nearness to a depth discontinuity.

    A pixel's window is the (2 radius + 1) x (2 radius + 1) square around it (clipped at the image
    border: pixels outside the image do not count). A valid pixel (mask, finite gt > 0) is

    - ``"outline"`` when its window holds a pixel without ground truth: within ``radius`` pixels of
      an object's outline against the empty background (a dilation of the invalid pixels);
    - else ``"depth_edge"`` when the depths in its window span more than ``threshold`` depth
      intervals: max - min over the window, the morphological gradient (dilation minus erosion) of
      gt; one surface in front of another (a surface steeper than threshold / (2 radius)
      intervals per pixel counts as well);
    - else ``"flat"``.

    gt: (B, 1, H, W) or (B, H, W), one depth unit; mask: bool broadcastable to gt, or None;
    depth_interval: a positive number or (B,) tensor in gt's unit. Returns {name: bool mask of gt's
    shape} for the names of ``EDGE_REGIONS``: disjoint, their union the valid pixels. Chapter 09
    builds the same regions from scratch (radius 1, threshold 2).
    """
    if gt.dim() not in (3, 4) or (gt.dim() == 4 and gt.shape[1] != 1):
        raise ValueError(f"gt has shape {tuple(gt.shape)}, expected (B, 1, H, W) or (B, H, W)")
    if int(radius) != radius or radius < 1 or not threshold > 0:
        raise ValueError(f"radius={radius}, threshold={threshold}: expected an integer radius >= 1 "
                         "and a positive threshold (in depth intervals)")
    valid = valid_depth(gt, gt, mask)
    depth, valid4 = gt.reshape(-1, 1, *gt.shape[-2:]), valid.reshape(-1, 1, *gt.shape[-2:])
    interval = per_sample_scalar(depth_interval, depth, "depth_interval")
    window = dict(kernel_size=2 * radius + 1, stride=1, padding=radius)  # max_pool2d pads with -inf
    hidden = torch.full_like(depth, -math.inf)
    span = (F.max_pool2d(torch.where(valid4, depth, hidden), **window)
            + F.max_pool2d(torch.where(valid4, -depth, hidden), **window))      # max - min of valid gt
    near_hole = F.max_pool2d((~valid4).to(depth.dtype), **window) > 0
    steep = span > threshold * interval
    regions = {"outline": valid4 & near_hole, "depth_edge": valid4 & ~near_hole & steep,
               "flat": valid4 & ~near_hole & ~steep}
    return {name: region.reshape(gt.shape) for name, region in regions.items()}


def edge_band_metrics(pred: torch.Tensor, gt: torch.Tensor, mask, depth_interval, threshold: float = 2.0,
                      radius: int = 1) -> dict:
    """MVSNet's less-one, less-three and MAE inside the band around depth discontinuities and elsewhere.

    Regions from ``depth_edge_regions`` (same arguments): ``"band"`` = outline | depth_edge,
    ``"elsewhere"`` = flat, ``"all"`` = every valid pixel. Returns {region: {"less_one",
    "less_three", "mae", "share"}}: pooled over the region's pixels, MAE in gt's unit, share the
    region's fraction of the valid pixels; a region without pixels has NaN metrics and share 0.
    pred, gt: one shape, (B, 1, H, W) or (B, H, W).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} and gt {tuple(gt.shape)}, expected the same shape")
    parts = depth_edge_regions(gt, mask, depth_interval, threshold, radius)
    regions = {"band": parts["outline"] | parts["depth_edge"], "elsewhere": parts["flat"],
               "all": parts["outline"] | parts["depth_edge"] | parts["flat"]}
    total = max(int(regions["all"].sum()), 1)
    result = {}
    for name, region in regions.items():
        count = int(region.sum())
        if count == 0:
            result[name] = {"less_one": math.nan, "less_three": math.nan, "mae": math.nan, "share": 0.0}
            continue
        result[name] = {"less_one": less_k_interval(pred, gt, region, depth_interval, 1),
                        "less_three": less_k_interval(pred, gt, region, depth_interval, 3),
                        "mae": mean_absolute_error(pred, gt, region), "share": count / total}
    return result


def edge_band_table(results: dict, unit: str = "mm") -> str:
    """A text table of ``edge_band_metrics`` for several depth maps: rows region by region, a row per map.

    results: {map name: edge_band_metrics(...)}, e.g. {"initial": ..., "refined": ...}, all of one
    ground truth. Regions in the order all, band, elsewhere, each labelled with its share of the
    valid pixels; columns less-one, less-three and the MAE in ``unit``.
    """
    regions = ("all", "band", "elsewhere")
    if not results or any(set(regions) - set(result) for result in results.values()):
        raise ValueError(f"edge_band_table: results {list(results)}, expected at least one "
                         f"edge_band_metrics dict, each with the regions {regions}")
    lines = [f"{'region (share)':18s}{'depth':9s}{'less-one':>10s}{'less-three':>12s}{f'MAE ({unit})':>10s}"]
    for region in regions:
        label = f"{region} ({next(iter(results.values()))[region]['share']:.0%})"
        for name, result in results.items():
            row = result[region]
            lines.append(f"{label:18s}{name:9s}{row['less_one']:10.4f}{row['less_three']:12.4f}{row['mae']:10.2f}")
            label = ""
    return "\n".join(lines)


def eigen_crop(height: int, width: int, device=None) -> torch.Tensor:
    """Bool (H, W) mask of the Eigen et al. (2014) NYU evaluation region.

    At 480x640 it is rows 45:471, columns 41:601, the region used by the BTS and AdaBins evaluation
    scripts (``eval_mask[45:471, 41:601] = 1``); other sizes scale the bounds proportionally, rounded
    half up. (DenseDepth's ``evaluate`` reads its crop from ``eigen_test_crop.npy`` inside its test
    archive; code derived from it uses rows 20..459, columns 24..615, inclusive.)
    """
    if height < 1 or width < 1:
        raise ValueError(f"eigen_crop: size {height}x{width}, expected positive height and width")
    top, bottom = (math.floor(row * height / 480 + 0.5) for row in (45, 471))
    left, right = (math.floor(col * width / 640 + 0.5) for col in (41, 601))
    crop = torch.zeros(height, width, dtype=torch.bool, device=device)
    crop[top:bottom, left:right] = True
    return crop


def _predict(predict_fn, images: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    """predict_fn(images), averaged with the mirrored image's prediction mirrored back if flip_tta."""
    pred = predict_fn(images)
    if flip_tta:
        pred = 0.5 * (pred + predict_fn(images.flip(-1)).flip(-1))
    return pred


def evaluate(predict_fn, dataset, batch_size: int = 8, flip_tta: bool = True, crop: str | None = "eigen",
             device=None, max_depth: float = 10.0, min_depth: float = 1e-3) -> dict:
    """Eigen metrics of a depth predictor over a whole dataset (chapter 06).

    predict_fn: callable (or nn.Module, put in eval mode meanwhile) mapping images (B, 3, H, W) on
    ``device`` to metric depth (B, 1, H, W) at the dataset's resolution. dataset items: dicts with
    ``image`` [3, H, W], ``depth`` [1, H, W] metres, optional ``mask`` [1, H, W]. flip_tta averages the
    prediction with that of the mirrored image, mirrored back (as DenseDepth). Predictions are clipped
    to [min_depth, max_depth]; pixels count where mask, finite gt > 0 and (crop="eigen") ``eigen_crop``
    hold. Metrics are pooled over every such pixel of the set, as DenseDepth's ``evaluate`` does (BTS
    and AdaBins average per-image metrics instead). ``device``: where the images go; defaults to the module's parameters' device,
    and to the CPU for a plain callable (which may move them itself, as ``predict_depth`` does). The
    metrics are computed on the device the predictions come back on.
    """
    if crop not in ("eigen", None):
        raise ValueError(f"evaluate: crop={crop!r}, expected 'eigen' or None")
    if not 0 < min_depth < max_depth or batch_size < 1:
        raise ValueError(f"evaluate: min_depth={min_depth}, max_depth={max_depth}, batch_size={batch_size}; "
                         "expected 0 < min_depth < max_depth and batch_size >= 1")
    module = predict_fn if isinstance(predict_fn, torch.nn.Module) else None
    if device is None:
        device = next(module.parameters(), torch.empty(0)).device if module is not None else "cpu"
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    sums = torch.zeros(len(METRIC_NAMES) + 1, dtype=torch.float64)
    try:
        with torch.inference_mode():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                images, gt = batch["image"].to(device), batch["depth"].to(device)
                pred = _predict(predict_fn, images, flip_tta)
                gt = gt.to(pred.device)  # a callable may return depth on its model's device, not ours
                if pred.shape != gt.shape:
                    raise ValueError(f"predict_fn returned shape {tuple(pred.shape)} for images {tuple(images.shape)}; "
                                     f"expected metric depth {tuple(gt.shape)} at the dataset's resolution")
                valid = torch.ones_like(gt, dtype=torch.bool) if "mask" not in batch else batch["mask"].to(gt.device)
                if crop == "eigen":
                    valid = valid & eigen_crop(*gt.shape[-2:], device=gt.device)
                sums += metric_sums(pred.clamp(min_depth, max_depth), gt, valid_depth(pred, gt, valid)).cpu().double()
    finally:
        if was_training:
            module.train()
    return metrics_from_sums(sums)


@torch.no_grad()
def evaluate_mvsnet(model, dataset, batch_size: int = 4, device=None, baseline: bool = False,
                    baseline_kwargs=None, edge_band: bool = False) -> dict:
    """Less-one / less-three accuracy and MAE (scene units) over a ``DTUMVS``-like dataset (chapters 08, 09).

    Pooled over the valid pixels of all samples. Keys: ``less_one``, ``less_three``, ``mae`` for the
    initial depth; ``refined_less_one`` ... when the model refines; ``baseline_...`` for
    ``plane_sweep_depth`` at the same planes (K scaled to the image, cost pooled to the depth
    resolution) with ``baseline=True``. ``model=None`` evaluates the baseline alone.
    ``edge_band=True`` adds the same three inside the band around depth discontinuities and
    elsewhere (``depth_edge_regions`` with its defaults): ``band_less_one``, ``elsewhere_mae``,
    ``refined_band_less_one``, ... and ``band_share``.
    """
    if model is not None:
        first = next(model.parameters(), None)  # a model without parameters (a stand-in) runs on the CPU
        device = torch.device(device) if device else first.device if first is not None else torch.device("cpu")
        was_training = model.training
        model.eval()
    else:
        device = torch.device(device or "cpu")
    pooled, pixels = PooledIntervalMetrics(), {"band": 0.0, "valid": 0.0}

    def add(prefix, pred, gt, valid, interval, regions):
        pooled.add(prefix, pred, gt, valid, interval)
        for name, region in regions.items():
            pooled.add(f"{prefix}{name}_", pred, gt, valid & region, interval)

    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            imgs, proj = batch["imgs"].to(device), batch["proj_matrices"].to(device)
            depth_values, gt = batch["depth_values"].to(device), batch["depth"].to(device)
            interval, valid = batch["depth_interval"].to(device), batch["mask"].to(device).bool()
            regions = {}
            if edge_band:
                parts = depth_edge_regions(gt, valid, interval)
                regions = {"band": parts["outline"] | parts["depth_edge"], "elsewhere": parts["flat"]}
                pixels["band"] += float(regions["band"].sum())
                pixels["valid"] += float((valid & torch.isfinite(gt) & (gt > 0)).sum())
            if model is not None:
                out = model(imgs, proj, depth_values)
                add("", out["depth"], gt, valid, interval, regions)
                if "refined_depth" in out:
                    add("refined_", out["refined_depth"], gt, valid, interval, regions)
            if baseline:
                scale_y, scale_x = imgs.shape[-2] / gt.shape[-2], imgs.shape[-1] / gt.shape[-1]
                if scale_x != scale_y or scale_x != int(scale_x):
                    raise ValueError(f"evaluate_mvsnet: images {tuple(imgs.shape[-2:])} and depth maps "
                                     f"{tuple(gt.shape[-2:])}; the baseline needs one integer scale between them")
                base = plane_sweep_depth(imgs, scale_projection(proj, scale_x), depth_values, pool=int(scale_x),
                                         **(baseline_kwargs or {}))
                add("baseline_", base["depth"], gt, valid, interval, regions)
    finally:
        if model is not None and was_training:
            model.train()
    result = pooled.result()
    if not result:
        raise ValueError("evaluate_mvsnet: no valid pixel in the dataset (or nothing to evaluate)")
    if edge_band and pixels["valid"]:
        result["band_share"] = pixels["band"] / pixels["valid"]
    return result
