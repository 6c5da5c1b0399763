"""Every path the pipeline reads or writes, in one place.

The repository root is found from the current directory (the folder holding ``dvc.yaml``), so the
same code works in a checkout, inside ``dvc exp run --temp`` copies and in tests that build a
project in a temporary folder. ``store_root()`` is where the shared, content-addressed run store and
the MLflow database live: the repository root, or, inside a queued DVC experiment (which runs in a
copy under ``.dvc/tmp/exps/``), the parent repository named by ``DVC_ROOT``, which DVC sets for
every stage command (DVC's ``dvc/stage/run.py``, ``dvc/repo/experiments/queue/base.py``; in a queued
experiment it names the parent repository, not the temporary copy).
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``dvc.yaml`` or ``params.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / "params.yaml").is_file():
            return folder
    raise FileNotFoundError(
        f"no dvc.yaml or params.yaml in {here} or any folder above it: run mdeaux from inside the "
        "mdeaux repository (or a project created like it)"
    )


def store_root(root: Path | None = None) -> Path:
    """Where runs/ and mlflow.db live: DVC_ROOT inside DVC experiments, else the repository root."""
    env = os.environ.get("MDEAUX_STORE") or os.environ.get("DVC_ROOT")
    return Path(env).resolve() if env else (root or repo_root())


class Paths:
    """Paths of one project, relative to its root."""

    def __init__(self, root: Path | None = None):
        self.root = (root or repo_root()).resolve()
        self.params = self.root / "params.yaml"
        self.smoke = self.root / "pipeline" / "smoke.yaml"  # the smoke world: an overlay of params.yaml
        self.data = self.root / "data"
        self.mirror = self.data / "mirror"
        self.manual = self.data / "manual"
        self.raw = self.data / "raw"
        self.prepared = self.data / "prepared"
        self.splits = self.data / "splits"
        self.results = self.root / "results"
        self.pretrained = self.root / "models" / "tiny-pretrained"  # the mini profile's pretrained tiny ViT (stage pretrain)
        self.reports = self.root / "reports"
        self.validation_reports = self.reports / "validation"
        store = store_root(self.root)
        self.runs = store / "runs"
        self.mlflow_db = store / "mlflow.db"
        self.mlflow_artifacts = store / "mlartifacts"

    @property
    def mlflow_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_db}"

    def mirror_of(self, dataset: str) -> Path:
        return self.mirror / dataset

    def raw_of(self, dataset: str) -> Path:
        return self.raw / dataset

    def prepared_of(self, dataset: str) -> Path:
        return self.prepared / dataset

    def split_of(self, dataset: str) -> Path:
        return self.splits / f"{dataset}.json"
