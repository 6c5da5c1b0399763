"""The synthetic mini world: renderer geometry and sensor model, official layouts, byte determinism."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeaux.data.datasets.registry import (
    ADE20K,
    ADE20K_CLASSES,
    NYUV2,
    read_ade20k,
    read_nyuv2,
)
from mdeaux.data.synth import camera as C
from mdeaux.data.synth import render as R
from mdeaux.data.synth import room as RM
from mdeaux.data.synth import sensor as S
from mdeaux.data.synth.mirror import write_mirror
from mdeaux.data.synth.nyu_ade import write_ade20k_archive, write_nyuv2_archive

COUNTS = {"nyuv2": {"train": 4, "test": 2}, "ade20k": {"train": 3, "val": 2}}
CLASSES = {name: i for i, name in enumerate(RM.all_class_names())}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(archive: Path, dest: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)
    return dest


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> dict[str, Path]:
    written = write_mirror(tmp_path_factory.mktemp("mirror"), COUNTS, seed=0, workers=1)
    return {name: archives[0] for name, archives in written.items()}  # one archive each


# -- renderer ------------------------------------------------------------------------------------
def test_same_seed_same_arrays_different_seed_different():
    a = R.render_frame(7, CLASSES, width=160, height=120)
    b = R.render_frame(7, CLASSES, width=160, height=120)
    c = R.render_frame(8, CLASSES, width=160, height=120)
    for field in ("rgb", "depth", "raw_depth", "labels"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.rgb, c.rgb) and not np.array_equal(a.depth, c.depth)
    assert a.rgb.dtype == np.uint8 and a.rgb.shape == (120, 160, 3)
    assert a.depth.dtype == a.raw_depth.dtype == np.float32 and a.depth.shape == (120, 160)


def test_depth_is_z_depth_not_ray_length():
    rng = np.random.Generator(np.random.PCG64(3))
    room = dataclasses.replace(RM.sample_room(rng, "office"), size=(6.0, 3.0, 4.0), prims=[], decals=[])
    cam = C.Camera(C.nyu_intrinsics(), np.array([3.0, 1.5, 0.5], np.float32), C.camera_rotation(0.0, 0.0, 0.0))
    frame = R.render(room, cam, rng, CLASSES, other=-1)
    centre = frame.depth[190:290, 220:420]  # all on the far wall z = 4, 3.5 m in front of the camera
    np.testing.assert_allclose(centre, 3.5, atol=1e-4)  # ray lengths would reach 3.56 m at the block corners
    assert (frame.labels[190:290, 220:420] == CLASSES["wall"]).mean() > 0.9  # "other" clutter may sit there
    assert (frame.labels[-5:] == CLASSES["floor"]).all() and (frame.labels[:5] == CLASSES["ceiling"]).all()


def test_farther_rooms_come_out_darker_and_room_lights_only_add_light(monkeypatch):
    """The mini world's depth cue: the camera's lamp (render.LAMP_POWER, irradiance ~ 1/distance^2) under one
    fixed exposure (sensor.EXPOSURE). Across 12 frames the rank correlation between an image's mean log
    brightness and its median log depth is -0.87 (with the auto-exposure and room lights before it: +0.25).
    The rooms' own lights (render.ROOM_LIGHTS, 0 by default) only add light."""
    from scipy.stats import spearmanr

    classes = dict.fromkeys(RM.all_class_names(), 0)
    frames = [R.render_frame(seed, classes, width=160, height=120) for seed in range(12)]
    brightness = [np.log1p(f.rgb.astype(np.float64).mean(axis=2)).mean() for f in frames]
    far = [np.median(np.log(f.depth)) for f in frames]
    assert spearmanr(brightness, far).statistic < -0.7
    monkeypatch.setattr(R, "ROOM_LIGHTS", 0.2)
    lit = R.render_frame(0, classes, width=160, height=120)
    assert lit.rgb.mean() > frames[0].rgb.mean() + 5 and (lit.rgb >= frames[0].rgb).all()
    assert np.array_equal(lit.depth, frames[0].depth)


