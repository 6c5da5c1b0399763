"""DINOv2 depth schedule: mmcv cosine LR + linear warmup, OneCycle beta1 (DINOv2 depth config lr_config,
momentum_config; mmcv lr_updater.py, momentum_updater.py)."""

from __future__ import annotations

import math

import pytest
import torch

from mdeaux.training.schedule import apply_schedule, lr_factor, one_cycle_beta1

TOTAL, WARMUP = 38_400, 12_800  # DINOv2 NYU DPT config: max_iters, warmup_iters


def reference_lr(t: int) -> float:
    """mmcv CosineAnnealingLrUpdaterHook + get_warmup_lr written out for the DINOv2 depth config
    (lr 1e-4, min_lr_ratio 1e-8, warmup_iters 12800, warmup_ratio 1e-3): lr_cos(t) / lr0, times the
    linear warmup factor for t < 12800."""
    lr0, lr_min = 1e-4, 1e-4 * 1e-8
    lr_cos = lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * t / TOTAL))
    if t < WARMUP:
        lr_cos *= 1 - (1 - t / WARMUP) * (1 - 1e-3)
    return lr_cos / lr0


def test_lr_factor_key_points():
    assert lr_factor(0, TOTAL, WARMUP) == pytest.approx(1e-3, rel=1e-9)  # warmup_ratio * cos(0)-factor 1
    cos_at_warmup_end = 1e-8 + 0.5 * (1 - 1e-8) * (1 + math.cos(math.pi * WARMUP / TOTAL))
    assert lr_factor(WARMUP, TOTAL, WARMUP) == pytest.approx(cos_at_warmup_end, rel=1e-12)
    assert lr_factor(WARMUP, TOTAL, WARMUP) == pytest.approx(0.75, abs=1e-7)
    last = lr_factor(TOTAL - 1, TOTAL, WARMUP)
    assert 1e-8 < last < 1e-7  # min_lr_ratio region


def test_lr_factor_matches_hand_formula():
    for t in (0, 1, 100, 6400, 12_799, 12_800, 12_801, 20_000, 30_000, 38_399):
        assert lr_factor(t, TOTAL, WARMUP) == pytest.approx(reference_lr(t), rel=1e-9)


def test_lr_factor_warmup_is_increasing_then_cosine_decreasing():
    warm = [lr_factor(t, TOTAL, WARMUP) for t in range(0, WARMUP + 1, 64)]
    assert all(b > a for a, b in zip(warm, warm[1:]))
    after = [lr_factor(t, TOTAL, WARMUP) for t in range(WARMUP, TOTAL, 64)]
    assert all(b < a for a, b in zip(after, after[1:]))
    assert lr_factor(5, 10, 0) == pytest.approx(0.5 * (1 + 1e-8))  # no warmup: plain cosine


def test_lr_factor_rejects_bad_iterations():
    with pytest.raises(ValueError, match="outside"):
        lr_factor(TOTAL, TOTAL, WARMUP)
    with pytest.raises(ValueError, match="outside"):
        lr_factor(-1, TOTAL, WARMUP)


def test_every_setting_is_checked_at_its_bounds():
    """Each argument's range, at the boundary and beyond: total >= 1, 0 <= it < total, warmup_iters >= 0,
    0 < warmup_ratio <= 1 (mmcv LrUpdaterHook's assert), 0 <= pct_start <= 1."""
    assert lr_factor(0, 1, 0) == pytest.approx(1.0) and one_cycle_beta1(0, 1) == pytest.approx(0.95)  # total 1 is valid
    for total in (0, -1):
        with pytest.raises(ValueError, match=f"total iterations must be >= 1, got {total}"):
            lr_factor(0, total, 0)
    for it in (11, 10, -1):
        with pytest.raises(ValueError, match=f"iteration {it} is outside"):
            lr_factor(it, 10, 0)
    with pytest.raises(ValueError, match="warmup_iters must be >= 0, got -1"):
        lr_factor(0, 10, -1)
    assert lr_factor(0, 10, 4, warmup_ratio=1.0) == pytest.approx(1.0)  # ratio 1: no warmup drop
    for ratio in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"warmup_ratio must be in \(0, 1\]"):
            lr_factor(0, 10, 4, warmup_ratio=ratio)
    assert one_cycle_beta1(0, 10, pct_start=0.0) == pytest.approx(0.95 - 0.5 * 0.1 * (1 + math.cos(math.pi * 1 / 10)))  # phase 2 only
    assert one_cycle_beta1(9, 10, pct_start=1.0) == pytest.approx(0.85)  # one phase, down to base_momentum
    for pct in (-0.5, 1.5):
        with pytest.raises(ValueError, match=r"pct_start must be in \[0, 1\]"):
            one_cycle_beta1(0, 10, pct_start=pct)


def test_a_zero_length_phase_is_taken_at_its_end_value():
    """pct_start x total = 1 makes phase 1 end at iteration 0, where it starts: mmcv would divide by zero;
    we take the phase's end value, base_momentum."""
    assert one_cycle_beta1(0, 10, pct_start=0.1) == 0.85
    assert one_cycle_beta1(1, 10, pct_start=0.1) == pytest.approx(0.85 + 0.5 * 0.1 * (1 - math.cos(math.pi / 9)))


def test_one_cycle_beta1():
    end_phase1 = 0.3 * TOTAL - 1  # mmcv: float(pct_start * max_iters) - 1 = 11519
    assert one_cycle_beta1(0, TOTAL) == pytest.approx(0.95)
    assert one_cycle_beta1(int(end_phase1), TOTAL) == pytest.approx(0.85)
    assert one_cycle_beta1(TOTAL - 1, TOTAL) == pytest.approx(0.95)
    middle = int(end_phase1 // 2)
    expected = 0.85 + 0.5 * (0.95 - 0.85) * (1 + math.cos(math.pi * middle / end_phase1))
    assert one_cycle_beta1(middle, TOTAL) == pytest.approx(expected)
    t = 25_000
    pct = (t - end_phase1) / (TOTAL - 1 - end_phase1)
    assert one_cycle_beta1(t, TOTAL) == pytest.approx(0.95 + 0.5 * (0.85 - 0.95) * (1 + math.cos(math.pi * pct)))
    phase1 = [one_cycle_beta1(i, TOTAL) for i in range(0, int(end_phase1) + 1, 128)]
    assert all(b < a for a, b in zip(phase1, phase1[1:]))


def test_apply_schedule_scales_every_group():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    opt = torch.optim.AdamW(
        [{"params": [params[0]], "lr": 9e-5}, {"params": [params[1]], "lr": 1e-3}],
        betas=(0.9, 0.999),
        weight_decay=0.01,
    )
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    factor, beta1 = apply_schedule(opt, 20_000, TOTAL, WARMUP)
    assert factor == pytest.approx(lr_factor(20_000, TOTAL, WARMUP))
    assert beta1 == pytest.approx(one_cycle_beta1(20_000, TOTAL))
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([9e-5 * factor, 1e-3 * factor])
    assert lrs[1] / lrs[0] == pytest.approx(1e-3 / 9e-5)
    assert all(g["betas"] == (pytest.approx(beta1), 0.999) for g in opt.param_groups)
    assert [g["initial_lr"] for g in opt.param_groups] == [9e-5, 1e-3]

    _, none = apply_schedule(opt, 0, TOTAL, WARMUP, one_cycle=False)
    assert none is None and opt.param_groups[0]["betas"][0] == pytest.approx(beta1)
    del opt.param_groups[1]["initial_lr"]
    with pytest.raises(KeyError, match="initial_lr"):
        apply_schedule(opt, 0, TOTAL, WARMUP)
