"""Write the mini-world KITTI and DIODE archives in their official layouts (byte-identical per seed).

* KITTI (cvlibs.net depth benchmark and raw data; Monocular-Depth-Estimation-Toolbox ``splits/``):
  ``data_depth_annotated.zip`` with sparse LiDAR-like ground truth
  (uint16 PNG, metres * 256, 0 = none), one ``<drive>_sync.zip`` per drive of
  ``lidar_depth.KITTI_RAW_DRIVES`` (RGB PNG 1242x375, sequential frames down one road per drive;
  drives without frames hold only their folders) and the toolbox lists ``kitti_eigen_{train,test}.txt``
  (``rgb depth focal`` lines, unsorted; the test list holds some ``None`` entries: frames 0-4 of a drive,
  for which the annotated set has no ground truth, as in the real data).
* DIODE (diode-dataset/diode-devkit ``README.md``, ``diode.py``): ``train.tar.gz`` and ``val.tar.gz`` with
  ``{train,val}/{indoors,outdoor}/scene_<5 digits>/scan_<5 digits>/<scene>_<scan>_<domain>_<h>_<v>{.png,_depth.npy,_depth_mask.npy}``,
  RGB 1024x768, depth float32 (768, 1024, 1) metres, mask (768, 1024) float32 (the 2nd, 5th, ... of a domain float64,
  since both occur in the real data). Indoor scenes come from ``render.render_frame``, outdoor ones from
  ``outdoor.render_outdoor``. ``write_diode_indoor`` / ``write_diode_outdoor`` write both domains (the
  real archives hold both): their own at ``counts``, the other with one frame per split, so every reader
  must filter its domain. ``write_diode`` writes both at given counts (for a shared mirror).
"""

from __future__ import annotations

import gzip
import io
import math
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mdeaux.atomic import atomic_path
from mdeaux.data.datasets.lidar_depth import (
    DIODE_DOMAINS,
    DIODE_SPLITS,
    KITTI,
    KITTI_DEPTH_SCALE,
    KITTI_RAW_DRIVES,
    KITTI_SPLITS,
    KITTI_TEST_DRIVES,
    KITTI_TRAIN_DRIVES,
)
from mdeaux.data.synth.archive import (
    PNG_COMPRESS_LEVEL,
    TAR_MTIME,
    check_count,
    derive_seed,
    encode_png,
    run_jobs,
    write_zip,
)
from mdeaux.data.synth.outdoor import (
    DIODE_HEIGHT,
    DIODE_WIDTH,
    KITTI_FOCAL,
    KITTI_HEIGHT,
    KITTI_WIDTH,
    diode_intrinsics,
    kitti_intrinsics,
    lidar_sparsify,
    render_outdoor,
)
from mdeaux.data.synth.outdoor_scene import OUTDOOR_CLASSES
from mdeaux.data.synth.render import render_frame
from mdeaux.data.synth.room import all_class_names

# the annotated set has no GT for the first 5 frames of a drive (inferred from its accumulation of 11
# scans around each frame, Uhrig et al., 3DV 2017)
KITTI_FIRST_GT_FRAME = 5
KITTI_FRAMES_PER_DRIVE = 4  # mini-world choice: frames per drive before the next drive starts
DIODE_RANGE = 350.0  # m; outdoor laser returns beyond are missing (our choice, about DIODE's scanner range)


