"""Procedural indoor rooms: what a room may hold, its description, and how rooms and camera poses are drawn.

A room is the inside of an axis-aligned box (floor y = 0, ceiling y = height, walls at x = 0, x =
width, z = 0, z = depth; y points up). Furniture items are boxes standing on the floor (optionally
turned about the vertical axis; tables and desks are a top on four legs), plus spheres (balls,
ottomans on the floor; lamps and vases on top of furniture). Flat "decals" on the room surfaces add
doors, windows, paintings, posters, rugs, ceiling lights and small unlisted clutter (the clutter is
drawn per view, ``_other_decals``). Everything random comes from the caller's
``np.random.Generator``: the same seeds give the same rooms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mdeaux.data.synth.camera import Camera, Intrinsics, camera_rotation
from mdeaux.data.synth.primitives import Box, Sphere

F32 = np.float32

# -- what a room may hold ------------------------------------------------------------------------
# Scene types of NYUv2 (a subset of the sceneTypes of nyu_depth_v2_labeled.mat; the toolbox test list
# splits/nyu_test.txt groups its frames by them).
SCENE_TYPES = (
    "bathroom", "bedroom", "bookstore", "classroom", "dining_room", "kitchen", "living_room", "office",
)

# Room surfaces, in the order of the ``surf`` buffer; objects follow from index 6.
FLOOR, CEILING, WALL_X0, WALL_X1, WALL_Z0, WALL_Z1 = range(6)
WALLS = (WALL_X0, WALL_X1, WALL_Z0, WALL_Z1)
ROOM_CLASSES = {FLOOR: "floor", CEILING: "ceiling", WALL_X0: "wall", WALL_X1: "wall", WALL_Z0: "wall", WALL_Z1: "wall"}


@dataclass(frozen=True)
class ItemKind:
    """A box-shaped furniture class: footprint/height ranges (m), where it stands, its material."""

    width: tuple[float, float]
    depth: tuple[float, float]
    height: tuple[float, float]
    against_wall: float  # probability of standing with its back to a wall
    material: str  # "wood" | "fabric" | "paint" | "metal"
    legs: bool = False  # a top on four legs (tables, desks)


# Plausible furniture sizes (our choice); every name is an ADE20K class (registry.ADE20K_CLASSES).
BOX_KINDS: dict[str, ItemKind] = {
    "cabinet": ItemKind((0.4, 1.2), (0.35, 0.6), (0.6, 1.0), 0.9, "wood"),
    "table": ItemKind((0.8, 1.8), (0.6, 1.0), (0.70, 0.78), 0.2, "wood", legs=True),
    "coffee table": ItemKind((0.8, 1.3), (0.5, 0.7), (0.38, 0.48), 0.0, "wood", legs=True),
    "desk": ItemKind((1.0, 1.6), (0.6, 0.8), (0.72, 0.76), 0.7, "wood", legs=True),
    "bed": ItemKind((1.4, 2.0), (1.9, 2.1), (0.45, 0.65), 0.9, "fabric"),
    "sofa": ItemKind((1.6, 2.4), (0.8, 1.0), (0.7, 0.9), 0.7, "fabric"),
    "chest of drawers": ItemKind((0.6, 1.2), (0.4, 0.55), (0.7, 1.2), 0.9, "wood"),
    "box": ItemKind((0.2, 0.6), (0.2, 0.6), (0.15, 0.5), 0.3, "paint"),
    "bookcase": ItemKind((0.6, 1.2), (0.25, 0.4), (1.5, 2.2), 1.0, "wood"),
    "wardrobe": ItemKind((0.8, 1.8), (0.55, 0.65), (1.8, 2.3), 1.0, "wood"),
    "bathtub": ItemKind((1.5, 1.8), (0.7, 0.8), (0.5, 0.6), 1.0, "paint"),
    "refrigerator": ItemKind((0.6, 0.9), (0.6, 0.75), (1.7, 1.9), 1.0, "metal"),
    "stove": ItemKind((0.55, 0.75), (0.55, 0.65), (0.85, 0.92), 1.0, "metal"),
    "kitchen island": ItemKind((1.2, 2.0), (0.8, 1.0), (0.88, 0.94), 0.0, "paint"),
}
# Sphere classes: radius range (m) and where they rest ("floor" or "top" of a furniture item).
SPHERE_KINDS: dict[str, tuple[tuple[float, float], str]] = {
    "ball": ((0.1, 0.2), "floor"),
    "ottoman": ((0.25, 0.35), "floor"),
    "lamp": ((0.12, 0.2), "top"),
    "vase": ((0.07, 0.14), "top"),
}
SCENE_FURNITURE: dict[str, tuple[str, ...]] = {
    "bathroom": ("cabinet", "bathtub", "box", "chest of drawers", "vase", "ball"),
    "bedroom": ("bed", "wardrobe", "chest of drawers", "box", "desk", "lamp", "ottoman"),
    "bookstore": ("bookcase", "bookcase", "bookcase", "table", "box", "desk", "vase"),
    "classroom": ("desk", "desk", "table", "bookcase", "cabinet", "box", "ball"),
    "dining_room": ("table", "cabinet", "chest of drawers", "bookcase", "vase", "lamp"),
    "kitchen": ("cabinet", "cabinet", "refrigerator", "stove", "kitchen island", "table", "vase"),
    "living_room": ("sofa", "coffee table", "bookcase", "cabinet", "box", "ottoman", "lamp", "vase"),
    "office": ("desk", "desk", "bookcase", "cabinet", "box", "lamp"),
}
# Decal classes on the room surfaces (ADE20K classes) ...
DECAL_CLASSES = ("door", "windowpane", "painting", "poster", "rug", "light")
# ... and small clutter whose class is NOT among ADE20K's 150 (SceneParse150 label 0, "other objects").
OTHER_CLASSES = ("light switch", "wall socket", "sticker", "thermostat", "calendar")


def all_class_names() -> tuple[str, ...]:
    """Every class name ``render`` can emit (room surfaces, furniture, decals, unlisted clutter)."""
    names = ["wall", "floor", "ceiling", *BOX_KINDS, *SPHERE_KINDS, *DECAL_CLASSES, *OTHER_CLASSES]
    return tuple(dict.fromkeys(names))


# -- room description ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Decal:
    """A rectangle [u0, u1] x [v0, v1] (m, surface coordinates, see ``surface_uv``) on a room surface."""

    surface: int
    u0: float
    u1: float
    v0: float
    v1: float
    cls: str
    kind: str  # "door" | "window" | "picture" | "rug" | "light" | "plain"
    color: tuple[float, float, float]
    pattern: np.ndarray | None = None  # (h, w, 3) colour cells of pictures


@dataclass(frozen=True)
class Light:
    position: tuple[float, float, float]
    color: tuple[float, float, float]
    power: float


@dataclass
class Room:
    """Everything about a room that stays fixed across the frames filmed in it."""

    scene_type: str
    size: tuple[float, float, float]  # width (x), height (y), depth (z), metres
    prims: list[Box | Sphere]
    decals: list[Decal]
    lights: list[Light]
    ambient: float
    floor_style: str  # "planks" | "tiles" | "carpet"
    floor_colors: np.ndarray  # (2, 3)
    floor_scale: float
    wall_style: str  # "paint" | "stripes"
    wall_colors: np.ndarray  # (2, 3)
    stripe_period: float
    ceiling_color: np.ndarray
    noise: np.ndarray  # (64, 64) value-noise lattice shared by all textures of the room
    free_spot: tuple[float, float]  # an (x, z) kept clear of furniture for the camera


def surface_uv(surface: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (m) on a room surface: walls (along the wall, height), floor and ceiling (x, z)."""
    if surface in (FLOOR, CEILING):
        return p[0], p[2]
    if surface in (WALL_X0, WALL_X1):
        return p[2], p[1]
    return p[0], p[1]


