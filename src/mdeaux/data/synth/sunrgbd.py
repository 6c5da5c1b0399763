"""Synthetic SUN RGB-D in the official layout: ``SUNRGBD.zip``, ``SUNRGBDtoolbox.zip``, ``SUNRGBD_val_splits.txt``.

``write_sunrgbd`` (depth) and ``write_sunrgbd_seg`` (37-class segmentation) write the SAME two archives
``SUNRGBD.zip`` and ``SUNRGBDtoolbox.zip`` (byte-identical for the same seed and counts): the two
specs share them, as the official download does. ``write_sunrgbd`` also writes the toolbox test list
``SUNRGBD_val_splits.txt`` (an archive of the depth spec only).

What is written (rgbd.cs.princeton.edu ``SUNRGBD.zip`` and ``SUNRGBDtoolbox.zip``; see
mdeaux.data.datasets.sunrgbd for the reader side):

* ``SUNRGBD/<sensor>/<subset>/<sample...>/image/<name>.jpg``, ``depth/<name>.png`` (raw sensor depth
  with holes, millimetres rotated left by 3 bits within 16 bits), ``depth_bfx/<name>.png`` (the
  hole-free depth, same encoding), ``intrinsics.txt`` (3x3 K) and ``scene.txt``; every frame at its
  sensor's resolution.
* ``SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat`` (v5: cell arrays ``alltrain``/``alltest`` of
  ``/n/fs/sun3d/data/SUNRGBD/...`` folders), ``SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat`` (v5 struct
  array: sequenceName, rgbpath, depthpath, rgbname, depthname, sensorType, K; sorted by folder, so
  its order is unrelated to the split) and ``SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat`` (HDF5 with a
  512-byte MATLAB 7.3 user block; ``SUNRGBD2Dseg/seglabel`` (N, 1) object references into
  ``#refs#``, each a (W, H) uint8 map: 0 = void, 1..37).

The MATLAB v5 headers carry a fixed "Created on" text and HDF5 objects no timestamps, so the bytes
depend only on the seed and the counts (not on ``workers``).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from mdeaux.data.datasets.sunrgbd import (
    ALLSPLIT,
    META,
    ORIGINAL_PREFIX,
    SEG2D,
    SUNRGBD,
    SUNRGBD37_CLASSES,
    SUNRGBD_SEG,
    SUNRGBD_TOOLBOX_ZIP,
    SUNRGBD_VAL_LIST,
    SUNRGBD_ZIP,
    sunrgbd_rotate_left,
)
from mdeaux.data.synth.archive import (
    check_count,
    derive_seed,
    encode_jpeg,
    encode_png,
    run_jobs,
    write_zip,
)
from mdeaux.data.synth.camera import nyu_intrinsics
from mdeaux.data.synth.render import render_frame
from mdeaux.data.synth.room import SCENE_TYPES

# -- sensors ---------------------------------------------------------------------------------------
# share of each sensor in the toolbox test list: kv1 930, kv2 1860, realsense 572, xtion 1688 of 5,050
# (toolbox splits/SUNRGBD_val_splits.txt). Resolutions per subset are our assumption (commonly reported
# SUN RGB-D frame sizes, not checked against the release): kv2 730x530, realsense 681x531, xtion
# 640x480, kv1 b3do 640x480 and the NYU frames of kv1 561x427 (the NYU crop).
SENSOR_WEIGHTS = {"kv1": 930, "kv2": 1860, "realsense": 572, "xtion": 1688}
SUBSETS: dict[str, tuple[tuple[str, int, int], ...]] = {  # sensor -> (subset, width, height), assumed
    "kv1": (("NYUdata", 561, 427), ("b3dodata", 640, 480)),
    "kv2": (("kinect2data", 730, 530), ("align_kv2", 730, 530)),
    "realsense": (("lg", 681, 531), ("sa", 681, 531), ("sh", 681, 531), ("shr", 681, 531)),
    "xtion": (("sun3ddata", 640, 480), ("xtion_align_data", 640, 480)),
}

# -- the renderer's surface classes -> SUN RGB-D 37 (label k = SUNRGBD37_CLASSES[k - 1], 0 = void) --
# Only clear counterparts are mapped (our choice); everything else (wardrobe, stove, ball, ottoman,
# vase, ceiling light and the small unlisted clutter) is void, as SUN RGB-D labels every object
# outside its 37 classes 0.
SUN_FROM_RENDER = {
    "wall": "wall", "floor": "floor", "ceiling": "ceiling", "cabinet": "cabinet", "bed": "bed",
    "sofa": "sofa", "table": "table", "coffee table": "table", "desk": "desk", "door": "door",
    "windowpane": "window", "bookcase": "bookshelf", "painting": "picture", "poster": "picture",
    "chest of drawers": "dresser", "rug": "floor mat", "refrigerator": "fridge", "box": "box",
    "lamp": "lamp", "bathtub": "bathtub", "kitchen island": "counter",
}
SUN_LABELS = {name: SUNRGBD37_CLASSES.index(sun) + 1 for name, sun in SUN_FROM_RENDER.items()}
SUN_VOID = 0

MAT5_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970"  # fixed text
MAT73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 HDF5 schema 1.00 ."


@dataclass(frozen=True)
class SunJob:
    stage: str  # staging folder that holds SUNRGBD/
    rel_dir: str  # SUNRGBD/<sensor>/<subset>/<sample...>
    name: str  # file stem inside image/ and depth/
    width: int
    height: int
    seed: int
    scene_type: str


def render_sun_job(job: SunJob) -> np.ndarray:
    """Render one frame, write its files into the staging folder, return the (H, W) uint8 37-class map."""
    frame = render_frame(job.seed, SUN_LABELS, width=job.width, height=job.height,
                         scene_type=job.scene_type, other=SUN_VOID)
    folder = Path(job.stage) / job.rel_dir

    def stored(metres: np.ndarray) -> np.ndarray:
        # millimetres, rotated left by 3 bits within 16 bits (inverse of SUNRGBDtoolbox read3dPoints.m)
        mm = np.clip(np.rint(metres.astype(np.float64) * 1000.0), 0, 0xFFFF).astype(np.uint16)
        return sunrgbd_rotate_left(mm)

    k = nyu_intrinsics(job.width, job.height)
    files = {
        f"image/{job.name}.jpg": encode_jpeg(frame.rgb),
        f"depth/{job.name}.png": encode_png(stored(frame.raw_depth)),
        f"depth_bfx/{job.name}.png": encode_png(stored(frame.depth)),
        "intrinsics.txt": f"{k.fx:.6f} 0 {k.cx:.6f}\n0 {k.fy:.6f} {k.cy:.6f}\n0 0 1\n".encode(),
        "scene.txt": job.scene_type.encode(),
    }
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)  # staging folder: the archive itself is written atomically
    return frame.labels.astype(np.uint8)


def _sample_folder(rng: np.random.Generator, sensor: str, subset: str, n: int) -> tuple[str, str]:
    """A plausible sample folder (below SUNRGBD/<sensor>/<subset>/) and file stem; the patterns are our assumption."""
    if subset == "NYUdata":
        return f"NYU{n:04d}", f"NYU{n:04d}"
    if subset == "b3dodata":
        return f"img_{n:04d}", f"img_{n:04d}"
    frame = int(rng.integers(1, 2000))
    if sensor == "kv2":
        date = f"2014-{int(rng.integers(5, 13)):02d}-{int(rng.integers(10, 29)):02d}"
        return f"{n:06d}_{date}_14-23-37_260595134347_rgbf{frame:06d}-resize", f"{frame:07d}"
    if sensor == "realsense":
        return f"2014_10_{int(rng.integers(10, 29)):02d}-10_52_{n % 60:02d}-1311000{n:03d}", f"{frame:07d}"
    stem = f"{frame:07d}-{int(rng.integers(10**9, 10**11)):012d}"
    if subset == "sun3ddata":  # nested: <scene>/<sequence>/<frame> (a sample folder may be several levels deep)
        scene = f"mit_{int(rng.integers(1, 99)):02d}_d{n:03d}"
        return f"{scene}/{scene}_{int(rng.integers(1, 4))}/{stem}", stem
    return f"2014_{n:04d}/{stem}", stem


def _plan(stage: Path, n_train: int, n_test: int, seed: int) -> tuple[list[SunJob], dict[str, list[str]]]:
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    sensors = list(SENSOR_WEIGHTS)
    p = np.array([SENSOR_WEIGHTS[s] for s in sensors], np.float64)
    p /= p.sum()
    jobs: list[SunJob] = []
    splits: dict[str, list[str]] = {"train": [], "test": []}
    used: set[str] = set()
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            while True:
                sensor = sensors[int(rng.choice(len(sensors), p=p))]
                subset, width, height = SUBSETS[sensor][int(rng.integers(len(SUBSETS[sensor])))]
                sample, stem = _sample_folder(rng, sensor, subset, len(jobs) + int(rng.integers(1, 1000)) * 10)
                rel_dir = f"SUNRGBD/{sensor}/{subset}/{sample}"
                if rel_dir not in used:
                    break
            used.add(rel_dir)
            scene_type = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
            jobs.append(SunJob(str(stage), rel_dir, stem, width, height, derive_seed(seed, split, i), scene_type))
            splits[split].append(rel_dir)
    return jobs, splits


def _cell(strings: list[str]) -> np.ndarray:
    """A MATLAB 1xN cell array of char rows."""
    cell = np.empty((1, len(strings)), dtype=object)
    for i, s in enumerate(strings):
        cell[0, i] = s
    return cell


def _savemat_bytes(variables: Mapping[str, object]) -> bytes:
    """MATLAB v5 file bytes with a fixed header text (scipy writes the current time there)."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, dict(variables), format="5", do_compression=False, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = MAT5_HEADER.ljust(116, b" ")
    return bytes(data)


