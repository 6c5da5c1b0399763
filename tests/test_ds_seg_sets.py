"""Pascal VOC 2012 + SBD, COCO-Stuff 164k, Pascal Context 59: synthetic archives in the official layouts,
read back with the readers and decoded with the specs' decoders (mmseg 0.27 converters and datasets)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeaux.data.datasets import seg_sets as S
from mdeaux.data.extract import safe_extract
from mdeaux.data.synth import seg_sets as W

COUNTS = {"train": 4, "val": 2}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(paths: list[Path], dest: Path) -> Path:
    """Unpack every archive of a spec into one folder, as fetch does (its safe_extract merges them)."""
    for p in paths:
        assert zipfile.is_zipfile(p) or tarfile.is_tarfile(p)
        safe_extract(p, dest)
    return dest


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, tuple[list[Path], Path]]:
    root = tmp_path_factory.mktemp("seg")
    out = {}
    for name, writer in (("voc", W.write_voc), ("cocostuff", W.write_cocostuff),
                         ("pascal_context", W.write_pascal_context)):
        paths = writer(root / "mirror" / name, COUNTS, seed=3, workers=1)
        out[name] = (paths, extract(paths, root / "raw" / name))
    return out


def check_spec(spec, raw: Path, n_train: int, n_val: int):
    samples = list(spec.reader(raw))
    ids = [s.id for s in samples]
    assert len(ids) == len(set(ids))
    assert [s.split for s in samples] == sorted((s.split for s in samples), key=spec.splits.index)
    by_split = {sp: [s for s in samples if s.split == sp] for sp in spec.splits}
    for part in by_split.values():
        assert [s.id for s in part] == sorted(s.id for s in part)
    assert len(by_split["train"]) == n_train and len(by_split["val"]) == n_val
    decoded = []
    for s in samples:
        img, lab = spec.decode_image(s.image), spec.decode_label(s.label)
        assert img.dtype == np.uint8 and img.ndim == 3 and lab.dtype == np.uint8
        assert img.shape[:2] == lab.shape, s.id
        vals = np.unique(lab)
        assert ((vals < spec.num_classes) | (vals == 255)).all(), (s.id, vals)
        decoded.append((s, img, lab))
    assert list(spec.reader(raw)) == samples  # deterministic
    return decoded


# -- archives and layouts ------------------------------------------------------------------------------
def test_archive_names_match_specs(worlds):
    assert [p.name for p in worlds["voc"][0]] == [a.filename for a in S.VOC.archives]
    assert [p.name for p in worlds["cocostuff"][0]] == [a.filename for a in S.COCOSTUFF.archives]
    assert [p.name for p in worlds["pascal_context"][0]] == [a.filename for a in S.PASCAL_CONTEXT.archives]
    assert {s.name for s in S.SPECS} == {"voc", "voc_aug", "cocostuff", "pascal_context"}


def test_voc_sbd_default_and_official_encodings(worlds):
    raw = worlds["voc"][1]
    decoded = check_spec(S.VOC, raw, COUNTS["train"], COUNTS["val"])
    sbd = raw / S.SBD_ROOT
    assert len((sbd / "train.txt").read_text().split()) == COUNTS["train"]
    for s, img, lab in decoded:
        if s.split == "train":  # SBD .mat, no boundary band
            assert s.label.startswith(b"MATLAB 5.0 MAT-file") and 255 not in lab
            assert set(np.unique(lab)) <= {0, *W.VOC_LABELS.values()} and (lab > 0).any()
        else:  # VOC palette PNG with the 255 void band on the object outlines
            with Image.open(io.BytesIO(s.label)) as im:
                assert im.mode == "P" and im.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
            assert 255 in lab and (lab > 0).any()
        assert max(img.shape[:2]) == 500  # VOC-like 500 px long side
    # background 0 is a class (no reduce_zero_label)
    assert S.VOC.classes[0] == "background" and not S.VOC.reduce_zero_label and S.VOC.num_classes == 21


def test_voc_trainaug_is_mmseg_set_arithmetic(worlds):
    raw = worlds["voc"][1]
    lists = {}
    for key, path in (("voc_train", f"{S.VOC_ROOT}/ImageSets/Segmentation/train.txt"),
                      ("voc_val", f"{S.VOC_ROOT}/ImageSets/Segmentation/val.txt"),
                      ("sbd_train", f"{S.SBD_ROOT}/train.txt"), ("sbd_val", f"{S.SBD_ROOT}/val.txt")):
        lists[key] = set((raw / path).read_text().split())
    assert lists["sbd_train"] & lists["voc_val"]  # the real overlap that trainaug removes
    expected = (lists["voc_train"] | lists["sbd_train"] | lists["sbd_val"]) - lists["voc_val"]
    samples = list(S.VOC_AUG.reader(raw))
    assert {s.id.split("/", 1)[1] for s in samples if s.split == "train"} == expected
    check_spec(S.VOC_AUG, raw, len(expected), COUNTS["val"])
    for s in samples:  # VOC train keeps its PNG label, aug ids come from SBD
        sid = s.id.split("/", 1)[1]
        if s.split == "train":
            assert s.label.startswith(b"MATLAB") == (sid not in lists["voc_train"])


def test_cocostuff_layout_and_mapping(worlds):
    raw = worlds["cocostuff"][1]
    decoded = check_spec(S.COCOSTUFF, raw, COUNTS["train"], COUNTS["val"])
    for s, img, lab in decoded:
        assert len(s.id.split("/")[1]) == 12 and max(img.shape[:2]) == 640
        assert 255 in lab  # unmapped surfaces are unlabeled, as in the stuffthingmaps
    ids = set(np.unique(np.concatenate([lab.ravel() for *_, lab in decoded])).tolist())
    wall = S.COCOSTUFF_CLASSES.index("wall-other")
    assert wall in ids and S.COCOSTUFF.num_classes == 171 and not S.COCOSTUFF.reduce_zero_label


def test_pascal_context_layout_and_mapping(worlds):
    raw = worlds["pascal_context"][1]
    decoded = check_spec(S.PASCAL_CONTEXT, raw, COUNTS["train"], COUNTS["val"])
    all_ids = set(np.unique(np.concatenate([lab.ravel() for *_, lab in decoded])).tolist())
    assert S.PASCAL_CONTEXT_CLASSES.index("wall") in all_ids and 255 in all_ids
    assert S.PASCAL_CONTEXT.num_classes == 59


# -- hand-made pixels ----------------------------------------------------------------------------------
def test_voc_hand_made_pixels():
    seg = np.array([[0, 15, 255], [20, 11, 0]], np.uint8)
    png = W.encode_palette_png(seg, S.voc_palette())
    assert np.array_equal(S.decode_voc_label(png), seg)
    mat = W.encode_mat({"GTcls": {"Segmentation": seg[:, :2], "CategoriesPresent": np.array([15], np.uint8)}})
    assert np.array_equal(S.decode_voc_label(mat), seg[:, :2])
    # out-of-list index: returned as is so validation flags it
    assert 30 in S.decode_voc_label(W.encode_palette_png(np.array([[30]], np.uint8), S.voc_palette()))
    with pytest.raises(ValueError, match="outside 0..255"):
        S.decode_voc_label(W.encode_mat({"GTcls": {"Segmentation": np.array([[300]], np.uint16)}}))


def test_cocostuff_hand_made_pixels():
    src = np.array([[0, 10, 12, 91, 181, 255]], np.uint8)
    assert S.decode_cocostuff_label(W.encode_png(src)).tolist() == [[0, 10, 11, 80, 170, 255]]
    assert S.COCOSTUFF_CLASSES[11] == "stop sign" and S.COCOSTUFF_CLASSES[80] == "banner"
    for bad in (11, 90, 200):
        with pytest.raises(ValueError, match=rf"\[{bad}\]"):
            S.decode_cocostuff_label(W.encode_png(np.array([[0, bad]], np.uint8)))


def test_pascal_context_hand_made_pixels():
    lm = np.array([[0, 2, 440, 1, 458, 368]], np.uint16)  # bg, aeroplane, wall, accordion (not in 59), wood, sofa
    got = S.decode_pascal_context_label(W.encode_mat({"LabelMap": lm}))
    assert got.tolist() == [[255, 0, 55, 255, 58, 48]]
    assert S.PASCAL_CONTEXT_CLASSES[55] == "wall" and S.PASCAL_CONTEXT_CLASSES[48] == "sofa"
    with pytest.raises(ValueError, match="460"):
        S.decode_pascal_context_label(W.encode_mat({"LabelMap": np.array([[460]], np.uint16)}))


# -- determinism -------------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [W.write_voc, W.write_cocostuff, W.write_pascal_context])
def test_same_seed_same_bytes(tmp_path, writer):
    counts = {"train": 1, "val": 1}
    a = writer(tmp_path / "a", counts, seed=5)
    b = writer(tmp_path / "b", counts, seed=5)
    assert [sha256(p) for p in a] == [sha256(p) for p in b]
    assert not list((tmp_path / "a").glob(".*"))  # no staging left behind


# -- bad input -----------------------------------------------------------------------------------------
def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_corrupt_files_raise(worlds, tmp_path):
    raw = _copy_tree(worlds["voc"][1], tmp_path / "voc")
    val_id = (raw / S.VOC_ROOT / "ImageSets/Segmentation/val.txt").read_text().split()[0]
    train_id = (raw / S.SBD_ROOT / "train.txt").read_text().split()[0]
    for path in (raw / S.VOC_ROOT / "JPEGImages" / f"{val_id}.jpg", raw / S.VOC_ROOT / "SegmentationClass" / f"{val_id}.png",
                 raw / S.SBD_ROOT / "cls" / f"{train_id}.mat"):
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    samples = {s.id: s for s in S.VOC.reader(raw)}
    with pytest.raises(OSError):
        S.VOC.decode_image(samples[f"val/{val_id}"].image)
    with pytest.raises((OSError, ValueError)):
        S.VOC.decode_label(samples[f"val/{val_id}"].label)
    with pytest.raises(ValueError, match="voc"):
        S.VOC.decode_label(samples[f"train/{train_id}"].label)
    with pytest.raises(ValueError, match="pascal_context"):
        S.decode_pascal_context_label(b"MATLAB 5.0 MAT-file" + b"\0" * 10)
    with pytest.raises((OSError, ValueError)):
        S.decode_cocostuff_label(W.encode_png(np.zeros((8, 8), np.uint8))[:40])


@pytest.mark.parametrize("name,spec,rel", [
    ("voc", S.VOC, S.SBD_ROOT + "/cls/{id}.mat"),
    ("voc", S.VOC, S.VOC_ROOT + "/SegmentationClass/{id}.png"),
    ("voc", S.VOC_AUG, S.VOC_ROOT + "/JPEGImages/{id}.jpg"),
    ("pascal_context", S.PASCAL_CONTEXT, S.CONTEXT_LABEL_DIR + "/{id}.mat"),
])
def test_missing_split_entry_names_it(worlds, tmp_path, name, spec, rel):
    raw = _copy_tree(worlds[name][1], tmp_path / name)
    if "SegmentationClass" in rel:
        lst = raw / S.VOC_ROOT / "ImageSets/Segmentation/val.txt"
    elif name == "voc":
        lst = raw / S.SBD_ROOT / "train.txt"
    else:
        lst = raw / S.VOC2010_ROOT / "ImageSets/Main/train.txt"
    victim = lst.read_text().split()[-1]
    (raw / rel.format(id=victim)).unlink()
    with pytest.raises(FileNotFoundError, match=victim):
        list(spec.reader(raw))


def test_cocostuff_missing_map_and_size_mismatch(worlds, tmp_path):
    raw = _copy_tree(worlds["cocostuff"][1], tmp_path / "coco")
    first = sorted((raw / "val2017").glob("*.png"))[0]
    # a label of the wrong size: decoded shapes disagree, which validation detects
    first.write_bytes(W.encode_png(np.zeros((10, 12), np.uint8)))
    s = next(s for s in S.COCOSTUFF.reader(raw) if s.id == f"val2017/{first.stem}")
    assert S.COCOSTUFF.decode_image(s.image).shape[:2] != S.COCOSTUFF.decode_label(s.label).shape
    first.unlink()
    with pytest.raises(FileNotFoundError, match=first.stem):
        list(S.COCOSTUFF.reader(raw))


# -- found by mutation testing (make mutate; docs/mutation.md) --------------------------------------------
def test_voc_palette_colours_of_the_devkit():
    pal = S.voc_palette()
    rgb = {i: tuple(pal[3 * i : 3 * i + 3]) for i in range(256)}
    # VOCdevkit VOClabelcolormap.m: background, aeroplane, bicycle, bird, boat, ..., dog, person, tvmonitor, void
    assert [rgb[i] for i in (0, 1, 2, 3, 4, 7, 8, 12, 15, 20, 255)] == [
        (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 128, 128), (64, 0, 0),
        (64, 0, 128), (192, 128, 128), (0, 64, 128), (224, 224, 192)]
    assert len(set(rgb.values())) == 256  # one colour per index: a PNG reader can always invert it


def _sbd(seg) -> bytes:
    return W.encode_mat({"GTcls": {"Segmentation": seg}})


def test_sbd_segmentation_must_be_a_2d_integer_map():
    assert S.decode_voc_label(_sbd(np.array([[0.0, 15.0]]))).tolist() == [[0, 15]]  # whole floats are ids
    for bad in (np.array([[0.0, np.nan]]), np.array([[0.0, np.inf]]), np.array([[0.0, 1.5]])):
        with pytest.raises(ValueError, match="non-integer"):
            S.decode_voc_label(_sbd(bad))
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2\), expected a 2-D map"):
        S.decode_voc_label(_sbd(np.zeros((2, 2, 2), np.uint8)))


def test_cocostuff_accepts_exactly_the_annotated_ids():
    # cocostuff labels.md: the 11 thing ids without annotations (1-based 12 street sign, 26 hat, 29 shoe,
    # 30 eye glasses, 45 plate, 66 mirror, 68 window, 69 desk, 71 door, 83 blender, 91 hair brush)
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}
    valid = [i for i in range(182) if i + 1 not in missing]
    assert len(valid) == 171
    got = S.decode_cocostuff_label(W.encode_png(np.array([valid + [255]], np.uint8)))
    assert got.tolist() == [list(range(171)) + [255]]  # trainIds in order (mmseg clsID_to_trID)
    for bad in [i - 1 for i in missing] + [182, 254]:
        with pytest.raises(ValueError, match=rf"\[{bad}\]"):
            S.decode_cocostuff_label(W.encode_png(np.array([[0, bad]], np.uint8)))
    with pytest.raises(ValueError, match=r"ids \[182, 183, 184, 185, 186, 187, 188, 189, 190, 191\] are not"):
        S.decode_cocostuff_label(W.encode_png(np.arange(182, 200, dtype=np.uint8)[None]))  # the first ten named


def test_pascal_context_ids_of_the_mmseg_converter():
    # mmseg 0.27 tools/convert_datasets/pascal_context.py _mapping (0 = background, then the 59 classes)
    mmseg_mapping = [0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162,
                     420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458,
                     34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115]
    assert list(S.PASCAL_CONTEXT_MAPPING) == sorted(mmseg_mapping)
    lm = np.array([sorted(mmseg_mapping)], np.uint16)
    # np.digitize(..., right=True) ranks the ids; reduce_zero_label makes 0 -> 255, k -> k - 1
    assert S.decode_pascal_context_label(W.encode_mat({"LabelMap": lm})).tolist() == [[255] + list(range(59))]


def test_pascal_context_label_map_values():
    def decode(lm):
        return S.decode_pascal_context_label(W.encode_mat({"LabelMap": lm}))

    assert decode(np.array([[459, 2]], np.uint16)).tolist() == [[255, 0]]  # 459 is the last id of the 459-class list
    assert decode(np.array([[2.0, 459.0]])).tolist() == [[0, 255]]  # whole floats are ids
    for bad in (np.array([[2.0, np.nan]]), np.array([[2.0, np.inf]]), np.array([[2.0, 2.5]])):
        with pytest.raises(ValueError, match="non-integer"):
            decode(bad)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        decode(np.array([[2, -1]], np.int16))
    with pytest.raises(ValueError, match=r"ids \[460, 461, 462, 463, 464, 465, 466, 467, 468, 469\] are outside"):
        decode(np.arange(460, 472, dtype=np.uint16)[None])  # the first ten named


def test_spec_values_with_their_sources():
    assert S.VOC_AUG.official_counts == (("train", 10582), ("val", 1449))  # mmseg 0.27 voc_aug.py: 10582 trainaug
    assert S.VOC.official_counts == (("train", 8498), ("val", 1449))  # SBD train.txt; VOC 2012 Segmentation/val.txt
    # mmseg 0.27 PascalContextDataset59 reduces the zero label (its decoder applies it); VOC keeps background 0
    assert S.PASCAL_CONTEXT.reduce_zero_label and not S.VOC.reduce_zero_label


def test_sbd_ids_and_structure():
    assert S.decode_voc_label(_sbd(np.array([[0, 255]], np.int16))).tolist() == [[0, 255]]
    for bad in (-1, 256):
        with pytest.raises(ValueError, match=rf"holds ids \[{bad}\] outside 0..255"):
            S.decode_voc_label(_sbd(np.array([[0, bad]], np.int16)))
    with pytest.raises(ValueError, match=r"ids \[256, 257, 258, 259, 260, 261, 262, 263, 264, 265\] outside"):
        S.decode_voc_label(_sbd(np.arange(256, 268, dtype=np.int16)[None]))  # the first ten named
    two = np.zeros((1, 2), dtype=[("Segmentation", object)])  # a struct array of two GTcls
    two[0, 0]["Segmentation"], two[0, 1]["Segmentation"] = np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)
    for variables in ({"GTcls": two}, {"other": np.zeros((2, 2))}, {"GTcls": {"Boundaries": np.zeros((2, 2))}}):
        with pytest.raises(ValueError, match=r"^voc: SBD .mat label has no GTcls.Segmentation$"):
            S.decode_voc_label(W.encode_mat(variables))
    with pytest.raises(ValueError, match=r"^voc: label is not a MATLAB 5 MAT-file \(starts with b'\\x89PNG\\r\\n\\x1a\\n'\)"):
        S._load_mat("voc", W.encode_png(np.zeros((2, 2), np.uint8)))


def test_pascal_context_3d_label_map_and_cocostuff_bad_ids_only():
    with pytest.raises(ValueError, match=r"LabelMap has shape \(2, 2, 2\), expected a 2-D map"):
        S.decode_pascal_context_label(W.encode_mat({"LabelMap": np.zeros((2, 2, 2), np.uint16)}))
    with pytest.raises(ValueError, match=r"label ids \[11\] are not"):  # the valid 5 beside it is not named
        S.decode_cocostuff_label(W.encode_png(np.array([[5, 11]], np.uint8)))
