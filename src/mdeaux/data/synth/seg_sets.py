"""Synthetic Pascal VOC 2012 + SBD, COCO-Stuff 164k and Pascal Context in their official layouts.

* ``write_voc``: ``VOCtrainval_11-May-2012.tar`` (``VOCdevkit/VOC2012``: JPEGImages, SegmentationClass
  palette PNGs with a 255 boundary band, ImageSets/Segmentation/{train,val,trainval}.txt) and
  ``benchmark.tgz`` (``benchmark_RELEASE/dataset``: img/*.jpg, cls/*.mat ``GTcls``, train.txt, val.txt).
* ``write_cocostuff``: ``train2017.zip``, ``val2017.zip`` (JPEGs) and ``stuffthingmaps_trainval2017.zip``
  (8-bit PNGs of 0-based ids 0..181, 255 unlabeled).
* ``write_pascal_context``: ``VOCtrainval_03-May-2010.tar`` (``VOCdevkit/VOC2010``: JPEGImages,
  ImageSets/Main/{train,val,trainval}.txt) and ``trainval.tar.gz`` (``trainval/<id>.mat`` with ``LabelMap``).

Mini-world choices (the sources are silent): only the files the readers need are written (no
Annotations XML, SegmentationObject, inst/ folders); the renderer's indoor rooms stand in for the
photos; every surface without a counterpart in a dataset's class list gets that dataset's
background/unlabeled value. Archives are byte-identical for one seed: per-frame seeds via
``derive_seed``, sorted members, fixed tar/zip/gzip metadata, MAT-file headers without a timestamp.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from mdeaux.atomic import atomic_path
from mdeaux.data.datasets import seg_sets as S
from mdeaux.data.synth.archive import (
    PNG_COMPRESS_LEVEL,
    check_count,
    derive_seed,
    encode_jpeg,
    encode_png,
    run_jobs,
    write_zip,
)
from mdeaux.data.synth.render import Frame, render_frame
from mdeaux.data.synth.room import all_class_names
from mdeaux.data.synth.sensor import _dilate

MAX_ATTEMPTS = 10  # re-render (next derived seed) until a frame shows a class the dataset requires
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created on: Thu Jan  1 00:00:00 1970"  # fixed, no clock

# -- class mappings: renderer surface names -> dataset classes (our choice where not obvious) --------
# VOC: only diningtable and sofa exist among the rendered surfaces; the rest is background 0 (VOC 2012 classes).
VOC_MAP = {"table": "diningtable", "sofa": "sofa"}
VOC_LABELS = {name: S.VOC_CLASSES.index(cls) for name, cls in VOC_MAP.items()}
VOC_SCENES = ("dining_room", "kitchen", "living_room", "classroom", "bookstore")  # rooms with tables / sofas
VOC_BOUNDARY = 2  # half-width (px) of the 255 band on object outlines (VOC's ~5 px void border; our approximation)
# VOC image sizes: 500 px long side (our choice after the common VOC sizes)
VOC_SIZES = ((500, 375), (500, 333), (375, 500), (500, 400))
VOC_SIZE_WEIGHTS = (0.55, 0.25, 0.15, 0.05)

# COCO-Stuff: renderer name -> COCO-Stuff class; missing -> 255 unlabeled (the stuffthingmaps convention,
# nightrome/cocostuff README.md)
COCOSTUFF_MAP = {
    "wall": "wall-other", "floor": "floor-wood", "ceiling": "ceiling-other", "cabinet": "cabinet",
    "table": "dining table", "coffee table": "table", "desk": "desk-stuff", "bed": "bed", "sofa": "couch",
    "chest of drawers": "cupboard", "box": "cardboard", "bookcase": "shelf", "wardrobe": "cupboard",
    "refrigerator": "refrigerator", "stove": "oven", "kitchen island": "counter", "ball": "sports ball",
    "ottoman": "furniture-other", "lamp": "light", "vase": "vase", "door": "door-stuff",
    "windowpane": "window-other", "rug": "rug", "light": "light", "poster": "banner",
}
# written as the 0-based stuffthingmaps id (the inverse of mmseg's clsID_to_trID)
COCOSTUFF_LABELS = {name: S.COCOSTUFF_SOURCE_IDS[S.COCOSTUFF_CLASSES.index(c)] for name, c in COCOSTUFF_MAP.items()}
COCO_SIZES = ((640, 480), (640, 427), (480, 640), (640, 426))  # COCO: 640 px long side (our choice)
COCO_SIZE_WEIGHTS = (0.45, 0.3, 0.15, 0.1)

# Pascal Context: renderer name -> 59-class name, written as its 459-class id; missing -> 0 (background)
CONTEXT_MAP = {
    "wall": "wall", "floor": "floor", "ceiling": "ceiling", "table": "table", "coffee table": "table",
    "desk": "table", "kitchen island": "table", "sofa": "sofa", "bed": "bed", "cabinet": "cabinet",
    "chest of drawers": "cabinet", "wardrobe": "cabinet", "bookcase": "shelves", "lamp": "light",
    "light": "light", "door": "door", "windowpane": "window", "rug": "floor",
}
CONTEXT_LABELS = {name: S.PASCAL_CONTEXT_459_IDS[c] for name, c in CONTEXT_MAP.items()}

for _table in (VOC_MAP, COCOSTUFF_MAP, CONTEXT_MAP):
    assert set(_table) <= set(all_class_names()), set(_table) - set(all_class_names())


# -- deterministic containers --------------------------------------------------------------------
def write_tar(target: Path, root: Path, *, gz: bool = False) -> None:
    """Tar (optionally gzip) everything under ``root`` with sorted members and fixed metadata, atomically."""
    entries = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*"))
    with atomic_path(target) as tmp, open(tmp, "wb") as raw:
        fh = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) if gz else raw
        try:
            with tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tf:
                for name, path in entries:
                    info = tarfile.TarInfo(name)
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    if path.is_dir():
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tf.addfile(info)
                    else:
                        data = path.read_bytes()
                        info.size, info.mode = len(data), 0o644
                        tf.addfile(info, io.BytesIO(data))
        finally:
            if gz:
                fh.close()


def encode_mat(variables: dict) -> bytes:
    """A compressed MATLAB 5 MAT-file whose header carries no creation time (byte-stable)."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", do_compression=True, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = MAT_HEADER.ljust(116)  # the 116-byte descriptive text; subsystem/version/endian follow
    return bytes(data)


