"""The run store: ``runs/<id>/``, one folder per run, and ``RunDir``, the one owner of its files.

| file | written by | what |
|---|---|---|
| ``config.json`` | planning | id, typed config, data versions, code version |
| ``studies.json`` | planning | the studies that use the run (updated when the studies change) |
| ``checkpoint.pt`` | training | while the run is unfinished (training/checkpoint.py) |
| ``curves.csv``, ``evals.csv`` | training | losses/LRs/beta1 per step; test metrics per evaluation |
| ``predictions.npz`` | training | the final model on the first test images (for the figures) |
| ``metrics.json`` | training, last | best and final metrics: its presence marks the run done |
| ``train.log`` | execute | a copy of its cohort's job output (``runs/cohorts/<id>/train.log``) |
| ``mlflow_run_id``, ``tags.json`` | tracking | the run's MLflow run, and its tags for a later import |
| ``curves.png``, ``predictions.png`` | plots | the run's figures (runs/plots.py) |
| ``.lock`` | execute, import | held while the run trains or is imported into MLflow |

A cohort (runs trained together, training/cohort.py) has ``runs/cohorts/<cohort id>/``: ``members.json``
(the run ids, written by planning), ``train.log`` (the job's output; each member gets a copy) and
``done.json`` (written when every member is done: the Snakemake job's output, so Snakemake never
deletes a run's ``metrics.json``).

Every write is atomic (temp file + rename), so no later stage can read a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdeaux import atomic

ID_LENGTH = 16  # a run id: the first 16 hex digits of its content address (runs/ids.py)
RUN_ID = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")


class RunDir:
    """The folder of one run and the names of its files."""

    CONFIG, STUDIES, METRICS, CURVES, EVALS = "config.json", "studies.json", "metrics.json", "curves.csv", "evals.csv"
    CHECKPOINT, PREDICTIONS, LOG, LOCK = "checkpoint.pt", "predictions.npz", "train.log", ".lock"
    MLFLOW_ID, TAGS, CURVES_PNG, PREDICTIONS_PNG = "mlflow_run_id", "tags.json", "curves.png", "predictions.png"
    # written only by the holder of the run's lock (trainer, importer); config.json and studies.json are the planner's
    TRAINER_FILES = (METRICS, CURVES, EVALS, CHECKPOINT, PREDICTIONS, LOG, MLFLOW_ID, TAGS, CURVES_PNG, PREDICTIONS_PNG)

    def __init__(self, path: Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def done(self) -> bool:
        """Training finished: ``metrics.json`` is written last, atomically."""
        return (self / self.METRICS).is_file()

    def read_json(self, name: str) -> Any:
        f = self / name
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing")
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{f}: not valid JSON ({err})") from None

    def metrics(self) -> dict[str, Any]:
        return self.read_json(self.METRICS)

    def studies(self) -> list[str]:
        f = self / self.STUDIES
        return list(json.loads(f.read_text())) if f.is_file() else []

    def write_json(self, name: str, obj: Any) -> None:
        atomic.write_json(self / name, obj)

    def write_csv(self, name: str, rows: list[dict[str, Any]]) -> None:
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(self / name, buf.getvalue())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the run: one trainer or importer at a time, also across queued DVC
        experiments sharing the store."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self / self.LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                # what a writer killed mid-write left (atomic.atomic_path's temporaries of the files only a
                # lock holder writes): no such writer runs while we hold the lock
                for name in self.TRAINER_FILES:
                    for stale in self.path.glob(f".{name}.*.tmp"):
                        stale.unlink(missing_ok=True)
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class CohortDir:
    """The folder of one cohort: its members, its job's log, and the done marker."""

    MEMBERS, DONE, LOG = "members.json", "done.json", "train.log"

    def __init__(self, path: Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def id(self) -> str:
        return self.path.name

    def members(self) -> list[str]:
        f = self / self.MEMBERS
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: cohorts are planned by `mdeaux train` (or `mdeaux runs --write`)")
        ids = json.loads(f.read_text())
        bad = [i for i in ids if not isinstance(i, str) or not RUN_ID.fullmatch(i)]
        if not isinstance(ids, list) or not ids or bad:
            raise ValueError(f"{f}: expected a non-empty list of run ids, got {ids!r}")
        return ids


class RunStore:
    """``runs/``: the run folders, addressed by run id, and the cohort folders under ``runs/cohorts/``."""

    COHORTS = "cohorts"

    def __init__(self, root: Path):
        self.root = Path(root)

    def cohort(self, cohort_id: str) -> CohortDir:
        if not RUN_ID.fullmatch(cohort_id):
            raise ValueError(f"{cohort_id!r} is not a cohort id ({ID_LENGTH} hex digits, as `mdeaux runs` lists them)")
        return CohortDir(self.root / self.COHORTS / cohort_id)

    def __getitem__(self, run_id: str) -> RunDir:
        if not RUN_ID.fullmatch(run_id):
            raise ValueError(f"{run_id!r} is not a run id ({ID_LENGTH} hex digits, as `mdeaux runs` lists them)")
        return RunDir(self.root / run_id)