def test_raw_depth_is_a_noisy_quantised_subset_of_depth():
    frame = R.render_frame(11, CLASSES)
    raw, depth = frame.raw_depth, frame.depth
    valid = raw > 0
    assert 0.01 < 1 - valid.mean() < 0.6
    assert raw.max() <= S.MAX_RANGE and raw[valid].min() >= S.KINECT_MIN_RANGE
    np.testing.assert_allclose(raw[valid] * 1000, np.rint(raw[valid] * 1000), atol=1e-3)  # mm steps
    err = np.abs(raw[valid] - depth[valid])
    assert err.max() < 6 * S.kinect_sigma(depth[valid]).max() + 1e-3
    assert err.mean() > 0  # noisy, not a copy


def test_intrinsics_scale_with_width_and_focal_is_nyu():
    k = C.nyu_intrinsics(320, 240)
    assert k.fx == k.fy == pytest.approx(518.8579 / 2) and (k.cx, k.cy) == (160, 120)


def test_class_names_fit_ade20k_and_unknown_names_raise():
    listed = set(RM.all_class_names()) - set(RM.OTHER_CLASSES)
    assert listed <= set(ADE20K_CLASSES)
    assert not set(RM.OTHER_CLASSES) & set(ADE20K_CLASSES)
    with pytest.raises(KeyError, match="missing from the class mapping"):
        R.render_frame(1, {"wall": 1}, width=64, height=48)


# -- NYUv2 archive -------------------------------------------------------------------------------
def test_nyu_archive_reads_in_toolbox_layout(mirror, tmp_path):
    root = extract(mirror["nyuv2"], tmp_path)
    samples = list(read_nyuv2(root))
    splits = [s.split for s in samples]
    assert splits.count("train") == 4 and splits.count("test") == 2
    assert len({s.id for s in samples}) == len(samples)

    train_lines = (root / "nyu" / "nyu_train.txt").read_text().splitlines()
    test_lines = (root / "nyu" / "nyu_test.txt").read_text().splitlines()
    train_re = re.compile(r"^/([a-z_]+_\d{4}[a-z])/rgb_(\d{5})\.jpg /\1/sync_depth_\2\.png 518\.8579$")
    test_re = re.compile(r"^([a-z_]+)/rgb_(\d{5})\.jpg \1/sync_depth_\2\.png 518\.8579$")
    assert all(train_re.match(line) for line in train_lines), train_lines
    assert all(test_re.match(line) and line.split("/")[0] in RM.SCENE_TYPES for line in test_lines), test_lines

    invalid = []
    for s in samples:
        with Image.open(io.BytesIO(s.depth)) as im:
            assert im.mode == "I;16" and im.size == (640, 480)
        depth = NYUV2.decode_depth(s.depth)
        assert depth.max() <= 10.5 and depth[depth > 0].min() > 0
        invalid.append((depth == 0).mean())
        rgb = NYUV2.decode_image(s.image)
        assert rgb.shape == (480, 640, 3)
        border = np.concatenate([rgb[:7].ravel(), rgb[474:].ravel(), rgb[:, :7].ravel(), rgb[:, 632:].ravel()])
        if s.split == "test":  # black border of the BTS test extraction (JPEG rings a little)
            assert border.mean() < 3 and border.max() < 40
        else:
            assert border.mean() > 20
        assert rgb[7:474, 7:632].mean() > 30
    assert 0.01 <= np.mean(invalid) <= 0.4 and max(invalid) < 0.6


