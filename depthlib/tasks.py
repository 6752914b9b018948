"""Training objectives: what a batch's losses are for each model (chapters 05, 08, 09).

A task turns a batch into a dict of losses with a ``"total"`` entry (what the Trainer minimises)
and counts each sample's valid target pixels (``valid_pixels``: a batch without any is refused).
``depthlib.models.casmvsnet.CasMVSNetTask`` is the cascade's.
"""
from __future__ import annotations

__all__ = ["DenseDepthTask", "MVSNetTask", "valid_depth_pixels"]

import math

import torch
import torch.nn.functional as F

from depthlib.losses import valid_depth_mask


def valid_depth_pixels(batch) -> torch.Tensor:
    """(B,) valid target pixels per sample: mask, finite depth > 0."""
    return valid_depth_mask(batch["depth"], batch["mask"]).flatten(1).sum(1)


class DenseDepthTask:
    """DenseDepth's objective: the network predicts ``max_depth / depth`` at half resolution; the
    target depth is resized (nearest) to that size, normalised the same way, and compared with
    ``densedepth_loss`` over valid pixels."""

    def __init__(self, max_depth: float = 10.0, theta: float = 0.1):
        for name, value in (("max_depth", max_depth), ("theta", theta)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DenseDepthTask: {name}={value!r}, expected a finite positive number")
        self.max_depth, self.theta = max_depth, theta

    @staticmethod
    def valid_pixels(batch) -> torch.Tensor:
        """(B,) valid target pixels per sample: mask, finite depth > 0 (what the loss averages over)."""
        return valid_depth_pixels(batch)

    def loss(self, model, batch) -> dict:
        """``densedepth_loss`` terms (``total depth grad ssim``) of ``model`` on an NYU batch
        (``image`` (B, 3, H, W), ``depth`` and ``mask`` (B, 1, H, W), metres)."""
        from depthlib.losses import densedepth_loss, depth_norm

        pred = model(batch["image"])
        depth = F.interpolate(batch["depth"], size=pred.shape[-2:], mode="nearest")
        mask = F.interpolate(batch["mask"].float(), size=pred.shape[-2:], mode="nearest") > 0.5
        target = depth_norm(depth, self.max_depth)
        return densedepth_loss(pred.float(), target, theta=self.theta, data_range=100.0, mask=mask)


class MVSNetTask:
    """MVSNet's objective: ``mvsnet_loss`` (masked mean |gt - est| / depth_interval) of the initial
    depth, averaged with that of the refined depth when the model refines (as the TensorFlow
    original); ``initial`` and ``refined`` are logged as well.

    ``refine_weight`` w weighs the two: total = (1 - w) initial + w refined (default 0.5, the
    original's average; 1 trains on the refined depth alone, as with a frozen backbone, chapter 09).
    """

    def __init__(self, refine_weight: float = 0.5):
        if not 0.0 <= refine_weight <= 1.0:
            raise ValueError(f"MVSNetTask: refine_weight={refine_weight}, expected a weight in [0, 1]")
        self.refine_weight = refine_weight

    valid_pixels = staticmethod(valid_depth_pixels)  # as DenseDepthTask: mask, finite depth > 0

    def loss(self, model, batch) -> dict:
        """``initial``, ``refined`` (with refinement) and ``total`` MVSNet losses, in depth intervals,
        of ``model`` on a ``DTUMVS`` batch."""
        from depthlib.losses import mvsnet_loss

        out = model(batch["imgs"], batch["proj_matrices"], batch["depth_values"])
        gt, mask, interval = batch["depth"], batch["mask"], batch["depth_interval"]
        losses = {"initial": mvsnet_loss(out["depth"].float(), gt, mask, interval)}
        if "refined_depth" in out:
            losses["refined"] = mvsnet_loss(out["refined_depth"].float(), gt, mask, interval)
            weight = self.refine_weight
            losses["total"] = (1.0 - weight) * losses["initial"] + weight * losses["refined"]
        else:
            losses["total"] = losses["initial"]
        return losses
