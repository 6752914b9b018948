"""Explanatory diagrams drawn from numbers: a dense block (chapter 02), ``align_corners`` and
DenseDepth's U shape (chapter 03), the cameras, plane and rays of a plane-induced homography
(chapter 07) and the MVSNet pipeline with its tensor shapes (chapter 08). ``depthlib.viz``
re-exports those of chapters 02, 07 and 08.

Every figure is computed, not drawn by hand: channel counts come from the arguments, the rays of
the homography sketch are intersected and projected with the same pinhole model as
``depthlib.geometry``, and the pipeline's shapes follow from the sizes passed in. Labels are
English / math only (the book renders figures without CJK fonts).
"""
from __future__ import annotations

__all__ = ["draw_dense_block", "draw_align_corners", "draw_densedepth", "draw_plane_homography",
           "draw_mvsnet_pipeline"]

import numpy as np

_BLUE, _ORANGE, _GREEN, _GREY = "#cfe2f3", "#fce5cd", "#d9ead3", "#eeeeee"


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.set_axis_off()
    return ax


def _box(ax, x, y, text, color, width=None, fontsize=9, style="-"):
    """A rounded, labelled box centred on (x, y) in data coordinates (``style``: its outline)."""
    frame = dict(boxstyle="round,pad=0.35", facecolor=color, edgecolor="0.35", linestyle=style)
    return ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, bbox=frame,
                   wrap=width is not None)


def _arrow(ax, start, end, label="", color="0.3", style="-", offset=(0.0, 0.12), shrink=4,
           ha="center"):
    """An arrow from ``start`` to ``end`` (``shrink``: points left free at both ends), labelled at
    its middle plus ``offset``."""
    ax.annotate("", end, start, arrowprops=dict(arrowstyle="-|>", color=color, linestyle=style,
                                                shrinkA=shrink, shrinkB=shrink))
    if label:
        middle = (np.asarray(start) + np.asarray(end)) / 2 + np.asarray(offset)
        ax.text(*middle, label, ha=ha, va="bottom", fontsize=8, color=color)


def draw_dense_block(n_layers: int = 4, c_in: int = 64, growth: int = 32, bn_size: int = 4,
                     ax=None):
    """A dense block as stacks of feature maps: layer l reads the concatenation of everything
    before it and appends ``growth`` (k) new channels.

    Args:
        n_layers: layers in the block (DenseNet-169's first block has 6).
        c_in: channels entering the block; growth: the growth rate k; bn_size: the bottleneck
            factor (the 1x1 convolution outputs ``bn_size * growth`` channels).
        ax: a matplotlib Axes to draw on (a new figure of 11 x 4 inches when None).
    Returns:
        the Axes. The stack after layer l is ``c_in + l * growth`` channels high.
    """
    if n_layers < 1 or c_in < 1 or growth < 1:
        raise ValueError(f"n_layers, c_in and growth must be >= 1, got {n_layers}, {c_in}, {growth}")
    import matplotlib.pyplot as plt

    ax = _axes(ax, (11, 4.0))
    colors = plt.get_cmap("tab10").colors
    total = c_in + n_layers * growth
    height = 2.4 / total                      # data units per channel
    for step in range(n_layers + 1):
        x = 2.2 * step
        bottom = 0.0
        for part in range(step + 1):          # x_0, x_1, ..., x_step, bottom to top
            size = c_in if part == 0 else growth
            ax.add_patch(plt.Rectangle((x - 0.25, bottom), 0.5, size * height,
                                       facecolor=colors[part % 10], edgecolor="white"))
            bottom += size * height
        label = rf"$[x_0,\dots,x_{step}]$" if step else r"$x_0$"
        ax.text(x, -0.25, f"{label}\n{c_in + step * growth} ch", ha="center", va="top", fontsize=9)
        if step < n_layers:
            layer_x, stack_top = x + 1.1, bottom
            new_part = c_in * height + (step + 0.5) * growth * height
            _box(ax, layer_x, 2.85, rf"$H_{step + 1}$", _ORANGE, fontsize=10)
            _arrow(ax, (x, stack_top), (layer_x - 0.2, 2.7), shrink=2)
            _arrow(ax, (layer_x + 0.2, 2.7), (x + 1.95, new_part), shrink=2,
                   label=f"+{growth}", offset=(0.15, 0.0))
            _arrow(ax, (x + 0.3, 0.5 * stack_top), (x + 1.9, 0.5 * stack_top), color="0.6",
                   style="--", label="copy", offset=(0.0, 0.03), shrink=1)
    ax.text(-0.6, 3.3, rf"$H_\ell$: BN, ReLU, conv 1x1 to {bn_size * growth} ch, "
            rf"BN, ReLU, conv 3x3 to k = {growth} ch; the block concatenates, never overwrites",
            fontsize=9, ha="left", va="bottom")
    ax.set(xlim=(-0.8, 2.2 * n_layers + 0.8), ylim=(-0.9, 3.6))
    return ax


