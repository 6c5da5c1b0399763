"""``mdeaux runs``: the planned runs of every study, which are done, and what the grid costs."""

from __future__ import annotations

from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs import cohorts, cost
from mdeaux.runs.cost import Hours
from mdeaux.runs.plan import Run, plan, plan_without_data, planned_configs
from mdeaux.runs.store import RunStore


def show(paths: Paths, params: Params, write: bool = False, cost: bool = False) -> str:
    """The text of ``mdeaux runs`` (``cost``: GPU hours per study instead of the list of runs; it needs
    no data, so it works on a fresh clone of the paper profile)."""
    if cost:
        return cost_table(paths, params)
    store = RunStore(paths.runs)
    runs = plan(paths, params, write=write)
    done = {r.id for r in runs if store[r.id].done}
    formed = cohorts.form([r for r in runs if r.id not in done], params.runner.cohort)
    cohort_of = cohorts.of_runs(formed)
    if write:
        cohorts.write(store, formed)
    lines = [f"{len(runs)} run(s) planned, {len(done)} done, {len(runs) - len(done)} missing in {len(formed)} "
             f"cohort(s) (store: {paths.runs})"]
    # a missing run's cohort: the runs trained together in one process (runs/cohorts.py)
    lines += [f"  {r.id}  {'done' if r.id in done else 'cohort ' + cohort_of[r.id].id:<23}"
              f"  {r.label:<44} studies: {', '.join(r.studies)}" for r in runs]
    lines.append(f"\n{'study':<18} {'title':<24} {'cells':>6} {'runs':>6} {'shared':>7}")
    lines += [f"{name:<18} {title:<24} {cells:>6} {n:>6} {shared:>7}" for name, title, cells, n, shared in _counts(params, runs)]
    return "\n".join(lines)


def _counts(params: Params, runs: list[Run]) -> list[tuple[str, str, int, int, int]]:
    """Per study and for all: cells (points of its grid), runs (distinct among them), shared (runs
    another study uses too)."""
    cells = {name: sum(1 for _, s in planned_configs(params) if s == name) for name in params.studies}
    rows = []
    for name, study in params.studies.items():
        mine = [r for r in runs if name in r.studies]
        rows.append((name, study.title, cells[name], len(mine), sum(1 for r in mine if len(r.studies) > 1)))
    rows.append(("all studies", "", sum(cells.values()), len(runs), sum(1 for r in runs if len(r.studies) > 1)))
    return rows


def _hours(paths: Paths, params: Params, runs: list[Run]) -> tuple[Hours, Hours, dict[str, tuple[Hours, Hours]]]:
    """GPU hours of ``runs`` trained alone and in the cohorts the planner forms, and per depth dataset."""
    c = params.runner.cost
    images: dict[str, int] = {}
    per_dataset: dict[str, tuple[Hours, Hours]] = {}
    for run in runs:
        name = run.config.depth_dataset
        if name not in images:
            images[name] = cost.test_images(paths, params, name)
        a, b = per_dataset.get(name, (cost.ZERO, cost.ZERO))
        per_dataset[name] = (a + cost.alone(run.config, c, images[name]), b)
    for cohort in cohorts.form(runs, params.runner.cohort):
        name = cohort.runs[0].config.depth_dataset
        a, b = per_dataset[name]
        per_dataset[name] = (a, b + cost.together([r.config for r in cohort.runs], c, images[name]))
    solo = sum((a for a, _ in per_dataset.values()), cost.ZERO)
    grouped = sum((b for _, b in per_dataset.values()), cost.ZERO)
    return solo, grouped, per_dataset


def _fmt(h: Hours) -> str:
    d = 1 if h.total >= 100 else 2
    return f"{h.total:9.{d}f} ({h.train:.{d}f} + {h.eval:.{d}f})"


def cost_table(paths: Paths, params: Params) -> str:
    runs = plan_without_data(params)
    lines = [f"{len(runs)} run(s) planned ({params.profile} profile); GPU hours trained alone and in cohorts "
             f"(runs sharing their batches, at most {params.runner.cohort.cap} per cohort: runner.cohort)",
             f"\n{'study':<18} {'title':<24} {'cells':>6} {'runs':>6} {'shared':>7}   {'alone (train + eval)':>26}   "
             f"{'in cohorts (train + eval)':>26}   ratio"]
    for name, title, cells, n, shared in _counts(params, runs):
        mine = runs if name == "all studies" else [r for r in runs if name in r.studies]
        solo, grouped, per_dataset = _hours(paths, params, mine)
        lines.append(f"{name:<18} {title:<24} {cells:>6} {n:>6} {shared:>7}   {_fmt(solo):>26}   {_fmt(grouped):>26}   "
                     f"{grouped.total / solo.total if solo.total else 0:5.2f}")
    lines.append("\nper depth dataset, all studies:")
    for name, (solo, grouped) in per_dataset.items():
        lines.append(f"  {name:<16} {cost.test_images(paths, params, name):>7} test images   alone {_fmt(solo)}   "
                     f"in cohorts {_fmt(grouped)}")
    n = params.train.periodic_eval_images
    other = params.model_copy(update={"train": params.train.model_copy(update={"periodic_eval_images": None if n else 10000})})
    solo, grouped, _ = _hours(paths, other, plan_without_data(other))
    lines.append(f"\nwith train.periodic_eval_images: {'null (every evaluation on the whole split)' if n else 10000} "
                 f"instead of {n or 'null'}: {solo.total:.1f} GPU hours alone, {grouped.total:.1f} in cohorts")
    missing = _missing(paths, params)
    if missing is not None:
        solo, grouped, _ = _hours(paths, params, missing)
        lines.append(f"\nmissing runs ({len(missing)}): {solo.total:.1f} GPU hours alone, {grouped.total:.1f} in cohorts")
    c = params.runner.cost
    lines.append(f"\nAssumes (runner.cost, from `mdeaux bench --cohort K`): {c.step_seconds} s per global step alone, "
                 f"{c.backbone_image_seconds} s per training image through the backbone, {c.eval_image_seconds} s per "
                 f"test image alone of which {c.eval_backbone_seconds} s backbone; test images: "
                 f"{'runner.cost.test_images (paper Table 2)' if params.profile == 'paper' else 'the split files'}, "
                 f"at most train.eval_max_images ({params.train.eval_max_images or 'all'}), every train.eval_every "
                 f"({params.train.eval_every}) steps")
    return "\n".join(lines)


def _missing(paths: Paths, params: Params) -> list[Run] | None:
    """The runs not done yet, when the data exist to plan them; None before that."""
    try:
        runs = plan(paths, params, write=False)
    except FileNotFoundError:
        return None
    store = RunStore(paths.runs)
    return [r for r in runs if not store[r.id].done]
