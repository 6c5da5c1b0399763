"""MLflow tracking: study parents and child runs, search by param and tag, system metrics, figures,
and the import of runs whose tracker could not reach MLflow (sqlite store and a tracking server).

Fresh stores are copies of one pre-migrated SQLite template (a new database costs ~1 s of Alembic
migrations, measured here).
"""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import BIN, ROOT, clean_env, mdeaux

from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.params import load
from mdeaux.paths import Paths
from mdeaux.runs import mlflow_import, mlflow_studies, tracking
from mdeaux.runs import plots as visuals
from mdeaux.runs.plan import Run, resolve_config
from mdeaux.runs.store import RunDir, RunStore

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------
# fixtures and helpers
@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the schema
    return db


@pytest.fixture(autouse=True)
def clean_mlflow(monkeypatch):
    """No tracking URI, experiment or store of an enclosing run; no active run left behind."""
    import mlflow

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MDEAUX_STORE", "DVC_ROOT",
                "DVC_EXP_NAME", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
        monkeypatch.delenv(var, raising=False)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture
def paths(tmp_path, template_db) -> Paths:
    """A store (runs/, mlflow.db, mlartifacts/) in a temporary folder, its database pre-migrated."""
    shutil.copy2(template_db, tmp_path / "mlflow.db")
    return Paths(tmp_path)


@pytest.fixture(scope="module")
def params():
    return load(ROOT / "params.yaml")


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def make_run(params, studies=("fig1_alpha",), seed=0, alpha=0.9, task="mldc") -> Run:
    config = resolve_config(params, depth="nyuv2", task=task, aux="mix6", seed=seed, alpha=alpha)
    inputs = {"nyuv2:data": "d" * 64, "nyuv2:split": "s" * 64}
    run_id = f"{seed:02d}{int(alpha * 100):03d}{len(task):02d}" + "a" * 9
    return Run(id=run_id, config=config, inputs=inputs, code="c" * 64, studies=tuple(studies))


