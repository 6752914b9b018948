"""Tests for depthlib.viz: colours against matplotlib's colormaps, shared scales, figure layout, the
interactive 3D view and the book extension that serves its plotly.js."""
import sys
import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from depthlib.viz import (PLOT3D_CLASS, colorize_depth, depth_range, plot_point_cloud, point_cloud_figure,
                          show_confidence_panels, show_cost_curves, show_depth_distributions, show_depth_panels,
                          show_hypothesis_bands, show_images, show_point_clouds, show_refinement_panels, to_numpy)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def turbo(values):
    return matplotlib.colormaps["turbo"](np.asarray(values, dtype=np.float64))[..., :3]


def panel_rgb(ax):
    return np.asarray(ax.images[0].get_array())


def test_to_numpy_accepts_tensors_with_grad_and_arrays():
    tensor = torch.ones(2, 3, requires_grad=True) * 2
    np.testing.assert_array_equal(to_numpy(tensor), np.full((2, 3), 2.0, dtype=np.float32))
    np.testing.assert_array_equal(to_numpy([[1, 2]]), np.array([[1, 2]]))


def test_depth_range_pools_valid_pixels_of_all_maps():
    first = np.array([[0.0, 2.0, np.nan], [-1.0, 3.0, np.inf]])
    second = torch.tensor([[1.5, 0.0], [4.0, float("nan")]])
    assert depth_range(first, second) == (1.5, 4.0)
    values = np.arange(1, 101, dtype=np.float64)
    assert depth_range(values.reshape(10, 10), np.zeros((3, 3)), percentile=5) == (
        np.percentile(values, 5), np.percentile(values, 95))
    assert depth_range(np.zeros((2, 2))) == (0.0, 1.0)


def test_colorize_depth_matches_linear_scaling_through_the_colormap():
    depth = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])
    rgb = colorize_depth(depth, vmin=1.0, vmax=5.0)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.float64
    expected = turbo(np.clip((depth - 1.0) / 4.0, 0, 1))
    np.testing.assert_allclose(rgb, expected)
    np.testing.assert_allclose(colorize_depth(torch.tensor(depth)[None]), turbo((depth - 1.0) / 8.0))