def _meta_struct(jobs: list[SunJob]) -> np.ndarray:
    fields = ["sequenceName", "sensorType", "rgbpath", "depthpath", "rgbname", "depthname", "K"]
    records = np.empty((1, len(jobs)), dtype=[(f, object) for f in fields])
    for i, job in enumerate(sorted(jobs, key=lambda j: j.rel_dir)):
        k = nyu_intrinsics(job.width, job.height)
        records[0, i] = (
            job.rel_dir, job.rel_dir.split("/")[1],
            f"{ORIGINAL_PREFIX}{job.rel_dir}/image/{job.name}.jpg",
            f"{ORIGINAL_PREFIX}{job.rel_dir}/depth_bfx/{job.name}.png",  # assumed: the metadata points at the filled depth
            f"{job.name}.jpg", f"{job.name}.png",
            np.array([[k.fx, 0, k.cx], [0, k.fy, k.cy], [0, 0, 1]], np.float64),
        )
    return records


def _write_seg_h5(path: Path, labels: list[np.ndarray]) -> None:
    """SUNRGBD2Dseg.mat: MATLAB 7.3 (HDF5 + 512-byte user block); seglabel (N, 1) refs to (W, H) uint8."""
    import h5py

    with h5py.File(path, "w", userblock_size=512, libver="earliest") as h5:
        refs_group = h5.create_group("#refs#")
        refs = []
        for i, label in enumerate(labels):
            ds = refs_group.create_dataset(f"l{i:06d}", data=np.ascontiguousarray(label.T), track_times=False)
            ds.attrs["MATLAB_class"] = np.bytes_(b"uint8")
            refs.append(ds.ref)
        group = h5.create_group("SUNRGBD2Dseg")
        group.attrs["MATLAB_class"] = np.bytes_(b"struct")
        seglabel = group.create_dataset("seglabel", shape=(len(refs), 1), dtype=h5py.ref_dtype, track_times=False)
        for i, ref in enumerate(refs):
            seglabel[i, 0] = ref
        seglabel.attrs["MATLAB_class"] = np.bytes_(b"cell")
    with open(path, "r+b") as fh:  # the MATLAB 7.3 user block: text, then version 0x0200 and "IM"
        fh.write(MAT73_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def _write_all(out_dir: Path, counts: dict[str, int], seed: int, workers: int, with_val_list: bool,
               name: str) -> list[Path]:
    if not isinstance(counts, Mapping) or set(counts) != {"train", "test"}:
        raise ValueError(f"{name}: counts must give the splits ['train', 'test'], got {counts!r}")
    n_train, n_test = check_count("train", counts["train"]), check_count("test", counts["test"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".sunrgbd-stage-", dir=out_dir))
    try:
        data_stage, tool_stage = stage / "data", stage / "toolbox"
        (data_stage / "SUNRGBD").mkdir(parents=True)
        jobs, splits = _plan(data_stage, n_train, n_test, seed)
        labels = run_jobs(render_sun_job, jobs, workers, f"synth {name}")
        by_dir = dict(zip((j.rel_dir for j in jobs), labels, strict=True))
        for rel in (ALLSPLIT, META, SEG2D):
            (tool_stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (tool_stage / ALLSPLIT).write_bytes(_savemat_bytes({
            "alltrain": _cell([ORIGINAL_PREFIX + d for d in sorted(splits["train"])]),
            "alltest": _cell([ORIGINAL_PREFIX + d for d in sorted(splits["test"])]),
        }))
        (tool_stage / META).write_bytes(_savemat_bytes({"SUNRGBDMeta": _meta_struct(jobs)}))
        _write_seg_h5(tool_stage / SEG2D, [by_dir[d] for d in sorted(by_dir)])  # Meta order (sorted folders)
        targets = [out_dir / SUNRGBD_ZIP, out_dir / SUNRGBD_TOOLBOX_ZIP]
        write_zip(targets[0], data_stage)
        write_zip(targets[1], tool_stage)
        if with_val_list:
            # line format of toolbox splits/SUNRGBD_val_splits.txt, sorted:
            # "SUNRGBD/.../image/x.jpg SUNRGBD/.../depth/x.png"
            names = {j.rel_dir: j.name for j in jobs}
            lines = sorted(f"{d}/image/{names[d]}.jpg {d}/depth/{names[d]}.png" for d in splits["test"])
            target = out_dir / SUNRGBD_VAL_LIST
            tmp = stage / SUNRGBD_VAL_LIST
            tmp.write_text("".join(f"{line}\n" for line in lines))
            shutil.move(str(tmp), str(target))
            targets.append(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return targets


def write_sunrgbd(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """Depth spec archives: SUNRGBD.zip, SUNRGBDtoolbox.zip and SUNRGBD_val_splits.txt in ``out_dir``."""
    paths = _write_all(out_dir, counts, seed, workers, with_val_list=True, name=SUNRGBD.name)
    assert [p.name for p in paths] == [a.filename for a in SUNRGBD.archives]
    return paths


def write_sunrgbd_seg(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """Segmentation spec archives: SUNRGBD.zip and SUNRGBDtoolbox.zip (the same bytes write_sunrgbd writes)."""
    paths = _write_all(out_dir, counts, seed, workers, with_val_list=False, name=SUNRGBD_SEG.name)
    assert [p.name for p in paths] == [a.filename for a in SUNRGBD_SEG.archives]
    return paths


__all__ = ["SUN_LABELS", "write_sunrgbd", "write_sunrgbd_seg"]
