"""Reports: the paper's tables regenerated from the runs and set beside the published numbers.

Input: ``results/train.json`` (written by the train stage). Output: ``reports/table3.md`` and
``reports/metrics.json`` (DVC metrics, so ``dvc exp show`` / ``dvc exp diff`` compare experiments).
Numbers are the best test AbsRel reached during training (paper Eq. 1), x 1e4, mean and standard
error over seeds (paper §4).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mdeaux import atomic
from mdeaux.datasets.registry import get as get_spec

TASK_TITLES = {"baseline": "DINOv2", "mldc": "Classification", "segmentation": "Segmentation", "reconstruction": "Reconstruction"}
MINI_WARNING = (
    "> **Mini profile.** These numbers come from the synthetic mini world and a tiny, randomly "
    "initialised frozen backbone and a decoder trained for a few dozen steps. They test the pipeline end to end and "
    "are **not comparable** with the paper's numbers shown beside them."
)


def paper_values() -> dict[str, Any]:
    text = resources.files("mdeaux.reference").joinpath("paper_values.yaml").read_text()
    return yaml.safe_load(text)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)); se is nan for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to average")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def gain_pct(baseline: float, ours: float) -> float:
    """Relative AbsRel reduction of ours w.r.t. the baseline, in percent (positive = better)."""
    return (baseline - ours) / baseline * 100.0


def fmt(mean: float, se: float) -> str:
    return f"{mean:.0f} ± {se:.0f}" if se == se else f"{mean:.0f}"


def collect(train_json: dict, study: str, metric: str = "abs_rel") -> dict[str, dict[str, list[float]]]:
    """{depth dataset: {task: [best metric x 1e4 per seed]}} for one study."""
    cells: dict[str, dict[str, list[float]]] = {}
    for run in train_json["runs"]:
        if study not in run["studies"]:
            continue
        cfg = run["config"]
        value = run["metrics"]["best"].get(metric)
        if value is None:
            continue
        cells.setdefault(cfg["depth_dataset"], {}).setdefault(cfg["task"], []).append(value * 1e4)
    return cells


def table3(train_json: dict, profile: str, tasks: list[str]) -> tuple[str, dict[str, Any]]:
    paper = paper_values()["table3"]["rows"]
    cells = collect(train_json, "table3")
    aux_sets = sorted({a for r in train_json["runs"] if "table3" in r["studies"] for a in r["config"]["aux_datasets"]})
    aux_names = " + ".join(get_spec(a).title for a in aux_sets) or "none"
    columns = ["baseline", *tasks]
    head = ["MDE dataset"]
    for task in columns:
        head += [f"{TASK_TITLES[task]} (ours)", f"{TASK_TITLES[task]} (paper)"]
    head += ["Gain % (ours)", "Gain % (paper)"]
    lines = [
        "# Table 3: AbsRel ×10⁴ (↓)",
        "",
        f"Profile: **{profile}**. Best test AbsRel reached during training (paper Eq. 1), ×10⁴, mean ± standard "
        "error over seeds, best in bold and second in italics; gain of the best auxiliary task w.r.t. the "
        "baseline. Paper values from Table 3, "
        f"where the auxiliary dataset is MIX6; ours: {aux_names}.",
        "",
    ]
    if profile == "mini":
        lines += [MINI_WARNING, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    metrics: dict[str, Any] = {}
    for depth, by_task in cells.items():
        if "baseline" not in by_task:
            continue
        stats = {task: mean_se(vals) for task, vals in by_task.items()}
        aux = [t for t in tasks if t in stats]
        best_task = min(aux, key=lambda t: stats[t][0]) if aux else None
        row = [get_spec(depth).title]
        entry: dict[str, Any] = {}
        ranked = sorted(stats, key=lambda t: stats[t][0])  # the paper marks best in bold, second in italics
        for task in columns:
            ref = paper.get(depth, {}).get(task)
            ours = fmt(*stats[task]) if task in stats else "–"
            if task in stats and task == ranked[0]:
                ours = f"**{ours}**"
            elif task in stats and len(ranked) > 1 and task == ranked[1]:
                ours = f"*{ours}*"
            row += [ours, f"{ref[0]} ± {ref[1]}" if ref else "–"]
            if task in stats:
                entry[f"{task}_abs_rel_x1e4"] = round(stats[task][0], 2)
                entry[f"{task}_se_x1e4"] = None if stats[task][1] != stats[task][1] else round(stats[task][1], 2)
                entry[f"{task}_seeds"] = len(by_task[task])
        gain = gain_pct(stats["baseline"][0], stats[best_task][0]) if best_task else None
        ref_gain = paper.get(depth, {}).get("gain_pct")
        row += [f"{gain:.1f}" if gain is not None else "–", f"{ref_gain}" if ref_gain is not None else "–"]
        entry["gain_pct"] = None if gain is None else round(gain, 2)
        metrics[depth] = entry
        lines.append("| " + " | ".join(row) + " |")
    gains = [e["gain_pct"] for e in metrics.values() if e.get("gain_pct") is not None]
    summary = {"rows": metrics, "mean_gain_pct": round(sum(gains) / len(gains), 2) if gains else None}
    lines += ["", f"Mean gain: {summary['mean_gain_pct']}% (paper: ~11% on the in-domain datasets)." if gains else ""]
    runs = [r for r in train_json["runs"] if "table3" in r["studies"]]
    lines += ["", "Runs:", ""] + [f"- `{r['id']}` {r['label']}: best AbsRel {r['metrics']['best'].get('abs_rel', float('nan')):.4f}" for r in runs]
    return "\n".join(lines) + "\n", summary


def write_reports(paths, params) -> list[Path]:
    train_file = paths.results / "train.json"
    if not train_file.is_file():
        raise FileNotFoundError(f"{train_file} is missing: run `dvc repro train` (or `mdeaux train`) first")
    train_json = json.loads(train_file.read_text())
    tasks = [t for t in params.studies["table3"].tasks if t != "baseline"] if "table3" in params.studies else []
    text, summary = table3(train_json, params.profile, list(tasks))
    out_md, out_json = paths.reports / "table3.md", paths.reports / "metrics.json"
    atomic.write_text(out_md, text)
    atomic.write_json(out_json, {"profile": params.profile, "table3": summary})
    return [out_md, out_json]
