"""Pinhole cameras, back-projection, homography warping and plane sweep (chapters 01 and 07)."""
from __future__ import annotations

__all__ = ["full_precision", "pixel_grid", "backproject", "project", "camera_to_world", "world_to_camera",
           "projection_matrix", "check_shape", "scale_intrinsics", "scale_projection", "depth_to_points",
           "project_into_views", "bilinear_sample", "homography_warp", "plane_sweep_volume"]

import functools

import numpy as np
import torch
import torch.nn.functional as F

# Conventions (whole library): camera frame is OpenCV (x right, y down, z forward), metres;
# `extrinsic` is world->camera, X_cam = R @ X_world + t; integer pixel coordinates (u = column,
# v = row) are pixel CENTRES; depth is z-depth in the camera frame (not ray length).


def full_precision(fn):
    """Run ``fn`` with autocast off on its tensors' device: camera geometry is never computed in
    low precision. Under autocast a matrix product runs in bf16 / fp16 whatever its inputs, and a
    DTU projection holds entries of 1e4 to 1e6 (K in pixels times a translation in mm): bf16 (8
    mantissa bits) rounds 5e4 to the nearest 256, and fp16 overflows above 65504. Element-wise
    operations are not cast by autocast, so only functions with products (or, in the warp,
    ``grid_sample``) need this."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # the tensors' device; "cpu" for NumPy arguments (a function may turn them into CPU tensors)
        device = next((a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), "cpu")
        try:
            enabled = torch.is_autocast_enabled(device)
        except TypeError:  # PyTorch < 2.4: no device argument
            enabled = torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()
        except RuntimeError:  # a device autocast does not know (e.g. "meta")
            enabled = False
        if not enabled:
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(*args, **kwargs)
    return wrapper


def check_shape(condition: bool, name: str, value, expected: str) -> None:
    """Raise a ValueError naming the argument, its actual shape and the expected one, unless ``condition``.

    Example:
        >>> check_shape(True, "K", torch.eye(3), "(3, 3)")  # nothing to say
    """
    if not condition:
        shape = tuple(value.shape) if hasattr(value, "shape") else value
        raise ValueError(f"{name} has shape {shape}, expected {expected}")


def _check_camera(K: torch.Tensor, batch: int, name: str = "K") -> None:
    check_shape(K.dim() == 3 and tuple(K.shape) == (batch, 3, 3), name, K, f"({batch}, 3, 3)")


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates of an image, row-major.

    Returns (3, H*W) with rows [u, v, 1]; u = column index, v = row index, so
    ``pixel_grid(H, W)[:, v * W + u] == [u, v, 1]``.

    Example:
        >>> pixel_grid(2, 3)[:, :4].tolist()
        [[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)])


@full_precision
def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Lift a z-depth map to camera-frame points: X = depth * K^-1 [u, v, 1]^T.

    Args:
        depth: (B, 1, H, W) z-depth, metres. K: (B, 3, 3) intrinsics at this resolution.
    Returns:
        (B, 3, H, W) camera-frame points (x right, y down, z forward), metres.
    """
    check_shape(depth.dim() == 4 and depth.shape[1] == 1, "depth", depth, "(B, 1, H, W)")
    batch, _, height, width = depth.shape
    _check_camera(K, batch)
    rays = torch.linalg.inv(K.to(depth.dtype)) @ pixel_grid(height, width, depth.device, depth.dtype)
    return (rays * depth.reshape(batch, 1, -1)).reshape(batch, 3, height, width)


@full_precision
def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-6):
    """Project camera-frame points to pixel coordinates (pixel centres at integers).

    Args:
        points: (B, 3, N) or (B, 3, H, W) camera-frame points, metres. K: (B, 3, 3).
    Returns:
        (uv, z): uv with 2 channels [u, v] in the layout of ``points``, z with 1 channel.
        Where z <= eps (on or behind the camera plane) uv is NaN, never a division by ~0;
        mask with ``z > eps`` before ``grid_sample`` (a NaN grid samples NaN).
    """
    check_shape(points.dim() in (3, 4) and points.shape[1] == 3, "points", points,
           "(B, 3, N) or (B, 3, H, W)")
    _check_camera(K, points.shape[0])
    flat = points.reshape(points.shape[0], 3, -1)
    pixels = K.to(points.dtype) @ flat                                    # (B, 3, N): [z u, z v, z]
    z = flat[:, 2:3]
    in_front = z > eps
    uv = torch.where(in_front, pixels[:, :2] / z.clamp(min=eps), torch.full_like(pixels[:, :2], float("nan")))
    return uv.reshape(points.shape[0], 2, *points.shape[2:]), z.reshape(points.shape[0], 1, *points.shape[2:])


