"""Sensor models: the RGB camera (fixed exposure, vignetting, gamma, noise, 8 bits) and the Kinect v1 raw depth.

``_sensor_rgb`` is shared by the indoor and outdoor renderers; ``_sensor_depth`` turns a noise-free
z-depth into the raw depth of a structured-light sensor (noise ~ z², millimetre steps, holes at
depth edges, in the projector shadow, at grazing angles, on glass, in random blobs and outside the
operating range).
"""

from __future__ import annotations

import numpy as np

from mdeaux.data.synth.camera import NYU_WIDTH
from mdeaux.data.synth.primitives import _dot

F32 = np.float32

KINECT_BASELINE = 0.075  # m, Kinect v1 IR projector-camera baseline (Khoshelham & Oude Elberink, Sensors 2012)
KINECT_MIN_RANGE = 0.5  # m, Kinect v1 near limit (Khoshelham & Oude Elberink, Sensors 2012)
MAX_RANGE = 10.0  # m, no reading beyond; the toolbox NYU max_depth (configs/_base_/datasets/nyu.py max_depth=10)


def kinect_sigma(z: np.ndarray) -> np.ndarray:
    """Axial noise std (m) of a Kinect v1 at z-depth ``z`` (Nguyen, Izadi & Lovell, 3DIMPVT 2012)."""
    return (0.0012 + 0.0019 * (z - 0.4) ** 2).astype(F32)


# One fixed exposure for every synthetic frame (our choice, not from any source): a pixel's brightness keeps
# what the light says about distance (render.LAMP_POWER) and about the scene's scale. An auto-exposure (each
# frame scaled so that its 97th brightness percentile is 0.8) divided that away: together with the lamp, the
# tiny ViT of tools/mini_ceiling.py went from 0.88 x the constant's AbsRel to 0.42 x.
EXPOSURE = 0.3


def _sensor_rgb(radiance, albedo, emissive, rng, d) -> np.ndarray:
    """Fixed exposure, mild vignetting, gamma, read + shot noise, 8-bit quantisation -> (3, N) uint8."""
    cos2 = F32(1.0) / _dot(d, d)  # cos^2 of the off-axis angle (d has unit camera z)
    x = radiance * F32(EXPOSURE) * (F32(0.7) + F32(0.3) * cos2 * cos2)[None]
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
