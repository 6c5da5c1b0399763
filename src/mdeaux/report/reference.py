"""The reference predictor of every report, and the learning check against it.

Per depth dataset, the reference predictor answers every test image with one constant map: the median
depth of the dataset's whole training split. It is scored with the runs' own protocol (the test images
they are scored on, training/evaluate.py's dataset view, training/metrics.py's clamp, clip and mask), so
a table shows what "learned something" means: a run that does not beat a constant has learned nothing
about the images. The median is taken over the pixels the protocol scores (the evaluation mask of each
training ground truth, after SUN RGB-D's 8 m clip and KITTI's KB crop).

`mdeaux reference` (the `reference` stage) writes ``results/reference.json``; the report draws it in
every table and figure, copies it into ``reports/metrics.json`` and marks every run whose best AbsRel is
not below ``report.learned_below`` x the reference's (``not_learned``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from mdeaux import atomic
from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile
from mdeaux.training.depth_transforms import dataset_view
from mdeaux.training.evaluate import scored_ids
from mdeaux.training.metrics import aggregate, evaluate_depth

log = logging.getLogger(__name__)

MEDIAN_BINS = 1 << 16  # log-spaced histogram bins between the dataset's min_depth and max_depth
FILE = "reference.json"  # under results/


def scored_depths(gt: np.ndarray, spec) -> np.ndarray:
    """The ground-truth depths the evaluation scores (training/metrics.py evaluate_depth: clip, then mask)."""
    if spec.eval_clip_depth is not None:
        gt = np.minimum(gt, spec.eval_clip_depth)
    return gt[spec.eval_mask(gt)]


def median_depth(maps: Iterable[np.ndarray], lo: float, hi: float, bins: int = MEDIAN_BINS) -> float:
    """The median of every value in ``maps`` (1-D arrays of depths in (lo, hi)), streamed through a
    histogram of ``bins`` log-spaced bins, so memory stays fixed however large the training split; the
    value is interpolated inside its bin, within a factor (hi / lo) ** (1 / bins) of the exact median
    (1.4e-4 relative for NYUv2's 0.001-10 m)."""
    counts = np.zeros(bins, dtype=np.int64)
    scale = bins / np.log(hi / lo)
    for values in maps:
        index = np.floor((np.log(np.asarray(values, dtype=np.float64)) - np.log(lo)) * scale).astype(np.int64)
        counts += np.bincount(np.clip(index, 0, bins - 1), minlength=bins)
    total = int(counts.sum())
    if total == 0:
        raise ValueError(f"no depth in ({lo}, {hi}) m to take a median of")
    cum = np.cumsum(counts)
    k = int(np.searchsorted(cum, total / 2))
    inside = (total / 2 - (cum[k] - counts[k])) / counts[k]  # share of bin k below the median
    return float(lo * np.exp((k + inside) / scale))


@dataclass
class Reference:
    """A dataset's reference predictor: its constant, where it came from, and its scores."""

    dataset: str
    median_depth: float
    train_images: int
    metrics: dict[str, float]
    test_images: int

    def as_json(self) -> dict:
        return {"median_depth": round(self.median_depth, 6), "train_images": self.train_images,
                "test_images": self.test_images, "metrics": self.metrics}


def reference(name: str, paths, params, progress: bool = True) -> Reference:
    """The reference predictor of depth dataset ``name``, scored on the test images the runs are scored on."""
    spec, aug = get_spec(name), params.augment[name]
    data, split = PreparedDataset(paths.prepared_of(name)), SplitFile(paths.split_of(name))
    train_ids = split.train(1.0)
    test_ids = scored_ids(split, params.train.eval_max_images)

    def ground_truths(ids: list[str], what: str):
        for sample_id in tqdm(ids, desc=f"{name} {what}", unit="img", disable=not progress, leave=False):
            sample = data.decode(sample_id)
            if sample["depth"] is not None:
                yield dataset_view(sample["image"], sample["depth"], kb=aug.kb_crop)[1]

    median = median_depth((scored_depths(gt, spec) for gt in ground_truths(train_ids, "train")),
                          spec.min_depth, spec.max_depth)
    scores = [evaluate_depth(gt, np.full(gt.shape, median, dtype=np.float32), spec) for gt in ground_truths(test_ids, "test")]
    return Reference(name, median, len(train_ids), aggregate(scores), len(scores))


def write(paths, params, progress: bool = True) -> dict[str, dict]:
    """``results/reference.json``: the reference predictor of every depth dataset of params ``datasets`` that
    runs can train on (one with an ``augment`` entry; not ``nyuv2_labeled``, which only exercises a reader)."""
    out = {}
    for name in params.datasets:
        if get_spec(name).task != "depth" or name not in params.augment:
            continue
        ref = reference(name, paths, params, progress)
        log.info("%s: median training depth %.3f m (%d images); constant predictor abs_rel %.4f a1 %.4f on %d test "
                 "images", name, ref.median_depth, ref.train_images, ref.metrics["abs_rel"], ref.metrics["a1"],
                 ref.test_images)
        out[name] = ref.as_json()
    atomic.write_json(paths.results / FILE, out)
    return out


def not_learned(runs: list[dict], reference: Mapping[str, Any], below: float) -> list[dict]:
    """The runs (train.json entries) whose best AbsRel is not below ``below`` x the AbsRel of their depth
    dataset's reference predictor (``reference``: results/reference.json)."""
    out = []
    for run in runs:
        depth = run["config"]["depth_dataset"]
        if depth not in reference:
            raise KeyError(f"results/reference.json has no reference predictor for {depth!r} (run {run['label']}): "
                           "add it to params.yaml `datasets` and run `dvc repro reference`")
        if not run["metrics"]["best"]["abs_rel"] < below * reference[depth]["metrics"]["abs_rel"]:
            out.append(run)
    return out


def read(paths) -> dict[str, dict]:
    """results/reference.json (the `reference` stage's output)."""
    path = paths.results / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro reference` (or `mdeaux reference`) first")
    return json.loads(path.read_text())
