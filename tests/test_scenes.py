"""Scene families: deterministic by seed, sensible depth ranges, multi-view consistent cameras."""
import numpy as np
import pytest

from depthlib.data.scenes import arc_cameras, object_scan, room_frames


def test_room_frames_are_deterministic_and_seed_dependent():
    a = list(room_frames(2, 24, 32, seed=5))
    b = list(room_frames(2, 24, 32, seed=5))
    c = list(room_frames(2, 24, 32, seed=6))
    assert all(np.array_equal(x["image"], y["image"]) and np.array_equal(x["depth"], y["depth"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["depth"], c[0]["depth"])


def test_parallel_rendering_gives_identical_frames():
    serial = list(room_frames(4, 24, 32, seed=1, frames_per_room=2))
    parallel = list(room_frames(4, 24, 32, seed=1, frames_per_room=2, workers=2))
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(serial, parallel))


def test_rooms_are_closed_and_within_nyu_range():
    frames = list(room_frames(8, 48, 64, seed=0, frames_per_room=2))
    depth = np.stack([f["depth"] for f in frames])
    assert depth.min() > 0.2 and depth.max() < 10.0  # closed rooms: every pixel hits a surface
    assert {f["scene"] for f in frames} == {"room_0000", "room_0001", "room_0002", "room_0003"}
    assert all(f["image"].dtype == np.uint8 and f["image"].shape == (48, 64, 3) for f in frames)
    assert np.mean([f["image"].std() for f in frames]) > 10  # textured and shaded, not flat


def test_arc_cameras_look_at_the_table_from_distinct_poses():
    cameras = arc_cameras(12, 32, 40)
    centers = np.stack([c.center for c in cameras])
    assert len(np.unique(centers.round(3), axis=0)) == 12
    for camera in cameras:
        x = camera.extrinsic[:3, :3] @ np.array([0.0, 0.0, 0.04]) + camera.extrinsic[:3, 3]
        assert x[2] > 0.3  # the table centre is in front
        u, v = (camera.K @ x)[:2] / x[2]
        assert abs(u - 19.5) < 3 and abs(v - 15.5) < 3


def test_object_scan_depths_agree_across_views():
    scan = object_scan(3, n_views=4, height=64, width=80, n_lights=2)
    assert scan["images"].shape == (4, 2, 64, 80, 3) and scan["depths"].shape == (4, 16, 20)
    scan = object_scan(3, n_views=4, height=64, width=80, n_lights=1, depth_height=96, depth_width=120)
    near, far = scan["depth_range"]
    valid = scan["depths"] > 0
    assert 0.3 < near < far < 1.2 and scan["depths"][valid].min() >= near - 1e-4
    K, ext = scan["K_depth"], scan["extrinsics"]
    # reproject view 0's depth into view 1 and compare with view 1's own depth map
    v, u = np.nonzero(scan["depths"][0] > 0)
    cam0 = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)]) * scan["depths"][0][v, u]
    world = ext[0, :3, :3].T @ (cam0 - ext[0, :3, 3:])
    cam1 = ext[1, :3, :3] @ world + ext[1, :3, 3:]
    uv1 = np.rint((K @ cam1)[:2] / cam1[2]).astype(int)
    inside = (uv1[0] >= 0) & (uv1[0] < 120) & (uv1[1] >= 0) & (uv1[1] < 96)
    other = scan["depths"][1][uv1[1][inside], uv1[0][inside]]
    agree = np.abs(other - cam1[2][inside]) < 0.01 * cam1[2][inside]
    assert inside.mean() > 0.8 and agree.mean() > 0.8  # most points are seen, and at the same depth


def test_lights_change_shading_but_not_geometry():
    scan = object_scan(0, n_views=2, height=32, width=40, n_lights=3)
    assert not np.array_equal(scan["images"][0, 0], scan["images"][0, 2])


def test_room_frames_rejects_bad_counts():
    with pytest.raises(ValueError, match="frames_per_room"):
        list(room_frames(2, 8, 8, frames_per_room=0))
