"""`mdeaux train --profile slurm` on a real one-node SLURM cluster (.ci/slurm-up; CI starts one and sets
MDEAUX_REQUIRE_SLURM=1, so these tests fail there instead of skipping when the cluster is missing).

Each test trains the tiny world's NYUv2 baseline through Snakemake's SLURM executor with real sbatch
jobs and compares the run's metrics with the same run trained locally, without interruption: a job
asks for params.yaml runner.slurm's resources; a job preempted with `scontrol requeue` resumes from its
checkpoint; a job at its time limit gets the pre-limit signal, writes its checkpoint and finishes after
Snakemake resubmits it; a job that fails is reported with its log. The cluster has no accounting
database, so the profile asks `squeue` for job states (docs/slurm.md, "Clusters without sacct").
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, clean_env, mdeaux
from test_snakemake import project

TRAIN = {"iterations": {"mini": 60}, "checkpoint_every": {"mini": 3}, "eval_every": {"mini": 30}}
SLURM = {"gpus": 0, "cpus_per_task": 1, "mem_mb": 1500, "runtime_min": 20, "requeue": True, "signal_seconds": 30}


def cluster() -> None:
    """Skip (or, with MDEAUX_REQUIRE_SLURM=1, fail) unless a SLURM cluster answers with an idle node."""
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        states = []
    if "idle" in states or "mixed" in states:
        return
    message = "no SLURM cluster with an idle node (`sinfo`); start one with .ci/slurm-up (Debian/Ubuntu, root)"
    if os.environ.get("MDEAUX_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory):
    """The baseline trained locally without interruption: its run id and metrics."""
    cluster()
    base = tmp_path_factory.mktemp("slurm-ref")
    root = project(tiny_world, base / "proj", train=TRAIN, tasks=["baseline"], **SLURM)
    mdeaux(["train"], root, clean_env(MDEAUX_STORE=str(base / "store")))
    (run,) = json.loads((root / "results" / "train.json").read_text())["runs"]
    return run["id"], numbers(base / "store" / "runs" / run["id"])


def numbers(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: metrics[k] for k in ("best", "best_step", "final", "iterations")}


def slurm_project(tiny_world, where: Path, slurm: dict | None = None, **settings) -> tuple[Path, Path, dict]:
    """A project whose jobs ask for ``slurm`` (over SLURM), its profile folder (pipeline/profiles/slurm plus
    ``settings``) and the environment of `mdeaux train` (its own run store)."""
    root = project(tiny_world, where / "proj", train=TRAIN, tasks=["baseline"], **{**SLURM, **(slurm or {})})
    profile = where / "profile"
    profile.mkdir()
    config = yaml.safe_load((ROOT / "pipeline" / "profiles" / "slurm" / "config.yaml").read_text())
    config.update({"snakefile": str(root / "pipeline" / "Snakefile"), "slurm-status-command": "squeue",
                   "slurm-init-seconds-before-status-checks": 2, "seconds-between-status-checks": 2,
                   "slurm-keep-successful-logs": True, "latency-wait": 5, **settings})
    (profile / "config.yaml").write_text(yaml.safe_dump(config))
    return root, profile, clean_env(MDEAUX_STORE=str(where / "store"))


# For the time-limit test: a SLURM job that starts without the run's checkpoint sleeps STEP_SLEEP s per
# training step (a sitecustomize on the job's PYTHONPATH), so its 60 steps outlive a one-minute job on any
# machine (a CI run once finished them in one job, before the signal); a job that resumes runs at full speed.
STEP_SLEEP = 1.2
SLOW_STEPS = f"""
import os, sys, time
if "run-cohort" in sys.argv and not os.path.exists(os.environ["SLOW_WITHOUT"]):
    from mdeaux.training import scheme
    step_on = scheme.Trainer.step_on
    def slow(self, *args, **kwargs):
        time.sleep({STEP_SLEEP})
        return step_on(self, *args, **kwargs)
    scheme.Trainer.step_on = slow
