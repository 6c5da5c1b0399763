"""Training-time data transforms, in numpy (+ PIL for rotation).

Two pipelines are reproduced:

* the Monocular-Depth-Estimation-Toolbox depth pipeline that DINOv2 trains with (method.md §3.6-3.7;
  toolbox ``depth/datasets/pipelines/transforms.py``): NYUCrop / KBCrop -> RandomRotate -> RandomFlip ->
  RandomCrop -> ColorAug;
* the mmsegmentation 0.27 segmentation pipeline of the auxiliary datasets (datasets.md §0.3;
  ``mmseg/datasets/pipelines/transforms.py``): Resize -> RandomCrop -> RandomFlip ->
  PhotoMetricDistortion -> Pad.

Conventions: images are RGB uint8 ``(H, W, 3)``; depth is float32 metres ``(H, W)`` with 0 = invalid;
labels are uint8 ``(H, W)`` with 255 = ignore. All randomness comes from a passed
``np.random.Generator``; each op draws its numbers in the same order as the original code draws
from ``np.random``. mmcv/mmseg work on BGR images; every op here is either per-element or (HSV)
computed from the named R, G, B channels, so applying it to RGB arrays gives the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# method.md §3.2 / toolbox & mmseg img_norm_cfg: RGB 0-255 mean and std (to_rgb=True)
IMG_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMG_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)

# uint8 colour nearest to IMG_MEAN: padding the uint8 image with it gives ~0 after normalize(), which is
# what mmseg gets by padding with 0 *after* Normalize (ade20k.py: Normalize then Pad(pad_val=0)).
MEAN_PAD_VAL = (124, 116, 104)


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _check_image(img: np.ndarray, name: str = "img") -> None:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", type(img).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) array, got shape {shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB, got dtype {img.dtype}")


def _check_map(arr: np.ndarray, img: np.ndarray, name: str, dtype) -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise ValueError(f"{name} must be an (H, W) array, got shape {shape}")
    if arr.shape != img.shape[:2]:
        raise ValueError(f"{name} shape {arr.shape} does not match image size {img.shape[:2]}")
    if arr.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")


def _check_prob(prob: float, name: str = "prob") -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {prob}")


def _check_range(rng_: Sequence[float], name: str) -> tuple[float, float]:
    if len(rng_) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {rng_!r}")
    lo, hi = float(rng_[0]), float(rng_[1])
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {rng_!r}")
    return lo, hi


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
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
    _check_prob(prob)
    if rng.random() < prob:  # toolbox & mmseg RandomFlip: np.random.rand() < prob
        return hflip(img, target)
    return img, target


# ----------------------------------------------------------------------------------------------
# depth pipeline (Monocular-Depth-Estimation-Toolbox)
# ----------------------------------------------------------------------------------------------
def nyu_crop(img: np.ndarray, depth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox NYUCrop: ``[45:472, 43:608]`` on image and depth (480x640 -> 427x565)."""
    if img.shape[0] < 472 or img.shape[1] < 608:  # toolbox NYUCrop slice bounds
        raise ValueError(f"nyu_crop needs an image of at least 472x608 (NYU is 480x640), got {img.shape[:2]}")
    if depth is not None:
        if depth.shape[:2] != img.shape[:2]:
            raise ValueError(f"depth shape {depth.shape} does not match image size {img.shape[:2]}")
        depth = np.ascontiguousarray(depth[45:472, 43:608])  # toolbox NYUCrop(depth=True)
    img = np.ascontiguousarray(img[45:472, 43:608])  # toolbox transforms.py NYUCrop
    return img, depth


