"""How each study is drawn: the renderers that a study names with ``render:`` in params.yaml.

A renderer takes the report's context and one study and returns what that study adds to reports/:
tables and figures (each figure with its caption). ``report/build.py`` calls the renderer of every
study; params.yaml is checked against ``RENDERERS`` when it loads, so a study that nothing would draw
is refused before any run is trained for it (params.py ``RENDERERS`` names the renderers that this
module implements; it checks at import that both agree). Tables are named after their study and take the paper's
numbers from ``paper_values.yaml`` under the study's name; each figure renderer is one figure of the
paper and takes the paper's statement under the renderer's name. To add a table-shaped study, only
params.yaml changes (docs/extending.md).

The figure and table modules are imported when a renderer runs: building a report context is cheap,
and matplotlib takes seconds to import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mdeaux import params


@dataclass
class Context:
    paths: Any  # mdeaux.paths.Paths
    params: Any  # mdeaux.params.Params
    runs: list[dict]  # results/train.json "runs"
    paper: dict  # paper_values.yaml
    warning: str  # the mini profile's "not comparable" sentence, or ""
    reference: dict  # results/reference.json: each depth dataset's reference predictor
    frame: Any = None  # report.figures.runs_frame(runs), made on first use

    @property
    def names(self) -> dict[str, str]:
        return self.paper["names"]

    @property
    def ours(self) -> dict[str, Any]:
        """The paper's main setting, drawn as "ours" in reference lines (params.yaml report.ours, alpha)."""
        return {"task": self.params.report.ours.task, "aux": self.params.report.ours.aux, "alpha": self.params.alpha}

    @property
    def ours_text(self) -> str:
        o = self.ours
        return f"{self.names.get(o['aux'], o['aux'])} {o['task'].upper()}, α = {o['alpha']:g}"

    def df(self):
        if self.frame is None:
            from mdeaux.report.figures import runs_frame

            self.frame = runs_frame(self.runs)
        return self.frame

    @property
    def constants(self) -> dict[str, float]:
        """Each depth dataset's reference predictor AbsRel x 10^4 (the figures' "constant" line)."""
        from mdeaux.report.tables import SCALE

        return {d: r["metrics"]["abs_rel"] * SCALE for d, r in self.reference.items()}

    def claim(self, key: str) -> str:
        return self.paper["figures"].get(key, "not stated")


@dataclass
class Output:
    tables: list = field(default_factory=list)  # report.tables.Table
    figures: dict[str, tuple[Any, str]] = field(default_factory=dict)  # file name -> (Figure, caption)


def table(ctx: Context, name: str, study) -> Output:
    """A paper table: depth datasets x tasks (Tables 3 and 4, Appendix C.1 and C.2)."""
    from mdeaux.report import tables

    names = ctx.names
    aux = ", ".join(names.get(a, a) + (f" ({' + '.join(names.get(d, d) for d in ctx.params.aux_sets[a])})"
                                       if a in ctx.params.aux_sets else "") for a in study.aux)
    backbones = sorted({r["config"]["model"]["backbone"] for r in ctx.runs if name in r["studies"]})
    note = f"Ours: auxiliary {aux or 'none'}, backbone {', '.join(backbones) or '–'}."
    built = tables.build(ctx.runs, name, study.title, ctx.params.profile, list(study.depth), list(study.tasks),
                         ctx.paper.get(name, {}), names, note, ctx.warning, ctx.reference,
                         ctx.params.report.learned_below)
    return Output(tables=[built])


