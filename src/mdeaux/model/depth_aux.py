"""The depth + auxiliary model: frozen backbone f, shared DPT decoder g, task heads h (paper §3, Fig. 2;
docs/protocol.md "Model")."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mdeaux.model.backbone import FrozenBackbone, build_backbone
from mdeaux.model.dpt import DepthAnythingDecoder, DPTDecoder
from mdeaux.model.heads import MIN_DEPTH, ClassHead, DepthAnythingDepthHead, DepthHead
from mdeaux.model.specs import (
    BACKBONES,
    BackboneSpec,
    DECODER_TYPES,
    default_post_process_channels,
    resolve_spec,
)


class DepthAuxModel(nn.Module):
    """f (frozen) -> g (shared) -> h_depth or one of the auxiliary heads."""

    def __init__(
        self,
        backbone: FrozenBackbone,
        decoder: DPTDecoder | DepthAnythingDecoder,
        depth_head: DepthHead | DepthAnythingDepthHead,
        aux_heads: dict[str, nn.Module] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.depth_head = depth_head
        self.aux_heads = nn.ModuleDict(aux_heads or {})

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the shared decoder g_theta (updated by both the depth and the auxiliary step)."""
        return list(self.decoder.parameters())

    def features(self, x: torch.Tensor | None = None, feats: list | None = None) -> torch.Tensor:
        """Shared decoder output for a normalised image batch (B, 3, H, W), or for the backbone's output
        ``feats`` on it when the caller already has it (a cohort's runs share one backbone pass)."""
        return self.decoder(self.backbone(x) if feats is None else feats)

    def depth(self, x: torch.Tensor | None = None, feats: list | None = None) -> torch.Tensor:
        """Raw depth-head output (B, 1, H', W') on the padded grid; the caller resizes it to the target."""
        return self.depth_head(self.features(x, feats))

    def aux(self, x: torch.Tensor | None, name: str, feats: list | None = None) -> torch.Tensor:
        """Logits (B, K, H', W') of the auxiliary head ``name`` at the decoder resolution."""
        if name not in self.aux_heads:
            raise KeyError(f"no auxiliary head {name!r}; this model has {sorted(self.aux_heads) or 'none'}")
        return self.aux_heads[name](self.features(x, feats))

    def forward(self, x: torch.Tensor | None = None, task: str = "depth", feats: list | None = None) -> torch.Tensor:
        """``depth(x)`` for task "depth", else ``aux(x, task)``; ``feats``: the backbone's output on x."""
        return self.depth(x, feats) if task == "depth" else self.aux(x, task, feats)


# build_model settings and their defaults.
MODEL_DEFAULTS: dict = {
    "backbone": None,  # a name in BACKBONES (required)
    "weights_dir": None,  # local Hugging Face folder of the backbone weights ("tiny": None, random; or pretrained)
    "tiny": None,  # Dinov2Config settings of the random "tiny" backbone
    "backbone_seed": 0,  # init seed of the "tiny" backbone
    "decoder_channels": 256,  # dinov2/hub/depthers.py DPTHead channels=256
    # "dinov2": DINOv2 DPTHead + HeadDepth (dinov2/hub/depth/decode_heads.py); "depth_anything": Depth Anything
    # V1's DPTHead and output convs (paper Table 4; depth_anything/dpt.py). None: the backbone's default
    # (backbone.BACKBONES).
    "decoder_type": None,
    "post_process_channels": None,  # None: the backbone's (DINOv2 rule embed_dim // 8, // 4, // 2, // 1)
    "readout_type": None,  # None: the backbone's default ("project" DINOv2, "ignore" Depth Anything)
    "min_depth": MIN_DEPTH,  # dinov2 min_depth=0.001
    # the depth head's last conv: "default" PyTorch init (DINOv2's and Depth Anything's), "positive" its |W|,
    # |b| so the final ReLU is alive at the start (heads.init_output)
    "depth_output_init": "default",
    "aux_heads": {},  # {head name: number of output channels K}
}


