"""Matterport3D and Taskonomy: specs, readers of the official layouts, decoders, synthetic writers."""

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

from mdeaux.data.datasets.indoor_depth import (
    MATTERPORT3D,
    MP3D_SCENES,
    SPECS,
    TASKONOMY,
    decode_mp3d_depth,
    decode_taskonomy_depth,
    read_matterport3d,
    read_taskonomy,
)
from mdeaux.data.synth.archive import encode_png
from mdeaux.data.synth.indoor_depth import write_matterport3d, write_taskonomy

MP3D_COUNTS = {"train": 2, "val": 1}
TASKONOMY_COUNTS = {"train": 5, "val": 2}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_like(spec, archives: list[Path], raw_dir: Path) -> Path:
    """What fetch does: extract every archive (zip/tar) into raw_dir, copy the others."""
    raw_dir.mkdir(parents=True)
    for archive, path in zip(spec.archives, archives, strict=True):
        if not archive.extract:
            shutil.copyfile(path, raw_dir / Path(archive.filename).name)
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                zf.extractall(raw_dir)
        else:
            with tarfile.open(path) as tf:
                tf.extractall(raw_dir, filter="data")
    return raw_dir


@pytest.fixture(scope="module")
def mp3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp3d")
    archives = write_matterport3d(root / "mirror", MP3D_COUNTS, seed=3)
    raw = fetch_like(MATTERPORT3D, archives, root / "raw")
    return archives, raw, list(read_matterport3d(raw))


@pytest.fixture(scope="module")
def tasko(tmp_path_factory):
    root = tmp_path_factory.mktemp("taskonomy")
    archives = write_taskonomy(root / "mirror", TASKONOMY_COUNTS, seed=3)
    raw = fetch_like(TASKONOMY, archives, root / "raw")
    return archives, raw, list(read_taskonomy(raw))


# -- specs ---------------------------------------------------------------------------------------
def test_specs():
    assert [s.name for s in SPECS] == ["matterport3d", "taskonomy"]
    for spec in SPECS:
        assert spec.task == "depth" and spec.splits == ("train", "val") and spec.test_split == "val"
        assert (spec.min_depth, spec.max_depth, spec.eval_crop, spec.eval_crop_fractions) == (1e-3, 10.0, None, None)
        names = [a.filename for a in spec.archives]
        assert len(set(names)) == len(names)
        for a in spec.archives:
            assert a.urls or a.manual
            if a.manual:  # says what, where and how to record it
                assert f"data/manual/{spec.name}" in a.manual and "dvc add data/manual" in a.manual
                assert "dvc commit data.dvc" in a.manual
    mp_names = [a.filename for a in MATTERPORT3D.archives]
    assert len(mp_names) == 2 + 2 * (61 + 11)
    assert "v1/scans/17DRP5sb8fy/undistorted_color_images.zip" in mp_names
    assert "v1/scans/zsNo4HB9uLZ/undistorted_depth_images.zip" in mp_names
    assert [a.filename for a in TASKONOMY.archives] == ["rgb.tar", "depth_zbuffer.tar", "splits_taskonomy.zip"]
    # the image size validation expects, (H, W): Matterport3D's undistorted 1280x1024 frames (our reading of
    # the released data [I]), Taskonomy's 512x512 PNGs (taskonomy data/README.md)
    assert MATTERPORT3D.image_sizes == ((1024, 1280),) and TASKONOMY.image_sizes == ((512, 512),)
    for spec in SPECS:  # licence-gated archives first: an empty data/manual stops before any download
        gated = [bool(a.manual) for a in spec.archives]
        assert gated == sorted(gated, reverse=True)


def test_scene_lists_match_pinned_sha(mp3d):
    archives, _, _ = mp3d
    pinned = {a.filename: a.sha256 for a in MATTERPORT3D.archives if a.sha256}
    assert set(pinned) == {"scenes_train.txt", "scenes_val.txt"}
    for path in archives[-2:]:  # the mini world writes the official lists byte for byte
        assert sha256(path) == pinned[path.name]
    assert len(MP3D_SCENES["train"]) == 61 and len(MP3D_SCENES["val"]) == 11


# -- Matterport3D --------------------------------------------------------------------------------
def test_mp3d_writer_layout(mp3d):
    archives, _, _ = mp3d
    assert len(archives) == len(MATTERPORT3D.archives) and all(p.is_file() for p in archives)
    for a, p in zip(MATTERPORT3D.archives, archives, strict=True):
        assert p.as_posix().endswith(a.filename)
    first = archives[0]  # v1/scans/17DRP5sb8fy/undistorted_color_images.zip
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
    assert all(n.startswith("17DRP5sb8fy/undistorted_color_images/") or n == "17DRP5sb8fy/" for n in names)
    assert any(n.endswith(".jpg") for n in names)


