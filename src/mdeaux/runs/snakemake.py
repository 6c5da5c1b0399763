"""``mdeaux train`` (the DVC ``train`` stage): plan the runs, hand the missing ones to Snakemake
(``pipeline/Snakefile``: local cores, or one SLURM job per run with a profile), collect every run's
results into ``results/train.json`` and import into MLflow the runs that could not reach it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from mdeaux import atomic
from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs import mlflow_import, tracking
from mdeaux.runs.plan import plan
from mdeaux.runs.store import RunDir, RunStore

log = logging.getLogger(__name__)


def snakemake_profile(paths: Paths, name: str | None) -> Path | None:
    """A Snakemake profile: a folder, or a name under pipeline/profiles/ (docs/slurm.md)."""
    if not name:
        return None
    folders = paths.root / "pipeline" / "profiles"
    profile = Path(name).resolve() if Path(name).is_dir() else folders / name if (folders / name).is_dir() else None
    if profile is None or not any((profile / f).is_file() for f in ("config.yaml", "profile.yaml")):
        known = sorted(p.name for p in folders.glob("*") if p.is_dir())
        raise FileNotFoundError(f"--profile {name}: expected a folder holding a Snakemake profile (config.yaml "
                                f"or profile.yaml), a path or one of pipeline/profiles/: {', '.join(known) or 'none'}")
    return profile


def train(paths: Paths, params: Params, cores: int | None = None, profile_name: str | None = None) -> None:
    profile = snakemake_profile(paths, profile_name)
    store = RunStore(paths.runs)
    runs = plan(paths, params)
    missing = [r for r in runs if not store[r.id].done]
    log.info("%d run(s) planned: %d to train, %d reused from %s", len(runs), len(missing), len(runs) - len(missing), paths.runs)
    if missing:
        tracking.prepare(paths, params)  # DB, experiment and study parent runs before fan-out (warns, never raises)
        snakefile = paths.root / "pipeline" / "Snakefile"
        if not snakefile.is_file():
            raise FileNotFoundError(f"{snakefile} is missing: run mdeaux from the mdeaux repository root")
        cmd = [
            sys.executable, "-m", "snakemake",
            "--snakefile", str(snakefile),
            "--directory", str(paths.root),
            *(["--profile", str(profile)] if profile else []),  # its cores/jobs/executor, unless --cores is given
            *(["--cores", str(cores or params.runner.cores)] if cores or not profile else []),
            "--rerun-triggers", "mtime",
            "--keep-going",
            "--ignore-incomplete",  # metrics.json is written atomically: a killed job leaves no half output
            "--printshellcmds",
        ]  # fmt: skip
        log.info("running: %s", " ".join(cmd))
        result = subprocess.run(cmd, cwd=paths.root)
        failed = [r for r in missing if not store[r.id].done]
        if result.returncode != 0 or failed:
            logs = ", ".join(str(store[r.id] / RunDir.LOG) for r in failed)
            raise SystemExit(f"{len(failed)} run(s) failed; see {logs or 'the Snakemake output above'}")
    records = [{"id": r.id, "label": r.label, "studies": list(r.studies), "config": r.config.model_dump(mode="json"),
                "inputs": r.inputs, "metrics": store[r.id].metrics()} for r in runs]
    summary = {
        "profile": params.profile,
        "trained": [r.id for r in missing],
        "reused": [r.id for r in runs if r not in missing],
        "runs": records,
    }
    atomic.write_json(paths.results / "train.json", summary)
    log.info("trained %d run(s), reused %d; results in %s", len(summary["trained"]), len(summary["reused"]), paths.results / "train.json")
    # runs whose tracker could not reach MLflow (offline SLURM nodes, a server that was down) are
    # imported from runs/<id>/ now; runs already tracked are skipped
    parents = tracking.prepare(paths, params)
    if parents:
        counts = mlflow_import.import_done(paths, runs, parents)
        log.info("MLflow (%s): %d run(s) imported, %d already tracked", paths.mlflow_uri, counts["imported"], counts["tracked"])