def encode_png_rgb(rgb: np.ndarray) -> bytes:
    """8-bit RGB PNG, fixed zlib level, no metadata (KITTI raw and DIODE images are PNG)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.dtype} with shape {rgb.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _check_counts(name: str, counts: Mapping[str, int], splits: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(counts, Mapping) or set(counts) != set(splits):
        raise ValueError(f"{name}: counts must give the splits {list(splits)}, got {counts!r}")
    return {s: check_count(f"counts[{s!r}]", counts[s]) for s in splits}


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# -- KITTI --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KittiJob:
    drive: str
    frame: int
    seed: int
    scene_seed: int
    with_gt: bool


def render_kitti_job(job: KittiJob) -> tuple[bytes, bytes | None]:
    """RGB PNG and sparse GT PNG (uint16, metres * 256; None without GT) of one KITTI frame."""
    classes = dict.fromkeys(OUTDOOR_CLASSES, 0)
    frame = render_outdoor(job.seed, width=KITTI_WIDTH, height=KITTI_HEIGHT, intrinsics=kitti_intrinsics(),
                           driving=True, classes=classes, scene_seed=job.scene_seed, frame_index=job.frame)
    gt_png = None
    if job.with_gt:
        rng = np.random.Generator(np.random.PCG64(derive_seed(job.seed, "lidar")))
        sparse = lidar_sparsify(frame.depth, frame.intrinsics, rng)
        # KITTI depth devkit read_depth.py: depth = png / 256, 0 = no GT
        gt = np.clip(np.rint(sparse.astype(np.float64) * KITTI_DEPTH_SCALE), 0, 65535).astype(np.uint16)
        gt_png = encode_png(gt)
    return encode_png_rgb(frame.rgb), gt_png


def _kitti_plan(counts: dict[str, int], seed: int) -> tuple[list[KittiJob], dict[str, list[str]]]:
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    jobs: list[KittiJob] = []
    lines: dict[str, list[str]] = {"train": [], "test": []}
    focal = f"{KITTI_FOCAL:.4f}"  # third column of the toolbox split lines (splits/kitti_eigen_*.txt)
    for split, drives in (("train", sorted(KITTI_TRAIN_DRIVES)), ("test", sorted(KITTI_TEST_DRIVES))):
        n = counts[split]
        # about the real share: 45 of the 697 lines of toolbox splits/kitti_eigen_test.txt have no GT
        n_none = math.ceil(n * 45 / 652) if split == "test" and n else 0
        n_drives = min(len(drives), max(1, math.ceil((n + n_none) / KITTI_FRAMES_PER_DRIVE)))
        per_drive = [list() for _ in range(n_drives)]
        for i in range(n):
            per_drive[i % n_drives].append(True)
        for i in range(n_none):
            per_drive[i % n_drives].append(False)
        for d, flags in enumerate(per_drive):
            drive = drives[d]
            scene_seed = derive_seed(seed, "drive", drive)
            date = drive[:10]
            frames_gt = KITTI_FIRST_GT_FRAME + np.cumsum(rng.integers(1, 4, size=flags.count(True))) - 1
            frames_none = sorted(rng.choice(KITTI_FIRST_GT_FRAME, size=flags.count(False), replace=False).tolist())
            for frame, with_gt in [(int(f), True) for f in frames_gt] + [(int(f), False) for f in frames_none]:
                jobs.append(KittiJob(drive, frame, derive_seed(seed, split, drive, frame), scene_seed, with_gt))
                rgb = f"{date}/{drive}_sync/image_02/data/{frame:010d}.png"
                gt = f"{drive}_sync/proj_depth/groundtruth/image_02/{frame:010d}.png" if with_gt else "None"
                lines[split].append(f"{rgb} {gt} {focal}")
        order = rng.permutation(len(lines[split]))  # the real lists are not sorted
        lines[split] = [lines[split][i] for i in order]
    return jobs, lines


def write_kitti(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """Every KITTI archive of the spec into ``out_dir``; ``counts`` = samples WITH ground truth per split."""
    counts = _check_counts("kitti", counts, KITTI.splits)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, lines = _kitti_plan(counts, seed)
    results = run_jobs(render_kitti_job, jobs, workers, "synth kitti")
    stage = Path(tempfile.mkdtemp(prefix=".kitti-stage-", dir=out_dir))
    written: dict[str, Path] = {}
    try:
        test_drives = set(KITTI_TEST_DRIVES)
        for drive in KITTI_RAW_DRIVES:  # folders of every drive, frames where planned
            (stage / "raw" / drive / drive[:10] / f"{drive}_sync" / "image_02" / "data").mkdir(parents=True)
        (stage / "gt" / "train").mkdir(parents=True)
        (stage / "gt" / "val").mkdir(parents=True)
        for job, (rgb_png, gt_png) in zip(jobs, results, strict=True):
            name = f"{job.frame:010d}.png"
            _write_file(stage / "raw" / job.drive / job.drive[:10] / f"{job.drive}_sync" / "image_02" / "data" / name, rgb_png)
            if gt_png is not None:  # test drives' GT in val/, training drives' in train/ (our choice)
                part = "val" if job.drive in test_drives else "train"
                _write_file(stage / "gt" / part / f"{job.drive}_sync" / "proj_depth" / "groundtruth" / "image_02" / name, gt_png)
        target = out_dir / "data_depth_annotated.zip"
        write_zip(target, stage / "gt")
        written[target.name] = target
        for drive in KITTI_RAW_DRIVES:
            target = out_dir / f"{drive}_sync.zip"
            write_zip(target, stage / "raw" / drive)
            written[target.name] = target
        for split, list_name in KITTI_SPLITS.items():
            target = out_dir / list_name
            with atomic_path(target) as tmp:
                Path(tmp).write_text("".join(f"{line}\n" for line in lines[split]))
            written[target.name] = target
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [written[a.filename] for a in KITTI.archives]


# -- DIODE --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiodeJob:
    split: str
    domain: str  # "indoors" | "outdoor"
    path: str  # <split>/<domain>/scene_x/scan_y/<name> (no suffix)
    seed: int
    scene_seed: int
    mask_float64: bool


def _discontinuities(depth: np.ndarray, jump: float = 0.05) -> np.ndarray:
    edge = np.zeros(depth.shape, dtype=bool)
    right = np.abs(depth[:, 1:] - depth[:, :-1]) > jump * np.minimum(depth[:, 1:], depth[:, :-1])
    down = np.abs(depth[1:] - depth[:-1]) > jump * np.minimum(depth[1:], depth[:-1])
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    edge[1:] |= down
    edge[:-1] |= down
    return edge


def render_diode_job(job: DiodeJob) -> tuple[bytes, bytes, bytes]:
    """PNG, _depth.npy (768, 1024, 1) float32 and _depth_mask.npy (768, 1024) of one DIODE view."""
    if job.domain == "indoors":
        frame = render_frame(job.seed, dict.fromkeys(all_class_names(), 0), width=DIODE_WIDTH, height=DIODE_HEIGHT,
                             room_seed=job.scene_seed)
        rgb, depth = frame.rgb, frame.depth
    else:
        frame = render_outdoor(job.seed, width=DIODE_WIDTH, height=DIODE_HEIGHT, intrinsics=diode_intrinsics(),
                               driving=False, classes=dict.fromkeys(OUTDOOR_CLASSES, 0), scene_seed=job.scene_seed)
        rgb, depth = frame.rgb, frame.depth
    rng = np.random.Generator(np.random.PCG64(derive_seed(job.seed, "scanner")))
    # laser-scanner-like: a few mm of noise, no return at depth discontinuities, the sky or out of range
    noisy = depth + (0.002 + 0.001 * depth) * rng.standard_normal(depth.shape, dtype=np.float32)
    valid = (depth > 0) & ~_discontinuities(depth) & (depth < DIODE_RANGE)
    depth_out = np.where(valid, noisy, np.float32(0)).astype(np.float32)[..., None]  # (768, 1024, 1)
    mask = valid.astype(np.float64 if job.mask_float64 else np.float32)
    return encode_png_rgb(rgb), encode_npy(depth_out), encode_npy(mask)


def _diode_plan(counts_by_domain: Mapping[str, Mapping[str, int]], seed: int) -> list[DiodeJob]:
    jobs: list[DiodeJob] = []
    scene_no = {"indoors": 0, "outdoor": 500}  # disjoint scene numbers per domain (our choice)
    for domain in ("indoors", "outdoor"):
        counts = counts_by_domain.get(domain, {})
        rng = np.random.Generator(np.random.PCG64(derive_seed(seed, domain, "plan")))
        scan_no = views = 0
        for split in DIODE_SPLITS:
            n = counts.get(split, 0)
            i = 0
            while i < n:
                scene = scene_no[domain]
                scene_no[domain] += 1
                for _ in range(int(rng.integers(1, 3))):  # scans per scene
                    if i >= n:
                        break
                    scan_seed = derive_seed(seed, domain, split, "scan", scan_no)
                    h = 0
                    for _ in range(int(rng.integers(1, 4))):  # views per scan
                        if i >= n:
                            break
                        v = int(rng.choice([10, 20, 30]))
                        name = f"{scene:05d}_{scan_no:05d}_{domain}_{h:03d}_{v:03d}"
                        path = f"{split}/{domain}/scene_{scene:05d}/scan_{scan_no:05d}/{name}"
                        jobs.append(DiodeJob(split, domain, path, derive_seed(seed, domain, split, i), scan_seed,
                                             views % 3 == 1))  # every third mask float64 (both dtypes occur in DIODE)
                        views += 1
                        h += int(rng.integers(1, 4)) * 10
                        i += 1
                    scan_no += 1
    return jobs


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = TAR_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def write_tar_gz(target: Path, files: Mapping[str, bytes]) -> None:
    """A reproducible .tar.gz of ``files`` (relative path -> bytes) with their folders, sorted, atomically."""
    dirs = {str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parents) - 1)}
    entries = sorted([(d, None) for d in dirs] + list(files.items()), key=lambda e: e[0])
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=TAR_MTIME, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
                for name, data in entries:
                    if data is None:
                        tf.addfile(_tar_info(name, directory=True))
                    else:
                        tf.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def write_diode(out_dir: Path, counts_by_domain: Mapping[str, Mapping[str, int]], seed: int, workers: int = 1) -> list[Path]:
    """``train.tar.gz`` and ``val.tar.gz`` holding both domains at the given counts."""
    for domain, counts in counts_by_domain.items():
        if domain not in DIODE_DOMAINS.values():
            raise ValueError(f"diode: unknown domain {domain!r}; expected one of {sorted(DIODE_DOMAINS.values())}")
        _check_counts(f"diode {domain}", counts, DIODE_SPLITS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = _diode_plan(counts_by_domain, seed)
    results = run_jobs(render_diode_job, jobs, workers, "synth diode")
    per_split: dict[str, dict[str, bytes]] = {s: {} for s in DIODE_SPLITS}
    for job, (png, depth, mask) in zip(jobs, results, strict=True):
        files = per_split[job.split]
        files[f"{job.path}.png"] = png
        files[f"{job.path}_depth.npy"] = depth
        files[f"{job.path}_depth_mask.npy"] = mask
    paths = []
    for split in DIODE_SPLITS:
        target = out_dir / f"{split}.tar.gz"
        write_tar_gz(target, per_split[split])
        paths.append(target)
    return paths


def _write_diode_spec(name: str, out_dir: Path, counts: dict[str, int], seed: int, workers: int) -> list[Path]:
    own = DIODE_DOMAINS[name]
    counts = _check_counts(name, counts, DIODE_SPLITS)
    other = next(d for d in DIODE_DOMAINS.values() if d != own)
    return write_diode(out_dir, {own: counts, other: {s: 1 for s in DIODE_SPLITS}}, seed, workers)


def write_diode_indoor(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """DIODE archives with ``counts`` indoor views per split (+ one outdoor view per split)."""
    return _write_diode_spec("diode_indoor", out_dir, counts, seed, workers)


def write_diode_outdoor(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """DIODE archives with ``counts`` outdoor views per split (+ one indoor view per split)."""
    return _write_diode_spec("diode_outdoor", out_dir, counts, seed, workers)


WRITERS = {"kitti": write_kitti, "diode_indoor": write_diode_indoor, "diode_outdoor": write_diode_outdoor}