def _rigid_parts(extrinsic: torch.Tensor, points: torch.Tensor):
    check_shape(points.dim() >= 3 and points.shape[1] == 3, "points", points, "(B, 3, ...)")
    batch = points.shape[0]
    check_shape(tuple(extrinsic.shape) == (batch, 4, 4), "extrinsic", extrinsic, f"({batch}, 4, 4)")
    extrinsic = extrinsic.to(points.dtype)
    return extrinsic[:, :3, :3], extrinsic[:, :3, 3:4], points.reshape(batch, 3, -1)


@full_precision
def world_to_camera(points: torch.Tensor, extrinsic: torch.Tensor) -> torch.Tensor:
    """Map world points to the camera frame: X_cam = R @ X_world + t.

    Args:
        points: (B, 3, ...) world points, metres. extrinsic: (B, 4, 4) world->camera.
    Returns:
        (B, 3, ...) camera-frame points, same layout as ``points``.
    """
    rotation, translation, flat = _rigid_parts(extrinsic, points)
    return (rotation @ flat + translation).reshape(points.shape)


@full_precision
def camera_to_world(points: torch.Tensor, extrinsic: torch.Tensor) -> torch.Tensor:
    """Map camera-frame points to the world: X_world = R^T @ (X_cam - t).

    Args:
        points: (B, 3, ...) camera-frame points, metres. extrinsic: (B, 4, 4) world->camera.
    Returns:
        (B, 3, ...) world points, same layout as ``points``.
    """
    rotation, translation, flat = _rigid_parts(extrinsic, points)
    return (rotation.transpose(1, 2) @ (flat - translation)).reshape(points.shape)


@full_precision
def projection_matrix(K, extrinsic):
    """Full projection [[K @ [R|t]], [0, 0, 0, 1]] as used by ``homography_warp``.

    Args:
        K: (B, 3, 3) or (3, 3); extrinsic: (B, 4, 4) or (4, 4) world->camera.
            Torch tensors or NumPy arrays (the result has the same type).
    Returns:
        (B, 4, 4) or (4, 4).
    """
    check_shape(K.shape[-2:] == (3, 3), "K", K, "(B, 3, 3) or (3, 3)")
    check_shape(extrinsic.shape[-2:] == (4, 4) and extrinsic.shape[:-2] == K.shape[:-2],
           "extrinsic", extrinsic, f"{tuple(K.shape[:-2]) + (4, 4)} to match K {tuple(K.shape)}")
    if isinstance(K, np.ndarray):
        proj = np.broadcast_to(np.eye(4), extrinsic.shape).copy()
        proj[..., :3, :4] = K @ extrinsic[..., :3, :4]
        return proj
    proj = torch.eye(4, dtype=K.dtype, device=K.device).expand(extrinsic.shape).clone()
    proj[..., :3, :4] = K @ extrinsic[..., :3, :4].to(K.dtype)
    return proj