def test_mp3d_reader_and_decode(mp3d):
    _, _, samples = mp3d
    assert [s.split for s in samples] == ["train"] * 2 + ["val"]
    ids = [s.id for s in samples]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("17DRP5sb8fy/") and ids[2].startswith("2azQ1b91cZZ/")
    for s in samples:
        assert s.image_format == "jpg" and s.image[:2] == b"\xff\xd8"
        image = MATTERPORT3D.decode_image(s.image)
        depth = MATTERPORT3D.decode_depth(s.depth)
        assert image.shape == (1024, 1280, 3) and depth.shape == (1024, 1280)
        assert depth.dtype == np.float32 and np.isfinite(depth).all()
        assert depth.min() == 0.0 and 0.3 < depth.max() < 10.0  # holes = 0, indoor range
        assert (depth > 0).mean() > 0.5
        units = depth[depth > 0].astype(np.float64) * 4000.0  # 0.25 mm steps
        np.testing.assert_allclose(units, np.rint(units), atol=0.02)


def test_mp3d_official_encoding_of_hand_made_pixels():
    raw = np.array([[0, 1, 4000], [10000, 40000, 65535]], dtype=np.uint16)
    depth = decode_mp3d_depth(encode_png(raw))
    np.testing.assert_allclose(depth, [[0.0, 0.00025, 1.0], [2.5, 10.0, 16.38375]], rtol=1e-6)
    assert depth.dtype == np.float32
    assert MATTERPORT3D.decode_depth(encode_png(raw)).tolist() == depth.tolist()


def test_mp3d_deterministic(tmp_path):
    counts = {"train": 1, "val": 0}
    a = write_matterport3d(tmp_path / "a", counts, seed=11)
    b = write_matterport3d(tmp_path / "b", counts, seed=11)
    assert [sha256(p) for p in a] == [sha256(p) for p in b]


