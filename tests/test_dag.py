"""The whole DAG on the smoke world (pipeline/smoke.yaml), in a fresh copy of the repository.

Covers: every stage runs; the same DAG run by `make smoke` in another folder (sharing the run store, so
the grid trains once) gives the same dvc.lock and reports/ byte for byte; a second `dvc repro` reruns nothing; `dvc exp run -S alpha=0.8` trains only
the alpha-dependent runs and reuses the baselines; MLflow holds the runs with their params.
"""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import browser
import pytest
import yaml
from conftest import smoke_params

from mdeaux.model.weights import verify_folder

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, cwd, env, check=True):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


# the search the README shows (tests/test_readme.py checks it is the README's)
README_MLFLOW_SEARCH = "tags.studies LIKE '%table3%' and params.alpha = '0.9'"


def copy_repo(dest: Path) -> dict:
    """A git repository at ``dest`` holding what this checkout tracks (no dvc.lock, no reports/: a fresh
    run makes them); the environment to run DVC in it."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(("reports/", "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    # PYTHONDONTWRITEBYTECODE dropped: byte code written during the run must not make DVC rerun stages
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_", "MDEAUX_", "PYTHONDONTWRITEBYTECODE"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="False",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    sh(["git", "init", "-q"], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "copy"], dest, env)
    (dest / "data" / "manual").mkdir(parents=True)
    return env


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dest = tmp_path_factory.mktemp("dag") / "repo"
    env = copy_repo(dest)
    (dest / "params.yaml").write_text(yaml.safe_dump(smoke_params(), sort_keys=False))  # the smoke world
    sh(["git", "commit", "-qam", "the smoke world"], dest, env)
    return dest, env


def tracked_outputs(root: Path) -> dict[str, bytes]:
    """What git keeps of a DAG's results: dvc.lock and every file under reports/."""
    return {"dvc.lock": (root / "dvc.lock").read_bytes(),
            **{p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}}


