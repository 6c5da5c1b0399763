"""The reference predictor (report/reference.py): a constant at the median training depth, scored the way
the runs are scored, written by `mdeaux reference`; the report's use of it is tested in test_report.py."""

import json

import numpy as np
import pytest
from conftest import mdeaux

from mdeaux.data.datasets.registry import get
from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile
from mdeaux.params import load
from mdeaux.report.reference import MEDIAN_BINS, median_depth


def test_the_streamed_median_is_within_one_bin_of_the_exact_median():
    rng = np.random.default_rng(0)
    chunks = [np.clip(rng.lognormal(1.0, 0.6, n), 0.01, 9.99) for n in (1000, 1, 5000, 333)]
    exact = float(np.median(np.concatenate(chunks)))
    bin_width = (10.0 / 0.001) ** (1 / MEDIAN_BINS) - 1  # 1.4e-4 relative
    assert median_depth(chunks, 0.001, 10.0) == pytest.approx(exact, rel=bin_width)
    assert median_depth([np.array([2.0, 7.0]), np.array([3.0])], 0.001, 10.0) == pytest.approx(3.0, rel=bin_width)
    assert median_depth([np.full(4, 1.0), np.full(5, 8.0)], 0.001, 10.0) == pytest.approx(8.0, rel=bin_width)
    with pytest.raises(ValueError, match=r"no depth in \(0.001, 10.0\) m"):
        median_depth([np.array([])], 0.001, 10.0)


def test_the_constant_predictor_is_the_median_training_depth_scored_on_the_runs_test_images(tiny_world):
    mdeaux(["reference"], tiny_world)
    ref = json.loads((tiny_world / "results" / "reference.json").read_text())
    assert set(ref) == {"nyuv2"}  # ADE20K, the other dataset of the world, has no depth

    # by hand: every pixel the evaluation scores (NYUv2: the Eigen crop, min < d < max) of every training map
    spec, params = get("nyuv2"), load(tiny_world / "params.yaml")
    data, split = PreparedDataset(tiny_world / "data/prepared/nyuv2"), SplitFile(tiny_world / "data/splits/nyuv2.json")
    gts = lambda ids: [data.decode(i)["depth"] for i in ids]  # noqa: E731
    pixels = np.concatenate([gt[spec.eval_mask(gt)] for gt in gts(split.train(1.0))])
    median = float(np.median(pixels))
    assert ref["nyuv2"]["median_depth"] == pytest.approx(median, rel=2e-4)
    assert ref["nyuv2"]["train_images"] == len(split.train(1.0))

    test = split.test[: params.train.eval_max_images] if params.train.eval_max_images else split.test
    abs_rel = np.mean([np.mean(np.abs(gt[m] - median) / gt[m]) for gt in gts(test) for m in [spec.eval_mask(gt)]])
    delta1 = np.mean([np.mean(np.maximum(gt[m] / median, median / gt[m]) < 1.25) for gt in gts(test) for m in [spec.eval_mask(gt)]])
    assert ref["nyuv2"]["test_images"] == len(test) >= 2
    assert ref["nyuv2"]["metrics"]["abs_rel"] == pytest.approx(abs_rel, rel=1e-3)
    assert ref["nyuv2"]["metrics"]["a1"] == pytest.approx(delta1, abs=1e-3)