def test_mp3d_missing_scan_named(mp3d, tmp_path):
    _, raw, _ = mp3d
    bad = Path(shutil.copytree(raw, tmp_path / "raw"))
    shutil.rmtree(bad / "zsNo4HB9uLZ" / "undistorted_depth_images")  # last scan of scenes_val.txt
    with pytest.raises(FileNotFoundError, match=r"matterport3d.*zsNo4HB9uLZ.*scenes_val\.txt"):
        list(read_matterport3d(bad))
    shutil.rmtree(tmp_path / "raw")
    bad = Path(shutil.copytree(raw, tmp_path / "raw"))
    depth = next((bad / "17DRP5sb8fy" / "undistorted_depth_images").glob("*.png"))
    depth.unlink()
    with pytest.raises(FileNotFoundError, match=rf"matterport3d.*{depth.name}"):
        list(read_matterport3d(bad))
    (bad / "scenes_train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"matterport3d.*scenes_train\.txt"):
        list(read_matterport3d(bad))


# -- Taskonomy -----------------------------------------------------------------------------------
def test_taskonomy_writer_layout(tasko):
    archives, _, _ = tasko
    assert [p.name for p in archives] == ["rgb.tar", "depth_zbuffer.tar", "splits_taskonomy.zip"]
    with zipfile.ZipFile(archives[2]) as zf:
        csv_text = zf.read("splits_taskonomy/train_val_test_full.csv").decode()
    assert csv_text.splitlines()[0] == "id,train,val,test"
    assert "brinnon,0,0,1" in csv_text  # a test building (not written, not read)
    with tarfile.open(archives[0]) as tf:
        files = [m.name for m in tf.getmembers() if m.isfile()]
    assert files and all(n.startswith("rgb/taskonomy/") and n.endswith("_domain_rgb.png") for n in files)


def test_taskonomy_reader_and_decode(tasko):
    _, _, samples = tasko
    assert [s.split for s in samples] == ["train"] * 5 + ["val"] * 2
    ids = [s.id for s in samples]
    assert len(set(ids)) == len(ids)
    assert {i.split("/")[0] for i in ids} == {"hanson", "merom", "laytonsville"}
    saw_invalid = False
    for s in samples:
        assert s.image_format == "png" and s.image[:8] == b"\x89PNG\r\n\x1a\n"
        image = TASKONOMY.decode_image(s.image)
        depth = TASKONOMY.decode_depth(s.depth)
        assert image.shape == (512, 512, 3) and depth.shape == (512, 512)
        assert depth.dtype == np.float32 and np.isfinite(depth).all()
        assert depth.max() < 128.0 and (depth > 0).mean() > 0.5
        with Image.open(io.BytesIO(s.depth)) as im:
            raw = np.asarray(im)
        invalid = raw == 65535
        assert (depth[invalid] == 0).all()
        np.testing.assert_allclose(depth[~invalid], raw[~invalid] / 512.0, rtol=1e-6)
        saw_invalid |= bool(invalid.any())
    assert saw_invalid  # windows: no mesh behind the glass


def test_taskonomy_official_encoding_of_hand_made_pixels():
    raw = np.array([[0, 1, 512], [5120, 65534, 65535]], dtype=np.uint16)
    depth = decode_taskonomy_depth(encode_png(raw))
    np.testing.assert_allclose(depth, [[0.0, 1 / 512, 1.0], [10.0, 65534 / 512, 0.0]], rtol=1e-6)
    assert depth.dtype == np.float32


def test_taskonomy_deterministic(tmp_path, tasko):
    archives, _, _ = tasko
    again = write_taskonomy(tmp_path / "again", TASKONOMY_COUNTS, seed=3)
    assert [sha256(p) for p in again] == [sha256(p) for p in archives]
    other = write_taskonomy(tmp_path / "other", {"train": 1, "val": 0}, seed=4)
    assert sha256(other[0]) != sha256(archives[0])


def test_taskonomy_split_csv_line_endings(tasko, tmp_path):
    _, raw, samples = tasko
    bad = Path(shutil.copytree(raw, tmp_path / "raw"))
    csv_path = bad / "splits_taskonomy" / "train_val_test_full.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace(b"\n", b"\r\n"))
    assert [s.id for s in read_taskonomy(bad)] == [s.id for s in samples]


def test_taskonomy_missing_building_and_file_named(tasko, tmp_path):
    _, raw, _ = tasko
    bad = Path(shutil.copytree(raw, tmp_path / "raw"))
    shutil.rmtree(bad / "rgb" / "taskonomy" / "laytonsville")
    with pytest.raises(FileNotFoundError, match=r"taskonomy.*laytonsville.*train_val_test_full\.csv"):
        list(read_taskonomy(bad))
    shutil.rmtree(bad)
    bad = Path(shutil.copytree(raw, tmp_path / "raw"))
    depth = bad / "depth_zbuffer" / "taskonomy" / "merom"
    victim = sorted(depth.iterdir())[0]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=rf"taskonomy.*{victim.name}"):
        list(read_taskonomy(bad))
    (bad / "splits_taskonomy" / "train_val_test_full.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"taskonomy.*train_val_test_full\.csv"):
        list(read_taskonomy(bad))


# -- bad input shared by both --------------------------------------------------------------------
@pytest.mark.parametrize("which", ["matterport3d", "taskonomy"])
def test_corrupt_files_raise_on_decode(which, mp3d, tasko):
    spec, samples = (MATTERPORT3D, mp3d[2]) if which == "matterport3d" else (TASKONOMY, tasko[2])
    s = samples[0]
    with pytest.raises(Exception):
        spec.decode_image(s.image[: len(s.image) // 2])
    with pytest.raises(Exception):
        spec.decode_image(b"\xff\xd8\xff\xe0 not an image")
    with pytest.raises(Exception):
        spec.decode_depth(s.depth[: len(s.depth) // 2])
    with pytest.raises(Exception):
        spec.decode_depth(b"\x89PNG\r\n\x1a\n garbage")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_depth_must_be_16_bit_single_channel(spec):
    # 16-bit PNGs cannot hold NaN/inf; a file in another encoding (8-bit, RGB, float TIFF) is rejected by name
    rgb = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb, format="PNG")
    with pytest.raises(ValueError, match=rf"{spec.name}.*mode 'RGB'"):
        spec.decode_depth(rgb.getvalue())
    tiff = io.BytesIO()
    Image.fromarray(np.array([[np.nan, np.inf]], np.float32)).save(tiff, format="TIFF")
    with pytest.raises(ValueError, match=rf"{spec.name}.*TIFF"):
        spec.decode_depth(tiff.getvalue())
    with pytest.raises(ValueError, match=rf"{spec.name}.*mode 'L'"):
        spec.decode_depth(encode_png(np.zeros((4, 4), np.uint8)))


def test_size_disagreement_is_visible_in_decoded_shapes(mp3d):
    s = mp3d[2][0]
    wrong = encode_png(np.full((480, 640), 4000, np.uint16))  # a depth map of another size
    image, depth = MATTERPORT3D.decode_image(s.image), MATTERPORT3D.decode_depth(wrong)
    assert image.shape[:2] == (1024, 1280) and depth.shape == (480, 640)


@pytest.mark.parametrize("writer", [write_matterport3d, write_taskonomy])
def test_counts_must_name_the_splits(writer, tmp_path):
    with pytest.raises(ValueError, match="splits"):
        writer(tmp_path, {"train": 1, "test": 1}, seed=0)
    with pytest.raises(ValueError):
        writer(tmp_path, {"train": -1, "val": 0}, seed=0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_paper_profile_with_empty_manual_folder_stops_with_instructions(spec, tmp_path):
    from mdeaux.data.fetch import fetch_dataset
    from mdeaux.data.fetch_error import FetchError

    with pytest.raises(FetchError) as err:
        fetch_dataset(spec, tmp_path / "raw", profile="paper", mirror_dir=tmp_path / "mirror",
                      manual_dir=tmp_path / "manual" / spec.name, progress=False)
    text = str(err.value)
    assert ("download_mp.py" if spec.name == "matterport3d" else "omnitools.download") in text
    assert "dvc add data/manual" in text and str(tmp_path / "manual" / spec.name) in text
    assert not (tmp_path / "raw").exists()
