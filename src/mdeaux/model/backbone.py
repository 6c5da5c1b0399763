"""Frozen DINOv2 backbone, read through Hugging Face ``transformers``.

``FrozenBackbone`` reproduces what DINOv2's depth models feed their decode head
(dinov2/hub/depthers.py): the normalised image is centre-padded to a multiple of the
patch size (``CenterPadding``, dinov2/hub/utils.py) and four intermediate blocks are
returned as ``get_intermediate_layers(x, n=out_index, reshape=True,
return_class_token=True, norm=False)`` would: a list of ``(patch_map, cls_token)``.
The weights are read with ``transformers.Dinov2Backbone`` (transformers
``models/dinov2/modeling_dinov2.py``; hidden state k is the output of block k, 1-based), only ever
from a local folder.

Each backbone row names its default decoder family (``decoder``: "dinov2" or "depth_anything");
``resolve_spec`` applies a ``decoder_type`` override (see there for how the taps follow it).
"""

from __future__ import annotations

import math
import types
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Backbone,
    Dinov2Config,
)

from mdeaux.model.specs import (
    CONFIG_FILE,
    PATCH_SIZE,
    WEIGHT_FILES,
    BackboneSpec,
    resolve_spec,
)

# Defaults of the random "tiny" ViT; DINOv2 geometry (image_size 518, patch 14: dinov2/hub/backbones.py).
TINY_DEFAULTS: dict = {
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "mlp_ratio": 4,
    "image_size": 518,
    "patch_size": PATCH_SIZE,
}
TINY_KEYS = frozenset(TINY_DEFAULTS) | {"out_indices"}


def pad_amounts(size: int, multiple: int) -> tuple[int, int]:
    """(before, after) zero padding bringing ``size`` to a multiple of ``multiple`` (dinov2 CenterPadding)."""
    new_size = math.ceil(size / multiple) * multiple
    pad = new_size - size
    return pad // 2, pad - pad // 2


def center_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad H and W of (B, C, H, W) to multiples of ``multiple``, centred (dinov2/hub/utils.py CenterPadding)."""
    top, bottom = pad_amounts(x.shape[-2], multiple)
    left, right = pad_amounts(x.shape[-1], multiple)
    return F.pad(x, (left, right, top, bottom))


class FrozenBackbone(nn.Module):
    """A ``Dinov2Backbone`` that is never trained and returns DINOv2-style intermediate layers."""

    def __init__(self, model: Dinov2Backbone):
        super().__init__()
        config = model.config
        if config.reshape_hidden_states:
            raise ValueError("FrozenBackbone needs reshape_hidden_states=False (the CLS token must be kept)")
        if len(model.out_features) != 4:
            raise ValueError(f"the DPT decoder needs 4 feature maps, the backbone gives {model.out_features}")
        self.model = model
        self.embed_dim: int = config.hidden_size
        patch = config.patch_size
        self.patch_size: int = patch if isinstance(patch, int) else int(patch[0])
        self.out_indices: tuple[int, ...] = tuple(config.out_indices)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self.matmul_dtype = torch.float32  # of the Linear and Conv2d weights (bf16 after the first bf16 autocast call)
        _cache_position_embeddings(self.model.embeddings)

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Always stay in eval mode (paper §3: frozen backbone; DINOv2 depth config backbone frozen_stages=100)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised (B, 3, H, W) -> 4 x (patch map (B, C, h, w), cls (B, C)), h, w = padded size / 14.

        The ViT runs under ``torch.inference_mode`` (no autograd bookkeeping at all). Inference tensors
        cannot be saved for backward, so the outputs are copied outside inference mode into ordinary
        tensors: the patch maps by the (B, hw, C) -> (B, C, h, w) layout copy that is needed anyway, the
        CLS tokens (B x C) by a clone. The decoder can then be trained on them.
        """
        channels = self.model.config.num_channels
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(f"expected a (B, {channels}, H, W) image batch, got shape {tuple(x.shape)}")
        self._store_autocast_weights(x.device.type)
        x = center_pad(x, self.patch_size)
        b = x.shape[0]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        with torch.inference_mode():
            sequences = self.model(pixel_values=x).feature_maps  # each (B, 1 + h*w, C), CLS first
        out = []
        for seq in sequences:
            if seq.shape[1] != 1 + h * w:
                raise ValueError(f"expected 1 + {h}*{w} tokens, got {seq.shape[1]} (registers are not supported)")
            # clone (not .contiguous(), which returns the inference tensor itself when it is already
            # contiguous, e.g. a 1x1 grid): always a fresh ordinary tensor
            patches = seq[:, 1:].reshape(b, h, w, -1).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
            out.append((patches, seq[:, 0].clone()))
        return out


    def _store_autocast_weights(self, device_type: str) -> None:
        """Under bf16 autocast, store the Linear and Conv2d weights in bf16 once, instead of the casts that
        autocast makes of every frozen weight at every call (about 13 ms per ViT-g/14 step on an H100, and
        half the backbone's memory). The numbers are identical: autocast casts these weights to bf16 by
        the same rounding, and keeps the norms, LayerScale and embeddings, untouched here, in fp32."""
        autocast = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16
        if autocast and self.matmul_dtype != torch.bfloat16:
            for module in self.model.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    module.to(torch.bfloat16)
            self.matmul_dtype = torch.bfloat16
        elif not autocast and self.matmul_dtype != torch.float32:
            raise RuntimeError("this frozen backbone stores its matmul weights in bf16 for bf16 autocast (the runs that "
                               "share it are all bf16); build another one (model.depth_aux.frozen_backbone) for fp32")


