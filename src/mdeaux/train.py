"""Training of one run: the alternating depth / auxiliary scheme of the paper (Eq. 4-5).

One global step is a depth step followed by an auxiliary step. Both steps update the shared DPT
decoder, each through its own AdamW optimizer and its own copy of DINOv2's LR schedule: the decoder's
learning rate is alpha * eta in the depth optimizer and (1 - alpha) * eta in the auxiliary one; the
heads use their own learning rate eta_h in both (paper §3 and §4 "Training details"). alpha = 1 is
the DINOv2 baseline and takes no auxiliary step. Ablations (paper §5.1, Fig. 5): the baseline with its
decoder LR scaled by gamma, and the beta variant (depth steps at eta, auxiliary steps at beta * eta).
The test metrics are evaluated every ``eval_every`` iterations; the best value reached during training
(paper Eq. 1) and the final value are recorded.

Every global step is a pure function of the step number and the training state: the samples of step
``s`` and their augmentation draws come from seeds derived from (run seed, dataset, sample number), so
a run resumed from a checkpoint, a run with more loader workers and a run split over several
processes (``torchrun``, DistributedDataParallel) all see the same global batches.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from mdeaux import atomic
from mdeaux.datasets.registry import get as get_spec
from mdeaux.losses import GradientLoss, SigLoss, mldc_loss, recon_loss, seg_ce_loss, slc_loss
from mdeaux.metrics import METRICS, aggregate, evaluate_depth, is_better
from mdeaux.model import build_model
from mdeaux.prepare import PreparedDataset
from mdeaux.runs import Run
from mdeaux.schedule import apply_schedule
from mdeaux.split import fraction_key
from mdeaux.transforms import DepthTrainTransform, SegTrainTransform, dataset_view, normalize

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
PREDICTIONS = "predictions.npz"
CHECKPOINT_FORMAT = 1
AUX_TASKS = ("mldc", "segmentation", "reconstruction", "slc")


class NonFiniteLoss(RuntimeError):
    """A loss or gradient norm was nan or inf: the run stops, its last checkpoint stays as it was."""


class Preempted(RuntimeError):
    """SIGTERM/SIGINT arrived: a checkpoint of the last finished step was written; rerun to resume."""

    exit_code = 143  # 128 + SIGTERM, what SLURM and shells expect from a terminated job


# ------------------------------------------------------------------------------------------------
# data: every sample of every global step is a pure function of (seed, dataset, sample number)
# ------------------------------------------------------------------------------------------------
def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


class SampleSource:
    """One dataset's endless training stream: sample ``k`` is epoch ``k // N``'s ``k % N``-th id of a
    seeded permutation, augmented with its own seeded generator (so any sample can be drawn alone)."""

    def __init__(self, data: PreparedDataset, ids: list[str], kind: str, transform, seed: int, name: str):
        if not ids:
            raise ValueError(f"{name}: no training samples to draw from")
        self.data, self.ids, self.kind, self.transform = data, list(ids), kind, transform
        self.seed, self.name, self.key = int(seed), name, _name_key(name)
        self._epoch: tuple[int, np.ndarray] | None = None

    def sample_id(self, k: int) -> str:
        epoch, pos = divmod(k, len(self.ids))
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, np.random.default_rng([self.seed, self.key, 0, epoch]).permutation(len(self.ids)))
        return self.ids[int(self._epoch[1][pos])]

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.data.decode(self.sample_id(k))
        target = sample["depth"] if self.kind == "depth" else sample["label"]
        image, target = self.transform(sample["image"], target, np.random.default_rng([self.seed, self.key, 1, k]))
        return normalize(image), target

    def batch(self, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = zip(*(self.sample(k) for k in indices))
        x = torch.from_numpy(np.stack(images))
        if self.kind == "depth":
            return x, torch.from_numpy(np.stack(targets).astype(np.float32))[:, None]
        return x, torch.from_numpy(np.stack(targets).astype(np.int64))


def aux_plan(names: list[str], sizes: list[int], total: int, mode: str, seed: int) -> list[tuple[str, int]]:
    """For each global step, the auxiliary dataset it draws from and how many draws that dataset had
    before. ``cycle``: one dataset per step, in turn; ``random``: a uniformly drawn dataset per step;
    ``proportional``: drawn with probability proportional to the training-set size (paper silent on
    how MIX6 is sampled, method.md §8.4)."""
    if not names:
        return []
    if mode == "cycle":
        choice = np.arange(total) % len(names)
    elif mode in ("random", "proportional"):
        p = None if mode == "random" else np.asarray(sizes, np.float64) / float(sum(sizes))
        choice = np.random.default_rng([int(seed), 2]).choice(len(names), size=total, p=p)
    else:
        raise ValueError(f"unknown aux_draw {mode!r}; expected cycle, random or proportional")
    seen = [0] * len(names)
    out = []
    for c in choice.tolist():
        out.append((names[c], seen[c]))
        seen[c] += 1
    return out


class StepData(torch.utils.data.Dataset):
    """Item ``s`` = this process's share of global step ``s``: its depth batch and auxiliary batch."""

    def __init__(self, depth: SampleSource, aux: dict[str, SampleSource], plan: list[tuple[str, int]],
                 batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of processes ({world})")
        self.depth, self.aux, self.plan = depth, aux, plan
        self.batch, self.local = batch_size, batch_size // world
        self.rank = rank

    def __len__(self) -> int:
        return len(self.plan) if self.plan else 10**12

    def _share(self, draw: int) -> range:
        start = draw * self.batch + self.rank * self.local
        return range(start, start + self.local)

    def __getitem__(self, s: int) -> dict[str, Any]:
        item: dict[str, Any] = {"step": s, "depth": self.depth.batch(self._share(s))}
        if self.plan:
            name, draw = self.plan[s]
            item["aux_name"], item["aux"] = name, self.aux[name].batch(self._share(draw))
        return item


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def step_loader(data: StepData, start: int, total: int, workers: int, pin: bool = False) -> torch.utils.data.DataLoader:
    """Batches of steps ``start .. total - 1`` in order, prepared by ``workers`` background processes
    (``pin``: page-locked, for asynchronous copies to a GPU)."""
    return torch.utils.data.DataLoader(
        data,
        batch_size=None,
        sampler=range(start, total),
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_worker_init if workers else None,
        pin_memory=pin,
    )


def depth_transform(aug: dict) -> DepthTrainTransform:
    return DepthTrainTransform(
        crop_size=tuple(aug["crop_size"]),
        nyu_crop=aug["nyu_crop"],
        kb_crop=aug["kb_crop"],
        resize_to=aug["resize_to"],
        rotate_prob=aug["rotate_prob"],
        rotate_degree=aug["rotate_degree"],
        flip_prob=aug["flip_prob"],
        color_prob=aug["color_prob"],
        gamma_range=tuple(aug["gamma_range"]),
        brightness_range=tuple(aug["brightness_range"]),
        color_range=tuple(aug["color_range"]),
    )


def seg_transform(aug: dict) -> SegTrainTransform:
    return SegTrainTransform(
        img_scale=tuple(aug["img_scale"]),
        ratio_range=tuple(aug["ratio_range"]),
        crop_size=tuple(aug["crop_size"]),
        cat_max_ratio=aug["cat_max_ratio"],
        flip_prob=aug["flip_prob"],
        photometric=aug["photometric"],
    )


def train_ids(split_file: Path, fraction: float) -> list[str]:
    split = json.loads(split_file.read_text())
    key = fraction_key(fraction)
    if key not in split["fractions"]:
        raise KeyError(f"{split_file}: no training fraction {key} (has {sorted(split['fractions'])}); add it to split.fractions")
    return list(split["fractions"][key])


def test_ids(split_file: Path) -> list[str]:
    return list(json.loads(split_file.read_text())["test"])


def step_data(cfg: dict, paths, rank: int = 0, world: int = 1) -> StepData:
    """The run's global steps, read from the prepared shards and split files of ``paths``."""
    train, depth_name = cfg["train"], cfg["depth_dataset"]
    depth = SampleSource(
        PreparedDataset(paths.prepared_of(depth_name)),
        train_ids(paths.split_of(depth_name), cfg["fraction"]),
        "depth",
        depth_transform(cfg["augment"][depth_name]),
        cfg["seed"],
        depth_name,
    )
    aux = {
        name: SampleSource(
            PreparedDataset(paths.prepared_of(name)),
            train_ids(paths.split_of(name), 1.0),
            "segmentation",
            seg_transform(cfg["augment"][name]),
            cfg["seed"],
            name,
        )
        for name in cfg["aux_datasets"]
    }
    plan = []
    if aux:
        plan = aux_plan(list(aux), [len(s.ids) for s in aux.values()], train["iterations"], train["aux_draw"], cfg["seed"])
    return StepData(depth, aux, plan, train["batch_size"], rank, world)


# ------------------------------------------------------------------------------------------------
# processes and devices: one process, or torchrun's DistributedDataParallel group
# ------------------------------------------------------------------------------------------------
@dataclass
class Runtime:
    """Where a run executes: device, process rank / count (torchrun), loader workers, compilation."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world: int = 1
    workers: int = 0
    compile: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto", workers: int = 0, compile: bool = False) -> Runtime:
        """Read torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); start the process group if > 1."""
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("runner.device is 'cuda' but torch sees no GPU; set runner.device: cpu or auto")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(dev, rank, world, workers, compile)


class _GatherBatch(torch.autograd.Function):
    """All-gather along the batch axis; the backward hands each process the gradient of its own slice,
    summed over processes (every process computes the same loss on the gathered global batch, and DDP
    then averages, so the decoder receives exactly the single-process gradient)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), t.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """The global batch from every process's share (differentiable); the tensor itself with one process."""
    if rt.world == 1:
        return t
    if t.requires_grad:
        return _GatherBatch.apply(t)
    parts = [torch.empty_like(t) for _ in range(rt.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


# ------------------------------------------------------------------------------------------------
# optimisation: the duplicated optimizer and schedule (paper §4, Eq. 4-5), and its ablations
# ------------------------------------------------------------------------------------------------
def make_optimizer(decoder_params, head_params, decoder_lr: float, head_lr: float, train: dict,
                   fused: bool = False) -> torch.optim.AdamW:
    """AdamW with the decoder group first; each group remembers its base LR as ``initial_lr``.
    ``fused``: PyTorch's fused CUDA kernel (same update, one launch)."""
    groups = [
        {"params": list(decoder_params), "lr": decoder_lr, "initial_lr": decoder_lr, "name": "decoder"},
        {"params": list(head_params), "lr": head_lr, "initial_lr": head_lr, "name": "head"},
    ]
    return torch.optim.AdamW(groups, lr=head_lr, betas=tuple(train["betas"]), weight_decay=train["weight_decay"],
                             fused=fused or None)


def decoder_lrs(cfg: dict) -> tuple[float, float | None]:
    """Base decoder LR of the depth and the auxiliary optimizer.

    alpha (paper Eq. 4-5): alpha * eta and (1 - alpha) * eta; the baseline (alpha = 1): gamma * eta
    (paper §5.1, Fig. 5 left); the beta variant (``beta`` set): eta and beta * eta (Fig. 5 right).
    """
    eta = cfg["train"]["lr"]
    if cfg["task"] == "baseline":
        return cfg.get("gamma", 1.0) * eta, None
    if cfg.get("beta") is not None:
        return eta, cfg["beta"] * eta
    return cfg["alpha"] * eta, (1.0 - cfg["alpha"]) * eta


def build_optimizers(model, cfg: dict, fused: bool = False) -> tuple[torch.optim.AdamW, torch.optim.AdamW | None]:
    eta_h = cfg["train"]["head_lr"]
    lr_depth, lr_aux = decoder_lrs(cfg)
    opt_depth = make_optimizer(model.decoder.parameters(), model.depth_head.parameters(), lr_depth, eta_h, cfg["train"], fused)
    if lr_aux is None:
        return opt_depth, None
    opt_aux = make_optimizer(model.decoder.parameters(), model.aux_heads.parameters(), lr_aux, eta_h, cfg["train"], fused)
    return opt_depth, opt_aux


def schedule(optimizer, it: int, train: dict) -> None:
    apply_schedule(
        optimizer,
        it,
        train["iterations"],
        train["warmup_iters"],
        warmup_ratio=train["warmup_ratio"],
        min_lr_ratio=train["min_lr_ratio"],
        one_cycle=train["one_cycle_momentum"],
    )


def lr_of(optimizer, group: str) -> float:
    return next(g["lr"] for g in optimizer.param_groups if g["name"] == group)


def step(optimizer, loss: torch.Tensor, clip: float, what: str, it: int) -> float:
    """Backward, clip (DINOv2 grad_clip max_norm=35, method.md §3.5) and update; a nan/inf loss or
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


def aux_outputs(task: str, spec) -> int:
    """Output channels of an auxiliary head: one per class, or RGB for reconstruction (paper §3)."""
    return 3 if task == "reconstruction" else spec.num_classes


def aux_loss(task: str, out: torch.Tensor, image: torch.Tensor, label: torch.Tensor, spec, train: dict) -> torch.Tensor:
    """The auxiliary task's loss (paper §3, App. C.1): CE, MLDC's BCE, MSE against the normalised
    input, or single-label dense classification."""
    if task == "segmentation":
        return seg_ce_loss(out, label, ignore_index=spec.ignore_index)
    if task == "mldc":
        return mldc_loss(out, label, ignore_index=spec.ignore_index, average=train["mldc_average"])
    if task == "reconstruction":
        return recon_loss(out, image)
    if task == "slc":
        return slc_loss(out, label, ignore_index=spec.ignore_index)
    raise ValueError(f"unknown auxiliary task {task!r}; expected one of {', '.join(AUX_TASKS)}")


def resize_to(pred: torch.Tensor, size) -> torch.Tensor:
    # DINOv2 decode_head.losses / encode_decode: bilinear, align_corners=False (method.md §3.3)
    return F.interpolate(pred, size=tuple(size), mode="bilinear", align_corners=False)


class DepthLoss:
    """SigLoss (warm-up by iteration) + grad_loss_weight x GradientLoss (DINOv2 loss_decode, method.md §3.4)."""

    def __init__(self, train: dict):
        self.sig = SigLoss(warm_up=train["sigloss_warmup_iters"] > 0, warm_iter=train["sigloss_warmup_iters"])
        self.grad = None
        if train["grad_loss"] != "none":
            self.grad = GradientLoss(mode=train["grad_loss"], loss_weight=train["grad_loss_weight"])

    def __call__(self, pred: torch.Tensor, gt: torch.Tensor, it: int) -> torch.Tensor:
        loss = self.sig(pred, gt, it=it)
        return loss if self.grad is None else loss + self.grad(pred, gt)


# ------------------------------------------------------------------------------------------------
# evaluation (toolbox protocol, method.md §4)
# ------------------------------------------------------------------------------------------------
def _predict(model, x: torch.Tensor, spec, size, autocast) -> torch.Tensor:
    with autocast():
        pred = model.depth(x)
    # DINOv2's encode_decode clamps each prediction to [min, max] before resizing it to the GT
    return resize_to(pred.float().clamp(spec.min_depth, spec.max_depth), size)


@torch.no_grad()
def evaluate(model, data: PreparedDataset, ids: list[str], spec, flip: bool, aug: dict | None = None,
             rt: Runtime | None = None, precision: str = "fp32") -> dict[str, float]:
    """Toolbox evaluation on full test images; with several processes each evaluates a share of ids.

    The image goes through the dataset-level view (KITTI's KB crop with its GT; a resize such as SUN
    RGB-D's 480x640 for the image only); the prediction is resized back to the GT's original size, as
    DINOv2's encode_decode resizes to ori_shape (method.md §4.3).
    """
    aug, rt = aug or {}, rt or Runtime()
    autocast = _autocast(rt, precision)
    model.eval()
    per_image = []
    for sample_id in ids[rt.rank :: rt.world]:
        sample = data.decode(sample_id)
        image, gt = dataset_view(sample["image"], sample["depth"], kb=aug.get("kb_crop", False))
        if aug.get("resize_to") is not None:
            image, _ = dataset_view(image, None, resize_to=aug["resize_to"])
        x = torch.from_numpy(normalize(image))[None].to(rt.device)
        pred = _predict(model, x, spec, gt.shape, autocast)
        if flip:  # aug_test: prediction on the flipped image, flipped back, averaged (method.md §3.6)
            pred = (pred + _predict(model, x.flip(-1), spec, gt.shape, autocast).flip(-1)) / 2
        per_image.append((sample_id, evaluate_depth(gt, pred[0, 0].cpu().numpy(), spec)))
    model.train()
    if rt.world > 1:
        shares = [None] * rt.world
        dist.all_gather_object(shares, per_image)
        per_image = [r for share in shares for r in share]
    return aggregate([m for _, m in per_image])


@torch.no_grad()
def save_predictions(path: Path, model, data: PreparedDataset, ids: list[str], spec, aug: dict, rt: Runtime,
                     precision: str = "fp32") -> None:
    """The model's flip-TTA predictions on ``ids`` at the GT's resolution, beside image and GT (float16,
    compressed; keys ``ids``, ``image_<i>``, ``gt_<i>``, ``pred_<i>``): what the qualitative figures
    (paper Fig. 1 top, App. D) are drawn from."""
    autocast = _autocast(rt, precision)
    model.eval()
    arrays: dict[str, np.ndarray] = {"ids": np.array(ids)}
    for i, sample_id in enumerate(ids):  # one key per image: test images may differ in size (SUN RGB-D)
        sample = data.decode(sample_id)
        image, gt = dataset_view(sample["image"], sample["depth"], kb=aug.get("kb_crop", False))
        view = image if aug.get("resize_to") is None else dataset_view(image, None, resize_to=aug["resize_to"])[0]
        x = torch.from_numpy(normalize(view))[None].to(rt.device)
        pred = _predict(model, x, spec, gt.shape, autocast)
        pred = (pred + _predict(model, x.flip(-1), spec, gt.shape, autocast).flip(-1)) / 2
        arrays[f"image_{i}"] = image
        arrays[f"gt_{i}"] = gt.astype(np.float16)
        arrays[f"pred_{i}"] = pred[0, 0].cpu().numpy().astype(np.float16)
    model.train()
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


@dataclass
class Best:
    values: dict[str, float]
    steps: dict[str, int]

    @classmethod
    def empty(cls) -> Best:
        return cls({}, {})

    def update(self, metrics: dict[str, float], it: int) -> None:
        """Keep, per metric, the best value so far (paper Eq. 1) and the step that reached it."""
        for name in METRICS:
            value = metrics.get(name)
            if value is not None and value == value and is_better(name, value, self.values.get(name)):
                self.values[name], self.steps[name] = value, it


# ------------------------------------------------------------------------------------------------
# checkpoints: everything a resumed run needs to continue bit for bit
# ------------------------------------------------------------------------------------------------
def trainable_state(model) -> dict[str, torch.Tensor]:
    """Decoder and head weights; the frozen backbone is rebuilt from its own weights."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def save_checkpoint(path: Path, model, opt_depth, opt_aux, next_step: int, log_state: dict) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "next_step": next_step,  # the schedules and the data order are functions of the step number
        "model": trainable_state(model),
        "opt_depth": opt_depth.state_dict(),
        "opt_aux": None if opt_aux is None else opt_aux.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        **log_state,
    }
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model, opt_depth, opt_aux, run_id: str) -> dict:
    """Restore a checkpoint in place (``weights_only=True``: tensors and plain containers only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
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
        flag = self.received is not None
        if rt.world > 1:  # stop together: any process's signal stops all
            t = torch.tensor([int(flag)], device=rt.device)
            dist.all_reduce(t)
            flag = bool(t.item())
        return flag


def _autocast(rt: Runtime, precision: str):
    """bf16 autocast for the forward passes (train.precision), a no-op context for fp32."""
    return lambda: torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------
class Trainer:
    """The model, its two optimizers and losses, and one global step (shared with ``mdeaux bench``)."""

    def __init__(self, cfg: dict, rt: Runtime, model=None):
        self.cfg, self.train, self.rt = cfg, cfg["train"], rt
        if rt.device.type == "cuda" and self.train["tf32"]:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if model is None:
            torch.manual_seed(cfg["seed"])  # decoder and head initialisation
            model_cfg = dict(cfg["model"])
            model_cfg["aux_heads"] = {name: aux_outputs(cfg["task"], get_spec(name)) for name in cfg["aux_datasets"]}
            model = build_model(model_cfg)
        self.model = model.to(rt.device)
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
        self.autocast = _autocast(rt, self.train["precision"])

    def _to(self, pair) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(t.to(self.rt.device, non_blocking=True) for t in pair)

    def step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One global step: the depth step, then the auxiliary step (none for the baseline)."""
        it, train, rt = batch["step"], self.train, self.rt
        schedule(self.opt_depth, it, train)
        if self.opt_aux is not None:
            schedule(self.opt_aux, it, train)
        row: dict[str, float] = {"step": it + 1}

        # depth step, Eq. 4: theta <- theta - alpha * eta * grad L_D (decoder and depth head)
        x, y = self._to(batch["depth"])
        with self.autocast():
            pred = self.net(x, task="depth")
        pred = gather(resize_to(pred.float(), y.shape[-2:]), rt)
        row["loss_depth"] = step(self.opt_depth, self.depth_loss(pred, gather(y, rt), it), train["grad_clip"], "depth", it)
        row["lr_decoder_depth"] = lr_of(self.opt_depth, "decoder")
        row["lr_head_depth"] = lr_of(self.opt_depth, "head")
        row["beta1"] = self.opt_depth.param_groups[0]["betas"][0]

        # auxiliary step, Eq. 5: theta <- theta - (1 - alpha) * eta * grad L_A (decoder and aux head)
        if self.opt_aux is not None:
            name = batch["aux_name"]
            xa, ya = self._to(batch["aux"])
            with self.autocast():
                out = self.net(xa, task=name)
            loss = aux_loss(self.cfg["task"], gather(out.float(), rt), gather(xa, rt), gather(ya, rt), get_spec(name), train)
            row["loss_aux"] = step(self.opt_aux, loss, train["grad_clip"], f"auxiliary ({name})", it)
            row["lr_decoder_aux"] = lr_of(self.opt_aux, "decoder")
            row["lr_head_aux"] = lr_of(self.opt_aux, "head")
        return row


def train_run(run: Run, paths, tracker=None, progress: bool = True, rt: Runtime | None = None,
              predictions: int = 0) -> dict[str, Any]:
    """Train one run (resuming from its checkpoint if there is one) and write ``metrics.json``,
    ``curves.csv``, ``evals.csv`` (and the final model's predictions on the first ``predictions`` test
    images, ``predictions.npz``) into its folder. Raises Preempted after writing a checkpoint
    when SIGTERM/SIGINT arrives, NonFiniteLoss (checkpoint untouched) on a nan/inf loss."""
    rt = rt or Runtime()
    cfg, train = run.config, run.config["train"]
    ckpt_path = paths.run_dir(run.id) / CHECKPOINT
    depth_name = cfg["depth_dataset"]
    depth_spec = get_spec(depth_name)
    trainer = Trainer(cfg, rt)
    model = trainer.model

    curves: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []
    best = Best.empty()
    start, seconds_before, saved = 0, 0.0, None
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, model, trainer.opt_depth, trainer.opt_aux, run.id)
        start, curves, evals = state["next_step"], state["curves"], state["evals"]
        best = Best(state["best_values"], state["best_steps"])
        seconds_before, saved = state["train_seconds"], start
        log.info("%s: resuming from %s at step %d", run.label, ckpt_path, start)

    depth_data = PreparedDataset(paths.prepared_of(depth_name))
    eval_ids = test_ids(paths.split_of(depth_name))
    if train["eval_max_images"]:
        eval_ids = eval_ids[: train["eval_max_images"]]
    total = train["iterations"]
    started = time.perf_counter()

    def log_state() -> dict:
        return {
            "run_id": run.id, "curves": curves, "evals": evals, "best_values": best.values, "best_steps": best.steps,
            "train_seconds": seconds_before + time.perf_counter() - started,
        }

    bar = tqdm(total=total, initial=start, desc=run.label, disable=not (progress and rt.main), unit="it", dynamic_ncols=True)
    with StopSignal() as stop:
        for batch in step_loader(step_data(cfg, paths, rt.rank, rt.world), start, total, rt.workers, rt.device.type == "cuda"):
            it = batch["step"]
            try:
                row = trainer.step(batch)
            except NonFiniteLoss as err:
                kept = (f"the last good checkpoint {ckpt_path} (step {saved}) is kept" if saved is not None
                        else "no checkpoint was written yet")
                raise NonFiniteLoss(f"{run.label}: {err}; {kept}. Lower train.lr or check the data of this step") from None
            curves.append(row)
            if tracker is not None and rt.main:
                tracker.metrics({k: v for k, v in row.items() if k != "step"}, step=it + 1)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss_depth']:.3f}")

            if (it + 1) % train["eval_every"] == 0 or it + 1 == total:
                metrics = evaluate(model, depth_data, eval_ids, depth_spec, train["flip_tta"], cfg["augment"][depth_name], rt, train["precision"])
                best.update(metrics, it + 1)
                evals.append({"step": it + 1, **metrics})
                if tracker is not None and rt.main:
                    tracker.metrics({f"test.{k}": v for k, v in metrics.items()}, step=it + 1)
                log.info("%s step %d: abs_rel %.4f rmse %.4f a1 %.4f", run.label, it + 1, metrics["abs_rel"], metrics["rmse"], metrics["a1"])

            preempted = stop.requested(rt)
            if it + 1 < total and ((it + 1) % train["checkpoint_every"] == 0 or preempted):
                if rt.main:
                    save_checkpoint(ckpt_path, model, trainer.opt_depth, trainer.opt_aux, it + 1, log_state())
                saved = it + 1
                if rt.world > 1:
                    dist.barrier()
                if preempted:
                    bar.close()
                    raise Preempted(f"{run.label}: stopped by signal {stop.received} after step {it + 1}; checkpoint "
                                    f"{ckpt_path} written: run the same command again to resume")
    bar.close()

    result = {
        "run_id": run.id,
        "label": run.label,
        "iterations": total,
        "train_seconds": round(log_state()["train_seconds"], 2),
        "best": best.values,  # paper Eq. 1: the best value reached during training
        "best_step": best.steps,
        "final": {k: v for k, v in evals[-1].items() if k != "step"},
        "test_images": len(eval_ids),
        "processes": rt.world,
    }
    if rt.main:
        out_dir = paths.run_dir(run.id)
        if predictions:
            save_predictions(out_dir / PREDICTIONS, model, depth_data, eval_ids[:predictions], depth_spec,
                             cfg["augment"][depth_name], rt, train["precision"])
        write_csv(out_dir / "curves.csv", curves)
        write_csv(out_dir / "evals.csv", evals)
        atomic.write_json(out_dir / "metrics.json", result)  # written last: its presence marks the run done
        ckpt_path.unlink(missing_ok=True)
    return result


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buf.getvalue())
