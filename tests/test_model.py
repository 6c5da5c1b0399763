"""Model: frozen backbone, DINOv2 DPT decoder, heads (dinov2/hub/depthers.py, dinov2/hub/depth/decode_heads.py,
Depth Anything depth_anything/dpt.py, transformers Dinov2Backbone; docs/protocol.md "Model")."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Backbone,
    Dinov2Config,
)
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

from mdeaux.model.backbone import (
    FrozenBackbone,
    build_backbone,
    center_pad,
    pad_amounts,
)
from mdeaux.model.depth_aux import build_model
from mdeaux.model.dpt import DPTDecoder
from mdeaux.model.heads import ClassHead, DepthHead
from mdeaux.model.specs import BACKBONES, BackboneSpec

TINY = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "mlp_ratio": 2}
VITG_DECODER_PARAMS = 61_468_800  # DINOv2 ViT-g DPT head without conv_depth (embed 1536, post 192..1536, 256 ch)


def tiny_model(**extra):
    return build_model({"backbone": "tiny", "tiny": TINY, "decoder_channels": 16, **extra})


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- decoder


def expected_dpt_params(embed: int, post: list[int], ch: int) -> int:
    """Parameter count from the layer shapes of dinov2 DPTHead (readout project), without conv_depth."""
    conv = lambda cin, cout, k, bias: cin * cout * k * k + (cout if bias else 0)  # noqa: E731
    readout = 4 * (2 * embed * embed + embed)  # Linear(2C -> C) per level
    projects = sum(conv(embed, p, 1, True) for p in post)
    resize = conv(post[0], post[0], 4, True) + conv(post[1], post[1], 2, True) + conv(post[3], post[3], 3, True)
    convs = sum(conv(p, ch, 3, False) for p in post)
    rcu = 2 * conv(ch, ch, 3, False)
    fusion = 7 * rcu + 4 * conv(ch, ch, 1, True)  # block 0 has no res_conv_unit1
    project = conv(ch, ch, 3, True)
    return readout + projects + resize + convs + fusion + project


def test_vitg_decoder_parameter_count():
    with torch.device("meta"):
        decoder = DPTDecoder(1536, (192, 384, 768, 1536), channels=256, readout_type="project")
    assert decoder.post_process_channels == [192, 384, 768, 1536]
    assert n_params(decoder) == VITG_DECODER_PARAMS
    assert expected_dpt_params(1536, [192, 384, 768, 1536], 256) == VITG_DECODER_PARAMS
    with torch.device("meta"):
        default = DPTDecoder(1536)  # post_process_channels default embed // 2**(3-i)
    assert n_params(default) == VITG_DECODER_PARAMS


def test_decoder_structure_follows_dinov2():
    decoder = DPTDecoder(64, channels=16)
    assert decoder.fusion_blocks[0].res_conv_unit1 is None
    assert all(c.conv.bias is None for c in decoder.convs)
    for block in decoder.fusion_blocks:
        units = [u for u in (block.res_conv_unit1, block.res_conv_unit2) if u is not None]
        assert all(m.conv.bias is None and m.act_first for u in units for m in (u.conv1, u.conv2))
        assert block.project.conv.bias is not None and block.project.activate is None
    assert decoder.project.conv.bias is not None and decoder.project.activate is not None
    keys = set(decoder.state_dict())
    assert "reassemble_blocks.readout_projects.0.0.weight" in keys
    assert "fusion_blocks.1.res_conv_unit1.conv1.conv.weight" in keys
    assert not any(k.startswith("fusion_blocks.0.res_conv_unit1") for k in keys)


def test_conv_module_init_is_kaiming_fan_out():
    """mmcv ConvModule.init_weights: kaiming_init(mode="fan_out", nonlinearity="relu", distribution="normal").
    A 16 -> 64 conv tells fan_out (64 x 9: std 0.059) from fan_in (16 x 9: std 0.118), and its largest
    weight tells a normal draw (about 4 std over 9,216 weights) from a uniform one (at most sqrt(3) std)."""
    torch.manual_seed(0)
    decoder = DPTDecoder(64, (16, 32, 64, 128), channels=64)
    w = decoder.convs[0].conv.weight
    assert tuple(w.shape) == (64, 16, 3, 3)
    std = math.sqrt(2 / (64 * 9))
    assert w.std().item() == pytest.approx(std, rel=0.03)
    assert w.abs().max().item() > 3 * std
    assert torch.all(decoder.project.conv.bias == 0)
    linear = decoder.reassemble_blocks.readout_projects[0][0]  # PyTorch default init
    assert linear.weight.abs().max().item() <= 1 / math.sqrt(128)


def test_readouts_combine_each_token_with_the_cls_token_as_dinov2_does():
    """dinov2 ReassembleBlocks: "project" feeds GELU(Linear([token, cls])) to the level's projection,
    "add" token + cls, "ignore" the token alone. Each is checked against the "ignore" decoder (same
    weights) fed with the tokens combined here by hand."""
    torch.manual_seed(0)
    feats = [(torch.randn(2, 32, 4, 6), torch.randn(2, 32)) for _ in range(4)]
    ignore = DPTDecoder(32, channels=8, readout_type="ignore").eval()
    add = DPTDecoder(32, channels=8, readout_type="add").eval()
    add.load_state_dict(ignore.state_dict())
    project = DPTDecoder(32, channels=8, readout_type="project").eval()
    project.load_state_dict(ignore.state_dict(), strict=False)
    with torch.no_grad():
        by_hand = [(x + cls[:, :, None, None], cls) for x, cls in feats]
        torch.testing.assert_close(add(feats), ignore(by_hand), rtol=0, atol=0)
        by_hand = []
        for i, (x, cls) in enumerate(feats):
            linear = project.reassemble_blocks.readout_projects[i][0]
            tokens = torch.cat((x, cls[:, :, None, None].expand_as(x)), 1).permute(0, 2, 3, 1)  # (B, h, w, 2C)
            by_hand.append((F.gelu(tokens @ linear.weight.T + linear.bias).permute(0, 3, 1, 2), cls))
        torch.testing.assert_close(project(feats), ignore(by_hand), rtol=1e-5, atol=1e-6)
        other_cls = [(x, torch.randn_like(cls)) for x, cls in feats]
        assert torch.equal(ignore(feats), ignore(other_cls)) and not torch.allclose(project(feats), project(other_cls))


def dinov2_dpt_depth(w: dict, inputs, min_depth: float) -> torch.Tensor:
    """DINOv2's DPTHead.forward, then depth_pred with classify=False and scale_up=False, written out with
    torch.nn.functional from dinov2/eval/depth/models/decode_heads/dpt_head.py and decode_head.py (mmcv
    ConvModule: bias "auto" = no norm; PreActResidualConvUnit order ("act", "conv", "norm"), bias=False),
    on the tensors of ``w``, a state dict of our DPTDecoder ("d.") and DepthHead ("h.")."""
    def conv(x, key, **kw):
        return F.conv2d(x, w[f"{key}.weight"], w.get(f"{key}.bias"), **kw)

    def rcu(x, key):  # PreActResidualConvUnit: conv2(relu(conv1(relu(x)))) + x
        return conv(F.relu(conv(F.relu(x), f"{key}.conv1.conv", padding=1)), f"{key}.conv2.conv", padding=1) + x

    def fusion(i, x, skip=None):  # FeatureFusionBlock
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + rcu(skip, f"d.fusion_blocks.{i}.res_conv_unit1")
        x = F.interpolate(rcu(x, f"d.fusion_blocks.{i}.res_conv_unit2"), scale_factor=2, mode="bilinear", align_corners=True)
        return conv(x, f"d.fusion_blocks.{i}.project.conv")

    levels = []
    for i, (x, cls) in enumerate(inputs):  # ReassembleBlocks, readout "project", then DPTHead.convs
        tokens = x.flatten(2).permute(0, 2, 1)
        tokens = F.gelu(F.linear(torch.cat((tokens, cls[:, None].expand_as(tokens)), -1),
                                 w[f"d.reassemble_blocks.readout_projects.{i}.0.weight"],
                                 w[f"d.reassemble_blocks.readout_projects.{i}.0.bias"]))
        x = conv(tokens.permute(0, 2, 1).reshape(x.shape), f"d.reassemble_blocks.projects.{i}.conv")
        resize = f"d.reassemble_blocks.resize_layers.{i}"
        if i < 2:  # ConvTranspose2d, kernel = stride = 4, 2
            x = F.conv_transpose2d(x, w[f"{resize}.weight"], w[f"{resize}.bias"], stride=4 // 2**i)
        elif i == 3:  # Conv2d 3x3, stride 2, padding 1
            x = conv(x, resize, stride=2, padding=1)
        levels.append(conv(x, f"d.convs.{i}.conv", padding=1))
    out = fusion(0, levels[-1])
    for i in range(1, 4):
        out = fusion(i, out, levels[-(i + 1)])
    out = F.relu(conv(out, "d.project.conv", padding=1))  # DPTHead.project: ConvModule with ReLU
    # HeadDepth: Conv3x3(C -> C/2), x2 bilinear (align_corners=True), Conv3x3(-> 32), ReLU, Conv1x1(-> 1)
    out = F.interpolate(conv(out, "h.head.0", padding=1), scale_factor=2, mode="bilinear", align_corners=True)
    out = conv(F.relu(conv(out, "h.head.2", padding=1)), "h.head.4")
    return F.relu(out) + min_depth  # depth_pred: relu(conv_depth(feat)) + min_depth


@pytest.mark.parametrize("grid", [(4, 6), (5, 7)])
def test_decoder_and_depth_head_compute_dinov2s_dpt_head(grid):
    """The whole DPT decoder and depth head against DINOv2's formula written out (dinov2_dpt_depth above),
    with random biases, on an even and an odd patch grid (the skip resize of FeatureFusionBlock)."""
    torch.manual_seed(0)
    decoder, head = DPTDecoder(48, channels=16).eval(), DepthHead(16, min_depth=0.05).eval()
    with torch.no_grad():  # the init's weights; biases random (init leaves ConvModule biases at 0)
        for p in [*decoder.parameters(), *head.parameters()]:
            if p.ndim == 1:
                p.normal_(0.0, 0.1)
        head.head[4].bias.fill_(0.1)  # keeps the final ReLU alive on part of the map
    feats = [(torch.randn(2, 48, *grid), torch.randn(2, 48)) for _ in range(4)]
    weights = {f"d.{k}": v for k, v in decoder.state_dict().items()} | {f"h.{k}": v for k, v in head.state_dict().items()}
    with torch.no_grad():
        ours, theirs = head(decoder(feats)), dinov2_dpt_depth(weights, feats, 0.05)
    assert ours.shape == theirs.shape == (2, 1, 16 * math.ceil(grid[0] / 2) * 2, 16 * math.ceil(grid[1] / 2) * 2)
    assert (ours > 0.05).float().mean() > 0.2  # the ReLU is alive on a good share of pixels
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_decoder_shapes_and_readouts():
    feats = [(torch.randn(2, 32, 4, 6), torch.randn(2, 32)) for _ in range(4)]
    for readout in ("project", "ignore", "add"):
        out = DPTDecoder(32, channels=8, readout_type=readout)(feats)
        assert out.shape == (2, 8, 32, 48)  # 8h x 8w for an even grid
    assert not hasattr(DPTDecoder(32, readout_type="ignore").reassemble_blocks, "readout_projects")
    with pytest.raises(ValueError, match="readout_type"):
        DPTDecoder(32, readout_type="bogus")
    with pytest.raises(ValueError, match="4"):
        DPTDecoder(32, channels=8)(feats[:3])


# ---------------------------------------------------------------- heads


def test_depth_head_and_class_head():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 6, 8)
    depth = DepthHead(16, min_depth=0.25)(x)
    assert depth.shape == (2, 1, 12, 16)
    assert depth.min().item() >= 0.25
    assert ClassHead(16, 7)(x).shape == (2, 7, 6, 8)


def test_depth_output_is_16x_patch_grid():
    model = tiny_model()
    x = torch.randn(1, 3, 56, 84)  # grid 4 x 6
    depth = model.depth(x)
    assert depth.shape == (1, 1, 64, 96)
    assert depth.min().item() >= 0.001


# ---------------------------------------------------------------- backbone


def test_center_padding_nyu_crop():
    assert pad_amounts(416, 14) == (2, 2) and pad_amounts(544, 14) == (1, 1)
    assert pad_amounts(417, 14) == (1, 2)  # left/top = pad // 2
    padded = center_pad(torch.ones(1, 1, 417, 543), 14)  # pads 3 and 3: 1 before, 2 after
    assert padded.shape == (1, 1, 420, 546)
    column, row = padded[0, 0, :, 5].tolist(), padded[0, 0, 5, :].tolist()
    assert column[:2] == [0.0, 1.0] and column[-3:] == [1.0, 0.0, 0.0]
    assert row[:2] == [0.0, 1.0] and row[-3:] == [1.0, 0.0, 0.0]

    model = tiny_model(aux_heads={"ade20k": 5})
    x = torch.randn(1, 3, 416, 544)
    feats = model.backbone(x)
    assert len(feats) == 4
    for patches, cls in feats:
        assert patches.shape == (1, 32, 30, 39) and cls.shape == (1, 32)
    manual = model.backbone.model(pixel_values=F.pad(x, (1, 1, 2, 2))).feature_maps[0]
    torch.testing.assert_close(feats[0][1], manual[:, 0])
    torch.testing.assert_close(feats[0][0][0, :, 0, 1], manual[0, 2])
    assert model.decoder(feats).shape == (1, 16, 240, 320)  # 16 * ceil(h / 2) for the odd grid
    assert model.aux(x, "ade20k").shape == (1, 5, 240, 320)


def test_tiny_backbone_is_frozen():
    model = tiny_model(aux_heads={"seg": 3})
    model.train()
    assert not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    assert model.decoder.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    x = torch.randn(2, 3, 28, 28)
    loss = model.depth(x).mean() + model.aux(x, "seg").square().mean()
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.decoder_parameters())
    assert {id(p) for p in model.decoder_parameters()} == {id(p) for p in model.decoder.parameters()}


def test_tiny_backbone_seeded_without_touching_global_rng():
    state = torch.get_rng_state()
    a = build_backbone("tiny", tiny=TINY, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_backbone("tiny", tiny=TINY, seed=3)
    c = build_backbone("tiny", tiny=TINY, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.out_indices == (1, 2, 3, 4) and a.embed_dim == 32 and a.patch_size == 14
    assert build_backbone("tiny", tiny={**TINY, "num_hidden_layers": 12}).out_indices == (3, 6, 9, 12)
    with pytest.raises(ValueError, match="allowed"):
        build_backbone("tiny", tiny={"hidden_sise": 32})


def plain_vit(backbone: FrozenBackbone, x: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    """The Hugging Face ViT's own forward on the padded image: its bicubic interpolation of the position
    table at every call, autocast's casts of the fp32 weights."""
    model = copy.deepcopy(backbone.model)
    model.embeddings.__dict__.pop("interpolate_pos_encoding")  # the class's method again
    model.float()  # a backbone whose matmul weights are stored in bf16: exact, and autocast rounds them back the same
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.inference_mode():
        return list(model(pixel_values=center_pad(x, 14)).feature_maps)


