"""Depth losses: normalisation, L1, image gradients, SSIM, DenseDepth and MVSNet losses (chapters 04 and 09)."""
from __future__ import annotations

__all__ = ["per_sample_scalar", "valid_depth_mask", "depth_norm", "image_gradients", "l1_loss", "gradient_loss", "ssim", "densedepth_loss",
           "mvsnet_loss"]

import math

import torch
import torch.nn.functional as F

# Conventions: images and depth maps are (B, C, H, W) float tensors. A ``mask`` is a bool tensor of
# shape (B, 1, H, W) or (B, C, H, W), true where the target is known. Non-finite target values are
# always treated as invalid as well, and every invalid target value is replaced before any arithmetic
# touches it, so a NaN / inf in the ground truth never reaches a loss or its gradient. A loss over
# zero valid pixels is 0 with a zero gradient (never NaN).


def _check_pair(pred: torch.Tensor, target: torch.Tensor, mask=None, name: str = "pred") -> None:
    """ValueError unless pred and target are (B, C, H, W) of one shape and mask is (B, 1|C, H, W)."""
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(f"{name} has shape {tuple(pred.shape)} and target {tuple(target.shape)}, "
                         "expected two (B, C, H, W) tensors of the same shape")
    if mask is not None:
        batch, channels, height, width = target.shape
        if mask.dim() != 4 or mask.shape[0] != batch or mask.shape[2:] != target.shape[2:] \
                or mask.shape[1] not in (1, channels):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected ({batch}, 1, {height}, {width}) "
                             f"or ({batch}, {channels}, {height}, {width}) to match target")


def _finite_target(target: torch.Tensor, mask=None) -> torch.Tensor:
    """Bool (B, C, H, W): finite target values, and the mask where one is given."""
    valid = torch.isfinite(target)
    return valid if mask is None else valid & mask.to(torch.bool)


def valid_depth_mask(depth: torch.Tensor, mask=None) -> torch.Tensor:
    """Bool, shape of ``depth``: pixels with a known depth (finite and > 0; 0 is the library's "no
    surface"), and the mask where one is given (any shape that broadcasts to ``depth``).

    The one rule the MVSNet loss, the metrics and the training tasks share.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    return valid if mask is None else valid & mask.to(device=depth.device, dtype=torch.bool)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``valid``; 0 (zero gradient) when nothing is valid."""
    return torch.where(valid, values, torch.zeros_like(values)).sum() / valid.sum().clamp(min=1)


def depth_norm(depth: torch.Tensor, max_depth: float, min_depth: float | None = None) -> torch.Tensor:
    """DenseDepth's normalised depth ``max_depth / clamp(depth, min_depth)`` (any shape, metres in).

    ``min_depth`` defaults to ``max_depth / 100``, so depths in [min_depth, max_depth] map to
    [1, max_depth / min_depth] (= [1, 100], DenseDepth's range) and near things get large values.
    Always finite: 0, negative depths and NaN (treated as 0, the library's "no surface") map to
    ``max_depth / min_depth``; +inf maps to 0. Mask such pixels out of a loss. The map is its own
    inverse on [min_depth, max_depth]: ``depth_norm(depth_norm(d, m), m) == d``.
    """
    min_depth = max_depth / 100.0 if min_depth is None else min_depth
    if not 0 < min_depth <= max_depth:
        raise ValueError(f"depth_norm: min_depth={min_depth}, max_depth={max_depth}; "
                         "expected 0 < min_depth <= max_depth")
    return max_depth / torch.nan_to_num(depth, nan=0.0).clamp(min=min_depth)


