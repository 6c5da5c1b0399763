"""prepare_dataset and PreparedDataset on tiny hand-made NYUv2 and ADE20K layouts.

The builders here (make_nyu, make_ade) are also used by test_validate.py and test_split.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mdeaux.data.datasets.registry import ADE20K, NYUV2
from mdeaux.data.datasets.spec import RawSample
from mdeaux.data.prepare import PreparedDataset, prepare_dataset

H, W = 6, 8


def jpeg_bytes(seed: int, shape=(H, W)) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")  # uint16 -> 16-bit PNG, uint8 -> 8-bit L
    return buf.getvalue()


def depth_mm(seed: int, shape=(H, W)) -> np.ndarray:
    """Depth in mm: 1..4 m with a zero (no reading) in the top-left corner."""
    d = np.random.default_rng(seed).integers(1000, 4000, shape).astype(np.uint16)
    d[0, 0] = 0
    return d


NYU_SCENES = {"train": ("kitchen_0001a", 3), "test": ("bathroom_0003", 2)}


def make_nyu(root: Path, depth_maps: dict[str, np.ndarray] | None = None, images: dict[str, bytes] | None = None):
    """Toolbox layout under root/nyu; returns {id: (rgb_path, depth_path)}.

    ``depth_maps`` / ``images`` override the generated content of given ids.
    """
    depth_maps, images = depth_maps or {}, images or {}
    nyu = root / "nyu"
    files = {}
    for split, (scene, n) in NYU_SCENES.items():
        (nyu / scene).mkdir(parents=True, exist_ok=True)
        lines = []
        for k in range(1, n + 1):
            sid = f"{scene}/rgb_{k:05d}"
            rgb, depth = nyu / f"{sid}.jpg", nyu / scene / f"sync_depth_{k:05d}.png"
            seed = (0 if split == "train" else 50) + k
            rgb.write_bytes(images.get(sid, jpeg_bytes(seed)))
            depth.write_bytes(png_bytes(depth_maps.get(sid, depth_mm(seed))))
            lines.append(f"/{scene}/rgb_{k:05d}.jpg /{scene}/sync_depth_{k:05d}.png 518.8579")
            files[sid] = (rgb, depth)
        (nyu / f"nyu_{split}.txt").write_text("\n".join(lines) + "\n")
    return files


def make_ade(root: Path, labels: dict[str, np.ndarray] | None = None):
    """ADEChallengeData2016 layout with 2 training and 1 validation samples; returns {id: paths}."""
    labels = labels or {}
    base = root / "ADEChallengeData2016"
    files = {}
    for folder, n, prefix in (("training", 2, "ADE_train"), ("validation", 1, "ADE_val")):
        (base / "images" / folder).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            stem = f"{prefix}_{k:08d}"
            sid = f"{folder}/{stem}"
            label = labels.get(sid)
            if label is None:
                label = np.full((H, W), 1 + k, dtype=np.uint8)  # classes k+1 -> reduced to k
            img, ann = base / "images" / folder / f"{stem}.jpg", base / "annotations" / folder / f"{stem}.png"
            img.write_bytes(jpeg_bytes(100 + k))
            ann.write_bytes(png_bytes(label))
            files[sid] = (img, ann)
    return files


def prep(spec, raw, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return prepare_dataset(spec, raw, out, **kw)


# -- prepare ------------------------------------------------------------------------------------


def test_shards_hold_original_bytes_and_respect_shard_rows(tmp_path):
    files = make_nyu(tmp_path / "raw")
    manifest = prep(NYUV2, tmp_path / "raw", tmp_path / "out", shard_rows=2)

    assert manifest["counts"] == {"train": 3, "test": 2}
    assert manifest["num_shards"] == 3
    shard_paths = sorted((tmp_path / "out" / "shards").glob("*.parquet"))
    assert [p.name for p in shard_paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    rows = [r for p in shard_paths for r in pq.read_table(p).to_pylist()]
    assert [len(pq.read_table(p)) for p in shard_paths] == [2, 2, 1]
    assert sorted(r["id"] for r in rows) == sorted(files)
    for r in rows:
        rgb, depth = files[r["id"]]
        assert r["image"] == rgb.read_bytes()
        assert r["depth"] == depth.read_bytes()
        assert r["label"] is None and r["image_format"] == "jpg"
    assert pq.read_schema(shard_paths[0]).names == ["id", "split", "image", "image_format", "depth", "label"]


def test_depth_stats_match_hand_made_map(tmp_path):
    d = np.zeros((H, W), dtype=np.uint16)
    d[0, :4] = [500, 1000, 2500, 12000]  # 12 m is above NYU's max_depth (10 m): not valid
    sid = "kitchen_0001a/rgb_00002"
    make_nyu(tmp_path / "raw", depth_maps={sid: d})
    prep(NYUV2, tmp_path / "raw", tmp_path / "out")
    stats = PreparedDataset(tmp_path / "out").stats.set_index("id")
    row = stats.loc[sid]
    assert row["split"] == "train"
    assert (row["image_height"], row["image_width"]) == (H, W)
    assert (row["depth_height"], row["depth_width"]) == (H, W)
    assert row["depth_finite"]
    assert row["depth_min"] == pytest.approx(0.5)
    assert row["depth_max"] == pytest.approx(12.0)
    assert row["depth_mean"] == pytest.approx(np.mean([0.5, 1.0, 2.5, 12.0]))
    assert row["depth_nonzero_frac"] == pytest.approx(4 / (H * W))
    assert row["depth_valid_frac"] == pytest.approx(3 / (H * W))
    assert stats["decode_error"].isna().all()
    assert stats.loc[sid, "image_bytes"] > 0


def test_label_stats_apply_reduce_zero_label(tmp_path):
    lab = np.full((H, W), 5, dtype=np.uint8)  # class 5 -> 4
    lab[0, :3] = 0  # "other objects" -> ignore 255
    lab[1, 0] = 150  # last class -> 149
    lab[1, 1] = 200  # not an ADE class: -> 199, bad
    sid = "training/ADE_train_00000001"
    make_ade(tmp_path / "raw", labels={sid: lab})
    manifest = prep(ADE20K, tmp_path / "raw", tmp_path / "out")
    assert manifest["counts"] == {"train": 2, "val": 1} and manifest["task"] == "segmentation"
    stats = PreparedDataset(tmp_path / "out").stats.set_index("id")
    row = stats.loc[sid]
    assert row["ignore_frac"] == pytest.approx(3 / (H * W))
    assert row["label_max"] == 199
    assert row["label_bad_count"] == 1
    assert list(row["classes_present"]) == [4, 149]
    assert (row["label_height"], row["label_width"]) == (H, W)
    good = stats.loc["training/ADE_train_00000002"]
    assert good["label_bad_count"] == 0 and good["label_max"] == 2 and list(good["classes_present"]) == [2]
    assert "depth_min" not in stats.columns


def test_all_ignore_label_has_label_max_minus_one(tmp_path):
    make_ade(tmp_path / "raw", labels={"validation/ADE_val_00000001": np.zeros((H, W), np.uint8)})
    prep(ADE20K, tmp_path / "raw", tmp_path / "out")
    row = PreparedDataset(tmp_path / "out").stats.set_index("id").loc["validation/ADE_val_00000001"]
    assert row["label_max"] == -1 and row["ignore_frac"] == 1.0 and list(row["classes_present"]) == []


def test_manifest_is_stable_across_runs_and_worker_counts(tmp_path):
    make_nyu(tmp_path / "raw")
    a = prep(NYUV2, tmp_path / "raw", tmp_path / "a", workers=1, shard_rows=2)
    b = prep(NYUV2, tmp_path / "raw", tmp_path / "b", workers=2, shard_rows=2)
    assert a == b
    assert len(a["data_version"]) == 64
    for s in a["shards"]:
        assert (tmp_path / "a" / s["file"]).read_bytes() == (tmp_path / "b" / s["file"]).read_bytes()
    assert (tmp_path / "a" / "stats.parquet").read_bytes() == (tmp_path / "b" / "stats.parquet").read_bytes()
    assert json.loads((tmp_path / "a" / "manifest.json").read_text()) == a
    # a changed sample changes the data version
    (tmp_path / "raw" / "nyu" / "kitchen_0001a" / "rgb_00001.jpg").write_bytes(jpeg_bytes(999))
    c = prep(NYUV2, tmp_path / "raw", tmp_path / "a", shard_rows=2)
    assert c["data_version"] != a["data_version"]


def test_corrupted_jpeg_is_recorded_not_fatal(tmp_path):
    sid = "kitchen_0001a/rgb_00001"
    make_nyu(tmp_path / "raw", images={sid: b"this is not a jpeg"})
    manifest = prep(NYUV2, tmp_path / "raw", tmp_path / "out", workers=2)
    assert manifest["decode_errors"] == 1
    stats = PreparedDataset(tmp_path / "out").stats.set_index("id")
    err = stats.loc[sid, "decode_error"]
    assert err.startswith("image: UnidentifiedImageError: cannot identify image file")
    assert " at 0x" not in err  # stable text across runs
    assert stats.loc[sid, "depth_height"] == H  # the depth map still has its stats
    assert stats["decode_error"].notna().sum() == 1


def test_pinned_files_checked(tmp_path):
    make_nyu(tmp_path / "raw")
    with pytest.raises(ValueError, match=r"nyu/nyu_train\.txt has sha256 [0-9a-f]{64}, expected 11dcd508"):
        prep(NYUV2, tmp_path / "raw", tmp_path / "out", check_pinned=True)
    assert not (tmp_path / "out").exists()


def _dup_reader(raw_dir):
    for _ in range(2):
        yield RawSample(id="same/id", split="train", image=b"x", image_format="jpg", depth=b"y")


def test_duplicate_ids_rejected(tmp_path):
    spec = dataclasses.replace(NYUV2, reader=_dup_reader)
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match="duplicate sample id 'same/id'"):
        prep(spec, tmp_path / "raw", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_raw_dir_and_empty_split(tmp_path):
    nyu = tmp_path / "raw" / "nyu"
    nyu.mkdir(parents=True)
    (nyu / "nyu_train.txt").write_text("")
    (nyu / "nyu_test.txt").write_text("")
    with pytest.raises(ValueError, match=r"no samples found in .*raw.*nyu_\{train,test\}\.txt"):
        prep(NYUV2, tmp_path / "raw", tmp_path / "out")

    make_nyu(tmp_path / "raw2")
    (tmp_path / "raw2" / "nyu" / "nyu_test.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"split\(s\) test have no samples"):
        prep(NYUV2, tmp_path / "raw2", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_prepare_keeps_previous_output(tmp_path):
    make_nyu(tmp_path / "raw")
    good = prep(NYUV2, tmp_path / "raw", tmp_path / "out")
    (tmp_path / "raw" / "nyu" / "nyu_test.txt").write_text("")
    with pytest.raises(ValueError):
        prep(NYUV2, tmp_path / "raw", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


# -- PreparedDataset ----------------------------------------------------------------------------


def test_prepared_dataset_random_access_decode_and_pickle(tmp_path):
    files = make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "out", shard_rows=2)
    ds = PreparedDataset(tmp_path / "out")  # spec looked up from the manifest
    assert ds.spec is NYUV2 and len(ds) == 5
    assert ds.ids("test") == ["bathroom_0003/rgb_00001", "bathroom_0003/rgb_00002"]
    assert len(ds.ids("train")) == 3

    sid = "bathroom_0003/rgb_00002"  # in the last shard
    row = ds.row(sid)
    assert row["image"] == files[sid][0].read_bytes() and row["split"] == "test"
    sample = ds.decode(sid)
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (H, W, 3)
    assert sample["depth"].dtype == np.float32
    expected = np.asarray(Image.open(files[sid][1])).astype(np.float32) / 1000
    np.testing.assert_array_equal(sample["depth"], expected)
    assert sample["label"] is None

    clone = pickle.loads(pickle.dumps(ds))
    assert clone._reader._open == {}  # handles reopen lazily
    assert clone.row("kitchen_0001a/rgb_00001")["image"] == files["kitchen_0001a/rgb_00001"][0].read_bytes()
    np.testing.assert_array_equal(clone.decode(sid)["depth"], expected)

    with pytest.raises(KeyError, match="no sample with id 'nope'"):
        ds.row("nope")
    with pytest.raises(KeyError, match="no split 'val'"):
        ds.ids("val")


def test_prepared_dataset_segmentation_decode(tmp_path):
    make_ade(tmp_path / "raw")
    prep(ADE20K, tmp_path / "raw", tmp_path / "out")
    sample = PreparedDataset(tmp_path / "out", ADE20K).decode("training/ADE_train_00000001")
    assert sample["depth"] is None
    assert sample["label"].dtype == np.uint8 and (sample["label"] == 1).all()  # stored 2 -> class 1


def test_prepared_dataset_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="mdeaux prepare nyuv2"):
        PreparedDataset(tmp_path / "nyuv2")


# -- found by mutation testing (make mutate; docs/mutation.md): the generic decoders of spec.py ------------
class _Int32Png:
    """What Image.open gives on Pillow before 10 for a 16-bit grayscale PNG: mode "I", int32 pixels (the
    pinned Pillow cannot even write such a file, so the branch is reached through this stand-in)."""

    format, mode = "PNG", "I"

    def __init__(self, pixels):
        self.pixels = pixels

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __array__(self, dtype=None, copy=None):
        return self.pixels


def test_an_int32_depth_png_is_range_checked_and_narrowed(monkeypatch):
    from types import SimpleNamespace

    import mdeaux.data.datasets.spec as spec_module

    pixels = {b"ok": np.array([[8, 65535], [0, 16]], np.int32), b"low": np.array([[-1, 8]], np.int32),
              b"high": np.array([[8, 65536]], np.int32), b"no zero": np.array([[8, 24]], np.int32)}
    monkeypatch.setattr(spec_module, "Image", SimpleNamespace(open=lambda f: _Int32Png(pixels[f.getvalue()])))
    raw = spec_module.read_png_uint16(b"ok", "nyuv2")
    assert raw.dtype == np.uint16 and raw.tolist() == [[8, 65535], [0, 16]]
    assert spec_module.read_png_uint16(b"no zero", "nyuv2").tolist() == [[8, 24]]
    for bad in (b"low", b"high"):
        with pytest.raises(ValueError, match=r"^nyuv2: depth PNG values outside 0..65535$"):
            spec_module.read_png_uint16(bad, "nyuv2")


def test_generic_decoders_refuse_what_they_cannot_read():
    with pytest.raises(ValueError, match=r"^nyuv2: depth file is JPEG, expected a 16-bit PNG$"):
        NYUV2.decode_depth(jpeg_bytes(0))
    for encoding in ("exr", "tiff"):  # sorting before and after "png_uint16"
        with pytest.raises(ValueError, match=rf"no depth encoding declared \(got '{encoding}'\)"):
            dataclasses.replace(NYUV2, depth_encoding=encoding).decode_depth(png_bytes(depth_mm(0)))
    with pytest.raises(AssertionError):  # a depth range is needed to score
        dataclasses.replace(NYUV2, min_depth=None).eval_mask(np.ones((2, 2), np.float32))
    for constant in (NYUV2, NYUV2.archives[0], RawSample(id="a", split="train", image=b"", image_format="jpg")):
        with pytest.raises(dataclasses.FrozenInstanceError):  # specs, archives and samples are constants
            constant.split = "x"
    tiff = io.BytesIO()
    Image.fromarray(depth_mm(0)).save(tiff, format="TIFF")  # a 16-bit map, but TIFF (sorts after PNG)
    with pytest.raises(ValueError, match=r"^nyuv2: depth file is TIFF, expected a 16-bit PNG$"):
        NYUV2.decode_depth(tiff.getvalue())


def test_an_rgb_label_png_is_read_as_grey_indices():
    rgb = np.full((2, 3, 3), 4, np.uint8)  # grey 4 -> index 4 -> class 3 after reduce_zero_label (ADE20K)
    assert ADE20K.decode_label(png_bytes(rgb)).tolist() == [[3, 3, 3], [3, 3, 3]]
    # reduce_zero_label (mmseg 0.27 LoadAnnotations): 0 -> 255, 1 -> 0, 150 -> 149
    assert ADE20K.decode_label(png_bytes(np.array([[0, 1, 150]], np.uint8))).tolist() == [[255, 0, 149]]


def test_the_eval_mask_is_strict_at_both_ends():
    depth = np.full((480, 640), 0.5)  # float64, so that the bounds are exactly representable
    depth[100, 101], depth[100, 102], depth[100, 103] = NYUV2.min_depth, NYUV2.max_depth, 12.0  # min < gt < max
    assert NYUV2.eval_mask(depth)[100, 100:104].tolist() == [True, False, False, False]  # inside the Eigen crop
