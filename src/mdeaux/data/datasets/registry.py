"""The registry of dataset specs and the readers of their official on-disk layouts.

Sources of every value are given next to it: "toolbox" is the Monocular-Depth-Estimation-Toolbox
(zhyever/Monocular-Depth-Estimation-Toolbox at commit d8aff50), "mmseg" is mmsegmentation 0.27.0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample

# ----------------------------------------------------------------------------------------------
# NYU Depth V2, toolbox "sync" layout (24,231 train / 654 test; toolbox splits/nyu_{train,test}.txt)
# ----------------------------------------------------------------------------------------------
# The paper trains on the 24.2K frames (Table 2), which only the toolbox/BTS "sync" archive holds;
# the labeled .mat has 1,449 frames. So the pipeline reads the toolbox layout: a zip whose root
# folder nyu/ holds the scene folders plus nyu_train.txt and nyu_test.txt (toolbox docs/dataset_prepare.md;
# the layout mmsegmentation 1.x tools/dataset_converters/nyu.py expects).

NYU_SPLIT_FILES = {
    # sha256 of the toolbox split files at zhyever/Monocular-Depth-Estimation-Toolbox@d8aff50
    # (splits/nyu_train.txt, splits/nyu_test.txt). Checked in the paper profile; the mini world writes its
    # own lists.
    "nyu_train.txt": "11dcd508d3c669b2fed27eff2919a076484eea8ab6b1f889f32da6fc0a395354",
    "nyu_test.txt": "e92c191d5835a22589b843c11b80cd7235d5bd0d4136e42a6debcea4511bf906",
}

NYU_MANUAL = """\
NYUv2 (toolbox layout) has no checksummed direct download: the Monocular Depth Estimation Toolbox
publishes it on Google Drive (id 1wC-io-14RCIL4XTUrQLk6lBqU2AexLVp, see the toolbox's
docs/dataset_prepare.md). Download it in a browser, make sure the zip's root folder is nyu/ with
nyu_train.txt and nyu_test.txt inside, and save it as

    data/manual/nyuv2/nyu.zip

then record it with DVC:  dvc add data/manual && git add data.dvc && git commit -m "add NYUv2"
(or, if data/manual is already tracked:  dvc commit data.dvc).  The split files are checked against
the toolbox's pinned sha256 when the dataset is prepared."""


def read_nyuv2(raw_dir: Path) -> Iterator[RawSample]:
    """Toolbox layout: ``nyu/nyu_{train,test}.txt`` with lines ``rgb depth focal`` relative to nyu/."""
    root = raw_dir / "nyu"
    for split, list_name in (("train", "nyu_train.txt"), ("test", "nyu_test.txt")):
        list_path = root / list_name
        if not list_path.is_file():
            raise FileNotFoundError(
                f"{list_path} is missing: the NYUv2 archive must hold nyu/{list_name} (toolbox layout)"
            )
        entries = []
        for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{list_path}:{lineno}: expected 'rgb_path depth_path [focal]', got {line!r}")
            rgb, depth = parts[0].lstrip("/"), parts[1].lstrip("/")
            if depth == "None":  # toolbox loaders skip samples without ground truth
                continue
            entries.append((rgb, depth))
        for rgb, depth in sorted(entries):  # toolbox sorts samples by file name
            rgb_path, depth_path = root / rgb, root / depth
            for p in (rgb_path, depth_path):
                if not p.is_file():
                    raise FileNotFoundError(f"{p} is listed in {list_path} but does not exist")
            yield RawSample(
                id=rgb.rsplit(".", 1)[0],
                split=split,
                image=rgb_path.read_bytes(),
                image_format=rgb_path.suffix.lstrip(".").lower(),
                depth=depth_path.read_bytes(),
            )