def image_gradients(image: torch.Tensor):
    """Forward differences of a (B, C, H, W) image, as ``tf.image.image_gradients``.

    Returns (dy, dx), each (B, C, H, W): dy[..., i, j] = I[i + 1, j] - I[i, j] with the last row 0,
    dx[..., i, j] = I[i, j + 1] - I[i, j] with the last column 0.
    """
    if image.dim() != 4:
        raise ValueError(f"image has shape {tuple(image.shape)}, expected (B, C, H, W)")
    dy = F.pad(image[..., 1:, :] - image[..., :-1, :], (0, 0, 0, 1))
    dx = F.pad(image[..., :, 1:] - image[..., :, :-1], (0, 1, 0, 0))
    return dy, dx


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask=None) -> torch.Tensor:
    """Mean |pred - target| over valid target pixels (DenseDepth's point-wise depth term).

    pred, target: (B, C, H, W); mask: optional bool (B, 1|C, H, W). Returns a scalar tensor.
    """
    _check_pair(pred, target, mask)
    valid = _finite_target(target, mask)
    target = torch.where(valid, target, torch.zeros_like(target))
    return _masked_mean((pred - target).abs(), valid)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, mask=None) -> torch.Tensor:
    """DenseDepth's edge term: mean over pixels of |dy_pred - dy_true| + |dx_pred - dx_true|.

    Differences as ``image_gradients`` (tf.image.image_gradients). pred, target: (B, C, H, W).
    With a mask, a difference counts only when both of its pixels are valid, and the sum is divided
    by the number of valid pixels; an all-true mask gives exactly the unmasked value.
    """
    _check_pair(pred, target, mask)
    valid = _finite_target(target, mask)
    target = torch.where(valid, target, torch.zeros_like(target))
    dy_pred, dx_pred = image_gradients(pred)
    dy_true, dx_true = image_gradients(target)
    pair_y = F.pad(valid[..., 1:, :] & valid[..., :-1, :], (0, 0, 0, 1))  # both pixels of dy valid
    pair_x = F.pad(valid[..., :, 1:] & valid[..., :, :-1], (0, 1, 0, 0))
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    edges_y = torch.where(pair_y, (dy_pred - dy_true).abs(), zero)
    edges_x = torch.where(pair_x, (dx_pred - dx_true).abs(), zero)
    return (edges_y.sum() + edges_x.sum()) / valid.sum().clamp(min=1)


def _gaussian_window(window_size: int, sigma: float, dtype, device) -> torch.Tensor:
    """Normalised 1-D Gaussian taps at integer offsets from the centre, shape (window_size,)."""
    offsets = torch.arange(window_size, dtype=dtype, device=device) - window_size // 2
    taps = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    return taps / taps.sum()


def _ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float, window_size: int, sigma: float):
    """Per-window SSIM, valid region only: (B, C, H - window_size + 1, W - window_size + 1)."""
    channels = x.shape[1]
    taps = _gaussian_window(window_size, sigma, x.dtype, x.device)
    row_filter = taps.view(1, 1, 1, -1).expand(channels, 1, 1, window_size)
    col_filter = taps.view(1, 1, -1, 1).expand(channels, 1, window_size, 1)

    def blur(image):  # separable Gaussian, no padding
        return F.conv2d(F.conv2d(image, row_filter, groups=channels), col_filter, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2   # k1 = 0.01, k2 = 0.03
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2                                  # sigma_x^2
    var_y = blur(y * y) - mu_y ** 2
    cov_xy = blur(x * y) - mu_x * mu_y                               # sigma_xy
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float, window_size: int = 11, sigma: float = 1.5,
         mask=None) -> torch.Tensor:
    """Mean structural similarity of two (B, C, H, W) images, as ``tf.image.ssim`` (DenseDepth's).

    Gaussian window (window_size taps, sigma), k1 = 0.01, k2 = 0.03, c_i = (k_i * data_range)^2, and
    only windows that lie inside the image (no padding); equals
    ``kornia.metrics.ssim(x, y, 11, max_val=data_range, padding="valid").mean()``. Computed in at
    least float32 with autocast off. With a mask (bool (B, 1|C, H, W)), the mean runs over windows
    whose pixels are all valid, so invalid pixels never matter; with no such window it is 1.
    """
    _check_pair(x, y, mask, name="x")
    if window_size < 1 or window_size % 2 == 0 or min(x.shape[-2:]) < window_size:
        raise ValueError(f"ssim: images of shape {tuple(x.shape)} with window_size={window_size}; expected an "
                         "odd window_size no larger than H and W (SSIM uses only windows inside the image)")
    if not data_range > 0:
        raise ValueError(f"ssim: data_range={data_range}, expected > 0")
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
        x, y = x.to(dtype), y.to(dtype)
        if mask is None:
            return _ssim_map(x, y, data_range, window_size, sigma).mean()
        valid = mask.to(torch.bool).expand_as(x)
        x, y = torch.where(valid, x, torch.zeros_like(x)), torch.where(valid, y, torch.zeros_like(y))
        window_valid = F.max_pool2d((~valid).to(dtype), window_size, stride=1) == 0   # erosion of the mask
        return 1 - _masked_mean(1 - _ssim_map(x, y, data_range, window_size, sigma), window_valid)


