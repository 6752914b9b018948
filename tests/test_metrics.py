"""Tests for depthlib.metrics: a NumPy reference of the Eigen metrics, hand cases, the crop and evaluate."""
import math

import numpy as np
import pytest
import torch

from depthlib.metrics import (EDGE_REGIONS, METRIC_NAMES, depth_edge_regions, depth_metrics, edge_band_metrics,
                              edge_band_table, eigen_crop, evaluate, less_k_interval, mean_absolute_error)


def numpy_eigen_metrics(pred, gt):
    """Eigen et al. (2014) metrics of 1-D float64 arrays of valid pixels, gt in the denominators."""
    ratio = np.maximum(pred / gt, gt / pred)
    return {"delta1": np.mean(ratio < 1.25), "delta2": np.mean(ratio < 1.25 ** 2),
            "delta3": np.mean(ratio < 1.25 ** 3), "abs_rel": np.mean(np.abs(pred - gt) / gt),
            "sq_rel": np.mean((pred - gt) ** 2 / gt), "rmse": np.sqrt(np.mean((pred - gt) ** 2)),
            "rmse_log": np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2)),
            "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt)))}


def assert_metrics_close(actual, expected, rtol=1e-6):
    assert set(actual) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert isinstance(actual[name], float)
        assert math.isclose(actual[name], expected[name], rel_tol=rtol, abs_tol=1e-9), \
            (name, actual[name], expected[name])


# ---------------------------------------------------------------- depth_metrics
def test_depth_metrics_match_numpy_reference_pooled_over_valid_pixels():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 10.0, (3, 1, 12, 16))
    pred = gt * rng.uniform(0.45, 2.3, gt.shape)         # ratios in every delta bin and beyond
    mask = rng.random(gt.shape) > 0.3
    gt[0, 0, 0, :4] = [0.0, np.nan, np.inf, -1.0]       # invalid gt is dropped even inside the mask
    mask[0, 0, 0, :4] = True
    valid = mask & np.isfinite(gt) & (gt > 0)
    pred, gt = pred.astype(np.float32), gt.astype(np.float32)    # what the tensors hold
    expected = numpy_eigen_metrics(pred[valid].astype(np.float64), gt[valid].astype(np.float64))
    actual = depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    assert_metrics_close(actual, expected)
    assert 0.1 < actual["delta1"] < actual["delta2"] < actual["delta3"] < 1.0


def test_depth_metrics_of_a_perfect_prediction():
    gt = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(1)) * 5 + 0.5
    assert depth_metrics(gt, gt) == {"delta1": 1.0, "delta2": 1.0, "delta3": 1.0, "abs_rel": 0.0,
                                     "sq_rel": 0.0, "rmse": 0.0, "rmse_log": 0.0, "log10": 0.0}


def test_depth_metrics_of_a_uniform_2x_scale_by_hand():
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    # ratio 2 > 1.25^3 = 1.953125, so every delta is 0; |2g - g| / g = 1; (2g - g)^2 / g = g
    expected = {"delta1": 0.0, "delta2": 0.0, "delta3": 0.0, "abs_rel": 1.0, "sq_rel": 2.5,
                "rmse": math.sqrt(7.5), "rmse_log": math.log(2), "log10": math.log10(2)}
    assert_metrics_close(depth_metrics(2 * gt, gt), expected)
    # gt is the denominator: halving the prediction gives abs_rel 0.5, not 1
    assert math.isclose(depth_metrics(gt / 2, gt)["abs_rel"], 0.5, rel_tol=1e-7)


def test_delta_thresholds_are_strict_powers_of_1_25_both_ways():
    gt = torch.ones(1, 1, 1, 5)
    pred = torch.tensor([1.1, 1 / 1.5, 1.9, 2.5, 1.25 ** 2]).reshape(1, 1, 1, 5)
    # ratios 1.1 | 1.5 | 1.9 | 2.5 | 1.5625 (= 1.25^2 exactly, not < 1.25^2)
    metrics = depth_metrics(pred, gt)
    assert (metrics["delta1"], metrics["delta2"], metrics["delta3"]) == (0.2, 0.4, 0.8)


