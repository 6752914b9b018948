"""Tests for depthlib.losses: against kornia (SSIM), torchmetrics (image gradients) and NumPy loops."""
import kornia
import numpy as np
import pytest
import torch
from torchmetrics.functional.image import image_gradients as tm_image_gradients

from depthlib.losses import (densedepth_loss, depth_norm, gradient_loss, image_gradients, l1_loss,
                             mvsnet_loss, ssim)
from depthlib.metrics import less_k_interval


def random_pair(seed, shape, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator) * scale
    y = (x + 0.3 * scale * torch.rand(shape, generator=generator)).clamp(0, scale)  # correlated with x
    return x, y


def random_mask(seed, shape, p_invalid=0.2):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) >= p_invalid


# ---------------------------------------------------------------- depth_norm
def test_depth_norm_values_and_finite_for_zero_negative_nan_inf():
    depth = torch.tensor([0.0, 0.05, 0.1, 1.0, 10.0, -1.0, float("nan"), float("inf")])
    torch.testing.assert_close(depth_norm(depth, 10.0),
                               torch.tensor([100.0, 100.0, 100.0, 10.0, 1.0, 100.0, 100.0, 0.0]))
    torch.testing.assert_close(depth_norm(depth[:5], 10.0, min_depth=0.5),
                               torch.tensor([20.0, 20.0, 20.0, 10.0, 1.0]))


def test_depth_norm_is_its_own_inverse_on_the_depth_range():
    depth = torch.linspace(0.1, 10.0, 50)
    torch.testing.assert_close(depth_norm(depth_norm(depth, 10.0), 10.0), depth)


def test_depth_norm_rejects_bad_range():
    with pytest.raises(ValueError, match="min_depth=20.0, max_depth=10.0"):
        depth_norm(torch.ones(3), 10.0, min_depth=20.0)


# ---------------------------------------------------------------- gradients, L1
def test_image_gradients_match_torchmetrics():
    image = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    for ours, reference in zip(image_gradients(image), tm_image_gradients(image)):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_gradient_loss_equals_densedepth_formula_without_mask():
    pred, target = random_pair(1, (2, 3, 8, 10))
    dy_pred, dx_pred = tm_image_gradients(pred)
    dy_true, dx_true = tm_image_gradients(target)
    # Keras: K.mean(|dy_p - dy_t| + |dx_p - dx_t|, axis=-1) over channels, then K.mean over the rest
    expected = ((dy_pred - dy_true).abs() + (dx_pred - dx_true).abs()).mean()
    torch.testing.assert_close(gradient_loss(pred, target), expected)


