"""Reports: every table and figure of the paper regenerated from the runs, beside the published numbers.

Input: ``results/train.json`` (the train stage) and each run's folder ``runs/<id>/`` (curves,
predictions, MLflow run id). Output, in ``reports/``:

- ``index.html``: the page to open first; self-contained (inline style, relative links), it shows every
  table and figure, links their Markdown/LaTeX/SVG files, the validation pages and the MLflow run of
  each number, and says which profile produced it;
- ``tables/<study>.md|.tex`` (Table 3, Table 4, Appendix C.1, Appendix C.2 / Table 6) and
  ``tables/<study>_metrics.md|.tex`` (every metric);
- ``figures/<name>.png|.svg``: Fig. 1 (bottom and top), Fig. 3, Fig. 4, Fig. 5;
- ``curves/{loss_depth,abs_rel}/<study>.csv``: training curves for ``dvc plots show``;
- ``metrics.json``: the headline numbers (every table cell, gains, mean gains) for ``dvc exp show``.

Published values: ``reference/paper_values.yaml``. In the mini profile every page says that the
numbers come from synthetic data and a tiny backbone and are not comparable with the paper's.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mdeaux import atomic, figures, tables
from mdeaux.visuals import PREDICTIONS_NPZ, load_predictions, read_table

log = logging.getLogger(__name__)

MINI_WARNING = (
    "These numbers come from the synthetic mini world, a tiny randomly initialised frozen backbone and a decoder "
    "trained for a few dozen steps. They test the pipeline end to end and are not comparable with the paper's "
    "numbers shown beside them."
)
TABLE_STUDIES = ("table3", "table4", "appc1_slc", "appc2_single_aux")  # studies rendered as tables
CURVES = {"loss_depth": "curves.csv", "abs_rel": "evals.csv"}  # reports/curves/<column>/ <- runs/<id>/<file>


def paper_values() -> dict[str, Any]:
    return yaml.safe_load(resources.files("mdeaux.reference").joinpath("paper_values.yaml").read_text())


# ------------------------------------------------------------------------------------------------
# MLflow links
def mlflow_links(paths, params, runs: list[dict]) -> tuple[Callable[[dict], str | None], str]:
    """``link(run)`` -> the run's page in the MLflow UI (None when it was never tracked), and a note
    for the index saying where the links point."""
    from mdeaux.tracking import ID_FILE, experiment_name, is_server

    ids = {}
    for run in runs:
        f = paths.run_dir(run["id"]) / ID_FILE
        if f.is_file():
            ids[run["id"]] = f.read_text().strip()
    if not ids:
        return (lambda run: None), "No run was tracked in MLflow, so the tables carry no MLflow links."
    uri = paths.mlflow_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return (lambda run: None), f"No MLflow database at {uri}: no MLflow links."
    ui = uri.rstrip("/") if is_server(uri) else params.report.mlflow_ui.rstrip("/")
    try:
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(uri).get_experiment_by_name(experiment_name(params.profile))
    except Exception as err:  # noqa: BLE001 - the report must not fail because MLflow does
        log.warning("MLflow: could not read %s (%s): the report carries no MLflow links", uri, err)
        exp = None
    if exp is None:
        return (lambda run: None), f"The MLflow experiment {experiment_name(params.profile)} was not found in {uri}: no MLflow links."

    def link(run: dict) -> str | None:
        rid = ids.get(run["id"])
        return f"{ui}/#/experiments/{exp.experiment_id}/runs/{rid}" if rid else None

    serve = "" if is_server(uri) else " (start it with: make ui)"
    return link, f"Each seed's superscript links its run in the MLflow UI at {ui}{serve}."


# ------------------------------------------------------------------------------------------------
# tables
def build_tables(params, runs: list[dict], paper: dict, warning: str) -> list[tables.Table]:
    names = paper["names"]
    out = []
    for key in TABLE_STUDIES:
        if key not in params.studies:
            continue
        study = params.studies[key]
        aux = ", ".join(names.get(a, a) + (f" ({' + '.join(names.get(d, d) for d in params.aux_sets[a])})"
                                           if a in params.aux_sets else "") for a in study.aux)
        backbones = sorted({r["config"]["model"]["backbone"] for r in runs if key in r["studies"]})
        note = f"Ours: auxiliary {aux or 'none'}, backbone {', '.join(backbones) or '–'}."
        out.append(tables.build(runs, key, study.title, params.profile, list(study.depth), list(study.tasks),
                                paper.get(key, {}), names, note, warning))
    return out


def write_tables(folder: Path, built: list[tables.Table]) -> list[Path]:
    written = []
    for table in built:
        metrics = tables.MetricsTable(table)
        for name, text in ((f"{table.key}.md", table.to_markdown()), (f"{table.key}.tex", table.to_latex()),
                           (f"{table.key}_metrics.md", metrics.to_markdown()), (f"{table.key}_metrics.tex", metrics.to_latex())):
            atomic.write_text(folder / name, text)
            written.append(folder / name)
    return written


# ------------------------------------------------------------------------------------------------
# figures
def _predictions(paths, run_id: str, count: int):
    npz = paths.run_dir(run_id) / PREDICTIONS_NPZ
    if not npz.is_file():
        raise FileNotFoundError(f"{npz} is missing: Fig. 1 (top) needs the runs' predictions "
                                "(params.yaml runner.save_predictions > 0, then retrain)")
    return load_predictions(npz)[:count]


def build_figures(paths, params, runs: list[dict], paper: dict, warning: str) -> dict[str, tuple[Any, str]]:
    """{name: (Figure, caption)} of every figure whose study exists in params."""
    from mdeaux.datasets.registry import get as get_spec

    names, claims, studies = paper["names"], paper["figures"], params.studies
    df = figures.runs_frame(runs)
    ours = {"task": params.report.ours.task, "aux": params.report.ours.aux, "alpha": params.alpha}
    ours_text = f"{names.get(ours['aux'], ours['aux'])} {ours['task'].upper()}, α = {params.alpha:g}"
    out: dict[str, tuple[Any, str]] = {}
    if "fig1_alpha" in studies:
        out["fig1_alpha"] = (figures.fig1_alpha(df, "fig1_alpha", ours, names, warning),
                             f"AbsRel against α (study fig1_alpha). Paper: {claims['fig1_alpha']}")
        d = figures.in_study(df, "fig1_alpha")
        base = d[d["task"] == "baseline"].sort_values("seed")
        if not base.empty:
            depth, model = base["depth"].iloc[0], base["model"].iloc[0]
            ref = figures.reference(df, depth, model, ours)["ours"]
            seeds = sorted(set(base["seed"]) & set(ref["seed"]))
            if not seeds:
                raise ValueError(f"Fig. 1 (top) compares the baseline with {ours_text} on {depth} for the same seed, "
                                 f"but no such pair of runs exists: add a study with {ours['task']} on {ours['aux']} "
                                 "(e.g. table3 or fig1_alpha with the top-level alpha)")
            b_id = base[base["seed"] == seeds[0]]["id"].iloc[0]
            o_id = ref[ref["seed"] == seeds[0]]["id"].iloc[0]
            n = params.report.fig1_samples
            fig = figures.fig1_top(_predictions(paths, b_id, n), _predictions(paths, o_id, n), get_spec(depth),
                                   f"Fig. 1 (top): {names.get(depth, depth)}, baseline ({b_id}) vs {ours_text} ({o_id}), seed {seeds[0]}",
                                   warning)
            out["fig1_top"] = (fig, f"Input, ground truth and the error difference. Paper: {claims['fig1_top']}")
    if "fig3_aux" in studies:
        out["fig3_aux"] = (figures.fig3_aux(df, "fig3_aux", list(studies["fig3_aux"].aux), names, warning),
                           f"AbsRel per auxiliary dataset and task (study fig3_aux). Paper: {claims['fig3_aux']}")
    if "fig4_fraction" in studies:
        out["fig4_fraction"] = (figures.fig4_fraction(df, "fig4_fraction", names, warning),
                                f"AbsRel against the training fraction (study fig4_fraction). Paper: {claims['fig4_fraction']}")
    if "fig5_gamma" in studies and "fig5_beta" in studies:
        out["fig5_lr"] = (figures.fig5(df, "fig5_gamma", "fig5_beta", ours, names, warning),
                          f"Baseline LR scaled by γ and the β variant (studies fig5_gamma, fig5_beta). Paper: {claims['fig5']}")
    return out


# ------------------------------------------------------------------------------------------------
# training curves for `dvc plots show`
def curves_table(paths, runs: list[dict], column: str, points: int) -> pd.DataFrame:
    """Long table (run, step, ``column``) of the runs, at most ``points`` rows per run (bin means)."""
    frames = []
    for run in runs:
        f = paths.run_dir(run["id"]) / CURVES[column]
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: run {run['label']} ({run['id']}) has no {CURVES[column]}; "
                                    "retrain it (`mdeaux train`)")
        data = read_table(f)
        if column not in data.columns:
            continue
        data = data[["step", column]].dropna()
        bins = (data["step"] - 1) * points // max(1, int(data["step"].max()))
        data = data.groupby(bins).mean() if len(data) > points else data
        frames.append(data.assign(run=run["label"])[["run", "step", column]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "step", column])


def build_curves(paths, params, runs: list[dict]) -> dict[str, str]:
    """{"<column>/<study>.csv": CSV text} of every study's training curves."""
    return {f"{column}/{study}.csv": curves_table(paths, [r for r in runs if study in r["studies"]], column,
                                                   params.report.curve_points).to_csv(index=False, float_format="%.6g")
            for column in CURVES for study in params.studies}


