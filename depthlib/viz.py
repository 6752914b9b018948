"""Depth colour maps, side-by-side depth panels and point-cloud plots, static and interactive (all chapters)."""
from __future__ import annotations

__all__ = ["to_numpy", "depth_range", "colorize_depth", "show_depth_panels", "show_images",
           "plot_point_cloud", "point_cloud_figure", "PointCloudView", "show_point_clouds",
           "draw_dense_block", "draw_plane_homography", "draw_mvsnet_pipeline"]

import base64
import html
import io
import json
import sys
import uuid

import matplotlib
import matplotlib.cm
import matplotlib.colors
import numpy as np
import torch

from depthlib.diagrams import draw_dense_block, draw_mvsnet_pipeline, draw_plane_homography

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


def _valid(depth: np.ndarray) -> np.ndarray:
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
    values = values[_valid(values)]
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
    return _colorize(depth, _valid(depth), vmin, vmax, cmap)


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
            errors[title] = (np.abs(depth - maps[gt_key]), _valid(depth) & _valid(maps[gt_key]))
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
        ax.imshow(_colorize(depth, _valid(depth), vmin, vmax, cmap))
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


def _equal_aspect_3d(ax, points: np.ndarray) -> None:
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1e-6)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1), zoom=0.85)  # zoom < 1 leaves room for the z label


def _cloud_subset(points, colors, max_points: int, seed: int):
    """(points (M, 3) float64, colors (M, 3) float in [0, 1] or None): the finite points, at most
    ``max_points`` of them (a random subset drawn with ``seed``, in their original order)."""
    points = to_numpy(points).astype(np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points has shape {points.shape}, expected (N, 3)")
    if colors is not None:
        colors = to_numpy(colors)
        if colors.shape != points.shape:
            raise ValueError(f"colors has shape {colors.shape}, expected {points.shape} like points")
        colors = colors / 255.0 if colors.dtype == np.uint8 else np.clip(colors.astype(np.float64), 0, 1)
    keep = np.flatnonzero(np.isfinite(points).all(axis=1))
    if keep.size > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    return points[keep], None if colors is None else colors[keep]


def plot_point_cloud(points, colors=None, ax=None, max_points: int = 20000, seed: int = 0,
                     elev: float = 20.0, azim: float = -60.0, s: float = 1.0, unit: str = "m"):
    """3D scatter of a point cloud with equal aspect; returns the Axes3D.

    points: (N, 3) in any one unit (NumPy or torch; ``unit`` labels the axes); non-finite points are
    dropped. colors: (N, 3) float in [0, 1] or uint8, or None (coloured by z). At most ``max_points``
    points are drawn, a random subset chosen with ``seed``.
    """
    import matplotlib.pyplot as plt

    shown, colors = _cloud_subset(points, colors, max_points, seed)
    if ax is None:
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_axes((0, 0, 1, 1), projection="3d")
    ax.scatter(shown[:, 0], shown[:, 1], shown[:, 2], s=s, depthshade=False, linewidths=0,
               c=colors if colors is not None else shown[:, 2],
               cmap=None if colors is not None else "viridis")
    if len(shown):
        _equal_aspect_3d(ax, shown)
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit})")
    ax.set_zlabel(f"z ({unit})")
    return ax


# ----------------------------------------------------------------------------- interactive 3D (plotly)

PLOT3D_CLASS = "depthlib-plot3d"  # the rendered book loads plotly.js on pages that have it (_ext/plotly_pages.py)
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}


def _named_clouds(clouds) -> dict:
    """{title: (points, colors or None)} from {title: points} or {title: (points, colors)}."""
    if not isinstance(clouds, dict) or not clouds:
        raise ValueError(f"clouds is {type(clouds).__name__} {clouds!r:.60}, expected a non-empty dict "
                         "{title: points} or {title: (points, colors)}")
    return {str(title): tuple(cloud) if isinstance(cloud, (tuple, list)) else (cloud, None)
            for title, cloud in clouds.items()}


