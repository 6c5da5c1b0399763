"""Ray cast a procedural indoor room into a :class:`Frame`, in vectorised numpy.

``render`` casts one ray per pixel from a pinhole camera and returns a :class:`Frame`: an RGB image
(Lambertian shading by the camera's lamp, and optionally the room's lights with shadows; procedural
textures, sensor noise), the noise-free z-depth, a Kinect-like raw depth with the artefacts of a
structured-light sensor, and per-pixel class ids. ``render_frame`` draws the room (``room.sample_room``) and the camera (``room.sample_camera``)
from seeds first. Everything random comes from ``np.random.Generator(np.random.PCG64(seed))``: the
same seeds give byte-identical arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mdeaux.data.synth.camera import (
    NYU_HEIGHT,
    NYU_WIDTH,
    Camera,
    Intrinsics,
    _ray_directions,
    nyu_intrinsics,
)
from mdeaux.data.synth.primitives import _cone_candidates, _dot
from mdeaux.data.synth.room import (
    CEILING,
    FLOOR,
    ROOM_CLASSES,
    WALL_X0,
    WALL_X1,
    WALL_Z0,
    WALL_Z1,
    Room,
    _other_decals,
    sample_camera,
    sample_room,
    surface_uv,
)
from mdeaux.data.synth.room_shading import _decal_albedo, _room_albedo
from mdeaux.data.synth.sensor import _sensor_depth, _sensor_rgb
from mdeaux.data.synth.textures import _material

F32 = np.float32

# The camera carries a lamp and the rooms' own lights are off (our choice, not from any source): a surface's
# irradiance falls off with the square of its distance from the camera, and with the fixed exposure of
# sensor.EXPOSURE a pixel's brightness says how far its surface is, a depth cue that the mini profile's
# 4-layer ViT reads at a quarter of the resolution. Under the rooms' lights alone, with auto-exposure, it could
# not: trained end to end (tools/mini_ceiling.py, 1,000 rooms, 1,500 steps) it reached 0.88 x the constant's
# AbsRel; with the lamp and the fixed exposure, 0.42 x, or 0.48 x with the rooms' lights at 0.2. On the mini
# grid at 0.2 one NYUv2 baseline seed stayed at 0.89 x the constant, a hair from the learning check's bar.
LAMP_POWER = 5.0  # in room.Light.power units: irradiance LAMP_POWER * cos / distance^2 (m)
ROOM_LIGHTS = 0.0  # scale of each room's ambient and point lights (their fittings glow regardless)


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, z-depth along the optical axis, noise-free
    raw_depth: np.ndarray  # (H, W) float32 metres, Kinect-like, 0 = no reading, mm steps
    labels: np.ndarray  # (H, W) int32 class ids from the caller's mapping
    intrinsics: Intrinsics
    scene_type: str


def _cast_room(o: np.ndarray, d: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """Exit point of rays from inside the room box: t and the room surface index."""
    t_best = np.full(d.shape[1], np.inf, dtype=F32)
    surf = np.zeros(d.shape[1], dtype=np.int16)
    planes = ((0, WALL_X0, WALL_X1), (1, FLOOR, CEILING), (2, WALL_Z0, WALL_Z1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, low, high in planes:
            da = d[axis]
            t = np.where(da > 0, (F32(size[axis]) - o[axis]) / da, -o[axis] / da)
            t = np.where(da == 0, F32(np.inf), t)
            closer = t < t_best
            t_best = np.where(closer, t, t_best)
            surf = np.where(closer, np.where(da > 0, high, low), surf).astype(np.int16)
    return t_best, surf


def _shadowed(prims: Sequence, light: np.ndarray, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """True where an object lies between the surface point p and the point light."""
    blocked = np.zeros(p.shape[1], dtype=bool)
    from_light = p - light[:, None]
    dist = np.sqrt(_dot(from_light, from_light))
    origin = p + F32(1e-3) * normal
    for prim in prims:
        idx = _cone_candidates(prim, light, from_light, dist, dist)
        idx = idx[~blocked[idx]]
        if idx.size:
            t, _ = prim.hit(origin[:, idx], light[:, None] - origin[:, idx], eps=1e-3)
            blocked[idx[t < 1.0]] = True
    return blocked


def _class_lut(names: Sequence[str], classes: Mapping[str, int], other: int | None) -> np.ndarray:
    ids = []
    for name in names:
        if name in classes:
            ids.append(int(classes[name]))
        elif other is not None:
            ids.append(int(other))
        else:
            raise KeyError(
                f"class {name!r} is rendered but missing from the class mapping "
                f"(mapping has {len(classes)} names; pass other=<id> to map unlisted classes)"
            )
    return np.asarray(ids, dtype=np.int32)


def _room_lights(room: Room, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(3, N) irradiance at surface points ``p`` from the room's ambient and point lights, with the shadows
    cast by its objects."""
    irradiance = np.full(p.shape, F32(room.ambient), dtype=F32)
    for light in room.lights:
        light_pos = np.asarray(light.position, dtype=F32)
        to_light = light_pos[:, None] - p
        dist2 = _dot(to_light, to_light)
        cos = np.maximum(_dot(normal, to_light), 0) / np.sqrt(dist2)
        lit = np.nonzero(cos > 0)[0]
        shadow = np.zeros(p.shape[1], dtype=bool)
        shadow[lit] = _shadowed(room.prims, light_pos, p[:, lit], normal[:, lit])
        e = F32(light.power) * cos / (dist2 + F32(0.5)) * ~shadow
        irradiance += np.asarray(light.color, dtype=F32)[:, None] * e[None]
    return irradiance


