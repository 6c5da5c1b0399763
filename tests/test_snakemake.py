"""pipeline/Snakefile with its profiles, on a machine without SLURM.

The SLURM profile's dry run must plan exactly the cohorts of the runs `mdeaux runs` reports missing
(one job per cohort) and show each job's resources as params.yaml runner.slurm and MDEAUX_SLURM_PARTITION / MDEAUX_SLURM_ACCOUNT set
them. One test then runs the profile for real through the installed executor plugin against a fake
SLURM (sbatch, srun, sacct scripts on PATH): the sbatch flags, and a preempted job that is requeued
and resumes from its checkpoint.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, clean_env, mdeaux

PARTITION, ACCOUNT = "gpu-test", "proj_42"
PAPERLIKE = {"gpus": 1, "gpu_model": "a100", "cpus_per_task": 10, "mem_mb": 64000, "runtime_min": 180,
             "requeue": True, "signal_seconds": 300}


def project(world: Path, where: Path, train: dict | None = None, tasks: list | None = None, **slurm) -> Path:
    """A project reading tiny_world's data with its own params (runner.slurm, train and the tasks
    overridden) and pipeline/."""
    where.mkdir()
    (where / "data").symlink_to(world / "data", target_is_directory=True)
    shutil.copy2(world / "dvc.yaml", where / "dvc.yaml")
    shutil.copytree(ROOT / "pipeline", where / "pipeline")
    shutil.copy2(ROOT / "Snakefile", where / "Snakefile")
    raw = yaml.safe_load((world / "params.yaml").read_text())
    raw["runner"]["slurm"].update(slurm)
    raw["train"].update(train or {})
    if tasks:
        raw["studies"]["table3"]["tasks"] = tasks
    (where / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return where


def dry_run(root: Path, profile: str, env: dict) -> dict[str, dict]:
    """cohort id -> {"resources": {...}, "shell": str} of every train_cohort job of a dry run with the profile."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "--profile", f"pipeline/profiles/{profile}", "--dry-run"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "This was a dry-run" in text, text[-2000:]
    jobs = {}
    for block in text.split("rule train_cohort:")[1:]:
        rid = re.search(r"wildcards: cid=([0-9a-f]{16})", block).group(1)
        resources = dict(item.partition("=")[::2] for item in re.search(r"resources: (.*)", block).group(1).split(", "))
        shell = re.search(r"Shell command: (.*)", block).group(1)
        jobs[rid] = {"resources": resources, "shell": shell}
    stats = re.search(r"^train_cohort\s+(\d+)$", text, re.M)
    assert stats and int(stats.group(1)) == len(jobs), text[-2000:]
    return jobs


def missing_runs(root: Path, env: dict) -> tuple[dict[str, str], int]:
    """Run id -> cohort id of the runs `mdeaux runs` lists as missing, and the missing count of its summary line."""
    out = mdeaux(["runs"], root, env).stdout
    count = int(re.search(r"(\d+) missing", out).group(1))
    return dict(re.findall(r"^\s+([0-9a-f]{16})\s+cohort ([0-9a-f]{16})\b", out, re.M)), count


@pytest.fixture(scope="module")
def slurm_world(tiny_world, tmp_path_factory):
    """A paper-like runner.slurm, one run already done, and the dry runs of both profiles."""
    base = tmp_path_factory.mktemp("snake")
    root = project(tiny_world, base / "proj", **PAPERLIKE)
    env = clean_env(MDEAUX_STORE=str(base / "store"), MDEAUX_SLURM_PARTITION=PARTITION, MDEAUX_SLURM_ACCOUNT=ACCOUNT)
    out = mdeaux(["runs", "--write"], root, env).stdout
    first = re.search(r"^\s+([0-9a-f]{16})\s+cohort\b", out, re.M).group(1)
    done = base / "store" / "runs" / first / "metrics.json"
    done.write_text("{}")  # a finished run is never planned again,
    # even when a main Snakemake killed while the job ran marked it incomplete
    marker = root / ".snakemake" / "incomplete" / base64.urlsafe_b64encode(str(done).encode()).decode()
    marker.parent.mkdir(parents=True)
    marker.write_text('{"external_jobid": null}')
    return {"root": root, "env": env, "done": first, "slurm": dry_run(root, "slurm", env), "local": dry_run(root, "local", env)}


