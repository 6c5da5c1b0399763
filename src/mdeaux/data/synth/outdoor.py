"""Render outdoor frames as KITTI- and DIODE-like sensors see them, ray cast in vectorised numpy.

The scene comes from ``outdoor_scene.sample_outdoor_scene``, the surface colours from
``outdoor_shading``. Shading is Lambertian with a directional sun (shadows cast by every object) and
a sky ambient term; the RGB goes through the sensor model of ``sensor._sensor_rgb`` (exposure,
vignetting, gamma, noise, 8 bits). Depth is the noise-free z-depth along the optical axis; rays that
hit nothing (or the ground beyond ``FAR``) are sky and have no valid depth (0). ``lidar_sparsify``
keeps the depth only where the rings of a Velodyne-like scanner hit (KITTI-like sparse ground truth).
Everything random comes from ``np.random.Generator(np.random.PCG64(seed))``: the same seeds give
byte-identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mdeaux.data.synth.camera import Camera, Intrinsics, _ray_directions
from mdeaux.data.synth.outdoor_scene import (
    DRIVE_STEP,
    OUTDOOR_CLASSES,
    OutdoorScene,
    sample_outdoor_camera,
    sample_outdoor_scene,
)
from mdeaux.data.synth.outdoor_shading import _ground_albedo, _prim_albedo, _sun_shadow
from mdeaux.data.synth.primitives import _cone_candidates, _dot
from mdeaux.data.synth.render import _class_lut
from mdeaux.data.synth.sensor import _sensor_rgb

F32 = np.float32

KITTI_FOCAL = 721.5377  # px, 3rd column of the toolbox KITTI split lines for 2011_09_26 (splits/kitti_eigen_*.txt)
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375  # size of a KITTI annotated GT PNG and its image_02 frame
DIODE_WIDTH, DIODE_HEIGHT = 1024, 768  # DIODE RGB is 1024x768 (diode-dataset/diode-devkit README.md)
DIODE_FOCAL = 886.81  # px (our choice: about a 60 deg horizontal field of view at 1024 px, DIODE-like)
FAR = 1000.0  # m; ground hits beyond count as sky (the horizon), our choice
VISIBLE_BEHIND, VISIBLE_AHEAD = 30.0, 260.0  # m; prims outside [z - behind, z + ahead] are skipped per frame


def kitti_intrinsics(width: int = KITTI_WIDTH, height: int = KITTI_HEIGHT) -> Intrinsics:
    """KITTI-like intrinsics: focal 721.5377 px at 1242 wide (scaled with the width), centred principal point."""
    if width < 8 or height < 8:
        raise ValueError(f"image size {width}x{height} is too small (expected at least 8x8)")
    f = KITTI_FOCAL * width / KITTI_WIDTH
    return Intrinsics(width, height, f, f, width / 2.0, height / 2.0)


def diode_intrinsics(width: int = DIODE_WIDTH, height: int = DIODE_HEIGHT) -> Intrinsics:
    if width < 8 or height < 8:
        raise ValueError(f"image size {width}x{height} is too small (expected at least 8x8)")
    f = DIODE_FOCAL * width / DIODE_WIDTH
    return Intrinsics(width, height, f, f, width / 2.0, height / 2.0)


@dataclass(frozen=True)
class OutdoorFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, z-depth, 0 = sky (no valid depth)
    labels: np.ndarray  # (H, W) int32 class ids from the caller's mapping
    intrinsics: Intrinsics
    camera: Camera
    driving: bool


def _screen_candidates(prim, camera: Camera, pix: np.ndarray, d: np.ndarray, d_len: np.ndarray,
                       reach: np.ndarray) -> np.ndarray:
    """Pixels whose rays may meet the primitive: the screen rectangle of its bounding sphere when the
    sphere lies in front of the camera, else the cone test of ``primitives._cone_candidates`` over all rays."""
    k = camera.intrinsics
    r = prim.radius * 1.01 + 1e-3
    x, y, z = (camera.rotation.T.astype(np.float64) @ (prim.center - camera.position).astype(np.float64)).tolist()
    if z - r < 0.05:
        return _cone_candidates(prim, camera.position, d, d_len, reach)
    near, far = z - r, z + r
    xs = ((x - r) / near, (x - r) / far, (x + r) / near, (x + r) / far)
    ys = ((y - r) / near, (y - r) / far, (y + r) / near, (y + r) / far)
    u0 = max(int(math.floor(k.cx + k.fx * min(xs) - 0.5)) - 1, 0)
    u1 = min(int(math.ceil(k.cx + k.fx * max(xs) - 0.5)) + 1, k.width - 1)
    v0 = max(int(math.floor(k.cy + k.fy * min(ys) - 0.5)) - 1, 0)
    v1 = min(int(math.ceil(k.cy + k.fy * max(ys) - 0.5)) + 1, k.height - 1)
    if u0 > u1 or v0 > v1:
        return np.zeros(0, dtype=np.int64)
    idx = pix[v0 : v1 + 1, u0 : u1 + 1].ravel()
    dist = math.sqrt(x * x + y * y + z * z)
    return idx[reach[idx] > F32(dist - r)]


def render_scene(scene: OutdoorScene, camera: Camera, rng: np.random.Generator, classes: Mapping[str, int],
                 other: int | None = None) -> OutdoorFrame:
    k = camera.intrinsics
    H, W = k.height, k.width
    d = _ray_directions(camera)
    o = camera.position[:, None]
    n_rays = d.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[1] < 0, -o[1] / d[1], F32(np.inf)).astype(F32)
    d_len = np.sqrt(_dot(d, d))
    t = np.where(t * d_len > F32(FAR), F32(np.inf), t)
    surf = np.where(np.isfinite(t), 0, -1).astype(np.int32)  # -1 sky, 0 ground, 1 + i prim i
    face = np.zeros(n_rays, dtype=np.int8)
    cz = float(camera.position[2])
    pix = np.arange(n_rays).reshape(H, W)
    visible = [i for i, pr in enumerate(scene.prims)
               if not scene.driving or (cz - VISIBLE_BEHIND - pr.radius < float(pr.center[2]) < cz + VISIBLE_AHEAD + pr.radius)]
    for i in visible:
        prim = scene.prims[i]
        idx = _screen_candidates(prim, camera, pix, d, d_len, t * d_len)
        if idx.size == 0:
            continue
        t_hit, f_hit = prim.hit(o, d[:, idx])
        closer = t_hit < t[idx]
        sel = idx[closer]
        t[sel] = t_hit[closer]
        surf[sel] = 1 + i
        face[sel] = f_hit[closer]
    hit = surf >= 0
    p = o + d * np.where(hit, t, F32(0))[None]

    names_index = {name: i for i, name in enumerate(OUTDOOR_CLASSES)}
    label = np.full(n_rays, names_index["sky"], dtype=np.int16)
    albedo = np.zeros((3, n_rays), dtype=F32)
    normal = np.zeros((3, n_rays), dtype=F32)
    ground = np.nonzero(surf == 0)[0]
    if ground.size:
        albedo[:, ground], label[ground] = _ground_albedo(scene, p[:, ground])
        normal[1, ground] = 1.0
    for s in np.unique(surf[surf > 0]):
        idx = np.nonzero(surf == s)[0]
        prim = scene.prims[int(s) - 1]
        albedo[:, idx] = _prim_albedo(scene, int(s) - 1, p[:, idx], face[idx])
        nrm = prim.normal(p[:, idx], face[idx]).astype(F32)
        flip = _dot(nrm, d[:, idx]) > 0  # normals face the camera
        normal[:, idx] = np.where(flip[None], -nrm, nrm)
        label[idx] = names_index[prim.cls]

    # Lambertian: sky ambient (more from above) + sun with cast shadows
    irr = scene.sky_ambient[:, None] * (F32(0.55) + F32(0.45) * normal[1])[None]
    cos = np.maximum(_dot(normal, np.broadcast_to(scene.sun[:, None], normal.shape)), 0) * hit
    lit = np.nonzero(cos > 0)[0]
    shadow = np.zeros(n_rays, dtype=bool)
    if lit.size:
        shadow[lit] = _sun_shadow([scene.prims[i] for i in visible], scene.sun, p[:, lit], normal[:, lit])
    irr = irr + scene.sun_color[:, None] * (cos * ~shadow)[None]
    radiance = albedo * irr
    sky = ~hit
    if sky.any():  # sky colour by elevation, emissive
        elev = np.clip(d[1, sky] / d_len[sky], 0, 1)
        sky_col = scene.sky_horizon[:, None] + (scene.sky_zenith - scene.sky_horizon)[:, None] * np.sqrt(elev)[None]
        albedo[:, sky] = sky_col.astype(F32)
    rgb = _sensor_rgb(radiance, albedo, sky, rng, d).reshape(3, H, W).transpose(1, 2, 0)
    depth = np.where(hit, t, F32(0)).reshape(H, W).astype(F32)
    labels = _class_lut(OUTDOOR_CLASSES, classes, other)[label].reshape(H, W)
    return OutdoorFrame(np.ascontiguousarray(rgb), depth, labels, k, camera, scene.driving)


def render_outdoor(
    seed: int | np.random.SeedSequence,
    *,
    width: int,
    height: int,
    intrinsics: Intrinsics | None = None,
    driving: bool,
    classes: Mapping[str, int],
    other: int | None = None,
    scene_seed: int | np.random.SeedSequence | None = None,
    frame_index: int = 0,
) -> OutdoorFrame:
    """Render one outdoor frame. The scene comes from ``scene_seed`` (default ``seed``), the view and sensor
    from ``seed``; driving frames ``frame_index`` steps of ``DRIVE_STEP`` down the road (sequential frames)."""
    if intrinsics is None:
        intrinsics = kitti_intrinsics(width, height) if driving else diode_intrinsics(width, height)
    if (intrinsics.width, intrinsics.height) != (width, height):
        raise ValueError(f"intrinsics are for {intrinsics.width}x{intrinsics.height}, not {width}x{height}")
    rng = np.random.Generator(np.random.PCG64(seed))
    scene_rng = rng if scene_seed is None else np.random.Generator(np.random.PCG64(scene_seed))
    scene = sample_outdoor_scene(scene_rng, driving)
    camera = sample_outdoor_camera(rng, scene, intrinsics, frame_index)
    return render_scene(scene, camera, rng, classes, other)


# -- LiDAR-like sparse ground truth (KITTI) ---------------------------------------------------------
# Velodyne HDL-64E: 64 rings from +2.0 to -24.8 deg elevation, ~120 m range, mounted ~8 cm above and
# ~27 cm behind the left colour camera (values from the KITTI setup description, Geiger et al. 2013;
# our choice to model them this way). The annotated KITTI ground truth accumulates several scans
# (Uhrig et al. 2017), which fills the gaps between rings on near surfaces: ``scans`` poses along the
# drive, each with its own azimuth phase.
LIDAR_RINGS = np.linspace(2.0, -24.8, 64)
LIDAR_RANGE = 120.0
LIDAR_OFFSET = (0.0, -0.08, -0.27)  # camera frame (x right, y down, z forward), m
LIDAR_AZIMUTH_STEP = 0.17  # deg between firings at 10 Hz


def lidar_sparsify(depth: np.ndarray, intrinsics: Intrinsics, rng: np.random.Generator, *, scans: int = 3,
                   scan_spacing: float = DRIVE_STEP, azimuth_duty: float = 0.55) -> np.ndarray:
    """Keep ``depth`` only where a LiDAR ring (of any of ``scans`` poses along the drive) hits; 0 elsewhere."""
    H, W = depth.shape
    k = intrinsics
    u = (np.arange(W, dtype=F32) + F32(0.5) - F32(k.cx)) / F32(k.fx)
    v = (np.arange(H, dtype=F32) + F32(0.5) - F32(k.cy)) / F32(k.fy)
    z = depth.astype(F32)
    x, y = u[None, :] * z, v[:, None] * z
    keep = np.zeros(depth.shape, dtype=bool)
    tol = 0.5 / k.fy  # half a pixel row (rad): each ring marks about one row
    rings = np.radians(LIDAR_RINGS).astype(F32)
    spacing = float(rings[0] - rings[1])
    for j in range(scans):
        shift = (j - (scans - 1) / 2) * scan_spacing
        qx, qy, qz = x - F32(LIDAR_OFFSET[0]), y - F32(LIDAR_OFFSET[1]), z - F32(LIDAR_OFFSET[2] + shift)
        horiz = np.sqrt(qx * qx + qz * qz)
        elev = np.arctan2(-qy, horiz)
        rng_ = np.sqrt(horiz * horiz + qy * qy)
        ring_pos = (F32(rings[0]) - elev) / F32(spacing)  # 0 .. 63 on the rings
        near = np.abs(ring_pos - np.rint(ring_pos)) * F32(spacing) < F32(tol)
        inside = (ring_pos > -0.5) & (ring_pos < 63.5)
        az = np.degrees(np.arctan2(qx, qz)) / F32(LIDAR_AZIMUTH_STEP) + F32(rng.uniform(0, 1))
        fire = np.mod(az, 1.0) < azimuth_duty
        keep |= near & inside & fire & (rng_ < LIDAR_RANGE) & (qz > 0.5)
    return np.where(keep & (depth > 0), depth, F32(0)).astype(F32)
