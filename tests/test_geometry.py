"""Tests for depthlib.geometry: every formula against a NumPy float64 reference written here."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthlib.geometry import (backproject, camera_to_world, depth_to_points, homography_warp,
                               pixel_grid, plane_sweep_volume, project, project_into_views, projection_matrix,
                               scale_intrinsics, scale_projection, world_to_camera)


# ---------------------------------------------------------------- NumPy references (float64)
def look_at(eye, target, up=(0.0, 0.0, 1.0)):
    """World->camera 4x4 for an OpenCV camera at `eye` looking at `target` (world z up)."""
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.stack([right, down, forward])
    extrinsic[:3, 3] = -extrinsic[:3, :3] @ np.asarray(eye, float)
    return extrinsic


def intrinsics(fx, fy, cx, cy):
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def proj_of(K, extrinsic):
    proj = np.eye(4)
    proj[:3, :4] = K @ extrinsic[:3, :4]
    return proj


def bilinear_zero_outside(feat, x, y):
    """feat (C, H, W); sample at continuous pixel (x, y); neighbours outside the image give 0."""
    channels, height, width = feat.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    value = np.zeros(channels)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        if 0 <= xi < width and 0 <= yi < height:
            value += (1 - abs(x - xi)) * (1 - abs(y - yi)) * feat[:, yi, xi]
    return value


def bruteforce_warp(src_feat, K_src, E_src, K_ref, E_ref, depth_of_pixel):
    """Per-pixel reprojection: ref pixel at depth -> ref camera -> world -> src camera -> sample."""
    channels, height, width = src_feat.shape
    out = np.zeros((channels, height, width))
    K_ref_inv = np.linalg.inv(K_ref)
    for v in range(height):
        for u in range(width):
            x_ref = depth_of_pixel(v, u) * K_ref_inv @ np.array([u, v, 1.0])
            x_world = E_ref[:3, :3].T @ (x_ref - E_ref[:3, 3])
            x_src = E_src[:3, :3] @ x_world + E_src[:3, 3]
            if x_src[2] <= 1e-9:
                continue  # behind the source camera: no sample
            pixel = K_src @ x_src
            out[:, v, u] = bilinear_zero_outside(src_feat, pixel[0] / pixel[2], pixel[1] / pixel[2])
    return out


def random_rig(rng, height, width):
    """Reference + source camera (look-at, ~0.4 m baseline) looking at a point ~3 m away."""
    target = rng.uniform(-0.3, 0.3, 3)
    angle = rng.uniform(0, 2 * np.pi)
    eye_ref = target + np.array([3 * np.cos(angle), 3 * np.sin(angle), rng.uniform(0.5, 1.5)])
    eye_src = eye_ref + rng.uniform(-0.3, 0.3, 3)
    focal = rng.uniform(0.9, 1.3) * width

    def K():
        return intrinsics(focal * rng.uniform(0.95, 1.05), focal * rng.uniform(0.95, 1.05),
                          (width - 1) / 2 + rng.uniform(-1, 1), (height - 1) / 2 + rng.uniform(-1, 1))
    return K(), look_at(eye_src, target), K(), look_at(eye_ref, target)


def t32(array):
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


# ---------------------------------------------------------------- camera basics
def test_pixel_grid_is_row_major_pixel_centres():
    grid = pixel_grid(3, 4)
    assert grid.shape == (3, 12) and grid.dtype == torch.float32
    v, u = np.divmod(np.arange(12), 4)
    np.testing.assert_array_equal(grid.numpy(), np.stack([u, v, np.ones(12)]))


def test_backproject_matches_numpy_and_project_round_trips():
    rng = np.random.default_rng(0)
    K = np.stack([intrinsics(20, 22, 7.3, 5.1), intrinsics(18, 18, 8.0, 4.5)])
    depth = rng.uniform(0.5, 5.0, (2, 1, 6, 8))
    points = backproject(t32(depth), t32(K))
    assert points.shape == (2, 3, 6, 8)
    for b in range(2):
        for v, u in ((0, 0), (5, 7), (3, 2)):
            expected = depth[b, 0, v, u] * np.linalg.inv(K[b]) @ [u, v, 1.0]
            np.testing.assert_allclose(points[b, :, v, u].numpy(), expected, rtol=1e-5, atol=1e-6)
    uv, z = project(points, t32(K))
    assert uv.shape == (2, 2, 6, 8) and z.shape == (2, 1, 6, 8)
    v, u = np.meshgrid(np.arange(6), np.arange(8), indexing="ij")
    np.testing.assert_allclose(uv[:, 0].numpy(), np.broadcast_to(u, (2, 6, 8)), atol=1e-4)
    np.testing.assert_allclose(uv[:, 1].numpy(), np.broadcast_to(v, (2, 6, 8)), atol=1e-4)
    np.testing.assert_allclose(z.numpy(), depth, rtol=1e-6)


def test_project_gives_nan_for_points_on_or_behind_the_camera():
    points = t32([[[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [1.0, 0.0, -1.0]]])  # (1, 3, N=3)
    uv, z = project(points, t32(intrinsics(10, 10, 2, 2))[None])
    np.testing.assert_allclose(uv[0, :, 0].numpy(), [10 * 0.1 + 2, 10 * 0.2 + 2], rtol=1e-6)
    assert torch.isnan(uv[0, :, 1:]).all()
    np.testing.assert_array_equal(z[0, 0].numpy(), [1.0, 0.0, -1.0])


def test_world_camera_round_trip_and_numpy_reference():
    rng = np.random.default_rng(1)
    extrinsic = np.stack([look_at(rng.normal(size=3) * 3, rng.normal(size=3)) for _ in range(2)])
    world = rng.normal(size=(2, 3, 4, 5))
    cam = world_to_camera(torch.as_tensor(world), torch.as_tensor(extrinsic))
    expected = np.einsum("bij,bjhw->bihw", extrinsic[:, :3, :3], world) + extrinsic[:, :3, 3, None, None]
    np.testing.assert_allclose(cam.numpy(), expected, atol=1e-12)
    back = camera_to_world(cam, torch.as_tensor(extrinsic))
    np.testing.assert_allclose(back.numpy(), world, atol=1e-12)


def test_projection_matrix_projects_homogeneous_points_for_numpy_and_torch():
    K, extrinsic = intrinsics(30, 32, 15.5, 11.5), look_at([2.0, -1.0, 1.0], [0.0, 0.0, 0.0])
    point = np.array([0.3, -0.2, 0.5])
    proj = projection_matrix(K, extrinsic)
    assert isinstance(proj, np.ndarray) and proj.shape == (4, 4)
    np.testing.assert_allclose(proj @ np.append(point, 1), np.append(K @ (extrinsic[:3, :3] @ point
                                                                          + extrinsic[:3, 3]), 1))
    batched = projection_matrix(torch.as_tensor(K)[None], torch.as_tensor(extrinsic)[None])
    assert batched.shape == (1, 4, 4)
    np.testing.assert_allclose(batched[0].numpy(), proj, atol=1e-12)


def test_scale_intrinsics_keeps_pixel_edges_fixed():
    K = intrinsics(100.0, 90.0, 63.5, 47.5)  # principal point at the centre of a 128 x 96 image
    half = scale_intrinsics(K, 0.5)
    np.testing.assert_allclose(half, intrinsics(50.0, 45.0, 31.5, 23.5))  # centre of 64 x 48
    scaled = scale_intrinsics(torch.as_tensor(K), 0.25, 0.5)
    point = np.array([0.4, -0.3, 2.0])
    u, v = (K @ point)[:2] / point[2]
    u_s, v_s = (scaled.numpy() @ point)[:2] / point[2]
    # Edge coordinates (centre + 0.5) scale with the image; centres do not.
    np.testing.assert_allclose([u_s + 0.5, v_s + 0.5], [(u + 0.5) * 0.25, (v + 0.5) * 0.5])
    assert K[0, 2] == 63.5  # input not modified


def test_scale_projection_equals_projection_of_scaled_intrinsics():
    rng = np.random.default_rng(9)
    K = intrinsics(*rng.uniform(20, 40, 2), *rng.uniform(5, 15, 2))
    K[0, 1] = 0.7  # a skew, scaled like fx
    extrinsic = look_at(rng.normal(size=3) * 3, rng.normal(size=3))
    proj = torch.as_tensor(projection_matrix(K, extrinsic))
    for scale in ((4.0, None), (0.25, None), (2.0, 0.5)):
        expected = projection_matrix(scale_intrinsics(K, *scale), extrinsic)
        np.testing.assert_allclose(scale_projection(proj, *scale).numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scale_projection(scale_projection(proj, 4), 0.25).numpy(), proj.numpy(),
                               rtol=1e-12, atol=1e-12)
    assert torch.equal(proj, torch.as_tensor(projection_matrix(K, extrinsic)))  # input not modified
    # batched (B, V, 4, 4), float32: every view scaled alike
    batched = proj.float().expand(2, 3, 4, 4)
    scaled = scale_projection(batched, 4)
    assert scaled.shape == (2, 3, 4, 4) and scaled.dtype == torch.float32
    torch.testing.assert_close(scaled, scale_projection(proj, 4).float().expand(2, 3, 4, 4))


def test_scale_projection_moves_pixels_by_the_pixel_centre_convention():
    rng = np.random.default_rng(10)
    K, extrinsic = intrinsics(12.0, 11.0, 7.5, 5.5), look_at([1.0, -2.0, 1.0], [0.0, 0.0, 0.2])
    proj = torch.as_tensor(projection_matrix(K, extrinsic))
    points = np.concatenate([rng.normal(0, 0.3, (3, 5)), np.ones((1, 5))])  # homogeneous world points
    x, y, z = (proj.numpy() @ points)[:3]
    for sx, sy in ((4.0, 4.0), (0.25, 0.5)):
        xs, ys, zs = (scale_projection(proj, sx, sy).numpy() @ points)[:3]
        np.testing.assert_allclose(zs, z)  # depth unchanged
        np.testing.assert_allclose(xs / zs, (x / z + 0.5) * sx - 0.5, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ys / zs, (y / z + 0.5) * sy - 0.5, rtol=0, atol=1e-9)
    with raises_with_shapes((3, 4), "(..., 4, 4)"):
        scale_projection(torch.zeros(3, 4), 2.0)


def test_depth_to_points_world_points_reproject_to_their_pixel_and_mask_gives_nan():
    K, extrinsic = intrinsics(12, 12, 3.5, 2.5), look_at([1.0, 2.0, 1.5], [0.0, 0.0, 0.3])
    depth = np.random.default_rng(2).uniform(1, 3, (1, 1, 6, 8))
    depth[0, 0, 0, 0] = 0.0
    depth_t = torch.as_tensor(depth)
    points = depth_to_points(depth_t, torch.as_tensor(K)[None], torch.as_tensor(extrinsic)[None],
                             mask=depth_t > 0)
    world = points[0, :, 4, 5].numpy()
    cam = extrinsic[:3, :3] @ world + extrinsic[:3, 3]
    np.testing.assert_allclose(cam[2], depth[0, 0, 4, 5])
    np.testing.assert_allclose((K @ cam)[:2] / cam[2], [5, 4], atol=1e-9)
    assert torch.isnan(points[0, :, 0, 0]).all() and not torch.isnan(points[0, :, 1:]).any()


# ---------------------------------------------------------------- homography warp
def test_warp_matches_bruteforce_reprojection():
    rng = np.random.default_rng(3)
    batch, channels, height, width = 2, 3, 12, 16
    rigs = [random_rig(rng, height, width) for _ in range(batch)]
    feat = rng.normal(size=(batch, channels, height, width))
    depths = np.array([[2.0, 2.7, 3.4, 6.0], [1.5, 2.9, 3.3, 4.0]])
    warped = homography_warp(t32(feat), t32([proj_of(r[0], r[1]) for r in rigs]),
                             t32([proj_of(r[2], r[3]) for r in rigs]), t32(depths))
    assert warped.shape == (batch, channels, 4, height, width) and warped.dtype == torch.float32
    expected = np.zeros(warped.shape)
    for b, (K_src, E_src, K_ref, E_ref) in enumerate(rigs):
        for d, depth in enumerate(depths[b]):
            expected[b, :, d] = bruteforce_warp(feat[b], K_src, E_src, K_ref, E_ref, lambda v, u: depth)
    assert (expected != 0).mean() > 0.5  # most samples land inside the source image
    np.testing.assert_allclose(warped.numpy(), expected, atol=1e-4, rtol=0)


def test_warp_with_per_pixel_depths_matches_bruteforce():
    rng = np.random.default_rng(4)
    height, width = 10, 14
    K_src, E_src, K_ref, E_ref = random_rig(rng, height, width)
    feat = rng.normal(size=(1, 2, height, width))
    depth_map = rng.uniform(2.0, 4.0, (1, 2, height, width))
    warped = homography_warp(t32(feat), t32(proj_of(K_src, E_src)[None]),
                             t32(proj_of(K_ref, E_ref)[None]), t32(depth_map))
    for d in range(2):
        expected = bruteforce_warp(feat[0], K_src, E_src, K_ref, E_ref, lambda v, u: depth_map[0, d, v, u])
        np.testing.assert_allclose(warped[0, :, d].numpy(), expected, atol=1e-4, rtol=0)


def test_warp_with_identical_cameras_returns_features_at_every_depth():
    rng = np.random.default_rng(5)
    K, extrinsic = random_rig(rng, 9, 11)[2:]
    feat = t32(rng.normal(size=(1, 4, 9, 11)))
    proj = t32(proj_of(K, extrinsic)[None])
    warped = homography_warp(feat, proj, proj, t32([[0.5, 1.0, 3.0, 10.0]]))
    torch.testing.assert_close(warped, feat.unsqueeze(2).expand(-1, -1, 4, -1, -1), atol=1e-5, rtol=0)


def test_warp_of_horizontal_baseline_is_integer_disparity_shift():
    # Source camera 0.2 m to the right of the reference: u_src = u_ref - fx * b / depth.
    K = intrinsics(10.0, 10.0, 3.5, 2.5)
    E_ref, E_src = np.eye(4), np.eye(4)
    E_src[0, 3] = -0.2
    feat = torch.arange(1, 1 + 2 * 6 * 8, dtype=torch.float32).reshape(1, 2, 6, 8)
    depths = [2.0, 1.0, 0.5]  # disparities 1, 2, 4 pixels
    warped = homography_warp(feat, t32(proj_of(K, E_src)[None]), t32(proj_of(K, E_ref)[None]), t32([depths]))
    for d, shift in enumerate([1, 2, 4]):
        expected = torch.zeros(2, 6, 8)
        expected[:, :, shift:] = feat[0, :, :, :-shift]
        torch.testing.assert_close(warped[0, :, d], expected, atol=1e-4, rtol=0)


def test_warp_gives_zeros_behind_the_source_camera():
    # Source at z = 2 facing the reference (180 deg about y): depth 3 is behind it, depth 2 on it.
    # With cx = cy = 3, ref pixel (u=2, v=4) at depth 3 lands on src homogeneous (0, 0, -1): a
    # warp that only clamps z would sample near src pixel (0, 0) there instead of returning 0.
    K = intrinsics(6.0, 6.0, 3.0, 3.0)
    E_ref, E_src = np.eye(4), np.diag([-1.0, 1.0, -1.0, 1.0])
    E_src[:3, 3] = E_src[:3, :3] @ -np.array([0.0, 0.0, 2.0])
    feat = np.random.default_rng(6).uniform(0.5, 1.5, (1, 3, 6, 8))  # strictly positive
    warped = homography_warp(t32(feat), t32(proj_of(K, E_src)[None]), t32(proj_of(K, E_ref)[None]),
                             t32([[1.0, 2.0, 3.0]]))
    expected_front = bruteforce_warp(feat[0], K, E_src, K, E_ref, lambda v, u: 1.0)
    assert (expected_front > 0).mean() > 0.5
    np.testing.assert_allclose(warped[0, :, 0].numpy(), expected_front, atol=1e-4, rtol=0)
    assert torch.count_nonzero(warped[0, :, 1:]) == 0


def test_warp_gradients_pass_gradcheck_for_features_and_depths():
    rng = np.random.default_rng(7)
    K_src, E_src, K_ref, E_ref = random_rig(rng, 4, 5)
    src_proj = torch.as_tensor(proj_of(K_src, E_src))[None]
    ref_proj = torch.as_tensor(proj_of(K_ref, E_ref))[None]
    feat = torch.as_tensor(rng.normal(size=(1, 2, 4, 5)), dtype=torch.float64).requires_grad_()
    depths = torch.tensor([[2.6, 3.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, d: homography_warp(f, src_proj, ref_proj, d), (feat, depths))
    out = homography_warp(feat, src_proj, ref_proj, depths)
    out.sum().backward()
    assert feat.grad.abs().sum() > 0 and depths.grad.abs().sum() > 0


def test_plane_sweep_volume_stacks_reference_and_warped_sources():
    rng = np.random.default_rng(8)
    rig_a, rig_b = random_rig(rng, 6, 7), random_rig(rng, 6, 7)
    proj = t32([[proj_of(rig_a[2], rig_a[3]), proj_of(rig_a[0], rig_a[1]), proj_of(rig_b[0], rig_b[1])]])
    feats = t32(rng.normal(size=(1, 3, 2, 6, 7)))
    depths = t32([[2.0, 3.0, 4.0, 5.0]])
    volume = plane_sweep_volume(feats, proj, depths)
    assert volume.shape == (1, 3, 2, 4, 6, 7)
    for d in range(4):
        torch.testing.assert_close(volume[:, 0, :, d], feats[:, 0], atol=0, rtol=0)
    for view in (1, 2):
        torch.testing.assert_close(volume[:, view], homography_warp(feats[:, view], proj[:, view],
                                                                    proj[:, 0], depths))


# ---------------------------------------------------------------- entry checks
def raises_with_shapes(got, expected):
    return pytest.raises(ValueError, match=re.escape(str(got)) + ".*" + re.escape(expected))


def test_bad_shapes_raise_value_error_naming_shape_and_expectation():
    feat, proj, depths = torch.zeros(2, 3, 6, 8), torch.eye(4).repeat(2, 1, 1), torch.ones(2, 5)
    with raises_with_shapes((3, 6, 8), "(B, C, H, W)"):
        homography_warp(feat[0], proj, proj, depths)
    with raises_with_shapes((1, 4, 4), "(2, 4, 4)"):
        homography_warp(feat, proj[:1], proj, depths)
    with raises_with_shapes((2, 3, 4), "(2, 4, 4)"):
        homography_warp(feat, proj, proj[:, :3], depths)
    with raises_with_shapes((3, 5), "(2, D) or (2, D, 6, 8)"):
        homography_warp(feat, proj, proj, torch.ones(3, 5))
    with raises_with_shapes((2, 5, 6, 7), "(2, D) or (2, D, 6, 8)"):
        homography_warp(feat, proj, proj, torch.ones(2, 5, 6, 7))
    with raises_with_shapes((2, 3, 1, 8), "H >= 2 and W >= 2"):
        homography_warp(torch.zeros(2, 3, 1, 8), proj, proj, depths)
    with raises_with_shapes((2, 3, 6, 8), "(B, V, C, H, W)"):
        plane_sweep_volume(feat, proj, depths)
    with raises_with_shapes((2, 4, 4), "(2, 3, 4, 4)"):
        plane_sweep_volume(torch.zeros(2, 3, 1, 6, 8), proj, depths)
    with raises_with_shapes((2, 6, 8), "(B, 1, H, W)"):
        backproject(torch.ones(2, 6, 8), torch.eye(3).repeat(2, 1, 1))
    with raises_with_shapes((3, 3), "(2, 3, 3)"):
        backproject(torch.ones(2, 1, 6, 8), torch.eye(3))
    with raises_with_shapes((2, 2, 5), "(B, 3, N) or (B, 3, H, W)"):
        project(torch.ones(2, 2, 5), torch.eye(3).repeat(2, 1, 1))
    with raises_with_shapes((4, 4), "(2, 4, 4)"):
        world_to_camera(torch.ones(2, 3, 5), torch.eye(4))
    with raises_with_shapes((3, 4), "(..., 3, 3)"):
        scale_intrinsics(np.zeros((3, 4)), 0.5)
    with raises_with_shapes((2, 4, 4), "(4, 4) to match K (3, 3)"):
        projection_matrix(np.eye(3), np.zeros((2, 4, 4)))
    with raises_with_shapes((1, 1, 6, 8), "(1, 1, 6, 7) like depth"):
        depth_to_points(torch.ones(1, 1, 6, 7), torch.eye(3)[None], mask=torch.ones(1, 1, 6, 8))


def test_bilinear_sample_equals_grid_sample_and_flags_samples_with_all_four_neighbours():
    from depthlib.geometry import bilinear_sample

    torch.manual_seed(0)
    depth = torch.rand(2, 1, 12, 16, dtype=torch.float64) + 0.5
    depth[0, 0, 3:5, 4:7] = 0                                   # a hole
    uv = torch.stack([torch.rand(2, 9, 11, dtype=torch.float64) * 20 - 2,
                      torch.rand(2, 9, 11, dtype=torch.float64) * 16 - 2], 1)
    uv[1, :, 0, 0] = float("nan")                               # a point with no pixel
    samples, complete = bilinear_sample(depth, uv)
    scale = torch.tensor([15 / 2, 11 / 2], dtype=torch.float64).reshape(1, 2, 1, 1)
    grid = torch.nan_to_num(uv / scale - 1, nan=-10.0).permute(0, 2, 3, 1)
    expected = F.grid_sample(depth, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(samples, expected)
    for b, i, j in [(b, i, j) for b in range(2) for i in range(9) for j in range(11)]:
        u, v = uv[b, 0, i, j].item(), uv[b, 1, i, j].item()
        if u != u:
            assert not complete[b, 0, i, j]
            continue
        c, r = int(np.floor(u)), int(np.floor(v))
        inside = 0 <= c <= 14 and 0 <= r <= 10
        brute = inside and bool((depth[b, 0, r:r + 2, c:c + 2] > 0).all())
        assert complete[b, 0, i, j].item() == brute, (b, i, j, u, v)


# ---------------------------------------------------------------- points into every view (chapter 00)

def _look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.stack([right, np.cross(forward, right), forward])
    extrinsic[:3, 3] = -extrinsic[:3, :3] @ np.asarray(eye, float)
    return extrinsic


def _rig(views=3, height=12, width=16, seed=0):
    rng = np.random.default_rng(seed)
    extrinsics = np.stack([_look_at((2.0 * np.cos(a), 2.0 * np.sin(a), 0.8))
                           for a in np.linspace(0.0, 1.2, views)])
    K = np.stack([[[14.0 + k, 0.0, (width - 1) / 2], [0.0, 14.0 + k, (height - 1) / 2],
                   [0.0, 0.0, 1.0]] for k in range(views)])
    depths = rng.uniform(1.0, 3.0, size=(views, height, width))
    depths[rng.random(depths.shape) < 0.2] = 0.0            # holes: no surface
    return depths, K, extrinsics


def _bruteforce(points, depths, K, extrinsics):
    """Point by point, view by view: project, round to the nearest pixel, read the depth map."""
    views, height, width = depths.shape
    uv = np.full((views, 2, points.shape[1]), np.nan)
    z = np.zeros((views, points.shape[1]))
    measured = np.zeros_like(z)
    for view in range(views):
        for n, point in enumerate(points.T):
            camera = extrinsics[view, :3, :3] @ point + extrinsics[view, :3, 3]
            z[view, n] = camera[2]
            if camera[2] <= 1e-6:
                continue                                     # behind the camera: no pixel
            u, v = (K[view] @ camera)[:2] / camera[2]
            uv[view, :, n] = u, v
            col, row = round(u), round(v)                    # Python rounds halves to even too
            if 0 <= row < height and 0 <= col < width:
                measured[view, n] = depths[view, row, col]
    return uv, z, measured


def test_project_into_views_matches_bruteforce_projection_and_lookup():
    depths, K, extrinsics = _rig()
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.8, 0.8, size=(3, 200))
    points[:, 0] = (0.0, 0.0, 5.0)                           # above every camera's field of view
    points[:, 1] = (4.0, 0.0, 0.8)                           # behind view 0 (at (2, 0, 0.8))
    tensors = [torch.from_numpy(a) for a in (points, depths, K, extrinsics)]
    uv, z, measured = project_into_views(*tensors)
    want_uv, want_z, want_measured = _bruteforce(points, depths, K, extrinsics)
    assert uv.shape == (3, 2, 200) and z.shape == measured.shape == (3, 200)
    np.testing.assert_allclose(uv.numpy(), want_uv, rtol=1e-10, atol=1e-10)  # NaN where NaN
    np.testing.assert_allclose(z.numpy(), want_z, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(measured.numpy(), want_measured)
    assert measured[:, 0].eq(0).all() and torch.isnan(uv[0, :, 1]).all() and measured[0, 1] == 0
    inside = want_measured > 0
    assert 0.2 < inside.mean() < 0.95                        # both cases exercised


def test_project_into_views_reads_back_the_reference_depth_and_shares_one_K():
    depths, K, extrinsics = (torch.from_numpy(a).float() for a in _rig(views=2))
    cloud = depth_to_points(depths[:1, None], K[:1], extrinsics[:1])[0].reshape(3, -1)
    has_depth = depths[0].reshape(-1) > 0
    uv, z, measured = project_into_views(cloud[:, has_depth], depths, K[0], extrinsics)
    # view 0 sees its own points where they came from, at the depth it measured
    torch.testing.assert_close(measured[0], depths[0].reshape(-1)[has_depth])
    torch.testing.assert_close(z[0], measured[0])
    shared = project_into_views(cloud[:, has_depth], depths, K[:1].expand(2, 3, 3), extrinsics)
    for mine, theirs in zip((uv, z, measured), shared):
        torch.testing.assert_close(mine, theirs, equal_nan=True)


def test_project_into_views_refuses_mismatched_shapes():
    depths, K, extrinsics = (torch.from_numpy(a) for a in _rig())
    points = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="points"):
        project_into_views(points.T, depths, K, extrinsics)
    with pytest.raises(ValueError, match="K"):
        project_into_views(points, depths, K[:2], extrinsics)
    with pytest.raises(ValueError, match="extrinsics"):
        project_into_views(points, depths, K, extrinsics[:2])
    with pytest.raises(ValueError, match="depths"):
        project_into_views(points, depths[0], K, extrinsics)


# ----------------------------------------------------------------------------- diagrams (ch. 03)
