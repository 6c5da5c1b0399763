"""Shared fixtures: a tiny prepared world (NYUv2 + ADE20K) built by the real CLI stages."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mdeaux.params import load_overlay, overlay

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def clean_env(**extra) -> dict:
    """The test's environment without DVC/MLflow/mdeaux variables of an enclosing run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_", "MDEAUX_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONUNBUFFERED="1", **extra)
    return env


def mdeaux(args, cwd, env=None, check=True, timeout=600):
    out = subprocess.run([sys.executable, "-m", "mdeaux", *args], cwd=cwd, env=env or clean_env(),
                         capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"mdeaux {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def smoke_params(changes: dict | None = None) -> dict:
    """params.yaml with the smoke world (pipeline/smoke.yaml, as `make smoke` runs it) and a test's own changes."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    return overlay(overlay(raw, load_overlay(ROOT / "pipeline" / "smoke.yaml")), changes or {})


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A project folder whose NYUv2 and ADE20K are synthesised, fetched, prepared and split (the smoke
    world's samples), and its tiny ViT pretrained (4 steps), which its runs do not load; Table 3 on NYUv2 with
    ADE20K, 12 iterations with a checkpoint every 3 and an evaluation every 6."""
    root = tmp_path_factory.mktemp("world")
    shutil.copy2(ROOT / "dvc.yaml", root / "dvc.yaml")
    raw = smoke_params({
        "datasets": ["nyuv2", "ade20k"],
        "train.iterations.mini": 12, "train.warmup_iters.mini": 4, "train.eval_every.mini": 6, "train.checkpoint_every.mini": 3,
        # SigLoss warm-up over most of the 12 steps: right after initialisation the depth head predicts near
        # min_depth, where SigLoss's log makes training chaotic and DDP's reordered float sums would not
        # reproduce the single-process run to 1e-4 (DINOv2 sigloss.py: warm_up, warm_iter)
        "train.sigloss_warmup_iters.mini": 10,
        "runner.loader_workers.mini": 0,
        # a random tiny ViT: with the pretrained one (tests/test_pretrain.py; the DAG's runs use it), Adam's first
        # steps turn the float noise of DDP's reordered sums into 0.5 % differences by step 4, and the
        # two-process run would not reproduce the single-process one to 1e-4
        "model.weights_dir.mini": None,
    })
    raw["studies"] = {"table3": dict(raw["studies"]["table3"], aux=["ade20k"])}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for stage in ("synth", "fetch", "prepare", "split", "pretrain"):
        mdeaux([stage], root)
    return root


def pytest_collection_modifyitems(items):
    """The whole-DAG test (tests/test_dag.py, the longest file by far) first: `make test` hands files to
    its two workers in collection order (xdist --dist loadfile), so it then runs beside all the others
    instead of alone after them."""
    items.sort(key=lambda item: item.path.name != "test_dag.py")