def _camera_eye(elev: float, azim: float, distance: float = 2.6) -> dict:
    """plotly's scene camera position for matplotlib's view angles (degrees): the same viewpoint."""
    elev, azim = np.radians(elev), np.radians(azim)
    return {"x": distance * np.cos(elev) * np.cos(azim), "y": distance * np.cos(elev) * np.sin(azim),
            "z": distance * np.sin(elev)}


def point_cloud_figure(clouds, max_points: int = 20000, seed: int = 0, marker_size: float = 1.5,
                       elev: float = 20.0, azim: float = -60.0, unit: str = "m", height: int = 420):
    """Interactive 3D scatter (a ``plotly.graph_objects.Figure``) of point clouds side by side.

    clouds: {title: points} or {title: (points, colors)}, each as ``plot_point_cloud`` takes it
    (points (N, 3), non-finite dropped; colors (N, 3) uint8 or float in [0, 1], or None: coloured
    by z). One 3D scene per cloud, equal aspect (``aspectmode="data"``), seen from matplotlib's
    ``elev`` / ``azim`` (degrees), axes labelled in ``unit``; at most ``max_points`` points per
    cloud, the same random subset as ``plot_point_cloud`` with this ``seed``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    clouds = _named_clouds(clouds)
    fig = make_subplots(rows=1, cols=len(clouds), specs=[[{"type": "scene"}] * len(clouds)],
                        subplot_titles=list(clouds), horizontal_spacing=0.02)
    for column, (title, (points, colors)) in enumerate(clouds.items(), start=1):
        shown, rgb = _cloud_subset(points, colors, max_points, seed)
        xyz = shown.astype(np.float32)
        if rgb is None:
            marker = {"color": xyz[:, 2], "colorscale": "Viridis"}
        else:
            marker = {"color": [f"rgb({r},{g},{b})" for r, g, b in np.rint(rgb * 255).astype(int)]}
        fig.add_trace(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers", name=title,
                                   marker={"size": marker_size, **marker},
                                   hovertemplate="(%{x:.3g}, %{y:.3g}, %{z:.3g})<extra></extra>"),
                      row=1, col=column)
        fig.layout["scene" if column == 1 else f"scene{column}"].update(
            aspectmode="data", camera={"eye": _camera_eye(elev, azim)},
            xaxis_title=f"x ({unit})", yaxis_title=f"y ({unit})", zaxis_title=f"z ({unit})")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0}, showlegend=False,
                      template="plotly_white")
    return fig


# Replaces the static image with the plotly view once the page has plotly.js (the book's own copy;
# with a CDN URL, fetched from there when missing) and WebGL; data-state says which one it shows.
_SCRIPT = """(function () {
  var box = document.getElementById(%(id)s), figure = %(figure)s, cdn = %(cdn)s;
  function webgl() {
    try {
      var canvas = document.createElement("canvas");
      return !!(window.WebGLRenderingContext && canvas.getContext("webgl"));
    } catch (error) { return false; }
  }
  function draw() {
    var image = box.querySelector("img");
    if (!window.Plotly || !webgl()) { box.dataset.state = "static"; return; }
    var view = document.createElement("div");
    image.style.display = "none";
    box.appendChild(view);
    Plotly.newPlot(view, figure.data, figure.layout, %(config)s).then(
      function () { image.remove(); box.dataset.state = "interactive"; },
      function () { view.remove(); image.style.display = ""; box.dataset.state = "static"; });
  }
  function start() {
    if (window.Plotly || !cdn) { draw(); return; }
    var script = document.createElement("script");
    script.src = cdn;
    script.onload = draw;
    script.onerror = function () { box.dataset.state = "static"; };
    document.head.appendChild(script);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();"""


def _script_json(value) -> str:
    """JSON that is safe inside an HTML <script> element."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


class PointCloudView:
    """A notebook output: the interactive 3D view of ``point_cloud_figure``, with a static image
    (``plot_point_cloud``, PNG) as its fallback.

    Displayed (``_repr_mimebundle_``) as ``text/html``: a ``<div class="depthlib-plot3d">`` holding
    the PNG, and a script that swaps in the plotly view when the page has plotly.js and WebGL (the
    div's ``data-state`` then becomes "interactive", else "static"). The rendered book loads its
    own copy of plotly.js on such pages (``_ext/plotly_pages.py``), so the page requests nothing
    from the network; with a ``cdn`` URL (the default in Colab) the script fetches plotly.js from
    there when the page lacks it. Elsewhere (a local Jupyter) the static image shows;
    ``view.figure.show()`` draws the view with plotly's own renderers. (No plotly or PNG mime
    type besides: the book's builder warns about the first and would copy an unused image.)
    ``figure`` (plotly) and ``png`` (bytes) are attributes.
    """

    def __init__(self, figure, png: bytes, cdn: str | None = None, summary: str = "point clouds"):
        self.figure, self.png, self.cdn, self.summary = figure, png, cdn, summary
        self.element_id = f"{PLOT3D_CLASS}-{uuid.uuid4().hex[:12]}"

    def html(self) -> str:
        """The text/html representation (see the class doc)."""
        import plotly.io

        png = base64.b64encode(self.png).decode("ascii")
        height = int(self.figure.layout.height or 420)
        figure = plotly.io.to_json(self.figure, validate=False)
        script = _SCRIPT % {"id": json.dumps(self.element_id), "figure": _script_json(figure),
                            "cdn": json.dumps(self.cdn), "config": json.dumps(_PLOTLY_CONFIG)}
        return (f'<div id="{self.element_id}" class="{PLOT3D_CLASS}" data-state="loading" '
                f'style="width: 100%; min-height: {height}px;">'
                f'<img src="data:image/png;base64,{png}" alt="{html.escape(self.summary)} (static view)" '
                f'style="max-width: 100%;"></div>\n<script>{script}</script>')

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "text/plain": f"<PointCloudView: {self.summary}>"}


def _static_png(clouds: dict, max_points: int, seed: int, elev: float, azim: float, unit: str,
                dpi: int = 80) -> bytes:
    """The clouds side by side as ``plot_point_cloud`` draws them, as PNG bytes (no pyplot figure is
    left open, so a notebook shows nothing more)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(clouds), 4.5))
    for column, (title, (points, colors)) in enumerate(clouds.items(), start=1):
        ax = fig.add_subplot(1, len(clouds), column, projection="3d")
        plot_point_cloud(points, colors, ax=ax, max_points=max_points, seed=seed, elev=elev, azim=azim,
                         s=2.0, unit=unit)
        ax.set_title(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def show_point_clouds(clouds, max_points: int = 20000, seed: int = 0, elev: float = 20.0,
                      azim: float = -60.0, unit: str = "m", height: int = 420, marker_size: float = 1.5,
                      cdn: str | bool | None = None) -> PointCloudView:
    """An interactive 3D view of point clouds (drag to turn), with a static image as its fallback.

    clouds, max_points, seed, elev, azim, unit, height, marker_size: as ``point_cloud_figure``.
    cdn: where a page without plotly.js fetches it: None (default) means plotly's CDN in Colab and
    nowhere elsewhere (the rendered book brings its own copy); True plotly's CDN; False nowhere; or a
    URL. Returns a ``PointCloudView``; the last expression of a notebook cell displays it.
    """
    clouds = _named_clouds(clouds)
    if cdn is None:
        cdn = "google.colab" in sys.modules
    if cdn is True:
        from plotly.offline import get_plotlyjs_version

        cdn = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    figure = point_cloud_figure(clouds, max_points=max_points, seed=seed, marker_size=marker_size,
                                elev=elev, azim=azim, unit=unit, height=height)
    png = _static_png(clouds, max_points, seed, elev, azim, unit)
    sizes = ", ".join(f"{title!r}: {min(len(to_numpy(points)), max_points):,} points"
                      for title, (points, _) in clouds.items())
    return PointCloudView(figure, png, cdn=cdn or None, summary=f"3D view of {sizes}")
