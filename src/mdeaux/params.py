"""Typed loading of params.yaml.

A value written as ``{mini: x, paper: y}`` is resolved for the active profile first; the result is
validated by a strict schema: an unknown key, a wrong type or a value out of range raises
``ParamsError`` naming the key, the value and what is allowed. Each dataset's transform settings are
its ``augment`` recipe with the dataset's differences (``apply_recipes``); ``overlay`` applies dotted
keys as ``dvc exp run -S`` does (the smoke world, pipeline/smoke.yaml). The whole schema of params.yaml
is this one module (about 440 lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mdeaux.data.datasets.registry import REGISTRY
from mdeaux.training.tasks import TASKS, study_tasks

PROFILES = ("mini", "paper")
# How the report can draw a study (params.yaml studies.<name>.render): one function each in
# report/renderers.py, which checks at import that it implements exactly these.
RENDERERS = ("table", "fig1_alpha", "fig3_aux", "fig4_fraction", "fig5")


class ParamsError(ValueError):
    """params.yaml is not valid; the message names the key, the value and what is allowed."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)  # .inf or .nan never validates


Prob = Annotated[float, Field(ge=0.0, le=1.0)]
PosInt = Annotated[int, Field(gt=0)]
Range2 = Annotated[list[float], Field(min_length=2, max_length=2)]
Size2 = Annotated[list[PosInt], Field(min_length=2, max_length=2)]


class SplitCounts(Strict):
    train: int = Field(ge=1)
    test: int | None = Field(default=None, ge=1)
    val: int | None = Field(default=None, ge=1)


class Synth(Strict):
    seed: int = Field(ge=0)
    counts: dict[str, SplitCounts]


class Fetch(Strict):
    retries: int = Field(ge=0, le=100)


class Prepare(Strict):
    workers: PosInt
    shard_rows: PosInt


class Validate(Strict):
    min_valid_frac: Prob
    max_depth_sanity: float = Field(gt=0)
    min_depth_max_sanity: float = Field(gt=0)


class Pretrain(Strict):
    seed: int = Field(ge=0)
    iterations: PosInt
    warmup_iters: int = Field(ge=0)
    batch_size: PosInt
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    mask_ratio: float = Field(gt=0, lt=1)
    short_side: PosInt
    crop: PosInt


class Split(Strict):
    seed: int = Field(ge=0)
    fractions: list[Annotated[float, Field(gt=0.0, le=1.0)]]
    subsets: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]]

    @field_validator("fractions")
    @classmethod
    def _has_full(cls, v: list[float]) -> list[float]:
        if 1.0 not in v:
            raise ValueError("must include 1.0 (the full training set)")
        return sorted(set(v))


class Tiny(Strict):
    hidden_size: PosInt
    num_hidden_layers: PosInt
    num_attention_heads: PosInt
    mlp_ratio: PosInt


class Model(Strict):
    backbone: Literal["tiny", "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14", "depth_anything_vitl14"]
    decoder_type: Literal["dinov2", "depth_anything"] | None = None
    weights_dir: str | None
    tiny: Tiny
    backbone_seed: int = Field(ge=0)
    decoder_channels: PosInt
    min_depth: float = Field(gt=0)
    depth_output_init: Literal["default", "positive"]


class Train(Strict):
    iterations: PosInt
    warmup_iters: int = Field(ge=0)
    warmup_ratio: float = Field(gt=0, le=1)
    min_lr_ratio: float = Field(ge=0, le=1)
    lr: float = Field(gt=0)
    head_lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]
    one_cycle_momentum: bool
    grad_clip: float = Field(gt=0)
    batch_size: PosInt
    eval_every: PosInt
    sigloss_warmup_iters: int = Field(ge=0)
    mldc_average: Literal["logits", "probs", "sigmoid"]
    mldc_ignored_only: Literal["skip", "absent"]
    flip_tta: bool
    eval_max_images: PosInt | None
    periodic_eval_images: PosInt | None
    grad_loss: Literal["dinov2", "spatial", "none"]
    grad_loss_weight: float = Field(ge=0)
    aux_draw: Literal["cycle", "random", "proportional"]
    checkpoint_every: PosInt
    precision: Literal["fp32", "bf16"]
    tf32: bool

    @model_validator(mode="after")
    def _warmup_fits(self) -> Train:
        if self.warmup_iters > self.iterations:
            raise ValueError(
                f"warmup_iters ({self.warmup_iters}) must not exceed iterations ({self.iterations})"
            )
        return self


