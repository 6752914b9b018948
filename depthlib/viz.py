"""Depth colour maps, side-by-side depth panels, training-loss curves (all chapters); the point-cloud
views of ``depthlib.pointclouds`` and the diagrams of ``depthlib.diagrams``, re-exported."""
from __future__ import annotations

__all__ = ["to_numpy", "depth_range", "colorize_depth", "show_depth_panels", "show_images",
           "plot_log", "plot_point_cloud", "point_cloud_figure", "PointCloudView", "show_point_clouds", "PLOT3D_CLASS",
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
