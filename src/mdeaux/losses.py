"""Training losses: DINOv2's SigLoss for depth, and the auxiliary segmentation / MLDC losses.

Sources: method.md §3.4 (DINOv2 ``dinov2/eval/depth/models/losses/sigloss.py``), paper §3 and method.md
§2.2 / §8.2 (MLDC), mmsegmentation 0.27 ``decode_head.losses`` + ``cross_entropy_loss.py`` (CE).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SigLoss(nn.Module):
    """DINOv2 SigLoss (scale-invariant log loss) with its warm-up.

    g = log(pred + eps) - log(gt + eps) on the valid pixels of the whole batch (valid = gt > 0, and
    gt <= max_depth when given); loss = sqrt(Var(g) + 0.15 * mean(g)^2) with the unbiased variance.
    For the first ``warm_iter`` training calls the loss is sqrt(0.15 * mean(g)^2). The call counter is a
    registered buffer, so it is saved in ``state_dict`` and restored on resume; it only advances in
    training mode (DINOv2 only calls the loss while training).

    With no valid pixel (or a single one outside warm-up, where the unbiased variance is undefined)
    DINOv2 returns nan; here ``on_empty="raise"`` (default) raises ValueError and ``on_empty="zero"``
    returns a zero that keeps the graph (``pred.sum() * 0``), so the step is a no-op.
    """

    def __init__(
        self,
        eps: float = 1e-3,  # dinov2 sigloss.py: self.eps = 0.001
        max_depth: float | None = None,  # dinov2 config: SigLoss(valid_mask=True, ...) without max_depth
        warm_up: bool = True,  # dinov2 depth config: SigLoss(..., warm_up=True) (method.md §3.4)
        warm_iter: int = 100,  # dinov2 sigloss.py: warm_iter=100
        loss_weight: float = 1.0,  # dinov2 depth config: loss_weight=1.0
        on_empty: str = "raise",
    ):
        super().__init__()
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if warm_iter < 0:
            raise ValueError(f"warm_iter must be >= 0, got {warm_iter}")
        if on_empty not in ("raise", "zero"):
            raise ValueError(f"on_empty must be 'raise' or 'zero', got {on_empty!r}")
        self.eps = float(eps)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.warm_up = bool(warm_up)
        self.warm_iter = int(warm_iter)
        self.loss_weight = float(loss_weight)
        self.on_empty = on_empty
        self.register_buffer("warm_up_counter", torch.zeros((), dtype=torch.long))

    def _empty(self, pred: torch.Tensor, n_valid: int, needed: int) -> torch.Tensor:
        if self.on_empty == "zero":
            return pred.sum() * 0.0
        raise ValueError(
            f"SigLoss needs at least {needed} valid depth pixel(s) (gt > 0"
            + (f" and gt <= {self.max_depth}" if self.max_depth is not None else "")
            + f") in the batch, got {n_valid}"
        )

    def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        if pred.shape != gt.shape or pred.dim() != 4 or pred.shape[1] != 1:
            raise ValueError(
                f"SigLoss expects pred and gt of equal shape (B, 1, H, W), got {tuple(pred.shape)} "
                f"and {tuple(gt.shape)}"
            )
        valid = gt > 0  # dinov2 sigloss.py: valid_mask = target > 0
        if self.max_depth is not None:
            valid = valid & (gt <= self.max_depth)  # dinov2: target <= self.max_depth
        p, t = pred[valid], gt[valid]
        n = int(p.numel())
        in_warm_up = self.warm_up and int(self.warm_up_counter) < self.warm_iter
        if in_warm_up and self.training:
            self.warm_up_counter += 1  # dinov2: warm_up_counter += 1 on every warm-up call
        if n < (1 if in_warm_up else 2):
            return self._empty(pred, n, 1 if in_warm_up else 2)
        g = torch.log(p + self.eps) - torch.log(t + self.eps)
        if in_warm_up:
            loss = torch.sqrt(0.15 * torch.pow(torch.mean(g), 2))  # dinov2 sigloss.py warm-up branch
        else:
            dg = torch.var(g) + 0.15 * torch.pow(torch.mean(g), 2)  # dinov2: unbiased torch.var
            loss = torch.sqrt(dg)
        return self.loss_weight * loss


def multi_hot(label: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(B, H, W) class map -> (B, K) float: 1 for every class present; ``ignore_index`` is left out."""
    if label.dim() != 3:
        raise ValueError(f"label must be (B, H, W), got shape {tuple(label.shape)}")
    if label.dtype.is_floating_point or label.dtype == torch.bool:
        raise ValueError(f"label must hold integer class indices, got dtype {label.dtype}")
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    lab = label.long()
    keep = lab != ignore_index
    bad = keep & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        value = int(lab[bad][0])
        raise ValueError(
            f"label value {value} is outside [0, {num_classes}) and is not the ignore index {ignore_index}"
        )
    b = lab.shape[0]
    idx = torch.where(keep, lab, torch.full_like(lab, num_classes)).reshape(b, -1)
    out = torch.zeros(b, num_classes + 1, device=label.device)
    out.scatter_(1, idx, 1.0)  # column K collects the ignored pixels and is dropped
    return out[:, :num_classes]


