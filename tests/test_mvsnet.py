"""Tests for depthlib.models.mvsnet: sizes against the paper, hand cases for every stage, checks of the
in-place / out-of-place paths, a small overfit, the classical plane-sweep baseline and the evaluation."""
import copy
import math
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from depthlib.data.scenes import object_scan
from depthlib.geometry import plane_sweep_volume, projection_matrix, scale_intrinsics
from depthlib.losses import mvsnet_loss
from depthlib.metrics import evaluate_mvsnet
from depthlib.models.mvsnet import (CostRegNet, FeatureNet, MVSNet, RefineNet, collect_mvsnet_outputs,
                                    depth_regression, photometric_confidence, plane_sweep_depth,
                                    standardize_image, variance_cost_volume)
from depthlib.planesweep import count_seeing_sources


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())


def rotation(axis_angle):
    """Rodrigues: a (3,) axis-angle vector -> (3, 3) rotation, float64."""
    angle = float(np.linalg.norm(axis_angle))
    if angle == 0:
        return np.eye(3)
    k = np.asarray(axis_angle, float) / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def random_projections(rng, batch, views, height, width):
    """(B, V, 4, 4) float32: a reference camera at the origin and source cameras a little moved and turned."""
    K = np.array([[0.9 * width, 0.0, (width - 1) / 2], [0.0, 0.9 * width, (height - 1) / 2], [0.0, 0.0, 1.0]])
    proj = np.zeros((batch, views, 4, 4))
    for b in range(batch):
        for v in range(views):
            extrinsic = np.eye(4)
            if v:
                extrinsic[:3, :3] = rotation(rng.normal(0, 0.05, 3))
                extrinsic[:3, 3] = rng.normal(0, 0.15, 3)
            proj[b, v] = projection_matrix(K, extrinsic)
    return torch.as_tensor(proj, dtype=torch.float32)


# ---------------------------------------------------------------- a fronto-parallel textured plane
FOCAL, BASELINE, PLANE_DEPTH = 40.0, 0.1, 2.0   # disparity FOCAL * BASELINE / PLANE_DEPTH = 2 pixels
DISPARITIES = torch.arange(8, 0, -1) * 0.5      # 4, 3.5, ..., 0.5 pixels: planes 1 .. 8 m, 2 m among them
MARGIN = 8                                      # > largest disparity + half the 7 x 7 window


