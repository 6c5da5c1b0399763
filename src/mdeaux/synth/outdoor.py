"""Procedural outdoor and driving scenes, ray cast in vectorised numpy (the outdoor sibling of render.py).

World frame as in ``render.py``: y points up, the ground is the plane y = 0. A scene holds

* the ground: road (with lane markings) and terrain for driving scenes; terrain with paved plazas and
  paths (class "sidewalk", Cityscapes' label for paved pedestrian areas) for open outdoor scenes;
* raised sidewalks (boxes) along the road, buildings (boxes) whose facades carry window grids,
  trees (a trunk box and a sphere crown), poles (thin boxes) and cars (a body and a cabin box);
* the sky: rays that hit nothing (or the ground beyond ``FAR``) have no valid depth (0).

Shading is Lambertian with a directional sun (shadows cast by every object) and a sky ambient term;
the RGB goes through ``render``'s sensor model (exposure, vignetting, gamma, noise, 8 bits). Depth is
the noise-free z-depth along the optical axis. ``lidar_sparsify`` keeps the depth only where the
rings of a Velodyne-like scanner hit (KITTI-like sparse ground truth).

Class names are Cityscapes names (labelIds / trainIds names), so Cityscapes, ADE20K-style and other
vocabularies can map them: see ``OUTDOOR_CLASSES``. Everything random comes from
``np.random.Generator(np.random.PCG64(seed))``: the same seeds give byte-identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mdeaux.synth.render import (
    Box,
    Camera,
    Intrinsics,
    Sphere,
    _class_lut,
    _cone_candidates,
    _dot,
    _fbm,
    _noise,
    _ray_directions,
    _sensor_rgb,
    camera_rotation,
)

F32 = np.float32

# -- constants -------------------------------------------------------------------------------------
KITTI_FOCAL = 721.5377  # px, 3rd column of the toolbox KITTI split lines for 2011_09_26 (datasets.md §0.2)
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375  # KITTI GT PNG / image_02 frame size (datasets.md §12, verified file)
KITTI_CAMERA_HEIGHT = 1.65  # m above the road (our choice: KITTI's camera rig height is about 1.65 m)
DIODE_WIDTH, DIODE_HEIGHT = 1024, 768  # DIODE RGB is 1024x768 (datasets.md §5)
DIODE_FOCAL = 886.81  # px (our choice: about a 60 deg horizontal field of view at 1024 px, DIODE-like)
FAR = 1000.0  # m; ground hits beyond count as sky (the horizon), our choice
DRIVE_STEP = 0.9  # m the car moves between consecutive frames (KITTI records at 10 Hz; ~30 km/h, our choice)
SCENE_LENGTH = 420.0  # m of road a driving scene is built for (our choice)
PARKING_STRIP = 2.2  # m of parking lane on each side of the driving lanes (our choice)
VISIBLE_BEHIND, VISIBLE_AHEAD = 30.0, 260.0  # m; prims outside [z - behind, z + ahead] are skipped per frame

# Cityscapes class names (labelIds table of cityscapesScripts labels.py, datasets.md §8) of every surface.
OUTDOOR_CLASSES = ("road", "sidewalk", "building", "vegetation", "terrain", "sky", "car", "pole")


def all_outdoor_class_names() -> tuple[str, ...]:
    """Every class name ``render_outdoor`` can emit."""
    return OUTDOOR_CLASSES


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


# -- scene ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Windows:
    """A window grid on a facade: column spacing, storey height, window size (m), glass albedo."""

    spacing: float
    storey: float
    width: float
    height: float
    sill: float
    offset: float
    glass: np.ndarray


@dataclass
class OutdoorScene:
    driving: bool
    prims: list  # Box | Sphere, each with .material in MATERIALS
    windows: dict[int, Windows]  # prim index -> window grid (buildings)
    road_half: float  # half width of the road incl. the parking strips (m); 0 for open scenes
    lane_width: float
    lanes: int
    ego_lane: int  # the lane the camera car drives in (no traffic there)
    plazas: list[tuple[float, float, float, float]]  # paved rectangles (x0, x1, z0, z1) of open scenes
    sun: np.ndarray  # (3,) unit vector towards the sun
    sun_color: np.ndarray
    sky_ambient: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    asphalt: np.ndarray
    paving: np.ndarray
    grass: np.ndarray
    dirt: np.ndarray
    noise: np.ndarray  # (64, 64) value-noise lattice


@dataclass(frozen=True)
class OutdoorFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, z-depth, 0 = sky (no valid depth)
    labels: np.ndarray  # (H, W) int32 class ids from the caller's mapping
    intrinsics: Intrinsics
    camera: Camera
    driving: bool


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _tint(rng: np.random.Generator, base, spread: float = 0.15) -> np.ndarray:
    c = np.asarray(base, dtype=np.float64) * rng.uniform(0.8, 1.2) * (1 + rng.uniform(-spread, spread, 3))
    return np.clip(c, 0.02, 0.95).astype(F32)


def _facade(rng: np.random.Generator) -> tuple[np.ndarray, Windows | None]:
    base = (
        (0.75, 0.7, 0.62), (0.6, 0.35, 0.25), (0.8, 0.78, 0.75), (0.55, 0.55, 0.55), (0.85, 0.75, 0.55),
    )[int(rng.integers(5))]
    color = _tint(rng, base)
    if rng.random() < 0.1:
        return color, None  # a blank wall
    storey = _u(rng, 2.8, 3.6)
    spacing = _u(rng, 1.8, 3.5)
    win = Windows(spacing, storey, spacing * _u(rng, 0.35, 0.65), storey * _u(rng, 0.4, 0.6), _u(rng, 0.7, 1.0),
                  _u(rng, 0, spacing), _tint(rng, (0.08, 0.1, 0.13), 0.3))
    return color, win


def _tree(rng: np.random.Generator, x: float, z: float, prims: list) -> None:
    trunk_h, crown = _u(rng, 1.8, 3.5), _u(rng, 1.4, 3.2)
    trunk_r = _u(rng, 0.1, 0.22)
    prims.append(Box("vegetation", (x, trunk_h / 2, z), (trunk_r, trunk_h / 2, trunk_r), 0.0,
                     _tint(rng, (0.3, 0.2, 0.12)), "bark"))
    prims.append(Sphere("vegetation", (x, trunk_h + crown * 0.8, z), crown, _tint(rng, (0.12, 0.28, 0.07), 0.25), "leaves"))


def _car(rng: np.random.Generator, x: float, z: float, yaw: float, prims: list) -> None:
    length, width, height = _u(rng, 3.8, 4.8), _u(rng, 1.65, 1.9), _u(rng, 0.65, 0.85)
    color = _tint(rng, (rng.uniform(0.1, 0.8),) * 3, 0.5)
    clear = 0.22  # ground clearance
    prims.append(Box("car", (x, clear + height / 2, z), (width / 2, height / 2, length / 2), yaw, color, "paint"))
    cabin_h = _u(rng, 0.45, 0.6)
    prims.append(Box("car", (x, clear + height + cabin_h / 2, z - 0.2 * math.cos(yaw)),
                     (width / 2 - 0.08, cabin_h / 2, length * 0.28), yaw, color, "cabin"))


def _building(rng: np.random.Generator, center, half, yaw: float, prims: list, windows: dict) -> None:
    color, win = _facade(rng)
    if win is not None:
        windows[len(prims)] = win
    prims.append(Box("building", center, half, yaw, color, "facade"))


def _sky_and_sun(rng: np.random.Generator) -> dict:
    elevation, azimuth = math.radians(_u(rng, 20, 65)), _u(rng, -math.pi, math.pi)
    sun = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)], F32)
    overcast = rng.random() < 0.25
    return dict(
        sun=sun,
        sun_color=np.full(3, 0.6 if overcast else 2.2, F32) * np.array([1.0, 0.97, 0.9], F32),
        sky_ambient=np.array([0.55, 0.6, 0.7], F32) * F32(1.2 if overcast else 0.7),
        sky_horizon=_tint(rng, (0.8, 0.85, 0.9) if overcast else (0.72, 0.82, 0.93), 0.05),
        sky_zenith=_tint(rng, (0.75, 0.78, 0.82) if overcast else (0.3, 0.5, 0.85), 0.1),
    )


def sample_outdoor_scene(rng: np.random.Generator, driving: bool) -> OutdoorScene:
    """Draw a street (``driving``) or an open outdoor scene (campus, park, plaza)."""
    prims: list = []
    windows: dict[int, Windows] = {}
    looks = _sky_and_sun(rng)
    materials = dict(
        asphalt=_tint(rng, (0.16, 0.16, 0.17), 0.05), paving=_tint(rng, (0.55, 0.53, 0.5), 0.08),
        grass=_tint(rng, (0.14, 0.3, 0.07), 0.2), dirt=_tint(rng, (0.4, 0.32, 0.22), 0.1),
        noise=rng.random((64, 64)).astype(F32),
    )
    plazas: list[tuple[float, float, float, float]] = []
    if driving:
        lanes = int(rng.integers(2, 5))
        lane_width = _u(rng, 3.0, 3.6)
        ego_lane = int(rng.integers(lanes))
        road_half = lanes * lane_width / 2 + PARKING_STRIP
        curb = _u(rng, 0.1, 0.16)
        for side in (-1, 1):
            sw = _u(rng, 1.5, 4.0)
            x_in = road_half
            prims.append(Box("sidewalk", (side * (x_in + sw / 2), curb / 2, SCENE_LENGTH / 2 - 40),
                             (sw / 2, curb / 2, SCENE_LENGTH / 2), 0.0, materials["paving"], "paving"))
            x_out = x_in + sw
            # poles along the curb, trees on the sidewalk
            z = _u(rng, -30, 0)
            while z < SCENE_LENGTH:
                prims.append(Box("pole", (side * (x_in + 0.4), 3.5, z), (0.09, 3.5, 0.09), 0.0, _tint(rng, (0.45, 0.45, 0.47), 0.02), "metal"))
                z += _u(rng, 25, 50)
            if rng.random() < 0.6:
                z = _u(rng, -30, 0)
                while z < SCENE_LENGTH:
                    _tree(rng, side * (x_out - min(1.0, sw / 2)), z, prims)
                    z += _u(rng, 8, 20)
            # buildings (or open land with trees) beyond the sidewalk
            z = -40.0
            while z < SCENE_LENGTH:
                length = _u(rng, 8, 30)
                if rng.random() < 0.75:
                    setback = 0.0 if rng.random() < 0.6 else _u(rng, 2, 8)
                    depth, height = _u(rng, 8, 16), _u(rng, 5, 24)
                    _building(rng, (side * (x_out + setback + depth / 2), height / 2, z + length / 2),
                              (depth / 2, height / 2, length / 2 - 0.3), 0.0, prims, windows)
                else:
                    for _ in range(int(rng.integers(1, 4))):
                        _tree(rng, side * (x_out + _u(rng, 2, 12)), z + _u(rng, 0, length), prims)
                z += length
            # parked cars along the curb
            z = _u(rng, -20, 10)
            while z < SCENE_LENGTH:
                if rng.random() < 0.5:
                    _car(rng, side * (road_half - 1.1), z, 0.0, prims)
                z += _u(rng, 5.5, 12)
        # traffic in the lanes (not the ego lane near the start)
        others = [lane for lane in range(lanes) if lane != ego_lane]
        for _ in range(int(rng.integers(3, 10))):
            lane = others[int(rng.integers(len(others)))]
            x = _lane_center(road_half, lane_width, lane)
            _car(rng, x, _u(rng, 15, SCENE_LENGTH), float(rng.uniform(-0.05, 0.05)), prims)
    else:
        lanes, lane_width, road_half, ego_lane = 0, 0.0, 0.0, 0
        for _ in range(int(rng.integers(1, 4))):  # paved plazas and paths
            cx, cz = _u(rng, -25, 25), _u(rng, -25, 40)
            hw, hd = _u(rng, 2, 20), _u(rng, 2, 30)
            plazas.append((cx - hw, cx + hw, cz - hd, cz + hd))
        for _ in range(int(rng.integers(2, 9))):
            dist, ang = _u(rng, 12, 90), _u(rng, -math.pi, math.pi)
            w, d, h = _u(rng, 10, 40), _u(rng, 8, 25), _u(rng, 4, 30)
            _building(rng, (dist * math.sin(ang), h / 2, dist * math.cos(ang)), (w / 2, h / 2, d / 2),
                      _u(rng, -math.pi, math.pi), prims, windows)
        for _ in range(int(rng.integers(4, 25))):
            dist, ang = _u(rng, 4, 70), _u(rng, -math.pi, math.pi)
            _tree(rng, dist * math.sin(ang), dist * math.cos(ang), prims)
        for _ in range(int(rng.integers(0, 4))):
            dist, ang = _u(rng, 4, 30), _u(rng, -math.pi, math.pi)
            prims.append(Box("pole", (dist * math.sin(ang), 2.5, dist * math.cos(ang)), (0.07, 2.5, 0.07), 0.0,
                             _tint(rng, (0.4, 0.4, 0.42), 0.02), "metal"))
        for _ in range(int(rng.integers(0, 4))):
            dist, ang = _u(rng, 6, 40), _u(rng, -math.pi, math.pi)
            _car(rng, dist * math.sin(ang), dist * math.cos(ang), _u(rng, -math.pi, math.pi), prims)
    # drop objects whose footprint swallows the origin (the camera stands there in open scenes)
    if not driving:
        keep = [i for i, p in enumerate(prims) if math.hypot(float(p.center[0]), float(p.center[2])) > p.radius + 1.0]
        windows = {keep.index(i): w for i, w in windows.items() if i in keep}
        prims = [prims[i] for i in keep]
    return OutdoorScene(driving, prims, windows, road_half, lane_width, lanes, ego_lane, plazas, **looks, **materials)


def _lane_center(road_half: float, lane_width: float, lane: int) -> float:
    return -(road_half - PARKING_STRIP) + lane_width * (lane + 0.5)


def sample_outdoor_camera(rng: np.random.Generator, scene: OutdoorScene, intrinsics: Intrinsics, frame_index: int = 0) -> Camera:
    """Driving: in the ego lane at KITTI height, ``frame_index`` steps down the road. Open: near the origin."""
    if scene.driving:
        x = _lane_center(scene.road_half, scene.lane_width, scene.ego_lane) + _u(rng, -0.3, 0.3)
        z = frame_index * DRIVE_STEP
        pos = np.array([x, KITTI_CAMERA_HEIGHT, z], F32)
        rot = camera_rotation(_u(rng, -0.03, 0.03), _u(rng, -0.02, 0.02), _u(rng, -0.01, 0.01))
    else:
        pos = np.array([_u(rng, -1, 1), _u(rng, 1.0, 1.8), _u(rng, -1, 1)], F32)
        rot = camera_rotation(_u(rng, -math.pi, math.pi), math.radians(_u(rng, -12, 10)), _u(rng, -0.03, 0.03))
    return Camera(intrinsics, pos, rot)


# -- shading ----------------------------------------------------------------------------------------
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


def _screen_candidates(prim, camera: Camera, pix: np.ndarray, d: np.ndarray, d_len: np.ndarray,
                       reach: np.ndarray) -> np.ndarray:
    """Pixels whose rays may meet the primitive: the screen rectangle of its bounding sphere when the
    sphere lies in front of the camera, else ``render``'s cone test over all rays."""
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
