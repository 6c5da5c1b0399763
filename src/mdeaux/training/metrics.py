"""Depth metrics of the Monocular-Depth-Estimation-Toolbox (zhyever/Monocular-Depth-Estimation-Toolbox
``depth/core/evaluation/metrics.py``: ``calculate``, ``metrics``, ``pre_eval_to_metrics``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from mdeaux.data.datasets.spec import DatasetSpec

# toolbox calculate() return order
METRICS = ("a1", "a2", "a3", "abs_rel", "rmse", "log_10", "rmse_log", "silog", "sq_rel")
HIGHER_IS_BETTER = {"a1", "a2", "a3"}


def depth_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Toolbox ``calculate`` on 1-D vectors of valid pixels (metres). Empty input -> all nan.

    Computed in float64 (the toolbox uses the input dtype, float32); silog nan -> 0 as in the toolbox.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.ndim != 1 or gt.shape != pred.shape:
        raise ValueError(f"gt and pred must be 1-D vectors of equal length, got {gt.shape} and {pred.shape}")
    if gt.size == 0:
        return {m: math.nan for m in METRICS}  # toolbox: gt.shape[0] == 0 -> nan for all
    for name, arr in (("gt", gt), ("pred", pred)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0 on the evaluated pixels, min is {arr.min()}")
    thresh = np.maximum(gt / pred, pred / gt)
    a1 = (thresh < 1.25).mean()  # toolbox thresholds 1.25, 1.25**2, 1.25**3
    a2 = (thresh < 1.25**2).mean()
    a3 = (thresh < 1.25**3).mean()
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    err = np.log(pred) - np.log(gt)
    with np.errstate(invalid="ignore"):
        silog = np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100  # toolbox: x100
    if np.isnan(silog):
        silog = 0.0  # toolbox calculate: if np.isnan(silog): silog = 0
    log_10 = np.abs(np.log10(gt) - np.log10(pred)).mean()
    values = (a1, a2, a3, abs_rel, rmse, log_10, rmse_log, silog, sq_rel)
    return {m: float(v) for m, v in zip(METRICS, values)}


def evaluate_depth(gt: np.ndarray, pred: np.ndarray, spec: DatasetSpec) -> dict[str, float]:
    """Metrics of one image: pred clamped to [min_depth, max_depth] (DINOv2 depther at test time), both
    clipped to ``spec.eval_clip_depth`` where set, then the toolbox mask ``spec.eval_mask(gt)`` (min < gt <
    max, strict, and the eval crop)."""
    if spec.min_depth is None or spec.max_depth is None:
        raise ValueError(f"dataset {spec.name!r} declares no depth range (task {spec.task!r})")
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(f"gt and pred must be (H, W) maps of equal size, got {gt.shape} and {pred.shape}")
    if np.any(np.isnan(pred)):
        raise ValueError("pred contains nan")
    pred = np.clip(pred, spec.min_depth, spec.max_depth)  # dinov2 encode_decode: clamp(min_depth, max_depth)
    if spec.eval_clip_depth is not None:  # SUN RGB-D: GT and prediction clipped to 8 m (toolbox sunrgbd.py pre_eval)
        gt = np.minimum(gt, spec.eval_clip_depth)
        pred = np.minimum(pred, spec.eval_clip_depth)
    mask = spec.eval_mask(gt)
    return depth_metrics(gt[mask], pred[mask])


def aggregate(per_image: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Dataset value = nan-mean of the per-image values (toolbox ``pre_eval_to_metrics``)."""
    if len(per_image) == 0:
        raise ValueError("aggregate needs at least one per-image result, got none")
    out = {}
    for m in METRICS:
        try:
            vals = np.array([float(r[m]) for r in per_image], dtype=np.float64)
        except KeyError:
            raise ValueError(f"a per-image result lacks metric {m!r}; expected keys {METRICS}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan -> nan, without the warning
            out[m] = float(np.nanmean(vals))
    return out


def is_better(metric: str, new: float, old: float | None) -> bool:
    """True when ``new`` improves on ``old`` (higher for a1-a3, lower otherwise); no/nan old -> True."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new > old if metric in HIGHER_IS_BETTER else new < old