def test_colorize_depth_paints_invalid_pixels_black():
    depth = np.array([[0.0, np.nan, np.inf, -2.0], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    rgb = colorize_depth(depth)
    np.testing.assert_array_equal(rgb[0], np.zeros((4, 3)))
    assert (rgb[1].sum(axis=-1) > 0.1).all()  # turbo has no black, so valid pixels are visible
    np.testing.assert_allclose(rgb[1], turbo([0, 1 / 3, 2 / 3, 1]), rtol=1e-6)


def test_depth_panels_share_one_scale_and_show_error_with_invalid_black():
    pred = np.array([[2.0, 1.0, 3.0], [2.5, 0.0, 1.2]])
    gt = np.array([[2.0, 5.0, 3.5], [2.0, 4.0, 0.0]])
    image = np.random.default_rng(0).uniform(size=(2, 3, 3))
    fig = show_depth_panels(image, {"pred": pred, "gt": gt}, gt_key="gt")
    assert len(fig.axes) == 4 + 2  # image, pred, gt, |pred - gt| + one depth and one error colour bar
    _, ax_pred, ax_gt, ax_err = fig.axes[:4]
    rgb_pred, rgb_gt = panel_rgb(ax_pred), panel_rgb(ax_gt)
    np.testing.assert_allclose(rgb_pred[0, 0], rgb_gt[0, 0])  # depth 2.0 in both panels, same colour
    np.testing.assert_allclose(rgb_pred, colorize_depth(pred, 1.0, 5.0))
    np.testing.assert_allclose(rgb_gt, colorize_depth(gt, 1.0, 5.0))
    assert not np.allclose(colorize_depth(pred)[0, 0], rgb_pred[0, 0])  # its own scale would differ
    abs_error = np.abs(pred - gt)
    expected = matplotlib.colormaps["magma"](abs_error / 4.0)[..., :3]
    expected[1, 1:] = 0.0  # pred invalid at (1, 1), gt invalid at (1, 2)
    np.testing.assert_allclose(panel_rgb(ax_err), expected)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "pred", "gt", "|pred - gt|"]


def test_depth_panels_with_separate_gt_and_without_error_have_expected_axes():
    depths = {"a": torch.rand(1, 4, 5) + 1, "b": np.full((4, 5), 2.0)}
    fig = show_depth_panels(None, depths, gt=np.full((4, 5), 1.5))
    assert len(fig.axes) == 3 + 2 + 2  # a, b, ground truth, two error panels, two colour bars
    fig = show_depth_panels(np.zeros((4, 5, 3), np.uint8), depths, error=False)
    assert len(fig.axes) == 1 + 2 + 1


def test_show_images_grid_has_one_axes_per_image():
    images = [np.zeros((4, 5, 3), np.uint8), torch.rand(3, 4, 5), np.ones((4, 5)), np.zeros((4, 5, 1)),
              np.full((4, 5, 3), 2.0)]
    fig = show_images(images, titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    assert panel_rgb(fig.axes[4]).max() == 1.0  # floats are clipped to [0, 1]
    np.testing.assert_allclose(panel_rgb(fig.axes[1]), images[1].permute(1, 2, 0).numpy(), rtol=1e-6)


def test_point_cloud_subsampling_respects_max_points_and_drops_nonfinite():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(1000, 3)) * [1.0, 2.0, 0.5]
    points[:10] = np.nan
    colors = rng.integers(0, 256, size=(1000, 3), dtype=np.uint8)
    ax = plot_point_cloud(points, colors, max_points=100, seed=3)
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 100 and np.isfinite(offsets).all()
    again = plot_point_cloud(torch.as_tensor(points), torch.as_tensor(colors), max_points=100, seed=3)
    np.testing.assert_array_equal(again.collections[0].get_offsets(), offsets)
    assert len(plot_point_cloud(points).collections[0].get_offsets()) == 990  # all finite points


def test_point_cloud_axes_have_equal_aspect():
    points = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, 0.5], [2.0, -1.0, 0.2]])
    ax = plot_point_cloud(points)
    spans = [np.diff(limits)[0] for limits in (ax.get_xlim(), ax.get_ylim(), ax.get_zlim())]
    np.testing.assert_allclose(spans, [4.0, 4.0, 4.0])
    np.testing.assert_allclose(ax.get_box_aspect() / ax.get_box_aspect()[0], [1.0, 1.0, 1.0])
    assert ax.get_zlabel() == "z (m)"


