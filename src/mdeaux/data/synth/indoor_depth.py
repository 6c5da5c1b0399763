"""Mini-world Matterport3D and Taskonomy, written exactly as their manual sources are organised.

* Matterport3D (niessner/Matterport ``README.md``, ``data_organization.md``):
  ``v1/scans/<scan>/undistorted_{color,depth}_images.zip`` for every scan of the official train/val
  benchmark lists, as ``download_mp.py -o <out_dir>`` writes them (each zip holds
  ``<scan>/<filetype>/...``), plus ``scenes_train.txt`` / ``scenes_val.txt``. 1280x1024 JPEG colour and
  16-bit PNG depth in 0.25 mm units (round(d * 4000), 0 = no reading).
* Taskonomy (StanfordVL/taskonomy ``data/README.md``; EPFL-VILAB/omnidata
  ``omnidata_tools/dataset/README.md``):
  ``splits_taskonomy.zip`` (``splits_taskonomy/train_val_test_full.csv``),
  ``rgb.tar`` and ``depth_zbuffer.tar`` holding the omnitools tree
  ``<domain>/taskonomy/<building>/point_<p>_view_<v>_domain_<domain>.png``. 512x512 8-bit RGB PNG and
  16-bit PNG depth in 1/512 m (round(d * 512)), 65535 = no geometry.

Every frame gets its own seed (``derive_seed``) and every scan/building its own room seed shared by
its frames (several viewpoints of one room), so the bytes do not depend on the number of workers.
Archives have sorted members and fixed metadata; images are encoded with fixed settings.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mdeaux.atomic import atomic_path, write_text
from mdeaux.data.datasets.indoor_depth import (
    MATTERPORT3D,
    MP3D_CAMERAS,
    MP3D_DEPTH_SCALE,
    MP3D_FILETYPES,
    MP3D_HEIGHT,
    MP3D_SCENE_LISTS,
    MP3D_SCENES,
    MP3D_WIDTH,
    TASKONOMY,
    TASKONOMY_DEPTH_SCALE,
    TASKONOMY_INVALID,
    TASKONOMY_SIZE,
    TASKONOMY_SPLIT_CSV,
    mp3d_archive_name,
)
from mdeaux.data.synth.archive import (
    DIR_ATTR,
    FILE_ATTR,
    PNG_COMPRESS_LEVEL,
    TAR_MTIME,
    ZIP_DATE_TIME,
    check_count,
    derive_seed,
    encode_jpeg,
    encode_png,
    run_jobs,
)
from mdeaux.data.synth.render import render_frame
from mdeaux.data.synth.room import SCENE_TYPES, all_class_names

MP3D_FRAMES_PER_SCAN = 3  # mini-world choice: frames rendered per scan before the next scan gets frames
MP3D_VIEWS_PER_PANO = 3  # mini-world choice: images kept per panorama (the release has 3 cams x 6 yaws)
TASKONOMY_FRAMES_PER_BUILDING = 4  # mini-world choice
TASKONOMY_VIEWS_PER_POINT = 2  # mini-world choice: views per point (Taskonomy has a varying number)
# A few building names of the official `full` split (StanfordVL/taskonomy splits_taskonomy.zip,
# omnidata train_val_test_full.csv); mini frames are spread over them.
TASKONOMY_MINI_BUILDINGS = {
    "train": ("hanson", "merom", "arbutus", "goodfield", "eagan", "arona", "adairsville", "reserve"),
    "val": ("laytonsville", "clive", "hortense", "wesley"),
    "test": ("brinnon",),  # listed in the mini split file, never written: the reader must skip test
}


# -- deterministic archives ------------------------------------------------------------------------
def _dirs_of(names: list[str]) -> list[str]:
    dirs = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]) + "/")
    return sorted(dirs)


def write_zip_members(target: Path, files: Mapping[str, bytes], dirs: tuple[str, ...] = ()) -> None:
    """A zip of ``files`` (name -> bytes) plus their folders, sorted, fixed metadata, written atomically."""
    entries = sorted(set(_dirs_of([*files, *(d.rstrip("/") + "/" for d in dirs)])) | set(files))
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in entries:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                info.create_system = 3  # unix, whatever the host
                info.compress_type = zipfile.ZIP_STORED
                is_dir = name.endswith("/")
                info.external_attr = DIR_ATTR if is_dir else FILE_ATTR
                zf.writestr(info, b"" if is_dir else files[name])


def write_tar_members(target: Path, files: Mapping[str, bytes]) -> None:
    """An uncompressed GNU tar of ``files`` plus their folders, sorted, fixed metadata, written atomically."""
    entries = sorted(_dirs_of(list(files)) + list(files))
    with atomic_path(target) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
            for name in entries:
                is_dir = name.endswith("/")
                info = tarfile.TarInfo(name.rstrip("/"))
                info.mtime, info.uid, info.gid, info.uname, info.gname = TAR_MTIME, 0, 0, "", ""
                if is_dir:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tf.addfile(info)
                else:
                    data = files[name]
                    info.size, info.mode = len(data), 0o644
                    tf.addfile(info, io.BytesIO(data))


def encode_rgb_png(rgb: np.ndarray) -> bytes:
    """8-bit RGB PNG, fixed zlib level, no text or time chunks."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.dtype} with shape {rgb.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def _check_counts(name: str, counts: Mapping[str, int], splits: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(counts, Mapping) or set(counts) != set(splits):
        got = sorted(counts) if isinstance(counts, Mapping) else counts
        raise ValueError(f"{name}: counts must give the splits {list(splits)}, got {got!r}")
    return {s: check_count(f"counts[{s!r}]", counts[s]) for s in splits}


