"""The Monocular-Depth-Estimation-Toolbox depth training pipeline that DINOv2 trains with (toolbox
``configs/_base_/datasets/{nyu,kitti}.py``, ops in ``depth/datasets/pipelines/transforms.py``):
NYUCrop / KBCrop -> RandomRotate -> RandomFlip -> RandomCrop -> ColorAug, and the dataset-level view
shared by training and evaluation. Conventions: training/transforms.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from mdeaux.params import DepthAugment
from mdeaux.training.transforms import (
    check_image,
    check_map,
    check_prob,
    check_range,
    check_size,
    random_flip,
    resize_bilinear_u8,
    resize_nearest,
)


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
    check_image(img)
    pil_angle = -float(angle)  # mmcv: positive = clockwise; PIL: positive = counter-clockwise
    out = Image.fromarray(img).rotate(pil_angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    img_r = np.asarray(out, dtype=np.uint8).copy()
    depth_r = None
    if depth is not None:
        check_map(depth, img, "depth", np.float32)
        d = Image.fromarray(np.ascontiguousarray(depth))  # float32 -> PIL mode "F"
        d = d.rotate(pil_angle, resample=Image.Resampling.NEAREST, fillcolor=0.0)  # depth_pad_val=0
        depth_r = np.asarray(d, dtype=np.float32).copy()
    return img_r, depth_r


def random_rotate(
    img: np.ndarray,
    depth: np.ndarray | None,
    rng: np.random.Generator,
    prob: float,
    degree: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox RandomRotate(prob=0.5, degree=2.5): angle ~ U(-degree, degree), applied with ``prob``."""
    check_prob(prob)
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    apply = rng.random() < prob  # toolbox: rotate = np.random.rand() < self.prob
    angle = rng.uniform(-degree, degree)  # toolbox draws the angle whether or not it rotates
    if not apply:
        return img, depth
    return rotate(img, depth, angle)


def random_crop(
    img: np.ndarray, depth: np.ndarray | None, rng: np.random.Generator, size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Toolbox RandomCrop(crop_size=(h, w)): uniform offset, same window on image and depth.

    The toolbox silently returns a smaller crop when the image is smaller; we raise instead.
    """
    ch, cw = check_size(size, "size")
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
    prob: float,
    gamma_range: Sequence[float],
    brightness_range: Sequence[float],
    color_range: Sequence[float],
) -> np.ndarray:
    """Toolbox ColorAug: ``clip(img**gamma * brightness * colour[c], 0, 255)`` with probability ``prob``.

    Applied to the 0-255 values (no rescaling to [0, 1]); gamma, then brightness, then one factor per
    channel, clipped once at the end. Returns float32 (the toolbox keeps the unrounded floats); when not
    applied the input is returned unchanged.
    """
    check_prob(prob)
    g_lo, g_hi = check_range(gamma_range, "gamma_range")
    b_lo, b_hi = check_range(brightness_range, "brightness_range")
    c_lo, c_hi = check_range(color_range, "color_range")
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
    (toolbox configs/_base_/datasets/kitti.py: KBCrop at training, and at test time before inference)."""
    if resize_to is not None:
        h, w = int(resize_to[0]), int(resize_to[1])
        img = resize_bilinear_u8(img, (w, h))
        depth = None if depth is None else resize_nearest(depth, (w, h))
    if kb:
        img, depth = kb_crop(img, depth)
    return img, depth


def rescale(img: np.ndarray, depth: np.ndarray | None, factor: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Both sides times ``factor`` (params.yaml ``view_scale``: the mini profile runs the paper's pipeline
    at a quarter of its resolution), the image bilinear and the depth nearest, as ``dataset_view`` resizes."""
    if factor == 1:
        return img, depth
    size_wh = (max(1, round(img.shape[1] * factor)), max(1, round(img.shape[0] * factor)))
    return resize_bilinear_u8(img, size_wh), None if depth is None else resize_nearest(depth, size_wh)


class DepthTrainTransform:
    """The toolbox depth training pipeline (configs/_base_/datasets/nyu.py): crop -> rotate -> flip -> crop -> colour
    (after the crop, ``view_scale`` rescales in the mini profile).

    Built from a resolved recipe (params.yaml ``augment``: the toolbox ``configs/_base_/datasets/nyu.py``
    pipeline and each dataset's differences). ``t(img, depth, rng) -> (img uint8 (h, w, 3), depth float32
    (h, w))``. The toolbox feeds ColorAug's float output straight to Normalize; we round it to uint8
    (<= 0.5 grey level, ~0.009 after normalisation) so that every output has one dtype.
    """

    def __init__(self, recipe: DepthAugment):
        self.resize_to = None if recipe.resize_to is None else check_size(recipe.resize_to, "resize_to")
        if recipe.nyu_crop and recipe.kb_crop:
            raise ValueError("nyu_crop and kb_crop are exclusive (NYU vs KITTI pipeline), got both True")
        self.crop_size = check_size(recipe.crop_size, "crop_size")
        self.nyu_crop, self.kb_crop = bool(recipe.nyu_crop), bool(recipe.kb_crop)
        self.view_scale = float(recipe.view_scale)
        self.rotate_prob, self.rotate_degree = float(recipe.rotate_prob), float(recipe.rotate_degree)
        self.flip_prob, self.color_prob = float(recipe.flip_prob), float(recipe.color_prob)
        self.gamma_range = check_range(recipe.gamma_range, "gamma_range")
        self.brightness_range = check_range(recipe.brightness_range, "brightness_range")
        self.color_range = check_range(recipe.color_range, "color_range")

    def __call__(
        self, img: np.ndarray, depth: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        check_image(img)
        check_map(depth, img, "depth", np.float32)
        img, depth = dataset_view(img, depth, resize_to=self.resize_to, kb=self.kb_crop)
        if self.nyu_crop:
            img, depth = nyu_crop(img, depth)
        img, depth = rescale(img, depth, self.view_scale)
        img, depth = random_rotate(img, depth, rng, self.rotate_prob, self.rotate_degree)
        img, depth = random_flip(img, depth, rng, self.flip_prob)
        img, depth = random_crop(img, depth, rng, self.crop_size)
        img = color_aug(img, rng, self.color_prob, self.gamma_range, self.brightness_range, self.color_range)
        if img.dtype != np.uint8:
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img), np.ascontiguousarray(depth, dtype=np.float32)
