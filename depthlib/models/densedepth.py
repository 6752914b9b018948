"""DenseDepth: DenseNet encoder, up-sampling decoder with skips, metric inference (chapters 02, 03)."""
from __future__ import annotations

__all__ = ["load_densedepth", "ENCODERS", "IMAGENET_MEAN", "IMAGENET_STD", "small_densenet", "DenseNetEncoder",
           "UpBlock", "DenseDepthDecoder", "DenseDepth", "densedepth169", "densedepth121",
           "densedepth_small", "predict_depth"]

import numbers
import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from depthlib.checkpoint_io import load_model

# Alhashim & Wonka 2018, "High Quality Monocular Depth Estimation via Transfer Learning".
# Input: RGB in [0, 1]; the model normalises with the ImageNet mean / std itself (the statistics
# its pretrained encoder was trained on). Output: (B, 1, ceil(H/2), ceil(W/2)) in the depth_norm
# space, max_depth / depth (see depthlib.losses.depth_norm); predict_depth turns it into metres.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SKIP_NAMES = ("relu0", "pool0", "transition1", "transition2")   # strides 2, 4, 8, 16
MIN_SIZE = 32     # below this the bottleneck (stride 32) would have no pixel left


def small_densenet() -> "torchvision.models.DenseNet":
    """The small DenseNet of the ``cpu`` profile (growth 12, DenseNet-121's block layout).

    Same layers as DenseNet-121, narrower: growth rate 12, block config (6, 12, 24, 16), 24 stem
    features (2 x growth, as DenseNet-BC); skip channels 24, 24, 48, 96, bottleneck 384.
    1.0 M parameters; 2.69 M in the whole DenseDepth model.
    """
    import torchvision

    return torchvision.models.DenseNet(growth_rate=12, block_config=(6, 12, 24, 16), num_init_features=24)


# name -> (builder: a torchvision.models function name, or small_densenet; name of its ImageNet
# weights enum member or None). torchvision is imported where a network is built: importing it
# costs about a second (it loads torch._dynamo), which every `python -m depthlib` call would pay.
ENCODERS = {
    "densenet169": ("densenet169", "DenseNet169_Weights.IMAGENET1K_V1"),
    "densenet121": ("densenet121", "DenseNet121_Weights.IMAGENET1K_V1"),
    "small": (small_densenet, None),
}


def _encoder_builder(name: str):
    """The function building encoder ``name`` (see ``ENCODERS``)."""
    builder = ENCODERS[name][0]
    if callable(builder):
        return builder
    import torchvision

    return getattr(torchvision.models, builder)

# Old torchvision checkpoints (the files behind the weights URLs) name layers 'norm.1', not 'norm1'.
_OLD_DENSELAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _imagenet_densenet(name: str) -> "torchvision.models.DenseNet":
    """torchvision DenseNet with ImageNet weights; a RuntimeError that says what to do offline."""
    import torchvision

    weights_name = ENCODERS[name][1]
    if weights_name is None:
        raise ValueError(f"encoder {name!r} has no ImageNet weights; use 'densenet169' or "
                         f"'densenet121', or pass pretrained=PATH to a state dict of your own")
    weights = torchvision.models.get_weight(weights_name)
    try:
        return _encoder_builder(name)(weights=weights, progress=False)
    except OSError as error:   # URLError, socket errors, HTTP errors: all OSError
        raise RuntimeError(
            f"could not download the ImageNet weights of {name} ({error}); no internet? "
            f"Download {weights.url} on a machine with internet, copy it here and pass "
            f"DenseDepth(encoder={name!r}, pretrained='/path/to/{os.path.basename(weights.url)}'), "
            f"or use pretrained=False") from error


