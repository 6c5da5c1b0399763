"""``mdeaux runs``: the planned runs of every study, which are done, and what the grid costs."""

from __future__ import annotations

from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.data.split import SplitFile
from mdeaux.params import Params
from mdeaux.paths import Paths
from mdeaux.runs import cohorts
from mdeaux.runs.plan import Run, plan, planned_configs
from mdeaux.runs.store import RunStore


def gpu_hours(run: Run, step_seconds: float, eval_image_seconds: float, test_images: int) -> tuple[float, float]:
    """(training, evaluation) hours of one run: ``step_seconds`` per global step (a baseline takes no
    auxiliary step: half), ``eval_image_seconds`` per test image and evaluation."""
    t = run.config.train
    steps = t.iterations * step_seconds * (0.5 if run.config.baseline else 1.0)
    evals = -(-t.iterations // t.eval_every)
    images = min(test_images, t.eval_max_images or test_images)
    return steps / 3600, evals * images * eval_image_seconds / 3600


def test_image_count(paths: Paths, name: str, profile: str) -> int:
    """Test images of a dataset: the official count of its last split (paper profile, where published),
    else its split file's test list."""
    spec = get_spec(name)
    counts = dict(spec.official_counts)
    if profile == "paper" and counts:
        return counts[spec.splits[-1]]
    split = paths.split_of(name)
    return len(SplitFile(split).test) if split.is_file() else 0


def show(paths: Paths, params: Params, write: bool = False, cost: bool = False) -> str:
    """The text of ``mdeaux runs`` (``cost``: GPU hours per study instead of the list of runs)."""
    store = RunStore(paths.runs)
    runs = plan(paths, params, write=write)
    done = {r.id for r in runs if store[r.id].done}
    formed = cohorts.form([r for r in runs if r.id not in done], params.runner.cohort)
    cohort_of = cohorts.of_runs(formed)
    if write:
        cohorts.write(store, formed)
    lines = [f"{len(runs)} run(s) planned, {len(done)} done, {len(runs) - len(done)} missing in {len(formed)} "
             f"cohort(s) (store: {paths.runs})"]
    if not cost:
        # a missing run's cohort: the runs trained together in one process (runs/cohorts.py)
        lines += [f"  {r.id}  {'done' if r.id in done else 'cohort ' + cohort_of[r.id].id:<23}"
                  f"  {r.label:<44} studies: {', '.join(r.studies)}" for r in runs]
    per_study = {name: sum(1 for _, s in planned_configs(params) if s == name) for name in params.studies}
    # cells: points of the study's grid; runs: distinct runs among them; shared: runs another study uses too
    lines.append(f"\n{'study':<18} {'title':<24} {'cells':>6} {'runs':>6} {'shared':>7}"
                 + ("   GPU hours (train + eval)" if cost else ""))
    images: dict[str, int] = {}
    hours: dict[str, tuple[float, float]] = {}
    for r in runs:
        name = r.config.depth_dataset
        if name not in images:
            images[name] = test_image_count(paths, name, params.profile)
        hours[r.id] = gpu_hours(r, params.runner.cost.step_seconds, params.runner.cost.eval_image_seconds, images[name])
    for name, study in params.studies.items():
        mine = [r for r in runs if name in r.studies]
        shared = sum(1 for r in mine if len(r.studies) > 1)  # also used by another study
        line = f"{name:<18} {study.title:<24} {per_study[name]:>6} {len(mine):>6} {shared:>7}"
        if cost:
            train_h, eval_h = sum(hours[r.id][0] for r in mine), sum(hours[r.id][1] for r in mine)
            line += f"   {train_h + eval_h:9.1f} ({train_h:.1f} + {eval_h:.1f})"
        lines.append(line)
    shared = sum(1 for r in runs if len(r.studies) > 1)
    total = f"{'all studies':<18} {'':<24} {sum(per_study.values()):>6} {len(runs):>6} {shared:>7}"
    if cost:
        train_h, eval_h = sum(h[0] for h in hours.values()), sum(h[1] for h in hours.values())
        total += f"   {train_h + eval_h:9.1f} ({train_h:.1f} + {eval_h:.1f})"
        missing_h = sum(sum(hours[r.id]) for r in runs if r.id not in done)
        total += (f"\nmissing runs: {missing_h:.1f} GPU hours. Assumes {params.runner.cost.step_seconds} s per global step "
                  f"and {params.runner.cost.eval_image_seconds} s per test image (runner.cost, from `mdeaux bench`); "
                  f"test images: {'official counts' if params.profile == 'paper' else 'the split files'}")
    lines.append(total)
    return "\n".join(lines)
