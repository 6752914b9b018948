"""Tests for depthlib.models.densedepth: sizes against the paper, shapes, inference, weight loading."""
import urllib.error

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from depthlib.models import (DenseDepth, DenseNetEncoder, UpBlock, densedepth121, densedepth169,
                             densedepth_small, predict_depth, small_densenet, upsample_half)


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def model169():
    torch.manual_seed(0)
    return DenseDepth("densenet169").eval()


@pytest.fixture
def small_model():
    """Untrained small DenseDepth; final bias 5 puts its depths around 2 m, inside [0.1, 10]."""
    torch.manual_seed(0)
    model = DenseDepth("small").eval()
    with torch.no_grad():
        model.decoder.conv3.bias.fill_(5.0)
    return model


def old_torchvision_keys(state_dict):
    """The layout of the files behind torchvision's DenseNet URLs: 'norm.1', no num_batches_tracked."""
    renamed = {}
    for key, value in state_dict.items():
        if "denselayer" in key and not key.endswith("num_batches_tracked"):
            for layer in ("norm1", "conv1", "norm2", "conv2"):
                key = key.replace(f".{layer}.", f".{layer[:-1]}.{layer[-1]}.")
        if not key.endswith("num_batches_tracked"):
            renamed[key] = value
    return renamed


def densenet_channels(init_features, growth, blocks):
    """Skip and bottleneck channels from the DenseNet recurrence (each transition halves)."""
    channels, transitions = init_features, []
    for index, layers in enumerate(blocks):
        channels += layers * growth
        if index < len(blocks) - 1:
            channels //= 2
            transitions.append(channels)
    return [init_features, init_features, transitions[0], transitions[1], channels]


# ---------------------------------------------------------------- sizes and shapes
def test_densedepth169_has_the_papers_42_66_million_parameters(model169):
    count = count_parameters(model169)
    assert round(count / 1e6, 2) == 42.66
    assert count == count_parameters(model169.encoder) + count_parameters(model169.decoder)
    assert count_parameters(model169.encoder) == count_parameters(torchvision.models.densenet169().features)


def test_densenet169_skips_have_strides_2_to_32_and_paper_channels(model169):
    expected_channels = densenet_channels(64, 32, (6, 12, 32, 32))
    assert expected_channels == [64, 64, 128, 256, 1664]
    with torch.no_grad():
        skips = model169.encoder(torch.rand(1, 3, 64, 96))
    assert list(skips) == ["relu0", "pool0", "transition1", "transition2", "bottleneck"]
    for (name, skip), stride, channels in zip(skips.items(), (2, 4, 8, 16, 32), expected_channels):
        assert tuple(skip.shape) == (1, channels, 64 // stride, 96 // stride), name
        assert model169.encoder.channels[name] == channels
    assert skips["bottleneck"].min() >= 0    # relu(norm5)


def test_densedepth169_feature_pyramid_at_480x640():
    with torch.device("meta"):                # shapes only: nothing is computed
        model = DenseDepth("densenet169")
        images = torch.empty(2, 3, 480, 640)
        skips = model.encoder(images)
        output = model(images)
    shapes = {name: tuple(skip.shape[1:]) for name, skip in skips.items()}
    assert shapes == {"relu0": (64, 240, 320), "pool0": (64, 120, 160), "transition1": (128, 60, 80),
                      "transition2": (256, 30, 40), "bottleneck": (1664, 15, 20)}
    assert tuple(output.shape) == (2, 1, 240, 320)


def test_decoder_halves_width_per_block_and_has_no_batchnorm(model169):
    decoder = model169.decoder
    assert (decoder.conv2.in_channels, decoder.conv2.out_channels, decoder.conv2.kernel_size) == (1664, 1664, (1, 1))
    widths = [getattr(decoder, f"up{k}").convB.out_channels for k in range(1, 5)]
    assert widths == [832, 416, 208, 104]
    skip_channels = [256, 128, 64, 64]        # up1 <- transition2 ... up4 <- relu0
    inputs = [getattr(decoder, f"up{k}").convA.in_channels for k in range(1, 5)]
    assert inputs == [width * 2 + skip for width, skip in zip(widths, skip_channels)]
    assert (decoder.conv3.in_channels, decoder.conv3.out_channels) == (104, 1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in decoder.modules())
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in decoder.modules()) == 8
    assert "bilinear 2x to the skip's size (align_corners=True)" in repr(decoder.up2)


