"""Pretrain the mini profile's tiny ViT/14 offline, so that its frozen backbone is a pretrained one.

The paper freezes a *pretrained* DINOv2 ViT-g/14 (paper §3). The mini profile's tiny ViT would
otherwise be random, and would never load weights. ``mdeaux pretrain`` (the DVC stage ``pretrain``)
trains it on the synthetic world's training images only (the training split, fraction 1.0, of every
dataset that runs train on: those with an ``augment`` entry) and writes a local Hugging Face folder,
``config.json`` + ``model.safetensors`` (``Dinov2Model.save_pretrained``) and a ``MANIFEST.json`` in the
format ``mdeaux weights`` writes. ``model.weights_dir`` names it, and the runs load it through the code
path that loads DINOv2 ViT-g/14 (``backbone._load_pretrained``: ``Dinov2Backbone.from_pretrained``).

The objective (our choice; DINOv2's own recipe is far beyond a CPU stage) is SimMIM-style masked
patch prediction (Xie et al., *SimMIM*, CVPR 2022): ``pretrain.mask_ratio`` of the patch tokens are
replaced by the ViT's learnable mask token (transformers ``Dinov2Model(bool_masked_pos=...)``), a linear
layer predicts each masked patch's normalised pixels from the last layer, and the loss is their L1
error. Inputs are square random crops (``pretrain.crop``) of the images resized to
``pretrain.short_side``, flipped at random; AdamW with a linear warm-up and a cosine decay. Every draw
comes from ``pretrain.seed``: the folder is the same to the byte on every run of the same machine kind.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mdeaux.atomic import atomic_dir, write_json
from mdeaux.model.specs import PATCH_SIZE
from mdeaux.model.weights import sha256_of

log = logging.getLogger(__name__)

# The files of the folder the stage writes, as transformers writes them (weights.WEIGHT_LAYOUTS: safetensors).
FILES = ("config.json", "model.safetensors")
REPO = "mdeaux/tiny-pretrained"  # what MANIFEST.json names as the folder's source (not a Hub repository)


def training_images(paths, params, short_side: int, progress: bool = True) -> list[np.ndarray]:
    """The training images (train split, fraction 1.0) of every dataset runs train on, resized so that
    their shorter side is ``short_side`` (bilinear), in a fixed order."""
    from mdeaux.data.prepare import PreparedDataset
    from mdeaux.data.split import SplitFile
    from mdeaux.training.transforms import resize_bilinear_u8

    names = [n for n in params.datasets if n in params.augment]
    if not names:
        raise ValueError("pretrain: no dataset of params `datasets` has an `augment` entry, so no run trains on any: "
                         "there are no training images to pretrain on")
    images = []
    for name in names:
        data, ids = PreparedDataset(paths.prepared_of(name)), SplitFile(paths.split_of(name)).train(1.0)
        for sample_id in tqdm(ids, desc=f"pretrain: {name}", unit="img", disable=not progress, leave=False):
            img = data.decode(sample_id)["image"]
            scale = short_side / min(img.shape[:2])
            size_wh = (max(short_side, round(img.shape[1] * scale)), max(short_side, round(img.shape[0] * scale)))
            images.append(resize_bilinear_u8(img, size_wh))
    return images


def random_batch(images: list[np.ndarray], crop: int, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
    """``batch_size`` normalised square crops of random images, each flipped with probability 1/2."""
    from mdeaux.training.transforms import normalize

    out = []
    for k in rng.integers(len(images), size=batch_size):
        img = images[int(k)]
        top, left = int(rng.integers(img.shape[0] - crop + 1)), int(rng.integers(img.shape[1] - crop + 1))
        view = img[top:top + crop, left:left + crop]
        out.append(normalize(view[:, ::-1] if rng.random() < 0.5 else view))
    return torch.from_numpy(np.stack(out))


def patches(x: torch.Tensor, patch: int = PATCH_SIZE) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H/p * W/p, 3 * p * p), patches in the ViT's token order (row-major)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def random_mask(batch_size: int, tokens: int, ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """(B, tokens) bool, exactly ``round(ratio * tokens)`` (at least 1) masked patches per image."""
    n = max(1, round(ratio * tokens))
    mask = np.zeros((batch_size, tokens), dtype=bool)
    for row in mask:
        row[rng.permutation(tokens)[:n]] = True
    return torch.from_numpy(mask)


class MaskedPatchModel(nn.Module):
    """The ViT and a linear layer from each last-layer patch token to its patch's pixels (SimMIM)."""

    def __init__(self, config):
        super().__init__()
        from transformers import Dinov2Model

        self.vit = Dinov2Model(config)
        self.head = nn.Linear(config.hidden_size, 3 * PATCH_SIZE * PATCH_SIZE)

    def loss(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean L1 error of the predicted pixels of the masked patches."""
        tokens = self.vit(pixel_values=x, bool_masked_pos=mask).last_hidden_state[:, 1:]  # drop CLS
        return (self.head(tokens) - patches(x)).abs()[mask].mean()


def tiny_config(tiny: dict):
    """The Dinov2Config of the tiny ViT with the params' ``model.tiny`` settings (backbone.TINY_DEFAULTS)."""
    from transformers import Dinov2Config

    from mdeaux.model.backbone import TINY_DEFAULTS

    return Dinov2Config(**{**TINY_DEFAULTS, **tiny})


def lr_at(it: int, cfg) -> float:
    """Linear warm-up over ``warmup_iters`` steps, then a cosine decay to 0 at ``iterations``."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / cfg.warmup_iters
    progress = (it - cfg.warmup_iters) / max(1, cfg.iterations - cfg.warmup_iters)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(images: list[np.ndarray], tiny: dict, cfg, progress: bool = True) -> tuple[MaskedPatchModel, list[float]]:
    """The pretrained model and its loss at every step."""
    if cfg.crop % PATCH_SIZE or cfg.crop > min(min(img.shape[:2]) for img in images):
        raise ValueError(f"pretrain.crop must be a multiple of the patch size {PATCH_SIZE} and at most "
                         f"pretrain.short_side; got {cfg.crop}")
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MaskedPatchModel(tiny_config(tiny))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    tokens = (cfg.crop // PATCH_SIZE) ** 2
    losses = []
    bar = tqdm(range(cfg.iterations), desc="pretrain", unit="step", disable=not progress)
    for it in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, cfg)
        loss = model.loss(random_batch(images, cfg.crop, cfg.batch_size, rng),
                          random_mask(cfg.batch_size, tokens, cfg.mask_ratio, rng))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain: the loss is {loss.item()} at step {it}; lower pretrain.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return model, losses


def save(model: MaskedPatchModel, dest: Path, losses: list[float]) -> None:
    """``dest``: the ViT as a Hugging Face folder, its ``MANIFEST.json`` and the loss curve, written in
    one rename."""
    with atomic_dir(dest) as tmp:
        model.vit.save_pretrained(tmp, safe_serialization=True)
        files = {name: {"sha256": sha256_of(tmp / name), "size": (tmp / name).stat().st_size} for name in FILES}
        digest = hashlib.sha256("".join(files[n]["sha256"] for n in FILES).encode()).hexdigest()
        write_json(tmp / "MANIFEST.json", {"repo": REPO, "revision": "pretrain", "commit": digest, "files": files})
        write_json(tmp / "losses.json", {"loss": [round(v, 6) for v in losses]})


def write(paths, params, progress: bool = True) -> Path:
    """The ``pretrain`` stage: the pretrained tiny ViT in ``paths.pretrained`` (mini profile), or a note
    there that the paper profile loads published weights."""
    dest = paths.pretrained
    if params.profile != "mini":
        with atomic_dir(dest) as tmp:
            (tmp / "README.md").write_text(f"profile {params.profile}: the backbone is loaded from model.weights_dir "
                                           "(`mdeaux weights`); the tiny ViT is pretrained in the mini profile only\n")
        log.info("profile %r loads published backbone weights: nothing to pretrain", params.profile)
        return dest
    cfg = params.pretrain
    images = training_images(paths, params, cfg.short_side, progress)
    log.info("pretraining the tiny ViT on %d training images, %d steps of %d crops of %d px", len(images),
             cfg.iterations, cfg.batch_size, cfg.crop)
    model, losses = pretrain(images, params.model.tiny.model_dump(), cfg, progress)
    save(model, dest, losses)
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    log.info("masked-patch L1 loss %.4f over the first 10 steps, %.4f over the last 10; written to %s", first, last, dest)
    return dest