# -- ADE20K archive ------------------------------------------------------------------------------
def test_ade_archive_reads_in_sceneparse_layout(mirror, tmp_path):
    root = extract(mirror["ade20k"], tmp_path)
    samples = list(read_ade20k(root))
    splits = [s.split for s in samples]
    assert splits.count("train") == 3 and splits.count("val") == 2
    assert len({s.id for s in samples}) == len(samples)
    assert samples[0].id == "training/ADE_train_00000001" and samples[-1].id == "validation/ADE_val_00000002"

    present = {"train": np.zeros(151, int), "val": np.zeros(151, int)}
    for s in samples:
        with Image.open(io.BytesIO(s.label)) as im:
            assert im.mode == "L"
            stored = np.asarray(im)
        assert stored.max() <= 150 and (stored == 0).any()  # every image holds "other objects"
        present[s.split] += np.bincount(stored.ravel(), minlength=151) > 0
        label = ADE20K.decode_label(s.label)
        assert ((label < 150) | (label == 255)).all() and (label == 255).any()
        image = ADE20K.decode_image(s.image)
        assert image.shape[:2] == label.shape and 384 <= min(label.shape) <= 512

    ade = root / "ADEChallengeData2016"
    info = (ade / "objectInfo150.txt").read_text().splitlines()
    assert info[0] == "Idx\tRatio\tTrain\tVal\tName" and len(info) == 151
    rows = [line.split("\t") for line in info[1:]]
    assert [r[4] for r in rows] == list(ADE20K_CLASSES) and [int(r[0]) for r in rows] == list(range(1, 151))
    assert [int(r[2]) for r in rows] == list(present["train"][1:])
    assert [int(r[3]) for r in rows] == list(present["val"][1:])
    assert sum(float(r[1]) for r in rows) <= 1.0 and float(rows[0][1]) > 0  # walls everywhere
    scenes = (ade / "sceneCategories.txt").read_text().splitlines()
    assert [line.split()[0] for line in scenes] == [s.id.split("/")[1] for s in samples]
    assert all(line.split()[1] in RM.SCENE_TYPES for line in scenes)


# -- determinism and the mirror ------------------------------------------------------------------
def test_zip_members_are_sorted_with_fixed_metadata(mirror):
    for archive in mirror.values():
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}


def test_sha256sums_match_archives(mirror):
    for name, archive in mirror.items():
        assert archive.parent.name == name
        sums = (archive.parent / "SHA256SUMS").read_text()
        assert sums == f"{sha256(archive)}  {archive.name}\n"


def test_same_seed_identical_archives_whatever_the_workers(mirror, tmp_path):
    again = {name: archives[0] for name, archives in write_mirror(tmp_path, COUNTS, seed=0, workers=2).items()}
    for name in COUNTS:
        assert again[name].name == mirror[name].name
        assert sha256(again[name]) == sha256(mirror[name]), name


def test_different_seed_different_archives(tmp_path):
    a = write_nyuv2_archive(tmp_path / "a", 1, 1, seed=5)
    b = write_nyuv2_archive(tmp_path / "b", 1, 1, seed=6)
    assert sha256(a) != sha256(b)
    a = write_ade20k_archive(tmp_path / "a", 1, 1, seed=5)
    b = write_ade20k_archive(tmp_path / "b", 1, 1, seed=6)
    assert sha256(a) != sha256(b)


def test_mirror_rejects_unknown_datasets_and_splits(tmp_path):
    with pytest.raises(ValueError, match=r"'kitty'.*supported: ade20k, cityscapes"):
        write_mirror(tmp_path, {"kitty": {"train": 1, "test": 1}}, seed=0)
    with pytest.raises(ValueError, match=r"'nyuv2'.*\['train', 'test'\]"):
        write_mirror(tmp_path, {"nyuv2": {"train": 1, "val": 1}}, seed=0)
    with pytest.raises(ValueError, match="n_test must be a non-negative integer"):
        write_nyuv2_archive(tmp_path, 1, -1, seed=0)
    assert not any(tmp_path.iterdir())  # nothing written on bad input


# -- module structure ----------------------------------------------------------------------------
def _synth_imports() -> dict[str, set[str]]:
    """``{module: synth modules it imports}`` for every module of ``mdeaux.data.synth``, from the source."""
    import ast

    import mdeaux.data.synth as synth

    graph: dict[str, set[str]] = {}
    for path in sorted(Path(synth.__file__).parent.glob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mdeaux.data.synth":
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mdeaux.data.synth."):
                deps.add(node.module.split(".")[3])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[3] for a in node.names if a.name.startswith("mdeaux.data.synth.")}
        graph[path.stem] = deps - {path.stem}
    return graph


def test_synth_modules_import_one_way():
    graph = _synth_imports()
    assert graph["__init__"] == set()  # importing one module does not load the others
    assert [name for name, deps in graph.items() if "mirror" in deps] == []  # only callers outside import it
    done: set[str] = set()
    while len(done) < len(graph):  # peel off modules whose imports are all done: fails on a cycle
        ready = {name for name, deps in graph.items() if name not in done and deps <= done}
        assert ready, f"import cycle among {sorted(set(graph) - done)}"
        done |= ready
