"""Ray caster: depth is exact z-depth, hits lie on the surfaces, cameras follow the OpenCV convention."""
import numpy as np
import pytest

from depthlib.data.raycast import Box, Camera, Cylinder, Light, Plane, Scene, Sphere, look_at, nyu_intrinsics, render, trace
from depthlib.data.textures import Material


def _camera(eye=(0.0, -3.0, 1.0), target=(0.0, 0.0, 1.0), height=48, width=64):
    return Camera(nyu_intrinsics(height, width), look_at(eye, target), height, width)


def _world_points(camera, depth):
    """Back-project every pixel with NumPy: X = R^T (depth * K^-1 [u, v, 1] - t)."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    rays = np.linalg.inv(camera.K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    cam_points = rays * depth.ravel()
    R, t = camera.extrinsic[:3, :3], camera.extrinsic[:3, 3:]
    return (R.T @ (cam_points - t)).T


def test_look_at_puts_target_on_principal_point_and_up_upwards():
    camera = _camera()
    x = camera.K @ (camera.extrinsic[:3, :3] @ np.array([0.0, 0.0, 1.0]) + camera.extrinsic[:3, 3])
    np.testing.assert_allclose(x[:2] / x[2], camera.K[:2, 2], atol=1e-9)
    above = camera.K @ (camera.extrinsic[:3, :3] @ np.array([0.0, 0.0, 1.5]) + camera.extrinsic[:3, 3])
    assert above[1] / above[2] < camera.K[1, 2]  # higher in the world = smaller row index
    np.testing.assert_allclose(camera.center, [0.0, -3.0, 1.0], atol=1e-12)


def test_depth_of_fronto_parallel_wall_is_its_distance():
    camera = _camera()
    hit = trace(Scene([Plane((0, 2.0, 0), (0, -1, 0))]), camera)
    np.testing.assert_allclose(hit.depth, 5.0, rtol=1e-5)  # z-depth, not ray length


def test_sphere_depth_at_centre_pixel_is_distance_minus_radius():
    camera = _camera(height=49, width=65)
    camera.K[:2, 2] = [32.0, 24.0]  # put the principal point on a pixel centre
    hit = trace(Scene([Sphere((0, 0, 1.0), 0.5)]), camera)
    assert hit.depth[24, 32] == pytest.approx(2.5, rel=1e-5)
    assert hit.depth[0, 0] == 0 and hit.object_id[0, 0] == -1


@pytest.mark.parametrize("yaw", [0.0, 0.6])
def test_hit_points_lie_on_the_primitive_surfaces(yaw):
    scene = Scene([Plane((0, 0, 0), (0, 0, 1)), Sphere((-0.8, 0, 0.5), 0.5),
                   Box((0.4, 0.2, 0.3), (0.3, 0.25, 0.3), yaw=yaw), Cylinder((1.2, -0.3, 0.0), 0.25, 0.9)])
    camera = _camera(eye=(0.3, -3.0, 1.6), target=(0.2, 0.0, 0.3), height=60, width=80)
    hit = trace(scene, camera)
    points = _world_points(camera, hit.depth)
    ids = hit.object_id.ravel()
    assert {0, 1, 2, 3} <= set(np.unique(ids))  # everything is in view (-1: sky above the horizon)
    assert np.abs(points[ids == 0, 2]).max() < 1e-4
    assert np.abs(np.linalg.norm(points[ids == 1] - (-0.8, 0, 0.5), axis=1) - 0.5).max() < 1e-4
    box = scene.primitives[2]
    local = np.abs((points[ids == 2] - box.center) @ box.rotation) / box.half_size
    assert np.abs(local.max(axis=1) - 1).max() < 1e-3  # on the box's boundary
    rel = points[ids == 3] - (1.2, -0.3, 0.0)
    on_side = np.abs(np.hypot(rel[:, 0], rel[:, 1]) - 0.25) < 1e-3
    on_cap = (np.abs(rel[:, 2] - 0.9) < 1e-4) & (np.hypot(rel[:, 0], rel[:, 1]) <= 0.25 + 1e-4)
    assert np.all(on_side | on_cap)


def test_normals_face_the_camera_and_are_unit():
    scene = Scene([Plane((0, 0, 0), (0, 0, -1)), Sphere((0, 0, 0.5), 0.5)])  # plane normal given pointing down
    camera = _camera(eye=(0, -3, 2), target=(0, 0, 0.3))
    hit = trace(scene, camera)
    origin, dirs = camera.rays()
    valid = hit.object_id.ravel() >= 0
    np.testing.assert_allclose(np.linalg.norm(hit.normals[valid], axis=1), 1.0, atol=1e-5)
    assert np.all((hit.normals[valid] * dirs[valid]).sum(1) < 0)


def test_shadow_darkens_the_floor_behind_an_occluder():
    floor = Plane((0, 0, 0), (0, 0, 1), Material((0.8, 0.8, 0.8)))
    blocker = Box((0, 0, 1.0), (0.3, 0.3, 0.05))
    scene = Scene([floor, blocker], [Light((0, 0, 3.0))], ambient=0.2)
    camera = _camera(eye=(0, -0.01, 0.5), target=(0, 0, 0))  # looks straight down at the shadow
    lit = render(scene, camera, shadows=False)["image"]
    shadowed = render(scene, camera, shadows=True)["image"]
    centre = shadowed[24, 32].astype(int)
    assert np.all(centre < lit[24, 32].astype(int) - 50)
    assert centre.mean() == pytest.approx(0.8 * 0.2 * 255, abs=3)  # ambient only


def test_resized_camera_keeps_pixel_centres():
    camera = _camera(height=64, width=80)
    small = camera.resized(16, 20)
    # the centre of the small image's pixel (u, v) covers full-res pixels 4u .. 4u+3: centre 4u + 1.5
    point = np.array([0.3, -0.2, 1.0])
    full = camera.K @ point
    low = small.K @ point
    np.testing.assert_allclose(full[:2] / full[2], 4 * low[:2] / low[2] + 1.5, atol=1e-9)


def test_bad_camera_and_material_raise_clear_errors():
    with pytest.raises(ValueError, match=r"K \(3, 3\).*\(2, 3\)"):
        Camera(np.eye(3)[:2], np.eye(4), 10, 10)
    with pytest.raises(ValueError, match="pattern 'zebra'"):
        Material(pattern="zebra")
    with pytest.raises(ValueError, match="parallel to up"):
        look_at((0, 0, 0), (0, 0, 1))
