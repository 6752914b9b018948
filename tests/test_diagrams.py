"""Tests for the figures chapters 03 and 10 draw with: depthlib.diagrams' align_corners and
DenseDepth diagrams, and depthlib.pointclouds' fusion result."""
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthlib.diagrams import draw_align_corners, draw_densedepth
from depthlib.pointclouds import draw_fused_cloud


def _draw_quietly(fig):
    """Render the figure (Agg) with every warning an error: a figure must draw cleanly."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()


# ----------------------------------------------------------------------- project_into_views (ch. 00)

def test_align_corners_figure_puts_input_centres_where_interpolate_samples_them():
    n_in, n_out = 5, 9
    fig = draw_align_corners(n_in, n_out)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["align_corners=True",
                                                              "align_corners=False"]
    ramp = torch.arange(n_in, dtype=torch.float64)[None, None]  # value = input coordinate
    for ax, align in zip(fig.axes, (True, False)):
        dots, squares = ax.lines[:2]
        np.testing.assert_array_equal(dots.get_xdata(), np.arange(n_out))
        centres = np.asarray(squares.get_xdata(), float)
        sampled = F.interpolate(ramp, size=n_out, mode="linear", align_corners=align)[0, 0]
        # where the output grid samples input coordinate i, the drawing puts input centre i
        # (align_corners=False clamps near the ends, so only interior centres are checked there)
        inner = slice(None) if align else slice(1, -1)
        found = np.interp(centres[inner], np.arange(n_out), sampled.numpy())
        np.testing.assert_allclose(found, np.arange(n_in)[inner], atol=1e-12)
        assert len(ax.patches) == n_out + n_in + 1           # pixels and the image's band
    assert fig.axes[0].get_legend() is not None
    _draw_quietly(fig)
    plt.close(fig)
    with pytest.raises(ValueError, match="n_in"):
        draw_align_corners(1, 8)


def test_densedepth_diagram_draws_the_channels_and_widths_it_is_given():
    from depthlib.models import densedepth169

    with torch.device("meta"):
        model = densedepth169()
    channels = model.encoder.channels
    decoder = model.decoder
    widths = [decoder.conv2.out_channels] + [
        getattr(decoder, f"up{k}").convB.out_channels for k in (1, 2, 3, 4)]
    ax = draw_densedepth(channels, widths)
    boxes = {t.get_text(): t.get_position() for t in ax.texts if t.get_bbox_patch() is not None}
    assert len(boxes) == 1 + 5 + 1 + 4 + 2                   # image, encoder, conv2, up1-4, output
    assert boxes["transition2\n256 ch, H/16"] == (0, -4)     # row y = -log2(stride)
    assert boxes["up2\n416 ch, H/8"] == (4, -3) and boxes["conv2 1x1\n1664 ch, H/32"] == (4, -5)
    arrows = [t for t in ax.texts if isinstance(t, matplotlib.text.Annotation)]
    labels = [t.get_text() for t in ax.texts if t.get_bbox_patch() is None and t not in arrows]
    assert [f"skip: {channels[n]} ch" for n in ("transition2", "transition1", "pool0", "relu0")] \
        == [label for label in labels if label.startswith("skip")]
    assert labels.count("bilinear x2") == 5 and len(arrows) == 5 + 1 + 2 * 4 + 2
    _draw_quietly(ax.figure)
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="widths"):
        draw_densedepth(channels, widths[:4])
    with pytest.raises(ValueError, match="pool0"):
        draw_densedepth({k: v for k, v in channels.items() if k != "pool0"}, widths)


# ------------------------------------------------------------------------- fusion result (ch. 10)

def test_fused_cloud_dims_dropped_pixels_and_titles_the_metrics():
    image = torch.full((3, 8, 12), 0.8)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[1:3, 2:5] = True
    points = np.random.default_rng(0).normal(size=(50, 3))
    colors = np.random.default_rng(1).integers(0, 256, size=(50, 3), dtype=np.uint8)
    fig = plt.figure()
    ax_mask, ax_cloud = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d")
    draw_fused_cloud(ax_mask, ax_cloud, image, mask, points, colors,
                     {"accuracy": 1.234, "completeness": 5.678})
    assert ax_mask.get_title() == "50 points: acc. 1.23, comp. 5.68 mm"
    shown = np.asarray(ax_mask.images[0].get_array())
    assert shown.shape == (8, 12, 3)
    kept = mask.numpy().repeat(2, 0).repeat(2, 1)            # each depth pixel: 2 x 2 image pixels
    np.testing.assert_allclose(shown[kept], 0.8, rtol=1e-6)
    np.testing.assert_allclose(shown[~kept], 0.2, rtol=1e-6)
    assert len(ax_cloud.collections) == 1 and len(ax_cloud.collections[0].get_offsets()) == 50
    _draw_quietly(fig)
    plt.close(fig)


def test_fused_cloud_without_points_or_metrics_and_with_mismatched_sizes():
    image, mask = torch.rand(3, 6, 6), torch.zeros(3, 3, dtype=torch.bool)
    fig = plt.figure()
    ax_mask, ax_cloud = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d")
    draw_fused_cloud(ax_mask, ax_cloud, image, mask, np.zeros((0, 3)))
    assert ax_mask.get_title() == "no point kept" and not ax_cloud.collections
    draw_fused_cloud(ax_mask, ax_cloud, image, mask, np.ones((3, 3)))
    assert ax_mask.get_title() == "3 points"                 # no metrics: only the count
    _draw_quietly(fig)
    plt.close(fig)
    with pytest.raises(ValueError, match="multiples"):
        draw_fused_cloud(ax_mask, ax_cloud, image, torch.zeros(4, 3, dtype=torch.bool), [])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        draw_fused_cloud(ax_mask, ax_cloud, image.permute(1, 2, 0), mask, [])