def test_viz_functions_emit_no_warnings():
    depth = np.random.default_rng(1).uniform(1, 3, (6, 8))
    depth[0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = show_depth_panels(np.random.default_rng(2).uniform(size=(6, 8, 3)),
                                {"pred": depth, "gt": depth + 0.1}, gt_key="gt")
        fig.canvas.draw()
        show_images([depth / 3, np.zeros((6, 8, 3), np.uint8)]).canvas.draw()
        plot_point_cloud(np.random.default_rng(3).normal(size=(50, 3))).figure.canvas.draw()
        plot_point_cloud(np.zeros((20, 3)), colors=np.ones((20, 3))).figure.canvas.draw()


def test_bad_shapes_raise_value_error_naming_shape_and_expectation():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(H, W\) or \(1, H, W\)"):
        colorize_depth(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(N, 3\)"):
        plot_point_cloud(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\) like points"):
        plot_point_cloud(np.ones((5, 3)), colors=np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 3\) like gt"):
        show_depth_panels(None, {"pred": np.ones((3, 4))}, gt=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"'truth'.*\['pred'\]"):
        show_depth_panels(None, {"pred": np.ones((3, 4))}, gt_key="truth")
    with pytest.raises(ValueError, match=r"\(4, 5, 2\).*\(H, W\), \(H, W, 3\) or \(3, H, W\)"):
        show_images([np.ones((4, 5, 2))])
    with pytest.raises(ValueError, match=r"length 1, expected 2"):
        show_images([np.ones((4, 5)), np.ones((4, 5))], titles=["a"])


def test_depth_panel_colour_bars_carry_the_unit():
    depths = {"a": np.full((4, 5), 700.0)}
    fig = show_depth_panels(None, depths, gt=np.full((4, 5), 650.0), unit="mm")
    labels = [ax.get_ylabel() or ax.get_xlabel() for ax in fig.axes]
    assert "depth (mm)" in labels and "abs. error (mm)" in labels
    plt.close("all")


# --- diagrams (chapters 02, 07, 08) ---------------------------------------------------------------

def _texts(ax):
    return " ".join(t.get_text() for t in ax.texts)


def test_dense_block_diagram_counts_channels_from_its_arguments():
    from depthlib.viz import draw_dense_block

    ax = draw_dense_block(n_layers=3, c_in=8, growth=4)
    text = _texts(ax)
    assert all(f"{8 + 4 * k} ch" in text for k in range(4))
    assert "conv 1x1 to 16 ch" in text                      # bn_size 4 x growth 4
    assert len(ax.patches) == sum(range(1, 5))              # stack l holds l + 1 parts
    with pytest.raises(ValueError, match="growth"):
        draw_dense_block(growth=0)


def test_plane_homography_sketch_projects_like_the_homography():
    from depthlib.viz import draw_plane_homography

    planes, baseline, angle, pixel, focal = (1.0, 2.0), 0.8, -0.3, 0.2, 0.5
    _, drawn = draw_plane_homography(planes, baseline, angle, pixel, focal)
    # the same 2D cameras as a homography: x_s ~ K_s (R + t n^T / d) K_r^-1 x_r, n = (0, 1)
    axis = np.array([np.sin(angle), np.cos(angle)])
    R = np.stack([[axis[1], -axis[0]], axis])               # world (= reference) to source
    t = -R @ np.array([baseline, 0.1])
    K = np.array([[focal, 0.0], [0.0, 1.0]])
    for d, u in zip(planes, drawn):
        H = K @ (R + np.outer(t, [0.0, 1.0]) / d) @ np.linalg.inv(K)
        mapped = H @ np.array([pixel, 1.0])
        assert u == pytest.approx(mapped[0] / mapped[1])
    assert drawn[0] != pytest.approx(drawn[1])               # another plane, another pixel


def test_mvsnet_pipeline_diagram_shows_the_shapes_it_is_given():
    from depthlib.viz import draw_mvsnet_pipeline

    text = _texts(draw_mvsnet_pipeline(n_views=5, height=128, width=160, n_depths=48))
    assert "5 x 32 x 48 x 32 x 40" in text and "32 x 48 x 32 x 40" in text
    assert "RefineNet" in text and "RefineNet" not in _texts(
        draw_mvsnet_pipeline(refine=False))
    with pytest.raises(ValueError, match="divisible by 4"):
        draw_mvsnet_pipeline(height=130)


# ----------------------------------------------------------------------------- interactive 3D view

def _cloud(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5], rng.integers(0, 256, size=(n, 3), dtype=np.uint8)


def test_point_cloud_figure_holds_the_same_subset_and_colours_as_the_static_plot():
    points, colors = _cloud(1000)
    points[:10] = np.nan
    fig = point_cloud_figure({"rgb": (points, colors), "by z": torch.as_tensor(points)}, max_points=100, seed=3)
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["rgb", "by z"]
    static = plot_point_cloud(points, colors, max_points=100, seed=3).collections[0]
    first = fig.data[0]
    shown = np.stack([first.x, first.y, first.z], axis=1)
    np.testing.assert_allclose(shown[:, :2], static.get_offsets(), rtol=1e-6)  # same points, same order
    keep = [int(np.flatnonzero((np.abs(points[:, :2] - xy) < 1e-6).all(axis=1))[0]) for xy in shown[:, :2]]
    assert list(first.marker.color[:3]) == [f"rgb({r},{g},{b})" for r, g, b in colors[keep[:3]]]
    np.testing.assert_allclose(fig.data[1].marker.color, fig.data[1].z)  # no colours: coloured by z
    assert fig.layout.scene.aspectmode == fig.layout.scene2.aspectmode == "data"
    assert fig.layout.scene.xaxis.title.text == "x (m)"


def test_point_cloud_figure_camera_matches_matplotlib_view_angles():
    fig = point_cloud_figure({"a": _cloud()[0]}, elev=0.0, azim=90.0)
    eye = fig.layout.scene.camera.eye
    np.testing.assert_allclose([eye.x, eye.y, eye.z], [0.0, 2.6, 0.0], atol=1e-12)  # looking along -y
    eye = point_cloud_figure({"a": _cloud()[0]}, elev=90.0, azim=0.0).layout.scene.camera.eye
    np.testing.assert_allclose([eye.x, eye.y, eye.z], [0.0, 0.0, 2.6], atol=1e-12)  # from above


def test_point_cloud_view_html_has_static_fallback_and_makes_no_external_request():
    import base64
    import io
    import json
    import re

    from PIL import Image

    points, colors = _cloud()
    view = show_point_clouds({"cloud </script>": (points, colors)}, max_points=200, cdn=False)
    bundle = view._repr_mimebundle_()
    page = bundle["text/html"]
    assert f'class="{PLOT3D_CLASS}"' in page and 'data-state="loading"' in page
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(png))).size[0] > 100  # the static image decodes
    assert view.png == base64.b64decode(png)
    assert "http" not in page and "/tmp" not in page and "/home" not in page  # nothing fetched, no paths
    script = page.split("<script>", 1)[1]
    assert script.count("</script>") == 1  # the title's </script> cannot end the script early
    figure = json.loads(re.search(r"figure = (\{.*?\}), cdn = null;", script).group(1).replace("<\\/", "</"))
    assert [trace["type"] for trace in figure["data"]] == ["scatter3d"]
    assert figure["layout"]["annotations"][0]["text"] == "cloud </script>"
    # only what the book renders: a plotly mime type would be an unknown-mime warning under -W
    assert set(bundle) == {"text/html", "text/plain"} and "200 points" in bundle["text/plain"]


