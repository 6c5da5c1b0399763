"""Training of one run: the alternating depth / auxiliary scheme of the paper (Eq. 4-5).

One global step is a depth step followed by an auxiliary step. Both steps update the shared DPT
decoder, each through its own AdamW optimizer and its own copy of DINOv2's LR schedule: the decoder's
learning rate is alpha * eta in the depth optimizer and (1 - alpha) * eta in the auxiliary one; the
heads use their own learning rate eta_h in both (paper §3 and §4 "Training details"). alpha = 1 is
the DINOv2 baseline and takes no auxiliary step. The test metrics are evaluated every ``eval_every``
iterations; the best value reached during training (paper Eq. 1) and the final value are recorded.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mdeaux import atomic
from mdeaux.datasets.registry import get as get_spec
from mdeaux.losses import SigLoss, mldc_loss, recon_loss, seg_ce_loss
from mdeaux.metrics import METRICS, aggregate, evaluate_depth, is_better
from mdeaux.model import build_model
from mdeaux.prepare import PreparedDataset
from mdeaux.runs import Run
from mdeaux.schedule import apply_schedule
from mdeaux.split import fraction_key
from mdeaux.transforms import DepthTrainTransform, SegTrainTransform, dataset_view, normalize

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------
# data: seeded, endless streams of augmented batches read from the prepared shards
# ------------------------------------------------------------------------------------------------
class Stream:
    """Endless batches from one dataset: shuffled epochs, each sample augmented with its own RNG draw."""

    def __init__(self, data: PreparedDataset, ids: list[str], kind: str, transform, batch_size: int, seed: int, name: str):
        if not ids:
            raise ValueError(f"{name}: no training samples to draw from")
        self.data, self.ids, self.kind, self.transform, self.batch_size = data, ids, kind, transform, batch_size
        # one generator per stream, derived from the run seed and the stream name
        self.rng = np.random.default_rng([seed, *name.encode()])
        self.order: list[int] = []

    def _next_index(self) -> int:
        if not self.order:
            self.order = self.rng.permutation(len(self.ids)).tolist()[::-1]
        return self.order.pop()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = [], []
        for _ in range(self.batch_size):
            sample = self.data.decode(self.ids[self._next_index()])
            target = sample["depth"] if self.kind == "depth" else sample["label"]
            image, target = self.transform(sample["image"], target, self.rng)
            images.append(normalize(image))
            targets.append(target)
        x = torch.from_numpy(np.stack(images))
        if self.kind == "depth":
            return x, torch.from_numpy(np.stack(targets).astype(np.float32))[:, None]
        return x, torch.from_numpy(np.stack(targets).astype(np.int64))


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


# ------------------------------------------------------------------------------------------------
# optimisation: the duplicated optimizer and schedule (paper §4, Eq. 4-5)
# ------------------------------------------------------------------------------------------------
def make_optimizer(decoder_params, head_params, decoder_lr: float, head_lr: float, train: dict) -> torch.optim.AdamW:
    """AdamW with the decoder group first; each group remembers its base LR as ``initial_lr``."""
    groups = [
        {"params": list(decoder_params), "lr": decoder_lr, "initial_lr": decoder_lr, "name": "decoder"},
        {"params": list(head_params), "lr": head_lr, "initial_lr": head_lr, "name": "head"},
    ]
    return torch.optim.AdamW(groups, lr=head_lr, betas=tuple(train["betas"]), weight_decay=train["weight_decay"])


def build_optimizers(model, cfg: dict) -> tuple[torch.optim.AdamW, torch.optim.AdamW | None]:
    train, alpha = cfg["train"], cfg["alpha"]
    eta, eta_h = train["lr"], train["head_lr"]
    opt_depth = make_optimizer(model.decoder.parameters(), model.depth_head.parameters(), alpha * eta, eta_h, train)
    if cfg["task"] == "baseline":
        return opt_depth, None
    opt_aux = make_optimizer(model.decoder.parameters(), model.aux_heads.parameters(), (1.0 - alpha) * eta, eta_h, train)
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
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(f"{what} loss is {value} at iteration {it}: stopping (no update was applied)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, clip)  # DINOv2 grad_clip max_norm=35 (method.md §3.5)
    optimizer.step()
    return value


def aux_outputs(task: str, spec) -> int:
    """Output channels of an auxiliary head: one per class, or RGB for reconstruction (paper §3)."""
    return 3 if task == "reconstruction" else spec.num_classes


def aux_loss(task: str, out: torch.Tensor, image: torch.Tensor, label: torch.Tensor, spec, train: dict) -> torch.Tensor:
    """The auxiliary task's loss (paper §3): CE, MLDC's BCE, or MSE against the normalised input."""
    if task == "segmentation":
        return seg_ce_loss(out, label, ignore_index=spec.ignore_index)
    if task == "mldc":
        return mldc_loss(out, label, ignore_index=spec.ignore_index, average=train["mldc_average"])
    if task == "reconstruction":
        return recon_loss(out, image)
    raise ValueError(f"unknown auxiliary task {task!r}; expected segmentation, mldc or reconstruction")


def resize_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # DINOv2 decode_head.losses / encode_decode: bilinear, align_corners=False (method.md §3.3)
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------------
# evaluation (toolbox protocol, method.md §4)
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, data: PreparedDataset, ids: list[str], spec, flip: bool, aug: dict | None = None) -> dict[str, float]:
    """Toolbox evaluation on full test images (after the dataset-level view: resize / KB crop)."""
    aug = aug or {}
    model.eval()
    per_image = []
    for sample_id in ids:
        sample = data.decode(sample_id)
        image, gt = dataset_view(sample["image"], sample["depth"], resize_to=aug.get("resize_to"), kb=aug.get("kb_crop", False))
        x = torch.from_numpy(normalize(image))[None]
        # DINOv2's encode_decode clamps each prediction to [min, max] before resizing it to the GT
        pred = resize_to(model.depth(x).clamp(spec.min_depth, spec.max_depth), gt.shape)
        if flip:  # aug_test: prediction on the flipped image, flipped back, averaged (method.md §3.6)
            flipped = resize_to(model.depth(x.flip(-1)).clamp(spec.min_depth, spec.max_depth), gt.shape)
            pred = (pred + flipped.flip(-1)) / 2
        pred = pred[0, 0].numpy()
        per_image.append(evaluate_depth(gt, pred, spec))
    model.train()
    return aggregate(per_image)


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
# one run
# ------------------------------------------------------------------------------------------------
def train_run(run: Run, paths, tracker=None, progress: bool = True) -> dict[str, Any]:
    """Train one run and write ``metrics.json``, ``curves.csv`` and ``evals.csv`` into its folder."""
    cfg, train = run.config, run.config["train"]
    out_dir = paths.run_dir(run.id)
    torch.manual_seed(cfg["seed"])  # decoder and head initialisation
    depth_name = cfg["depth_dataset"]
    depth_spec = get_spec(depth_name)
    depth_data = PreparedDataset(paths.prepared_of(depth_name))

    model_cfg = dict(cfg["model"])
    model_cfg["aux_heads"] = {name: aux_outputs(cfg["task"], get_spec(name)) for name in cfg["aux_datasets"]}
    model = build_model(model_cfg)
    model.train()
    opt_depth, opt_aux = build_optimizers(model, cfg)
    sigloss = SigLoss(warm_up=train["sigloss_warmup_iters"] > 0, warm_iter=train["sigloss_warmup_iters"])

    depth_stream = Stream(
        depth_data,
        train_ids(paths.split_of(depth_name), cfg["fraction"]),
        "depth",
        depth_transform(cfg["augment"][depth_name]),
        train["batch_size"],
        cfg["seed"],
        depth_name,
    )
    aux_streams = {
        name: Stream(
            PreparedDataset(paths.prepared_of(name)),
            train_ids(paths.split_of(name), 1.0),
            "segmentation",
            seg_transform(cfg["augment"][name]),
            train["batch_size"],
            cfg["seed"],
            name,
        )
        for name in cfg["aux_datasets"]
    }
    aux_names = list(aux_streams)
    eval_ids = test_ids(paths.split_of(depth_name))
    if train["eval_max_images"]:
        eval_ids = eval_ids[: train["eval_max_images"]]

    curves: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []
    best = Best.empty()
    total = train["iterations"]
    started = time.perf_counter()
    bar = tqdm(range(total), desc=run.label, disable=not progress, unit="it", dynamic_ncols=True)
    for it in bar:
        schedule(opt_depth, it, train)
        if opt_aux is not None:
            schedule(opt_aux, it, train)
        row: dict[str, float] = {"step": it + 1}

        # depth step, Eq. 4: theta <- theta - alpha * eta * grad L_D (decoder and depth head)
        x, y = next(depth_stream)
        pred = resize_to(model.depth(x), y.shape[-2:])
        row["loss_depth"] = step(opt_depth, sigloss(pred, y), train["grad_clip"], "depth", it)
        row["lr_decoder_depth"] = lr_of(opt_depth, "decoder")
        row["lr_head_depth"] = lr_of(opt_depth, "head")
        row["beta1"] = opt_depth.param_groups[0]["betas"][0]

        # auxiliary step, Eq. 5: theta <- theta - (1 - alpha) * eta * grad L_A (decoder and aux head)
        if opt_aux is not None:
            name = aux_names[it % len(aux_names)]  # MIX6 draw: one dataset per step, in turn
            xa, ya = next(aux_streams[name])
            loss_aux = aux_loss(cfg["task"], model.aux(xa, name), xa, ya, get_spec(name), train)
            row["loss_aux"] = step(opt_aux, loss_aux, train["grad_clip"], f"auxiliary ({name})", it)
            row["lr_decoder_aux"] = lr_of(opt_aux, "decoder")
            row["lr_head_aux"] = lr_of(opt_aux, "head")
        curves.append(row)
        if tracker is not None:
            tracker.metrics({k: v for k, v in row.items() if k != "step"}, step=it + 1)
        bar.set_postfix(loss=f"{row['loss_depth']:.3f}")

        if (it + 1) % train["eval_every"] == 0 or it + 1 == total:
            metrics = evaluate(model, depth_data, eval_ids, depth_spec, train["flip_tta"], cfg["augment"][depth_name])
            best.update(metrics, it + 1)
            evals.append({"step": it + 1, **metrics})
            if tracker is not None:
                tracker.metrics({f"test.{k}": v for k, v in metrics.items()}, step=it + 1)
            log.info("%s step %d: abs_rel %.4f rmse %.4f a1 %.4f", run.label, it + 1, metrics["abs_rel"], metrics["rmse"], metrics["a1"])
    bar.close()

    result = {
        "run_id": run.id,
        "label": run.label,
        "iterations": total,
        "train_seconds": round(time.perf_counter() - started, 2),
        "best": best.values,  # paper Eq. 1: the best value reached during training
        "best_step": best.steps,
        "final": {k: v for k, v in evals[-1].items() if k != "step"},
        "test_images": len(eval_ids),
    }
    write_csv(out_dir / "curves.csv", curves)
    write_csv(out_dir / "evals.csv", evals)
    atomic.write_json(out_dir / "metrics.json", result)  # written last: its presence marks the run done
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
