"""MLflow tracking: one experiment per profile; in it, the parent of every training run and one parent
per study.

The tracking URI is the SQLite database at the store root (``mlflow.db``), or ``MLFLOW_TRACKING_URI``
when set (e.g. a tracking server, ``http://host:5000``).

- ``ensure_parents`` creates the experiment, the parent ``training runs`` (tag ``mdeaux.kind=runs``)
  and one parent run per study (run name ``study:<name>``, tags ``mdeaux.kind=study``, ``mdeaux.study``,
  ``mdeaux.title``) once, before the runs fan out; it finds existing parents by tag, so calling it
  again creates nothing.
- ``Tracker`` is the live MLflow run of one training run: a child (``mlflow.parentRunId``) of
  ``training runs``, named by its label, with params (the flattened config and its decoder LR
  factors), per-step curves, test metrics at each evaluation, system metrics, tags (``run_tags``)
  and artifacts. Tracking never decides whether a run succeeds: if MLflow fails, training goes on
  and its numbers stay in ``runs/<id>/``.
- ``mlflow_studies.py`` puts under each study's parent one child per run the study uses (a "cell":
  the run's label, axes and best/final metrics, linking to the training run) and the study's results.
- ``mlflow_import.py`` builds the same MLflow run from ``runs/<id>/`` afterwards, for runs whose
  tracker could not reach MLflow (offline compute nodes, a server that was down).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mdeaux.runs.store import RunDir

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A tracking server that is down must not hold a run back: MLflow's own defaults (7 retries with backoff
# factor 2, a 120 s timeout) wait about 4 minutes before the tracker gives up and training starts. These
# give up within seconds; the run's files are imported by the next `mdeaux train`. The environment wins.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

RUN_FILES = (RunDir.CONFIG, RunDir.STUDIES, RunDir.METRICS, RunDir.CURVES, RunDir.EVALS, RunDir.TAGS)  # logged as artifacts
KIND, STUDY, TITLE, COMPLETE, SOURCE = "mdeaux.kind", "mdeaux.study", "mdeaux.title", "mdeaux.complete", "mdeaux.source"
PARENT = "mlflow.parentRunId"  # the tag MLflow's UI nests child runs by
RUNS = ":training-runs"  # ensure_parents' key of the parent of every training run (not a study name)
TRAINING_RUNS = "training runs"  # its run name
# what decides a run: git_dirty is "true" only when one of these differs from the commit (not when the
# pipeline's own outputs, dvc.lock and reports/, are being rewritten)
CODE_PATHS = ("src", "pipeline", "params.yaml", "dvc.yaml", "pyproject.toml", "constraints.txt")
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
    """A run's MLflow params: every resolved config value (``training/config.py``), flattened, as text
    (values that do not apply to the run, None, are left out; a baseline's gamma is 1), and the decoder
    LR factors of its two steps (``lr_factor.depth``, ``lr_factor.aux``: alpha and 1 - alpha, 1 and beta,
    or gamma), which compare across the alpha, beta and gamma studies."""
    from mdeaux.training.scheme import decoder_lrs

    values = {k: str(v) for k, v in flatten(config.model_dump(mode="json")).items() if v is not None}
    if config.baseline:
        values.setdefault("gamma", "1.0")
    depth, aux = decoder_lrs(config)
    values["lr_factor.depth"] = f"{depth / config.train.lr:g}"
    values["lr_factor.aux"] = "0" if aux is None else f"{aux / config.train.lr:g}"
    return values


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = "true" if git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS) else "false"
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
    would mean nothing to it. A concurrent creation by another process is taken as success. A new SQLite
    database is created under ``.mlflow.db.lock`` beside it: MLflow's schema migration is not safe
    when two processes (two experiments sharing a store) open the same new file at once.
    """
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    with _locked(db.with_name(f".{db.name}.lock") if db is not None else None):
        return _setup(uri, profile, artifacts)


def _setup(uri: str, profile: str, artifacts: Path | None) -> str:
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    name = experiment_name(profile)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if artifacts is not None and not is_server(uri):
            relocate(uri, artifacts)
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


def relocate(uri: str, artifacts: Path) -> None:
    """Point a SQLite store's artifact locations at ``artifacts`` when the store was moved.

    MLflow stores artifact locations as absolute paths (a relative one is resolved when the experiment
    is created), so a repository copied or cloned elsewhere with its ``mlflow.db`` would show no
    artifacts. The experiments' and runs' locations under the old ``mlartifacts/`` are rewritten to the
    current one (both are columns of MLflow's schema: ``experiments.artifact_location``,
    ``runs.artifact_uri``); a store in place is left as it is.
    """
    import sqlite3

    if not uri.startswith("sqlite:///"):
        return
    new = artifacts.resolve().as_uri()
    with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=60)) as db, db:
        rows = db.execute("SELECT artifact_location FROM experiments WHERE artifact_location LIKE 'file://%/mlartifacts'").fetchall()
        for (old,) in rows:
            if old != new:
                db.execute("UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (new, old))
                db.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE artifact_uri LIKE ? || '/%'",
                           (new, len(old) + 1, old))
                log.info("MLflow: artifact locations moved from %s to %s", old, new)


