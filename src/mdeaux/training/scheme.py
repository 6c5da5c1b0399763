"""The paper's training scheme (Eq. 4-5): one global step is a depth step, then an auxiliary step.

Both steps update the shared DPT decoder theta, each through its own AdamW optimizer with its own copy
of DINOv2's learning-rate schedule:

    depth step     (Eq. 4)   theta <- theta - alpha       * eta * grad L_D     phi (depth head) at eta_h
    auxiliary step (Eq. 5)   theta <- theta - (1 - alpha) * eta * grad L_A     psi (aux head)   at eta_h

alpha = 1 is the DINOv2 baseline: no auxiliary step. Ablations (paper §5.1, Fig. 5): the baseline
with its decoder LR scaled by gamma, and the beta variant (depth steps at eta, auxiliary steps at
beta * eta). ``decoder_lrs`` is where alpha, beta and gamma act; ``Trainer.step`` is one global step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.model.depth_aux import build_model, frozen_backbone
from mdeaux.training.config import RunConfig
from mdeaux.training.losses import DepthLoss, resize_to
from mdeaux.training.runtime import Runtime, gather
from mdeaux.training.schedule import apply_schedule


class NonFiniteLoss(RuntimeError):
    """A loss or gradient norm was nan or inf: the run stops, its last checkpoint stays as it was."""


def decoder_lrs(cfg: RunConfig) -> tuple[float, float | None]:
    """Base decoder LR of the depth and of the auxiliary optimizer (None: no auxiliary step).

    alpha (paper Eq. 4-5): alpha * eta and (1 - alpha) * eta; the baseline (alpha = 1): gamma * eta
    (paper §5.1, Fig. 5 left); the beta variant (``beta`` set): eta and beta * eta (Fig. 5 right).
    """
    eta = cfg.train.lr
    if cfg.baseline:
        return (cfg.gamma or 1.0) * eta, None
    if cfg.beta is not None:
        return eta, cfg.beta * eta
    return cfg.alpha * eta, (1.0 - cfg.alpha) * eta


def make_optimizer(decoder_params, head_params, decoder_lr: float, head_lr: float, train,
                   fused: bool = False) -> torch.optim.AdamW:
    """AdamW with the decoder group first; each group remembers its base LR as ``initial_lr``.
    ``fused``: PyTorch's fused CUDA kernel (same update, one launch)."""
    groups = [
        {"params": list(decoder_params), "lr": decoder_lr, "initial_lr": decoder_lr, "name": "decoder"},
        {"params": list(head_params), "lr": head_lr, "initial_lr": head_lr, "name": "head"},
    ]
    return torch.optim.AdamW(groups, lr=head_lr, betas=tuple(train.betas), weight_decay=train.weight_decay,
                             fused=fused or None)


def build_optimizers(model, cfg: RunConfig, fused: bool = False) -> tuple[torch.optim.AdamW, torch.optim.AdamW | None]:
    """The duplicated optimizer (paper §4): decoder + depth head, and decoder + auxiliary heads."""
    eta_h = cfg.train.head_lr
    lr_depth, lr_aux = decoder_lrs(cfg)
    opt_depth = make_optimizer(model.decoder.parameters(), model.depth_head.parameters(), lr_depth, eta_h, cfg.train, fused)
    if lr_aux is None:
        return opt_depth, None
    opt_aux = make_optimizer(model.decoder.parameters(), model.aux_heads.parameters(), lr_aux, eta_h, cfg.train, fused)
    return opt_depth, opt_aux


def schedule(optimizer, it: int, train) -> None:
    """DINOv2's schedule at iteration ``it``, applied to every group's ``initial_lr``."""
    apply_schedule(optimizer, it, train.iterations, train.warmup_iters, warmup_ratio=train.warmup_ratio,
                   min_lr_ratio=train.min_lr_ratio, one_cycle=train.one_cycle_momentum)


def lr_of(optimizer, group: str) -> float:
    return next(g["lr"] for g in optimizer.param_groups if g["name"] == group)