def _resolve(cfg: dict) -> tuple[dict, BackboneSpec]:
    """The model settings with their defaults, checked, and the backbone's spec."""
    unknown = set(cfg) - set(MODEL_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown model settings {sorted(unknown)}; allowed: {sorted(MODEL_DEFAULTS)}")
    cfg = {**MODEL_DEFAULTS, **cfg}
    name = cfg["backbone"]
    if name is None:
        raise ValueError(f"model setting 'backbone' is required; one of {', '.join(BACKBONES)}")
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    decoder_type = cfg["decoder_type"]
    if decoder_type is not None and decoder_type not in DECODER_TYPES:
        raise ValueError(f"model setting decoder_type must be one of {DECODER_TYPES} or null, got {decoder_type!r}")
    return cfg, resolve_spec(name, decoder_type)


def frozen_backbone(cfg: dict, root: Path | None = None) -> FrozenBackbone:
    """The frozen backbone of the model settings ``cfg``, loaded (or, for "tiny" without weights_dir,
    initialised from ``backbone_seed``) without touching the global RNG: the decoder and heads initialised
    after it do not depend on how it was made, so runs sharing one backbone (a cohort) start as they would
    alone. A relative ``weights_dir`` is read from ``root`` (the project root; None: the current folder)."""
    cfg, spec = _resolve(cfg)
    is_tiny = spec.hf_repo is None
    weights_dir = None if cfg["weights_dir"] is None else Path(root or ".") / cfg["weights_dir"]
    with torch.random.fork_rng(devices=[]):
        return build_backbone(
            cfg["backbone"],
            weights_dir=weights_dir,
            tiny=cfg["tiny"] if is_tiny else None,
            seed=int(cfg["backbone_seed"]),
            decoder_type=cfg["decoder_type"],
        )


def build_model(cfg: dict, backbone: FrozenBackbone | None = None) -> DepthAuxModel:
    """Build the model from a plain dict (keys of ``MODEL_DEFAULTS``); decoder/head init uses the global RNG.

    ``decoder_type`` picks the decoder g and depth head h_phi; the auxiliary heads are ``ClassHead``
    (Depth Anything's nclass head) for both. With the random "tiny" backbone the taps follow the decoder
    type (``backbone.resolve_spec``): "depth_anything" reads the last four blocks after the final LayerNorm,
    drops the CLS token and uses widths [C/4, C/2, C, C], as Depth Anything ViT-L does. A prebuilt
    ``backbone`` (shared by a cohort's runs, or randomly initialised at the real size for ``mdeaux
    bench``) replaces ``frozen_backbone(cfg)``.
    """
    cfg, spec = _resolve(cfg)
    backbone = backbone or frozen_backbone(cfg)
    channels = int(cfg["decoder_channels"])
    post = cfg["post_process_channels"] or default_post_process_channels(spec, backbone.embed_dim)
    readout = cfg["readout_type"] or spec.readout_type
    min_depth = float(cfg["min_depth"])
    if spec.decoder == "depth_anything":
        decoder = DepthAnythingDecoder(backbone.embed_dim, post, channels=channels, readout_type=readout)
        depth_head = DepthAnythingDepthHead(channels, min_depth=min_depth, patch_size=backbone.patch_size,
                                            output_init=cfg["depth_output_init"])
    else:
        decoder = DPTDecoder(backbone.embed_dim, post_process_channels=post, channels=channels, readout_type=readout)
        depth_head = DepthHead(channels, min_depth=min_depth, output_init=cfg["depth_output_init"])
    aux_heads = {}
    for head_name, num_classes in dict(cfg["aux_heads"] or {}).items():
        if not isinstance(head_name, str) or not head_name or "." in head_name or head_name == "depth":
            raise ValueError(
                f"auxiliary head names must be non-empty strings without '.', other than 'depth'; got {head_name!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise ValueError(f"aux_heads[{head_name!r}] must be an int number of output channels, got {num_classes!r}")
        aux_heads[head_name] = ClassHead(channels, num_classes)
    return DepthAuxModel(backbone, decoder, depth_head, aux_heads)
