"""Prepare a dataset: raw official layout -> Parquet shards of the original bytes + per-sample stats.

``prepare_dataset`` reads ``spec.reader(raw_dir)`` and writes, atomically as one folder::

    out_dir/shards/part-00000.parquet  id, split, image, image_format, depth, label (encoded bytes)
    out_dir/stats.parquet              one row per sample: shapes, depth range, classes, decode_error
    out_dir/manifest.json              counts, shard digests, data_version

The stored bytes are the files of the official layout, untouched (lossless; no re-encoding). Each
shard has one row per Parquet row group, so ``PreparedDataset`` reads a single sample from a
memory-mapped shard without touching its neighbours. Statistics are computed from the *stored*
shards, in a process pool, so what validation sees is what training will read. A sample that fails
to decode does not stop preparation: its ``decode_error`` is recorded for validation to report.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mdeaux.atomic import atomic_dir, write_json
from mdeaux.data.datasets.spec import DatasetSpec, RawSample

SCHEMA_VERSION = 1

SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("image", pa.binary()),
        ("image_format", pa.string()),
        ("depth", pa.binary()),  # null for segmentation sets
        ("label", pa.binary()),  # null for depth sets
    ]
)

_COMMON_STATS = [
    ("id", pa.string()),
    ("split", pa.string()),
    ("shard", pa.int32()),
    ("row", pa.int32()),
    ("image_bytes", pa.int64()),
    ("image_height", pa.int32()),
    ("image_width", pa.int32()),
    ("decode_error", pa.string()),
]
_DEPTH_STATS = [
    ("depth_height", pa.int32()),
    ("depth_width", pa.int32()),
    ("depth_finite", pa.bool_()),
    ("depth_min", pa.float64()),  # min / max / mean over finite pixels != 0 (0 = no reading; a negative one shows)
    ("depth_max", pa.float64()),
    ("depth_mean", pa.float64()),
    ("depth_nonzero_frac", pa.float64()),
    ("depth_valid_frac", pa.float64()),  # spec.min_depth < d < spec.max_depth
]
_LABEL_STATS = [
    ("label_height", pa.int32()),
    ("label_width", pa.int32()),
    ("label_max", pa.int32()),  # max class id other than ignore_index, -1 when none
    ("label_bad_count", pa.int64()),  # pixels neither in [0, num_classes) nor ignore_index
    ("ignore_frac", pa.float64()),
    ("classes_present", pa.list_(pa.int32())),  # valid class ids present, sorted
]


def stats_schema(task: str) -> pa.Schema:
    """Schema of stats.parquet for a "depth" or "segmentation" dataset."""
    extra = {"depth": _DEPTH_STATS, "segmentation": _LABEL_STATS}
    if task not in extra:
        raise ValueError(f"unknown task {task!r}: expected 'depth' or 'segmentation'")
    return pa.schema(_COMMON_STATS + extra[task])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


# -- per-sample statistics ----------------------------------------------------------------------


def _clean_error(part: str, exc: Exception) -> str:
    """A stable one-line error text (object addresses removed, so reruns give identical stats)."""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", str(exc)).strip() or type(exc).__name__
    return f"{part}: {type(exc).__name__}: {text}"


def _depth_stats(spec: DatasetSpec, depth: np.ndarray) -> dict[str, Any]:
    finite = np.isfinite(depth)
    positive = finite & (depth > 0)
    values = depth[finite & (depth != 0)]  # readings, negative ones included (validation refuses them)
    valid = finite & (depth > spec.min_depth) & (depth < spec.max_depth)
    return {
        "depth_height": depth.shape[0],
        "depth_width": depth.shape[1],
        "depth_finite": bool(finite.all()),
        "depth_min": float(values.min()) if values.size else None,
        "depth_max": float(values.max()) if values.size else None,
        "depth_mean": float(values.mean(dtype=np.float64)) if values.size else None,
        "depth_nonzero_frac": float(positive.mean()),
        "depth_valid_frac": float(valid.mean()),
    }


def _label_stats(spec: DatasetSpec, label: np.ndarray) -> dict[str, Any]:
    if label.dtype != np.uint8:
        raise ValueError(f"expected uint8 class indices from decode_label, got {label.dtype}")
    counts = np.bincount(label.ravel(), minlength=256)
    ignore = spec.ignore_index
    counts_no_ignore = counts.copy()
    if 0 <= ignore < 256:
        counts_no_ignore[ignore] = 0
    present = np.flatnonzero(counts_no_ignore)
    return {
        "label_height": label.shape[0],
        "label_width": label.shape[1],
        "label_max": int(present.max()) if present.size else -1,
        "label_bad_count": int(counts_no_ignore[spec.num_classes :].sum()),
        "ignore_frac": float(counts[ignore] / label.size) if 0 <= ignore < 256 else 0.0,
        "classes_present": [int(c) for c in present if c < spec.num_classes],
    }


def sample_stats(spec: DatasetSpec, row: dict[str, Any]) -> dict[str, Any]:
    """Statistics of one stored sample (a shard row); decoding failures go to ``decode_error``."""
    names = stats_schema(spec.task).names
    out: dict[str, Any] = dict.fromkeys(names)
    out.update(id=row["id"], split=row["split"], image_bytes=len(row["image"]))
    errors = []
    try:
        image = spec.decode_image(row["image"])
        out.update(image_height=image.shape[0], image_width=image.shape[1])
    except Exception as exc:  # recorded, reported by validation
        errors.append(_clean_error("image", exc))
    if spec.task == "depth":
        try:
            out.update(_depth_stats(spec, spec.decode_depth(row["depth"])))
        except Exception as exc:
            errors.append(_clean_error("depth", exc))
    else:
        try:
            out.update(_label_stats(spec, spec.decode_label(row["label"])))
        except Exception as exc:
            errors.append(_clean_error("label", exc))
    out["decode_error"] = "; ".join(errors) if errors else None
    return out


# -- shard access (shared by the stats workers and PreparedDataset) ------------------------------


class _ShardReader:
    """Lazily opened, memory-mapped shards of one prepared folder; one row group = one sample."""

    def __init__(self, shard_paths: list[Path]):
        self.paths = shard_paths
        self._open: dict[int, pq.ParquetFile] = {}

    def read(self, shard: int, row: int) -> dict[str, Any]:
        f = self._open.get(shard)
        if f is None:
            f = self._open[shard] = pq.ParquetFile(self.paths[shard], memory_map=True)
        return f.read_row_group(row).to_pylist()[0]

    def __getstate__(self):
        return {"paths": self.paths, "_open": {}}  # file handles are reopened after unpickling


_worker: dict[str, Any] = {}


def _init_worker(spec: DatasetSpec, shard_paths: list[Path]) -> None:
    _worker["spec"] = spec
    _worker["reader"] = _ShardReader(shard_paths)


def _stats_task(task: tuple[int, int]) -> dict[str, Any]:
    shard, row = task
    stats = sample_stats(_worker["spec"], _worker["reader"].read(shard, row))
    stats.update(shard=shard, row=row)
    return stats


# -- prepare ------------------------------------------------------------------------------------


def check_pinned_files(spec: DatasetSpec, raw_dir: Path) -> None:
    """Verify ``spec.pinned_files`` (path under raw_dir, sha256); raise naming file and digests."""
    for rel, expected in spec.pinned_files:
        path = raw_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name}: pinned file {path} is missing (expected sha256 {expected})")
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"{spec.name}: pinned file {path} has sha256 {actual}, expected {expected}")


def _check_sample(spec: DatasetSpec, sample: RawSample) -> None:
    if not isinstance(sample.id, str) or not sample.id:
        raise ValueError(f"{spec.name}: reader yielded a sample with an empty id: {sample.id!r}")
    if sample.split not in spec.splits:
        raise ValueError(
            f"{spec.name}: sample {sample.id} has split {sample.split!r}, expected one of {list(spec.splits)}"
        )
    needed = "depth" if spec.task == "depth" else "label"
    if getattr(sample, needed) is None:
        raise ValueError(f"{spec.name}: sample {sample.id} has no {needed} map ({spec.task} dataset)")


def _write_shards(spec: DatasetSpec, raw_dir: Path, shard_dir: Path, shard_rows: int) -> tuple[list[dict], Counter]:
    """Stream the reader into shards of at most ``shard_rows`` rows; return shard records and counts."""
    shard_dir.mkdir(parents=True)
    shards: list[dict] = []
    seen: set[str] = set()
    counts: Counter = Counter()
    batch: list[RawSample] = []

    def flush() -> None:
        path = shard_dir / shard_name(len(shards))
        columns = {name: [getattr(s, name) for s in batch] for name in SHARD_SCHEMA.names}
        table = pa.Table.from_pydict(columns, schema=SHARD_SCHEMA)
        # one sample per row group: random access reads exactly one sample; payload is already
        # compressed (JPEG/PNG), so no Parquet compression; no statistics on the byte columns
        pq.write_table(
            table, path, row_group_size=1, compression="none", use_dictionary=False, write_statistics=False
        )
        shards.append({"file": f"shards/{path.name}", "rows": len(batch), "sha256": sha256_file(path)})
        batch.clear()

    for sample in spec.reader(raw_dir):
        _check_sample(spec, sample)
        if sample.id in seen:
            raise ValueError(f"{spec.name}: duplicate sample id {sample.id!r} in {raw_dir}")
        seen.add(sample.id)
        counts[sample.split] += 1
        batch.append(sample)
        if len(batch) >= shard_rows:
            flush()
    if batch:
        flush()
    return shards, counts


def _compute_stats(
    spec: DatasetSpec, shard_paths: list[Path], shards: list[dict], workers: int, progress: bool
) -> list[dict]:
    tasks = [(i, row) for i, shard in enumerate(shards) for row in range(shard["rows"])]
    bar = dict(total=len(tasks), desc=f"prepare {spec.name}", unit="sample", disable=not progress)
    if workers <= 1:
        _init_worker(spec, shard_paths)
        try:
            return [_stats_task(t) for t in tqdm(tasks, **bar)]
        finally:
            _worker.clear()
    chunksize = max(1, min(32, len(tasks) // (workers * 8)))
    with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(spec, shard_paths)) as pool:
        return list(tqdm(pool.imap(_stats_task, tasks, chunksize=chunksize), **bar))


def prepare_dataset(
    spec: DatasetSpec,
    raw_dir: Path,
    out_dir: Path,
    *,
    workers: int = 2,
    shard_rows: int = 256,
    check_pinned: bool = False,
    progress: bool = True,
) -> dict:
    """Write shards, stats.parquet and manifest.json for ``spec`` into ``out_dir``; return the manifest."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{spec.name}: raw folder {raw_dir} does not exist (run `mdeaux fetch {spec.name}`)")
    if spec.task == "depth" and (spec.min_depth is None or spec.max_depth is None):
        raise ValueError(f"{spec.name}: a depth dataset spec needs min_depth and max_depth")
    if check_pinned:
        check_pinned_files(spec, raw_dir)

    with atomic_dir(out_dir) as tmp:
        shards, counts = _write_shards(spec, raw_dir, tmp / "shards", shard_rows)
        if not shards:
            layout = (spec.reader.__doc__ or spec.reader.__name__).strip().splitlines()[0]
            raise ValueError(f"{spec.name}: no samples found in {raw_dir}; expected the official layout: {layout}")
        empty = [s for s in spec.splits if counts[s] == 0]
        if empty:
            raise ValueError(
                f"{spec.name}: split(s) {', '.join(empty)} have no samples in {raw_dir} "
                f"(counts: {dict(counts)})"
            )
        shard_paths = [tmp / s["file"] for s in shards]
        rows = _compute_stats(spec, shard_paths, shards, workers, progress)
        stats = pa.Table.from_pylist(rows, schema=stats_schema(spec.task))
        pq.write_table(stats, tmp / "stats.parquet", compression="zstd")

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "dataset": spec.name,
            "task": spec.task,
            "counts": {s: counts[s] for s in spec.splits},
            "num_samples": sum(counts.values()),
            "num_shards": len(shards),
            "shard_rows": shard_rows,
            "decode_errors": sum(r["decode_error"] is not None for r in rows),
            "shards": shards,
            "stats": {"file": "stats.parquet", "sha256": sha256_file(tmp / "stats.parquet")},
            "data_version": hashlib.sha256("\n".join(s["sha256"] for s in shards).encode()).hexdigest(),
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