def update(optimizer, loss: torch.Tensor, clip: float, what: str, it: int) -> float:
    """Backward, clip (DINOv2 NYU DPT config: grad_clip max_norm=35) and update; a nan/inf loss or
    gradient norm raises NonFiniteLoss before anything is updated. One host sync per call."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    value, norm = torch.stack([loss.detach().float(), norm.detach().float().to(loss.device)]).tolist()
    for name, v in (("loss", value), ("gradient norm", norm)):
        if not math.isfinite(v):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"{what} {name} is {v} at iteration {it}: stopping (no update was applied)")
    optimizer.step()
    return value


def build_run_model(cfg: RunConfig, backbone=None):
    """Frozen backbone, shared decoder, depth head and one head per auxiliary dataset (decoder and
    heads initialised from the run's seed). ``backbone``: one already built from the same model
    settings (a cohort shares it; model/depth_aux.py ``frozen_backbone``)."""
    model = cfg.model.model_dump()
    backbone = backbone or frozen_backbone(model)
    torch.manual_seed(cfg.seed)
    heads = {name: cfg.aux_task.head_channels(get_spec(name)) for name in cfg.aux_datasets} if cfg.aux_task else {}
    return build_model({**model, "aux_heads": heads}, backbone)


def backbone_features(backbone, x: torch.Tensor, rt: Runtime, precision: str) -> list:
    """The frozen backbone's output on an image batch: computed once per batch, read by every run of
    a cohort (``Trainer.step_on``) or by the one run of ``Trainer.step``."""
    with rt.autocast(precision):
        return backbone(x)


class Trainer:
    """The model, its two optimizers and losses, and one global step (shared with ``mdeaux bench``)."""

    def __init__(self, cfg: RunConfig, rt: Runtime, model=None):
        self.cfg, self.train, self.rt = cfg, cfg.train, rt
        if rt.device.type == "cuda" and self.train.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = (model if model is not None else build_run_model(cfg)).to(rt.device)
        self.model.train()
        self.opt_depth, self.opt_aux = build_optimizers(self.model, cfg, fused=rt.device.type == "cuda")
        if rt.compile:
            self.model.decoder.compile()
        self.net = self.model
        if rt.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                find_unused_parameters=True, broadcast_buffers=False,  # each step uses one head only
            )
        self.depth_loss = DepthLoss(self.train)

    def to_device(self, pair) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(t.to(self.rt.device, non_blocking=True) for t in pair)

    def step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One global step of this run alone on a ``StepData`` item (training/stream.py): the backbone
        passes, then ``step_on``."""
        x, y = self.to_device(batch["depth"])
        aux = None
        if self.opt_aux is not None:
            name, pair = batch["aux"][0]
            xa, ya = self.to_device(pair)
            aux = (name, backbone_features(self.model.backbone, xa, self.rt, self.train.precision), xa, ya)
        feats = backbone_features(self.model.backbone, x, self.rt, self.train.precision)
        return self.step_on(batch["step"], (feats, y), aux)

    def step_on(self, it: int, depth: tuple[list, torch.Tensor],
                aux: tuple[str, list, torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
        """Global step ``it`` from the backbone's output: the depth step on ``depth`` (features, target),
        then the auxiliary step on ``aux`` (dataset name, features, image, target; None for the baseline)."""
        train, rt = self.train, self.rt
        schedule(self.opt_depth, it, train)
        if self.opt_aux is not None:
            schedule(self.opt_aux, it, train)
        row: dict[str, float] = {"step": it + 1}

        # depth step, Eq. 4: theta <- theta - alpha * eta * grad L_D (opt_depth: decoder at alpha * eta, depth head)
        feats, y = depth
        with rt.autocast(train.precision):
            pred = self.net(task="depth", feats=feats)
        pred = gather(resize_to(pred.float(), y.shape[-2:]), rt)
        row["loss_depth"] = update(self.opt_depth, self.depth_loss(pred, gather(y, rt), it), train.grad_clip, "depth", it)
        row["lr_decoder_depth"] = lr_of(self.opt_depth, "decoder")
        row["lr_head_depth"] = lr_of(self.opt_depth, "head")
        row["beta1"] = self.opt_depth.param_groups[0]["betas"][0]

        # auxiliary step, Eq. 5: theta <- theta - (1 - alpha) * eta * grad L_A (opt_aux: decoder at (1 - alpha) * eta, aux head)
        if self.opt_aux is not None:
            name, feats, xa, ya = aux
            with rt.autocast(train.precision):
                out = self.net(task=name, feats=feats)
            loss = self.cfg.aux_task.loss(gather(out.float(), rt), gather(xa, rt), gather(ya, rt), get_spec(name), train)
            row["loss_aux"] = update(self.opt_aux, loss, train.grad_clip, f"auxiliary ({name})", it)
            row["lr_decoder_aux"] = lr_of(self.opt_aux, "decoder")
            row["lr_head_aux"] = lr_of(self.opt_aux, "head")
        return row
