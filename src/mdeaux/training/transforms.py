"""Data transforms shared by the training pipelines, in numpy: input checks, normalisation, the flip,
and OpenCV-compatible resizing and HSV conversion (mmcv uses cv2, which mdeaux does not depend on).

The pipelines themselves: ``depth_transforms.py`` (the Monocular-Depth-Estimation-Toolbox depth
pipeline DINOv2 trains with) and ``seg_transforms.py`` (mmsegmentation 0.27's segmentation pipeline of
the auxiliary datasets).

Conventions: images are RGB uint8 ``(H, W, 3)``; depth is float32 metres ``(H, W)`` with 0 = invalid;
labels are uint8 ``(H, W)`` with 255 = ignore. All randomness comes from a passed
``np.random.Generator``; each op draws its numbers in the same order as the original code draws
from ``np.random``. mmcv/mmseg work on BGR images; every op here is either per-element or (HSV)
computed from the named R, G, B channels, so applying it to RGB arrays gives the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# toolbox & mmseg img_norm_cfg (configs/_base_/datasets/*.py), as in DINOv2's depth configs: RGB 0-255
# mean and std (to_rgb=True)
IMG_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMG_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)

# uint8 colour nearest to IMG_MEAN: padding the uint8 image with it gives ~0 after normalize(), which is
# what mmseg gets by padding with 0 *after* Normalize (ade20k.py: Normalize then Pad(pad_val=0)).
MEAN_PAD_VAL = (124, 116, 104)


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def check_image(img: np.ndarray, name: str = "img") -> None:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", type(img).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) array, got shape {shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB, got dtype {img.dtype}")


def check_map(arr: np.ndarray, img: np.ndarray, name: str, dtype) -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise ValueError(f"{name} must be an (H, W) array, got shape {shape}")
    if arr.shape != img.shape[:2]:
        raise ValueError(f"{name} shape {arr.shape} does not match image size {img.shape[:2]}")
    if arr.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")


def check_prob(prob: float, name: str = "prob") -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {prob}")


def check_range(rng_: Sequence[float], name: str) -> tuple[float, float]:
    if len(rng_) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {rng_!r}")
    lo, hi = float(rng_[0]), float(rng_[1])
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {rng_!r}")
    return lo, hi


def check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"{name} must be a positive (h, w) pair, got {size!r}")
    return int(size[0]), int(size[1])


# ----------------------------------------------------------------------------------------------
# shared ops
# ----------------------------------------------------------------------------------------------
def normalize(img: np.ndarray) -> np.ndarray:
    """RGB 0-255 image (H, W, 3) -> float32 (3, H, W): (img - IMG_MEAN) / IMG_STD."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img must be an (H, W, 3) array, got shape {getattr(img, 'shape', None)}")
    out = (img.astype(np.float32) - IMG_MEAN) / IMG_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def denormalize(x: np.ndarray, to_uint8: bool = False) -> np.ndarray:
    """Inverse of :func:`normalize`: (3, H, W) -> (H, W, 3) RGB 0-255 (float32, or rounded uint8)."""
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"x must be a (3, H, W) array, got shape {getattr(x, 'shape', None)}")
    out = x.astype(np.float32).transpose(1, 2, 0) * IMG_STD + IMG_MEAN
    if to_uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def hflip(img: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Horizontal flip of the image and its depth/label map (mmcv.imflip 'horizontal')."""
    img = np.ascontiguousarray(img[:, ::-1])
    return img, (None if target is None else np.ascontiguousarray(target[:, ::-1]))


def random_flip(
    img: np.ndarray, target: np.ndarray | None, rng: np.random.Generator, prob: float = 0.5
) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox / mmseg RandomFlip: flip horizontally when ``rng.random() < prob``."""
    check_prob(prob)
    if rng.random() < prob:  # toolbox & mmseg RandomFlip: np.random.rand() < prob
        return hflip(img, target)
    return img, target


# ----------------------------------------------------------------------------------------------
# OpenCV-compatible resize and HSV (mmcv uses cv2; we may not)
# ----------------------------------------------------------------------------------------------
_COEF_SCALE = 2048  # OpenCV resize.cpp INTER_RESIZE_COEF_SCALE = 1 << 11


def _linear_taps(in_size: int, out_size: int, clamp_weight: bool):
    """OpenCV INTER_LINEAR source indices and fixed-point weights along one axis."""
    scale = in_size / out_size  # OpenCV: scale_x = 1. / inv_scale_x = ssize / dsize
    f = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    frac = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_weight:  # x axis: OpenCV sets fx = 0 and clamps sx at both borders
        low, high = s < 0, s >= in_size - 1
        frac[low | high] = 0.0
        s[low] = 0
        s[high] = in_size - 1
    i0 = np.clip(s, 0, in_size - 1)  # y axis: OpenCV clips the row index, keeps the weights
    i1 = np.clip(s + 1, 0, in_size - 1)
    # OpenCV: ialpha[k] = saturate_cast<short>(cbuf[k] * INTER_RESIZE_COEF_SCALE), rounded separately
    c0 = np.rint((np.float32(1.0) - frac) * np.float32(_COEF_SCALE)).astype(np.int64)
    c1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int64)
    return i0, i1, c0, c1


