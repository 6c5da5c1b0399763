"""KITTI and DIODE: outdoor renderer, official layouts written by the mini world, readers, decoders, bad input."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeaux.data.datasets import lidar_depth as L
from mdeaux.data.synth import camera as R
from mdeaux.data.synth import outdoor as O
from mdeaux.data.synth.archive import encode_png
from mdeaux.data.synth.lidar_depth import (
    encode_npy,
    write_diode,
    write_diode_indoor,
    write_diode_outdoor,
    write_kitti,
)

CLASSES = {name: i for i, name in enumerate(O.OUTDOOR_CLASSES)}
KITTI_COUNTS = {"train": 1, "test": 2}
DIODE_COUNTS = {"train": 2, "val": 1}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_all(paths: list[Path], dest: Path) -> Path:
    """What fetch does: extract zips and tars, copy plain files (Archive.extract=False)."""
    for p in paths:
        if p.name.endswith(".zip"):
            with zipfile.ZipFile(p) as zf:
                zf.extractall(dest)
        elif p.name.endswith(".tar.gz"):
            with tarfile.open(p) as tf:
                tf.extractall(dest, filter="data")
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest / p.name)
    return dest


@pytest.fixture(scope="module")
def kitti(tmp_path_factory) -> tuple[list[Path], Path]:
    out = tmp_path_factory.mktemp("kitti")
    paths = write_kitti(out / "mirror", KITTI_COUNTS, seed=3)
    return paths, extract_all(paths, out / "raw")


@pytest.fixture(scope="module")
def diode(tmp_path_factory) -> tuple[list[Path], Path]:
    out = tmp_path_factory.mktemp("diode")
    paths = write_diode_indoor(out / "mirror", DIODE_COUNTS, seed=4)
    return paths, extract_all(paths, out / "raw")


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- renderer ---------------------------------------------------------------------------------------
def test_outdoor_same_seed_same_arrays_and_sky_has_no_depth():
    for driving in (True, False):
        a = O.render_outdoor(7, width=160, height=64, driving=driving, classes=CLASSES)
        b = O.render_outdoor(7, width=160, height=64, driving=driving, classes=CLASSES)
        c = O.render_outdoor(8, width=160, height=64, driving=driving, classes=CLASSES)
        for field in ("rgb", "depth", "labels"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert not np.array_equal(a.rgb, c.rgb)
        assert a.rgb.dtype == np.uint8 and a.rgb.shape == (64, 160, 3) and a.depth.dtype == np.float32
        for f in (a, c):
            sky = f.labels == CLASSES["sky"]
            assert (f.depth[sky] == 0).all() and (f.depth[~sky] > 0).all()
        assert any((O.render_outdoor(s, width=64, height=32, driving=driving, classes=CLASSES).depth == 0).any()
                   for s in range(4))
        assert np.isin(a.labels, list(CLASSES.values())).all()
    assert set(np.unique(O.render_outdoor(1, width=320, height=120, driving=True, classes=CLASSES).labels)) >= {
        CLASSES["road"], CLASSES["sky"], CLASSES["building"]}


def test_flat_ground_depth_is_z_depth():
    rng = np.random.Generator(np.random.PCG64(0))
    scene = O.sample_outdoor_scene(rng, driving=True)
    scene.prims, scene.windows = [], {}
    k = O.kitti_intrinsics(310, 94)
    h = 1.5
    cam = R.Camera(k, np.array([0.0, h, 0.0], np.float32), R.camera_rotation(0.0, 0.0, 0.0))
    frame = O.render_scene(scene, cam, rng, CLASSES)
    v = np.arange(k.height) + 0.5 - k.cy
    expected = np.where(v > 0, k.fy * h / np.where(v > 0, v, 1), 0)  # ground z = f h / (v - cy)
    expected = np.where(expected * np.sqrt(1 + ((k.width / 2) / k.fx) ** 2 + (v / k.fy) ** 2) > O.FAR, 0, expected)
    col = frame.depth[:, k.width // 2]
    np.testing.assert_allclose(col[expected > 0][5:], expected[expected > 0][5:], rtol=1e-4)
    assert (frame.depth[: int(k.cy)] == 0).all() and (frame.labels[: int(k.cy)] == CLASSES["sky"]).all()
    assert (frame.labels[-1, k.width // 2] == CLASSES["road"])


def test_lidar_sparsify_keeps_a_sparse_subset_of_depth():
    frame = O.render_outdoor(2, width=O.KITTI_WIDTH, height=O.KITTI_HEIGHT, driving=True, classes=CLASSES)
    sparse = O.lidar_sparsify(frame.depth, frame.intrinsics, np.random.Generator(np.random.PCG64(0)))
    valid = sparse > 0
    assert 0.05 < valid.mean() < 0.25  # a real KITTI GT frame (data_depth_annotated.zip) is ~19.5 % non-zero
    assert not valid[: O.KITTI_HEIGHT // 4].any()  # above the top ring (+2 deg): nothing
    np.testing.assert_array_equal(sparse[valid], frame.depth[valid])


def test_unknown_class_names_raise_without_other():
    with pytest.raises(KeyError, match="pass other"):
        O.render_outdoor(1, width=64, height=32, driving=True, classes={"road": 0})
    f = O.render_outdoor(1, width=64, height=32, driving=True, classes={"road": 0}, other=9)
    assert set(np.unique(f.labels)) <= {0, 9}


# -- KITTI ------------------------------------------------------------------------------------------
def test_kitti_writer_writes_every_spec_archive(kitti):
    paths, _ = kitti
    assert [p.name for p in paths] == [a.filename for a in L.KITTI.archives]
    split_archives = {a.filename: a for a in L.KITTI.archives if not a.extract}
    assert set(split_archives) == {"kitti_eigen_train.txt", "kitti_eigen_test.txt"}
    assert {rel: sha for rel, sha in L.KITTI.pinned_files} == {n: a.sha256 for n, a in split_archives.items()}
    with zipfile.ZipFile(paths[0]) as zf:
        names = zf.namelist()
    assert any(n.startswith("train/") for n in names) and any(n.startswith("val/") for n in names)
    assert all("/proj_depth/groundtruth/image_02/" in n for n in names if n.endswith(".png"))


def test_kitti_reader_splits_drop_none_and_decode(kitti):
    _, raw = kitti
    test_lines = (raw / "kitti_eigen_test.txt").read_text().splitlines()
    dropped = sum(line.split()[1] == "None" for line in test_lines)
    assert dropped >= 1 and len(test_lines) - dropped == KITTI_COUNTS["test"]  # the real list: 697 - 45 = 652
    samples = list(L.read_kitti(raw))
    assert [s.split for s in samples] == ["train"] * KITTI_COUNTS["train"] + ["test"] * KITTI_COUNTS["test"]
    assert len({s.id for s in samples}) == len(samples)
    for s in samples:
        assert s.image_format == "png" and s.image[:8] == b"\x89PNG\r\n\x1a\n"
        rgb, depth = L.KITTI.decode_image(s.image), L.KITTI.decode_depth(s.depth)
        assert rgb.shape == (375, 1242, 3) and depth.shape == (375, 1242) and depth.dtype == np.float32
        valid = depth > 0
        assert 0.05 < valid.mean() < 0.25 and not valid[:90].any()
        assert depth[valid].min() > 1.0 and depth.max() < 256
        np.testing.assert_array_equal(depth[valid] * 256, np.rint(depth[valid] * 256))  # 1/256 m steps
        assert L.KITTI.eval_mask(L.kb_crop(depth)).sum() > 1000


def test_kitti_png_encoding_and_crops():
    gt = np.zeros((375, 1242), np.uint16)
    gt[300, 600] = 3200  # 3200 / 256 = 12.5 m (KITTI devkit read_depth.py)
    gt[10, 10] = 65535
    depth = L.KITTI.decode_depth(encode_png(gt))
    assert depth[300, 600] == np.float32(12.5) and depth[10, 10] == np.float32(65535 / 256) and depth[0, 0] == 0
    cropped = L.kb_crop(np.arange(375 * 1242).reshape(375, 1242))
    assert cropped.shape == (352, 1216) and cropped[0, 0] == 23 * 1242 + 13  # top = 375-352, left = int(26/2)
    mask = L.KITTI.eval_mask(np.full((352, 1216), 10.0, np.float32))
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (143, 349, 43, 1172)  # Garg box on the KB crop
    assert not L.KITTI.eval_mask(np.full((352, 1216), 80.0, np.float32)).any()  # strict < 80


def test_kitti_missing_files_name_the_entry(kitti, tmp_path):
    _, raw = kitti
    lines = (raw / "kitti_eigen_train.txt").read_text().split()
    rgb, gt = lines[0], lines[1]
    broken = copy_tree(raw, tmp_path / "a")
    (broken / rgb).unlink()
    with pytest.raises(FileNotFoundError, match=r"kitti_eigen_train\.txt line 1 .*" + rgb.split("/")[-1]):
        list(L.read_kitti(broken))
    broken = copy_tree(raw, tmp_path / "b")
    (broken / "train" / gt).unlink()
    with pytest.raises(FileNotFoundError, match="ground truth .*" + gt.split("/")[0]):
        list(L.read_kitti(broken))
    broken = copy_tree(raw, tmp_path / "c")
    (broken / "kitti_eigen_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="kitti_eigen_test.txt"):
        list(L.read_kitti(broken))


def test_kitti_corrupt_png_and_size_mismatch(kitti, tmp_path):
    _, raw = kitti
    gt = (raw / "kitti_eigen_train.txt").read_text().split()[1]
    broken = copy_tree(raw, tmp_path / "a")
    data = (broken / "train" / gt).read_bytes()
    (broken / "train" / gt).write_bytes(data[: len(data) // 2])  # truncated PNG
    sample = next(iter(L.read_kitti(broken)))
    with pytest.raises(Exception):
        L.KITTI.decode_depth(sample.depth)
    (broken / "train" / gt).write_bytes(encode_png(np.zeros((370, 1224), np.uint16)))  # another camera size
    sample = next(iter(L.read_kitti(broken)))
    assert L.KITTI.decode_depth(sample.depth).shape != L.KITTI.decode_image(sample.image).shape[:2]


def test_kitti_determinism_and_drive_check(kitti, tmp_path):
    paths, raw = kitti
    again = write_kitti(tmp_path / "again", KITTI_COUNTS, seed=3)
    assert [sha256(p) for p in again] == [sha256(p) for p in paths]
    assert L.missing_raw_drives(raw) == []
    assert set(L.drives_in_split_files(raw)) <= set(L.KITTI_RAW_DRIVES)


# -- DIODE ------------------------------------------------------------------------------------------
def test_diode_archives_layout_and_metadata(diode):
    paths, _ = diode
    assert [p.name for p in paths] == [a.filename for a in L.DIODE_INDOOR.archives] == [a.filename for a in L.DIODE_OUTDOOR.archives]
    for p in paths:
        assert p.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime = 0
        with tarfile.open(p) as tf:
            members = tf.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        files = [m.name for m in members if m.isfile()]
        assert any("/indoors/" in n for n in files) and any("/outdoor/" in n for n in files)
        for n in files:
            assert n.split("/")[0] == p.name.split(".")[0]


def test_diode_readers_filter_their_domain_and_decode(diode):
    _, raw = diode
    indoor, outdoor = list(L.read_diode_indoor(raw)), list(L.read_diode_outdoor(raw))
    assert [s.split for s in indoor] == ["train"] * 2 + ["val"]
    assert [s.split for s in outdoor] == ["train", "val"]  # the token frames of the other domain
    assert all("/indoors/" in s.id for s in indoor) and all("/outdoor/" in s.id for s in outdoor)
    dtypes = set()
    for spec, samples in ((L.DIODE_INDOOR, indoor), (L.DIODE_OUTDOOR, outdoor)):
        for s in samples:
            stem = raw / s.id
            assert s.image == stem.with_suffix(".png").read_bytes()
            with zipfile.ZipFile(io.BytesIO(s.depth)) as zf:  # original files, byte for byte
                assert zf.read("depth.npy") == Path(f"{stem}_depth.npy").read_bytes()
                assert zf.read("depth_mask.npy") == Path(f"{stem}_depth_mask.npy").read_bytes()
            stored, mask = L.unpack_diode_depth(s.depth)
            assert stored.shape == (768, 1024, 1) and stored.dtype == np.float32 and mask.shape == (768, 1024)
            dtypes.add(mask.dtype)
            rgb, depth = spec.decode_image(s.image), spec.decode_depth(s.depth)
            assert rgb.shape == (768, 1024, 3) and depth.shape == (768, 1024) and depth.dtype == np.float32
            assert np.isfinite(depth).all() and (depth[mask == 0] == 0).all()
            assert 0.5 < (depth > 0).mean() <= 1 and depth.max() <= spec.max_depth + (0 if spec is L.DIODE_OUTDOOR else 5)
    assert dtypes == {np.dtype(np.float32), np.dtype(np.float64)}


def _pack(depth: np.ndarray, mask: np.ndarray) -> bytes:
    return L.pack_diode_depth(encode_npy(depth), encode_npy(mask))


def test_diode_decoder_mask_nan_inf_and_far_switch(monkeypatch):
    depth = np.array([[1.5, 2.0, np.nan], [np.inf, 100.0, 7.0]], np.float32)[..., None]
    mask = np.array([[1, 0, 1], [1, 1, 0]], np.float64)
    out = L.decode_diode_depth(_pack(depth, mask))
    assert out.dtype == np.float32 and out[0, 0] == 1.5 and out[0, 1] == 0 and out[1, 2] == 0
    assert np.isnan(out[0, 2]) and np.isinf(out[1, 0]) and out[1, 1] == 100.0
    far = L.decode_diode_outdoor_depth(_pack(depth, mask.astype(np.float32)))
    assert far[1, 1] == 0 and np.isinf(far[1, 0]) and np.isnan(far[0, 2])  # default: mask beyond 80 m
    monkeypatch.setattr(L, "DIODE_OUTDOOR_FAR_MODE", "clip")
    assert L.decode_diode_outdoor_depth(_pack(depth, mask))[1, 1] == 80.0
    monkeypatch.setattr(L, "DIODE_OUTDOOR_FAR_MODE", "bogus")
    with pytest.raises(ValueError, match="FAR_MODE"):
        L.decode_diode_outdoor_depth(_pack(depth, mask))
    with pytest.raises(ValueError, match="shape"):
        L.decode_diode_depth(_pack(depth, np.ones((3, 2))))
    with pytest.raises(Exception):
        L.decode_diode_depth(L.pack_diode_depth(b"\x93NUMPY garbage", encode_npy(mask)))


def test_diode_bad_files(diode, tmp_path):
    _, raw = diode
    broken = copy_tree(raw, tmp_path / "a")
    first = next(iter(L.read_diode_indoor(broken)))
    Path(f"{broken / first.id}_depth_mask.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"diode_indoor: .*_depth_mask\.npy is missing"):
        list(L.read_diode_indoor(broken))
    broken = copy_tree(raw, tmp_path / "b")
    png = (broken / first.id).with_suffix(".png")
    png.write_bytes(png.read_bytes()[:200])
    sample = next(iter(L.read_diode_indoor(broken)))
    with pytest.raises(Exception):
        L.DIODE_INDOOR.decode_image(sample.image)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((384, 512, 3), np.uint8)).save(buf, format="PNG")
    png.write_bytes(buf.getvalue())  # half-size image: disagrees with the depth map
    sample = next(iter(L.read_diode_indoor(broken)))
    assert L.DIODE_INDOOR.decode_image(sample.image).shape[:2] != L.DIODE_INDOOR.decode_depth(sample.depth).shape
    with pytest.raises(FileNotFoundError, match="indoors"):
        list(L.read_diode_indoor(tmp_path / "empty"))


def test_diode_determinism_and_outdoor_writer(diode, tmp_path):
    a = write_diode(tmp_path / "a", {"outdoor": {"train": 1, "val": 0}}, seed=5)
    b = write_diode(tmp_path / "b", {"outdoor": {"train": 1, "val": 0}}, seed=5)
    assert [sha256(p) for p in a] == [sha256(p) for p in b]
    with pytest.raises(ValueError, match="splits"):
        write_diode_outdoor(tmp_path / "c", {"train": 1}, seed=5)
    assert L.DIODE_INDOOR.max_depth == 10.0 and L.DIODE_OUTDOOR.max_depth == 80.0
    assert L.DIODE_INDOOR.test_split == L.DIODE_OUTDOOR.test_split == "val"


# -- found by mutation testing (make mutate; docs/mutation.md) --------------------------------------------
@pytest.mark.parametrize("h, w", [(352, 1216), (400, 1300), (352, 2500), (800, 1300)])  # 800 >= 2 x 352: H % 352 != H - 352
def test_kb_crop_of_exact_and_larger_frames(h, w):
    frame = np.arange(h * w).reshape(h, w)
    top, left = h - 352, int((w - 1216) / 2)  # toolbox KBCrop: top = H - 352, left = int((W - 1216) / 2)
    np.testing.assert_array_equal(L.kb_crop(frame), frame[top:, left : left + 1216])


@pytest.mark.parametrize("h, w", [(400, 1000), (300, 1300), (351, 1215)])
def test_kb_crop_refuses_frames_smaller_than_the_crop(h, w):
    with pytest.raises(ValueError, match=f"at least 352x1216 pixels, got {h}x{w}"):
        L.kb_crop(np.zeros((h, w)))


def test_kb_crop_of_an_rgb_frame():
    frame = np.arange(375 * 1242 * 3).reshape(375, 1242, 3)
    np.testing.assert_array_equal(L.kb_crop(frame), frame[23:, 13 : 13 + 1216])


def test_diode_far_limit_at_80_m_in_both_modes(monkeypatch):
    depth = np.array([[80.0, 80.5, 5.0]], np.float32)
    assert L.decode_diode_outdoor_depth(_pack(depth, np.ones((1, 3)))).tolist() == [[80.0, 0.0, 5.0]]  # > 80 m only
    monkeypatch.setattr(L, "DIODE_OUTDOOR_FAR_MODE", "".join(["cl", "ip"]))  # a setting built at run time
    assert L.decode_diode_outdoor_depth(_pack(depth, np.ones((1, 3)))).tolist() == [[80.0, 80.0, 5.0]]


def test_diode_payload_shapes_pickles_zip_metadata_and_far_mode(monkeypatch):
    depth, mask = np.full((2, 3), 5.0, np.float32), np.ones((2, 3), np.float32)
    # the devkit's (H, W, 1) layout for depth and mask alike; (H, 1) maps stay 2-D
    np.testing.assert_array_equal(L.decode_diode_depth(_pack(depth[..., None], mask[..., None])), depth)
    np.testing.assert_array_equal(L.decode_diode_depth(_pack(depth[:, :1], mask[:, :1])), depth[:, :1])
    for bad_depth, bad_mask in ((depth, mask.T), (depth.T, mask), (depth, np.stack([mask, mask], -1)),
                                (np.stack([depth, depth], -1), mask), (np.stack([depth, depth], -1), np.stack([mask, mask], -1)),
                                (depth[..., :0].reshape(2, 3, 0), mask), (depth, mask[..., None][..., :0]), (depth[0], mask[0])):
        with pytest.raises(ValueError, match=r"expected two \(H, W\) maps"):
            L.decode_diode_depth(_pack(bad_depth, bad_mask))
    pickled = io.BytesIO()
    np.save(pickled, np.array([depth], dtype=object), allow_pickle=True)  # never unpickled
    for payload in (L.pack_diode_depth(pickled.getvalue(), encode_npy(mask)), L.pack_diode_depth(encode_npy(depth), pickled.getvalue())):
        with pytest.raises(ValueError, match="allow_pickle"):
            L.decode_diode_depth(payload)
    # the zip's metadata is fixed (Unix, -rw-r--r--), so a packed payload is the same bytes everywhere
    with zipfile.ZipFile(io.BytesIO(_pack(depth, mask))) as zf:
        assert [(i.create_system, i.external_attr >> 16) for i in zf.infolist()] == [(3, 0o100644)] * 2
    far = np.array([[90.0, 5.0]], np.float32)
    monkeypatch.setattr(L, "DIODE_OUTDOOR_FAR_MODE", "".join(["ma", "sk"]))  # a setting built at run time
    assert L.decode_diode_outdoor_depth(_pack(far, np.ones((1, 2)))).tolist() == [[0.0, 5.0]]
    monkeypatch.setattr(L, "DIODE_OUTDOOR_FAR_MODE", "zoom")  # sorts after both modes
    with pytest.raises(ValueError, match="FAR_MODE"):
        L.decode_diode_outdoor_depth(_pack(far, np.ones((1, 2))))


def test_kitti_and_diode_spec_values_with_their_sources():
    assert L.KITTI.official_counts == (("train", 23158), ("test", 652))  # toolbox Eigen lists, 45 test entries without GT dropped
    for spec in (L.DIODE_INDOOR, L.DIODE_OUTDOOR):
        assert spec.image_sizes == ((768, 1024),)  # RGB 1024x768 (diode-devkit README)
        assert spec.min_depth == 1e-3  # Depth Anything metric_depth/zoedepth/utils/config.py
    assert (L.DIODE_INDOOR.max_depth, L.DIODE_OUTDOOR.max_depth) == (10.0, 80.0)
    assert (L.KITTI.min_depth, L.KITTI.max_depth) == (1e-3, 80.0)  # toolbox configs/_base_/datasets/kitti.py
    # what the KITTI range means for evaluation: a pixel without depth is out, one just under 80 m is in
    depth = np.full((352, 1216), 79.5, np.float32)
    depth[200, 600] = 0
    mask = L.KITTI.eval_mask(depth)
    assert mask[200:202, 600].tolist() == [False, True]