class DepthAugment(Strict):
    resize_to: Size2 | None
    kb_crop: bool
    nyu_crop: bool
    view_scale: float = Field(gt=0, le=1)
    crop_size: Size2
    rotate_prob: Prob
    rotate_degree: float = Field(ge=0, le=180)
    flip_prob: Prob
    color_prob: Prob
    gamma_range: Range2
    brightness_range: Range2
    color_range: Range2


class SegAugment(Strict):
    img_scale: Size2
    ratio_range: Range2
    crop_size: Size2
    cat_max_ratio: Prob
    flip_prob: Prob
    photometric: bool


NonEmpty = Field(min_length=1)


def _one_of(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


class Study(Strict):
    """One table or figure of the paper as axes over runs (see params.yaml `studies`)."""

    title: str
    render: str  # how the report draws it: one of RENDERERS
    depth: Annotated[list[str], NonEmpty]
    aux: list[str] = []  # names in `aux_sets` or single segmentation datasets
    tasks: Annotated[list[str], NonEmpty]  # "baseline" and names in training/tasks.py TASKS
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], NonEmpty]
    alpha: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = None  # None: the top-level alpha
    beta: list[Annotated[float, Field(gt=0.0)]] | None = None  # the beta variant instead of alpha
    gamma: list[Annotated[float, Field(gt=0.0)]] = [1.0]  # baseline decoder LR factor
    fraction: list[Annotated[float, Field(gt=0.0, le=1.0)]] = [1.0]
    model: dict[str, Any] = {}  # overrides of the `model` section

    @field_validator("render")
    @classmethod
    def _known_renderer(cls, v: str) -> str:
        return _one_of(v, RENDERERS, "renderer")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        return [_one_of(t, study_tasks(), "task") for t in v]

    @model_validator(mode="after")
    def _axes_fit(self) -> Study:
        aux_tasks = [t for t in self.tasks if t != "baseline"]
        if aux_tasks and not self.aux:
            raise ValueError(f"tasks {aux_tasks} need at least one `aux` set")
        if self.alpha is not None and self.beta is not None:
            raise ValueError("give either `alpha` or `beta` (the beta variant), not both")
        if self.gamma != [1.0] and "baseline" not in self.tasks:
            raise ValueError("`gamma` scales the baseline: add `baseline` to tasks")
        return self


class Slurm(Strict):
    gpus: int = Field(ge=0)
    gpu_model: str | None
    cpus_per_task: PosInt
    mem_mb: PosInt
    runtime_min: PosInt
    requeue: bool
    signal_seconds: int = Field(ge=0)


class Cost(Strict):
    step_seconds: float = Field(gt=0)
    backbone_image_seconds: float = Field(gt=0)
    eval_image_seconds: float = Field(gt=0)
    eval_backbone_seconds: float = Field(gt=0)
    test_images: dict[str, PosInt]

    @model_validator(mode="after")
    def _parts_fit(self) -> Cost:
        if self.eval_backbone_seconds > self.eval_image_seconds:
            raise ValueError("eval_backbone_seconds is a part of eval_image_seconds: it cannot be larger")
        return self


