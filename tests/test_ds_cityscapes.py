"""Cityscapes (gtFine labelIds, 34 classes; and the 19-trainId switch): synthetic archives in the official
layout, read back with the reader and decoded with the specs' decoders (cityscapesScripts labels.py,
mmseg 0.27 CityscapesDataset)."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeaux.data.datasets import cityscapes as C
from mdeaux.data.extract import safe_extract
from mdeaux.data.synth import cityscapes as W

COUNTS = {"train": 2, "val": 1}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("cityscapes")
    paths = W.write_cityscapes(root / "mirror", COUNTS, seed=3, workers=1)
    raw = root / "raw"
    for p in paths:
        assert zipfile.is_zipfile(p)
        safe_extract(p, raw)
    return paths, raw


def test_archives_and_layout(world):
    paths, raw = world
    assert [p.name for p in paths] == [a.filename for a in C.CITYSCAPES.archives]
    assert [a.filename for a in C.CITYSCAPES.archives] == ["gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip"]
    assert all(a.manual and a.md5 for a in C.CITYSCAPES.archives)
    assert "data/manual/cityscapes/gtFine_trainvaltest.zip" in C.CITYSCAPES.archives[0].manual
    assert "CITYSCAPES_PASSWORD" in C.CITYSCAPES.archives[1].manual
    stem = "aachen_000000_000019"
    assert (raw / "leftImg8bit/train/aachen" / f"{stem}_leftImg8bit.png").is_file()
    for suffix in ("labelIds", "color", "instanceIds"):
        assert (raw / "gtFine/train/aachen" / f"{stem}_gtFine_{suffix}.png").is_file()
    assert (raw / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png").is_file()


def test_classes():
    assert len(C.CITYSCAPES.classes) == 34 and C.CITYSCAPES.classes[0] == "unlabeled"
    assert C.CITYSCAPES.classes[7] == "road" and C.CITYSCAPES.classes[23] == "sky" and C.CITYSCAPES.classes[33] == "bicycle"
    assert len(C.CITYSCAPES19.classes) == 19 and C.CITYSCAPES19.classes[13] == "car"
    assert not C.CITYSCAPES.reduce_zero_label and not C.CITYSCAPES19.reduce_zero_label
    assert [s.name for s in C.SPECS] == ["cityscapes", "cityscapes19"]


@pytest.mark.parametrize("spec", C.SPECS, ids=lambda s: s.name)
def test_read_and_decode(world, spec):
    _, raw = world
    samples = list(spec.reader(raw))
    ids = [s.id for s in samples]
    assert len(ids) == len(set(ids))
    assert [s.split for s in samples] == ["train", "train", "val"]
    assert ids == ["train/aachen/aachen_000000_000019", "train/bochum/bochum_000000_000019",
                   "val/frankfurt/frankfurt_000000_000019"]
    for s in samples:
        img, lab = spec.decode_image(s.image), spec.decode_label(s.label)
        assert s.image_format == "png" and s.image.startswith(b"\x89PNG")
        assert img.shape == (1024, 2048, 3) and img.dtype == np.uint8
        assert lab.shape == (1024, 2048) and lab.dtype == np.uint8
        vals = np.unique(lab)
        assert np.all((vals < spec.num_classes) | (vals == 255)), vals
    if spec.name == "cityscapes":
        lab = spec.decode_label(samples[0].label)
        assert lab[-1, 1024] == C.LABEL_IDS["ego vehicle"] and lab[0, 0] == C.LABEL_IDS["out of roi"]
        assert {7, 11, 23, 26} <= set(np.unique(lab).tolist())  # road, building, sky, car
        # colour map follows labels.py colours
        color = np.asarray(Image.open(raw / "gtFine/train/aachen/aachen_000000_000019_gtFine_color.png"))
        road = lab == 7
        assert np.all(color[road] == (128, 64, 128))
    else:
        lab = spec.decode_label(samples[0].label)
        assert lab[-1, 1024] == 255 and lab[0, 0] == 255  # void ids -> ignore
        assert {0, 2, 10, 13} <= set(np.unique(lab).tolist())  # road, building, sky, car trainIds


def test_hand_made_pixels():
    ids = np.array([[0, 1, 7, 8], [23, 26, 33, 255]], np.uint8)
    assert np.array_equal(C.decode_cityscapes_label(png(ids)), ids)
    assert C.decode_cityscapes19_label(png(ids)).tolist() == [[255, 255, 0, 1], [10, 13, 18, 255]]


def test_out_of_range_ids():
    bad = np.array([[7, 34], [40, 7]], np.uint8)
    assert sorted(np.unique(C.decode_cityscapes_label(png(bad))).tolist()) == [7, 34, 40]  # validation flags them
    with pytest.raises(ValueError, match=r"\[34, 40\]"):
        C.decode_cityscapes19_label(png(bad))
    with pytest.raises(ValueError, match="mode"):
        C.decode_cityscapes_label(png(np.zeros((2, 2, 3), np.uint8)))  # a colour PNG is not a labelIds map


def test_corrupt_png(world):
    _, raw = world
    data = (raw / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png").read_bytes()
    with pytest.raises(Exception):
        C.CITYSCAPES.decode_image(data[: len(data) // 2])
    lab = (raw / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png").read_bytes()
    with pytest.raises(Exception):
        C.CITYSCAPES.decode_label(lab[:40] + b"\0" * 20 + lab[60:])


def test_size_mismatch_detectable(world):
    _, raw = world
    s = next(C.CITYSCAPES.reader(raw))
    small = png(np.zeros((512, 1024), np.uint8))
    assert C.CITYSCAPES.decode_image(s.image).shape[:2] != C.CITYSCAPES.decode_label(small).shape


def test_missing_label_raises(world, tmp_path):
    _, raw = world
    copy = tmp_path / "raw"
    for sub in ("leftImg8bit", "gtFine"):
        shutil.copytree(raw / sub, copy / sub)
    (copy / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError, match="frankfurt_000000_000019_gtFine_labelIds.png"):
        list(C.read_cityscapes(copy))
    with pytest.raises(FileNotFoundError, match="leftImg8bit/train"):
        list(C.read_cityscapes(tmp_path / "empty"))


def test_deterministic(world, tmp_path):
    paths, _ = world
    again = W.write_cityscapes(tmp_path, COUNTS, seed=3, workers=1)
    assert [sha256(p) for p in again] == [sha256(p) for p in paths]
    # cityscapes19 reads the same archives: its writer gives the same bytes
    assert [sha256(p) for p in W.write_cityscapes19(tmp_path / "19", COUNTS, seed=3, workers=1)] == [sha256(p) for p in paths]


def test_counts_validated(tmp_path):
    with pytest.raises(ValueError):
        W.write_cityscapes(tmp_path, {"train": -1, "val": 0}, seed=0)


# -- found by mutation testing (make mutate; docs/mutation.md) --------------------------------------------
def test_every_label_id_to_its_train_id():
    # cityscapesScripts labels.py trainIds of labelIds 0..33, as mmseg 0.27 tools/convert_datasets/cityscapes.py
    # writes them (json2labelImg(..., "trainIds")): 255 = ignored in evaluation
    train_ids = [255] * 7 + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                             255, 255, 16, 17, 18]
    ids = np.arange(34, dtype=np.uint8)[None]
    assert C.decode_cityscapes19_label(png(ids)).tolist() == [train_ids]
    with pytest.raises(ValueError, match=r"ids \[34, 35, 36, 37, 38, 39, 40, 41, 42, 43\] that labels.py"):
        C.decode_cityscapes19_label(png(np.arange(34, 46, dtype=np.uint8)[None]))  # the first ten named
    with pytest.raises(ValueError, match=r"ids \[34\] that"):  # sidewalk (8 -> trainId 1) beside it is not named
        C.decode_cityscapes19_label(png(np.array([[8, 34]], np.uint8)))


def test_label_colours():
    # mmseg 0.27 CityscapesDataset.PALETTE, in trainId order
    palette = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
               (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
               (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]
    assert [C.LABEL_COLORS[C.LABEL_IDS[name]] for name in C.CITYSCAPES19_CLASSES] == palette
    # cityscapesScripts labels.py colours of the ignored labelIds
    void = {0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0), 3: (0, 0, 0), 4: (0, 0, 0), 5: (111, 74, 0), 6: (81, 0, 81),
            9: (250, 170, 160), 10: (230, 150, 140), 14: (180, 165, 180), 15: (150, 100, 100), 16: (150, 120, 90),
            18: (153, 153, 153), 29: (0, 0, 90), 30: (0, 0, 110)}
    assert {lid: C.LABEL_COLORS[lid] for lid in void} == void


def test_spec_values_with_their_sources():
    for spec in C.SPECS:
        assert spec.official_counts == (("train", 2975), ("val", 500))  # cityscapes-dataset.com gtFine train / val
        assert spec.image_sizes == ((1024, 2048),)  # leftImg8bit frames are 2048x1024
