"""The two synthetic scene families: indoor rooms and DTU-like object sets (chapter 01).

Rooms (monocular depth, NYU-like): floor, walls and ceiling of a random box room with furniture,
seen by a camera standing inside with NYU's Kinect intrinsics. Object sets (multi-view stereo,
DTU-like): textured primitives on a table seen from an arc of cameras. Everything is
deterministic given the seed. ``surface_points`` samples a scene's true surface for chapter 10's
accuracy / completeness, as DTU's structured-light scans do for the real set.
"""
from __future__ import annotations

import functools
import multiprocessing as mp

import numpy as np

from .io import as_point_array
from .raycast import Box, Camera, Cylinder, Light, Plane, Scene, Sphere, look_at, nyu_intrinsics, shade, trace
from .textures import Material

__all__ = ["room_scene", "room_camera", "room_frame", "room_frames", "object_scene", "arc_cameras", "object_scan",
           "surface_points", "voxel_downsample", "parallel_map"]

_WALL_COLORS = [(0.85, 0.82, 0.75), (0.72, 0.80, 0.85), (0.88, 0.78, 0.70), (0.75, 0.85, 0.72),
                (0.90, 0.90, 0.88), (0.80, 0.72, 0.80)]
_WOOD = [((0.55, 0.38, 0.22), (0.35, 0.22, 0.12)), ((0.75, 0.60, 0.42), (0.55, 0.40, 0.25))]
_FABRIC = [(0.30, 0.35, 0.55), (0.60, 0.25, 0.25), (0.35, 0.50, 0.35), (0.50, 0.50, 0.52), (0.70, 0.60, 0.40)]


def _rgb(rng, base, spread=0.08):
    return np.clip(np.asarray(base) + rng.uniform(-spread, spread, 3), 0.05, 0.98)


def _furniture(rng, room):
    """A random piece of furniture as a list of primitives, placed inside ``room`` = (W, L, H)."""
    W, L, _ = room
    kind = rng.choice(["table", "cabinet", "sofa", "lamp", "ball", "bin", "shelf", "chair"])
    yaw = rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.3, 0.3)
    x, y = rng.uniform(0.5, W - 0.5), rng.uniform(0.5, L - 0.5)
    wood = Material(*_WOOD[rng.integers(2)], pattern="wood", scale=rng.uniform(2, 5), seed=int(rng.integers(1e6)))
    fabric = Material(_rgb(rng, _FABRIC[rng.integers(len(_FABRIC))]), _rgb(rng, (0.2, 0.2, 0.2)),
                      pattern=rng.choice(["noise", "checker", "stripes"]), scale=rng.uniform(3, 10),
                      seed=int(rng.integers(1e6)))
    if kind == "table":
        w, d, h = rng.uniform(0.6, 1.6), rng.uniform(0.5, 0.9), rng.uniform(0.65, 0.8)
        parts = [Box((x, y, h - 0.02), (w / 2, d / 2, 0.03), wood, yaw)]
        for sx in (-1, 1):
            for sy in (-1, 1):
                leg = np.array([sx * (w / 2 - 0.05), sy * (d / 2 - 0.05), 0.0])
                lx, ly, _ = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]) @ leg
                parts.append(Box((x + lx, y + ly, (h - 0.05) / 2), (0.03, 0.03, (h - 0.05) / 2), wood, yaw))
        return parts
    if kind in ("cabinet", "shelf"):
        w, d, h = rng.uniform(0.5, 1.4), rng.uniform(0.35, 0.6), rng.uniform(0.8, 2.1)
        along_x = rng.random() < 0.5  # stand against a wall
        x, y = (x, d / 2 + 0.01) if along_x else (d / 2 + 0.01, y)
        return [Box((x, y, h / 2), (w / 2, d / 2, h / 2) if along_x else (d / 2, w / 2, h / 2),
                    wood if kind == "shelf" else fabric)]
    if kind == "sofa":
        w, d = rng.uniform(1.4, 2.2), rng.uniform(0.8, 1.0)
        seat = Box((x, y, 0.22), (w / 2, d / 2, 0.22), fabric, yaw)
        back = np.array([np.sin(yaw), -np.cos(yaw), 0.0]) * (d / 2 - 0.1)
        return [seat, Box((x + back[0], y + back[1], 0.5), (w / 2, 0.1, 0.5), fabric, yaw)]
    if kind == "chair":
        return [Box((x, y, 0.23), (0.22, 0.22, 0.23), fabric, yaw), Box((x, y, 0.48), (0.24, 0.24, 0.02), wood, yaw)]
    if kind == "lamp":
        h = rng.uniform(1.2, 1.7)
        shade_mat = Material(_rgb(rng, (0.95, 0.9, 0.75)), _rgb(rng, (0.8, 0.7, 0.5)), "noise", 6.0)
        return [Cylinder((x, y, 0.0), 0.03, h, Material((0.2, 0.2, 0.2))),
                Cylinder((x, y, h - 0.05), rng.uniform(0.15, 0.25), 0.3, shade_mat)]
    if kind == "bin":
        r, h = rng.uniform(0.15, 0.3), rng.uniform(0.3, 0.9)
        return [Cylinder((x, y, 0.0), r, h, fabric)]
    r = rng.uniform(0.12, 0.35)
    return [Sphere((x, y, r), r, fabric)]


