"""The paper's tables from the runs of one study, beside the published numbers.

A cell is the best test metric reached during training (paper Eq. 1) of the runs of one depth dataset
and task, one per seed; it shows the mean ± standard error over seeds (paper §4). In each row the best
mean is in bold and, where the paper marks two, the second in italics. The gain is that of the best
auxiliary task w.r.t. the baseline (Table 3's "Gain %"). Beside each of our cells is the paper's value
and the difference in standard errors, ``(ours - paper) / sqrt(se_ours² + se_paper²)`` (a single seed
has no standard error: 0 is used for it). Each row also shows the reference predictor of its depth
dataset (a constant at the median training depth, report/reference.py), and a cell with a run that did
not beat it clearly (``report.learned_below``) is marked ``NOT_LEARNED``. Rendered as Markdown, LaTeX
(booktabs) and HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mdeaux.report.reference import not_learned
from mdeaux.training.metrics import HIGHER_IS_BETTER, METRICS

METRIC_TITLES = {"a1": "δ<1.25", "a2": "δ<1.25²", "a3": "δ<1.25³", "abs_rel": "AbsRel", "sq_rel": "SqRel",
                 "rmse": "RMSE", "rmse_log": "RMSE log", "log_10": "log10", "silog": "SILog"}
SCALE = 1e4  # the paper's tables show AbsRel x 10^4
NOT_LEARNED = "†"  # beside a cell with a run that did not learn (report/reference.py)
CONSTANT = "Constant (median depth)"


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


def se_distance(ours: tuple[float, float], paper: tuple[float, float]) -> float:
    """(ours - paper) / sqrt(se_ours² + se_paper²); a missing (nan) standard error counts as 0."""
    se = math.hypot(*(0.0 if s != s else s for s in (ours[1], paper[1])))
    return (ours[0] - paper[0]) / se if se > 0 else math.nan


def rank_marks(means: Mapping[str, float], count: int) -> dict[str, str]:
    """{column: "bold" | "italic"}: the lowest mean in bold and, with ``count`` 2, the second lowest in
    italics (ties keep the column order)."""
    ranked = sorted(means, key=lambda c: means[c])
    return dict(zip(ranked[:count], ("bold", "italic")[:count]))


def fmt_value(mean: float, se: float, digits: int = 0) -> str:
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if se == se else f"{mean:.{digits}f}"


def fmt_metric(mean: float, se: float) -> str:
    """Raw-unit metric with 4 significant digits (the companion table)."""
    return f"{mean:.4g} ± {se:.2g}" if se == se else f"{mean:.4g}"


@dataclass
class Table:
    """One paper table: rows are depth datasets, columns tasks (the baseline first)."""

    key: str  # study name, e.g. table3
    title: str  # e.g. "Table 3"
    profile: str
    rows: list[str]
    columns: list[str]
    runs: dict[tuple[str, str], list[dict]]  # (depth, task) -> train.json run entries, by seed
    paper: Mapping[str, Any]  # the study's entry of paper_values.yaml
    names: Mapping[str, str]  # the paper's short dataset names
    note: str = ""  # what else to say under the title (e.g. the auxiliary set)
    warning: str = ""  # the mini profile's "not comparable" sentence
    reference: Mapping[str, Any] = field(default_factory=dict)  # depth dataset -> results/reference.json entry
    learned_below: float = 1.0  # report.learned_below
    _stats: dict = field(default_factory=dict, repr=False)

    # numbers ------------------------------------------------------------------------------------
    def values(self, row: str, col: str, metric: str | None = None) -> list[float]:
        """Per seed: AbsRel x 1e4 (the table's number), or ``metric`` in its own units."""
        scale = SCALE if metric is None else 1.0
        return [r["metrics"]["best"][metric or "abs_rel"] * scale for r in self.runs.get((row, col), [])]

    def stats(self, row: str, col: str, metric: str | None = None) -> tuple[float, float] | None:
        key = (row, col, metric)
        if key not in self._stats:
            vals = self.values(row, col, metric)
            self._stats[key] = mean_se(vals) if vals else None
        return self._stats[key]

    def constant(self, row: str, metric: str | None = None) -> float | None:
        """The reference predictor's AbsRel x 1e4 on ``row`` (or ``metric`` in its own units)."""
        ref = self.reference.get(row)
        return None if ref is None else ref["metrics"][metric or "abs_rel"] * (SCALE if metric is None else 1.0)

    def not_learned(self, row: str, col: str) -> list[dict]:
        """The runs of a cell whose best AbsRel is not below ``learned_below`` x the reference's (none
        without reference predictors)."""
        return not_learned(self.runs.get((row, col), []), self.reference, self.learned_below) if self.reference else []

    def paper_stats(self, row: str, col: str) -> tuple[float, float] | None:
        ref = self.paper.get("rows", {}).get(row, {}).get(col)
        return (float(ref[0]), float(ref[1])) if ref else None

    def marks(self, row: str) -> dict[str, str]:
        means = {c: s[0] for c in self.columns if (s := self.stats(row, c))}
        return rank_marks(means, int(self.paper.get("marks", 2)))

    def best_aux(self, row: str) -> str | None:
        aux = {c: s[0] for c in self.columns[1:] if (s := self.stats(row, c))}
        return min(aux, key=aux.get) if aux else None

    def gain(self, row: str) -> float | None:
        base, best = self.stats(row, "baseline"), self.best_aux(row)
        return gain_pct(base[0], self.stats(row, best)[0]) if base and best else None

    def mean_gain(self) -> tuple[float | None, list[str]]:
        """Mean gain over the rows the paper averages (all rows when it states none) that we have."""
        wanted = self.paper.get("mean_gain", {}).get("rows") or self.rows
        rows = [r for r in self.rows if r in wanted and self.gain(r) is not None]
        return (sum(self.gain(r) for r in rows) / len(rows) if rows else None), rows

    def metrics(self) -> dict[str, Any]:
        """The headline numbers for reports/metrics.json (``dvc exp show`` / ``dvc exp diff``)."""
        out: dict[str, Any] = {"rows": {}}
        for row in self.rows:
            entry: dict[str, Any] = {}
            for col in self.columns:
                if (s := self.stats(row, col)) is None:
                    continue
                entry[f"{col}_abs_rel_x1e4"] = round(s[0], 2)
                entry[f"{col}_se_x1e4"] = None if s[1] != s[1] else round(s[1], 2)
                entry[f"{col}_seeds"] = len(self.values(row, col))
                if bad := self.not_learned(row, col):
                    entry[f"{col}_not_learned"] = len(bad)
                if (p := self.paper_stats(row, col)) and (d := se_distance(s, p)) == d:
                    entry[f"{col}_vs_paper_se"] = round(d, 2)
            gain = self.gain(row)
            entry["gain_pct"] = None if gain is None else round(gain, 2)
            if (c := self.constant(row)) is not None:
                entry["constant_abs_rel_x1e4"] = round(c, 2)
            out["rows"][row] = entry
        mean, _ = self.mean_gain()
        out["mean_gain_pct"] = None if mean is None else round(mean, 2)
        out["paper_mean_gain_pct"] = self.paper.get("mean_gain", {}).get("value")
        return out

    # rendering ----------------------------------------------------------------------------------
    def _in_mix6(self) -> bool:
        return any("in_mix6" in r for r in self.paper.get("rows", {}).values())

    def _cells(self, row: str, ours: Callable[[str, str, str, str], str], paper: Callable[[str], str]) -> list[str]:
        """Our cell (formatted by ``ours(text, mark, row, col)``) and the paper's, per column, then the gains."""
        marks, c = self.marks(row), self.constant(row)
        cells = [f"{c:.0f}" if c is not None else "–"]
        for col in self.columns:
            s, p = self.stats(row, col), self.paper_stats(row, col)
            flag = NOT_LEARNED if self.not_learned(row, col) else ""
            cells.append(ours(fmt_value(*s), marks.get(col, ""), row, col) + flag if s else "–")
            if p is None:
                cells.append("–")
            else:
                d = se_distance(s, p) if s else math.nan
                cells.append(paper(fmt_value(*p) + (f" ({d:+.1f} SE)" if d == d else "")))
        gain, ref = self.gain(row), self.paper.get("rows", {}).get(row, {}).get("gain_pct")
        return cells + [f"{gain:.1f}" if gain is not None else "–", f"{ref}" if ref is not None else "–"]

    def _head(self) -> list[str]:
        titles = self.paper.get("tasks", {})
        head = ["MDE dataset"] + (["In MIX6"] if self._in_mix6() else []) + [CONSTANT]
        for col in self.columns:
            head += [f"{titles.get(col, col)} (ours)", f"{titles.get(col, col)} (paper)"]
        return head + ["Gain % (ours)", "Gain % (paper)"]

    def _row_head(self, row: str) -> list[str]:
        flag = self.paper.get("rows", {}).get(row, {}).get("in_mix6")
        return [self.names.get(row, row)] + (["✓" if flag else "✗" if flag is not None else "–"] if self._in_mix6() else [])

    def caption(self) -> str:
        return (f"{self.title}: AbsRel ×10⁴ (↓), profile {self.profile}. Best test AbsRel reached during training "
                "(paper Eq. 1), mean ± standard error over seeds; best in bold"
                + (", second-best in italics" if int(self.paper.get("marks", 2)) > 1 else "")
                + "; gain % of the best auxiliary task w.r.t. the baseline. Beside each value: the paper's "
                f"({self.paper.get('source', 'not published')}) and the difference in standard errors. {CONSTANT}: "
                "the AbsRel of a constant prediction at the median training depth, scored the same way; "
                f"{NOT_LEARNED}: a run of the cell did not reach {self.learned_below:g} x that (it has not learned). "
                f"{self.note}").strip()

    def summary_line(self) -> str:
        mean, rows = self.mean_gain()
        ref = self.paper.get("mean_gain")
        ours = f"{mean:.1f}% over {', '.join(self.names.get(r, r) for r in rows)}" if mean is not None else "–"
        return f"Mean gain (ours): {ours}." + (f" Paper: {ref['text']}." if ref else "")

    def to_markdown(self) -> str:
        def ours(text: str, mark: str, row: str, col: str) -> str:
            return {"bold": f"**{text}**", "italic": f"*{text}*"}.get(mark, text)

        head = self._head()
        lines = [f"# {self.title}: AbsRel ×10⁴ (↓)", "", self.caption(), ""]
        if self.warning:
            lines += [f"> **Mini profile.** {self.warning}", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            lines.append("| " + " | ".join(self._row_head(row) + self._cells(row, ours, str)) + " |")
        lines += ["", self.summary_line()]
        if claim := self.paper.get("claim"):
            lines += ["", f"Paper: {claim}"]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        def ours(text: str, mark: str, row: str, col: str) -> str:
            text = text.replace("±", r"$\pm$")
            return {"bold": rf"\textbf{{{text}}}", "italic": rf"\textit{{{text}}}"}.get(mark, text)

        def paper(text: str) -> str:
            return r"{\color{gray}" + text.replace("±", r"$\pm$") + "}"

        head = self._head()
        cols = "l" + "c" * (len(head) - 1)
        caption = latex_escape(self.caption() + (f" Mini profile. {self.warning}" if self.warning else ""))
        lines = [f"% {self.title} regenerated by mdeaux (profile {self.profile}); {LATEX_PACKAGES}",
                 r"\begin{table}[t]", r"\centering", r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{cols}}}",
                 r"\toprule", " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
        for row in self.rows:
            cells = [latex_escape(c) for c in self._row_head(row)] + self._cells(row, ours, paper)
            lines.append(" & ".join(cells).replace("–", "--").replace(NOT_LEARNED, r"$^\dagger$") + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{caption}}}", rf"\label{{tab:mdeaux-{self.key}}}",
                  r"\end{table}"]
        return "\n".join(lines) + "\n"

    def to_html(self, link: Callable[[dict], str | None]) -> str:
        """An HTML table, each cell ours over the paper's (so that a wide table fits the page); each
        seed's value links its MLflow run (``link(run)``)."""
        def ours(text: str, mark: str, row: str, col: str) -> str:
            text = html.escape(text)
            text = {"bold": f"<b>{text}</b>", "italic": f"<i>{text}</i>"}.get(mark, text)
            return text + seed_links(self.runs.get((row, col), []), link)

        def paper(text: str) -> str:
            return f'<br><span class="paper">paper {html.escape(text)}</span>' if text != "–" else ""

        titles = self.paper.get("tasks", {})
        head = [h for h in self._head() if not h.endswith(("(ours)", "(paper)"))]
        head += [titles.get(col, col) for col in self.columns] + ["Gain %"]
        body = []
        for row in self.rows:
            constant, *cells = self._cells(row, ours, lambda t: t)
            merged = [constant] + [cells[i] + paper(cells[i + 1]) for i in range(0, len(cells), 2)]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*map(html.escape, self._row_head(row)), *merged]) + "</tr>")
        head_html = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        return f'<table class="paper-table"><thead><tr>{head_html}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class MetricsTable:
    """The companion table: every metric (raw units) per depth dataset and task, mean ± SE over seeds."""

    def __init__(self, table: Table):
        self.t = table

    def _rows(self) -> list[list[str]]:
        t, out = self.t, []
        for row in t.rows:
            if t.constant(row) is not None:
                out.append([t.names.get(row, row), CONSTANT, "–"] + [fmt_metric(t.constant(row, m), math.nan) for m in METRICS])
            for col in t.columns:
                if t.stats(row, col) is None:
                    continue
                cells = [t.names.get(row, row), t.paper.get("tasks", {}).get(col, col), str(len(t.values(row, col)))]
                out.append(cells + [fmt_metric(*t.stats(row, col, m)) for m in METRICS])
        return out

    def head(self) -> list[str]:
        return ["MDE dataset", "Task", "Seeds"] + [METRIC_TITLES[m] + (" ↑" if m in HIGHER_IS_BETTER else " ↓") for m in METRICS]

    def to_markdown(self) -> str:
        t, head = self.t, self.head()
        lines = [f"# {t.title}: all metrics", "",
                 f"Profile {t.profile}. Best value of each metric reached during training (paper Eq. 1; each metric's "
                 "own best evaluation), mean ± standard error over seeds, in the metric's own units.", ""]
        if t.warning:
            lines += [f"> **Mini profile.** {t.warning}", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in self._rows()]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        t, head = self.t, self.head()
        lines = [f"% {t.title}, all metrics, regenerated by mdeaux (profile {t.profile}); {LATEX_PACKAGES}", r"\begin{table}[t]", r"\centering",
                 r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{ll{'c' * (len(head) - 2)}}}", r"\toprule",
                 " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in self._rows()]
        caption = latex_escape(f"{t.title}, all metrics: mean ± standard error over seeds." + (f" Mini profile. {t.warning}" if t.warning else ""))
        lines += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{caption}}}", rf"\label{{tab:mdeaux-{t.key}-metrics}}", r"\end{table}"]
        return "\n".join(lines) + "\n"


