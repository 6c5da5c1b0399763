"""Import into MLflow the runs that finished without reaching it (offline compute nodes, a server
that was down): the same MLflow run as the live tracker would have made, built from ``runs/<id>/``.

A run is "tracked" when ``runs/<id>/mlflow_run_id`` (or, failing that, the tag ``run_id``) names a
complete MLflow run of the current store: one carrying ``mdeaux.complete=true``, which the tracker
sets only after it logged everything (or, for runs logged before that tag existed, a FINISHED run
holding every ``final.*`` metric).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mdeaux import atomic
from mdeaux.runs import plots
from mdeaux.runs.store import RunDir, RunStore
from mdeaux.runs.tracking import (
    COMPLETE,
    KIND,
    PARENT,
    RUN_FILES,
    RUNS,
    SOURCE,
    _client,
    _finite,
    config_params,
    ensure_parents,
    run_tags,
    setup,
)

log = logging.getLogger(__name__)


def _is_complete(run, result: Mapping[str, Any]) -> bool:
    if run.info.lifecycle_stage == "deleted":
        return True  # deleted by hand: respected, not imported again
    if run.data.tags.get(COMPLETE) == "true":
        return True
    finals = {f"final.{k}" for k in result.get("final", {})}
    return run.info.status == "FINISHED" and bool(finals) and finals <= set(run.data.metrics)


def _tracked(client, experiment_id: str, run_id: str, id_file: Path, result: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(the complete MLflow run of this training run or None, the ids of incomplete ones)."""
    from mlflow.exceptions import MlflowException

    incomplete = []
    if id_file.is_file():
        known = id_file.read_text().strip()
        try:
            found = client.get_run(known)
        except MlflowException as err:  # not in this store (another store, or a fresh database)
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise  # the store did not answer: nothing is decided
            found = None
        if found is not None:
            if _is_complete(found, result):
                return known, []
            incomplete.append(known)
    tagged = client.search_runs([experiment_id], filter_string=f"tags.run_id = '{run_id}'", max_results=1000)
    for r in sorted(tagged, key=lambda r: r.info.start_time or 0):
        if _is_complete(r, result):
            return r.info.run_id, []
        if r.info.run_id not in incomplete:
            incomplete.append(r.info.run_id)
    return None, incomplete


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _metrics_from_files(run_dir: RunDir, result: Mapping[str, Any], start_ms: int, end_ms: int) -> list:
    """What the live tracker logs, rebuilt from the run's files: every curves.csv value at its step,
    ``test.<m>`` at each evaluation, ``best.<m>``/``final.<m>``/``train_seconds`` at the last step.
    Timestamps are spread over the run's wall time in proportion to the step."""
    from mlflow.entities import Metric

    total = int(result.get("iterations") or 1)

    def stamp(step: int) -> int:
        return int(start_ms + (end_ms - start_ms) * min(max(step, 0), total) / total)

    out = []
    for name, prefix in ((RunDir.CURVES, ""), (RunDir.EVALS, "test.")):
        for row in _read_csv(run_dir / name):
            step = int(float(row["step"]))
            for key, value in row.items():
                if key != "step" and value not in ("", None) and _finite(value):
                    out.append(Metric(f"{prefix}{key}", float(value), stamp(step), step))
    for group in ("best", "final"):
        for key, value in result.get(group, {}).items():
            if _finite(value):
                out.append(Metric(f"{group}.{key}", float(value), end_ms, total))
    if _finite(result.get("train_seconds")):
        out.append(Metric("train_seconds", float(result["train_seconds"]), end_ms, total))
    return out