def densedepth_loss(pred: torch.Tensor, target: torch.Tensor, theta: float = 0.1, data_range: float = 100.0,
                    mask=None) -> dict:
    """DenseDepth's loss: total = theta * L1 + gradient + clip((1 - SSIM) / 2, 0, 1) (Alhashim & Wonka 2018).

    pred, target: (B, 1, H, W) in ``depth_norm`` space (max_depth / depth), so ``data_range`` =
    max_depth / min_depth = 100 as in DenseDepth. mask: optional bool (B, 1, H, W); invalid and
    non-finite target pixels take no part in any term (SSIM: see ``ssim``). Returns a dict of scalar
    tensors: ``total`` (differentiable), ``depth`` (L1, unweighted), ``grad``, ``ssim`` (the clipped
    (1 - SSIM) / 2 term, not the index).
    """
    _check_pair(pred, target, mask)
    valid = _finite_target(target, mask)
    depth_term = l1_loss(pred, target, valid)
    grad_term = gradient_loss(pred, target, valid)
    ssim_term = ((1 - ssim(pred, target, data_range, mask=valid)) / 2).clamp(0, 1)
    total = theta * depth_term + grad_term + ssim_term
    return {"total": total, "depth": depth_term, "grad": grad_term, "ssim": ssim_term}


def per_sample_scalar(value, like: torch.Tensor, name: str) -> torch.Tensor:
    """A per-sample quantity (MVSNet's depth interval) that broadcasts over ``like`` (B, ...).

    ``value``: a positive finite number, a 0-d tensor or a (B,) tensor (one value per sample);
    returned on ``like``'s device and dtype, shaped (), or (B, 1, ...) to match ``like``; ValueError
    naming ``name`` otherwise. Shared by the MVSNet loss and its metrics (chapter 09).
    """
    if not torch.is_tensor(value):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r}, expected a positive number or a (B,) tensor")
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != like.shape[0]):
        raise ValueError(f"{name} has shape {tuple(value.shape)}, expected () or ({like.shape[0]},)")
    return value.to(like.device, like.dtype).reshape(-1, *[1] * (like.dim() - 1))


def mvsnet_loss(depth_est: torch.Tensor, depth_gt: torch.Tensor, mask: torch.Tensor, depth_interval) -> torch.Tensor:
    """MVSNet's loss: mean over valid pixels of |depth_gt - depth_est| / depth_interval (Yao et al. 2018).

    depth_est, depth_gt, mask: (B, H, W) or (B, 1, H, W), one shape; any one depth unit (mm for DTU),
    the interval in the same unit, so the loss is unit-free. depth_interval: a
    positive number or (B,) tensor of per-sample plane spacings (tensor values are not checked, to
    avoid a device sync). Pooled over the valid pixels of the batch (MVSNet's TF code averages per
    sample and sums over the batch; the same at batch size 1). No valid pixel: 0, zero gradient.
    A pixel counts only where the mask is true and depth_gt is finite and > 0 (``valid_depth_mask``,
    the metrics' rule): a hole (0) or a NaN in the ground truth is never a target.
    """
    if depth_est.dim() not in (3, 4) or depth_est.shape != depth_gt.shape or mask.shape != depth_gt.shape:
        raise ValueError(f"depth_est {tuple(depth_est.shape)}, depth_gt {tuple(depth_gt.shape)}, mask "
                         f"{tuple(mask.shape)}: expected one shape, (B, H, W) or (B, 1, H, W)")
    interval = per_sample_scalar(depth_interval, depth_gt, "depth_interval")
    valid = valid_depth_mask(depth_gt, mask)
    depth_gt = torch.where(valid, depth_gt, torch.zeros_like(depth_gt))
    return _masked_mean((depth_gt - depth_est).abs() / interval, valid)
