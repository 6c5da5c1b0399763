"""Exact resume and multi-process training on real training processes (CPU, tiny world).

A run killed at any point (SIGKILL) or preempted (SIGTERM, as SLURM does) and started again ends with
exactly the metrics and curves of an uninterrupted run; two torchrun processes (gloo) reproduce the
single-process run with the same global batch.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, clean_env, mdeaux

pytestmark = pytest.mark.slow


def plan(world: Path, store: Path) -> str:
    """Plan the runs into ``store``; the id of the MLDC run."""
    out = mdeaux(["runs", "--write"], world, clean_env(MDEAUX_STORE=str(store))).stdout
    ids = [line.split()[0] for line in out.splitlines() if "/mldc+" in line]
    assert len(ids) == 1, out
    return ids[0]


def start(world: Path, store: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mdeaux", "run-one", run_id, "--no-progress"], cwd=world,
                            env=clean_env(MDEAUX_STORE=str(store)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < end, f"no {path} after {timeout} s"
        time.sleep(0.02)


def outputs(store: Path, run_id: str) -> dict:
    run = store / "runs" / run_id
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "curves": (run / "curves.csv").read_text(),
        "evals": (run / "evals.csv").read_text(),
        "best": metrics["best"],
        "final": metrics["final"],
    }


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory):
    store = tmp_path_factory.mktemp("uninterrupted")
    run_id = plan(tiny_world, store)
    mdeaux(["run-one", run_id, "--no-progress"], tiny_world, clean_env(MDEAUX_STORE=str(store)))
    assert not (store / "runs" / run_id / "checkpoint.pt").exists()  # removed once the run is done
    return run_id, outputs(store, run_id)


def test_killed_run_resumes_to_identical_metrics(tiny_world, reference, tmp_path):
    run_id, expected = reference
    assert plan(tiny_world, tmp_path) == run_id
    ckpt = tmp_path / "runs" / run_id / "checkpoint.pt"
    proc = start(tiny_world, tmp_path, run_id)
    wait_for(ckpt, proc)
    proc.kill()  # SIGKILL: no handler runs, whatever the process was doing
    proc.wait()
    state = torch.load(ckpt, weights_only=True)
    assert state["run_id"] == run_id and state["next_step"] % 3 == 0 and 0 < state["next_step"] < 12
    assert set(state) >= {"model", "opt_depth", "opt_aux", "rng", "curves", "evals"}
    assert not any(k.startswith("backbone.") for k in state["model"])
    out = mdeaux(["run-one", run_id, "--no-progress"], tiny_world, clean_env(MDEAUX_STORE=str(tmp_path)))
    assert "resuming from" in out.stderr
    assert outputs(tmp_path, run_id) == expected
    # the MLflow run was continued, and the steps trained again after the checkpoint were not logged twice
    from mlflow import MlflowClient

    mlrun = (tmp_path / "runs" / run_id / "mlflow_run_id").read_text().strip()
    steps = [m.step for m in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(mlrun, "loss_depth")]
    assert sorted(steps) == list(range(1, 13))


def test_sigterm_writes_a_checkpoint_and_exits_143_then_resumes(tiny_world, reference, tmp_path):
    run_id, expected = reference
    plan(tiny_world, tmp_path)
    run_dir = tmp_path / "runs" / run_id
    proc = start(tiny_world, tmp_path, run_id)
    wait_for(run_dir / "checkpoint.pt", proc)
    first = torch.load(run_dir / "checkpoint.pt", weights_only=True)["next_step"]
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, log[-3000:]
    assert "run the same command again to resume" in log
    stopped = torch.load(run_dir / "checkpoint.pt", weights_only=True)["next_step"]
    assert first <= stopped < 12
    assert not (run_dir / "metrics.json").exists()
    mdeaux(["run-one", run_id, "--no-progress"], tiny_world, clean_env(MDEAUX_STORE=str(tmp_path)))
    assert outputs(tmp_path, run_id) == expected


def test_two_processes_reproduce_the_single_process_run(tiny_world, reference, tmp_path):
    run_id, expected = reference
    plan(tiny_world, tmp_path)
    out = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "mdeaux", "run-one", run_id, "--no-progress"],
        cwd=tiny_world, env=clean_env(MDEAUX_STORE=str(tmp_path), OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    got = json.loads((tmp_path / "runs" / run_id / "metrics.json").read_text())
    assert got["processes"] == 2
    for kind in ("best", "final"):
        for name, value in expected[kind].items():
            assert got[kind][name] == pytest.approx(value, rel=1e-4, abs=1e-6), (kind, name)
    curves = [line.split(",") for line in (tmp_path / "runs" / run_id / "curves.csv").read_text().splitlines()]
    ref = [line.split(",") for line in expected["curves"].splitlines()]
    assert curves[0] == ref[0]
    for a, b in zip(curves[1:], ref[1:], strict=True):
        assert [float(v) for v in a] == pytest.approx([float(v) for v in b], rel=1e-4, abs=1e-7)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_world, reference, tmp_path, monkeypatch):
    from mdeaux.paths import Paths
    from mdeaux.runs.plan import load_run
    from mdeaux.runs.store import RunDir, RunStore
    from mdeaux.training.loop import train_run
    from mdeaux.training.scheme import NonFiniteLoss, Trainer

    run_id, _ = reference
    plan(tiny_world, tmp_path)
    monkeypatch.setenv("MDEAUX_STORE", str(tmp_path))
    paths = Paths(tiny_world)
    real_step = Trainer.step_on

    def poisoned(self, it, depth, aux):
        if it == 7:  # the 8th step's depth loss is nan (the checkpoint of step 6 exists)
            feats, y = depth
            depth = ([(patches * float("nan"), cls) for patches, cls in feats], y)
        return real_step(self, it, depth, aux)

    monkeypatch.setattr(Trainer, "step_on", poisoned)
    folder = RunStore(paths.runs)[run_id]
    run = load_run(folder)
    with pytest.raises(NonFiniteLoss, match=r"depth loss is nan at iteration 7.*last good checkpoint .*step 6\) is kept"):
        train_run(run.config, run.id, paths, folder / RunDir.CHECKPOINT, progress=False)
    assert torch.load(folder / RunDir.CHECKPOINT, weights_only=True)["next_step"] == 6
    assert not folder.done


def test_a_full_disk_at_a_checkpoint_names_the_file_and_what_to_do(tiny_world, tmp_path):
    """Issue 13 #8: a checkpoint that cannot be written (here: the file size limit stands for a full
    disk, so writes fail with EFBIG as they would with ENOSPC) stops the run with the file and the fix,
    not torch's "[enforce fail at inline_container.cc]", and leaves no temporary file."""
    import resource

    run_id = plan(tiny_world, tmp_path)

    def small_files():  # the run's small files fit; its first checkpoint (decoder, heads, 2 x AdamW) does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    out = subprocess.run([sys.executable, "-m", "mdeaux", "run-one", run_id, "--no-progress"], cwd=tiny_world,
                         env=clean_env(MDEAUX_STORE=str(tmp_path)), capture_output=True, text=True, timeout=600,
                         preexec_fn=small_files)
    checkpoint = tmp_path / "runs" / run_id / "checkpoint.pt"
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert f"{checkpoint}: could not write the checkpoint" in last and "free space on its disk" in last, last
    assert "Traceback" not in out.stderr
    assert not checkpoint.exists() and not list(checkpoint.parent.glob(".*.tmp"))