def import_run(paths, run, parents: Mapping[str, str] | None = None) -> str | None:
    """Create the MLflow run of a finished training run from ``runs/<id>/``, unless it is tracked.

    ``run`` is a planned ``runs.Run`` (with ``studies``); ``parents`` is what ``ensure_parents``
    returned (looked up when not given). The new run gets the params (the flattened config), the
    per-step, test, best and final metrics, the tags of training time (``tags.json``, else computed
    now) with ``mdeaux.source=import``, the artifacts and figures, and its parent (``training runs``); its
    id is written to ``runs/<id>/mlflow_run_id``. Incomplete MLflow runs of the same training run
    (a tracker that lost its connection) are deleted once the complete one exists. Returns the new
    MLflow run id, or None when the run was already tracked. Holds ``runs/<id>/.lock`` (the lock
    ``mdeaux run-one`` holds while training and logging), so it never races a live tracker.
    """
    from mlflow.entities import Param

    run_dir = RunStore(paths.runs)[run.id]
    metrics_file = run_dir / RunDir.METRICS
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file} is missing: only finished runs are imported into MLflow")
    uri = paths.mlflow_uri
    client = _client(uri)
    profile = run.config.profile
    experiment_id = setup(uri, profile, paths.mlflow_artifacts)
    id_file = run_dir / RunDir.MLFLOW_ID
    with run_dir.locked():
        result = json.loads(metrics_file.read_text())
        known, incomplete = _tracked(client, experiment_id, run.id, id_file, result)
        if known is not None:
            if not id_file.is_file() or id_file.read_text().strip() != known:
                atomic.write_text(id_file, known + "\n")  # found by its run_id tag
            return None
        parent = (parents or {}).get(RUNS) or ensure_parents(uri, profile, paths.mlflow_artifacts, {}, paths.runs / ".mlflow.lock")[RUNS]
        saved = run_dir / RunDir.TAGS
        tags = json.loads(saved.read_text()) if saved.is_file() else run_tags(run, paths.root)
        tags.update({KIND: "run", SOURCE: "import", "studies": ",".join(run.studies) or tags.get("studies", "")})
        tags[PARENT] = parent
        end_ms = int(metrics_file.stat().st_mtime * 1000)
        start_ms = end_ms - int(1000 * float(result.get("train_seconds") or 0))
        mlrun = client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=run.label)
        rid = mlrun.info.run_id
        try:
            params = [Param(k, v) for k, v in config_params(run.config).items()]
            client.log_batch(rid, metrics=_metrics_from_files(run_dir, result, start_ms, end_ms), params=params)
            for name in RUN_FILES:
                if (run_dir / name).is_file():
                    client.log_artifact(rid, str(run_dir / name))
            for figure in _figures(run_dir):
                client.log_artifact(rid, str(figure), "plots")
            client.set_tag(rid, COMPLETE, "true")
            client.set_terminated(rid, "FINISHED", end_time=end_ms)
        except BaseException:
            with contextlib.suppress(Exception):
                client.delete_run(rid)
            raise
        atomic.write_text(id_file, rid + "\n")
        for stale in incomplete:
            with contextlib.suppress(Exception):
                client.delete_run(stale)
                log.info("MLflow: deleted the incomplete run %s of %s (replaced by %s)", stale, run.id, rid)
    return rid


def _figures(run_dir: RunDir) -> list[Path]:
    """The run's figures, drawn now if missing; a drawing error costs the figure, not the import."""
    try:
        return plots.write_figures(run_dir)
    except Exception as err:  # noqa: BLE001
        log.warning("could not draw the figures of %s (%s)", run_dir.path, err)
        return [p for p in (run_dir / RunDir.CURVES_PNG, run_dir / RunDir.PREDICTIONS_PNG) if p.is_file()]


def import_done(paths, runs: Iterable, parents: Mapping[str, str] | None = None) -> dict[str, int]:
    """``import_run`` for every finished run of ``runs``; stops at the first MLflow error (the store is
    likely unreachable; the next call goes on). Counts of imported, already tracked and left runs."""
    counts = {"imported": 0, "tracked": 0, "left": 0}
    store = RunStore(paths.runs)
    done = [r for r in runs if store[r.id].done]
    started = time.perf_counter()
    for i, run in enumerate(done):
        try:
            new = import_run(paths, run, parents)
        except Exception as err:  # noqa: BLE001 - the results stay in runs/<id>/
            counts["left"] = len(done) - i
            log.warning("MLflow: could not import %s (%s); %d finished run(s) not imported yet: they stay in %s/<id>/ "
                        "and the next `mdeaux train` imports them", run.id, err, counts["left"], paths.runs)
            break
        counts["imported" if new else "tracked"] += 1
        if new:
            log.info("MLflow: imported %s (%s) from %s as %s", run.id, run.label, store[run.id].path, new)
    if counts["imported"]:
        log.info("MLflow: imported %d run(s) in %.1f s", counts["imported"], time.perf_counter() - started)
    return counts
