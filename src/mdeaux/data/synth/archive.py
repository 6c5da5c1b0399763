"""Deterministic encodings and archive helpers shared by every mini-world writer.

Every dataset gets its own seed derived from the mirror seed and its name, and every frame its own
seed derived from that (``derive_seed``), so the bytes do not depend on the number of worker
processes (``run_jobs``). Zips and tars use a fixed member order, timestamps, permissions and
compression; images are encoded with fixed settings and no metadata.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mdeaux.atomic import atomic_path

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # earliest date a zip can hold; fixed for reproducible archives
FILE_ATTR = 0o100644 << 16  # -rw-r--r--
DIR_ATTR = (0o040755 << 16) | 0x10  # drwxr-xr-x + MS-DOS directory flag
TAR_MTIME = 0  # fixed tar member times and gzip header time for reproducible archives
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 6


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 64-bit seed from ``seed`` and keys (dataset name, split, index) via ``np.random.SeedSequence``."""
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    entropy = [int(seed)] + [int.from_bytes(k.encode(), "little") if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """Baseline JPEG, fixed quality and 4:2:0 subsampling, no EXIF."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue()


def encode_png(array: np.ndarray) -> bytes:
    """PNG of a 2-D uint8 ('L') or uint16 ('I;16') array, fixed zlib level, no text or time chunks."""
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 array, got {array.dtype} with shape {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def write_zip(target: Path, root: Path) -> None:
    """Zip everything under ``root`` (which holds the archive's top folder) reproducibly and atomically."""
    entries = sorted(
        (p.relative_to(root).as_posix() + ("/" if p.is_dir() else ""), p) for p in root.rglob("*")
    )
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, path in entries:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                info.create_system = 3  # unix, whatever the host
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = DIR_ATTR if name.endswith("/") else FILE_ATTR
                zf.writestr(info, b"" if name.endswith("/") else path.read_bytes())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_count(name: str, value: object) -> int:
    """``value`` as an int; a ValueError naming ``name`` unless it is a non-negative integer (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def run_jobs(fn: Callable, jobs: list, workers: int, desc: str) -> list:
    """``fn`` over ``jobs`` in order, in ``workers`` processes, with a progress bar."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        return [fn(job) for job in tqdm(jobs, desc=desc, unit="frame")]
    # spawn: children start clean (no inherited threads or locks), on every platform
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return list(tqdm(pool.imap(fn, jobs, chunksize=1), total=len(jobs), desc=desc, unit="frame"))
