"""Depth colour maps, side-by-side depth panels, training-loss curves (all chapters), the cost curves
of chapter 07, the depth distributions and confidence panels of chapter 08, the refinement panels of
chapter 09 and the hypothesis bands of chapter 12; the point-cloud views of ``depthlib.pointclouds``
and the diagrams of ``depthlib.diagrams``, re-exported."""
from __future__ import annotations

__all__ = ["to_numpy", "depth_range", "colorize_depth", "show_depth_panels", "show_images",
           "show_cost_curves", "show_depth_distributions", "show_confidence_panels",
           "show_refinement_panels", "show_hypothesis_bands", "plot_log", "plot_point_cloud", "point_cloud_figure", "PointCloudView", "show_point_clouds", "PLOT3D_CLASS",
           "draw_dense_block", "draw_plane_homography", "draw_mvsnet_pipeline"]


from pathlib import Path

import matplotlib
import matplotlib.cm
import matplotlib.colors
import numpy as np
import torch

from depthlib.diagrams import draw_dense_block, draw_mvsnet_pipeline, draw_plane_homography
from depthlib.pointclouds import PLOT3D_CLASS, PointCloudView, plot_point_cloud, point_cloud_figure, show_point_clouds

# Figures carry English / math labels only (the book renders them without CJK fonts).
# pyplot is imported inside the figure functions, so `import depthlib` stays light.


