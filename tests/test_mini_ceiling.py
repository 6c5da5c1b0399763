"""tools/mini_ceiling.py, the upper bound the README quotes for the mini world's depth: it runs, and its
reference number is the constant predictor's AbsRel computed from the rendered rooms themselves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "mini_ceiling.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("mini_ceiling", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ceiling_scores_against_the_median_of_the_held_out_rooms(tool, capsys):
    result = tool.main(["--rooms", "4", "--held-out", "3", "--steps", "3", "--batch-size", "2"])
    _, depths = tool.render(3, "held-out", 0)  # the same rooms: seeds derive from (seed, "held-out", i)
    crops = np.stack([d[4:116, 24:136] for d in depths]).astype(np.float64)  # centre 112 of 120 x 160
    median = np.exp(np.median(np.log(crops)))
    assert result["constant"] == pytest.approx(np.mean(np.abs(median - crops) / crops), rel=1e-4)
    assert all(np.isfinite(v) and v > 0 for v in result.values())
    assert "held-out AbsRel: model" in capsys.readouterr().out
