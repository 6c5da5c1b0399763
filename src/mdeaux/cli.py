"""The ``mdeaux`` command: one subcommand per pipeline stage.

Every stage reads params.yaml itself (no parameter value is ever spliced into a shell). Inside
``dvc repro`` a per-dataset stage (``fetch@nyuv2``) takes its dataset from ``DVC_STAGE``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from mdeaux.params import ParamsError

log = logging.getLogger("mdeaux")

EPILOG = "Stages in order: synth, fetch, prepare, validate, split, train, report. `dvc repro` runs them all."


NOISY = ("alembic", "urllib3", "great_expectations", "matplotlib", "PIL", "mlflow")


class _QuietLibraries(logging.Filter):
    """Libraries speak only at WARNING and above (some set their own logger levels to INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(NOISY)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_QuietLibraries())


def _context():
    from mdeaux.params import load
    from mdeaux.paths import Paths

    paths = Paths()
    return paths, load(paths.params)


def _dataset_arg(value: str | None, params) -> list[str]:
    """The datasets a per-dataset stage works on: the argument, DVC_STAGE's item, or all of them."""
    from mdeaux.datasets.registry import get

    if value is None:
        stage = os.environ.get("DVC_STAGE", "")
        value = stage.split("@", 1)[1] if "@" in stage else None
    names = [value] if value else list(params.datasets)
    for name in names:
        get(name)  # unknown -> KeyError naming the known ones
    return names


# ------------------------------------------------------------------------------------------------
def cmd_synth(args) -> None:
    from mdeaux.synth.writers import write_mirror

    paths, params = _context()
    if params.profile != "mini":
        log.info("profile %r reads real data: no synthetic world is written", params.profile)
        paths.mirror.mkdir(parents=True, exist_ok=True)
        (paths.mirror / "README.md").write_text(f"profile {params.profile}: no synthetic archives (real sources are used)\n")
        return
    counts = {name: c.model_dump(exclude_none=True) for name, c in params.synth.counts.items() if name in params.datasets}
    start = time.perf_counter()
    write_mirror(paths.mirror, counts, seed=params.synth.seed, workers=params.prepare.workers)
    log.info("synthetic world written to %s in %.1f s", paths.mirror, time.perf_counter() - start)


def cmd_fetch(args) -> None:
    from mdeaux.datasets.registry import get
    from mdeaux.fetch import fetch_dataset

    paths, params = _context()
    for name in _dataset_arg(args.dataset, params):
        record = fetch_dataset(
            get(name),
            paths.raw_of(name),
            profile=params.profile,
            mirror_dir=paths.mirror_of(name),
            manual_dir=paths.manual / name,
            retries=params.fetch.retries,
        )
        log.info("%s: fetched %d archive(s) into %s", name, len(record.get("archives", record)), paths.raw_of(name))


def cmd_prepare(args) -> None:
    from mdeaux.datasets.registry import get
    from mdeaux.prepare import prepare_dataset

    paths, params = _context()
    for name in _dataset_arg(args.dataset, params):
        manifest = prepare_dataset(
            get(name),
            paths.raw_of(name),
            paths.prepared_of(name),
            workers=params.prepare.workers,
            shard_rows=params.prepare.shard_rows,
            check_pinned=params.profile == "paper",
        )
        log.info("%s: prepared %s", name, manifest.get("counts"))


def cmd_validate(args) -> None:
    from mdeaux.datasets.registry import get
    from mdeaux.validate import validate_dataset

    paths, params = _context()
    for name in _dataset_arg(args.dataset, params):
        spec = get(name)
        # exact split sizes: what the mini world wrote, or the official sizes where published
        expected = dict(spec.official_counts) or None
        if params.profile == "mini":
            counts = params.synth.counts.get(name)
            expected = counts.model_dump(exclude_none=True) if counts else None
        validate_dataset(
            spec,
            paths.prepared_of(name),
            paths.validation_reports / name,
            min_valid_frac=params.validate_.min_valid_frac,
            expected_counts=expected,
            max_depth_sanity=params.validate_.max_depth_sanity,
        )
        log.info("%s: validation passed; report in %s", name, paths.validation_reports / name / "index.html")