def fronto_parallel_rig(height, width, seed=0):
    """A random-texture plane at PLANE_DEPTH seen by a reference camera and two cameras shifted by -/+ BASELINE
    along x. Returns imgs (1, 3, 3, H, W), proj (1, 3, 4, 4) with K at the image resolution, depth_values (1, 8).

    The source images are cut from the texture by hand: a camera at +b sees the plane point of reference
    pixel u at u - f b / Z, so its image is the reference shifted by the (integer) disparity.
    """
    generator = torch.Generator().manual_seed(seed)
    disparity = round(FOCAL * BASELINE / PLANE_DEPTH)
    assert disparity == FOCAL * BASELINE / PLANE_DEPTH
    texture = torch.rand(3, height, width + 2 * MARGIN, generator=generator)
    ref = texture[:, :, MARGIN:MARGIN + width]
    right = texture[:, :, MARGIN + disparity:MARGIN + disparity + width]  # camera at +b: src[u'] = ref[u' + d]
    left = texture[:, :, MARGIN - disparity:MARGIN - disparity + width]   # camera at -b: src[u'] = ref[u' - d]
    K = torch.tensor([[FOCAL, 0.0, (width - 1) / 2], [0.0, FOCAL, (height - 1) / 2], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    extrinsics = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    extrinsics[1, 0, 3], extrinsics[2, 0, 3] = -BASELINE, BASELINE  # t = -R C
    proj = projection_matrix(K.expand(3, 3, 3), extrinsics).float()[None]
    depth_values = (FOCAL * BASELINE / DISPARITIES).float()[None]
    return torch.stack([ref, right, left])[None], proj, depth_values


# ---------------------------------------------------------------- sizes and structure
def test_feature_and_cost_networks_have_mvsnets_338k_parameters_and_refinenet_20k():
    torch.manual_seed(0)
    model = MVSNet()
    feature, cost = count_parameters(model.feature), count_parameters(model.cost_regularization)
    # by hand: FeatureNet convs 216 + 576 + 3200 + 2304 + 2304 + 12800 + 9216 + 9216, BN 2 x (8+8+16+16+16+32+32),
    # last conv bias 32 -> 40,120; CostRegNet 3D convs/deconvs + BN + prob bias -> 298,009
    assert feature == 40_120 and cost == 298_009
    assert feature + cost == 338_129
    assert count_parameters(model.refine_network) == 20_065
    assert count_parameters(model) == 338_129 + 20_065
    assert MVSNet(refine=False).refine_network is None
    assert count_parameters(MVSNet(refine=False)) == 338_129


def test_feature_net_has_eight_convs_two_strided_5x5_and_a_plain_last_conv():
    torch.manual_seed(0)
    net = FeatureNet()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 16, 32, 32, 32]
    strided = [c for c in convs if c.stride != (1, 1)]
    assert len(strided) == 2 and all(c.stride == (2, 2) and c.kernel_size == (5, 5) for c in strided)
    assert all(c.kernel_size == (3, 3) for c in convs if c.stride == (1, 1))
    last = net.layers[-1]
    assert isinstance(last, nn.Conv2d) and last.bias is not None  # no BN / ReLU after it
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 7
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 7
    with torch.no_grad():
        features = net.eval()(torch.rand(2, 3, 64, 96))
    assert features.shape == (2, 32, 16, 24)  # output stride 4
    assert features.min() < 0  # a plain conv, not a ReLU, comes last


def test_cost_regnet_maps_a_cost_volume_to_one_logit_per_plane():
    torch.manual_seed(0)
    with torch.no_grad():
        logits = CostRegNet().eval()(torch.rand(2, 32, 16, 8, 24))
    assert logits.shape == (2, 1, 16, 8, 24)


# ---------------------------------------------------------------- the forward pass
@pytest.fixture(scope="module")
def small_batch():
    """Two samples, three views, 64 x 64 images, K at the depth resolution (16 x 16), 16 planes."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    imgs = torch.rand(2, 3, 3, 64, 64)
    proj = random_projections(rng, 2, 3, 16, 16)
    depth_values = torch.stack([torch.linspace(1.0, 3.0, 16), torch.linspace(2.0, 5.0, 16)])
    return imgs, proj, depth_values


@pytest.fixture(scope="module")
def calibrated_model(small_batch):
    """An untrained MVSNet whose BatchNorm statistics come from one train-mode pass over ``small_batch``.

    With the default running statistics (mean 0, variance 1) an untrained eval-mode network shrinks its
    activations layer by layer and returns an almost uniform probability volume, to which the output checks
    below would be blind.
    """
    torch.manual_seed(0)
    model = MVSNet()
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
            module.momentum = None  # cumulative average: after one pass, that pass's statistics
    with torch.no_grad():
        model.train()(*small_batch)
    return model.eval()


def test_forward_gives_documented_keys_shapes_and_a_normalised_probability(small_batch, calibrated_model):
    imgs, proj, depth_values = small_batch
    with torch.no_grad():
        out = calibrated_model(imgs, proj, depth_values)
    assert set(out) == {"depth", "refined_depth", "photometric_confidence", "prob_volume"}
    for key in ("depth", "refined_depth", "photometric_confidence"):
        assert out[key].shape == (2, 1, 16, 16) and out[key].dtype == torch.float32, key
    assert out["prob_volume"].shape == (2, 16, 16, 16)
    assert (out["prob_volume"] >= 0).all()
    assert out["prob_volume"].max() > 2 / 16  # not the uniform volume of a degenerate network
    torch.testing.assert_close(out["prob_volume"].sum(dim=1), torch.ones(2, 16, 16))
    # soft argmin is a convex combination of the sample's own planes
    low, high = depth_values[:, 0].reshape(2, 1, 1, 1), depth_values[:, -1].reshape(2, 1, 1, 1)
    assert ((out["depth"] >= low - 1e-5) & (out["depth"] <= high + 1e-5)).all()
    expected = (out["prob_volume"] * depth_values[:, :, None, None]).sum(1, keepdim=True)  # soft argmin, by hand
    torch.testing.assert_close(out["depth"], expected)
    confidence = out["photometric_confidence"]
    assert (confidence >= 0).all() and (confidence <= 1 + 1e-6).all()
    # by hand: the probability of planes i-1 .. i+2 around i = floor(expected plane number)
    prob = out["prob_volume"]
    index = (prob * torch.arange(16.0).reshape(1, -1, 1, 1)).sum(1, keepdim=True).long().clamp(0, 15)
    padded = torch.nn.functional.pad(prob, (0, 0, 0, 0, 1, 2))  # padded plane p + 1 is plane p
    torch.testing.assert_close(confidence, sum(padded.gather(1, index + j) for j in range(4)))

    # the refinement sees the standardised reference image and the range of the sample's planes
    with torch.no_grad():
        refined = calibrated_model.refine_network(standardize_image(imgs[:, 0]), out["depth"], low.flatten(),
                                                  high.flatten())
    torch.testing.assert_close(out["refined_depth"], refined)

    plain = MVSNet(refine=False).eval()
    missing, unexpected = plain.load_state_dict(calibrated_model.state_dict(), strict=False)
    assert not missing and unexpected and all(key.startswith("refine_network.") for key in unexpected)
    with torch.no_grad():
        out_plain = plain(imgs, proj, depth_values)
    assert set(out_plain) == {"depth", "photometric_confidence", "prob_volume"}
    torch.testing.assert_close(out_plain["depth"], out["depth"])


def test_forward_refines_over_the_first_and_last_plane(small_batch, calibrated_model):
    imgs, proj, depth_values = small_batch
    model = copy.deepcopy(calibrated_model)
    with torch.no_grad():
        model.refine_network.layers[-1].weight.zero_()
        model.refine_network.layers[-1].bias.fill_(0.25)
        out = model(imgs, proj, depth_values)
    span = (depth_values[:, -1] - depth_values[:, 0]).reshape(2, 1, 1, 1)  # 2 and 3
    torch.testing.assert_close(out["refined_depth"], out["depth"] + 0.25 * span)


def test_forward_ignores_a_brightness_offset_per_view_and_channel(small_batch, calibrated_model):
    """The images are standardised per view and channel first, so an offset changes nothing but rounding."""
    imgs, proj, depth_values = small_batch
    torch.manual_seed(15)
    with torch.no_grad():
        out = calibrated_model(imgs, proj, depth_values)
        shifted = calibrated_model(imgs + torch.rand(2, 3, 3, 1, 1) - 0.5, proj, depth_values)
    for key in out:
        torch.testing.assert_close(shifted[key], out[key], msg=key)


def test_eval_forward_is_the_same_with_and_without_autograd(small_batch, calibrated_model):
    """no_grad runs the in-place cost volume, grad-enabled the out-of-place one."""
    imgs, proj, depth_values = small_batch
    with torch.no_grad():
        fast = calibrated_model(imgs, proj, depth_values)
    slow = calibrated_model(imgs, proj, depth_values)
    assert slow["depth"].requires_grad and not fast["depth"].requires_grad
    assert set(fast) == set(slow)
    for key in fast:
        torch.testing.assert_close(fast[key], slow[key].detach(), msg=key)


def test_gradient_reaches_every_parameter_in_train_mode(small_batch):
    imgs, proj, depth_values = small_batch
    torch.manual_seed(2)
    model = MVSNet().train()
    out = model(imgs[:1], proj[:1], depth_values[:1])
    (out["depth"].mean() + out["refined_depth"].mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    # The last 3D conv's bias shifts every plane's logit equally, which the softmax over depth cancels:
    # its gradient is zero up to rounding, every other parameter's is not.
    prob_bias = model.cost_regularization.prob.bias.grad
    others = {name: p.grad.abs().max().item() for name, p in model.named_parameters()
              if name != "cost_regularization.prob.bias"}
    assert prob_bias.abs().max() < 1e-4 * min(others.values())
    assert min(others.values()) > 0, [name for name, value in others.items() if value == 0]


# ---------------------------------------------------------------- entry checks
def test_bad_inputs_raise_value_errors_naming_the_problem():
    model = MVSNet()
    imgs, proj = torch.zeros(2, 3, 3, 64, 64), torch.eye(4).repeat(2, 3, 1, 1)
    depths = torch.linspace(1.0, 2.0, 16).repeat(2, 1)
    with pytest.raises(ValueError, match=r"D=12 planes.*D a multiple of 8"):
        model(imgs, proj, depths[:, :12])
    with pytest.raises(ValueError, match=r"image 48x64.*H and W multiples of 32"):
        model(imgs[..., :48, :], proj, depths)
    with pytest.raises(ValueError, match=r"image 64x80.*H and W multiples of 32"):
        model(torch.zeros(2, 3, 3, 64, 80), proj, depths)
    with pytest.raises(ValueError, match=re.escape("proj (2, 2, 4, 4) does not match imgs (2, 3, 3, 64, 64)")):
        model(imgs, proj[:, :2], depths)
    with pytest.raises(ValueError, match=re.escape("imgs (2, 1, 3, 64, 64), expected (B, V, 3, H, W) with V >= 2")):
        model(imgs[:, :1], proj[:, :1], depths)
    with pytest.raises(ValueError, match=re.escape("imgs (2, 3, 64, 64), expected (B, V, 3, H, W)")):
        model(imgs[:, 0], proj, depths)
    with pytest.raises(ValueError, match=re.escape("depth_values (1, 16), expected (2, D)")):
        model(imgs, proj, depths[:1])
    with pytest.raises(ValueError, match=re.escape("depth_values (2, 16, 1), expected (2, D)")):
        model(imgs, proj, depths[..., None])
    # planes that do not increase: equal ones gave a NaN refined depth, decreasing ones reversed bands
    for bad in (torch.full((2, 16), 3.0), depths.flip(1), depths.clone().index_fill_(1, torch.tensor([5]), float("nan"))):
        with pytest.raises(ValueError, match=r"depth_values of sample 0 are not increasing .*from near to far"):
            model(imgs, proj, bad)
    with pytest.raises(ValueError, match=re.escape("imgs are torch.uint8, expected a floating-point tensor")):
        model(imgs.to(torch.uint8), proj, depths)


def test_refinenet_rejects_mismatched_image_and_depth():
    net = RefineNet()
    low, high = torch.ones(2), torch.full((2,), 2.0)
    with pytest.raises(ValueError, match=re.escape("img (1, 3, 32, 32) and depth (2, 1, 8, 8)")):
        net(torch.zeros(1, 3, 32, 32), torch.ones(2, 1, 8, 8), low, high)
    with pytest.raises(ValueError, match=re.escape("img (2, 1, 32, 32)")):
        net(torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 8, 8), low, high)
    with pytest.raises(ValueError, match=re.escape("depth (2, 8, 8); expected (B, 3, H, W) and (B, 1, h, w)")):
        net(torch.zeros(2, 3, 32, 32), torch.ones(2, 8, 8), low, high)
    with pytest.raises(ValueError, match=re.escape("depth (2, 2, 8, 8)")):
        net(torch.zeros(2, 3, 32, 32), torch.ones(2, 2, 8, 8), low, high)


# ---------------------------------------------------------------- soft argmin and confidence
def test_depth_regression_hand_cases():
    depth_values = torch.tensor([[1.0, 2.0, 4.0, 8.0], [10.0, 11.0, 12.5, 20.0]])
    one_hot = torch.zeros(2, 4, 3, 5)
    one_hot[0, 2], one_hot[1, 3] = 1.0, 1.0
    depth = depth_regression(one_hot, depth_values)
    assert depth.shape == (2, 1, 3, 5)
    assert torch.equal(depth[0], torch.full((1, 3, 5), 4.0)) and torch.equal(depth[1], torch.full((1, 3, 5), 20.0))
    uniform = torch.full((2, 4, 3, 5), 0.25)
    depth = depth_regression(uniform, depth_values)
    torch.testing.assert_close(depth[0], torch.full((1, 3, 5), 15.0 / 4))
    torch.testing.assert_close(depth[1], torch.full((1, 3, 5), 53.5 / 4))


def test_depth_regression_with_per_pixel_depth_values():
    torch.manual_seed(4)
    depth_values = torch.rand(2, 6, 4, 5).cumsum(dim=1) + 1.0          # (B, D, h, w), increasing per pixel
    index = torch.randint(0, 6, (2, 1, 4, 5))
    one_hot = torch.zeros(2, 6, 4, 5).scatter_(1, index, 1.0)
    assert torch.equal(depth_regression(one_hot, depth_values), torch.gather(depth_values, 1, index))
    prob = torch.softmax(torch.randn(2, 6, 4, 5), dim=1)
    expected = torch.einsum("bdhw,bdhw->bhw", prob.double(), depth_values.double())[:, None].float()
    torch.testing.assert_close(depth_regression(prob, depth_values), expected)


def confidence_bruteforce(prob):
    """Sum of p over planes floor(E[index]) - 1 .. floor(E[index]) + 2, the index clamped to 0 .. D-1."""
    batch, depths, height, width = prob.shape
    out = torch.zeros(batch, 1, height, width, dtype=torch.float64)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                p = prob[b, :, y, x].double()
                index = min(max(int(math.floor(float((p * torch.arange(depths)).sum()))), 0), depths - 1)
                out[b, 0, y, x] = p[max(index - 1, 0):index + 3].sum()
    return out


def test_photometric_confidence_hand_cases():
    depths = 16
    one_hot = torch.zeros(1, depths, 1, 3)
    for x, plane in enumerate((0, 7, depths - 1)):  # the two ends exercise the clamped window
        one_hot[0, plane, 0, x] = 1.0
    torch.testing.assert_close(photometric_confidence(one_hot), torch.ones(1, 1, 1, 3), atol=0, rtol=0)
    uniform = torch.full((1, depths, 2, 2), 1.0 / depths)
    torch.testing.assert_close(photometric_confidence(uniform), torch.full((1, 1, 2, 2), 4.0 / depths))
    split = torch.zeros(1, depths, 1, 3)
    split[0, [2, 5], 0, 0] = torch.tensor([0.7, 0.3])   # E[index] = 2.9 -> 2: planes 1..4 hold 0.7
    split[0, [4, 5], 0, 1] = torch.tensor([0.6, 0.4])   # E[index] = 4.4 -> 4: planes 3..6 hold both
    split[0, [2, 9], 0, 2] = torch.tensor([0.5, 0.5])   # E[index] = 5.5 -> 5: planes 4..7 hold neither
    torch.testing.assert_close(photometric_confidence(split), torch.tensor([[[[0.7, 1.0, 0.0]]]]))


def test_photometric_confidence_matches_bruteforce_on_random_volumes():
    torch.manual_seed(5)
    prob = torch.softmax(3 * torch.randn(2, 8, 4, 5), dim=1)
    confidence = photometric_confidence(prob)
    assert confidence.shape == (2, 1, 4, 5)
    torch.testing.assert_close(confidence.double(), confidence_bruteforce(prob))


# ---------------------------------------------------------------- cost volume
def test_variance_cost_volume_is_population_variance_of_the_plane_sweep_volume():
    torch.manual_seed(6)
    batch, views, channels, height, width = 2, 3, 4, 8, 10
    feats = torch.randn(batch, views, channels, height, width)
    proj = random_projections(np.random.default_rng(6), batch, views, height, width)
    depth_values = torch.stack([torch.linspace(2.0, 6.0, 8), torch.linspace(1.0, 4.0, 8)])
    sweep = plane_sweep_volume(feats, proj, depth_values)        # (B, V, C, D, h, w)
    assert (sweep[:, 1:] == 0).float().mean() > 0.01             # some samples fall outside a source view
    expected = sweep.var(dim=1, unbiased=False)
    args = (feats[:, 0], [feats[:, v] for v in range(1, views)], proj[:, 0], [proj[:, v] for v in range(1, views)],
            depth_values)
    volume = variance_cost_volume(*args)
    assert volume.shape == (batch, channels, 8, height, width)
    torch.testing.assert_close(volume, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        in_place = variance_cost_volume(*args, inplace=True)
    torch.testing.assert_close(in_place, volume, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="2 source features and 1 projections"):
        variance_cost_volume(feats[:, 0], [feats[:, 1], feats[:, 2]], proj[:, 0], [proj[:, 1]], depth_values)


def test_variance_cost_volume_is_zero_where_all_views_agree():
    torch.manual_seed(7)
    feat = torch.randn(1, 3, 6, 7)
    proj = torch.eye(4)[None]
    volume = variance_cost_volume(feat, [feat, feat], proj, [proj, proj], torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(volume, torch.zeros(1, 3, 2, 6, 7), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- refinement
@pytest.fixture
def zero_residual_refinenet():
    torch.manual_seed(8)
    net = RefineNet().eval()
    with torch.no_grad():
        net.layers[-1].weight.zero_()
        net.layers[-1].bias.zero_()
    return net


def test_refinenet_with_zero_last_conv_returns_the_depth(zero_residual_refinenet):
    torch.manual_seed(9)
    img = torch.rand(2, 3, 32, 32)
    # depth_min 512, depth_max 1024: normalising and de-normalising are exact in float32 there
    depth = 512 + 512 * torch.rand(2, 1, 8, 8)
    out = zero_residual_refinenet(img, depth, torch.full((2,), 512.0), torch.full((2,), 1024.0))
    assert out.shape == (2, 1, 8, 8)
    assert torch.equal(out, depth)
    # any range: equal up to float32 rounding
    depth = 425 + 480 * torch.rand(2, 1, 8, 8)
    out = zero_residual_refinenet(img, depth, torch.tensor([425.0, 430.0]), torch.tensor([902.5, 910.0]))
    torch.testing.assert_close(out, depth)


def test_refinenet_residual_is_in_units_of_the_depth_range(zero_residual_refinenet):
    torch.manual_seed(10)
    with torch.no_grad():
        zero_residual_refinenet.layers[-1].bias.fill_(0.1)
    img, depth = torch.rand(2, 3, 32, 32), 1 + torch.rand(2, 1, 8, 8)
    low, high = torch.tensor([0.5, 1.0]), torch.tensor([2.5, 2.0])   # ranges 2 and 1, per sample
    out = zero_residual_refinenet(img, depth, low, high)
    torch.testing.assert_close(out, depth + 0.1 * torch.tensor([2.0, 1.0]).reshape(2, 1, 1, 1))


def test_refinenet_scales_with_the_depth_units():
    torch.manual_seed(11)
    net = RefineNet().eval()
    img, depth = torch.rand(2, 3, 32, 32), 1 + torch.rand(2, 1, 8, 8)
    low, high = torch.tensor([0.8, 1.0]), torch.tensor([2.2, 2.5])
    with torch.no_grad():
        metres = net(img, depth, low, high)
        millimetres = net(img, 1000 * depth, 1000 * low, 1000 * high)
        shifted = net(img, depth + 3, low + 3, high + 3)
    assert (metres - depth).abs().max() > 1e-3                 # a random net does change the depth
    torch.testing.assert_close(millimetres, 1000 * metres, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shifted, metres + 3, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- image standardisation
def test_standardize_image_gives_zero_mean_unit_std_per_image_and_channel():
    torch.manual_seed(12)
    imgs = torch.rand(2, 3, 3, 16, 20) * torch.rand(2, 3, 3, 1, 1) + torch.rand(2, 3, 3, 1, 1)
    out = standardize_image(imgs, eps=0.0)
    assert out.shape == imgs.shape
    torch.testing.assert_close(out.mean(dim=(-2, -1)), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(-2, -1), unbiased=False), torch.ones(2, 3, 3))
    # with the default eps the std is sqrt(var / (var + eps))
    var = imgs.double().var(dim=(-2, -1), unbiased=False)
    torch.testing.assert_close(standardize_image(imgs).std(dim=(-2, -1), unbiased=False).double(),
                               torch.sqrt(var / (var + 1e-5)), rtol=1e-5, atol=0)


def test_standardize_image_ignores_gain_and_offset():
    torch.manual_seed(13)
    img = torch.rand(2, 3, 16, 20)
    gain, offset = 2.5, -0.7
    torch.testing.assert_close(standardize_image(gain * img + offset, eps=0.0), standardize_image(img, eps=0.0))
    # exact identity with eps: standardize(a x + b, eps) = standardize(x, eps / a^2)
    torch.testing.assert_close(standardize_image(gain * img + offset), standardize_image(img, eps=1e-5 / gain ** 2))
    assert not torch.allclose(standardize_image(img), img)


# ---------------------------------------------------------------- overfitting a tiny scan
def test_a_few_adam_steps_overfit_a_tiny_rendered_scan():
    scan = object_scan(3, n_views=2, height=64, width=64, n_lights=1)
    imgs = torch.from_numpy(scan["images"][:, 0]).permute(0, 3, 1, 2).float()[None] / 255
    K = np.broadcast_to(scan["K_depth"], (2, 3, 3))
    proj = torch.from_numpy(projection_matrix(K, scan["extrinsics"])).float()[None]
    near, far = scan["depth_range"]
    depth_values = torch.linspace(near, far, 8)[None]
    interval = float(depth_values[0, 1] - depth_values[0, 0])
    gt = torch.from_numpy(scan["depths"][0])[None, None]
    mask = gt > 0
    assert mask.float().mean() > 0.3

    torch.manual_seed(14)
    model = MVSNet().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_of(out):
        return 0.5 * (mvsnet_loss(out["depth"], gt, mask, interval)
                      + mvsnet_loss(out["refined_depth"], gt, mask, interval))

    losses = []
    for _ in range(20):
        loss = loss_of(model(imgs, proj, depth_values))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_of(model(imgs, proj, depth_values)).item()
    # observed: 2.3 intervals -> 0.17 (a factor of 13; 10 to 23 for init seeds 0-3); require a factor of 5
    assert losses[0] > 1.0
    assert final < losses[0] / 5, (losses[0], final)


# ---------------------------------------------------------------- classical plane sweep
def interior(depth, margin=MARGIN):
    return depth[..., margin:-margin, margin:-margin]


def test_plane_sweep_finds_a_textured_fronto_parallel_plane_exactly():
    imgs, proj, depth_values = fronto_parallel_rig(40, 48)
    assert (depth_values == PLANE_DEPTH).sum() == 1
    for cost in ("zncc", "sad"):
        out = plane_sweep_depth(imgs, proj, depth_values, cost=cost)
        assert out["cost"].shape == (1, 8, 40, 48) and out["depth"].shape == (1, 1, 40, 48)
        assert out["soft_depth"].shape == (1, 1, 40, 48)
        assert torch.equal(interior(out["depth"]), torch.full((1, 1, 40 - 16, 48 - 16), PLANE_DEPTH)), cost
        # only two of three views: still exact
        two = plane_sweep_depth(imgs[:, :2], proj[:, :2], depth_values, cost=cost)
        assert torch.equal(interior(two["depth"]), interior(out["depth"])), cost


def test_zncc_ignores_gain_and_offset_of_the_source_views_and_sad_does_not():
    imgs, proj, depth_values = fronto_parallel_rig(40, 48, seed=1)
    truth = torch.full((1, 1, 40 - 16, 48 - 16), PLANE_DEPTH)
    zncc = plane_sweep_depth(imgs, proj, depth_values, cost="zncc")
    sad = plane_sweep_depth(imgs, proj, depth_values, cost="sad")
    assert torch.equal(interior(sad["depth"]), truth)
    for gain, offset in ((1.0, 0.3), (2.0, -0.5)):      # a brighter exposure; a contrast change
        changed = imgs.clone()
        changed[:, 1:] = gain * changed[:, 1:] + offset
        zncc_changed = plane_sweep_depth(changed, proj, depth_values, cost="zncc")
        assert torch.equal(interior(zncc_changed["depth"]), truth), (gain, offset)
        if gain == 1.0:
            # an offset only moves zncc's cost by float32 rounding of E[x^2] - E[x]^2 (the 1e-6 in its
            # denominator also weighs in once the gain changes the variances)
            torch.testing.assert_close(interior(zncc_changed["cost"]), interior(zncc["cost"]), atol=1e-4, rtol=0)
        sad_changed = plane_sweep_depth(changed, proj, depth_values, cost="sad")
        correct = (interior(sad_changed["depth"]) == truth).float().mean()
        assert correct < 0.8, (gain, offset, correct)  # observed ~0.5 for both


def test_plane_sweep_gives_the_worst_cost_where_the_source_view_sees_nothing():
    imgs, proj, depth_values = fronto_parallel_rig(40, 48)
    for cost, worst in (("zncc", 2.0), ("sad", 1.0)):
        out = plane_sweep_depth(imgs[:, :2], proj[:, :2], depth_values, cost=cost)  # the camera at +b only
        for plane, disparity in enumerate(DISPARITIES.tolist()):
            # reference column u samples source column u - disparity: outside the image for u < disparity
            blind = math.ceil(disparity)
            assert (out["cost"][0, plane, :, :blind] == worst).all(), (cost, plane)
            assert (out["cost"][0, plane, :, blind + 4:-4] < worst).all(), (cost, plane)


def test_plane_sweep_pool_gives_depth_at_a_quarter_resolution():
    imgs, proj, depth_values = fronto_parallel_rig(48, 64)
    out = plane_sweep_depth(imgs, proj, depth_values, pool=4)
    assert out["cost"].shape == (1, 8, 12, 16) and out["depth"].shape == (1, 1, 12, 16)
    full = plane_sweep_depth(imgs, proj, depth_values)
    torch.testing.assert_close(out["cost"], torch.nn.functional.avg_pool2d(full["cost"], 4))
    assert torch.equal(out["depth"][..., 2:-2, 2:-2], torch.full((1, 1, 8, 12), PLANE_DEPTH))


def test_plane_sweep_rejects_bad_arguments():
    imgs, proj = torch.zeros(1, 2, 3, 8, 8), torch.eye(4).repeat(1, 2, 1, 1)
    depth_values = torch.arange(1.0, 5.0)[None]
    with pytest.raises(ValueError, match="cost 'ssd', expected 'zncc' or 'sad'"):
        plane_sweep_depth(imgs, proj, depth_values, cost="ssd")
    for window in (4, 0):
        with pytest.raises(ValueError, match=f"window={window}, pool=1; expected an odd window"):
            plane_sweep_depth(imgs, proj, depth_values, window=window)
    with pytest.raises(ValueError, match="pool=0"):
        plane_sweep_depth(imgs, proj, depth_values, pool=0)
    with pytest.raises(ValueError, match="with V >= 2"):
        plane_sweep_depth(imgs[:, :1], proj[:, :1], depth_values)
    with pytest.raises(ValueError, match=re.escape("proj (1, 3, 4, 4)")):
        plane_sweep_depth(imgs, torch.eye(4).repeat(1, 3, 1, 1), depth_values)
    with pytest.raises(ValueError, match="plane_sweep_depth: depth_values of sample 0 are not increasing"):
        plane_sweep_depth(imgs, proj, depth_values.flip(1))


@pytest.mark.parametrize("scale", [1, 4])
def test_seeing_sources_counts_the_shifted_cameras_whose_image_holds_the_whole_block(scale):
    """The rig's camera at +b sees reference column u at u - d, the one at -b at u + d (d = f b / Z): a
    block of columns s*c .. s*c + s - 1 is inside the first for s*c >= d, inside the second for
    s*c + s - 1 + d <= W - 1. Per-pixel depths of 1, 2 and 4 m give d = 4, 2 and 1 pixels."""
    height, width = 16, 32
    _, proj, _ = fronto_parallel_rig(height, width)
    generator = torch.Generator().manual_seed(0)
    choice = torch.randint(0, 3, (2, 1, height // scale, width // scale), generator=generator)
    depth = torch.tensor([1.0, 2.0, 4.0])[choice]
    disparity = FOCAL * BASELINE / depth
    left = scale * torch.arange(width // scale).float()              # first image column of each block
    expected = (left >= disparity).long() + (left + scale - 1 + disparity <= width - 1).long()
    seen_by = count_seeing_sources(proj.expand(2, -1, -1, -1), depth, scale=scale)
    assert seen_by.dtype == torch.int64 and seen_by.shape == depth.shape
    assert torch.equal(seen_by, expected)
    assert set(expected.unique().tolist()) == {1, 2}                 # both cases occur
    only_right = count_seeing_sources(proj[:, :2].expand(2, -1, -1, -1), depth, scale=scale)
    assert torch.equal(only_right, (left >= disparity).long().expand_as(depth))


def test_seeing_sources_rejects_mismatched_shapes():
    _, proj, _ = fronto_parallel_rig(16, 32)
    with pytest.raises(ValueError, match=r"proj \(1, 1, 4, 4\), expected \(B, V, 4, 4\) with V >= 2"):
        count_seeing_sources(proj[:, :1], torch.ones(1, 1, 4, 8))
    with pytest.raises(ValueError, match=r"depth \(2, 1, 4, 8\), scale=4; expected \(1, 1, h, w\)"):
        count_seeing_sources(proj, torch.ones(2, 1, 4, 8))
    with pytest.raises(ValueError, match="scale=0"):
        count_seeing_sources(proj, torch.ones(1, 1, 4, 8), scale=0)


# ---------------------------------------------------------------- evaluation
class GroundTruthModel(nn.Module):
    """A stand-in for MVSNet that returns the dataset's ground truth (and gt + 2 intervals as refined depth),
    in dataset order; 1e6 where the mask is off, which the evaluation must ignore."""

    def __init__(self, items):
        super().__init__()
        self.items, self.cursor, self.saw_training = items, 0, []

    def forward(self, imgs, proj, depth_values):
        self.saw_training.append(self.training)
        batch = self.items[self.cursor:self.cursor + imgs.shape[0]]
        self.cursor += imgs.shape[0]
        gt = torch.stack([item["depth"] for item in batch])
        mask = torch.stack([item["mask"] for item in batch])
        interval = torch.stack([item["depth_interval"] for item in batch]).reshape(-1, 1, 1, 1)
        depth = torch.where(mask, gt, torch.full_like(gt, 1e6))
        return {"depth": depth, "refined_depth": depth + 2 * interval}


def dtu_like_items(n, height=32, width=32, depths=8, seed=0):
    """Items in the DTUMVS format (depth in mm, K at the depth resolution), a quarter of the pixels masked
    off although their depth is positive (as DTU's depth_visual mask does)."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(n):
        interval = 2.5 * (index + 1)
        depth_values = 425.0 + interval * torch.arange(depths, dtype=torch.float32)
        depth = 425.0 + interval * (depths - 1) * torch.rand(1, height // 4, width // 4, generator=generator)
        mask = torch.rand(1, height // 4, width // 4, generator=generator) > 0.25  # depth is valid everywhere
        K = torch.tensor([[10.0, 0.0, 3.5], [0.0, 10.0, 3.5], [0.0, 0.0, 1.0]])
        extrinsics = torch.eye(4).repeat(2, 1, 1)
        extrinsics[1, 0, 3] = -50.0
        items.append({"imgs": torch.rand(2, 3, height, width, generator=generator),
                      "proj_matrices": projection_matrix(K.expand(2, 3, 3), extrinsics),
                      "intrinsics": K.expand(2, 3, 3).clone(), "extrinsics": extrinsics,
                      "depth": depth, "mask": mask, "depth_values": depth_values,
                      "depth_interval": torch.tensor(interval), "scan": "scan1",
                      "view_ids": torch.tensor([index, index + 1]), "light": 3})
    return items


@pytest.mark.parametrize("batch_size", [1, 2])
def test_evaluate_with_a_ground_truth_model(batch_size):
    items = dtu_like_items(3)
    model = GroundTruthModel(items).train()
    result = evaluate_mvsnet(model, items, batch_size=batch_size)
    assert set(result) == {"less_one", "less_three", "mae", "refined_less_one", "refined_less_three",
                           "refined_mae"}
    assert result["less_one"] == 1.0 and result["less_three"] == 1.0 and result["mae"] == 0.0
    assert result["refined_less_one"] == 0.0 and result["refined_less_three"] == 1.0
    # refined error = 2 intervals, pooled over each sample's valid pixels
    counts = [int(item["mask"].sum()) for item in items]
    expected_mae = sum(2 * float(item["depth_interval"]) * n for item, n in zip(items, counts)) / sum(counts)
    assert result["refined_mae"] == pytest.approx(expected_mae, rel=1e-6)
    assert model.cursor == len(items)
    assert model.saw_training and not any(model.saw_training)  # evaluated in eval mode ...
    assert model.training                                       # ... and put back in train mode


@pytest.mark.parametrize("batch_size", [1, 2])
def test_collected_outputs_are_every_samples_in_order_on_the_cpu(batch_size):
    items = dtu_like_items(3)
    model = GroundTruthModel(items).train()
    test = collect_mvsnet_outputs(model, items, {"initial": "depth", "refined": "refined_depth"},
                                  ("depth", "mask", "depth_interval"), batch_size=batch_size)
    assert list(test) == ["depth", "mask", "depth_interval", "initial", "refined"]
    gt = torch.stack([item["depth"] for item in items])
    mask = torch.stack([item["mask"] for item in items])
    interval = torch.stack([item["depth_interval"] for item in items])
    assert torch.equal(test["depth"], gt) and torch.equal(test["mask"], mask)
    assert torch.equal(test["depth_interval"], interval)
    expected = torch.where(mask, gt, torch.full_like(gt, 1e6))      # what the stand-in says, sample by sample
    assert torch.equal(test["initial"], expected)
    assert torch.equal(test["refined"], expected + 2 * interval.reshape(-1, 1, 1, 1))
    assert all(value.device.type == "cpu" for value in test.values())
    assert model.cursor == len(items) and not any(model.saw_training) and model.training


def test_collected_outputs_reject_unknown_keys_and_clashing_names():
    items = dtu_like_items(2)
    with pytest.raises(ValueError, match=r"no \['prob_volume'\]"):
        collect_mvsnet_outputs(GroundTruthModel(items), items, {"prob": "prob_volume"})
    with pytest.raises(ValueError, match=r"no \['normals'\]"):
        collect_mvsnet_outputs(GroundTruthModel(items), items, {"initial": "depth"}, ("normals",))
    with pytest.raises(ValueError, match="named unlike the kept keys"):
        collect_mvsnet_outputs(GroundTruthModel(items), items, {"depth": "depth"}, ("depth",))
    with pytest.raises(ValueError, match="empty"):
        collect_mvsnet_outputs(GroundTruthModel(items), [], {"initial": "depth"})


def test_collected_outputs_of_a_real_mvsnet_match_one_forward_over_the_whole_set():
    torch.manual_seed(0)
    items = dtu_like_items(3, height=32, width=32, depths=8)
    model = MVSNet().train()
    test = collect_mvsnet_outputs(model, items, {"initial": "depth", "prob": "prob_volume"}, batch_size=2)
    assert model.training
    with torch.no_grad():
        whole = model.eval()(torch.stack([item["imgs"] for item in items]),
                             torch.stack([item["proj_matrices"] for item in items]),
                             torch.stack([item["depth_values"] for item in items]))
    torch.testing.assert_close(test["initial"], whole["depth"])
    torch.testing.assert_close(test["prob"], whole["prob_volume"])


def test_evaluate_baseline_alone_finds_a_plane_at_the_depth_resolution():
    """K in the items is at the depth resolution (DTU): the baseline scales it up to the image."""
    imgs, proj_image, depth_values = fronto_parallel_rig(64, 64)
    proj_depth = proj_image.clone()
    K = proj_image[0, :, :3, :3]  # extrinsic rotations are identity here, so K @ [R|t] holds K
    proj_depth[0, :, :3, :3] = scale_intrinsics(K, 0.25)
    proj_depth[0, :, :3, 3] = (scale_intrinsics(K, 0.25) @ torch.linalg.inv(K) @ proj_image[0, :, :3, 3:])[..., 0]
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 3:-3, 3:-3] = True
    item = {"imgs": imgs[0], "proj_matrices": proj_depth[0], "depth": torch.full((1, 16, 16), PLANE_DEPTH),
            "mask": mask, "depth_values": depth_values[0],
            "depth_interval": torch.tensor(float(depth_values[0, 1] - depth_values[0, 0]))}
    result = evaluate_mvsnet(None, [item], baseline=True)
    assert set(result) == {"baseline_less_one", "baseline_less_three", "baseline_mae"}
    assert result == {"baseline_less_one": 1.0, "baseline_less_three": 1.0, "baseline_mae": 0.0}
    # the same data with the K left at the depth resolution (no scaling) would not find the plane
    wrong = plane_sweep_depth(imgs, proj_depth, depth_values, pool=4)["depth"]
    assert (wrong[0, :, 3:-3, 3:-3] == PLANE_DEPTH).float().mean() < 0.5


def test_evaluate_with_nothing_to_evaluate_raises():
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_mvsnet(None, dtu_like_items(1), baseline=False)


def test_evaluate_edge_band_pools_the_band_and_elsewhere_like_edge_band_metrics():
    from depthlib.metrics import edge_band_metrics

    items = dtu_like_items(3, height=64, width=64, seed=1)
    for index, item in enumerate(items):   # smooth depth with a step and a hole: all three regions
        interval = float(item["depth_interval"])
        depth = 450.0 + 0.2 * interval * torch.arange(16.0).expand(1, 16, 16)
        item["depth"] = depth + 10 * interval * (torch.arange(16) >= 6 + index)
        item["mask"] = torch.ones(1, 16, 16, dtype=torch.bool)
        item["mask"][:, 10:13, 2:5] = False
    model = GroundTruthModel(items)
    result = evaluate_mvsnet(model, items, batch_size=2, edge_band=True)
    plain = evaluate_mvsnet(GroundTruthModel(items), items, batch_size=2)
    assert all(result[key] == value for key, value in plain.items())  # the overall numbers are unchanged
    gt = torch.stack([item["depth"] for item in items])
    mask = torch.stack([item["mask"] for item in items])
    interval = torch.stack([item["depth_interval"] for item in items])
    refined = gt + 2 * interval.reshape(-1, 1, 1, 1)
    expected = edge_band_metrics(refined, gt, mask, interval)
    assert 0 < result["band_share"] < 1 and result["band_share"] == pytest.approx(expected["band"]["share"])
    for region, prefix in (("band", "refined_band_"), ("elsewhere", "refined_elsewhere_")):
        for key in ("less_one", "less_three", "mae"):
            assert result[prefix + key] == pytest.approx(expected[region][key], rel=1e-6), prefix + key
    assert result["band_less_one"] == result["elsewhere_less_one"] == 1.0 and result["band_mae"] == 0.0


def test_frozen_backbone_trains_the_refinement_alone_with_frozen_bn_statistics(small_batch):
    from depthlib.train import MVSNetTask

    imgs, proj, depth_values = small_batch
    torch.manual_seed(3)
    model = MVSNet().freeze_backbone().train()
    assert model.refine_network.training and not model.feature.training and not model.cost_regularization.training
    before = {name: value.clone() for name, value in model.state_dict().items()}
    gt = depth_values[:, 5, None, None, None].expand(-1, 1, 16, 16).contiguous()
    batch = {"imgs": imgs, "proj_matrices": proj, "depth_values": depth_values, "depth": gt,
             "mask": torch.ones_like(gt, dtype=torch.bool), "depth_interval": depth_values[:, 1] - depth_values[:, 0]}
    losses = MVSNetTask(refine_weight=1.0).loss(model, batch)
    torch.testing.assert_close(losses["total"], losses["refined"])
    assert not losses["initial"].requires_grad             # the backbone ran without autograd
    losses["total"].backward()
    for name, parameter in model.named_parameters():
        trained = name.startswith("refine_network.")
        assert parameter.requires_grad == trained, name
        assert (parameter.grad is not None) == trained, name
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    after = model.state_dict()
    for name, value in before.items():   # the backbone's weights and BN statistics stay put, the refinement's move
        assert torch.equal(value, after[name]) != name.startswith("refine_network."), name
    model.freeze_backbone(False).train()
    assert model.feature.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="no refinement network"):
        MVSNet(refine=False).freeze_backbone()


def test_mvsnet_task_weighs_initial_and_refined_losses(small_batch):
    from depthlib.train import MVSNetTask

    imgs, proj, depth_values = small_batch
    torch.manual_seed(4)
    model = MVSNet().eval()
    gt = depth_values[:, 3, None, None, None].expand(-1, 1, 16, 16).contiguous()
    batch = {"imgs": imgs, "proj_matrices": proj, "depth_values": depth_values, "depth": gt,
             "mask": torch.ones_like(gt, dtype=torch.bool), "depth_interval": depth_values[:, 1] - depth_values[:, 0]}
    with torch.no_grad():
        for weight in (0.0, 0.5, 0.8, 1.0):
            losses = MVSNetTask(weight).loss(model, batch)
            torch.testing.assert_close(losses["total"], (1 - weight) * losses["initial"] + weight * losses["refined"])
        default = MVSNetTask().loss(model, batch)
    torch.testing.assert_close(default["total"], (default["initial"] + default["refined"]) / 2)
    with pytest.raises(ValueError, match=r"refine_weight=1.5"):
        MVSNetTask(1.5)