def to_numpy(array) -> np.ndarray:
    """NumPy array of a tensor (detached, moved to the CPU) or of any array-like."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _depth_map(depth, name: str = "depth") -> np.ndarray:
    depth = to_numpy(depth)
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2:
        raise ValueError(f"{name} has shape {depth.shape}, expected (H, W) or (1, H, W)")
    return depth.astype(np.float64)


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def depth_range(*depths, percentile: float | None = None) -> tuple[float, float]:
    """(vmin, vmax) over the valid pixels (finite, > 0) of all given maps: one shared scale.

    ``percentile=p`` uses the p-th and (100 - p)-th percentiles instead of min / max.
    Returns (0.0, 1.0) when no pixel is valid.

    Example:
        >>> depth_range(np.array([[0.0, 2.0]]), np.array([[np.nan, 5.0]]))
        (2.0, 5.0)
    """
    values = np.concatenate([to_numpy(d).astype(np.float64).ravel() for d in depths] or [np.zeros(0)])
    values = values[_valid_depth(values)]
    if values.size == 0:
        return 0.0, 1.0
    if percentile is None:
        return float(values.min()), float(values.max())
    return float(np.percentile(values, percentile)), float(np.percentile(values, 100 - percentile))


def _colorize(values: np.ndarray, valid: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    scaled = (np.where(valid, values, vmin) - vmin) / max(vmax - vmin, 1e-12)
    rgb = matplotlib.colormaps[cmap](np.clip(scaled, 0.0, 1.0))[..., :3]
    rgb[~valid] = 0.0
    return rgb


def colorize_depth(depth, vmin=None, vmax=None, cmap: str = "turbo") -> np.ndarray:
    """Colour a depth map: (H, W) or (1, H, W), NumPy or torch, metres -> (H, W, 3) float in [0, 1].

    Depths are scaled linearly from vmin to vmax (default: ``depth_range(depth)``) and clipped;
    invalid pixels (0, negative, NaN, inf) are black.

    Example:
        >>> colorize_depth(np.array([[0.0, 1.0, 2.0]]))[0, 0].tolist()
        [0.0, 0.0, 0.0]
    """
    depth = _depth_map(depth)
    auto_min, auto_max = depth_range(depth)
    vmin = auto_min if vmin is None else vmin
    vmax = auto_max if vmax is None else vmax
    return _colorize(depth, _valid_depth(depth), vmin, vmax, cmap)


def _image(image) -> np.ndarray:
    """(H, W), (H, W, 3) or (3, H, W); uint8 or float in [0, 1] -> something imshow draws."""
    image = to_numpy(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"image has shape {image.shape}, expected (H, W), (H, W, 3) or (3, H, W)")
    return image if image.dtype == np.uint8 else np.clip(image.astype(np.float64), 0.0, 1.0)


def _colorbar(fig, axes, vmin, vmax, cmap, label):
    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(vmin, vmax), cmap)
    fig.colorbar(mappable, ax=axes, label=label, shrink=0.8)


def show_depth_panels(image, depths: dict, gt_key: str | None = None, gt=None, error: bool = True,
                      cmap: str = "turbo", figsize=None, vrange=None, unit: str = "m"):
    """One row: image | each depth map (one shared scale and colour bar) | |depth - gt| per map.

    depths: {title: (H, W) map, in ``unit`` (the colour bars' label: "m", or "mm" for DTU)}. The ground truth is ``depths[gt_key]`` or ``gt`` (shown
    as "ground truth"). Error panels (``error=True``) share their own scale; pixels invalid in
    either map are black. ``image`` may be None. ``vrange=(vmin, vmax)`` fixes the depth scale
    (e.g. one scale for a whole sequence); by default it spans these maps. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    maps = {title: _depth_map(depth, f"depths[{title!r}]") for title, depth in depths.items()}
    if gt is not None:
        gt_key = "ground truth"
        maps[gt_key] = _depth_map(gt, "gt")
    elif gt_key is not None and gt_key not in maps:
        raise ValueError(f"gt_key {gt_key!r} is not a key of depths, expected one of {list(maps)}")
    errors = {}
    if error and gt_key is not None:
        for title, depth in maps.items():
            if title == gt_key:
                continue
            if depth.shape != maps[gt_key].shape:
                raise ValueError(f"depths[{title!r}] has shape {depth.shape}, "
                                 f"expected {maps[gt_key].shape} like gt")
            errors[title] = (np.abs(depth - maps[gt_key]), _valid_depth(depth) & _valid_depth(maps[gt_key]))
    n_panels = (image is not None) + len(maps) + len(errors)
    fig, axes = plt.subplots(1, n_panels, figsize=figsize or (3.2 * n_panels + 1, 3.2),
                             layout="constrained", squeeze=False)
    axes = list(axes[0])
    if image is not None:
        axes[0].imshow(_image(image), cmap="gray")
        axes[0].set_title("image")
    depth_axes = axes[image is not None:][:len(maps)]
    vmin, vmax = vrange if vrange is not None else depth_range(*maps.values())
    for ax, (title, depth) in zip(depth_axes, maps.items()):
        ax.imshow(_colorize(depth, _valid_depth(depth), vmin, vmax, cmap))
        ax.set_title(title)
    if maps:
        _colorbar(fig, depth_axes, vmin, vmax, cmap, f"depth ({unit})")
    error_axes = axes[len(axes) - len(errors):]
    error_max = max([float(e[v].max()) for e, v in errors.values() if v.any()] + [1e-6])
    for ax, (title, (abs_error, valid)) in zip(error_axes, errors.items()):
        ax.imshow(_colorize(abs_error, valid, 0.0, error_max, "magma"))
        ax.set_title(f"|{title} - gt|")
    if errors:
        _colorbar(fig, error_axes, 0.0, error_max, "magma", f"abs. error ({unit})")
    for ax in axes:
        ax.set_axis_off()
    return fig


def show_images(images, titles=None, ncols: int = 4, figsize=None):
    """Grid of images ((H, W), (H, W, 3) or (3, H, W); uint8 or float in [0, 1]) -> Figure.

    Float images are clipped to [0, 1]; single-channel images are drawn in grey.
    Exactly one Axes per image (unused grid cells are removed).
    """
    import matplotlib.pyplot as plt

    images = list(images)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles has length {len(titles)}, expected {len(images)} (one per image)")
    if not images:
        raise ValueError("images is empty, expected at least one image")
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (3 * ncols, 3 * nrows),
                             layout="constrained", squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        if index >= len(images):
            ax.remove()
            continue
        ax.imshow(_image(images[index]), cmap="gray")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[index])
    return fig


