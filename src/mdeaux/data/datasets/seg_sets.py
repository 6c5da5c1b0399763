"""Pascal VOC 2012 (+SBD), COCO-Stuff 164k and Pascal Context 59: specs, readers and label decoders.

All three are auxiliary segmentation sets with mmsegmentation 0.27.0 ("mmseg") semantics
(``mmseg/datasets/custom.py``, ``mmseg/datasets/pipelines/loading.py``). The source of every value is
given next to it; "[I]" marks our own inference (docs/choices.md).

* ``voc`` (default): training set = SBD ``train.txt`` (8,498 images, our reading of paper Table 1's
  "8.5K" [I], docs/choices.md) with ``GTcls.Segmentation`` from ``benchmark_RELEASE/dataset/cls/*.mat``;
  evaluation = VOC 2012 ``ImageSets/Segmentation/val.txt`` (1,449) with palette PNGs.
* ``voc_aug``: mmseg's ``trainaug`` instead (10,582 = VOC train ∪ SBD train ∪ SBD val − VOC val;
  mmseg ``tools/convert_datasets/voc_aug.py``): name ``voc_aug`` instead of ``voc`` in params.yaml.
* ``cocostuff``: 118,287 train / 5,000 val, stuffthingmaps 0..181 mapped to 171 trainIds (mmseg
  ``tools/convert_datasets/coco_stuff164k.py``; nightrome/cocostuff README).
* ``pascal_context``: VOC2010 images + Stanford ``trainval.tar.gz`` ``LabelMap`` (459 ids) mapped to the 59
  classes by mmseg's ``_mapping`` (``tools/convert_datasets/pascal_context.py``) with reduce_zero_label.

One module for the family (about 460 lines): the three share the list, .mat and PNG helpers at the top,
and each has its own section below.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample

IGNORE = 255  # mmseg 0.27 CustomDataset ignore_index
MAT_MAGIC = b"MATLAB"  # MATLAB 5 MAT-files start with a 116-byte text header "MATLAB 5.0 MAT-file ..."


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------
def _read_list(dataset: str, list_path: Path) -> list[str]:
    """Image ids of a split list (one id per line, first column), de-duplicated, sorted."""
    if not list_path.is_file():
        raise FileNotFoundError(f"{dataset}: split list {list_path} is missing")
    ids = {line.split()[0] for line in list_path.read_text().splitlines() if line.strip()}
    return sorted(ids)


def _need(dataset: str, path: Path, list_path: Path | str, entry: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: entry {entry!r} of {list_path} has no file {path}")
    return path


def _load_mat(dataset: str, data: bytes) -> dict:
    if not data.startswith(MAT_MAGIC):
        raise ValueError(f"{dataset}: label is not a MATLAB 5 MAT-file (starts with {data[:8]!r})")
    try:
        # squeeze_me=False keeps 2-D maps 2-D even when one side is 1 px
        return scipy.io.loadmat(io.BytesIO(data), squeeze_me=False, struct_as_record=False)
    except Exception as err:  # scipy raises several types (ValueError, TypeError, zlib.error, ...)
        raise ValueError(f"{dataset}: unreadable MAT-file label ({type(err).__name__}: {err})") from None


def _as_uint8_ids(dataset: str, arr: np.ndarray, what: str) -> np.ndarray:
    """Integer class ids as uint8; values that cannot be stored in uint8 raise, naming them."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{dataset}: {what} has shape {arr.shape}, expected a 2-D map")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{dataset}: {what} holds non-integer values")
    bad = np.unique(arr[(arr < 0) | (arr > 255)])
    if bad.size:
        raise ValueError(f"{dataset}: {what} holds ids {bad[:10].tolist()} outside 0..255")
    return arr.astype(np.uint8)


