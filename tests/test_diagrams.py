"""Tests for the figures and helpers that chapters 00, 03 and 10 draw with: depthlib.diagrams'
align_corners and DenseDepth diagrams, depthlib.pointclouds' fusion result, and
depthlib.geometry.project_into_views (checked against a NumPy float64 loop written here)."""
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthlib.diagrams import draw_align_corners, draw_densedepth
from depthlib.geometry import depth_to_points, project_into_views
from depthlib.pointclouds import draw_fused_cloud


def _draw_quietly(fig):
    """Render the figure (Agg) with every warning an error: a figure must draw cleanly."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()


# ----------------------------------------------------------------------- project_into_views (ch. 00)

def _look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.stack([right, np.cross(forward, right), forward])
    extrinsic[:3, 3] = -extrinsic[:3, :3] @ np.asarray(eye, float)
    return extrinsic


def _rig(views=3, height=12, width=16, seed=0):
    rng = np.random.default_rng(seed)
    extrinsics = np.stack([_look_at((2.0 * np.cos(a), 2.0 * np.sin(a), 0.8))
                           for a in np.linspace(0.0, 1.2, views)])
    K = np.stack([[[14.0 + k, 0.0, (width - 1) / 2], [0.0, 14.0 + k, (height - 1) / 2],
                   [0.0, 0.0, 1.0]] for k in range(views)])
    depths = rng.uniform(1.0, 3.0, size=(views, height, width))
    depths[rng.random(depths.shape) < 0.2] = 0.0            # holes: no surface
    return depths, K, extrinsics


def _bruteforce(points, depths, K, extrinsics):
    """Point by point, view by view: project, round to the nearest pixel, read the depth map."""
    views, height, width = depths.shape
    uv = np.full((views, 2, points.shape[1]), np.nan)
    z = np.zeros((views, points.shape[1]))
    measured = np.zeros_like(z)
    for view in range(views):
        for n, point in enumerate(points.T):
            camera = extrinsics[view, :3, :3] @ point + extrinsics[view, :3, 3]
            z[view, n] = camera[2]
            if camera[2] <= 1e-6:
                continue                                     # behind the camera: no pixel
            u, v = (K[view] @ camera)[:2] / camera[2]
            uv[view, :, n] = u, v
            col, row = round(u), round(v)                    # Python rounds halves to even too
            if 0 <= row < height and 0 <= col < width:
                measured[view, n] = depths[view, row, col]
    return uv, z, measured


def test_project_into_views_matches_bruteforce_projection_and_lookup():
    depths, K, extrinsics = _rig()
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.8, 0.8, size=(3, 200))
    points[:, 0] = (0.0, 0.0, 5.0)                           # above every camera's field of view
    points[:, 1] = (4.0, 0.0, 0.8)                           # behind view 0 (at (2, 0, 0.8))
    tensors = [torch.from_numpy(a) for a in (points, depths, K, extrinsics)]
    uv, z, measured = project_into_views(*tensors)
    want_uv, want_z, want_measured = _bruteforce(points, depths, K, extrinsics)
    assert uv.shape == (3, 2, 200) and z.shape == measured.shape == (3, 200)
    np.testing.assert_allclose(uv.numpy(), want_uv, rtol=1e-10, atol=1e-10)  # NaN where NaN
    np.testing.assert_allclose(z.numpy(), want_z, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(measured.numpy(), want_measured)
    assert measured[:, 0].eq(0).all() and torch.isnan(uv[0, :, 1]).all() and measured[0, 1] == 0
    inside = want_measured > 0
    assert 0.2 < inside.mean() < 0.95                        # both cases exercised


def test_project_into_views_reads_back_the_reference_depth_and_shares_one_K():
    depths, K, extrinsics = (torch.from_numpy(a).float() for a in _rig(views=2))
    cloud = depth_to_points(depths[:1, None], K[:1], extrinsics[:1])[0].reshape(3, -1)
    has_depth = depths[0].reshape(-1) > 0
    uv, z, measured = project_into_views(cloud[:, has_depth], depths, K[0], extrinsics)
    # view 0 sees its own points where they came from, at the depth it measured
    torch.testing.assert_close(measured[0], depths[0].reshape(-1)[has_depth])
    torch.testing.assert_close(z[0], measured[0])
    shared = project_into_views(cloud[:, has_depth], depths, K[:1].expand(2, 3, 3), extrinsics)
    for mine, theirs in zip((uv, z, measured), shared):
        torch.testing.assert_close(mine, theirs, equal_nan=True)


def test_project_into_views_refuses_mismatched_shapes():
    depths, K, extrinsics = (torch.from_numpy(a) for a in _rig())
    points = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="points"):
        project_into_views(points.T, depths, K, extrinsics)
    with pytest.raises(ValueError, match="K"):
        project_into_views(points, depths, K[:2], extrinsics)
    with pytest.raises(ValueError, match="extrinsics"):
        project_into_views(points, depths, K, extrinsics[:2])
    with pytest.raises(ValueError, match="depths"):
        project_into_views(points, depths[0], K, extrinsics)


# ----------------------------------------------------------------------------- diagrams (ch. 03)

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