def show_cost_curves(image, cost, depth_values, gt, pixels, offsets, mean_curve, scale: int = 4,
                     unit: str = "mm"):
    """Reference image with a few pixels marked | their cost along the sweep | a mean cost curve.

    image: (3, H, W) in [0, 1]; cost: (D, h, w) at 1/scale of the image; depth_values: (D,) plane
    depths and gt: (h, w) true depth, both in ``unit`` (dashed, one colour per pixel); pixels:
    [(row, col)] at the cost's resolution, marked at the centre of their scale x scale block;
    offsets, mean_curve: (K,) plane offsets from the true plane and the mean cost there (chapter 07).
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if cost.dim() != 3 or tuple(gt.shape) != tuple(cost.shape[1:]) or len(depth_values) != len(cost) \
            or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image {tuple(image.shape)}, cost {tuple(cost.shape)}, gt {tuple(gt.shape)}, depth_values "
                         f"{len(depth_values)}: expected (3, H, W), (D, h, w), (h, w) and D planes")
    if len(offsets) != len(mean_curve):
        raise ValueError(f"offsets ({len(offsets)}) and mean_curve ({len(mean_curve)}): expected one length")
    fig, (ax_img, ax_px, ax_all) = plt.subplots(1, 3, figsize=(13, 3.4), layout="constrained")
    ax_img.imshow(to_numpy(image.permute(1, 2, 0)))
    ax_img.set_axis_off()
    ax_img.set_title("reference")
    centre = (scale - 1) / 2                     # the block's centre, in image pixels
    for k, (row, col) in enumerate(pixels):
        color = f"C{k}"
        ax_img.plot(scale * col + centre, scale * row + centre, "o", color=color, ms=8, mec="white")
        ax_px.plot(to_numpy(depth_values), to_numpy(cost[:, row, col]), color=color)
        ax_px.axvline(float(gt[row, col]), color=color, ls="--")
    count = ("no", "one", "two", "three", "four", "five")[len(pixels)] if len(pixels) < 6 else len(pixels)
    ax_px.set(xlabel=f"plane depth d ({unit})", ylabel="cost C(p, d)",
              title=f"{count} pixel{'' if len(pixels) == 1 else 's'}")
    ax_all.plot(to_numpy(offsets), to_numpy(mean_curve), "o-", color="black")
    ax_all.set(xlabel="plane - nearest plane to the true depth", ylabel="mean cost", title="all valid pixels")
    return fig


def show_depth_distributions(depth_values, cost, prob_volume, gt, depth, confidence, pixels, unit: str = "mm"):
    """One column per pixel: its cost (top) and probability (bottom) along the planes (chapter 08).

    depth_values: (N, D) plane depths in ``unit``; cost, prob_volume: (N, D, h, w); gt, depth,
    confidence: (N, 1, h, w), the true depth (dashed) and the soft-argmin (dotted) in ``unit``;
    pixels: {name: (sample, row, col)}, each column titled with its name and confidence.
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if cost.shape != prob_volume.shape or cost.dim() != 4 or tuple(depth_values.shape) != tuple(cost.shape[:2]):
        raise ValueError(f"cost {tuple(cost.shape)}, prob_volume {tuple(prob_volume.shape)}, depth_values "
                         f"{tuple(depth_values.shape)}: expected (N, D, h, w) twice and (N, D)")
    if not gt.shape == depth.shape == confidence.shape == (len(cost), 1, *cost.shape[2:]) or not pixels:
        raise ValueError(f"gt {tuple(gt.shape)}, depth {tuple(depth.shape)}, confidence "
                         f"{tuple(confidence.shape)}, {len(pixels)} pixels: expected (N, 1, h, w) each, pixels")
    fig, axes = plt.subplots(2, len(pixels), figsize=(11 * len(pixels) / 3, 4.4), sharex=True,
                             layout="constrained", squeeze=False)
    for col, (name, (k, y, x)) in enumerate(pixels.items()):
        planes = to_numpy(depth_values[k])
        axes[0, col].plot(planes, to_numpy(cost[k, :, y, x]), ".-", color="tab:gray")
        axes[1, col].plot(planes, to_numpy(prob_volume[k, :, y, x]), ".-", color="tab:blue")
        for ax in axes[:, col]:
            ax.axvline(float(gt[k, 0, y, x]), color="k", ls="--", label="true depth")
            ax.axvline(float(depth[k, 0, y, x]), color="tab:red", ls=":", label="soft-argmin")
        axes[0, col].set_title(f"{name}: confidence {float(confidence[k, 0, y, x]):.2f}")
        axes[1, col].set_xlabel(f"depth plane ({unit})")
    axes[0, 0].set_ylabel("cost (variance)")
    axes[1, 0].set_ylabel("probability")
    axes[1, 0].legend(fontsize=8)
    return fig


