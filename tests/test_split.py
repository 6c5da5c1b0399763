"""make_split / write_splits: nested, seeded, order-independent fractions."""

from __future__ import annotations

import json
import random
import re

import pytest
from test_prepare import make_ade, make_nyu, prep

from mdeaux.data.datasets.registry import ADE20K, NYUV2
from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile, make_split, subset_size, write_splits

TRAIN = [f"scene_{i // 10:02d}/rgb_{i:05d}" for i in range(100)]
TEST = [f"test/{i}" for i in range(7)]


def test_fractions_are_nested_and_sized():
    split = make_split(TRAIN, TEST, [0.5, 0.01, 0.1, 0.07], seed=3)
    fr = split["fractions"]
    assert list(fr) == ["0.01", "0.07", "0.1", "0.5", "1.0"]  # 1.0 always included
    assert [len(fr[k]) for k in fr] == [1, 7, 10, 50, 100]  # exact ceil: 0.07 * 100 = 7
    assert fr["1.0"] == sorted(TRAIN)
    keys = list(fr)
    for small, big in zip(keys, keys[1:]):
        assert set(fr[small]) < set(fr[big])
    assert split["test"] == sorted(TEST) and split["seed"] == 3
    assert all(ids == sorted(ids) for ids in fr.values())


def test_subset_size_rounds_up_and_never_empty():
    assert subset_size(0.1, 30) == 3
    assert subset_size(0.1, 31) == 4
    assert subset_size(0.01, 30) == 1
    assert subset_size(1e-9, 5) == 1
    assert subset_size(1.0, 5) == 5


def test_deterministic_and_independent_of_input_order():
    a = make_split(TRAIN, TEST, [0.1, 0.3], seed=0)
    shuffled = TRAIN[:]
    random.Random(1).shuffle(shuffled)
    b = make_split(shuffled, list(reversed(TEST)), [0.3, 0.1, 0.1], seed=0)
    assert a == b
    c = make_split(TRAIN, TEST, [0.1, 0.3], seed=1)
    assert c["fractions"]["0.1"] != a["fractions"]["0.1"]  # the seed matters
    assert c["fractions"]["1.0"] == a["fractions"]["1.0"]


def test_subset_is_not_just_the_first_ids():
    fr = make_split(TRAIN, TEST, [0.1], seed=0)["fractions"]["0.1"]
    assert fr != sorted(TRAIN)[:10]
    assert len({i.split("/")[0] for i in fr}) > 1  # drawn from several scenes


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_fraction_rejected(bad):
    with pytest.raises(ValueError, match=rf"data fraction {bad!r} is not a number in \(0, 1\]"):
        make_split(TRAIN, TEST, [0.1, bad], seed=0)


def test_bad_ids_rejected():
    with pytest.raises(ValueError, match="duplicate train ids"):
        make_split(TRAIN + TRAIN[:1], TEST, [0.1], seed=0)
    with pytest.raises(ValueError, match=r"in both train and test: \['scene_00/rgb_00000'\]"):
        make_split(TRAIN, TEST + TRAIN[:1], [0.1], seed=0)
    with pytest.raises(ValueError, match="no train ids"):
        make_split([], TEST, [0.1], seed=0)


def test_write_splits_from_prepared_datasets(tmp_path):
    make_nyu(tmp_path / "raw_nyu")
    make_ade(tmp_path / "raw_ade")
    prep(NYUV2, tmp_path / "raw_nyu", tmp_path / "prep" / "nyuv2")
    prep(ADE20K, tmp_path / "raw_ade", tmp_path / "prep" / "ade20k")
    prepared = {name: PreparedDataset(tmp_path / "prep" / name) for name in ("nyuv2", "ade20k")}

    paths = write_splits(prepared, tmp_path / "splits", [0.5], seed=0)
    assert paths == {"nyuv2": tmp_path / "splits" / "nyuv2.json", "ade20k": tmp_path / "splits" / "ade20k.json"}
    nyu = json.loads(paths["nyuv2"].read_text())
    assert nyu["dataset"] == "nyuv2" and nyu["seed"] == 0
    assert (nyu["train_split"], nyu["test_split"]) == ("train", "test")
    assert nyu["fractions"]["1.0"] == sorted(prepared["nyuv2"].ids("train"))
    assert len(nyu["fractions"]["0.5"]) == 2  # ceil(0.5 * 3)
    assert nyu["test"] == sorted(prepared["nyuv2"].ids("test"))
    assert nyu["data_version"] == prepared["nyuv2"].data_version
    ade = json.loads(paths["ade20k"].read_text())
    assert (ade["train_split"], ade["test_split"]) == ("train", "val")
    assert ade["test"] == ["validation/ADE_val_00000001"]

    before = paths["nyuv2"].read_bytes()
    write_splits(prepared, tmp_path / "splits", [0.5], seed=0)
    assert paths["nyuv2"].read_bytes() == before


def test_subset_restricts_the_training_set_before_fractions(tmp_path):
    from types import SimpleNamespace

    from mdeaux.data.datasets.registry import NYUV2

    train = [f"train/{i:03d}" for i in range(40)]
    fake = SimpleNamespace(spec=NYUV2, ids=lambda split: train if split == "train" else ["test/0"], data_version="v")
    paths = write_splits({"nyuv2": fake}, tmp_path / "splits", [0.5, 1.0], seed=3, subsets={"nyuv2": 0.1})
    doc = json.loads(paths["nyuv2"].read_text())
    full, half = doc["fractions"]["1.0"], doc["fractions"]["0.5"]
    assert doc["subset"] == 0.1 and len(full) == 4 and len(half) == 2
    assert set(half) <= set(full) <= set(train)
    again = json.loads(write_splits({"nyuv2": fake}, tmp_path / "again", [0.5, 1.0], seed=3, subsets={"nyuv2": 0.1})["nyuv2"].read_text())
    assert again["fractions"] == doc["fractions"]
    with pytest.raises(ValueError):
        write_splits({"nyuv2": fake}, tmp_path / "bad", [1.0], seed=3, subsets={"nyuv2": 1.5})


def test_a_truncated_split_file_names_itself_and_the_fix(tmp_path):
    """Issue 13 #8: a truncated split JSON said only "Expecting value: line 9 column 7"."""
    path = tmp_path / "nyuv2.json"
    path.write_text('{"dataset": "nyuv2", "fractions": {"1.0": ["a", "b"')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a split file \(Expecting .*\); run `dvc repro split`"):
        SplitFile(path)