# -- sampling ------------------------------------------------------------------------------------
def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.85) -> np.ndarray:
    """A random linear albedo, saturation kept moderate like real interiors."""
    base = rng.uniform(lo, hi)
    tint = rng.uniform(-0.25, 0.25, size=3)
    return np.clip(base * (1.0 + tint), 0.03, 0.95).astype(F32)


def _wood(rng: np.random.Generator) -> np.ndarray:
    return (np.array([0.55, 0.36, 0.2]) * rng.uniform(0.5, 1.3) * (1 + rng.uniform(-0.1, 0.1, 3))).clip(0.03, 0.95).astype(F32)


def _material_color(rng: np.random.Generator, material: str) -> np.ndarray:
    if material == "wood":
        return _wood(rng) if rng.random() < 0.7 else _color(rng, 0.3, 0.85)
    if material == "metal":
        return np.full(3, rng.uniform(0.55, 0.85), dtype=F32)
    return _color(rng)


def _footprint_free(x: float, z: float, r: float, placed: list[tuple[float, float, float]]) -> bool:
    return all(math.hypot(x - px, z - pz) > 0.85 * (r + pr) for px, pz, pr in placed)


def _place_item(rng, kind: ItemKind, placed, room_w: float, room_d: float) -> tuple[float, float, float, float, float] | None:
    """Find (x, z, yaw, w, d) for an item not overlapping ``placed`` footprints; None after 30 tries."""
    w, d = _u(rng, kind.width), _u(rng, kind.depth)
    r = 0.5 * math.hypot(w, d)
    for _ in range(30):
        if rng.random() < kind.against_wall:
            wall = int(rng.integers(4))
            gap = 0.02
            if wall in (0, 1):  # along z = 0 / z = depth, back to the wall
                x = _u(rng, (w / 2 + gap, room_w - w / 2 - gap)) if room_w > w + 2 * gap else room_w / 2
                z = d / 2 + gap if wall == 0 else room_d - d / 2 - gap
                yaw = 0.0
            else:  # along x = 0 / x = width, turned a quarter
                z = _u(rng, (w / 2 + gap, room_d - w / 2 - gap)) if room_d > w + 2 * gap else room_d / 2
                x = d / 2 + gap if wall == 2 else room_w - d / 2 - gap
                yaw = math.pi / 2
        else:
            x = _u(rng, (r, room_w - r)) if room_w > 2 * r else room_w / 2
            z = _u(rng, (r, room_d - r)) if room_d > 2 * r else room_d / 2
            yaw = float(rng.uniform(-math.pi, math.pi)) if rng.random() < 0.6 else 0.0
        if _footprint_free(x, z, r, placed):
            return x, z, yaw, w, d
    return None


