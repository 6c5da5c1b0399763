"""Cityscapes (fine annotations): specs, reader and label decoders.

Sources are given next to every value: cityscapes-dataset.com and mcordts/cityscapesScripts (the
official label table and downloader), mmsegmentation 0.27.0 ("mmseg") configs and converters.

The paper lists Cityscapes as an auxiliary segmentation set with 34 classes and 2.9K training images
(paper Table 1; the official fine split is 2,975 train / 500 val). mmseg trains on 19 trainIds, so
reading "34 classes" as the labelIds is our inference [I] (docs/choices.md). Two specs read the same
official files:

* ``cityscapes`` (default): the 34 ``labelIds`` 0..33 of cityscapesScripts ``helpers/labels.py``
  (every entry with id >= 0; "license plate", id -1, is never drawn into ``*_gtFine_labelIds.png``)
  used directly as classes, no reduce_zero_label, 255 = ignore. This is the paper's class count.
* ``cityscapes19``: mmseg 0.27's ``CityscapesDataset`` (19 trainIds, ``mmseg/datasets/cityscapes.py``).
  mmseg reads ``*_gtFine_labelTrainIds.png`` written by ``tools/convert_datasets/cityscapes.py``; we read the
  official ``*_gtFine_labelIds.png`` instead and map ids -> trainIds with the labels.py table
  (``LABEL_TO_TRAIN``; 255 for every id whose trainId is 255), which gives the same maps up to the
  polygon rasterisation of the converter. The integrator exposes the choice in params (e.g.
  ``datasets.cityscapes.classes: labelIds34 | trainIds19``) by picking ``CITYSCAPES`` or
  ``CITYSCAPES19``; ``CITYSCAPES_CLASS_SETS`` maps those names to the specs.

Layout (both archives extracted into one folder, as cityscapesScripts expects)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png     2048x1024 RGB PNG
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       uint8 ids 0..33
                                                  ..._gtFine_instanceIds.png, _color.png, _polygons.json

The reader yields train then val (the gtFine test labels are withheld, so ``test`` is not read).

Training pipeline values of mmseg 0.27 ``configs/_base_/datasets/cityscapes.py`` (transforms as in
``mmseg/datasets/pipelines/transforms.py``; the integrator puts them into params.yaml): Resize
``img_scale=(2048, 1024)``, ``ratio_range=(0.5, 2.0)`` -> RandomCrop ``crop_size=(512, 1024)``,
``cat_max_ratio=0.75`` -> RandomFlip 0.5 -> PhotoMetricDistortion -> Pad ``(512, 1024)``; test:
MultiScaleFlipAug ``img_scale=(2048, 1024)``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample

IGNORE = 255  # mmseg 0.27 CustomDataset ignore_index
IMAGE_SUFFIX = "_leftImg8bit.png"  # mmseg 0.27 CityscapesDataset img_suffix
LABEL_SUFFIX = "_gtFine_labelIds.png"  # official fine labelIds (gtFine_trainvaltest.zip)
SPLIT_DIRS = ("train", "val")  # leftImg8bit/<split>, gtFine/<split> (official archives)
IMAGE_SIZE = (2048, 1024)  # (width, height) of every leftImg8bit frame (cityscapes-dataset.com)

# cityscapesScripts cityscapesscripts/helpers/labels.py (v2.3.0): (name, id, trainId, color) for the 34
# entries with id 0..33, in id order ("license plate", id -1 / trainId -1, is left out: never drawn).
LABELS: tuple[tuple[str, int, int, tuple[int, int, int]], ...] = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
)
assert [row[1] for row in LABELS] == list(range(34))

CITYSCAPES_CLASSES = tuple(row[0] for row in LABELS)  # 34 labelIds 0..33 (labels.py)
# mmseg 0.27 CityscapesDataset.CLASSES: the labels.py names of trainIds 0..18 in trainId order
CITYSCAPES19_CLASSES = tuple(name for name, _, train, _ in sorted(LABELS, key=lambda r: r[2]) if train != IGNORE)
assert CITYSCAPES19_CLASSES == (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
LABEL_IDS = {name: lid for name, lid, _, _ in LABELS}
LABEL_COLORS = {lid: color for _, lid, _, color in LABELS}
LABEL_TO_TRAIN = {lid: train for _, lid, train, _ in LABELS}

GTFINE_MD5 = "4237c19de34c8a376e9ba46b495d6f66"  # gtFine_trainvaltest.zip, packageID=1 (site md5-sum, as csDownload checks)
LEFTIMG_MD5 = "0a6e97e94b616a514066c9e2adb0c97f"  # leftImg8bit_trainvaltest.zip, packageID=3 (site md5-sum)


def _manual(filename: str, package_id: int, size: str) -> str:
    return f"""\