def test_slurm_dry_run_plans_exactly_the_cohorts_of_the_missing_runs(slurm_world):
    cohort_of, count = missing_runs(slurm_world["root"], slurm_world["env"])
    jobs = slurm_world["slurm"]
    assert count == len(cohort_of) >= 3, (count, cohort_of)
    assert set(jobs) == set(cohort_of.values())  # one job per cohort: here the 3 runs left share their batches
    store = Path(slurm_world["env"]["MDEAUX_STORE"]) / "runs" / "cohorts"
    members = [m for cid in jobs for m in json.loads((store / cid / "members.json").read_text())]
    assert sorted(members) == sorted(cohort_of)
    assert slurm_world["done"] not in members


def test_slurm_dry_run_shows_each_jobs_resources(slurm_world):
    for cid, job in slurm_world["slurm"].items():
        res = job["resources"]
        assert res["gpu"] == "1" and res["gpu_model"] == "a100", res
        # runner.slurm.runtime_min (180) is per run: the job of a cohort of 3 gets 3 x 180 minutes
        assert (res["cpus_per_task"], res["mem_mb"], res["runtime"]) == ("10", "64000", "540"), res
        assert (res["slurm_partition"], res["slurm_account"]) == (PARTITION, ACCOUNT), res
        assert res["slurm_extra"].split() == ["--requeue", "--signal=TERM@300"], res
        # one process, replacing the shell so that SLURM's SIGTERM reaches the trainer
        assert re.fullmatch(rf"exec \S*python\S* -m mdeaux run-cohort {cid} --no-progress > \S+/cohorts/{cid}/train\.log "
                            r"2>&1  # nyuv2/s0: 3 runs", job["shell"]), job  # the comment names what the runs share


def test_snakemake_dry_run_from_the_repository_root(tiny_world, tmp_path):
    root = project(tiny_world, tmp_path / "proj")
    env = clean_env(MDEAUX_STORE=str(tmp_path / "store"))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "This was a dry-run" in text, text[-2000:]
    assert len(re.findall(r"^rule train_cohort:", text, re.M)) == 1 and missing_runs(root, env)[1] == 4


def test_local_profile_plans_the_same_jobs_without_slurm_settings(slurm_world):
    local, slurm = slurm_world["local"], slurm_world["slurm"]
    assert set(local) == set(slurm)
    assert all(local[rid]["shell"] == slurm[rid]["shell"] for rid in local)
    assert all(set(job["resources"]) == {"tmpdir"} for job in local.values())  # no SLURM noise locally


def test_plugin_turns_the_resources_into_the_intended_sbatch_flags(slurm_world):
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    class Resources(dict):
        def __getattr__(self, key):
            try:
                return self[key]
            except KeyError:
                raise AttributeError(key) from None

    class Job:
        threads = 1
        name = "train_cohort"

        def __init__(self, resources):
            self.resources = Resources({k: int(v) if v.isdigit() else v for k, v in resources.items()})

        def is_group(self):
            return False

    job = Job(next(iter(slurm_world["slurm"].values()))["resources"])
    validate_slurm_extra(job)  # raises when slurm_extra holds a flag the plugin manages itself
    params = {"run_uuid": "u", "slurm_logfile": "x.log", "comment_str": "c", "account": "", "partition": "", "workdir": "/w"}
    call = get_submit_command(job, params) + set_gres_string(job)
    for flag in ("-t 540", "--mem 64000", "--cpus-per-task=10", "--requeue --signal=TERM@300", "--gpus=a100:1"):
        assert flag in call, (flag, call)