def render(
    room: Room,
    camera: Camera,
    rng: np.random.Generator,
    classes: Mapping[str, int],
    other: int | None = None,
) -> Frame:
    """Ray cast ``room`` from ``camera``; ``classes`` maps class names to label ids (unlisted -> ``other``)."""
    k = camera.intrinsics
    H, W = k.height, k.width
    d = _ray_directions(camera)
    o = camera.position[:, None]
    t, surf = _cast_room(o, d, room.size)
    face = np.zeros(t.shape, dtype=np.int8)
    d_len = np.sqrt(_dot(d, d))
    for index, prim in enumerate(room.prims):
        idx = _cone_candidates(prim, camera.position, d, d_len, t * d_len)
        if idx.size == 0:
            continue
        t_hit, f_hit = prim.hit(o, d[:, idx])
        closer = t_hit < t[idx]
        sel = idx[closer]
        t[sel] = t_hit[closer]
        surf[sel] = 6 + index
        face[sel] = f_hit[closer]
    p = o + d * t[None]

    decals = list(room.decals) + _other_decals(rng, room, surf, p)
    names: list[str] = list(dict.fromkeys([*ROOM_CLASSES.values(), *(pr.cls for pr in room.prims), *(dc.cls for dc in decals)]))
    name_index = {name: i for i, name in enumerate(names)}
    label = np.zeros(t.shape, dtype=np.int32)
    albedo = np.zeros((3, t.size), dtype=F32)
    normal = np.zeros((3, t.size), dtype=F32)
    emissive = np.zeros(t.size, dtype=bool)
    glass = np.zeros(t.size, dtype=bool)

    for s in np.unique(surf):
        idx = np.nonzero(surf == s)[0]
        ps = p[:, idx]
        if s < 6:
            albedo[:, idx] = _room_albedo(room, int(s), ps)
            n = np.zeros((3, idx.size), dtype=F32)
            axis = {FLOOR: 1, CEILING: 1, WALL_X0: 0, WALL_X1: 0, WALL_Z0: 2, WALL_Z1: 2}[int(s)]
            n[axis] = 1.0 if s in (FLOOR, WALL_X0, WALL_Z0) else -1.0
            normal[:, idx] = n
            label[idx] = name_index[ROOM_CLASSES[int(s)]]
            u, v = surface_uv(int(s), ps)
            for decal in decals:
                if decal.surface != s:
                    continue
                inside = (u >= decal.u0) & (u <= decal.u1) & (v >= decal.v0) & (v <= decal.v1)
                if not inside.any():
                    continue
                j = idx[inside]
                a, e, g = _decal_albedo(decal, room.noise, u[inside], v[inside])
                albedo[:, j], emissive[j], glass[j] = a, e, g
                label[j] = name_index[decal.cls]
        else:
            prim = room.prims[int(s) - 6]
            fs = face[idx]
            u, v = prim.uv(ps, fs)
            albedo[:, idx] = _material(room.noise, prim.material, prim.color, u, v)
            normal[:, idx] = prim.normal(ps, fs)
            label[idx] = name_index[prim.cls]

    # Lambertian shading by the camera's lamp (at the camera: it casts no visible shadow), plus the room's own
    # lights scaled by ROOM_LIGHTS
    irradiance = (F32(LAMP_POWER) * np.abs(_dot(normal, d)) / d_len / (np.square(t * d_len) + F32(0.05)))[None]
    if ROOM_LIGHTS > 0:
        irradiance = irradiance + F32(ROOM_LIGHTS) * _room_lights(room, p, normal)
    radiance = albedo * irradiance

    rgb = _sensor_rgb(radiance, albedo, emissive, rng, d).reshape(3, H, W).transpose(1, 2, 0)
    depth = t.reshape(H, W).astype(F32)
    cos_view = np.abs(_dot(normal, d)) / d_len
    raw = _sensor_depth(depth, cos_view.reshape(H, W), glass.reshape(H, W), rng, k.fx)
    labels = _class_lut(names, classes, other)[label].reshape(H, W)
    return Frame(np.ascontiguousarray(rgb), depth, raw, labels, k, room.scene_type)


def render_frame(
    seed: int | np.random.SeedSequence,
    classes: Mapping[str, int],
    *,
    width: int = NYU_WIDTH,
    height: int = NYU_HEIGHT,
    scene_type: str | None = None,
    room_seed: int | np.random.SeedSequence | None = None,
    other: int | None = None,
) -> Frame:
    """Render one frame. The room comes from ``room_seed`` (default: ``seed``), the view and sensor from ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    room_rng = rng if room_seed is None else np.random.Generator(np.random.PCG64(room_seed))
    room = sample_room(room_rng, scene_type)
    camera = sample_camera(rng, room, nyu_intrinsics(width, height))
    return render(room, camera, rng, classes, other)
