"""Reports: table arithmetic on hand-made runs, every table and figure from a hand-made run grid, and
reports/index.html in headless Chromium."""

import errno
import html
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from browser import check_index
from conftest import ROOT

from mdeaux.params import load
from mdeaux.paths import Paths
from mdeaux.report import build as report
from mdeaux.report import figures, tables
from mdeaux.report.page import mlflow_links
from mdeaux.report.renderers import RENDERERS, Context
from mdeaux.runs.ids import canonical
from mdeaux.runs.plan import Run, planned_configs
from mdeaux.runs.store import RunDir, RunStore

PAPER = {"source": "test", "tasks": {"baseline": "Base", "mldc": "Cls", "segmentation": "Seg"}, "marks": 2,
         "rows": {"nyuv2": {"baseline": [800, 10], "mldc": [700, 5], "gain_pct": 12.5}},
         "mean_gain": {"value": 11, "rows": ["nyuv2", "kitti"], "text": "about 11%"}}


def entry(depth: str, task: str, seed: int, abs_rel: float, study: str = "t", **best) -> dict:
    label = f"{depth}/{task}/s{seed}"
    return {"id": f"{depth}-{task}-{seed}", "label": label, "studies": [study],
            "config": {"depth_dataset": depth, "task": task, "seed": seed},
            "metrics": {"best": {"abs_rel": abs_rel, **best}}}


def hand_table(runs, columns=("baseline", "mldc", "segmentation"), paper=PAPER):
    return tables.build(runs, "t", "Table T", "mini", ["nyuv2", "kitti"], list(columns), paper, {"nyuv2": "NYUv2", "kitti": "KITTI"})


# ------------------------------------------------------------------------------------------------
# arithmetic
def test_mean_standard_error_gain_and_distance():
    mean, se = tables.mean_se([0.08, 0.09, 0.10])
    assert mean == pytest.approx(0.09) and se == pytest.approx(0.01 / math.sqrt(3))
    assert math.isnan(tables.mean_se([5.0])[1])
    with pytest.raises(ValueError):
        tables.mean_se([])
    assert tables.gain_pct(800, 700) == pytest.approx(12.5)
    assert tables.gain_pct(800, 900) == pytest.approx(-12.5)
    assert tables.se_distance((700, 3), (696, 4)) == pytest.approx(4 / 5)
    assert tables.se_distance((700, math.nan), (690, 5)) == pytest.approx(2.0)  # one seed: only the paper's SE
    assert math.isnan(tables.se_distance((700, math.nan), (690, 0)))
    assert tables.rank_marks({"a": 3.0, "b": 1.0, "c": 2.0}, 2) == {"b": "bold", "c": "italic"}
    assert tables.rank_marks({"a": 3.0, "b": 1.0, "c": 2.0}, 1) == {"b": "bold"}


