"""Figures of one run, and the readers of its files, drawn from its folder (``runs/<id>/``, runs/store.py).

- ``curves.png``: the losses and learning rates at every step (``curves.csv``) and the test AbsRel at
  every evaluation (``evals.csv``), with the best value (paper Eq. 1) marked.
- ``predictions.png``: for the first test images of ``predictions.npz``: input | ground truth |
  prediction | absolute relative error ``|pred - gt| / gt`` on the pixels the evaluation scores.

Both are written atomically and logged to MLflow as artifacts (``plots/``); they are drawn on
``matplotlib.figure.Figure`` objects directly (no pyplot state, no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mdeaux import atomic
from mdeaux.runs.store import RunDir

DPI = 110
DEPTH_CMAP = "magma_r"  # near = bright, far = dark
ERROR_CMAP = "inferno"


# ------------------------------------------------------------------------------------------------
# training curves
def read_table(path: Path) -> pd.DataFrame:
    """A run's CSV (``curves.csv`` or ``evals.csv``) with its ``step`` column checked."""
    table = pd.read_csv(path)
    if "step" not in table.columns:
        raise ValueError(f"{path}: no `step` column (has {list(table.columns)}); expected the CSV a trained run writes")
    return table


def curves_figure(curves: pd.DataFrame, evals: pd.DataFrame | None = None, title: str = "") -> Figure:
    """Losses | learning rates (log scale) | test AbsRel at the evaluations, all against the step."""
    import seaborn as sns

    losses = [c for c in curves.columns if c.startswith("loss_")]
    lrs = [c for c in curves.columns if c.startswith("lr_")]
    fig = Figure(figsize=(15, 4), layout="constrained")
    with sns.axes_style("whitegrid"):
        ax_loss, ax_lr, ax_eval = fig.subplots(1, 3)
    palette = sns.color_palette("deep")
    for i, col in enumerate(losses):
        data = curves[["step", col]].dropna()
        ax_loss.plot(data["step"], data[col], lw=0.8, alpha=0.35, color=palette[i])
        # a running mean over ~2 % of the run shows the trend under the per-step noise
        window = max(1, len(data) // 50)
        ax_loss.plot(data["step"], data[col].rolling(window, min_periods=1).mean(), lw=1.6, color=palette[i],
                     label=f"{col} (mean of {window})" if window > 1 else col)
    ax_loss.set(title="losses", xlabel="step", ylabel="loss")
    for i, col in enumerate(lrs):
        data = curves[["step", col]].dropna()
        data = data[data[col] > 0]
        ax_lr.plot(data["step"], data[col], lw=1.4, color=palette[i], label=col)
    ax_lr.set(title="learning rates", xlabel="step", ylabel="learning rate")
    if lrs:
        ax_lr.set_yscale("log")
    if evals is not None and "abs_rel" in evals.columns and len(evals):
        ax_eval.plot(evals["step"], evals["abs_rel"], marker="o", lw=1.4, color=palette[3], label="test AbsRel")
        best = evals.loc[evals["abs_rel"].idxmin()]
        ax_eval.scatter([best["step"]], [best["abs_rel"]], s=120, facecolors="none", edgecolors="black", zorder=3,
                        label=f"best {best['abs_rel']:.4f} (step {int(best['step'])})")
    else:
        ax_eval.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax_eval.transAxes)
    ax_eval.set(title="test AbsRel (lower is better)", xlabel="step", ylabel="AbsRel")
    for ax in (ax_loss, ax_lr, ax_eval):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, target: Path) -> Path:
    with atomic.atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return target


def run_title(run_dir: RunDir) -> str:
    for name, key in ((RunDir.METRICS, "label"), (RunDir.CONFIG, "id")):
        f = run_dir / name
        if f.is_file():
            value = json.loads(f.read_text()).get(key)
            if value:
                return f"{value} ({run_dir.id})"
    return run_dir.id


