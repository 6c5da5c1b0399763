"""How well can the mini profile's tiny ViT/14 read depth at all? An upper bound for issue 14's goals.

Renders ``--rooms`` fresh synthetic rooms (the mini world's indoor renderer, seeds disjoint from the
world's) at the mini profile's NYUv2 scale (160x120, the NYUv2 field of view), then trains the tiny
ViT *end to end*, with depth supervision, plus a linear layer from each patch token to its 14x14 log
depths (L1), on random 112x112 crops. Nothing is frozen: whatever the frozen-backbone runs of the mini
profile reach is at most what this reaches. It prints, on ``--held-out`` further rooms (centre crops):

* AbsRel of the model, and of the constant predictor (the median depth of the held-out crops: the
  reference the learning check compares with);
* AbsRel after aligning each image's median log depth with the truth (what is left once the scale is
  given: the relative-depth error).

Usage: ``python tools/mini_ceiling.py [--rooms 1000] [--steps 1500] [--width 48] [--layers 4]``
(about 3 minutes with the defaults on 2 cores). The README ("What learned something means") quotes it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mdeaux.data.synth.archive import derive_seed
from mdeaux.data.synth.render import render_frame
from mdeaux.data.synth.room import all_class_names
from mdeaux.model.pretrain import lr_at, patches, tiny_config
from mdeaux.model.specs import PATCH_SIZE
from mdeaux.training.transforms import normalize

WIDTH, HEIGHT, CROP = 160, 120, 112  # the mini NYUv2 scale (a quarter of 640x480); crops of 8x8 patches


def render(n: int, key: str, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    classes = dict.fromkeys(all_class_names(), 0)
    frames = [render_frame(derive_seed(seed, "ceiling", key, i), classes, width=WIDTH, height=HEIGHT)
              for i in tqdm(range(n), desc=f"render {key}", unit="room", leave=False)]
    return [f.rgb for f in frames], [f.depth for f in frames]


def fit(images, depths, args) -> tuple[nn.Module, nn.Module]:
    """The tiny ViT and its per-patch log-depth layer, trained end to end with AdamW and a cosine schedule."""
    from transformers import Dinov2Model

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vit = Dinov2Model(tiny_config({"hidden_size": args.width, "num_hidden_layers": args.layers}))
    head = nn.Linear(args.width, PATCH_SIZE * PATCH_SIZE)
    params = list(vit.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    schedule = argparse.Namespace(lr=args.lr, warmup_iters=30, iterations=args.steps)
    bar = tqdm(range(args.steps), desc="fit", unit="step")
    for it in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, schedule)
        xs, ys = [], []
        for k in rng.integers(len(images), size=args.batch_size):
            top, left = int(rng.integers(HEIGHT - CROP + 1)), int(rng.integers(WIDTH - CROP + 1))
            img, dep = images[k][top:top + CROP, left:left + CROP], depths[k][top:top + CROP, left:left + CROP]
            if rng.random() < 0.5:
                img, dep = img[:, ::-1], dep[:, ::-1]
            xs.append(normalize(img))
            ys.append(np.log(dep))
        pred = head(vit(pixel_values=torch.from_numpy(np.stack(xs))).last_hidden_state[:, 1:])
        loss = (pred - patches(torch.from_numpy(np.stack(ys))[:, None])).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return vit, head


def scores(vit, head, images, depths) -> dict[str, float]:
    top, left = (HEIGHT - CROP) // 2, (WIDTH - CROP) // 2
    x = torch.from_numpy(np.stack([normalize(i[top:top + CROP, left:left + CROP]) for i in images]))
    truth = patches(torch.from_numpy(np.stack([np.log(d[top:top + CROP, left:left + CROP]) for d in depths]))[:, None])
    with torch.no_grad():
        pred = head(vit(pixel_values=x).last_hidden_state[:, 1:])

    def absrel(log_pred: torch.Tensor) -> float:
        return float(((log_pred.exp() - truth.exp()).abs() / truth.exp()).mean())

    shift = (truth - pred).flatten(1).median(1).values[:, None, None]
    return {"model": absrel(pred), "constant": absrel(torch.full_like(truth, float(truth.median()))),
            "scale_aligned": absrel(pred + shift)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rooms", type=int, default=1000, help="training rooms (one view each)")
    ap.add_argument("--held-out", type=int, default=200, help="rooms to score on")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=48, help="hidden size (params model.tiny: 48)")
    ap.add_argument("--layers", type=int, default=4, help="layers (params model.tiny: 4)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    vit, head = fit(*render(args.rooms, "train", args.seed), args)
    result = scores(vit, head, *render(args.held_out, "held-out", args.seed))
    print(f"held-out AbsRel: model {result['model']:.3f}, constant {result['constant']:.3f} "
          f"({result['model'] / result['constant']:.2f} x), scale-aligned {result['scale_aligned']:.3f} "
          f"[{args.rooms} rooms, {args.steps} steps, ViT {args.width} wide x {args.layers}, "
          f"{time.perf_counter() - start:.0f} s]")
    return result


if __name__ == "__main__":
    main()
