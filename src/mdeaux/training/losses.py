"""Training losses: DINOv2's SigLoss and GradientLoss for depth, and the auxiliary losses.

Sources: DINOv2's code (GitHub facebookresearch, repository dinov2)
``dinov2/eval/depth/models/losses/sigloss.py`` and ``gradientloss.py``, with the weights of the DINOv2
depth config's ``loss_decode`` (docs/protocol.md "Losses"); paper §3
(MLDC, segmentation, reconstruction; what MLDC averages is our choice, docs/choices.md), paper Appendix
C.1 (single-label dense classification, text not available: our reading [I]), mmsegmentation 0.27
``decode_head.losses`` + ``cross_entropy_loss.py`` (CE).
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

    ``forward(pred, gt, it)``: when the 0-based training iteration ``it`` is given, warm-up is decided
    by ``it < warm_iter`` instead of the counter, and the counter is left unchanged. DINOv2 calls the
    loss once per iteration, so its counter equals ``it`` during warm-up and both give the same loss;
    passing ``it`` keeps a resumed run right without relying on the counter.

    With no valid pixel (or a single one outside warm-up, where the unbiased variance is undefined)
    DINOv2 returns nan; here ``on_empty="raise"`` (default) raises ValueError and ``on_empty="zero"``
    returns a zero that keeps the graph (``pred.sum() * 0``), so the step is a no-op.
    """

    def __init__(
        self,
        eps: float = 1e-3,  # dinov2 sigloss.py: self.eps = 0.001
        max_depth: float | None = None,  # dinov2 config: SigLoss(valid_mask=True, ...) without max_depth
        warm_up: bool = True,  # dinov2 depth config loss_decode: SigLoss(..., warm_up=True)
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

    def forward(self, pred: torch.Tensor, gt: torch.Tensor, it: int | None = None) -> torch.Tensor:
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
        if it is None:
            in_warm_up = self.warm_up and int(self.warm_up_counter) < self.warm_iter
            if in_warm_up and self.training:
                self.warm_up_counter += 1  # dinov2: warm_up_counter += 1 on every warm-up call
        else:
            if isinstance(it, bool) or not isinstance(it, int) or it < 0:
                raise ValueError(f"SigLoss: it must be a 0-based iteration number (int >= 0), got {it!r}")
            in_warm_up = self.warm_up and it < self.warm_iter
        if n < (1 if in_warm_up else 2):
            return self._empty(pred, n, 1 if in_warm_up else 2)
        g = torch.log(p + self.eps) - torch.log(t + self.eps)
        if in_warm_up:
            loss = torch.sqrt(0.15 * torch.pow(torch.mean(g), 2))  # dinov2 sigloss.py warm-up branch
        else:
            dg = torch.var(g) + 0.15 * torch.pow(torch.mean(g), 2)  # dinov2: unbiased torch.var
            loss = torch.sqrt(dg)
        return self.loss_weight * loss


# dinov2 gradientloss.py: the full-size maps and three down-sampled copies ``x[:: 2 * i, :: 2 * i]`` for
# i = 1, 2, 3, i.e. strides 1, 2, 4, 6.
GRADIENT_LOSS_STRIDES = (1, 2, 4, 6)
GRADIENT_LOSS_MODES = ("dinov2", "spatial")


class GradientLoss(nn.Module):
    """DINOv2's GradientLoss (MegaDepth-style log-depth gradient matching, dinov2 gradientloss.py).

    For each stride s in (1, 2, 4, 6): down-sample pred and gt with stride s, mask = gt > 0 (and
    gt <= max_depth when given), N = number of masked pixels, d = (log(pred + eps) - log(gt + eps)) on the
    mask and 0 elsewhere, v = |d[i] - d[i + 2]| and h = |d[j] - d[j + 2]| where both ends are masked,
    loss += (sum(v) + sum(h)) / N. The result is multiplied by ``loss_weight``.

    ``mode`` says which axes "i" and "j" are:

    * ``"dinov2"`` (default, faithful): DINOv2 indexes ``x[::s, ::s]``, ``x[0:-2, :]``, ``x[:, 0:-2]`` on
      the 4-D (B, 1, H, W) tensors its decode head passes, so the down-sampling and both differences act on
      the batch and channel axes: v compares image b with image b + 2 pixel by pixel, and h is empty
      (one channel). With a batch of at most 2 the loss is identically 0 (a tensor with a zero gradient);
      with 3 or more it holds cross-image differences.
    * ``"spatial"``: the evident intent, the same formula on the H and W axes of every image; N and the
      sums run over the whole (down-sampled) batch, as in DINOv2.

    ``valid_mask=False`` uses every pixel (N = numel), as DINOv2's option of that name.

    Empty masks: DINOv2 divides by N unguarded, so a scale whose down-sampled gt has no valid pixel gives
    nan. Here such a scale contributes 0 (its numerator is 0 too). A batch with no valid pixel at all
    raises ValueError with ``on_empty="raise"`` (default, as SigLoss) and gives a zero that keeps the graph
    with ``on_empty="zero"``.
    """

    def __init__(
        self,
        mode: str = "dinov2",
        valid_mask: bool = True,  # dinov2 depth config: GradientLoss(valid_mask=True, ...)
        loss_weight: float = 0.5,  # dinov2 depth config loss_decode: GradientLoss(..., loss_weight=0.5)
        max_depth: float | None = None,  # dinov2 config: not given
        eps: float = 1e-3,  # dinov2 gradientloss.py: self.eps = 0.001
        on_empty: str = "raise",
    ):
        super().__init__()
        if mode not in GRADIENT_LOSS_MODES:
            raise ValueError(f"GradientLoss mode must be one of {GRADIENT_LOSS_MODES}, got {mode!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if on_empty not in ("raise", "zero"):
            raise ValueError(f"on_empty must be 'raise' or 'zero', got {on_empty!r}")
        self.mode = mode
        self.valid_mask = bool(valid_mask)
        self.loss_weight = float(loss_weight)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.eps = float(eps)
        self.on_empty = on_empty

    def _mask(self, gt: torch.Tensor) -> torch.Tensor:
        if not self.valid_mask:
            return torch.ones_like(gt, dtype=torch.bool)
        mask = gt > 0
        if self.max_depth is not None:
            mask = mask & (gt <= self.max_depth)
        return mask

    def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        if pred.shape != gt.shape or pred.dim() != 4 or pred.shape[1] != 1:
            raise ValueError(
                f"GradientLoss expects pred and gt of equal shape (B, 1, H, W), got {tuple(pred.shape)} "
                f"and {tuple(gt.shape)}"
            )
        if not bool(self._mask(gt).any()):
            if self.on_empty == "zero":
                return pred.sum() * 0.0
            raise ValueError(
                "GradientLoss needs at least one valid depth pixel (gt > 0"
                + (f" and gt <= {self.max_depth}" if self.max_depth is not None else "")
                + ") in the batch, got none"
            )
        # axes of the down-sampling and of the two differences (see the class docstring)
        rows, cols = (0, 1) if self.mode == "dinov2" else (2, 3)
        total = pred.sum() * 0.0
        for stride in GRADIENT_LOSS_STRIDES:
            pick = [slice(None)] * 4
            pick[rows] = pick[cols] = slice(None, None, stride)
            p, t = pred[tuple(pick)], gt[tuple(pick)]
            mask = self._mask(t)
            n = mask.sum()
            diff = torch.log(p + self.eps) - torch.log(t + self.eps)
            d = torch.where(mask, diff, torch.zeros_like(diff))  # dinov2: log_d_diff * mask
            terms = []
            for axis in (rows, cols):
                lo, hi = [slice(None)] * 4, [slice(None)] * 4
                lo[axis], hi[axis] = slice(0, -2), slice(2, None)  # dinov2: x[0:-2] - x[2:] on that axis
                both = mask[tuple(lo)] & mask[tuple(hi)]
                grad = torch.abs(d[tuple(lo)] - d[tuple(hi)])
                terms.append(torch.where(both, grad, torch.zeros_like(grad)).sum())
            total = total + (terms[0] + terms[1]) / n.clamp(min=1).to(pred.dtype)
        return self.loss_weight * total


def _class_index(label: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """(B, H, W) class map -> (B, H*W) long indices, ``ignore_index`` mapped to the extra column K."""
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
        raise ValueError(
            f"label value {int(lab[bad][0])} is outside [0, {num_classes}) and is not the ignore index {ignore_index}"
        )
    return torch.where(keep, lab, torch.full_like(lab, num_classes)).reshape(lab.shape[0], -1)


def multi_hot(label: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(B, H, W) class map -> (B, K) float: 1 for every class present; ``ignore_index`` is left out."""
    idx = _class_index(label, num_classes, ignore_index)
    out = torch.zeros(idx.shape[0], num_classes + 1, device=label.device)
    out.scatter_(1, idx, 1.0)  # column K collects the ignored pixels and is dropped
    return out[:, :num_classes]


def mldc_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    ignore_index: int = 255,
    average: str = "logits",
    ignored_only: str = "skip",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Multi-label dense classification (paper §3): BCE between the spatial mean of the segmentation
    output and the multi-hot vector of the classes present in the label map; mean over batch and classes.

    The paper does not say what is averaged (our default, docs/choices.md "MLDC"): ``average="logits"``
    (default) takes BCE-with-logits of the spatially averaged logits; ``average="probs"`` averages the
    per-pixel softmax probabilities, ``average="sigmoid"`` the per-pixel sigmoid probabilities, and takes
    BCE of them, clamped to [eps, 1 - eps] (softmax probabilities sum to 1 at each pixel, so with several
    classes present no average reaches the target of 1 for each; sigmoid ones can). The mean runs over
    the head's output grid as is (no resize to the label size).

    A label map with no valid pixel (``ignored_only``, paper silent): ``"skip"`` (default) leaves the
    image out of the mean, as the single-label loss does (its classes are unknown, not absent; if every
    image is left out the loss is a zero that keeps the graph); ``"absent"`` keeps it with an all-zero
    target (every class absent).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if label.dim() != 3 or label.shape[0] != logits.shape[0]:
        raise ValueError(f"label must be (B, H, W) with B = {logits.shape[0]}, got shape {tuple(label.shape)}")
    if ignored_only not in ("skip", "absent"):
        raise ValueError(f"ignored_only must be 'skip' or 'absent', got {ignored_only!r}")
    target = multi_hot(label, logits.shape[1], ignore_index).to(logits.dtype)
    if ignored_only == "skip":
        keep = (label != ignore_index).flatten(1).any(dim=1)
        if not bool(keep.any()):
            return logits.sum() * 0.0
        logits, target = logits[keep], target[keep]
    if average == "logits":
        y = logits.mean(dim=(2, 3))
        return F.binary_cross_entropy_with_logits(y, target, reduction="mean")
    if average in ("probs", "sigmoid"):
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        per_pixel = torch.softmax(logits, dim=1) if average == "probs" else torch.sigmoid(logits)
        y = per_pixel.mean(dim=(2, 3)).clamp(eps, 1 - eps)
        return F.binary_cross_entropy(y, target, reduction="mean")
    raise ValueError(f"average must be 'logits', 'probs' or 'sigmoid', got {average!r}")


def dominant_class(
    label: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) class map -> (class (B,) long, has_valid (B,) bool): the most frequent class of each map,
    ``ignore_index`` left out, ties to the lowest class id. A map with no valid pixel gets class 0 and
    has_valid False."""
    idx = _class_index(label, num_classes, ignore_index)
    b = idx.shape[0]
    counts = torch.zeros(b, num_classes + 1, dtype=torch.long, device=label.device)
    counts.scatter_add_(1, idx, torch.ones_like(idx))  # column K counts the ignored pixels and is dropped
    counts = counts[:, :num_classes]
    # torch.argmax returns the first maximal index: ties go to the lowest class id
    return counts.argmax(dim=1), counts.sum(dim=1) > 0


def slc_loss(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Single-label dense classification (paper Appendix C.1; its text is not available, so this is our
    reading [I], built like MLDC, paper §3): the target of each image is the most frequent valid class
    of its label map (ties -> lowest id), the prediction is the spatial mean of the head's logits over its
    output grid, and the loss is the cross-entropy averaged over the images.

    An image with no valid pixel is left out of the mean; if every image is left out the loss is a zero
    that keeps the graph (``logits.sum() * 0``), so the step is a no-op.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if label.dim() != 3 or label.shape[0] != logits.shape[0]:
        raise ValueError(f"label must be (B, H, W) with B = {logits.shape[0]}, got shape {tuple(label.shape)}")
    target, has_valid = dominant_class(label, logits.shape[1], ignore_index)
    if not bool(has_valid.any()):
        return logits.sum() * 0.0
    y = logits.mean(dim=(2, 3))
    return F.cross_entropy(y[has_valid], target[has_valid], reduction="mean")


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
    if image.dim() != 4 or image.shape[:2] != pred.shape[:2]:
        raise ValueError(f"input must be (B, 3, H, W) with B = {pred.shape[0]}, got shape {tuple(image.shape)}")
    if pred.shape[-2:] != image.shape[-2:]:
        pred = F.interpolate(pred, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(pred, image)


def resize_to(pred: torch.Tensor, size) -> torch.Tensor:
    """A prediction resized to the target's size: bilinear, align_corners=False, as DINOv2's decode
    head does before its losses and its encode_decode before scoring (dinov2 decode_head.py losses,
    encoder_decoder.py encode_decode)."""
    return F.interpolate(pred, size=tuple(size), mode="bilinear", align_corners=False)


class DepthLoss:
    """SigLoss (warm-up by iteration) + grad_loss_weight x GradientLoss: DINOv2's loss_decode
    (DINOv2 depth config; docs/protocol.md "Losses"), from a run's ``train`` settings."""

    def __init__(self, train):
        self.sig = SigLoss(warm_up=train.sigloss_warmup_iters > 0, warm_iter=train.sigloss_warmup_iters)
        self.grad = None
        if train.grad_loss != "none":
            self.grad = GradientLoss(mode=train.grad_loss, loss_weight=train.grad_loss_weight)

    def __call__(self, pred: torch.Tensor, gt: torch.Tensor, it: int) -> torch.Tensor:
        loss = self.sig(pred, gt, it=it)
        return loss if self.grad is None else loss + self.grad(pred, gt)
