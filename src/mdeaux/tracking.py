"""MLflow tracking: one experiment per profile, one MLflow run per training run.

The tracking URI is the SQLite database at the store root (``mlflow.db``; research/tooling.md §2),
or ``MLFLOW_TRACKING_URI`` when set (e.g. a tracking server). Tracking never decides whether a run
succeeds: if MLflow fails, the run goes on, its numbers stay in ``runs/<id>/`` and a warning says so.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def experiment_name(profile: str) -> str:
    return f"mdeaux-{profile}"


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    return {"git_commit": commit, "git_dirty": dirty}


def setup(uri: str, profile: str, artifacts: Path | None = None) -> str:
    """Create the database and the experiment once, before runs fan out (avoids creation races)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    name = experiment_name(profile)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = artifacts.as_uri() if artifacts is not None else None
        # the UI opens a "model training" experiment on its runs table (not the GenAI overview)
        return mlflow.create_experiment(name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"})
    return exp.experiment_id


class Tracker:
    """A thin MLflow run that degrades to a warning instead of failing the training run."""

    def __init__(self, uri: str, profile: str, run_name: str, tags: dict[str, str], artifacts: Path | None = None,
                 run_id: str | None = None):
        self.active = False
        self.run = None
        try:
            import mlflow

            self.mlflow = mlflow
            setup(uri, profile, artifacts)
            mlflow.set_experiment(experiment_name(profile))
            if run_id:  # continue the run a checkpoint was written for
                self.run = mlflow.start_run(run_id=run_id)
                mlflow.set_tags(tags)
            else:
                self.run = mlflow.start_run(run_name=run_name, tags=tags)
            self.active = True
        except Exception as err:  # noqa: BLE001 - tracking must never lose a run
            self._warn("start the MLflow run", err)

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.active else None

    def _warn(self, what: str, err: Exception) -> None:
        log.warning("MLflow: could not %s (%s); the run's results stay in runs/<id>/", what, err)
        self.active = False

    def _call(self, what: str, fn: str, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            getattr(self.mlflow, fn)(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            self._warn(what, err)

    def params(self, params: Mapping[str, Any]) -> None:
        flat = {k: str(v) for k, v in flatten(params).items()}
        self._call("log params", "log_params", flat)

    def metrics(self, metrics: Mapping[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
        self._call("log metrics", "log_metrics", clean, step=step)

    def artifact(self, path: Path) -> None:
        self._call(f"log artifact {path.name}", "log_artifact", str(path))

    def finish(self, status: str = "FINISHED") -> None:
        """End the MLflow run, also after an earlier logging error (so it is not left RUNNING)."""
        if self.run is None:
            return
        try:
            self.mlflow.end_run(status=status)
        except Exception as err:  # noqa: BLE001
            self._warn("end the run", err)