def room_scene(seed: int) -> Scene:
    """A furnished box room, about 3-6 m wide, 4-7 m long and 2.5-3.2 m high (depth stays under 10 m)."""
    rng = np.random.default_rng(seed)
    W, L, H = rng.uniform(3.0, 6.0), rng.uniform(4.0, 7.0), rng.uniform(2.5, 3.2)
    wall = Material(_rgb(rng, _WALL_COLORS[rng.integers(len(_WALL_COLORS))]), (0.6, 0.6, 0.6), "plain",
                    scale=rng.uniform(1, 3), seed=int(rng.integers(1e6)))
    accent = Material(_rgb(rng, _WALL_COLORS[rng.integers(len(_WALL_COLORS))]), _rgb(rng, (0.5, 0.5, 0.55)),
                      rng.choice(["stripes", "noise"]), scale=rng.uniform(2, 6), seed=int(rng.integers(1e6)))
    floor = (Material(*_WOOD[rng.integers(2)], pattern="wood", scale=rng.uniform(1.5, 3), seed=int(rng.integers(1e6)))
             if rng.random() < 0.5 else
             Material(_rgb(rng, (0.8, 0.78, 0.74)), _rgb(rng, (0.35, 0.33, 0.3)), "tiles", scale=rng.uniform(1.5, 3)))
    accent_wall = int(rng.integers(4))
    walls = [((0, 0, 0), (1, 0, 0)), ((W, 0, 0), (-1, 0, 0)), ((0, 0, 0), (0, 1, 0)), ((0, L, 0), (0, -1, 0))]
    prims = [Plane((0, 0, 0), (0, 0, 1), floor), Plane((0, 0, H), (0, 0, -1), Material((0.97, 0.97, 0.95)))]
    prims += [Plane(p, n, accent if i == accent_wall else wall) for i, (p, n) in enumerate(walls)]
    for _ in range(int(rng.integers(2, 4))):  # pictures / doors: flat boxes on the walls
        frame = Material(_rgb(rng, (0.5, 0.5, 0.5), 0.4), _rgb(rng, (0.3, 0.3, 0.3), 0.3),
                         rng.choice(["marble", "checker", "noise"]), scale=rng.uniform(3, 8), seed=int(rng.integers(1e6)))
        w, h, z = rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.8), rng.uniform(1.2, 1.9)
        if rng.random() < 0.5:
            prims.append(Box((rng.uniform(w, W - w), L - 0.02, z), (w / 2, 0.02, h / 2), frame))
        else:
            prims.append(Box((W - 0.02, rng.uniform(w, L - w), z), (0.02, w / 2, h / 2), frame))
    for _ in range(int(rng.integers(6, 12))):
        prims += _furniture(rng, (W, L, H))
    light = Light((rng.uniform(0.3, 0.7) * W, rng.uniform(0.3, 0.7) * L, H - 0.6), intensity=0.7)
    scene = Scene(prims, [light], ambient=0.4, name=f"room_{seed:04d}")
    scene.bounds = (W, L, H)
    return scene


