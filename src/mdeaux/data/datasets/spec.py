"""The dataset spec: what every dataset of the pipeline declares about itself.

A spec names the archives (with their paper-profile sources and checksums, or manual instructions
for licence-gated sets), how to read the official on-disk layout, the class list, the depth
encoding and range, and the evaluation crop. Values taken from a paper, DINOv2, the Monocular Depth
Estimation Toolbox or mmsegmentation carry their source in a comment at the spec.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Archive:
    """One downloadable (or hand-placed) file of a dataset."""

    filename: str
    urls: tuple[str, ...] = ()  # paper-profile sources, tried in order
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None  # bytes, where published
    manual: str | None = None  # instructions when the file must be obtained by hand (licence-gated)
    extract: bool = True  # unpack into data/raw/<ds>/ after verification


@dataclass(frozen=True)
class RawSample:
    """One sample as stored in the official layout: encoded bytes, untouched."""

    id: str
    split: str
    image: bytes
    image_format: str  # "jpg" | "png"
    depth: bytes | None = None  # encoded depth map (e.g. 16-bit PNG), see DatasetSpec.depth_encoding
    label: bytes | None = None  # encoded label map (8-bit PNG of class indices)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    task: Literal["depth", "segmentation"]
    archives: tuple[Archive, ...]
    reader: Callable[[Path], Iterator[RawSample]]
    splits: tuple[str, ...]  # official split names, train split first
    test_split: str  # the split the paper evaluates on
    scene: str = ""
    # depth datasets
    depth_encoding: str | None = None  # "png_uint16" (value / depth_scale = metres)
    depth_scale: float | None = None
    depth_decoder: Callable[[bytes], np.ndarray] | None = None  # a dataset-specific decoder (overrides the above)
    min_depth: float | None = None
    max_depth: float | None = None
    eval_crop: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) on the full map
    eval_crop_fractions: tuple[float, float, float, float] | None = None  # the same as fractions of H, W
    eval_crop_name: str | None = None
    eval_clip_depth: float | None = None  # GT and prediction clipped to this depth before the metrics (SUN RGB-D 8 m)
    # segmentation datasets
    classes: tuple[str, ...] = ()
    ignore_index: int = 255
    reduce_zero_label: bool = False
    label_decoder: Callable[[bytes], np.ndarray] | None = None  # a dataset-specific mapping to class ids
    # the official number of samples per split, where published (validation checks them on real data)
    official_counts: tuple[tuple[str, int], ...] = ()
    # the official image sizes (height, width); empty when they vary (validation checks them)
    image_sizes: tuple[tuple[int, int], ...] = ()
    # files inside the extracted archive whose sha256 is published (checked in the paper profile)
    pinned_files: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- decoding: the one place where stored bytes become arrays -------------------------------
    def decode_image(self, data: bytes) -> np.ndarray:
        """RGB uint8 array (H, W, 3)."""
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def decode_depth(self, data: bytes) -> np.ndarray:
        """Depth in metres, float32 (H, W); 0 where the sensor gave no reading."""
        if self.depth_decoder is not None:
            return self.depth_decoder(data)
        if self.depth_encoding != "png_uint16" or not self.depth_scale:
            raise ValueError(f"{self.name}: no depth encoding declared (got {self.depth_encoding!r})")
        raw = read_png_uint16(data, self.name)
        return (raw.astype(np.float32) / np.float32(self.depth_scale)).astype(np.float32)

    def decode_label(self, data: bytes) -> np.ndarray:
        """Class indices uint8 (H, W) in [0, num_classes) or ignore_index, after reduce_zero_label."""
        if self.label_decoder is not None:
            return self.label_decoder(data)
        with Image.open(io.BytesIO(data)) as im:
            # palette PNGs keep their indices (mmseg reads labels "unchanged")
            seg = np.array(im if im.mode in ("L", "P") else im.convert("L"), dtype=np.uint8)
        if self.reduce_zero_label:
            # mmseg 0.27 LoadAnnotations(reduce_zero_label=True): 0 -> 255, k -> k - 1, 254 stays 255
            seg = seg.copy()
            seg[seg == 0] = 255
            seg = seg - 1
            seg[seg == 254] = 255
        return seg

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        """Valid pixels for evaluation: min < gt < max (strict, toolbox) and the eval crop."""
        assert self.min_depth is not None and self.max_depth is not None
        mask = (depth > self.min_depth) & (depth < self.max_depth)
        crop = self.eval_crop
        if self.eval_crop_fractions is not None:  # e.g. the Garg crop, int(fraction * size) as the toolbox
            h, w = depth.shape
            ft, fb, fl, fr = self.eval_crop_fractions
            crop = (int(ft * h), int(fb * h), int(fl * w), int(fr * w))
        if crop is not None:
            top, bottom, left, right = crop
            box = np.zeros_like(mask)
            box[top:bottom, left:right] = True
            mask &= box
        return mask


def read_png_uint16(data: bytes, dataset: str) -> np.ndarray:
    """A single-channel 16-bit PNG as uint16 (H, W); anything else (an 8-bit or RGB PNG stored as depth,
    which would decode to plausible-looking centimetres) raises naming what it is."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format != "PNG":
            raise ValueError(f"{dataset}: depth file is {im.format or 'not an image'}, expected a 16-bit PNG")
        mode = im.mode
        if mode not in ("I;16", "I;16B", "I;16L", "I"):  # PIL reads a 16-bit grey PNG as I;16 (or I)
            raise ValueError(f"{dataset}: depth PNG has mode {mode!r}, expected single-channel 16-bit ('I;16')")
        raw = np.asarray(im)
    if raw.ndim != 2:
        raise ValueError(f"{dataset}: depth PNG has shape {raw.shape}, expected a 2-D map")
    if raw.dtype != np.uint16:
        if raw.min(initial=0) < 0 or raw.max(initial=0) > 65535:
            raise ValueError(f"{dataset}: depth PNG values outside 0..65535")
        raw = raw.astype(np.uint16)
    return raw
