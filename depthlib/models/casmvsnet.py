"""CasMVSNet (Gu et al., CVPR 2020): a cascade of cost volumes, coarse to fine (chapter 12).

MVSNet pays for every depth plane at every pixel of one quarter-resolution volume. The cascade
builds a few small volumes instead: a feature pyramid (FPN: 1/4, 1/2 and full resolution) gives
each stage its features; stage 1 sweeps fronto-parallel planes over the whole depth range at 1/4;
every later stage up-samples the previous depth (bilinear, detached) to its resolution and sweeps
a narrow band of *per-pixel* hypotheses around it, with a finer plane spacing. Each stage is
MVSNet's pipeline: ``homography_warp`` of the source features onto the hypotheses, the variance
across views (computed in float32, autocast off), a 3D U-Net (``CostRegNet``), softmax,
soft-argmin depth and the 4-plane photometric confidence.

The stages are data (:class:`CascadeStage`): planes D, plane spacing as a multiple of the base
interval, image-to-map scale and loss weight. The paper's are :data:`PAPER_STAGES` (48 / 32 / 8
planes, spacing 4 / 2 / 1, scales 4 / 2 / 1, weights 0.5 / 1 / 2). A single stage at scale 4 is
MVSNet's pipeline on the planes it is given.

Shapes: ``imgs`` (B, V, 3, H, W) in [0, 1], view 0 the reference, H and W multiples of 32;
``proj`` (B, V, 4, 4) with K at 1/4 of the image (DTU's ``Cameras/train``, as MVSNet);
``depth_values`` (B, D0) uniform planes over the depth range (scene units, mm for DTU): the cascade
reads the range [first, last] and the base interval (last - first) / (D0 - 1) from them.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from depthlib.checkpoint_io import load_model
from depthlib.geometry import scale_projection
from depthlib.metrics import PooledIntervalMetrics
from depthlib.models.mvsnet import (CostRegNet, FeatureNet, check_mvs_inputs, depth_regression, photometric_confidence,
                                    standardize_image, variance_cost_volume)

__all__ = ["CascadeStage", "PAPER_STAGES", "FeaturePyramid", "stage_hypotheses", "CasMVSNet",
           "casmvsnet_loss", "CasMVSNetTask", "stages_from_metadata", "evaluate_casmvsnet", "collect_cascade_outputs",
           "load_casmvsnet", "init_from_mvsnet"]

_SCALES = (4, 2, 1)
_MAP_NAMES = {1: "full", 2: "half", 4: "quarter"}  # the DTUMVSFull item keys: depth_full, ...


@dataclasses.dataclass(frozen=True)
class CascadeStage:
    """One stage of the cascade.

    planes: depth hypotheses D per pixel (a multiple of 8: the 3D U-Net halves D three times).
    interval_ratio: their spacing in base intervals (stages after the first; the first spreads its
    planes over the whole range). scale: image size / this stage's map size, 4, 2 or 1.
    loss_weight: the stage's weight in :func:`casmvsnet_loss`.
    """

    planes: int
    interval_ratio: float
    scale: int
    loss_weight: float = 1.0

    def __post_init__(self):
        if self.planes < 8 or self.planes % 8 or self.interval_ratio <= 0 or self.scale not in _SCALES:
            raise ValueError(f"CascadeStage{dataclasses.astuple(self)}: expected planes a positive multiple of "
                             f"8, interval_ratio > 0 and scale in {_SCALES}")


PAPER_STAGES = (CascadeStage(48, 4.0, 4, 0.5), CascadeStage(32, 2.0, 2, 1.0), CascadeStage(8, 1.0, 1, 2.0))


def stages_from_metadata(stages) -> tuple:
    """CascadeStage objects from dicts (a checkpoint's metadata) or CascadeStage objects."""
    return tuple(s if isinstance(s, CascadeStage) else CascadeStage(**s) for s in stages)


class FeaturePyramid(nn.Module):
    """FPN features at 1/4, 1/2 and full resolution: 4 base, 2 base and base channels (32 / 16 / 8).

    Bottom-up: MVSNet's ``FeatureNet`` itself (``self.encoder``), whose last layer (a plain 3x3 conv)
    gives the 1/4 map, so a one-stage cascade has exactly MVSNet's features. Top-down (as CasMVSNet's
    FPN): the encoder's last activation at 1/4 is up-sampled (nearest, x2) and added to a 1x1
    projection of its activation at 1/2, and a 3x3 conv gives the 1/2 map; once more for full
    resolution. ``forward(img) -> {scale: (B, C, H/scale, W/scale)}`` for the ``scales`` asked for
    (the top-down path stops at the finest).
    """

    def __init__(self, base: int = 8, scales=_SCALES):
        super().__init__()
        self.scales = tuple(sorted(set(scales), reverse=True))
        if not self.scales or any(s not in _SCALES for s in self.scales):
            raise ValueError(f"FeaturePyramid: scales {scales}, expected some of {_SCALES}")
        self.encoder = FeatureNet(base)
        c1, c2, c3 = base, 2 * base, 4 * base
        self.out_channels = {4: c3, 2: c2, 1: c1}
        if min(self.scales) <= 2:
            self.inner2, self.out2 = nn.Conv2d(c2, c3, 1), nn.Conv2d(c3, c2, 3, padding=1, bias=False)
        if min(self.scales) == 1:
            self.inner1, self.out1 = nn.Conv2d(c1, c3, 1), nn.Conv2d(c3, c1, 3, padding=1, bias=False)

    def forward(self, img: torch.Tensor) -> dict:
        layers = self.encoder.layers
        x1 = layers[:2](img)        # full resolution, base channels
        x2 = layers[2:5](x1)        # 1/2, 2 base
        top = layers[5:7](x2)       # 1/4, 4 base
        out = {4: layers[7](top)}   # MVSNet's features
        if min(self.scales) <= 2:
            top = F.interpolate(top, scale_factor=2.0, mode="nearest") + self.inner2(x2)
            out[2] = self.out2(top)
        if min(self.scales) == 1:
            top = F.interpolate(top, scale_factor=2.0, mode="nearest") + self.inner1(x1)
            out[1] = self.out1(top)
        return {s: out[s] for s in self.scales}


def stage_hypotheses(depth_values: torch.Tensor, planes: int, interval=None, prev_depth=None, size=None):
    """The depth hypotheses of one stage.

    First stage (``prev_depth=None``): ``planes`` fronto-parallel planes spread evenly from the first
    to the last of ``depth_values`` (B, D0); returns (B, planes). Later stages: ``prev_depth``
    (B, 1, h', w') is up-sampled (bilinear, pixel centres, ``align_corners=False``) to ``size`` = (h, w),
    and each pixel gets ``planes`` hypotheses ``interval`` apart (B,) centred on it, the band shifted
    to stay inside the depth range where it would leave it (a band wider than the range starts at its
    near end); returns (B, planes, h, w). Scene units.
    A first stage with as many planes as ``depth_values`` uses them as given (MVSNet's sweep).
    """
    low, high = depth_values[:, :1], depth_values[:, -1:]
    steps = torch.arange(planes, device=depth_values.device, dtype=depth_values.dtype)
    if prev_depth is None:
        if depth_values.shape[1] == planes:
            return depth_values
        return low + (high - low) * steps / max(planes - 1, 1)
    if interval is None or size is None:
        raise ValueError("stage_hypotheses: a later stage needs interval (B,) and size (h, w)")
    centre = F.interpolate(prev_depth.to(depth_values.dtype), size=tuple(size), mode="bilinear",
                           align_corners=False)
    interval = torch.as_tensor(interval, dtype=depth_values.dtype, device=depth_values.device).reshape(-1, 1, 1, 1)
    width = interval * (planes - 1)
    start = torch.minimum(centre - width / 2, high[:, :, None, None] - width)
    start = torch.maximum(start, low[:, :, None, None])
    return start + interval * steps.reshape(1, -1, 1, 1)


class CasMVSNet(nn.Module):
    """The cascade: ``forward(imgs, proj, depth_values) -> dict`` (see the module doc for shapes).

    Keys: ``depth`` (B, 1, H/s, W/s) and ``photometric_confidence`` of the last stage (full
    resolution with the paper's stages), ``prob_volume`` and ``depth_values`` (its hypotheses,
    (B, D, h, w)), and ``stages``: one dict per stage with ``depth``, ``photometric_confidence``,
    ``prob_volume`` and ``depth_values``. In eval mode under ``torch.no_grad`` the variance volumes
    are accumulated in place.
    """

    def __init__(self, stages=PAPER_STAGES, base: int = 8):
        super().__init__()
        self.stages = stages_from_metadata(stages)
        if not self.stages or any(a.scale < b.scale for a, b in zip(self.stages, self.stages[1:])):
            raise ValueError(f"CasMVSNet: stages {self.stages}; expected at least one, scales never increasing")
        self.feature = FeaturePyramid(base, [s.scale for s in self.stages])
        self.cost_regularization = nn.ModuleList(
            CostRegNet(self.feature.out_channels[s.scale], base) for s in self.stages)

    def check_inputs(self, imgs, proj, depth_values) -> None:
        """Raise a ValueError naming the mismatched shape or size."""
        _, _, height, width, _ = check_mvs_inputs("CasMVSNet", imgs, proj, depth_values, min_planes=2)
        if height % 32 or width % 32:
            raise ValueError(f"CasMVSNet: image {height}x{width}; the 3D U-Net needs H/4 and W/4 divisible by 8 "
                             "(H and W multiples of 32)")

    def forward(self, imgs: torch.Tensor, proj: torch.Tensor, depth_values: torch.Tensor) -> dict:
        self.check_inputs(imgs, proj, depth_values)
        batch, views, _, height, width = imgs.shape
        standardized = standardize_image(imgs)
        if torch.is_grad_enabled():  # training: all views in one batch
            pyramid = {s: f.unflatten(0, (batch, views)) for s, f in self.feature(standardized.flatten(0, 1)).items()}
        else:  # inference: view by view (as CasMVSNet), so full-resolution activations exist for one view at a time
            per_view = [self.feature(standardized[:, v]) for v in range(views)]
            pyramid = {s: torch.stack([f[s] for f in per_view], dim=1) for s in per_view[0]}
            del per_view
        depth_values = depth_values.float()
        base_interval = (depth_values[:, -1] - depth_values[:, 0]) / (depth_values.shape[1] - 1)
        depth, outputs = None, []
        for stage, regularize in zip(self.stages, self.cost_regularization):
            size = (height // stage.scale, width // stage.scale)
            hypotheses = stage_hypotheses(depth_values, stage.planes, stage.interval_ratio * base_interval,
                                          None if depth is None else depth.detach(), size)
            feats = pyramid[stage.scale]
            stage_proj = scale_projection(proj.float(), 4 / stage.scale)
            volume = [_variance_volume_fp32(feats, stage_proj, hypotheses)]  # a list the regulariser empties
            logits = regularize(volume.pop()) if torch.is_grad_enabled() else _regularize_lean(regularize, volume)
            logits = logits.squeeze(1)
            prob_volume = F.softmax(logits.float(), dim=1)
            depth = depth_regression(prob_volume, hypotheses)
            with torch.no_grad():
                confidence = photometric_confidence(prob_volume.detach())
            if hypotheses.dim() == 2:
                hypotheses = hypotheses[:, :, None, None].expand(-1, -1, *size)
            outputs.append({"depth": depth, "photometric_confidence": confidence, "prob_volume": prob_volume,
                            "depth_values": hypotheses})
        return {**outputs[-1], "stages": outputs}


def init_from_mvsnet(model: CasMVSNet, mvsnet) -> list:
    """Start a cascade from a trained MVSNet: its ``FeatureNet`` becomes the pyramid's encoder and its
    ``CostRegNet`` the first stage's regulariser (the first stage must be at scale 4; D does not
    matter, 3D conv weights are shared over depth). Returns the names of the copied tensors."""
    if model.stages[0].scale != 4:
        raise ValueError(f"init_from_mvsnet: the first stage is at scale {model.stages[0].scale}, expected 4 "
                         "(MVSNet's feature resolution)")
    model.feature.encoder.load_state_dict(mvsnet.feature.state_dict())
    model.cost_regularization[0].load_state_dict(mvsnet.cost_regularization.state_dict())
    return [f"feature.encoder.{k}" for k in mvsnet.feature.state_dict()] + \
        [f"cost_regularization.0.{k}" for k in mvsnet.cost_regularization.state_dict()]


@torch.no_grad()
def _regularize_lean(net: CostRegNet, holder: list) -> torch.Tensor:
    """``net(holder.pop())`` at inference, dropping each activation once it is used (the volume
    right after the first convolution, the skips after their addition), so that the full-size
    tensors of a fine stage do not all live at once. Same numbers as ``CostRegNet.forward``."""
    x0 = net.conv0(holder.pop())
    x1 = net.down1(x0)
    x2 = net.down2(x1)
    x = net.up3(net.down3(x2)).add_(x2)
    del x2
    x = net.up2(x).add_(x1)
    del x1
    x = net.up1(x).add_(x0)
    del x0
    return net.prob(x)


def _variance_volume_fp32(feats, proj, hypotheses, chunk: int = 8):
    """``variance_cost_volume`` of feats (B, V, C, h, w) in float32 with autocast off (grid, warp and
    variance; bf16 puts the grid off by pixels at DTU scales, fp16 squares overflow). At inference
    (no autograd) it is built ``chunk`` hypotheses at a time into one volume: the sums and the
    warped features then exist for a chunk only, so memory holds the volume plus a fraction."""
    with torch.autocast(feats.device.type, enabled=False):
        feats, hypotheses = feats.float(), hypotheses.float()
        views = feats.shape[1]
        ref, srcs = feats[:, 0], [feats[:, v] for v in range(1, views)]
        ref_proj, src_projs = proj[:, 0], [proj[:, v] for v in range(1, views)]
        if torch.is_grad_enabled():
            return variance_cost_volume(ref, srcs, ref_proj, src_projs, hypotheses)
        batch, channels, height, width = ref.shape
        volume = ref.new_empty(batch, channels, hypotheses.shape[1], height, width)
        for start in range(0, hypotheses.shape[1], chunk):
            volume[:, :, start:start + chunk] = variance_cost_volume(
                ref, srcs, ref_proj, src_projs, hypotheses[:, start:start + chunk], inplace=True)
        return volume


def casmvsnet_loss(outputs: dict, batch: dict, stages) -> dict:
    """The weighted sum over stages of chapter 09's masked L1 (``mvsnet_loss``), each stage at its own
    resolution against ``batch["depth_{full,half,quarter}"]`` / ``mask_...`` (``DTUMVSFull``), all in
    units of the base interval ``batch["depth_interval"]``. Returns ``stage1``, ``stage2``, ... and
    ``total`` = sum of loss_weight x stage loss."""
    from depthlib.losses import mvsnet_loss

    stages = stages_from_metadata(stages)
    if len(outputs["stages"]) != len(stages):
        raise ValueError(f"casmvsnet_loss: {len(outputs['stages'])} stage outputs for {len(stages)} stages")
    losses, total = {}, 0.0
    for index, (stage, out) in enumerate(zip(stages, outputs["stages"]), start=1):
        name = _MAP_NAMES[stage.scale]
        if f"depth_{name}" not in batch:
            raise KeyError(f"casmvsnet_loss: stage {index} (scale {stage.scale}) needs batch['depth_{name}'] and "
                           f"batch['mask_{name}'] (a DTUMVSFull item)")
        gt, mask = batch[f"depth_{name}"], batch[f"mask_{name}"]
        if gt.shape[-2:] != out["depth"].shape[-2:]:
            raise ValueError(f"casmvsnet_loss: stage {index} depth {tuple(out['depth'].shape)} but depth_{name} "
                             f"{tuple(gt.shape)}")
        losses[f"stage{index}"] = mvsnet_loss(out["depth"].float(), gt, mask, batch["depth_interval"])
        total = total + stage.loss_weight * losses[f"stage{index}"]
    losses["total"] = total
    return losses


class CasMVSNetTask:
    """The cascade's objective for the ``Trainer``: :func:`casmvsnet_loss` with these stages' weights
    on a ``DTUMVSFull`` batch (``imgs``, ``proj_matrices``, ``depth_values``, per-scale depth / mask)."""

    def __init__(self, stages=PAPER_STAGES):
        self.stages = stages_from_metadata(stages)

    def loss(self, model, batch) -> dict:
        """``casmvsnet_loss`` of the model's stages on a ``DTUMVSFull`` batch (the Trainer's task API)."""
        out = model(batch["imgs"], batch["proj_matrices"], batch["depth_values"])
        return casmvsnet_loss(out, batch, self.stages)


# ----------------------------------------------------------------------------- evaluation

def _upsample(depth: torch.Tensor, size) -> torch.Tensor:
    """Bilinear up-sampling of (B, 1, h, w) depth to ``size`` at pixel centres (align_corners=False)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    return F.interpolate(depth, size=tuple(size), mode="bilinear", align_corners=False)


@torch.no_grad()
def evaluate_casmvsnet(model, dataset, batch_size: int = 2, device=None, mvsnet=None, interval_planes=None) -> dict:
    """Less-one / less-three and MAE at full resolution over a ``DTUMVSFull``-like dataset, pooled over
    the valid pixels (``mask_full``) of all samples.

    The cascade's last depth and, with ``mvsnet``, MVSNet's (refined when it refines) on the same
    samples, both up-sampled bilinearly to the image size where coarser. MVSNet sweeps
    ``mvsnet.metadata["n_depths"]`` (else ``interval_planes``, else 32) planes over the same range.
    One interval for less-one / less-three: the spacing of ``interval_planes`` planes over the depth
    range, default the dataset's ``depth_interval``. Keys: ``less_one``, ``less_three``, ``mae``
    (scene units) for the cascade, ``stage{i}_mae`` / ``stage{i}_less_one`` at each stage's own
    resolution, and ``mvsnet_less_one`` ... with ``mvsnet``. ``model=None``: MVSNet alone.
    """
    from torch.utils.data import DataLoader

    first = next((model if model is not None else mvsnet).parameters())
    device = torch.device(device) if device else first.device
    nets = [net for net in (model, mvsnet) if net is not None]
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    mvsnet_planes = None
    if mvsnet is not None:
        mvsnet_planes = getattr(mvsnet, "metadata", {}).get("n_depths") or interval_planes or 32
    pooled = PooledIntervalMetrics()
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            imgs, proj = batch["imgs"].to(device), batch["proj_matrices"].to(device)
            depth_values = batch["depth_values"].to(device).float()
            gt, mask = batch["depth_full"].to(device), batch["mask_full"].to(device)
            valid = mask & torch.isfinite(gt) & (gt > 0)
            interval = batch["depth_interval"].to(device)
            if interval_planes:
                interval = (depth_values[:, -1] - depth_values[:, 0]) / (interval_planes - 1)
            if model is not None:
                out = model(imgs, proj, depth_values)
                pooled.add("", _upsample(out["depth"], gt.shape[-2:]), gt, valid, interval)
                for index, (stage, stage_out) in enumerate(zip(model.stages, out["stages"]), start=1):
                    name = _MAP_NAMES[stage.scale]
                    stage_gt = batch[f"depth_{name}"].to(device)
                    stage_valid = batch[f"mask_{name}"].to(device) & torch.isfinite(stage_gt) & (stage_gt > 0)
                    pooled.add(f"stage{index}_", stage_out["depth"], stage_gt, stage_valid, interval)
            if mvsnet is not None:
                steps = torch.linspace(0, 1, mvsnet_planes, device=device)
                planes = depth_values[:, :1] + (depth_values[:, -1:] - depth_values[:, :1]) * steps
                out = mvsnet(imgs, proj, planes)
                pooled.add("mvsnet_", _upsample(out.get("refined_depth", out["depth"]), gt.shape[-2:]), gt, valid, interval)
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)
    result = pooled.result()
    if not result:
        raise ValueError("evaluate_casmvsnet: no valid pixel in the dataset (or nothing to evaluate)")
    return result


@torch.no_grad()
def collect_cascade_outputs(model, dataset, mvsnet=None, mvsnet_planes: int = 32, batch_size: int = 4,
                            device=None, hypotheses_of=()) -> list:
    """Run the cascade (and MVSNet beside it) once over a ``DTUMVSFull``-like dataset (chapter 12).

    One dict per sample, in order, tensors on the CPU, depths in scene units (mm for DTU): ``scan``,
    ``view`` (reference view id), ``gt`` / ``mask`` (1, H, W) at full resolution, ``cascade`` /
    ``cascade_conf`` (1, h, w) the last stage's depth and confidence, ``stages`` each stage's depth at
    its own size, ``bands`` each stage's hypotheses (D_k, h_k, w_k) for the scans in ``hypotheses_of``
    (else None: they are large). With ``mvsnet``: ``mvsnet`` / ``mvsnet_conf`` (1, H/4, W/4), its
    depth (refined when it refines) over ``mvsnet_planes`` planes spanning each sample's range. The
    models run on ``device`` (default: the cascade's) in eval mode; maps come back once per key and batch.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1 or mvsnet_planes < 2:
        raise ValueError(f"collect_cascade_outputs: batch_size={batch_size}, mvsnet_planes={mvsnet_planes}; "
                         "expected batch_size >= 1 and mvsnet_planes >= 2")
    device = torch.device(device) if device else next(model.parameters()).device
    nets = [net for net in (model, mvsnet) if net is not None]
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    samples = []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            inputs = [batch[key].to(device) for key in ("imgs", "proj_matrices", "depth_values")]
            out = model(*inputs)
            maps = {"gt": batch["depth_full"], "mask": batch["mask_full"], "cascade": out["depth"].cpu(),
                    "cascade_conf": out["photometric_confidence"].cpu()}
            if mvsnet is not None:
                mvs = mvsnet(*inputs[:2], stage_hypotheses(inputs[2], mvsnet_planes))
                maps["mvsnet"] = mvs.get("refined_depth", mvs["depth"]).cpu()
                maps["mvsnet_conf"] = mvs["photometric_confidence"].cpu()
            stages = [stage["depth"].cpu() for stage in out["stages"]]
            for i, name in enumerate(batch["scan"]):
                bands = [s["depth_values"][i].cpu() for s in out["stages"]] if name in hypotheses_of else None
                samples.append({"scan": name, "view": int(batch["view_ids"][i, 0]), "bands": bands,
                                "stages": [depth[i] for depth in stages], **{k: v[i] for k, v in maps.items()}})
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)
    return samples


def load_casmvsnet(path, map_location="cpu") -> CasMVSNet:
    """A CasMVSNet rebuilt from a training checkpoint or exported weights (stages from the file's
    metadata); in eval mode. ``path`` may name a file shipped in the repository's ``data/``."""
    def build(metadata):
        return CasMVSNet(stages=metadata["stages"], base=metadata.get("base", 8))

    return load_model(path, "casmvsnet", build, map_location)