def test_point_cloud_view_fetches_plotly_from_its_cdn_only_when_asked(monkeypatch):
    from plotly.offline import get_plotlyjs_version

    points = _cloud()[0]
    url = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    assert url in show_point_clouds({"a": points}, cdn=True).html()
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert "http" not in show_point_clouds({"a": points}).html()        # the book: its own copy
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert url in show_point_clouds({"a": points}).html()               # Colab: from the CDN
    assert "https://example.org/p.js" in show_point_clouds({"a": points}, cdn="https://example.org/p.js").html()


def test_point_cloud_view_leaves_no_pyplot_figure_open():
    before = plt.get_fignums()
    show_point_clouds({"a": _cloud()[0], "b": _cloud(seed=1)})
    assert plt.get_fignums() == before  # a notebook would show an open figure as a second output


def test_point_cloud_view_rejects_bad_input():
    with pytest.raises(ValueError, match=r"non-empty dict"):
        show_point_clouds(np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(N, 3\)"):
        point_cloud_figure({"a": np.ones((5, 2))})
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\) like points"):
        show_point_clouds({"a": (np.ones((5, 3)), np.ones((4, 3)))})


def _plotly_pages():
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "_ext"))
    try:
        import plotly_pages
    finally:
        sys.path.remove(str(root / "_ext"))
    return plotly_pages


def test_book_extension_loads_plotly_js_on_3d_view_pages_only(tmp_path):
    import types

    extension = _plotly_pages()
    assert extension.PLOT3D_CLASS == PLOT3D_CLASS
    added = []
    app = types.SimpleNamespace(add_js_file=lambda name, **kw: added.append((name, kw)), outdir=tmp_path,
                                builder=types.SimpleNamespace(format="html"))
    view_page = "<p>text</p>" + show_point_clouds({"a": _cloud()[0]}, cdn=False).html()
    extension._add_script(app, "chapters/en/00_introduction", "page.html", {"body": view_page}, None)
    extension._add_script(app, "chapters/en/01_cameras", "page.html", {"body": "<p>no view</p>"}, None)
    assert added == [("plotly.min.js", {"loading_method": "defer"})]
    extension._copy_script(app)
    copied = tmp_path / "_static" / "plotly.min.js"
    assert copied.read_bytes() == extension.plotly_js().read_bytes()
    assert b"window.Plotly" in copied.read_bytes()[-2000:]  # the bundle defines the global the view uses