# ------------------------------------------------------------------------------------------------
# index.html
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1250px;padding:1em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.banner{background:#fff3cd;border:1px solid #e0b84c;padding:.7em 1em;border-radius:6px;margin:1em 0}
.profile{background:#e8f0fe;border:1px solid #8ab4f8;padding:.5em 1em;border-radius:6px}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em} td,th{border:1px solid #ccc;padding:.25em .5em;text-align:center}
th{background:#f4f4f4} td{white-space:nowrap} td:first-child{text-align:left} .paper{color:#666}
sup.seeds a,sup.seeds span{margin-right:.25em;font-size:.8em} figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444} .links a{margin-right:1em} .scroll{overflow-x:auto} code{background:#f4f4f4;padding:0 .2em}
"""


def index_html(params, built: list[tables.Table], figs: dict[str, str], link: Callable[[dict], str | None],
               link_note: str, runs: list[dict], validation: list[str], warning: str) -> str:
    esc = html.escape
    banner = (f'<div class="banner"><b>Mini profile: not comparable with the paper.</b> {esc(warning)}</div>'
              if warning else "")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>mdeaux reports ({esc(params.profile)} profile)</title><style>{STYLE}</style></head><body>",
        "<h1>mdeaux: the paper's tables and figures, regenerated</h1>",
        "<p>Quercia et al., <i>Enhancing Monocular Depth Estimation with Multi-Source Auxiliary Tasks</i>. Every "
        "number is the best test AbsRel reached during training (paper Eq. 1), mean ± standard error over seeds, "
        "beside the paper's published value.</p>",
        f'<p class="profile">Produced by the <b>{esc(params.profile)}</b> profile (params.yaml <code>profile</code>), '
        f"from {len(runs)} runs.</p>", banner,
        '<nav><b>Contents:</b> <a href="#tables">Tables</a> · <a href="#figures">Figures</a> · '
        '<a href="#curves">Training curves</a> · <a href="#validation">Data validation</a> · <a href="#runs">Runs</a></nav>',
        '<h2 id="tables">Tables</h2>', f"<p>{esc(link_note)}</p>",
    ]
    for t in built:
        parts += [f'<h3 id="{t.key}">{esc(t.title)}</h3>', f"<p>{esc(t.caption())}</p>",
                  f'<div class="scroll">{t.to_html(link)}</div>', f"<p>{esc(t.summary_line())}</p>"]
        if claim := t.paper.get("claim"):
            parts.append(f"<p>Paper: {esc(claim)}</p>")
        parts.append(f'<p class="links"><a href="tables/{t.key}.md">Markdown</a><a href="tables/{t.key}.tex">LaTeX</a>'
                     f'<a href="tables/{t.key}_metrics.md">all metrics (Markdown)</a><a href="tables/{t.key}_metrics.tex">all metrics (LaTeX)</a></p>')
    parts.append('<h2 id="figures">Figures</h2>')
    for name, caption in figs.items():
        parts.append(f'<figure id="{name}"><img src="figures/{name}.png" alt="{esc(name)}"><figcaption>{esc(caption)} '
                     f'<span class="links"><a href="figures/{name}.png">PNG</a><a href="figures/{name}.svg">SVG</a></span>'
                     "</figcaption></figure>")
    parts += ['<h2 id="curves">Training curves</h2>',
              "<p>Per study, the depth loss at every step and the test AbsRel at every evaluation of each run, for "
              "<code>dvc plots show</code> (and <code>dvc plots diff</code> between experiments):</p><ul>"]
    parts += [f'<li>{esc(s.title)} ({esc(k)}): <a href="curves/loss_depth/{k}.csv">depth loss</a>, '
              f'<a href="curves/abs_rel/{k}.csv">test AbsRel</a></li>' for k, s in params.studies.items()]
    parts += ["</ul>", '<h2 id="validation">Data validation</h2>',
              "<p>Great Expectations results of each prepared dataset:</p><ul>"]
    parts += [f'<li><a href="validation/{esc(d)}/index.html">{esc(d)}</a></li>' for d in validation]
    parts += ["</ul>", '<h2 id="runs">Runs</h2>', '<div class="scroll"><table><thead><tr><th>run</th><th>id</th><th>studies</th>'
              "<th>best AbsRel</th><th>MLflow</th></tr></thead><tbody>"]
    for run in runs:
        url = link(run)
        mlflow = f'<a href="{esc(url)}">run</a>' if url else "–"
        parts.append(f"<tr><td>{esc(run['label'])}</td><td><code>{esc(run['id'])}</code></td><td>{esc(', '.join(run['studies']))}</td>"
                     f"<td>{run['metrics']['best']['abs_rel']:.4f}</td><td>{mlflow}</td></tr>")
    parts += ["</tbody></table></div>", "</body></html>"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------------
def write_reports(paths, params) -> list[Path]:
    train_file = paths.results / "train.json"
    if not train_file.is_file():
        raise FileNotFoundError(f"{train_file} is missing: run `dvc repro train` (or `mdeaux train`) first")
    runs = json.loads(train_file.read_text())["runs"]
    paper = paper_values()
    warning = MINI_WARNING if params.profile == "mini" else ""
    reports = paths.reports
    written: list[Path] = []

    # everything is computed first: an error (a missing file, no run pair) leaves the old reports whole
    built = build_tables(params, runs, paper, warning)
    figs = build_figures(paths, params, runs, paper, warning)
    curves = build_curves(paths, params, runs)
    link, link_note = mlflow_links(paths, params, runs)
    validation = sorted(p.parent.name for p in (reports / "validation").glob("*/index.html"))
    page = index_html(params, built, {k: v[1] for k, v in figs.items()}, link, link_note, runs, validation, warning)

    for sub in ("tables", "figures", "curves"):  # outputs of this stage only: nothing stale survives
        if (reports / sub).exists():
            shutil.rmtree(reports / sub)
    written += write_tables(reports / "tables", built)
    for name, (fig, _) in figs.items():
        written += figures.save(fig, reports / "figures" / name)
    for rel, text in curves.items():
        atomic.write_text(reports / "curves" / rel, text)
        written.append(reports / "curves" / rel)
    atomic.write_text(reports / "index.html", page)
    atomic.write_json(reports / "metrics.json", {"profile": params.profile, **{t.key: t.metrics() for t in built}})
    return written + [reports / "index.html", reports / "metrics.json"]