def test_several_gpus_launch_one_cohort_with_torchrun(tiny_world, tmp_path):
    root = project(tiny_world, tmp_path / "proj", gpus=2, gpu_model=None, requeue=False, signal_seconds=0)
    env = clean_env(MDEAUX_STORE=str(tmp_path / "store"))
    jobs = dry_run(root, "slurm", env)
    assert jobs
    for cid, job in jobs.items():
        res = job["resources"]
        assert res["gpu"] == "2" and "gpu_model" not in res, res
        # no environment: partition and account are left to the profile or the cluster's defaults
        assert not {"slurm_partition", "slurm_account", "slurm_extra"} & set(res), res
        assert re.search(rf"exec \S*torchrun --standalone --nproc_per_node 2 -m mdeaux run-cohort {cid} --no-progress ", job["shell"]), job


def test_torchrun_waits_out_the_signal_window(tiny_world, tmp_path):
    root = project(tiny_world, tmp_path / "proj", gpus=2, signal_seconds=240)
    jobs = dry_run(root, "slurm", clean_env(MDEAUX_STORE=str(tmp_path / "store")))
    for job in jobs.values():
        assert "torchrun --standalone --nproc_per_node 2 --shutdown-timeout 240 -m mdeaux run-cohort" in job["shell"], job
        assert job["resources"]["slurm_extra"].split() == ["--requeue", "--signal=TERM@240"], job


def test_more_gpus_than_the_batch_can_be_split_over_is_refused(tiny_world, tmp_path):
    root = project(tiny_world, tmp_path / "proj", gpus=3)  # train.batch_size is 4 (mini)
    out = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "pipeline/profiles/slurm", "--dry-run"],
                         cwd=root, env=clean_env(MDEAUX_STORE=str(tmp_path / "store")), capture_output=True, text=True)
    assert out.returncode != 0
    assert "runner.slurm.gpus is 3, but train.batch_size (4) is not divisible" in out.stdout + out.stderr, out.stderr[-2000:]


def test_profiles_keep_content_addressed_runs():
    for name in ("slurm", "local"):
        cfg = yaml.safe_load((ROOT / "pipeline" / "profiles" / name / "config.yaml").read_text())
        assert cfg["rerun-triggers"] == "mtime" and cfg["keep-going"] is True and cfg["ignore-incomplete"] is True, (name, cfg)
        assert cfg["snakefile"] == "pipeline/Snakefile", (name, cfg)
    assert yaml.safe_load((ROOT / "pipeline" / "profiles" / "slurm" / "config.yaml").read_text())["executor"] == "slurm"


def test_train_names_an_unknown_profile(slurm_world):
    out = mdeaux(["train", "--profile", "nowhere"], slurm_world["root"], slurm_world["env"], check=False)
    assert out.returncode == 1
    assert "--profile nowhere" in out.stderr and "local, slurm" in out.stderr, out.stderr