def finished_run_dir(paths: Paths, run: Run, steps: int = 20, eval_every: int = 10, predictions: bool = True) -> RunDir:
    """The files a trained run leaves in runs/<id>/ (config.json as runs.plan writes it), made by hand."""
    d = RunStore(paths.runs)[run.id]
    d.path.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(run.record()))
    with open(d / "curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss_depth", "lr_decoder_depth", "lr_head_depth", "beta1", "loss_aux", "lr_decoder_aux", "lr_head_aux"])
        for s in range(1, steps + 1):
            w.writerow([s, 2.0 / s, 1e-5 * s, 1e-4 * s, 0.9, 3.0 / s, 1e-6 * s, 1e-4 * s])
    evals = [{"step": s, "abs_rel": 0.5 / s, "rmse": 1.0 / s, "a1": 1 - 1 / s} for s in range(eval_every, steps + 1, eval_every)]
    with open(d / "evals.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "abs_rel", "rmse", "a1"])
        w.writeheader()
        w.writerows(evals)
    last = {k: v for k, v in evals[-1].items() if k != "step"}
    (d / "metrics.json").write_text(json.dumps({
        "run_id": run.id, "label": run.label, "iterations": steps, "train_seconds": 12.5,
        "best": last, "best_step": {k: steps for k in last}, "final": last, "test_images": 3, "processes": 1,
    }))
    if predictions:
        rng = np.random.default_rng(0)
        gt = rng.uniform(0.5, 9.0, (2, 480, 640)).astype(np.float32)
        np.savez(d / "predictions.npz", image=rng.integers(0, 255, (2, 480, 640, 3), dtype=np.uint8), gt=gt,
                 pred=gt * 1.1, ids=np.array(["a", "b"]))
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# figures
def test_error_map_scores_the_evaluated_pixels_only():
    gt = np.full((480, 640), 2.0, dtype=np.float32)
    gt[0, 0] = 0.0  # unknown depth
    pred = np.full_like(gt, 2.5)
    pred[100, 100] = 50.0  # clamped to NYUv2's max_depth (10 m) first, as the evaluation does
    plain = visuals.abs_rel_map(gt, pred)
    assert np.isnan(plain[0, 0]) and plain[1, 1] == pytest.approx(0.25) and plain[100, 100] == pytest.approx(24.0)
    spec = get_spec("nyuv2")
    scored = visuals.abs_rel_map(gt, pred, spec)
    mask = spec.eval_mask(gt)
    assert np.array_equal(np.isfinite(scored), mask)  # the toolbox mask and eval crop
    assert scored[100, 100] == pytest.approx((10.0 - 2.0) / 2.0)
    scored[100, 100] = np.nan
    assert np.nanmin(scored) == pytest.approx(0.25) and np.nanmax(scored) == pytest.approx(0.25)


def test_both_prediction_layouts_load_the_same_samples(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (2, 6, 8, 3), dtype=np.uint8)
    gt = rng.uniform(1, 5, (2, 6, 8)).astype(np.float32)
    pred = gt + 0.5
    np.savez(tmp_path / "stacked.npz", image=image, gt=gt, pred=pred, ids=np.array(["x", "y"]))
    np.savez(tmp_path / "keyed.npz", ids=np.array(["x", "y"]), **{f"{k}_{i}": v[i] for i in range(2)
             for k, v in (("image", image), ("gt", gt.astype(np.float16)), ("pred", pred.astype(np.float16)))})
    a, b = visuals.load_predictions(tmp_path / "stacked.npz"), visuals.load_predictions(tmp_path / "keyed.npz")
    assert [s.name for s in a] == [s.name for s in b] == ["x", "y"]
    for s, t in zip(a, b):
        assert np.array_equal(s.image, t.image) and np.allclose(s.gt, t.gt, atol=5e-3) and np.allclose(s.pred, t.pred, atol=5e-3)
    np.savez(tmp_path / "bad.npz", depth=gt)
    with pytest.raises(ValueError, match="expected keys image, gt, pred"):
        visuals.load_predictions(tmp_path / "bad.npz")


def test_figures_are_drawn_from_the_run_files(paths, params):
    run = make_run(params)
    d = finished_run_dir(paths, run)
    written = visuals.write_figures(d)
    assert [p.name for p in written] == ["curves.png", "predictions.png"]
    for p in written:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000
    (d / "predictions.npz").unlink()
    assert [p.name for p in visuals.write_figures(d)] == ["curves.png"]  # no predictions saved: no map


# ------------------------------------------------------------------------------------------------
# parents, live runs, import
def test_study_parents_are_created_once_and_found_by_tag(paths):
    uri = paths.mlflow_uri
    first = tracking.ensure_parents(uri, "mini", paths.mlflow_artifacts, {"table3": "Table 3", "fig4": "Fig. 4"})
    again = tracking.ensure_parents(uri, "mini", paths.mlflow_artifacts, {"table3": "Table 3", "fig4": "Fig. 4"})
    assert first == again and len(set(first.values())) == 3  # two studies and the parent of the training runs
    more = tracking.ensure_parents(uri, "mini", paths.mlflow_artifacts, {"fig4": "Fig. 4", "fig5": "Fig. 5"})
    assert more["fig4"] == first["fig4"] and more["fig5"] not in first.values()
    c = client(uri)
    exp = c.get_experiment_by_name("mdeaux-mini")
    parents = c.search_runs([exp.experiment_id], "tags.`mdeaux.kind` = 'study'")
    assert len(parents) == 3
    runs_parent = c.get_run(first[tracking.RUNS])
    assert runs_parent.info.run_name == "training runs" and runs_parent.data.tags["mdeaux.kind"] == "runs"
    table3 = c.get_run(first["table3"])
    assert table3.info.run_name == "study:table3" and table3.info.status == "FINISHED"
    assert table3.data.tags["mdeaux.study"] == "table3" and table3.data.tags["mdeaux.title"] == "Table 3"
    assert exp.artifact_location == paths.mlflow_artifacts.resolve().as_uri()


@pytest.mark.parametrize("entry", ["setup", "ensure_parents"])
def test_processes_creating_a_new_store_at_once_leave_a_complete_database(tmp_path, entry):
    """Two experiments sharing a new store open its mlflow.db at the same moment (CI failure of stop 18:
    "table _alembic_tmp_latest_metrics already exists"). Without the lock in ``setup`` two of four
    processes started together fail in MLflow's schema migration and leave the database half migrated.
    ``ensure_parents`` (what ``mdeaux train`` calls) opened a client, which creates the database, before
    taking that lock (CI failure of this session: "_alembic_tmp_tags already exists")."""
    db, start = tmp_path / "mlflow.db", time.time() + 8  # every process has imported mlflow by then
    call = {"setup": "tracking.setup(uri, 'mini', art)",
            "ensure_parents": "tracking.ensure_parents(uri, 'mini', art, {'table3': 'Table 3'}, db.parent / '.mlflow.lock')"}
    code = ("import sys, time; from pathlib import Path; from mdeaux.runs import tracking\n"
            "db = Path(sys.argv[1]); uri, art = 'sqlite:///' + sys.argv[1], db.parent / 'mlartifacts'\n"
            "while time.time() < float(sys.argv[2]): time.sleep(0.001)\n"
            f"{call[entry]}\n"
            "print(tracking.setup(uri, 'mini', art))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(start)], env=clean_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    out = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(err[-1500:] for _, err in out)
    assert len({o.strip() for o, _ in out}) == 1  # one experiment
    import sqlite3

    with sqlite3.connect(db) as con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "latest_metrics" in tables and not any(t.startswith("_alembic_tmp") for t in tables)


def test_import_builds_a_complete_child_run_searchable_by_param_and_tag(paths, params):
    import mlflow

    parents = tracking.ensure_parents(paths.mlflow_uri, "mini", paths.mlflow_artifacts,
                                      {"fig1_alpha": "Fig. 1 (bottom)", "table3": "Table 3"})
    runs = [make_run(params, ("fig1_alpha", "table3"), seed=0, alpha=0.9), make_run(params, ("fig1_alpha",), seed=1, alpha=0.5)]
    for r in runs:
        finished_run_dir(paths, r, predictions=r is runs[0])
    counts = mlflow_import.import_done(paths, runs, parents)
    assert counts == {"imported": 2, "tracked": 0, "left": 0}

    run = runs[0]
    rid = (RunStore(paths.runs)[run.id].path / "mlflow_run_id").read_text().strip()
    c = client(paths.mlflow_uri)
    got = c.get_run(rid)
    assert got.info.status == "FINISHED" and got.info.run_name == run.label
    p = got.data.params
    assert p["alpha"] == "0.9" and p["task"] == "mldc" and p["train.lr"] == str(run.config.train.lr)
    assert (p["lr_factor.depth"], p["lr_factor.aux"]) == ("0.9", "0.1") and "beta" not in p and "gamma" not in p
    assert p["model.backbone"] == run.config.model.backbone and p["aux_datasets"] == str(run.config.aux_datasets)
    t = got.data.tags
    assert t["mlflow.parentRunId"] == parents[tracking.RUNS] and t["studies"] == "fig1_alpha,table3"
    assert t["run_id"] == run.id and t["seed"] == "0" and t["alpha"] == "0.9" and t["aux_set"] == "mix6"
    assert t["mdeaux.source"] == "import" and t["mdeaux.complete"] == "true" and t["data.nyuv2:data"] == "d" * 16
    assert "git_commit" in t and t["code_version"] == "c" * 16
    loss = c.get_metric_history(rid, "loss_depth")
    assert [m.step for m in loss] == list(range(1, 21)) and loss[1].value == pytest.approx(1.0)
    assert [m.step for m in c.get_metric_history(rid, "test.abs_rel")] == [10, 20]
    assert got.data.metrics["best.abs_rel"] == pytest.approx(0.025) and got.data.metrics["final.rmse"] == pytest.approx(0.05)
    assert got.data.metrics["train_seconds"] == pytest.approx(12.5)
    assert {"config.json", "metrics.json", "curves.csv", "evals.csv"} <= {a.path for a in c.list_artifacts(rid)}
    assert {a.path for a in c.list_artifacts(rid, "plots")} == {"plots/curves.png", "plots/predictions.png"}

    mlflow.set_tracking_uri(paths.mlflow_uri)
    found = mlflow.search_runs(experiment_names=["mdeaux-mini"], filter_string="params.alpha = '0.5' and tags.seed = '1'",
                               output_format="list")
    assert [r.data.tags["run_id"] for r in found] == [runs[1].id]
    found = mlflow.search_runs(experiment_names=["mdeaux-mini"], filter_string="tags.studies LIKE '%table3%'", output_format="list")
    assert [r.data.tags["run_id"] for r in found] == [run.id]
    children = mlflow.search_runs(experiment_names=["mdeaux-mini"],
                                  filter_string=f"tags.mlflow.parentRunId = '{parents[tracking.RUNS]}'", output_format="list")
    assert len(children) == 2

    # each study's parent: one cell per run it uses, linking to the training run (fig1_alpha: 2, table3: 1)
    assert mlflow_studies.sync_cells(paths, params, runs, parents) == 3
    assert mlflow_studies.sync_cells(paths, params, runs, parents) == 0  # idempotent
    cells = c.search_runs([got.info.experiment_id], f"tags.mlflow.parentRunId = '{parents['fig1_alpha']}'")
    assert sorted(cell.info.run_name for cell in cells) == sorted(r.label for r in runs)
    cell = next(x for x in cells if x.data.tags["mdeaux.run"] == run.id)
    assert cell.data.tags["mdeaux.trained_run"] == rid and rid in cell.data.tags["mlflow.note.content"]
    assert cell.data.metrics["best.abs_rel"] == pytest.approx(0.025) and cell.data.params["alpha"] == "0.9"


def test_import_is_idempotent_and_replaces_incomplete_runs(paths, params):
    run = make_run(params)
    finished_run_dir(paths, run, predictions=False)
    id_file = RunStore(paths.runs)[run.id].path / "mlflow_run_id"
    c = client(paths.mlflow_uri)

    def runs_of_id():
        exp = c.get_experiment_by_name("mdeaux-mini").experiment_id
        return c.search_runs([exp], f"tags.run_id = '{run.id}'")

    # a tracker that lost its connection mid-run left a partial run and its id
    exp_id = tracking.setup(paths.mlflow_uri, "mini", paths.mlflow_artifacts)
    partial = c.create_run(exp_id, tags={"run_id": run.id}).info.run_id
    c.log_metric(partial, "loss_depth", 2.0, step=1)
    id_file.write_text(partial + "\n")

    first = mlflow_import.import_run(paths, run)
    assert first and first != partial and id_file.read_text().strip() == first
    assert c.get_run(partial).info.lifecycle_stage == "deleted"
    assert mlflow_import.import_run(paths, run) is None  # tracked: nothing new
    id_file.unlink()  # the id file is lost: the run is found by its run_id tag
    assert mlflow_import.import_run(paths, run) is None and id_file.read_text().strip() == first
    id_file.write_text("0" * 32 + "\n")  # an id of another store
    assert mlflow_import.import_run(paths, run) is None and id_file.read_text().strip() == first
    assert [r.info.run_id for r in runs_of_id()] == [first]
    # without given parents, the parent is looked up (and created) by tag
    parent = c.get_run(first).data.tags["mlflow.parentRunId"]
    assert c.get_run(parent).data.tags["mdeaux.kind"] == "runs"


def test_live_tracker_is_a_child_with_system_metrics_and_import_skips_it(paths, params):
    run = make_run(params)
    tags = tracking.run_tags(run, ROOT, extra={"device": "cpu"})
    tracker = tracking.Tracker(paths.mlflow_uri, "mini", run.label, tags, paths.mlflow_artifacts,
                               system_metrics_interval=tracking.sampling_interval(0.5))
    assert tracker.active and tracker.run_id
    tracker.params(run.config)
    for step in (1, 2, 3):
        tracker.metrics({"loss_depth": 1.0 / step, "loss_aux": float("nan")}, step=step)
    time.sleep(2.5)  # a couple of 1 s system-metrics samples
    d = finished_run_dir(paths, run, predictions=False)
    tracker.artifact(d / "config.json")
    tracker.summary({"final.abs_rel": 0.025}, step=20)
    tracker.mark_complete()
    tracker.finish()
    (d / "mlflow_run_id").write_text(tracker.run_id + "\n")

    c = client(paths.mlflow_uri)
    got = c.get_run(tracker.run_id)
    parent = c.get_run(got.data.tags["mlflow.parentRunId"])
    assert parent.info.run_name == "training runs"
    assert got.data.tags["mdeaux.source"] == "live" and got.data.tags["device"] == "cpu"
    assert "loss_aux" not in got.data.metrics  # nan is not logged
    system = [k for k in got.data.metrics if k.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system
    assert mlflow_import.import_run(paths, run) is None  # complete: not imported again
    assert tracking.sampling_interval(30) == 1.0 and tracking.sampling_interval(38400 * 0.089) == 30.0


def test_the_runs_of_a_cohort_are_tracked_side_by_side_in_one_process(paths, params):
    """A cohort trains several runs in one process: each has its own live MLflow run at the same time."""
    runs = [make_run(params), make_run(params, alpha=0.8)]
    trackers = [tracking.Tracker(paths.mlflow_uri, "mini", r.label, tracking.run_tags(r, ROOT, extra={"cohort": "c" * 16}),
                                 paths.mlflow_artifacts) for r in runs]
    assert all(t.active for t in trackers) and len({t.run_id for t in trackers}) == 2
    for step in (1, 2):
        for i, t in enumerate(trackers):
            t.metrics({"loss_depth": float(10 * i + step)}, step=step)
    for t in trackers:
        t.finish()
    c = client(paths.mlflow_uri)
    for i, t in enumerate(trackers):
        got = c.get_run(t.run_id)
        assert got.info.status == "FINISHED" and got.data.tags["cohort"] == "c" * 16
        assert [m.value for m in sorted(c.get_metric_history(t.run_id, "loss_depth"), key=lambda m: m.step)] == [10 * i + 1, 10 * i + 2]


def test_a_continued_run_does_not_log_its_steps_twice(paths, params):
    """Killed after step 5 with a checkpoint of step 3, a run trains steps 4 and 5 again: its MLflow run
    (continued) keeps one value per step."""
    run = make_run(params)
    tags = tracking.run_tags(run, ROOT)
    first = tracking.Tracker(paths.mlflow_uri, "mini", run.label, tags, paths.mlflow_artifacts)
    for step in range(1, 6):
        first.metrics({"loss_depth": 1.0 / step}, step=step)
    first.metrics({"test.abs_rel": 0.5}, step=4)
    first.finish("KILLED")
    again = tracking.Tracker(paths.mlflow_uri, "mini", run.label, tags, paths.mlflow_artifacts, run_id=first.run_id)
    assert again.resumed and again.run_id == first.run_id
    for step in range(4, 9):  # from the checkpoint at step 3
        again.metrics({"loss_depth": 2.0 / step}, step=step)
    again.metrics({"test.abs_rel": 0.4}, step=4)
    again.metrics({"test.abs_rel": 0.3}, step=8)
    again.summary({"final.abs_rel": 0.3}, step=8)
    again.finish()
    c = client(paths.mlflow_uri)
    loss = c.get_metric_history(first.run_id, "loss_depth")
    assert sorted(m.step for m in loss) == list(range(1, 9))
    assert [m.value for m in sorted(loss, key=lambda m: m.step)][5:] == pytest.approx([2 / 6, 2 / 7, 2 / 8])
    assert sorted(m.step for m in c.get_metric_history(first.run_id, "test.abs_rel")) == [4, 8]
    assert c.get_run(first.run_id).data.metrics["final.abs_rel"] == pytest.approx(0.3)


def test_a_moved_store_finds_its_artifacts(paths, params, tmp_path):
    """MLflow keeps artifact locations as absolute paths: a store copied elsewhere is pointed at its own
    mlartifacts/ when it is next opened."""
    import mlflow

    run = make_run(params)
    finished_run_dir(paths, run, predictions=False)
    rid = mlflow_import.import_run(paths, run)
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)
    shutil.rmtree(paths.mlflow_artifacts)  # nothing left at the old place
    there = Paths(moved)
    tracking.setup(there.mlflow_uri, "mini", there.mlflow_artifacts)
    exp = client(there.mlflow_uri).get_experiment_by_name("mdeaux-mini")
    assert exp.artifact_location == there.mlflow_artifacts.resolve().as_uri()
    assert client(there.mlflow_uri).get_run(rid).info.artifact_uri.startswith(there.mlflow_artifacts.resolve().as_uri())
    got = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="config.json", tracking_uri=there.mlflow_uri,
                                              dst_path=str(tmp_path / "download"))
    assert json.loads(Path(got).read_text())["id"] == run.id


def test_git_dirty_means_changed_code_or_params(tmp_path):
    """Outputs the pipeline rewrites (dvc.lock, reports/) do not make a run dirty; code and params do."""
    repo = tmp_path / "repo"
    for rel in ("src/mdeaux/x.py", "params.yaml", "dvc.lock", "reports/index.html"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("v1\n")
    env = clean_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, env=env, check=True)
    assert tracking.git_state(repo)["git_dirty"] == "false"
    (repo / "dvc.lock").write_text("v2\n")
    (repo / "reports" / "index.html").write_text("v2\n")
    assert tracking.git_state(repo)["git_dirty"] == "false"
    (repo / "params.yaml").write_text("v2\n")
    assert tracking.git_state(repo)["git_dirty"] == "true"


def test_unreachable_stores_degrade_to_warnings(tmp_path, params, caplog):
    run = make_run(params)
    (tmp_path / "a-file").write_text("not a folder")  # (tests run as root: a read-only folder would not stop it)
    bad = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    tracker = tracking.Tracker(bad, "mini", run.label, {"run_id": run.id}, system_metrics_interval=1.0)
    assert not tracker.active and tracker.run_id is None
    tracker.params(run.config)
    tracker.metrics({"loss_depth": 1.0}, step=1)
    tracker.mark_complete()
    tracker.finish()
    assert "could not start the MLflow run" in caplog.text

    class Store(Paths):
        mlflow_uri = bad

    assert tracking.prepare(Store(tmp_path), params) == {}
    finished_run_dir(Store(tmp_path), run, predictions=False)
    assert mlflow_import.import_done(Store(tmp_path), [run], {"fig1_alpha": "x"}) == {"imported": 0, "tracked": 0, "left": 1}


def test_a_corrupt_store_is_set_aside_and_the_finished_runs_go_into_a_new_one(paths, params, caplog):
    """Issue 13 #9: a corrupt mlflow.db is moved aside (kept) and `mdeaux train`'s import fills a new one,
    instead of a warning that promises an import that never comes."""
    run = make_run(params)
    finished_run_dir(paths, run, predictions=False)
    garbage = b"this is not an SQLite database " * 64
    paths.mlflow_db.write_bytes(garbage)
    parents = tracking.prepare(paths, params)
    assert parents, caplog.text
    assert (paths.mlflow_db.parent / "mlflow.db.corrupt").read_bytes() == garbage
    assert "not a readable database; moved it to" in caplog.text
    assert mlflow_import.import_done(paths, [run], parents)["imported"] == 1
    assert client(paths.mlflow_uri).search_runs([client(paths.mlflow_uri).get_experiment_by_name("mdeaux-mini").experiment_id],
                                                f"tags.run_id = '{run.id}'")
    assert tracking.set_aside_if_corrupt(paths.mlflow_uri) is None  # a sound store stays where it is


def test_a_dead_tracking_server_does_not_hold_a_run_back(tmp_path, params):
    """Issue 13 #9: with MLflow's own retry defaults the tracker waited about 4 minutes for a server that is
    down before training started; mdeaux's defaults give up within seconds (the environment still wins)."""
    code = (
        "import os, time\n"
        "from mdeaux.runs import tracking\n"
        "print(os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES'], os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT'])\n"
        f"t = tracking.Tracker('http://127.0.0.1:{free_port()}', 'mini', 'x', {{'run_id': 'x'}})\n"
        "print(t.active)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=90)
    assert out.stdout.split() == ["2", "20", "False"], out.stdout + out.stderr[-2000:]
    mine = subprocess.run([sys.executable, "-c", code.split("t = ")[0]], env=clean_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="5"),
                          capture_output=True, text=True, timeout=60)
    assert mine.stdout.split() == ["5", "20"]


# ------------------------------------------------------------------------------------------------
# a real training run without MLflow, then `mdeaux train` imports it
@pytest.mark.slow
def test_offline_run_keeps_its_metrics_and_train_imports_it(tiny_world, tmp_path, params):
    store = tmp_path / "store"
    out = mdeaux(["runs", "--write"], tiny_world, clean_env(MDEAUX_STORE=str(store))).stdout
    labels = {line.split()[0]: next(t for t in line.split() if "/" in t) for line in out.splitlines() if line.startswith("  ")}
    ids = {label.split("/")[1].split("+")[0]: rid for rid, label in labels.items()}
    assert set(ids) == {"baseline", "mldc", "segmentation", "reconstruction"}, out
    closed = free_port()  # nothing listens there: the tracker cannot connect
    env = clean_env(MDEAUX_STORE=str(store), MLFLOW_TRACKING_URI=f"http://127.0.0.1:{closed}",
                    MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    res = mdeaux(["run-one", ids["mldc"], "--no-progress"], tiny_world, env)
    trained = store / "runs" / ids["mldc"]
    assert "could not start the MLflow run" in res.stderr
    assert (trained / "metrics.json").is_file() and not (trained / "mlflow_run_id").exists()
    assert (trained / "curves.png").read_bytes()[:8] == PNG
    tags = json.loads((trained / "tags.json").read_text())
    assert tags["run_id"] == ids["mldc"] and tags["studies"] == "table3" and tags["processes"] == "1"

    # the other three runs are finished by hand (copies), so `mdeaux train` only collects
    for task, rid in ids.items():
        if task != "mldc":
            for name in ("metrics.json", "curves.csv", "evals.csv"):
                shutil.copy2(trained / name, store / "runs" / rid / name)
    env = clean_env(MDEAUX_STORE=str(store))
    res = mdeaux(["train"], tiny_world, env)
    assert "4 run(s) imported, 0 already tracked" in res.stderr, res.stderr[-3000:]
    res = mdeaux(["train"], tiny_world, env)
    assert "0 run(s) imported, 4 already tracked" in res.stderr, res.stderr[-3000:]

    c = client(f"sqlite:///{store / 'mlflow.db'}")
    exp = c.get_experiment_by_name("mdeaux-mini").experiment_id
    parent = c.search_runs([exp], "tags.`mdeaux.kind` = 'study'")
    assert [p.data.tags["mdeaux.study"] for p in parent] == ["table3"]
    assert parent[0].data.params["tasks"] == "['baseline', 'mldc', 'segmentation', 'reconstruction']"  # the study's axes
    cells = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")  # one per run of the study
    assert sorted(r.data.tags["mdeaux.run"] for r in cells) == sorted(ids.values())
    container = c.search_runs([exp], "tags.`mdeaux.kind` = 'runs'")[0]
    children = c.search_runs([exp], f"tags.mlflow.parentRunId = '{container.info.run_id}'")
    assert sorted(r.data.tags["run_id"] for r in children) == sorted(ids.values())
    mine = c.get_run((trained / "mlflow_run_id").read_text().strip())
    evals = list(csv.DictReader(open(trained / "evals.csv")))
    assert [m.step for m in c.get_metric_history(mine.info.run_id, "test.abs_rel")] == [int(r["step"]) for r in evals]
    assert mine.data.tags["processes"] == "1" and mine.data.tags["task"] == "mldc"  # the tags of training time
    assert mine.data.metrics["final.abs_rel"] == pytest.approx(json.loads((trained / "metrics.json").read_text())["final"]["abs_rel"])
    plots = {a.path for a in c.list_artifacts(mine.info.run_id, "plots")}
    assert "plots/curves.png" in plots
    if (trained / "predictions.npz").is_file():  # train.py saves runner.save_predictions test images
        assert "plots/predictions.png" in plots


# ------------------------------------------------------------------------------------------------
# a tracking server
@pytest.mark.slow
def test_tracking_server_uri_works(tmp_path, params, monkeypatch):
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 120  # mlflow is installed with the project: a server that does not start is a failure
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > end:
                pytest.fail(f"mlflow server did not start within 120 s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        uri = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        store = Paths(tmp_path / "project")
        assert store.mlflow_uri == uri

        live = make_run(params, seed=3)
        tracker = tracking.Tracker(uri, "mini", live.label, tracking.run_tags(live, ROOT), store.mlflow_artifacts,
                                   system_metrics_interval=1.0)
        assert tracker.active
        tracker.params(live.config)
        tracker.metrics({"loss_depth": 0.5}, step=1)
        d = finished_run_dir(store, live, predictions=False)
        tracker.artifact(d / "config.json")
        tracker.mark_complete()
        tracker.finish()

        offline = make_run(params, seed=4)
        finished_run_dir(store, offline)
        imported = mlflow_import.import_run(store, offline)
        assert imported and mlflow_import.import_run(store, offline) is None
        (RunStore(store.runs)[offline.id].path / "mlflow_run_id").write_text("0" * 32 + "\n")  # unknown to the server: found by tag
        assert mlflow_import.import_run(store, offline) is None
        assert (RunStore(store.runs)[offline.id].path / "mlflow_run_id").read_text().strip() == imported

        c = client(uri)
        exp = c.get_experiment_by_name("mdeaux-mini")
        assert exp.artifact_location.startswith("mlflow-artifacts:")  # the server stores the artifacts
        found = c.search_runs([exp.experiment_id], "params.seed = '4' and tags.`mdeaux.source` = 'import'")
        assert [r.info.run_id for r in found] == [imported]
        live_run = c.get_run(tracker.run_id)
        assert live_run.data.tags["mlflow.parentRunId"] == found[0].data.tags["mlflow.parentRunId"]
        assert "config.json" in {a.path for a in c.list_artifacts(tracker.run_id)}
        assert {a.path for a in c.list_artifacts(imported, "plots")} == {"plots/curves.png", "plots/predictions.png"}
        assert any((tmp_path / "server-artifacts").rglob("predictions.png"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