def test_table_cells_marks_gain_and_paper_distance():
    runs = [entry("nyuv2", "baseline", s, v) for s, v in enumerate((0.0800, 0.0820))]
    runs += [entry("nyuv2", "mldc", s, v) for s, v in enumerate((0.0700, 0.0710))]
    runs += [entry("nyuv2", "segmentation", s, v) for s, v in enumerate((0.0750, 0.0760))]
    runs += [entry("kitti", "baseline", 0, 0.0600), entry("kitti", "mldc", 0, 0.0650), entry("kitti", "segmentation", 0, 0.0620)]
    runs += [entry("nyuv2", "mldc", 0, 0.5, study="other")]  # another study's run is not in the table
    t = hand_table(runs)
    assert t.stats("nyuv2", "baseline") == pytest.approx((810.0, 10.0))
    assert t.stats("nyuv2", "mldc") == pytest.approx((705.0, 5.0))
    assert t.marks("nyuv2") == {"mldc": "bold", "segmentation": "italic"}
    assert t.marks("kitti") == {"baseline": "bold", "segmentation": "italic"}
    assert t.best_aux("kitti") == "segmentation"
    assert t.gain("nyuv2") == pytest.approx((810 - 705) / 810 * 100)
    assert t.gain("kitti") == pytest.approx((600 - 620) / 600 * 100)
    mean, rows = t.mean_gain()
    assert rows == ["nyuv2", "kitti"] and mean == pytest.approx((t.gain("nyuv2") + t.gain("kitti")) / 2)

    md = t.to_markdown()
    nyu = next(line for line in md.splitlines() if line.startswith("| NYUv2"))
    cells = [c.strip() for c in nyu.strip("|").split("|")]
    # dataset | constant | base ours | base paper | cls ours | cls paper | seg ours | seg paper | gain ours | gain paper
    assert cells[1] == "–"  # no reference predictor given
    assert cells[2] == "810 ± 10" and cells[4] == "**705 ± 5**" and cells[6] == "*755 ± 5*"
    assert cells[3] == f"800 ± 10 (+{10 / math.hypot(10, 10):.1f} SE)"
    assert cells[5] == f"700 ± 5 (+{5 / math.hypot(5, 5):.1f} SE)" and cells[7] == "–"
    assert cells[8] == "13.0" and cells[9] == "12.5"
    kitti = next(line for line in md.splitlines() if line.startswith("| KITTI"))
    assert "**600**" in kitti and "*620*" in kitti and "| -3.3 |" in kitti  # one seed: no ± part

    m = t.metrics()
    assert m["rows"]["nyuv2"]["mldc_abs_rel_x1e4"] == 705.0 and m["rows"]["nyuv2"]["mldc_se_x1e4"] == 5.0
    assert m["rows"]["nyuv2"]["mldc_seeds"] == 2 and m["rows"]["kitti"]["mldc_se_x1e4"] is None
    assert m["rows"]["nyuv2"]["baseline_vs_paper_se"] == pytest.approx(0.71)
    assert m["rows"]["nyuv2"]["gain_pct"] == pytest.approx(12.96) and m["paper_mean_gain_pct"] == 11

    tex = t.to_latex()
    assert r"\textbf{705 $\pm$ 5}" in tex and r"\textit{755 $\pm$ 5}" in tex and r"Gain \% (ours)" in tex
    assert "±" not in tex and "–" not in tex


def test_the_reference_predictor_and_runs_that_did_not_beat_it_are_shown():
    """Each row shows its dataset's constant predictor (AbsRel x 1e4), and a cell with a run whose best
    AbsRel is not below learned_below x that is marked, in every format and in metrics.json."""
    every = {m: 0.2 for m in tables.METRICS if m != "abs_rel"}
    runs = [entry("nyuv2", "baseline", s, v, **every) for s, v in enumerate((0.0800, 0.0950))]  # s1: 0.095 >= 0.9 x 0.1
    runs += [entry("nyuv2", "mldc", s, v) for s, v in enumerate((0.0700, 0.0710))]
    runs += [entry("kitti", "baseline", 0, 0.0600)]
    reference = {"nyuv2": {"metrics": dict.fromkeys(tables.METRICS, 0.5) | {"abs_rel": 0.1}},
                 "kitti": {"metrics": dict.fromkeys(tables.METRICS, 0.4) | {"abs_rel": 0.0666}}}
    t = tables.build(runs, "t", "Table T", "mini", ["nyuv2", "kitti"], ["baseline", "mldc"], PAPER,
                     {"nyuv2": "NYUv2", "kitti": "KITTI"}, reference=reference, learned_below=0.9)
    assert [r["label"] for r in t.not_learned("nyuv2", "baseline")] == ["nyuv2/baseline/s1"]
    assert t.not_learned("nyuv2", "mldc") == [] and t.not_learned("kitti", "baseline") != []  # 0.06 = 0.9 x 0.0666 is not below
    md = t.to_markdown()
    nyu = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| NYUv2")).strip("|").split("|")]
    assert nyu[1] == "1000" and nyu[2] == f"*875 ± 75*{tables.NOT_LEARNED}" and nyu[4] == "**705 ± 5**"
    assert "0.9 x that" in md and r"\textit{875 $\pm$ 75}$^\dagger$" in t.to_latex()
    assert f"{tables.NOT_LEARNED}" in t.to_html(lambda run: None)
    m = t.metrics()["rows"]
    assert m["nyuv2"]["constant_abs_rel_x1e4"] == 1000.0 and m["nyuv2"]["baseline_not_learned"] == 1
    assert "mldc_not_learned" not in m["nyuv2"] and m["kitti"]["baseline_not_learned"] == 1
    companion = tables.MetricsTable(tables.build(runs[:1], "t", "T", "mini", ["nyuv2"], ["baseline"], PAPER,
                                                 {"nyuv2": "NYUv2"}, reference=reference)).to_markdown()
    assert "| NYUv2 | Constant (median depth) | – | 0.5 | 0.5 | 0.5 | 0.1 | 0.5 |" in companion
    with pytest.raises(KeyError, match=r"no reference predictor for 'kitti' \(run kitti/baseline/s0\)"):
        tables.build(runs, "t", "T", "mini", ["nyuv2", "kitti"], ["baseline"], PAPER, {},
                     reference={"nyuv2": reference["nyuv2"]}).to_markdown()