def same_output(out: list, sequences: list) -> bool:
    return all(torch.equal(cls, seq[:, 0]) and torch.equal(patches.flatten(2).transpose(1, 2), seq[:, 1:])
               for (patches, cls), seq in zip(out, sequences))


@pytest.mark.parametrize("bf16", [False, True])
def test_cached_position_embeddings_and_bf16_weights_give_the_plain_vits_numbers(bf16, monkeypatch):
    interpolations = []
    plain = Dinov2Embeddings.interpolate_pos_encoding
    monkeypatch.setattr(Dinov2Embeddings, "interpolate_pos_encoding",
                        lambda self, *a: interpolations.append(a[1:]) or plain(self, *a))
    backbone = build_backbone("tiny", tiny=TINY, seed=0)
    reference = copy.deepcopy(backbone)
    a, b = torch.randn(2, 3, 56, 84), torch.randn(1, 3, 70, 42)  # 4 x 6 and 5 x 3 patch grids (not 37 x 37)
    for x in (a, b, a, b):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = backbone(x)
        assert same_output(out, plain_vit(reference, x, bf16))
    ours = len(interpolations) - 4  # the plain forwards interpolate at every call
    assert ours == 2  # once per grid, then from the cache
    assert backbone.matmul_dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert backbone.model.embeddings.position_embeddings.dtype == torch.float32  # only matmul weights are stored in bf16
    # a copy with another position table interpolates its own table, not the original's cached one
    other = copy.deepcopy(backbone)
    with torch.no_grad():
        other.model.embeddings.position_embeddings.mul_(2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = other(a)
    assert same_output(out, plain_vit(other, a, bf16))
    with torch.no_grad():  # weights loaded in place into the same table (same storage)
        backbone.model.embeddings.position_embeddings.add_(0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = backbone(a)
    assert same_output(out, plain_vit(backbone, a, bf16))
    if bf16:
        with pytest.raises(RuntimeError, match="build another one"):
            backbone(a)  # fp32 after bf16: the weights are bf16 now


def test_backbone_table():
    assert BACKBONES["dinov2_vitg14"].out_indices == (10, 20, 30, 40)
    assert BACKBONES["dinov2_vitl14"].out_indices == (5, 12, 18, 24)
    assert BACKBONES["dinov2_vits14"].out_indices == BACKBONES["dinov2_vitb14"].out_indices == (3, 6, 9, 12)
    assert [BACKBONES[f"dinov2_vit{s}14"].embed_dim for s in "sblg"] == [384, 768, 1024, 1536]
    assert not any(BACKBONES[f"dinov2_vit{s}14"].apply_layernorm for s in "sblg")
    da = BACKBONES["depth_anything_vitl14"]
    assert da.out_indices == (21, 22, 23, 24) and da.apply_layernorm and da.readout_type == "ignore"


def _tiny_config(**kw) -> Dinov2Config:
    return Dinov2Config(**TINY, image_size=518, patch_size=14, **kw)


def test_load_local_dinov2_folder(tmp_path, monkeypatch):
    torch.manual_seed(0)
    saved = Dinov2Backbone(_tiny_config()).eval()
    saved.save_pretrained(tmp_path / "dinov2")
    spec = BackboneSpec(32, (1, 2, 3, 4), False, "project", None, "facebook/dinov2-small")
    monkeypatch.setitem(BACKBONES, "local_test", spec)
    loaded = build_backbone("local_test", weights_dir=tmp_path / "dinov2")
    assert isinstance(loaded, FrozenBackbone) and loaded.out_indices == (1, 2, 3, 4)
    assert not loaded.model.config.apply_layernorm and not loaded.model.config.reshape_hidden_states
    reference = FrozenBackbone(
        Dinov2Backbone.from_pretrained(
            tmp_path / "dinov2", out_indices=[1, 2, 3, 4], apply_layernorm=False, reshape_hidden_states=False,
            local_files_only=True,
        )
    )
    x = torch.randn(1, 3, 30, 44)
    for (p1, c1), (p2, c2) in zip(loaded(x), reference(x)):
        torch.testing.assert_close(p1, p2)
        torch.testing.assert_close(c1, c2)

    monkeypatch.setitem(BACKBONES, "wrong_width", BackboneSpec(48, (1, 2, 3, 4), False, "project", None, "x/y"))
    with pytest.raises(ValueError, match="hidden_size 48"):
        build_backbone("wrong_width", weights_dir=tmp_path / "dinov2")


def test_load_local_depth_anything_folder(tmp_path, monkeypatch):
    torch.manual_seed(0)
    config = DepthAnythingConfig(
        backbone_config=_tiny_config(out_indices=[1, 2, 3, 4], apply_layernorm=True, reshape_hidden_states=False),
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=8,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(tmp_path / "da")
    reference = DepthAnythingForDepthEstimation.from_pretrained(tmp_path / "da", local_files_only=True).backbone
    spec = BackboneSpec(32, (1, 2, 3, 4), True, "ignore", (8, 16, 32, 32), "LiheYoung/depth-anything-large-hf")
    monkeypatch.setitem(BACKBONES, "da_test", spec)
    loaded = build_backbone("da_test", weights_dir=tmp_path / "da")
    assert loaded.model.config.apply_layernorm and loaded.out_indices == (1, 2, 3, 4)
    x = torch.randn(1, 3, 28, 42)
    ref = reference.eval()(pixel_values=x).feature_maps
    for (patches, cls), seq in zip(loaded(x), ref):
        torch.testing.assert_close(cls, seq[:, 0])
        torch.testing.assert_close(patches.flatten(2).transpose(1, 2), seq[:, 1:])


def test_missing_weights_dir_message(tmp_path):
    folder = tmp_path / "no_such_weights"
    with pytest.raises(FileNotFoundError) as err:
        build_backbone("dinov2_vitg14", weights_dir=folder)
    message = str(err.value)
    for part in (str(folder), "config.json", "model.safetensors", "facebook/dinov2-giant"):
        assert part in message
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        build_backbone("depth_anything_vitl14", weights_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="LiheYoung/depth-anything-large-hf"):
        build_backbone("depth_anything_vitl14")


def test_bad_names_and_settings():
    with pytest.raises(ValueError, match="dinov2_vitg14") as err:
        build_backbone("dinov3_vitg14")
    assert "tiny" in str(err.value) and "depth_anything_vitl14" in str(err.value)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model({"backbone": "vit_huge"})
    with pytest.raises(ValueError, match="decoder_chanels"):
        build_model({"backbone": "tiny", "decoder_chanels": 8})
    with pytest.raises(FileNotFoundError, match="incomplete: /tmp.*`dvc repro pretrain`.*weights_dir to null"):
        build_backbone("tiny", weights_dir="/tmp")  # the pretrained tiny ViT (model/pretrain.py) is not there
    model = tiny_model(aux_heads={"ade20k": 4})
    with pytest.raises(KeyError, match="ade20k"):
        model.aux(torch.randn(1, 3, 14, 14), "nyu_seg")
    with pytest.raises(ValueError, match="aux_heads"):
        tiny_model(aux_heads={"ade20k": "150"})


def test_build_model_uses_backbone_defaults(monkeypatch):
    monkeypatch.setitem(BACKBONES, "tiny", BackboneSpec(None, None, True, "ignore", (8, 16, 32, 32), None))
    model = tiny_model(aux_heads={"ade20k": 150, "recon": 3}, min_depth=0.5)
    assert model.decoder.post_process_channels == [8, 16, 32, 32]
    assert model.decoder.reassemble_blocks.readout_type == "ignore"
    assert model.backbone.model.config.apply_layernorm
    assert model.depth_head.min_depth == 0.5
    assert {k: h.num_classes for k, h in model.aux_heads.items()} == {"ade20k": 150, "recon": 3}
