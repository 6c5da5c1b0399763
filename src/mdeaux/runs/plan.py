"""Planning: the studies of params.yaml as a deduplicated list of runs, each with a typed config.

A study is the product of its axes (depth datasets, seeds, fractions, tasks, and alpha, beta or gamma).
Each point resolves to a ``RunConfig`` (``resolve_config``) and gets its content address
(``runs/ids.py``); runs planned by several studies are trained once. Baseline runs (alpha = 1)
carry no alpha and no auxiliary settings, so ``dvc exp run -S alpha=0.8`` reuses them.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs.ids import canonical, code_version, data_versions, run_id, weights_version
from mdeaux.runs.store import ID_LENGTH, RunDir, RunStore
from mdeaux.training import tasks
from mdeaux.training.config import RunConfig


@dataclass(frozen=True)
class Run:
    id: str
    config: RunConfig
    inputs: dict[str, str]  # data versions (runs/ids.py)
    code: str  # training-code version
    studies: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return self.config.label

    def record(self) -> dict[str, Any]:
        """``config.json``: what the run is (its studies live beside it in ``studies.json``)."""
        return {"id": self.id, "config": self.config.model_dump(mode="json"), "inputs": self.inputs, "code": self.code}


def resolve_config(params: Params, *, depth: str, task: str, aux: str | None = None, seed: int, fraction: float = 1.0,
                   alpha: float | None = None, gamma: float = 1.0, beta: float | None = None,
                   model: dict | None = None) -> RunConfig:
    """Everything that decides the numbers of one run, and nothing else.

    ``aux`` names an entry of ``aux_sets`` (e.g. MIX6) or one segmentation dataset. ``alpha`` defaults
    to the top-level alpha. ``gamma`` scales the baseline's decoder LR (paper §5.1, Fig. 5 left);
    ``beta``, when given, replaces alpha's scaling by the beta variant (depth steps at eta, auxiliary
    steps at beta * eta, Fig. 5 right). Each is only recorded where it applies, so it changes no other
    run's id. ``model`` overrides the model section (Table 4's backbone).
    """
    baseline = task == tasks.BASELINE
    if baseline and beta is not None:
        raise ValueError("beta applies to auxiliary-task runs, not to the baseline")
    if not baseline and gamma != 1.0:
        raise ValueError("gamma scales the baseline's LR only; got gamma != 1 for an auxiliary-task run")
    if not baseline and aux is None:
        raise ValueError(f"task {task!r} needs an auxiliary set")
    read = tasks.train_keys_read(task)
    train = {k: v for k, v in params.train.model_dump().items() if k not in tasks.task_only_train_keys() - read}
    aux_datasets = [] if baseline else list(params.aux_sets.get(aux, [aux]))
    return RunConfig.model_validate({
        "profile": params.profile,
        "depth_dataset": depth,
        "task": task,
        "aux_set": None if baseline else aux,
        "aux_datasets": aux_datasets,
        # alpha = 1 is the DINOv2 baseline (paper §3); the beta variant has no alpha
        "alpha": 1.0 if baseline else None if beta is not None else (params.alpha if alpha is None else alpha),
        "gamma": gamma if baseline and gamma != 1.0 else None,
        "beta": beta,
        "seed": seed,
        "fraction": fraction,
        "model": {**params.model.model_dump(), **(model or {})},
        "train": train,
        "augment": {name: params.augment[name].model_dump() for name in [depth, *aux_datasets]},
    })


def planned_configs(params: Params) -> list[tuple[RunConfig, str]]:
    """(config, study) pairs of every study: the product of its axes, before deduplication."""
    out = []
    for name, study in params.studies.items():
        for depth, seed, fraction, task in itertools.product(study.depth, study.seeds, study.fraction, study.tasks):
            common = {"depth": depth, "task": task, "seed": seed, "fraction": fraction, "model": study.model}
            if task == tasks.BASELINE:
                variants = [{"gamma": g} for g in study.gamma]
            elif study.beta is not None:
                variants = [{"aux": a, "beta": b} for a in study.aux for b in study.beta]
            else:
                variants = [{"aux": a, "alpha": al} for a in study.aux for al in (study.alpha or [None])]
            out += [(resolve_config(params, **common, **v), name) for v in variants]
    return out


def reads(config: RunConfig) -> dict[str, float]:
    """The datasets a run reads, each with the training fraction it reads."""
    return {config.depth_dataset: config.fraction, **{name: 1.0 for name in config.aux_datasets}}


def inputs_of(config: RunConfig, paths: Paths) -> dict[str, str]:
    """The versions of what a run reads besides its configuration: data, split and backbone weights."""
    return {**data_versions(paths, reads(config)), **weights_version(paths, config.model.weights_dir)}


def make_run(config: RunConfig, paths: Paths, code: str) -> Run:
    inputs = inputs_of(config, paths)
    return Run(id=run_id(config, inputs, code), config=config, inputs=inputs, code=code)


def check_inputs(run: Run, paths: Paths) -> None:
    """Refuse to train ``run`` on data other than what it was planned for (its id digests that data)."""
    now = inputs_of(run.config, paths)
    changed = [f"{key} planned {str(run.inputs.get(key))[:12]}, now {value[:12]}" for key, value in now.items()
               if run.inputs.get(key) != value]
    if changed:
        raise ValueError(f"run {run.id} ({run.config.label}) was planned for other data ({'; '.join(changed)}): its id "
                         "no longer names what it would train; plan again with `mdeaux train` (or `mdeaux runs --write`)")


def plan(paths: Paths, params: Params, *, write: bool = True) -> list[Run]:
    """The deduplicated runs of all studies, in a stable order; with ``write``, each run's folder gets
    its ``config.json`` (once) and its current ``studies.json``."""
    code = code_version()
    runs: dict[str, Run] = {}
    studies: dict[str, list[str]] = {}
    for config, study in planned_configs(params):
        run = make_run(config, paths, code)
        runs.setdefault(run.id, run)
        studies.setdefault(run.id, [])
        if study not in studies[run.id]:
            studies[run.id].append(study)
    planned = [Run(r.id, r.config, r.inputs, r.code, tuple(studies[r.id])) for r in runs.values()]
    if write:
        store = RunStore(paths.runs)
        for run in planned:
            folder = store[run.id]
            if not (folder / RunDir.CONFIG).exists():
                folder.write_json(RunDir.CONFIG, run.record())
            if folder.studies() != list(run.studies):
                folder.write_json(RunDir.STUDIES, list(run.studies))
    return planned


def plan_without_data(params: Params) -> list[Run]:
    """The deduplicated runs of all studies before any data exists (for ``mdeaux runs --cost``): their
    ids digest the config alone, as their data versions are not known yet."""
    runs: dict[str, Run] = {}
    for config, study in planned_configs(params):
        key = hashlib.sha256(canonical(config.model_dump(mode="json")).encode()).hexdigest()[:ID_LENGTH]
        run = runs.setdefault(key, Run(id=key, config=config, inputs={}, code=""))
        if study not in run.studies:
            runs[key] = Run(run.id, run.config, run.inputs, run.code, (*run.studies, study))
    return list(runs.values())


def load_run(folder: RunDir) -> Run:
    """A planned run from its folder (``config.json`` and ``studies.json``)."""
    if not (folder / RunDir.CONFIG).is_file():
        raise FileNotFoundError(f"{folder / RunDir.CONFIG} is missing: plan the run first with `mdeaux train` "
                                "(or `mdeaux runs --write`)")
    rec = folder.read_json(RunDir.CONFIG)
    return Run(id=rec["id"], config=RunConfig.model_validate(rec["config"]), inputs=rec["inputs"], code=rec["code"],
               studies=tuple(folder.studies()))
