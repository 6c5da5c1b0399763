"""SUN RGB-D: a depth dataset (``sunrgbd``) and a 37-class segmentation dataset (``sunrgbd_seg``).

Sources of every value are given next to it: the SUN RGB-D page (rgbd.cs.princeton.edu) and its
``SUNRGBDtoolbox``, TUI-NICR/ESANet ``src/datasets/sunrgbd/prepare_dataset.py``, and the
Monocular-Depth-Estimation-Toolbox ("toolbox", zhyever/Monocular-Depth-Estimation-Toolbox at commit
d8aff50), whose SUN RGB-D evaluation DINOv2 uses. "[I]" marks our own inference (docs/choices.md).

Official layout (SUN RGB-D page; ESANet prepare_dataset.py). Fetch extracts both archives into ``raw_dir``:

* ``SUNRGBD.zip`` -> ``SUNRGBD/{kv1,kv2,realsense,xtion}/<subset>/<sample...>/`` with ``image/<name>.jpg``,
  ``depth/<name>.png`` (raw sensor depth), ``depth_bfx/<name>.png`` (filled), ``intrinsics.txt``, ...
  A sample folder may be nested deeper than one level (e.g. ``xtion/sun3ddata/<scene>/<seq>/<frame>``).
* ``SUNRGBDtoolbox.zip`` -> ``SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat`` (MATLAB v5 file; cell arrays
  ``alltrain`` (5,285) / ``alltest`` (5,050) of sample folders written as
  ``/n/fs/sun3d/data/SUNRGBD/<sensor>/<subset>/<sample>``), ``SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat``
  (v5 struct array, one record per image with ``rgbpath``/``rgbname``/``depthname``) and
  ``SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat`` (HDF5 / MATLAB v7.3; ``SUNRGBD2Dseg/seglabel`` is an
  (N, 1) array of object references, record i aligned with ``SUNRGBDMeta(i)``; each referenced
  array is the column-major (W, H) label map, 0 = void, 1..37 = the classes) — read exactly as
  TUI-NICR/ESANet ``src/datasets/sunrgbd/prepare_dataset.py`` does.

Depth (``sunrgbd``): train = ``alltrain`` of allsplit.mat (5,285; ankurhanda/sunrgbd-meta-data README);
test = the toolbox's ``SUNRGBD_val_splits.txt`` (5,050 lines ``SUNRGBD/.../image/x.jpg
SUNRGBD/.../depth/x.png``, pinned sha256; the list the toolbox ``configs/_base_/datasets/sun_rgbd.py``
and so DINOv2 evaluate on), fetched next to the archives.
Depth PNGs hold the millimetres rotated left by 3 bits within 16 bits; decoding rotates right by 3
(wrapping at 16 bits), divides by 1000 and clamps to 8 m (SUNRGBDtoolbox ``read3dPoints.m``; the toolbox's
``depth/datasets/sunrgbd.py`` ports it).

Segmentation (``sunrgbd_seg``): the same two archives; labels come from SUNRGBD2Dseg.mat (the only
place the official download holds the 37-class maps; the per-sample ``seg.mat`` files use the full
open vocabulary). The reader stores each map, values untouched, as an 8-bit PNG (lossless), since
the official container is one HDF5 file rather than per-sample files; the decoder applies mmseg's
``reduce_zero_label`` (0 = void -> 255, k -> k - 1).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample

# ----------------------------------------------------------------------------------------------
# archives and split files
# ----------------------------------------------------------------------------------------------
SUNRGBD_ZIP = "SUNRGBD.zip"
SUNRGBD_TOOLBOX_ZIP = "SUNRGBDtoolbox.zip"
SUNRGBD_VAL_LIST = "SUNRGBD_val_splits.txt"

SUNRGBD_ARCHIVE = Archive(
    filename=SUNRGBD_ZIP,
    urls=("http://rgbd.cs.princeton.edu/data/SUNRGBD.zip",),  # SUN RGB-D page (as ESANet prepare_dataset.py)
    # no published checksum or size for SUNRGBD.zip
)
SUNRGBD_TOOLBOX_ARCHIVE = Archive(
    filename=SUNRGBD_TOOLBOX_ZIP,
    urls=("http://rgbd.cs.princeton.edu/data/SUNRGBDtoolbox.zip",),  # SUN RGB-D page
    md5="18d22e1761d36352f37232cba102f91f",  # open-mmlab/mmdetection3d data/sunrgbd/README.md
)
# toolbox splits/SUNRGBD_val_splits.txt at zhyever/Monocular-Depth-Estimation-Toolbox@d8aff50
SUNRGBD_VAL_LIST_SHA256 = "a3f59e7fce9db49690f6993e9fe8c4ad1cb556a359f512138ee710b60bf5f0f2"
SUNRGBD_VAL_LIST_ARCHIVE = Archive(
    filename=SUNRGBD_VAL_LIST,
    urls=(
        "https://raw.githubusercontent.com/zhyever/Monocular-Depth-Estimation-Toolbox/"
        "d8aff50e75c4b0c183361c7690959d0269b45a9d/splits/SUNRGBD_val_splits.txt",  # GitHub raw URL of that file
    ),
    sha256=SUNRGBD_VAL_LIST_SHA256,
    size=894_598,  # byte size of that file at that commit
    extract=False,  # a plain text file, copied to raw_dir/SUNRGBD_val_splits.txt
)

ALLSPLIT = "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat"  # official split (ankurhanda/sunrgbd-meta-data README)
META = "SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat"  # ESANet prepare_dataset.py
SEG2D = "SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat"  # 37-class maps (ESANet prepare_dataset.py)
ALLSPLIT_KEYS = {"train": "alltrain", "test": "alltest"}  # allsplit.mat keys (ESANet prepare_dataset.py)
ORIGINAL_PREFIX = "/n/fs/sun3d/data/"  # prefix of the paths in allsplit.mat / SUNRGBDMeta.mat
SENSORS = ("kv1", "kv2", "realsense", "xtion")  # top folders of SUNRGBD.zip

# ----------------------------------------------------------------------------------------------
# depth encoding (SUNRGBDtoolbox read3dPoints.m; toolbox depth/datasets/sunrgbd.py)
# ----------------------------------------------------------------------------------------------
SUNRGBD_DEPTH_SHIFT = 3  # read3dPoints.m: bitor(bitshift(raw,-3), bitshift(raw,16-3))
SUNRGBD_DEPTH_SCALE = 1000.0  # ... then single(d)/1000 -> metres
SUNRGBD_DEPTH_CLAMP = 8.0  # ... then d(d>8) = 8; toolbox sunrgbd.py clamps GT and prediction to 8 m


def sunrgbd_rotate_right(raw: np.ndarray) -> np.ndarray:
    """The uint16 values rotated right by 3 bits, wrapping at 16 bits (the stored value -> millimetres)."""
    v = np.asarray(raw).astype(np.uint32)
    if v.size and int(v.max()) > 0xFFFF:
        raise ValueError(f"SUN RGB-D depth values must be 16-bit, got a maximum of {int(v.max())}")
    out = (v >> SUNRGBD_DEPTH_SHIFT) | ((v << (16 - SUNRGBD_DEPTH_SHIFT)) & 0xFFFF)
    return out.astype(np.uint16)


def sunrgbd_rotate_left(mm: np.ndarray) -> np.ndarray:
    """The inverse: millimetres (uint16) -> stored value, rotated left by 3 bits within 16 bits."""
    v = np.asarray(mm).astype(np.uint32)
    if v.size and int(v.max()) > 0xFFFF:
        raise ValueError(f"depth of {int(v.max())} mm does not fit SUN RGB-D's 16-bit encoding")
    out = ((v << SUNRGBD_DEPTH_SHIFT) & 0xFFFF) | (v >> (16 - SUNRGBD_DEPTH_SHIFT))
    return out.astype(np.uint16)


def _read_png(data: bytes, what: str, modes: tuple[str, ...]) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        if im.format != "PNG":
            raise ValueError(f"sunrgbd: {what} file is {im.format or 'not an image'}, expected a PNG")
        if im.mode not in modes:
            raise ValueError(f"sunrgbd: {what} PNG has mode {im.mode!r}, expected one of {modes}")
        arr = np.asarray(im)  # decodes the whole file: a truncated/corrupt PNG raises here
    if arr.ndim != 2:
        raise ValueError(f"sunrgbd: {what} PNG has shape {arr.shape}, expected a 2-D map")
    return arr


def decode_sunrgbd_depth(data: bytes) -> np.ndarray:
    """16-bit PNG -> metres float32: rotate right 3 bits (16-bit wrap), /1000, clamp to 8 m; 0 = no reading.

    The official encoding is an unsigned 16-bit PNG, which cannot hold NaN or inf; anything that is
    not a single-channel 16-bit PNG (e.g. a float TIFF) is rejected with a ValueError.
    """
    raw = _read_png(data, "depth", ("I;16", "I;16B", "I;16L", "I"))
    if raw.dtype != np.uint16:
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 0xFFFF):
            raise ValueError(f"sunrgbd: depth PNG values outside 16 bits (min {int(raw.min())}, max {int(raw.max())})")
        raw = raw.astype(np.uint16)
    metres = sunrgbd_rotate_right(raw).astype(np.float32) / np.float32(SUNRGBD_DEPTH_SCALE)
    return np.minimum(metres, np.float32(SUNRGBD_DEPTH_CLAMP)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# 37 classes (SUN RGB-D 37-class list, in ESANet's order): label 0 = void, k = SUNRGBD37_CLASSES[k - 1]
# ----------------------------------------------------------------------------------------------
SUNRGBD37_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel", "shower curtain",
    "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag",
)
assert len(SUNRGBD37_CLASSES) == 37
SUNRGBD_VOID = 0


def decode_sunrgbd_label(data: bytes) -> np.ndarray:
    """8-bit PNG of the official values (0 void, 1..37) -> uint8 ids: 0 -> 255, k -> k - 1.

    mmseg 0.27 reduce_zero_label (``mmseg/datasets/pipelines/loading.py`` LoadAnnotations), except that
    a stored 255 becomes 254 rather than 255: 255 is not a SUN RGB-D value, so it must stay visible to
    validation, like every value above 37 (which decodes to >= 37, outside the class list).
    """
    raw = _read_png(data, "label", ("L", "P", "I;16", "I;16B", "I;16L", "I"))
    if raw.dtype != np.uint8:
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 255):
            bad = int(raw.max()) if int(raw.max()) > 255 else int(raw.min())
            raise ValueError(f"sunrgbd_seg: label value {bad} is outside the 37-class list (0 void, 1..37)")
        raw = raw.astype(np.uint8)
    out = raw.astype(np.int16) - 1
    out[raw == SUNRGBD_VOID] = 255
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------------
def _relative(entry: str, dataset: str, source: Path) -> str:
    """``/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/`` -> ``SUNRGBD/kv1/NYUdata/NYU0001``."""
    e = str(entry).strip().rstrip("/")
    if e.startswith(ORIGINAL_PREFIX):
        e = e[len(ORIGINAL_PREFIX):]
    elif "/SUNRGBD/" in e:
        e = e[e.index("/SUNRGBD/") + 1:]
    e = e.lstrip("/")
    parts = e.split("/")
    if len(parts) < 4 or parts[0] != "SUNRGBD" or parts[1] not in SENSORS or ".." in parts:
        raise ValueError(f"{dataset}: {source}: entry {entry!r} is not a SUNRGBD/<sensor>/<subset>/<sample> path")
    return e


def _loadmat(path: Path, dataset: str) -> dict:
    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: {path} is missing: the SUNRGBDtoolbox.zip archive must hold it")
    return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)


def _allsplit(raw_dir: Path, dataset: str) -> tuple[Path, dict[str, list[str]]]:
    path = raw_dir / ALLSPLIT
    mat = _loadmat(path, dataset)
    lists = {}
    for split, key in ALLSPLIT_KEYS.items():
        if key not in mat:
            raise ValueError(f"{dataset}: {path} has no {key!r} list")
        entries = [_relative(e, dataset, path) for e in np.atleast_1d(mat[key]).ravel()]
        if len(set(entries)) != len(entries):
            raise ValueError(f"{dataset}: {path}: {key!r} lists a sample folder more than once")
        lists[split] = entries
    overlap = set(lists["train"]) & set(lists["test"])
    if overlap:
        raise ValueError(f"{dataset}: {path}: {len(overlap)} sample(s) in both alltrain and alltest, e.g. {min(overlap)}")
    return path, lists


def _sample_id(rel_dir: str) -> str:
    return rel_dir.split("/", 1)[1]  # drop the "SUNRGBD/" root: kv2/kinect2data/<sample>


def _one_file(folder: Path, pattern: str, dataset: str, source: Path, entry: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"{dataset}: {source}: entry {entry!r} has no {folder.name}/{pattern} ({folder})")
    if len(found) > 1:
        raise ValueError(f"{dataset}: {source}: entry {entry!r} has {len(found)} files {folder}/{pattern}, expected one")
    return found[0]


def read_sunrgbd(raw_dir: Path) -> Iterator[RawSample]:
    """Depth: ``alltrain`` of allsplit.mat (train) and ``SUNRGBD_val_splits.txt`` (test), sorted by id."""
    raw_dir = Path(raw_dir)
    allsplit, lists = _allsplit(raw_dir, "sunrgbd")
    val_list = raw_dir / SUNRGBD_VAL_LIST
    if not val_list.is_file():
        raise FileNotFoundError(f"sunrgbd: the test split list {val_list} is missing (toolbox {SUNRGBD_VAL_LIST})")
    test: list[tuple[str, str, str]] = []
    for lineno, line in enumerate(val_list.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"sunrgbd: {val_list}:{lineno}: expected 'image_path depth_path', got {line!r}")
        rgb, depth = (p.lstrip("/") for p in parts)
        rel_dir = _relative(rgb.rsplit("/", 2)[0], "sunrgbd", val_list)
        test.append((_sample_id(rel_dir), rgb, depth))
    ids = [t[0] for t in test]
    if len(set(ids)) != len(ids):
        raise ValueError(f"sunrgbd: {val_list} lists a sample more than once")
    leaked = set(ids) & {_sample_id(d) for d in lists["train"]}
    if leaked:
        raise ValueError(f"sunrgbd: {len(leaked)} test sample(s) of {val_list} are in alltrain of {allsplit}, e.g. {min(leaked)}")

    for rel_dir in sorted(lists["train"], key=_sample_id):
        folder = raw_dir / rel_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"sunrgbd: {allsplit}: alltrain entry {rel_dir!r} does not exist ({folder})")
        rgb_path = _one_file(folder / "image", "*.jpg", "sunrgbd", allsplit, rel_dir)
        depth_path = _one_file(folder / "depth", "*.png", "sunrgbd", allsplit, rel_dir)
        yield RawSample(id=_sample_id(rel_dir), split="train", image=rgb_path.read_bytes(), image_format="jpg",
                        depth=depth_path.read_bytes())
    for sample_id, rgb, depth in sorted(test):
        paths = (raw_dir / rgb, raw_dir / depth)
        for rel, p in zip((rgb, depth), paths):
            if not p.is_file():
                raise FileNotFoundError(f"sunrgbd: {val_list}: entry {rel!r} does not exist ({p})")
        yield RawSample(id=sample_id, split="test", image=paths[0].read_bytes(),
                        image_format=paths[0].suffix.lstrip(".").lower(), depth=paths[1].read_bytes())


def encode_label_png(label: np.ndarray) -> bytes:
    """The label map's values, untouched, as an 8-bit greyscale PNG (lossless; fixed zlib level)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _seglabel_array(h5, ref, sample_id: str, path: Path) -> np.ndarray:
    arr = np.asarray(h5[ref][()])
    if arr.ndim != 2:
        raise ValueError(f"sunrgbd_seg: {path}: label of {sample_id} has shape {arr.shape}, expected 2-D")
    arr = arr.T  # MATLAB column-major (W, H) -> (H, W), as ESANet prepare_dataset.py
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise ValueError(f"sunrgbd_seg: {path}: label of {sample_id} holds non-integer values")
    elif arr.dtype.kind not in "ui":
        raise ValueError(f"sunrgbd_seg: {path}: label of {sample_id} has dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        bad = arr.max() if arr.max() > 255 else arr.min()
        raise ValueError(f"sunrgbd_seg: {path}: label of {sample_id} holds value {bad:g}, outside 0 (void)..37")
    return arr.astype(np.uint8)


def read_sunrgbd_seg(raw_dir: Path) -> Iterator[RawSample]:
    """Segmentation: allsplit.mat folders -> SUNRGBDMeta.mat record -> SUNRGBD2Dseg.mat label map."""
    import h5py

    raw_dir = Path(raw_dir)
    allsplit, lists = _allsplit(raw_dir, "sunrgbd_seg")
    meta_path, seg_path = raw_dir / META, raw_dir / SEG2D
    meta = np.atleast_1d(_loadmat(meta_path, "sunrgbd_seg")["SUNRGBDMeta"]).ravel()
    index: dict[str, int] = {}
    for i, record in enumerate(meta):
        rel_dir = _relative(str(record.rgbpath).rsplit("/", 2)[0], "sunrgbd_seg", meta_path)
        index[rel_dir] = i
    if not seg_path.is_file():
        raise FileNotFoundError(f"sunrgbd_seg: {seg_path} is missing: the SUNRGBDtoolbox.zip archive must hold it")
    with h5py.File(seg_path, "r") as h5:
        seglabel = h5["SUNRGBD2Dseg"]["seglabel"]
        if seglabel.shape[0] != len(meta):
            raise ValueError(f"sunrgbd_seg: {seg_path} has {seglabel.shape[0]} label maps, {meta_path} {len(meta)} records")
        for split in ("train", "test"):
            for rel_dir in sorted(lists[split], key=_sample_id):
                key = ALLSPLIT_KEYS[split]
                if rel_dir not in index:
                    raise FileNotFoundError(f"sunrgbd_seg: {allsplit}: {key} entry {rel_dir!r} has no record in {meta_path}")
                i = index[rel_dir]
                rgb_path = raw_dir / rel_dir / "image" / str(meta[i].rgbname)
                if not rgb_path.is_file():
                    raise FileNotFoundError(f"sunrgbd_seg: {allsplit}: {key} entry {rel_dir!r}: {rgb_path} does not exist")
                sample_id = _sample_id(rel_dir)
                label = _seglabel_array(h5, seglabel[i][0], sample_id, seg_path)
                yield RawSample(id=sample_id, split=split, image=rgb_path.read_bytes(), image_format="jpg",
                                label=encode_label_png(label))


# ----------------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------------
SUNRGBD = DatasetSpec(
    name="sunrgbd",
    official_counts=(("train", 5285), ("test", 5050)),  # allsplit.mat alltrain / toolbox SUNRGBD_val_splits.txt
    title="SUN RGB-D (depth)",
    task="depth",
    scene="indoor",
    archives=(SUNRGBD_ARCHIVE, SUNRGBD_TOOLBOX_ARCHIVE, SUNRGBD_VAL_LIST_ARCHIVE),
    reader=read_sunrgbd,
    splits=("train", "test"),  # 5,285 / 5,050 (paper Table 2: 5.2K / 5K)
    test_split="test",
    depth_encoding="png_sunrgbd_rot3",
    depth_scale=SUNRGBD_DEPTH_SCALE,  # after the 3-bit rotation (read3dPoints.m)
    depth_decoder=decode_sunrgbd_depth,  # includes the 8 m clamp (read3dPoints.m; toolbox sunrgbd.py pre_eval)
    min_depth=1e-3,  # toolbox configs/_base_/datasets/sun_rgbd.py min_depth
    max_depth=10.0,  # toolbox configs/_base_/datasets/sun_rgbd.py max_depth; sunrgbd.py masks gt < 10 after the 8 m clamp
    eval_clip_depth=SUNRGBD_DEPTH_CLAMP,  # toolbox depth/datasets/sunrgbd.py pre_eval clips GT and prediction to 8 m
    eval_crop=(45, 471, 41, 601),  # toolbox depth/datasets/sunrgbd.py eval box, on the original-resolution map
    eval_crop_name="eigen",
    pinned_files=((SUNRGBD_VAL_LIST, SUNRGBD_VAL_LIST_SHA256),),  # toolbox splits/ at d8aff50
    notes=(
        "Decoded GT is clamped to 8 m (read3dPoints.m); predictions are clipped to 8 m at evaluation too "
        "(eval_clip_depth; toolbox depth/datasets/sunrgbd.py pre_eval).",
        "Eval box [45:471, 41:601] applies to the original-resolution map; smaller maps (e.g. 561x427) are clipped by slicing.",
        "Training reads the raw depth/ maps (as the toolbox test config); depth_bfx/ is not used: our choice [I] "
        "(docs/choices.md, SUN RGB-D depth).",
    ),
)

SUNRGBD_SEG = DatasetSpec(
    name="sunrgbd_seg",
    official_counts=(("train", 5285), ("test", 5050)),  # allsplit.mat alltrain / alltest
    title="SUN RGB-D (37-class segmentation)",
    task="segmentation",
    scene="indoor",
    archives=(SUNRGBD_ARCHIVE, SUNRGBD_TOOLBOX_ARCHIVE),  # shared with sunrgbd (same filenames and content)
    reader=read_sunrgbd_seg,
    splits=("train", "test"),  # 5,285 / 5,050 (paper Table 1: 5.2K train)
    test_split="test",
    classes=SUNRGBD37_CLASSES,
    reduce_zero_label=True,  # 0 = void -> ignored (ESANet: 0 = void; mmseg reduce_zero_label)
    label_decoder=decode_sunrgbd_label,
    notes=(
        "Labels: SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat, aligned with SUNRGBDMeta.mat (ESANet prepare_dataset.py).",
        "No mmseg 0.27 config exists for SUN RGB-D; the ADE20K-like pipeline is our assumption [I] (as "
        "third-party mmseg configs for SUN RGB-D use; docs/choices.md).",
    ),
)

SPECS: tuple[DatasetSpec, ...] = (SUNRGBD, SUNRGBD_SEG)

__all__ = [
    "SPECS", "SUNRGBD", "SUNRGBD_SEG", "SUNRGBD37_CLASSES", "decode_sunrgbd_depth", "decode_sunrgbd_label",
    "read_sunrgbd", "read_sunrgbd_seg", "sunrgbd_rotate_left", "sunrgbd_rotate_right",
]