def cmd_split(args) -> None:
    from mdeaux.prepare import PreparedDataset
    from mdeaux.split import write_splits

    paths, params = _context()
    prepared = {name: PreparedDataset(paths.prepared_of(name)) for name in params.datasets}
    written = write_splits(prepared, paths.splits, params.split.fractions, params.split.seed, params.split.subsets)
    log.info("splits written: %s", ", ".join(str(p) for p in written.values()))


def cmd_runs(args) -> None:
    from mdeaux.runs import gpu_hours, is_done, plan, planned_configs, test_image_count

    paths, params = _context()
    runs = plan(paths, params, write=args.write)
    done = sum(is_done(paths, r.id) for r in runs)
    print(f"{len(runs)} run(s) planned, {done} done, {len(runs) - done} missing (store: {paths.runs})")
    if not args.cost:
        for r in runs:
            state = "done   " if is_done(paths, r.id) else "missing"
            print(f"  {r.id}  {state}  {r.label:<44} studies: {', '.join(r.studies)}")
    per_study = {name: sum(1 for _, s in planned_configs(params) if s == name) for name in params.studies}
    print(f"\n{'study':<18} {'title':<24} {'runs':>6} {'shared':>7}" + ("   GPU hours (train + eval)" if args.cost else ""))
    images = {}
    hours: dict[str, list[float]] = {}
    for r in runs:
        name = r.config["depth_dataset"]
        if name not in images:
            images[name] = test_image_count(paths, name, params.profile)
        hours[r.id] = list(gpu_hours(r, params.runner.cost.step_seconds, params.runner.cost.eval_image_seconds, images[name]))
    for name, study in params.studies.items():
        shared = sum(1 for r in runs if name in r.studies and len(r.studies) > 1)  # also used by another study
        line = f"{name:<18} {study.title:<24} {per_study[name]:>6} {shared:>7}"
        if args.cost:
            train_h = sum(hours[r.id][0] for r in runs if name in r.studies)
            eval_h = sum(hours[r.id][1] for r in runs if name in r.studies)
            line += f"   {train_h + eval_h:9.1f} ({train_h:.1f} + {eval_h:.1f})"
        print(line)
    total = f"{'all studies':<18} {'(deduplicated)':<24} {sum(per_study.values()):>6} {len(runs):>7}"
    if args.cost:
        train_h, eval_h = sum(h[0] for h in hours.values()), sum(h[1] for h in hours.values())
        total += f"   {train_h + eval_h:9.1f} ({train_h:.1f} + {eval_h:.1f})"
        missing_h = sum(sum(hours[r.id]) for r in runs if not is_done(paths, r.id))
        total += (f"\nmissing runs: {missing_h:.1f} GPU hours. Assumes {params.runner.cost.step_seconds} s per global step "
                  f"and {params.runner.cost.eval_image_seconds} s per test image (runner.cost, from `mdeaux bench`); "
                  f"test images: {'official counts' if params.profile == 'paper' else 'the split files'}")
    print(total)


