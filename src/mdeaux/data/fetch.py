"""The fetch stage: get a dataset's archives, verify them and unpack them into ``data/raw/<ds>/``.

Sources by profile:

* ``mini``: the synthetic mirror ``data/mirror/<ds>/`` written by ``mdeaux synth``, checked against
  its ``SHA256SUMS``;
* ``paper``: a hand-placed file in ``data/manual/<ds>/`` if present, else the spec's URLs (tried in
  order, ``mdeaux.data.download``), else the spec's manual instructions are shown.

Archives are unpacked with ``mdeaux.data.extract.safe_extract``; pinned files inside them are checked
(``paper`` profile), ``FETCHED.json`` records where every archive came from, and the new
``data/raw/<ds>/`` replaces the old one as a whole, only when everything succeeded. Downloads that
were cut keep their ``.part`` files in ``data/raw/.<ds>.downloads/`` and resume on the next run.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from mdeaux.atomic import atomic_dir, write_json
from mdeaux.data.datasets.spec import Archive, DatasetSpec
from mdeaux.data.download import (
    download_with_digests,
    file_digests,
    redact_url,
    verify_file,
)
from mdeaux.data.extract import safe_extract
from mdeaux.data.fetch_error import FetchError

log = logging.getLogger(__name__)

PROFILES = ("mini", "paper")


def read_sha256sums(mirror_dir: Path) -> dict[str, str]:
    """``{filename: sha256}`` from ``<mirror_dir>/SHA256SUMS`` (``sha256sum`` output format)."""
    sums_path = Path(mirror_dir) / "SHA256SUMS"
    if not sums_path.is_file():
        raise FetchError(
            f"no synthetic mirror at {mirror_dir} ({sums_path} is missing): run `mdeaux synth` "
            "(or `dvc repro synth`) to build it, then fetch again"
        )
    sums = {}
    for lineno, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if not match:
            raise FetchError(f"{sums_path}:{lineno}: expected '<sha256 hex>  <filename>', got {line!r}")
        sums[match.group(2)] = match.group(1).lower()
    return sums


def _fetch_local(path: Path, kind: str, sha256: str | None, md5: str | None,
                 size: int | None) -> tuple[Path, dict]:
    digests = verify_file(path, f"{kind} archive {path}", sha256, md5, size, delete=False)
    # the dataset folder and file, not the absolute path: the record is the same in every clone
    return path, {"source": f"{kind}:{path.parent.name}/{path.name}", **digests}


def _fetch_urls(archive: Archive, downloads: Path, retries: int, progress: bool) -> tuple[Path, dict]:
    dest = downloads / archive.filename
    errors = []
    for url in archive.urls:
        try:
            digests = download_with_digests(url, dest, sha256=archive.sha256, md5=archive.md5, size=archive.size,
                                            retries=retries, timeout=60.0, backoff=0.5, progress=progress)
            return dest, {"source": redact_url(url), **digests}
        except FetchError as err:
            errors.append(str(err))
    raise FetchError(f"could not fetch {archive.filename} from any of its URLs:\n  " + "\n  ".join(errors))


def _resolve(archive: Archive, profile: str, mirror_dir: Path, manual_dir: Path, sums: dict[str, str],
             downloads: Path, retries: int, progress: bool) -> tuple[Path, dict]:
    """Where ``archive`` comes from: (a verified local file, its record fields)."""
    if profile == "mini":
        path = mirror_dir / archive.filename
        if archive.filename not in sums or not path.is_file():
            raise FetchError(
                f"the synthetic mirror {mirror_dir} has no verified {archive.filename} "
                f"({'file missing' if not path.is_file() else 'no SHA256SUMS entry'}): "
                "run `mdeaux synth` (or `dvc repro synth`) to rebuild it"
            )
        return _fetch_local(path, "mirror", sums[archive.filename], None, None)
    manual = manual_dir / archive.filename
    if manual.is_file():
        return _fetch_local(manual, "manual", archive.sha256, archive.md5, archive.size)
    if archive.urls:
        return _fetch_urls(archive, downloads, retries, progress)
    if archive.manual:
        raise FetchError(f"{archive.manual.rstrip()}\n\nExpected file: {manual}")
    raise FetchError(f"{archive.filename} has no URL and no manual instructions, and {manual} does not exist")


def _check_pinned(spec: DatasetSpec, tree: Path) -> dict[str, str]:
    checked = {}
    for rel, expected in spec.pinned_files:
        path = tree / rel
        if not path.is_file():
            raise FetchError(f"{spec.name}: pinned file {rel} (sha256 {expected}) is missing from the extracted archive")
        actual = file_digests(path)["sha256"]
        if actual != expected.lower():
            raise FetchError(
                f"{spec.name}: pinned file {rel} has sha256 {actual}, expected {expected.lower()}: "
                "the archive is not the published version"
            )
        checked[rel] = actual
    return checked


def fetch_dataset(spec: DatasetSpec, raw_dir: Path, *, profile: str, mirror_dir: Path, manual_dir: Path,
                  retries: int = 5, progress: bool = True) -> dict:
    """Fetch, verify and unpack ``spec``'s archives into ``raw_dir`` (replaced as a whole); returns the record."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    raw_dir, mirror_dir, manual_dir = Path(raw_dir), Path(mirror_dir), Path(manual_dir)
    sums = read_sha256sums(mirror_dir) if profile == "mini" else {}
    # .part files of interrupted downloads live here between runs (resumed next time)
    downloads = raw_dir.parent / f".{raw_dir.name}.downloads"
    # what a fetch killed while extracting left: the staging folder of raw_dir (atomic_dir), or the old
    # raw_dir it was replacing (nothing else writes there while DVC runs this stage)
    for stale in [*raw_dir.parent.glob(f".{raw_dir.name}.*.tmp"), raw_dir.parent / f".{raw_dir.name}.old"]:
        if stale.is_dir():
            log.info("%s: removing %s, left by an interrupted fetch", spec.name, stale)
            shutil.rmtree(stale)
    records = []
    try:
        with atomic_dir(raw_dir) as tree:
            for archive in spec.archives:
                path, fields = _resolve(archive, profile, mirror_dir, manual_dir, sums, downloads, retries, progress)
                if archive.extract:
                    safe_extract(path, tree)
                    if path.parent == downloads:
                        path.unlink()
                elif path.parent == downloads:
                    os.replace(path, tree / archive.filename)
                else:
                    shutil.copyfile(path, tree / archive.filename)
                records.append({"filename": archive.filename, **fields, "extracted": archive.extract})
            record = {"dataset": spec.name, "profile": profile, "archives": records}
            if profile == "paper" and spec.pinned_files:
                record["pinned_files"] = _check_pinned(spec, tree)
            write_json(tree / "FETCHED.json", record)
    finally:
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    return record



__all__ = ["FetchError", "PROFILES", "fetch_dataset", "read_sha256sums"]