Cityscapes is licence-gated (account + login at https://www.cityscapes-dataset.com, see its licence):
no redistribution, non-commercial use. Register, accept the terms, log in, and download package
{package_id} ({filename}, about {size}) from the "Download" page, or use the official downloader of
the pip package cityscapesscripts (it reads the credentials from the environment variables
CITYSCAPES_USERNAME and CITYSCAPES_PASSWORD; never write them into a file or a log):

    pip install cityscapesscripts
    export CITYSCAPES_USERNAME=...  CITYSCAPES_PASSWORD=...
    csDownload -d data/manual/cityscapes {filename}

Save the file, unchanged, as

    data/manual/cityscapes/{filename}

then record it with DVC:  dvc add data/manual && git add data.dvc && git commit -m "add Cityscapes"
(or, if data/manual is already tracked:  dvc commit data.dvc).  Its MD5 is checked when fetched."""


CITYSCAPES_ARCHIVES = (
    Archive(filename="gtFine_trainvaltest.zip", md5=GTFINE_MD5,
            manual=_manual("gtFine_trainvaltest.zip", 1, "241 MB")),  # cityscapes-dataset.com downloads
    Archive(filename="leftImg8bit_trainvaltest.zip", md5=LEFTIMG_MD5,
            manual=_manual("leftImg8bit_trainvaltest.zip", 3, "11 GB")),  # cityscapes-dataset.com downloads
)


# ----------------------------------------------------------------------------------------------
# decoders
# ----------------------------------------------------------------------------------------------
def _label_ids(dataset: str, data: bytes) -> np.ndarray:
    """The stored ids of an 8-bit labelIds PNG, read unchanged (mmseg reads labels 'unchanged')."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(f"{dataset}: labelIds PNG has mode {im.mode!r}, expected an 8-bit 'L' image")
        return np.array(im, dtype=np.uint8)


def decode_cityscapes_label(data: bytes) -> np.ndarray:
    """``*_gtFine_labelIds.png`` -> the 34 labelIds 0..33 as classes (255 = ignore). Ids 34..254 are
    returned unchanged so that validation flags them."""
    return _label_ids("cityscapes", data)


# labelIds -> trainIds lookup (cityscapesScripts labels.py); ids that labels.py lacks are marked -1
_TRAIN_LUT = np.full(256, -1, dtype=np.int16)
for _lid, _train in LABEL_TO_TRAIN.items():
    _TRAIN_LUT[_lid] = _train
_TRAIN_LUT[IGNORE] = IGNORE


def decode_cityscapes19_label(data: bytes) -> np.ndarray:
    """``*_gtFine_labelIds.png`` -> mmseg's 19 trainIds (255 = ignore), as ``json2labelImg(..., 'trainIds')``.
    An id outside labels.py (34..254) raises, naming it, instead of silently becoming 'ignore'."""
    ids = _label_ids("cityscapes19", data)
    out = _TRAIN_LUT[ids]
    if (out < 0).any():
        bad = np.unique(ids[out < 0])
        raise ValueError(f"cityscapes19: labelIds PNG holds ids {bad[:10].tolist()} that labels.py does not define (0..33)")
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# reader
# ----------------------------------------------------------------------------------------------
def read_cityscapes(raw_dir: Path) -> Iterator[RawSample]:
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``,
    train then val, sorted by city and file name (mmseg's scan order). Ids are ``<split>/<city>/<stem>``."""
    raw_dir = Path(raw_dir)
    for split in SPLIT_DIRS:
        image_dir, label_dir = raw_dir / "leftImg8bit" / split, raw_dir / "gtFine" / split
        for d, archive in ((image_dir, "leftImg8bit_trainvaltest.zip"), (label_dir, "gtFine_trainvaltest.zip")):
            if not d.is_dir():
                raise FileNotFoundError(f"cityscapes: {d} is missing: {archive} must hold {d.relative_to(raw_dir)}/")
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"), key=lambda p: (p.parent.name, p.name))
        if not images:
            raise FileNotFoundError(f"cityscapes: no *{IMAGE_SUFFIX} under {image_dir}")
        for image_path in images:
            city, stem = image_path.parent.name, image_path.name[: -len(IMAGE_SUFFIX)]
            label_path = label_dir / city / f"{stem}{LABEL_SUFFIX}"
            if not label_path.is_file():
                raise FileNotFoundError(
                    f"cityscapes: image {image_path.relative_to(raw_dir)} has no label file "
                    f"{label_path.relative_to(raw_dir)} (gtFine_trainvaltest.zip)"
                )
            yield RawSample(
                id=f"{split}/{city}/{stem}",
                split=split,
                image=image_path.read_bytes(),
                image_format="png",
                label=label_path.read_bytes(),
            )


_COMMON = dict(
    task="segmentation",
    scene="outdoor, driving",
    archives=CITYSCAPES_ARCHIVES,
    reader=read_cityscapes,
    splits=("train", "val"),  # 2,975 train / 500 val (official gtFine split)
    test_split="val",  # gtFine test labels are withheld; mmseg configs/_base_/datasets/cityscapes.py evaluates on val
    ignore_index=IGNORE,
    reduce_zero_label=False,  # labelIds/trainIds are used as stored (mmseg CityscapesDataset: no reduction)
)
_PIPELINE_NOTE = (
    "mmseg 0.27 configs/_base_/datasets/cityscapes.py: Resize img_scale=(2048, 1024) "
    "ratio_range=(0.5, 2.0); RandomCrop crop_size=(512, 1024) cat_max_ratio=0.75; RandomFlip 0.5; "
    "PhotoMetricDistortion; Pad (512, 1024); test MultiScaleFlipAug img_scale=(2048, 1024)"
)

CITYSCAPES = DatasetSpec(
    name="cityscapes",
    official_counts=(("train", 2975), ("val", 500)),  # official gtFine split
    image_sizes=((1024, 2048),),  # leftImg8bit 2048x1024
    title="Cityscapes (gtFine, 34 labelIds)",
    classes=CITYSCAPES_CLASSES,  # paper Table 1's 34 classes read as labelIds 0..33 [I] (docs/choices.md)
    label_decoder=decode_cityscapes_label,
    notes=(
        "classes = the 34 labelIds 0..33 of cityscapesScripts labels.py (paper Table 1's count, our reading "
        "[I], docs/choices.md); the spec 'cityscapes19' gives mmseg's 19 trainIds instead",
        _PIPELINE_NOTE,
    ),
    **_COMMON,
)

CITYSCAPES19 = DatasetSpec(
    name="cityscapes19",
    official_counts=(("train", 2975), ("val", 500)),  # official gtFine split
    image_sizes=((1024, 2048),),  # leftImg8bit 2048x1024
    title="Cityscapes (gtFine, 19 trainIds, mmseg)",
    classes=CITYSCAPES19_CLASSES,  # mmseg 0.27 CityscapesDataset.CLASSES
    label_decoder=decode_cityscapes19_label,
    notes=(
        "labelIds -> trainIds with the labels.py table (255 for ignored ids), equivalent to mmseg's "
        "*_gtFine_labelTrainIds.png from mmseg 0.27 tools/convert_datasets/cityscapes.py",
        _PIPELINE_NOTE,
    ),
    **_COMMON,
)

CITYSCAPES_CLASS_SETS = {"labelIds34": CITYSCAPES, "trainIds19": CITYSCAPES19}

SPECS: tuple[DatasetSpec, ...] = (CITYSCAPES, CITYSCAPES19)
