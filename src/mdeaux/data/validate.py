"""Validate a prepared dataset with Great Expectations over its per-sample statistics table.

``validate_dataset`` runs an expectation suite (ephemeral GX context, pandas dataframe asset) over
``stats.parquet`` and writes ``results.json`` and a self-contained ``index.html`` (inline CSS, no
CDN, no JavaScript; GX Data Docs need internet to render). Any failed expectation raises
``ValidationError`` naming the dataset, the expectation and the offending sample ids, which stops
the DAG.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mdeaux.atomic import atomic_dir, write_json, write_text
from mdeaux.data.datasets.spec import DatasetSpec

MAX_OFFENDERS = 20  # sample ids reported per failed expectation


class ValidationError(RuntimeError):
    """A prepared dataset violates its expectations."""


def refuse_if_failed(report_dir: Path, name: str, data_version: str) -> None:
    """Raise ValidationError when ``report_dir`` says that this data version of ``name`` failed its
    validation: the gate that DVC's stage order gives, kept by ``mdeaux split``, ``runs``, ``run-one``
    and ``run-cohort`` when called by hand."""
    report = report_dir / "results.json"
    if not report.is_file():
        return
    try:
        results = json.loads(report.read_text())
    except json.JSONDecodeError as err:
        raise ValidationError(f"{report}: unreadable validation results ({err}); run `dvc repro validate` "
                              f"(or `mdeaux validate {name}`) again") from None
    if results.get("data_version") == data_version and not results.get("success"):
        raise ValidationError(f"{name}: the prepared data (version {data_version[:12]}) failed validation (report: "
                              f"{report_dir / 'index.html'}); fix the data, then run `dvc repro` (or `mdeaux "
                              f"prepare {name}` and `mdeaux validate {name}`) before splitting or training on it")


@dataclass
class Check:
    """One expectation plus how to describe its failures to a human."""

    expectation: Any  # a gx.expectations.Expectation
    what: str  # "failed to decode", "have depth height != image height", "train split: >= 1 sample"
    column: str | None = None
    detail: Callable[[pd.Series], str] | None = None  # per offending sample
    condition: str | None = None  # split name for per-split row counts


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _num(value: Any, digits: int = 4) -> str:
    """Short text for a stats value (integers without '.0', NaN/None as '?')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.{digits}g}"
    return str(value)


def _shape(row: pd.Series, prefix: str) -> str:
    return f"{_num(row[f'{prefix}_height'])}x{_num(row[f'{prefix}_width'])}"


def build_checks(
    spec: DatasetSpec,
    *,
    min_valid_frac: float,
    expected_counts: dict[str, int] | None,
    max_depth_sanity: float | None,
    min_depth_max_sanity: float | None = None,
) -> list[Check]:
    """The expectations for one dataset, from its spec and the validation parameters."""
    E = _gx().expectations
    from great_expectations.expectations.row_conditions import Column

    checks: list[Check] = []
    for split in spec.splits if expected_counts is None else expected_counts:
        cond = dict(row_condition=Column("split") == split)
        if expected_counts is None:
            exp, want = E.ExpectTableRowCountToBeBetween(min_value=1, **cond), ">= 1"
        else:
            want = int(expected_counts[split])
            exp = E.ExpectTableRowCountToEqual(value=want, **cond)
        checks.append(Check(exp, f"{split} split: expected {want} sample(s)", condition=split))
    checks += [
        Check(E.ExpectColumnValuesToBeUnique(column="id"), "have duplicate ids", "id"),
        Check(
            E.ExpectColumnValuesToBeInSet(column="split", value_set=list(spec.splits)),
            f"have a split other than {', '.join(spec.splits)}",
            "split",
            lambda r: str(r["split"]),
        ),
        Check(
            E.ExpectColumnValuesToBeNull(column="decode_error"),
            "failed to decode",
            "decode_error",
            lambda r: str(r["decode_error"]),
        ),
    ]
    if spec.image_sizes:
        for i, dim in enumerate(("height", "width")):
            allowed = sorted({size[i] for size in spec.image_sizes})
            checks.append(
                Check(
                    E.ExpectColumnValuesToBeInSet(column=f"image_{dim}", value_set=allowed),
                    f"have an image {dim} other than the official {', '.join(map(str, allowed))} px",
                    f"image_{dim}",
                    lambda r: f"image {_shape(r, 'image')}",
                )
            )
    if spec.task == "depth":
        checks += _shape_checks(E, "depth")
        checks.append(
            Check(
                E.ExpectColumnValuesToBeInSet(column="depth_finite", value_set=[True]),
                "have non-finite depth values",
                "depth_finite",
            )
        )
        checks.append(
            Check(
                E.ExpectColumnValuesToBeBetween(column="depth_min", min_value=0),
                "have negative depth",
                "depth_min",
                lambda r: f"depth_min {_num(r['depth_min'])} m",
            )
        )
        if min_depth_max_sanity is not None:
            checks.append(
                Check(
                    E.ExpectColumnValuesToBeBetween(column="depth_max", min_value=float(min_depth_max_sanity)),
                    f"have no depth beyond {min_depth_max_sanity} m",
                    "depth_max",
                    lambda r: f"depth_max {_num(r['depth_max'])} m",
                )
            )
        if max_depth_sanity is not None:
            checks.append(
                Check(
                    E.ExpectColumnValuesToBeBetween(column="depth_max", max_value=float(max_depth_sanity)),
                    f"have depth above {max_depth_sanity} m",
                    "depth_max",
                    lambda r: f"depth_max {_num(r['depth_max'])} m",
                )
            )
        checks.append(
            Check(
                E.ExpectColumnValuesToBeBetween(column="depth_valid_frac", min_value=float(min_valid_frac)),
                f"have less than {min_valid_frac:.0%} valid depth pixels "
                f"({spec.min_depth} < d < {spec.max_depth} m)",
                "depth_valid_frac",
                lambda r: f"valid fraction {_num(r['depth_valid_frac'])}",
            )
        )
    else:
        n = spec.num_classes
        checks += _shape_checks(E, "label")
        checks.append(
            Check(
                E.ExpectColumnValuesToBeBetween(column="label_bad_count", max_value=0),
                f"have label pixels outside [0, {n}) that are not ignore ({spec.ignore_index})",
                "label_bad_count",
                lambda r: f"{_num(r['label_bad_count'])} bad pixels, label_max {_num(r['label_max'])}",
            )
        )
        checks.append(
            Check(
                E.ExpectColumnValuesToBeBetween(column="label_max", max_value=n - 1),
                f"have a class id >= num_classes ({n})",
                "label_max",
                lambda r: f"label_max {_num(r['label_max'])}",
            )
        )
    return checks