class Cohort(Strict):
    max_runs: PosInt
    memory_gb: float | None = Field(gt=0)
    backbone_memory_gb: float | None = Field(ge=0)
    run_memory_gb: float | None = Field(gt=0)

    @property
    def cap(self) -> int:
        """Most runs in one cohort: ``max_runs``, and where a device memory is given, as many decoders
        as fit beside the backbone."""
        if self.memory_gb is None or self.run_memory_gb is None:
            return self.max_runs
        fit = int((self.memory_gb - (self.backbone_memory_gb or 0.0)) // self.run_memory_gb)
        if fit < 1:
            raise ValueError(f"params.yaml runner.cohort: memory_gb {self.memory_gb} leaves no room for one run "
                             f"({self.run_memory_gb} GB) beside the backbone ({self.backbone_memory_gb} GB)")
        return min(self.max_runs, fit)


class Runner(Strict):
    cores: PosInt
    torch_threads: PosInt
    device: Literal["auto", "cpu", "cuda"]
    loader_workers: int = Field(ge=0)
    compile: bool
    save_predictions: int = Field(ge=0)
    cohort: Cohort
    slurm: Slurm
    cost: Cost


class Ours(Strict):
    task: str  # a name in training/tasks.py TASKS
    aux: str  # a name in aux_sets or one segmentation dataset (checked in Params)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        return _one_of(v, TASKS, "task")


class Report(Strict):
    mlflow_ui: str
    ours: Ours
    curve_points: PosInt
    fig1_samples: PosInt
    learned_below: float = Field(gt=0, le=1)
    require_learned: bool


class Params(Strict):
    profile: Literal["mini", "paper"]
    alpha: float = Field(ge=0.0, le=1.0)
    datasets: list[str]
    synth: Synth
    fetch: Fetch
    prepare: Prepare
    validate_: Validate = Field(alias="validate")
    split: Split
    pretrain: Pretrain
    model: Model
    train: Train
    augment: dict[str, Any]  # checked per dataset task in parse()
    aux_sets: dict[str, Annotated[list[str], NonEmpty]]
    studies: dict[str, Study]
    runner: Runner
    report: Report

    @model_validator(mode="after")
    def _datasets_known(self) -> Params:
        for name in self.augment:
            _known(f"augment.{name}", name)
        for name in self.split.subsets:
            _known(f"split.subsets.{name}", name)
        for i, name in enumerate(self.datasets):
            _known(f"datasets[{i}]", name)
        for name in self.synth.counts:
            _known(f"synth.counts.{name}", name)
            want = REGISTRY[name].splits
            got = {k for k in ("train", "test", "val") if getattr(self.synth.counts[name], k) is not None}
            if got != set(want):
                raise ValueError(f"synth.counts.{name}: needs exactly the splits {list(want)}, got {sorted(got)}")
        for sname, study in self.studies.items():
            for i, name in enumerate(study.depth):
                _known(f"studies.{sname}.depth[{i}]", name, task="depth")
                self._needs(f"studies.{sname}.depth[{i}]", name)
            for i, entry in enumerate(study.aux):
                for name in self.aux_sets.get(entry, [entry]):
                    _known(f"studies.{sname}.aux[{i}] ({entry})", name, task="segmentation")
                    self._needs(f"studies.{sname}.aux[{i}] ({entry})", name)
            for f in study.fraction:
                if f not in self.split.fractions:
                    raise ValueError(f"studies.{sname}.fraction: {f} is not in split.fractions {self.split.fractions}; add it there")
            if study.model:
                try:
                    Model(**{**self.model.model_dump(), **study.model})
                except ValidationError as err:
                    raise ValueError(f"studies.{sname}.model: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from None
        for name in self.aux_sets.get(self.report.ours.aux, [self.report.ours.aux]):
            _known(f"report.ours.aux ({self.report.ours.aux})", name, task="segmentation")
        for name, members in self.aux_sets.items():
            if name in REGISTRY:
                raise ValueError(f"aux_sets.{name}: the name of a set must not be a dataset name")
            for i, member in enumerate(members):
                _known(f"aux_sets.{name}[{i}]", member, task="segmentation")
        return self

    def _needs(self, key: str, name: str) -> None:
        if name not in self.datasets:
            raise ValueError(f"{key}: dataset {name!r} is not in `datasets` {self.datasets}; add it there")
        if name not in self.augment:
            raise ValueError(f"{key}: dataset {name!r} has no `augment.{name}` section")
        if self.profile == "mini" and name not in self.synth.counts:
            raise ValueError(f"{key}: dataset {name!r} has no `synth.counts.{name}` for the mini world")


def _known(key: str, name: Any, task: str | None = None) -> None:
    if name not in REGISTRY:
        raise ValueError(f"{key}: unknown dataset {name!r}; allowed: {', '.join(sorted(REGISTRY))}")
    if task and REGISTRY[name].task != task:
        allowed = sorted(n for n, s in REGISTRY.items() if s.task == task)
        raise ValueError(f"{key}: {name!r} is a {REGISTRY[name].task} dataset; allowed here: {', '.join(allowed)}")


def resolve_profile(raw: Any, profile: str, key: str = "") -> Any:
    """Replace every ``{mini: x, paper: y}`` mapping by the active profile's value."""
    if isinstance(raw, dict):
        if raw and set(raw) <= set(PROFILES):
            if profile not in raw:
                raise ParamsError(f"params.yaml: {key}: no value for profile {profile!r} (has {sorted(raw)})")
            return resolve_profile(raw[profile], profile, key)
        return {k: resolve_profile(v, profile, f"{key}.{k}" if key else str(k)) for k, v in raw.items()}
    if isinstance(raw, list):
        return [resolve_profile(v, profile, f"{key}[{i}]") for i, v in enumerate(raw)]
    return raw


def _format_errors(err: ValidationError, source: str, prefix: str = "") -> str:
    lines = [f"{source} is not valid:"]
    for e in err.errors():
        parts = [prefix] if prefix else []
        parts += [str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]]
        loc = ".".join(parts).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key{shown}")
        else:
            lines.append(f"  {loc}: {msg}{shown}" if loc else f"  {msg}")
    return "\n".join(lines)


def apply_recipes(augment: dict, source: str = "params.yaml") -> dict[str, dict]:
    """Each dataset's transform settings: its base recipe (``augment.recipes.<name>``) updated with the
    dataset's own differences, e.g. ``kitti: {recipe: toolbox_nyu, kb_crop: true, ...}``."""
    recipes = augment.get("recipes") or {}
    if not isinstance(recipes, dict):
        raise ParamsError(f"{source}: augment.recipes: expected a mapping of recipe names to settings")
    out = {}
    for name, entry in augment.items():
        if name == "recipes":
            continue
        if not isinstance(entry, dict) or entry.get("recipe") not in recipes:
            got = entry.get("recipe") if isinstance(entry, dict) else entry
            raise ParamsError(f"{source}: augment.{name}.recipe: {got!r} is not a recipe; "
                              f"allowed: {', '.join(recipes) or 'none (add augment.recipes)'}")
        out[name] = {**recipes[entry["recipe"]], **{k: v for k, v in entry.items() if k != "recipe"}}
    return out


def parse(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    profile = raw.get("profile", "mini")
    if profile not in PROFILES:
        raise ParamsError(f"{source}: profile: {profile!r} is not allowed; allowed: {', '.join(PROFILES)}")
    resolved = resolve_profile(raw, profile)
    if isinstance(resolved.get("augment"), dict):
        resolved["augment"] = apply_recipes(resolved["augment"], source)
    try:
        params = Params.model_validate(resolved)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None
    augment = {}
    for name, value in params.augment.items():
        schema = DepthAugment if REGISTRY[name].task == "depth" else SegAugment
        try:
            augment[name] = schema.model_validate(value)
        except ValidationError as err:
            raise ParamsError(_format_errors(err, source, prefix=f"augment.{name}")) from None
    return params.model_copy(update={"augment": augment})


def load(path: Path | str) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} does not exist: run mdeaux from the repository root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return parse(raw, str(path.name))


def overlay(raw: dict, changes: dict[str, Any]) -> dict:
    """``raw`` (params.yaml as loaded) with ``changes`` applied: dotted keys, as ``dvc exp run -S`` sets them."""
    import copy

    out = copy.deepcopy(raw)
    for key, value in changes.items():
        node, *path = out, *key.split(".")
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                raise ParamsError(f"overlay key {key!r}: {part!r} is not a section of params.yaml")
            node = node[part]
        node[path[-1]] = copy.deepcopy(value)
    return out


def set_args(changes: dict[str, Any]) -> list[str]:
    """``changes`` as ``dvc exp run`` arguments (``-S key=value``, values in Hydra's override syntax)."""

    def value(v: Any) -> str:
        if isinstance(v, list):
            return "[" + ",".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return str(v).lower()
        return str(v)

    def leaves(prefix: str, v: Any):
        if isinstance(v, dict):
            for k, sub in v.items():
                yield from leaves(f"{prefix}.{k}", sub)
        else:
            yield prefix, v

    return [arg for key, v in changes.items() for k, leaf in leaves(key, v) for arg in ("-S", f"{k}={value(leaf)}")]


def load_overlay(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    changes = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(changes, dict):
        raise ParamsError(f"{path}: expected a mapping of dotted params.yaml keys to values")
    return changes