def test_gradient_loss_with_mask_counts_only_differences_between_valid_pixels():
    pred, target = random_pair(2, (2, 1, 6, 7))
    mask = random_mask(3, (2, 1, 6, 7))
    target = torch.where(mask, target, torch.full_like(target, float("nan")))  # invalid = NaN
    p, t, m = pred.double().numpy(), target.double().numpy(), mask.numpy()
    total = 0.0
    for b, c, i, j in np.ndindex(*p.shape):
        if i + 1 < p.shape[2] and m[b, c, i, j] and m[b, c, i + 1, j]:
            total += abs((p[b, c, i + 1, j] - p[b, c, i, j]) - (t[b, c, i + 1, j] - t[b, c, i, j]))
        if j + 1 < p.shape[3] and m[b, c, i, j] and m[b, c, i, j + 1]:
            total += abs((p[b, c, i, j + 1] - p[b, c, i, j]) - (t[b, c, i, j + 1] - t[b, c, i, j]))
    torch.testing.assert_close(gradient_loss(pred, target, mask).double(),
                               torch.tensor(total / m.sum(), dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_l1_loss_is_masked_mean_absolute_difference():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[1.5, 0.0], [float("inf"), 1.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    torch.testing.assert_close(l1_loss(pred, target, mask), torch.tensor((0.5 + 2.0) / 2))  # inf is invalid
    torch.testing.assert_close(l1_loss(pred, target.nan_to_num(posinf=3.0)), torch.tensor((0.5 + 2 + 0 + 3) / 4))


# ---------------------------------------------------------------- SSIM
@pytest.mark.parametrize("shape, data_range", [((1, 1, 16, 16), 1.0), ((2, 3, 20, 24), 100.0),
                                               ((3, 1, 11, 11), 255.0), ((2, 2, 13, 30), 10.0)])
def test_ssim_matches_kornia_valid_padding(shape, data_range):
    x, y = random_pair(4, shape, scale=data_range)
    expected = kornia.metrics.ssim(x, y, 11, max_val=data_range, padding="valid").mean()
    torch.testing.assert_close(ssim(x, y, data_range), expected)


def test_ssim_window_size_7_matches_kornia_and_identical_images_score_one():
    x, y = random_pair(5, (2, 1, 12, 15))
    torch.testing.assert_close(ssim(x, y, 1.0, window_size=7),
                               kornia.metrics.ssim(x, y, 7, max_val=1.0, padding="valid").mean())
    torch.testing.assert_close(ssim(x, x, 1.0), torch.tensor(1.0))


def test_masked_ssim_averages_kornia_map_over_fully_valid_windows():
    x, y = random_pair(6, (2, 1, 20, 22), scale=100.0)
    mask = torch.ones(2, 1, 20, 22, dtype=torch.bool)
    mask[0, 0, 3, 4] = mask[0, 0, 15, 18] = mask[1, 0, 10:, :5] = False
    y_with_holes = torch.where(mask, y, torch.full_like(y, float("nan")))
    ssim_map = kornia.metrics.ssim(x, y, 11, max_val=100.0, padding="valid")     # (2, 1, 10, 12)
    keep = np.zeros(ssim_map.shape, dtype=bool)
    for b, c, i, j in np.ndindex(*keep.shape):   # window of map pixel (i, j) = image rows i..i+10, cols j..j+10
        keep[b, c, i, j] = mask[b, c, i:i + 11, j:j + 11].all()
    assert 0 < keep.sum() < keep.size
    torch.testing.assert_close(ssim(x, y_with_holes, 100.0, mask=mask), ssim_map[torch.from_numpy(keep)].mean())


def test_ssim_is_one_when_no_window_is_fully_valid():
    x, y = random_pair(7, (1, 1, 12, 12))
    mask = torch.ones(1, 1, 12, 12, dtype=torch.bool)
    mask[0, 0, 5, 5] = False    # every 11x11 window of a 12x12 image contains (5, 5)
    torch.testing.assert_close(ssim(x, y, 1.0, mask=mask), torch.tensor(1.0))


def test_ssim_rejects_small_images_and_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 10, 20\) with window_size=11"):
        ssim(torch.rand(1, 1, 10, 20), torch.rand(1, 1, 10, 20), 1.0)
    with pytest.raises(ValueError, match=r"\(1, 1, 16, 16\) and target \(1, 1, 16, 17\)"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17), 1.0)


# ---------------------------------------------------------------- DenseDepth loss
def test_densedepth_loss_terms_match_independent_references():
    pred, target = random_pair(8, (2, 1, 16, 20), scale=100.0)
    pred, target = pred + 1, target + 1                         # depth_norm space is [1, 100]
    loss = densedepth_loss(pred, target)
    assert set(loss) == {"total", "depth", "grad", "ssim"}
    dy_pred, dx_pred = tm_image_gradients(pred)
    dy_true, dx_true = tm_image_gradients(target)
    l1 = (pred - target).abs().mean()
    grad = ((dy_pred - dy_true).abs() + (dx_pred - dx_true).abs()).mean()
    dssim = ((1 - kornia.metrics.ssim(target, pred, 11, max_val=100.0, padding="valid").mean()) / 2).clamp(0, 1)
    torch.testing.assert_close(loss["depth"], l1)
    torch.testing.assert_close(loss["grad"], grad)
    torch.testing.assert_close(loss["ssim"], dssim)
    torch.testing.assert_close(loss["total"], 0.1 * l1 + grad + dssim)
    torch.testing.assert_close(densedepth_loss(pred, target, theta=1.0)["total"], l1 + grad + dssim)


def test_densedepth_loss_with_all_true_mask_equals_no_mask():
    pred, target = random_pair(9, (2, 1, 14, 14), scale=50.0)
    plain = densedepth_loss(pred, target)
    masked = densedepth_loss(pred, target, mask=torch.ones(2, 1, 14, 14, dtype=torch.bool))
    for key in plain:
        torch.testing.assert_close(masked[key], plain[key])


def test_densedepth_loss_ignores_invalid_targets_in_value_and_gradient():
    pred, target = random_pair(10, (2, 1, 24, 24), scale=100.0)
    mask = torch.ones(2, 1, 24, 24, dtype=torch.bool)
    mask[0, :, :6] = mask[1, :, :, 18:] = False
    mask[0, 0, 15, 3] = False
    other_target = torch.where(mask, target, torch.rand(target.shape) * 100)
    pred.requires_grad_(True)
    loss = densedepth_loss(pred, target, mask=mask)
    for key, value in densedepth_loss(pred, other_target, mask=mask).items():
        torch.testing.assert_close(value, loss[key])
    loss["total"].backward()
    assert (pred.grad[~mask] == 0).all()
    assert (pred.grad[mask] != 0).float().mean() > 0.9


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf")])
def test_densedepth_loss_and_gradient_finite_for_bad_depth(bad):
    generator = torch.Generator().manual_seed(11)
    depth = torch.rand(2, 1, 16, 16, generator=generator) * 9 + 0.5
    depth[0, 0, 4:7, 5:9] = depth[1, 0, 0, :] = bad
    pred = depth_norm(torch.rand(2, 1, 16, 16, generator=generator) * 9 + 0.5, 10.0).requires_grad_(True)

    # via depth_norm: the bad values become finite normalised depths; no mask needed
    loss = densedepth_loss(pred, depth_norm(depth, 10.0))
    loss["total"].backward()
    assert all(torch.isfinite(value) for value in loss.values()) and torch.isfinite(pred.grad).all()

    # via a validity mask, with a raw max_depth / depth target that holds inf / NaN / 0
    pred.grad = None
    mask = torch.isfinite(depth) & (depth > 0)
    loss = densedepth_loss(pred, 10.0 / depth, mask=mask)
    loss["total"].backward()
    assert all(torch.isfinite(value) for value in loss.values()) and torch.isfinite(pred.grad).all()
    assert (pred.grad[~mask] == 0).all()
    clean = densedepth_loss(pred, torch.where(mask, 10.0 / depth, torch.ones_like(depth)), mask=mask)
    torch.testing.assert_close(loss["total"], clean["total"])


def test_densedepth_loss_rejects_mismatched_shapes_and_masks():
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 16\) and target \(2, 1, 16, 15\)"):
        densedepth_loss(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 15))
    with pytest.raises(ValueError, match=r"mask has shape \(2, 16, 16\)"):
        densedepth_loss(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16),
                        mask=torch.ones(2, 16, 16, dtype=torch.bool))


