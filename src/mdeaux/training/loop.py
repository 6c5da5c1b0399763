"""Training, top to bottom: build, resume, train with periodic evaluation, and return what was learned.

``train_cohort`` trains runs that read the same batches (training/cohort.py) in one process: per
global step one backbone pass of the depth batch and one of each distinct auxiliary batch, then each
run's own step (training/scheme.py); at each evaluation one backbone pass per test image for all of
them. A run alone is a cohort of one (``train_run``). Each run resumes from its own checkpoint and
returns its metrics (paper Eq. 1: the best test values reached during training, and the final ones),
per-step curves, evaluations and the final model's predictions on a few test images. Writing them into
the run's folder is the caller's (``runs/execute.py``): training knows no run folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile
from mdeaux.model.depth_aux import frozen_backbone
from mdeaux.paths import Paths
from mdeaux.training.checkpoint import Preempted, StopSignal, load_checkpoint, save_checkpoint, trainable_state
from mdeaux.training.cohort import cohort_key
from mdeaux.training.config import RunConfig
from mdeaux.training.evaluate import Best, evaluate, periodic_subset, predictions, scored_ids
from mdeaux.training.runtime import Runtime, barrier
from mdeaux.training.scheme import NonFiniteLoss, Trainer, backbone_features, build_run_model
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


@dataclass
class Member:
    """One run of a cohort: what it is, where it checkpoints, where its values go."""

    cfg: RunConfig
    run_id: str
    checkpoint: Path
    logger: Logger | None = None


@dataclass
class _Progress:
    """A member's training state: its trainer, what it has logged, from which step it continues."""

    member: Member
    trainer: Trainer
    aux: int | None  # index of its auxiliary stream in each step's batch (None: baseline)
    start: int = 0
    saved: int | None = None
    seconds_before: float = 0.0
    curves: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    best: Best = field(default_factory=Best.empty)
    best_state: dict[str, Any] | None = None  # decoder and heads at the best subset AbsRel (periodic subset only)
    error: BaseException | None = None

    @property
    def label(self) -> str:
        return self.member.cfg.label

    def resume(self) -> None:
        m, t = self.member, self.trainer
        if not m.checkpoint.is_file():
            return
        state = load_checkpoint(m.checkpoint, t.model, t.opt_depth, t.opt_aux, m.run_id)
        self.start = self.saved = state["next_step"]
        self.curves, self.evals = state["curves"], state["evals"]
        self.best = Best(state["best_values"], state["best_steps"])
        self.seconds_before = state["train_seconds"]
        self.best_state = state.get("best_state")
        log.info("%s: resuming from %s at step %d", self.label, m.checkpoint, self.start)

    def log_state(self, seconds: float) -> dict:
        return {"run_id": self.member.run_id, "curves": self.curves, "evals": self.evals, "best_values": self.best.values,
                "best_steps": self.best.steps, "train_seconds": self.seconds_before + seconds, "best_state": self.best_state}

    def keep_if_best(self, it: int) -> None:
        """Snapshot the decoder and heads when step ``it`` reached the best AbsRel so far."""
        if self.best.steps.get("abs_rel") == it:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in trainable_state(self.trainer.model).items()}

    def failed(self, err: NonFiniteLoss) -> None:
        kept = (f"the last good checkpoint {self.member.checkpoint} (step {self.saved}) is kept" if self.saved is not None
                else "no checkpoint was written yet")
        self.error = NonFiniteLoss(f"{self.label}: {err}; {kept}. Lower train.lr or check the data of this step")
        log.error("%s", self.error)


