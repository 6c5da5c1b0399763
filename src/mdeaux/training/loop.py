"""One run, top to bottom: build, resume, train with periodic evaluation, and return what it learned.

``train_run`` takes the run's typed configuration and the checkpoint file it may resume from; it
returns the metrics (paper Eq. 1: the best test values reached during training, and the final ones),
the per-step curves, the evaluations and the final model's predictions on a few test images. Writing
them into the run's folder is the caller's (``runs/execute.py``): training knows no run folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile
from mdeaux.paths import Paths
from mdeaux.training.checkpoint import (
    Preempted,
    StopSignal,
    load_checkpoint,
    save_checkpoint,
)
from mdeaux.training.config import RunConfig
from mdeaux.training.evaluate import Best, evaluate, predictions
from mdeaux.training.runtime import Runtime, barrier
from mdeaux.training.scheme import NonFiniteLoss, Trainer
from mdeaux.training.stream import step_data, step_loader

log = logging.getLogger(__name__)


class Logger(Protocol):
    """Where per-step values go as they come (the MLflow tracker, runs/tracking.py)."""

    def metrics(self, metrics: dict[str, float], step: int) -> None: ...


@dataclass
class Result:
    metrics: dict[str, Any]  # best (paper Eq. 1) and final test metrics, and the run's facts
    curves: list[dict[str, float]]  # losses, learning rates and beta1 at every step
    evals: list[dict[str, float]]  # the test metrics at every evaluation
    predictions: dict[str, np.ndarray] | None  # the final model on the first test images (evaluate.predictions)


def train_run(cfg: RunConfig, run_id: str, paths: Paths, checkpoint: Path, logger: Logger | None = None,
              progress: bool = True, rt: Runtime | None = None, n_predictions: int = 0) -> Result:
    """Train one run, resuming from ``checkpoint`` if it exists. Raises Preempted after writing the
    checkpoint when SIGTERM/SIGINT arrives, NonFiniteLoss (checkpoint untouched) on a nan/inf loss."""
    rt = rt or Runtime()
    train, depth_name = cfg.train, cfg.depth_dataset
    depth_spec, depth_aug = get_spec(depth_name), cfg.augment[depth_name]
    trainer = Trainer(cfg, rt)
    model = trainer.model
    logger = logger if rt.main else None

    # resume: the schedules and the data order are functions of the step number
    curves: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []
    best = Best.empty()
    start, seconds_before, saved = 0, 0.0, None
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint, model, trainer.opt_depth, trainer.opt_aux, run_id)
        start, curves, evals = state["next_step"], state["curves"], state["evals"]
        best = Best(state["best_values"], state["best_steps"])
        seconds_before, saved = state["train_seconds"], start
        log.info("%s: resuming from %s at step %d", cfg.label, checkpoint, start)

    test_data = PreparedDataset(paths.prepared_of(depth_name))
    eval_ids = SplitFile(paths.split_of(depth_name)).test
    if train.eval_max_images:
        eval_ids = eval_ids[: train.eval_max_images]
    total = train.iterations
    started = time.perf_counter()

    def log_state() -> dict:
        return {"run_id": run_id, "curves": curves, "evals": evals, "best_values": best.values,
                "best_steps": best.steps, "train_seconds": seconds_before + time.perf_counter() - started}

    bar = tqdm(total=total, initial=start, desc=cfg.label, disable=not (progress and rt.main), unit="it", dynamic_ncols=True)
    batches = step_loader(step_data(cfg, paths, rt.rank, rt.world), start, total, rt.workers, rt.device.type == "cuda")
    with StopSignal() as stop:
        for batch in batches:
            it = batch["step"]
            try:
                row = trainer.step(batch)  # the depth step, then the auxiliary step (training/scheme.py)
            except NonFiniteLoss as err:
                kept = (f"the last good checkpoint {checkpoint} (step {saved}) is kept" if saved is not None
                        else "no checkpoint was written yet")
                raise NonFiniteLoss(f"{cfg.label}: {err}; {kept}. Lower train.lr or check the data of this step") from None
            curves.append(row)
            if logger is not None:
                logger.metrics({k: v for k, v in row.items() if k != "step"}, step=it + 1)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss_depth']:.3f}")

            if (it + 1) % train.eval_every == 0 or it + 1 == total:
                metrics = evaluate(model, test_data, eval_ids, depth_spec, train.flip_tta, depth_aug, rt, train.precision)
                best.update(metrics, it + 1)
                evals.append({"step": it + 1, **metrics})
                if logger is not None:
                    logger.metrics({f"test.{k}": v for k, v in metrics.items()}, step=it + 1)
                log.info("%s step %d: abs_rel %.4f rmse %.4f a1 %.4f", cfg.label, it + 1, metrics["abs_rel"], metrics["rmse"], metrics["a1"])

            preempted = stop.requested(rt)
            if it + 1 < total and ((it + 1) % train.checkpoint_every == 0 or preempted):
                if rt.main:
                    save_checkpoint(checkpoint, model, trainer.opt_depth, trainer.opt_aux, it + 1, log_state())
                saved = it + 1
                barrier(rt)
                if preempted:
                    bar.close()
                    raise Preempted(f"{cfg.label}: stopped by signal {stop.received} after step {it + 1}; checkpoint "
                                    f"{checkpoint} written: run the same command again to resume")
    bar.close()

    metrics = {
        "run_id": run_id,
        "label": cfg.label,
        "iterations": total,
        "train_seconds": round(log_state()["train_seconds"], 2),
        "best": best.values,  # paper Eq. 1: the best value reached during training
        "best_step": best.steps,
        "final": {k: v for k, v in evals[-1].items() if k != "step"},
        "test_images": len(eval_ids),
        "processes": rt.world,
    }
    shown = None
    if rt.main and n_predictions:
        shown = predictions(model, test_data, eval_ids[:n_predictions], depth_spec, depth_aug, rt, train.precision)
    return Result(metrics, curves, evals, shown)