def write_curves(run_dir: RunDir) -> Path:
    """Draw ``curves.png`` from ``curves.csv`` and ``evals.csv`` (the latter optional)."""
    curves_csv = run_dir / RunDir.CURVES
    if not curves_csv.is_file():
        raise FileNotFoundError(f"{curves_csv} is missing: the curves figure is drawn from a finished run's curves.csv")
    evals_csv = run_dir / RunDir.EVALS
    evals = read_table(evals_csv) if evals_csv.is_file() else None
    return save_figure(curves_figure(read_table(curves_csv), evals, run_title(run_dir)), run_dir / RunDir.CURVES_PNG)


# ------------------------------------------------------------------------------------------------
# predictions and error maps
@dataclass
class Sample:
    name: str
    image: np.ndarray  # uint8 (H, W, 3)
    gt: np.ndarray  # float32 (H, W), metres, 0 or non-finite where unknown
    pred: np.ndarray  # float32 (H, W), metres


def load_predictions(path: Path) -> list[Sample]:
    """The samples of ``predictions.npz``, in either layout:

    - stacked: ``image`` uint8 (N, H, W, 3), ``gt`` and ``pred`` float (N, H, W), optional ``ids`` (N,);
    - one key per image, as training writes it (training/evaluate.py; images of a dataset may differ
      in size): ``ids`` (N,), ``image_<i>``,
      ``gt_<i>``, ``pred_<i>``.
    """
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        ids = [str(x) for x in npz["ids"]] if "ids" in keys else None
        if {"image", "gt", "pred"} <= keys:
            images, gts, preds = npz["image"], npz["gt"], npz["pred"]
            if not (images.ndim == 4 and gts.ndim == 3 and gts.shape == preds.shape and images.shape[:3] == gts.shape):
                raise ValueError(f"{path}: expected image (N, H, W, 3), gt and pred (N, H, W); got image {images.shape}, "
                                 f"gt {gts.shape}, pred {preds.shape}")
            triples = list(zip(images, gts, preds))
        else:
            count = len(ids) if ids is not None else sum(1 for k in keys if k.startswith("image_"))
            missing = [f"{kind}_{i}" for i in range(count) for kind in ("image", "gt", "pred") if f"{kind}_{i}" not in keys]
            if missing or count == 0:
                raise ValueError(f"{path}: expected keys image, gt, pred (stacked) or ids and image_<i>, gt_<i>, pred_<i>; "
                                 f"has {sorted(keys)}")
            triples = [(npz[f"image_{i}"], npz[f"gt_{i}"], npz[f"pred_{i}"]) for i in range(count)]
    samples = []
    for i, (image, gt, pred) in enumerate(triples):
        if image.shape[:2] != gt.shape or gt.shape != pred.shape:
            raise ValueError(f"{path}: sample {i}: image {image.shape}, gt {gt.shape} and pred {pred.shape} differ in size")
        name = ids[i] if ids is not None and i < len(ids) else str(i)
        samples.append(Sample(name, np.asarray(image, dtype=np.uint8), gt.astype(np.float32), pred.astype(np.float32)))
    return samples


