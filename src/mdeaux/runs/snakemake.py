"""``mdeaux train`` (the DVC ``train`` stage): plan the runs, hand the missing ones to Snakemake
(``pipeline/Snakefile``: one job per cohort of runs that share their batches, on local cores or as SLURM
jobs with a profile), collect every run's
results into ``results/train.json`` and import into MLflow the runs that could not reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import subprocess
import sys
from pathlib import Path

from mdeaux import atomic
from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs import cohorts, mlflow_import, mlflow_studies, tracking
from mdeaux.runs.plan import plan
from mdeaux.runs.store import CohortDir, RunDir, RunStore

log = logging.getLogger(__name__)


def snakemake_profile(paths: Paths, name: str) -> Path:
    """A Snakemake profile: a folder, or a name under pipeline/profiles/ (docs/slurm.md)."""
    folders = paths.root / "pipeline" / "profiles"
    profile = Path(name).resolve() if Path(name).is_dir() else folders / name if (folders / name).is_dir() else None
    if profile is None or not any((profile / f).is_file() for f in ("config.yaml", "profile.yaml")):
        known = sorted(p.name for p in folders.glob("*") if p.is_dir())
        raise FileNotFoundError(f"--profile {name}: expected a folder holding a Snakemake profile (config.yaml "
                                f"or profile.yaml), a path or one of pipeline/profiles/: {', '.join(known) or 'none'}")
    return profile


TIMINGS = ("train_seconds",)  # in a run's metrics.json, not in results/train.json


def results_of(folder: RunDir) -> dict:
    """A finished run's metrics without its timings."""
    return {k: v for k, v in folder.metrics().items() if k not in TIMINGS}


@contextlib.contextmanager
def one_train(root: Path):
    """Hold ``.snakemake/mdeaux-train.lock`` (flock, released by the kernel whatever ends the process) for
    the Snakemake call: a second ``mdeaux train`` in the same folder stops with a clear message."""
    folder = root / ".snakemake"
    folder.mkdir(exist_ok=True)
    with open(folder / "mdeaux-train.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another `mdeaux train` (or `dvc repro`) is training in {root}: wait for it to finish, "
                             "or stop it first") from None
        yield


def unlock_if_stale(root: Path, cmd: list[str]) -> None:
    """Remove Snakemake's lock on ``root`` when one is left: under ``one_train`` no Snakemake of ours runs
    here, so it is the lock of a Snakemake that was killed (Ctrl-C, SIGKILL) before it could clean up."""
    locks = root / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        log.warning("removing the Snakemake lock left in %s by an interrupted run (snakemake --unlock)", locks)
        subprocess.run([*cmd, "--unlock"], cwd=root, check=True, stdout=subprocess.DEVNULL)


def train(paths: Paths, params: Params, cores: int | None = None, profile_name: str | None = None) -> None:
    store = RunStore(paths.runs)
    runs = plan(paths, params)
    missing = [r for r in runs if not store[r.id].done]
    log.info("%d run(s) planned: %d to train, %d reused from %s", len(runs), len(missing), len(runs) - len(missing), paths.runs)
    if missing:
        profile = snakemake_profile(paths, profile_name or "local")
        tracking.prepare(paths, params)  # DB, experiment and study parent runs before fan-out (warns, never raises)
        snakefile = paths.root / "pipeline" / "Snakefile"
        if not snakefile.is_file():
            raise FileNotFoundError(f"{snakefile} is missing: run mdeaux from the mdeaux repository root")
        # the profile holds Snakemake's settings (pipeline/profiles/local by default); --cores wins over its own
        cores = cores or (params.runner.cores if profile_name is None else None)
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(paths.root),
               "--profile", str(profile), *(["--cores", str(cores)] if cores else [])]
        with one_train(paths.root):
            unlock_if_stale(paths.root, cmd)
            log.info("running: %s", " ".join(cmd))
            result = subprocess.run(cmd, cwd=paths.root)
        failed = [r for r in missing if not store[r.id].done]
        if result.returncode != 0 or failed:
            cohort_of = cohorts.of_runs(cohorts.form(missing, params.runner.cohort))
            logs = sorted({store.cohort(cohort_of[r.id].id) / CohortDir.LOG for r in failed})
            logs = [str(f) for f in logs if f.is_file()]  # a job that never started wrote none
            raise SystemExit(f"{len(failed)} run(s) not trained; "
                             + (f"see {', '.join(logs)}" if logs else "no job started: see the Snakemake output above"))
    # results/train.json is a DVC output: only what the runs are and what they reached, nothing of how this
    # call went (which runs it trained, how long they took: train.log, MLflow), so a fresh clone makes it again
    # byte for byte
    records = [{"id": r.id, "label": r.label, "studies": list(r.studies), "config": r.config.model_dump(mode="json"),
                "inputs": r.inputs, "metrics": results_of(store[r.id])} for r in runs]
    atomic.write_json(paths.results / "train.json", {"profile": params.profile, "runs": records})
    log.info("trained %d run(s), reused %d; results in %s", len(missing), len(runs) - len(missing), paths.results / "train.json")
    # runs whose tracker could not reach MLflow (offline SLURM nodes, a server that was down) are
    # imported from runs/<id>/ now; runs already tracked are skipped
    parents = tracking.prepare(paths, params)
    if parents:
        counts = mlflow_import.import_done(paths, runs, parents)
        log.info("MLflow (%s): %d run(s) imported, %d already tracked", paths.mlflow_uri, counts["imported"], counts["tracked"])
        try:  # each study's parent: one child per run it uses
            created = mlflow_studies.sync_cells(paths, params, runs, parents)
            log.info("MLflow: %d study cell(s) added", created)
        except Exception as err:  # noqa: BLE001 - tracking must never stop the pipeline
            log.warning("MLflow: could not add the study cells (%s); the next `mdeaux train` adds them", err)
