"""Ray-primitive intersection shared by the indoor and outdoor renderers: boxes, spheres, cone culling.

Rays are (3, N) column arrays of float32; a primitive's ``hit`` returns the ray parameter of the
entry point (inf on a miss) and a face index, ``normal`` and ``uv`` the shading frame at hit points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

F32 = np.float32


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