def mldc_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    ignore_index: int = 255,
    average: str = "logits",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Multi-label dense classification (paper §3): BCE between the spatial mean of the segmentation
    output and the multi-hot vector of the classes present in the label map; mean over batch and classes.

    The paper does not say what is averaged (method.md §8.2):
    ``average="logits"`` (default) takes BCE-with-logits of the spatially averaged logits;
    ``average="probs"`` averages the per-pixel softmax probabilities and takes BCE of them, clamped to
    [eps, 1 - eps]. The mean runs over the head's output grid as is (no resize to the label size).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if label.dim() != 3 or label.shape[0] != logits.shape[0]:
        raise ValueError(f"label must be (B, H, W) with B = {logits.shape[0]}, got shape {tuple(label.shape)}")
    target = multi_hot(label, logits.shape[1], ignore_index).to(logits.dtype)
    if average == "logits":
        y = logits.mean(dim=(2, 3))
        return F.binary_cross_entropy_with_logits(y, target, reduction="mean")
    if average == "probs":
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        y = torch.softmax(logits, dim=1).mean(dim=(2, 3)).clamp(eps, 1 - eps)
        return F.binary_cross_entropy(y, target, reduction="mean")
    raise ValueError(f"average must be 'logits' or 'probs', got {average!r}")


def seg_ce_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    ignore_index: int = 255,
    avg_non_ignore: bool = False,  # mmseg 0.27 CrossEntropyLoss(avg_non_ignore=False) default
) -> torch.Tensor:
    """mmseg 0.27 decode-head loss: logits resized bilinearly (align_corners=False) to the label size,
    per-pixel cross-entropy with ``ignore_index`` (ignored pixels contribute 0).

    mmseg 0.27's default divides by *all* pixels (``avg_non_ignore=False``); ``avg_non_ignore=True``
    divides by the non-ignored ones (PyTorch's ``F.cross_entropy`` mean).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if label.dim() != 3 or label.shape[0] != logits.shape[0]:
        raise ValueError(f"label must be (B, H, W) with B = {logits.shape[0]}, got shape {tuple(label.shape)}")
    lab = label.long()
    k = logits.shape[1]
    bad = (lab != ignore_index) & ((lab < 0) | (lab >= k))
    if bad.any():
        raise ValueError(
            f"label value {int(lab[bad][0])} is outside [0, {k}) and is not the ignore index {ignore_index}"
        )
    if logits.shape[-2:] != label.shape[-2:]:
        # mmseg decode_head.losses: resize(seg_logit, size=seg_label.shape[2:], mode='bilinear', align_corners)
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits, lab, ignore_index=ignore_index, reduction="none")
    if avg_non_ignore:
        n = int((lab != ignore_index).sum())
        if n == 0:
            return loss.sum() * 0.0
        return loss.sum() / n  # mmseg: avg_factor = label.numel() - (label == ignore_index).sum()
    return loss.mean()  # mmseg weight_reduce_loss(reduction='mean') over all pixels


def recon_loss(pred: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Image reconstruction (paper §3, task 3): MSE between the 3-channel head output, resized
    bilinearly (align_corners=False) to the input size, and the normalised input image."""
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"reconstruction output must be (B, 3, h, w), got shape {tuple(pred.shape)}")
    if image.shape[:2] != pred.shape[:2]:
        raise ValueError(f"input must be (B, 3, H, W) with B = {pred.shape[0]}, got shape {tuple(image.shape)}")
    if pred.shape[-2:] != image.shape[-2:]:
        pred = F.interpolate(pred, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(pred, image)