def _legged(cls, x, z, yaw, w, d, h, color, rng) -> list[Box]:
    """A table-like item: a top slab and four legs, all of class ``cls``."""
    top_t = _u(rng, (0.03, 0.06))
    leg = _u(rng, (0.04, 0.07))
    c, s = math.cos(yaw), math.sin(yaw)
    parts = [Box(cls, (x, h - top_t / 2, z), (w / 2, top_t / 2, d / 2), yaw, color, "wood")]
    for sx in (-1, 1):
        for sz in (-1, 1):
            lx, lz = sx * (w / 2 - leg / 2 - 0.03), sz * (d / 2 - leg / 2 - 0.03)
            # local (lx, lz) -> world: inverse of Box.to_local
            wx, wz = x + c * lx + s * lz, z - s * lx + c * lz
            parts.append(Box(cls, (wx, (h - top_t) / 2, wz), (leg / 2, (h - top_t) / 2, leg / 2), yaw, color, "wood"))
    return parts


def _wall_length(surface: int, size: tuple[float, float, float]) -> float:
    return size[2] if surface in (WALL_X0, WALL_X1) else size[0]


def _picture(rng: np.random.Generator, bright: bool) -> np.ndarray:
    cells = rng.uniform(0.05, 0.95 if bright else 0.7, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    return cells.astype(F32)


def sample_room(rng: np.random.Generator, scene_type: str | None = None) -> Room:
    """Draw a room: size, furniture, decals, lights and materials."""
    if scene_type is None:
        scene_type = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
    if scene_type not in SCENE_FURNITURE:
        raise ValueError(f"unknown scene type {scene_type!r}; expected one of {', '.join(SCENE_TYPES)}")
    room_w, room_h, room_d = _u(rng, (3.0, 7.0)), _u(rng, (2.4, 3.2)), _u(rng, (3.0, 9.0))
    size = (room_w, room_h, room_d)

    # a spot kept free for the camera, away from the walls
    free = (_u(rng, (0.9, room_w - 0.9)), _u(rng, (0.9, room_d - 0.9)))
    placed: list[tuple[float, float, float]] = [(free[0], free[1], 0.8)]
    prims: list = []
    tops: list[tuple[float, float, float, float]] = []  # (x, z, top height, usable radius)
    pool = SCENE_FURNITURE[scene_type]
    box_pool = [c for c in pool if c in BOX_KINDS]
    sphere_pool = [c for c in pool if c in SPHERE_KINDS]
    for _ in range(int(rng.integers(4, 11))):
        cls = box_pool[int(rng.integers(len(box_pool)))]
        kind = BOX_KINDS[cls]
        spot = _place_item(rng, kind, placed, room_w, room_d)
        if spot is None:
            continue
        x, z, yaw, w, d = spot
        h = _u(rng, kind.height)
        color = _material_color(rng, kind.material)
        placed.append((x, z, 0.5 * math.hypot(w, d)))
        if kind.legs:
            prims.extend(_legged(cls, x, z, yaw, w, d, h, color, rng))
        else:
            prims.append(Box(cls, (x, h / 2, z), (w / 2, h / 2, d / 2), yaw, color, kind.material))
        if h < 1.3:
            tops.append((x, z, h, 0.5 * min(w, d)))
    for _ in range(int(rng.integers(0, 4))):
        if not sphere_pool:
            break
        cls = sphere_pool[int(rng.integers(len(sphere_pool)))]
        radii, rest = SPHERE_KINDS[cls]
        r = _u(rng, radii)
        color = _color(rng, 0.2, 0.9)
        if rest == "top":
            fits = [t for t in tops if t[3] > r]
            if not fits:
                continue
            x, z, h, _ = fits[int(rng.integers(len(fits)))]
            prims.append(Sphere(cls, (x, h + r, z), r, color, "paint"))
        else:
            x, z = _u(rng, (r + 0.05, room_w - r - 0.05)), _u(rng, (r + 0.05, room_d - r - 0.05))
            if _footprint_free(x, z, r, placed):
                placed.append((x, z, r))
                # ottomans sit a little sunk, like a pouf; balls touch the floor
                prims.append(Sphere(cls, (x, r * (0.8 if cls == "ottoman" else 1.0), z), r, color, "fabric"))

    decals: list[Decal] = []
    if rng.random() < 0.7:
        wall = WALLS[int(rng.integers(4))]
        length, w = _wall_length(wall, size), _u(rng, (0.8, 0.95))
        u0 = _u(rng, (0.1, max(0.1, length - w - 0.1)))
        decals.append(Decal(wall, u0, u0 + w, 0.0, _u(rng, (2.0, 2.1)), "door", "door", tuple(_wood(rng))))
    for _ in range(int(rng.integers(0, 3))):
        wall = WALLS[int(rng.integers(4))]
        length, w, h = _wall_length(wall, size), _u(rng, (0.8, 1.6)), _u(rng, (1.0, 1.4))
        u0, v0 = _u(rng, (0.1, max(0.1, length - w - 0.1))), _u(rng, (0.8, 1.0))
        decals.append(Decal(wall, u0, u0 + w, v0, min(v0 + h, room_h - 0.1), "windowpane", "window", (0.9, 0.9, 0.88)))
    for _ in range(int(rng.integers(1, 4))):
        wall = WALLS[int(rng.integers(4))]
        cls = "painting" if rng.random() < 0.6 else "poster"
        length, w, h = _wall_length(wall, size), _u(rng, (0.4, 1.0)), _u(rng, (0.3, 0.8))
        u0, vc = _u(rng, (0.1, max(0.1, length - w - 0.1))), _u(rng, (1.3, 1.7))
        decals.append(Decal(wall, u0, u0 + w, vc - h / 2, vc + h / 2, cls, "picture",
                            (0.12, 0.08, 0.05) if cls == "painting" else (0.9, 0.9, 0.9),
                            _picture(rng, bright=cls == "poster")))
    if rng.random() < 0.5:
        w, d = _u(rng, (1.2, min(3.0, room_w - 0.4))), _u(rng, (0.8, min(2.4, room_d - 0.4)))
        x0, z0 = _u(rng, (0.2, room_w - w - 0.2)), _u(rng, (0.2, room_d - d - 0.2))
        decals.append(Decal(FLOOR, x0, x0 + w, z0, z0 + d, "rug", "rug", tuple(_color(rng, 0.2, 0.7))))

    lights = []
    for _ in range(int(rng.integers(1, 3))):
        lx, lz = _u(rng, (0.6, room_w - 0.6)), _u(rng, (0.6, room_d - 0.6))
        warm = rng.uniform(0.8, 1.0)
        lights.append(Light((lx, room_h - 0.15, lz), (1.0, 0.9 + 0.1 * warm, 0.75 + 0.25 * warm), _u(rng, (3.0, 7.0))))
        s = _u(rng, (0.15, 0.3))
        decals.append(Decal(CEILING, lx - s, lx + s, lz - s, lz + s, "light", "light", (1.0, 0.97, 0.9)))

    floor_style = ("planks", "tiles", "carpet")[int(rng.integers(3))]
    floor_colors = np.stack([_wood(rng) if floor_style == "planks" else _color(rng, 0.2, 0.8), _color(rng, 0.2, 0.8)])
    wall_colors = np.stack([_color(rng, 0.45, 0.9), _color(rng, 0.35, 0.85)])
    return Room(
        scene_type=scene_type,
        size=size,
        prims=prims,
        decals=decals,
        lights=lights,
        ambient=_u(rng, (0.12, 0.3)),
        floor_style=floor_style,
        floor_colors=floor_colors,
        floor_scale=_u(rng, (0.12, 0.25)) if floor_style == "planks" else _u(rng, (0.3, 0.6)),
        wall_style="stripes" if rng.random() < 0.3 else "paint",
        wall_colors=wall_colors,
        stripe_period=_u(rng, (0.1, 0.5)),
        ceiling_color=np.full(3, rng.uniform(0.75, 0.92), dtype=F32),
        noise=rng.random((64, 64), dtype=F32),
        free_spot=free,
    )


def sample_camera(rng: np.random.Generator, room: Room, intrinsics: Intrinsics) -> Camera:
    """A camera at person height, clear of furniture, looking into the room with a small tilt."""
    room_w, _, room_d = room.size
    spot = room.free_spot
    for _ in range(100):
        x, z = _u(rng, (0.5, room_w - 0.5)), _u(rng, (0.5, room_d - 0.5))
        if all(_clear(p, x, z) for p in room.prims):
            spot = (x, z)
            break
    x, z = spot
    # look towards the farthest of a few random points of the room
    targets = rng.uniform((0.0, 0.0), (room_w, room_d), size=(4, 2))
    tx, tz = (float(a) for a in targets[np.argmax(np.hypot(targets[:, 0] - x, targets[:, 1] - z))])
    yaw = math.atan2(tx - x, tz - z) + float(rng.normal(0, math.radians(5)))
    pitch = math.radians(_u(rng, (-25.0, 5.0)))
    roll = math.radians(float(np.clip(rng.normal(0, 2.0), -5, 5)))
    position = np.array([x, _u(rng, (1.1, 1.7)), z], dtype=F32)
    return Camera(intrinsics, position, camera_rotation(yaw, pitch, roll))


def _clear(prim, x: float, z: float, margin: float = 0.6) -> bool:
    return math.hypot(float(prim.center[0]) - x, float(prim.center[2]) - z) > prim.radius + margin


def _other_decals(rng: np.random.Generator, room: Room, surf: np.ndarray, p: np.ndarray) -> list[Decal]:
    """2-4 small unlisted objects anchored at visible wall (else floor) points of this view."""
    anchors = np.nonzero(np.isin(surf, WALLS))[0]
    if anchors.size == 0:
        anchors = np.nonzero(surf < 6)[0]
    decals = []
    for _ in range(int(rng.integers(2, 5))):
        if anchors.size == 0:
            break
        i = int(anchors[int(rng.integers(anchors.size))])
        s = int(surf[i])
        u, v = (float(a[0]) for a in surface_uv(s, p[:, i : i + 1]))
        hw, hh = _u(rng, (0.04, 0.12)), _u(rng, (0.04, 0.12))
        cls = OTHER_CLASSES[int(rng.integers(len(OTHER_CLASSES)))]
        decals.append(Decal(s, u - hw, u + hw, v - hh, v + hh, cls, "plain", tuple(_color(rng, 0.3, 0.95))))
    return decals
