"""The cost model of ``mdeaux runs --cost``: GPU hours of the planned runs, trained alone or in cohorts.

A global step of one run alone costs ``step_seconds`` (a baseline takes the depth step only: half),
of which each backbone pass of a batch is ``batch_size * backbone_image_seconds``; the rest is the
run's own decoder, heads and updates. A cohort (training/cohort.py) pays one backbone pass for the
depth batch and one per distinct auxiliary batch per step, plus every run's own part. An evaluation
costs ``eval_image_seconds`` per test image for one run alone, of which ``eval_backbone_seconds``
(the two flip-TTA backbone forwards) is paid once per cohort. Evaluation counts the same images both
ways: every ``train.eval_every`` steps and at the end, ``train.eval_max_images`` of the test split
(``runner.cost.test_images`` in the paper profile, paper Table 2; the split files in the mini one), or
``train.periodic_eval_images`` of a larger split plus two full evaluations at the end.
All parts come from ``runner.cost``, measured with ``mdeaux bench --cohort K``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdeaux.data.split import SplitFile
from mdeaux.params import Cost, Params
from mdeaux.paths import Paths
from mdeaux.training.cohort import aux_key
from mdeaux.training.config import RunConfig


@dataclass(frozen=True)
class Hours:
    train: float
    eval: float

    @property
    def total(self) -> float:
        return self.train + self.eval

    def __add__(self, other: Hours) -> Hours:
        return Hours(self.train + other.train, self.eval + other.eval)


ZERO = Hours(0.0, 0.0)


def test_images(paths: Paths, params: Params, name: str) -> int:
    """Test images of depth dataset ``name``: paper Table 2 in the paper profile (needs no data), else
    its split file's test list (a run evaluates at most ``train.eval_max_images`` of them)."""
    if params.profile == "paper":
        counts = params.runner.cost.test_images
        if name not in counts:
            raise KeyError(f"params.yaml runner.cost.test_images has no entry for {name!r}: add its test split size")
        n = counts[name]
    else:
        split = paths.split_of(name)
        n = len(SplitFile(split).test) if split.is_file() else 0
    return n


def _backbone_step(cfg: RunConfig, cost: Cost) -> float:
    """Seconds of one backbone pass of a training batch."""
    return cfg.train.batch_size * cost.backbone_image_seconds


def _own_step(cfg: RunConfig, cost: Cost) -> float:
    """Seconds of a run's own part of a global step: decoder, heads and updates (a baseline: half)."""
    own = cost.step_seconds - 2 * _backbone_step(cfg, cost)
    if own <= 0:
        raise ValueError(f"params.yaml runner.cost: step_seconds ({cost.step_seconds}) must exceed the two backbone "
                         f"passes of a step (2 x batch {cfg.train.batch_size} x backbone_image_seconds)")
    return own / 2 if cfg.baseline else own


def _evaluated(cfg: RunConfig, images: int) -> int:
    """Test images scored over the run: at every evaluation at most ``train.eval_max_images``, or
    ``train.periodic_eval_images`` of a larger split and then the whole split twice (training/loop.py)."""
    t = cfg.train
    evaluations = -(-t.iterations // t.eval_every)
    n = min(images, t.eval_max_images or images)
    periodic = min(n, t.periodic_eval_images or n)
    return evaluations * periodic + (2 * n if periodic < n else 0)


def alone(cfg: RunConfig, cost: Cost, images: int) -> Hours:
    """One run trained by itself."""
    passes = 1 if cfg.baseline else 2
    step = passes * _backbone_step(cfg, cost) + _own_step(cfg, cost)
    return Hours(cfg.train.iterations * step / 3600, _evaluated(cfg, images) * cost.eval_image_seconds / 3600)


def together(cfgs: list[RunConfig], cost: Cost, images: int) -> Hours:
    """Runs of one cohort trained together: shared backbone passes, each run's own part."""
    first = cfgs[0]
    batches = 1 + len({aux_key(c) for c in cfgs if not c.baseline})
    step = batches * _backbone_step(first, cost) + sum(_own_step(c, cost) for c in cfgs)
    own_eval = cost.eval_image_seconds - cost.eval_backbone_seconds
    per_image = cost.eval_backbone_seconds + len(cfgs) * own_eval
    return Hours(first.train.iterations * step / 3600, _evaluated(first, images) * per_image / 3600)
