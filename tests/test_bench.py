"""`mdeaux bench` runs end to end on the tiny world and its FLOP count matches a hand count."""

import pytest
from conftest import mdeaux

from mdeaux.bench import hidden_swiglu, vit_flops


def test_bench_prints_step_floor_loader_and_memory(tiny_world):
    out = mdeaux(["bench", "--config", "mini", "--steps", "2", "--warmup", "1", "--workers", "0"], tiny_world).stdout
    for what in ("global step", "floor", "overhead", "loader", "peak memory"):
        assert what in out, out
    assert "steps/s vs" in out and "[mini] tiny" in out


def test_vit_flops_by_hand():
    # ViT-S/14 on 28x42: 2x3 patches + CLS = 7 tokens, d = 384, 12 blocks, plain MLP 4d
    n, d = 7, 384
    block = 2 * n * d * 3 * d + 2 * n * d * d + 4 * n * n * d + 2 * 2 * n * d * 4 * d
    assert vit_flops("dinov2_vits14", 28, 42) == 2 * 6 * 3 * 14 * 14 * d + 12 * block
    assert hidden_swiglu(1536) == 4096  # ViT-g/14 SwiGLU width (dinov2 SwiGLUFFNFused)
    assert vit_flops("dinov2_vits14", 27, 41) == vit_flops("dinov2_vits14", 28, 42)  # padded to 14
    with pytest.raises(KeyError):
        vit_flops("tiny", 28, 28)
