"""The typed configuration of one run: everything that decides its numbers, and nothing else.

The planner (``runs/plan.py``) builds one ``RunConfig`` per run from params.yaml; training takes it
as it is; ``runs/<id>/config.json`` stores it. It is frozen, and its canonical JSON is part of the
run's id (``runs/ids.py``). Values that a run does not read are None (a baseline has no auxiliary
settings), so changing them gives no other run a new id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mdeaux.params import DepthAugment, Model, SegAugment, Strict, Train
from mdeaux.training.tasks import BASELINE, get


class RunTrain(Train):
    """params.yaml ``train`` as one run reads it: the task-only keys are None where its task does not
    read them (training/tasks.py)."""

    mldc_average: Literal["logits", "probs", "sigmoid"] | None = None
    mldc_ignored_only: Literal["skip", "absent"] | None = None
    aux_draw: Literal["cycle", "random", "proportional"] | None = None


class RunConfig(Strict):
    profile: Literal["mini", "paper"]
    depth_dataset: str
    task: str  # "baseline" or a name in training/tasks.py
    aux_set: str | None  # the study's auxiliary entry (e.g. mix6, or one dataset); None for the baseline
    aux_datasets: list[str]  # the auxiliary datasets it expands to, each with its own head
    # alpha (paper Eq. 4-5): the baseline is alpha = 1; None in the beta variant
    alpha: float | None = Field(ge=0.0, le=1.0)
    gamma: float | None = None  # baseline decoder LR factor (paper §5.1, Fig. 5 left); None = 1
    beta: float | None = None  # beta variant: depth steps at eta, auxiliary steps at beta * eta (Fig. 5 right)
    seed: int = Field(ge=0)
    fraction: float = Field(gt=0.0, le=1.0)  # of the depth training set (paper Fig. 4)
    model: Model
    train: RunTrain
    augment: dict[str, DepthAugment | SegAugment]  # the depth dataset's and each auxiliary dataset's recipe

    @property
    def baseline(self) -> bool:
        return self.task == BASELINE

    @property
    def aux_task(self):
        """The auxiliary task's registry entry (training/tasks.py); None for the baseline."""
        return None if self.baseline else get(self.task)

    @property
    def label(self) -> str:
        """A readable name: depth dataset, task and auxiliary set, alpha/beta/gamma, fraction, seed."""
        task = BASELINE if self.baseline else f"{self.task}+{self.aux_set or '+'.join(self.aux_datasets)}"
        scale = f"b{self.beta:g}" if self.beta is not None else f"a{self.alpha:g}"
        if self.gamma is not None:
            scale += f"g{self.gamma:g}"
        frac = "" if self.fraction == 1.0 else f"/f{self.fraction:g}"
        m = self.model
        da = "/depth-anything" if m.backbone.startswith("depth_anything") or m.decoder_type == "depth_anything" else ""
        return f"{self.depth_dataset}{da}/{task}/{scale}{frac}/s{self.seed}"