def train_cohort(members: list[Member], paths: Paths, progress: bool = True, rt: Runtime | None = None,
                 n_predictions: int = 0) -> dict[str, Result | NonFiniteLoss]:
    """Train runs that share ``cohort_key`` together, each resuming from its checkpoint if it exists.

    Returns, per run id, its Result, or the NonFiniteLoss that stopped it (its checkpoint untouched;
    the other runs go on). Raises Preempted after writing every unfinished run's checkpoint when
    SIGTERM/SIGINT arrives.
    """
    rt = rt or Runtime()
    cfg = members[0].cfg
    strangers = [m.cfg.label for m in members if cohort_key(m.cfg) != cohort_key(cfg)]
    if strangers:
        raise ValueError(f"{', '.join(strangers)} do not read the batches of {cfg.label}: they cannot share a cohort "
                         "(training/cohort.py cohort_key)")
    train, depth_name = cfg.train, cfg.depth_dataset
    depth_spec, depth_aug = get_spec(depth_name), cfg.augment[depth_name]
    backbone = frozen_backbone(cfg.model.model_dump(), paths.root).to(rt.device)  # one for the whole cohort
    data, aux_index = step_data([m.cfg for m in members], paths, rt.rank, rt.world)
    runs = [_Progress(m, Trainer(m.cfg, rt, build_run_model(m.cfg, backbone)), aux)
            for m, aux in zip(members, aux_index)]
    for p in runs:
        p.resume()
        if not rt.main:
            p.member.logger = None

    test_data = PreparedDataset(paths.prepared_of(depth_name))
    eval_ids = scored_ids(SplitFile(paths.split_of(depth_name)), train.eval_max_images)
    # periodic evaluations on a fixed subset of a very large test split, the reported ones in full (params.yaml)
    periodic_ids = periodic_subset(eval_ids, train.periodic_eval_images, depth_name)
    subset = len(periodic_ids) < len(eval_ids)
    total, first = train.iterations, min(p.start for p in runs)
    started = time.perf_counter()

    name = cfg.label if len(runs) == 1 else f"{len(runs)} runs of {depth_name}/s{cfg.seed}"
    bar = tqdm(total=total, initial=first, desc=name, disable=not (progress and rt.main), unit="it", dynamic_ncols=True)
    batches = step_loader(data, first, total, rt.workers, rt.device.type == "cuda")
    with StopSignal() as stop:
        for batch in batches:
            it = batch["step"]
            active = [p for p in runs if p.start <= it and p.error is None]
            if not active:
                break
            x, y = active[0].trainer.to_device(batch["depth"])
            depth = (backbone_features(backbone, x, rt, train.precision), y)  # one backbone pass for all runs
            aux_batches: dict[int, tuple] = {}
            for p in active:
                aux = None
                if p.aux is not None:
                    if p.aux not in aux_batches:  # one backbone pass per distinct auxiliary batch
                        aux_name, pair = batch["aux"][p.aux]
                        xa, ya = p.trainer.to_device(pair)
                        aux_batches[p.aux] = (aux_name, backbone_features(backbone, xa, rt, train.precision), xa, ya)
                    aux = aux_batches[p.aux]
                try:
                    row = p.trainer.step_on(it, depth, aux)  # the depth step, then the auxiliary step
                except NonFiniteLoss as err:
                    p.failed(err)
                    continue
                p.curves.append(row)
                if p.member.logger is not None:
                    p.member.logger.metrics({k: v for k, v in row.items() if k != "step"}, step=it + 1)
            active = [p for p in active if p.error is None]
            bar.update(1)
            if len(active) == 1:
                bar.set_postfix(loss=f"{active[0].curves[-1]['loss_depth']:.3f}")

            if active and ((it + 1) % train.eval_every == 0 or it + 1 == total):
                scores = evaluate([p.trainer.model for p in active], test_data, periodic_ids, depth_spec, train.flip_tta,
                                  depth_aug, rt, train.precision)
                for p, metrics in zip(active, scores):
                    p.best.update(metrics, it + 1)
                    if subset:
                        p.keep_if_best(it + 1)
                    p.evals.append({"step": it + 1, **metrics})
                    if p.member.logger is not None:
                        p.member.logger.metrics({f"test.{k}": v for k, v in metrics.items()}, step=it + 1)
                    log.info("%s step %d: abs_rel %.4f rmse %.4f a1 %.4f", p.label, it + 1, metrics["abs_rel"],
                             metrics["rmse"], metrics["a1"])

            preempted = stop.requested(rt)
            if it + 1 < total and ((it + 1) % train.checkpoint_every == 0 or preempted):
                for p in active:
                    if rt.main:
                        t = p.trainer
                        save_checkpoint(p.member.checkpoint, t.model, t.opt_depth, t.opt_aux, it + 1,
                                        p.log_state(time.perf_counter() - started))
                    p.saved = it + 1
                barrier(rt)
                if preempted:
                    bar.close()
                    where = ", ".join(str(p.member.checkpoint) for p in active)
                    raise Preempted(f"{name}: stopped by signal {stop.received} after step {it + 1}; checkpoint(s) "
                                    f"{where} written: run the same command again to resume")
    bar.close()

    done = [p for p in runs if p.error is None]
    shown = [None] * len(done)
    if rt.main and n_predictions and done:
        shown = predictions([p.trainer.model for p in done], test_data, eval_ids[:n_predictions], depth_spec, depth_aug,
                            rt, train.precision)
    reported = [(p.best.values, p.best.steps, {k: v for k, v in p.evals[-1].items() if k != "step"}) for p in done]
    if subset and done:
        reported = _full_split(done, test_data, eval_ids, depth_spec, train.flip_tta, depth_aug, rt, train.precision)
    out: dict[str, Result | NonFiniteLoss] = {p.member.run_id: p.error for p in runs if p.error is not None}
    seconds = time.perf_counter() - started
    for p, arrays, (best, best_step, final) in zip(done, shown, reported):
        metrics = {
            "run_id": p.member.run_id,
            "label": p.label,
            "iterations": total,
            "train_seconds": round(p.log_state(seconds)["train_seconds"], 2),  # wall time, shared with its cohort
            "best": best,  # paper Eq. 1: the best value reached during training
            "best_step": best_step,
            "final": final,
            "test_images": len(eval_ids),
            "processes": rt.world,
        }
        if subset:  # the periodic evaluations' own best values, on the subset
            metrics["periodic"] = {"test_images": len(periodic_ids), "best": p.best.values, "best_step": p.best.steps}
        out[p.member.run_id] = Result(metrics, p.curves, p.evals, arrays)
    return out