def test_up_block_resizes_to_odd_skip_size_with_align_corners():
    torch.manual_seed(0)
    block = UpBlock(4, 3, 5)
    x, skip = torch.rand(1, 4, 3, 4), torch.rand(1, 3, 7, 9)
    expected_input = torch.cat([F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True), skip], 1)
    expected = F.leaky_relu(block.convB(F.leaky_relu(block.convA(expected_input), 0.2)), 0.2)
    torch.testing.assert_close(block(x, skip), expected)


def test_output_is_half_resolution_for_any_size_from_32(small_model):
    with torch.no_grad():
        for height, width in [(96, 128), (100, 130), (32, 32), (33, 47), (480, 640)]:
            output = small_model(torch.rand(1, 3, height, width))
            assert tuple(output.shape) == (1, 1, (height + 1) // 2, (width + 1) // 2)


def test_model_normalises_with_imagenet_statistics_inside(small_model):
    images = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    with torch.no_grad():
        expected = small_model.decoder(small_model.encoder((images - mean) / std))
        torch.testing.assert_close(small_model(images), expected)
    assert "mean" not in small_model.state_dict()    # constants, not weights


def test_small_model_size_and_forward_backward():
    torch.manual_seed(0)
    model = densedepth_small()
    count = count_parameters(model)
    print(f"small DenseDepth: {count / 1e6:.2f} M parameters, encoder {model.encoder.channels}")
    assert round(count / 1e6, 2) == 2.69
    assert list(model.encoder.channels.values()) == densenet_channels(24, 12, (6, 12, 24, 16))
    output = model(torch.rand(2, 3, 96, 128))
    assert tuple(output.shape) == (2, 1, 48, 64)
    output.abs().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert model.encoder.features.conv0.weight.grad.abs().sum() > 0


def test_builders_choose_the_encoder():
    assert densedepth121().encoder.channels["bottleneck"] == 1024
    assert densedepth_small().encoder.name == "small"
    assert densedepth169.__name__ == "densedepth169"   # built in model169 already (1 s each)


@pytest.mark.parametrize("images, message", [
    (torch.rand(3, 64, 64), r"\(3, 64, 64\), expected \(B, 3, H, W\)"),
    (torch.rand(1, 1, 64, 64), r"\(1, 1, 64, 64\), expected \(B, 3, H, W\)"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), r"torch.uint8, expected a float"),
    (torch.rand(1, 3, 31, 64), r"\(1, 3, 31, 64\), expected H >= 32 and W >= 32"),
])
def test_bad_images_raise_value_error_naming_the_shape(small_model, images, message):
    with pytest.raises(ValueError, match=message):
        small_model(images)
    with pytest.raises(ValueError, match=message):
        predict_depth(small_model, images)


def test_bad_encoder_or_pretrained_arguments_raise():
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet50', expected one of"):
        DenseDepth("resnet50")
    for not_a_choice in (1, 3.0):        # 1 == True, but an int is neither a flag nor a path
        with pytest.raises(ValueError, match=rf"pretrained={not_a_choice}, expected False, True or a path"):
            DenseDepth("small", pretrained=not_a_choice)
    with pytest.raises(ValueError, match=r"'small' has no ImageNet weights"):
        DenseDepth("small", pretrained=True)


# ---------------------------------------------------------------- predict_depth
def constant_output_model(value):
    """A small DenseDepth whose output is `value` everywhere (zero final kernel, bias = value)."""
    model = DenseDepth("small")
    with torch.no_grad():
        model.decoder.conv3.weight.zero_()
        model.decoder.conv3.bias.fill_(value)
    return model


def test_predict_depth_unnormalises_max_depth_over_output():
    depth = predict_depth(constant_output_model(4.0), torch.rand(2, 3, 64, 96), max_depth=10.0)
    assert tuple(depth.shape) == (2, 1, 64, 96)
    torch.testing.assert_close(depth, torch.full_like(depth, 2.5))