def _shape_checks(E, prefix: str) -> list[Check]:
    detail = lambda r: f"{prefix} {_shape(r, prefix)}, image {_shape(r, 'image')}"  # noqa: E731
    return [
        Check(
            E.ExpectColumnPairValuesToBeEqual(
                column_A=f"{prefix}_{dim}", column_B=f"image_{dim}", ignore_row_if="either_value_is_missing"
            ),
            f"have {prefix} {dim} != image {dim}",
            f"{prefix}_{dim}",
            detail,
        )
        for dim in ("height", "width")
    ]


def _run_suite(spec: DatasetSpec, df: pd.DataFrame, checks: list[Check]) -> dict[str, Any]:
    """Run the checks in an ephemeral GX context; return GX results keyed by expectation id."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep DAG logs readable
    batch = (
        ctx.data_sources.add_pandas(name=f"{spec.name}_stats")
        .add_dataframe_asset(name="per_sample")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{spec.name}_suite"))
    for check in checks:
        check.expectation = suite.add_expectation(check.expectation)
    vd = gx.ValidationDefinition(name=f"{spec.name}_validation", data=batch, suite=suite)
    vd = ctx.validation_definitions.add(vd)
    res = vd.run(batch_parameters={"dataframe": df}, result_format={"result_format": "COMPLETE"})
    return {r.expectation_config.id: r for r in res.results}


def _summarise(check: Check, result: Any, df: pd.DataFrame) -> dict[str, Any]:
    """One JSON-able record per expectation, with up to MAX_OFFENDERS offending samples."""
    info = result.result or {}
    record: dict[str, Any] = {
        "expectation": result.expectation_config.type,
        "description": check.what,
        "column": check.column,
        "condition": check.condition,
        "success": bool(result.success),
        "observed_value": info.get("observed_value"),
        "element_count": info.get("element_count"),
        "unexpected_count": info.get("unexpected_count"),
        "error": _exception_message(result.exception_info or {}),
        "offending": [],
    }
    for index in list(info.get("unexpected_index_list") or [])[:MAX_OFFENDERS]:
        row = df.loc[index]
        record["offending"].append(
            {"id": row["id"], "split": row["split"], "detail": check.detail(row) if check.detail else None}
        )
    return record


def _exception_message(exc: dict[str, Any]) -> str | None:
    """The first exception message of a GX result's ``exception_info``: one flat record
    (``raised_exception``, ``exception_message``) or, when a metric failed (a missing column), one per
    metric configuration."""
    records = [exc] if "raised_exception" in exc else [v for v in exc.values() if isinstance(v, dict)]
    return next((r.get("exception_message") for r in records if r.get("raised_exception")), None)


def _failure_text(rec: dict[str, Any]) -> str:
    if rec["error"]:
        return f"expectation {rec['expectation']} on {rec['column']} could not run: {rec['error']}"
    if rec["condition"] is not None:
        return f"{rec['description']}, found {rec['observed_value']}"
    samples = ", ".join(f"{o['id']} ({o['detail']})" if o["detail"] else o["id"] for o in rec["offending"])
    more = (rec["unexpected_count"] or 0) - len(rec["offending"])
    if more > 0:
        samples += f", ... and {more} more"
    return f"{rec['unexpected_count']} sample(s) {rec['description']}: {samples}"


def validate_dataset(
    spec: DatasetSpec,
    prepared_dir: Path,
    out_dir: Path,
    *,
    min_valid_frac: float = 0.05,
    expected_counts: dict[str, int] | None = None,
    max_depth_sanity: float | None = None,
    min_depth_max_sanity: float | None = None,
) -> dict:
    """Validate ``prepared_dir``; write out_dir/{results.json,index.html}; raise ValidationError on failure."""
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    manifest_path, stats_path = prepared_dir / "manifest.json", prepared_dir / "stats.parquet"
    for path in (manifest_path, stats_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `mdeaux prepare {spec.name}` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("dataset") != spec.name:
        raise ValueError(f"{prepared_dir} holds dataset {manifest.get('dataset')!r}, expected {spec.name!r}")
    if expected_counts is not None:
        unknown = sorted(set(expected_counts) - set(spec.splits))
        if unknown:
            raise ValueError(
                f"{spec.name}: expected_counts names unknown split(s) {unknown}; splits: {list(spec.splits)}"
            )

    df = pq.read_table(stats_path).to_pandas().reset_index(drop=True)
    checks = build_checks(
        spec, min_valid_frac=min_valid_frac, expected_counts=expected_counts, max_depth_sanity=max_depth_sanity,
        min_depth_max_sanity=min_depth_max_sanity,
    )
    by_id = _run_suite(spec, df, checks)
    records = [_summarise(check, by_id[check.expectation.id], df) for check in checks]
    success = all(r["success"] for r in records)
    results = {
        "dataset": spec.name,
        "title": spec.title,
        "task": spec.task,
        "success": success,
        "counts": {s: int((df["split"] == s).sum()) for s in spec.splits},
        "num_samples": len(df),
        "data_version": manifest.get("data_version"),
        "parameters": {
            "min_valid_frac": min_valid_frac,
            "expected_counts": expected_counts,
            "max_depth_sanity": max_depth_sanity,
            "min_depth_max_sanity": min_depth_max_sanity,
        },
        "expectations": records,
    }
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "results.json", results)
        write_text(tmp / "index.html", render_html(results))
    if not success:
        failures = "; ".join(_failure_text(r) for r in records if not r["success"])
        raise ValidationError(f"{spec.name}: {failures} (report: {out_dir / 'index.html'})")
    return results


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
tr.pass td.status { background: #c8e6c9; color: #1b5e20; font-weight: bold; }
tr.fail td.status { background: #ffcdd2; color: #b71c1c; font-weight: bold; }
.badge { padding: 0.2em 0.6em; border-radius: 4px; color: white; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
ul { margin: 0; padding-left: 1.2em; } code { font-size: 0.9em; }
"""


