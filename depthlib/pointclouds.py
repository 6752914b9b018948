"""Point clouds drawn: a static 3D scatter (matplotlib), a fusion result (kept pixels and cloud,
chapter 10) and an interactive view (plotly) that falls back to the static image where plotly.js
cannot load (chapters 00, 10, 12); ``depthlib.viz`` re-exports all but the fusion result."""
from __future__ import annotations

__all__ = ["plot_point_cloud", "draw_fused_cloud", "point_cloud_figure", "PointCloudView", "show_point_clouds",
           "PLOT3D_CLASS"]

import base64
import html
import io
import json
import sys
import uuid

import numpy as np

from depthlib.data.io import as_point_array


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
    points = as_point_array(points).astype(np.float64)
    if colors is not None:
        colors = as_point_array(colors, "colors", expected=points.shape)
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


def draw_fused_cloud(ax_mask, ax_cloud, image, mask, points, colors=None, metrics=None,
                     unit: str = "mm", max_points: int = 4000):
    """One fusion result on two Axes: the reference image, dimmed where fusion dropped the pixel,
    titled with the point count (and accuracy / completeness), and the fused cloud in 3D.

    Args:
        ax_mask: a 2D Axes; ax_cloud: a 3D Axes. image: (3, H, W) float in [0, 1].
        mask: (h, w) bool, kept pixels at depth-map size; H and W must be multiples of h and w.
        points: (N, 3) fused cloud in ``unit``; colors: (N, 3) as ``plot_point_cloud`` takes them.
        metrics: None or a dict with "accuracy" and "completeness" (``unit``), shown in the title.
    Returns:
        None; with no point, ``ax_mask`` is titled "no point kept" and ``ax_cloud`` left empty.
    """
    import torch

    image, mask = torch.as_tensor(image).detach().cpu(), torch.as_tensor(mask).cpu()
    if image.dim() != 3 or image.shape[0] != 3 or mask.dim() != 2 or any(
            small == 0 or size % small for size, small in zip(image.shape[1:], mask.shape)):
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)}: expected "
                         "(3, H, W) and (h, w) with H, W multiples of h, w")
    rows, cols = (size // small for size, small in zip(image.shape[1:], mask.shape))
    kept = mask.repeat_interleave(rows, 0).repeat_interleave(cols, 1)[..., None]  # (H, W, 1)
    ax_mask.imshow((image.permute(1, 2, 0) * (0.25 + 0.75 * kept)).numpy())
    ax_mask.set_axis_off()
    if len(points) == 0:
        ax_mask.set_title("no point kept", fontsize=9)
        return
    title = f"{len(points):,} points"
    if metrics is not None:
        title += (f": acc. {metrics['accuracy']:.2f}, "
                  f"comp. {metrics['completeness']:.2f} {unit}")
    ax_mask.set_title(title, fontsize=9)
    plot_point_cloud(points, colors, ax=ax_cloud, max_points=max_points, s=2, elev=35, azim=-70,
                     unit=unit)
    ax_cloud.set_box_aspect((1, 1, 1), zoom=1.3)  # no axes drawn: use the room
    ax_cloud.set_axis_off()


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
    sizes = ", ".join(f"{title!r}: {min(len(as_point_array(points)), max_points):,} points"
                      for title, (points, _) in clouds.items())
    return PointCloudView(figure, png, cdn=cdn or None, summary=f"3D view of {sizes}")