@pytest.mark.parametrize("output_value, expected_depth", [(-3.0, 10.0), (0.0, 10.0), (0.5, 10.0), (1e4, 0.1)])
def test_predict_depth_clips_to_depth_range(output_value, expected_depth):
    depth = predict_depth(constant_output_model(output_value), torch.rand(1, 3, 64, 64), max_depth=10.0)
    torch.testing.assert_close(depth, torch.full_like(depth, expected_depth))
    depth = predict_depth(constant_output_model(output_value), torch.rand(1, 3, 64, 64), max_depth=10.0,
                          min_depth=0.5)
    torch.testing.assert_close(depth, torch.full_like(depth, max(expected_depth, 0.5)))


def test_predict_depth_matches_clip_then_bilinear_upsampling(small_model):
    images = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        output = small_model(images)
    min_depth = float((10.0 / output).median())          # half of the pixels get clipped
    depth = predict_depth(small_model, images, max_depth=10.0, min_depth=min_depth)
    expected = upsample_half((10.0 / output).clamp(min_depth, 10.0), (96, 128), (96, 128))
    torch.testing.assert_close(depth, expected)
    assert depth.min() >= min_depth and depth.max() <= 10.0
    assert (depth == min_depth).any() and (depth > min_depth).any()     # clipped and free pixels
    assert not depth.requires_grad