def kb_crop(
    img: np.ndarray, depth: np.ndarray | None, height: int = 352, width: int = 1216
) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox KBCrop (KITTI): bottom ``height`` rows, centred ``width`` columns."""
    h, w = img.shape[:2]
    if h < height or w < width:
        raise ValueError(f"kb_crop needs an image of at least {height}x{width}, got {h}x{w}")
    top = int(h - height)  # toolbox KBCrop: top_margin = int(height - self.height)
    left = int((w - width) / 2)  # toolbox KBCrop: left_margin = int((width - self.width) / 2)
    img = np.ascontiguousarray(img[top : top + height, left : left + width])
    if depth is not None:
        if depth.shape[:2] != (h, w):
            raise ValueError(f"depth shape {depth.shape} does not match image size {(h, w)}")
        depth = np.ascontiguousarray(depth[top : top + height, left : left + width])
    return img, depth


def rotate(img: np.ndarray, depth: np.ndarray | None, angle: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate about the image centre by ``angle`` degrees, positive = clockwise (mmcv.imrotate).

    Image: bilinear, border 0; depth: nearest, border 0 (toolbox RandomRotate). Done with PIL, whose
    rotate() is counter-clockwise and whose default centre (w/2, h/2) in PIL's pixel-edge coordinates
    is mmcv's ((w-1)/2, (h-1)/2) in pixel-centre coordinates. Depth (nearest) matches cv2.warpAffine;
    the bilinear image can differ from cv2 by 1 grey level (rounding) and in the half-pixel band along
    the rotated border (PIL replicates the edge there, cv2 blends with the border value).
    """
    _check_image(img)
    pil_angle = -float(angle)  # mmcv: positive = clockwise; PIL: positive = counter-clockwise
    out = Image.fromarray(img).rotate(pil_angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    img_r = np.asarray(out, dtype=np.uint8).copy()
    depth_r = None
    if depth is not None:
        _check_map(depth, img, "depth", np.float32)
        d = Image.fromarray(np.ascontiguousarray(depth))  # float32 -> PIL mode "F"
        d = d.rotate(pil_angle, resample=Image.Resampling.NEAREST, fillcolor=0.0)  # depth_pad_val=0
        depth_r = np.asarray(d, dtype=np.float32).copy()
    return img_r, depth_r


def random_rotate(
    img: np.ndarray,
    depth: np.ndarray | None,
    rng: np.random.Generator,
    prob: float = 0.5,
    degree: float = 2.5,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox RandomRotate(prob=0.5, degree=2.5): angle ~ U(-degree, degree), applied with ``prob``."""
    _check_prob(prob)
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    apply = rng.random() < prob  # toolbox: rotate = np.random.rand() < self.prob
    angle = rng.uniform(-degree, degree)  # toolbox draws the angle whether or not it rotates
    if not apply:
        return img, depth
    return rotate(img, depth, angle)


def random_crop(
    img: np.ndarray, depth: np.ndarray | None, rng: np.random.Generator, size: Sequence[int] = (416, 544)
) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox RandomCrop(crop_size=(h, w)): uniform offset, same window on image and depth.

    The toolbox silently returns a smaller crop when the image is smaller; we raise instead.
    """
    ch, cw = _check_size(size, "size")
    h, w = img.shape[:2]
    if h < ch or w < cw:
        raise ValueError(f"random_crop size {ch}x{cw} is larger than the image {h}x{w}")
    if depth is not None and depth.shape[:2] != (h, w):
        raise ValueError(f"depth shape {depth.shape} does not match image size {(h, w)}")
    top = int(rng.integers(0, h - ch + 1))  # toolbox: np.random.randint(0, margin_h + 1)
    left = int(rng.integers(0, w - cw + 1))  # toolbox: np.random.randint(0, margin_w + 1)
    img = np.ascontiguousarray(img[top : top + ch, left : left + cw])
    if depth is not None:
        depth = np.ascontiguousarray(depth[top : top + ch, left : left + cw])
    return img, depth


def color_aug(
    img: np.ndarray,
    rng: np.random.Generator,
    prob: float = 0.5,
    gamma_range: Sequence[float] = (0.9, 1.1),
    brightness_range: Sequence[float] = (0.75, 1.25),
    color_range: Sequence[float] = (0.9, 1.1),
) -> np.ndarray:
    """Toolbox ColorAug: ``clip(img**gamma * brightness * colour[c], 0, 255)`` with probability ``prob``.

    Applied to the 0-255 values (no rescaling to [0, 1]); gamma, then brightness, then one factor per
    channel, clipped once at the end. Returns float32 (the toolbox keeps the unrounded floats); when not
    applied the input is returned unchanged.
    """
    _check_prob(prob)
    g_lo, g_hi = _check_range(gamma_range, "gamma_range")
    b_lo, b_hi = _check_range(brightness_range, "brightness_range")
    c_lo, c_hi = _check_range(color_range, "color_range")
    if not rng.random() < prob:  # toolbox: aug = np.random.rand() < self.prob
        return img
    gamma = rng.uniform(g_lo, g_hi)  # toolbox draw order: gamma, brightness, 3 colours
    brightness = rng.uniform(b_lo, b_hi)
    colors = rng.uniform(c_lo, c_hi, size=3)
    out = img.astype(np.float64) ** gamma  # toolbox: image ** gamma on the uint8 image (-> float64)
    out = out * brightness
    out = out * colors[None, None, :]
    return np.clip(out, 0, 255).astype(np.float32)


def dataset_view(
    img: np.ndarray, depth: np.ndarray | None, *, resize_to: Sequence[int] | None = None, kb: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """The dataset-level steps shared by training and evaluation: the resize to ``(h, w)`` the paper
    applies to Matterport3D first (RGB bilinear, depth nearest; paper §4) and KITTI's KB crop
    (toolbox kitti.py KBCrop at training, and at test time before inference, method.md §3.7)."""
    if resize_to is not None:
        h, w = int(resize_to[0]), int(resize_to[1])
        img = resize_bilinear_u8(img, (w, h))
        depth = None if depth is None else resize_nearest(depth, (w, h))
    if kb:
        img, depth = kb_crop(img, depth)
    return img, depth


class DepthTrainTransform:
    """The toolbox depth training pipeline (method.md §3.6): crop -> rotate -> flip -> crop -> colour.

    Defaults are the toolbox ``configs/_base_/datasets/nyu.py`` values; ``kitti()`` gives ``kitti.py``.
    ``t(img, depth, rng) -> (img uint8 (h, w, 3), depth float32 (h, w))``. The toolbox feeds ColorAug's
    float output straight to Normalize; we round it to uint8 (<= 0.5 grey level, ~0.009 after
    normalisation) so that every output has one dtype.
    """

    def __init__(
        self,
        crop_size: Sequence[int] = (416, 544),  # toolbox nyu.py RandomCrop(crop_size=(416, 544))
        nyu_crop: bool = True,  # toolbox nyu.py NYUCrop(depth=True)
        kb_crop: bool = False,  # toolbox kitti.py KBCrop(depth=True)
        rotate_prob: float = 0.5,  # toolbox RandomRotate(prob=0.5, degree=2.5)
        rotate_degree: float = 2.5,
        flip_prob: float = 0.5,  # toolbox RandomFlip(prob=0.5)
        color_prob: float = 0.5,  # toolbox nyu.py ColorAug(prob=0.5, ...)
        gamma_range: Sequence[float] = (0.9, 1.1),  # toolbox nyu.py gamma_range=[0.9, 1.1]
        brightness_range: Sequence[float] = (0.75, 1.25),  # toolbox nyu.py brightness_range=[0.75, 1.25]
        color_range: Sequence[float] = (0.9, 1.1),  # toolbox nyu.py color_range=[0.9, 1.1]
        resize_to: Sequence[int] | None = None,  # (h, w) first, e.g. Matterport3D -> 480x640 (paper §4)
    ):
        self.resize_to = None if resize_to is None else _check_size(resize_to, "resize_to")
        if nyu_crop and kb_crop:
            raise ValueError("nyu_crop and kb_crop are exclusive (NYU vs KITTI pipeline), got both True")
        self.crop_size = _check_size(crop_size, "crop_size")
        self.nyu_crop, self.kb_crop = bool(nyu_crop), bool(kb_crop)
        for name, p in (("rotate_prob", rotate_prob), ("flip_prob", flip_prob), ("color_prob", color_prob)):
            _check_prob(p, name)
        if rotate_degree < 0:
            raise ValueError(f"rotate_degree must be >= 0, got {rotate_degree}")
        self.rotate_prob, self.rotate_degree = float(rotate_prob), float(rotate_degree)
        self.flip_prob, self.color_prob = float(flip_prob), float(color_prob)
        self.gamma_range = _check_range(gamma_range, "gamma_range")
        self.brightness_range = _check_range(brightness_range, "brightness_range")
        self.color_range = _check_range(color_range, "color_range")

    @classmethod
    def kitti(cls) -> DepthTrainTransform:
        """Toolbox ``configs/_base_/datasets/kitti.py`` (method.md §3.7)."""
        return cls(
            crop_size=(352, 704),  # toolbox kitti.py RandomCrop(crop_size=(352, 704))
            nyu_crop=False,
            kb_crop=True,  # toolbox kitti.py KBCrop(depth=True)
            brightness_range=(0.9, 1.1),  # toolbox kitti.py ColorAug brightness_range=[0.9, 1.1]
        )

    def __call__(
        self, img: np.ndarray, depth: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_image(img)
        _check_map(depth, img, "depth", np.float32)
        img, depth = dataset_view(img, depth, resize_to=self.resize_to, kb=self.kb_crop)
        if self.nyu_crop:
            img, depth = nyu_crop(img, depth)
        img, depth = random_rotate(img, depth, rng, self.rotate_prob, self.rotate_degree)
        img, depth = random_flip(img, depth, rng, self.flip_prob)
        img, depth = random_crop(img, depth, rng, self.crop_size)
        img = color_aug(img, rng, self.color_prob, self.gamma_range, self.brightness_range, self.color_range)
        if img.dtype != np.uint8:
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img), np.ascontiguousarray(depth, dtype=np.float32)


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
    _check_image(img)
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


# ----------------------------------------------------------------------------------------------
# segmentation pipeline (mmsegmentation 0.27)
# ----------------------------------------------------------------------------------------------
def rescale_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv.rescale_size: the largest (w, h) fitting inside ``scale`` (long, short), keeping the ratio."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))  # mmcv geometric.py rescale_size
    return int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)  # mmcv _scale_size


def mmseg_resize(
    img: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    img_scale: tuple[int, int] = (2048, 512),  # mmseg ade20k.py Resize(img_scale=(2048, 512))
    ratio_range: tuple[float, float] = (0.5, 2.0),  # mmseg ade20k.py ratio_range=(0.5, 2.0)
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg Resize(img_scale, ratio_range, keep_ratio=True): random ratio, then mmcv.imrescale.

    Image bilinear (cv2 INTER_LINEAR), label nearest (cv2 INTER_NEAREST).
    """
    _check_image(img)
    _check_map(label, img, "label", np.uint8)
    lo, hi = _check_range(ratio_range, "ratio_range")
    if lo <= 0:
        raise ValueError(f"ratio_range must be positive, got {ratio_range!r}")
    ratio = rng.random() * (hi - lo) + lo  # mmseg random_sample_ratio: random_sample() * (max - min) + min
    scale = int(img_scale[0] * ratio), int(img_scale[1] * ratio)  # mmseg random_sample_ratio
    if min(scale) <= 0:
        raise ValueError(f"img_scale {img_scale!r} x ratio {ratio} gives an empty target {scale}")
    h, w = img.shape[:2]
    new_wh = rescale_size(w, h, scale)
    return resize_bilinear_u8(img, new_wh), resize_nearest(label, new_wh)


def mmseg_random_crop(
    img: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    crop_size: tuple[int, int] = (512, 512),  # mmseg ade20k.py crop_size = (512, 512)
    cat_max_ratio: float = 0.75,  # mmseg ade20k.py RandomCrop(cat_max_ratio=0.75)
    ignore_index: int = 255,  # mmseg RandomCrop ignore_index=255
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg RandomCrop: crop (h, w) (smaller if the image is smaller), re-drawn up to 10 times while
    one class covers >= cat_max_ratio of the non-ignored crop pixels or fewer than 2 classes are present.
    """
    _check_image(img)
    _check_map(label, img, "label", np.uint8)
    ch, cw = _check_size(crop_size, "crop_size")
    h, w = img.shape[:2]

    def draw() -> tuple[int, int]:
        oy = int(rng.integers(0, max(h - ch, 0) + 1))  # mmseg get_crop_bbox: randint(0, margin_h + 1)
        ox = int(rng.integers(0, max(w - cw, 0) + 1))
        return oy, ox

    oy, ox = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):  # mmseg: "Repeat 10 times"
            labels, cnt = np.unique(label[oy : oy + ch, ox : ox + cw], return_counts=True)
            cnt = cnt[labels != ignore_index]
            if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < cat_max_ratio:
                break
            oy, ox = draw()  # mmseg redraws after a failed check (the 11th draw is used unchecked)
    return (
        np.ascontiguousarray(img[oy : oy + ch, ox : ox + cw]),
        np.ascontiguousarray(label[oy : oy + ch, ox : ox + cw]),
    )


def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg PhotoMetricDistortion.convert: float32 x * alpha + beta, clip [0, 255], cast (truncate) uint8."""
    # numpy 1.x (mmseg 0.27's) keeps float32 when a float64 scalar meets a float32 array
    out = x.astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(out, 0, 255).astype(np.uint8)


def photo_metric_distortion(
    img: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: int = 32,  # mmseg PhotoMetricDistortion defaults
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg 0.27 PhotoMetricDistortion, each step with probability 0.5 (``rng.integers(2)``):

    brightness (+U(-d, d)); mode = integers(2); contrast (x U(lo, hi)) here if mode == 1; saturation
    (S x U(lo, hi) in OpenCV HSV); hue (H + integers(-d, d), mod 180); contrast here if mode == 0.
    Every step casts back to uint8 by truncation. ``hue_delta=0`` means no hue shift (mmseg would
    crash in ``randint(0, 0)``).
    """
    _check_image(img)
    c_lo, c_hi = _check_range(contrast_range, "contrast_range")
    s_lo, s_hi = _check_range(saturation_range, "saturation_range")
    if brightness_delta < 0 or hue_delta < 0:
        raise ValueError(f"brightness_delta and hue_delta must be >= 0, got {brightness_delta}, {hue_delta}")

    def contrast(x: np.ndarray) -> np.ndarray:
        if rng.integers(2):
            return _convert(x, alpha=rng.uniform(c_lo, c_hi))
        return x

    if rng.integers(2):  # random brightness
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    mode = rng.integers(2)  # mmseg: mode == 1 -> contrast first, mode == 0 -> contrast last
    if mode == 1:
        img = contrast(img)
    if rng.integers(2):  # random saturation
        hsv = rgb_to_hsv_u8(img)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(s_lo, s_hi))
        img = hsv_to_rgb_u8(hsv)
    if rng.integers(2):  # random hue
        hsv = rgb_to_hsv_u8(img)
        shift = int(rng.integers(-hue_delta, hue_delta)) if hue_delta > 0 else 0  # randint: high exclusive
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + shift) % 180
        img = hsv_to_rgb_u8(hsv)
    if mode == 0:
        img = contrast(img)
    return img


