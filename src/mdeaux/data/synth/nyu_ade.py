"""Write the NYUv2 and ADE20K mini-world archives in their official layouts (byte-identical per seed).

* NYUv2: ``nyu.zip`` in the Monocular-Depth-Estimation-Toolbox "sync" layout: a top folder ``nyu/``
  with train scene-instance folders, test scene-type folders and the split lists ``nyu_train.txt`` /
  ``nyu_test.txt`` (zhyever/Monocular-Depth-Estimation-Toolbox ``splits/``, ``docs/dataset_prepare.md``;
  the test frames as cleinc/bts ``utils/extract_official_train_test_set_from_mat.py`` writes them).
* ADE20K: ``ADEChallengeData2016.zip`` in the SceneParse150 layout (CSAILVision/sceneparsing ``README.md``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdeaux.data.datasets.registry import ADE20K, ADE20K_CLASSES, NYUV2
from mdeaux.data.synth.archive import (
    check_count,
    derive_seed,
    encode_jpeg,
    encode_png,
    run_jobs,
    write_zip,
)
from mdeaux.data.synth.camera import NYU_FOCAL
from mdeaux.data.synth.render import Frame, render_frame
from mdeaux.data.synth.room import SCENE_TYPES, all_class_names

# the BTS test extraction keeps rgb[7:474, 7:632] and zeroes the rest (cleinc/bts
# utils/extract_official_train_test_set_from_mat.py)
NYU_TEST_BORDER = (7, 474, 7, 632)
# test file indices are 0-based positions in nyu_depth_v2_labeled.mat, which holds 1,449 frames
# (same BTS script; NYU Depth V2 labeled set)
NYU_LABELED_FRAMES = 1449
# SceneParse150 annotation values: 0 = "other objects", k = ADE20K_CLASSES[k - 1] (CSAILVision/sceneparsing README.md)
ADE_LABELS = {name: k + 1 for k, name in enumerate(ADE20K_CLASSES)}
ADE_OTHER = 0
# ADE images: short side about 384-512 px (our mini-world choice) in common camera aspect ratios
ADE_SHORT_SIDE = (384, 512)
ADE_ASPECTS = ((4, 3), (3, 4), (16, 9), (3, 2), (1, 1), (2, 3))
ADE_ASPECT_WEIGHTS = (0.45, 0.15, 0.1, 0.15, 0.1, 0.05)
ADE_MAX_ATTEMPTS = 10  # re-render (next derived seed) until an image holds "other" (0) pixels


# -- NYUv2 (toolbox "sync" layout) ---------------------------------------------------------------
@dataclass(frozen=True)
class NyuJob:
    stage: str  # staging folder that holds nyu/
    rgb: str  # path relative to nyu/
    depth: str
    seed: int  # view and sensor
    room_seed: int  # the room (shared by the frames of one train scene)
    scene_type: str
    border: bool  # test frames get the black border of the BTS extraction


def render_nyu_job(job: NyuJob) -> None:
    """Render one NYU frame and write its JPEG and 16-bit millimetre PNG into the staging folder."""
    frame = render_frame(job.seed, dict.fromkeys(all_class_names(), 0), scene_type=job.scene_type, room_seed=job.room_seed)
    rgb = frame.rgb.copy()
    if job.border:
        top, bottom, left, right = NYU_TEST_BORDER
        rgb[:top], rgb[bottom:], rgb[:, :left], rgb[:, right:] = 0, 0, 0, 0
    # PNG value = millimetres, 0 = no reading: the toolbox reads it with depth_scale=1000
    # (configs/_base_/datasets/nyu.py), BTS writes uint16(rawDepths * 1000) (extract_official_train_test_set_from_mat.py)
    depth_mm = np.rint(frame.raw_depth.astype(np.float64) * 1000.0).astype(np.uint16)
    root = Path(job.stage) / "nyu"
    for rel, data in ((job.rgb, encode_jpeg(rgb)), (job.depth, encode_png(depth_mm))):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)  # staging folder: the archive itself is written atomically


def _plan_nyu(stage: Path, n_train: int, n_test: int, seed: int) -> tuple[list[NyuJob], list[str], list[str]]:
    """Scene folders, file names, seeds and split-file lines of every frame."""
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    jobs: list[NyuJob] = []
    train_lines: list[str] = []
    focal = f"{NYU_FOCAL:.4f}"  # third column of the toolbox split lines (splits/nyu_train.txt, nyu_test.txt)
    # train: scene-instance folders "<type>_<4 digits><letter>", a few frames of one room each
    used: set[str] = set()
    capacity = len(SCENE_TYPES) * 1499 * 4  # distinct folder names
    scene = 0
    while len(train_lines) < n_train:
        if len(used) == capacity:
            raise ValueError(f"n_train={n_train} needs more than {capacity} scene folders")
        scene_type = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
        folder = f"{scene_type}_{int(rng.integers(1, 1500)):04d}{'abcd'[int(rng.integers(4))]}"
        if folder in used:
            continue
        used.add(folder)
        number = int(rng.integers(1, 200))
        for _ in range(min(int(rng.integers(2, 7)), n_train - len(train_lines))):
            rgb, depth = f"{folder}/rgb_{number:05d}.jpg", f"{folder}/sync_depth_{number:05d}.png"
            jobs.append(NyuJob(str(stage), rgb, depth, derive_seed(seed, "train", len(train_lines)),
                               derive_seed(seed, "train-room", scene), scene_type, border=False))
            train_lines.append(f"/{rgb} /{depth} {focal}")
            number += int(rng.integers(5, 60))
        scene += 1
    # test: scene-type folders, 0-based indices into the labeled set, one room per frame
    indices = np.sort(rng.choice(max(NYU_LABELED_FRAMES, 2 * n_test), size=n_test, replace=False))
    test_entries = []
    for i, index in enumerate(indices):
        scene_type = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
        rgb, depth = f"{scene_type}/rgb_{int(index):05d}.jpg", f"{scene_type}/sync_depth_{int(index):05d}.png"
        jobs.append(NyuJob(str(stage), rgb, depth, derive_seed(seed, "test", i),
                           derive_seed(seed, "test-room", i), scene_type, border=True))
        test_entries.append((scene_type, int(index), f"{rgb} {depth} {focal}"))
    test_lines = [line for *_, line in sorted(test_entries)]
    return jobs, train_lines, test_lines


def write_nyuv2_archive(out_dir: Path, n_train: int, n_test: int, seed: int, *, workers: int = 1) -> Path:
    """Write ``out_dir/nyu.zip`` (toolbox layout, 640x480 JPEG + 16-bit mm PNG) and return its path."""
    n_train, n_test = check_count("n_train", n_train), check_count("n_test", n_test)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".nyu-stage-", dir=out_dir))
    try:
        jobs, train_lines, test_lines = _plan_nyu(stage, n_train, n_test, seed)
        (stage / "nyu").mkdir()
        run_jobs(render_nyu_job, jobs, workers, "synth nyuv2")
        (stage / "nyu" / "nyu_train.txt").write_text("".join(f"{line}\n" for line in train_lines))
        (stage / "nyu" / "nyu_test.txt").write_text("".join(f"{line}\n" for line in test_lines))
        target = out_dir / NYUV2.archives[0].filename
        write_zip(target, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


# -- ADE20K (SceneParse150 layout) ---------------------------------------------------------------
@dataclass(frozen=True)
class AdeJob:
    stage: str  # staging folder that holds ADEChallengeData2016/
    folder: str  # "training" | "validation"
    stem: str  # ADE_train_00000001
    seed: int
    scene_type: str
    width: int
    height: int


def render_ade_job(job: AdeJob) -> np.ndarray:
    """Render one ADE image + annotation into the staging folder; return its per-class pixel counts (151)."""
    for attempt in range(ADE_MAX_ATTEMPTS):
        seed = job.seed if attempt == 0 else derive_seed(job.seed, "attempt", attempt)
        frame: Frame = render_frame(seed, ADE_LABELS, width=job.width, height=job.height,
                                    scene_type=job.scene_type, other=ADE_OTHER)
        if (frame.labels == ADE_OTHER).any():
            break
    else:
        raise RuntimeError(f"{job.stem}: no 'other' (0) pixels after {ADE_MAX_ATTEMPTS} attempts")
    labels = frame.labels.astype(np.uint8)
    root = Path(job.stage) / "ADEChallengeData2016"
    for path, data in (
        (root / "images" / job.folder / f"{job.stem}.jpg", encode_jpeg(frame.rgb)),
        (root / "annotations" / job.folder / f"{job.stem}.png", encode_png(labels)),
    ):
        path.write_bytes(data)  # staging folder: the archive itself is written atomically
    return np.bincount(labels.ravel(), minlength=len(ADE20K_CLASSES) + 1)


def _ade_size(rng: np.random.Generator) -> tuple[int, int]:
    short = int(rng.integers(ADE_SHORT_SIDE[0], ADE_SHORT_SIDE[1] + 1))
    a, b = ADE_ASPECTS[int(rng.choice(len(ADE_ASPECTS), p=ADE_ASPECT_WEIGHTS))]
    return (round(short * a / b), short) if a >= b else (short, round(short * b / a))


def _object_info(counts: Mapping[str, list[np.ndarray]]) -> str:
    """objectInfo150.txt: Idx, pixel ratio (train), train images, val images, name; tab separated."""
    train = np.array(counts["training"]).reshape(-1, len(ADE20K_CLASSES) + 1)
    val = np.array(counts["validation"]).reshape(-1, len(ADE20K_CLASSES) + 1)
    total = max(int(train.sum()), 1)
    lines = ["Idx\tRatio\tTrain\tVal\tName"]
    for k, name in enumerate(ADE20K_CLASSES, 1):
        ratio = train[:, k].sum() / total
        lines.append(f"{k}\t{ratio:.4f}\t{int((train[:, k] > 0).sum())}\t{int((val[:, k] > 0).sum())}\t{name}")
    return "\n".join(lines) + "\n"


def write_ade20k_archive(out_dir: Path, n_train: int, n_val: int, seed: int, *, workers: int = 1) -> Path:
    """Write ``out_dir/ADEChallengeData2016.zip`` (SceneParse150 layout) and return its path."""
    n_train, n_val = check_count("n_train", n_train), check_count("n_val", n_val)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".ade-stage-", dir=out_dir))
    try:
        root = stage / "ADEChallengeData2016"
        rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
        jobs: list[AdeJob] = []
        scenes: list[str] = []
        for folder, prefix, n in (("training", "train", n_train), ("validation", "val", n_val)):
            for kind in ("images", "annotations"):
                (root / kind / folder).mkdir(parents=True)
            for i in range(1, n + 1):  # file numbers are 1-based: the first image is ADE_train_00000001.jpg
                stem = f"ADE_{prefix}_{i:08d}"
                scene_type = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
                width, height = _ade_size(rng)
                jobs.append(AdeJob(str(stage), folder, stem, derive_seed(seed, folder, i), scene_type, width, height))
                scenes.append(f"{stem} {scene_type}")
        results = run_jobs(render_ade_job, jobs, workers, "synth ade20k")
        per_split: dict[str, list[np.ndarray]] = {"training": [], "validation": []}
        for job, counts in zip(jobs, results, strict=True):
            per_split[job.folder].append(counts)
        (root / "objectInfo150.txt").write_text(_object_info(per_split))
        (root / "sceneCategories.txt").write_text("".join(f"{line}\n" for line in scenes))
        target = out_dir / ADE20K.archives[0].filename
        write_zip(target, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


# -- registry entries ``(out_dir, counts, seed, workers) -> archives`` ----------------------------
def _nyuv2(out_dir: Path, counts: Mapping[str, int], seed: int, workers: int = 1) -> list[Path]:
    return [write_nyuv2_archive(out_dir, counts["train"], counts["test"], seed, workers=workers)]


def _ade20k(out_dir: Path, counts: Mapping[str, int], seed: int, workers: int = 1) -> list[Path]:
    return [write_ade20k_archive(out_dir, counts["train"], counts["val"], seed, workers=workers)]


WRITERS = {"nyuv2": _nyuv2, "ade20k": _ade20k}