def _full_split(runs: list[_Progress], data, ids, spec, flip, aug, rt, precision) -> list[tuple[dict, dict, dict]]:
    """(best, best step, final) of each run on the whole test split, when the periodic evaluations
    scored a subset: the final model, then the snapshot with the best subset AbsRel, whose metrics are
    reported as the run's best (one backbone pass per image for the whole cohort, each time)."""
    finals = evaluate([p.trainer.model for p in runs], data, ids, spec, flip, aug, rt, precision)
    for p in runs:
        if p.best_state is not None:
            p.trainer.model.load_state_dict(p.best_state, strict=False)
    bests = evaluate([p.trainer.model for p in runs], data, ids, spec, flip, aug, rt, precision)
    return [(best, {k: p.best.steps.get("abs_rel", len(p.curves)) for k in best}, final)
            for p, best, final in zip(runs, bests, finals)]


def train_run(cfg: RunConfig, run_id: str, paths: Paths, checkpoint: Path, logger: Logger | None = None,
              progress: bool = True, rt: Runtime | None = None, n_predictions: int = 0) -> Result:
    """Train one run alone (a cohort of one), resuming from ``checkpoint`` if it exists. Raises
    Preempted after writing the checkpoint when SIGTERM/SIGINT arrives, NonFiniteLoss (checkpoint
    untouched) on a nan/inf loss."""
    result = train_cohort([Member(cfg, run_id, checkpoint, logger)], paths, progress, rt, n_predictions)[run_id]
    if isinstance(result, BaseException):
        raise result
    return result
