"""The data stages of the DAG as ``mdeaux <stage>`` runs them: which params each one reads and where
it writes (``dvc.yaml`` lists the same). Per-dataset stages take a list of dataset names."""

from __future__ import annotations

import logging
import time

from mdeaux.data.datasets.registry import get
from mdeaux.params import Params
from mdeaux.paths import Paths

log = logging.getLogger(__name__)


def synth(paths: Paths, params: Params) -> None:
    """The synthetic mini world's archives in the official formats, with checksums (mini profile)."""
    from mdeaux.data.synth.mirror import write_mirror

    if params.profile != "mini":
        log.info("profile %r reads real data: no synthetic world is written", params.profile)
        paths.mirror.mkdir(parents=True, exist_ok=True)
        (paths.mirror / "README.md").write_text(f"profile {params.profile}: no synthetic archives (real sources are used)\n")
        return
    counts = {name: c.model_dump(exclude_none=True) for name, c in params.synth.counts.items() if name in params.datasets}
    start = time.perf_counter()
    write_mirror(paths.mirror, counts, seed=params.synth.seed, workers=params.prepare.workers)
    log.info("synthetic world written to %s in %.1f s", paths.mirror, time.perf_counter() - start)


def fetch(paths: Paths, params: Params, names: list[str]) -> None:
    from mdeaux.data.fetch import fetch_dataset

    for name in names:
        record = fetch_dataset(get(name), paths.raw_of(name), profile=params.profile, mirror_dir=paths.mirror_of(name),
                               manual_dir=paths.manual / name, retries=params.fetch.retries)
        log.info("%s: fetched %d archive(s) into %s", name, len(record.get("archives", record)), paths.raw_of(name))


def prepare(paths: Paths, params: Params, names: list[str]) -> None:
    from mdeaux.data.prepare import prepare_dataset

    for name in names:
        manifest = prepare_dataset(get(name), paths.raw_of(name), paths.prepared_of(name), workers=params.prepare.workers,
                                   shard_rows=params.prepare.shard_rows, check_pinned=params.profile == "paper")
        log.info("%s: prepared %s", name, manifest.get("counts"))


def validate(paths: Paths, params: Params, names: list[str]) -> None:
    """Validate each dataset and write its report; a violation in one does not stop the others, and
    the stage fails at the end naming every dataset that failed."""
    from mdeaux.data.validate import ValidationError, validate_dataset

    failed = []
    for name in names:
        spec = get(name)
        # exact split sizes: what the mini world wrote, or the official sizes where published
        expected = dict(spec.official_counts) or None
        if params.profile == "mini":
            counts = params.synth.counts.get(name)
            expected = counts.model_dump(exclude_none=True) if counts else None
        try:
            validate_dataset(spec, paths.prepared_of(name), paths.validation_reports / name,
                             min_valid_frac=params.validate_.min_valid_frac, expected_counts=expected,
                             max_depth_sanity=params.validate_.max_depth_sanity,
                             min_depth_max_sanity=params.validate_.min_depth_max_sanity)
        except ValidationError as e:
            log.error("%s: validation failed (the reason follows at the end)", name)
            failed.append(str(e))
            continue
        log.info("%s: validation passed; report in %s", name, paths.validation_reports / name / "index.html")
    if failed:
        raise ValidationError(f"{len(failed)} of {len(names)} dataset(s) failed validation:\n" + "\n".join(failed))


def split(paths: Paths, params: Params) -> None:
    from mdeaux.data.prepare import PreparedDataset
    from mdeaux.data.split import write_splits

    from mdeaux.data.validate import refuse_if_failed

    prepared = {name: PreparedDataset(paths.prepared_of(name)) for name in params.datasets}
    for name, data in prepared.items():
        refuse_if_failed(paths.validation_reports / name, name, data.data_version)
    written = write_splits(prepared, paths.splits, params.split.fractions, params.split.seed, params.split.subsets)
    log.info("splits written: %s", ", ".join(str(p) for p in written.values()))
