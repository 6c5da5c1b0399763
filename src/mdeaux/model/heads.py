"""Small task heads on the shared DPT decoder output (paper §3: "only separate the smaller task-specific
heads"; DINOv2 ``HeadDepth`` in dinov2/hub/depth/decode_heads.py, Depth Anything depth_anything/dpt.py;
the split is our choice, docs/choices.md "decoder / head split")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_DEPTH = 0.001  # dinov2/hub/depthers.py min_depth=0.001


class Interpolate(nn.Module):
    """``F.interpolate`` as a layer (dinov2 decode_heads.py Interpolate)."""

    def __init__(self, scale_factor: float, mode: str, align_corners: bool = False):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)


OUTPUT_INITS = ("default", "positive")  # a depth head's last conv: PyTorch's init, or made non-negative


def init_output(conv: nn.Conv2d, output_init: str, owner: str) -> None:
    """``positive``: the last Conv1x1 of a depth head sees ReLU outputs (>= 0) and feeds the final ReLU. With
    PyTorch's default init its output has one sign over most of the image when the features vary little (a
    random decoder on a frozen backbone): about half the inits are negative everywhere, the final ReLU
    outputs 0 and no gradient ever flows (seen in the mini Table 3 and Table 4 runs). |W| and |b| keep the
    default magnitudes and make the output > 0 everywhere at the start. ``default``: PyTorch's init, left alone."""
    if output_init not in OUTPUT_INITS:
        raise ValueError(f"{owner} output_init must be one of {OUTPUT_INITS}, got {output_init!r}")
    if output_init == "positive":
        with torch.no_grad():
            conv.weight.abs_()
            conv.bias.abs_()


class DepthHead(nn.Module):
    """h_phi: DINOv2 ``HeadDepth`` then ``relu(.) + min_depth`` (dinov2 DPTHead.depth_pred, classify=False).

    (B, C, H, W) decoder features -> (B, 1, 2H, 2W) depth >= min_depth. PyTorch default init, as in dinov2
    (``output_init="default"``); ``positive`` starts the last conv alive (``init_output``).
    """

    def __init__(self, channels: int = 256, min_depth: float = MIN_DEPTH, output_init: str = "default"):
        super().__init__()
        if channels < 2:
            raise ValueError(f"DepthHead needs at least 2 input channels, got {channels}")
        self.min_depth = float(min_depth)
        # Conv3x3(C -> C/2), x2 bilinear (align_corners=True), Conv3x3(C/2 -> 32), ReLU, Conv1x1(32 -> 1)
        # (dinov2 HeadDepth; 32 channels as there).
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, stride=1, padding=1),
            Interpolate(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, 32, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1, stride=1, padding=0),
        )
        init_output(self.head[4], output_init, "DepthHead")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.head(x)) + self.min_depth


class DepthAnythingDepthHead(nn.Module):
    """h_phi for the Depth Anything decoder (paper Table 4; depth_anything/dpt.py): Depth Anything's depth output
    convs on ``path_1``, then ``+ min_depth``.

    (B, C, 8h, 8w) -> ``scratch.output_conv1`` Conv3x3(C -> C/2) -> bilinear resize (align_corners=True) to
    (14h, 14w) = the padded input size -> ``scratch.output_conv2`` Conv3x3(C/2 -> 32), ReLU, Conv1x1(32 -> 1),
    ReLU (depth_anything/dpt.py DPTHead, nclass = 1) -> + min_depth.

    Depth Anything ends with that ReLU (and another after resizing to the input); we keep it and add
    DINOv2's ``min_depth`` (0.001, as ``DepthHead``), so depth > 0 for SigLoss's log and both decoders
    give depth >= min_depth. Names mirror Depth Anything's ``depth_head.scratch.output_conv1/2`` keys.
    PyTorch default init (``output_init="default"``); ``positive`` starts the last conv alive (``init_output``).
    """

    def __init__(
        self,
        channels: int = 256,
        min_depth: float = MIN_DEPTH,
        patch_size: int = 14,  # DINOv2 ViT-L/14
        decoder_stride: int = 8,  # DepthAnythingDecoder: path_1 is 8x the patch grid
        output_init: str = "default",
    ):
        super().__init__()
        if channels < 2:
            raise ValueError(f"DepthAnythingDepthHead needs at least 2 input channels, got {channels}")
        self.min_depth = float(min_depth)
        self.patch_size = int(patch_size)
        self.decoder_stride = int(decoder_stride)
        self.scratch = nn.Module()
        self.scratch.output_conv1 = nn.Conv2d(channels, channels // 2, kernel_size=3, stride=1, padding=1)
        # depth_anything/dpt.py head_features_2 = 32; its ReLU(True) in-place, here out-of-place (same values)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(channels // 2, 32, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1, stride=1, padding=0),
            nn.ReLU(),
            nn.Identity(),
        )
        init_output(self.scratch.output_conv2[2], output_init, "DepthAnythingDepthHead")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h8, w8 = x.shape[-2:]
        if h8 % self.decoder_stride or w8 % self.decoder_stride:
            raise ValueError(
                f"DepthAnythingDepthHead expects features at {self.decoder_stride}x the patch grid, got {h8}x{w8}"
            )
        size = (h8 // self.decoder_stride * self.patch_size, w8 // self.decoder_stride * self.patch_size)
        out = self.scratch.output_conv1(x)
        # depth_anything/dpt.py: F.interpolate(out, (patch_h * 14, patch_w * 14), bilinear, align_corners=True)
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return self.scratch.output_conv2(out) + self.min_depth


class ClassHead(nn.Module):
    """h_psi: Conv3x3(C -> C), ReLU, Conv1x1(C -> K) logits at the decoder resolution.

    Depth Anything's ``nclass > 1`` output head (depth_anything/dpt.py; our choice of aux head,
    docs/choices.md); used for
    segmentation, dense multi-label classification and (K = 3) image reconstruction. PyTorch default init.
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        if num_classes < 1 or channels < 1:
            raise ValueError(f"ClassHead needs positive channels and num_classes, got {channels}, {num_classes}")
        self.num_classes = num_classes
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, kernel_size=1, stride=1, padding=0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
