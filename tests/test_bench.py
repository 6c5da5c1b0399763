"""`mdeaux bench` runs end to end on the tiny world and its FLOP count matches a hand count."""

import re

import pytest
from conftest import mdeaux

from mdeaux.bench import hidden_swiglu, vit_flops


def test_vit_flops_by_hand():
    # ViT-S/14 on 28x42: 2x3 patches + CLS = 7 tokens, d = 384, 12 blocks, plain MLP 4d
    n, d = 7, 384
    block = 2 * n * d * 3 * d + 2 * n * d * d + 4 * n * n * d + 2 * 2 * n * d * 4 * d
    assert vit_flops("dinov2_vits14", 28, 42) == 2 * 6 * 3 * 14 * 14 * d + 12 * block
    assert hidden_swiglu(1536) == 4096  # ViT-g/14 SwiGLU width (dinov2 SwiGLUFFNFused)
    assert vit_flops("dinov2_vits14", 27, 41) == vit_flops("dinov2_vits14", 28, 42)  # padded to 14
    with pytest.raises(KeyError):
        vit_flops("tiny", 28, 28)


def numbers(line: str) -> list[float]:
    return [float(t) for t in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?(?![\d.])", line)]


def test_bench_prints_step_floor_loader_memory_cohort_vmap_and_agreement(tiny_world):
    out = mdeaux(["bench", "--config", "mini", "--steps", "2", "--warmup", "1", "--workers", "0", "--cohort", "2",
                  "--vmap", "--agreement", "2"], tiny_world).stdout
    assert "[mini] tiny" in out, out
    top = {line.strip().split()[0]: numbers(line) for line in out.splitlines() if line.startswith("  ") and line[2] != " "}
    step, floor, overhead = top["global"][0], top["floor"][0], top["overhead"][0]
    if next(line for line in out.splitlines() if line.strip().startswith("overhead")).split()[1].startswith("-"):
        overhead = -overhead
    # step and floor are printed to 0.1 ms (each +-0.05) and the overhead to 0.1 % (+-0.05): the overhead must
    # lie in what the printed step and floor allow (a fixed tolerance failed at 112.5 ms: 59.8 vs 59.73)
    assert step > 0 and floor > 0
    assert 100 * ((step - 0.05) / (floor + 0.05) - 1) - 0.05 <= overhead <= 100 * ((step + 0.05) / (floor - 0.05) - 1) + 0.05
    loader, consumed, factor = top["loader"]
    # printed with one decimal each: the factor to 0.05, and the loader rate it is computed from to 0.05
    assert consumed == pytest.approx(1000 / step, abs=0.051)
    assert factor == pytest.approx(loader * step / 1000, abs=0.051 + 0.051 * step / 1000)
    assert top["peak"][0] > 0
    lines = {line.strip().split("  ")[0]: line for line in out.splitlines() if line.startswith("    ")}
    alone, per_run, ratio = numbers(lines["global step per run"])
    backbone, decoder = numbers(lines["step split"])
    assert alone > 0 and per_run > 0 and ratio == pytest.approx(per_run / alone, abs=0.006)
    assert 0 < backbone < per_run * 2 and decoder == pytest.approx((per_run * 2 - backbone) / 2, rel=0.01, abs=0.1)
    k, loop_ms, vmap_ms, vmap_ratio = numbers(lines["decoders batched"])
    assert k == 2 and loop_ms > 0 and vmap_ratio == pytest.approx(vmap_ms / loop_ms, abs=0.006)
    # CPU, fp32: in a cohort each run gives exactly its numbers alone (as two trainings alone do)
    assert numbers(lines["metrics.json values (best and final)"]) == [0, 0], out
    assert numbers(lines["training losses at every step"]) == [0, 0], out