def _inside_any(point, primitives, margin=0.35):
    for prim in primitives:
        if isinstance(prim, Box):
            local = np.abs((point - prim.center) @ prim.rotation)
            if np.all(local <= prim.half_size + margin):
                return True
        elif isinstance(prim, Sphere) and np.linalg.norm(point - prim.center) < prim.radius + margin:
            return True
        elif isinstance(prim, Cylinder) and np.linalg.norm((point - prim.base)[:2]) < prim.radius + margin:
            return True
    return False


def room_camera(scene: Scene, rng, height: int, width: int) -> Camera:
    """A camera near one wall of ``scene``, 1.0-1.7 m high, looking into the room (NYU intrinsics)."""
    W, L, _ = scene.bounds
    for _ in range(100):
        wall = rng.integers(4)
        u = rng.uniform(0.1, 0.9)
        eye = [(0.4, u * L), (W - 0.4, u * L), (u * W, 0.4), (u * W, L - 0.4)][wall]
        eye = np.array([*eye, rng.uniform(1.0, 1.7)])
        if not _inside_any(eye, scene.primitives):
            break
    target = np.array([rng.uniform(0.25, 0.75) * W, rng.uniform(0.25, 0.75) * L, rng.uniform(0.4, 1.2)])
    if np.linalg.norm((target - eye)[:2]) < 1.0:  # look across the room, not at the floor under us
        target[:2] = eye[:2] + 1.5 * (np.array([W, L]) / 2 - eye[:2]) / (np.linalg.norm(np.array([W, L]) / 2 - eye[:2]) + 1e-6)
    return Camera(nyu_intrinsics(height, width), look_at(eye, target), height, width)


@functools.lru_cache(maxsize=4)
def _cached_room(seed: int) -> Scene:
    return room_scene(seed)


def room_frame(room_seed: int, frame: int, height: int, width: int, shadows: bool = True) -> dict:
    """Render view ``frame`` of room ``room_seed`` (see :func:`room_frames` for the fields)."""
    scene = _cached_room(room_seed)
    camera = room_camera(scene, np.random.default_rng([room_seed, frame]), height, width)
    hit = trace(scene, camera)
    return {"image": shade(scene, hit, shadows=shadows), "depth": hit.depth, "K": camera.K,
            "extrinsic": camera.extrinsic, "scene": scene.name, "frame": frame}


