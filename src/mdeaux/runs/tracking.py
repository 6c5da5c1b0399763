"""MLflow tracking: one experiment per profile, a parent run per study, one child run per training run.

The tracking URI is the SQLite database at the store root (``mlflow.db``), or ``MLFLOW_TRACKING_URI``
when set (e.g. a tracking server, ``http://host:5000``).

- ``ensure_parents`` creates the experiment and one parent run per study (run name ``study:<name>``,
  tags ``mdeaux.kind=study``, ``mdeaux.study``, ``mdeaux.title``) once, before the runs fan out; it
  finds existing parents by tag, so calling it again creates nothing.
- ``Tracker`` is the live MLflow run of one training run: a child (``mlflow.parentRunId``) of its
  first study's parent, with params (the flattened config), per-step curves, test metrics at each
  evaluation, system metrics, tags (``run_tags``) and artifacts. Tracking never decides whether a
  run succeeds: if MLflow fails, training goes on and its numbers stay in ``runs/<id>/``.
- ``mlflow_import.py`` builds the same MLflow run from ``runs/<id>/`` afterwards, for runs whose
  tracker could not reach MLflow (offline compute nodes, a server that was down).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mdeaux.runs.store import RunDir

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

RUN_FILES = (RunDir.CONFIG, RunDir.STUDIES, RunDir.METRICS, RunDir.CURVES, RunDir.EVALS, RunDir.TAGS)  # logged as artifacts
KIND, STUDY, TITLE, COMPLETE, SOURCE = "mdeaux.kind", "mdeaux.study", "mdeaux.title", "mdeaux.complete", "mdeaux.source"
PARENT = "mlflow.parentRunId"  # the tag MLflow's UI nests child runs by
# config values also set as tags, for short filters (tags.seed = '0') and grouping in the UI
CONFIG_TAGS = ("task", "depth_dataset", "aux_set", "alpha", "beta", "gamma", "fraction", "seed")
# system metrics: about this many samples per run, at least 1 s and at most 30 s apart (MLflow's
# default of 10 s gives a 30-second mini run only three samples)
SYSTEM_SAMPLES, SYSTEM_MIN_S, SYSTEM_MAX_S = 100, 1.0, 30.0


def experiment_name(profile: str) -> str:
    return f"mdeaux-{profile}"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_params(config) -> dict[str, str]:
    """A run's MLflow params: every resolved config value (``training/config.py``), flattened, as text;
    values that do not apply to the run (None) are left out."""
    return {k: str(v) for k, v in flatten(config.model_dump(mode="json")).items() if v is not None}


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    return {"git_commit": commit, "git_dirty": dirty}


def run_tags(run, root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tags of a training run (``runs.Run`` with its ``studies``): ids, config axes, studies, code
    and data versions, git state and the DVC experiment name, all as strings."""
    config = run.config
    tags = {
        KIND: "run",
        "run_id": run.id,
        "label": run.label,
        "studies": ",".join(run.studies),
        "backbone": str(config.model.backbone),
        "code_version": run.code[:16],
        **{tag: _tag_value(getattr(config, tag)) for tag in CONFIG_TAGS if getattr(config, tag) is not None},
        **{f"data.{k}": v[:16] for k, v in run.inputs.items()},
        **git_state(root),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return {**tags, **(extra or {})}


def _tag_value(value: Any) -> str:
    return str(value)  # same text as the param (str of the config value): params.alpha = tags.alpha


def sampling_interval(expected_seconds: float) -> float:
    """System-metrics sampling interval for a run expected to take ``expected_seconds``."""
    if not expected_seconds > 0:
        return SYSTEM_MIN_S
    return min(SYSTEM_MAX_S, max(SYSTEM_MIN_S, expected_seconds / SYSTEM_SAMPLES))


@contextlib.contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if needed), or nothing when ``path`` is None."""
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def setup(uri: str, profile: str, artifacts: Path | None = None) -> str:
    """Create the database and the profile's experiment once, before runs fan out; its id.

    With a local store, artifacts go to ``artifacts`` (the store's ``mlartifacts/``); with a tracking
    server, the server decides (its ``--artifacts-destination``), since a compute node's local path
    would mean nothing to it. A concurrent creation by another process is taken as success.
    """
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    name = experiment_name(profile)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifacts.resolve().as_uri() if artifacts is not None and not is_server(uri) else None
    try:
        # the UI opens a "model training" experiment on its runs table (not the GenAI overview)
        return client.create_experiment(name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"})
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # created meanwhile by another process
        if exp is None:
            raise
        return exp.experiment_id


def _study_parents(client, experiment_id: str) -> dict[str, Any]:
    """The parent run of each study in the experiment; of duplicates (two processes racing without a
    shared lock) always the same one: the oldest, then the smallest run id."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{KIND}` = 'study'", max_results=1000)
    found: dict[str, Any] = {}
    for r in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        found.setdefault(r.data.tags.get(STUDY), r)
    return found


