"""``mdeaux run-one <id>``: train one planned run, as each Snakemake job does.

Holds the run's lock (one trainer per run, also across queued DVC experiments sharing the store),
starts or continues its MLflow run, trains (``training/loop.py``), then writes the run's files into
its folder, ``metrics.json`` last, and logs figures and artifacts. Under torchrun, every process
trains and only rank 0 writes and tracks.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from mdeaux import atomic
from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs import plots, tracking
from mdeaux.runs.plan import Run, load_run
from mdeaux.runs.store import RunDir, RunStore
from mdeaux.training.checkpoint import Preempted
from mdeaux.training.loop import Result, train_run
from mdeaux.training.runtime import Runtime

log = logging.getLogger(__name__)


def run_one(paths: Paths, params: Params, run_id: str, force: bool = False, progress: bool = True) -> None:
    folder = RunStore(paths.runs)[run_id]
    run = load_run(folder)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 holds the run's lock
        _run(run, folder, paths, params, force, progress)
        return
    with folder.locked():
        _run(run, folder, paths, params, force, progress)


def _run(run: Run, folder: RunDir, paths: Paths, params: Params, force: bool, progress: bool) -> None:
    import torch

    if folder.done and not force:
        log.info("%s is already done (%s)", run.id, folder / RunDir.METRICS)
        return
    torch.set_num_threads(params.runner.torch_threads)
    rt = Runtime.setup(params.runner.device, params.runner.loader_workers, params.runner.compile)
    try:
        if rt.world > 1:
            log.info("%s: process %d of %d on %s", run.id, rt.rank, rt.world, rt.device)
        if rt.main:
            _train_and_track(run, folder, paths, params, rt, progress)
        else:
            try:
                train_run(run.config, run.id, paths, folder / RunDir.CHECKPOINT, progress=False, rt=rt)
            except Preempted:
                raise SystemExit(Preempted.exit_code) from None
    finally:
        rt.close()


def _start_tracker(run: Run, folder: RunDir, paths: Paths, params: Params, rt: Runtime) -> tuple[tracking.Tracker, bool]:
    """The run's MLflow run (a resumed run continues its own), and whether it holds every step."""
    tags = tracking.run_tags(run, paths.root, extra={"processes": str(rt.world), "device": str(rt.device)})
    folder.write_json(RunDir.TAGS, tags)  # for `mdeaux train`'s import if MLflow is unreachable
    id_file = folder / RunDir.MLFLOW_ID
    resuming = (folder / RunDir.CHECKPOINT).is_file()
    if not resuming:
        id_file.unlink(missing_ok=True)  # a fresh (or --force) training is a new MLflow run
    resume = id_file.read_text().strip() if resuming and id_file.is_file() else None
    expected = run.config.train.iterations * params.runner.cost.step_seconds  # runner.cost (mdeaux bench)
    tracker = tracking.Tracker(
        paths.mlflow_uri, params.profile, run.label, tags, paths.mlflow_artifacts, run_id=resume,
        lock=paths.runs / ".mlflow.lock", system_metrics_interval=tracking.sampling_interval(expected),
    )
    if tracker.run_id:
        atomic.write_text(id_file, tracker.run_id + "\n")
    if not tracker.resumed:
        tracker.params(run.config)
    return tracker, not resuming or tracker.resumed


def _train_and_track(run: Run, folder: RunDir, paths: Paths, params: Params, rt: Runtime, progress: bool) -> None:
    tracker, whole = _start_tracker(run, folder, paths, params, rt)
    try:
        result = train_run(run.config, run.id, paths, folder / RunDir.CHECKPOINT, logger=tracker, progress=progress,
                           rt=rt, n_predictions=params.runner.save_predictions)
        write_result(folder, result)
    except Preempted as stop:
        tracker.finish("KILLED")
        log.warning("%s", stop)
        raise SystemExit(Preempted.exit_code) from None
    except BaseException:
        tracker.finish("FAILED")
        raise
    try:
        figures = plots.write_figures(folder)  # curves.png, predictions.png (also without MLflow)
    except Exception as err:  # noqa: BLE001 - a figure is not worth the run
        log.warning("%s: could not draw the figures (%s)", run.id, err)
        figures = []
    for name in tracking.RUN_FILES:
        tracker.artifact(folder / name)
    for figure in figures:
        tracker.artifact(figure, "plots")
    steps = result.metrics["iterations"]
    tracker.summary({**{f"best.{k}": v for k, v in result.metrics["best"].items()},
                     **{f"final.{k}": v for k, v in result.metrics["final"].items()},
                     "train_seconds": result.metrics["train_seconds"]}, step=steps)
    if whole:
        tracker.mark_complete()
    tracker.finish()


def write_result(folder: RunDir, result: Result) -> None:
    """The run's files; ``metrics.json`` last (its presence marks the run done), then the checkpoint goes."""
    if result.predictions is not None:
        with atomic.atomic_path(folder / RunDir.PREDICTIONS) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **result.predictions)
    folder.write_csv(RunDir.CURVES, result.curves)
    folder.write_csv(RunDir.EVALS, result.evals)
    folder.write_json(RunDir.METRICS, result.metrics)
    (folder / RunDir.CHECKPOINT).unlink(missing_ok=True)
