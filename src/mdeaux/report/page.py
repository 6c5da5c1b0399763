"""reports/index.html: the page to open first. Self-contained (inline style, relative links): every
table and figure with its caption, links to their Markdown/LaTeX/SVG files, the training curves, the
data validation pages and, for each number, the MLflow run of each seed."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

from mdeaux.report import tables
from mdeaux.runs.store import RunDir, RunStore

log = logging.getLogger(__name__)


def mlflow_links(paths, params, runs: list[dict]) -> tuple[Callable[[dict], str | None], str]:
    """``link(run)`` -> the run's page in the MLflow UI (None when it was never tracked), and a note
    for the index saying where the links point."""
    from mdeaux.runs.tracking import experiment_name, is_server

    store = RunStore(paths.runs)
    ids = {run["id"] for run in runs if (store[run["id"]] / RunDir.MLFLOW_ID).is_file()}  # tracked runs
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
        # the experiment's runs table filtered to the run: no MLflow run id (random), so a fresh clone writes
        # the same page; workflowType opens the table, not MLflow 3's GenAI overview
        query = urlencode({"workflowType": "machine_learning", "searchFilter": f"tags.run_id = '{run['id']}'"}, quote_via=quote)
        return f"{ui}/#/experiments/{exp.experiment_id}/runs?{query}" if run["id"] in ids else None

    serve = "" if is_server(uri) else " (start it with: make ui)"
    return link, f"Each seed's superscript links its run in the MLflow UI at {ui}{serve}."


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1250px;padding:1em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.banner{background:#fff3cd;border:1px solid #e0b84c;padding:.7em 1em;border-radius:6px;margin:1em 0}
.profile{background:#e8f0fe;border:1px solid #8ab4f8;padding:.5em 1em;border-radius:6px}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em} td,th{border:1px solid #ccc;padding:.25em .5em;text-align:center}
th{background:#f4f4f4} td{white-space:nowrap} td:first-child{text-align:left} .paper{color:#666;font-size:.85em}
sup.seeds a,sup.seeds span{margin-right:.25em;font-size:.8em} figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444} .links a{margin-right:1em} .scroll{overflow-x:auto} code{background:#f4f4f4;padding:0 .2em}
"""


def index_html(params, built: list[tables.Table], figs: dict[str, str], link: Callable[[dict], str | None],
               link_note: str, runs: list[dict], validation: list[str], warning: str, references: dict,
               unlearned: list[dict]) -> str:
    esc = html.escape
    below = params.report.learned_below
    bad = {r["id"] for r in unlearned}
    constants = ", ".join(f"{d} {r['metrics']['abs_rel']:.4f} (median {r['median_depth']:.3g} m)" for d, r in references.items())
    check = (f'<div class="banner"><b>Learning check: {len(unlearned)} of {len(runs)} runs did not learn</b> (best AbsRel '
             f"not below {below:g} × the constant predictor's; marked {tables.NOT_LEARNED} in the tables and "
             f"<b>no</b> in the run list): {esc(', '.join(sorted(r['label'] for r in unlearned)))}</div>" if unlearned else
             f"<p>Learning check: every run's best AbsRel is below {below:g} × the constant predictor's.</p>")
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
        f"<p>Reference predictor (params.yaml <code>report.learned_below</code>, report/reference.py): a constant map at "
        f"the median training depth, scored like the runs; its AbsRel: {esc(constants)}.</p>", check,
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
              "<th>best AbsRel</th><th>constant's AbsRel</th><th>learned</th><th>MLflow</th></tr></thead><tbody>"]
    for run in runs:
        url = link(run)
        mlflow = f'<a href="{esc(url)}">run</a>' if url else "–"
        parts.append(f"<tr><td>{esc(run['label'])}</td><td><code>{esc(run['id'])}</code></td><td>{esc(', '.join(run['studies']))}</td>"
                     f"<td>{run['metrics']['best']['abs_rel']:.4f}</td>"
                     f"<td>{references[run['config']['depth_dataset']]['metrics']['abs_rel']:.4f}</td>"
                     f"<td>{'no ' + tables.NOT_LEARNED if run['id'] in bad else 'yes'}</td><td>{mlflow}</td></tr>")
    parts += ["</tbody></table></div>", "</body></html>"]
    return "\n".join(parts) + "\n"
