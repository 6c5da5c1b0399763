"""Pinhole cameras shared by the indoor and outdoor renderers, and the NYU-like camera of the indoor world.

World frame: y points up. Camera frame: x right, y down, z forward. ``_ray_directions`` gives one ray
per pixel with unit camera z, so a ray parameter t is the z-depth along the optical axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32

# px, 3rd column of the NYU split lines of Monocular-Depth-Estimation-Toolbox (splits/nyu_{train,test}.txt)
NYU_FOCAL = 518.8579
NYU_WIDTH, NYU_HEIGHT = 640, 480  # NYU RGB and depth frames are 640x480 (images/depths of nyu_depth_v2_labeled.mat)


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


@dataclass(frozen=True)
class Camera:
    intrinsics: Intrinsics
    position: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) camera (x right, y down, z forward) -> world


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


def _ray_directions(camera: Camera) -> np.ndarray:
    """World directions (3, H*W) with unit z in the camera frame, so the hit parameter t is the z-depth."""
    k = camera.intrinsics
    x = (np.arange(k.width, dtype=F32) + F32(0.5) - F32(k.cx)) / F32(k.fx)
    y = (np.arange(k.height, dtype=F32) + F32(0.5) - F32(k.cy)) / F32(k.fy)
    xx, yy = np.meshgrid(x, y)
    cam = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size, dtype=F32)])
    return (camera.rotation @ cam).astype(F32)