def seed_links(runs: list[dict], link: Callable[[dict], str | None]) -> str:
    """Superscript links to each seed's MLflow run (plain seed labels where a run has no MLflow run)."""
    parts = []
    for run in runs:
        seed, url = f"s{run['config']['seed']}", link(run)
        title = html.escape(f"{run['label']} ({run['id']})")
        parts.append(f'<a href="{html.escape(url)}" title="{title}">{seed}</a>' if url else f'<span title="{title}">{seed}</span>')
    return f'<sup class="seeds">{" ".join(parts)}</sup>' if parts else ""


LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "×": r"$\times$", "⁴": r"$^4$", "↓": r"$\downarrow$",
                 "²": r"$^2$", "³": r"$^3$", "±": r"$\pm$", "δ": r"$\delta$", "↑": r"$\uparrow$", "–": "--",
                 "✓": r"\checkmark", "†": r"$^\dagger$", "✗": r"$\times$", "<": "$<$"}
LATEX_PACKAGES = r"needs \usepackage{booktabs,xcolor,graphicx,amssymb}"


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def build(runs: list[dict], study: str, title: str, profile: str, rows: list[str], columns: list[str],
          paper: Mapping[str, Any], names: Mapping[str, str], note: str = "", warning: str = "",
          reference: Mapping[str, Any] | None = None, learned_below: float = 1.0) -> Table:
    """The table of ``study`` from the train.json run entries; one run per (depth, task, seed)."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        if study not in run["studies"]:
            continue
        cfg = run["config"]
        key = (cfg["depth_dataset"], cfg["task"])
        if any(r["config"]["seed"] == cfg["seed"] for r in cells.get(key, [])):
            other = next(r for r in cells[key] if r["config"]["seed"] == cfg["seed"])
            raise ValueError(f"study {study}: runs {other['label']} ({other['id']}) and {run['label']} ({run['id']}) "
                             f"are both {key[0]}/{key[1]} seed {cfg['seed']}; a table shows one value per seed: give "
                             f"params.yaml studies.{study} a single alpha, beta, gamma, fraction and aux set")
        cells.setdefault(key, []).append(run)
    for group in cells.values():
        group.sort(key=lambda r: r["config"]["seed"])
    return Table(study, title, profile, [r for r in rows if any((r, c) in cells for c in columns)], columns, cells,
                 paper, names, note, warning, reference or {}, learned_below)