def set_aside_if_corrupt(uri: str) -> Path | None:
    """Move a local SQLite store that is not a readable database to ``mlflow.db.corrupt[-N]`` (kept for
    inspection), so that MLflow starts a new one and ``mdeaux train`` imports every finished run into it
    from ``runs/<id>/``; the new path, or None when there was nothing to do."""
    import sqlite3

    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is None or not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as con:
            if con.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                return None
    except sqlite3.OperationalError:  # busy or locked by another process: not corrupt
        return None
    except sqlite3.DatabaseError:  # "file is not a database", "database disk image is malformed"
        pass
    aside, n = db.with_name(db.name + ".corrupt"), 1
    while aside.exists():
        aside, n = db.with_name(f"{db.name}.corrupt-{n}"), n + 1
    db.rename(aside)
    log.warning("MLflow: %s is not a readable database; moved it to %s and started a new one, into which the "
                "finished runs are imported from their folders", db, aside)
    return aside


def _parents(client, experiment_id: str, kind: str) -> dict[str, Any]:
    """The parent runs of one kind (``study``: keyed by study; ``runs``: key ""); of duplicates (two
    processes racing without a shared lock) always the same one: the oldest, then the smallest id."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{KIND}` = '{kind}'", max_results=1000)
    found: dict[str, Any] = {}
    for r in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        found.setdefault(r.data.tags.get(STUDY, ""), r)
    return found


def ensure_parents(uri: str, profile: str, artifacts: Path | None, studies: Mapping[str, str],
                   lock: Path | None = None, details: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """The MLflow run id of each study's parent run and, under ``RUNS``, of the parent of every training
    run, creating the missing ones (idempotent).

    ``studies`` maps study name to title (params ``studies.<name>.title``); ``details`` optionally
    maps a study to its definition, logged as the new parent's params. ``lock`` is a file that
    serialises concurrent callers sharing a file system (e.g. ``runs/.mlflow.lock``).
    """
    from mlflow.entities import Param

    experiment_id = setup(uri, profile, artifacts)  # first: opening a client creates a new database, under setup's lock
    client = _client(uri)
    with _locked(lock):
        found = _parents(client, experiment_id, "study")
        container = _parents(client, experiment_id, "runs").get("")
        if container is None:
            container = client.create_run(experiment_id, run_name=TRAINING_RUNS, tags={
                KIND: "runs", "mlflow.note.content": "Every training run; each study's parent holds one child per run it uses."})
            client.set_terminated(container.info.run_id, "FINISHED")
        ids = {RUNS: container.info.run_id}
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
    set_aside_if_corrupt(paths.mlflow_uri)
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
    worked; if that run is not in the store, a new one is started); a continued run does not log again
    the steps it had logged before it was stopped. The run is a child of ``training runs``. It logs
    through its own ``MlflowClient`` (not MLflow's one active run per process), so the runs of a cohort
    are tracked side by side in one process. ``system_metrics_interval`` (seconds) turns on MLflow's
    system metrics (CPU, memory, disk, network; GPUs with ``nvidia-ml-py``) when psutil is installed;
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` in the environment takes precedence.
    """

    def __init__(self, uri: str, profile: str, run_name: str, tags: dict[str, str], artifacts: Path | None = None,
                 run_id: str | None = None, lock: Path | None = None, system_metrics_interval: float | None = None):
        self.active = False
        self.resumed = False
        self.run = None
        self._monitor = None
        self._logged: dict[str, int] = {}  # a continued run: the last step logged per metric, read when first needed
        try:
            self.client = _client(uri)
            experiment = setup(uri, profile, artifacts)
            tags = {**tags, PARENT: ensure_parents(uri, profile, artifacts, {}, lock)[RUNS]}
            if run_id:  # continue the run a checkpoint was written for
                try:
                    self.run = self.client.get_run(run_id)
                    self.client.update_run(run_id, status="RUNNING")
                    for key, value in tags.items():
                        self.client.set_tag(run_id, key, value)
                    self.resumed = True
                except Exception as err:  # noqa: BLE001
                    self.run = None
                    log.warning("MLflow: could not continue run %s (%s); starting a new one", run_id, err)
            if self.run is None:
                self.run = self.client.create_run(experiment, run_name=run_name, tags={**tags, SOURCE: "live"})
            self.active = True
            self._monitor = _system_monitor(self.run_id, uri, system_metrics_interval, self.resumed)
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
        """``client.<fn>(run_id, *args, **kwargs)``, or a warning that stops tracking this run."""
        if not self.active:
            return
        try:
            getattr(self.client, fn)(self.run_id, *args, **kwargs)
        except Exception as err:  # noqa: BLE001
            self._warn(what, err)

    def params(self, config) -> None:
        from mlflow.entities import Param

        self._call("log params", "log_batch", params=[Param(k, v) for k, v in config_params(config).items()])

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._call("log metrics", "log_batch", metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Per-step values as training logs them; a continued run skips the steps it logged before."""
        clean = {k: v for k, v in metrics.items() if _finite(v) and step > self._last_logged(k)}
        if clean:
            self._log(clean, step)

    def summary(self, metrics: Mapping[str, float], step: int) -> None:
        """End-of-run values (best, final), logged once."""
        self._log({k: v for k, v in metrics.items() if _finite(v)}, step)

    def _last_logged(self, key: str) -> int:
        if not (self.resumed and self.active):
            return -1
        if key not in self._logged:
            try:
                history = self.client.get_metric_history(self.run_id, key)
            except Exception as err:  # noqa: BLE001
                self._warn("read the metric history", err)
                return -1
            self._logged[key] = max((m.step for m in history), default=-1)
        return self._logged[key]

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call(f"log artifact {path.name}", "log_artifact", str(path), artifact_path)

    def mark_complete(self) -> None:
        """Tag the run complete: call after everything was logged (``import_run`` skips such runs)."""
        self._call("tag the run complete", "set_tag", COMPLETE, "true")

    def finish(self, status: str = "FINISHED") -> None:
        """End the MLflow run, also after an earlier logging error (so it is not left RUNNING)."""
        if self.run is None:
            return
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception as err:  # noqa: BLE001
                log.warning("MLflow: could not stop the system metrics (%s)", err)
            self._monitor = None
        try:
            self.client.set_terminated(self.run.info.run_id, status=status)
        except Exception as err:  # noqa: BLE001
            self._warn("end the run", err)


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _system_monitor(run_id: str, uri: str, interval: float | None, resumed: bool):
    """MLflow's system metrics monitor for the run, started; None when off or when psutil is missing."""
    import importlib.util

    if interval is None:
        return None
    if importlib.util.find_spec("psutil") is None:  # the monitor needs it
        log.info("MLflow: no system metrics (psutil is not installed)")
        return None
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop/"no GPU" notes per run
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or interval)
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=resumed, tracking_uri=uri)
    monitor.start()
    return monitor


def ui(paths, params) -> int:
    """``mdeaux ui``: the MLflow UI for this repository's store, on the host and port of params.yaml
    ``report.mlflow_ui`` (where reports/index.html links), opened on the experiment's runs table."""
    from urllib.parse import urlsplit

    address = urlsplit(params.report.mlflow_ui)
    if not paths.mlflow_db.is_file():
        raise FileNotFoundError(f"{paths.mlflow_db} is missing: train some runs first (`make repro` or `mdeaux train`)")
    uri = f"sqlite:///{paths.mlflow_db}"
    experiment = setup(uri, params.profile, paths.mlflow_artifacts)  # also points a moved store at its artifacts
    url = f"{params.report.mlflow_ui.rstrip('/')}/#/experiments/{experiment}/runs?workflowType=machine_learning"
    log.info("MLflow UI for %s: open %s (Ctrl-C stops it)", paths.mlflow_db, url)
    cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", address.hostname or "127.0.0.1",
           "--port", str(address.port or 5000)]
    try:
        return subprocess.run(cmd, cwd=paths.root).returncode
    except KeyboardInterrupt:
        return 0
