"""The auxiliary tasks (paper §3 and Appendix C.1): the one place where a task is defined.

Each entry says how many channels its head outputs for a dataset, which loss trains it and what that
loss reads, which ``train`` parameters only it reads (the configs of other tasks drop them, so changing
one retrains only the runs that read it), and how the reports draw it. ``params.yaml`` is checked
against this registry, the planner builds configs from it, training calls its losses and the report
takes its colours and markers from it. To add a task: an entry here (and its loss in ``losses.py``);
see docs/extending.md.

The losses import torch when they are called, not when this module is imported: every pipeline
stage checks params.yaml against this registry, and most stages need no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASELINE = "baseline"  # alpha = 1: the DINOv2 recipe alone, no auxiliary step (paper §3)
# train parameters that every auxiliary task reads and the baseline does not
AUX_TRAIN_KEYS = ("aux_draw",)


@dataclass(frozen=True)
class Display:
    """How tables and figures show a task (these fields do not change run ids: runs/ids.py)."""

    title: str
    color: str
    marker: str


@dataclass(frozen=True)
class Task:
    name: str
    head: str  # "classes": one output channel per class of the auxiliary dataset; "rgb": 3 channels
    loss: Callable[..., Any]  # loss(out, image, label, spec, train) -> scalar tensor
    display: Display
    train_keys: tuple[str, ...] = ()  # train parameters only this task reads (beside AUX_TRAIN_KEYS)

    def head_channels(self, spec) -> int:
        """Output channels of this task's head on the auxiliary dataset ``spec``."""
        return 3 if self.head == "rgb" else spec.num_classes


def _mldc(out, image, label, spec, train):
    from mdeaux.training.losses import mldc_loss

    return mldc_loss(out, label, ignore_index=spec.ignore_index, average=train.mldc_average,
                     ignored_only=train.mldc_ignored_only)


def _segmentation(out, image, label, spec, train):
    from mdeaux.training.losses import seg_ce_loss

    return seg_ce_loss(out, label, ignore_index=spec.ignore_index)


def _reconstruction(out, image, label, spec, train):
    from mdeaux.training.losses import recon_loss

    return recon_loss(out, image)


def _slc(out, image, label, spec, train):
    from mdeaux.training.losses import slc_loss

    return slc_loss(out, label, ignore_index=spec.ignore_index)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        # paper §3: multi-label dense classification, BCE on the classes present in the crop (Table 3 "Classification")
        Task("mldc", "classes", _mldc, Display("Classification (MLDC)", "#1f77b4", "s"), train_keys=("mldc_average", "mldc_ignored_only")),
        # paper §3: semantic segmentation, per-pixel cross-entropy
        Task("segmentation", "classes", _segmentation, Display("Segmentation", "#2ca02c", "^")),
        # paper §3: image reconstruction, MSE against the normalised input image
        Task("reconstruction", "rgb", _reconstruction, Display("Reconstruction", "#9467bd", "D")),
        # paper Appendix C.1: single-label dense classification (the crop's dominant class)
        Task("slc", "classes", _slc, Display("Single-label classification", "#8c564b", "v")),
    )
}
BASELINE_DISPLAY = Display("DINOv2 baseline", "#d62728", "o")


def study_tasks() -> tuple[str, ...]:
    """What a study's ``tasks`` axis may name: the baseline and every auxiliary task."""
    return (BASELINE, *TASKS)


def get(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown auxiliary task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def display(name: str) -> Display:
    """The display of a task or of the baseline."""
    return BASELINE_DISPLAY if name == BASELINE else get(name).display


def train_keys_read(task: str) -> set[str]:
    """The task-only train parameters that a run of ``task`` reads."""
    return set() if task == BASELINE else {*AUX_TRAIN_KEYS, *get(task).train_keys}


def task_only_train_keys() -> set[str]:
    """Every train parameter that some tasks read and others do not."""
    return {*AUX_TRAIN_KEYS, *(k for t in TASKS.values() for k in t.train_keys)}
