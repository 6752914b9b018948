"""A small NumPy ray caster that renders RGB-D frames of analytic scenes (chapter 01).

Conventions: world frame z up, metres; camera frame as OpenCV (x right, y down, z forward);
``extrinsic`` maps world to camera, ``X_cam = R @ X_world + t``; integer pixel coordinates are
pixel centres; ``depth`` is the z-depth in the camera frame, 0 where a ray hits nothing.
Each ray is ``origin + t * direction`` with the direction scaled so that its camera-frame z is 1,
so the hit parameter ``t`` *is* the z-depth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .textures import Material

__all__ = ["Camera", "Light", "Plane", "Box", "Sphere", "Cylinder", "Scene", "Hit",
           "look_at", "nyu_intrinsics", "trace", "shade", "render"]

_EPS = 1e-4
_FAR = np.float32(np.inf)


@dataclass
class Camera:
    """Pinhole camera: ``K`` (3, 3), world-to-camera ``extrinsic`` (4, 4), image size in pixels."""

    K: np.ndarray
    extrinsic: np.ndarray
    height: int
    width: int

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=np.float64)
        self.extrinsic = np.asarray(self.extrinsic, dtype=np.float64)
        if self.K.shape != (3, 3) or self.extrinsic.shape != (4, 4):
            raise ValueError(f"Camera expects K (3, 3) and extrinsic (4, 4), "
                             f"got {self.K.shape} and {self.extrinsic.shape}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Camera size must be positive, got {self.height}x{self.width}")

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, ``-R^T t``."""
        R, t = self.extrinsic[:3, :3], self.extrinsic[:3, 3]
        return -R.T @ t

    def resized(self, height: int, width: int) -> "Camera":
        """The same camera for an image of another size (pixel-centre exact scaling of K)."""
        from depthlib.geometry import scale_intrinsics

        K = scale_intrinsics(self.K, width / self.width, height / self.height)
        return Camera(K, self.extrinsic.copy(), height, width)

    def rays(self):
        """Ray origin (3,) and directions (H*W, 3) in world coordinates, camera-frame z = 1."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=0)  # [u, v, 1]^T
        dirs_cam = np.linalg.inv(self.K) @ pixels                            # K^-1 [u, v, 1]^T
        dirs_world = self.extrinsic[:3, :3].T @ dirs_cam                      # R^T d
        return self.center.astype(np.float32), dirs_world.T.astype(np.float32)


@dataclass
class Light:
    """A point light (world position, metres) with an intensity; shading is Lambertian."""

    position: Sequence[float]
    intensity: float = 1.0


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera (4, 4) extrinsic of a camera at ``eye`` looking at ``target`` (OpenCV axes)."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) < 1e-12:
        raise ValueError(f"look_at: eye {eye} and target {target} coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError(f"look_at: viewing direction {forward} is parallel to up {up}")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.stack([right, down, forward])  # rows: camera x, y, z in world
    extrinsic[:3, 3] = -extrinsic[:3, :3] @ eye
    return extrinsic


def nyu_intrinsics(height: int = 480, width: int = 640) -> np.ndarray:
    """The Kinect colour intrinsics of NYU Depth v2 (640x480), rescaled to ``height`` x ``width``."""
    K = np.array([[518.8579, 0.0, 325.5824], [0.0, 519.4696, 253.7362], [0.0, 0.0, 1.0]])
    return Camera(K, np.eye(4), 480, 640).resized(height, width).K


# ----------------------------------------------------------------------------- primitives
# Each primitive returns the hit parameter t (inf for a miss) for rays origin + t * dirs, and
# the outward unit normal at given hit points. Origins are (3,) or (N, 3); dirs are (N, 3).

@dataclass
class Plane:
    """A plane through ``point`` with unit ``normal``; bounded to a rectangle when ``half_extent`` is set
    (``u_axis`` and ``normal x u_axis`` span it)."""

    point: Sequence[float]
    normal: Sequence[float]
    material: Material = field(default_factory=Material)
    half_extent: Optional[Sequence[float]] = None
    u_axis: Sequence[float] = (1.0, 0.0, 0.0)

    def __post_init__(self):
        self.point = np.asarray(self.point, np.float32)
        n = np.asarray(self.normal, np.float32)
        self.normal = n / np.linalg.norm(n)
        u = np.asarray(self.u_axis, np.float32)
        u = u - self.normal * (u @ self.normal)
        if np.linalg.norm(u) < 1e-6:  # u_axis parallel to the normal: take any perpendicular axis
            u = np.cross(self.normal, (0.0, 1.0, 0.0) if abs(self.normal[1]) < 0.9 else (1.0, 0.0, 0.0))
        self.u_axis = (u / np.linalg.norm(u)).astype(np.float32)
        self.v_axis = np.cross(self.normal, self.u_axis)
        self.bounding_sphere = None if self.half_extent is None else (self.point, float(np.hypot(*self.half_extent)))

    def intersect(self, origins, dirs):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((self.point - origins) @ self.normal) / (dirs @ self.normal)
        t = np.where(np.isfinite(t) & (t > _EPS), t, _FAR)
        if self.half_extent is not None:
            rel = origins + np.where(np.isfinite(t), t, 0)[:, None] * dirs - self.point
            inside = (np.abs(rel @ self.u_axis) <= self.half_extent[0]) & \
                     (np.abs(rel @ self.v_axis) <= self.half_extent[1])
            t = np.where(inside, t, _FAR)
        return t

    def normals(self, points):
        return np.broadcast_to(self.normal, points.shape)


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)


@dataclass
class Box:
    """A box with ``center``, ``half_size`` (3,) along its own axes, turned by ``yaw`` about z."""

    center: Sequence[float]
    half_size: Sequence[float]
    material: Material = field(default_factory=Material)
    yaw: float = 0.0

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float32)
        self.half_size = np.asarray(self.half_size, np.float32)
        self.rotation = _rot_z(self.yaw)  # local -> world
        self.bounding_sphere = (self.center, float(np.linalg.norm(self.half_size)))

    def intersect(self, origins, dirs):
        o = ((origins - self.center) @ self.rotation).T  # world -> local: R^T (p - c)
        d = (dirs @ self.rotation).T
        t_near, t_far = np.float32(-np.inf), _FAR
        for k in range(3):  # slab method, one axis at a time
            dk = np.where(np.abs(d[k]) < 1e-12, np.float32(1e-12), d[k])
            t1, t2 = (-self.half_size[k] - o[k]) / dk, (self.half_size[k] - o[k]) / dk
            t_near, t_far = np.maximum(t_near, np.minimum(t1, t2)), np.minimum(t_far, np.maximum(t1, t2))
        t = np.where(t_near > _EPS, t_near, t_far)  # from inside, the exit point
        return np.where((t_far >= t_near) & (t > _EPS), t, _FAR)

    def normals(self, points):
        local = (points - self.center) @ self.rotation / self.half_size
        axis = np.argmax(np.abs(local), axis=-1)
        n = np.zeros_like(local)
        rows = np.arange(len(local))
        n[rows, axis] = np.sign(local[rows, axis])
        return n @ self.rotation.T


@dataclass
class Sphere:
    """A sphere with ``center`` and ``radius``."""

    center: Sequence[float]
    radius: float
    material: Material = field(default_factory=Material)

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float32)
        self.bounding_sphere = (self.center, float(self.radius))

    def intersect(self, origins, dirs):
        oc = origins - self.center
        a = np.einsum("ij,ij->i", dirs, dirs)
        b = (oc * dirs).sum(-1)
        c = (oc * oc).sum(-1) - self.radius ** 2
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0))
        t = (-b - root) / a
        t = np.where(t > _EPS, t, (-b + root) / a)
        return np.where((disc >= 0) & (t > _EPS), t, _FAR)

    def normals(self, points):
        return (points - self.center) / self.radius


@dataclass
class Cylinder:
    """A capped cylinder standing on ``base`` (its bottom centre), axis along world z."""

    base: Sequence[float]
    radius: float
    height: float
    material: Material = field(default_factory=Material)

    def __post_init__(self):
        self.base = np.asarray(self.base, np.float32)
        self.bounding_sphere = (self.base + np.float32([0, 0, self.height / 2]), float(np.hypot(self.radius, self.height / 2)))

    def intersect(self, origins, dirs):
        o = origins - self.base
        ox, oy, oz = np.broadcast_to(o, dirs.shape).T
        dx, dy, dz = dirs.T
        a, b, c = dx * dx + dy * dy, ox * dx + oy * dy, ox * ox + oy * oy - self.radius ** 2
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(np.maximum(disc, 0))
            t_side = np.where((-b - root) / a > _EPS, (-b - root) / a, (-b + root) / a)
            z = oz + t_side * dz
            t_side = np.where((disc >= 0) & (t_side > _EPS) & (z >= 0) & (z <= self.height), t_side, _FAR)
            t_best = t_side
            for z_cap in (0.0, self.height):
                t_cap = (z_cap - oz) / dz
                x, y = ox + t_cap * dx, oy + t_cap * dy
                ok = (t_cap > _EPS) & (x * x + y * y <= self.radius ** 2)
                t_best = np.minimum(t_best, np.where(ok, t_cap, _FAR))
        return t_best

    def normals(self, points):
        rel = points - self.base
        n = np.concatenate([rel[:, :2] / self.radius, np.zeros_like(rel[:, :1])], axis=-1)
        cap = np.minimum(np.abs(rel[:, 2]), np.abs(rel[:, 2] - self.height)) < 1e-3
        n[cap] = 0.0
        n[cap, 2] = np.where(rel[cap, 2] > self.height / 2, 1.0, -1.0)
        return n


@dataclass
class Scene:
    """Primitives plus lighting. ``lights[0]`` is the default light of :func:`render`."""

    primitives: list
    lights: list = field(default_factory=lambda: [Light((0.0, 0.0, 3.0))])
    ambient: float = 0.35
    name: str = "scene"


@dataclass
class Hit:
    """What the camera rays hit: per-pixel depth, world points, normals, albedo and object id."""

    depth: np.ndarray      # (H, W) float32 z-depth, 0 where nothing is hit
    points: np.ndarray     # (H*W, 3) world hit points (undefined where object_id < 0)
    normals: np.ndarray    # (H*W, 3) unit normals facing the camera
    albedo: np.ndarray     # (H*W, 3) float32 surface colour in [0, 1]
    object_id: np.ndarray  # (H, W) int16 index into scene.primitives, -1 for no hit


def _nearest(primitives, origin, dirs):
    """Nearest hit along rays ``origin + t * dirs`` from one apex (3,); returns t (N,) and ids (N,).

    Culling: a ray can only hit a primitive if it enters the cone from the apex around the
    primitive's bounding sphere, so each primitive is intersected with those rays alone.
    """
    t_best = np.full(len(dirs), _FAR, np.float32)
    ids = np.full(len(dirs), -1, np.int16)
    unit = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    for i, prim in enumerate(primitives):
        rows = slice(None)
        if prim.bounding_sphere is not None:
            center, radius = prim.bounding_sphere
            to_center = center - origin
            dist = float(np.linalg.norm(to_center))
            if dist > radius:
                rows = np.flatnonzero(unit @ (to_center / dist) >= np.sqrt(1 - (radius / dist) ** 2) - 1e-6)
        t = prim.intersect(origin, dirs[rows])
        closer = t < t_best[rows]
        if isinstance(rows, slice):
            rows = np.arange(len(dirs))
        t_best[rows[closer]] = t[closer]
        ids[rows[closer]] = i
    return t_best, ids


def trace(scene: Scene, camera: Camera) -> Hit:
    """Cast one ray per pixel centre; returns the nearest hits (no shading)."""
    origin, dirs = camera.rays()
    t, ids = _nearest(scene.primitives, origin, dirs)
    hit = ids >= 0
    points = origin + np.where(hit, t, 0)[:, None] * dirs
    normals = np.zeros_like(dirs)
    albedo = np.zeros_like(dirs)
    order = np.argsort(ids, kind="stable")  # group the pixels by the primitive they hit
    bounds = np.searchsorted(ids[order], np.arange(len(scene.primitives) + 1))
    for i, prim in enumerate(scene.primitives):
        sel = order[bounds[i]:bounds[i + 1]]
        if len(sel) == 0:
            continue
        n = prim.normals(points[sel])
        facing = np.sign((n * dirs[sel]).sum(-1, keepdims=True))
        normals[sel] = -n * np.where(facing == 0, -1, facing)  # face the camera
        albedo[sel] = prim.material.albedo(points[sel])
    depth = np.where(hit, t, 0).reshape(camera.height, camera.width).astype(np.float32)
    return Hit(depth, points, normals, albedo, ids.reshape(camera.height, camera.width))


def shade(scene: Scene, hit: Hit, light: Optional[Light] = None, shadows: bool = True,
          background=(0, 0, 0)) -> np.ndarray:
    """Lambertian shading of a traced frame under one point light -> (H, W, 3) uint8.

    ``shadows`` casts a shadow ray per lit pixel (about doubles the cost).
    """
    light = light if light is not None else scene.lights[0]
    height, width = hit.depth.shape
    ids = hit.object_id.ravel()
    lit = ids >= 0
    to_light = np.asarray(light.position, np.float32) - hit.points[lit]
    dist = np.linalg.norm(to_light, axis=-1, keepdims=True)
    cos = np.clip((hit.normals[lit] * to_light / dist).sum(-1), 0, None)
    if shadows:  # trace from the light to each point (t = 1): anything hit first casts a shadow
        t_first, _ = _nearest(scene.primitives, np.asarray(light.position, np.float32), -to_light)
        cos = np.where(t_first < 1.0 - 2e-3, 0.0, cos)
    radiance = scene.ambient + light.intensity * cos
    image = np.empty((height * width, 3), np.float32)
    image[:] = np.asarray(background, np.float32) / 255.0
    image[lit] = hit.albedo[lit] * radiance[:, None]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3)


def render(scene: Scene, camera: Camera, light: Optional[Light] = None, shadows: bool = True) -> dict:
    """Render one RGB-D frame.

    Returns a dict with ``image`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres (0 = no surface),
    ``normal`` (H, W, 3) float32 and ``object_id`` (H, W) int16 (-1 = background).
    Example:
        >>> scene = Scene([Sphere((0.0, 3.0, 1.0), 0.5)])
        >>> frame = render(scene, Camera(nyu_intrinsics(96, 128), look_at((0, 0, 1), (0, 3, 1)), 96, 128))
        >>> frame["image"].shape, round(float(frame["depth"][48, 64]), 2)  # the sphere's front, 2.5 m ahead
        ((96, 128, 3), 2.5)
    """
    hit = trace(scene, camera)
    image = shade(scene, hit, light, shadows=shadows)
    return {"image": image, "depth": hit.depth,
            "normal": hit.normals.reshape(camera.height, camera.width, 3),
            "object_id": hit.object_id}