def scale_intrinsics(K, scale_x: float, scale_y: float | None = None):
    """Intrinsics of an image resized by (scale_x, scale_y), pixel-centre convention.

    fx' = fx sx, skew' = skew sx, cx' = (cx + 0.5) sx - 0.5 (y likewise; scale_y defaults to
    scale_x). K: (..., 3, 3) NumPy array or tensor; returns a new one of the same type.

    Example:
        >>> scale_intrinsics(np.array([[100., 0, 63.5], [0, 100., 47.5], [0, 0, 1]]), 0.5)[0]
        array([50. ,  0. , 31.5])
    """
    check_shape(K.shape[-2:] == (3, 3), "K", K, "(..., 3, 3)")
    scale_y = scale_x if scale_y is None else scale_y
    scaled = K.copy() if isinstance(K, np.ndarray) else K.clone()
    scaled[..., 0, :2] = K[..., 0, :2] * scale_x
    scaled[..., 1, 1] = K[..., 1, 1] * scale_y
    scaled[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    scaled[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return scaled


@full_precision
def scale_projection(proj, scale_x: float, scale_y: float | None = None):
    """A projection ``[[K @ [R|t]], [0, 0, 0, 1]]`` for an image resized by (scale_x, scale_y).

    The same pixel-centre convention as :func:`scale_intrinsics` (applied as a left factor S with
    K' = S K), e.g. ``scale_projection(proj, 4)`` turns DTU's depth-resolution projections into
    image-resolution ones. proj: (..., 4, 4) tensor; returns a new tensor.

    Written out row by row rather than as the product S @ proj: the cascade calls it inside its
    forward on the GPU, where a float32 matrix product may run in TF32 (10 mantissa bits, when
    ``torch.set_float32_matmul_precision("high")`` is set) and round entries near 5e4 by up to 16.
    """
    check_shape(proj.shape[-2:] == (4, 4), "proj", proj, "(..., 4, 4)")
    scale_y = scale_x if scale_y is None else scale_y
    scaled = proj.clone()
    scaled[..., 0, :] = scale_x * proj[..., 0, :] + (scale_x - 1) / 2 * proj[..., 2, :]
    scaled[..., 1, :] = scale_y * proj[..., 1, :] + (scale_y - 1) / 2 * proj[..., 2, :]
    return scaled


def depth_to_points(depth: torch.Tensor, K: torch.Tensor, extrinsic=None, mask=None) -> torch.Tensor:
    """Point map of a depth map: camera frame, or world frame when ``extrinsic`` is given.

    Args:
        depth: (B, 1, H, W) z-depth, metres. K: (B, 3, 3). extrinsic: (B, 4, 4) world->camera.
        mask: (B, 1, H, W) bool; points where it is False become NaN (e.g. ``mask=depth > 0``).
    Returns:
        (B, 3, H, W) points, metres.
    """
    points = backproject(depth, K)
    if extrinsic is not None:
        points = camera_to_world(points, extrinsic)
    if mask is not None:
        check_shape(tuple(mask.shape) == tuple(depth.shape), "mask", mask, f"{tuple(depth.shape)} like depth")
        points = torch.where(mask.bool(), points, torch.full_like(points, float("nan")))
    return points


def project_into_views(points: torch.Tensor, depths: torch.Tensor, K: torch.Tensor,
                       extrinsics: torch.Tensor):
    """Project world points into every view and read each view's depth map at the nearest pixel.

    Where view i sees a point, its depth map holds the point's own depth z there; a nearer surface
    (occlusion) holds less. Nearest pixel = ``torch.round`` of (u, v), halves to even.

    Args:
        points: (3, N) world points, metres. depths: (V, H, W) z-depth maps, metres, 0 = none.
        K: (3, 3) shared or (V, 3, 3) intrinsics at the depth maps' size. extrinsics: (V, 4, 4).
    Returns:
        (uv, z, measured): uv (V, 2, N) pixels [u, v] (NaN behind a camera), z (V, N) each
        point's depth in each camera, measured (V, N) the depth map there (0 off the image or
        behind the camera).
    """
    check_shape(points.dim() == 2 and points.shape[0] == 3, "points", points, "(3, N)")
    check_shape(depths.dim() == 3, "depths", depths, "(V, H, W)")
    views, height, width = depths.shape
    check_shape(tuple(extrinsics.shape) == (views, 4, 4), "extrinsics", extrinsics, f"({views}, 4, 4)")
    check_shape(tuple(K.shape) in ((3, 3), (views, 3, 3)), "K", K, f"(3, 3) or ({views}, 3, 3)")
    uv, z = zip(*(project(world_to_camera(points[None], extrinsics[view][None]),
                          (K if K.dim() == 2 else K[view])[None]) for view in range(views)))
    uv, z = torch.cat(uv), torch.cat(z)[:, 0]                             # (V, 2, N), (V, N)
    pixel = torch.nan_to_num(uv.round(), nan=-1.0)                        # behind: outside
    col, row = pixel[:, 0], pixel[:, 1]
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    index = (row.clamp(0, height - 1) * width + col.clamp(0, width - 1)).long()
    measured = torch.gather(depths.reshape(views, -1), 1, index)
    return uv, z, torch.where(inside, measured, torch.zeros_like(measured))


def bilinear_sample(values: torch.Tensor, uv: torch.Tensor):
    """Bilinear samples of a map at sub-pixel points (pixel centres at integers), and where all four
    neighbours were present.

    Args:
        values: (B, C, H, W) map, e.g. depth with 0 = no depth. uv: (B, 2, *P) pixel coordinates
            [u, v] (column, row); NaN or inf for points that have none (e.g. behind the camera).
    Returns:
        (samples, complete): samples (B, C, *P), the bilinear mix of the four neighbours with 0
        for neighbours outside the map (as ``grid_sample(align_corners=True, padding_mode="zeros")``);
        complete (B, C, *P) bool, True where all four neighbours lie inside and are > 0 (a depth
        sample not mixed with a hole or the border).
    """
    check_shape(values.dim() == 4, "values", values, "(B, C, H, W)")
    check_shape(uv.dim() >= 3 and uv.shape[:2] == (values.shape[0], 2), "uv", uv, f"({values.shape[0]}, 2, ...)")
    batch, channels, height, width = values.shape
    finite = torch.isfinite(uv).all(1)
    u, v = (torch.where(finite, uv[:, k], torch.full_like(uv[:, k], -10.0)).reshape(batch, -1) for k in (0, 1))
    u0, v0 = u.floor(), v.floor()
    du, dv = (u - u0).unsqueeze(1), (v - v0).unsqueeze(1)
    padded = F.pad(values, (1, 1, 1, 1)).reshape(batch, channels, -1)      # a zero border all round
    corners = []
    for row_offset, col_offset in ((0, 0), (0, 1), (1, 0), (1, 1)):
        row = (v0 + row_offset).clamp(-1, height).long() + 1                # outside -> the zero border
        col = (u0 + col_offset).clamp(-1, width).long() + 1
        index = (row * (width + 2) + col).unsqueeze(1).expand(-1, channels, -1)
        corners.append(torch.gather(padded, 2, index))
    c00, c01, c10, c11 = corners
    samples = (1 - du) * (1 - dv) * c00 + du * (1 - dv) * c01 + (1 - du) * dv * c10 + du * dv * c11
    inside = (u0 >= 0) & (u0 <= width - 2) & (v0 >= 0) & (v0 <= height - 2) & finite.reshape(batch, -1)
    complete = inside.unsqueeze(1) & (c00 > 0) & (c01 > 0) & (c10 > 0) & (c11 > 0)
    shape = (batch, channels, *uv.shape[2:])
    return samples.reshape(shape), complete.reshape(shape)


def _check_warp_inputs(src_feat, src_proj, ref_proj, depth_values) -> None:
    check_shape(src_feat.dim() == 4, "src_feat", src_feat, "(B, C, H, W)")
    batch, _, height, width = src_feat.shape
    if height < 2 or width < 2:
        raise ValueError(f"src_feat has shape {tuple(src_feat.shape)}, expected H >= 2 and W >= 2")
    check_shape(tuple(src_proj.shape) == (batch, 4, 4), "src_proj", src_proj, f"({batch}, 4, 4)")
    check_shape(tuple(ref_proj.shape) == (batch, 4, 4), "ref_proj", ref_proj, f"({batch}, 4, 4)")
    shape = tuple(depth_values.shape)
    ok = (len(shape) == 2 and shape[0] == batch) or (
        len(shape) == 4 and (shape[0], shape[2], shape[3]) == (batch, height, width))
    check_shape(ok, "depth_values", depth_values, f"({batch}, D) or ({batch}, D, {height}, {width})")


@full_precision
def homography_warp(src_feat: torch.Tensor, src_proj: torch.Tensor, ref_proj: torch.Tensor,
                    depth_values: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Warp source features onto fronto-parallel planes of the reference camera.

    Args:
        src_feat: (B, C, H, W) source features. src_proj, ref_proj: (B, 4, 4)
            [[K @ [R|t]], [0, 0, 0, 1]] with K at feature resolution.
        depth_values: (B, D) plane depths, or (B, D, H, W) per-pixel depths; metres.
    Returns:
        (B, C, D, H, W): bilinear samples (align_corners=True, pixel centres at integers);
        pixels that land outside the source image, or behind it (z <= eps), are 0. float32 (float64
        for float64 features) whatever the autocast state: in bf16 the sampling grid is off by
        pixels at DTU's millimetre depths, and in fp16 u * z overflows.
    """
    _check_warp_inputs(src_feat, src_proj, ref_proj, depth_values)
    return _warp(src_feat.to(torch.float64 if src_feat.dtype == torch.float64 else torch.float32),
                 src_proj, ref_proj, depth_values, eps)


def _warp(src_feat, src_proj, ref_proj, depth_values, eps):
    """``homography_warp`` without checks, in ``src_feat``'s dtype (autocast off)."""
    batch, channels, height, width = src_feat.shape
    num_depths = depth_values.shape[1]
    # src_proj @ ref_proj^-1 maps [u z, v z, z, 1] of the reference camera to the source camera;
    # the 4x4 algebra runs in float64 (cheap, well conditioned), the per-pixel part in src dtype.
    ref_to_src = src_proj.double() @ torch.linalg.inv(ref_proj.double())
    rotation = ref_to_src[:, :3, :3].to(src_feat.dtype)
    translation = ref_to_src[:, :3, 3].to(src_feat.dtype).reshape(batch, 3, 1, 1)
    rays = rotation @ pixel_grid(height, width, src_feat.device, src_feat.dtype)  # (B, 3, HW)
    depth = depth_values.to(src_feat.dtype).reshape(batch, 1, num_depths, -1)   # (B, 1, D, 1|HW)
    points = rays.unsqueeze(2) * depth + translation                             # (B, 3, D, HW)
    z = points[:, 2:3]
    in_front = z > eps
    xy = points[:, :2] / z.clamp(min=eps)
    # Normalise to [-1, 1] for grid_sample(align_corners=True): pixel 0 -> -1, pixel W-1 -> +1.
    scale = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=xy.dtype, device=xy.device)
    grid = xy / scale.reshape(1, 2, 1, 1) - 1
    # Behind the source camera: send the sample far outside, so both bilinear neighbours are 0.
    grid = torch.where(in_front, grid, torch.full_like(grid, -10.0))
    grid = grid.permute(0, 2, 3, 1).reshape(batch, num_depths * height, width, 2)
    warped = F.grid_sample(src_feat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.reshape(batch, channels, num_depths, height, width)


def plane_sweep_volume(feats: torch.Tensor, proj: torch.Tensor, depth_values: torch.Tensor) -> torch.Tensor:
    """Per-view feature volumes on the reference camera's depth planes.

    Args:
        feats: (B, V, C, H, W), view 0 is the reference. proj: (B, V, 4, 4) projections.
        depth_values: (B, D) (or (B, D, H, W)) depths of the reference camera, metres.
    Returns:
        (B, V, C, D, H, W): view 0 is the reference features repeated over D, views 1.. are
        ``homography_warp`` of each source view.
    """
    check_shape(feats.dim() == 5, "feats", feats, "(B, V, C, H, W)")
    batch, views = feats.shape[:2]
    check_shape(tuple(proj.shape) == (batch, views, 4, 4), "proj", proj, f"({batch}, {views}, 4, 4)")
    check_shape(depth_values.dim() in (2, 4), "depth_values", depth_values, f"({batch}, D) or ({batch}, D, H, W)")
    reference = feats[:, 0].unsqueeze(2).expand(-1, -1, depth_values.shape[1], -1, -1)
    warped = [homography_warp(feats[:, view], proj[:, view], proj[:, 0], depth_values)
              for view in range(1, views)]
    return torch.stack([reference] + warped, dim=1)