def resize_bilinear_u8(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """cv2.resize(img, (w, h), INTER_LINEAR) for uint8 images (half-pixel centres, no antialias).

    Emulates OpenCV's fixed-point path (11-bit weights, SIMD vertical pass), so results match cv2 to
    within 1 grey level; an exact 2x downscale uses OpenCV's INTER_AREA shortcut (2x2 mean).
    """
    out_w, out_h = int(size_wh[0]), int(size_wh[1])
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"resize target must be positive (w, h), got {size_wh!r}")
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"resize_bilinear_u8 needs a uint8 (H, W[, C]) array, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    src = img.astype(np.int64)
    if w == 2 * out_w and h == 2 * out_h:
        # OpenCV resize.cpp: INTER_LINEAR with integer scale 2 on both axes is run as INTER_AREA
        acc = src[0::2, 0::2] + src[0::2, 1::2] + src[1::2, 0::2] + src[1::2, 1::2]
        return ((acc + 2) >> 2).astype(np.uint8)
    x0, x1, a0, a1 = _linear_taps(w, out_w, clamp_weight=True)
    y0, y1, b0, b1 = _linear_taps(h, out_h, clamp_weight=False)
    extra = (None,) * (img.ndim - 2)
    # horizontal pass: int sums scaled by 2048 (OpenCV HResizeLinear)
    rows = src[:, x0] * a0[(slice(None),) + extra] + src[:, x1] * a1[(slice(None),) + extra]
    r0, r1 = rows[y0] >> 4, rows[y1] >> 4  # OpenCV VResizeLinearVec_32s8u: (S >> 4) as int16
    bb0, bb1 = b0[(slice(None), None) + extra], b1[(slice(None), None) + extra]
    out = (((r0 * bb0) >> 16) + ((r1 * bb1) >> 16) + 2) >> 2  # v_mul_hi, then (+2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_nearest(arr: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """cv2.resize(arr, (w, h), INTER_NEAREST): source index floor(dst * src/dst), not pixel-centred."""
    out_w, out_h = int(size_wh[0]), int(size_wh[1])
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"resize target must be positive (w, h), got {size_wh!r}")
    h, w = arr.shape[:2]
    # OpenCV resizeNN: ifx = 1. / inv_scale_x; sx = min(cvFloor(x * ifx), ssize.width - 1)
    ifx, ify = 1.0 / (out_w / w), 1.0 / (out_h / h)
    xs = np.minimum(np.floor(np.arange(out_w) * ifx).astype(np.int64), w - 1)
    ys = np.minimum(np.floor(np.arange(out_h) * ify).astype(np.int64), h - 1)
    return np.ascontiguousarray(arr[ys][:, xs])


_HSV_SHIFT = 12  # OpenCV color_hsv: hsv_shift = 12
_SDIV = np.zeros(256, dtype=np.int64)
_HDIV180 = np.zeros(256, dtype=np.int64)
_SDIV[1:] = np.rint((255 << _HSV_SHIFT) / np.arange(1, 256, dtype=np.float64))  # sdiv_table
_HDIV180[1:] = np.rint((180 << _HSV_SHIFT) / (6.0 * np.arange(1, 256, dtype=np.float64)))  # hdiv_table180


def rgb_to_hsv_u8(img: np.ndarray) -> np.ndarray:
    """OpenCV uint8 RGB->HSV (H in [0, 180), S and V in [0, 255]), OpenCV's integer arithmetic."""
    check_image(img)
    r, g, b = (img[..., i].astype(np.int64) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * _SDIV[v] + half) >> _HSV_SHIFT
    # OpenCV RGB2HSV_b: h = g-b if v==r, b-r+2*diff if v==g, else r-g+4*diff; scaled by 180/(6*diff)
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV180[diff] + half) >> _HSV_SHIFT  # arithmetic shift, as in C for negative h
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def hsv_to_rgb_u8(hsv: np.ndarray) -> np.ndarray:
    """OpenCV uint8 HSV->RGB (H in [0, 180)), float32 maths as OpenCV's SIMD path (truncating to uint8).

    OpenCV's vector loop (all but the last width mod (4 x SIMD lanes) pixels of each row) truncates;
    its scalar tail rounds. We truncate everywhere.
    """
    if not isinstance(hsv, np.ndarray) or hsv.ndim != 3 or hsv.shape[2] != 3 or hsv.dtype != np.uint8:
        raise ValueError(f"hsv must be a uint8 (H, W, 3) array, got {getattr(hsv, 'dtype', None)} "
                         f"{getattr(hsv, 'shape', None)}")
    f32 = np.float32
    h = hsv[..., 0].astype(f32) * (f32(6.0) / f32(180.0))  # HSV2RGB_b: hscale = 6.0f / hrange
    s = hsv[..., 1].astype(f32) * f32(1.0 / 255.0)
    v = hsv[..., 2].astype(f32) * f32(1.0 / 255.0)
    pre = np.trunc(h)
    frac = h - pre
    sector = pre - np.trunc(pre * f32(1.0 / 6.0)) * f32(6.0)
    one = f32(1.0)
    tab0, tab1 = v, v * (one - s)
    tab2, tab3 = v * (one - s * frac), v * (one - s * (one - frac))
    # OpenCV sector_data {{1,3,0},{1,0,2},{3,0,1},{0,2,1},{0,1,3},{2,1,0}} as (b, g, r) tab indices
    tabs = np.stack([tab0, tab1, tab2, tab3])
    sec = sector.astype(np.int64)
    order = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])
    idx = order[sec]  # (H, W, 3): tab index for b, g, r
    bgr = np.take_along_axis(tabs, np.moveaxis(idx, -1, 0), axis=0)  # (3, H, W)
    rgb = bgr[::-1] * f32(255.0)
    return np.clip(np.trunc(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