def test_one_bold_mark_only_where_the_paper_marks_one():
    runs = [entry("nyuv2", t, 0, v) for t, v in (("baseline", 0.08), ("mldc", 0.07), ("segmentation", 0.075))]
    t = hand_table(runs, paper=dict(PAPER, marks=1))
    assert t.marks("nyuv2") == {"mldc": "bold"}
    assert "*750*" not in t.to_markdown()


def test_companion_table_has_every_metric_in_its_units():
    best = {m: 0.5 for m in tables.METRICS if m != "abs_rel"}
    runs = [entry("nyuv2", "baseline", s, v, **best) for s, v in enumerate((0.08, 0.10))]
    text = tables.MetricsTable(hand_table(runs, columns=("baseline",))).to_markdown()
    row = next(line for line in text.splitlines() if line.startswith("| NYUv2"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "2" and cells[3] == "0.5 ± 0" and cells[6] == "0.09 ± 0.01"  # AbsRel raw, not x 1e4


def test_two_runs_of_one_seed_in_a_cell_are_refused():
    runs = [entry("nyuv2", "mldc", 0, 0.07), dict(entry("nyuv2", "mldc", 0, 0.08), id="other", label="nyuv2/mldc/a0.8/s0")]
    with pytest.raises(ValueError, match=r"both nyuv2/mldc seed 0.*single alpha"):
        hand_table(runs)


# ------------------------------------------------------------------------------------------------
# the whole report from a hand-made grid of every mini study
def fake_value(config: dict) -> float:
    """A deterministic AbsRel per configuration: auxiliary tasks better than the baseline, seeds apart."""
    rng = np.random.default_rng(int.from_bytes(canonical(config).encode()[-8:], "little") % 2**32)
    return 0.10 - (0.01 if config["task"] != "baseline" else 0.0) + 0.002 * rng.standard_normal()


def write_run(run_dir: Path, value: float, size=(60, 80)) -> None:
    run_dir.mkdir(parents=True)
    steps = np.arange(1, 41)
    (run_dir / "curves.csv").write_text("step,loss_depth\n" + "".join(f"{s},{2 / s:.5f}\n" for s in steps))
    (run_dir / "evals.csv").write_text(f"step,abs_rel\n20,{value * 1.2}\n40,{value}\n")
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, size).astype(np.float16)
    pred = (gt * (1 + value * rng.standard_normal(size))).astype(np.float16)
    arrays = {"ids": np.array(["a", "b"])}
    for i in range(2):
        arrays |= {f"image_{i}": rng.integers(0, 255, (*size, 3), dtype=np.uint8), f"gt_{i}": gt, f"pred_{i}": pred}
    np.savez(run_dir / "predictions.npz", **arrays)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    params = load(root / "params.yaml")
    runs: dict[str, dict] = {}
    for config, study in planned_configs(params):
        key = canonical(config.model_dump(mode="json"))
        if key not in runs:
            run = Run(f"{len(runs):016x}", config, {}, "")
            value = fake_value(config.model_dump(mode="json"))
            runs[key] = {"id": run.id, "label": run.label, "config": config.model_dump(mode="json"), "studies": [],
                         "metrics": {"best": {m: value for m in tables.METRICS}}}
            write_run(root / "runs" / run.id, value)
        runs[key]["studies"].append(study)
    (root / "results").mkdir()
    (root / "results" / "train.json").write_text(json.dumps({"runs": list(runs.values())}))
    # reference predictors: far above every run, except DIODE Outdoor's, which the baselines (~0.10) do not beat
    depths = {r["config"]["depth_dataset"] for r in runs.values()}
    reference = {d: {"median_depth": 3.0, "train_images": 10, "test_images": 4,
                     "metrics": {m: 0.1 if d == "diode_outdoor" else 0.3 for m in tables.METRICS}} for d in depths}
    (root / "results" / "reference.json").write_text(json.dumps(reference))
    (root / "reports" / "validation" / "nyuv2").mkdir(parents=True)
    (root / "reports" / "validation" / "nyuv2" / "index.html").write_text("<html><body>validation</body></html>")
    paths = Paths(root)
    written = report.write_reports(paths, params)
    ctx = Context(paths, params, list(runs.values()), report.paper_values(), report.MINI_WARNING, reference)
    figs = {}
    for name, study in params.studies.items():
        figs.update(RENDERERS[study.render](ctx, name, study).figures)
    return {"root": root, "paths": paths, "params": params, "runs": list(runs.values()), "written": written, "figs": figs,
            "ctx": ctx}


def table_studies(params) -> list[str]:
    return [name for name, study in params.studies.items() if study.render == "table"]


def test_every_table_and_figure_is_written(project):
    reports = project["root"] / "reports"
    for key in table_studies(project["params"]):
        for suffix in (".md", ".tex", "_metrics.md", "_metrics.tex"):
            text = (reports / "tables" / f"{key}{suffix}").read_text()
            assert "not comparable" in text, (key, suffix)
    for name in ("fig1_alpha", "fig1_alpha_top", "fig3_aux", "fig4_fraction", "fig5_gamma", "fig5_beta"):
        assert (reports / "figures" / f"{name}.png").stat().st_size > 10_000
        assert "<svg" in (reports / "figures" / f"{name}.svg").read_text()[:1000]
        fig, caption = project["figs"][name]
        assert "not comparable" in fig.get_supxlabel() and "Paper:" in caption, name
    # the same figure gives the same bytes (reports are kept in git)
    again = figures.save(project["figs"]["fig3_aux"][0], project["root"] / "again")
    assert again[1].read_bytes() == figures.save(project["figs"]["fig3_aux"][0], project["root"] / "again2")[1].read_bytes()
    for study in project["params"].studies:
        for column in report.CURVES:
            lines = (reports / "curves" / column / f"{study}.csv").read_text().splitlines()
            assert lines[0] == f"run,step,{column}" and len(lines) > 1
    table3 = (reports / "tables" / "table3.md").read_text()
    # our column holds our runs: the NYUv2 baseline's AbsRel x 10^4, mean ± standard error over its seeds,
    # computed here from the runs written above (the paper's 809 ± 10 stands in its own column)
    ours = [r["metrics"]["best"]["abs_rel"] * 1e4 for r in project["runs"]
            if "table3" in r["studies"] and r["config"]["task"] == "baseline" and r["config"]["depth_dataset"] == "nyuv2"]
    assert len(ours) == len(project["params"].studies["table3"].seeds) >= 2
    mean = sum(ours) / len(ours)
    se = (sum((v - mean) ** 2 for v in ours) / (len(ours) - 1) / len(ours)) ** 0.5
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table3.splitlines() if line.startswith("|")]
    nyu = next(r for r in rows if r[0] == "NYUv2")
    assert nyu[header.index("DINOv2 (ours)")].strip("*_") == f"{mean:.0f} ± {se:.0f}"
    assert nyu[header.index("DINOv2 (paper)")].startswith("809 ± 10") and "In MIX6" in header
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["profile"] == "mini" and set(metrics) >= {"table3", "table4", "appc1_slc", "appc2_single_aux"}
    assert metrics["table3"]["rows"]["nyuv2"]["gain_pct"] > 0 and metrics["table3"]["paper_mean_gain_pct"] == 11