class NearestTargetNet(nn.Module):
    """What a perfectly trained DenseDepth outputs: max_depth / depth of the target DenseDepthTask
    trains against, the depth (here: 1 + 4 x the image's red channel) down-sampled by nearest."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))       # predict_depth finds the device from a parameter

    def forward(self, images):
        depth = 1.0 + 4.0 * images[:, :1]
        half = (-(-images.shape[-2] // 2), -(-images.shape[-1] // 2))
        return 10.0 / F.interpolate(depth, size=half, mode="nearest")


@pytest.mark.parametrize("flip_tta", [False, True])
def test_predict_depth_puts_each_output_pixel_back_where_its_training_target_came_from(flip_tta):
    """A ramp in depth comes back unshifted: output pixel j was trained on input pixel 2j, so it must
    land there (align_corners=False would put it at 2j + 1/2: every depth half a pixel off)."""
    net = NearestTargetNet().eval()
    u = torch.arange(64.0) / 63
    v = torch.arange(48.0)[:, None] / 47
    images = (0.7 * u + 0.3 * v).expand(1, 3, 48, 64).contiguous()
    depth = predict_depth(net, images, flip_tta=flip_tta)
    truth = 1.0 + 4.0 * images[:, :1]
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))   # the last row/column lies past output pixel m-1
    torch.testing.assert_close(depth[inner], truth[inner], rtol=0, atol=1e-5)
    # the pixel-area convention is off by half a pixel: 0.7 * 4 / 63 / 2 = 0.022 m on this ramp
    area = F.interpolate(10.0 / net(images), size=(48, 64), mode="bilinear", align_corners=False)
    assert (area[inner] - truth[inner]).abs().median() > 0.02


def test_flip_tta_averages_in_metres_and_is_flip_equivariant(small_model):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 96)
    plain = predict_depth(small_model, images)
    mirrored = predict_depth(small_model, images.flip(-1))
    tta = predict_depth(small_model, images, flip_tta=True)
    torch.testing.assert_close(tta, 0.5 * (plain + mirrored.flip(-1)))
    torch.testing.assert_close(predict_depth(small_model, images.flip(-1), flip_tta=True), tta.flip(-1))
    symmetric = torch.cat([images[..., :48], images[..., :48].flip(-1)], dim=-1)
    tta_symmetric = predict_depth(small_model, symmetric, flip_tta=True)
    torch.testing.assert_close(tta_symmetric, tta_symmetric.flip(-1))
    assert not torch.allclose(plain, tta)     # the network itself is not mirror symmetric


def test_predict_depth_uses_eval_mode_and_restores_training_mode():
    torch.manual_seed(0)
    model = DenseDepth("small").train()
    running_mean = model.encoder.features.norm0.running_mean.clone()
    images = torch.rand(2, 3, 64, 64)
    depth = predict_depth(model, images)
    assert model.training
    torch.testing.assert_close(model.encoder.features.norm0.running_mean, running_mean)
    model.eval()
    torch.testing.assert_close(predict_depth(model, images), depth)
    assert not model.training


def test_predict_depth_runs_the_network_at_the_size_asked_for(small_model):
    torch.manual_seed(2)
    images = torch.rand(2, 3, 96, 128)
    seen = []
    hook = small_model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        at_own = predict_depth(small_model, images, size=(96, 128))
        smaller = predict_depth(small_model, images, size=(64, 96), flip_tta=True)
    finally:
        hook.remove()
    assert seen == [(96, 128), (64, 96), (64, 96)]
    # the size the images already have changes nothing
    torch.testing.assert_close(at_own, predict_depth(small_model, images), rtol=0, atol=0)
    # another size: the images resized as NYUDepth resizes them, the depth back at the images' size
    resized = F.interpolate(images, size=(64, 96), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        plain, mirrored = ((10.0 / small_model(x)).clamp(0.1, 10.0) for x in (resized, resized.flip(-1)))
    expected = 0.5 * (upsample_half(plain, (64, 96), (96, 128))
                      + upsample_half(mirrored, (64, 96), (96, 128)).flip(-1))
    assert tuple(smaller.shape) == (2, 1, 96, 128)
    torch.testing.assert_close(smaller, expected)
    assert not torch.allclose(smaller, at_own)


@pytest.mark.parametrize("size", [(16, 64), (64,), "64x96", (64.0, 96)])
def test_predict_depth_rejects_a_bad_size(small_model, size):
    with pytest.raises(ValueError, match=r"size=.*expected \(H, W\), two integers >= 32"):
        predict_depth(small_model, torch.rand(1, 3, 64, 64), size=size)


def test_predict_depth_rejects_a_bad_depth_range(small_model):
    with pytest.raises(ValueError, match=r"min_depth=20.0, max_depth=10.0"):
        predict_depth(small_model, torch.rand(1, 3, 64, 64), max_depth=10.0, min_depth=20.0)


# ---------------------------------------------------------------- pretrained weights
def assert_features_equal(features, state_dict):
    for key, value in features.state_dict().items():
        torch.testing.assert_close(value, state_dict[key], msg=key)


@pytest.mark.parametrize("layout", ["torchvision", "features_only", "old_torchvision_keys"])
def test_pretrained_path_loads_a_local_densenet_state_dict(tmp_path, layout):
    torch.manual_seed(123)
    densenet = small_densenet()
    with torch.no_grad():
        densenet.features.norm5.running_mean.uniform_()   # running stats must travel too
    state_dict = {"torchvision": densenet.state_dict(),
                  "features_only": densenet.features.state_dict(),
                  "old_torchvision_keys": old_torchvision_keys(densenet.state_dict())}[layout]
    if layout == "old_torchvision_keys":
        assert any(".norm.1." in key for key in state_dict) and not any(".norm1." in key for key in state_dict)
    path = tmp_path / "encoder.pth"
    torch.save(state_dict, path)
    torch.manual_seed(0)
    model = DenseDepth("small", pretrained=path)
    assert_features_equal(model.encoder.features, densenet.features.state_dict())
    assert not torch.equal(model.encoder.features.conv0.weight, DenseDepth("small").encoder.features.conv0.weight)


def test_pretrained_path_errors_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope.pth"):
        DenseDepth("small", pretrained=missing)
    other_densenet = tmp_path / "densenet121.pth"
    torch.save(torchvision.models.densenet121().state_dict(), other_densenet)
    with pytest.raises(ValueError, match=r"densenet121.pth' does not fit the small encoder"):
        DenseDepth("small", pretrained=other_densenet)
    partial = tmp_path / "partial.pth"
    state_dict = small_densenet().state_dict()
    del state_dict["features.conv0.weight"]
    torch.save(state_dict, partial)
    with pytest.raises(ValueError, match=r"missing keys \['conv0.weight'\]"):
        DenseDepth("small", pretrained=partial)


def test_pretrained_true_loads_torchvision_imagenet_weights(monkeypatch):
    torch.manual_seed(7)
    reference = torchvision.models.densenet121()
    served = []

    def fake_get_state_dict(weights, *args, **kwargs):   # what the weights URL would deliver
        served.append(weights.url)
        return old_torchvision_keys(reference.state_dict())

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fake_get_state_dict)
    encoder = DenseNetEncoder("densenet121", pretrained=True)
    assert served == [torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url]
    assert_features_equal(encoder.features, reference.features.state_dict())


def test_pretrained_true_offline_raises_a_clear_runtime_error(monkeypatch):
    def offline(weights, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"no internet\?.*densenet121-a639ec97.pth.*pretrained="):
        DenseDepth("densenet121", pretrained=True)
