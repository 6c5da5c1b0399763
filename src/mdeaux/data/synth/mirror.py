"""The synthetic mirror: every dataset's mini-world writer and the checksummed ``mirror/<name>/`` folders.

``write_mirror`` is what the synth stage calls; the fetch stage reads the archives back and checks
them against each folder's ``SHA256SUMS``. This module imports the per-family writer modules; they
never import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from mdeaux.atomic import write_text
from mdeaux.data.datasets.registry import REGISTRY
from mdeaux.data.synth import (
    cityscapes,
    indoor_depth,
    lidar_depth,
    nyu_ade,
    nyu_labeled,
    seg_sets,
    sunrgbd,
)
from mdeaux.data.synth.archive import derive_seed, sha256_file

WRITERS: dict[str, Callable[..., list[Path]]] = {
    **nyu_ade.WRITERS,
    "nyuv2_labeled": nyu_labeled.write_nyuv2_labeled,
    "sunrgbd": sunrgbd.write_sunrgbd,
    "sunrgbd_seg": sunrgbd.write_sunrgbd_seg,
    **indoor_depth.WRITERS,
    **lidar_depth.WRITERS,
    **seg_sets.WRITERS,
    "cityscapes": cityscapes.write_cityscapes,
    "cityscapes19": cityscapes.write_cityscapes19,
}


def all_writers() -> dict[str, Callable[..., list[Path]]]:
    """Every dataset's writer ``(out_dir, counts, seed, workers) -> archives`` (a copy of ``WRITERS``)."""
    return dict(WRITERS)


def write_sha256sums(folder: Path, files: Iterable[Path]) -> Path:
    """``folder/SHA256SUMS`` in sha256sum format: ``<hex>  <path relative to folder>`` lines."""
    lines = "".join(f"{sha256_file(f)}  {Path(f).relative_to(folder).as_posix()}\n" for f in sorted(files))
    write_text(folder / "SHA256SUMS", lines)
    return folder / "SHA256SUMS"


def write_mirror(mirror_root: Path, counts: dict[str, dict[str, int]], seed: int, workers: int = 2) -> dict[str, list[Path]]:
    """Write ``mirror_root/<name>/<archives>`` and ``SHA256SUMS`` for every dataset in ``counts``.

    ``counts`` maps a dataset name to its split sizes, e.g. ``{"nyuv2": {"train": 48, "test": 12}}``.
    Frames render in ``workers`` spawned processes, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    writers = all_writers()
    for name, splits in counts.items():
        if name not in writers:
            raise ValueError(f"no synthetic writer for dataset {name!r}; supported: {', '.join(sorted(writers))}")
        expected = REGISTRY[name].splits
        if not isinstance(splits, Mapping) or set(splits) != set(expected):
            got = sorted(splits) if isinstance(splits, Mapping) else splits
            raise ValueError(f"counts[{name!r}] must give the splits {list(expected)}, got {got!r}")
    archives: dict[str, list[Path]] = {}
    for name, splits in counts.items():
        folder = Path(mirror_root) / name
        written = writers[name](folder, dict(splits), derive_seed(seed, name), workers=workers)
        write_sha256sums(folder, written)
        archives[name] = written
    return archives