def show_confidence_panels(image, depth, gt, valid, confidence, depth_interval, name: str = "MVSNet",
                           max_intervals: float = 3, unit: str = "mm"):
    """One row: reference image | |depth - gt| (black: no gt) | photometric confidence (chapter 08).

    image: (3, H, W) in [0, 1]; depth, gt: (h, w) or (1, h, w) in ``unit``; valid: bool, same shape;
    confidence: same shape, in [0, 1]; depth_interval: the plane spacing in ``unit``; the error scale
    runs from 0 to ``max_intervals`` intervals. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    shape = tuple(gt.shape[-2:])
    maps = {"depth": depth, "gt": gt, "valid": valid, "confidence": confidence}
    shapes = ", ".join(f"{key} {tuple(m.shape)}" for key, m in maps.items())
    if image.dim() != 3 or any(tuple(m.shape) not in (shape, (1, *shape)) for m in maps.values()):
        raise ValueError(f"image {tuple(image.shape)}, {shapes}: expected (3, H, W) and the maps in one "
                         "shape, (h, w) or (1, h, w)")
    depth, gt, valid, confidence = (m.reshape(shape) for m in maps.values())
    error = torch.where(valid, (depth - gt).abs(), float("nan"))
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.7), layout="constrained")
    axes[0].imshow(to_numpy(image.permute(1, 2, 0)))
    axes[0].set_title("reference image")
    shown = axes[1].imshow(to_numpy(error), cmap=matplotlib.colormaps["magma"].with_extremes(bad="black"),
                           vmin=0, vmax=max_intervals * float(depth_interval))
    fig.colorbar(shown, ax=axes[1], label=f"abs. error ({unit})")
    axes[1].set_title(f"|{name} - gt|, up to {max_intervals:g} intervals")
    shown = axes[2].imshow(to_numpy(confidence), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(shown, ax=axes[2], label="confidence")
    axes[2].set_title("photometric confidence")
    for ax in axes:
        ax.set_axis_off()
    return fig


def show_refinement_panels(images, gt, initial, refined, valid, depth_interval, samples, unit: str = "mm"):
    """One row per sample: image | gt | initial | refined depth | |initial - gt| | |refined - gt| | change.

    images: (N, 3, H, W) in [0, 1], the reference views; gt, initial, refined: (N, 1, h, w) depth in
    ``unit``; valid: (N, 1, h, w) bool, other pixels drawn blank; depth_interval: (N,) plane spacing
    in ``unit``; samples: the indices drawn, one row each. Depths share one scale, that of the valid
    gt of all N samples; errors are in intervals (0 to 3); the change |refined - gt| - |initial - gt|
    (-0.5 to 0.5 intervals) is blue where the refinement helped. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    samples = list(samples)
    if gt.dim() != 4 or gt.shape[1] != 1 or not (initial.shape == refined.shape == valid.shape == gt.shape):
        raise ValueError(f"gt {tuple(gt.shape)}, initial {tuple(initial.shape)}, refined {tuple(refined.shape)}, "
                         f"valid {tuple(valid.shape)}: expected one shape (N, 1, h, w)")
    if images.dim() != 4 or len(images) != len(gt) or not samples:
        raise ValueError(f"images {tuple(images.shape)} for {len(gt)} depth maps, samples {samples}: expected "
                         "(N, 3, H, W) and at least one sample")
    interval = torch.as_tensor(depth_interval, dtype=gt.dtype, device=gt.device).reshape(-1, 1, 1, 1).expand(
        len(gt), 1, 1, 1)
    fig, axes = plt.subplots(len(samples), 7, figsize=(15, 0.4 + 1.8 * len(samples)), layout="constrained",
                             squeeze=False)
    vmin, vmax = gt[valid].min().item(), gt[valid].max().item()
    for row, index in zip(axes, samples):
        hide = ~valid[index, 0]
        row[0].imshow(to_numpy(images[index].permute(1, 2, 0)))
        for ax, depth in zip(row[1:4], (gt, initial, refined)):
            shown = ax.imshow(to_numpy(depth[index, 0].masked_fill(hide, float("nan"))), cmap="turbo", vmin=vmin,
                              vmax=vmax)
        for ax, depth in zip(row[4:6], (initial, refined)):
            error = ((depth[index, 0] - gt[index, 0]).abs() / interval[index, 0]).masked_fill(hide, float("nan"))
            errors_shown = ax.imshow(to_numpy(error), cmap="magma", vmin=0, vmax=3)
        change = (refined[index, 0] - gt[index, 0]).abs() - (initial[index, 0] - gt[index, 0]).abs()
        change = (change / interval[index, 0]).masked_fill(hide, float("nan"))
        changes_shown = row[6].imshow(to_numpy(change), cmap="RdBu_r", vmin=-0.5, vmax=0.5)
    titles = ("image", "ground truth", "initial", "refined", "|initial - gt|", "|refined - gt|", "change of |error|")
    for ax, title in zip(axes[0], titles):
        ax.set_title(title)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[:, 1:4], label=f"depth ({unit})", shrink=0.8)
    fig.colorbar(errors_shown, ax=axes[:, 4:6], label="error (intervals)", shrink=0.8)
    fig.colorbar(changes_shown, ax=axes[:, 6], label="change (intervals)", shrink=0.8)
    return fig


