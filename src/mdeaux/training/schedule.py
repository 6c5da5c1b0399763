"""DINOv2's depth schedule (DINOv2 depth config ``lr_config``, ``momentum_config``,
``runner = dict(type="IterBasedRunner", max_iters=38400)``; docs/protocol.md), as mmcv 1.x runs it.

* ``lr_config = dict(policy="CosineAnnealing", by_epoch=False, min_lr_ratio=1e-8, warmup="linear",
  warmup_iters=12800, warmup_ratio=1e-3)`` -> mmcv ``CosineAnnealingLrUpdaterHook`` with
  ``LrUpdaterHook.get_warmup_lr`` (mmcv/runner/hooks/lr_updater.py).
* ``momentum_config = dict(policy="OneCycle")`` -> mmcv ``OneCycleMomentumUpdaterHook`` defaults
  (mmcv/runner/hooks/momentum_updater.py): Adam beta1 cosine-annealed 0.95 -> 0.85 -> 0.95.

Both hooks act in ``before_train_iter``, so ``it`` is the 0-based index of the iteration about to run
(``runner.iter``, the number of finished iterations) and ``total`` is ``runner.max_iters``.
"""

from __future__ import annotations

from math import cos, pi

import torch

WARMUP_RATIO = 1e-3  # DINOv2 depth config lr_config.warmup_ratio
MIN_LR_RATIO = 1e-8  # DINOv2 depth config lr_config.min_lr_ratio
PCT_START = 0.3  # mmcv OneCycleMomentumUpdaterHook default pct_start
BASE_MOMENTUM = 0.85  # mmcv OneCycleMomentumUpdaterHook default base_momentum
MAX_MOMENTUM = 0.95  # mmcv OneCycleMomentumUpdaterHook default max_momentum


def annealing_cos(start: float, end: float, factor: float) -> float:
    """Cosine from ``start`` (factor 0) to ``end`` (factor 1) (mmcv lr_updater.annealing_cos, weight=1)."""
    return end + 0.5 * (start - end) * (cos(pi * factor) + 1)


def _check_iter(it: int, total: int) -> None:
    if total < 1:
        raise ValueError(f"total iterations must be >= 1, got {total}")
    if not 0 <= it < total:
        raise ValueError(f"iteration {it} is outside [0, {total}) (0-based index of the iteration about to run)")


def lr_factor(
    it: int, total: int, warmup_iters: int, warmup_ratio: float = WARMUP_RATIO, min_lr_ratio: float = MIN_LR_RATIO
) -> float:
    """lr / base lr at iteration ``it``: linear warmup on top of cosine annealing to ``min_lr_ratio``.

    regular = annealing_cos(1, min_lr_ratio, it / total) (CosineAnnealingLrUpdaterHook.get_lr, by_epoch=False);
    for it < warmup_iters: regular * (1 - (1 - it / warmup_iters) * (1 - warmup_ratio)) (get_warmup_lr "linear").
    ``warmup_iters = 0`` means no warmup.
    """
    _check_iter(it, total)
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    if not 0 < warmup_ratio <= 1:  # mmcv LrUpdaterHook asserts 0 < warmup_ratio <= 1
        raise ValueError(f"warmup_ratio must be in (0, 1], got {warmup_ratio}")
    regular = annealing_cos(1.0, min_lr_ratio, it / total)
    if it < warmup_iters:  # LrUpdaterHook.before_train_iter: warmup while cur_iter < warmup_iters
        k = (1 - it / warmup_iters) * (1 - warmup_ratio)
        return regular * (1 - k)
    return regular


def one_cycle_beta1(
    it: int,
    total: int,
    pct_start: float = PCT_START,
    base_momentum: float = BASE_MOMENTUM,
    max_momentum: float = MAX_MOMENTUM,
) -> float:
    """Adam beta1 at iteration ``it`` (mmcv OneCycleMomentumUpdaterHook, two phases, anneal "cos").

    Phase 1 ends at float(pct_start * total) - 1: cos from max_momentum to base_momentum;
    phase 2 ends at total - 1: cos from base_momentum back to max_momentum.
    """
    _check_iter(it, total)
    if not 0 <= pct_start <= 1:
        raise ValueError(f"pct_start must be in [0, 1], got {pct_start}")
    phases = [
        (float(pct_start * total) - 1, max_momentum, base_momentum),
        (total - 1, base_momentum, max_momentum),
    ]
    start_iter = 0.0
    for i, (end_iter, start_mom, end_mom) in enumerate(phases):
        if it <= end_iter or i == len(phases) - 1:
            span = end_iter - start_iter
            # A zero-length phase (mmcv would divide by zero) is taken at its end value.
            pct = (it - start_iter) / span if span != 0 else 1.0
            return annealing_cos(start_mom, end_mom, pct)
        start_iter = end_iter
    raise AssertionError("unreachable")


def apply_schedule(
    optimizer: torch.optim.Optimizer,
    it: int,
    total: int,
    warmup_iters: int,
    warmup_ratio: float = WARMUP_RATIO,
    min_lr_ratio: float = MIN_LR_RATIO,
    one_cycle: bool = True,
    pct_start: float = PCT_START,
    base_momentum: float = BASE_MOMENTUM,
    max_momentum: float = MAX_MOMENTUM,
) -> tuple[float, float | None]:
    """Set every param group's lr (initial_lr * lr_factor) and, with ``one_cycle``, its beta1.

    Call before the optimizer step of iteration ``it``. Returns (lr factor, beta1 or None).
    """
    factor = lr_factor(it, total, warmup_iters, warmup_ratio, min_lr_ratio)
    beta1 = one_cycle_beta1(it, total, pct_start, base_momentum, max_momentum) if one_cycle else None
    for index, group in enumerate(optimizer.param_groups):
        if "initial_lr" not in group:
            raise KeyError(
                f"param group {index} has no 'initial_lr': store each group's base lr there when building the "
                "optimizer (as mmcv LrUpdaterHook.before_run does with group.setdefault('initial_lr', group['lr']))"
            )
        group["lr"] = group["initial_lr"] * factor
        if beta1 is not None:
            if "betas" in group:  # Adam-style (mmcv MomentumUpdaterHook._set_momentum)
                group["betas"] = (beta1, group["betas"][1])
            elif "momentum" in group:  # SGD-style
                group["momentum"] = beta1
            else:
                raise KeyError(f"param group {index} has neither 'betas' nor 'momentum' for the one-cycle schedule")
    return factor, beta1
