"""Procedural indoor rooms, ray cast in vectorised numpy.

A room is the inside of an axis-aligned box (floor y = 0, ceiling y = height, walls at x = 0, x =
width, z = 0, z = depth; y points up). Furniture items are boxes standing on the floor (optionally
turned about the vertical axis; tables and desks are a top on four legs), plus spheres (balls,
ottomans on the floor; lamps and vases on top of furniture). Flat "decals" on the room surfaces add
doors, windows, paintings, posters, rugs, ceiling lights and small unlisted clutter.

``render`` casts one ray per pixel from a pinhole camera and returns a :class:`Frame`: an RGB image
(Lambertian shading, point lights with shadows, procedural textures, sensor noise), the noise-free
z-depth, a Kinect-like raw depth with the artefacts of a structured-light sensor, and per-pixel class
ids. Everything random comes from ``np.random.Generator(np.random.PCG64(seed))``: the same seeds give
byte-identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

F32 = np.float32

# -- camera and sensor constants ----------------------------------------------------------------
NYU_FOCAL = 518.8579  # px, 3rd column of the toolbox NYU split lines (datasets.md §0.2)
NYU_WIDTH, NYU_HEIGHT = 640, 480  # NYU RGB and depth frames are 640x480 (datasets.md §1.2)
KINECT_BASELINE = 0.075  # m, Kinect v1 IR projector-camera baseline (Khoshelham & Oude Elberink, Sensors 2012)
KINECT_MIN_RANGE = 0.5  # m, Kinect v1 near limit (Khoshelham & Oude Elberink, Sensors 2012)
MAX_RANGE = 10.0  # m, no reading beyond; the toolbox NYU max_depth (datasets.md §0.2)


def kinect_sigma(z: np.ndarray) -> np.ndarray:
    """Axial noise std (m) of a Kinect v1 at z-depth ``z`` (Nguyen, Izadi & Lovell, 3DIMPVT 2012)."""
    return (0.0012 + 0.0019 * (z - 0.4) ** 2).astype(F32)


# -- what a room may hold ------------------------------------------------------------------------
# Scene types of NYUv2 (a subset of its 27 sceneTypes; the test split groups by them, datasets.md §0.2).
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


# -- scene description ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels; pixel (u, v) has its centre at (u + 0.5, v + 0.5)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float


def nyu_intrinsics(width: int = NYU_WIDTH, height: int = NYU_HEIGHT) -> Intrinsics:
    """NYU-like intrinsics: focal 518.8579 px at 640 wide, scaled with the width; centred principal point."""
    if width < 8 or height < 8:
        raise ValueError(f"image size {width}x{height} is too small (expected at least 8x8)")
    f = NYU_FOCAL * width / NYU_WIDTH
    return Intrinsics(width, height, f, f, width / 2.0, height / 2.0)


@dataclass
class Box:
    """A box primitive standing on the floor, turned by ``yaw`` about the vertical axis."""

    cls: str
    center: np.ndarray  # (3,) world
    half: np.ndarray  # (3,) half extents along the box's own x (width), y (height), z (depth)
    yaw: float
    color: np.ndarray  # (3,) linear albedo
    material: str
    to_local: np.ndarray = field(init=False)  # (3, 3) world -> box rotation

    def __post_init__(self) -> None:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        self.to_local = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=F32)
        self.center = np.asarray(self.center, dtype=F32)
        self.half = np.asarray(self.half, dtype=F32)

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(self.half))

    def hit(self, o: np.ndarray, d: np.ndarray, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
        """Ray parameter of the entry point (inf on a miss) and the entry face axis (0, 1, 2)."""
        lo = self.to_local @ (o - self.center[:, None])
        ld = self.to_local @ d
        ld = np.where(ld == 0, F32(1e-12), ld)
        inv = F32(1.0) / ld
        t1 = (-self.half[:, None] - lo) * inv
        t2 = (self.half[:, None] - lo) * inv
        tn = np.minimum(t1, t2)
        tfar = np.maximum(t1, t2).min(axis=0)
        face = tn.argmax(axis=0).astype(np.int8)
        tnear = tn.max(axis=0)
        ok = (tnear <= tfar) & (tnear > eps)
        return np.where(ok, tnear, F32(np.inf)), face

    def normal(self, p: np.ndarray, face: np.ndarray) -> np.ndarray:
        local = self.to_local @ (p - self.center[:, None])
        n = np.zeros_like(local)
        cols = np.arange(local.shape[1])
        n[face, cols] = np.sign(local[face, cols])
        return self.to_local.T @ n

    def uv(self, p: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Texture coordinates (m) on the face: the two local axes other than the face axis."""
        local = self.to_local @ (p - self.center[:, None]) + self.half[:, None]
        u = np.where(face == 0, local[2], local[0])
        v = np.where(face == 1, local[2], local[1])
        return u, v