def test_a_signal_while_the_results_are_written_loses_nothing(tiny_world, tmp_path):
    """Issue 13 #1: SIGTERM (a preemption, `scancel`) after the training loop, while the run's files are
    being written, killed the process with the results half-written. Now the results are completed first;
    and temporaries that a writer killed mid-write left in the run's folder are removed."""
    store = tmp_path / "store"
    run_id = plan(tiny_world, store)
    folder = store / "runs" / run_id
    stale = folder / ".predictions.npz.x1y2z3.tmp"  # what a writer killed mid-write leaves
    stale.write_bytes(b"half")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # a real SIGTERM to the real process as it starts writing the results
        "import os, signal\n"
        "import mdeaux.runs.execute as execute\n"
        "real = execute.write_result\n"
        "def write_result(folder, result):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    real(folder, result)\n"
        "execute.write_result = write_result\n"
    )
    env = clean_env(MDEAUX_STORE=str(store))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-m", "mdeaux", "run-one", run_id, "--no-progress"], cwd=tiny_world, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "signal 15 arrived while the finished runs' results were written" in out.stderr
    assert json.loads((folder / "metrics.json").read_text())["best"]["abs_rel"] > 0
    assert (folder / "predictions.npz").is_file() and not (folder / "checkpoint.pt").exists()
    assert not list(folder.glob(".*.tmp"))
