"""The paper's figures from the runs (seaborn on matplotlib ``Figure`` objects; PNG and SVG).

- Fig. 1 (bottom): AbsRel against alpha, one marker per auxiliary task; the baseline's mean (solid)
  and mean ± standard error (dashed).
- Fig. 1 (top): input | ground truth | ``err_baseline - err_ours`` with ``err = |y_hat - y| / y_hat``
  (paper §6): green where ours is closer to the ground truth, red where worse, black where invalid.
- Fig. 3: AbsRel per auxiliary dataset and task (mean and standard error), the baseline as a band.
- Fig. 4: AbsRel against the training fraction, baseline (red circles) and ours (blue squares).
- Fig. 5: the baseline with its LR scaled by gamma (left), the beta variant (right), one figure per
  study; dashed: the baseline (gamma = 1), dash-dotted: ours with alpha, shaded: their standard errors.

Every AbsRel axis also shows, dotted grey, the reference predictor of its depth dataset (a constant at
the median training depth, report/reference.py): a point above it has not learned.

Every number is the best test AbsRel reached during training (paper Eq. 1), x 10^4; error bars are
standard errors over seeds (seaborn ``errorbar="se"``). Where the axes of a figure come from a study,
the runs are those of the study; reference lines may come from any run of the same configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mdeaux import atomic
from mdeaux.report.tables import SCALE, mean_se
from mdeaux.runs.plots import Sample, abs_rel_map
from mdeaux.training.tasks import display

DPI = 130
Y_LABEL = "AbsRel ×10⁴ (↓)"


def runs_frame(runs: Sequence[Mapping]) -> pd.DataFrame:
    """One row per run of train.json: its axes, studies and best AbsRel x 1e4."""
    rows = []
    for run in runs:
        c = run["config"]
        rows.append({
            "id": run["id"], "label": run["label"], "studies": tuple(run["studies"]), "depth": c["depth_dataset"],
            "task": c["task"], "aux": c.get("aux_set") or "+".join(c.get("aux_datasets", [])),
            "alpha": c.get("alpha"), "beta": c.get("beta"), "gamma": c.get("gamma") or 1.0, "fraction": c["fraction"],
            "seed": c["seed"], "model": json.dumps(c["model"], sort_keys=True),
            "abs_rel": run["metrics"]["best"]["abs_rel"] * SCALE,
        })
    return pd.DataFrame(rows)


def in_study(df: pd.DataFrame, study: str) -> pd.DataFrame:
    return df[df["studies"].map(lambda s: study in s)]


def reference(df: pd.DataFrame, depth: str, model: str, ours: Mapping) -> dict[str, pd.DataFrame]:
    """The runs of the two reference lines on ``depth``: the baseline (gamma 1, all data) and ours
    (``ours``: task, aux and alpha of the paper's main setting), both with ``model``."""
    full = df[(df["depth"] == depth) & (df["model"] == model) & (df["fraction"] == 1.0) & (df["gamma"] == 1.0)]
    return {
        "baseline": full[full["task"] == "baseline"],
        "ours": full[(full["task"] == ours["task"]) & (full["aux"] == ours["aux"]) & (full["alpha"] == ours["alpha"])
                     & full["beta"].isna()],
    }


def _axes(fig: Figure, n: int, share_y: bool = False):
    import seaborn as sns

    with sns.axes_style("whitegrid"):
        return np.atleast_1d(fig.subplots(1, n, sharey=share_y, squeeze=False)[0])


def _band(ax, values: Sequence[float], label: str, color: str, style: str = "-", se_lines: bool = True) -> None:
    """A horizontal line at the mean; the standard error as dashed lines (Fig. 1) or a shaded band."""
    if len(values) == 0:
        return
    mean, se = mean_se(list(values))
    ax.axhline(mean, color=color, ls=style, lw=1.4, label=f"{label} ({len(values)} seed{'s' * (len(values) > 1)})")
    if se == se and se_lines:
        for y in (mean - se, mean + se):
            ax.axhline(y, color=color, ls="--", lw=0.8, alpha=0.8)
    elif se == se:
        ax.axhspan(mean - se, mean + se, color=color, alpha=0.12, lw=0)


def _constant(ax, constants: Mapping[str, float], depth: str) -> None:
    """The reference predictor's AbsRel on ``depth`` as a dotted grey line (report/reference.py)."""
    if depth in constants:
        ax.axhline(constants[depth], color="grey", ls=":", lw=1.4, label="constant (median training depth)")


def _finish(fig: Figure, title: str, warning: str) -> Figure:
    fig.suptitle(title, fontsize=11)
    if warning:  # under the axes, in the space constrained layout keeps for it
        fig.supxlabel(f"Mini profile. {warning}", fontsize=7, color="#b00020", wrap=True)
    return fig


def _styles(tasks: Sequence[str]) -> dict:
    """seaborn hue/style arguments over the tasks' display names (colours per task: training/tasks.py)."""
    names = [display(t).title for t in tasks]
    return {"hue": "method", "hue_order": names, "palette": {display(t).title: display(t).color for t in tasks}}


def _method(data: pd.DataFrame) -> pd.DataFrame:
    return data.assign(method=data["task"].map(lambda t: display(t).title))


def _lineplot(ax, data: pd.DataFrame, x: str, tasks: Sequence[str]) -> None:
    import seaborn as sns
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    names = [display(t).title for t in tasks]
    sns.lineplot(data=_method(data), x=x, y="abs_rel", style="method", style_order=names,
                 markers={display(t).title: display(t).marker for t in tasks}, dashes=False, errorbar="se",
                 err_style="bars", markersize=8, ax=ax, **_styles(tasks))
    if x in LOG_AXES:  # the swept values as ticks, written plainly
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted(data[x].unique())))
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())


