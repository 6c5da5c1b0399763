"""Cohorts: runs that feed the frozen backbone the very same images, trained together.

The backbone is frozen and a run's batches are a pure function of its settings (training/stream.py),
so runs that agree on everything that decides the depth batches, the evaluations and the backbone's
output (``cohort_key``) can share one backbone pass per batch: per step one forward of the depth
batch and one of each distinct auxiliary batch (``aux_key``), and at each evaluation one pass of the
test images, then each run's own decoder, heads, optimizers and schedules, exactly as alone. A run
trained in a cohort gives the numbers it gives alone (bit for bit on CPU in fp32; tests/test_cohort.py).

The planner groups the missing runs by ``cohort_key`` (runs/cohorts.py); training refuses a group
whose runs do not share it (training/loop.py).
"""

from __future__ import annotations

import json

from mdeaux.training.config import RunConfig

# What decides the backbone's output on a batch: its weights, and the taps and final norm that follow
# the decoder type (model/specs.py resolve_spec). The decoder's own settings do not.
BACKBONE_KEYS = ("backbone", "decoder_type", "weights_dir", "tiny", "backbone_seed")
# What decides the depth batches, the evaluation steps and images, and the numerics of the backbone pass.
TRAIN_KEYS = ("batch_size", "iterations", "eval_every", "eval_max_images", "periodic_eval_images", "flip_tta",
              "precision", "tf32", "checkpoint_every")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def cohort_key(cfg: RunConfig) -> str:
    """Runs with the same key read identical depth batches and test images through the same backbone."""
    model, train = cfg.model.model_dump(mode="json"), cfg.train.model_dump(mode="json")
    return _canonical({
        "profile": cfg.profile,
        "backbone": {k: model[k] for k in BACKBONE_KEYS},
        "depth": [cfg.depth_dataset, cfg.fraction, cfg.seed],
        "augment": cfg.augment[cfg.depth_dataset].model_dump(mode="json"),
        "train": {k: train[k] for k in TRAIN_KEYS},
    })


def aux_key(cfg: RunConfig) -> str | None:
    """Runs of one cohort with the same key also read identical auxiliary batches (None: a baseline,
    which takes no auxiliary step)."""
    if cfg.baseline:
        return None
    return _canonical({
        "datasets": cfg.aux_datasets,
        "draw": cfg.train.aux_draw,
        "augment": {name: cfg.augment[name].model_dump(mode="json") for name in cfg.aux_datasets},
    })