# the whole DAG twice plus experiments: minutes on a busy 2-core machine; the global 900 s timeout is for hangs
@pytest.mark.timeout(3600)
def test_whole_dag_then_nothing_to_do_then_alpha_experiment(repo):
    dest, env = repo
    sh(["dvc", "repro"], dest, env)
    # the same DAG in another folder, as `make smoke` runs it (a DVC experiment setting pipeline/smoke.yaml
    # with -S): dvc.lock and reports/ come out byte for byte the same (no paths, times or random ids). It
    # shares this folder's run store (MDEAUX_STORE, as teammates on one disk do), so the grid trains once:
    # that a run trained again gives the same files bit for bit is tests/test_cohort.py's (alone vs cohort)
    other = dest.parent.parent / "elsewhere" / "another-name"
    other_env = dict(copy_repo(other), MDEAUX_STORE=str(dest))
    sh(["mdeaux", "smoke"], other, other_env)
    mine, theirs = tracked_outputs(dest), tracked_outputs(other)
    assert sorted(mine) == sorted(theirs)
    assert [name for name in mine if mine[name] != theirs[name]] == []
    shutil.rmtree(other)
    sh(["mdeaux", "report"], dest, env)  # the report stage alone writes the same reports/
    assert tracked_outputs(dest) == mine
    cost = sh(["mdeaux", "runs", "--cost"], dest, env).stdout
    assert "GPU hours" in cost and "all studies" in cost
    for out in ("data/mirror/nyuv2/nyu.zip", "data/mirror/ade20k/SHA256SUMS", "data/raw/nyuv2/FETCHED.json",
                "data/prepared/ade20k/manifest.json", "reports/validation/nyuv2/index.html", "data/splits/nyuv2.json",
                "results/train.json", "reports/tables/table3.md", "reports/metrics.json", "reports/figures/fig5_beta.svg"):
        assert (dest / out).is_file(), out
    train = json.loads((dest / "results/train.json").read_text())
    planned = sh([str(BIN / "mdeaux"), "runs"], dest, env).stdout
    n_runs = int(planned.split()[0])
    assert len(train["runs"]) == n_runs == 11  # every study, one value per axis
    assert "train_seconds" not in json.dumps(train)  # a DVC output: no timings
    assert {s for r in train["runs"] for s in r["studies"]} == set(yaml.safe_load((dest / "params.yaml").read_text())["studies"])
    for run in train["runs"]:
        run_dir = dest / "runs" / run["id"]
        assert {"config.json", "metrics.json", "curves.csv", "evals.csv", "predictions.npz"} <= {p.name for p in run_dir.iterdir()}
        assert not (run_dir / "checkpoint.pt").exists()
        # paper Eq. 1: a run's best is its lowest evaluated AbsRel, and train.json carries metrics.json's numbers
        evals = list(csv.DictReader((run_dir / "evals.csv").open()))
        assert len(evals) >= 1 and run["metrics"]["best"]["abs_rel"] == min(float(e["abs_rel"]) for e in evals) > 0
        assert run["metrics"]["best"] == json.loads((run_dir / "metrics.json").read_text())["best"]
    metrics = json.loads((dest / "reports/metrics.json").read_text())
    assert set(metrics["table3"]["rows"]["nyuv2"]) >= {
        "baseline_abs_rel_x1e4", "mldc_abs_rel_x1e4", "segmentation_abs_rel_x1e4", "reconstruction_abs_rel_x1e4", "gain_pct"
    }  # fmt: skip
    table = (dest / "reports/tables/table3.md").read_text()
    (baseline,) = [r for r in train["runs"] if "table3" in r["studies"] and r["config"]["task"] == "baseline"
                   and r["config"]["depth_dataset"] == "nyuv2"]  # one seed in the smoke world: no standard error
    ours = baseline["metrics"]["best"]["abs_rel"] * 1e4
    # its frozen backbone is the tiny ViT the pretrain stage wrote, loaded from its folder (model/pretrain.py)
    assert baseline["config"]["model"]["weights_dir"] == "models/tiny-pretrained"
    assert verify_folder(dest / "models/tiny-pretrained") == [] and "weights" in baseline["inputs"]
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|")]
    nyu = next(r for r in rows if r[0] == "NYUv2")
    mark = "†" if baseline["label"] in metrics["not_learned"] else ""  # the learning check's mark (below)
    assert nyu[header.index("DINOv2 (ours)")].removesuffix(mark).strip("*_") == f"{ours:.0f}" and "not comparable" in table
    assert metrics["table3"]["rows"]["nyuv2"]["baseline_abs_rel_x1e4"] == pytest.approx(ours, abs=0.005)  # 2 decimals
    # beside it the reference predictor (the reference stage), and the learning check over every run
    reference = json.loads((dest / "results/reference.json").read_text())
    assert nyu[header.index("Constant (median depth)")] == f"{reference['nyuv2']['metrics']['abs_rel'] * 1e4:.0f}"
    below = yaml.safe_load((dest / "params.yaml").read_text())["report"]["learned_below"]
    assert metrics["not_learned"] == sorted(r["label"] for r in train["runs"] if r["metrics"]["best"]["abs_rel"]
                                            >= below * reference[r["config"]["depth_dataset"]]["metrics"]["abs_rel"])
    if browser.required():  # every table, figure and link of the real DAG's page (tests/test_report.py also)
        found = browser.check_index(dest / "reports", dest.parent / "index.png")
        assert len(found["images"]) == 6 and all(w > 100 for _, w, _ in found["images"])
        assert all(status in (200, "external") for _, status, _ in found["links"]), found["links"]
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], dest, env).stdout)["data"]
    assert {"reports/curves/loss_depth/table3.csv", "reports/curves/abs_rel/fig1_alpha.csv"} <= set(plots)
    # `dvc plots show` writes a page that draws offline (pipeline/plots/offline.html inlines Vega)
    sh(["dvc", "plots", "show"], dest, env)
    page = dest / "dvc_plots" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text() and not re.search(r'src="https?://', page.read_text())
    if browser.required():
        dom = browser.rendered_dom(page)
        assert dom.count('class="marks"') == 2 * len(yaml.safe_load((dest / "params.yaml").read_text())["studies"])

    status = sh(["dvc", "status"], dest, env).stdout
    assert "Data and pipelines are up to date" in status, status
    second = sh(["dvc", "repro"], dest, env).stdout
    assert "Running stage" not in second, second

    # a teammate: `make push` here, then a clone that pulls data, results and runs instead of recomputing
    # (what `make push` and `make pull` run; make itself would build a .venv in these copies)
    sh(["dvc", "remote", "add", "-d", "team", str(dest.parent / "team-remote")], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "results and the team's remote"], dest, env)
    sh(["dvc", "push"], dest, env)
    sh(["mdeaux", "store", "push"], dest, env)
    mate = dest.parent / "teammate"
    sh(["git", "clone", "-q", str(dest), str(mate)], dest.parent, env)
    (mate / "data" / "manual").mkdir(parents=True)
    sh(["dvc", "pull"], mate, env)
    sh(["mdeaux", "store", "pull"], mate, env)
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], mate, env).stdout
    assert f"{n_runs} run(s) planned, {n_runs} done, 0 missing" in sh(["mdeaux", "runs"], mate, env).stdout
    rebuilt = sh(["mdeaux", "train"], mate, env).stderr  # trains nothing, fills the teammate's MLflow
    assert "0 to train" in rebuilt and f"{n_runs} run(s) imported" in rebuilt, rebuilt[-2000:]
    assert tracked_outputs(mate) == tracked_outputs(dest)
    shutil.rmtree(mate)

    # MLflow: one experiment, every run, every resolved config value as a param
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{dest / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["mdeaux-mini"], output_format="list")
    trained_runs = [r for r in found if r.data.tags.get("run_id")]
    assert len(trained_runs) == n_runs
    assert {r.data.params.get("alpha") for r in trained_runs} == {"1.0", "0.9", None}  # None: the beta variant
    assert all("test.abs_rel" in r.data.metrics for r in trained_runs)
    assert {r.data.params["lr_factor.aux"] for r in trained_runs} == {"0", "0.1", "0.2"}  # baseline, alpha 0.9, beta 0.2
    search = (f"import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); print(mlflow.search_runs("
              f"experiment_names=['mdeaux-mini'], filter_string=\"{README_MLFLOW_SEARCH}\"))")
    found = sh([sys.executable, "-c", search], dest, env).stdout
    assert "Empty DataFrame" not in found and "[3 rows" in found  # Table 3's MLDC, segmentation, reconstruction
    # each study's parent holds one cell per run it uses; its metrics are the study's results
    cells = mlflow.search_runs(experiment_names=["mdeaux-mini"], output_format="list", filter_string="tags.`mdeaux.kind` = 'cell'")
    assert len(cells) == sum(len(r["studies"]) for r in train["runs"])
    table3 = mlflow.search_runs(experiment_names=["mdeaux-mini"], output_format="list",
                                filter_string="tags.`mdeaux.study` = 'table3' and tags.`mdeaux.kind` = 'study'")[0]
    assert table3.data.metrics["mean_gain_pct"] == json.loads((dest / "reports/metrics.json").read_text())["gain"]["table3"]

    # (the results are committed above, with the team's remote)
    before = {p.parent.name for p in (dest / "runs").glob("*/metrics.json")}
    sh(["dvc", "exp", "run", "-S", "alpha=0.8"], dest, env)
    shown = sh(["dvc", "exp", "show", "--drop", ".*", "--keep", r"Experiment|alpha|gain\.", "--no-pager"], dest,
               dict(env, COLUMNS="120")).stdout
    assert "gain.table3" in shown and "0.8" in shown and "…" not in shown, shown  # every column fits
    assert "alpha" in sh(["dvc", "exp", "diff"], dest, env).stdout
    sh(["dvc", "plots", "diff", "HEAD"], dest, env)  # this experiment's curves over the committed ones
    assert "cdn.jsdelivr" not in (dest / "dvc_plots" / "index.html").read_text()
    exp = json.loads((dest / "results/train.json").read_text())
    trained = {p.parent.name for p in (dest / "runs").glob("*/metrics.json")} - before
    # exactly the alpha-dependent runs are trained: auxiliary-task runs whose alpha is the top-level one
    dependent = {r["id"] for r in exp["runs"] if r["config"]["alpha"] == 0.8}
    assert trained == dependent and len(trained) > 0
    assert {r["id"] for r in exp["runs"]} - dependent <= before  # every other run reused

    # queued experiments, two at a time: they train in temporary copies but write to this repository's
    # run store and MLflow database (DVC_ROOT), tagged with their experiment names
    sh(["git", "checkout", "params.yaml"], dest, env)
    for gamma in ("3.0", "4.0"):
        sh(["dvc", "exp", "run", "--queue", "-n", f"gamma{gamma[0]}", "-S", f"studies.fig5_gamma.gamma.mini=[1.0,{gamma}]"], dest, env)
    sh(["dvc", "queue", "start", "-j", "2"], dest, env)
    deadline = time.monotonic() + 900
    while "Queued" in (status := sh(["dvc", "queue", "status"], dest, env).stdout) or "Running" in status:
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    queued = mlflow.search_runs(experiment_names=["mdeaux-mini"], output_format="list",
                                filter_string="tags.dvc_exp_name LIKE 'gamma%'")
    assert {r.data.tags["dvc_exp_name"] for r in queued} == {"gamma3", "gamma4"}
    assert {r.data.params["gamma"] for r in queued} == {"3.0", "4.0"}
    assert all((dest / "runs" / r.data.tags["run_id"] / "metrics.json").is_file() for r in queued)

    # `make ui`: the MLflow UI on params.yaml's report.mlflow_ui (here a free port), on this store
    port = free_port()
    raw = yaml.safe_load((dest / "params.yaml").read_text())
    raw["report"]["mlflow_ui"] = f"http://127.0.0.1:{port}"
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ui = subprocess.Popen(["mdeaux", "ui"], cwd=dest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as res:
                    if res.status == 200:
                        break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, ui.stdout.read() if ui.poll() is not None else "no UI"
                time.sleep(1)
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mdeaux-mini"
        with urllib.request.urlopen(api, timeout=10) as res:
            assert json.loads(res.read())["experiment"]["name"] == "mdeaux-mini"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