def _cache_position_embeddings(embeddings: nn.Module) -> None:
    """Compute the position embeddings interpolated to an image's patch grid once per grid, not at
    every forward: they depend only on the frozen weights and the grid, and Hugging Face's bicubic
    interpolation of ViT-g/14's 1536 x 37 x 37 table takes about 14 ms on an H100, at every training
    batch and every evaluation window whose grid is not the 37 x 37 of pretraining. (A bound method,
    so that a deep copy of the backbone caches from its own table.)"""
    embeddings.position_cache = {}
    embeddings.interpolate_pos_encoding = types.MethodType(_cached_interpolation, embeddings)


def _cached_interpolation(embeddings: nn.Module, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    table, cache = embeddings.position_embeddings, embeddings.position_cache
    key = (tokens.shape[1], height, width, table.device, table.dtype, table.data_ptr(), table._version)
    if key not in cache:
        if len(cache) >= 16:  # image sizes are few (crops, test-time sizes, windows); never grow without bound
            cache.clear()
        cache[key] = type(embeddings).interpolate_pos_encoding(embeddings, tokens, height, width)
    return cache[key]


def _tiny_out_indices(num_layers: int, decoder: str = "dinov2") -> list[int]:
    """Four taps: spread evenly for DINOv2, as its [3,6,9,12]/[10,20,30,40] (1-based) for 12/40 blocks;
    the last four blocks for Depth Anything (ViT-L: 21..24, depth_anything/dpt.py)."""
    if num_layers < 4:
        raise ValueError(f"the tiny backbone needs num_hidden_layers >= 4 for four DPT taps, got {num_layers}")
    if decoder == "depth_anything":
        return list(range(num_layers - 3, num_layers + 1))
    return [math.ceil(num_layers * (k + 1) / 4) for k in range(4)]


def _build_tiny(tiny: dict | None, seed: int, spec: BackboneSpec) -> Dinov2Backbone:
    tiny = dict(tiny or {})
    unknown = set(tiny) - TINY_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in the tiny backbone config; allowed: {sorted(TINY_KEYS)}")
    params = {**TINY_DEFAULTS, **tiny}
    out_indices = params.pop("out_indices", None) or _tiny_out_indices(params["num_hidden_layers"], spec.decoder)
    config = Dinov2Config(
        **params,
        out_indices=list(out_indices),
        apply_layernorm=spec.apply_layernorm,
        reshape_hidden_states=False,
    )
    # Seeded init on a forked RNG so the caller's global torch RNG stream is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Dinov2Backbone(config)


def _missing_weights_message(name: str, spec: BackboneSpec, folder: Path | None, problem: str) -> str:
    where = "no weights_dir was given" if folder is None else f"{problem}: {folder}"
    if spec.hf_repo is None:  # the tiny ViT, pretrained by the pretrain stage (model/pretrain.py)
        return (f"backbone {name!r}: {where}. The mini profile's pretrained tiny ViT is written by the pretrain stage: "
                "run `dvc repro pretrain` (or `mdeaux pretrain`), or set model.weights_dir to null for a random one")
    return (
        f"backbone {name!r}: {where}. It must be a local Hugging Face model folder holding "
        f"{CONFIG_FILE} and model.safetensors (or another of {', '.join(WEIGHT_FILES[1:])}). "
        f"Get it on a machine with internet with `mdeaux weights {name}` (Hugging Face repo "
        f"{spec.hf_repo!r}; it runs `dvc add`, then `dvc push` there and `dvc pull` here); "
        "nothing is downloaded at run time."
    )


def _check_config(name: str, spec: BackboneSpec, config: Dinov2Config, folder: Path) -> None:
    """The folder's ViT must have the width, depth and patch size the table expects."""
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    if config.hidden_size != spec.embed_dim or patch != PATCH_SIZE or config.num_hidden_layers < max(spec.out_indices):
        raise ValueError(
            f"backbone {name!r} expects a ViT with hidden_size {spec.embed_dim}, patch_size {PATCH_SIZE} and at "
            f"least {max(spec.out_indices)} layers (weights {spec.hf_repo!r}), but {folder} holds hidden_size "
            f"{config.hidden_size}, patch_size {patch}, {config.num_hidden_layers} layers"
        )


def _load_depth_anything_backbone(folder: Path, config: Dinov2Config, spec: BackboneSpec) -> Dinov2Backbone:
    """The ``backbone`` submodule of a DepthAnythingForDepthEstimation folder, with our taps."""
    full, info = DepthAnythingForDepthEstimation.from_pretrained(
        folder, local_files_only=True, output_loading_info=True
    )
    missing = sorted(k for k in info["missing_keys"] if k.startswith("backbone."))
    if missing:
        raise ValueError(f"{folder} lacks backbone weights {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    params = config.to_dict()
    for key in ("out_features", "stage_names"):  # re-derived from out_indices
        params.pop(key, None)
    params.update(out_indices=list(spec.out_indices), apply_layernorm=spec.apply_layernorm, reshape_hidden_states=False)
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        backbone = Dinov2Backbone(Dinov2Config(**params))
    backbone.load_state_dict(full.backbone.state_dict(), strict=True, assign=True)
    return backbone


def _tiny_spec(spec: BackboneSpec, config: Dinov2Config, tiny: dict | None, folder: Path) -> BackboneSpec:
    """The row of a pretrained tiny ViT (``model/pretrain.py``): its taps follow the decoder as for a random one,
    and the folder's ViT must be the one ``model.tiny`` describes (a run's id records those settings)."""
    tiny = dict(tiny or {})
    want = {**TINY_DEFAULTS, **{k: v for k, v in tiny.items() if k != "out_indices"}}
    got = {"mlp_ratio": config.mlp_ratio, "image_size": config.image_size, "hidden_size": config.hidden_size,
           "num_hidden_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads,
           "patch_size": config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]}
    differ = [f"{k} {got[k]} (model.tiny: {want[k]})" for k in sorted(want) if got[k] != want[k]]
    if differ:
        raise ValueError(f"{folder} holds a tiny ViT with {', '.join(differ)}: pretrain it again with these settings "
                         "(`dvc repro pretrain`, or `mdeaux pretrain`)")
    taps = tiny.get("out_indices") or _tiny_out_indices(config.num_hidden_layers, spec.decoder)
    return replace(spec, embed_dim=config.hidden_size, out_indices=tuple(taps))


def _load_pretrained(name: str, spec: BackboneSpec, weights_dir: Path | str | None,
                     tiny: dict | None = None) -> Dinov2Backbone:
    if weights_dir is None:
        raise FileNotFoundError(_missing_weights_message(name, spec, None, ""))
    folder = Path(weights_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(_missing_weights_message(name, spec, folder, "weights folder does not exist"))
    if not (folder / CONFIG_FILE).is_file() or not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise FileNotFoundError(_missing_weights_message(name, spec, folder, "weights folder is incomplete"))
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type == "depth_anything" and spec.hf_repo is not None:
        _check_config(name, spec, config.backbone_config, folder)
        return _load_depth_anything_backbone(folder, config.backbone_config, spec)
    if config.model_type != "dinov2":
        raise ValueError(f"{folder} holds a {config.model_type!r} model; backbone {name!r} needs a DINOv2 one")
    if spec.hf_repo is None:
        spec = _tiny_spec(spec, config, tiny, folder)
    _check_config(name, spec, config, folder)
    model, info = Dinov2Backbone.from_pretrained(
        folder,
        out_indices=list(spec.out_indices),
        apply_layernorm=spec.apply_layernorm,
        reshape_hidden_states=False,  # keep the CLS token (transformers models/dpt/convert_dinov2_depth_to_hf.py)
        local_files_only=True,
        output_loading_info=True,
    )
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{folder} lacks backbone weights {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return model


def build_backbone(
    name: str,
    *,
    weights_dir: Path | str | None = None,
    tiny: dict | None = None,
    seed: int = 0,
    decoder_type: str | None = None,
) -> FrozenBackbone:
    """A frozen backbone by table name, loaded from ``weights_dir``; "tiny" without one is random (seeded),
    with one it is the pretrained tiny ViT (``model/pretrain.py``), loaded as DINOv2 is.

    ``decoder_type`` (None: the row's) only changes the taps and LayerNorm of the "tiny" backbone
    (``resolve_spec``).
    """
    spec = resolve_spec(name, decoder_type)
    if spec.hf_repo is None:
        if weights_dir is not None:
            return FrozenBackbone(_load_pretrained(name, spec, weights_dir, tiny))
        return FrozenBackbone(_build_tiny(tiny, seed, spec))
    if tiny is not None:
        raise ValueError(f"the 'tiny' settings only apply to the 'tiny' backbone, not {name!r}")
    return FrozenBackbone(_load_pretrained(name, spec, weights_dir))
