"""``mdeaux report``: every table and figure of the paper regenerated from the runs, beside the
published numbers.

Input: ``results/train.json`` (the train stage), ``results/reference.json`` (the reference stage: each
depth dataset's constant predictor, report/reference.py) and the run store (``runs/<id>/``: curves,
predictions, MLflow run id). Every study is drawn by the renderer it names (report/renderers.py).
Output, in ``reports/``:

- ``index.html``: the page to open first (report/page.py);
- ``tables/<study>.md|.tex`` and ``tables/<study>_metrics.md|.tex`` (every metric) of each table study;
- ``figures/<name>.png|.svg`` of each figure study;
- ``curves/{loss_depth,abs_rel}/<study>.csv``: training curves for ``dvc plots show``;
- ``metrics.json``: the headline numbers (every table cell, gains, mean gains), the reference predictors
  and the runs that did not learn (``not_learned``) for ``dvc exp show``.

Everything is computed before anything is replaced, so an error leaves the previous reports whole.
Published values: ``paper_values.yaml``. In the mini profile every page says that the numbers come
from synthetic data and a tiny backbone and are not comparable with the paper's.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mdeaux import atomic
from mdeaux.report import figures, reference, tables
from mdeaux.report.page import index_html, mlflow_links
from mdeaux.report.renderers import RENDERERS, Context
from mdeaux.runs.plots import read_table
from mdeaux.runs.store import RunDir, RunStore

log = logging.getLogger(__name__)

MINI_WARNING = (
    "These numbers come from the synthetic mini world, a tiny randomly initialised frozen backbone and a decoder "
    "trained for a few dozen steps. They test the pipeline end to end and are not comparable with the paper's "
    "numbers shown beside them."
)
CURVES = {"loss_depth": RunDir.CURVES, "abs_rel": RunDir.EVALS}  # reports/curves/<column>/ <- runs/<id>/<file>
REPORT_FOLDERS = ("tables", "figures", "curves")  # this stage's folders under reports/ (dvc.yaml outs)


def paper_values() -> dict[str, Any]:
    return yaml.safe_load(resources.files("mdeaux.report").joinpath("paper_values.yaml").read_text())


def write_tables(folder: Path, built: list[tables.Table]) -> list[Path]:
    written = []
    for table in built:
        metrics = tables.MetricsTable(table)
        for name, text in ((f"{table.key}.md", table.to_markdown()), (f"{table.key}.tex", table.to_latex()),
                           (f"{table.key}_metrics.md", metrics.to_markdown()), (f"{table.key}_metrics.tex", metrics.to_latex())):
            atomic.write_text(folder / name, text)
            written.append(folder / name)
    return written


def curve_series(run: dict, study, alpha: float) -> str:
    """A run's line in a study's curve file: its label, with the top-level alpha written as ``aα`` where
    the study takes it from there (no alpha or beta axis of its own), so that ``dvc plots diff`` draws
    the same line across revisions that differ by ``-S alpha=...``."""
    if study.alpha is None and study.beta is None and run["config"]["task"] != "baseline" and run["config"]["alpha"] == alpha:
        return run["label"].replace(f"/a{alpha:g}", "/aα", 1)
    return run["label"]


def curves_table(store: RunStore, runs: list[dict], column: str, points: int, series=lambda run: run["label"]) -> pd.DataFrame:
    """Long table (run, step, ``column``) of the runs, at most ``points`` rows per run (bin means);
    ``series(run)`` names each run's line."""
    frames = []
    for run in runs:
        f = store[run["id"]] / CURVES[column]
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: run {run['label']} ({run['id']}) has no {CURVES[column]}; "
                                    "retrain it (`mdeaux train`)")
        data = read_table(f)
        if column not in data.columns:
            continue
        data = data[["step", column]].dropna()
        bins = (data["step"] - 1) * points // max(1, int(data["step"].max()))
        data = data.groupby(bins).mean() if len(data) > points else data
        frames.append(data.assign(run=series(run))[["run", "step", column]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "step", column])


def build_curves(paths, params, runs: list[dict]) -> dict[str, str]:
    """{"<column>/<study>.csv": CSV text} of every study's training curves."""
    store = RunStore(paths.runs)
    return {f"{column}/{name}.csv": curves_table(store, [r for r in runs if name in r["studies"]], column,
                                                  params.report.curve_points,
                                                  lambda run, study=study: curve_series(run, study, params.alpha)
                                                  ).to_csv(index=False, float_format="%.6g")
            for column in CURVES for name, study in params.studies.items()}


