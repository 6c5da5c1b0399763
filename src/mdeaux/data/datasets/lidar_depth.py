"""KITTI (Eigen split, toolbox layout) and DIODE indoor / outdoor: specs, readers and decoders.

"toolbox" is the Monocular-Depth-Estimation-Toolbox (zhyever/Monocular-Depth-Estimation-Toolbox at
commit d8aff50); the file or page each value comes from is named next to it. "[I]" marks our own
inference where no source states the value (docs/choices.md, docs/protocol.md).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample

# ==============================================================================================
# KITTI, Eigen split as in the Monocular-Depth-Estimation-Toolbox (23,158 train / 652 test)
# ==============================================================================================
# Archives (KITTI depth benchmark, cvlibs.net/datasets/kitti/eval_depth.php; S3 links as scripts use them):
#   * data_depth_annotated.zip: {train,val}/<drive>_sync/proj_depth/groundtruth/image_0{2,3}/*.png
#     (uint16, metres = value / 256, 0 = no ground truth). The zip has no top folder; a top folder
#     data_depth_annotated/ is accepted as well. The toolbox merges train+val into one gt_depth/ tree
#     and the split lines name the GT path without train/ or val/, so the reader looks in both.
#   * one raw "synced+rectified" zip per drive: <date>/<drive>_sync/image_02/data/*.png (RGB PNG).
#   * the toolbox split files splits/kitti_eigen_{train,test}.txt, fetched from the raw
#     GitHub URL at the pinned commit as plain files (Archive.extract=False: fetch copies them into
#     raw_dir/ unchanged) and checked against the pinned sha256 (Archive.sha256 and pinned_files).
#
# Evaluation (toolbox depth/datasets/kitti.py, eval_kb_crop and eval_mask): the toolbox first KB-crops
# the ground truth (bottom 352 rows, centre 1216 columns), then masks 1e-3 < gt < 80 and applies the
# Garg crop as fractions of the KB-cropped map. DatasetSpec.eval_mask only knows the second step: the
# integrator must call ``kb_crop`` on the GT (and the prediction) before ``KITTI.eval_mask`` (see
# KITTI.notes).

KITTI_TOOLBOX_COMMIT = "d8aff50e75c4b0c183361c7690959d0269b45a9d"  # the toolbox commit the split files are pinned at
KITTI_SPLIT_URL = (  # raw.githubusercontent.com URL of the toolbox splits/ folder at that commit
    "https://raw.githubusercontent.com/zhyever/Monocular-Depth-Estimation-Toolbox/{commit}/splits/{name}"
)
KITTI_SPLIT_FILES = {
    # name: (sha256, bytes) of the toolbox split files splits/<name> at the commit above
    "kitti_eigen_train.txt": ("3655308ee4a017094dc620402db3fc587d769cfbfa9a16c6d0f8de6dcbe109ec", 3_467_886),
    "kitti_eigen_test.txt": ("8d0499af9ab4c0d1cd7944d572b0e0e4412feab1e73f4003038426fde699b53a", 101_394),
}
KITTI_SPLITS = {"train": "kitti_eigen_train.txt", "test": "kitti_eigen_test.txt"}
KITTI_GT_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_depth_annotated.zip"  # KITTI depth benchmark download
KITTI_GT_MD5 = "7d1ce32633dc2f43d9d1656a1f875e47"  # ENSTA-U2IS-AI/torch-uncertainty torch_uncertainty/datasets/kitti.py
KITTI_RAW_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data/{drive}/{drive}_sync.zip"  # KITTI raw data (raw_data_downloader)
KITTI_DEPTH_SCALE = 256.0  # toolbox configs/_base_/datasets/kitti.py depth_scale=256; KITTI devkit read_depth.py png/256
KB_CROP_SIZE = (352, 1216)  # toolbox KBCrop (depth/datasets/pipelines/transforms.py): bottom 352 rows, centre 1216 columns
GARG_CROP_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # toolbox depth/datasets/kitti.py garg_crop

# The drives (``<date>_drive_<nnnn>``) referenced by the two Eigen split files: one raw zip each.
# NOT VERIFIED against the pinned split files (they were not available offline when this was
# written): the list is the usual Eigen split (28 test scenes, 33 training scenes) as recalled from
# the Eigen/monodepth split definitions [I]. ``drives_in_split_files`` lists the drives the real files
# reference, and ``missing_raw_drives`` the ones absent here; the reader raises FileNotFoundError naming
# the list and entry for any frame whose drive zip was not fetched.
KITTI_TEST_DRIVES = (
    "2011_09_26_drive_0002", "2011_09_26_drive_0009", "2011_09_26_drive_0013", "2011_09_26_drive_0020",
    "2011_09_26_drive_0023", "2011_09_26_drive_0027", "2011_09_26_drive_0029", "2011_09_26_drive_0036",
    "2011_09_26_drive_0046", "2011_09_26_drive_0048", "2011_09_26_drive_0052", "2011_09_26_drive_0056",
    "2011_09_26_drive_0059", "2011_09_26_drive_0064", "2011_09_26_drive_0084", "2011_09_26_drive_0086",
    "2011_09_26_drive_0093", "2011_09_26_drive_0096", "2011_09_26_drive_0101", "2011_09_26_drive_0106",
    "2011_09_26_drive_0117", "2011_09_28_drive_0002", "2011_09_29_drive_0071", "2011_09_30_drive_0016",
    "2011_09_30_drive_0018", "2011_09_30_drive_0027", "2011_10_03_drive_0027", "2011_10_03_drive_0047",
)
KITTI_TRAIN_DRIVES = (
    "2011_09_26_drive_0001", "2011_09_26_drive_0005", "2011_09_26_drive_0011", "2011_09_26_drive_0014",
    "2011_09_26_drive_0015", "2011_09_26_drive_0017", "2011_09_26_drive_0018", "2011_09_26_drive_0019",
    "2011_09_26_drive_0022", "2011_09_26_drive_0028", "2011_09_26_drive_0032", "2011_09_26_drive_0035",
    "2011_09_26_drive_0039", "2011_09_26_drive_0051", "2011_09_26_drive_0057", "2011_09_26_drive_0060",
    "2011_09_26_drive_0061", "2011_09_26_drive_0070", "2011_09_26_drive_0079", "2011_09_26_drive_0087",
    "2011_09_26_drive_0091", "2011_09_26_drive_0095", "2011_09_26_drive_0104", "2011_09_26_drive_0113",
    "2011_09_28_drive_0001", "2011_09_29_drive_0004", "2011_09_29_drive_0026", "2011_09_30_drive_0020",
    "2011_09_30_drive_0028", "2011_09_30_drive_0033", "2011_09_30_drive_0034", "2011_10_03_drive_0034",
    "2011_10_03_drive_0042",
)
KITTI_RAW_DRIVES = tuple(sorted(set(KITTI_TRAIN_DRIVES) | set(KITTI_TEST_DRIVES)))


def kitti_raw_archive(drive: str) -> Archive:
    """The raw synced+rectified zip of one drive (KITTI publishes no checksum for it)."""
    return Archive(filename=f"{drive}_sync.zip", urls=(KITTI_RAW_URL.format(drive=drive),))


def kb_crop(array: np.ndarray) -> np.ndarray:
    """Toolbox KBCrop (depth/datasets/pipelines/transforms.py): ``top = H - 352; left = int((W - 1216) / 2)``;
    rows/cols first."""
    h, w = array.shape[:2]
    ch, cw = KB_CROP_SIZE
    if h < ch or w < cw:
        raise ValueError(f"KB crop needs at least {ch}x{cw} pixels, got {h}x{w}")
    top, left = h - ch, int((w - cw) / 2)
    return array[top : top + ch, left : left + cw]


def _split_lines(list_path: Path) -> list[tuple[int, str, str | None]]:
    """(line number, rgb path, depth path or None) of a toolbox split file."""
    entries = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{list_path}:{lineno}: expected 'rgb_path depth_path focal', got {line!r}")
        rgb, depth = parts[0].lstrip("/"), parts[1].lstrip("/")
        entries.append((lineno, rgb, None if depth == "None" else depth))
    return entries


def drives_in_split_files(raw_dir: Path) -> list[str]:
    """The ``<date>_drive_<nnnn>`` names the two split files in ``raw_dir`` reference."""
    drives = set()
    for name in KITTI_SPLITS.values():
        for _, rgb, _ in _split_lines(Path(raw_dir) / name):
            drives.add(rgb.split("/")[1].removesuffix("_sync"))
    return sorted(drives)


def missing_raw_drives(raw_dir: Path) -> list[str]:
    """Drives referenced by the split files in ``raw_dir`` that ``KITTI_RAW_DRIVES`` lacks."""
    return sorted(set(drives_in_split_files(raw_dir)) - set(KITTI_RAW_DRIVES))


def _kitti_gt_roots(raw_dir: Path) -> list[Path]:
    roots = []
    for base in (raw_dir, raw_dir / "data_depth_annotated"):
        roots += [base / part for part in ("train", "val") if (base / part).is_dir()]
    return roots


def read_kitti(raw_dir: Path) -> Iterator[RawSample]:
    """Eigen split via the toolbox lists ``rgb depth focal``; entries with depth ``None`` are skipped."""
    raw_dir = Path(raw_dir)
    gt_roots = _kitti_gt_roots(raw_dir)
    if not gt_roots:
        raise FileNotFoundError(
            f"kitti: {raw_dir} holds no train/ or val/ folder of data_depth_annotated.zip"
        )
    seen: set[str] = set()
    for split, list_name in KITTI_SPLITS.items():
        list_path = raw_dir / list_name
        if not list_path.is_file():
            raise FileNotFoundError(f"kitti: split file {list_path} is missing (toolbox splits/{list_name})")
        entries = [(n, rgb, depth) for n, rgb, depth in _split_lines(list_path) if depth is not None]
        for lineno, rgb, depth in sorted(entries, key=lambda e: e[1]):  # toolbox sorts by file name
            rgb_path = raw_dir / rgb
            if not rgb_path.is_file():
                raise FileNotFoundError(
                    f"kitti: {list_name} line {lineno} names the image {rgb!r}, but {rgb_path} does not exist "
                    f"(is the raw drive zip {rgb.split('/')[1]}.zip among the fetched archives?)"
                )
            depth_path = next((root / depth for root in gt_roots if (root / depth).is_file()), None)
            if depth_path is None:
                raise FileNotFoundError(
                    f"kitti: {list_name} line {lineno} names the ground truth {depth!r}, which is in none of "
                    f"{', '.join(str(r) for r in gt_roots)}"
                )
            parts = rgb.split("/")  # <date>/<drive>_sync/image_02/data/<frame>.png
            sample_id = f"{parts[1]}/{Path(parts[-1]).stem}" if len(parts) >= 2 else Path(rgb).stem
            if sample_id in seen:
                raise ValueError(f"kitti: {list_name} line {lineno}: sample {sample_id!r} is listed twice")
            seen.add(sample_id)
            yield RawSample(
                id=sample_id,
                split=split,
                image=rgb_path.read_bytes(),
                image_format=rgb_path.suffix.lstrip(".").lower(),
                depth=depth_path.read_bytes(),
            )


KITTI = DatasetSpec(
    name="kitti",
    # toolbox splits/kitti_eigen_*.txt, 45 test entries without GT dropped (paper Table 2: 652)
    official_counts=(("train", 23158), ("test", 652)),
    title="KITTI (Eigen split, toolbox layout)",
    task="depth",
    scene="outdoor, driving",
    archives=(
        Archive(filename="data_depth_annotated.zip", urls=(KITTI_GT_URL,), md5=KITTI_GT_MD5),
        *(
            Archive(filename=name, urls=(KITTI_SPLIT_URL.format(commit=KITTI_TOOLBOX_COMMIT, name=name),),
                    sha256=digest, size=size, extract=False)
            for name, (digest, size) in KITTI_SPLIT_FILES.items()
        ),
        *(kitti_raw_archive(drive) for drive in KITTI_RAW_DRIVES),
    ),
    reader=read_kitti,
    splits=("train", "test"),
    test_split="test",
    depth_encoding="png_uint16",
    depth_scale=KITTI_DEPTH_SCALE,
    min_depth=1e-3,  # toolbox configs/_base_/datasets/kitti.py min_depth
    max_depth=80.0,  # toolbox configs/_base_/datasets/kitti.py max_depth; dinov2/hub/depthers.py KITTI (0.001, 80)
    eval_crop_fractions=GARG_CROP_FRACTIONS,  # of the KB-cropped 352x1216 map (toolbox depth/datasets/kitti.py)
    eval_crop_name="garg",
    pinned_files=tuple((name, digest) for name, (digest, _) in KITTI_SPLIT_FILES.items()),
    notes=(
        "Evaluation: KB-crop the ground truth (and prediction) with lidar_depth.kb_crop (bottom 352 rows, "
        "centre 1216 columns; toolbox kitti.py eval_kb_crop) BEFORE eval_mask, whose Garg fractions refer "
        "to the 352x1216 map (toolbox depth/datasets/kitti.py).",
        "Training: toolbox KITTI config: KBCrop 352x1216, RandomRotate 2.5 deg, flip, RandomCrop 352x704, "
        "ColorAug [0.9, 1.1] (toolbox configs/_base_/datasets/kitti.py).",
        "Test list entries with ground truth 'None' are skipped (697 lines -> 652 samples, as the toolbox "
        "loader does; paper Table 2: 652).",
        "KITTI_RAW_DRIVES is recalled, not verified against the split files: check with missing_raw_drives().",
    ),
)


# ==============================================================================================
# DIODE indoor (8,574 / 325) and outdoor (16,884 / 446) (diode-dataset/diode-devkit; paper Table 2)
# ==============================================================================================
# Both specs read the SAME two archives (train.tar.gz, val.tar.gz) and keep their own domain folder
# (indoors/ or outdoor/). Unless the integrator shares one download between the two specs, the paper
# profile downloads the archives (81 GB + 2.6 GB) once per spec. The official val split is the test
# split (paper Table 2: 325 / 446 test images = the official val split).
#
# A sample's depth is stored as TWO original files (<name>_depth.npy, <name>_depth_mask.npy). RawSample
# has one depth field, so the reader packs both files, byte for byte, as members depth.npy and
# depth_mask.npy of an uncompressed in-memory zip (fixed metadata), and ``decode_diode_depth`` unpacks
# them: depth (squeezed (768, 1024, 1) -> (768, 1024)) with mask == 0 -> 0.

DIODE_ARCHIVES = (
    Archive(
        filename="train.tar.gz",
        urls=("http://diode-dataset.s3.amazonaws.com/train.tar.gz",  # diode-devkit README
              "https://diode-dataset-1254389886.cos.ap-shanghai.myqcloud.com/train.tar.gz"),  # Tencent mirror
        md5="3a94632398fe1d002d89f11743f748b1",  # tensorflow/datasets url_checksums/diode_depth.txt
        size=86_747_209_190,
    ),
    Archive(
        filename="val.tar.gz",
        urls=("http://diode-dataset.s3.amazonaws.com/val.tar.gz",
              "https://diode-dataset-1254389886.cos.ap-shanghai.myqcloud.com/val.tar.gz"),
        md5="5c895d09201b88973c8fe4552a67dd85",  # tensorflow/datasets url_checksums/diode_depth.txt
        size=2_774_625_282,
    ),
)
DIODE_SPLITS = ("train", "val")  # folder names = split names (diode-devkit); val is the test split (paper Table 2)
DIODE_DOMAINS = {"diode_indoor": "indoors", "diode_outdoor": "outdoor"}  # folder names (diode-devkit diode.py)
# paper §4 "limited to 80 m"; Depth Anything metric_depth/zoedepth/utils/config.py diode_outdoor max_depth 80
DIODE_OUTDOOR_MAX_DEPTH = 80.0
# The paper does not say how depth beyond 80 m is limited: masked out (-> 0, invalid) or clipped to
# 80 m; our choice is to mask (docs/choices.md, DIODE). The integrator may switch this; "mask" is the
# default.
DIODE_OUTDOOR_FAR_MODE = "mask"  # "mask" | "clip"
_NPY_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def pack_diode_depth(depth_npy: bytes, mask_npy: bytes) -> bytes:
    """The two original .npy files, unchanged, as members of an uncompressed zip (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in (("depth.npy", depth_npy), ("depth_mask.npy", mask_npy)):
            info = zipfile.ZipInfo(name, date_time=_NPY_ZIP_DATE)
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def unpack_diode_depth(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(depth as stored, mask as stored) from ``pack_diode_depth`` bytes; no pickles allowed."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        depth = np.load(io.BytesIO(zf.read("depth.npy")), allow_pickle=False)
        mask = np.load(io.BytesIO(zf.read("depth_mask.npy")), allow_pickle=False)
    return depth, mask


def decode_diode_depth(data: bytes) -> np.ndarray:
    """Metres float32 (H, W); 0 where the mask is 0. Non-finite depth values stay non-finite (also under
    mask 0) so validation sees them; a non-finite mask value gives NaN."""
    depth, mask = unpack_diode_depth(data)
    if depth.ndim == 3 and depth.shape[-1] == 1:  # devkit: np.load(...).squeeze() of (768, 1024, 1)
        depth = depth[..., 0]
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if depth.ndim != 2 or mask.shape != depth.shape:
        raise ValueError(f"DIODE depth has shape {depth.shape} and its mask {mask.shape}: expected two (H, W) maps")
    if not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
        raise ValueError(f"DIODE depth has dtype {depth.dtype}, expected float32")
    depth = depth.astype(np.float32)
    mask = mask.astype(np.float64)  # the released masks come as float32 or float64
    out = np.where((mask == 0) & np.isfinite(depth), np.float32(0), depth)
    return np.where(np.isfinite(mask), out, np.float32(np.nan)).astype(np.float32)


def decode_diode_outdoor_depth(data: bytes) -> np.ndarray:
    """``decode_diode_depth`` with the 80 m limit (``DIODE_OUTDOOR_FAR_MODE``); non-finite values untouched."""
    depth = decode_diode_depth(data)
    far = np.isfinite(depth) & (depth > DIODE_OUTDOOR_MAX_DEPTH)
    if DIODE_OUTDOOR_FAR_MODE == "mask":
        return np.where(far, np.float32(0), depth).astype(np.float32)
    if DIODE_OUTDOOR_FAR_MODE == "clip":
        return np.where(far, np.float32(DIODE_OUTDOOR_MAX_DEPTH), depth).astype(np.float32)
    raise ValueError(f"DIODE_OUTDOOR_FAR_MODE must be 'mask' or 'clip', got {DIODE_OUTDOOR_FAR_MODE!r}")


def _read_diode(raw_dir: Path, name: str) -> Iterator[RawSample]:
    domain = DIODE_DOMAINS[name]
    raw_dir = Path(raw_dir)
    found = False
    for split in DIODE_SPLITS:
        root = raw_dir / split / domain
        if not root.is_dir():
            continue
        found = True
        for image_path in sorted(root.glob("scene_*/scan_*/*.png")):
            stem = image_path.with_suffix("")
            depth_path, mask_path = Path(f"{stem}_depth.npy"), Path(f"{stem}_depth_mask.npy")
            for p in (depth_path, mask_path):
                if not p.is_file():
                    raise FileNotFoundError(f"{name}: {p} is missing: every DIODE image needs its _depth.npy and _depth_mask.npy")
            rel = image_path.relative_to(raw_dir).with_suffix("").as_posix()
            yield RawSample(
                id=rel,  # <split>/<domain>/scene_x/scan_y/<name>: unique
                split=split,
                image=image_path.read_bytes(),
                image_format="png",
                depth=pack_diode_depth(depth_path.read_bytes(), mask_path.read_bytes()),
            )
    if not found:
        raise FileNotFoundError(f"{name}: {raw_dir} holds neither train/{domain}/ nor val/{domain}/ (DIODE layout)")


def read_diode_indoor(raw_dir: Path) -> Iterator[RawSample]:
    """``{train,val}/indoors/scene_*/scan_*/<name>.png`` + ``_depth.npy`` + ``_depth_mask.npy``."""
    return _read_diode(raw_dir, "diode_indoor")


def read_diode_outdoor(raw_dir: Path) -> Iterator[RawSample]:
    """``{train,val}/outdoor/scene_*/scan_*/<name>.png`` + ``_depth.npy`` + ``_depth_mask.npy``."""
    return _read_diode(raw_dir, "diode_outdoor")


_DIODE_NOTES = (
    "Reads the same train.tar.gz / val.tar.gz as the other DIODE spec; the paper profile downloads them once "
    "per spec unless the integrator shares the downloads.",
    "Depth bytes = an uncompressed zip of the original <name>_depth.npy and <name>_depth_mask.npy "
    "(pack_diode_depth); decoder: mask == 0 -> 0, non-finite values kept.",
    "Preprocessing: the NYU pipeline without NYUCrop (paper §4); evaluation on the full image without a "
    "crop: our inference from 'without the NYUCrop' [I] (docs/protocol.md); Depth Anything's "
    "metric_depth/zoedepth/utils/config.py would use an Eigen crop (indoor) / Garg crop (outdoor) instead.",
)

DIODE_INDOOR = DatasetSpec(
    name="diode_indoor",
    image_sizes=((768, 1024),),  # RGB 1024x768 (diode-devkit README)
    title="DIODE indoor",
    task="depth",
    scene="indoor",
    archives=DIODE_ARCHIVES,
    reader=read_diode_indoor,
    splits=DIODE_SPLITS,
    test_split="val",  # official val = test (paper Table 2)
    depth_encoding="diode_npy",
    depth_decoder=decode_diode_depth,
    min_depth=1e-3,  # Depth Anything metric_depth/zoedepth/utils/config.py diode_indoor min_depth 1e-3
    max_depth=10.0,  # Depth Anything metric_depth/zoedepth/utils/config.py diode_indoor max_depth 10; = NYU's 10 m
    notes=_DIODE_NOTES,
)

DIODE_OUTDOOR = DatasetSpec(
    name="diode_outdoor",
    image_sizes=((768, 1024),),  # RGB 1024x768 (diode-devkit README)
    title="DIODE outdoor",
    task="depth",
    scene="outdoor",
    archives=DIODE_ARCHIVES,
    reader=read_diode_outdoor,
    splits=DIODE_SPLITS,
    test_split="val",
    depth_encoding="diode_npy",
    depth_decoder=decode_diode_outdoor_depth,
    min_depth=1e-3,  # Depth Anything metric_depth/zoedepth/utils/config.py diode_outdoor min_depth 1e-3
    max_depth=DIODE_OUTDOOR_MAX_DEPTH,  # paper §4: limited to 80 m
    notes=_DIODE_NOTES + (
        "Depth beyond 80 m: DIODE_OUTDOOR_FAR_MODE = 'mask' (-> 0, invalid; default) or 'clip' (-> 80 m, which "
        "the strict eval mask gt < 80 then excludes from evaluation); the paper does not say which: "
        "our choice (docs/choices.md, DIODE).",
    ),
)

SPECS: tuple[DatasetSpec, ...] = (KITTI, DIODE_INDOOR, DIODE_OUTDOOR)
