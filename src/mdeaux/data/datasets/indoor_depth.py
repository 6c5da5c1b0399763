"""Matterport3D and Taskonomy: indoor depth datasets behind licence gates (manual sources).

Sources of every value are given next to it: the datasets' official repositories and pages
(niessner/Matterport ``README.md``, ``data_organization.md``, ``tasks/benchmark/``; StanfordVL/taskonomy
``data/README.md``; EPFL-VILAB/omnidata ``omnidata_tools/dataset/README.md``) and the paper. "[I]" marks
our own inference where no source states the value (docs/choices.md, docs/protocol.md).

Matterport3D (niessner/Matterport; paper Table 2: 144K train / 19.2K val, evaluated on val)
    ``download_mp.py -o data/manual/matterport3d --type undistorted_color_images
    undistorted_depth_images`` writes ``v1/scans/<scan>/<filetype>.zip`` per scan; each zip holds
    ``<scan>/<filetype>/...``. Every one of those zips of the 61 train and 11 val scans of the official
    benchmark lists is an archive of the spec (its ``filename`` is the path under
    ``data/manual/matterport3d/``), and the two lists ``scenes_train.txt`` / ``scenes_val.txt`` are
    fetched from the niessner/Matterport repository. Fetch extracts every zip into ``raw_dir``, so the
    reader sees ``raw_dir/<scan>/undistorted_{color,depth}_images/`` and ``raw_dir/scenes_*.txt``.
    Colour ``<pano>_i<cam>_<yaw>.jpg`` and depth ``<pano>_d<cam>_<yaw>.png`` (cam 0-2, yaw 0-5),
    1280x1024, depth 16-bit PNG in 0.25 mm units (/4000 = metres), 0 = no reading.
    The paper resizes Matterport3D to 480x640 first and then uses the NYU pipeline without NYUCrop
    (paper §4; RGB bilinear, depth nearest is our choice [I]): a training/evaluation-time transform,
    not part of the stored data.

Taskonomy (StanfordVL/taskonomy, EPFL-VILAB/omnidata; paper Table 2 and §4: 3.2M train / 498K val, the
size of the ``full`` subset [I], 10 % seeded train subset, evaluated on val)
    ``omnitools.download rgb depth_zbuffer --components taskonomy --subset full`` extracts into
    ``<dest>/<domain>/taskonomy/<building>/point_<p>_view_<v>_domain_<domain>.png`` (it deletes its
    own per-building tars). The manual source is that tree packed into one uncompressed tar per
    domain, ``rgb.tar`` and ``depth_zbuffer.tar`` (``tar -cf rgb.tar -C <dest> rgb/taskonomy``), plus
    the official split archive ``splits_taskonomy.zip`` (public URL), which holds
    ``splits_taskonomy/train_val_test_<subset>.csv`` with columns ``id,train,val,test`` (0/1 flags
    per building). RGB 512x512 8-bit PNG; depth_zbuffer 16-bit PNG in 1/512 m, 65535 = invalid.
    The seeded 10 % training subset is drawn by the split stage, not here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample, read_png_uint16

# ----------------------------------------------------------------------------------------------
# Matterport3D (niessner/Matterport)
# ----------------------------------------------------------------------------------------------

MP3D_DEPTH_SCALE = 4000.0  # 0.25 mm per unit -> /4000 = metres (niessner/Matterport data_organization.md)
MP3D_WIDTH, MP3D_HEIGHT = 1280, 1024  # undistorted image size (not stated in the official docs [I])
MP3D_CAMERAS, MP3D_YAWS = 3, 6  # cameras 0-2 x yaws 0-5 = 18 images per panorama (data_organization.md)
MP3D_FILETYPES = ("undistorted_color_images", "undistorted_depth_images")  # download_mp.py --type
MP3D_RELEASE = "v1/scans"  # download_mp.py RELEASE: files land in <out_dir>/v1/scans/<scan>/<filetype>.zip

# Official benchmark scene lists, niessner/Matterport@4338d01 tasks/benchmark/scenes_{train,val}.txt
# (61 train / 11 val scans). The sha256 are of those files as stored in the repository
# (LF line endings, trailing newline; 732 / 132 bytes): the paper profile checks them, the mini world writes
# the same names in the same order.
MP3D_SCENES = {
    "train": (
        "17DRP5sb8fy", "1LXtFkjw3qL", "1pXnuDYAj8r", "29hnd4uzFmX", "5LpN3gDmAk7", "5q7pvUzZiYa",
        "759xd9YjKW5", "7y3sRwLe3Va", "82sE5b5pLXE", "8WUmhLawc2A", "aayBHfsNo7d", "ac26ZMwG7aT",
        "B6ByNegPMKs", "b8cTxDM8gDG", "cV4RVeZvu5T", "D7N2EKCX4Sj", "e9zR4mvMWw7", "EDJbREhghzL",
        "GdvgFV5R1Z5", "gTV8FGcVJC9", "HxpKQynjfin", "i5noydFURQK", "JeFG25nYj2p", "JF19kD82Mey",
        "jh4fc5c5qoQ", "kEZ7cmS4wCh", "mJXqzFtmKg4", "p5wJjkQkbXX", "Pm6F8kyY3z2", "pRbA3pwrgk9",
        "PuKPg4mmafe", "PX4nDJXEHrG", "qoiz87JEwZ2", "rPc6DW4iMge", "s8pcmisQ38h", "S9hNv5qa7GM",
        "sKLMLpTHeUy", "SN83YJsR3w2", "sT4fr6TAbpF", "ULsKaCPVFJR", "uNb9QFRL6hY", "Uxmj2M2itWa",
        "V2XKFyX4ASd", "VFuaQ6m2Qom", "VVfe2KiqLaN", "Vvot9Ly1tCj", "vyrNrziPKCB", "VzqfbhrpDEA",
        "XcA2TqTSSAj", "2n8kARJN3HM", "D7G3Y4RVNrH", "dhjEzFoUFzH", "E9uDoFAP3SH", "gZ6f7yhEvPG",
        "JmbYfDe2QKZ", "r1Q1Z4BcV1o", "r47D5H71a5s", "ur6pFq6Qu1A", "VLzqgDo317F", "YmJkqBEsHnH",
        "ZMojNkEp431",
    ),
    "val": (
        "2azQ1b91cZZ", "8194nk5LbLH", "EU6Fwq7SyZv", "oLBMNvg9in8", "QUCTc6BB5sX", "TbHJrupSAjP",
        "X7HyMhZNoso", "pLe4wQe7qrG", "x8F5xyUWy9e", "Z6MFQCViBuw", "zsNo4HB9uLZ",
    ),
}
assert len(MP3D_SCENES["train"]) == 61 and len(MP3D_SCENES["val"]) == 11  # tasks/benchmark/scenes_{train,val}.txt
MP3D_SCENE_LISTS = {"train": "scenes_train.txt", "val": "scenes_val.txt"}
MP3D_SCENE_LIST_URL = "https://raw.githubusercontent.com/niessner/Matterport/4338d01c81380b1ad78cca83206648c9b5233f47/tasks/benchmark/{}"
MP3D_SCENE_LIST_SHA256 = {  # sha256 of the exact file text at niessner/Matterport@4338d01 (61 / 11 lines)
    "scenes_train.txt": "05c5abb605bb384a249d3a0aae8435f83f63c2c6b92c4cadff1fc29e9982de86",
    "scenes_val.txt": "7842c723b34741dee494ec9c99c66d568e22e181c1bd4053c5c066425fbe365e",
}

MP3D_COLOR_RE = re.compile(r"^(?P<pano>[0-9A-Za-z]+)_i(?P<cam>\d)_(?P<yaw>\d)\.jpg$")

MP3D_MANUAL = """\
Matterport3D is licence-gated (github.com/niessner/Matterport README). Sign the Terms of Use
(http://kaldir.vc.in.tum.de/matterport/MP_TOS.pdf) and e-mail them to matterport3d@googlegroups.com;
you receive download_mp.py. Download the undistorted colour and depth images of every scan of the
benchmark train and val lists straight into the manual folder:

    python download_mp.py -o data/manual/matterport3d --type undistorted_color_images undistorted_depth_images

(or per scan: --id <scan>). This writes, unchanged and not unpacked,

    data/manual/matterport3d/v1/scans/<scan>/undistorted_color_images.zip
    data/manual/matterport3d/v1/scans/<scan>/undistorted_depth_images.zip

for the 61 scans of scenes_train.txt and the 11 of scenes_val.txt (the 18 test scans are not needed;
the two scene lists are fetched from github.com/niessner/Matterport). Then record the files with DVC:
dvc add data/manual && git add data.dvc && git commit -m "add Matterport3D"
(or, if data/manual is already tracked:  dvc commit data.dvc  and commit data.dvc)."""


def mp3d_archive_name(scan: str, filetype: str) -> str:
    """Where download_mp.py puts a scan's zip, relative to its -o folder (its BASE_URL/RELEASE layout)."""
    return f"{MP3D_RELEASE}/{scan}/{filetype}.zip"


def decode_mp3d_depth(data: bytes) -> np.ndarray:
    """Matterport3D undistorted depth: uint16 PNG / 4000 = metres, 0 = no reading (data_organization.md)."""
    raw = read_png_uint16(data, "matterport3d")
    return (raw.astype(np.float32) / np.float32(MP3D_DEPTH_SCALE)).astype(np.float32)


def _scene_list(raw_dir: Path, split: str, dataset: str) -> tuple[Path, list[str]]:
    list_path = raw_dir / MP3D_SCENE_LISTS[split]
    if not list_path.is_file():
        raise FileNotFoundError(f"{dataset}: scene list {list_path} is missing (official benchmark {split} list)")
    scans = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
    if len(set(scans)) != len(scans):
        raise ValueError(f"{dataset}: scene list {list_path} names a scan twice")
    return list_path, scans


def read_matterport3d(raw_dir: Path) -> Iterator[RawSample]:
    """``scenes_{train,val}.txt`` + ``<scan>/undistorted_{color,depth}_images/`` under ``raw_dir``."""
    raw_dir = Path(raw_dir)
    lists = {split: _scene_list(raw_dir, split, "matterport3d") for split in ("train", "val")}
    seen: dict[str, str] = {}
    for split, (_, scans) in lists.items():
        for scan in scans:
            if scan in seen:
                raise ValueError(f"matterport3d: scan {scan} is in both the {seen[scan]} and {split} scene lists")
            seen[scan] = split
    for split, (list_path, scans) in lists.items():
        for scan in sorted(scans):
            color_dir = raw_dir / scan / "undistorted_color_images"
            depth_dir = raw_dir / scan / "undistorted_depth_images"
            for folder in (color_dir, depth_dir):
                if not folder.is_dir():
                    raise FileNotFoundError(
                        f"matterport3d: scan {scan!r} listed in {list_path} has no folder {folder} "
                        f"(is {MP3D_RELEASE}/{scan}/{folder.name}.zip missing?)"
                    )
            for color_path in sorted(color_dir.iterdir()):
                match = MP3D_COLOR_RE.match(color_path.name)
                if match is None:
                    continue  # not a colour image of the release naming (data_organization.md)
                pano, cam, yaw = match["pano"], match["cam"], match["yaw"]
                depth_path = depth_dir / f"{pano}_d{cam}_{yaw}.png"
                if not depth_path.is_file():
                    raise FileNotFoundError(
                        f"matterport3d: {depth_path} is missing: every colour image ({color_path.name}) of "
                        f"scan {scan} needs its depth image"
                    )
                yield RawSample(
                    id=f"{scan}/{pano}_{cam}_{yaw}",
                    split=split,
                    image=color_path.read_bytes(),
                    image_format="jpg",
                    depth=depth_path.read_bytes(),
                )


def _mp3d_archives() -> tuple[Archive, ...]:
    # the licence-gated zips first: with data/manual empty, fetch stops with their instructions before
    # it tries the network for the scene lists
    archives = []
    for split in ("train", "val"):
        for scan in MP3D_SCENES[split]:
            for filetype in MP3D_FILETYPES:
                # no checksums are published for the release zips
                archives.append(Archive(filename=mp3d_archive_name(scan, filetype), manual=MP3D_MANUAL))
    archives += [
        Archive(filename=name, urls=(MP3D_SCENE_LIST_URL.format(name),), sha256=MP3D_SCENE_LIST_SHA256[name],
                extract=False)
        for name in MP3D_SCENE_LISTS.values()
    ]
    return tuple(archives)


# ----------------------------------------------------------------------------------------------
# Taskonomy (StanfordVL/taskonomy data/README.md, EPFL-VILAB/omnidata)
# ----------------------------------------------------------------------------------------------

TASKONOMY_SUBSET = "full"  # paper 3.2M / 498K matches the `full` subset, 344/67/71 buildings (omnidata README) [I]
TASKONOMY_DEPTH_SCALE = 512.0  # depth_zbuffer: 1/512 m per unit (taskonomy data/README.md)
TASKONOMY_INVALID = 65535  # missing geometry (omnidata omnidata_annotator/scripts/create_mask_valid.py)
TASKONOMY_SIZE = 512  # RGB and depth 512x512 (taskonomy data/README.md)
# official building split, linked from StanfordVL/taskonomy data/README.md
TASKONOMY_SPLITS_URL = "https://github.com/StanfordVL/taskonomy/raw/master/data/assets/splits_taskonomy.zip"
TASKONOMY_SPLIT_CSV = f"splits_taskonomy/train_val_test_{TASKONOMY_SUBSET}.csv"  # inside splits_taskonomy.zip
TASKONOMY_DOMAINS = ("rgb", "depth_zbuffer")
TASKONOMY_RGB_RE = re.compile(r"^point_(?P<point>\d+)_view_(?P<view>\d+)_domain_rgb\.png$")

TASKONOMY_MANUAL = """\
Taskonomy needs a name, an e-mail address and acceptance of the Omnidata Dataset Research Terms
(StanfordVL/taskonomy data/LICENSE; EPFL-VILAB/omnidata omnidata_tools/dataset/README.md). Install
omnidata-tools and aria2, then download the `full` subset's train and val buildings (the test
buildings are not needed):

    omnitools.download rgb depth_zbuffer --components taskonomy --subset full --split train \\
        --dest <dest> --name "$TASKONOMY_NAME" --email "$TASKONOMY_EMAIL" --agree_all
    (the same again with --split val)

which leaves <dest>/rgb/taskonomy/<building>/point_<p>_view_<v>_domain_rgb.png and
<dest>/depth_zbuffer/taskonomy/<building>/point_<p>_view_<v>_domain_depth_zbuffer.png. Pack each
domain into one uncompressed tar, paths unchanged:

    tar -cf data/manual/taskonomy/rgb.tar -C <dest> rgb/taskonomy
    tar -cf data/manual/taskonomy/depth_zbuffer.tar -C <dest> depth_zbuffer/taskonomy

(splits_taskonomy.zip, the official building split, is downloaded from github.com/StanfordVL/taskonomy.)
Then record them with DVC:  dvc add data/manual && git add data.dvc && git commit -m "add Taskonomy"
(or, if data/manual is already tracked:  dvc commit data.dvc  and commit data.dvc)."""


def decode_taskonomy_depth(data: bytes) -> np.ndarray:
    """Taskonomy depth_zbuffer: uint16 PNG / 512 = metres; 65535 (no geometry) -> 0 (taskonomy data/README.md,
    omnidata create_mask_valid.py)."""
    raw = read_png_uint16(data, "taskonomy")
    depth = raw.astype(np.float32) / np.float32(TASKONOMY_DEPTH_SCALE)
    depth[raw == TASKONOMY_INVALID] = 0.0
    return depth.astype(np.float32)


def read_taskonomy_splits(csv_path: Path) -> dict[str, list[str]]:
    """Buildings per split from ``train_val_test_<subset>.csv`` (``id,train,val,test``, 0/1 flags)."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"taskonomy: split file {csv_path} is missing (from splits_taskonomy.zip)")
    text = csv_path.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO("\n".join(text.splitlines()))))  # any line ending
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for lineno, row in enumerate(rows, 2):
        building = (row.get("id") or "").strip()
        if not building:
            raise ValueError(f"taskonomy: {csv_path}:{lineno}: no building id in {row}")
        flags = [s for s in splits if str(row.get(s, "0")).strip() == "1"]
        if len(flags) != 1:
            raise ValueError(f"taskonomy: {csv_path}:{lineno}: building {building!r} must be in exactly one split")
        splits[flags[0]].append(building)
    return splits


def read_taskonomy(raw_dir: Path) -> Iterator[RawSample]:
    """``splits_taskonomy/train_val_test_full.csv`` + ``{rgb,depth_zbuffer}/taskonomy/<building>/``."""
    raw_dir = Path(raw_dir)
    csv_path = raw_dir / TASKONOMY_SPLIT_CSV
    splits = read_taskonomy_splits(csv_path)
    for split in ("train", "val"):  # the test buildings are not used (paper evaluates on val)
        for building in sorted(splits[split]):
            rgb_dir = raw_dir / "rgb" / "taskonomy" / building
            depth_dir = raw_dir / "depth_zbuffer" / "taskonomy" / building
            for folder in (rgb_dir, depth_dir):
                if not folder.is_dir():
                    raise FileNotFoundError(
                        f"taskonomy: building {building!r} ({split} in {csv_path}) has no folder {folder}"
                    )
            entries = []
            for rgb_path in rgb_dir.iterdir():
                match = TASKONOMY_RGB_RE.match(rgb_path.name)
                if match is not None:
                    entries.append((int(match["point"]), int(match["view"]), rgb_path))
            for point, view, rgb_path in sorted(entries):
                depth_path = depth_dir / f"point_{point}_view_{view}_domain_depth_zbuffer.png"
                if not depth_path.is_file():
                    raise FileNotFoundError(
                        f"taskonomy: {depth_path} is missing: every rgb image ({rgb_path.name}) of building "
                        f"{building} needs its depth_zbuffer"
                    )
                yield RawSample(
                    id=f"{building}/point_{point}_view_{view}",
                    split=split,
                    image=rgb_path.read_bytes(),
                    image_format="png",
                    depth=depth_path.read_bytes(),
                )


# ----------------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------------

MATTERPORT3D = DatasetSpec(
    name="matterport3d",
    image_sizes=((1024, 1280),),  # undistorted 1280x1024 images (not stated in the official docs [I])
    title="Matterport3D (undistorted images, benchmark scene split)",
    task="depth",
    scene="indoor",
    archives=_mp3d_archives(),
    reader=read_matterport3d,
    splits=("train", "val"),
    test_split="val",  # paper §4: tested on the validation split
    depth_encoding="png_uint16",
    depth_scale=MP3D_DEPTH_SCALE,
    depth_decoder=decode_mp3d_depth,
    min_depth=1e-3,  # NYU pipeline: toolbox configs/_base_/datasets/nyu.py min_depth [I]
    max_depth=10.0,  # NYU's 10 m; the paper gives no range [I] (docs/choices.md)
    eval_crop=None,  # "without the NYUCrop": full image at evaluation [I] (docs/protocol.md)
    notes=(
        "Resize to 480x640 first (RGB bilinear, depth nearest), then the NYU pipeline without NYUCrop "
        "(paper §4): a transform of the training/evaluation pipeline.",
        "Splits: official benchmark scene lists scenes_train.txt (61 scans) / scenes_val.txt (11 scans) "
        "(niessner/Matterport tasks/benchmark).",
        "Manual archives: data/manual/matterport3d/v1/scans/<scan>/undistorted_{color,depth}_images.zip "
        "exactly as download_mp.py -o data/manual/matterport3d writes them.",
    ),
)

TASKONOMY = DatasetSpec(
    name="taskonomy",
    image_sizes=((512, 512),),  # 512x512 PNGs (taskonomy data/README.md)
    title="Taskonomy (full subset, rgb + depth_zbuffer)",
    task="depth",
    scene="indoor",
    archives=(  # licence-gated first (see _mp3d_archives)
        Archive(filename="rgb.tar", manual=TASKONOMY_MANUAL),
        Archive(filename="depth_zbuffer.tar", manual=TASKONOMY_MANUAL),
        # the split archive as GitHub serves it: StanfordVL/taskonomy data/assets/splits_taskonomy.zip, git blob
        # 0aa76402 (the only version, commit e0b5adc, unchanged on master); no checksum is published elsewhere
        Archive(filename="splits_taskonomy.zip", urls=(TASKONOMY_SPLITS_URL,),
                sha256="58e353198de5b85feb4f51b81762bd43bb9aaacc17879d4ce58270900770c0c5", size=10_295),
    ),
    reader=read_taskonomy,
    splits=("train", "val"),
    test_split="val",  # paper §4 and Table 2: 498K val images
    depth_encoding="png_uint16",
    depth_scale=TASKONOMY_DEPTH_SCALE,
    depth_decoder=decode_taskonomy_depth,
    min_depth=1e-3,  # NYU pipeline: toolbox configs/_base_/datasets/nyu.py min_depth [I]
    max_depth=10.0,  # NYU's 10 m; the paper gives no range [I] (docs/choices.md)
    eval_crop=None,  # "without the NYUCrop" [I] (docs/protocol.md)
    notes=(
        "Subset `full` (344 train / 67 val buildings; omnidata README), our reading of the paper's sizes [I]; "
        "buildings per split from "
        "splits_taskonomy/train_val_test_full.csv of splits_taskonomy.zip.",
        "Training uses a seeded 10% random subset of the train split (paper §4): drawn by the split stage.",
        "NYU pipeline without NYUCrop (paper §4).",
        "Manual archives: data/manual/taskonomy/rgb.tar and depth_zbuffer.tar, the omnitools.download "
        "tree <domain>/taskonomy/<building>/... packed unchanged.",
    ),
)

SPECS: tuple[DatasetSpec, ...] = (MATTERPORT3D, TASKONOMY)

__all__ = [
    "MATTERPORT3D", "MP3D_SCENES", "SPECS", "TASKONOMY", "decode_mp3d_depth", "decode_taskonomy_depth",
    "mp3d_archive_name", "read_matterport3d", "read_taskonomy", "read_taskonomy_splits",
]
