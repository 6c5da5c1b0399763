"""The ``mdeaux`` command: one subcommand per pipeline stage; this module parses and dispatches.

Every stage reads params.yaml itself (no parameter value is ever spliced into a shell). Inside
``dvc repro`` a per-dataset stage (``fetch@nyuv2``) takes its dataset from ``DVC_STAGE``. What each
command does lives with its concept: data/stages.py, runs/ (train, run-cohort, run-one, runs), report/, bench.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from mdeaux.params import ParamsError

log = logging.getLogger("mdeaux")

EPILOG = "Stages in order: synth, fetch, prepare, validate, split, pretrain, reference, train, report. `dvc repro` runs them all."


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
    from mdeaux.data.datasets.registry import get

    if value is None:
        stage = os.environ.get("DVC_STAGE", "")
        value = stage.split("@", 1)[1] if "@" in stage else None
    names = [value] if value else list(params.datasets)
    for name in names:
        get(name)  # unknown -> KeyError naming the known ones
    return names


# ------------------------------------------------------------------------------------------------
def cmd_synth(args) -> None:
    from mdeaux.data import stages

    stages.synth(*_context())


def cmd_fetch(args) -> None:
    from mdeaux.data import stages

    paths, params = _context()
    stages.fetch(paths, params, _dataset_arg(args.dataset, params))


def cmd_prepare(args) -> None:
    from mdeaux.data import stages

    paths, params = _context()
    stages.prepare(paths, params, _dataset_arg(args.dataset, params))


def cmd_validate(args) -> None:
    from mdeaux.data import stages

    paths, params = _context()
    stages.validate(paths, params, _dataset_arg(args.dataset, params))


def cmd_split(args) -> None:
    from mdeaux.data import stages

    stages.split(*_context())


def cmd_pretrain(args) -> None:
    from mdeaux.model import pretrain

    pretrain.write(*_context())


def cmd_reference(args) -> None:
    from mdeaux.report import reference

    reference.write(*_context())


def cmd_runs(args) -> None:
    from mdeaux.runs.overview import show

    print(show(*_context(), write=args.write, cost=args.cost))


def cmd_train(args) -> None:
    from mdeaux.runs.snakemake import train

    train(*_context(), cores=args.cores, profile_name=args.profile)


def cmd_run_one(args) -> None:
    from mdeaux.runs.execute import run_one

    run_one(*_context(), args.run_id, force=args.force, progress=not args.no_progress)


def cmd_run_cohort(args) -> None:
    from mdeaux.runs.execute import run_cohort

    run_cohort(*_context(), args.cohort_id, progress=not args.no_progress)


def cmd_report(args) -> None:
    from mdeaux.report.build import write_reports

    paths, params = _context()
    written = write_reports(paths, params)
    log.info("reports: %d files written in %s; open %s first", len(written), paths.reports, paths.reports / "index.html")
    unlearned = json.loads((paths.reports / "metrics.json").read_text())["not_learned"]
    if unlearned and params.report.require_learned:
        raise RuntimeError(
            f"the learning check failed: {len(unlearned)} run(s) did not learn (best AbsRel not below "
            f"report.learned_below = {params.report.learned_below} x the constant predictor's): {', '.join(unlearned)}. "
            f"A sign error in a loss, a dead head or a broken evaluation shows this way; {paths.reports / 'index.html'} "
            "has their curves. To report without failing: dvc exp run -S report.require_learned.mini=false")


def cmd_weights(args) -> None:
    from mdeaux.model.weights import command

    command(args)


def cmd_params(args) -> None:
    import yaml

    paths, params = _context()
    print(yaml.safe_dump(params.model_dump(by_alias=True), sort_keys=False))


def cmd_store(args) -> None:
    from mdeaux.paths import Paths
    from mdeaux.runs import sync

    (sync.push if args.action == "push" else sync.pull)(Paths())


def cmd_ui(args) -> None:
    from mdeaux.runs.tracking import ui

    raise SystemExit(ui(*_context()))


def cmd_smoke(args) -> None:
    import subprocess

    from mdeaux.params import load_overlay, set_args
    from mdeaux.paths import Paths

    paths = Paths()
    cmd = ["dvc", "exp", "run", *set_args(load_overlay(paths.smoke)), *args.dvc_args]
    log.info("running: %s", " ".join(cmd))
    if subprocess.run(cmd, cwd=paths.root).returncode:
        raise SystemExit(f"the smoke experiment failed: {' '.join(cmd)}")


def cmd_bench(args) -> None:
    from mdeaux.bench import command

    command(*_context(), args)


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
    add("pretrain", cmd_pretrain, "(mini profile) pretrain the tiny ViT/14 on the training images (masked patch "
        "prediction) into models/tiny-pretrained/, the Hugging Face folder model.weights_dir loads")
    add("reference", cmd_reference, "score each depth dataset's reference predictor (a constant at the median training "
        "depth) the way runs are scored: results/reference.json, drawn in every table and figure")
    sp = add("runs", cmd_runs, "list the planned runs of all studies, which are done and which are missing")
    sp.add_argument("--write", action="store_true", help="also write runs/<id>/config.json for each planned run and runs/cohorts/<id>/members.json for each cohort")
    sp.add_argument("--cost", action="store_true", help="estimate GPU hours per study (runner.cost) instead of listing runs")
    sp = add("train", cmd_train, "plan the runs, train the missing ones with Snakemake, collect results/train.json")
    sp.add_argument("--cores", type=int, help="Snakemake cores (default: params runner.cores, or the profile's)")
    sp.add_argument("--profile", help="Snakemake profile: a folder or a name under pipeline/profiles/ (slurm: one SLURM "
                    "job per cohort, see docs/slurm.md; default: local cores)")
    sp = add("run-cohort", cmd_run_cohort, "train the missing runs of one planned cohort in one process, one backbone "
             "pass per batch (as each Snakemake job does; `mdeaux runs` lists the cohorts)")
    sp.add_argument("cohort_id", help="the cohort id (a folder under runs/cohorts/)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp = add("run-one", cmd_run_one, "train one planned run alone")
    sp.add_argument("run_id", help="the run id (a folder under runs/)")
    sp.add_argument("--force", action="store_true", help="train again even if metrics.json exists")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    add("report", cmd_report, "render reports/: every table and figure of the paper beside its numbers, index.html, metrics.json, curves for `dvc plots`")
    add("params", cmd_params, "print the resolved parameters of the active profile")
    sp = add("store", cmd_store, "share the run store (finished runs) through the DVC remote: push the runs it lacks, "
             "or pull the runs this store lacks (`make push` / `make pull` also move DVC's data)")
    sp.add_argument("action", choices=["push", "pull"])
    add("ui", cmd_ui, "start the MLflow UI on this repository's runs (host and port: params.yaml report.mlflow_ui)")
    sp = add("smoke", cmd_smoke, "run the whole DAG on the smoke world (pipeline/smoke.yaml: every reader, every study "
             "on NYUv2 with one value per axis, 4 steps) as a DVC experiment")
    sp.add_argument("dvc_args", nargs="*", help="more `dvc exp run` arguments, after --, e.g. -- -n my-smoke")
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
    sp.add_argument("--cohort", type=int, default=0, metavar="K",
                    help="also time K runs sharing the backbone passes (a cohort) against one run alone, per step and "
                    "per evaluation, and split a step into backbone and decoder time")
    sp.add_argument("--vmap", action="store_true",
                    help="with --cohort: also time the K decoders batched with torch.func.vmap against one after the other")
    sp.add_argument("--agreement", type=int, default=0, metavar="K",
                    help="mini: train K runs alone and as one cohort and print how far their metrics differ")
    sp.add_argument("--precision", choices=["fp32", "bf16"], help="precision of --agreement (default: the mini profile's)")
    sp.add_argument("--out", type=Path, help="also write the report to this file")
    sp = add("weights", cmd_weights, "download a backbone's pretrained weights (verified, pinned to a commit) "
             "into models/<name> and track them with DVC, for compute nodes without internet")
    from mdeaux.model.weights import add_arguments as _weights_arguments

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
    except (ParamsError, OSError, KeyError, ValueError, RuntimeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.filename:
            msg = f"{err.filename}: {err.strerror}; check that this path is writable and its disk has space"
        log.error("%s", msg)
        if args.verbose:
            raise
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
