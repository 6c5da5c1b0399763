"""Cohorts in the plan: the missing runs grouped so that each group trains in one process.

Runs that share ``cohort_key`` (training/cohort.py: backbone and weights, depth dataset, fraction,
seed, batch size, iterations, depth augmentation, evaluation schedule and test set, precision) read
identical depth batches and test images; ``form`` groups them, keeping runs with the same auxiliary
setting next to each other (they also share the auxiliary batch), and splits a group larger than
``runner.cohort``'s cap into even parts. A cohort's id is the content address of its members, so the
same missing runs always form the same cohorts; ``write`` records each cohort's members for its job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mdeaux import atomic
from mdeaux.params import Cohort as CohortSettings
from mdeaux.runs.plan import Run
from mdeaux.runs.store import ID_LENGTH, CohortDir, RunStore
from mdeaux.training.cohort import aux_key, cohort_key


@dataclass(frozen=True)
class Cohort:
    runs: tuple[Run, ...]

    @property
    def id(self) -> str:
        return hashlib.sha256("\n".join(sorted(r.id for r in self.runs)).encode()).hexdigest()[:ID_LENGTH]

    @property
    def label(self) -> str:
        """Depth dataset, fraction and seed, and the number of runs: what the members share."""
        cfg = self.runs[0].config
        frac = "" if cfg.fraction == 1.0 else f"/f{cfg.fraction:g}"
        return f"{cfg.depth_dataset}{frac}/s{cfg.seed}: {len(self.runs)} run{'s' if len(self.runs) > 1 else ''}"


def form(runs: list[Run], settings: CohortSettings) -> list[Cohort]:
    """The cohorts of ``runs`` (in plan order): grouped by ``cohort_key``, each group ordered by
    auxiliary setting and split into the fewest even parts of at most ``settings.cap`` runs."""
    cap = settings.cap
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(cohort_key(run.config), []).append(run)
    out = []
    for group in groups.values():
        order = {}
        for run in group:
            order.setdefault(aux_key(run.config), len(order))
        group = sorted(group, key=lambda r: order[aux_key(r.config)])  # stable: plan order within a setting
        parts = -(-len(group) // cap)
        size, extra = divmod(len(group), parts)
        start = 0
        for i in range(parts):
            end = start + size + (i < extra)
            out.append(Cohort(tuple(group[start:end])))
            start = end
    return out


def write(store: RunStore, cohorts: list[Cohort]) -> None:
    """Each cohort's ``members.json``; a ``done.json`` left by an earlier training of the same members
    is removed (a planned cohort has a missing run, so the marker is stale and must not stop its job)."""
    for cohort in cohorts:
        folder = store.cohort(cohort.id)
        ids = [r.id for r in cohort.runs]
        if not (folder / CohortDir.MEMBERS).is_file() or folder.members() != ids:
            atomic.write_json(folder / CohortDir.MEMBERS, ids)
        (folder / CohortDir.DONE).unlink(missing_ok=True)


def of_runs(cohorts: list[Cohort]) -> dict[str, Cohort]:
    """Run id -> its cohort."""
    return {r.id: c for c in cohorts for r in c.runs}