def test_runs_that_did_not_beat_the_reference_predictor_are_marked_everywhere(project):
    """Issue 14: the reference predictor in every table and figure and in metrics.json; every run whose best
    AbsRel is not below report.learned_below x its reference's is listed and marked."""
    reports, params = project["root"] / "reports", project["params"]
    below = params.report.learned_below
    reference = json.loads((project["root"] / "results" / "reference.json").read_text())
    expected = sorted(r["label"] for r in project["runs"]
                      if r["metrics"]["best"]["abs_rel"] >= below * reference[r["config"]["depth_dataset"]]["metrics"]["abs_rel"])
    assert expected and all(label.startswith("diode_outdoor/") for label in expected)
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["not_learned"] == expected
    assert metrics["reference"]["nyuv2"] == {"abs_rel_x1e4": 3000.0, "a1": 0.3, "median_depth": 3.0}
    assert metrics["table3"]["rows"]["nyuv2"]["constant_abs_rel_x1e4"] == 3000.0
    page = (reports / "index.html").read_text()
    assert f"{len(expected)} of {len(project['runs'])} runs did not learn" in page
    assert all(html.escape(label) in page for label in expected)
    assert page.count(f"<td>no {tables.NOT_LEARNED}</td>") == len(expected)
    # every figure with an AbsRel axis draws each of its datasets' constant as a line at its value
    for name in ("fig1_alpha", "fig3_aux", "fig4_fraction", "fig5_gamma", "fig5_beta"):
        fig = project["figs"][name][0]
        lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_label().startswith("constant")]
        assert lines and all(line.get_ydata()[0] in (3000.0, 1000.0) for line in lines), name
    fig3 = {ax.get_title(): [line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("constant")]
            for ax in project["figs"]["fig3_aux"][0].axes}
    assert fig3 == {"NYUv2": [3000.0], "DIODE Out": [1000.0]}