def pad_to(
    img: np.ndarray,
    label: np.ndarray | None,
    size: tuple[int, int],
    pad_val: int | Sequence[int] = 0,  # mmseg Pad(pad_val=0)
    seg_pad_val: int = 255,  # mmseg Pad(seg_pad_val=255)
) -> tuple[np.ndarray, np.ndarray | None]:
    """mmseg Pad(size=(h, w)) / mmcv.impad: pad bottom and right up to ``size``."""
    th, tw = _check_size(size, "size")
    h, w = img.shape[:2]
    if h > th or w > tw:
        raise ValueError(f"pad_to size {th}x{tw} is smaller than the image {h}x{w}")
    fill = np.asarray(pad_val, dtype=img.dtype)
    if fill.ndim not in (0, 1) or (fill.ndim == 1 and fill.shape[0] != img.shape[2]):
        raise ValueError(f"pad_val must be a number or one value per channel, got {pad_val!r}")
    out = np.empty((th, tw) + img.shape[2:], dtype=img.dtype)
    out[...] = fill
    out[:h, :w] = img
    out_label = None
    if label is not None:
        if label.shape[:2] != (h, w):
            raise ValueError(f"label shape {label.shape} does not match image size {(h, w)}")
        out_label = np.full((th, tw), seg_pad_val, dtype=label.dtype)
        out_label[:h, :w] = label
    return out, out_label