def test_depth_metrics_clamp_non_positive_predictions_and_reject_empty_masks():
    gt = torch.full((1, 1, 1, 2), 1.0)
    metrics = depth_metrics(torch.tensor([0.0, -3.0]).reshape(1, 1, 1, 2), gt)
    assert all(math.isfinite(value) for value in metrics.values())
    assert math.isclose(metrics["log10"], 6.0, rel_tol=1e-9)   # clamped to 1e-6 m
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_metrics(gt, gt, torch.zeros_like(gt, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"pred has shape \(1, 1, 2\) and gt \(1, 1, 1, 2\)"):
        depth_metrics(gt[0], gt)


# ---------------------------------------------------------------- MVSNet-style metrics
def test_less_k_interval_by_hand_with_inclusive_bound_and_per_sample_interval():
    gt = torch.tensor([[10.0, 10.0, 10.0, 10.0, 0.0], [20.0, 20.0, 20.0, 20.0, 20.0]])
    pred = torch.tensor([[10.0, 10.9, 11.0, 13.5, 99.0], [20.0, 21.0, 22.0, 26.0, 27.0]])
    # sample 0, interval 1: errors 0, .9, 1, 3.5 (gt 0 is invalid); sample 1, interval 2: 0, .5, 1, 3, 3.5
    interval = torch.tensor([1.0, 2.0])
    assert less_k_interval(pred, gt, None, interval, 1) == pytest.approx(6 / 9)
    assert less_k_interval(pred, gt, None, interval, 3) == pytest.approx(7 / 9)
    mask = torch.tensor([[True] * 5, [False] * 5])
    assert less_k_interval(pred, gt, mask, 1.0, 1) == pytest.approx(3 / 4)
    assert less_k_interval(pred, gt, mask, 1.0, 3) == pytest.approx(3 / 4)


def test_mean_absolute_error_by_hand_and_empty_mask_error():
    gt = torch.tensor([[1.0, 2.0, float("nan")], [4.0, 0.0, 6.0]])
    pred = torch.tensor([[1.5, 2.0, 7.0], [3.0, 5.0, 6.25]])
    assert mean_absolute_error(pred, gt) == pytest.approx((0.5 + 0 + 1 + 0.25) / 4)
    with pytest.raises(ValueError, match="no valid pixel"):
        mean_absolute_error(pred, gt, torch.zeros_like(gt, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid pixel"):
        less_k_interval(pred, gt, torch.zeros_like(gt, dtype=torch.bool), 1.0, 1)


# ---------------------------------------------------------------- Eigen crop
def test_eigen_crop_at_480x640_is_rows_45_to_471_cols_41_to_601():
    expected = np.zeros((480, 640), dtype=bool)
    expected[45:471, 41:601] = True
    np.testing.assert_array_equal(eigen_crop(480, 640).numpy(), expected)


def test_eigen_crop_scales_proportionally():
    crop = eigen_crop(240, 320)          # 22.5 -> 23, 235.5 -> 236, 20.5 -> 21, 300.5 -> 301 (half up)
    rows, cols = crop.any(1).nonzero().squeeze(1), crop.any(0).nonzero().squeeze(1)
    assert (rows[0].item(), rows[-1].item() + 1, cols[0].item(), cols[-1].item() + 1) == (23, 236, 21, 301)
    assert crop.sum().item() == (236 - 23) * (301 - 21)


# ---------------------------------------------------------------- evaluate
def toy_dataset(n=5, height=12, width=16, seed=0):
    """Items whose image channel 0 encodes the depth: depth = 1 + 4 * image[0]; masks of varied size."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(n):
        image = torch.rand(3, height, width, generator=generator)
        mask = torch.rand(1, height, width, generator=generator) > 0.1 * index
        items.append({"image": image, "depth": 1 + 4 * image[:1], "mask": mask})
    return items


def column_ramp(width):
    return torch.linspace(0.0, 1.5, width)


def perfect_predictor(images):
    return 1 + 4 * images[:, :1]


def biased_predictor(images):       # not flip-equivariant: the bias depends on the column
    return perfect_predictor(images) + column_ramp(images.shape[-1])


def pooled_reference(dataset, predict, crop):
    preds = torch.stack([predict(item["image"][None])[0] for item in dataset])
    gts = torch.stack([item["depth"] for item in dataset])
    masks = torch.stack([item["mask"] for item in dataset]) & crop
    return depth_metrics(preds.clamp(1e-3, 10.0), gts, masks)


def test_evaluate_perfect_pixelwise_predictor_is_unchanged_by_flip_tta():
    dataset = toy_dataset()
    with_tta = evaluate(perfect_predictor, dataset, batch_size=2)
    assert with_tta == evaluate(perfect_predictor, dataset, batch_size=2, flip_tta=False)
    assert_metrics_close(with_tta, {**dict.fromkeys(["delta1", "delta2", "delta3"], 1.0),
                                    **dict.fromkeys(["abs_rel", "sq_rel", "rmse", "rmse_log", "log10"], 0.0)})


def test_evaluate_flip_tta_averages_with_the_mirrored_prediction_pooled_over_the_set():
    dataset = toy_dataset()
    crop = eigen_crop(12, 16)
    symmetric_bias = (column_ramp(16) + column_ramp(16).flip(0)) / 2     # = 0.75 everywhere
    expected = pooled_reference(dataset, lambda images: perfect_predictor(images) + symmetric_bias, crop)
    actual = evaluate(biased_predictor, dataset, batch_size=2, flip_tta=True)
    assert_metrics_close(actual, expected)
    assert_metrics_close(evaluate(biased_predictor, dataset, batch_size=3, flip_tta=False),
                         pooled_reference(dataset, biased_predictor, crop))
    per_image_abs_rel = np.mean([pooled_reference([item], lambda images: perfect_predictor(images) + symmetric_bias,
                                                  crop)["abs_rel"] for item in dataset])
    assert abs(actual["abs_rel"] - per_image_abs_rel) > 1e-4      # pooled, not a mean of per-image metrics


def test_evaluate_clips_predictions_and_applies_the_crop():
    dataset = [{"image": torch.zeros(3, 12, 16), "depth": torch.full((1, 12, 16), 5.0),
                "mask": torch.ones(1, 12, 16, dtype=torch.bool)}]
    far = evaluate(lambda images: torch.full((images.shape[0], 1, 12, 16), 100.0), dataset)
    assert far["abs_rel"] == pytest.approx(1.0) and far["rmse"] == pytest.approx(5.0)     # 100 m -> 10 m
    near = evaluate(lambda images: torch.full((images.shape[0], 1, 12, 16), -1.0), dataset, min_depth=0.05)
    assert near["abs_rel"] == pytest.approx(0.99)                                         # -1 m -> 0.05 m

    crop = eigen_crop(12, 16)
    def wrong_outside_crop(images):
        return torch.where(crop, torch.tensor(5.0), torch.tensor(1.0)).expand(images.shape[0], 1, 12, 16)
    assert evaluate(wrong_outside_crop, dataset, crop="eigen")["abs_rel"] == 0.0
    outside = (~crop).float().mean().item()
    assert evaluate(wrong_outside_crop, dataset, crop=None)["abs_rel"] == pytest.approx(0.8 * outside)


def test_evaluate_puts_a_module_in_eval_mode_and_restores_it():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(4.0))
            self.modes = []

        def forward(self, images):
            self.modes.append(self.training)
            return 1 + self.scale * images[:, :1]

    model = Recorder().train()
    assert evaluate(model, toy_dataset(n=2), batch_size=2)["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert model.modes == [False, False] and model.training


def test_evaluate_rejects_wrong_prediction_shape_and_bad_arguments():
    dataset = toy_dataset(n=1)
    with pytest.raises(ValueError, match=r"returned shape \(1, 1, 6, 8\).*expected metric depth \(1, 1, 12, 16\)"):
        evaluate(lambda images: torch.ones(images.shape[0], 1, 6, 8), dataset)
    with pytest.raises(ValueError, match="crop='garg'"):
        evaluate(perfect_predictor, dataset, crop="garg")


# ---------------------------------------------------------------- depth-edge regions


def brute_force_regions(gt, valid, interval, threshold, radius):
    """depth_edge_regions pixel by pixel: (H, W) float64 gt and bool valid of one sample."""
    height, width = gt.shape
    labels = np.full((height, width), "", dtype=object)
    for row in range(height):
        for col in range(width):
            if not valid[row, col]:
                continue
            window = [(r, c) for r in range(row - radius, row + radius + 1)
                      for c in range(col - radius, col + radius + 1) if 0 <= r < height and 0 <= c < width]
            if any(not valid[r, c] for r, c in window):
                labels[row, col] = "outline"
                continue
            depths = [gt[r, c] for r, c in window]
            labels[row, col] = "depth_edge" if max(depths) - min(depths) > threshold * interval else "flat"
    return labels


def random_depth(batch=2, height=9, width=11, seed=0):
    """Piecewise-planar depth with steps, holes (0), a NaN and an inf: every region and every invalid kind."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    gt = np.stack([600 + 3.0 * rows + 2.0 * cols + 40.0 * ((cols + rng.integers(0, 3, (height, width))) > 6)
                   + rng.normal(0, 0.5, (height, width)) for _ in range(batch)])
    gt[rng.random(gt.shape) < 0.08] = 0.0
    gt[0, 0, 5], gt[-1, -1, 2] = np.nan, np.inf
    return gt


@pytest.mark.parametrize("radius, threshold", [(1, 2.0), (2, 2.0), (1, 0.5), (2, 5.0)])
def test_depth_edge_regions_match_a_pixel_by_pixel_reference(radius, threshold):
    gt = random_depth()
    mask = np.ones_like(gt, dtype=bool)
    mask[1, 4:6, 3] = False                                     # masked out although the depth is valid
    intervals = np.array([2.5, 4.0])                            # per-sample plane spacing
    regions = depth_edge_regions(torch.tensor(gt)[:, None], torch.tensor(mask)[:, None],
                                 torch.tensor(intervals), threshold, radius)
    assert list(regions) == list(EDGE_REGIONS)
    valid = np.isfinite(gt) & (gt > 0) & mask
    for b in range(len(gt)):
        expected = brute_force_regions(gt[b], valid[b], intervals[b], threshold, radius)
        for name in EDGE_REGIONS:
            np.testing.assert_array_equal(regions[name][b, 0].numpy(), expected == name, err_msg=f"{name} {b}")
    union = sum(regions[name].int() for name in EDGE_REGIONS)
    assert union.max() == 1 and torch.equal(union[:, 0] == 1, torch.tensor(valid))  # disjoint, cover valid
    if (radius, threshold) == (1, 2.0):
        assert all(regions[name].any() for name in EDGE_REGIONS)  # the test map has all three


def test_depth_edge_regions_accept_bh_w_maps_scalar_interval_and_no_mask():
    gt = torch.tensor(random_depth(seed=1))
    four = depth_edge_regions(gt[:, None], depth_interval=3.0)
    three = depth_edge_regions(gt, depth_interval=torch.tensor(3.0))
    for name in EDGE_REGIONS:
        assert three[name].shape == gt.shape
        assert torch.equal(three[name], four[name][:, 0])


def test_flat_slopes_and_steps_land_where_the_docstring_says():
    cols = torch.arange(12.0).expand(6, 12)
    slope = 500 + 1.5 * cols                  # 1.5 intervals per pixel: window span 3 > 2 -> depth edge,
    gentle = 500 + 0.5 * cols                 # except at the borders (window clipped: span 1.5); span 1: flat
    step = 500 + 50.0 * (cols >= 6)           # a 50-interval step between columns 5 and 6
    for depth, edge_columns in ((slope, set(range(1, 11))), (gentle, set()), (step, {5, 6})):
        regions = depth_edge_regions(depth[None, None], depth_interval=1.0)
        edge = regions["depth_edge"][0, 0]
        assert {c for c in range(12) if edge[:, c].all()} == edge_columns
        assert not regions["outline"].any()


def test_edge_band_metrics_pool_each_region_and_report_its_share():
    gt = torch.full((1, 1, 6, 8), 600.0)
    gt[..., 4:] = 700.0                                          # a step between columns 3 and 4
    pred = gt.clone()
    pred[..., 3] = 650.0                                         # the step blurred on both sides
    pred[..., 4] = 650.0
    pred[..., 0, 0] = 600.0 + 2.5                                # one flat pixel 2.5 intervals off
    result = edge_band_metrics(pred, gt, None, 1.0)
    band = depth_edge_regions(gt, None, 1.0)["depth_edge"]
    assert int(band.sum()) == 12 and result["band"]["share"] == 12 / 48
    assert result["band"]["less_one"] == 0.0 and result["band"]["mae"] == 50.0
    assert result["elsewhere"]["less_three"] == 1.0 and math.isclose(result["elsewhere"]["less_one"], 35 / 36, rel_tol=1e-6)
    assert math.isclose(result["elsewhere"]["mae"], 2.5 / 36)
    assert math.isclose(result["all"]["mae"], (12 * 50 + 2.5) / 48) and result["all"]["share"] == 1.0
    flat = edge_band_metrics(torch.full((1, 4, 4), 5.0), torch.full((1, 4, 4), 5.0), None, 1.0)
    assert flat["band"]["share"] == 0.0 and math.isnan(flat["band"]["mae"]) and flat["elsewhere"]["mae"] == 0.0


def test_edge_band_table_prints_each_maps_numbers_region_by_region_with_the_share():
    gt = torch.full((1, 1, 6, 8), 600.0)
    gt[..., 4:] = 700.0
    blurred = gt.clone()
    blurred[..., 3:5] = 650.0
    results = {"initial": edge_band_metrics(blurred, gt, None, 1.0), "refined": edge_band_metrics(gt, gt, None, 1.0)}
    lines = edge_band_table(results, unit="m").split("\n")
    assert lines[0].split() == ["region", "(share)", "depth", "less-one", "less-three", "MAE", "(m)"]
    assert len(lines) == 1 + 3 * 2
    parsed = [line.split() for line in lines[1:]]
    assert [row[:3] for row in parsed[::2]] == [["all", "(100%)", "initial"], ["band", "(25%)", "initial"],
                                                ["elsewhere", "(75%)", "initial"]]
    assert [row[0] for row in parsed[1::2]] == ["refined"] * 3        # the region label only on its first row
    for row, region in zip(parsed[::2], ("all", "band", "elsewhere")):
        expected = results["initial"][region]
        assert [float(x) for x in row[3:]] == [round(expected["less_one"], 4), round(expected["less_three"], 4),
                                               round(expected["mae"], 2)]
    assert [float(x) for x in parsed[3][1:]] == [1.0, 1.0, 0.0]   # refined, in the band: exact
    with pytest.raises(ValueError, match="regions"):
        edge_band_table({"initial": {"all": results["initial"]["all"]}})
    with pytest.raises(ValueError, match="at least one"):
        edge_band_table({})


def test_depth_edge_regions_reject_bad_arguments():
    gt = torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\).*\(B, 1, H, W\) or \(B, H, W\)"):
        depth_edge_regions(torch.ones(1, 2, 4, 4))
    with pytest.raises(ValueError, match="radius=0"):
        depth_edge_regions(gt, radius=0)
    with pytest.raises(ValueError, match="threshold=-1"):
        depth_edge_regions(gt, threshold=-1)
    with pytest.raises(ValueError, match="depth_interval"):
        depth_edge_regions(gt, depth_interval=0.0)
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 3\) and gt \(1, 1, 4, 4\)"):
        edge_band_metrics(torch.ones(1, 1, 4, 3), gt, None, 1.0)
