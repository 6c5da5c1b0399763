"""NYU Depth V2 *labeled* set (``nyuv2_labeled``): the official ``nyu_depth_v2_labeled.mat`` + ``splits.mat``.

A second NYUv2 source beside ``nyuv2`` (the toolbox "sync" layout, see registry.py): the 1,449 densely
labelled frames of the official MATLAB v7.3 (HDF5) file with the official 795 / 654 split of
``splits.mat`` (NYU Depth V2 page, cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html; read as
cleinc/bts ``utils/extract_official_train_test_set_from_mat.py`` reads them, "BTS" below).

On-disk layout after fetch (both archives are plain files, ``extract=False``, copied into raw_dir)::

    raw_dir/nyu_depth_v2_labeled.mat   MATLAB v7.3 = HDF5 (512-byte MATLAB user block)
    raw_dir/splits.mat                 MATLAB v5: trainNdxs, testNdxs (1-based; BTS script keys)

HDF5 datasets (h5py reverses MATLAB's axes of the NYU page's 480x640x3x1449 etc.): ``images`` (N, 3, 640, 480) uint8,
``depths`` (N, 640, 480) float32 metres (inpainted), ``rawDepths`` (N, 640, 480) float32 metres
(0 = no reading), ``labels`` (N, 640, 480) uint16. One sample i is ``np.transpose(images[i], (2, 1, 0))``
-> (480, 640, 3) and ``rawDepths[i].T`` -> (480, 640) (BTS does ``image.T``, ``rawDepths[i].T``).

Encoding (our choice: the .mat stores raw arrays, not encoded files, so "original bytes" do not exist):
* image: a lossless RGB PNG of the (480, 640, 3) uint8 array (fixed zlib level, no metadata chunks);
* depth: the ``.npy`` bytes (``np.save``, C order) of the (480, 640) float32 ``rawDepths`` map,
  bit-exact (NOT quantised to millimetres), decoded by :func:`decode_nyu_labeled_depth`.
Ground truth is ``rawDepths`` (raw sensor, 0 = invalid), not the inpainted ``depths``: the official
test set as BTS / the toolbox extract it is ``uint16(rawDepths*1000)`` (BTS extract script).

The reader opens the 2.9 GB file lazily with h5py and reads one frame at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mdeaux.data.datasets.spec import Archive, DatasetSpec, RawSample

LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
SPLIT_KEYS = (("train", "trainNdxs"), ("test", "testNdxs"))  # splits.mat keys (BTS extract script)
NYU_LABELED_FRAMES = 1449  # NYU Depth V2 page: labeled set of 1449 frames (MATLAB 480x640x3x1449)
NYU_HEIGHT, NYU_WIDTH = 480, 640  # NYU Depth V2 page (Kinect frames)
ID_PREFIX = "labeled"
PNG_COMPRESS_LEVEL = 6  # our choice (any level is lossless); fixed for deterministic bytes
NAME = "nyuv2_labeled"


# -- encoders / decoders -----------------------------------------------------------------------------
def encode_rgb_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG of an (H, W, 3) uint8 array; fixed zlib level and no text/time chunks (deterministic)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.dtype} with shape {rgb.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def encode_depth_npy(depth: np.ndarray) -> bytes:
    """``.npy`` bytes of a 2-D float32 depth map in metres (C order, bit-exact)."""
    if depth.ndim != 2 or depth.dtype != np.float32:
        raise ValueError(f"expected a 2-D float32 depth map, got {depth.dtype} with shape {depth.shape}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(depth), allow_pickle=False)
    return buf.getvalue()


def decode_nyu_labeled_depth(data: bytes) -> np.ndarray:
    """``.npy`` bytes -> float32 (H, W) metres; 0 = no reading. NaN/inf are returned as they are."""
    try:
        depth = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable payload is a corrupt sample
        raise ValueError(f"{NAME}: depth is not a readable .npy array: {err}") from None
    if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind != "f":
        raise ValueError(f"{NAME}: depth .npy must hold a 2-D float array, got "
                         f"{getattr(depth, 'dtype', type(depth))} with shape {getattr(depth, 'shape', None)}")
    return np.ascontiguousarray(depth, dtype=np.float32)


# -- reader ------------------------------------------------------------------------------------------
def read_splits_mat(path: Path, num_frames: int) -> dict[str, list[int]]:
    """``splits.mat`` -> {"train": [1-based indices], "test": [...]}, each sorted; checked against ``num_frames``."""
    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(f"{NAME}: {path} is missing: the official split file {SPLITS_MAT} "
                                f"(keys trainNdxs/testNdxs) must lie next to {LABELED_MAT}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{NAME}: {path} is not a readable MATLAB v5 file: {err}") from None
    splits: dict[str, list[int]] = {}
    for split, key in SPLIT_KEYS:
        if key not in mat:
            raise ValueError(f"{NAME}: {path} has no variable {key!r} (found {sorted(k for k in mat if not k.startswith('__'))})")
        values = np.asarray(mat[key], dtype=np.float64).ravel()
        if values.size and (not np.all(np.isfinite(values)) or np.any(values != np.round(values))):
            raise ValueError(f"{NAME}: {path}:{key} holds non-integer indices")
        indices = sorted(int(v) for v in values)
        if len(set(indices)) != len(indices):
            raise ValueError(f"{NAME}: {path}:{key} lists an index twice")
        for index in indices:
            if not 1 <= index <= num_frames:  # 1-based MATLAB indices
                raise FileNotFoundError(
                    f"{NAME}: {path}:{key} lists frame {index}, which {LABELED_MAT} does not hold "
                    f"(it has frames 1..{num_frames}; indices are 1-based)")
        splits[split] = indices
    overlap = set(splits["train"]) & set(splits["test"])
    if overlap:
        raise ValueError(f"{NAME}: {path}: frames {sorted(overlap)[:5]} are in both trainNdxs and testNdxs")
    return splits


def _open_labeled_mat(path: Path):
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"{NAME}: {path} is missing: fetch must copy {LABELED_MAT} into the raw folder")
    if not h5py.is_hdf5(str(path)):
        raise ValueError(f"{NAME}: {path} is not an HDF5 file (expected the MATLAB v7.3 {LABELED_MAT}); "
                         "the file is corrupt or not the official download")
    try:
        return h5py.File(path, "r")
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{NAME}: {path} cannot be opened as HDF5 (MATLAB v7.3): {err}") from None


def read_nyuv2_labeled(raw_dir: Path) -> Iterator[RawSample]:
    """Train frames, then test frames, each in ascending 1-based .mat index; ids ``labeled/00001``."""
    raw_dir = Path(raw_dir)
    mat_path = raw_dir / LABELED_MAT
    h5 = _open_labeled_mat(mat_path)
    with h5:
        for key in ("images", "rawDepths"):
            if key not in h5:
                raise ValueError(f"{NAME}: {mat_path} has no dataset {key!r} (found {sorted(h5.keys())})")
        images, raw_depths = h5["images"], h5["rawDepths"]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{NAME}: {mat_path}:images has shape {images.shape}, expected (N, 3, W, H)")
        if raw_depths.ndim != 3 or raw_depths.shape[0] != images.shape[0]:
            raise ValueError(f"{NAME}: {mat_path}:rawDepths has shape {raw_depths.shape}, expected "
                             f"({images.shape[0]}, W, H) like images {images.shape}")
        splits = read_splits_mat(raw_dir / SPLITS_MAT, int(images.shape[0]))
        for split, _ in SPLIT_KEYS:
            for index in splits[split]:
                i = index - 1
                # MATLAB (H, W, 3, N) column-major == h5py (N, 3, W, H): reverse the per-frame axes
                rgb = np.transpose(np.asarray(images[i]), (2, 1, 0))
                depth = np.asarray(raw_depths[i]).T
                if rgb.dtype != np.uint8:
                    raise ValueError(f"{NAME}: {mat_path}:images is {rgb.dtype}, expected uint8")
                yield RawSample(
                    id=f"{ID_PREFIX}/{index:05d}",
                    split=split,
                    image=encode_rgb_png(rgb),
                    image_format="png",
                    depth=encode_depth_npy(depth.astype(np.float32, copy=False)),
                )


NYUV2_LABELED = DatasetSpec(
    name=NAME,
    title="NYU Depth V2 (labeled set, official 795/654 split)",
    task="depth",
    scene="indoor",
    archives=(
        Archive(
            filename=LABELED_MAT,
            urls=("http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",),  # NYU page; cleinc/bts README
            md5="520609c519fba3ba5ac58c8fefcc3530",  # ENSTA-U2IS-AI/torch-uncertainty torch_uncertainty/datasets/nyu.py
            size=2_972_037_809,  # byte length of the file with that md5
            extract=False,  # one HDF5 file, read in place
        ),
        Archive(
            filename=SPLITS_MAT,
            urls=("http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat",),  # official 795/654 split
            extract=False,  # no checksum is published
        ),
    ),
    reader=read_nyuv2_labeled,
    splits=("train", "test"),
    test_split="test",
    official_counts=(("train", 795), ("test", 654)),  # splits.mat trainNdxs / testNdxs
    depth_encoding="npy_float32",
    depth_decoder=decode_nyu_labeled_depth,
    # evaluation values as the nyuv2 spec (registry.py):
    min_depth=1e-3,  # toolbox configs/_base_/datasets/nyu.py min_depth
    max_depth=10.0,  # toolbox configs/_base_/datasets/nyu.py max_depth; dinov2/hub/depthers.py NYU (0.001, 10)
    eval_crop=(45, 471, 41, 601),  # toolbox depth/datasets/nyu.py eval_mask "eigen crop" [45:471, 41:601]
    eval_crop_name="eigen",
    image_sizes=((NYU_HEIGHT, NYU_WIDTH),),  # 480x640 Kinect frames
    notes=(
        "Ground truth = rawDepths (raw Kinect depth, 0 = invalid), as the BTS/toolbox official test set "
        "(uint16(rawDepths*1000), BTS extract_official_train_test_set_from_mat.py); the inpainted `depths` "
        "are not used.",
        "Image bytes = lossless RGB PNG of images[i] transposed to (480, 640, 3); depth bytes = .npy of "
        "rawDepths[i].T as float32 (bit-exact, not mm-quantised). The .mat stores raw arrays, so no "
        "original encoded files exist.",
        "The BTS test extraction zeroes the RGB outside [7:474, 7:632]; this reader "
        "keeps the full .mat image.",
        "ids labeled/NNNNN use the 1-based .mat index of splits.mat.",
    ),
)

SPECS: tuple[DatasetSpec, ...] = (NYUV2_LABELED,)

__all__ = ["LABELED_MAT", "NYUV2_LABELED", "SPECS", "SPLITS_MAT", "decode_nyu_labeled_depth",
           "encode_depth_npy", "encode_rgb_png", "read_nyuv2_labeled", "read_splits_mat"]