NYUV2 = DatasetSpec(
    name="nyuv2",
    official_counts=(("train", 24231), ("test", 654)),  # toolbox splits/nyu_{train,test}.txt line counts
    title="NYU Depth V2",
    task="depth",
    scene="indoor",
    archives=(Archive(filename="nyu.zip", manual=NYU_MANUAL),),
    reader=read_nyuv2,
    splits=("train", "test"),
    test_split="test",
    depth_encoding="png_uint16",
    depth_scale=1000.0,  # toolbox configs/_base_/datasets/nyu.py depth_scale=1000 (PNG in mm)
    min_depth=1e-3,  # toolbox configs/_base_/datasets/nyu.py min_depth
    max_depth=10.0,  # toolbox configs/_base_/datasets/nyu.py max_depth; dinov2/hub/depthers.py NYU (0.001, 10)
    eval_crop=(45, 471, 41, 601),  # toolbox depth/datasets/nyu.py eval_mask "eigen crop" [45:471, 41:601]
    eval_crop_name="eigen",
    image_sizes=((480, 640),),  # NYU Kinect frames (640x480 RGB of the toolbox archive)
    pinned_files=tuple((f"nyu/{name}", digest) for name, digest in NYU_SPLIT_FILES.items()),
)

# ----------------------------------------------------------------------------------------------
# ADE20K / SceneParse150 (20,210 train / 2,000 val, 150 classes; CSAILVision/sceneparsing README)
# ----------------------------------------------------------------------------------------------

# mmsegmentation 0.27 ADE20KDataset.CLASSES (the order of objectInfo150.txt).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)
assert len(ADE20K_CLASSES) == 150

ADE20K_SPLITS = {"training": "train", "validation": "val"}


def read_ade20k(raw_dir: Path) -> Iterator[RawSample]:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}/`` (CSAILVision/sceneparsing README)."""
    root = raw_dir / "ADEChallengeData2016"
    for folder, split in ADE20K_SPLITS.items():
        image_dir, ann_dir = root / "images" / folder, root / "annotations" / folder
        if not image_dir.is_dir():
            raise FileNotFoundError(f"{image_dir} is missing: not an ADEChallengeData2016 layout")
        for image_path in sorted(image_dir.glob("*.jpg")):
            ann_path = ann_dir / f"{image_path.stem}.png"
            if not ann_path.is_file():
                raise FileNotFoundError(f"{ann_path} is missing: every ADE20K image needs its annotation")
            yield RawSample(
                id=f"{folder}/{image_path.stem}",
                split=split,
                image=image_path.read_bytes(),
                image_format="jpg",
                label=ann_path.read_bytes(),
            )


ADE20K = DatasetSpec(
    name="ade20k",
    official_counts=(("train", 20210), ("val", 2000)),  # CSAILVision/sceneparsing README
    title="ADE20K (SceneParse150)",
    task="segmentation",
    scene="indoor, outdoor",
    archives=(
        Archive(
            filename="ADEChallengeData2016.zip",
            urls=("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",),  # mmseg docs
            sha256="7ff1be44964418441f542a7cc1e1a650e7dc0fc275f5d23252bc9bbdbc977b29",  # TFDS ade20k.txt
            size=967_382_037,  # tensorflow/datasets url_checksums/ade20k.txt
        ),
    ),
    reader=read_ade20k,
    splits=("train", "val"),
    test_split="val",
    classes=ADE20K_CLASSES,
    reduce_zero_label=True,  # mmseg 0.27 configs/_base_/datasets/ade20k.py: 0 = "other objects" -> ignored
)

# The other datasets live in one module per family (same pattern: SPECS, readers, decoders).
from mdeaux.data.datasets import (  # noqa: E402
    cityscapes,
    indoor_depth,
    lidar_depth,
    nyu_labeled,
    seg_sets,
    sunrgbd,
)

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        NYUV2,
        *nyu_labeled.SPECS,
        *sunrgbd.SPECS,
        *indoor_depth.SPECS,
        *lidar_depth.SPECS,
        ADE20K,
        *cityscapes.SPECS,
        *seg_sets.SPECS,
    )
}


def get(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}") from None