def draw_align_corners(n_in: int = 4, n_out: int = 8):
    """Where interpolation puts an input row of ``n_in`` pixels on an output row of ``n_out``:
    input pixel i's centre lies at output coordinate i (n_out - 1) / (n_in - 1) with
    ``align_corners=True`` (corner centres pinned), at (i + 1/2) n_out / n_in - 1/2 with ``False``
    (outer edges pinned); coordinates in output pixels, integers at pixel centres.

    Args:
        n_in, n_out: input and output widths, pixels (both >= 2).
    Returns:
        the Figure (9 x 3.2 inches): one Axes per setting, titled "align_corners=True" / "False",
        output centres as grey dots on y = 0, input centres as blue squares on y = 1.
    """
    if n_in < 2 or n_out < 2:
        raise ValueError(f"n_in = {n_in}, n_out = {n_out}: expected both >= 2")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 3.2), sharex=True, layout="constrained")
    for ax, align in zip(axes, (True, False)):
        size = (n_out - 1) / (n_in - 1) if align else n_out / n_in  # one input pixel
        centres = np.arange(n_in) * size if align else (np.arange(n_in) + 0.5) * size - 0.5
        for u in range(n_out):
            ax.add_patch(plt.Rectangle((u - 0.5, -0.4), 1, 0.8, fill=False, ec="0.5"))
        for centre in centres:
            ax.add_patch(plt.Rectangle((centre - size / 2, 0.6), size, 0.8, fill=False,
                                       ec="tab:blue"))
        ax.plot(range(n_out), [0] * n_out, "o", color="0.4", label="output pixel centres")
        ax.plot(centres, [1] * n_in, "s", color="tab:blue", label="input pixel centres")
        ax.axvspan(-0.5, n_out - 0.5, color="0.9", zorder=-1)
        ax.set_title(f"align_corners={align}", fontsize=10, loc="left")
        ax.set_ylim(-0.6, 1.6)
        ax.set_yticks([])
    axes[1].set_xlabel("position in output pixels (grey band: the image)")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


_ENCODER_MAPS = ("relu0", "pool0", "transition1", "transition2", "bottleneck")  # strides 2 .. 32
_ENCODER_STEPS = ("conv 7x7 /2", "max pool /2", "block 1, transition /2", "block 2, transition /2",
                  "blocks 3-4, transition /2")