LOG_AXES = ("fraction", "gamma", "beta")


def fig1_alpha(df: pd.DataFrame, study: str, ours: Mapping, names: Mapping[str, str], constants: Mapping[str, float],
               warning: str = "") -> Figure:
    """AbsRel against alpha per auxiliary task; the baseline (its runs of the seeds the points have,
    whichever study planned them) as mean (solid) and ± SE (dashed)."""
    d = in_study(df, study)
    fig = Figure(figsize=(7, 4.6), layout="constrained")
    ax = _axes(fig, 1)[0]
    tasks = [t for t in dict.fromkeys(d["task"]) if t != "baseline"]
    base = d[d["task"] == "baseline"]
    if not base.empty:  # the baseline of the seeds the points have, whichever study planned it
        base = reference(df, base["depth"].iloc[0], base["model"].iloc[0], ours)["baseline"]
        base = base[base["seed"].isin(d.loc[d["task"] != "baseline", "seed"])]
    _band(ax, base["abs_rel"].tolist(), "DINOv2 baseline", "black")
    for depth in dict.fromkeys(d["depth"]):
        _constant(ax, constants, depth)
    _lineplot(ax, d[d["task"] != "baseline"], "alpha", tasks)
    ax.set(xlabel="α (task focusing parameter)", ylabel=Y_LABEL)
    ax.legend(fontsize=8)
    depth = ", ".join(names.get(x, x) for x in dict.fromkeys(d["depth"]))
    aux = ", ".join(names.get(a, a) for a in dict.fromkeys(d["aux"]) if a)
    return _finish(fig, f"Fig. 1 (bottom): AbsRel against α on {depth}, auxiliary {aux}", warning)


def fig1_top(base: Sequence[Sample], ours: Sequence[Sample], spec=None, title: str = "", warning: str = "") -> Figure:
    """Input | ground truth | err_baseline - err_ours per sample (green: ours better; black: invalid)."""
    import matplotlib as mpl

    if not base or len(base) != len(ours):
        raise ValueError(f"fig1_top needs the same samples of both runs; got {len(base)} and {len(ours)}")
    for b, o in zip(base, ours):
        if b.name != o.name or b.gt.shape != o.gt.shape:
            raise ValueError(f"fig1_top: sample {b.name} {b.gt.shape} of the baseline and {o.name} {o.gt.shape} of ours "
                             "differ; both runs must save predictions of the same test images")
    diffs = [abs_rel_map(b.gt, b.pred, spec) - abs_rel_map(o.gt, o.pred, spec) for b, o in zip(base, ours)]
    cmap = mpl.colormaps["RdYlGn"].with_extremes(bad="black")
    depth_cmap = mpl.colormaps["magma_r"].with_extremes(bad="black")
    fig = Figure(figsize=(12, 3.2 * len(base) + 0.7), layout="constrained")
    axes = fig.subplots(len(base), 3, squeeze=False)
    for row, (b, diff) in zip(axes, zip(base, diffs)):
        valid = np.isfinite(b.gt) & (b.gt > 0)
        row[0].imshow(b.image)
        row[0].set_title(f"input {b.name}", fontsize=9)
        im = row[1].imshow(np.where(valid, b.gt, np.nan), cmap=depth_cmap)
        row[1].set_title("ground truth (m)", fontsize=9)
        fig.colorbar(im, ax=row[1], shrink=0.8)
        # each row on its own symmetric scale ("rows should be considered independently", paper §6)
        finite = np.abs(diff[np.isfinite(diff)])
        lim = float(np.percentile(finite, 98)) if finite.size else 1.0
        lim = lim if lim > 0 else 1.0
        im = row[2].imshow(diff, cmap=cmap, vmin=-lim, vmax=lim)
        share = float(np.mean(diff[np.isfinite(diff)] > 0)) if np.isfinite(diff).any() else float("nan")
        row[2].set_title(f"err baseline − err ours (green: ours better on {share:.0%} of pixels)", fontsize=9)
        fig.colorbar(im, ax=row[2], shrink=0.8)
        for ax in row:
            ax.set_axis_off()
    return _finish(fig, title or "Fig. 1 (top)", warning)