def test_curves_are_thinned_to_the_configured_points(project):
    paths, params = project["paths"], project["params"]
    run = project["runs"][0]
    store = RunStore(paths.runs)
    table = report.curves_table(store, [run], "loss_depth", 10)
    assert len(table) == 10 and table["step"].iloc[0] == pytest.approx(2.5)  # mean of steps 1..4
    assert len(report.curves_table(store, [run], "loss_depth", params.report.curve_points)) == 40


def test_a_failing_report_leaves_the_previous_one_whole(project):
    """Fig. 1 (top) needs the runs' predictions: without them the report stops with what to do, and
    the reports of the last successful run stay complete (nothing is deleted before all is computed)."""
    root, paths, params = project["root"], project["paths"], project["params"]
    before = {p: p.read_bytes() for p in (root / "reports").rglob("*") if p.is_file()}
    moved = [p for p in (root / "runs").glob("*/predictions.npz")]
    for p in moved:
        p.rename(p.with_suffix(".bak"))
    try:
        with pytest.raises(FileNotFoundError, match="runner.save_predictions"):
            report.write_reports(paths, params)
    finally:
        for p in moved:
            p.with_suffix(".bak").rename(p)
    assert {p: p.read_bytes() for p in (root / "reports").rglob("*") if p.is_file()} == before


