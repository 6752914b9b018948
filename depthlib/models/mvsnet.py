"""MVSNet (Yao et al. 2018) and a classical plane-sweep baseline (chapters 07-09).

Pipeline: a shared 2D ``FeatureNet`` (output stride 4) -> every source view's features warped
onto the reference camera's fronto-parallel depth planes (``depthlib.geometry.homography_warp``)
-> the variance across views as the cost volume -> a 3D U-Net (``CostRegNet``) -> softmax over
depth (``prob_volume``) -> soft-argmin depth (``depth_regression``) and a photometric confidence
-> ``RefineNet``: the depth normalised over [depth_min, depth_max], with the reference image,
gives a residual (the original TensorFlow design).

Shapes: ``imgs`` (B, V, 3, H, W) in [0, 1], view 0 the reference; ``proj`` (B, V, 4, 4)
``[[K @ [R|t]], [0, 0, 0, 1]]`` with K at the *feature* resolution (H/4, W/4), as DTU's
``Cameras/train`` files give it; ``depth_values`` (B, D) in scene units (mm for DTU). Depth
outputs are (B, 1, H/4, W/4), ``prob_volume`` (B, D, H/4, W/4).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from depthlib.checkpoint_io import load_model
from depthlib.geometry import homography_warp
from depthlib.planesweep import (check_mvs_inputs, depth_regression,  # re-exported: chapter 07's baseline
                                plane_sweep_depth)

__all__ = ["FeatureNet", "CostRegNet", "RefineNet", "MVSNet", "check_mvs_inputs", "variance_cost_volume",
           "depth_regression", "photometric_confidence", "standardize_image", "plane_sweep_depth", "load_mvsnet",
           "collect_mvsnet_outputs"]


def _conv_bn_relu(cin, cout, kernel=3, stride=1, dims=2):
    conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(conv(cin, cout, kernel, stride, kernel // 2, bias=False), bn(cout), nn.ReLU(inplace=True))


def standardize_image(img: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per image and channel, as MVSNet's ``center_image``: lighting changes
    between views and scans then matter less. img: (..., C, H, W)."""
    mean = img.mean(dim=(-2, -1), keepdim=True)
    var = img.var(dim=(-2, -1), keepdim=True, unbiased=False)
    return (img - mean) / torch.sqrt(var + eps)


class FeatureNet(nn.Module):
    """Eight conv layers, 8 / 16 / 32 channels, two stride-2 5x5 convs: (B, 3, H, W) -> (B, 32, H/4, W/4).

    Conv-BN-ReLU blocks and a plain last conv (features, not activations, go into the cost volume).
    """

    def __init__(self, base: int = 8):
        super().__init__()
        c1, c2, c3 = base, 2 * base, 4 * base
        self.layers = nn.Sequential(
            _conv_bn_relu(3, c1), _conv_bn_relu(c1, c1),
            _conv_bn_relu(c1, c2, 5, 2), _conv_bn_relu(c2, c2), _conv_bn_relu(c2, c2),
            _conv_bn_relu(c2, c3, 5, 2), _conv_bn_relu(c3, c3),
            nn.Conv2d(c3, c3, 3, 1, 1))
        self.out_channels = c3

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.layers(img)


