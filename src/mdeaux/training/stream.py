"""The data a run sees: every sample of every global step is a pure function of its inputs.

Sample ``k`` of a dataset's stream is fixed by (run seed, dataset name, k): its position in a seeded
permutation of the epoch and the seed of its augmentation draws. The auxiliary dataset of each step
comes from a plan fixed by the seed. So a run resumed from a checkpoint, a run with more loader
workers and a run split over several processes (torchrun) all see the same global batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mdeaux.data.prepare import PreparedDataset
from mdeaux.data.split import SplitFile
from mdeaux.paths import Paths
from mdeaux.training.cohort import aux_key
from mdeaux.training.config import RunConfig
from mdeaux.training.depth_transforms import DepthTrainTransform
from mdeaux.training.seg_transforms import SegTrainTransform
from mdeaux.training.transforms import normalize


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
    how MIX6 is sampled: docs/choices.md)."""
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


@dataclass(frozen=True)
class AuxStream:
    """The auxiliary batches of one or more runs: their datasets' sources and the plan of draws."""

    sources: dict[str, SampleSource]
    plan: list[tuple[str, int]]


class StepData(torch.utils.data.Dataset):
    """Item ``s`` = this process's share of global step ``s``: the depth batch, and the batch of each
    auxiliary stream (one per distinct auxiliary setting of a cohort; none for a baseline)."""

    def __init__(self, depth: SampleSource, aux: list[AuxStream], batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of processes ({world})")
        self.depth, self.aux = depth, aux
        self.batch, self.local = batch_size, batch_size // world
        self.rank = rank

    def __len__(self) -> int:
        return 10**12  # the loader's sampler says which steps are read

    def _share(self, draw: int) -> range:
        start = draw * self.batch + self.rank * self.local
        return range(start, start + self.local)

    def __getitem__(self, s: int) -> dict[str, Any]:
        aux = []
        for stream in self.aux:
            name, draw = stream.plan[s]
            aux.append((name, stream.sources[name].batch(self._share(draw))))
        return {"step": s, "depth": self.depth.batch(self._share(s)), "aux": aux}


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


def step_data(cfgs: list[RunConfig], paths: Paths, rank: int = 0, world: int = 1) -> tuple[StepData, list[int | None]]:
    """The global steps of runs that read the same depth batches (one run, or a cohort: training/cohort.py),
    from the prepared shards and split files of ``paths``; and, per run, the index of its auxiliary
    stream in each item's ``aux`` (None for a baseline). Runs with the same auxiliary setting share one."""
    cfg = cfgs[0]
    name = cfg.depth_dataset
    depth = SampleSource(PreparedDataset(paths.prepared_of(name)), SplitFile(paths.split_of(name)).train(cfg.fraction),
                         "depth", DepthTrainTransform(cfg.augment[name]), cfg.seed, name)
    streams: dict[str, int] = {}
    aux: list[AuxStream] = []
    index: list[int | None] = []
    for c in cfgs:
        key = aux_key(c)
        if key is not None and key not in streams:
            sources = {
                a: SampleSource(PreparedDataset(paths.prepared_of(a)), SplitFile(paths.split_of(a)).train(1.0),
                                "segmentation", SegTrainTransform(c.augment[a]), c.seed, a)
                for a in c.aux_datasets
            }
            plan = aux_plan(list(sources), [len(x.ids) for x in sources.values()], c.train.iterations, c.train.aux_draw, c.seed)
            streams[key] = len(aux)
            aux.append(AuxStream(sources, plan))
        index.append(None if key is None else streams[key])
    return StepData(depth, aux, cfg.train.batch_size, rank, world), index
