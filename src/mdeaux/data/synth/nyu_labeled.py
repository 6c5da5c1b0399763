"""Synthetic NYU Depth V2 labeled set: ``nyu_depth_v2_labeled.mat`` (v7.3-like HDF5) + ``splits.mat`` (v5).

What is written (the NYU Depth V2 labeled set and ``splits.mat`` as cleinc/bts
``utils/extract_official_train_test_set_from_mat.py`` reads them; see mdeaux.data.datasets.nyu_labeled
for the reader side):

* ``nyu_depth_v2_labeled.mat``: HDF5 with a 512-byte MATLAB 7.3 user block, datasets in MATLAB's
  column-major order as h5py shows them: ``images`` (N, 3, 640, 480) uint8, ``depths`` (N, 640, 480)
  float32 (the renderer's noise-free depth, standing in for the inpainted map), ``rawDepths``
  (N, 640, 480) float32 (the renderer's Kinect-like depth, 0 = no reading), ``labels`` (N, 640, 480)
  uint16 (0 = unlabelled; the renderer's surface classes numbered 1.. in ``all_class_names()`` order —
  our choice, the official 894-class ``names`` list is not reproduced). Other official variables
  (``names``, ``scenes``, ``sceneTypes``, ``instances``, ...) are not written: the reader does not use them.
* ``splits.mat``: MATLAB v5 with ``trainNdxs`` / ``testNdxs`` as 1-based double column vectors.
  Train and test frames are interleaved in the .mat (as in the official file) by a seeded choice.

N = train + test frames at the official 640x480. Bytes depend only on the seed and counts (HDF5
objects carry no timestamps, the v5 header a fixed text), not on ``workers``.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from mdeaux.data.datasets.nyu_labeled import (
    LABELED_MAT,
    NYU_HEIGHT,
    NYU_WIDTH,
    NYUV2_LABELED,
    SPLITS_MAT,
)
from mdeaux.data.synth.archive import check_count, derive_seed, run_jobs
from mdeaux.data.synth.render import render_frame
from mdeaux.data.synth.room import all_class_names

MAT5_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970"  # fixed text
MAT73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 HDF5 schema 1.00 ."
LABEL_IDS = {name: k + 1 for k, name in enumerate(all_class_names())}  # our choice; 0 = unlabelled
UNLABELLED = 0
CHUNK = 16  # frames rendered per batch (bounds memory for large counts)


@dataclass(frozen=True)
class LabeledFrame:
    rgb: np.ndarray  # (480, 640, 3) uint8
    depth: np.ndarray  # (480, 640) float32 metres
    raw_depth: np.ndarray  # (480, 640) float32 metres, 0 = invalid
    labels: np.ndarray  # (480, 640) uint16


def render_labeled_job(seed: int) -> LabeledFrame:
    frame = render_frame(seed, LABEL_IDS, width=NYU_WIDTH, height=NYU_HEIGHT, other=UNLABELLED)
    return LabeledFrame(frame.rgb, frame.depth.astype(np.float32), frame.raw_depth.astype(np.float32),
                        frame.labels.astype(np.uint16))


def _create(h5, name: str, shape: tuple[int, ...], dtype, matlab_class: str):
    ds = h5.create_dataset(name, shape=shape, dtype=dtype, track_times=False)
    ds.attrs["MATLAB_class"] = np.bytes_(matlab_class.encode())
    return ds


def write_labeled_mat(path: Path, frames) -> None:
    """Write LabeledFrames (one per .mat index, in order) as a v7.3-like HDF5 file.

    ``frames`` is a list, or an ``(n, iterator)`` pair yielding exactly n frames (streamed, so memory
    stays bounded). MATLAB's column-major (H, W, ...) arrays are C order with every axis reversed.
    """
    import h5py

    n, items = (len(frames), iter(frames)) if isinstance(frames, list) else frames
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as h5:
        images = _create(h5, "images", (n, 3, NYU_WIDTH, NYU_HEIGHT), np.uint8, "uint8")
        depths = _create(h5, "depths", (n, NYU_WIDTH, NYU_HEIGHT), np.float32, "single")
        raw_depths = _create(h5, "rawDepths", (n, NYU_WIDTH, NYU_HEIGHT), np.float32, "single")
        labels = _create(h5, "labels", (n, NYU_WIDTH, NYU_HEIGHT), np.uint16, "uint16")
        written = 0
        for i, f in enumerate(items):
            images[i] = np.transpose(f.rgb, (2, 1, 0))  # (H, W, 3) -> (3, W, H)
            depths[i] = f.depth.T
            raw_depths[i] = f.raw_depth.T
            labels[i] = f.labels.T
            written += 1
        if written != n:
            raise ValueError(f"write_labeled_mat: expected {n} frames, got {written}")
    with open(path, "r+b") as fh:  # the MATLAB 7.3 user block: text, then version 0x0200 and "IM"
        fh.write(MAT73_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def splits_mat_bytes(train: list[int], test: list[int]) -> bytes:
    """MATLAB v5 ``splits.mat`` with 1-based double column vectors and a fixed header text."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, {
        "trainNdxs": np.asarray(train, np.float64).reshape(-1, 1),
        "testNdxs": np.asarray(test, np.float64).reshape(-1, 1),
    }, format="5", do_compression=False)
    data = bytearray(buf.getvalue())
    data[:116] = MAT5_HEADER.ljust(116, b" ")
    return bytes(data)


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_nyuv2_labeled(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1) -> list[Path]:
    """``nyu_depth_v2_labeled.mat`` and ``splits.mat`` in ``out_dir``; counts keys ``train``, ``test``."""
    if not isinstance(counts, Mapping) or set(counts) != {"train", "test"}:
        raise ValueError(f"{NYUV2_LABELED.name}: counts must give the splits ['train', 'test'], got {counts!r}")
    n_train, n_test = check_count("train", counts["train"]), check_count("test", counts["test"])
    n = n_train + n_test
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, NYUV2_LABELED.name, "split")))
    test = sorted(int(i) + 1 for i in rng.choice(n, size=n_test, replace=False)) if n_test else []
    train = sorted(set(range(1, n + 1)) - set(test))
    seeds = [derive_seed(seed, NYUV2_LABELED.name, i) for i in range(1, n + 1)]

    def frames():
        for start in range(0, n, CHUNK):
            yield from run_jobs(render_labeled_job, seeds[start:start + CHUNK], workers, f"synth {NYUV2_LABELED.name}")

    mat_path, splits_path = out_dir / LABELED_MAT, out_dir / SPLITS_MAT
    _atomic_write(mat_path, lambda p: write_labeled_mat(p, (n, frames())))
    _atomic_write(splits_path, lambda p: p.write_bytes(splits_mat_bytes(train, test)))
    paths = [mat_path, splits_path]
    assert [p.name for p in paths] == [a.filename for a in NYUV2_LABELED.archives]
    return paths


__all__ = ["LABEL_IDS", "LabeledFrame", "splits_mat_bytes", "write_labeled_mat", "write_nyuv2_labeled"]