def _png_indices(dataset: str, data: bytes) -> np.ndarray:
    """The stored indices of an 8-bit palette ("P") or grayscale ("L") PNG, read unchanged (mmseg)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{dataset}: label PNG has mode {im.mode!r}, expected an 8-bit 'P' or 'L' image")
        return np.array(im, dtype=np.uint8)


def _sample(dataset: str, sid: str, split: str, image: Path, label: Path) -> RawSample:
    return RawSample(id=sid, split=split, image=image.read_bytes(), image_format=image.suffix.lstrip(".").lower(),
                     label=label.read_bytes())


# ----------------------------------------------------------------------------------------------
# Pascal VOC 2012 + SBD (VOC 2012 devkit; SBD benchmark.tgz; mmseg 0.27 pascal_voc12*.py)
# ----------------------------------------------------------------------------------------------
# mmseg 0.27 PascalVOCDataset.CLASSES; index 0 = background is a class (no reduce_zero_label in pascal_voc12.py)
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
assert len(VOC_CLASSES) == 21

VOC_ROOT = "VOCdevkit/VOC2012"  # root folder of VOCtrainval_11-May-2012.tar
SBD_ROOT = "benchmark_RELEASE/dataset"  # root of benchmark.tgz: img/, cls/, inst/, train.txt, val.txt

VOC_ARCHIVES = (
    Archive(
        filename="VOCtrainval_11-May-2012.tar",
        urls=(
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",  # mmseg docs/en/dataset_prepare.md
            "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",  # the same host over HTTPS
            "https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",  # public mirror
        ),
        sha256="e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb",  # tensorflow/datasets url_checksums/voc.txt
        md5="6cd6e144f989b92b3379bac3b3de84fd",  # pytorch/vision torchvision/datasets/voc.py
        size=1_999_639_040,  # tensorflow/datasets url_checksums/voc.txt
    ),
    Archive(
        filename="benchmark.tgz",
        urls=("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",),
        md5="82b4d87ceb2ed10f6038a1cba92111cb",  # pytorch/vision torchvision/datasets/sbd.py; no sha256/size published
    ),
)


def decode_voc_label(data: bytes) -> np.ndarray:
    """VOC palette PNG (indices 0..20, 255 = boundary) or SBD ``.mat`` (``GTcls.Segmentation`` 0..20).

    The stored indices are returned unchanged as uint8 (mmseg reads palette indices, background 0 is a
    class); indices 21..254 are returned as they are so validation flags them.
    """
    if data.startswith(MAT_MAGIC):
        mat = _load_mat("voc", data)
        gtcls = np.asarray(mat.get("GTcls", np.empty(0)), dtype=object)
        if gtcls.size != 1 or not hasattr(gtcls.flat[0], "Segmentation"):
            raise ValueError("voc: SBD .mat label has no GTcls.Segmentation")
        return _as_uint8_ids("voc", gtcls.flat[0].Segmentation, "SBD GTcls.Segmentation")
    return _png_indices("voc", data)


def _voc_split(root: Path, name: str) -> tuple[Path, list[str]]:
    path = root / "ImageSets" / "Segmentation" / f"{name}.txt"
    return path, _read_list("voc", path)


def _voc_val(raw_dir: Path) -> Iterator[RawSample]:
    root = raw_dir / VOC_ROOT
    list_path, ids = _voc_split(root, "val")
    for sid in ids:
        image = _need("voc", root / "JPEGImages" / f"{sid}.jpg", list_path, sid)
        label = _need("voc", root / "SegmentationClass" / f"{sid}.png", list_path, sid)
        yield _sample("voc", f"val/{sid}", "val", image, label)


def read_voc_sbd(raw_dir: Path) -> Iterator[RawSample]:
    """Train = SBD ``train.txt`` (images ``img/*.jpg``, labels ``cls/*.mat``); val = VOC 2012 seg val."""
    sbd = raw_dir / SBD_ROOT
    list_path = sbd / "train.txt"
    for sid in _read_list("voc", list_path):
        image = _need("voc", sbd / "img" / f"{sid}.jpg", list_path, sid)
        label = _need("voc", sbd / "cls" / f"{sid}.mat", list_path, sid)
        yield _sample("voc", f"train/{sid}", "train", image, label)
    yield from _voc_val(raw_dir)


def trainaug_ids(raw_dir: Path) -> tuple[list[str], list[str]]:
    """mmseg voc_aug.py: (VOC train ids, aug ids) with aug = (SBD train ∪ SBD val) − VOC val − VOC train."""
    root, sbd = raw_dir / VOC_ROOT, raw_dir / SBD_ROOT
    _, voc_train = _voc_split(root, "train")
    _, voc_val = _voc_split(root, "val")
    sbd_all = set(_read_list("voc", sbd / "train.txt")) | set(_read_list("voc", sbd / "val.txt"))
    aug = sorted(sbd_all - set(voc_val) - set(voc_train))
    return voc_train, aug


def read_voc_trainaug(raw_dir: Path) -> Iterator[RawSample]:
    """mmseg ``pascal_voc12_aug.py``: train = train.txt (SegmentationClass PNG) + aug.txt (SBD labels).

    Images come from VOC ``JPEGImages`` as in mmseg; aug labels are read from the SBD ``.mat`` directly
    (mmseg converts them to ``SegmentationClassAug/*.png`` with the same values).
    """
    root, sbd = raw_dir / VOC_ROOT, raw_dir / SBD_ROOT
    voc_train, aug = trainaug_ids(raw_dir)
    train_list = root / "ImageSets" / "Segmentation" / "train.txt"
    items = [(sid, train_list, root / "SegmentationClass" / f"{sid}.png") for sid in voc_train]
    items += [(sid, "SBD train.txt/val.txt", sbd / "cls" / f"{sid}.mat") for sid in aug]
    for sid, list_path, label in sorted(items):
        image = _need("voc", root / "JPEGImages" / f"{sid}.jpg", list_path, sid)
        yield _sample("voc", f"train/{sid}", "train", image, _need("voc", label, list_path, sid))
    yield from _voc_val(raw_dir)


_VOC_COMMON = dict(
    task="segmentation",
    scene="indoor, outdoor",
    archives=VOC_ARCHIVES,
    splits=("train", "val"),
    test_split="val",
    classes=VOC_CLASSES,
    reduce_zero_label=False,  # mmseg 0.27 configs/_base_/datasets/pascal_voc12.py: background 0 is a class
    label_decoder=decode_voc_label,
)

VOC = DatasetSpec(
    name="voc",
    official_counts=(("train", 8498), ("val", 1449)),  # SBD train.txt / VOC 2012 ImageSets/Segmentation/val.txt
    title="Pascal VOC 2012 (SBD train 8,498 / VOC val 1,449)",
    reader=read_voc_sbd,
    notes=(
        "train = SBD train.txt (8,498), our reading of the paper's 8.5K [I] (docs/choices.md); switch: voc_aug "
        "(trainaug 10,582)",
        "SBD train overlaps VOC 2012 val images (the reason mmseg's trainaug removes VOC val); kept as the paper's count",
        "SBD .mat labels have no 255 boundary band; VOC val PNGs do (255 ignored at evaluation)",
        "sample ids are '<split>/<image id>' because SBD train and VOC val share image ids",
    ),
    **_VOC_COMMON,
)

VOC_AUG = DatasetSpec(
    name="voc_aug",
    official_counts=(("train", 10582), ("val", 1449)),  # mmseg 0.27 tools/convert_datasets/voc_aug.py trainaug
    title="Pascal VOC 2012 trainaug (10,582 / VOC val 1,449)",
    reader=read_voc_trainaug,
    notes=("mmseg 0.27 configs/_base_/datasets/pascal_voc12_aug.py: train.txt + aug.txt = 10,582 (voc_aug.py)",),
    **_VOC_COMMON,
)

# the params switch: name -> spec (default "sbd_train")


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved labelcolormap of the VOC devkit), 256 RGB triples flattened."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


# ----------------------------------------------------------------------------------------------
# COCO-Stuff 164k (nightrome/cocostuff README; mmseg 0.27 coco-stuff164k.py and its converter)
# ----------------------------------------------------------------------------------------------
# mmseg 0.27 COCOStuffDataset.CLASSES (80 things + 91 stuff), trainId order; checked against a public
# copy of the list found with the code search (the order of the 0-based stuffthingmaps ids).
COCOSTUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other",
    "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes",
    "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
    "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)
assert len(COCOSTUFF_CLASSES) == 171

# stuffthingmaps ids (0-based: things 0..90, stuff 91..181, 255 unlabeled) without annotations
# (nightrome/cocostuff README: 11 thing classes are not annotated)
COCOSTUFF_MISSING_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
# mmseg 0.27 tools/convert_datasets/coco_stuff164k.py clsID_to_trID: the 171 used ids in order -> 0..170
COCOSTUFF_SOURCE_IDS = tuple(i for i in range(182) if i not in COCOSTUFF_MISSING_IDS)
assert len(COCOSTUFF_SOURCE_IDS) == 171
COCOSTUFF_LUT = np.full(256, -1, dtype=np.int16)  # -1 = not a COCO-Stuff id
COCOSTUFF_LUT[list(COCOSTUFF_SOURCE_IDS)] = np.arange(171)
COCOSTUFF_LUT[IGNORE] = IGNORE  # 255 unlabeled stays 255 (clsID_to_trID 255: 255)

COCOSTUFF_ARCHIVES = (
    Archive(
        filename="train2017.zip",
        urls=("http://images.cocodataset.org/zips/train2017.zip",),
        sha256="69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929",  # tensorflow/datasets url_checksums/coco2017.txt
        md5="cced6f7f71b7629ddf16f17bbcfab6b2",  # intel/neural-compressor maskrcnn download_dataset.sh
        size=19_336_861_798,  # tensorflow/datasets url_checksums/coco2017.txt
    ),
    Archive(
        filename="val2017.zip",
        urls=("http://images.cocodataset.org/zips/val2017.zip",),
        sha256="4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05",  # tensorflow/datasets coco2017.txt
        md5="442b8da7639aecaf257c1dceb8ba8c80",  # intel/neural-compressor maskrcnn download_dataset.sh
        size=815_585_330,  # tensorflow/datasets url_checksums/coco2017.txt
    ),
    Archive(
        filename="stuffthingmaps_trainval2017.zip",
        # nightrome/cocostuff README; no checksum is published anywhere we found: the fetch records the
        # sha256 it saw (FETCHED.json) and DVC pins it from then on.
        urls=("http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",),
    ),
)


def decode_cocostuff_label(data: bytes) -> np.ndarray:
    """stuffthingmaps PNG (ids 0..181, 255 unlabeled) -> mmseg trainIds 0..170 / 255.

    mmseg's converter (``coco_stuff164k.py``: ``mask_copy = mask.copy()``, then only the ids of
    ``clsID_to_trID`` are rewritten) silently leaves an unknown id unchanged, so an unannotated thing id
    (e.g. 11) would pass as the trainId of another class and ids 182..254 as out-of-range labels. Here an
    id that is not a COCO-Stuff id (one of the 11 unannotated thing ids or 182..254) raises, naming the
    values, so a damaged map is caught.
    """
    src = _png_indices("cocostuff", data)
    out = COCOSTUFF_LUT[src]
    if (out < 0).any():
        bad = np.unique(src[out < 0])
        raise ValueError(f"cocostuff: label ids {bad[:10].tolist()} are not COCO-Stuff stuffthingmaps ids "
                         f"(0..181 without {list(COCOSTUFF_MISSING_IDS)}, or 255)")
    return out.astype(np.uint8)


def read_cocostuff(raw_dir: Path) -> Iterator[RawSample]:
    """``{train,val}2017/<12 digits>.jpg`` (image zips) beside ``<12 digits>.png`` (stuffthingmaps zip)."""
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        d = raw_dir / folder
        if not d.is_dir():
            raise FileNotFoundError(f"cocostuff: {d} is missing (from {folder}.zip / stuffthingmaps_trainval2017.zip)")
        for image in sorted(d.glob("*.jpg")):
            label = d / f"{image.stem}.png"
            if not label.is_file():
                raise FileNotFoundError(f"cocostuff: image {image.name} of {folder} has no stuffthingmap {label}")
            yield _sample("cocostuff", f"{folder}/{image.stem}", split, image, label)


COCOSTUFF = DatasetSpec(
    name="cocostuff",
    title="COCO-Stuff 164k",
    task="segmentation",
    scene="indoor, outdoor",
    archives=COCOSTUFF_ARCHIVES,
    reader=read_cocostuff,
    splits=("train", "val"),
    test_split="val",
    classes=COCOSTUFF_CLASSES,
    reduce_zero_label=False,  # mmseg 0.27 COCOStuffDataset / configs/_base_/datasets/coco-stuff164k.py
    label_decoder=decode_cocostuff_label,
    notes=(
        "labels = stuffthingmaps mapped by mmseg 0.27 tools/convert_datasets/coco_stuff164k.py clsID_to_trID",
        "stuffthingmaps_trainval2017.zip has no published checksum",
        "ids outside the 171 used source ids (the 11 unannotated thing ids, 182..254) raise; mmseg's converter "
        "would leave them unchanged (a wrong class or an out-of-range id)",
    ),
)


# ----------------------------------------------------------------------------------------------
# Pascal Context 59 (VOC2010 images; PASCAL-Context labels; mmseg 0.27 pascal_context_59.py)
# ----------------------------------------------------------------------------------------------
# mmseg 0.27 PascalContextDataset59.CLASSES (alphabetical, as the 459-class labels.txt)
PASCAL_CONTEXT_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog",
    "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike",
    "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
)
assert len(PASCAL_CONTEXT_CLASSES) == 59
# mmseg 0.27 tools/convert_datasets/pascal_context.py _mapping (sorted): 459-class ids -> 0..59
PASCAL_CONTEXT_MAPPING = tuple(sorted((
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454, 295,
    296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355, 85, 347,
    220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115,
)))
assert len(PASCAL_CONTEXT_MAPPING) == 60
# class name -> its id in the 459-class LabelMap (sorted mapping and alphabetical names align)
PASCAL_CONTEXT_459_IDS = dict(zip(PASCAL_CONTEXT_CLASSES, PASCAL_CONTEXT_MAPPING[1:], strict=True))
PASCAL_CONTEXT_MAX_ID = 459  # LabelMap holds ids of the 459-class labels.txt (PASCAL-Context release)
_CTX_LUT = np.zeros(PASCAL_CONTEXT_MAX_ID + 1, dtype=np.uint8)  # ids outside the 59 -> 0 (background)
_CTX_LUT[list(PASCAL_CONTEXT_MAPPING)] = np.arange(60, dtype=np.uint8)

VOC2010_ROOT = "VOCdevkit/VOC2010"
CONTEXT_LABEL_DIR = "trainval"  # Stanford trainval.tar.gz: trainval/<image id>.mat with LabelMap

PASCAL_CONTEXT_ARCHIVES = (
    Archive(
        filename="VOCtrainval_03-May-2010.tar",
        urls=("http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",),  # mmseg docs/en/dataset_prepare.md
        md5="da459979d0c395079b5c75ee67908abb",  # pytorch/vision torchvision/datasets/voc.py
    ),
    Archive(
        filename="trainval.tar.gz",
        # Stanford release of the PASCAL-Context labels (cs.stanford.edu/~roozbeh/pascal-context; the file
        # URL is not confirmed there [I]);
        # no checksum published.
        urls=("https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",),
    ),
)


def decode_pascal_context_label(data: bytes) -> np.ndarray:
    """Stanford ``LabelMap`` (459-class ids) -> 59 classes 0..58, 255 ignore.

    mmseg 0.27 tools/convert_datasets/pascal_context.py maps the 60 ids of ``_mapping`` to 0..59 with
    ``np.digitize``; ids of the other 400 classes (which the Detail-API masks never contain) count as
    background 0 here, as in the "59 classes + background" convention. Then reduce_zero_label (mmseg
    PascalContextDataset59; ``LoadAnnotations(reduce_zero_label=True)`` in
    ``mmseg/datasets/pipelines/loading.py``): 0 -> 255, k -> k - 1. Ids outside 0..459 raise, naming them.
    """
    mat = _load_mat("pascal_context", data)
    if "LabelMap" not in mat:
        raise ValueError("pascal_context: label .mat has no LabelMap")
    lm = np.asarray(mat["LabelMap"])
    if lm.ndim != 2:
        raise ValueError(f"pascal_context: LabelMap has shape {lm.shape}, expected a 2-D map")
    if not np.issubdtype(lm.dtype, np.integer):
        if not np.all(np.isfinite(lm)) or not np.array_equal(lm, np.round(lm)):
            raise ValueError("pascal_context: LabelMap holds non-integer values")
    bad = np.unique(lm[(lm < 0) | (lm > PASCAL_CONTEXT_MAX_ID)])
    if bad.size:
        raise ValueError(f"pascal_context: LabelMap ids {bad[:10].tolist()} are outside the 459-class list (0..459)")
    seg = _CTX_LUT[lm.astype(np.int64)]
    return np.where(seg == 0, IGNORE, seg - 1).astype(np.uint8)


def read_pascal_context(raw_dir: Path) -> Iterator[RawSample]:
    """VOC2010 ``ImageSets/Main/{train,val}.txt`` (4,998 / 5,105, the sizes of mmseg's split [I]) with
    ``trainval/<id>.mat`` labels."""
    root = raw_dir / VOC2010_ROOT
    labels = raw_dir / CONTEXT_LABEL_DIR
    for split in ("train", "val"):
        list_path = root / "ImageSets" / "Main" / f"{split}.txt"
        for sid in _read_list("pascal_context", list_path):
            image = _need("pascal_context", root / "JPEGImages" / f"{sid}.jpg", list_path, sid)
            label = _need("pascal_context", labels / f"{sid}.mat", list_path, sid)
            yield _sample("pascal_context", sid, split, image, label)


PASCAL_CONTEXT = DatasetSpec(
    name="pascal_context",
    title="Pascal Context 59",
    task="segmentation",
    scene="indoor, outdoor",
    archives=PASCAL_CONTEXT_ARCHIVES,
    reader=read_pascal_context,
    splits=("train", "val"),
    test_split="val",
    classes=PASCAL_CONTEXT_CLASSES,
    # mmseg 0.27 PascalContextDataset59 (reduce_zero_label=True); applied inside decode_pascal_context_label
    # (the decoder overrides DatasetSpec.decode_label), declared here for the record
    reduce_zero_label=True,
    label_decoder=decode_pascal_context_label,
    notes=(
        "labels from the Stanford trainval.tar.gz LabelMap instead of the Detail-API JSON that mmseg's "
        "converter reads (docs/choices.md, Pascal Context)",
        "splits = VOC2010 ImageSets/Main train/val (4,998 / 5,105, the Detail/mmseg split sizes) [I]",
        "459-class ids outside mmseg's 60-id _mapping -> background -> ignored (255)",
    ),
)

SPECS: tuple[DatasetSpec, ...] = (VOC, VOC_AUG, COCOSTUFF, PASCAL_CONTEXT)