def abs_rel_map(gt: np.ndarray, pred: np.ndarray, spec=None) -> np.ndarray:
    """``|pred - gt| / gt`` per pixel, nan where the evaluation does not score the pixel.

    With the depth dataset's spec the pixels and values are those of ``metrics.evaluate_depth``: the
    prediction clamped to [min_depth, max_depth], both clipped to ``eval_clip_depth`` where set, the
    toolbox mask ``spec.eval_mask(gt)``. Without it, every pixel with a finite, positive GT counts.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if spec is not None and spec.min_depth is not None and spec.max_depth is not None:
        pred = np.clip(pred, spec.min_depth, spec.max_depth)
        if spec.eval_clip_depth is not None:
            gt = np.minimum(gt, spec.eval_clip_depth)
            pred = np.minimum(pred, spec.eval_clip_depth)
        mask = spec.eval_mask(np.nan_to_num(gt, nan=0.0))
    else:
        mask = np.isfinite(gt) & (gt > 0)
    mask &= np.isfinite(pred)
    out = np.full(gt.shape, np.nan)
    out[mask] = np.abs(pred[mask] - gt[mask]) / gt[mask]
    return out


def predictions_figure(samples: Sequence[Sample], spec=None, title: str = "") -> Figure:
    """One row per sample: input | GT | prediction (same colour scale as the GT) | AbsRel error map."""
    import matplotlib as mpl

    if not samples:
        raise ValueError("predictions_figure needs at least one sample")
    errors = [abs_rel_map(s.gt, s.pred, spec) for s in samples]
    finite = np.concatenate([e[np.isfinite(e)] for e in errors]) if errors else np.array([])
    # one error scale for all rows: the 95th percentile, so a few outliers do not wash out the map
    err_max = float(np.percentile(finite, 95)) if finite.size else 1.0
    err_max = err_max if err_max > 0 else 1.0
    rows = len(samples)
    aspect = samples[0].gt.shape[1] / max(1, samples[0].gt.shape[0])
    fig = Figure(figsize=(4 * 3.2 * min(aspect, 2.0) / 1.33 + 1.5, 2.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, 4, squeeze=False))
    depth_cmap = mpl.colormaps[DEPTH_CMAP].with_extremes(bad="lightgrey")
    err_cmap = mpl.colormaps[ERROR_CMAP].with_extremes(bad="lightgrey")
    for r, (s, err) in enumerate(zip(samples, errors)):
        valid = np.isfinite(s.gt) & (s.gt > 0)
        lo, hi = (float(np.percentile(s.gt[valid], 1)), float(np.percentile(s.gt[valid], 99))) if valid.any() else (
            float(np.nanmin(s.pred)), float(np.nanmax(s.pred)))
        if not hi > lo:
            hi = lo + 1e-3
        gt_shown = np.where(valid, s.gt, np.nan)
        score = float(np.nanmean(err)) if np.isfinite(err).any() else math.nan
        ax_img, ax_gt, ax_pred, ax_err = axes[r]
        ax_img.imshow(s.image)
        ax_img.set_title(f"input {s.name}", fontsize=9)
        ax_gt.imshow(gt_shown, cmap=depth_cmap, vmin=lo, vmax=hi)
        ax_gt.set_title("ground truth (m)", fontsize=9)
        im = ax_pred.imshow(s.pred, cmap=depth_cmap, vmin=lo, vmax=hi)
        # the prediction shares the GT's colour scale; its own range shows when it falls outside it
        ax_pred.set_title(f"prediction (m), {np.nanmin(s.pred):.2f} to {np.nanmax(s.pred):.2f}", fontsize=9)
        fig.colorbar(im, ax=[ax_gt, ax_pred], shrink=0.8, pad=0.01)
        im = ax_err.imshow(err, cmap=err_cmap, vmin=0.0, vmax=err_max)
        ax_err.set_title(f"|pred - gt| / gt, AbsRel {score:.3f}", fontsize=9)
        fig.colorbar(im, ax=ax_err, shrink=0.8, pad=0.01)
        for ax in axes[r]:
            ax.set_axis_off()
    if title:
        fig.suptitle(f"{title}  (grey: not scored)")
    return fig


def write_predictions(run_dir: RunDir, spec=None) -> Path | None:
    """Draw ``predictions.png`` from ``predictions.npz``; None when the run saved no predictions."""
    npz = run_dir / RunDir.PREDICTIONS
    if not npz.is_file():
        return None
    return save_figure(predictions_figure(load_predictions(npz), spec, run_title(run_dir)), run_dir / RunDir.PREDICTIONS_PNG)


def depth_spec(run_dir: RunDir):
    """The dataset spec of the run's depth dataset (for the evaluation mask), or None if unknown."""
    from mdeaux.data.datasets.registry import REGISTRY

    f = run_dir / RunDir.CONFIG
    if not f.is_file():
        return None
    name = json.loads(f.read_text()).get("config", {}).get("depth_dataset")
    return REGISTRY.get(name)


def write_figures(run_dir: RunDir) -> list[Path]:
    """Every figure the run's files allow (curves always, predictions when saved)."""
    written = [write_curves(run_dir)]
    pred = write_predictions(run_dir, depth_spec(run_dir))
    if pred is not None:
        written.append(pred)
    return written
