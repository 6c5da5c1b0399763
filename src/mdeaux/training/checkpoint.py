"""Checkpoints: everything a resumed run needs to continue bit for bit, and the stop signal.

A checkpoint holds the decoder and head weights (the frozen backbone is rebuilt from its own weights),
both optimizers, the next step (the schedules and the data order are functions of it), the RNG states
and what the run has logged so far. It is written atomically every ``train.checkpoint_every`` steps
and when SIGTERM/SIGINT arrives, and read back with ``weights_only=True`` (tensors and plain
containers only).
"""

from __future__ import annotations

import pickle
import signal
from pathlib import Path

import torch

from mdeaux import atomic
from mdeaux.training.runtime import Runtime, any_process

CHECKPOINT_FORMAT = 1


class Preempted(RuntimeError):
    """SIGTERM/SIGINT arrived: a checkpoint of the last finished step was written; rerun to resume."""

    exit_code = 143  # 128 + SIGTERM, what SLURM and shells expect from a terminated job


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Decoder and head weights; the frozen backbone is rebuilt from its own weights."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def save_checkpoint(path: Path, model, opt_depth, opt_aux, next_step: int, log_state: dict) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "next_step": next_step,
        "model": trainable_state(model),
        "opt_depth": opt_depth.state_dict(),
        "opt_aux": None if opt_aux is None else opt_aux.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        **log_state,
    }
    try:
        with atomic.atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as "[enforce fail at inline_container.cc]"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"{path}: could not write the checkpoint ({reason}); free space on its disk (or set "
                           "MDEAUX_STORE to a folder on another), then run the same command again: training "
                           "resumes from the last checkpoint written") from err


def load_checkpoint(path: Path, model, opt_depth, opt_aux, run_id: str) -> dict:
    """Restore a checkpoint in place (``weights_only=True``: tensors and plain containers only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's own text advises weights_only=False: not for a file in our store
        raise RuntimeError(f"{path}: not a checkpoint written by mdeaux: it holds objects other than tensors and plain "
                           f"containers, so it is not loaded (that could run code); delete it to restart run {run_id} "
                           f"from scratch") from err
    except Exception as err:
        raise RuntimeError(f"{path}: cannot read the checkpoint ({err}); delete it to restart run {run_id} from scratch") from err
    if state.get("format") != CHECKPOINT_FORMAT or state.get("run_id") != run_id:
        raise RuntimeError(
            f"{path}: checkpoint of format {state.get('format')} for run {state.get('run_id')}, expected format "
            f"{CHECKPOINT_FORMAT} for run {run_id}; delete it to restart from scratch"
        )
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise RuntimeError(f"{path}: checkpoint does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    opt_depth.load_state_dict(state["opt_depth"])
    if opt_aux is not None:
        opt_aux.load_state_dict(state["opt_aux"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


class StopSignal:
    """Turns SIGTERM (SLURM preemption, ``scancel``) and SIGINT into a flag checked after each step."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handlers
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def requested(self, rt: Runtime) -> bool:
        """Whether any process received a signal (all stop together)."""
        return any_process(self.received is not None, rt)
