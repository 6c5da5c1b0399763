"""Does reading from the shards outpace training? (issue 3, "Speed")

Prints, for the mini configuration, the samples/s of the training loader (decode from the Parquet
shards + augmentation, one process) beside the samples/s a training step consumes (depth step +
auxiliary step of an MLDC run, with batches prepared beforehand so only compute is timed). Both are
measured in this one run, so their ratio is meaningful on any machine.

    python benchmarks/loader.py            # after `dvc repro split` (or `make repro`)
"""

from __future__ import annotations

import argparse
import time

import torch

from mdeaux.datasets.registry import get as get_spec
from mdeaux.losses import SigLoss, mldc_loss
from mdeaux.model import build_model
from mdeaux.params import load
from mdeaux.paths import Paths
from mdeaux.prepare import PreparedDataset
from mdeaux.runs import resolve_config
from mdeaux.train import Stream, build_optimizers, depth_transform, resize_to, seg_transform, step, train_ids


def stream(paths, cfg, name, kind):
    transform = depth_transform(cfg["augment"][name]) if kind == "depth" else seg_transform(cfg["augment"][name])
    data = PreparedDataset(paths.prepared_of(name))
    return Stream(data, train_ids(paths.split_of(name), 1.0), kind, transform, cfg["train"]["batch_size"], 0, name)


def rate(fn, n: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = Paths()
    params = load(paths.params)
    study = next(iter(params.studies.values()))
    depth, aux = study.depth[0], study.aux[0]
    cfg = resolve_config(params, depth=depth, task="mldc", aux=[aux], seed=0)
    bs = cfg["train"]["batch_size"]

    depth_stream, aux_stream = stream(paths, cfg, depth, "depth"), stream(paths, cfg, aux, "segmentation")
    load_depth = rate(lambda: next(depth_stream), args.batches) * bs
    load_aux = rate(lambda: next(aux_stream), args.batches) * bs

    torch.manual_seed(0)
    model = build_model({**cfg["model"], "aux_heads": {aux: get_spec(aux).num_classes}})
    opt_d, opt_a = build_optimizers(model, cfg)
    sigloss = SigLoss(warm_up=False)
    xd, yd = next(depth_stream)
    xa, ya = next(aux_stream)

    def global_step():
        step(opt_d, sigloss(resize_to(model.depth(xd), yd.shape[-2:]), yd), 35.0, "depth", 0)
        step(opt_a, mldc_loss(model.aux(xa, aux), ya), 35.0, "aux", 0)

    steps = rate(global_step, max(3, args.batches // 4))
    consumed_depth = consumed_aux = steps * bs
    print(f"mini configuration, batch {bs}, 1 thread")
    print(f"{'':28}{'loader samples/s':>18}{'step consumes/s':>18}{'ratio':>8}")
    print(f"{'depth (' + depth + ')':28}{load_depth:18.1f}{consumed_depth:18.1f}{load_depth / consumed_depth:8.1f}")
    print(f"{'auxiliary (' + aux + ')':28}{load_aux:18.1f}{consumed_aux:18.1f}{load_aux / consumed_aux:8.1f}")
    print("ratio > 1: one loader process outpaces training; < 1: use more loader workers")


if __name__ == "__main__":
    main()
