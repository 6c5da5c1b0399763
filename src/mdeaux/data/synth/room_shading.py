"""Albedo of room surfaces and decals: floors (planks, tiles, carpet), walls, ceiling, doors, windows, pictures.

Decals also flag emissive pixels (windows, ceiling lights) and "glass" pixels (windows: no depth
reading from a structured-light sensor).
"""

from __future__ import annotations

import numpy as np

from mdeaux.data.synth.room import CEILING, FLOOR, Decal, Room, surface_uv
from mdeaux.data.synth.textures import _fbm, _hash, _material, _noise

F32 = np.float32


def _room_albedo(room: Room, surface: int, p: np.ndarray) -> np.ndarray:
    u, v = surface_uv(surface, p)
    lat = room.noise
    if surface == FLOOR:
        s = F32(room.floor_scale)
        if room.floor_style == "planks":
            row = np.floor(v / s).astype(np.int64)
            shifted = u + _hash(lat, row, row) * F32(3.0)
            board = np.floor(shifted / F32(1.2)).astype(np.int64)
            tone = 0.8 + 0.4 * _hash(lat, row, board)
            grain = 0.9 + 0.1 * np.sin(F32(40.0) * v + F32(4.0) * _fbm(lat, u * 0.8, v * 8.0, 2))
            seam = ((v / s) % 1 < 0.04) | ((shifted / F32(1.2)) % 1 < 0.006)
            shade = np.where(seam, F32(0.45), tone * grain)
            return room.floor_colors[0][:, None] * shade[None]
        if room.floor_style == "tiles":
            checker = (np.floor(u / s) + np.floor(v / s)) % 2
            grout = ((u / s) % 1 < 0.03) | ((v / s) % 1 < 0.03)
            base = np.where(checker[None] > 0, room.floor_colors[0][:, None], room.floor_colors[1][:, None])
            shade = np.where(grout, F32(0.6), 0.95 + 0.1 * (_noise(lat, u * 8, v * 8) - 0.5))
            return base * shade[None]
        return _material(lat, "fabric", room.floor_colors[1], u, v)
    if surface == CEILING:
        return _material(lat, "paint", room.ceiling_color, u, v)
    if room.wall_style == "stripes":
        stripe = (u / F32(room.stripe_period)) % 2 < 1
        base = np.where(stripe[None], room.wall_colors[0][:, None], room.wall_colors[1][:, None])
        return base * (0.95 + 0.1 * (_fbm(lat, u * 3.0, v * 3.0) - 0.5))[None]
    return _material(lat, "paint", room.wall_colors[0], u, v)


def _decal_albedo(decal: Decal, lat, u, v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo (3, n), emissive flag and "glass" flag (no depth reading) inside a decal."""
    n = u.shape[0]
    color = np.asarray(decal.color, dtype=F32)
    emissive = np.zeros(n, dtype=bool)
    glass = np.zeros(n, dtype=bool)
    du, dv = u - F32(decal.u0), v - F32(decal.v0)
    w, h = F32(decal.u1 - decal.u0), F32(decal.v1 - decal.v0)
    border = np.minimum(np.minimum(du, w - du), np.minimum(dv, h - dv))
    if decal.kind == "window":
        mullion = (np.abs(du - w / 2) < 0.025) | (np.abs(dv - h * F32(0.6)) < 0.025)
        frame = (border < 0.06) | mullion
        sky = np.stack([0.55 + 0.25 * dv / h, 0.7 + 0.2 * dv / h, np.full(n, F32(0.95))]).astype(F32)
        albedo = np.where(frame[None], color[:, None], sky)
        emissive = ~frame
        glass = ~frame
    elif decal.kind == "picture":
        assert decal.pattern is not None
        ph, pw = decal.pattern.shape[:2]
        iu = np.clip((du / w * pw).astype(np.int64), 0, pw - 1)
        iv = np.clip((dv / h * ph).astype(np.int64), 0, ph - 1)
        inner = decal.pattern[iv, iu].T * (0.85 + 0.3 * _noise(lat, u * 20, v * 20))[None]
        albedo = np.where((border < 0.04)[None], color[:, None], inner)
    elif decal.kind == "door":
        panel = (np.abs(border - 0.12) < 0.012) | (np.abs(du - w / 2) < 0.01) & (dv > 0.15) & (dv < h - 0.15)
        albedo = _material(lat, "wood", color, dv, du) * np.where(panel, F32(0.7), F32(1.0))[None]
    elif decal.kind == "rug":
        edge = (border > 0.06) & (border < 0.12)
        albedo = _material(lat, "fabric", color, u, v) * np.where(edge, F32(1.4), F32(1.0))[None]
    elif decal.kind == "light":
        albedo = np.repeat(color[:, None], n, axis=1)
        emissive = border > 0.02
    else:  # plain clutter
        albedo = np.repeat(color[:, None], n, axis=1) * (0.95 + 0.1 * _noise(lat, u * 30, v * 30))[None]
    return albedo.astype(F32), emissive, glass
