"""The whole DAG on the smoke world (pipeline/smoke.yaml), in a fresh copy of the repository.

Covers: every stage runs; a second `dvc repro` reruns nothing; `dvc exp run -S alpha=0.8` trains only
the alpha-dependent runs and reuses the baselines; MLflow holds the runs with their params.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import browser
import pytest
import yaml
from conftest import smoke_params

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def sh(cmd, cwd, env, check=True):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dest = tmp_path_factory.mktemp("dag") / "repo"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(("reports/", "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(smoke_params(), sort_keys=False))  # the smoke world
    # PYTHONDONTWRITEBYTECODE dropped: byte code written during the run must not make DVC rerun stages
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_", "MDEAUX_", "PYTHONDONTWRITEBYTECODE"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="False",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    sh(["git", "init", "-q"], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "copy"], dest, env)
    (dest / "data" / "manual").mkdir(parents=True)
    return dest, env


def test_whole_dag_then_nothing_to_do_then_alpha_experiment(repo):
    dest, env = repo
    sh(["dvc", "repro"], dest, env)
    for out in ("data/mirror/nyuv2/nyu.zip", "data/mirror/ade20k/SHA256SUMS", "data/raw/nyuv2/FETCHED.json",
                "data/prepared/ade20k/manifest.json", "reports/validation/nyuv2/index.html", "data/splits/nyuv2.json",
                "results/train.json", "reports/tables/table3.md", "reports/metrics.json", "reports/figures/fig5_beta.svg"):
        assert (dest / out).is_file(), out
    train = json.loads((dest / "results/train.json").read_text())
    planned = sh([str(BIN / "mdeaux"), "runs"], dest, env).stdout
    n_runs = int(planned.split()[0])
    assert len(train["runs"]) == n_runs == len(train["trained"]) == 11  # every study, one value per axis
    assert {s for r in train["runs"] for s in r["studies"]} == set(yaml.safe_load((dest / "params.yaml").read_text())["studies"])
    for run in train["runs"]:
        run_dir = dest / "runs" / run["id"]
        assert {"config.json", "metrics.json", "curves.csv", "evals.csv", "predictions.npz"} <= {p.name for p in run_dir.iterdir()}
        assert not (run_dir / "checkpoint.pt").exists()
        assert 0 < run["metrics"]["best"]["abs_rel"] < 10
    metrics = json.loads((dest / "reports/metrics.json").read_text())
    assert set(metrics["table3"]["rows"]["nyuv2"]) >= {
        "baseline_abs_rel_x1e4", "mldc_abs_rel_x1e4", "segmentation_abs_rel_x1e4", "reconstruction_abs_rel_x1e4", "gain_pct"
    }  # fmt: skip
    table = (dest / "reports/tables/table3.md").read_text()
    assert "NYUv2" in table and "809 ± 10" in table and "not comparable" in table
    if browser.required():  # every table, figure and link of the real DAG's page (tests/test_report.py also)
        found = browser.check_index(dest / "reports", dest.parent / "index.png")
        assert len(found["images"]) == 6 and all(w > 100 for _, w, _ in found["images"])
        assert all(status in (200, "external") for _, status, _ in found["links"]), found["links"]
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], dest, env).stdout)["data"]
    assert {"reports/curves/loss_depth/table3.csv", "reports/curves/abs_rel/fig1_alpha.csv"} <= set(plots)

    status = sh(["dvc", "status"], dest, env).stdout
    assert "Data and pipelines are up to date" in status, status
    second = sh(["dvc", "repro"], dest, env).stdout
    assert "Running stage" not in second, second

    # MLflow: one experiment, every run, every resolved config value as a param
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{dest / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["mdeaux-mini"], output_format="list")
    trained_runs = [r for r in found if r.data.tags.get("run_id")]
    assert len(trained_runs) == n_runs
    assert {r.data.params.get("alpha") for r in trained_runs} == {"1.0", "0.9", None}  # None: the beta variant
    assert all("test.abs_rel" in r.data.metrics for r in trained_runs)

    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "baseline results"], dest, env)
    sh(["dvc", "exp", "run", "-S", "alpha=0.8"], dest, env)
    exp = json.loads((dest / "results/train.json").read_text())
    trained = {r["id"]: r for r in exp["runs"] if r["id"] in exp["trained"]}
    # exactly the alpha-dependent runs are trained: auxiliary-task runs whose alpha is the top-level one
    dependent = [r for r in exp["runs"] if r["config"]["alpha"] == 0.8]
    assert set(trained) == {r["id"] for r in dependent} and len(trained) > 0
    assert len(exp["reused"]) == len(exp["runs"]) - len(trained)
    assert all(r["config"]["task"] == "baseline" or r["config"]["alpha"] != 0.8 for r in exp["runs"] if r["id"] in exp["reused"])

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
