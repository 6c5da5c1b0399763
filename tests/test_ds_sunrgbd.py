"""SUN RGB-D depth (``sunrgbd``) and 37-class segmentation (``sunrgbd_seg``): writer -> official layout -> reader."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from mdeaux.data.datasets import sunrgbd as S
from mdeaux.data.synth import sunrgbd as W
from mdeaux.data.synth.archive import encode_png

COUNTS = {"train": 2, "test": 2}
SEED = 3
SIZES = {(h, w) for subsets in W.SUBSETS.values() for _, w, h in subsets}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(paths: list[Path], raw: Path) -> Path:
    """What fetch does: extract the zips, copy the plain files."""
    raw.mkdir(parents=True, exist_ok=True)
    for p in paths:
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as zf:
                zf.extractall(raw)
        else:
            shutil.copyfile(p, raw / p.name)
    return raw


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("sun")
    paths = W.write_sunrgbd(base / "mirror", COUNTS, seed=SEED, workers=1)
    raw = extract(paths, base / "raw")
    return {
        "paths": paths,
        "raw": raw,
        "depth": list(S.read_sunrgbd(raw)),
        "seg": list(S.read_sunrgbd_seg(raw)),
    }


@pytest.fixture
def raw_copy(written, tmp_path) -> Path:
    return Path(shutil.copytree(written["raw"], tmp_path / "raw"))


# -- specs ------------------------------------------------------------------------------------------
def test_specs_and_archives(written):
    assert [s.name for s in S.SPECS] == ["sunrgbd", "sunrgbd_seg"]
    assert [p.name for p in written["paths"]] == [a.filename for a in S.SUNRGBD.archives]
    assert [a.filename for a in S.SUNRGBD_SEG.archives] == ["SUNRGBD.zip", "SUNRGBDtoolbox.zip"]
    toolbox = S.SUNRGBD.archives[1]
    assert toolbox.md5 == "18d22e1761d36352f37232cba102f91f" and toolbox.urls
    val = S.SUNRGBD.archives[2]
    # the toolbox's splits/SUNRGBD_val_splits.txt at d8aff50 (5,050 lines): its sha256 and size, pinned here
    assert val.sha256 == "a3f59e7fce9db49690f6993e9fe8c4ad1cb556a359f512138ee710b60bf5f0f2"
    assert val.extract is False and val.size == 894_598
    assert S.SUNRGBD.pinned_files == (("SUNRGBD_val_splits.txt", S.SUNRGBD_VAL_LIST_SHA256),)
    for spec in S.SPECS:
        assert spec.splits == ("train", "test") and spec.test_split == "test"
    assert S.SUNRGBD_SEG.num_classes == 37 and S.SUNRGBD_SEG.reduce_zero_label
    assert S.SUNRGBD37_CLASSES[0] == "wall" and S.SUNRGBD37_CLASSES[-1] == "bag"


def test_eval_mask_box_on_original_resolution():
    depth = np.full((427, 561), 8.0, np.float32)  # an NYU frame of SUN RGB-D, clamped GT stays valid
    depth[100, 100] = 0.0
    mask = S.SUNRGBD.eval_mask(depth)
    assert not mask[100, 100]  # the hole
    assert not mask[:45].any() and not mask[:, :41].any()
    assert mask[45:427, 41:561].sum() == (427 - 45) * (561 - 41) - 1
    mask = S.SUNRGBD.eval_mask(np.full((530, 730), 5.0, np.float32))
    assert mask.sum() == (471 - 45) * (601 - 41) and mask[45, 41] and not mask[471, 41] and not mask[45, 601]


# -- official layout ---------------------------------------------------------------------------------
def test_layout_and_split_files(written):
    raw = written["raw"]
    lines = (raw / "SUNRGBD_val_splits.txt").read_text().splitlines()
    assert len(lines) == COUNTS["test"] and lines == sorted(lines)
    for line in lines:
        rgb, depth = line.split()
        assert rgb.startswith("SUNRGBD/") and "/image/" in rgb and rgb.endswith(".jpg")
        assert depth == rgb.replace("/image/", "/depth/").replace(".jpg", ".png")
        assert rgb.split("/")[1] in S.SENSORS
    mat = scipy.io.loadmat(raw / S.ALLSPLIT)
    for key, n in (("alltrain", COUNTS["train"]), ("alltest", COUNTS["test"])):
        entries = [str(e[0]) for e in mat[key].ravel()]
        assert len(entries) == n and all(e.startswith("/n/fs/sun3d/data/SUNRGBD/") for e in entries)
    header = (raw / S.ALLSPLIT).read_bytes()[:116]
    assert header.startswith(b"MATLAB 5.0 MAT-file") and b"1970" in header
    with h5py.File(raw / S.SEG2D, "r") as h5:
        seglabel = h5["SUNRGBD2Dseg"]["seglabel"]
        assert seglabel.shape == (COUNTS["train"] + COUNTS["test"], 1)
        first = h5[seglabel[0][0]]
        assert first.dtype == np.uint8 and first.shape[0] > first.shape[1]  # (W, H), MATLAB column-major
    assert (raw / S.SEG2D).read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    sample = next(iter((raw / "SUNRGBD").glob("*/*/*/image"))).parent
    assert {p.name for p in sample.iterdir()} >= {"image", "depth", "depth_bfx", "intrinsics.txt", "scene.txt"}


# -- depth ---------------------------------------------------------------------------------------------
def test_depth_reader_and_values(written):
    samples = written["depth"]
    assert [s.split for s in samples] == ["train"] * COUNTS["train"] + ["test"] * COUNTS["test"]
    ids = [s.id for s in samples]
    assert len(set(ids)) == len(ids)
    for split in ("train", "test"):
        sub = [s.id for s in samples if s.split == split]
        assert sub == sorted(sub)
    for s in samples:
        assert s.image_format == "jpg" and s.label is None and s.id.split("/")[0] in S.SENSORS
        img = S.SUNRGBD.decode_image(s.image)
        depth = S.SUNRGBD.decode_depth(s.depth)
        assert img.shape[:2] == depth.shape and depth.shape in SIZES
        assert depth.dtype == np.float32 and np.isfinite(depth).all()
        nz = depth[depth > 0]
        assert 0.5 < (depth > 0).mean() < 1.0  # sensor holes are 0
        assert nz.min() >= 0.5 - 1e-6 and nz.max() <= S.SUNRGBD_DEPTH_CLAMP
        # the stored values are rotated: reading them as plain millimetres would be 8x too far
        with Image.open(io.BytesIO(s.depth)) as im:
            stored = np.asarray(im).astype(np.float64)
        below = (depth > 0) & (depth < 8.0)  # below 8.192 m the rotation equals raw / 8000 (toolbox sun_rgbd.py depth_scale=8000)
        np.testing.assert_allclose(stored[below] / 8000.0, depth[below], atol=1e-6)
        assert S.SUNRGBD.eval_mask(depth).any()


def test_depth_hand_made_pixels_rotation_wraps_at_16_bits():
    mm = np.array([[0, 1, 1234, 7999, 8191], [8192, 9000, 10000, 40000, 65535]], np.uint16)
    stored = S.sunrgbd_rotate_left(mm)
    assert stored[1, 1] == 6465  # 9000 << 3 = 72000 wraps to 6464, the top bit comes back as bit 0
    assert stored[0, 2] == 1234 * 8
    # the toolbox formula computed in a wide type with the 16-bit wrap made explicit
    wide = stored.astype(np.int64)
    toolbox = (wide >> 3) | ((wide << 13) & 0xFFFF)
    np.testing.assert_array_equal(toolbox, mm)
    depth = S.decode_sunrgbd_depth(encode_png(stored))
    expected = np.array([[0, 0.001, 1.234, 7.999, 8.0], [8.0, 8.0, 8.0, 8.0, 8.0]], np.float32)  # clamp 8 m
    np.testing.assert_array_equal(depth, expected)
    assert depth.dtype == np.float32
    # a single stored value by hand: 8 -> 1 mm; 1 -> 8192 mm -> clamped
    np.testing.assert_array_equal(S.decode_sunrgbd_depth(encode_png(np.array([[8, 1]], np.uint16))), np.array([[0.001, 8.0]], np.float32))


# -- segmentation ----------------------------------------------------------------------------------------
def test_seg_reader_and_values(written):
    samples = written["seg"]
    assert [s.split for s in samples] == ["train"] * COUNTS["train"] + ["test"] * COUNTS["test"]
    assert [s.id for s in samples] == [s.id for s in written["depth"]]  # the same folders, same split
    present = set()
    for s in samples:
        assert s.depth is None and s.label is not None
        img = S.SUNRGBD_SEG.decode_image(s.image)
        label = S.SUNRGBD_SEG.decode_label(s.label)
        assert label.dtype == np.uint8 and label.shape == img.shape[:2]
        ok = (label < 37) | (label == 255)
        assert ok.all()
        present |= set(np.unique(label).tolist())
    assert 255 in present and S.SUNRGBD37_CLASSES.index("wall") in present
    assert S.SUNRGBD37_CLASSES.index("floor") in present or S.SUNRGBD37_CLASSES.index("ceiling") in present


def test_seg_labels_match_hdf5_values(written):
    """The stored PNG holds the HDF5 map's values untouched (transposed back to H x W)."""
    raw = written["raw"]
    meta = np.atleast_1d(scipy.io.loadmat(raw / S.META, squeeze_me=True, struct_as_record=False)["SUNRGBDMeta"])
    first = written["seg"][0]
    i = next(k for k, m in enumerate(meta) if m.rgbpath.split("/SUNRGBD/")[1].startswith(first.id + "/"))
    with h5py.File(raw / S.SEG2D, "r") as h5:
        ref = h5["SUNRGBD2Dseg"]["seglabel"][i][0]
        values = np.asarray(h5[ref][()]).T
    with Image.open(io.BytesIO(first.label)) as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), values)
    assert values.max() <= 37


