"""Data for depth estimation (chapter 01): the synthetic renderer, the NYU (DenseDepth) and DTU
(MVSNet) on-disk formats, their datasets, file IO, and download helpers for the real sets.

Names load from their submodule on first use, so importing one part stays light.
"""
import importlib

_EXPORTS = {
    "raycast": ["Camera", "Light", "Plane", "Box", "Sphere", "Cylinder", "Scene", "Hit", "look_at",
                "nyu_intrinsics", "trace", "shade", "render"],
    "textures": ["Material"],
    "scenes": ["room_scene", "room_camera", "room_frame", "room_frames", "object_scene", "arc_cameras", "object_scan"],
    "io": ["read_pfm", "write_pfm", "read_cam_file", "write_cam_file", "read_pair_file", "write_pair_file",
           "read_image"],
    "nyu": ["write_nyu_like", "NYUDepth"],
    "dtu": ["write_dtu_like", "DTUMVS", "MVSScan", "write_mvs_scan"],
    "dtu_raw": ["DTUMVSFull", "write_raw_depths", "dtu_synthetic_full"],
    "synthetic": ["nyu_synthetic", "dtu_synthetic"],
    "download": ["download_nyu", "download_dtu"],
}
_OWNER = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_OWNER)


def __getattr__(name):
    if name in _OWNER:
        return getattr(importlib.import_module(f".{_OWNER[name]}", __name__), name)
    raise AttributeError(f"module 'depthlib.data' has no attribute {name!r}")


def __dir__():
    return __all__
