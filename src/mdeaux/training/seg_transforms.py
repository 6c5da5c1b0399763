"""mmsegmentation 0.27's segmentation training pipeline of the auxiliary datasets (mmseg 0.27
``configs/_base_/datasets/ade20k.py`` etc., ops in ``mmseg/datasets/pipelines/transforms.py``):
Resize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion -> Pad. Conventions: training/transforms.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mdeaux.params import SegAugment
from mdeaux.training.transforms import (
    MEAN_PAD_VAL,
    check_image,
    check_map,
    check_range,
    check_size,
    hsv_to_rgb_u8,
    random_flip,
    resize_bilinear_u8,
    resize_nearest,
    rgb_to_hsv_u8,
)


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
    img_scale: tuple[int, int],
    ratio_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg Resize(img_scale, ratio_range, keep_ratio=True): random ratio, then mmcv.imrescale. The
    values are params.yaml's ``augment`` recipes (mmseg ade20k.py: img_scale=(2048, 512), ratio_range=(0.5, 2.0)).

    Image bilinear (cv2 INTER_LINEAR), label nearest (cv2 INTER_NEAREST).
    """
    check_image(img)
    check_map(label, img, "label", np.uint8)
    lo, hi = check_range(ratio_range, "ratio_range")
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
    crop_size: tuple[int, int],
    cat_max_ratio: float,
    ignore_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg RandomCrop: crop (h, w) (smaller if the image is smaller), re-drawn up to 10 times while
    one class covers >= cat_max_ratio of the non-ignored crop pixels or fewer than 2 classes are present
    (mmseg ade20k.py: crop_size=(512, 512), cat_max_ratio=0.75; ignore_index 255). A cat_max_ratio of 1
    or more turns the check off, as in mmseg.
    """
    check_image(img)
    check_map(label, img, "label", np.uint8)
    ch, cw = check_size(crop_size, "crop_size")
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
    check_image(img)
    c_lo, c_hi = check_range(contrast_range, "contrast_range")
    s_lo, s_hi = check_range(saturation_range, "saturation_range")
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
    pad_val: int | Sequence[int],
    seg_pad_val: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """mmseg Pad(size=(h, w)) / mmcv.impad: pad bottom and right of an (h, w, C) image and its (h, w)
    label up to ``size`` (mmseg Pad: pad_val=0 on the normalised image, seg_pad_val=255)."""
    th, tw = check_size(size, "size")
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
        if label.shape != (h, w):
            raise ValueError(f"label shape {label.shape} does not match image size {(h, w)}")
        out_label = np.full((th, tw), seg_pad_val, dtype=label.dtype)
        out_label[:h, :w] = label
    return out, out_label


class SegTrainTransform:
    """mmseg 0.27 training pipeline (mmseg/datasets/pipelines/transforms.py): Resize -> RandomCrop -> RandomFlip ->
    PhotoMetricDistortion -> Pad. ``t(img, label, rng) -> (img uint8 crop_size, label uint8 crop_size)``.

    Built from a resolved recipe (params.yaml ``augment``: mmseg's ``configs/_base_/datasets/ade20k.py``
    pipeline and each dataset's differences). mmseg pads the *normalised* image with 0; the uint8 image
    here is padded with ``pad_val``, the uint8 colour nearest the normalisation mean (|error| <= 0.009
    after normalize()).
    """

    ignore_index = 255  # mmseg CustomDataset ignore_index
    pad_val = MEAN_PAD_VAL
    seg_pad_val = 255  # mmseg Pad(seg_pad_val=255)

    def __init__(self, recipe: SegAugment):
        if len(recipe.img_scale) != 2 or min(recipe.img_scale) <= 0:
            raise ValueError(f"img_scale must be a positive (long, short) pair, got {recipe.img_scale!r}")
        self.img_scale = (int(recipe.img_scale[0]), int(recipe.img_scale[1]))
        self.ratio_range = check_range(recipe.ratio_range, "ratio_range")
        self.crop_size = check_size(recipe.crop_size, "crop_size")
        if not 0.0 < recipe.cat_max_ratio <= 1.0:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {recipe.cat_max_ratio}")
        self.cat_max_ratio = float(recipe.cat_max_ratio)
        self.flip_prob = float(recipe.flip_prob)
        self.photometric = bool(recipe.photometric)

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