def test_label_decoder_hand_made_pixels():
    raw = np.array([[0, 1, 2, 37], [38, 200, 254, 255]], np.uint8)
    out = S.decode_sunrgbd_label(encode_png(raw))
    np.testing.assert_array_equal(out, [[255, 0, 1, 36], [37, 199, 253, 254]])
    # everything outside the class list stays visible to validation (>= 37 and != 255)
    bad = out[1]
    assert ((bad >= 37) & (bad != 255)).all()
    with pytest.raises(ValueError, match="300"):
        S.decode_sunrgbd_label(encode_png(np.array([[1, 300]], np.uint16)))


# -- determinism and the shared archives ----------------------------------------------------------------
def test_same_seed_same_bytes_and_seg_writer_shares_archives(written, tmp_path):
    paths = W.write_sunrgbd_seg(tmp_path / "seg", COUNTS, seed=SEED, workers=1)
    assert [p.name for p in paths] == ["SUNRGBD.zip", "SUNRGBDtoolbox.zip"]
    for p, q in zip(paths, written["paths"][:2]):
        assert sha256(p) == sha256(q), p.name
    assert not list((tmp_path / "seg").glob(".sunrgbd-stage-*"))
    with pytest.raises(ValueError, match="train"):
        W.write_sunrgbd(tmp_path / "x", {"train": 1}, seed=0)