# -- Matterport3D ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mp3dJob:
    scan: str
    stem_color: str  # <pano>_i<cam>_<yaw>
    stem_depth: str  # <pano>_d<cam>_<yaw>
    seed: int
    room_seed: int
    scene_type: str


def render_mp3d_job(job: Mp3dJob) -> tuple[bytes, bytes]:
    """Render one Matterport3D view: (JPEG colour, 16-bit PNG depth in 0.25 mm units)."""
    # 1280x1024, the undistorted Matterport3D image size; intrinsics from the renderer (NYU focal scaled
    # with the width, 1037.7 px)
    frame = render_frame(job.seed, dict.fromkeys(all_class_names(), 0), width=MP3D_WIDTH, height=MP3D_HEIGHT,
                         scene_type=job.scene_type, room_seed=job.room_seed)
    # depth: noise-free z-depth at 0.25 mm resolution where the sensor model gives a reading, 0 elsewhere
    metres = np.where(frame.raw_depth > 0, frame.depth, np.float32(0)).astype(np.float64)
    units = np.rint(metres * MP3D_DEPTH_SCALE)  # data_organization.md: 0.25 mm per unit (value / 4000 = m)
    if units.max(initial=0) > 65535:
        raise ValueError(f"{job.scan}/{job.stem_depth}: depth beyond the 16-bit range ({units.max() / MP3D_DEPTH_SCALE} m)")
    return encode_jpeg(frame.rgb), encode_png(units.astype(np.uint16))