def _load_features(features: nn.Sequential, path, name: str) -> None:
    """Load a local DenseNet state dict into ``features`` (several key layouts accepted)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights file not found: {path!r} (expected a state "
                                f"dict of a torchvision {name} saved with torch.save)")
    from depthlib.checkpoint_io import read_torch_file

    state_dict = read_torch_file(path)  # a truncated or foreign file: one line naming it
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path!r} holds a {type(state_dict).__name__}, expected a state dict")
    cleaned = {}
    for key, value in state_dict.items():
        key = _OLD_DENSELAYER_KEY.sub(r"\1\2", key)      # 'norm.1' -> 'norm1'
        key = key[len("features."):] if key.startswith("features.") else key
        if not key.startswith("classifier."):              # the ImageNet head is not used
            cleaned[key] = value
    try:
        result = features.load_state_dict(cleaned, strict=False)
    except RuntimeError as error:   # size mismatch: a different DenseNet
        raise ValueError(f"{path!r} does not fit the {name} encoder: {error}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path!r} does not fit the {name} encoder: missing keys "
                         f"{result.missing_keys[:5]}, unexpected keys {result.unexpected_keys[:5]} "
                         f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected); "
                         f"expected a torchvision {name} state dict, with or without 'features.'")


class DenseNetEncoder(nn.Module):
    """A torchvision DenseNet's ``features`` returning the skips and the bottleneck.

    Args:
        name: "densenet169" (the paper's), "densenet121" or "small" (see ``small_densenet``).
        pretrained: False, True (torchvision ImageNet weights; needs internet) or a path to a
            local state dict of that DenseNet.
    ``forward(x (B, 3, H, W))`` -> dict of (B, C, h, w): relu0 (H/2), pool0 (H/4), transition1
    (H/8), transition2 (H/16), bottleneck = relu(norm5) (H/32); sizes round as the layers do.
    ``channels`` holds C for each key (DenseNet-169: 64, 64, 128, 256, 1664).
    """

    def __init__(self, name: str = "densenet169", pretrained=False):
        super().__init__()
        if name not in ENCODERS:
            raise ValueError(f"unknown encoder {name!r}, expected one of {sorted(ENCODERS)}")
        is_path = isinstance(pretrained, (str, os.PathLike))
        if not (is_path or pretrained is None or isinstance(pretrained, bool)):
            raise ValueError(f"pretrained={pretrained!r}, expected False, True or a path to a state dict")
        self.name = name
        densenet = _imagenet_densenet(name) if pretrained is True else _encoder_builder(name)()
        self.features = densenet.features
        if is_path:
            _load_features(self.features, pretrained, name)
        stages = dict(self.features.named_children())
        self.channels = {"relu0": stages["conv0"].out_channels, "pool0": stages["conv0"].out_channels,
                         "transition1": stages["transition1"].conv.out_channels,
                         "transition2": stages["transition2"].conv.out_channels,
                         "bottleneck": stages["norm5"].num_features}

    def forward(self, x: torch.Tensor) -> dict:
        outputs = {}
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in SKIP_NAMES:
                outputs[name] = x
        outputs["bottleneck"] = F.relu(x)    # torchvision applies this ReLU after norm5 too
        return outputs


class UpBlock(nn.Sequential):
    """Up-projection: bilinear 2x to the skip's size -> concat skip -> (conv3x3 -> LeakyReLU) x 2.

    ``forward(x (B, C_in, h, w), skip (B, C_skip, H, W))`` -> (B, out_channels, H, W). No batch
    norm (as the paper). Resizing to the skip's exact size lets odd image sizes work.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convA = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1)
        self.reluA = nn.LeakyReLU(0.2)
        self.convB = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.reluB = nn.LeakyReLU(0.2)

    def extra_repr(self) -> str:   # printed above the layers: the two steps that have no module
        return "bilinear 2x to the skip's size (align_corners=True), concat skip"

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return super().forward(torch.cat([x, skip], dim=1))


class DenseDepthDecoder(nn.Module):
    """conv2 (1x1) on the bottleneck, up1..up4 with the skips, conv3 (3x3) to one channel.

    Widths follow the bottleneck's C (decoder width 1.0): C -> C/2, C/4, C/8, C/16 (DenseNet-169:
    1664 -> 832, 416, 208, 104). up1 takes transition2 (H/16), up2 transition1 (H/8), up3 pool0
    (H/4), up4 relu0 (H/2). ``forward(encoder outputs)`` -> (B, 1, H/2, W/2).
    """

    def __init__(self, channels: dict):
        super().__init__()
        features = channels["bottleneck"]
        self.conv2 = nn.Conv2d(features, features, kernel_size=1)
        self.up1 = UpBlock(features, channels["transition2"], features // 2)
        self.up2 = UpBlock(features // 2, channels["transition1"], features // 4)
        self.up3 = UpBlock(features // 4, channels["pool0"], features // 8)
        self.up4 = UpBlock(features // 8, channels["relu0"], features // 16)
        self.conv3 = nn.Conv2d(features // 16, 1, kernel_size=3, padding=1)

    def forward(self, skips: dict) -> torch.Tensor:
        x = self.conv2(skips["bottleneck"])
        x = self.up1(x, skips["transition2"])
        x = self.up2(x, skips["transition1"])
        x = self.up3(x, skips["pool0"])
        x = self.up4(x, skips["relu0"])
        return self.conv3(x)


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"images has shape {shape}, expected (B, 3, H, W) RGB in [0, 1]")
    if not images.is_floating_point():
        raise ValueError(f"images has dtype {images.dtype}, expected a float tensor in [0, 1] "
                         f"(divide uint8 images by 255)")
    if min(images.shape[-2:]) < MIN_SIZE:
        raise ValueError(f"images has shape {tuple(images.shape)}, expected H >= {MIN_SIZE} and "
                         f"W >= {MIN_SIZE} (the bottleneck has stride 32)")


class DenseDepth(nn.Module):
    """DenseDepth (Alhashim & Wonka 2018): DenseNet encoder + U-shaped up-sampling decoder.

    Args:
        encoder: "densenet169" (42.66 M parameters in all), "densenet121" or "small" (2.69 M).
        pretrained: False, True (torchvision ImageNet weights for the encoder; needs internet)
            or a path to a local torchvision DenseNet state dict (keys with or without 'features.').
    ``forward(images (B, 3, H, W) RGB in [0, 1])`` normalises with the ImageNet mean / std
    inside and returns (B, 1, ceil(H/2), ceil(W/2)) in depth_norm space: max_depth / depth.
    Any H, W >= 32 works.

    Example:
        >>> DenseDepth("small")(torch.rand(1, 3, 96, 128)).shape
        torch.Size([1, 1, 48, 64])
    """

    def __init__(self, encoder: str = "densenet169", pretrained=False):
        super().__init__()
        self.encoder = DenseNetEncoder(encoder, pretrained)
        self.decoder = DenseDepthDecoder(self.encoder.channels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return self.decoder(self.encoder((images - self.mean) / self.std))


def load_densedepth(path, map_location="cpu") -> DenseDepth:
    """A DenseDepth rebuilt from a training checkpoint or exported weights (its encoder is in the
    file's metadata); in eval mode. ``path`` may name a file shipped in the repository's ``data/``."""
    def build(metadata):
        return DenseDepth(metadata.get("encoder", "densenet169"))

    return load_model(path, "densedepth", build, map_location, default_kind="densedepth")


def densedepth169(pretrained=False) -> DenseDepth:
    """DenseDepth with DenseNet-169, as in the paper (42.66 M parameters)."""
    return DenseDepth("densenet169", pretrained)


def densedepth121(pretrained=False) -> DenseDepth:
    """DenseDepth with DenseNet-121 (decoder width 1024; 18.99 M parameters)."""
    return DenseDepth("densenet121", pretrained)


def densedepth_small(pretrained=False) -> DenseDepth:
    """DenseDepth with the small DenseNet of the ``cpu`` profile (2.69 M parameters, no ImageNet)."""
    return DenseDepth("small", pretrained)


def _depth_from_output(output: torch.Tensor, max_depth: float, min_depth: float) -> torch.Tensor:
    # depth = max_depth / output, clipped to [min_depth, max_depth]. Clamping the output to
    # [1, max_depth / min_depth] first does the same for positive outputs and also maps an
    # untrained network's outputs <= 0 ("beyond infinity") to max_depth instead of inf / negative.
    return max_depth / output.clamp(1.0, max_depth / min_depth)


@torch.inference_mode()
def predict_depth(model: nn.Module, images: torch.Tensor, max_depth: float = 10.0,
                  min_depth: float | None = None, flip_tta: bool = False,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """Metric depth of RGB images from a DenseDepth model, at the images' resolution.

    Args:
        model: DenseDepth (run in eval mode here; its training mode is restored afterwards).
        images: (B, 3, H, W) RGB in [0, 1]; moved to the model's device.
        max_depth, min_depth: metres; depth = max_depth / output clipped to [min_depth, max_depth],
            min_depth defaults to max_depth / 100 (as depth_norm).
        flip_tta: also predict the mirrored images and average, in metres, with the mirrored-back
            result (the paper's test-time augmentation).
        size: (H', W') to run the network at, normally the size it was trained at (a network reads
            depth partly from how large things look in pixels, chapter 06): the images are resized
            as ``NYUDepth`` resizes them (bilinear, antialiased) and the depth comes back at the
            images' own resolution. None: run at the images' size.
    Returns:
        (B, 1, H, W) depth in metres, bilinearly upsampled from half resolution on the grid the
        network was trained on (``upsample_half``): output pixel j is input pixel 2j.
    """
    _check_images(images)
    min_depth = max_depth / 100 if min_depth is None else min_depth
    if not 0 < min_depth < max_depth:
        raise ValueError(f"min_depth={min_depth}, max_depth={max_depth}: expected 0 < min_depth < max_depth")
    out_size = images.shape[-2:]
    if size is not None:
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(n, numbers.Integral) and n >= MIN_SIZE for n in size)):
            raise ValueError(f"size={size!r}: expected (H, W), two integers >= {MIN_SIZE}")
    was_training = model.training
    model.eval()
    try:
        images = images.to(next(model.parameters()).device)
        if size is not None and tuple(map(int, size)) != tuple(out_size):   # resized where the model runs
            images = F.interpolate(images, size=tuple(map(int, size)), mode="bilinear", align_corners=False,
                                   antialias=True).clamp(0.0, 1.0)
        run_size = tuple(images.shape[-2:])
        depth = upsample_half(_depth_from_output(model(images), max_depth, min_depth), run_size, out_size)
        if flip_tta:   # each prediction upsampled in its own frame, then mirrored back at full size
            flipped = _depth_from_output(model(images.flip(-1)), max_depth, min_depth)
            depth = 0.5 * (depth + upsample_half(flipped, run_size, out_size).flip(-1))
    finally:
        model.train(was_training)
    return depth


def upsample_half(depth: torch.Tensor, run_size, out_size) -> torch.Tensor:
    """DenseDepth's half-resolution output, bilinearly resampled to ``out_size`` where it belongs.

    Training compares output pixel j with the target pixel that ``DenseDepthTask`` picks by nearest
    down-sampling: input pixel floor(j * n / m) for n input and m output pixels, 2j when n is even
    (the stride-2 stem centres output j on input 2j too). So input position x reads the output at
    x * m / n; ``align_corners=False`` would read it at (x + 1/2) * m / n - 1/2, half an input pixel
    off. ``run_size`` is the size the network ran at; when ``out_size`` differs, the images were
    resized as ``align_corners=False`` (pixel areas) and the grid follows that resize. Positions past
    the last output pixel repeat it (border padding).
    """
    m_h, m_w = depth.shape[-2:]
    grids = []
    for n_run, n_out, m in ((run_size[0], out_size[0], m_h), (run_size[1], out_size[1], m_w)):
        x = torch.arange(n_out, device=depth.device, dtype=torch.float32)
        x_run = (x + 0.5) * n_run / n_out - 0.5               # out pixel -> run pixel (area resize)
        u = x_run * m / n_run                                  # run pixel -> output pixel
        grids.append(2 * u / max(m - 1, 1) - 1)               # align_corners=True normalisation
    gy, gx = torch.meshgrid(grids[0], grids[1], indexing="ij")
    grid = torch.stack([gx, gy], -1).expand(depth.shape[0], -1, -1, -1)
    return F.grid_sample(depth.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).to(depth.dtype)