@dataclass
class Sphere:
    cls: str
    center: np.ndarray
    r: float
    color: np.ndarray
    material: str

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=F32)

    @property
    def radius(self) -> float:
        return self.r

    def hit(self, o: np.ndarray, d: np.ndarray, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
        oc = o - self.center[:, None]
        a = _dot(d, d)
        b = _dot(oc, d)
        c = _dot(oc, oc) - F32(self.r * self.r)
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
        ok = (disc > 0) & (t > eps)
        return np.where(ok, t, F32(np.inf)), np.zeros(d.shape[1], dtype=np.int8)

    def normal(self, p: np.ndarray, face: np.ndarray) -> np.ndarray:
        return (p - self.center[:, None]) / F32(self.r)

    def uv(self, p: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = p - self.center[:, None]
        return (np.arctan2(q[0], q[2]) * F32(self.r)).astype(F32), q[1]


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


@dataclass(frozen=True)
class Camera:
    intrinsics: Intrinsics
    position: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) camera (x right, y down, z forward) -> world


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, z-depth along the optical axis, noise-free
    raw_depth: np.ndarray  # (H, W) float32 metres, Kinect-like, 0 = no reading, mm steps
    labels: np.ndarray  # (H, W) int32 class ids from the caller's mapping
    intrinsics: Intrinsics
    scene_type: str


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


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera -> world rotation: yaw about world up, then pitch (positive = up) and roll."""
    base = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])  # yaw 0: looking along +z, y up
    cy, sy = math.cos(yaw), math.sin(yaw)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    cp, sp = math.cos(pitch), math.sin(pitch)
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])  # about camera x; camera y points down
    cr, sr = math.cos(roll), math.sin(roll)
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (r_yaw @ base @ r_pitch @ r_roll).astype(F32)


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


# -- textures ------------------------------------------------------------------------------------
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


def surface_uv(surface: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (m) on a room surface: walls (along the wall, height), floor and ceiling (x, z)."""
    if surface in (FLOOR, CEILING):
        return p[0], p[2]
    if surface in (WALL_X0, WALL_X1):
        return p[2], p[1]
    return p[0], p[1]


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


# -- rendering -----------------------------------------------------------------------------------
def _ray_directions(camera: Camera) -> np.ndarray:
    """World directions (3, H*W) with unit z in the camera frame, so the hit parameter t is the z-depth."""
    k = camera.intrinsics
    x = (np.arange(k.width, dtype=F32) + F32(0.5) - F32(k.cx)) / F32(k.fx)
    y = (np.arange(k.height, dtype=F32) + F32(0.5) - F32(k.cy)) / F32(k.fy)
    xx, yy = np.meshgrid(x, y)
    cam = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size, dtype=F32)])
    return (camera.rotation @ cam).astype(F32)


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


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise dot product of (3, N) arrays (faster than a reduction over axis 0)."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cone_candidates(prim, apex: np.ndarray, dirs: np.ndarray, lengths: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Indices of rays from the shared ``apex`` along ``dirs`` (norms ``lengths``) that may meet the
    primitive's bounding sphere within distance ``reach``: a cheap cone test before the exact one."""
    c = prim.center - apex
    dist = float(np.linalg.norm(c))
    r = prim.radius * 1.01 + 1e-3
    if dist <= r:
        return np.nonzero(reach > 0)[0]
    cos_a = math.sqrt(dist * dist - r * r) / dist
    along = dirs[0] * F32(c[0]) + dirs[1] * F32(c[1]) + dirs[2] * F32(c[2])
    return np.nonzero((along > F32(cos_a * dist) * lengths) & (reach > F32(dist - r)))[0]


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

    # Lambertian shading: ambient + point lights with shadows cast by the objects
    irradiance = np.full((3, t.size), F32(room.ambient), dtype=F32)
    for light in room.lights:
        light_pos = np.asarray(light.position, dtype=F32)
        to_light = light_pos[:, None] - p
        dist2 = _dot(to_light, to_light)
        cos = np.maximum(_dot(normal, to_light), 0) / np.sqrt(dist2)
        lit = np.nonzero(cos > 0)[0]
        shadow = np.zeros(t.size, dtype=bool)
        shadow[lit] = _shadowed(room.prims, light_pos, p[:, lit], normal[:, lit])
        e = F32(light.power) * cos / (dist2 + F32(0.5)) * ~shadow
        irradiance += np.asarray(light.color, dtype=F32)[:, None] * e[None]
    radiance = albedo * irradiance

    rgb = _sensor_rgb(radiance, albedo, emissive, rng, d).reshape(3, H, W).transpose(1, 2, 0)
    depth = t.reshape(H, W).astype(F32)
    cos_view = np.abs(_dot(normal, d)) / d_len
    raw = _sensor_depth(depth, cos_view.reshape(H, W), glass.reshape(H, W), rng, k.fx)
    labels = _class_lut(names, classes, other)[label].reshape(H, W)
    return Frame(np.ascontiguousarray(rgb), depth, raw, labels, k, room.scene_type)