# -- reading a prepared dataset -----------------------------------------------------------------


class PreparedDataset:
    """Random access by sample id to a prepared folder (picklable; shards reopen lazily)."""

    def __init__(self, prepared_dir: Path, spec: DatasetSpec | None = None):
        self.dir = Path(prepared_dir)
        manifest_path = self.dir / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{manifest_path} not found: {self.dir} is not a prepared dataset; "
                f"run `mdeaux prepare {self.dir.name}` first"
            )
        self.manifest: dict = json.loads(manifest_path.read_text())
        name = self.manifest["dataset"]
        if spec is None:
            from mdeaux.data.datasets.registry import get

            spec = get(name)
        elif spec.name != name:
            raise ValueError(f"{self.dir} holds dataset {name!r}, but spec {spec.name!r} was given")
        self.spec = spec
        self._reader = _ShardReader([self.dir / s["file"] for s in self.manifest["shards"]])
        self._stats = None
        self._index: dict[str, tuple[int, int]] | None = None

    @property
    def data_version(self) -> str:
        return self.manifest["data_version"]

    @property
    def stats(self):
        """The per-sample statistics table as a pandas DataFrame."""
        if self._stats is None:
            self._stats = pq.read_table(self.dir / "stats.parquet").to_pandas()
        return self._stats

    def _lookup(self) -> dict[str, tuple[int, int]]:
        if self._index is None:
            table = pq.read_table(self.dir / "stats.parquet", columns=["id", "shard", "row"]).to_pydict()
            self._index = {i: (s, r) for i, s, r in zip(table["id"], table["shard"], table["row"])}
        return self._index

    def ids(self, split: str) -> list[str]:
        """Sample ids of one split, in stored order."""
        if split not in self.manifest["counts"]:
            raise KeyError(f"{self.spec.name}: no split {split!r}; splits: {list(self.manifest['counts'])}")
        stats = self.stats
        return stats.loc[stats["split"] == split, "id"].tolist()

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._lookup()

    def row(self, sample_id: str) -> dict[str, Any]:
        """The stored columns of one sample: id, split, image, image_format, depth, label (bytes)."""
        try:
            shard, row = self._lookup()[sample_id]
        except KeyError:
            raise KeyError(f"{self.spec.name}: no sample with id {sample_id!r} in {self.dir}") from None
        return self._reader.read(shard, row)

    def decode(self, sample_id: str) -> dict[str, np.ndarray | None]:
        """image uint8 (H, W, 3); depth float32 metres (H, W) or None; label uint8 (H, W) or None."""
        row = self.row(sample_id)
        return {
            "image": self.spec.decode_image(row["image"]),
            "depth": self.spec.decode_depth(row["depth"]) if row["depth"] is not None else None,
            "label": self.spec.decode_label(row["label"]) if row["label"] is not None else None,
        }

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_stats=None, _index=None)  # rebuilt lazily in the new process
        return state

    def __repr__(self) -> str:
        return f"PreparedDataset({self.spec.name!r}, {len(self)} samples, {self.dir})"