def write_reports(paths, params) -> list[Path]:
    train_file = paths.results / "train.json"
    if not train_file.is_file():
        raise FileNotFoundError(f"{train_file} is missing: run `dvc repro train` (or `mdeaux train`) first")
    runs = json.loads(train_file.read_text())["runs"]
    depths = sorted({r["config"]["depth_dataset"] for r in runs})
    references = {d: r for d, r in reference.read(paths).items() if d in depths}
    unlearned = reference.not_learned(runs, references, params.report.learned_below)
    ctx = Context(paths, params, runs, paper_values(), MINI_WARNING if params.profile == "mini" else "", references)
    reports = paths.reports

    # everything is computed first: an error (a missing file, no run pair) leaves the old reports whole
    built: list[tables.Table] = []
    figs: dict[str, tuple[Any, str]] = {}
    for name, study in params.studies.items():
        out = RENDERERS[study.render](ctx, name, study)
        built += out.tables
        figs.update(out.figures)
    curves = build_curves(paths, params, runs)
    link, link_note = mlflow_links(paths, params, runs)
    validation = sorted(p.parent.name for p in (reports / "validation").glob("*/index.html"))
    page = index_html(params, built, {k: v[1] for k, v in figs.items()}, link, link_note, runs, validation, ctx.warning,
                      references, unlearned)

    # the folders are written beside the old ones and swapped in only when all of them are complete: a
    # failure (a full disk, a figure that cannot be saved) leaves the old reports whole, and nothing stale
    # survives a success (a folder holds this stage's outputs only; figures/ exists even without a figure)
    staged = {sub: reports / f".{sub}.new" for sub in REPORT_FOLDERS}
    try:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        write_tables(staged["tables"], built)
        for name, (fig, _) in figs.items():
            figures.save(fig, staged["figures"] / name)
        for rel, text in curves.items():
            atomic.write_text(staged["curves"] / rel, text)
    except BaseException:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    written = [reports / sub / f.relative_to(folder) for sub, folder in staged.items()
               for f in sorted(folder.rglob("*")) if f.is_file()]
    for sub, folder in staged.items():
        old = reports / f".{sub}.old"
        shutil.rmtree(old, ignore_errors=True)
        if (reports / sub).exists():
            (reports / sub).rename(old)
        folder.rename(reports / sub)
        shutil.rmtree(old, ignore_errors=True)
    atomic.write_text(reports / "index.html", page)
    summaries = {t.key: t.metrics() for t in built}
    # "gain": each table's mean gain (%) under a short key, for a `dvc exp show` that fits a terminal (README)
    atomic.write_json(reports / "metrics.json", {
        "profile": params.profile, "gain": {k: s["mean_gain_pct"] for k, s in summaries.items()},
        "reference": {d: {"abs_rel_x1e4": round(r["metrics"]["abs_rel"] * tables.SCALE, 2),
                          "a1": round(r["metrics"]["a1"], 4), "median_depth": r["median_depth"]} for d, r in references.items()},
        "not_learned": sorted(r["label"] for r in unlearned), **summaries})
    if unlearned:
        log.warning("%d run(s) did not learn (best AbsRel not below %g x the constant predictor's): %s", len(unlearned),
                    params.report.learned_below, ", ".join(sorted(r["label"] for r in unlearned)))
    try:  # each study's parent run in MLflow carries the study's results
        from mdeaux.runs.mlflow_studies import log_study_results

        log_study_results(paths, params, study_results(ctx, built))
    except Exception as err:  # noqa: BLE001 - the report does not depend on MLflow
        log.warning("MLflow: could not log the studies' results (%s)", err)
    return written + [reports / "index.html", reports / "metrics.json"]


def study_results(ctx: Context, built: list[tables.Table]) -> dict[str, dict[str, float]]:
    """Per study: mean and standard error over seeds of the best AbsRel x 10^4 of each point of its grid
    (a run label without its seed), and for tables each row's gain and the mean gain (in %)."""
    df = ctx.df()
    out: dict[str, dict[str, float]] = {}
    for name in ctx.params.studies:
        values: dict[str, float] = {}
        d = figures.in_study(df, name)
        for point, group in d.groupby(d["label"].str.replace(r"/s\d+$", "", regex=True)):
            mean, se = tables.mean_se(list(group["abs_rel"]))
            values[f"abs_rel_x1e4/{point}/mean"] = mean
            if se == se:
                values[f"abs_rel_x1e4/{point}/se"] = se
        out[name] = values
    for table in built:
        summary = table.metrics()
        out[table.key].update({f"gain_pct/{row}": e["gain_pct"] for row, e in summary["rows"].items() if e["gain_pct"] is not None})
        if summary["mean_gain_pct"] is not None:
            out[table.key]["mean_gain_pct"] = summary["mean_gain_pct"]
    return out