def _plan_mp3d(counts: dict[str, int], seed: int) -> list[Mp3dJob]:
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    jobs: list[Mp3dJob] = []
    for split in ("train", "val"):
        scans = MP3D_SCENES[split]
        scene_types = {scan: SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))] for scan in scans}
        per_scan: dict[str, int] = {}
        panos: dict[tuple[str, int], tuple[str, int]] = {}
        for i in range(counts[split]):
            scan = scans[(i // MP3D_FRAMES_PER_SCAN) % len(scans)]
            k = per_scan.get(scan, 0)
            per_scan[scan] = k + 1
            pano_index, view = divmod(k, MP3D_VIEWS_PER_PANO)
            if (scan, pano_index) not in panos:  # 32-hex panorama uuid and the yaw of its kept views
                panos[scan, pano_index] = (rng.bytes(16).hex(), int(rng.integers(0, 6)))
            pano, yaw = panos[scan, pano_index]
            cam = view % MP3D_CAMERAS
            jobs.append(Mp3dJob(scan, f"{pano}_i{cam}_{yaw}", f"{pano}_d{cam}_{yaw}",
                                derive_seed(seed, "frame", split, i), derive_seed(seed, "room", scan),
                                scene_types[scan]))
    return jobs


def write_matterport3d(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """Write every archive of the Matterport3D spec into ``out_dir`` (download_mp.py layout); return them."""
    counts = _check_counts("matterport3d", counts, MATTERPORT3D.splits)
    out_dir = Path(out_dir)
    jobs = _plan_mp3d(counts, seed)
    results = run_jobs(render_mp3d_job, jobs, workers, "synth matterport3d")
    members: dict[tuple[str, str], dict[str, bytes]] = {}
    for job, (color, depth) in zip(jobs, results, strict=True):
        members.setdefault((job.scan, "undistorted_color_images"), {})[
            f"{job.scan}/undistorted_color_images/{job.stem_color}.jpg"] = color
        members.setdefault((job.scan, "undistorted_depth_images"), {})[
            f"{job.scan}/undistorted_depth_images/{job.stem_depth}.png"] = depth
    written: dict[str, Path] = {}
    for split, list_name in MP3D_SCENE_LISTS.items():
        # the official list text (niessner/Matterport tasks/benchmark/scenes_*.txt): one scan per line, LF,
        # trailing newline
        write_text(out_dir / list_name, "".join(f"{scan}\n" for scan in MP3D_SCENES[split]))
        written[list_name] = out_dir / list_name
    for split in ("train", "val"):
        for scan in MP3D_SCENES[split]:
            for filetype in MP3D_FILETYPES:
                name = mp3d_archive_name(scan, filetype)
                # scans without mini frames still get their zip (the spec names every scan), holding the folders
                write_zip_members(out_dir / name, members.get((scan, filetype), {}), dirs=(f"{scan}/{filetype}",))
                written[name] = out_dir / name
    return [written[a.filename] for a in MATTERPORT3D.archives]


# -- Taskonomy -------------------------------------------------------------------------------------
TASKONOMY_WINDOW = 1  # label id of the renderer's windows: the mesh has no geometry behind the glass


@dataclass(frozen=True)
class TaskonomyJob:
    building: str
    point: int
    view: int
    seed: int
    room_seed: int
    scene_type: str


def _mesh_holes(seed: int, size: int) -> np.ndarray:
    """0-2 elliptic patches of missing mesh geometry per view (mini-world choice; the scanned meshes have holes)."""
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "mesh-holes")))
    yy, xx = np.mgrid[0:size, 0:size]
    holes = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(0.02 * size, 0.08 * size, 2)
        holes |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return holes


def render_taskonomy_job(job: TaskonomyJob) -> tuple[bytes, bytes]:
    """Render one Taskonomy view: (8-bit RGB PNG, 16-bit depth_zbuffer PNG in 1/512 m, 65535 invalid)."""
    classes = {"windowpane": TASKONOMY_WINDOW}
    frame = render_frame(job.seed, classes, width=TASKONOMY_SIZE, height=TASKONOMY_SIZE,
                         scene_type=job.scene_type, room_seed=job.room_seed, other=0)
    # depth_zbuffer is rendered from the mesh (StanfordVL/taskonomy data/README.md): dense, noise-free
    # z-depth; looking out of a window or into a hole of the scanned mesh there is no geometry -> 65535, omnidata's
    # mask_valid convention (omnidata_annotator/scripts/create_mask_valid.py)
    units = np.rint(frame.depth.astype(np.float64) * TASKONOMY_DEPTH_SCALE)
    units = np.minimum(units, TASKONOMY_INVALID - 1)  # 65534 / 512 = 128 m, the format's range
    units[(frame.labels == TASKONOMY_WINDOW) | _mesh_holes(job.seed, TASKONOMY_SIZE)] = TASKONOMY_INVALID
    return encode_rgb_png(frame.rgb), encode_png(units.astype(np.uint16))


