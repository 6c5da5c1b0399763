"""Nested, seeded training fractions of each prepared dataset.

The train ids are put in a seeded order: sorted by sha256(f"{seed}:{id}"), which is a permutation
that depends only on the seed and the set of ids (not on their input order, the platform or the
numpy version). Fraction f takes the first max(1, ceil(f * N)) ids of that order, so every smaller
fraction is a subset of every larger one (1% ⊂ 10% ⊂ 100%).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from mdeaux.atomic import atomic_dir, write_json

if TYPE_CHECKING:
    from mdeaux.data.prepare import PreparedDataset


def fraction_key(f: float) -> str:
    """The JSON key of a fraction: "0.01", "0.1", "1.0"."""
    return repr(float(f))


def check_fractions(fractions: Iterable[float]) -> list[float]:
    """Sorted unique fractions in (0, 1], with 1.0 added; ValueError naming any bad value."""
    out = {1.0}
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"data fraction {f!r} is not a number in (0, 1]")
        out.add(float(f))
    return sorted(out)


def seeded_order(ids: Iterable[str], seed: int) -> list[str]:
    """A seeded permutation of ``ids`` that does not depend on their input order."""
    return sorted(ids, key=lambda i: (hashlib.sha256(f"{seed}:{i}".encode()).digest(), i))


def subset_size(f: float, n: int) -> int:
    """max(1, ceil(f * n)), computed exactly (0.07 * 100 is 7, not 8)."""
    return max(1, math.ceil(Fraction(repr(float(f))) * n))


def make_split(ids_train: list[str], ids_test: list[str], fractions: list[float], seed: int) -> dict:
    """{"seed", "fractions": {"<f>": sorted ids}, "test": sorted ids}; nested across fractions."""
    fracs = check_fractions(fractions)
    for name, ids in (("train", ids_train), ("test", ids_test)):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate {name} ids: {dupes[:10]}")
    if not ids_train:
        raise ValueError("no train ids to split")
    leaked = sorted(set(ids_train) & set(ids_test))
    if leaked:
        raise ValueError(f"{len(leaked)} id(s) are in both train and test: {leaked[:10]}")
    order = seeded_order(ids_train, seed)
    return {
        "seed": int(seed),
        "fractions": {fraction_key(f): sorted(order[: subset_size(f, len(order))]) for f in fracs},
        "test": sorted(ids_test),
    }


def write_splits(
    prepared: dict[str, PreparedDataset],
    out_dir: Path,
    fractions: list[float],
    seed: int,
    subsets: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/<ds>.json`` for every dataset (the folder is replaced as a whole).

    ``subsets`` restricts a dataset's training set to a seeded fraction first (the paper's random 10%
    of Taskonomy, paper §4); the nested fractions are then taken of that subset.
    """
    out_dir = Path(out_dir)
    subsets = subsets or {}
    documents = {}
    for name, ds in prepared.items():
        spec = ds.spec
        if name != spec.name:
            raise ValueError(f"prepared dataset under key {name!r} is {spec.name!r}")
        train_split, test_split = spec.splits[0], spec.test_split
        train = ds.ids(train_split)
        if name in subsets:
            check_fractions([subsets[name]])
            train = sorted(seeded_order(train, seed)[: subset_size(subsets[name], len(train))])
        split = make_split(train, ds.ids(test_split), fractions, seed)
        documents[name] = {
            "subset": subsets.get(name, 1.0),
            "dataset": name,
            "seed": split["seed"],
            "train_split": train_split,
            "test_split": test_split,
            "fractions": split["fractions"],
            "test": split["test"],
            "data_version": ds.data_version,
        }
    with atomic_dir(out_dir) as tmp:
        for name, doc in documents.items():
            write_json(tmp / f"{name}.json", doc)
    return {name: out_dir / f"{name}.json" for name in documents}


class SplitFile:
    """A dataset's split file (``data/splits/<ds>.json``), the one way the pipeline reads it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} is missing: run `dvc repro split` (or `mdeaux split`) first")
        try:
            self.doc = json.loads(self.path.read_text())
            self.fractions: dict[str, list[str]] = self.doc["fractions"]
            self.test: list[str] = list(self.doc["test"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path}: not a split file ({err}); run `dvc repro split` (or `mdeaux split`) again") from None

    def train(self, fraction: float) -> list[str]:
        """The training ids of ``fraction`` (nested: every smaller fraction is a subset)."""
        key = fraction_key(fraction)
        if key not in self.fractions:
            raise KeyError(f"{self.path}: no training fraction {key} (has {sorted(self.fractions)}); add it to split.fractions")
        return list(self.fractions[key])

    def digest(self, fraction: float) -> str:
        """sha256 of the ids a run reads (its fraction and the test list): adding a fraction changes no run."""
        text = json.dumps([self.train(fraction), self.test], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()
