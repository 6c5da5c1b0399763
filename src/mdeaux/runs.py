"""Runs: fully resolved training configurations, content-addressed.

A run id is the hash of (a) the resolved run configuration, (b) the versions of its input data (the
prepared datasets' ``data_version`` and the split file's digest) and (c) the training code. The same
configuration planned by two studies is one run; a changed parameter, dataset or training code gives
a new id; an unchanged run is never trained again. Baseline runs (alpha = 1) carry no alpha and no
auxiliary settings, so ``dvc exp run -S alpha=0.8`` reuses them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdeaux import atomic
from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.split import fraction_key

PACKAGE = Path(__file__).resolve().parent
# The code whose behaviour decides a run's numbers. A change to any of these files changes every
# run id; code outside this list (CLI, reports, validation, tracking) does not.
TRAINING_CODE = (
    "datasets",
    "model",
    "transforms.py",
    "losses.py",
    "metrics.py",
    "schedule.py",
    "prepare.py",
    "train.py",
)
# train params that only some tasks read (others drop them, so changing them keeps those runs' ids)
AUX_TASKS = ("mldc", "segmentation", "reconstruction", "slc")
TASK_ONLY_TRAIN_KEYS = {"mldc_average": ("mldc",), "aux_draw": AUX_TASKS}


@dataclass(frozen=True)
class Run:
    id: str
    config: dict[str, Any]
    inputs: dict[str, str]
    code: str
    studies: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        c = self.config
        task = "baseline" if c["task"] == "baseline" else f"{c['task']}+{c.get('aux_set') or '+'.join(c['aux_datasets'])}"
        scale = f"b{c['beta']:g}" if c.get("beta") is not None else f"a{c['alpha']:g}"
        if c.get("gamma") is not None:
            scale += f"g{c['gamma']:g}"
        frac = "" if c["fraction"] == 1.0 else f"/f{c['fraction']:g}"
        m = c["model"]
        da = "/depth-anything" if m["backbone"].startswith("depth_anything") or m.get("decoder_type") == "depth_anything" else ""
        return f"{c['depth_dataset']}{da}/{task}/{scale}{frac}/s{c['seed']}"

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "config": self.config, "inputs": self.inputs, "code": self.code}


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def code_version() -> str:
    """sha256 over the training code files (path and content), in a fixed order."""
    h = hashlib.sha256()
    for entry in TRAINING_CODE:
        path = PACKAGE / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(f.relative_to(PACKAGE).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def data_versions(paths: Paths, datasets: dict[str, float]) -> dict[str, str]:
    """The prepared data version of each dataset a run reads, and the digest of the ids it reads
    (its training fraction and the test list), so adding another fraction changes no existing run."""
    out: dict[str, str] = {}
    for name, fraction in datasets.items():
        manifest = paths.prepared_of(name) / "manifest.json"
        split = paths.split_of(name)
        for f, what in ((manifest, "prepare"), (split, "split")):
            if not f.is_file():
                raise FileNotFoundError(f"{f} is missing: run `dvc repro {what}` (or `mdeaux {what}`) first")
        ids = json.loads(split.read_text())
        key = fraction_key(fraction)
        if key not in ids["fractions"]:
            raise KeyError(f"{split}: no training fraction {key} (has {sorted(ids['fractions'])}); add it to split.fractions")
        out[f"{name}:data"] = json.loads(manifest.read_text())["data_version"]
        out[f"{name}:split"] = hashlib.sha256(canonical([ids["fractions"][key], ids["test"]]).encode()).hexdigest()
    return out


def resolve_config(params: Params, *, depth: str, task: str, aux: str | None = None, seed: int, fraction: float = 1.0,
                   alpha: float | None = None, gamma: float = 1.0, beta: float | None = None,
                   model: dict | None = None) -> dict:
    """Everything that decides the numbers of one run, and nothing else.

    ``aux`` names an entry of ``aux_sets`` (e.g. MIX6) or one segmentation dataset. ``alpha`` defaults
    to the top-level alpha. ``gamma`` scales the baseline's decoder LR (paper §5.1, Fig. 5 left);
    ``beta``, when given, replaces alpha's scaling by the beta variant (depth steps at eta, auxiliary
    steps at beta * eta, Fig. 5 right). Each is only recorded where it applies, so it changes no other
    run's id. ``model`` overrides the model section (Table 4's backbone).
    """
    baseline = task == "baseline"
    if baseline and beta is not None:
        raise ValueError("beta applies to auxiliary-task runs, not to the baseline")
    if not baseline and gamma != 1.0:
        raise ValueError("gamma scales the baseline's LR only; got gamma != 1 for an auxiliary-task run")
    if not baseline and aux is None:
        raise ValueError(f"task {task!r} needs an auxiliary set")
    train = params.train.model_dump()
    for key, tasks in TASK_ONLY_TRAIN_KEYS.items():
        if task not in tasks:
            train.pop(key)
    aux_datasets = [] if baseline else list(params.aux_sets.get(aux, [aux]))
    return {
        "profile": params.profile,
        "depth_dataset": depth,
        "aux_set": None if baseline else aux,
        "aux_datasets": aux_datasets,
        "task": task,
        # alpha = 1 is the DINOv2 baseline (paper §3); the beta variant has no alpha
        "alpha": 1.0 if baseline else None if beta is not None else (params.alpha if alpha is None else alpha),
        **({"gamma": gamma} if baseline and gamma != 1.0 else {}),
        **({"beta": beta} if beta is not None else {}),
        "seed": seed,
        "fraction": fraction,
        "model": {**params.model.model_dump(), **(model or {})},
        "train": train,
        "augment": {name: params.augment[name].model_dump() for name in [depth, *aux_datasets]},
    }


def planned_configs(params: Params) -> list[tuple[dict, str]]:
    """(config, study) pairs of every study: the product of its axes, before deduplication."""
    out = []
    for name, study in params.studies.items():
        for depth, seed, fraction, task in itertools.product(study.depth, study.seeds, study.fraction, study.tasks):
            common = {"depth": depth, "task": task, "seed": seed, "fraction": fraction, "model": study.model}
            if task == "baseline":
                variants = [{"gamma": g} for g in study.gamma]
            elif study.beta is not None:
                variants = [{"aux": a, "beta": b} for a in study.aux for b in study.beta]
            else:
                variants = [{"aux": a, "alpha": al} for a in study.aux for al in (study.alpha or [None])]
            out += [(resolve_config(params, **common, **v), name) for v in variants]
    return out


def gpu_hours(run: Run, step_seconds: float, eval_image_seconds: float, test_images: int) -> tuple[float, float]:
    """(training, evaluation) hours of one run: ``step_seconds`` per global step (a baseline takes no
    auxiliary step: half), ``eval_image_seconds`` per test image and evaluation."""
    t = run.config["train"]
    steps = t["iterations"] * step_seconds * (0.5 if run.config["task"] == "baseline" else 1.0)
    evals = -(-t["iterations"] // t["eval_every"])
    images = min(test_images, t["eval_max_images"] or test_images)
    return steps / 3600, evals * images * eval_image_seconds / 3600


def test_image_count(paths: Paths, name: str, profile: str) -> int:
    """Test images of a dataset: the official count of its last split (paper profile, where published),
    else its split file's test list."""
    from mdeaux.datasets.registry import get

    counts = dict(get(name).official_counts)
    if profile == "paper" and counts:
        return counts[get(name).splits[-1]]
    split = paths.split_of(name)
    return len(json.loads(split.read_text())["test"]) if split.is_file() else 0