def refinement_inputs(n=3, size=4):
    generator = torch.Generator().manual_seed(0)
    gt = 500 + 100 * torch.rand(n, 1, size, size, generator=generator)
    initial = gt + 20 * torch.randn(n, 1, size, size, generator=generator)
    refined = initial + 5 * torch.randn(n, 1, size, size, generator=generator)
    valid = torch.rand(n, 1, size, size, generator=generator) > 0.2
    images = torch.rand(n, 3, 4 * size, 4 * size, generator=generator)
    return images, gt, initial, refined, valid, torch.tensor([10.0, 20.0, 40.0])[:n]


def test_refinement_panels_draw_depth_error_and_change_in_intervals_for_the_chosen_samples():
    images, gt, initial, refined, valid, interval = refinement_inputs()
    fig = show_refinement_panels(images, gt, initial, refined, valid, interval, samples=(0, 2))
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 7
    assert [ax.get_title() for ax in panels[:7]] == ["image", "ground truth", "initial", "refined",
                                                    "|initial - gt|", "|refined - gt|", "change of |error|"]
    vmin, vmax = float(gt[valid].min()), float(gt[valid].max())   # every sample's valid gt, drawn or not
    for row, index in zip((panels[:7], panels[7:]), (0, 2)):
        hide = ~valid[index, 0]
        np.testing.assert_allclose(row[0].images[0].get_array(), images[index].permute(1, 2, 0).numpy())
        for ax, depth in zip(row[1:4], (gt, initial, refined)):
            shown = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
            np.testing.assert_allclose(shown, depth[index, 0].masked_fill(hide, float("nan")).numpy())
            assert ax.images[0].get_clim() == pytest.approx((vmin, vmax))
        error = ((refined - gt).abs()[index, 0] / interval[index]).masked_fill(hide, float("nan"))
        np.testing.assert_allclose(np.ma.filled(row[5].images[0].get_array().astype(float), np.nan), error.numpy(),
                                   rtol=1e-6)
        change = ((refined - gt).abs() - (initial - gt).abs())[index, 0] / interval[index]
        np.testing.assert_allclose(np.ma.filled(row[6].images[0].get_array().astype(float), np.nan),
                                   change.masked_fill(hide, float("nan")).numpy(), rtol=1e-5, atol=1e-6)
        assert row[4].images[0].get_clim() == (0, 3) and row[6].images[0].get_clim() == (-0.5, 0.5)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert labels == ["depth (mm)", "error (intervals)", "change (intervals)"]


def test_refinement_panels_reject_mismatched_shapes():
    images, gt, initial, refined, valid, interval = refinement_inputs()
    with pytest.raises(ValueError, match=r"refined \(3, 1, 4, 3\).*expected one shape"):
        show_refinement_panels(images, gt, initial, refined[..., :3], valid, interval, samples=[0])
    with pytest.raises(ValueError, match=r"images \(2, 3, 16, 16\) for 3 depth maps"):
        show_refinement_panels(images[:2], gt, initial, refined, valid, interval, samples=[0])