def show_hypothesis_bands(bands, gt, depth, row: int, title: str = "", zoom_columns: int = 40,
                          margin: float = 40.0, unit: str = "mm"):
    """Each stage's hypotheses along one image row, with the ground truth and the final depth; then a zoom.

    bands: per stage, (D_k, h_k, w_k) hypotheses (up-sampled to full size, nearest); gt, depth:
    (1, H, W) or (H, W) in ``unit`` (gt <= 0: no ground truth); row: the image row drawn. The right
    panel zooms on ``zoom_columns`` columns around the centre, ``margin`` beyond the gt's range
    there. Figure text in English. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    gt = torch.as_tensor(gt).reshape(-1, *gt.shape[-2:])
    depth = torch.as_tensor(depth).reshape(-1, *depth.shape[-2:])
    height, width = gt.shape[-2:]
    if len(gt) != 1 or depth.shape != gt.shape or not 0 <= row < height or any(b.dim() != 3 for b in bands):
        raise ValueError(f"gt {tuple(gt.shape)}, depth {tuple(depth.shape)}, bands "
                         f"{[tuple(b.shape) for b in bands]}, row {row}: expected one (1, H, W) map each, "
                         "(D, h, w) bands and 0 <= row < H")
    gt_row = to_numpy(gt[0, row].masked_fill(gt[0, row] <= 0, float("nan")))
    columns, zoom = np.arange(width), slice(width // 2 - zoom_columns // 2, width // 2 + zoom_columns // 2)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    for ax in axes:
        for k, hypotheses in enumerate(bands):
            band = to_numpy(F.interpolate(hypotheses[None], size=(height, width), mode="nearest")[0, :, row])
            ax.fill_between(columns, band.min(0), band.max(0), alpha=0.35, step="mid",
                            label=f"stage {k + 1}: {hypotheses.shape[0]} hypotheses")
        ax.plot(columns, gt_row, "k", lw=1.2, label="ground truth")
        ax.plot(columns, to_numpy(depth[0, row]), "r--", lw=1, label="cascade depth")
        ax.set(xlabel="image column (pixels)", ylabel=f"depth ({unit})")
    axes[1].set(xlim=(zoom.start, zoom.stop - 1))
    if np.isfinite(gt_row[zoom]).any():
        axes[1].set(ylim=(np.nanmin(gt_row[zoom]) - margin, np.nanmax(gt_row[zoom]) + margin))
    axes[0].set_title(title or f"image row {row}: the hypotheses of each stage")
    axes[1].set_title(f"zoom on {zoom_columns} columns")
    axes[0].legend(fontsize=8, loc="upper right")
    return fig


def plot_log(path_or_records, keys=("total",), ax=None):
    """Loss curves from a training log: each key per logged step, with epoch means as dots."""
    import matplotlib.pyplot as plt

    from depthlib.checkpoint_io import read_log

    records = read_log(path_or_records) if isinstance(path_or_records, (str, Path)) else list(path_or_records)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        steps = [(r["step"], r[key]) for r in records if key in r]
        if steps:
            ax.plot(*zip(*steps), label=key)
        epochs = [(r["step"], r[f"train_{key}"]) for r in records if f"train_{key}" in r]
        if epochs:
            ax.plot(*zip(*epochs), "o", color=ax.lines[-1].get_color() if steps else None,
                    label=f"{key} (epoch mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax
