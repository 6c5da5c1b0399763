"""Tests for mdeaux.training.metrics against hand-computed values."""

import math

import numpy as np
import pytest

from mdeaux.data.datasets.registry import ADE20K, NYUV2
from mdeaux.training.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    aggregate,
    depth_metrics,
    evaluate_depth,
    is_better,
)


def test_every_metric_by_hand():
    gt = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.2, 2.0, 3.0])
    m = depth_metrics(gt, pred)
    assert list(m) == list(METRICS)
    # thresh = max(gt/pred, pred/gt) = 1.2, 1.0, 4/3
    assert m["a1"] == pytest.approx(2 / 3)
    assert m["a2"] == 1.0 and m["a3"] == 1.0
    assert m["abs_rel"] == pytest.approx((0.2 / 1 + 0 + 1 / 4) / 3)
    assert m["sq_rel"] == pytest.approx((0.04 / 1 + 0 + 1 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0.04 + 0 + 1) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(1 / 1.2) ** 2 + math.log(4 / 3) ** 2) / 3))
    assert m["log_10"] == pytest.approx((abs(math.log10(1 / 1.2)) + abs(math.log10(4 / 3))) / 3)
    e = [math.log(1.2), 0.0, math.log(0.75)]
    mean_e2 = sum(x * x for x in e) / 3
    mean_e = sum(e) / 3
    assert m["silog"] == pytest.approx(100 * math.sqrt(mean_e2 - mean_e**2))


def test_a_thresholds_are_strict():
    gt = np.array([1.0, 1.0, 1.0])
    pred = np.array([1.25, 1.25**2, 1.25**3])  # exactly on the thresholds -> not counted
    m = depth_metrics(gt, pred)
    assert m["a1"] == 0.0 and m["a2"] == pytest.approx(1 / 3) and m["a3"] == pytest.approx(2 / 3)


def test_silog_nan_becomes_zero_and_empty_is_nan():
    # perfect scale-shifted prediction: err constant, so mean(err^2) - mean(err)^2 is 0 or a tiny negative
    m = depth_metrics(np.array([1.0, 3.0, 7.0]), np.array([2.0, 6.0, 14.0]))
    assert m["silog"] == pytest.approx(0.0, abs=1e-5) and not math.isnan(m["silog"])
    empty = depth_metrics(np.array([]), np.array([]))
    assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(ValueError, match="> 0"):
        depth_metrics(np.array([1.0]), np.array([0.0]))


def test_eigen_crop_and_range_via_nyu_spec():
    gt = np.full((480, 640), 2.0, np.float32)
    pred = np.full((480, 640), 2.0, np.float32)
    pred[44, :] = 9.0  # row 44: outside the eigen crop [45:471, 41:601]
    pred[:, 40] = 9.0
    pred[:, 601] = 9.0
    pred[471, :] = 9.0
    gt[100, 100] = 10.0  # gt >= max_depth (10): excluded (strict <)
    pred[100, 100] = 1.0
    gt[101, 100] = 0.0  # invalid gt
    m = evaluate_depth(gt, pred, NYUV2)
    assert m["abs_rel"] == 0.0 and m["a1"] == 1.0 and m["rmse"] == 0.0
    n = 426 * 560 - 2  # eigen box minus the two excluded pixels
    pred[200, 300] = 3.0  # one wrong pixel inside: |2 - 3| / 2 = 0.5
    m = evaluate_depth(gt, pred, NYUV2)
    assert m["abs_rel"] == pytest.approx(0.5 / n)
    assert m["rmse"] == pytest.approx(math.sqrt(1.0 / n))
    assert m["a1"] == pytest.approx((n - 1) / n)


def test_prediction_clamped_to_depth_range():
    gt = np.full((480, 640), 5.0, np.float32)
    pred = np.full((480, 640), 5.0, np.float32)
    pred[200, 300] = 25.0  # clamped to max_depth 10 -> |5 - 10| / 5 = 1
    pred[201, 300] = -3.0  # clamped to min_depth 1e-3
    n = 426 * 560
    m = evaluate_depth(gt, pred, NYUV2)
    assert m["abs_rel"] == pytest.approx((1.0 + (5 - 1e-3) / 5) / n)


def test_no_valid_pixel_gives_nan_and_bad_input():
    m = evaluate_depth(np.zeros((480, 640)), np.ones((480, 640)), NYUV2)
    assert all(math.isnan(v) for v in m.values())
    with pytest.raises(ValueError, match="equal size"):
        evaluate_depth(np.zeros((480, 640)), np.ones((480, 641)), NYUV2)
    with pytest.raises(ValueError, match="depth range"):
        evaluate_depth(np.zeros((4, 4)), np.ones((4, 4)), ADE20K)


def test_aggregate_ignores_nan():
    a = {m: 1.0 for m in METRICS}
    b = {m: 3.0 for m in METRICS}
    c = {m: math.nan for m in METRICS}
    out = aggregate([a, b, c])
    assert out == {m: 2.0 for m in METRICS}
    assert all(math.isnan(v) for v in aggregate([c]).values())
    with pytest.raises(ValueError, match="lacks metric"):
        aggregate([{"a1": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])


def test_is_better():
    assert HIGHER_IS_BETTER == {"a1", "a2", "a3"}
    assert is_better("a1", 0.9, 0.8) and not is_better("a1", 0.8, 0.9)
    assert is_better("abs_rel", 0.1, 0.2) and not is_better("abs_rel", 0.2, 0.1)
    assert not is_better("rmse", 0.3, 0.3)
    assert is_better("rmse", 0.3, None) and is_better("rmse", 0.3, math.nan)
    assert not is_better("rmse", math.nan, 0.3)
    with pytest.raises(ValueError, match="unknown metric"):
        is_better("psnr", 1.0, 2.0)


# found by mutation testing (make mutate; docs/mutation.md): inputs that tell the surviving mutants apart
def test_silog_that_rounds_to_nan_is_zero():
    gt = np.array([1.0, 2.0, 4.0])
    err = np.log(gt * 1.5) - np.log(gt)  # the same log error everywhere: its variance rounds below zero here
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.sqrt(np.mean(err**2) - np.mean(err) ** 2))
    assert depth_metrics(gt, gt * 1.5)["silog"] == 0.0  # toolbox calculate: if np.isnan(silog): silog = 0


def test_a3_counts_only_ratios_below_its_threshold():
    m = depth_metrics(np.ones(4), np.array([1.25, 1.25**2, 1.25**3, 3.0]))
    assert (m["a1"], m["a2"], m["a3"]) == (0.0, 0.25, 0.5)


def test_bad_vectors_and_maps_are_refused():
    for gt, pred in ((np.ones(3), np.ones(2)), (np.ones(2), np.ones(3)), (np.ones((2, 2)), np.ones((2, 2))),
                     (np.float64(1.0), np.float64(1.0))):
        with pytest.raises(ValueError, match="1-D vectors of equal length"):
            depth_metrics(gt, pred)
    with pytest.raises(ValueError, match="pred must be finite and > 0"):
        depth_metrics(np.ones(2), np.array([1.0, -1.0]))
    for gt, pred in ((np.ones((4, 5)), np.ones((4, 4))), (np.ones((4, 4)), np.ones((4, 5))),
                     (np.ones((2, 4, 4)), np.ones((2, 4, 4))), (np.ones(4), np.ones(4))):
        with pytest.raises(ValueError, match="maps of equal size"):
            evaluate_depth(gt, pred, NYUV2)
    from dataclasses import replace

    with pytest.raises(ValueError, match="depth range"):
        evaluate_depth(np.ones((4, 4)), np.ones((4, 4)), replace(NYUV2, max_depth=None))


def test_a_tie_or_a_missing_value_is_no_improvement():
    assert not is_better("a1", 0.8, 0.8) and not is_better("abs_rel", 0.2, 0.2)
    assert not is_better("rmse", None, 0.3)