def draw_densedepth(channels, widths, ax=None):
    """The U of DenseDepth, one row per scale: the encoder's maps (blue) down the left at strides 2
    to 32, the decoder (orange) back up to stride 2 on the right, the dashed skips across, and the
    output (green) at half the input resolution, upsampled by ``predict_depth``.

    Args:
        channels: the encoder's channels per map, keys "relu0", "pool0", "transition1",
            "transition2", "bottleneck" (strides 2, 4, 8, 16, 32), e.g. ``model.encoder.channels``.
        widths: the decoder's 5 widths: conv2's output channels, then up1's .. up4's.
        ax: Axes to draw on (a new 10 x 5.4 inch figure when None).
    Returns:
        the Axes.
    """
    missing = [name for name in _ENCODER_MAPS if name not in channels]
    if missing or len(widths) != 5:
        raise ValueError(f"channels lacks {missing} or widths {list(widths)} is not 5 long: expected "
                         f"channels of {list(_ENCODER_MAPS)} and 5 decoder widths")
    ax = _axes(ax, (10, 5.4))

    def box(x, stride, text, color, style="-"):
        _box(ax, x, -np.log2(stride), text, color, style=style)

    def arrow(x0, stride0, x1, stride1, label="", style="-"):
        down = x0 == x1                                       # a step within a column
        _arrow(ax, (x0, -np.log2(stride0)), (x1, -np.log2(stride1)), label, style=style,
               offset=(0.1, 0.07), shrink=18 if down else 40, ha="left" if down else "center")

    ax.text(0, 0.7, "encoder", ha="center", fontsize=11, weight="bold")
    ax.text(4, 0.7, "decoder", ha="center", fontsize=11, weight="bold")
    box(0, 1, "image\n3 ch, H", "white")
    for i, name in enumerate(_ENCODER_MAPS):
        stride = 2 ** (i + 1)
        box(0, stride, f"{name}\n{channels[name]} ch, H/{stride}", _BLUE)
        arrow(0, stride // 2, 0, stride, _ENCODER_STEPS[i])
    box(4, 32, f"conv2 1x1\n{widths[0]} ch, H/32", _ORANGE)
    arrow(0, 32, 4, 32)
    for i, name in enumerate(_ENCODER_MAPS[3::-1]):           # transition2 .. relu0
        stride = 16 >> i
        box(4, stride, f"up{i + 1}\n{widths[i + 1]} ch, H/{stride}", _ORANGE)
        arrow(4, 2 * stride, 4, stride, "bilinear x2")
        arrow(0, stride, 4, stride, f"skip: {channels[name]} ch", style="--")
    box(6.8, 2, "conv3 3x3\n1 ch, H/2", _GREEN)
    arrow(4, 2, 6.8, 2)
    box(6.8, 1, "predict_depth\nmetres, H", _GREEN, style="--")
    arrow(6.8, 2, 6.8, 1, "bilinear x2")
    ax.set(xlim=(-1.2, 7.8), ylim=(-5.5, 1.0))
    return ax


def _pinhole_2d(centre, angle):
    """World-to-camera of a 2D camera at ``centre`` whose optical axis points along ``angle``."""
    axis = np.array([np.sin(angle), np.cos(angle)])        # (x, z) components of the axis
    right = np.array([axis[1], -axis[0]])
    rotation = np.stack([right, axis])                      # rows: camera x, camera z
    return rotation, -rotation @ centre


def _project_2d(point, rotation, translation, focal):
    x, z = rotation @ point + translation
    return focal * x / z                                    # image coordinate u (centred)


def draw_plane_homography(planes=(0.9, 1.8), baseline=0.8, angle=-0.35, pixel=0.18,
                          focal=0.35, ax=None):
    """Top view (x-z plane) of a plane sweep: the reference camera, one source camera, the
    fronto-parallel planes Z = d, one reference pixel's ray, and where each plane's point lands
    in the source image.

    Args:
        planes: depths d of the planes, in units of the drawing.
        baseline: the source camera centre's x; angle: its rotation about the vertical (rad).
        pixel: the reference pixel's image coordinate; focal: the drawn image-plane distance.
        ax: Axes to draw on (a new 7 x 4.6 inch figure when None).
    Returns:
        (ax, source_pixels): the Axes and the source image coordinate of each plane's point,
        computed by intersecting the ray with Z = d and projecting into the source camera.
    """
    ax = _axes(ax, (7, 4.6))
    ref_c, src_c = np.zeros(2), np.array([baseline, 0.1])
    src_r, src_t = _pinhole_2d(src_c, angle)
    ray = np.array([pixel / focal, 1.0])                    # X = Z (u / f, 1) on the ref ray
    half = max(planes) * 0.75
    ax.plot([-half, half], [0, 0], alpha=0)                 # keep the frame symmetric
    sources = []
    for k, d in enumerate(planes):
        point = d * ray
        ax.plot([-half, half], [d, d], color="tab:blue", lw=1.5, ls="-" if k == 0 else "--")
        ax.text(-half, d + 0.03, rf"plane $n^\top X = d_{k + 1}$", color="tab:blue", fontsize=9)
        ax.plot(*zip(src_c, point), color="tab:red", lw=1)
        ax.plot(*point, "o", color="black", ms=4)
        ax.text(point[0] + 0.04, point[1] - 0.1, rf"$X(d_{k + 1})$", fontsize=9)
        sources.append(_project_2d(point, src_r, src_t, focal))
    ax.plot(*zip(ref_c, max(planes) * 1.1 * ray), color="black", lw=1)
    for centre, rotation, name in ((ref_c, np.eye(2), "r"), (src_c, src_r, "s")):
        right, axis = rotation[0], rotation[1]
        ends = [centre + focal * axis + s * 0.25 * right for s in (-1, 1)]
        ax.plot(*zip(*ends), color="0.2", lw=2.5)           # the image plane
        ax.plot(*centre, "^", color="0.2", ms=9)
        ax.text(*(centre - [0.05, 0.14]), rf"$C_{name}$", fontsize=10)
    marks = [ref_c + focal * np.array([0, 1]) + pixel * np.array([1, 0])]
    marks += [src_c + focal * src_r[1] + u * src_r[0] for u in sources]
    for k, mark in enumerate(marks):
        ax.plot(*mark, "s", color="tab:red" if k else "black", ms=5)
        if k:
            left = k % 2 == 1                                 # alternate sides
            ax.text(*(mark + ([-0.03, -0.15] if left else [0.05, 0.02])),
                    rf"$H(d_{k})\,\tilde x_r$", fontsize=9, color="tab:red",
                    ha="right" if left else "left")
    ax.text(*(marks[0] + [-0.1, -0.1]), r"$\tilde x_r$", fontsize=10)
    side = -0.85 * half
    ax.annotate("", (side, planes[0]), (side, 0), arrowprops=dict(arrowstyle="<|-|>", color="0.4"))
    ax.text(side + 0.03, planes[0] / 2, r"$d_1$", fontsize=10, color="0.3")
    ax.annotate("", (-0.5 * half, planes[0] + 0.25), (-0.5 * half, planes[0]),
                arrowprops=dict(arrowstyle="-|>", color="tab:blue"))
    ax.text(-0.5 * half + 0.04, planes[0] + 0.12, r"$n$", color="tab:blue", fontsize=11)
    _arrow(ax, ref_c, src_c, style=":", label=r"$(R, t)$", offset=(0.0, -0.2), shrink=6)
    ax.set_aspect("equal")
    ax.set(ylim=(-0.3, max(planes) * 1.15))
    return ax, np.array(sources)


def _glyph(ax, x, y, kind, count=1, color="0.55"):
    """A small picture above a block: ``count`` stacked maps ("map") or volumes ("volume")."""
    import matplotlib.pyplot as plt

    for k in range(count):
        dx, dy = 0.12 * k, 0.05 * k
        if kind == "map":
            ax.add_patch(plt.Rectangle((x - 0.3 + dx, y - 0.12 + dy), 0.5, 0.24, fc="white",
                                       ec=color))
            continue
        front = np.array([[0, 0], [0.45, 0], [0.45, 0.22], [0, 0.22]]) + [x - 0.35 + dx, y - 0.14 + dy]
        depth = np.array([0.2, 0.1])                        # the D axis, drawn receding
        ax.add_patch(plt.Polygon(front, fc="white", ec=color))
        for a, b in ((1, 2), (2, 3)):
            ax.add_patch(plt.Polygon([front[a], front[b], front[b] + depth, front[a] + depth],
                                     fc="0.92", ec=color))


def draw_mvsnet_pipeline(n_views: int = 3, height: int = 512, width: int = 640,
                         n_depths: int = 192, channels: int = 32, refine: bool = True, ax=None):
    """MVSNet's blocks with the shape of every tensor between them: images, shared 2D features,
    per-view feature volumes warped onto D planes, the variance cost volume, the 3D U-Net, the
    probability volume and the depth read-outs.

    Args:
        n_views: V images (view 0 the reference); height, width: image size (divisible by 4);
        n_depths: D planes; channels: C feature channels; refine: draw the refinement step.
        ax: Axes to draw on (a new 12 x 4.8 inch figure when None).
    Returns:
        the Axes.
    """
    if height % 4 or width % 4:
        raise ValueError(f"image size {height}x{width}: expected both divisible by 4")
    ax = _axes(ax, (12, 4.8))
    h, w, c, d, v = height // 4, width // 4, channels, n_depths, n_views
    top = [("images", f"{v} x 3 x {height} x {width}\nview 0: reference", _GREY, "map", v),
           ("FeatureNet (2D CNN)", f"shared by all views\n{v} x {c} x {h} x {w}", _BLUE, "map", v),
           ("homography warp", f"onto {d} planes (ch. 07)\n{v} x {c} x {d} x {h} x {w}", _BLUE,
            "volume", v),
           ("variance over views", f"cost volume\n{c} x {d} x {h} x {w}", _BLUE, "volume", 1)]
    bottom = [("CostRegNet (3D U-Net)", f"scores\n1 x {d} x {h} x {w}", _ORANGE, "volume", 1),
              ("softmax over planes", f"probability volume\n{d} x {h} x {w}", _ORANGE,
               "volume", 1),
              ("soft-argmin", f"depth + confidence\n1 x {h} x {w} each", _GREEN, "map", 2)]
    if refine:
        bottom.append(("RefineNet (2D CNN)", f"+ reference image\nrefined depth 1 x {h} x {w}",
                       _GREEN, "map", 1))
    for row, (y, blocks) in enumerate(((1.3, top), (0.0, bottom))):
        for k, (name, shape, color, kind, count) in enumerate(blocks):
            x = 3.0 * k + 1.5 * row
            _box(ax, x, y, f"{name}\n{shape}", color)
            _glyph(ax, x, y + 0.5 if row == 0 else y - 0.5, kind, count)  # outside the flow
            if k:
                _arrow(ax, (3.0 * (k - 1) + 1.5 * row + 1.15, y), (x - 1.15, y))
    _arrow(ax, (9.0, 1.02), (1.5, 0.28), style="--")      # cost volume -> 3D U-Net
    ax.text(5.0, 0.82, "h = H/4, w = W/4", fontsize=8, color="0.3", rotation=6)
    ax.set(xlim=(-1.4, 3.0 * len(bottom) + 0.4), ylim=(-0.85, 2.1))
    return ax
