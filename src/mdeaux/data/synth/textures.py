"""Procedural textures shared by the indoor and outdoor renderers: periodic value noise and materials.

Textures read a (64, 64) value-noise lattice drawn with the scene, at coordinates in metres, so they
add no randomness of their own.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def _noise(lattice: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Periodic bilinear value noise in [0, 1) at lattice coordinates (u, v)."""
    g = lattice.shape[0]
    fu, fv = np.floor(u), np.floor(v)
    au, av = u - fu, v - fv
    au, av = au * au * (3 - 2 * au), av * av * (3 - 2 * av)  # smoothstep
    i0, j0 = fu.astype(np.int64) % g, fv.astype(np.int64) % g
    i1, j1 = (i0 + 1) % g, (j0 + 1) % g
    top = lattice[i0, j0] * (1 - av) + lattice[i0, j1] * av
    bot = lattice[i1, j0] * (1 - av) + lattice[i1, j1] * av
    return (top * (1 - au) + bot * au).astype(F32)


def _fbm(lattice: np.ndarray, u: np.ndarray, v: np.ndarray, octaves: int = 3) -> np.ndarray:
    total, amp, norm = np.zeros_like(u), 1.0, 0.0
    for k in range(octaves):
        s = F32(2.0**k)
        total += F32(amp) * _noise(lattice, u * s + F32(17.3 * k), v * s + F32(31.7 * k))
        norm += amp
        amp *= 0.5
    return total / F32(norm)


def _hash(lattice: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    g = lattice.shape[0]
    return lattice[(i * 7 + 3) % g, (j * 13 + 5) % g]


def _material(lattice, material: str, color: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Albedo (3, n) of a material at texture coordinates (u, v) in metres."""
    if material == "wood":
        warp = _fbm(lattice, u * 1.5, v * 3.0, 2)
        grain = np.sin(F32(2 * math.pi) * (v * F32(30.0) + F32(2.5) * warp))
        shade = 0.88 + 0.07 * grain + 0.2 * (_noise(lattice, u * 2.0, v * 40.0) - 0.5)
    elif material == "fabric":
        shade = 0.8 + 0.35 * (_fbm(lattice, u * 12.0, v * 12.0) - 0.5) + 0.1 * (_noise(lattice, u * 60, v * 60) - 0.5)
    elif material == "metal":
        shade = 0.92 + 0.1 * (_noise(lattice, u * 40.0, v * 0.5) - 0.5)
    else:  # paint
        shade = 0.93 + 0.14 * (_fbm(lattice, u * 2.0, v * 2.0) - 0.5)
    return color[:, None] * shade.astype(F32)[None]
