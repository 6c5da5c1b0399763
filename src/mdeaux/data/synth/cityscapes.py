"""Cityscapes mini world: ``gtFine_trainvaltest.zip`` and ``leftImg8bit_trainvaltest.zip`` in the official
layout (the packages of www.cityscapes-dataset.com, labels of cityscapesscripts ``helpers/labels.py``),
byte-identical for the same seed.

Frames come from ``render_outdoor`` driving scenes (its class names are Cityscapes names) and are stored
as 2048x1024 RGB PNGs with ``*_gtFine_labelIds.png`` (uint8 labelIds), ``*_gtFine_color.png`` (labels.py
colours) and ``*_gtFine_instanceIds.png`` (16-bit: labelId, or labelId * 1000 + k for instance classes).
``*_gtFine_polygons.json`` is not written (no polygons exist in the mini world; the reader does not need it).

Mini-world choices (the sources are silent; our choices):
* Frames are ray cast at 1024x512 and upscaled x2 to the official 2048x1024 (RGB bilinear, labels
  nearest): a 2048x1024 frame takes ~4.7 s to ray cast vs ~1.4 s at 1024x512 (measured on the dev box).
* Camera: focal 2262.5 px at 2048 px wide (about the Cityscapes calibration, camera/*.json), centred
  principal point, at ``render_outdoor``'s driving height.
* Ego vehicle: a bonnet-shaped band at the bottom of every frame (id 1 "ego vehicle", as the real
  data), same car per city; out of ROI: a ``OUT_OF_ROI_PX``-px band on the left, right and top edges
  (id 3 "out of roi"). Both keep void ids so ``cityscapes19`` maps them to 255.
* Cities: train aachen, bochum, bremen; val frankfurt, lindau, munster (real Cityscapes city names);
  frame i of a split goes to city i mod n as ``<city>_<i // n:06d>_000019`` (Cityscapes' annotated
  frame is the 20th of each 30-frame snippet); every image its own scene. No ``test`` split is written
  (the spec's splits are train and val).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mdeaux.data.datasets.cityscapes import (
    CITYSCAPES,
    IMAGE_SIZE,
    LABEL_IDS,
    LABELS,
)
from mdeaux.data.synth.archive import (
    PNG_COMPRESS_LEVEL,
    check_count,
    derive_seed,
    encode_png,
    run_jobs,
    write_zip,
)
from mdeaux.data.synth.camera import Intrinsics
from mdeaux.data.synth.outdoor import render_outdoor
from mdeaux.data.synth.outdoor_scene import OUTDOOR_CLASSES

WIDTH, HEIGHT = IMAGE_SIZE  # 2048x1024, the official leftImg8bit / gtFine frame size
RENDER_SCALE = 2  # ray cast at 1024x512, upscale x2 (mini-world choice, see the module docstring)
CITYSCAPES_FOCAL = 2262.5  # px at 2048 wide (our choice: about the Cityscapes camera calibration)
OUT_OF_ROI_PX = 6  # width of the out-of-ROI band at full resolution (our choice)
SNIPPET_FRAME = 19  # annotated frame of each snippet (our choice, as the real file names)
CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}
# the renderer's surface classes (Cityscapes names) -> labelIds (cityscapesscripts/helpers/labels.py)
RENDER_LABELS = {name: LABEL_IDS[name] for name in OUTDOOR_CLASSES}
EGO_VEHICLE, OUT_OF_ROI = LABEL_IDS["ego vehicle"], LABEL_IDS["out of roi"]
INSTANCE_CLASSES = frozenset(LABEL_IDS[n] for n in ("person", "rider", "car", "truck", "bus", "caravan",
                                                    "trailer", "train", "motorcycle", "bicycle"))
_COLOR_LUT = np.zeros((256, 3), dtype=np.uint8)
for _, _lid, _, _color in LABELS:
    _COLOR_LUT[_lid] = _color


@dataclass(frozen=True)
class CityJob:
    left: str  # staging folder that holds leftImg8bit/
    gt: str  # staging folder that holds gtFine/
    split: str
    city: str
    stem: str  # <city>_<seq>_<frame>
    seed: int
    hood: tuple[float, float, float]  # centre height (fraction of H), side height fraction, colour level


def _hood_mask(hood: tuple[float, float, float]) -> np.ndarray:
    """Bottom band shaped like a bonnet: highest in the middle, lower towards the sides."""
    centre, side, _ = hood
    u = (np.arange(WIDTH, dtype=np.float64) + 0.5) / WIDTH * 2 - 1
    top = HEIGHT * (1 - (side + (centre - side) * (1 - u**2)))
    return np.arange(HEIGHT, dtype=np.float64)[:, None] >= top[None, :]


def _hood_rgb(hood: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """A dark car bonnet: a vertical gradient, a soft highlight and sensor-like noise."""
    level = hood[2]
    v = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    u = np.linspace(-1.0, 1.0, WIDTH, dtype=np.float32)[None, :]
    base = level * (1.4 - 0.6 * v) + 40.0 * np.exp(-(u**2) * 6) * (1 - v)
    rgb = base[..., None] * np.array([1.0, 1.02, 1.08], np.float32)
    rgb = rgb + rng.normal(0, 2.0, (HEIGHT, WIDTH, 1)).astype(np.float32)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _encode_rgb_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL,
                                                          optimize=False)
    return buf.getvalue()


def _instance_ids(labels: np.ndarray) -> np.ndarray:
    """Cityscapes instanceIds: labelId for stuff, labelId * 1000 + k (k = 0, 1, ...) per connected region
    of an instance class (the renderer has no instance ids; connected regions stand in for them)."""
    out = labels.astype(np.uint16)
    for lid in np.unique(labels):
        if int(lid) in INSTANCE_CLASSES:
            comp, n = ndimage.label(labels == lid)
            mask = comp > 0
            out[mask] = int(lid) * 1000 + (comp[mask] - 1).astype(np.uint16)
    return out


def render_cityscapes_job(job: CityJob) -> None:
    """Render one frame and write its leftImg8bit PNG and gtFine PNGs into the staging folders."""
    w, h = WIDTH // RENDER_SCALE, HEIGHT // RENDER_SCALE
    f = CITYSCAPES_FOCAL * w / WIDTH
    frame = render_outdoor(job.seed, width=w, height=h, intrinsics=Intrinsics(w, h, f, f, w / 2.0, h / 2.0),
                           driving=True, classes=RENDER_LABELS)
    rgb = np.asarray(Image.fromarray(frame.rgb).resize((WIDTH, HEIGHT), Image.BILINEAR))
    labels = np.asarray(Image.fromarray(frame.labels.astype(np.uint8)).resize((WIDTH, HEIGHT), Image.NEAREST)).copy()
    hood = _hood_mask(job.hood)
    rgb = np.where(hood[..., None], _hood_rgb(job.hood, np.random.Generator(np.random.PCG64(derive_seed(job.seed, "hood")))), rgb)
    labels[hood] = EGO_VEHICLE
    labels[:OUT_OF_ROI_PX, :] = OUT_OF_ROI
    labels[:, :OUT_OF_ROI_PX] = OUT_OF_ROI
    labels[:, -OUT_OF_ROI_PX:] = OUT_OF_ROI
    left = Path(job.left) / "leftImg8bit" / job.split / job.city
    gt = Path(job.gt) / "gtFine" / job.split / job.city
    (left / f"{job.stem}_leftImg8bit.png").write_bytes(_encode_rgb_png(rgb))
    (gt / f"{job.stem}_gtFine_labelIds.png").write_bytes(encode_png(labels))
    (gt / f"{job.stem}_gtFine_color.png").write_bytes(_encode_rgb_png(_COLOR_LUT[labels]))
    (gt / f"{job.stem}_gtFine_instanceIds.png").write_bytes(encode_png(_instance_ids(labels)))


README = """\
Synthetic Cityscapes-layout mini world written by mdeaux (not Cityscapes data).
Layout and encodings follow the official {name} package (cityscapesScripts helpers/labels.py).
"""


def write_cityscapes(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """Write ``gtFine_trainvaltest.zip`` and ``leftImg8bit_trainvaltest.zip`` into ``out_dir``; return their
    paths in the order of ``CITYSCAPES.archives``."""
    n = {split: check_count(f"counts[{split!r}]", counts[split]) for split in CITYSCAPES.splits}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".cityscapes-stage-", dir=out_dir))
    try:
        left, gt = stage / "left", stage / "gt"
        hoods = {}
        for split, cities in CITIES.items():
            for city in cities:
                rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "hood", city)))
                centre = float(rng.uniform(0.12, 0.17))
                hoods[city] = (centre, centre * float(rng.uniform(0.45, 0.7)), float(rng.uniform(25, 60)))
        jobs = []
        for split in CITYSCAPES.splits:
            cities = CITIES[split]
            for i in range(n[split]):
                city = cities[i % len(cities)]
                stem = f"{city}_{i // len(cities):06d}_{SNIPPET_FRAME:06d}"
                for folder in (left / "leftImg8bit" / split / city, gt / "gtFine" / split / city):
                    folder.mkdir(parents=True, exist_ok=True)  # only cities that get frames
                jobs.append(CityJob(str(left), str(gt), split, city, stem, derive_seed(seed, split, i), hoods[city]))
        run_jobs(render_cityscapes_job, jobs, workers, "synth cityscapes")
        targets = []
        for archive, folder in zip(CITYSCAPES.archives, (gt, left), strict=True):
            (folder / "README").write_text(README.format(name=archive.filename))
            (folder / "license.txt").write_text("Synthetic data generated by mdeaux; no Cityscapes content.\n")
            target = out_dir / archive.filename
            write_zip(target, folder)
            targets.append(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return targets


def write_cityscapes19(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """The same archives (``cityscapes19`` reads the same files with the trainIds decoder)."""
    return write_cityscapes(out_dir, counts, seed, workers)
