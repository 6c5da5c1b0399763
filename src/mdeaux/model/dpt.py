"""Shared DPT decoders g_theta (paper §3, Fig. 2; where the decoder ends and the heads begin is our
choice, docs/choices.md "decoder / head split").

``DPTDecoder``: DINOv2's ``DPTHead`` without its final depth conv (``conv_depth``). Module and attribute
names follow dinov2/eval/depth/models/decode_heads/dpt_head.py and dinov2/hub/depth/decode_heads.py
(``reassemble_blocks``, ``convs``, ``fusion_blocks``, ``project``; ``ConvModule.conv``), so the state-dict
keys match DINOv2's released DPT heads (minus ``conv_depth``, which is our ``DepthHead``).

``DepthAnythingDecoder``: Depth Anything V1's ``DPTHead`` up to ``path_1`` (paper Table 4;
LiheYoung/Depth-Anything depth_anything/dpt.py and blocks.py). Its names (``projects``, ``resize_layers``,
``scratch.layer{1..4}_rn``, ``scratch.refinenet{1..4}.{resConfUnit1,resConfUnit2,out_conv}``) mirror
Depth Anything's ``depth_head.*`` keys; the output convs are ``DepthAnythingDepthHead`` (heads.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

READOUT_TYPES = ("ignore", "add", "project")  # dinov2 ReassembleBlocks


class ConvModule(nn.Module):
    """DINOv2's ``ConvModule`` with norm_cfg=None: a Conv2d and an optional ReLU, before or after it.

    Init as mmcv/dinov2 ``ConvModule.init_weights``: Kaiming normal (mode fan_out, relu), bias 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        act: bool = False,
        act_first: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        # dinov2 uses ReLU(inplace=True); out-of-place gives the same values and is safe for autograd.
        self.activate = nn.ReLU() if act else None
        self.act_first = act_first  # order ("act", "conv", "norm") in PreActResidualConvUnit
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.constant_(self.conv.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate is not None and self.act_first:
            x = self.activate(x)
        x = self.conv(x)
        if self.activate is not None and not self.act_first:
            x = self.activate(x)
        return x


class ReassembleBlocks(nn.Module):
    """Tokens of 4 ViT levels -> 4 feature maps at x4, x2, x1, x1/2 the patch grid (dinov2 ReassembleBlocks)."""

    def __init__(self, in_channels: int, out_channels: Sequence[int], readout_type: str):
        super().__init__()
        if readout_type not in READOUT_TYPES:
            raise ValueError(f"unknown readout_type {readout_type!r}; choose one of {READOUT_TYPES}")
        self.readout_type = readout_type
        # Conv1x1(C -> p_i), bias ("auto" with no norm), no activation (dinov2 ReassembleBlocks.projects).
        self.projects = nn.ModuleList([ConvModule(in_channels, c, kernel_size=1) for c in out_channels])
        # x4 / x2 transposed convs, identity, stride-2 conv (dinov2 ReassembleBlocks.resize_layers); default init.
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4, padding=0),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2, padding=0),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        if readout_type == "project":
            # Linear(2C -> C) + GELU on [token, cls] (dinov2 readout_projects); default init.
            self.readout_projects = nn.ModuleList(
                [nn.Sequential(nn.Linear(2 * in_channels, in_channels), nn.GELU()) for _ in out_channels]
            )

    def forward(self, inputs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        out = []
        for i, (x, cls_token) in enumerate(inputs):
            feature_shape = x.shape
            if self.readout_type == "project":
                x = x.flatten(2).permute(0, 2, 1)
                readout = cls_token.unsqueeze(1).expand_as(x)
                x = self.readout_projects[i](torch.cat((x, readout), -1))
                x = x.permute(0, 2, 1).reshape(feature_shape)
            elif self.readout_type == "add":
                x = (x.flatten(2) + cls_token.unsqueeze(-1)).reshape(feature_shape)
            # "ignore": the CLS token is dropped (depth_anything/dpt.py use_clstoken=False)
            x = self.projects[i](x)
            out.append(self.resize_layers[i](x))
        return out


class PreActResidualConvUnit(nn.Module):
    """x + Conv3x3(ReLU(Conv3x3(ReLU(x)))), both convs bias=False (dinov2 PreActResidualConvUnit)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3, padding=1, bias=False, act=True, act_first=True)
        self.conv2 = ConvModule(channels, channels, 3, padding=1, bias=False, act=True, act_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class FeatureFusionBlock(nn.Module):
    """Add a (resized) skip through RCU1, RCU2, x2 bilinear upsample, Conv1x1 (dinov2 FeatureFusionBlock)."""

    def __init__(self, channels: int, with_skip: bool = True):
        super().__init__()
        self.align_corners = True  # dinov2 FeatureFusionBlock default align_corners=True
        self.project = ConvModule(channels, channels, kernel_size=1, bias=True)
        # dinov2 sets fusion_blocks[0].res_conv_unit1 = None: the first block has no skip input.
        self.res_conv_unit1 = PreActResidualConvUnit(channels) if with_skip else None
        self.res_conv_unit2 = PreActResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            if self.res_conv_unit1 is None:
                raise ValueError("this fusion block takes no skip input")
            if x.shape != skip.shape:  # odd patch grids: skip resized with align_corners=False (dinov2)
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.res_conv_unit1(skip)
        x = self.res_conv_unit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
        return self.project(x)


class DPTDecoder(nn.Module):
    """DINOv2 DPTHead up to ``project`` (Conv3x3 + ReLU); output (B, channels, 16*ceil(h/2), 16*ceil(w/2)).

    That is 8h x 8w for an even patch grid h x w (e.g. grid 30x39 -> 240x320).
    """

    def __init__(
        self,
        embed_dim: int,
        post_process_channels: Sequence[int] | None = None,
        channels: int = 256,  # dinov2 hub/depthers.py _make_dinov2_dpt_depth_head channels=256
        readout_type: str = "project",  # dinov2 hub/depthers.py readout_type="project"
    ):
        super().__init__()
        if post_process_channels is None:
            # dinov2 hub/depthers.py: [embed_dim // 2 ** (3 - i) for i in range(4)]
            post_process_channels = [embed_dim // 2 ** (3 - i) for i in range(4)]
        post_process_channels = [int(c) for c in post_process_channels]
        if len(post_process_channels) != 4 or min(post_process_channels) < 1:
            raise ValueError(f"post_process_channels must be 4 positive ints, got {post_process_channels}")
        if channels < 1 or embed_dim < 1:
            raise ValueError(f"embed_dim and channels must be positive, got {embed_dim}, {channels}")
        self.embed_dim = embed_dim
        self.channels = channels
        self.post_process_channels = post_process_channels
        self.reassemble_blocks = ReassembleBlocks(embed_dim, post_process_channels, readout_type)
        # Conv3x3(p_i -> channels), bias=False, no activation (dinov2 DPTHead.convs).
        self.convs = nn.ModuleList(
            [ConvModule(c, channels, kernel_size=3, padding=1, bias=False) for c in post_process_channels]
        )
        self.fusion_blocks = nn.ModuleList([FeatureFusionBlock(channels, with_skip=i > 0) for i in range(4)])
        # Conv3x3 + ReLU, bias (dinov2 DPTHead.project: ConvModule default act ReLU, norm_cfg None).
        self.project = ConvModule(channels, channels, kernel_size=3, padding=1, bias=True, act=True)

    def forward(self, inputs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """4 x (patch map (B, C, h, w), cls (B, C)) from the backbone -> (B, channels, H', W')."""
        if len(inputs) != 4 or any(len(level) != 2 for level in inputs):
            raise ValueError("DPTDecoder expects the backbone's list of 4 (patch_map, cls_token) tuples")
        x = self.reassemble_blocks(list(inputs))
        x = [conv(feature) for conv, feature in zip(self.convs, x)]
        out = self.fusion_blocks[0](x[3])  # F0(x3), F1(., x2), F2(., x1), F3(., x0) (dinov2 DPTHead.forward)
        for i in range(1, 4):
            out = self.fusion_blocks[i](out, x[3 - i])
        return self.project(out)


# ----------------------------------------------------------------------------------------------------
# Depth Anything V1 (paper Table 4; LiheYoung/Depth-Anything depth_anything/dpt.py)
# ----------------------------------------------------------------------------------------------------
DA_READOUT_TYPES = ("ignore", "project")  # depth_anything/dpt.py use_clstoken False / True
DA_OUTPUT_STRIDE = 8  # path_1 is 8x the patch grid: layer1 is x4, refinenet1 upsamples x2


class DAResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), Conv3x3 with bias (Depth Anything blocks.py ResidualConvUnit with
    bn=False; transformers DepthAnythingPreActResidualLayer also has bias=True). PyTorch default init."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Depth Anything uses nn.ReLU(False): out-of-place, so x itself is not modified
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class DAFeatureFusionBlock(nn.Module):
    """Depth Anything ``FeatureFusionBlock`` (deconv=False, bn=False, expand=False, align_corners=True):
    x (+ resConfUnit1(skip)) -> resConfUnit2 -> bilinear resize to ``size`` (x2 when None) -> out_conv 1x1.

    ``with_skip=False`` leaves out ``resConfUnit1``: Depth Anything builds it in refinenet4 too but never
    calls it (refinenet4 gets no skip), as DINOv2 sets ``fusion_blocks[0].res_conv_unit1 = None``.
    """

    def __init__(self, features: int, with_skip: bool = True):
        super().__init__()
        self.align_corners = True  # depth_anything/dpt.py _make_fusion_block(align_corners=True)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)
        self.resConfUnit1 = DAResidualConvUnit(features) if with_skip else None
        self.resConfUnit2 = DAResidualConvUnit(features)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        if skip is not None:
            if self.resConfUnit1 is None:
                raise ValueError("this fusion block takes no skip input")
            # cannot happen with the size= chain of DepthAnythingDecoder; Depth Anything does not resize either
            if skip.shape != x.shape:
                raise ValueError(f"skip shape {tuple(skip.shape)} differs from the input's {tuple(x.shape)}")
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=self.align_corners)
        return self.out_conv(x)


class DepthAnythingDecoder(nn.Module):
    """Depth Anything's DPTHead up to ``path_1``: (B, features, 8h, 8w) for a patch grid h x w, any parity.

    Defaults are the ViT-L configuration of paper Table 4 (depth_anything/dpt.py): ``DPT_DINOv2(encoder='vitl',
    features=256, out_channels=[256, 512, 1024, 1024], use_bn=False, use_clstoken=False)``. All layers keep
    PyTorch's default init (Depth Anything uses plain ``nn.Conv2d``). Attributes ``embed_dim``,
    ``channels``, ``post_process_channels`` and ``readout_type`` are named as on ``DPTDecoder``.
    """

    def __init__(
        self,
        embed_dim: int,
        post_process_channels: Sequence[int] | None = None,
        channels: int = 256,  # depth_anything/dpt.py DPT_DINOv2 features=256 (vitl)
        readout_type: str = "ignore",  # depth_anything/dpt.py use_clstoken=False
    ):
        super().__init__()
        if readout_type not in DA_READOUT_TYPES:
            raise ValueError(
                f"readout_type {readout_type!r} is not available in the Depth Anything decoder; choose one of "
                f"{DA_READOUT_TYPES} (use_clstoken False / True)"
            )
        if post_process_channels is None:
            post_process_channels = (256, 512, 1024, 1024)  # depth_anything/dpt.py out_channels (vitl)
        post = [int(c) for c in post_process_channels]
        if len(post) != 4 or min(post) < 1:
            raise ValueError(f"post_process_channels must be 4 positive ints, got {list(post_process_channels)}")
        if channels < 1 or embed_dim < 1:
            raise ValueError(f"embed_dim and channels must be positive, got {embed_dim}, {channels}")
        self.embed_dim = embed_dim
        self.channels = channels
        self.post_process_channels = post
        self.readout_type = readout_type
        self.projects = nn.ModuleList([nn.Conv2d(embed_dim, c, kernel_size=1, stride=1, padding=0) for c in post])
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(post[0], post[0], kernel_size=4, stride=4, padding=0),
                nn.ConvTranspose2d(post[1], post[1], kernel_size=2, stride=2, padding=0),
                nn.Identity(),
                nn.Conv2d(post[3], post[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        if readout_type == "project":
            self.readout_projects = nn.ModuleList(
                [nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU()) for _ in post]
            )
        self.scratch = nn.Module()  # depth_anything blocks.py _make_scratch(expand=False, groups=1)
        for i, c in enumerate(post, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, channels, kernel_size=3, stride=1, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", DAFeatureFusionBlock(channels, with_skip=i < 4))

    def forward(self, inputs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """4 x (patch map (B, C, h, w), cls (B, C)) from the backbone -> path_1 (B, channels, 8h, 8w)."""
        if len(inputs) != 4 or any(len(level) != 2 for level in inputs):
            raise ValueError("DepthAnythingDecoder expects the backbone's list of 4 (patch_map, cls_token) tuples")
        layers = []
        for i, (x, cls_token) in enumerate(inputs):
            if self.readout_type == "project":
                shape = x.shape
                tokens = x.flatten(2).transpose(1, 2)
                readout = cls_token.unsqueeze(1).expand_as(tokens)
                tokens = self.readout_projects[i](torch.cat((tokens, readout), -1))
                x = tokens.transpose(1, 2).reshape(shape)
            layers.append(self.resize_layers[i](self.projects[i](x)))
        sc = self.scratch
        l1, l2, l3, l4 = sc.layer1_rn(layers[0]), sc.layer2_rn(layers[1]), sc.layer3_rn(layers[2]), sc.layer4_rn(layers[3])
        # depth_anything/dpt.py: each path is resized to the next (larger) level's size, the last one x2
        path = sc.refinenet4(l4, size=l3.shape[2:])
        path = sc.refinenet3(path, l3, size=l2.shape[2:])
        path = sc.refinenet2(path, l2, size=l1.shape[2:])
        return sc.refinenet1(path, l1)