# -- bad input -------------------------------------------------------------------------------------------
def test_corrupt_jpeg_and_png_raise(written):
    s = written["depth"][0]
    with pytest.raises(OSError):
        S.SUNRGBD.decode_image(s.image[: len(s.image) // 2])
    with pytest.raises((OSError, SyntaxError, ValueError)):
        S.SUNRGBD.decode_depth(s.depth[: len(s.depth) // 2])
    with pytest.raises((OSError, SyntaxError, ValueError)):
        S.SUNRGBD.decode_depth(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    lab = written["seg"][0].label
    with pytest.raises((OSError, SyntaxError, ValueError)):
        S.SUNRGBD_SEG.decode_label(lab[: len(lab) // 2])


def test_non_finite_depth_cannot_pass_as_official_encoding():
    """A 16-bit PNG cannot hold NaN/inf; a float map (the only way to carry them) is rejected by name."""
    buf = io.BytesIO()
    Image.fromarray(np.array([[np.nan, np.inf]], np.float32), mode="F").save(buf, format="TIFF")
    with pytest.raises(ValueError, match="TIFF"):
        S.decode_sunrgbd_depth(buf.getvalue())
    with pytest.raises(ValueError, match="mode"):
        S.decode_sunrgbd_depth(encode_png(np.array([[1, 2]], np.uint8)))


def test_image_depth_size_disagreement_is_visible(written, raw_copy):
    s = written["depth"][0]
    folder = raw_copy / "SUNRGBD" / s.id / "depth"
    png = next(folder.glob("*.png"))
    png.write_bytes(encode_png(np.full((100, 120), 8 * 2000, np.uint16)))
    sample = next(x for x in S.read_sunrgbd(raw_copy) if x.id == s.id)
    assert S.SUNRGBD.decode_image(sample.image).shape[:2] != S.SUNRGBD.decode_depth(sample.depth).shape


def test_missing_train_folder_names_the_list_and_entry(written, raw_copy):
    sid = next(s.id for s in written["depth"] if s.split == "train")
    shutil.rmtree(raw_copy / "SUNRGBD" / sid)
    with pytest.raises(FileNotFoundError, match="allsplit.mat") as err:
        list(S.read_sunrgbd(raw_copy))
    assert sid in str(err.value) and "sunrgbd" in str(err.value)
    with pytest.raises(FileNotFoundError, match="allsplit.mat") as err:
        list(S.read_sunrgbd_seg(raw_copy))
    assert sid in str(err.value) and "sunrgbd_seg" in str(err.value)


def test_missing_test_file_names_the_list_and_entry(written, raw_copy):
    sid = next(s.id for s in written["depth"] if s.split == "test")
    depth = next((raw_copy / "SUNRGBD" / sid / "depth").glob("*.png"))
    depth.unlink()
    with pytest.raises(FileNotFoundError, match="SUNRGBD_val_splits.txt") as err:
        list(S.read_sunrgbd(raw_copy))
    assert f"SUNRGBD/{sid}/depth/{depth.name}" in str(err.value)
    image = next((raw_copy / "SUNRGBD" / sid / "image").glob("*.jpg"))
    image.unlink()
    with pytest.raises(FileNotFoundError, match="alltest") as err:
        list(S.read_sunrgbd_seg(raw_copy))
    assert sid in str(err.value)
    (raw_copy / "SUNRGBD_val_splits.txt").unlink()
    with pytest.raises(FileNotFoundError, match="SUNRGBD_val_splits.txt"):
        list(S.read_sunrgbd(raw_copy))


def test_label_values_outside_uint8_in_hdf5_raise_naming_value(written, raw_copy):
    with h5py.File(raw_copy / S.SEG2D, "r") as h5:
        seglabel = h5["SUNRGBD2Dseg"]["seglabel"]
        maps = [np.asarray(h5[seglabel[i][0]][()]).T.astype(np.uint16) for i in range(seglabel.shape[0])]
    for m in maps:
        m[0, 0] = 300
    W._write_seg_h5(raw_copy / S.SEG2D, maps)
    with pytest.raises(ValueError, match="300"):
        list(S.read_sunrgbd_seg(raw_copy))


def test_train_test_overlap_is_rejected(written, raw_copy):
    mat = scipy.io.loadmat(raw_copy / S.ALLSPLIT)
    train = [str(e[0]) for e in mat["alltrain"].ravel()]
    test = [str(e[0]) for e in mat["alltest"].ravel()]
    (raw_copy / S.ALLSPLIT).write_bytes(W._savemat_bytes({"alltrain": W._cell(train + test[:1]), "alltest": W._cell(test)}))
    with pytest.raises(ValueError, match="both alltrain and alltest"):
        list(S.read_sunrgbd(raw_copy))


# -- found by mutation testing (make mutate; docs/mutation.md) --------------------------------------------
def test_the_3_bit_rotation_of_every_16_bit_value_and_its_inverse():
    # read3dPoints.m: bitor(bitshift(raw, -3), bitshift(raw, 16 - 3)) on uint16, where the left shift drops
    # the bits that leave the 16 bits: written here in uint16 arithmetic, against our uint32 code
    raw = np.arange(1 << 16, dtype=np.uint16)
    matlab = (raw >> np.uint16(3)) | (raw << np.uint16(13))
    np.testing.assert_array_equal(S.sunrgbd_rotate_right(raw), matlab)
    np.testing.assert_array_equal(S.sunrgbd_rotate_left(matlab), raw)
    for rotate in (S.sunrgbd_rotate_right, S.sunrgbd_rotate_left):
        assert rotate(np.zeros((0,), np.uint16)).shape == (0,)
        with pytest.raises(ValueError, match="65536"):
            rotate(np.array([5, 65536]))


def test_a_16_bit_png_decoded_as_int32_by_an_older_pillow_is_range_checked(monkeypatch):
    # Pillow before 10 opens a 16-bit grayscale PNG as mode "I" (int32): the decoder checks the range
    # before narrowing to uint16 (Pillow 13, pinned, gives uint16 and never takes this branch)
    arrays = {b"low": np.array([[-1, 8]], np.int32), b"high": np.array([[8, 65536]], np.int32),
              b"ok": np.array([[8, 65535], [0, 16]], np.int32), b"no zero": np.array([[8, 24]], np.int32)}
    monkeypatch.setattr(S, "_read_png", lambda data, what, modes: arrays[data])
    for name in (b"low", b"high"):
        with pytest.raises(ValueError, match="depth PNG values outside 16 bits"):
            S.decode_sunrgbd_depth(name)
    np.testing.assert_array_equal(S.decode_sunrgbd_depth(b"ok"), np.array([[0.001, 8.0], [0.0, 0.002]], np.float32))
    np.testing.assert_array_equal(S.decode_sunrgbd_depth(b"no zero"), np.array([[0.001, 0.003]], np.float32))


def test_16_bit_label_pngs_at_the_edges_of_8_bits():
    # a 16-bit label PNG with values 1..255 (no void, none above 8 bits) decodes as the 8-bit one would
    np.testing.assert_array_equal(S.decode_sunrgbd_label(encode_png(np.array([[1, 37, 255]], np.uint16))), [[0, 36, 254]])
    np.testing.assert_array_equal(S.decode_sunrgbd_label(encode_png(np.array([[0, 2]], np.uint16))), [[255, 1]])
    with pytest.raises(ValueError, match="label value 256 is outside"):
        S.decode_sunrgbd_label(encode_png(np.array([[0, 256]], np.uint16)))
    jpeg = io.BytesIO()  # a grayscale JPEG has an accepted mode ("L") but is no PNG ("JPEG" sorts before "PNG")
    Image.fromarray(np.ones((4, 4), np.uint8)).save(jpeg, format="JPEG")
    with pytest.raises(ValueError, match="label file is JPEG, expected a PNG"):
        S.decode_sunrgbd_label(jpeg.getvalue())


def test_spec_values_with_their_sources():
    # allsplit.mat alltrain / alltest (and the toolbox's SUNRGBD_val_splits.txt, 5,050 lines)
    for spec in S.SPECS:
        assert spec.official_counts == (("train", 5285), ("test", 5050))
    # toolbox configs/_base_/datasets/sun_rgbd.py min_depth, max_depth; read3dPoints.m and toolbox
    # sunrgbd.py pre_eval: the 8 m clamp; the eval box of toolbox sunrgbd.py
    assert (S.SUNRGBD.min_depth, S.SUNRGBD.max_depth, S.SUNRGBD.eval_clip_depth) == (1e-3, 10.0, 8.0)
    assert S.SUNRGBD.eval_crop == (45, 471, 41, 601)