# ------------------------------------------------------------------------------------------------
# A fake SLURM (sbatch, srun, sacct, ...) on PATH, enough for the executor plugin to run a job here
FAKE_SBATCH = """#!{python}
# Fake sbatch: records its arguments, runs the --wrap script in the background as the job and prints the
# job id. With --requeue, a job is preempted once: when a file matching FAKE_SLURM_PREEMPT_AT appears,
# every job step gets SIGTERM (as SLURM signals a job's steps), the job shows PREEMPTED, then runs again
# under the same id, appending to the same log.
import glob, json, os, signal, subprocess, sys, time

STATE = os.environ["FAKE_SLURM_STATE"]


def status(jobid, name, value):
    with open(f"{{STATE}}/{{jobid}}.state", "w") as f:
        f.write(f"{{jobid}}|{{value}}|{{name}}\\n")


def run_job(jobid, name, out, workdir, wrap, requeue):
    env = dict(os.environ, SLURM_JOB_ID=jobid, SLURM_JOBID=jobid)
    preempt = os.environ.get("FAKE_SLURM_PREEMPT_AT") if requeue else None
    while True:
        with open(out, "a") as log:
            batch = subprocess.Popen(["sh", "-c", wrap], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
            while preempt and batch.poll() is None and not glob.glob(preempt):
                time.sleep(0.05)
            if preempt and batch.poll() is None:
                status(jobid, name, "PREEMPTED")
                for pgid in open(f"{{STATE}}/{{jobid}}.steps").read().split():
                    try:
                        os.killpg(int(pgid), signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                batch.wait()
                preempt = None
                status(jobid, name, "PENDING")
                continue
            status(jobid, name, "COMPLETED" if batch.wait() == 0 else "FAILED")
            return


if sys.argv[1] == "--run-job":
    run_job(*sys.argv[2:7], sys.argv[7] == "1")
    sys.exit(0)
os.makedirs(STATE, exist_ok=True)
argv = sys.argv[1:]
jobid = str(1001 + len(glob.glob(f"{{STATE}}/*.argv")))
with open(f"{{STATE}}/{{jobid}}.argv", "w") as f:
    json.dump(argv, f)
name = argv[argv.index("--job-name") + 1]
out = argv[argv.index("--output") + 1].replace("%j", jobid)
workdir = argv[argv.index("-D") + 1]
wrap = next(a[len("--wrap="):] for a in argv if a.startswith("--wrap="))
status(jobid, name, "RUNNING")
subprocess.Popen([sys.executable, __file__, "--run-job", jobid, name, out, workdir, wrap, str(int("--requeue" in argv))],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(jobid)
"""
FAKE_SRUN = """#!{python}
# Fake srun: runs the command after the options as one job step (its own process group, recorded for
# fake preemption); when it ends, what is left of the step is killed, as SLURM does.
import os, signal, subprocess, sys

state, args = os.environ["FAKE_SLURM_STATE"], sys.argv[1:]
with open(f"{{state}}/srun.args", "a") as f:
    f.write(" ".join(args) + "\\n")
while args and args[0].startswith("-"):
    args.pop(0)
step = subprocess.Popen(args, start_new_session=True)
with open(f"{{state}}/{{os.environ['SLURM_JOB_ID']}}.steps", "a") as f:
    f.write(f"{{step.pid}}\\n")
rc = step.wait()
try:
    os.killpg(step.pid, signal.SIGKILL)
except ProcessLookupError:
    pass
sys.exit(rc if rc >= 0 else 128 - rc)
"""
FAKE_SH = {
    "sacct": 'cat "$FAKE_SLURM_STATE"/*.state 2>/dev/null | cut -d"|" -f1,2',  # JobIdRaw|State of every job
    "sacctmgr": f"echo {ACCOUNT}",  # the user's accounts (the plugin validates -A with it)
    "sinfo": "printf 'PARTITION\\ngpu*\\n'",
    "scontrol": "exit 0",
}


def fake_slurm(folder: Path) -> Path:
    folder.mkdir()
    for name, text in {"sbatch": FAKE_SBATCH.format(python=sys.executable), "srun": FAKE_SRUN.format(python=sys.executable),
                       **{k: f"#!/bin/sh\n{v}\n" for k, v in FAKE_SH.items()}}.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def test_preempted_slurm_job_is_requeued_and_resumes_from_its_checkpoint(tiny_world, tmp_path):
    """The SLURM profile through the real executor plugin against a fake SLURM: one sbatch per cohort with
    the flags from params and the environment; preemption sends SIGTERM to the job step, the trainer
    writes its checkpoint and exits 143, the requeued job (same id, no new submission) resumes it."""
    root = project(tiny_world, tmp_path / "proj", train={"iterations": {"mini": 12}}, tasks=["baseline"], **PAPERLIKE)
    state, store = tmp_path / "slurm", tmp_path / "store"
    env = clean_env(MDEAUX_STORE=str(store), MDEAUX_SLURM_PARTITION=PARTITION, MDEAUX_SLURM_ACCOUNT=ACCOUNT,
                    FAKE_SLURM_STATE=str(state), FAKE_SLURM_PREEMPT_AT=str(store / "runs" / "*" / "checkpoint.pt"))
    env["PATH"] = f"{fake_slurm(tmp_path / 'bin')}{os.pathsep}{env['PATH']}"
    out = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "pipeline/profiles/slurm",
                          "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=400)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-5000:]
    (submitted,) = state.glob("*.argv")  # requeued by SLURM, not submitted again by Snakemake
    argv = json.loads(submitted.read_text())
    for flags in (["-A", ACCOUNT], ["-p", PARTITION], ["-t", "180"], ["--mem", "64000"], ["--cpus-per-task=10"],
                  ["--requeue", "--signal=TERM@300"], ["--gpus=a100:1"]):
        assert any(argv[i:i + len(flags)] == flags for i in range(len(argv))), (flags, argv)
    steps = (state / "srun.args").read_text().splitlines()
    assert len(steps) == 2 and all("--gpus=1" in s and "--cpus-per-task=10" in s for s in steps), steps
    (logs,) = (root / ".snakemake" / "slurm_logs" / "rule_train_cohort").iterdir()  # one folder per cohort id
    (slurm_log,) = logs.glob("*.log")
    (run_id,) = json.loads((store / "runs" / "cohorts" / logs.name / "members.json").read_text())
    run = store / "runs" / run_id
    assert "exit status 143" in slurm_log.read_text(), slurm_log.read_text()[-3000:]  # first attempt: checkpoint, 143
    assert "resuming from" in (run / "train.log").read_text()
    assert (run / "metrics.json").is_file() and not (run / "checkpoint.pt").exists()


