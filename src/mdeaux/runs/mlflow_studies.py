"""What MLflow shows per study: one child per run the study uses, and the study's results.

MLflow nests a run under one parent only, and a training run is shared by several studies (the NYUv2
baseline by seven). So every training run is a child of ``training runs`` (runs/tracking.py), and each
study's parent ``study:<name>`` holds one *cell* per run it uses: named by the run's label, with its
axes as params, its best (paper Eq. 1) and final test metrics, tags ``mdeaux.run`` (our run id) and
``mdeaux.trained_run`` (the MLflow run holding its curves and artifacts, linked from the cell's
description). Selecting a study's cells and pressing Compare compares the study. The report adds
the study's results to its parent: mean and standard error of the best AbsRel x 10^4 per point of
the study's grid and, for tables, each row's gain and the mean gain.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from mdeaux.runs.store import RunDir, RunStore
from mdeaux.runs.tracking import (
    KIND,
    PARENT,
    STUDY,
    _client,
    config_params,
    experiment_name,
)

log = logging.getLogger(__name__)

CELL_RUN, TRAINED_RUN = "mdeaux.run", "mdeaux.trained_run"


def _cells(client, experiment_id: str) -> dict[tuple[str, str], object]:
    found = {}
    for r in client.search_runs([experiment_id], filter_string=f"tags.`{KIND}` = 'cell'", max_results=50000):
        found.setdefault((r.data.tags.get(STUDY), r.data.tags.get(CELL_RUN)), r)
    return found


def sync_cells(paths, params, runs: Iterable, parents: Mapping[str, str]) -> int:
    """Create the missing cells of every finished, tracked run of ``runs`` (planned ``Run``s) under the
    parents of its studies (``parents``: ``tracking.ensure_parents``); the number created."""
    from mlflow.entities import Metric, Param

    client = _client(paths.mlflow_uri)
    experiment = client.get_experiment_by_name(experiment_name(params.profile))
    if experiment is None:
        return 0
    store, existing, created = RunStore(paths.runs), _cells(client, experiment.experiment_id), 0
    ui = params.report.mlflow_ui.rstrip("/")
    for run in runs:
        folder = store[run.id]
        id_file = folder / RunDir.MLFLOW_ID
        if not folder.done or not id_file.is_file():
            continue
        trained, metrics = id_file.read_text().strip(), folder.metrics()
        for study in run.studies:
            cell = existing.get((study, run.id))
            if cell is not None:
                if cell.data.tags.get(TRAINED_RUN) != trained:  # the training run was imported again
                    client.set_tag(cell.info.run_id, TRAINED_RUN, trained)
                continue
            if study not in parents:
                continue
            url = f"{ui}/#/experiments/{experiment.experiment_id}/runs/{trained}"
            new = client.create_run(experiment.experiment_id, run_name=run.label, tags={
                KIND: "cell", STUDY: study, CELL_RUN: run.id, TRAINED_RUN: trained, PARENT: parents[study],
                "mlflow.note.content": f"Run [{run.label}]({url}) ({run.id}) in study {study}: curves and artifacts there."})
            step = int(metrics["iterations"])
            values = [Metric(f"{group}.{k}", float(v), 0, step) for group in ("best", "final")
                      for k, v in metrics[group].items() if v == v]
            client.log_batch(new.info.run_id, metrics=values, params=[Param(k, v) for k, v in config_params(run.config).items()])
            client.set_terminated(new.info.run_id, "FINISHED")
            created += 1
    return created


def metric_key(text: str) -> str:
    """An MLflow metric name (letters, digits, ``_ - . / :`` and spaces) from a run label or row name."""
    return re.sub(r"[^\w\-./: ]", "-", text)


def log_study_results(paths, params, results: Mapping[str, Mapping[str, float]]) -> None:
    """Set the metrics of each study's parent to ``results[study]`` (only those that changed, at step 0)."""
    from mlflow.entities import Metric

    from mdeaux.runs.tracking import _parents

    client = _client(paths.mlflow_uri)
    experiment = client.get_experiment_by_name(experiment_name(params.profile))
    if experiment is None:
        return
    parents = _parents(client, experiment.experiment_id, "study")
    for study, values in results.items():
        if study not in parents:
            continue
        parent = parents[study]
        current = parent.data.metrics
        changed = [Metric(metric_key(k), float(v), 0, 0) for k, v in values.items()
                   if v == v and current.get(metric_key(k)) != float(v)]
        if changed:
            client.log_batch(parent.info.run_id, metrics=changed)
