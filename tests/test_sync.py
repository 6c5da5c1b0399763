"""`mdeaux store push|pull`: finished runs travel through the project's DVC remote (a local folder here)."""

import json
import shutil
import subprocess

import pytest
from conftest import clean_env, mdeaux

from mdeaux.runs.store import RunDir

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="needs dvc on PATH (make test puts .venv/bin there)")


def project(path, remote):
    """A git + DVC repository whose default DVC remote is ``remote``."""
    path.mkdir()
    env = clean_env()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=path, check=True, env=env)
    subprocess.run(["dvc", "remote", "add", "-d", "team", str(remote)], cwd=path, check=True, env=env)
    (path / "params.yaml").write_text("profile: mini\n")
    return path


def finished(root, run_id, value, done=True):
    folder = root / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / RunDir.CONFIG).write_text(json.dumps({"id": run_id}))
    (folder / RunDir.CURVES).write_text(f"step,loss_depth\n1,{value}\n")
    (folder / RunDir.CHECKPOINT).write_bytes(b"ckpt")  # never shared
    (folder / RunDir.MLFLOW_ID).write_text("f" * 32)  # an id of this store's MLflow: never shared
    if done:
        (folder / RunDir.METRICS).write_text(json.dumps({"best": {"abs_rel": value}}))


def test_finished_runs_travel_once_and_only_finished(tmp_path):
    remote = tmp_path / "remote"
    mine, theirs = project(tmp_path / "mine", remote), project(tmp_path / "theirs", remote)
    finished(mine, "a" * 16, 0.5)
    finished(mine, "b" * 16, 0.6)
    finished(mine, "c" * 16, 0.7, done=False)  # still training: stays here
    finished(theirs, "b" * 16, 0.6, done=False)  # planned there, finished here: replaced by the finished one

    assert "pushed 2 run(s)" in mdeaux(["store", "push"], mine).stderr
    assert "pushed 0 run(s)" in mdeaux(["store", "push"], mine).stderr  # each once
    assert sorted(p.name for p in (remote / "mdeaux-runs").iterdir()) == ["a" * 16, "b" * 16]
    assert "pulled 2 run(s)" in mdeaux(["store", "pull"], theirs).stderr
    for run_id in ("a" * 16, "b" * 16):
        got, sent = theirs / "runs" / run_id, mine / "runs" / run_id
        assert (got / RunDir.METRICS).read_text() == (sent / RunDir.METRICS).read_text()
        assert (got / RunDir.CURVES).read_text() == (sent / RunDir.CURVES).read_text()
        assert not (got / RunDir.CHECKPOINT).exists() and not (got / RunDir.MLFLOW_ID).exists()
    assert not (theirs / "runs" / ("c" * 16)).exists()
    assert "pulled 0 run(s)" in mdeaux(["store", "pull"], theirs).stderr


def test_no_remote_says_how_to_add_one(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env=clean_env())
    (root / "params.yaml").write_text("profile: mini\n")
    out = mdeaux(["store", "push"], root, check=False)
    assert out.returncode == 1 and "dvc remote add -d" in out.stderr
