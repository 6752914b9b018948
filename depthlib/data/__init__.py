"""Data for depth estimation (chapter 01): the synthetic renderer, the NYU (DenseDepth) and DTU
(MVSNet) on-disk formats, their datasets, file IO, and download helpers for the real sets.
"""
from depthlib.data.raycast import (
    Camera, Light, Plane, Box, Sphere, Cylinder, Scene, Hit, look_at, nyu_intrinsics, trace, shade, render
)
from depthlib.data.textures import Material
from depthlib.data.scenes import (
    room_scene, room_camera, room_frame, room_frames, object_scene, arc_cameras, object_scan
)
from depthlib.data.io import (
    read_pfm, write_pfm, read_cam_file, write_cam_file, read_pair_file, write_pair_file, read_image
)
from depthlib.data.nyu import write_nyu_like, NYUDepth
from depthlib.data.dtu import write_dtu_like, DTUMVS
from depthlib.data.mvs_scan import MVSScan, write_mvs_scan
from depthlib.data.dtu_raw import DTUMVSFull, write_raw_depths, dtu_synthetic_full
from depthlib.data.synthetic import nyu_synthetic, dtu_synthetic
from depthlib.data.download import download_nyu, download_dtu

__all__ = [
    "Box", "Camera", "Cylinder", "DTUMVS", "DTUMVSFull", "Hit", "Light", "MVSScan", "Material", "NYUDepth",
    "Plane", "Scene", "Sphere", "arc_cameras", "download_dtu", "download_nyu", "dtu_synthetic",
    "dtu_synthetic_full", "look_at", "nyu_intrinsics", "nyu_synthetic", "object_scan", "object_scene",
    "read_cam_file", "read_image", "read_pair_file", "read_pfm", "render", "room_camera", "room_frame",
    "room_frames", "room_scene", "shade", "trace", "write_cam_file", "write_dtu_like", "write_mvs_scan",
    "write_nyu_like", "write_pair_file", "write_pfm", "write_raw_depths"
]
