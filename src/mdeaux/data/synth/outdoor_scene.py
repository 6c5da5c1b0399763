"""Procedural outdoor and driving scenes: what a scene holds and how scenes and camera poses are drawn.

World frame as in ``room.py``: y points up, the ground is the plane y = 0. A scene holds

* the ground: road (with lane markings) and terrain for driving scenes; terrain with paved plazas and
  paths (class "sidewalk", Cityscapes' label for paved pedestrian areas) for open outdoor scenes;
* raised sidewalks (boxes) along the road, buildings (boxes) whose facades carry window grids,
  trees (a trunk box and a sphere crown), poles (thin boxes) and cars (a body and a cabin box);
* the sky and the sun (direction, colours).

Class names are Cityscapes names (labelIds / trainIds names), so Cityscapes, ADE20K-style and other
vocabularies can map them: see ``OUTDOOR_CLASSES``. Everything random comes from the caller's
``np.random.Generator``: the same seeds give the same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mdeaux.data.synth.camera import Camera, Intrinsics, camera_rotation
from mdeaux.data.synth.primitives import Box, Sphere

F32 = np.float32

KITTI_CAMERA_HEIGHT = 1.65  # m above the road (our choice: KITTI's camera rig height is about 1.65 m)
DRIVE_STEP = 0.9  # m the car moves between consecutive frames (KITTI records at 10 Hz; ~30 km/h, our choice)
SCENE_LENGTH = 420.0  # m of road a driving scene is built for (our choice)
PARKING_STRIP = 2.2  # m of parking lane on each side of the driving lanes (our choice)

# Cityscapes class names (labelIds table of cityscapesscripts/helpers/labels.py) of every surface.
OUTDOOR_CLASSES = ("road", "sidewalk", "building", "vegetation", "terrain", "sky", "car", "pole")


def all_outdoor_class_names() -> tuple[str, ...]:
    """Every class name ``render_outdoor`` can emit."""
    return OUTDOOR_CLASSES


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