def room_frames(n_frames: int, height: int = 480, width: int = 640, seed: int = 0, frames_per_room: int = 4,
                shadows: bool = True, workers: int = 1):
    """Yield ``n_frames`` RGB-D frames, ``frames_per_room`` views of each room (rooms seeded ``seed``, ``seed+1``...).

    Each item: ``image`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres (0 = none), ``K`` (3, 3),
    ``extrinsic`` (4, 4) world-to-camera, ``scene`` name, ``frame`` index within the room.
    ``workers`` > 1 renders in that many processes; the frames are identical either way.
    """
    if n_frames < 0 or frames_per_room < 1:
        raise ValueError(f"room_frames needs n_frames >= 0 and frames_per_room >= 1, got {n_frames}, {frames_per_room}")
    jobs = [(seed + k // frames_per_room, k % frames_per_room, height, width, shadows) for k in range(n_frames)]
    yield from parallel_map(room_frame, jobs, workers)


def parallel_map(fn, jobs, workers):
    """``fn(*job)`` for each job, in order, in ``workers`` forked processes when > 1 (the renderer's
    way to use every core; the NYU and DTU writers use it)."""
    if workers <= 1 or len(jobs) < 2 or "fork" not in mp.get_all_start_methods():
        for job in jobs:
            yield fn(*job)
        return
    with mp.get_context("fork").Pool(workers) as pool:  # imap streams: memory stays flat
        yield from pool.imap(_call_job, [(fn, job) for job in jobs], chunksize=max(1, min(8, len(jobs) // (4 * workers))))


def _call_job(fn_and_job):
    fn, job = fn_and_job
    return fn(*job)


def object_scene(seed: int) -> Scene:
    """3-6 richly textured objects (boxes, spheres, cylinders) on a 0.6 m table, DTU-like scale."""
    rng = np.random.default_rng(seed)
    table = Plane((0, 0, 0), (0, 0, 1), Material(_rgb(rng, (0.75, 0.7, 0.6), 0.15), _rgb(rng, (0.3, 0.25, 0.2)),
                                                  rng.choice(["wood", "speckle", "marble"]), scale=rng.uniform(8, 20),
                                                  seed=int(rng.integers(1e6))), half_extent=(0.3, 0.3))
    prims = [table]
    for _ in range(int(rng.integers(3, 7))):
        mat = Material(rng.uniform(0.1, 0.95, 3), rng.uniform(0.05, 0.9, 3),
                       rng.choice(["noise", "speckle", "checker", "marble", "stripes"]), scale=rng.uniform(20, 60),
                       seed=int(rng.integers(1e6)))
        r = rng.uniform(0.0, 0.16)
        phi = rng.uniform(0, 2 * np.pi)
        x, y = r * np.cos(phi), r * np.sin(phi)
        size = rng.uniform(0.03, 0.09)
        kind = rng.integers(3)
        if kind == 0:
            prims.append(Sphere((x, y, size), size, mat))
        elif kind == 1:
            prims.append(Box((x, y, size * 0.8), (size, size * rng.uniform(0.6, 1.4), size * 0.8), mat, rng.uniform(0, np.pi)))
        else:
            prims.append(Cylinder((x, y, 0.0), size * 0.8, size * rng.uniform(1.5, 3.0), mat))
    return Scene(prims, [Light((0.0, -0.3, 0.9))], ambient=0.3, name=f"objects_{seed:04d}")


def arc_cameras(n_views: int, height: int, width: int, distance: float = 0.6, seed: int = 0, fov_x_deg: float = 50.0):
    """``n_views`` cameras on rows of a spherical arc around the table centre, all looking at it.

    Neighbouring cameras are ~10-15 degrees apart, like DTU's 49-camera grid. Returns a list of Camera.
    """
    if n_views < 2:
        raise ValueError(f"arc_cameras needs n_views >= 2, got {n_views}")
    rng = np.random.default_rng(seed)
    rows = 1 if n_views < 8 else (2 if n_views < 18 else 3)
    per_row = [n_views // rows + (r < n_views % rows) for r in range(rows)]
    fx = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2)
    K = np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]])
    cameras = []
    for r, count in enumerate(per_row):
        elevation = np.radians(35 + 15 * r)
        span = np.radians(min(12.0 * (count - 1), 150.0))
        for azimuth in np.linspace(-span / 2, span / 2, count) - np.pi / 2:
            eye = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                       np.sin(elevation)]) + rng.normal(0, 0.005, 3)
            cameras.append(Camera(K, look_at(eye, (0.0, 0.0, 0.04) + rng.normal(0, 0.01, 3)), height, width))
    return cameras


def _arc_lights(n_lights: int):
    """Light positions swept from left to right above the table (index n_lights // 2 is frontal)."""
    angles = np.linspace(-np.pi / 2 - 1.0, -np.pi / 2 + 1.0, n_lights) if n_lights > 1 else [-np.pi / 2]
    return [Light((0.8 * np.cos(a), 0.8 * np.sin(a), 0.9), intensity=0.6 + 0.1 * (k % 3))
            for k, a in enumerate(angles)]