class CostRegNet(nn.Module):
    """3D U-Net 8 / 16 / 32 / 64 with skip additions: (B, C, D, h, w) -> (B, 1, D, h, w) logits.

    Three stride-2 levels, so D, h and w must be divisible by 8.
    """

    def __init__(self, in_channels: int = 32, base: int = 8):
        super().__init__()
        c0, c1, c2, c3 = base, 2 * base, 4 * base, 8 * base
        self.conv0 = _conv_bn_relu(in_channels, c0, dims=3)
        self.down1 = nn.Sequential(_conv_bn_relu(c0, c1, stride=2, dims=3), _conv_bn_relu(c1, c1, dims=3))
        self.down2 = nn.Sequential(_conv_bn_relu(c1, c2, stride=2, dims=3), _conv_bn_relu(c2, c2, dims=3))
        self.down3 = nn.Sequential(_conv_bn_relu(c2, c3, stride=2, dims=3), _conv_bn_relu(c3, c3, dims=3))
        self.up3 = self._up(c3, c2)
        self.up2 = self._up(c2, c1)
        self.up1 = self._up(c1, c0)
        self.prob = nn.Conv3d(c0, 1, 3, 1, 1)

    @staticmethod
    def _up(cin, cout):
        return nn.Sequential(nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
                             nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x0 = self.conv0(volume)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x = self.down3(x2)
        x = x2 + self.up3(x)
        x = x1 + self.up2(x)
        x = x0 + self.up1(x)
        return self.prob(x)


class RefineNet(nn.Module):
    """Depth-map refinement as in MVSNet's TensorFlow code.

    The initial depth is normalised to [0, 1] over [depth_min, depth_max], concatenated with the
    (standardised) reference image resized to the depth resolution (4 channels), passed through
    three 32-channel Conv-BN-ReLU and a conv to one channel; that output is a *residual* added to
    the normalised depth, and the sum is de-normalised. Returns (B, 1, h, w) in scene units.
    """

    def __init__(self, channels: int = 32):
        super().__init__()
        self.layers = nn.Sequential(_conv_bn_relu(4, channels), _conv_bn_relu(channels, channels),
                                    _conv_bn_relu(channels, channels), nn.Conv2d(channels, 1, 3, 1, 1))

    def forward(self, img: torch.Tensor, depth: torch.Tensor, depth_min: torch.Tensor,
                depth_max: torch.Tensor) -> torch.Tensor:
        if depth.dim() != 4 or depth.shape[1] != 1 or img.dim() != 4 or img.shape[:2] != (depth.shape[0], 3):
            raise ValueError(f"RefineNet: img {tuple(img.shape)} and depth {tuple(depth.shape)}; expected "
                             "(B, 3, H, W) and (B, 1, h, w)")
        low = depth_min.reshape(-1, 1, 1, 1).to(depth.dtype)
        scale = (depth_max - depth_min).reshape(-1, 1, 1, 1).to(depth.dtype)
        norm_depth = (depth - low) / scale
        image = F.interpolate(img, size=depth.shape[-2:], mode="bilinear", align_corners=False)
        residual = self.layers(torch.cat([image.to(depth.dtype), norm_depth], dim=1))
        return (norm_depth + residual) * scale + low


def variance_cost_volume(ref_feat: torch.Tensor, src_feats, ref_proj: torch.Tensor, src_projs,
                         depth_values: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """MVSNet's cost volume: the per-channel variance of the V feature volumes.

    ref_feat (B, C, h, w); src_feats / src_projs: sequences of (B, C, h, w) / (B, 4, 4);
    depth_values (B, D). Returns (B, C, D, h, w) = mean(v^2) - mean(v)^2 over the views, in float32
    whatever the autocast state (the warps are float32, and mean(v^2) - mean(v)^2 cancels badly in
    bf16 / fp16). ``inplace=True`` (inference, no autograd) accumulates the sums in place, one
    warped volume at a time, so memory holds three volumes whatever the number of views.
    """
    if len(src_feats) != len(src_projs) or len(src_feats) < 1:
        raise ValueError(f"variance_cost_volume: {len(src_feats)} source features and {len(src_projs)} "
                         "projections; expected the same number, at least 1")
    views = len(src_feats) + 1
    depths = depth_values.shape[1]
    ref_feat = ref_feat if ref_feat.dtype == torch.float64 else ref_feat.float()
    ref_volume = ref_feat.unsqueeze(2).expand(-1, -1, depths, -1, -1)
    if inplace:
        volume_sum = ref_volume.clone()
        volume_sq_sum = ref_volume.pow(2)
        for feat, proj in zip(src_feats, src_projs):
            warped = homography_warp(feat, proj, ref_proj, depth_values)
            volume_sum += warped
            volume_sq_sum += warped.pow_(2)
            del warped
        return volume_sq_sum.div_(views).sub_(volume_sum.div_(views).pow_(2))
    volume_sum, volume_sq_sum = ref_volume, ref_volume.pow(2)
    for feat, proj in zip(src_feats, src_projs):
        warped = homography_warp(feat, proj, ref_proj, depth_values)
        volume_sum = volume_sum + warped
        volume_sq_sum = volume_sq_sum + warped.pow(2)
    return volume_sq_sum / views - (volume_sum / views).pow(2)


def photometric_confidence(prob_volume: torch.Tensor) -> torch.Tensor:
    """Probability mass of the four planes around the regressed index (index-1 .. index+2).

    prob_volume (B, D, h, w) -> (B, 1, h, w) in [0, 1]. The index is the soft-argmin over plane
    numbers 0..D-1, rounded down and clamped to the valid range.
    """
    depths = prob_volume.shape[1]
    window = F.pad(prob_volume.unsqueeze(1), (0, 0, 0, 0, 1, 2))  # planes i-1 .. i+2 around plane i
    sum4 = 4 * F.avg_pool3d(window, (4, 1, 1), stride=1).squeeze(1)
    planes = torch.arange(depths, device=prob_volume.device, dtype=prob_volume.dtype)
    index = depth_regression(prob_volume, planes.unsqueeze(0).expand(prob_volume.shape[0], -1))
    index = index.long().clamp(0, depths - 1)
    return torch.gather(sum4, 1, index)


class MVSNet(nn.Module):
    """MVSNet: ``forward(imgs, proj, depth_values) -> dict`` (see the module doc for shapes).

    Output keys: ``depth`` (soft-argmin), ``refined_depth`` (with ``refine=True``),
    ``photometric_confidence``, ``prob_volume``. During training the cost volume is built out of
    place (autograd needs every warped volume); in eval mode under ``torch.no_grad`` it is
    accumulated in place. Sizes: D, H/4 and W/4 must be divisible by 8 (the 3D U-Net).
    ``freeze_backbone()`` trains the refinement alone (chapter 09).
    """

    def __init__(self, refine: bool = True, base: int = 8):
        super().__init__()
        self.refine = refine
        self.feature = FeatureNet(base)
        self.cost_regularization = CostRegNet(self.feature.out_channels, base)
        self.refine_network = RefineNet() if refine else None
        self.backbone_frozen = False

    def freeze_backbone(self, frozen: bool = True) -> "MVSNet":
        """Freeze (or unfreeze) everything before the refinement: FeatureNet and the 3D U-Net keep
        their weights (no gradient) and their BN statistics (eval mode, whatever ``train()`` says),
        and run without autograd, so a training step costs one inference of them plus the
        refinement's forward and backward. Needs ``refine=True``. Returns the model."""
        if frozen and self.refine_network is None:
            raise ValueError("freeze_backbone: this MVSNet has no refinement network (refine=False) to train")
        self.backbone_frozen = frozen
        for module in (self.feature, self.cost_regularization):
            module.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "MVSNet":
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (its BN statistics fixed)."""
        super().train(mode)
        if self.backbone_frozen:
            self.feature.eval()
            self.cost_regularization.eval()
        return self

    @staticmethod
    def check_inputs(imgs, proj, depth_values) -> None:
        """Raise a ValueError naming the mismatched shape or size."""
        _, _, height, width, depths = check_mvs_inputs("MVSNet", imgs, proj, depth_values)
        if height % 32 or width % 32 or depths % 8:
            raise ValueError(f"MVSNet: image {height}x{width} with D={depths} planes; the 3D U-Net needs D, "
                             f"H/4 and W/4 divisible by 8 (H and W multiples of 32, D a multiple of 8)")

    def forward(self, imgs: torch.Tensor, proj: torch.Tensor, depth_values: torch.Tensor) -> dict:
        self.check_inputs(imgs, proj, depth_values)
        batch, views = imgs.shape[:2]
        standardized = standardize_image(imgs)
        with torch.no_grad() if self.backbone_frozen else contextlib.nullcontext():
            feats = self.feature(standardized.flatten(0, 1)).unflatten(0, (batch, views))
            inplace = not torch.is_grad_enabled()
            volume = variance_cost_volume(feats[:, 0], [feats[:, v] for v in range(1, views)], proj[:, 0],
                                          [proj[:, v] for v in range(1, views)], depth_values, inplace=inplace)
            logits = self.cost_regularization(volume).squeeze(1)
            prob_volume = F.softmax(logits.float(), dim=1)
        out = {"depth": depth_regression(prob_volume, depth_values.float()), "prob_volume": prob_volume}
        with torch.no_grad():
            out["photometric_confidence"] = photometric_confidence(prob_volume.detach())
        if self.refine_network is not None:
            out["refined_depth"] = self.refine_network(standardized[:, 0], out["depth"], depth_values[:, 0],
                                                       depth_values[:, -1]).float()
        return out


def load_mvsnet(path, map_location="cpu") -> MVSNet:
    """An MVSNet rebuilt from a training checkpoint or exported weights (``refine`` from the file's
    metadata); in eval mode. ``path`` may name a file shipped in the repository's ``data/``."""
    def build(metadata):
        return MVSNet(refine=metadata.get("refine", True))

    return load_model(path, "mvsnet", build, map_location, default_kind="mvsnet")


@torch.no_grad()
def collect_mvsnet_outputs(model, dataset, outputs: dict, keep=(), batch_size: int = 4, device=None) -> dict:
    """Run an MVSNet-like model once over a ``DTUMVS``-like dataset and keep what later work needs (chapter 09).

    outputs: {name: key of the model's output dict}, e.g. ``{"initial": "depth", "refined":
    "refined_depth"}``; keep: dataset keys kept as they are (e.g. ``"depth"``, the ground truth).
    Returns {name or key: tensor (N, ...)}: the samples in order, concatenated on the CPU, in the
    model's and the dataset's units (mm for DTU). The model runs on ``device`` (default: its
    parameters') in eval mode; its outputs stay there until the last batch and then come back once
    per name, so a GPU never waits for the host between batches.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1 or not outputs or set(outputs) & set(keep):
        raise ValueError(f"collect_mvsnet_outputs: batch_size={batch_size}, outputs={outputs!r}, keep={keep!r}; "
                         "expected batch_size >= 1 and at least one output, named unlike the kept keys")
    first = next(model.parameters(), None)
    device = torch.device(device) if device else first.device if first is not None else torch.device("cpu")
    was_training, kept, produced = model.training, {key: [] for key in keep}, {name: [] for name in outputs}
    model.eval()
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            missing = [key for key in keep if key not in batch]
            out = model(*(batch[key].to(device) for key in ("imgs", "proj_matrices", "depth_values")))
            missing += [key for key in outputs.values() if key not in out]
            if missing:
                raise ValueError(f"collect_mvsnet_outputs: no {missing} in the dataset's items "
                                 f"{sorted(batch)} or the model's outputs {sorted(out)}")
            for key in keep:
                kept[key].append(batch[key])
            for name, key in outputs.items():
                produced[name].append(out[key])
    finally:
        model.train(was_training)
    if not produced[next(iter(outputs))]:
        raise ValueError("collect_mvsnet_outputs: the dataset is empty")
    return {**{key: torch.cat(parts) for key, parts in kept.items()},
            **{name: torch.cat(parts).cpu() for name, parts in produced.items()}}