def test_hypothesis_bands_span_each_stages_hypotheses_along_the_row_and_zoom_on_the_centre():
    height, width, row = 16, 64, 5
    gt = torch.linspace(500, 600, width).expand(1, height, width).clone()
    gt[0, row, :3] = 0                                                  # no ground truth there
    coarse = gt[:, ::4, ::4] + torch.arange(-24.0, 24.0, 6).reshape(8, 1, 1)   # 8 hypotheses at 1/4
    fine = gt + torch.arange(-2.0, 2.0).reshape(4, 1, 1)                       # 4 at full size
    fig = show_hypothesis_bands([coarse, fine], gt, gt + 1, row, title="a title", zoom_columns=20, margin=5)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["a title", "zoom on 20 columns"]
    for ax in axes:
        for polygon, band in zip(ax.collections, (coarse[:, row // 4].repeat_interleave(4, -1), fine[:, row])):
            ys = polygon.get_paths()[0].vertices[:, 1]
            assert ys.max() == pytest.approx(float(band.max())) and ys.min() == pytest.approx(float(band.min()))
        truth, depth = ax.lines
        assert np.isnan(truth.get_ydata()[:3]).all()
        np.testing.assert_allclose(np.asarray(truth.get_ydata())[3:], gt[0, row, 3:].numpy())
        np.testing.assert_allclose(np.asarray(depth.get_ydata()), gt[0, row].numpy() + 1)
    labels = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert labels == ["stage 1: 8 hypotheses", "stage 2: 4 hypotheses", "ground truth", "cascade depth"]
    assert axes[1].get_xlim() == (22, 41)
    zoomed = gt[0, row, 22:42]
    assert axes[1].get_ylim() == pytest.approx((float(zoomed.min()) - 5, float(zoomed.max()) + 5))
    with pytest.raises(ValueError, match="row 16"):
        show_hypothesis_bands([fine], gt, gt, height)
    with pytest.raises(ValueError, match=r"bands \[\(16, 64\)\]"):
        show_hypothesis_bands([gt[0]], gt, gt, row)



def test_cost_curves_mark_each_pixel_at_its_block_centre_and_draw_its_cost_along_the_planes():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 16, 20, generator=generator)
    cost = torch.rand(6, 4, 5, generator=generator)
    depth_values = torch.linspace(500.0, 750.0, 6)
    gt = 500 + 250 * torch.rand(4, 5, generator=generator)
    offsets, mean_curve = torch.arange(-2, 3), torch.rand(5, generator=generator)
    fig = show_cost_curves(image, cost, depth_values, gt, [[1, 2], [3, 0]], offsets, mean_curve, scale=4)
    ax_img, ax_px, ax_all = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["reference", "two pixels", "all valid pixels"]
    np.testing.assert_array_equal(ax_img.images[0].get_array(), image.permute(1, 2, 0).numpy())
    for k, (row, col) in enumerate([(1, 2), (3, 0)]):
        marker = ax_img.lines[k]
        assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (4 * col + 1.5, 4 * row + 1.5)
        curve, true_depth = ax_px.lines[2 * k:2 * k + 2]
        np.testing.assert_array_equal(curve.get_xdata(), depth_values.numpy())
        np.testing.assert_array_equal(curve.get_ydata(), cost[:, row, col].numpy())
        assert list(true_depth.get_xdata()) == [float(gt[row, col])] * 2 and true_depth.get_linestyle() == "--"
        assert curve.get_color() == true_depth.get_color() == marker.get_color() == f"C{k}"
    assert ax_px.get_xlabel() == "plane depth d (mm)"
    np.testing.assert_array_equal(ax_all.lines[0].get_xdata(), offsets.numpy())
    np.testing.assert_array_equal(ax_all.lines[0].get_ydata(), mean_curve.numpy())
    with pytest.raises(ValueError, match=r"gt \(5, 4\).*expected \(3, H, W\), \(D, h, w\), \(h, w\)"):
        show_cost_curves(image, cost, depth_values, gt.T, [[0, 0]], offsets, mean_curve)
    with pytest.raises(ValueError, match=r"offsets \(5\) and mean_curve \(4\)"):
        show_cost_curves(image, cost, depth_values, gt, [[0, 0]], offsets, mean_curve[:4])


def test_depth_distributions_draw_each_pixels_cost_and_probability_with_gt_and_soft_argmin():
    generator = torch.Generator().manual_seed(1)
    n, depths, h, w = 2, 5, 3, 4
    depth_values = torch.stack([torch.linspace(500.0, 600.0, depths), torch.linspace(700.0, 900.0, depths)])
    cost = torch.rand(n, depths, h, w, generator=generator)
    prob = torch.softmax(torch.randn(n, depths, h, w, generator=generator), dim=1)
    gt, depth = 600 + 100 * torch.rand(2, n, 1, h, w, generator=generator)
    confidence = torch.rand(n, 1, h, w, generator=generator)
    pixels = {"sure": (1, 2, 3), "unsure": (0, 0, 1)}
    fig = show_depth_distributions(depth_values, cost, prob, gt, depth, confidence, pixels)
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert len(fig.axes) == 4
    for col, (name, (k, y, x)) in enumerate(pixels.items()):
        assert top[col].get_title() == f"{name}: confidence {float(confidence[k, 0, y, x]):.2f}"
        assert bottom[col].get_xlabel() == "depth plane (mm)"
        for ax, volume in ((top[col], cost), (bottom[col], prob)):
            curve, true_depth, soft_argmin = ax.lines
            np.testing.assert_array_equal(curve.get_xdata(), depth_values[k].numpy())
            np.testing.assert_array_equal(curve.get_ydata(), volume[k, :, y, x].numpy())
            assert true_depth.get_xdata()[0] == float(gt[k, 0, y, x])
            assert soft_argmin.get_xdata()[0] == float(depth[k, 0, y, x])
    assert (top[0].get_ylabel(), bottom[0].get_ylabel()) == ("cost (variance)", "probability")
    assert [t.get_text() for t in bottom[0].get_legend().get_texts()] == ["true depth", "soft-argmin"]
    with pytest.raises(ValueError, match=r"prob_volume \(2, 4, 3, 4\)"):
        show_depth_distributions(depth_values, cost, prob[:, :4], gt, depth, confidence, pixels)
    with pytest.raises(ValueError, match=r"confidence \(2, 3, 4\)"):
        show_depth_distributions(depth_values, cost, prob, gt, depth, confidence[:, 0], pixels)


@pytest.mark.parametrize("leading_one", [True, False])
def test_confidence_panels_show_the_error_up_to_k_intervals_blank_without_gt_and_the_confidence(leading_one):
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(3, 8, 12, generator=generator)
    gt, depth = 500 + 50 * torch.rand(2, 1, 2, 3, generator=generator)
    valid = torch.rand(1, 2, 3, generator=generator) > 0.3
    valid[0, 0, 0] = False
    confidence = torch.rand(1, 2, 3, generator=generator)
    maps = (depth, gt, valid, confidence) if leading_one else (depth[0], gt[0], valid[0], confidence[0])
    fig = show_confidence_panels(image, *maps, torch.tensor(2.5), max_intervals=4)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in axes] == ["reference image", "|MVSNet - gt|, up to 4 intervals",
                                               "photometric confidence"]
    np.testing.assert_array_equal(axes[0].images[0].get_array(), image.permute(1, 2, 0).numpy())
    error = np.ma.filled(axes[1].images[0].get_array().astype(float), np.nan)
    expected = torch.where(valid, (depth - gt).abs(), float("nan"))[0].numpy()
    np.testing.assert_allclose(error, expected, rtol=1e-6)
    assert np.isnan(error[0, 0])
    assert axes[1].images[0].get_clim() == (0, 10.0)
    assert axes[1].images[0].get_cmap().get_bad().tolist() == [0.0, 0.0, 0.0, 1.0]
    np.testing.assert_array_equal(axes[2].images[0].get_array(), confidence[0].numpy())
    assert axes[2].images[0].get_clim() == (0, 1)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert labels == ["abs. error (mm)", "confidence"]
    with pytest.raises(ValueError, match=r"valid \(2, 2\).*expected \(3, H, W\) and the maps in one shape"):
        show_confidence_panels(image, depth, gt, valid[0, :, :2], confidence, 2.5)


def test_the_figures_the_cuda_test_compares_are_drawn_on_the_cpu_too():
    """tests/test_cuda.py compares every figure helper's drawing of CUDA tensors with its drawing of
    CPU ones; CI has no GPU, so this keeps that test's inputs valid for every helper it names."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_cuda import figure_arrays

    arrays = figure_arrays("cpu")
    assert set(arrays) >= {"show_depth_panels", "show_refinement_panels", "draw_fused_cloud"}
    assert all(arrays.values()) and all(a.size for drawn in arrays.values() for a in drawn)