def encode_palette_png(indices: np.ndarray, palette: list[int]) -> bytes:
    """An 8-bit palette ("P") PNG of ``indices`` (the VOC SegmentationClass encoding)."""
    im = Image.frombytes("P", (indices.shape[1], indices.shape[0]), np.ascontiguousarray(indices, dtype=np.uint8).tobytes())
    im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def _pick_size(rng: np.random.Generator, sizes, weights) -> tuple[int, int]:
    return sizes[int(rng.choice(len(sizes), p=weights))]


def _outline(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px of a boundary between two different labels, one side an object (> 0)."""
    edge = np.zeros(labels.shape, bool)
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        diff = (a != b) & ((a > 0) | (b > 0))
        if a.shape[0] != labels.shape[0]:
            edge[1:] |= diff
            edge[:-1] |= diff
        else:
            edge[:, 1:] |= diff
            edge[:, :-1] |= diff
    return _dilate(edge, max(width - 1, 0))


@dataclass(frozen=True)
class SegJob:
    seed: int
    width: int
    height: int
    scene_type: str | None
    labels: tuple[tuple[str, int], ...]
    other: int
    need: tuple[int, ...]  # the frame must show one of these ids (empty: anything goes)


def render_seg_job(job: SegJob) -> tuple[bytes, np.ndarray]:
    """(JPEG bytes, label map int32) of one frame, re-rendered until it shows a required class."""
    for attempt in range(MAX_ATTEMPTS):
        seed = job.seed if attempt == 0 else derive_seed(job.seed, "attempt", attempt)
        frame: Frame = render_frame(seed, dict(job.labels), width=job.width, height=job.height,
                                    scene_type=job.scene_type, other=job.other)
        if not job.need or np.isin(frame.labels, job.need).any():
            return encode_jpeg(frame.rgb), frame.labels
    raise RuntimeError(f"no frame with one of the ids {job.need} after {MAX_ATTEMPTS} attempts (seed {job.seed})")


def _check_counts(name: str, counts: dict[str, int]) -> dict[str, int]:
    if set(counts) != {"train", "val"}:
        raise ValueError(f"{name}: counts must give the splits ['train', 'val'], got {sorted(counts)!r}")
    return {k: check_count(f"{name} {k}", v) for k, v in counts.items()}


def _stage(out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}-stage-", dir=out_dir))


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _lines(ids) -> str:
    return "".join(f"{i}\n" for i in sorted(ids))


def _voc_ids(rng: np.random.Generator, n: int, years=(2007, 2008, 2009, 2010, 2011)) -> list[str]:
    """``n`` distinct VOC-style ids ``YYYY_NNNNNN``, sorted."""
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"{int(rng.choice(years))}_{int(rng.integers(0, 8000)):06d}")
    return sorted(ids)


# -- Pascal VOC 2012 + SBD -------------------------------------------------------------------------
def write_voc(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """``VOCtrainval_11-May-2012.tar`` + ``benchmark.tgz``; ``counts`` = {"train": SBD train, "val": VOC val}.

    The id pools overlap as the real ones do (SBD ``train.txt`` / ``val.txt`` vs VOC2012
    ``ImageSets/Segmentation``): SBD train holds some VOC val images and all VOC train images; SBD val
    adds images of its own. VOC train = ceil(train/4), SBD val = ceil(train/4) (mini-world proportions,
    our choice), so trainaug = VOC train ∪ SBD train ∪ SBD val − VOC val.
    """
    counts = _check_counts("voc", counts)
    n_sbd_train, n_val = counts["train"], counts["val"]
    out_dir = Path(out_dir)
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    n_voc_train, n_sbd_val = -(-n_sbd_train // 4), -(-n_sbd_train // 4)
    pool = _voc_ids(rng, n_val + n_sbd_train + n_sbd_val)
    order = rng.permutation(len(pool))
    voc_val = sorted(pool[i] for i in order[:n_val])
    n_overlap = min(n_val // 2, n_sbd_train // 4)  # SBD train images that are VOC val images
    rest = [pool[i] for i in order[n_val:]]
    sbd_train = sorted(voc_val[:n_overlap] + rest[: n_sbd_train - n_overlap])
    sbd_val = sorted(rest[n_sbd_train - n_overlap:][:n_sbd_val])
    voc_train = sorted(rng.choice(sbd_train, size=min(n_voc_train, len(sbd_train)), replace=False).tolist()) \
        if sbd_train else []
    images = sorted(set(voc_val) | set(sbd_train) | set(sbd_val))
    labels = tuple(sorted(VOC_LABELS.items()))
    jobs = []
    for sid in images:
        w, h = _pick_size(rng, VOC_SIZES, VOC_SIZE_WEIGHTS)
        scene = VOC_SCENES[int(rng.integers(len(VOC_SCENES)))]
        jobs.append(SegJob(derive_seed(seed, "image", sid), w, h, scene, labels, 0, tuple(VOC_LABELS.values())))
    frames = dict(zip(images, run_jobs(render_seg_job, jobs, workers, "synth voc"), strict=True))
    palette = S.voc_palette()
    stage = _stage(out_dir, "voc")
    try:
        voc = stage / "voc" / S.VOC_ROOT
        for sid in images:  # VOC2012 JPEGImages holds every image (superset of SBD's)
            _put(voc / "JPEGImages" / f"{sid}.jpg", frames[sid][0])
        for sid in sorted(set(voc_train) | set(voc_val)):
            seg = frames[sid][1].astype(np.uint8)
            seg[_outline(seg, VOC_BOUNDARY)] = S.IGNORE  # the void (255) band on object outlines, as in VOC
            _put(voc / "SegmentationClass" / f"{sid}.png", encode_palette_png(seg, palette))
        sets = voc / "ImageSets" / "Segmentation"
        _put(sets / "train.txt", _lines(voc_train).encode())
        _put(sets / "val.txt", _lines(voc_val).encode())
        _put(sets / "trainval.txt", _lines(set(voc_train) | set(voc_val)).encode())
        sbd = stage / "sbd" / S.SBD_ROOT
        for sid in sorted(set(sbd_train) | set(sbd_val)):
            seg = frames[sid][1].astype(np.uint8)
            present = np.unique(seg[seg > 0]).astype(np.uint8)
            bounds = np.empty((20, 1), dtype=object)  # GTcls.Boundaries: one sparse edge map per class
            for k in range(20):
                bounds[k, 0] = scipy.sparse.csc_matrix(_outline((seg == k + 1).astype(np.uint8), 1) & (seg == k + 1))
            gtcls = {"Boundaries": bounds, "Segmentation": seg, "CategoriesPresent": present}
            _put(sbd / "cls" / f"{sid}.mat", encode_mat({"GTcls": gtcls}))
            _put(sbd / "img" / f"{sid}.jpg", frames[sid][0])
        _put(sbd / "train.txt", _lines(sbd_train).encode())
        _put(sbd / "val.txt", _lines(sbd_val).encode())
        tar, tgz = (out_dir / a.filename for a in S.VOC_ARCHIVES)
        write_tar(tar, stage / "voc")
        write_tar(tgz, stage / "sbd", gz=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [tar, tgz]


# -- COCO-Stuff 164k -------------------------------------------------------------------------------
def write_cocostuff(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """``train2017.zip``, ``val2017.zip``, ``stuffthingmaps_trainval2017.zip`` (COCO 12-digit file names)."""
    counts = _check_counts("cocostuff", counts)
    out_dir = Path(out_dir)
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    total = counts["train"] + counts["val"]
    numbers = rng.choice(600_000, size=total, replace=False)  # COCO image ids (our range)
    plan = [("train2017", int(n)) for n in numbers[: counts["train"]]] + \
           [("val2017", int(n)) for n in numbers[counts["train"]:]]
    labels = tuple(sorted(COCOSTUFF_LABELS.items()))
    jobs = [SegJob(derive_seed(seed, folder, n), *_pick_size(rng, COCO_SIZES, COCO_SIZE_WEIGHTS), None,
                   labels, S.IGNORE, ()) for folder, n in plan]
    results = run_jobs(render_seg_job, jobs, workers, "synth cocostuff")
    stage = _stage(out_dir, "cocostuff")
    try:
        for (folder, n), (jpg, seg) in zip(plan, results, strict=True):
            _put(stage / folder / folder / f"{n:012d}.jpg", jpg)
            _put(stage / "stuffthingmaps" / folder / f"{n:012d}.png", encode_png(seg.astype(np.uint8)))
        for folder in ("train2017", "val2017"):  # empty splits still get their folder
            (stage / folder / folder).mkdir(parents=True, exist_ok=True)
            (stage / "stuffthingmaps" / folder).mkdir(parents=True, exist_ok=True)
        paths = [out_dir / a.filename for a in S.COCOSTUFF_ARCHIVES]
        write_zip(paths[0], stage / "train2017")
        write_zip(paths[1], stage / "val2017")
        write_zip(paths[2], stage / "stuffthingmaps")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return paths


# -- Pascal Context --------------------------------------------------------------------------------
def write_pascal_context(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """``VOCtrainval_03-May-2010.tar`` (images + Main split lists) and ``trainval.tar.gz`` (LabelMap .mat)."""
    counts = _check_counts("pascal_context", counts)
    out_dir = Path(out_dir)
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    pool = _voc_ids(rng, counts["train"] + counts["val"], years=(2008, 2009, 2010))
    order = rng.permutation(len(pool))
    train = sorted(pool[i] for i in order[: counts["train"]])
    val = sorted(pool[i] for i in order[counts["train"]:])
    labels = tuple(sorted(CONTEXT_LABELS.items()))
    ids = sorted(train + val)
    jobs = [SegJob(derive_seed(seed, "image", sid), *_pick_size(rng, VOC_SIZES, VOC_SIZE_WEIGHTS), None,
                   labels, 0, ()) for sid in ids]
    results = run_jobs(render_seg_job, jobs, workers, "synth pascal_context")
    stage = _stage(out_dir, "pascal_context")
    try:
        voc = stage / "voc" / S.VOC2010_ROOT
        for sid, (jpg, seg) in zip(ids, results, strict=True):
            _put(voc / "JPEGImages" / f"{sid}.jpg", jpg)
            # LabelMap: 459-class ids as uint16 (Stanford .mat dtype not checked [U])
            _put(stage / "ctx" / S.CONTEXT_LABEL_DIR / f"{sid}.mat", encode_mat({"LabelMap": seg.astype(np.uint16)}))
        main = voc / "ImageSets" / "Main"
        _put(main / "train.txt", _lines(train).encode())
        _put(main / "val.txt", _lines(val).encode())
        _put(main / "trainval.txt", _lines(ids).encode())
        (stage / "ctx" / S.CONTEXT_LABEL_DIR).mkdir(parents=True, exist_ok=True)
        tar, tgz = (out_dir / a.filename for a in S.PASCAL_CONTEXT_ARCHIVES)
        write_tar(tar, stage / "voc")
        write_tar(tgz, stage / "ctx", gz=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [tar, tgz]


WRITERS = {"voc": write_voc, "voc_aug": write_voc, "cocostuff": write_cocostuff, "pascal_context": write_pascal_context}
