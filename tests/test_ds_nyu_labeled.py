"""NYU Depth V2 labeled set (``nyuv2_labeled``): synthetic .mat writer -> official files -> reader."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from mdeaux.data.datasets import nyu_labeled as L
from mdeaux.data.synth import nyu_labeled as W
from mdeaux.data.synth.lidar_depth import encode_npy

COUNTS = {"train": 3, "test": 2}
SEED = 5
H, Wd = 480, 640


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_like(paths: list[Path], raw: Path) -> Path:
    """What fetch does for extract=False archives: copy them into raw_dir."""
    raw.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copyfile(p, raw / p.name)
    return raw


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("nyul")
    paths = W.write_nyuv2_labeled(base / "mirror", COUNTS, seed=SEED, workers=1)
    raw = fetch_like(paths, base / "raw")
    return {"paths": paths, "raw": raw, "samples": list(L.read_nyuv2_labeled(raw))}


def write_matlab_style(path: Path, rgb: np.ndarray, raw: np.ndarray, *, depth_shape=None) -> None:
    """An HDF5 file built independently of the writer, from MATLAB-view arrays (H, W, 3, N) / (H, W, N).

    MATLAB stores column-major, so h5py sees every axis reversed: numpy ``.T`` of the MATLAB view.
    """
    with h5py.File(path, "w") as h5:
        h5["images"] = np.ascontiguousarray(rgb.T)  # (N, 3, W, H)
        h5["rawDepths"] = np.ascontiguousarray(raw.T)  # (N, W, H)
        h5["depths"] = np.ascontiguousarray(raw.T)


def write_splits(path: Path, train, test) -> None:
    scipy.io.savemat(str(path), {"trainNdxs": np.array(train, np.float64).reshape(-1, 1),
                                 "testNdxs": np.array(test, np.float64).reshape(-1, 1)})


# -- spec ---------------------------------------------------------------------------------------------
def test_spec_and_archives(written):
    spec = L.NYUV2_LABELED
    assert L.SPECS == (spec,) and spec.name == "nyuv2_labeled" and spec.task == "depth"
    assert spec.splits == ("train", "test") and spec.test_split == "test"
    assert dict(spec.official_counts) == {"train": 795, "test": 654}
    mat, splits = spec.archives
    assert mat.filename == "nyu_depth_v2_labeled.mat" and mat.md5 == "520609c519fba3ba5ac58c8fefcc3530"
    assert mat.size == 2_972_037_809 and not mat.extract and mat.urls
    assert splits.filename == "splits.mat" and not splits.extract and splits.urls
    assert [p.name for p in written["paths"]] == [a.filename for a in spec.archives]
    assert spec.image_sizes == ((480, 640),) and spec.eval_crop == (45, 471, 41, 601)
    assert (spec.min_depth, spec.max_depth) == (1e-3, 10.0)


def test_written_files_look_like_the_official_ones(written):
    mat_path, splits_path = written["paths"]
    assert mat_path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file" and h5py.is_hdf5(mat_path)
    n = sum(COUNTS.values())
    with h5py.File(mat_path, "r") as h5:
        assert h5["images"].shape == (n, 3, 640, 480) and h5["images"].dtype == np.uint8
        for key in ("depths", "rawDepths"):
            assert h5[key].shape == (n, 640, 480) and h5[key].dtype == np.float32
        assert h5["labels"].shape == (n, 640, 480) and h5["labels"].dtype == np.uint16
        assert int(np.asarray(h5["labels"]).max()) <= len(W.LABEL_IDS)
    mat = scipy.io.loadmat(str(splits_path))
    assert mat["__header__"].startswith(b"MATLAB 5.0 MAT-file") and b"1970" in mat["__header__"]
    train, test = mat["trainNdxs"], mat["testNdxs"]
    assert train.shape == (COUNTS["train"], 1) and test.shape == (COUNTS["test"], 1)
    assert sorted(np.concatenate([train.ravel(), test.ravel()]).astype(int)) == list(range(1, n + 1))  # 1-based


# -- reader ---------------------------------------------------------------------------------------------
def test_reader_splits_ids_and_values(written):
    samples = written["samples"]
    mat = scipy.io.loadmat(str(written["paths"][1]))
    assert [s.split for s in samples] == ["train"] * COUNTS["train"] + ["test"] * COUNTS["test"]
    for split, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        ids = [s.id for s in samples if s.split == split]
        assert ids == [f"labeled/{int(i):05d}" for i in sorted(mat[key].ravel())]
    assert len({s.id for s in samples}) == len(samples)
    spec = L.NYUV2_LABELED
    for s in samples:
        index = int(s.id.split("/")[1])
        frame = W.render_labeled_job(W.derive_seed(SEED, spec.name, index))
        assert s.image_format == "png" and s.label is None
        rgb, depth = spec.decode_image(s.image), spec.decode_depth(s.depth)
        assert rgb.shape == (H, Wd, 3) and np.array_equal(rgb, frame.rgb)  # lossless PNG
        assert depth.dtype == np.float32 and depth.shape == (H, Wd)
        assert np.array_equal(depth.view(np.uint32), frame.raw_depth.view(np.uint32))  # bit-exact float32, rawDepths
        assert (depth == 0).any() and np.array_equal(depth == 0, frame.raw_depth == 0)  # invalid = 0 kept
        valid = depth[depth > 0]
        assert 0.4 < valid.min() and valid.max() <= 10.0  # metres
        assert spec.eval_mask(depth).any()


def test_axis_order_hand_made_marker(tmp_path):
    n = 2
    rgb = np.zeros((H, Wd, 3, n), np.uint8)  # MATLAB view
    raw = np.full((H, Wd, n), 2.0, np.float32)
    rgb[10, 600, :, 1] = (255, 7, 3)  # row 10, col 600 of frame 2 (1-based)
    rgb[470, 5, 2, 1] = 200
    raw[10, 600, 1] = np.float32(1.2345678)
    raw[400, 20, 1] = 0.0  # invalid
    raw[300, 300, 1] = np.nan
    raw[301, 300, 1] = np.inf
    write_matlab_style(tmp_path / L.LABELED_MAT, rgb, raw)
    write_splits(tmp_path / L.SPLITS_MAT, [1], [2])
    samples = list(L.read_nyuv2_labeled(tmp_path))
    assert [(s.id, s.split) for s in samples] == [("labeled/00001", "train"), ("labeled/00002", "test")]
    spec = L.NYUV2_LABELED
    img, depth = spec.decode_image(samples[1].image), spec.decode_depth(samples[1].depth)
    assert img.shape == (H, Wd, 3) and depth.shape == (H, Wd)
    assert tuple(img[10, 600]) == (255, 7, 3) and img[470, 5, 2] == 200 and img.sum() == 255 + 7 + 3 + 200
    assert depth[10, 600] == np.float32(1.2345678) and depth[400, 20] == 0.0
    assert np.isnan(depth[300, 300]) and np.isinf(depth[301, 300])  # non-finite surfaces for validation
    assert np.isfinite(depth).sum() == H * Wd - 2
    assert not spec.decode_image(samples[0].image).any()


def test_writer_uses_the_matlab_axis_order(tmp_path):
    frame = W.LabeledFrame(
        rgb=np.zeros((H, Wd, 3), np.uint8), depth=np.ones((H, Wd), np.float32),
        raw_depth=np.zeros((H, Wd), np.float32), labels=np.zeros((H, Wd), np.uint16))
    frame.rgb[10, 600, 0] = 9
    frame.raw_depth[10, 600] = 3.5
    frame.labels[10, 600] = 4
    W.write_labeled_mat(tmp_path / "x.mat", [frame])
    with h5py.File(tmp_path / "x.mat", "r") as h5:
        assert h5["images"][0, 0, 600, 10] == 9 and h5["images"][0].sum() == 9
        assert h5["rawDepths"][0, 600, 10] == np.float32(3.5) and h5["labels"][0, 600, 10] == 4


def test_image_depth_size_disagreement_is_visible(tmp_path):
    rgb = np.zeros((H, Wd, 3, 1), np.uint8)
    raw = np.ones((240, 320, 1), np.float32)
    write_matlab_style(tmp_path / L.LABELED_MAT, rgb, raw)
    write_splits(tmp_path / L.SPLITS_MAT, [1], [])
    (s,) = L.read_nyuv2_labeled(tmp_path)
    spec = L.NYUV2_LABELED
    assert spec.decode_image(s.image).shape[:2] != spec.decode_depth(s.depth).shape


# -- bad input ----------------------------------------------------------------------------------------
def test_split_index_beyond_the_mat_is_named(written, tmp_path):
    raw = fetch_like(written["paths"], tmp_path / "raw")
    n = sum(COUNTS.values())
    write_splits(raw / L.SPLITS_MAT, [1, 2], [n + 1])
    with pytest.raises(FileNotFoundError, match=rf"nyuv2_labeled.*splits\.mat.*testNdxs.*frame {n + 1}"):
        list(L.read_nyuv2_labeled(raw))
    write_splits(raw / L.SPLITS_MAT, [0], [1])  # 0 is not a 1-based index
    with pytest.raises(FileNotFoundError, match="trainNdxs.*frame 0"):
        list(L.read_nyuv2_labeled(raw))


def test_missing_and_corrupt_files(written, tmp_path):
    raw = fetch_like(written["paths"], tmp_path / "raw")
    (raw / L.SPLITS_MAT).unlink()
    with pytest.raises(FileNotFoundError, match="splits.mat"):
        list(L.read_nyuv2_labeled(raw))
    (raw / L.SPLITS_MAT).write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="splits.mat"):
        list(L.read_nyuv2_labeled(raw))
    mat = raw / L.LABELED_MAT
    mat.write_bytes(b"MATLAB 5.0 MAT-file, garbage" + b"\x00" * 600)
    with pytest.raises(ValueError, match=r"nyu_depth_v2_labeled\.mat.*not an HDF5"):
        list(L.read_nyuv2_labeled(raw))
    mat.unlink()
    with pytest.raises(FileNotFoundError, match=r"nyu_depth_v2_labeled\.mat"):
        list(L.read_nyuv2_labeled(raw))


def test_corrupt_sample_bytes_raise():
    spec = L.NYUV2_LABELED
    with pytest.raises(ValueError, match="npy"):
        spec.decode_depth(b"\x93NUMPY garbage")
    with pytest.raises(Exception):
        spec.decode_image(L.encode_rgb_png(np.zeros((4, 4, 3), np.uint8))[:30])


def test_depth_npy_round_trip_and_what_it_refuses():
    # found by mutation testing (docs/mutation.md): each check on both sides
    depth = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    assert np.array_equal(L.decode_nyu_labeled_depth(L.encode_depth_npy(depth)), depth)
    for bad in (depth[0], depth[None], depth.astype(np.float64), depth.astype(np.float16), depth.astype(np.uint16)):
        with pytest.raises(ValueError, match="expected a 2-D float32 depth map"):
            L.encode_depth_npy(bad)
    half = L.decode_nyu_labeled_depth(encode_npy(depth.astype(np.float16)))  # any float array is read as float32
    assert half.dtype == np.float32 and np.array_equal(half, depth)
    for bad in (depth[0], depth[None], depth.astype(np.int32), depth > 1):  # 1-D, 3-D, integers, booleans
        with pytest.raises(ValueError, match="depth .npy must hold a 2-D float array"):
            L.decode_nyu_labeled_depth(encode_npy(bad))
    archive = io.BytesIO()
    np.savez(archive, depth=depth)  # an .npz is not an .npy
    with pytest.raises(ValueError, match="depth .npy must hold a 2-D float array"):
        L.decode_nyu_labeled_depth(archive.getvalue())
    pickled = io.BytesIO()
    np.save(pickled, np.array([depth], dtype=object), allow_pickle=True)  # never unpickled
    with pytest.raises(ValueError, match="depth is not a readable .npy array"):
        L.decode_nyu_labeled_depth(pickled.getvalue())


# -- determinism ----------------------------------------------------------------------------------------
def test_deterministic_and_seed_dependent(written, tmp_path):
    small = {"train": 1, "test": 1}
    a = W.write_nyuv2_labeled(tmp_path / "a", small, seed=SEED, workers=1)
    b = W.write_nyuv2_labeled(tmp_path / "b", small, seed=SEED, workers=2)
    c = W.write_nyuv2_labeled(tmp_path / "c", small, seed=SEED + 1, workers=1)
    assert [sha256(p) for p in a] == [sha256(p) for p in b]
    assert sha256(a[0]) != sha256(c[0])
    with pytest.raises(ValueError, match="counts"):
        W.write_nyuv2_labeled(tmp_path / "d", {"train": 1, "val": 1}, seed=SEED)
