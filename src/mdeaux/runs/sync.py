"""``mdeaux store push|pull``: share the run store through the project's DVC remote.

DVC versions the data, the prepared shards and ``results/train.json``; ``dvc push``/``dvc pull``
move them. The run store (``runs/<id>/``) is outside DVC: it is shared by every experiment of the
repository and addressed by run id, not by revision. It travels beside DVC's objects, under
``mdeaux-runs/<id>/`` of the same remote (a local folder, S3, SSH: DVC's own filesystem for that
remote, with its configuration and credentials). A run folder is immutable once its ``metrics.json``
exists, so only finished runs travel, each once: ``push`` uploads the finished runs the remote lacks
(``metrics.json`` last, as on disk), ``pull`` downloads the finished runs this store lacks (into a
temporary folder, renamed into place). Checkpoints, locks and the MLflow run id stay behind (MLflow
ids mean nothing in another store): the next ``mdeaux train`` (``dvc repro``) imports pulled runs into
this repository's MLflow, with their curves, metrics and figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from mdeaux.atomic import atomic_dir
from mdeaux.paths import Paths
from mdeaux.runs.store import RUN_ID, RunDir, RunStore

log = logging.getLogger(__name__)

PREFIX = "mdeaux-runs"
SHARED = (RunDir.CONFIG, RunDir.STUDIES, RunDir.CURVES, RunDir.EVALS, RunDir.PREDICTIONS, RunDir.TAGS, RunDir.LOG,
          RunDir.CURVES_PNG, RunDir.PREDICTIONS_PNG, RunDir.METRICS)  # metrics.json last: the done marker


def _remote(paths: Paths):
    """The default DVC remote's filesystem and this store's folder on it."""
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    try:
        remote = Repo(str(paths.root)).cloud.get_remote()
    except NoRemoteError:
        raise RuntimeError("no DVC remote: add one first, e.g. `dvc remote add -d team /shared/mdeaux-remote` "
                           "(or s3://bucket/path, ssh://host/path; README, \"Sharing results\")") from None
    return remote.fs, remote.fs.join(remote.path, PREFIX)


def _remote_done(fs, base: str) -> set[str]:
    if not fs.exists(base):
        return set()
    ids = {Path(p.rstrip("/")).name for p in fs.ls(base, detail=False)}
    return {i for i in ids if RUN_ID.fullmatch(i) and fs.exists(fs.join(base, i, RunDir.METRICS))}


def push(paths: Paths) -> int:
    """Upload the finished runs the remote lacks; how many."""
    fs, base = _remote(paths)
    store = RunStore(paths.runs)
    local = sorted(p.name for p in paths.runs.glob("*") if RUN_ID.fullmatch(p.name) and store[p.name].done)
    missing = [i for i in local if i not in _remote_done(fs, base)]
    for run_id in tqdm(missing, desc="push runs", unit="run"):
        folder = store[run_id]
        fs.makedirs(fs.join(base, run_id), exist_ok=True)
        for name in SHARED:
            if (folder / name).is_file():
                fs.put_file(str(folder / name), fs.join(base, run_id, name))
    log.info("pushed %d run(s) to %s (%d were there)", len(missing), base, len(local) - len(missing))
    return len(missing)


def pull(paths: Paths) -> int:
    """Download the finished runs this store lacks; how many."""
    fs, base = _remote(paths)
    store = RunStore(paths.runs)
    missing = sorted(i for i in _remote_done(fs, base) if not store[i].done)
    for run_id in tqdm(missing, desc="pull runs", unit="run"):
        # a planned or interrupted run of this store is replaced, as a whole, by the finished one
        with store[run_id].locked(), atomic_dir(store[run_id].path) as tmp:
            for name in SHARED:
                if fs.exists(fs.join(base, run_id, name)):
                    fs.get_file(fs.join(base, run_id, name), str(tmp / name))
    log.info("pulled %d run(s) from %s into %s", len(missing), base, paths.runs)
    return len(missing)