"""


def train(root: Path, profile: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mdeaux", "train", "--profile", str(profile)], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if found := check():
            return found
        if proc.poll() is not None:
            pytest.fail(f"mdeaux train ended before {what}:\n{finish(proc)[1][-4000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {what} within {timeout} s:\n{finish(proc)[1][-4000:]}")


def job(jobid: str) -> dict[str, str]:
    """``scontrol show job`` as key -> value (the controller keeps a finished job for MinJobAge seconds)."""
    text = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", text))


def job_logs(root: Path) -> list[Path]:
    """The SLURM log of every job submitted, oldest first (.snakemake/slurm_logs/rule_train_cohort/<cohort>/<job id>.log)."""
    return sorted((root / ".snakemake" / "slurm_logs").rglob("*.log"), key=lambda p: int(p.stem))


def test_a_requeued_job_asks_for_the_params_resources_and_resumes_exactly(tiny_world, tmp_path, reference):
    run_id, expected = reference
    root, profile, env = slurm_project(tiny_world, tmp_path)
    proc = train(root, profile, env)
    run = Path(env["MDEAUX_STORE"]) / "runs" / run_id
    wait_for("a checkpoint", lambda: (run / "checkpoint.pt").is_file(), proc)
    (jobid,) = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["scontrol", "requeue", jobid], check=True)  # as preemption does: TERM, then back to the queue
    rc, out = finish(proc)
    assert rc == 0, out[-5000:]
    info = job(jobid)
    assert (info["JobState"], info["Restarts"], info["Requeue"]) == ("COMPLETED", "1", "1"), info
    # params runner.slurm: one CPU, 1,500 MB, runtime_min per run (a cohort of one), SIGTERM 30 s before the limit
    assert (info["CPUs/Task"], info["MinMemoryNode"], info["TimeLimit"]) == ("1", "1500M", "00:20:00"), info
    assert info["Comment"].startswith("rule_train_cohort"), info
    assert [p.stem for p in job_logs(root)] == [jobid]  # requeued by SLURM, not submitted again
    assert "resuming from" in (run / "train.log").read_text()
    assert numbers(run) == expected


def test_a_job_at_its_time_limit_checkpoints_and_finishes_after_resubmission(tiny_world, tmp_path, reference):
    """A one-minute limit with the signal 10 s before it (sbatch(1): "the signal may be sent up to 60
    seconds earlier than specified"; SIGTERM also comes at the limit itself): the run writes its
    checkpoint and exits 143, and Snakemake submits the job again until the run is done (retries raised
    for the short limit: a signal that comes while a job is still starting up stops it before it trains)."""
    run_id, expected = reference
    root, profile, env = slurm_project(tiny_world, tmp_path, {"runtime_min": 1, "signal_seconds": 10}, retries=6)
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_STEPS)
    run = Path(env["MDEAUX_STORE"]) / "runs" / run_id
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(slow), env.get("PYTHONPATH")])),
               SLOW_WITHOUT=str(run / "checkpoint.pt"))
    assert TRAIN["iterations"]["mini"] * STEP_SLEEP > 60
    rc, out = finish(train(root, profile, env), timeout=900)
    assert rc == 0, out[-5000:]
    logs = job_logs(root)
    assert len(logs) >= 2, [p.name for p in logs]
    first = job(logs[0].stem)
    assert first["TimeLimit"] == "00:01:00" and first["JobState"] in ("FAILED", "TIMEOUT"), first
    assert "resuming from" in (run / "train.log").read_text()
    assert numbers(run) == expected


def test_a_failing_job_is_reported_with_its_log(tiny_world, tmp_path, reference):
    run_id, _ = reference
    root, profile, env = slurm_project(tiny_world, tmp_path, retries=0)
    run = Path(env["MDEAUX_STORE"]) / "runs" / run_id
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")  # the job resumes from it and fails
    rc, out = finish(train(root, profile, env))
    assert rc != 0
    (log,) = job_logs(root)
    assert job(log.stem)["JobState"] == "FAILED"
    cohort_log = Path(env["MDEAUX_STORE"]) / "runs" / "cohorts" / log.parent.name / "train.log"
    assert f"1 run(s) not trained; see {cohort_log}" in out, out[-3000:]
    assert "delete it to restart run" in cohort_log.read_text()
    assert not (run / "metrics.json").exists()