def test_a_killed_train_leaves_no_lock_in_the_way_and_a_second_train_is_refused(tiny_world, tmp_path):
    """Issue 13 #3: SIGKILL to `mdeaux train`'s process group leaves Snakemake's lock behind; the next
    `mdeaux train` removes it and trains, and a `mdeaux train` started while one runs is told why it
    cannot, not pointed at logs that do not exist."""
    root = project(tiny_world, tmp_path / "world", tasks=["baseline"])
    env = clean_env(MDEAUX_STORE=str(tmp_path / "store"))
    first = subprocess.Popen([sys.executable, "-m", "mdeaux", "train"], cwd=root, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = root / ".snakemake" / "locks"
    try:
        while not (locks.is_dir() and any(locks.iterdir())):  # Snakemake has locked the folder
            assert first.poll() is None, "mdeaux train ended before Snakemake locked its folder"
        second = mdeaux(["train"], root, env, check=False)
        assert second.returncode != 0 and "another `mdeaux train`" in second.stderr, second.stderr[-2000:]
        assert "see " not in second.stderr.splitlines()[-1]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no handler runs: Snakemake cannot remove its lock
        first.wait()
    assert any(locks.iterdir())
    out = mdeaux(["train"], root, env)
    assert "removing the Snakemake lock" in out.stderr and "trained 1 run(s)" in out.stderr, out.stderr[-3000:]
    results = json.loads((root / "results" / "train.json").read_text())["runs"]
    assert len(results) == 1 and results[0]["metrics"]["best"]["abs_rel"] > 0


def test_two_experiments_sharing_runs_train_each_run_once(tiny_world, tmp_path):
    """Issue 13 #2: two experiments (as `dvc queue start -j 2` runs them: two copies of the project, one run
    store) trained at the same time, sharing the baseline: each run is trained by one of them, once; both
    finish and collect the same numbers for the shared run."""
    from mlflow import MlflowClient

    env = clean_env(MDEAUX_STORE=str(tmp_path / "store"))
    roots = []
    for name, alpha in (("q1", 0.9), ("q2", 0.8)):
        root = project(tiny_world, tmp_path / name, tasks=["baseline", "mldc"])
        raw = yaml.safe_load((root / "params.yaml").read_text())
        raw["alpha"] = alpha
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        roots.append(root)
    procs = [subprocess.Popen([sys.executable, "-m", "mdeaux", "train"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for root in roots]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-2000:] for e in errors)
    results = [{r["label"]: r for r in json.loads((root / "results" / "train.json").read_text())["runs"]} for root in roots]
    shared = [label for label in results[0] if "baseline" in label]
    assert len(shared) == 1 and len(results[0]) == len(results[1]) == 2
    assert results[0][shared[0]] == results[1][shared[0]]
    store = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("mdeaux-mini").experiment_id
    for run in {r["id"] for res in results for r in res.values()}:  # 3 runs, each tracked (trained) once
        assert len(store.search_runs([experiment], f"tags.run_id = '{run}'")) == 1, run