def cmd_train(args) -> None:
    """Plan the runs, hand the missing ones to Snakemake, collect all results."""
    from mdeaux import atomic, tracking
    from mdeaux.runs import is_done, plan

    paths, params = _context()
    profile = None  # a Snakemake profile (pipeline/profiles/<name> or a folder): docs/slurm.md
    if args.profile:
        named = paths.root / "pipeline" / "profiles" / args.profile
        profile = Path(args.profile).resolve() if Path(args.profile).is_dir() else named if named.is_dir() else None
        if profile is None or not any((profile / f).is_file() for f in ("config.yaml", "profile.yaml")):
            known = sorted(p.name for p in (paths.root / "pipeline" / "profiles").glob("*") if p.is_dir())
            raise FileNotFoundError(f"--profile {args.profile}: expected a folder holding a Snakemake profile (config.yaml "
                                    f"or profile.yaml), a path or one of pipeline/profiles/: {', '.join(known) or 'none'}")
    runs = plan(paths, params)
    missing = [r for r in runs if not is_done(paths, r.id)]
    log.info("%d run(s) planned: %d to train, %d reused from %s", len(runs), len(missing), len(runs) - len(missing), paths.runs)
    if missing:
        tracking.prepare(paths, params)  # DB, experiment and study parent runs before fan-out (warns, never raises)
        snakefile = paths.root / "pipeline" / "Snakefile"
        if not snakefile.is_file():
            raise FileNotFoundError(f"{snakefile} is missing: run mdeaux from the mdeaux repository root")
        cmd = [
            sys.executable, "-m", "snakemake",
            "--snakefile", str(snakefile),
            "--directory", str(paths.root),
            *(["--profile", str(profile)] if profile else []),  # its cores/jobs/executor, unless --cores is given
            *(["--cores", str(args.cores or params.runner.cores)] if args.cores or not profile else []),
            "--rerun-triggers", "mtime",
            "--keep-going",
            "--ignore-incomplete",  # metrics.json is written atomically: a killed job leaves no half output
            "--printshellcmds",
        ]  # fmt: skip
        log.info("running: %s", " ".join(cmd))
        result = subprocess.run(cmd, cwd=paths.root)
        failed = [r for r in missing if not is_done(paths, r.id)]
        if result.returncode != 0 or failed:
            logs = ", ".join(str(paths.run_dir(r.id) / "train.log") for r in failed)
            raise SystemExit(f"{len(failed)} run(s) failed; see {logs or 'the Snakemake output above'}")
    records = []
    for r in runs:
        metrics = json.loads((paths.run_dir(r.id) / "metrics.json").read_text())
        records.append({"id": r.id, "label": r.label, "studies": list(r.studies), "config": r.config, "inputs": r.inputs, "metrics": metrics})
    summary = {
        "profile": params.profile,
        "trained": [r.id for r in missing],
        "reused": [r.id for r in runs if r not in missing],
        "runs": records,
    }
    atomic.write_json(paths.results / "train.json", summary)
    log.info("trained %d run(s), reused %d; results in %s", len(summary["trained"]), len(summary["reused"]), paths.results / "train.json")
    # runs whose tracker could not reach MLflow (offline SLURM nodes, a server that was down) are
    # imported from runs/<id>/ now; runs already tracked are skipped
    parents = tracking.prepare(paths, params)
    if parents:
        counts = tracking.import_done(paths, runs, parents)
        log.info("MLflow (%s): %d run(s) imported, %d already tracked", paths.mlflow_uri, counts["imported"], counts["tracked"])