# ---------------------------------------------------------------- MVSNet loss
def test_mvsnet_loss_is_masked_mean_error_in_interval_units_per_sample():
    depth_gt = torch.tensor([[[500.0, 510.0], [520.0, 0.0]], [[600.0, 610.0], [float("nan"), 630.0]]])
    depth_est = torch.tensor([[[502.0, 510.0], [514.0, 3.0]], [[600.0, 618.0], [1.0, 634.0]]])
    mask = torch.isfinite(depth_gt) & (depth_gt > 0)
    # sample 0 / 2.0: errors 2, 0, 6 -> 1, 0, 3; sample 1 / 4.0: errors 0, 8, 4 -> 0, 2, 1
    expected = (1 + 0 + 3 + 0 + 2 + 1) / 6
    torch.testing.assert_close(mvsnet_loss(depth_est, depth_gt, mask, torch.tensor([2.0, 4.0])), torch.tensor(expected))
    torch.testing.assert_close(mvsnet_loss(depth_est[:1, None], depth_gt[:1, None], mask[:1, None], 2.0),
                               torch.tensor((1 + 0 + 3) / 3))


def test_mvsnet_loss_never_takes_a_hole_or_negative_depth_as_a_target_whatever_the_mask():
    depth_gt = torch.tensor([[[500.0, 0.0], [-3.0, float("inf")]]])
    depth_est = torch.full_like(depth_gt, 500.0)
    everything = torch.ones_like(depth_gt, dtype=torch.bool)
    # only the 500 mm pixel is a target: the loss is 0, as less-one's accuracy is 1 on the same pixels
    assert mvsnet_loss(depth_est, depth_gt, everything, 2.5).item() == 0.0
    assert less_k_interval(depth_est, depth_gt, everything, 2.5, 1) == 1.0


def test_mvsnet_loss_with_empty_mask_is_zero_with_zero_gradient():
    depth_est = torch.rand(2, 4, 5, requires_grad=True)
    depth_gt = torch.full((2, 4, 5), float("nan"))
    loss = mvsnet_loss(depth_est, depth_gt, torch.zeros(2, 4, 5, dtype=torch.bool), 2.5)
    loss.backward()
    assert loss.item() == 0.0 and (depth_est.grad == 0).all()


def test_mvsnet_loss_rejects_bad_shapes_and_intervals():
    depth = torch.rand(2, 4, 5)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"mask \(2, 1, 4, 5\)"):
        mvsnet_loss(depth, depth, mask[:, None], 1.0)
    with pytest.raises(ValueError, match=r"depth_interval has shape \(3,\), expected \(\) or \(2,\)"):
        mvsnet_loss(depth, depth, mask, torch.ones(3))
    with pytest.raises(ValueError, match="depth_interval=0"):
        mvsnet_loss(depth, depth, mask, 0)
    torch.testing.assert_close(mvsnet_loss(depth + 1, depth, mask, torch.tensor(2.0)), torch.tensor(0.5))
