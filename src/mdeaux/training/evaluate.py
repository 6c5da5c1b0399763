"""Evaluation with the Monocular-Depth-Estimation-Toolbox protocol (docs/protocol.md), and the best
value reached during training (paper Eq. 1).

Each test image goes through the dataset-level view (KITTI's KB crop with its ground truth; a resize
such as SUN RGB-D's 480x640 and the mini profile's ``view_scale`` for the image only); the prediction, clamped to the dataset's depth range,
is resized back to the ground truth's original size, as DINOv2's encode_decode resizes to ori_shape
(dinov2 hub/depth/encoder_decoder.py); with flip TTA the prediction on the flipped image is flipped back and averaged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile
from mdeaux.params import DepthAugment
from mdeaux.training.depth_transforms import dataset_view, rescale
from mdeaux.training.losses import resize_to
from mdeaux.training.metrics import METRICS, aggregate, evaluate_depth, is_better
from mdeaux.training.runtime import Runtime, gather_objects
from mdeaux.training.transforms import normalize


def _predict(models: list, x: torch.Tensor, spec, size, rt: Runtime, precision: str) -> list[torch.Tensor]:
    """Each model's depth on ``x``, from one backbone pass (a cohort's models share their backbone)."""
    with rt.autocast(precision):
        feats = models[0].backbone(x)
        preds = [model.depth(feats=feats) for model in models]
    # DINOv2's encode_decode clamps each prediction to [min, max] before resizing it to the GT
    return [resize_to(pred.float().clamp(spec.min_depth, spec.max_depth), size) for pred in preds]


def predict_test_image(models: list, sample: dict, spec, aug: DepthAugment, flip: bool, rt: Runtime,
                       precision: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(image as viewed, ground truth, each model's prediction at the ground truth's size) of one test sample."""
    image, gt = dataset_view(sample["image"], sample["depth"], kb=aug.kb_crop)
    view = image if aug.resize_to is None else dataset_view(image, None, resize_to=aug.resize_to)[0]
    view = rescale(view, None, aug.view_scale)[0]
    x = torch.from_numpy(normalize(view))[None].to(rt.device)
    if flip:  # the image and its mirror as one batch: one backbone pass, not two at batch 1
        x = torch.cat([x, x.flip(-1)])
    preds = _predict(models, x, spec, gt.shape, rt, precision)
    if flip:  # aug_test: prediction on the flipped image, flipped back, averaged (DINOv2 encoder_decoder aug_test)
        preds = [(pred[:1] + pred[1:].flip(-1)) / 2 for pred in preds]
    return image, gt, [pred[0, 0].cpu().numpy() for pred in preds]


@torch.no_grad()
def evaluate(models: list, data: PreparedDataset, ids: list[str], spec, flip: bool, aug: DepthAugment,
             rt: Runtime | None = None, precision: str = "fp32") -> list[dict[str, float]]:
    """Per model, the toolbox metrics averaged over the test images; each image goes through the
    (shared) backbone once for all models; with several processes each takes a share of ids."""
    rt = rt or Runtime()
    for model in models:
        model.eval()
    per_image = []
    for sample_id in ids[rt.rank :: rt.world]:
        _, gt, preds = predict_test_image(models, data.decode(sample_id), spec, aug, flip, rt, precision)
        per_image.append([evaluate_depth(gt, pred, spec) for pred in preds])
    for model in models:
        model.train()
    rows = gather_objects(per_image, rt)
    return [aggregate([row[i] for row in rows]) for i in range(len(models))]


@torch.no_grad()
def predictions(models: list, data: PreparedDataset, ids: list[str], spec, aug: DepthAugment, rt: Runtime,
                precision: str = "fp32") -> list[dict[str, np.ndarray]]:
    """Per model, its flip-TTA predictions on ``ids`` at the GT's resolution, beside image and GT (keys
    ``ids``, ``image_<i>``, ``gt_<i>``, ``pred_<i>``; one key per image, as test images may differ in
    size): what the qualitative figures (paper Fig. 1 top, App. D) are drawn from."""
    for model in models:
        model.eval()
    arrays: list[dict[str, np.ndarray]] = [{"ids": np.array(ids)} for _ in models]
    for i, sample_id in enumerate(ids):
        image, gt, preds = predict_test_image(models, data.decode(sample_id), spec, aug, True, rt, precision)
        for out, pred in zip(arrays, preds):
            out[f"image_{i}"] = image
            out[f"gt_{i}"] = gt.astype(np.float16)
            out[f"pred_{i}"] = pred.astype(np.float16)
    for model in models:
        model.train()
    return arrays


def scored_ids(split: SplitFile, max_images: int | None) -> list[str]:
    """The test images every evaluation of a run scores (``train.eval_max_images``: the first N, or all)."""
    return split.test[:max_images] if max_images else split.test


def periodic_subset(ids: list[str], n: int | None, dataset: str) -> list[str]:
    """The test images of the periodic evaluations (``train.periodic_eval_images``): all of ``ids``, or,
    when there are more than ``n``, a fixed subset of ``n`` in split order, seeded by the dataset's name
    so that every run of the dataset scores the same images."""
    if n is None or len(ids) <= n:
        return list(ids)
    seed = int.from_bytes(hashlib.sha256(dataset.encode()).digest()[:4], "little")
    keep = np.sort(np.random.default_rng([seed, 3]).choice(len(ids), size=n, replace=False))
    return [ids[i] for i in keep.tolist()]


@dataclass
class Best:
    """Per metric, the best value reached during training (paper Eq. 1) and the step that reached it."""

    values: dict[str, float]
    steps: dict[str, int]

    @classmethod
    def empty(cls) -> Best:
        return cls({}, {})

    def update(self, metrics: dict[str, float], it: int) -> None:
        for name in METRICS:
            value = metrics.get(name)
            if value is not None and value == value and is_better(name, value, self.values.get(name)):
                self.values[name], self.steps[name] = value, it