def object_scan(seed: int, n_views: int = 12, height: int = 128, width: int = 160, depth_height=None,
                depth_width=None, n_lights: int = 7, shadows: bool = True, camera_seed=None) -> dict:
    """Render a DTU-like scan: every view under every light, plus depth maps at 1/4 resolution.

    The object set is seeded ``seed``, the camera arc ``camera_seed`` (default ``seed``): scans that
    share a ``camera_seed`` share their cameras, like DTU's robot arm.

    Returns ``images`` (V, L, H, W, 3) uint8, ``depths`` (V, h, w) float32 metres (0 = none),
    ``K`` (3, 3) at image resolution, ``K_depth`` (3, 3) at depth resolution (pixel-centre exact),
    ``extrinsics`` (V, 4, 4), ``depth_range`` (near, far) over all valid depths, ``name``.
    """
    depth_height = depth_height or height // 4
    depth_width = depth_width or width // 4
    scene = object_scene(seed)
    cameras = arc_cameras(n_views, height, width, seed=seed if camera_seed is None else camera_seed)
    lights = _arc_lights(n_lights)
    images = np.empty((n_views, n_lights, height, width, 3), np.uint8)
    depths = np.empty((n_views, depth_height, depth_width), np.float32)
    near, far = np.inf, 0.0
    for v, camera in enumerate(cameras):
        hit = trace(scene, camera)
        for k, light in enumerate(lights):
            images[v, k] = shade(scene, hit, light, shadows=shadows)
        depths[v] = trace(scene, camera.resized(depth_height, depth_width)).depth
        valid = hit.depth[hit.depth > 0]
        near, far = min(near, float(valid.min())), max(far, float(valid.max()))
    return {"images": images, "depths": depths, "K": cameras[0].K,
            "K_depth": cameras[0].resized(depth_height, depth_width).K,
            "extrinsics": np.stack([c.extrinsic for c in cameras]), "depth_range": (near, far),
            "name": scene.name}


def voxel_downsample(points, voxel_size: float, colors=None):
    """Keep the first point (in input order) of every occupied cube of side ``voxel_size``.

    Gives an even density without moving points off the surface. points: (N, 3); colors: (N, 3) or
    None. Returns (points, colors) NumPy subsets in input order.
    """
    points = as_point_array(points)
    if not voxel_size > 0:
        raise ValueError(f"voxel_size is {voxel_size}, expected a positive number")
    _, first = np.unique(np.floor(points / voxel_size).astype(np.int64), axis=0, return_index=True)
    first = np.sort(first)
    return points[first], None if colors is None else as_point_array(colors, "colors", points.shape)[first]


def surface_points(scene, K, extrinsics, height: int, width: int, upsample: int = 1, spacing=None,
                   units_per_metre: float = 1.0) -> np.ndarray:
    """Ground-truth surface samples of a rendered scene: the exact ray-cast hits of every pixel of every camera.

    The renderer's own hit points (analytic ray-primitive intersections, float32), so they lie on the
    true surface and cover exactly what the cameras see (like DTU's structured-light reference scans).
    scene: a ``Scene`` (e.g. ``object_scene(seed)``); K: (3, 3) or (V, 3, 3) at height x width;
    extrinsics: (V, 4, 4) world->camera, metres. ``upsample``: cast upsample^2 rays per pixel;
    ``spacing``: then :func:`voxel_downsample` to that spacing (output units). Returns (N, 3) float32
    in metres x ``units_per_metre`` (1000 matches a DTU-like set written in millimetres).
    """
    extrinsics = np.asarray(extrinsics, np.float64)
    if extrinsics.ndim != 3 or extrinsics.shape[1:] != (4, 4):
        raise ValueError(f"extrinsics has shape {extrinsics.shape}, expected (V, 4, 4)")
    K = np.broadcast_to(np.asarray(K, np.float64), (len(extrinsics), 3, 3)) if np.ndim(K) == 2 else np.asarray(K)
    if K.shape != (len(extrinsics), 3, 3):
        raise ValueError(f"K has shape {K.shape}, expected (3, 3) or ({len(extrinsics)}, 3, 3)")
    hits = []
    for intrinsic, extrinsic in zip(K, extrinsics):
        hit = trace(scene, Camera(intrinsic, extrinsic, height, width).resized(height * upsample, width * upsample))
        hits.append(hit.points[hit.object_id.reshape(-1) >= 0])
    points = (np.concatenate(hits) * units_per_metre).astype(np.float32)
    return points if spacing is None else voxel_downsample(points, spacing)[0]
