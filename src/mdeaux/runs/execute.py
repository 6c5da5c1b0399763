"""``mdeaux run-cohort <id>`` (each Snakemake job) and ``mdeaux run-one <id>``: train planned runs.

Holds the lock of every run it trains (one trainer per run, also across queued DVC experiments
sharing the store; taken in id order, so overlapping cohorts cannot deadlock), skips runs already
done, starts or continues each run's MLflow run (tagged with its cohort), trains them together
(``training/loop.py``), then writes each run's files into its folder, ``metrics.json`` last, and logs
figures and artifacts. A run that fails (a nan loss) does not stop the others. Under torchrun, every
process trains and only rank 0 writes and tracks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

import numpy as np

from mdeaux import atomic
from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs import plots, tracking
from mdeaux.runs.plan import Run, check_inputs, load_run
from mdeaux.runs.store import CohortDir, RunDir, RunStore
from mdeaux.training.checkpoint import Preempted, StopSignal
from mdeaux.training.loop import Member, Result, train_cohort
from mdeaux.training.runtime import Runtime

log = logging.getLogger(__name__)


def run_cohort(paths: Paths, params: Params, cohort_id: str, progress: bool = True) -> None:
    """Train the missing runs of a planned cohort; ``done.json`` (the job's output) once all are done."""
    cohort = RunStore(paths.runs).cohort(cohort_id)
    ids = cohort.members()
    train_runs(paths, params, ids, progress=progress, cohort=cohort)
    if int(os.environ.get("RANK", "0")) == 0:
        atomic.write_json(cohort / CohortDir.DONE, ids)


def run_one(paths: Paths, params: Params, run_id: str, force: bool = False, progress: bool = True) -> None:
    train_runs(paths, params, [run_id], force=force, progress=progress)


def train_runs(paths: Paths, params: Params, run_ids: list[str], force: bool = False, progress: bool = True,
               cohort: CohortDir | None = None) -> None:
    """Train ``run_ids`` (which must share training/cohort.py's cohort_key) in one process; ``force``
    retrains runs that are done."""
    import torch

    store = RunStore(paths.runs)
    folders = {i: store[i] for i in run_ids}
    runs = {i: load_run(folders[i]) for i in run_ids}
    main = int(os.environ.get("RANK", "0")) == 0  # torchrun: rank 0 holds the locks, writes and tracks
    with contextlib.ExitStack() as locks:
        if main:
            for i in sorted(run_ids):
                locks.enter_context(folders[i].locked())
        todo = [runs[i] for i in run_ids if force or not folders[i].done]
        for run in todo:
            check_inputs(run, paths)
        for i in run_ids:
            if runs[i] not in todo:
                log.info("%s is already done (%s)", i, folders[i] / RunDir.METRICS)
        if not todo:
            return
        torch.set_num_threads(params.runner.torch_threads)
        rt = Runtime.setup(params.runner.device, params.runner.loader_workers, params.runner.compile)
        try:
            if rt.world > 1:
                log.info("process %d of %d on %s", rt.rank, rt.world, rt.device)
            _train(todo, store, paths, params, rt, progress, cohort)
        finally:
            rt.close()


def _start_tracker(run: Run, folder: RunDir, paths: Paths, params: Params, rt: Runtime,
                   cohort: CohortDir | None) -> tuple[tracking.Tracker, bool]:
    """The run's MLflow run (a resumed run continues its own), and whether it holds every step."""
    extra = {"processes": str(rt.world), "device": str(rt.device)}
    if cohort is not None:
        extra["cohort"] = cohort.id
    tags = tracking.run_tags(run, paths.root, extra=extra)
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


def _train(runs: list[Run], store: RunStore, paths: Paths, params: Params, rt: Runtime, progress: bool,
           cohort: CohortDir | None) -> None:
    trackers: dict[str, tuple[tracking.Tracker, bool]] = {}
    members = []
    for run in runs:
        folder = store[run.id]
        if rt.main:
            trackers[run.id] = _start_tracker(run, folder, paths, params, rt, cohort)
        members.append(Member(run.config, run.id, folder / RunDir.CHECKPOINT, trackers[run.id][0] if rt.main else None))
    try:
        results = train_cohort(members, paths, progress=progress and rt.main, rt=rt,
                               n_predictions=params.runner.save_predictions if rt.main else 0)
    except Preempted as stop:
        for tracker, _ in trackers.values():
            tracker.finish("KILLED")
        log.warning("%s", stop)
        raise SystemExit(Preempted.exit_code) from None
    except BaseException:
        for tracker, _ in trackers.values():
            tracker.finish("FAILED")
        raise
    if not rt.main:
        return
    failed = []
    # the runs are trained: SIGTERM/SIGINT now wait until every result is written (seconds), so that a
    # preemption or Ctrl-C at this point loses nothing finished
    with StopSignal() as stop:
        for run in runs:
            result, (tracker, whole) = results[run.id], trackers[run.id]
            if isinstance(result, BaseException):
                tracker.finish("FAILED")
                failed.append(f"{run.label} ({run.id}): {result}")
                continue
            folder = store[run.id]
            write_result(folder, result)
            if cohort is not None and (cohort / CohortDir.LOG).is_file():  # the job's log, so far
                with atomic.atomic_path(folder / RunDir.LOG) as tmp:
                    shutil.copyfile(cohort / CohortDir.LOG, tmp)
            _track_result(run, folder, result, tracker, whole)
    if stop.received is not None:
        log.warning("signal %d arrived while the finished runs' results were written; they are complete", stop.received)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(runs)} run(s) failed:\n  " + "\n  ".join(failed))


def _track_result(run: Run, folder: RunDir, result: Result, tracker: tracking.Tracker, whole: bool) -> None:
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