def ensure_parents(uri: str, profile: str, artifacts: Path | None, studies: Mapping[str, str],
                   lock: Path | None = None, details: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """The MLflow run id of each study's parent run, creating the missing ones (idempotent).

    ``studies`` maps study name to title (params ``studies.<name>.title``); ``details`` optionally
    maps a study to its definition, logged as the new parent's params. ``lock`` is a file that
    serialises concurrent callers sharing a file system (e.g. ``runs/.mlflow.lock``).
    """
    from mlflow.entities import Param

    client = _client(uri)
    experiment_id = setup(uri, profile, artifacts)
    with _locked(lock):
        found = _study_parents(client, experiment_id)
        ids = {}
        for name, title in studies.items():
            if name in found:
                ids[name] = found[name].info.run_id
                continue
            run = client.create_run(experiment_id, run_name=f"study:{name}",
                                    tags={KIND: "study", STUDY: name, TITLE: title, "mlflow.note.content": f"{title}: the runs of study {name!r}"})
            rid = run.info.run_id
            if details and name in details:
                client.log_batch(rid, params=[Param(k, str(v)) for k, v in flatten(details[name]).items()])
            client.set_terminated(rid, "FINISHED")  # a container: its children carry the numbers
            ids[name] = rid
            log.info("MLflow: created the parent run of study %s (%s)", name, rid)
    return ids


def prepare(paths, params, only: Iterable[str] | None = None) -> dict[str, str]:
    """``ensure_parents`` for the studies of ``params`` (or ``only`` these), as ``mdeaux train`` and
    the Snakefile's ``onstart`` call it before fan-out: ``{}`` and a warning when MLflow fails."""
    names = list(params.studies) if only is None else list(only)
    try:
        return ensure_parents(paths.mlflow_uri, params.profile, paths.mlflow_artifacts,
                              {n: params.studies[n].title for n in names}, lock=paths.runs / ".mlflow.lock",
                              details={n: params.studies[n].model_dump() for n in names})
    except Exception as err:  # noqa: BLE001 - tracking must never stop the pipeline
        log.warning("MLflow: could not prepare %s (%s); runs keep their results in %s/<id>/ and "
                    "`mdeaux train` imports them later", paths.mlflow_uri, err, paths.runs)
        return {}


# ------------------------------------------------------------------------------------------------
class Tracker:
    """The live MLflow run of one training run; degrades to a warning instead of failing the run.

    ``run_id`` continues the MLflow run a checkpoint was written for (``resumed`` tells whether that
    worked; if that run is not in the store, a new one is started). ``parent`` (study name, title)
    makes the run a child of that study's parent run. ``system_metrics_interval`` (seconds) turns on
    MLflow's system metrics (CPU, memory, disk, network; GPUs with ``nvidia-ml-py``) when psutil is
    installed; ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` in the environment takes precedence.
    """

    def __init__(self, uri: str, profile: str, run_name: str, tags: dict[str, str], artifacts: Path | None = None,
                 run_id: str | None = None, parent: tuple[str, str] | None = None, lock: Path | None = None,
                 system_metrics_interval: float | None = None):
        self.active = False
        self.resumed = False
        self.run = None
        try:
            import mlflow

            self.mlflow = mlflow
            mlflow.set_tracking_uri(uri)
            setup(uri, profile, artifacts)
            mlflow.set_experiment(experiment_name(profile))
            tags = dict(tags)
            if parent is not None:
                tags[PARENT] = ensure_parents(uri, profile, artifacts, {parent[0]: parent[1]}, lock)[parent[0]]
            system = _system_metrics(system_metrics_interval)
            if run_id:  # continue the run a checkpoint was written for
                try:
                    self.run = mlflow.start_run(run_id=run_id, log_system_metrics=system)
                    self.resumed = True
                except Exception as err:  # noqa: BLE001
                    log.warning("MLflow: could not continue run %s (%s); starting a new one", run_id, err)
            if self.run is None:
                self.run = mlflow.start_run(run_name=run_name, tags={**tags, SOURCE: "live"}, log_system_metrics=system)
            else:
                mlflow.set_tags(tags)
            self.active = True
        except Exception as err:  # noqa: BLE001 - tracking must never lose a run
            self._warn("start the MLflow run", err)

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.active else None

    def _warn(self, what: str, err: Exception) -> None:
        log.warning("MLflow: could not %s (%s); the run's results stay in runs/<id>/ and `mdeaux train` imports them",
                    what, err)
        self.active = False

    def _call(self, what: str, fn: str, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            getattr(self.mlflow, fn)(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            self._warn(what, err)

    def params(self, config) -> None:
        self._call("log params", "log_params", config_params(config))

    def metrics(self, metrics: Mapping[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if _finite(v)}
        self._call("log metrics", "log_metrics", clean, step=step)

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call(f"log artifact {path.name}", "log_artifact", str(path), artifact_path)

    def mark_complete(self) -> None:
        """Tag the run complete: call after everything was logged (``import_run`` skips such runs)."""
        self._call("tag the run complete", "set_tag", COMPLETE, "true")

    def finish(self, status: str = "FINISHED") -> None:
        """End the MLflow run, also after an earlier logging error (so it is not left RUNNING)."""
        if self.run is None:
            return
        try:
            self.mlflow.end_run(status=status)
        except Exception as err:  # noqa: BLE001
            self._warn("end the run", err)


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _system_metrics(interval: float | None) -> bool:
    """Set the sampling interval (unless the environment sets one); False when it cannot run."""
    import importlib.util

    if interval is None:
        return False
    if importlib.util.find_spec("psutil") is None:  # mlflow.start_run would raise for it
        log.info("MLflow: no system metrics (psutil is not installed)")
        return False
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop/"no GPU" notes per run
    if not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
        from mlflow.system_metrics import set_system_metrics_sampling_interval

        set_system_metrics_sampling_interval(interval)
    return True