def _sensor_rgb(radiance, albedo, emissive, rng, d) -> np.ndarray:
    """Auto-exposure, mild vignetting, gamma, read + shot noise, 8-bit quantisation -> (3, N) uint8."""
    lum = radiance.mean(axis=0)
    exposure = F32(0.8) / max(float(np.percentile(lum[~emissive] if (~emissive).any() else lum, 97)), 1e-6)
    cos2 = F32(1.0) / _dot(d, d)  # cos^2 of the off-axis angle (d has unit camera z)
    x = radiance * exposure * (F32(0.7) + F32(0.3) * cos2 * cos2)[None]
    x = np.where(emissive[None], np.minimum(albedo * F32(1.05), F32(1.0)), x)
    x = np.clip(x, 0, 1) ** F32(1 / 2.2)
    sigma = F32(0.006) + F32(0.012) * np.sqrt(x)
    x = x + sigma * rng.standard_normal(x.shape, dtype=F32)
    return np.clip(np.rint(x * F32(255.0)), 0, 255).astype(np.uint8)


def _dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _sensor_depth(depth, cos_view, glass, rng, fx: float) -> np.ndarray:
    """Kinect-like raw depth: noise ~ z², mm steps, holes at edges, grazing angles, glass, blobs, range."""
    H, W = depth.shape
    z = depth + kinect_sigma(depth) * rng.standard_normal(depth.shape, dtype=F32)
    invalid = np.zeros(depth.shape, dtype=bool)

    # depth discontinuities: mixed pixels on both sides of a jump ...
    jump = F32(0.04)
    right = np.abs(depth[:, 1:] - depth[:, :-1]) > jump * np.minimum(depth[:, 1:], depth[:, :-1])
    down = np.abs(depth[1:] - depth[:-1]) > jump * np.minimum(depth[1:], depth[:-1])
    edges = np.zeros_like(invalid)
    edges[:, 1:] |= right
    edges[:, :-1] |= right
    edges[1:] |= down
    edges[:-1] |= down
    invalid |= _dilate(edges, int(rng.integers(1, 3)))
    # ... and the projector shadow: with the projector offset to the camera's right, background just
    # left of a foreground edge gets no pattern; width fx * b * (1/z_near - 1/z_far) pixels
    near_right = right & (depth[:, 1:] < depth[:, :-1])
    width = np.zeros(depth.shape, dtype=F32)
    width[:, :-1] = np.where(near_right, F32(fx * KINECT_BASELINE) * (1 / depth[:, 1:] - 1 / depth[:, :-1]), 0)
    for step in range(1, 25):
        starts = width[:, step - 1 :] >= step - 0.5  # edge at column c shadows c-step+1 .. c
        shadow = np.zeros_like(invalid)
        shadow[:, : W - step + 1] = starts
        if not shadow.any():
            break
        invalid |= shadow

    # grazing angles: the pattern smears out and no disparity is found
    invalid |= cos_view < F32(rng.uniform(0.05, 0.1))
    # glass (windows) returns no pattern
    invalid |= glass
    # random dropout blobs (specular or dark spots)
    yy, xx = np.mgrid[0:H, 0:W]
    for _ in range(int(rng.integers(2, 9))):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        ry, rx = rng.uniform(2, 0.06 * H), rng.uniform(2, 0.06 * W)
        y0, y1, x0, x1 = int(max(cy - ry, 0)), int(min(cy + ry + 1, H)), int(max(cx - rx, 0)), int(min(cx + rx + 1, W))
        sub = ((yy[y0:y1, x0:x1] - cy) / ry) ** 2 + ((xx[y0:y1, x0:x1] - cx) / rx) ** 2 <= 1
        invalid[y0:y1, x0:x1] |= sub
    # registration border: the depth camera's view does not cover the whole RGB frame (our choice of widths)
    scale = W / NYU_WIDTH
    left, right = int(rng.integers(0, 21) * scale), int(rng.integers(0, 9) * scale)
    top, bottom = int(rng.integers(0, 11) * scale), int(rng.integers(0, 7) * scale)
    invalid[:top], invalid[H - bottom :], invalid[:, :left], invalid[:, W - right :] = True, True, True, True
    # operating range
    invalid |= (z < KINECT_MIN_RANGE) | (z > MAX_RANGE)

    raw = np.rint(z * F32(1000.0)) / F32(1000.0)  # millimetre steps, as stored in the 16-bit PNG
    return np.where(invalid, F32(0.0), raw).astype(F32)


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