def study_counts(runs: list[Run]) -> dict[str, int]:
    """Number of (deduplicated) runs each study uses."""
    counts: dict[str, int] = {}
    for run in runs:
        for study in run.studies:
            counts[study] = counts.get(study, 0) + 1
    return counts


def make_run(config: dict, paths: Paths, code: str) -> Run:
    used = {config["depth_dataset"]: config["fraction"], **{name: 1.0 for name in config["aux_datasets"]}}
    inputs = data_versions(paths, used)
    digest = hashlib.sha256(canonical({"config": config, "inputs": inputs, "code": code}).encode()).hexdigest()
    return Run(id=digest[:16], config=config, inputs=inputs, code=code)


def plan(paths: Paths, params: Params, *, write: bool = True) -> list[Run]:
    """The deduplicated runs of all studies, in a stable order; writes runs/<id>/config.json."""
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
        for run in planned:
            target = paths.run_dir(run.id) / "config.json"
            if not target.exists():
                atomic.write_json(target, run.record())
    return planned


def load_run(paths: Paths, run_id: str) -> Run:
    f = paths.run_dir(run_id) / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: plan the run first with `mdeaux train` (or `mdeaux runs --write`)")
    rec = json.loads(f.read_text())
    return Run(id=rec["id"], config=rec["config"], inputs=rec["inputs"], code=rec["code"])


def is_done(paths: Paths, run_id: str) -> bool:
    return (paths.run_dir(run_id) / "metrics.json").is_file()
