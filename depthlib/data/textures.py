"""Procedural solid textures for the synthetic renderer (chapter 01).

Textures are functions of the *world* point, so a surface looks the same from every camera:
exactly what multi-view stereo needs to match pixels across views.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["value_noise", "fbm", "Material", "PATTERNS"]

PATTERNS = ("plain", "noise", "checker", "stripes", "marble", "wood", "tiles", "speckle")


_PRIMES = (np.uint32(0x8DA6B343), np.uint32(0xD8163841), np.uint32(0xCB1AB31F))


def _finish(h):
    """Avalanche an uint32 lattice hash and map it to float32 in [0, 1)."""
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0x5BD1E995)
    h = h ^ (h >> np.uint32(15))
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smooth 3D value noise in [0, 1]: random values on the integer lattice, smoothstep-interpolated.

    Args: points (N, 3) float. Returns (N,) float32.
    """
    cell = np.floor(points)
    frac = (points - cell).astype(np.float32)
    w = frac * frac * (3 - 2 * frac)  # smoothstep weights
    lattice = cell.astype(np.int64).astype(np.uint32)  # wraps for negative cells, on purpose
    # (i + 1) * P = i * P + P (mod 2^32): two hashes per axis cover the 8 cell corners.
    hx, hy, hz = (lattice[:, k] * _PRIMES[k] for k in range(3))
    salt = np.uint32(seed * 0x9E3779B9 & 0xFFFFFFFF)
    corners_x = (hx, hx + _PRIMES[0])
    corners_y = (hy, hy + _PRIMES[1])
    corners_z = (hz ^ salt, (hz + _PRIMES[2]) ^ salt)
    lerp = lambda a, b, t: a + t * (b - a)  # noqa: E731
    planes = []
    for z in corners_z:
        edges = [lerp(_finish(corners_x[0] ^ y ^ z), _finish(corners_x[1] ^ y ^ z), w[:, 0]) for y in corners_y]
        planes.append(lerp(edges[0], edges[1], w[:, 1]))
    return lerp(planes[0], planes[1], w[:, 2])


def fbm(points: np.ndarray, seed: int = 0, octaves: int = 3) -> np.ndarray:
    """Fractal sum of ``octaves`` value-noise layers (each twice the frequency, half the amplitude)."""
    total, amplitude, norm = np.zeros(len(points), np.float32), 1.0, 0.0
    for k in range(octaves):
        total += amplitude * value_noise(points * (2.0 ** k), seed + 17 * k)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


@dataclass
class Material:
    """Surface colour as a procedural pattern mixing ``color`` and ``color2`` (RGB in [0, 1]).

    ``scale`` is the pattern frequency in cycles per metre; ``seed`` varies the noise.
    """

    color: Sequence[float] = (0.7, 0.7, 0.7)
    color2: Sequence[float] = (0.3, 0.3, 0.3)
    pattern: str = "plain"
    scale: float = 4.0
    seed: int = 0

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown texture pattern {self.pattern!r}; expected one of {PATTERNS}")
        self.color = np.asarray(self.color, np.float32)
        self.color2 = np.asarray(self.color2, np.float32)

    def mix(self, points: np.ndarray) -> np.ndarray:
        """Per-point weight in [0, 1] of ``color2`` against ``color``."""
        p = points * np.float32(self.scale)
        if self.pattern == "plain":
            return 0.15 * fbm(p, self.seed, 2)
        if self.pattern == "noise":
            return np.clip(1.6 * fbm(p, self.seed, 4) - 0.3, 0, 1)
        if self.pattern == "speckle":  # high-contrast blobs: easy to match across views
            return (fbm(p, self.seed, 3) > 0.5).astype(np.float32) * 0.8 + 0.2 * value_noise(4 * p, self.seed)
        if self.pattern == "checker":
            parity = (np.floor(p).astype(np.int64).sum(-1) & 1).astype(np.float32)
            return 0.85 * parity + 0.15 * fbm(4 * p, self.seed, 2)
        if self.pattern == "stripes":
            return 0.5 + 0.5 * np.sin(2 * np.pi * (p[:, 0] + p[:, 1]) + 2 * fbm(p, self.seed, 2))
        if self.pattern == "marble":
            return 0.5 + 0.5 * np.sin(2 * np.pi * p[:, 0] + 6 * fbm(p, self.seed, 4))
        if self.pattern == "wood":
            rings = np.sqrt(p[:, 0] ** 2 + p[:, 2] ** 2) * 3 + 2 * fbm(p * (1, 0.1, 1), self.seed, 2)
            return (rings - np.floor(rings)) ** 2
        # tiles: a grid of grout lines on a noisy fill
        frac = p - np.floor(p)
        grout = np.min(np.minimum(frac, 1 - frac)[:, :2], axis=-1) < 0.04
        return np.where(grout, 1.0, 0.25 * fbm(2 * p, self.seed, 2)).astype(np.float32)

    def albedo(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) colours at world ``points`` (N, 3)."""
        t = self.mix(points.astype(np.float32))[:, None]
        return (1 - t) * self.color + t * self.color2