def fig3_aux(df: pd.DataFrame, study: str, aux_order: Sequence[str], names: Mapping[str, str],
             constants: Mapping[str, float], warning: str = "") -> Figure:
    """One panel per depth dataset: AbsRel per auxiliary dataset (x) and task (hue); baseline band."""
    import seaborn as sns

    d = in_study(df, study)
    depths = list(dict.fromkeys(d["depth"]))
    fig = Figure(figsize=(4.8 * len(depths) + 1, 4.6), layout="constrained")
    tasks = [t for t in dict.fromkeys(d["task"]) if t != "baseline"]
    for ax, depth in zip(_axes(fig, len(depths)), depths):
        here = d[d["depth"] == depth]
        _band(ax, here.loc[here["task"] == "baseline", "abs_rel"].tolist(), "DINOv2 baseline", "black")
        _constant(ax, constants, depth)
        aux = here[here["task"] != "baseline"].assign(aux_name=lambda t: t["aux"].map(lambda a: names.get(a, a)))
        sns.pointplot(data=_method(aux), x="aux_name", y="abs_rel", order=[names.get(a, a) for a in aux_order],
                      errorbar="se", dodge=0.3 if len(tasks) > 1 else False, linestyle="none",
                      markers=[display(t).marker for t in tasks], capsize=0.1, ax=ax, **_styles(tasks))
        ax.set(title=names.get(depth, depth), xlabel="auxiliary dataset", ylabel=Y_LABEL)
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8)
    return _finish(fig, "Fig. 3: AbsRel per auxiliary dataset and task", warning)


def fig4_fraction(df: pd.DataFrame, study: str, names: Mapping[str, str], constants: Mapping[str, float],
                  warning: str = "") -> Figure:
    """One panel per depth dataset: AbsRel against the training fraction (log scale)."""
    d = in_study(df, study)
    depths = list(dict.fromkeys(d["depth"]))
    fig = Figure(figsize=(max(7.0, 4.4 * len(depths) + 1), 4.6), layout="constrained")
    tasks = list(dict.fromkeys(d["task"]))
    for ax, depth in zip(_axes(fig, len(depths)), depths):
        _constant(ax, constants, depth)
        _lineplot(ax, d[d["depth"] == depth], "fraction", tasks)
        ax.set(title=names.get(depth, depth), xlabel="fraction of the MDE training set", ylabel=Y_LABEL)
        ax.legend(fontsize=8)
    return _finish(fig, "Fig. 4: AbsRel against the training fraction", warning)


def fig5(df: pd.DataFrame, study: str, axis: str, ours: Mapping, names: Mapping[str, str],
         constants: Mapping[str, float], warning: str = "") -> Figure:
    """One learning-rate sweep of paper Fig. 5: ``axis`` "gamma" (the baseline with its decoder LR scaled,
    left) or "beta" (ours with auxiliary steps at beta x eta, right); dashed: the baseline (gamma = 1),
    dash-dotted: ours with the main alpha, shaded: their standard errors."""
    fig = Figure(figsize=(6, 4.4), layout="constrained")
    ax = _axes(fig, 1)[0]
    task = "baseline" if axis == "gamma" else ours["task"]
    d = in_study(df, study)
    sweep = d[d["task"] == task] if axis == "gamma" else d[d["beta"].notna()]
    if sweep.empty:
        ax.text(0.5, 0.5, f"no runs of study {study}", ha="center", va="center", transform=ax.transAxes)
        return _finish(fig, "Fig. 5: AbsRel when varying the learning rate", warning)
    depth = sweep["depth"].iloc[0]
    ref = reference(df, depth, sweep["model"].iloc[0], ours)
    same = {k: v[v["seed"].isin(sweep["seed"])] for k, v in ref.items()}  # the seeds of the sweep's points
    _band(ax, same["baseline"]["abs_rel"].tolist(), "baseline, γ = 1", "black", "--", se_lines=False)
    _band(ax, same["ours"]["abs_rel"].tolist(), f"ours, α = {ours['alpha']:g}", display(ours["task"]).color, "-.", se_lines=False)
    _constant(ax, constants, depth)
    _lineplot(ax, sweep, axis, [task])
    xlabel = "γ (baseline LR factor)" if axis == "gamma" else "β (auxiliary LR factor)"
    ax.set(title=f"{names.get(depth, depth)}: {'Baseline, γ' if axis == 'gamma' else 'Proposed, β'}", xlabel=xlabel, ylabel=Y_LABEL)
    ax.legend(fontsize=8)
    side = "left" if axis == "gamma" else "right"
    return _finish(fig, f"Fig. 5 ({side}): AbsRel when varying the learning rate", warning)


def save(fig: Figure, base: Path) -> list[Path]:
    """``base``.png and ``base``.svg, each written atomically; the same figure gives the same bytes (no
    date in the metadata, fixed SVG ids), so reports kept in git change only when a number does."""
    import matplotlib as mpl

    out = []
    for fmt in ("png", "svg"):
        target = base.with_suffix(f".{fmt}")
        with atomic.atomic_path(target) as tmp, mpl.rc_context({"svg.hashsalt": "mdeaux"}):
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
        out.append(target)
    return out