def _plan_taskonomy(counts: dict[str, int], seed: int) -> tuple[list[TaskonomyJob], dict[str, list[str]]]:
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "plan")))
    jobs: list[TaskonomyJob] = []
    used: dict[str, list[str]] = {"train": [], "val": [], "test": list(TASKONOMY_MINI_BUILDINGS["test"])}
    for split in ("train", "val"):
        pool = TASKONOMY_MINI_BUILDINGS[split]
        scene_types = {b: SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))] for b in pool}
        points: dict[str, list[int]] = {}
        per_building: dict[str, int] = {}
        for i in range(counts[split]):
            building = pool[(i // TASKONOMY_FRAMES_PER_BUILDING) % len(pool)]
            if building not in used[split]:
                used[split].append(building)
            k = per_building.get(building, 0)
            per_building[building] = k + 1
            point_index, view = divmod(k, TASKONOMY_VIEWS_PER_POINT)
            pts = points.setdefault(building, [])
            if point_index == len(pts):  # next point number: increasing with random gaps
                pts.append((pts[-1] if pts else -1) + int(rng.integers(1, 40)))
            jobs.append(TaskonomyJob(building, pts[point_index], view, derive_seed(seed, "frame", split, i),
                                     derive_seed(seed, "room", building), scene_types[building]))
    return jobs, used


def _split_csv(used: dict[str, list[str]]) -> str:
    """``id,train,val,test`` with one 0/1 flag per split, as the official split files (splits_taskonomy.zip)."""
    lines = ["id,train,val,test"]
    for split in ("train", "val", "test"):
        flags = ",".join("1" if s == split else "0" for s in ("train", "val", "test"))
        lines += [f"{building},{flags}" for building in used[split]]
    return "\n".join(lines) + "\n"


def write_taskonomy(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """Write ``splits_taskonomy.zip``, ``rgb.tar`` and ``depth_zbuffer.tar`` into ``out_dir``; return them."""
    counts = _check_counts("taskonomy", counts, TASKONOMY.splits)
    out_dir = Path(out_dir)
    jobs, used = _plan_taskonomy(counts, seed)
    results = run_jobs(render_taskonomy_job, jobs, workers, "synth taskonomy")
    rgb_files: dict[str, bytes] = {}
    depth_files: dict[str, bytes] = {}
    for job, (rgb, depth) in zip(jobs, results, strict=True):
        stem = f"point_{job.point}_view_{job.view}_domain"
        rgb_files[f"rgb/taskonomy/{job.building}/{stem}_rgb.png"] = rgb
        depth_files[f"depth_zbuffer/taskonomy/{job.building}/{stem}_depth_zbuffer.png"] = depth
    paths = {a.filename: out_dir / a.filename for a in TASKONOMY.archives}
    write_zip_members(paths["splits_taskonomy.zip"], {TASKONOMY_SPLIT_CSV: _split_csv(used).encode()})
    write_tar_members(paths["rgb.tar"], rgb_files)
    write_tar_members(paths["depth_zbuffer.tar"], depth_files)
    return [paths[a.filename] for a in TASKONOMY.archives]


WRITERS = {"matterport3d": write_matterport3d, "taskonomy": write_taskonomy}

__all__ = ["WRITERS", "encode_rgb_png", "write_matterport3d", "write_tar_members", "write_taskonomy",
           "write_zip_members"]