def cmd_run_one(args) -> None:
    """Train one planned run (what each Snakemake job executes); under torchrun, one process of it."""
    import fcntl

    from mdeaux.runs import load_run

    paths, params = _context()
    run = load_run(paths, args.run_id)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 holds the run's lock
        _run_one(run, paths, params, args)
        return
    # one trainer per run id, also across queued DVC experiments sharing the run store
    with open(paths.run_dir(run.id) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _run_one(run, paths, params, args)


def _run_one(run, paths, params, args) -> None:
    import torch

    from mdeaux import atomic, tracking, visuals
    from mdeaux.runs import is_done, plan
    from mdeaux.train import CHECKPOINT, Preempted, Runtime, train_run

    if is_done(paths, run.id) and not args.force:
        log.info("%s is already done (%s)", run.id, paths.run_dir(run.id) / "metrics.json")
        return
    torch.set_num_threads(params.runner.torch_threads)
    rt = Runtime.setup(params.runner.device, params.runner.loader_workers, params.runner.compile)
    if rt.world > 1:
        log.info("%s: process %d of %d on %s", run.id, rt.rank, rt.world, rt.device)
    tracker = None
    run_dir = paths.run_dir(run.id)
    id_file = run_dir / tracking.ID_FILE
    whole = False  # the MLflow run holds every step (not only those after a resume)
    if rt.main:
        planned = next((r for r in plan(paths, params, write=False) if r.id == run.id), run)  # with its studies
        tags = tracking.run_tags(planned, paths.root, extra={"processes": str(rt.world), "device": str(rt.device)})
        atomic.write_json(run_dir / tracking.TAGS_FILE, tags)  # for `mdeaux train`'s import if MLflow is unreachable
        resuming = (run_dir / CHECKPOINT).is_file()
        if not resuming:
            id_file.unlink(missing_ok=True)  # a fresh (or --force) training is a new MLflow run
        # a run resumed from its checkpoint continues its MLflow run
        resume = id_file.read_text().strip() if resuming and id_file.is_file() else None
        study = planned.studies[0] if planned.studies else None
        expected = run.config["train"]["iterations"] * params.runner.cost.step_seconds  # runner.cost (mdeaux bench)
        tracker = tracking.Tracker(
            paths.mlflow_uri, params.profile, run.label, tags, paths.mlflow_artifacts, run_id=resume,
            parent=(study, params.studies[study].title) if study in params.studies else None,
            lock=paths.runs / ".mlflow.lock", system_metrics_interval=tracking.sampling_interval(expected),
        )
        whole = not resuming or tracker.resumed
        if tracker.run_id:
            atomic.write_text(id_file, tracker.run_id + "\n")
        if not tracker.resumed:
            tracker.params(run.config)
    try:
        result = train_run(run, paths, tracker=tracker, progress=not args.no_progress, rt=rt,
                           predictions=params.runner.save_predictions)
    except Preempted as stop:
        if tracker is not None:
            tracker.finish("KILLED")
        log.warning("%s", stop)
        raise SystemExit(Preempted.exit_code) from None
    except BaseException:
        if tracker is not None:
            tracker.finish("FAILED")
        raise
    finally:
        if rt.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if tracker is None:
        return
    try:
        figures = visuals.write_figures(run_dir)  # curves.png, predictions.png (also without MLflow)
    except Exception as err:  # noqa: BLE001 - a figure is not worth the run
        log.warning("%s: could not draw the figures (%s)", run.id, err)
        figures = []
    for name in tracking.RUN_FILES:
        tracker.artifact(run_dir / name)
    for figure in figures:
        tracker.artifact(figure, "plots")
    tracker.metrics({f"best.{k}": v for k, v in result["best"].items()}, step=result["iterations"])
    tracker.metrics({f"final.{k}": v for k, v in result["final"].items()}, step=result["iterations"])
    tracker.metrics({"train_seconds": result["train_seconds"]}, step=result["iterations"])
    if whole:
        tracker.mark_complete()
    tracker.finish()


def cmd_report(args) -> None:
    from mdeaux.report import write_reports

    paths, params = _context()
    written = write_reports(paths, params)
    log.info("reports: %d files written in %s; open %s first", len(written), paths.reports, paths.reports / "index.html")


def cmd_weights(args) -> None:
    from mdeaux.weights import command

    command(args)


def cmd_params(args) -> None:
    import yaml

    paths, params = _context()
    print(yaml.safe_dump(params.model_dump(by_alias=True), sort_keys=False))


def cmd_bench(args) -> None:
    import torch

    from mdeaux import atomic
    from mdeaux.bench import load_raw, report
    from mdeaux.train import Runtime

    paths, params = _context()
    torch.set_num_threads(params.runner.torch_threads)
    rt = Runtime.setup(args.device or params.runner.device,
                       params.runner.loader_workers if args.workers is None else args.workers, args.compile)
    configs = ["mini", "real"] if args.config == "both" else [args.config]
    text = report(paths, load_raw(paths), configs, args.backbone, args.steps, args.warmup, rt, args.peak_tflops, args.gpu_batch)
    print(text)
    if args.out:
        atomic.write_text(args.out, text + "\n")


# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdeaux",
        description="Reproduce Quercia et al., 'Enhancing Monocular Depth Estimation with Multi-Source Auxiliary Tasks'. "
        "Run from the repository root; parameters come from params.yaml.",
        epilog=EPILOG,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn, help_: str, dataset: bool = False):
        sp = sub.add_parser(name, help=help_, description=help_)
        if dataset:
            sp.add_argument("dataset", nargs="?", help="dataset name (default: DVC_STAGE's item, else every dataset in params `datasets`)")
        sp.set_defaults(func=fn)
        return sp

    add("synth", cmd_synth, "write the synthetic mini world's archives (official formats) and checksums to data/mirror/")
    add("fetch", cmd_fetch, "download or copy a dataset's archives, verify checksums, extract safely into data/raw/<ds>/", True)
    add("prepare", cmd_prepare, "write Parquet shards (original bytes) and a per-sample stats table to data/prepared/<ds>/", True)
    add("validate", cmd_validate, "run the Great Expectations suite on a prepared dataset; report in reports/validation/<ds>/", True)
    add("split", cmd_split, "write seeded, nested training fractions and the test list to data/splits/")
    sp = add("runs", cmd_runs, "list the planned runs of all studies, which are done and which are missing")
    sp.add_argument("--write", action="store_true", help="also write runs/<id>/config.json for each planned run")
    sp.add_argument("--cost", action="store_true", help="estimate GPU hours per study (runner.cost) instead of listing runs")
    sp = add("train", cmd_train, "plan the runs, train the missing ones with Snakemake, collect results/train.json")
    sp.add_argument("--cores", type=int, help="Snakemake cores (default: params runner.cores, or the profile's)")
    sp.add_argument("--profile", help="Snakemake profile: a folder or a name under pipeline/profiles/ (slurm: one SLURM "
                    "job per run, see docs/slurm.md; default: local cores)")
    sp = add("run-one", cmd_run_one, "train one planned run (as a Snakemake job does)")
    sp.add_argument("run_id", help="the run id (a folder under runs/)")
    sp.add_argument("--force", action="store_true", help="train again even if metrics.json exists")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    add("report", cmd_report, "render reports/: every table and figure of the paper beside its numbers, index.html, metrics.json, curves for `dvc plots`")
    add("params", cmd_params, "print the resolved parameters of the active profile")
    sp = add("bench", cmd_bench, "time a global step against its floor (backbone fwd + decoder fwd/bwd), the loader "
             "against consumption, and peak memory; on a GPU also the backbone's bf16 images/s and share of peak")
    sp.add_argument("--config", choices=["mini", "real", "both"], default="both",
                    help="mini: the mini profile; real: the paper profile's sizes with a random backbone (default: both)")
    sp.add_argument("--backbone", default="dinov2_vitg14", help="backbone of the real configuration (random weights)")
    sp.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    sp.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: params runner.device")
    sp.add_argument("--workers", type=int, help="loader workers (default: params runner.loader_workers)")
    sp.add_argument("--compile", action="store_true", help="torch.compile the decoder")
    sp.add_argument("--peak-tflops", type=float, help="the GPU's bf16 dense peak, if its name is not in the table")
    sp.add_argument("--gpu-batch", type=int, default=16, help="batch of the GPU backbone throughput test")
    sp.add_argument("--out", type=Path, help="also write the report to this file")
    sp = add("weights", cmd_weights, "download a backbone's pretrained weights (verified, pinned to a commit) "
             "into models/<name> and track them with DVC, for compute nodes without internet")
    from mdeaux.weights import add_arguments as _weights_arguments

    _weights_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    started = time.perf_counter()
    try:
        args.func(args)
        stage = os.environ.get("DVC_STAGE") or args.command
        log.info("%s finished in %.1f s", stage, time.perf_counter() - started)
    except (ParamsError, FileNotFoundError, KeyError, ValueError, RuntimeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        log.error("%s", msg)
        if args.verbose:
            raise
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