def fig1_alpha(ctx: Context, name: str, study) -> Output:
    """Fig. 1: AbsRel against alpha (bottom) and the error difference of baseline and ours (top)."""
    from mdeaux.data.datasets.registry import get as get_spec
    from mdeaux.report import figures

    df = ctx.df()
    out = Output(figures={name: (figures.fig1_alpha(df, name, ctx.ours, ctx.names, ctx.constants, ctx.warning),
                                 f"AbsRel against α (study {name}). Paper: {ctx.claim('fig1_alpha')}")})
    d = figures.in_study(df, name)
    base = d[d["task"] == "baseline"].sort_values("seed")
    if base.empty:
        return out
    depth, model = base["depth"].iloc[0], base["model"].iloc[0]
    ref = figures.reference(df, depth, model, ctx.ours)["ours"]
    seeds = sorted(set(base["seed"]) & set(ref["seed"]))
    if not seeds:
        raise ValueError(f"Fig. 1 (top) compares the baseline with {ctx.ours_text} on {depth} for the same seed, "
                         f"but no such pair of runs exists: add a study with {ctx.ours['task']} on {ctx.ours['aux']} "
                         "(e.g. table3 or fig1_alpha with the top-level alpha)")
    b_id = base[base["seed"] == seeds[0]]["id"].iloc[0]
    o_id = ref[ref["seed"] == seeds[0]]["id"].iloc[0]
    n = ctx.params.report.fig1_samples
    title = (f"Fig. 1 (top): {ctx.names.get(depth, depth)}, baseline ({b_id}) vs {ctx.ours_text} ({o_id}), "
             f"seed {seeds[0]}")
    fig = figures.fig1_top(_predictions(ctx, b_id, n), _predictions(ctx, o_id, n), get_spec(depth), title, ctx.warning)
    out.figures[f"{name}_top"] = (fig, f"Input, ground truth and the error difference. Paper: {ctx.claim('fig1_top')}")
    return out


def _predictions(ctx: Context, run_id: str, count: int):
    from mdeaux.runs.plots import load_predictions
    from mdeaux.runs.store import RunDir, RunStore

    npz = RunStore(ctx.paths.runs)[run_id] / RunDir.PREDICTIONS
    if not npz.is_file():
        raise FileNotFoundError(f"{npz} is missing: Fig. 1 (top) needs the runs' predictions "
                                "(params.yaml runner.save_predictions > 0, then retrain)")
    return load_predictions(npz)[:count]


def fig3_aux(ctx: Context, name: str, study) -> Output:
    """Fig. 3: AbsRel per auxiliary dataset and task."""
    from mdeaux.report import figures

    fig = figures.fig3_aux(ctx.df(), name, list(study.aux), ctx.names, ctx.constants, ctx.warning)
    return Output(figures={name: (fig, f"AbsRel per auxiliary dataset and task (study {name}). Paper: {ctx.claim('fig3_aux')}")})


def fig4_fraction(ctx: Context, name: str, study) -> Output:
    """Fig. 4: AbsRel against the fraction of the depth training set."""
    from mdeaux.report import figures

    fig = figures.fig4_fraction(ctx.df(), name, ctx.names, ctx.constants, ctx.warning)
    return Output(figures={name: (fig, f"AbsRel against the training fraction (study {name}). Paper: {ctx.claim('fig4_fraction')}")})


def fig5(ctx: Context, name: str, study) -> Output:
    """Fig. 5: a learning-rate sweep, gamma (the baseline's decoder LR) or beta (the auxiliary steps)."""
    from mdeaux.report import figures

    axis = "beta" if study.beta is not None else "gamma"
    what = "the β variant" if axis == "beta" else "the baseline LR scaled by γ"
    fig = figures.fig5(ctx.df(), name, axis, ctx.ours, ctx.names, ctx.constants, ctx.warning)
    return Output(figures={name: (fig, f"AbsRel with {what} (study {name}). Paper: {ctx.claim('fig5')}")})


RENDERERS: dict[str, Callable[[Context, str, Any], Output]] = {
    "table": table,
    "fig1_alpha": fig1_alpha,
    "fig3_aux": fig3_aux,
    "fig4_fraction": fig4_fraction,
    "fig5": fig5,
}
if tuple(RENDERERS) != params.RENDERERS:
    raise ImportError(f"report/renderers.py implements {tuple(RENDERERS)}, params.py RENDERERS names {params.RENDERERS}")