class SegTrainTransform:
    """mmseg 0.27 training pipeline (datasets.md §0.3): Resize -> RandomCrop -> RandomFlip ->
    PhotoMetricDistortion -> Pad. ``t(img, label, rng) -> (img uint8 crop_size, label uint8 crop_size)``.

    mmseg pads the *normalised* image with 0; the uint8 image here is padded with ``pad_val``, by
    default the uint8 colour nearest the normalisation mean (|error| <= 0.009 after normalize()).
    """

    def __init__(
        self,
        img_scale: tuple[int, int] = (2048, 512),  # mmseg ade20k.py
        ratio_range: tuple[float, float] = (0.5, 2.0),  # mmseg ade20k.py
        crop_size: tuple[int, int] = (512, 512),  # mmseg ade20k.py
        cat_max_ratio: float = 0.75,  # mmseg ade20k.py
        flip_prob: float = 0.5,  # mmseg ade20k.py RandomFlip(prob=0.5)
        photometric: bool = True,  # mmseg ade20k.py PhotoMetricDistortion()
        ignore_index: int = 255,  # mmseg CustomDataset ignore_index
        pad_val: int | Sequence[int] = MEAN_PAD_VAL,
        seg_pad_val: int = 255,  # mmseg Pad(seg_pad_val=255)
    ):
        if len(img_scale) != 2 or min(img_scale) <= 0:
            raise ValueError(f"img_scale must be a positive (long, short) pair, got {img_scale!r}")
        self.img_scale = (int(img_scale[0]), int(img_scale[1]))
        self.ratio_range = _check_range(ratio_range, "ratio_range")
        self.crop_size = _check_size(crop_size, "crop_size")
        if not 0.0 < cat_max_ratio <= 1.0:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}")
        self.cat_max_ratio = float(cat_max_ratio)
        _check_prob(flip_prob, "flip_prob")
        self.flip_prob = float(flip_prob)
        self.photometric = bool(photometric)
        self.ignore_index = int(ignore_index)
        self.pad_val = pad_val
        self.seg_pad_val = int(seg_pad_val)

    def __call__(
        self, img: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        img, label = mmseg_resize(img, label, rng, self.img_scale, self.ratio_range)
        img, label = mmseg_random_crop(img, label, rng, self.crop_size, self.cat_max_ratio, self.ignore_index)
        img, label = random_flip(img, label, rng, self.flip_prob)
        if self.photometric:
            img = photo_metric_distortion(img, rng)
        img, label = pad_to(img, label, self.crop_size, self.pad_val, self.seg_pad_val)
        return img, label
