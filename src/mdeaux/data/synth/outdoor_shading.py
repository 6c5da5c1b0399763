"""Shading of outdoor scenes: albedo of the ground (road, markings, terrain, plazas) and of objects
(facades with windows, leaves, bark, paving, car cabins), and the shadows of the directional sun.
"""

from __future__ import annotations

import numpy as np

from mdeaux.data.synth.outdoor_scene import OUTDOOR_CLASSES, PARKING_STRIP, OutdoorScene
from mdeaux.data.synth.textures import _fbm, _noise

F32 = np.float32


def _ground_albedo(scene: OutdoorScene, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (3, n) and class names index (0 road, 1 sidewalk, 4 terrain) of ground points."""
    x, z = p[0], p[2]
    lat = scene.noise
    n = x.shape[0]
    grass = scene.grass[:, None] * (0.75 + 0.5 * _fbm(lat, x * 0.7, z * 0.7))[None]
    dirt_mix = _fbm(lat, x * 0.05 + 11.0, z * 0.05 + 5.0)[None]
    albedo = np.where(dirt_mix > 0.62, scene.dirt[:, None], grass).astype(F32)
    cls = np.full(n, OUTDOOR_CLASSES.index("terrain"), dtype=np.int16)
    if scene.driving:
        road = np.abs(x) < scene.road_half
        asphalt = scene.asphalt[:, None] * (0.85 + 0.3 * _fbm(lat, x * 3.0, z * 3.0))[None]
        mark = np.zeros(n, dtype=bool)
        lanes_half = scene.road_half - PARKING_STRIP
        for k in range(1, scene.lanes):  # dashed lines between lanes: 4 m painted, 8 m gap
            xb = -lanes_half + k * scene.lane_width
            mark |= (np.abs(x - xb) < 0.07) & (np.mod(z, 12.0) < 4.0)
        mark |= np.abs(np.abs(x) - lanes_half) < 0.06  # solid lines between the lanes and the parking strips
        paint = np.array([0.85, 0.85, 0.82], F32)[:, None]
        albedo = np.where(road[None], np.where(mark[None], paint, asphalt), albedo)
        cls[road] = OUTDOOR_CLASSES.index("road")
    for x0, x1, z0, z1 in scene.plazas:
        inside = (x >= x0) & (x <= x1) & (z >= z0) & (z <= z1)
        tiles = (np.mod(x, 0.6) < 0.03) | (np.mod(z, 0.6) < 0.03)
        pav = scene.paving[:, None] * np.where(tiles, F32(0.75), F32(1.0))[None] * (0.9 + 0.2 * _noise(lat, x * 2, z * 2))[None]
        albedo = np.where(inside[None], pav, albedo)
        cls[inside] = OUTDOOR_CLASSES.index("sidewalk")
    return albedo.astype(F32), cls


def _prim_albedo(scene: OutdoorScene, index: int, p: np.ndarray, face: np.ndarray) -> np.ndarray:
    prim = scene.prims[index]
    lat = scene.noise
    u, v = prim.uv(p, face)
    color = prim.color[:, None]
    m = prim.material
    if m == "facade":
        shade = 0.9 + 0.2 * (_fbm(lat, u * 0.8, v * 0.8) - 0.5)
        albedo = color * shade[None]
        win = scene.windows.get(index)
        if win is not None:
            side = face != 1
            du = np.mod(u - F32(win.offset), F32(win.spacing))
            dv = np.mod(v, F32(win.storey))
            top = F32(2 * prim.half[1]) - F32(0.6)
            glass = side & (du < win.width) & (dv > win.sill) & (dv < win.sill + win.height) & (v > win.storey * 0.9) & (v < top)
            albedo = np.where(glass[None], win.glass[:, None] * (0.8 + 0.4 * _noise(lat, u * 0.5, v * 0.5))[None], albedo)
        return albedo.astype(F32)
    if m == "leaves":
        return (color * (0.6 + 0.7 * _fbm(lat, u * 3.0, v * 3.0))[None]).astype(F32)
    if m == "bark":
        return (color * (0.8 + 0.3 * _noise(lat, u * 20, v * 4))[None]).astype(F32)
    if m == "paving":
        tiles = (np.mod(u, 0.5) < 0.025) | (np.mod(v, 0.5) < 0.025)
        return (color * np.where(tiles, F32(0.7), F32(1.0))[None] * (0.9 + 0.2 * _noise(lat, u * 2, v * 2))[None]).astype(F32)
    if m == "cabin":  # side windows
        lv = v / F32(max(2 * float(prim.half[1]), 1e-3))
        glass = (face != 1) & (lv > 0.25)
        return np.where(glass[None], np.array([0.05, 0.06, 0.08], F32)[:, None], color).astype(F32)
    return np.repeat(color, p.shape[1], axis=1).astype(F32)


def _sun_shadow(prims: list, sun: np.ndarray, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """True where an object blocks the (directional) sun from surface points ``p``.

    Points are projected along the sun onto a plane and sorted by one coordinate there, so each object
    tests only the points in the slab its bounding sphere shadows (then the exact ray test)."""
    n = p.shape[1]
    blocked = np.zeros(n, dtype=bool)
    if n == 0:
        return blocked
    origin = p + F32(2e-3) * normal
    s = sun.astype(np.float64)
    e1 = np.cross(s, [0.0, 1.0, 0.0] if abs(s[1]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(s, e1)
    a = (e1[0] * origin[0] + e1[1] * origin[1] + e1[2] * origin[2]).astype(F32)
    b = (e2[0] * origin[0] + e2[1] * origin[1] + e2[2] * origin[2]).astype(F32)
    along = (s[0] * origin[0] + s[1] * origin[1] + s[2] * origin[2]).astype(F32)
    order = np.argsort(a, kind="stable")
    a_sorted = a[order]
    for prim in prims:
        c = prim.center.astype(np.float64)
        r = prim.radius * 1.01 + 1e-3
        ca, cb, cs = float(c @ e1), float(c @ e2), float(c @ s)
        lo, hi = np.searchsorted(a_sorted, [ca - r, ca + r])
        idx = order[lo:hi]
        idx = idx[(np.abs(b[idx] - F32(cb)) < F32(r)) & (along[idx] < F32(cs + r)) & ~blocked[idx]]
        if idx.size:
            sdir = np.repeat(sun.astype(F32)[:, None], idx.size, axis=1)
            t, _ = prim.hit(origin[:, idx], sdir, eps=1e-3)
            blocked[idx[np.isfinite(t)]] = True
    return blocked
