"""The known backbones as data: which blocks feed the DPT decoder, how they are read, and where their
weights come from. No torch here, so that ``mdeaux weights --list`` and planning stay light."""

from __future__ import annotations

from dataclasses import dataclass, replace

# DINOv2 ViT-*/14 patch size (dinov2/hub/backbones.py patch_size=14).
PATCH_SIZE = 14

# Files a local Hugging Face model folder must hold (the weights in one of the usual layouts).
CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class BackboneSpec:
    """A known backbone: which blocks feed the DPT decoder and where its weights come from."""

    embed_dim: int | None  # ViT width; None for "tiny" (taken from its config)
    out_indices: tuple[int, ...] | None  # transformers stage numbers (= DINOv2 0-based block + 1); None: spread
    apply_layernorm: bool  # final LayerNorm on the taken blocks (DINOv2 norm=False, Depth Anything norm=True)
    readout_type: str  # DPT readout of the CLS token: "project" (DINOv2) or "ignore" (Depth Anything)
    post_process_channels: tuple[int, int, int, int] | None  # DPT reassemble widths; None: the decoder's rule
    hf_repo: str | None  # Hugging Face repository holding the weights (None: random init)
    decoder: str = "dinov2"  # default decoder family: "dinov2" (DPTDecoder) or "depth_anything"


DECODER_TYPES = ("dinov2", "depth_anything")

# Reassemble widths when a row gives none, as divisors of the ViT width: DINOv2 embed_dim // 2**(3-i)
# (dinov2/hub/depthers.py post_process_channels); Depth Anything ViT-L's out_channels [256, 512, 1024, 1024]
# for width 1024 (LiheYoung/Depth-Anything depth_anything/dpt.py), i.e. [C/4, C/2, C, C].
POST_DIVISORS: dict[str, tuple[int, int, int, int]] = {"dinov2": (8, 4, 2, 1), "depth_anything": (4, 2, 1, 1)}

# How each decoder family reads a random backbone that has no published depth model ("tiny"):
# DINOv2 taps four blocks spread over the depth, no final LayerNorm, CLS projected (dinov2/hub/depthers.py);
# Depth Anything taps the last four blocks after the final LayerNorm and drops the CLS token
# (get_intermediate_layers(x, 4, return_class_token=True), norm=True, use_clstoken=False;
# depth_anything/dpt.py).
TINY_READING: dict[str, dict] = {
    "dinov2": {"apply_layernorm": False, "readout_type": "project"},
    "depth_anything": {"apply_layernorm": True, "readout_type": "ignore"},
}


BACKBONES: dict[str, BackboneSpec] = {
    # Random init for the CPU mini profile; four taps spread evenly over its blocks (see _tiny_out_indices).
    "tiny": BackboneSpec(None, None, False, "project", None, None),
    # DINOv2 depth taps (dinov2/hub/depthers.py out_index, 0-based) vit_small/base [2,5,8,11],
    # vit_large [4,11,17,23], vit_giant2 [9,19,29,39], + 1 for transformers (modeling_dinov2.py stage k =
    # block k, 1-based); norm=False -> apply_layernorm=False; readout "project" (dinov2/hub/depthers.py).
    # Widths 384/768/1024/1536 (dinov2/models/vision_transformer.py vit_small/base/large/giant2).
    "dinov2_vits14": BackboneSpec(384, (3, 6, 9, 12), False, "project", None, "facebook/dinov2-small"),
    "dinov2_vitb14": BackboneSpec(768, (3, 6, 9, 12), False, "project", None, "facebook/dinov2-base"),
    "dinov2_vitl14": BackboneSpec(1024, (5, 12, 18, 24), False, "project", None, "facebook/dinov2-large"),
    "dinov2_vitg14": BackboneSpec(1536, (10, 20, 30, 40), False, "project", None, "facebook/dinov2-giant"),
    # Depth Anything V1 ViT-L encoder: last four blocks with the final LayerNorm, CLS token dropped
    # (use_clstoken=False) and DPT widths out_channels=[256, 512, 1024, 1024] (depth_anything/dpt.py; the HF
    # conversion transformers models/depth_anything/convert_depth_anything_to_hf.py uses out_indices
    # [21,22,23,24], apply_layernorm=True).
    # Its default decoder is Depth Anything's own DPT head (paper Table 4; our choice, docs/choices.md).
    "depth_anything_vitl14": BackboneSpec(
        1024,
        (21, 22, 23, 24),
        True,
        "ignore",
        (256, 512, 1024, 1024),
        "LiheYoung/depth-anything-large-hf",
        decoder="depth_anything",
    ),
}


def resolve_spec(name: str, decoder_type: str | None = None) -> BackboneSpec:
    """The row of ``name`` with the decoder family ``decoder_type`` (None: the row's own).

    A pretrained backbone keeps its taps, LayerNorm, readout and widths whatever the decoder (they are how
    its published depth model reads it). The random "tiny" backbone has no published reading, so choosing
    a decoder family other than its row's switches to that family's reading (``TINY_READING``; taps: last
    four blocks for Depth Anything, spread for DINOv2) and its width rule (``POST_DIVISORS``).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    if spec.decoder not in DECODER_TYPES:
        raise ValueError(f"backbone {name!r} names decoder {spec.decoder!r}; expected one of {DECODER_TYPES}")
    if decoder_type is None or decoder_type == spec.decoder:
        return spec
    if decoder_type not in DECODER_TYPES:
        raise ValueError(f"unknown decoder_type {decoder_type!r}; choose one of {DECODER_TYPES} or None")
    if spec.hf_repo is None:
        return replace(spec, **TINY_READING[decoder_type], post_process_channels=None, decoder=decoder_type)
    return replace(spec, decoder=decoder_type)


def default_post_process_channels(spec: BackboneSpec, embed_dim: int) -> list[int]:
    """The row's reassemble widths, else its decoder's rule applied to ``embed_dim`` (``POST_DIVISORS``)."""
    if spec.post_process_channels is not None:
        return [int(c) for c in spec.post_process_channels]
    return [max(1, embed_dim // d) for d in POST_DIVISORS[spec.decoder]]