def render_html(results: dict[str, Any]) -> str:
    """A self-contained report page (inline CSS, no external links or scripts)."""
    e = html.escape
    status = "pass" if results["success"] else "fail"
    counts = "".join(f"<tr><td>{e(s)}</td><td>{n}</td></tr>" for s, n in results["counts"].items())
    rows = []
    for rec in results["expectations"]:
        if rec["error"]:
            observed = f"error: {e(rec['error'])}"
        elif rec["unexpected_count"] is not None:
            observed = f"{rec['unexpected_count']} of {rec['element_count']} unexpected"
        else:
            observed = f"observed {e(str(rec['observed_value']))}"
        offenders = "".join(
            f"<li><code>{e(o['id'])}</code>{' — ' + e(o['detail']) if o['detail'] else ''}</li>"
            for o in rec["offending"]
        )
        more = (rec["unexpected_count"] or 0) - len(rec["offending"])
        if more > 0:
            offenders += f"<li>… and {more} more</li>"
        cls = "pass" if rec["success"] else "fail"
        check = rec["description"] if rec["condition"] is not None else f"samples that {rec['description']}"
        rows.append(
            f'<tr class="{cls}"><td class="status">{cls.upper()}</td><td>{e(check)}'
            f'<br><code>{e(rec["expectation"])}</code></td><td>{e(rec["column"] or "")}</td>'
            f"<td>{observed}</td><td><ul>{offenders}</ul></td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Validation: {e(results['dataset'])}</title>
<style>{_CSS}</style></head>
<body>
<p><a href="../../index.html">&larr; all reports (reports/index.html)</a></p>
<h1>{e(results['title'])} (<code>{e(results['dataset'])}</code>)
 <span class="badge {status}">{status.upper()}ED</span></h1>
<p>{results['num_samples']} samples, task {e(results['task'])},
 data version <code>{e(str(results['data_version']))}</code></p>
<h2>Samples per split</h2>
<table><tr><th>split</th><th>samples</th></tr>{counts}</table>
<h2>Expectations</h2>
<table><tr><th>status</th><th>expectation</th><th>column</th><th>result</th><th>offending samples</th></tr>
{''.join(rows)}
</table>
</body></html>
"""