def test_a_failure_while_writing_leaves_the_previous_report_whole(project, monkeypatch):
    """Issue 13 #5: a report that fails while writing (here the disk fills up at the first figure, after
    the tables) leaves the last complete report in place, and no half-written folder behind."""
    root, paths, params = project["root"], project["paths"], project["params"]
    before = {p: p.read_bytes() for p in (root / "reports").rglob("*") if p.is_file()}

    def full_disk(fig, base):
        raise OSError(errno.ENOSPC, "No space left on device", str(base))

    monkeypatch.setattr(figures, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        report.write_reports(paths, params)
    assert {p: p.read_bytes() for p in (root / "reports").rglob("*") if p.is_file()} == before
    assert not list((root / "reports").glob(".*"))


def test_a_grid_without_figures_writes_its_tables_and_an_empty_figures_folder(project, tmp_path):
    """Issue 13 #5: with table studies only, the report stage's figures/ output exists (empty: no stale
    figure of an earlier grid survives)."""
    root = tmp_path / "project"
    shutil.copytree(project["root"], root, symlinks=True)
    params = project["params"]
    tables_only = params.model_copy(update={"studies": {k: v for k, v in params.studies.items() if v.render == "table"}})
    report.write_reports(Paths(root), tables_only)
    assert (root / "reports" / "figures").is_dir() and not any((root / "reports" / "figures").iterdir())
    assert {p.stem for p in (root / "reports" / "tables").glob("*.md")} >= set(table_studies(params))
    assert "figures/" not in (root / "reports" / "index.html").read_text()  # no link to a figure


def test_index_opens_in_chromium_with_every_image_and_link(project, tmp_path):
    reports = project["root"] / "reports"
    page = (reports / "index.html").read_text()
    assert "not comparable with the paper" in page and "<b>mini</b> profile" in page
    shot = tmp_path / "index.png"
    found = check_index(reports, shot)
    assert found["title"] == "mdeaux reports (mini profile)"
    assert found["tables"] >= len(table_studies(project["params"])) + 1
    assert len(found["images"]) == 6 and all(w > 100 and h > 100 for _, w, h in found["images"]), found["images"]
    local = [link for link in found["links"] if link[1] != "external"]
    assert {"tables/table3.md", "tables/table4.tex", "figures/fig1_alpha_top.svg", "validation/nyuv2/index.html",
            "curves/abs_rel/fig4_fraction.csv"} <= {href for href, _, _ in local}
    assert all(status == 200 and size > 0 for _, status, size in local), [x for x in local if x[1] != 200]
    print(f"screenshot: {shot}")


def test_mlflow_links_point_at_each_run(project, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from mdeaux.runs.tracking import experiment_name

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    exp = client.create_experiment(experiment_name("mini"))
    run = project["runs"][0]
    mlrun = client.create_run(exp)
    id_file = RunStore(project["paths"].runs)[run["id"]] / RunDir.MLFLOW_ID
    id_file.write_text(mlrun.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        link, note = mlflow_links(Paths(project["root"]), project["params"], project["runs"])
    finally:
        id_file.unlink()
    # the runs table filtered by our run id (reproducible), opened as a model-training experiment (MLflow 3)
    assert link(run) == (f"http://127.0.0.1:5000/#/experiments/{exp}/runs?workflowType=machine_learning"
                         f"&searchFilter=tags.run_id%20%3D%20%27{run['id']}%27")
    assert link(project["runs"][1]) is None and "make ui" in note
    assert f'href="{html.escape(link(run))}"' in tables.seed_links([run, project["runs"][1]], link)


def test_paper_values_cover_the_studies():
    values = report.paper_values()
    assert set(table_studies(load(ROOT / "params.yaml"))) <= set(values)
    assert {"fig1_alpha", "fig1_top", "fig3_aux", "fig4_fraction", "fig5"} <= set(values["figures"])
    t3 = values["table3"]["rows"]
    assert t3["nyuv2"]["mldc"] == [696, 3] and t3["diode_outdoor"]["reconstruction"] == [4530, 91]
    gains = [t3[r]["gain_pct"] for r in values["table3"]["mean_gain"]["rows"]]
    assert sum(gains) / len(gains) == pytest.approx(10.75)  # "an average of ~11%" (§4.1)
    t4 = [values["table4"]["rows"][r]["gain_pct"] for r in values["table4"]["mean_gain"]["rows"]]
    assert sum(t4) / len(t4) == pytest.approx(2.48, abs=0.01)  # "an average 2.5%" (§5.2)


def test_a_study_is_drawn_by_the_renderer_it_names_whatever_its_name(project):
    """A renamed table study is still rendered (under its own name); an unknown renderer is refused when
    params load, before any run is trained for it."""
    from mdeaux.params import ParamsError, parse

    params = project["params"]
    ctx = project["ctx"]
    runs = [dict(r, studies=[*r["studies"], "renamed"]) for r in ctx.runs if "table3" in r["studies"]]
    renamed = Context(ctx.paths, params, runs, ctx.paper, ctx.warning, ctx.reference)
    out = RENDERERS["table"](renamed, "renamed", params.studies["table3"])
    assert [t.key for t in out.tables] == ["renamed"] and "NYUv2" in out.tables[0].to_markdown()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["studies"]["table3"]["render"] = "table9"
    with pytest.raises(ParamsError, match=r"studies.table3.render: unknown renderer 'table9'; allowed: table, fig1_alpha"):
        parse(raw)


def test_curve_lines_keep_their_names_across_a_top_level_alpha_change(project):
    """`dvc plots diff` overlays revisions line by line: a run that takes the top-level alpha is named
    with `aα`, so `-S alpha=0.8` redraws the same line; a study's own alpha axis keeps its values."""
    curves = project["root"] / "reports" / "curves" / "loss_depth"
    lines = lambda study: {row.split(",")[0] for row in (curves / f"{study}.csv").read_text().splitlines()[1:]}  # noqa: E731
    assert {"nyuv2/mldc+mix6/aα/s0", "nyuv2/baseline/a1/s0"} <= lines("table3")
    assert not any("/a0.9/" in name for name in lines("table3"))
    assert {"nyuv2/mldc+mix6/a0.5/s0", "nyuv2/mldc+mix6/a0.9/s0"} <= lines("fig1_alpha")
    assert "nyuv2/mldc+mix6/b0.05/s0" in lines("fig5_beta")
    gains = json.loads((project["root"] / "reports" / "metrics.json").read_text())["gain"]
    assert set(gains) == {"table3", "table4", "appc1_slc", "appc2_single_aux"}  # `dvc exp show --keep 'gain\.'`


def test_the_report_stage_fails_on_a_run_that_did_not_learn_when_required(project, tmp_path, monkeypatch, caplog):
    """Issue 14: with report.require_learned (mini: true) `mdeaux report`, the DAG's report stage, writes the
    reports and then fails, naming each run that did not beat its reference (here a DIODE Outdoor run);
    with it false (the paper profile, the smoke world) the same runs are only marked."""
    from mdeaux.cli import main

    root = tmp_path / "project"
    shutil.copytree(project["root"], root, ignore=shutil.ignore_patterns("reports", "mlruns"))
    monkeypatch.chdir(root)
    expected = json.loads((project["root"] / "reports" / "metrics.json").read_text())["not_learned"]
    assert expected and all(label.startswith("diode_outdoor/") for label in expected)
    assert load(root / "params.yaml").report.require_learned  # the mini profile's value
    assert main(["report"]) == 1
    assert f"the learning check failed: {len(expected)} run(s) did not learn" in caplog.text
    assert ", ".join(expected) in caplog.text and "report.require_learned.mini=false" in caplog.text
    assert json.loads((root / "reports" / "metrics.json").read_text())["not_learned"] == expected  # written first
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["report"]["require_learned"]["mini"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    caplog.clear()
    assert main(["report"]) == 0 and "learning check failed" not in caplog.text
