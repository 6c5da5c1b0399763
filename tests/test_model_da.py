"""Depth Anything decoder and head (paper Table 4; depth_anything/dpt.py), decoder_type wiring, frozen backbone
under torch.inference_mode."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import (
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
)

from mdeaux.model.depth_aux import build_model
from mdeaux.model.dpt import DepthAnythingDecoder, DPTDecoder
from mdeaux.model.heads import ClassHead, DepthAnythingDepthHead, DepthHead
from mdeaux.model.specs import BACKBONES, resolve_spec

TINY = {"hidden_size": 32, "num_hidden_layers": 6, "num_attention_heads": 2, "mlp_ratio": 2}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def da_model(**extra) -> nn.Module:
    cfg = {"backbone": "tiny", "tiny": TINY, "decoder_channels": 16, "decoder_type": "depth_anything", **extra}
    return build_model(cfg)


# ---------------------------------------------------------------- parameter count (ViT-L, Table 4)


def expected_da_params(embed: int, out: list[int], f: int) -> tuple[int, int]:
    """(decoder, depth head) parameter counts from the layer shapes of depth_anything/dpt.py DPTHead
    (use_clstoken=False, use_bn=False), without refinenet4.resConfUnit1 (built there, never called)."""
    conv = lambda cin, cout, k, bias=True: cin * cout * k * k + (cout if bias else 0)  # noqa: E731
    projects = sum(conv(embed, o, 1) for o in out)
    resize = conv(out[0], out[0], 4) + conv(out[1], out[1], 2) + conv(out[3], out[3], 3)  # ConvT x4, x2; Conv s2
    layer_rn = sum(conv(o, f, 3, bias=False) for o in out)
    rcu = 2 * conv(f, f, 3)  # ResidualConvUnit: two biased 3x3 convs
    refinenets = 7 * rcu + 4 * conv(f, f, 1)  # 4 x (resConfUnit2 + out_conv), 3 x resConfUnit1
    head = conv(f, f // 2, 3) + conv(f // 2, 32, 3) + conv(32, 1, 1)  # output_conv1, output_conv2
    return projects + resize + layer_rn + refinenets, head


def test_vitl_depth_anything_parameter_count():
    decoder_n, head_n = expected_da_params(1024, [256, 512, 1024, 1024], 256)
    # worked by hand: projects 2,886,400; resize 11,536,128; layer_rn 6,488,064; refinenets 8,524,288;
    # head 295,040 + 36,896 + 33
    assert decoder_n == 2_886_400 + 11_536_128 + 6_488_064 + 8_524_288 == 29_434_880
    assert head_n == 331_969
    with torch.device("meta"):
        decoder = DepthAnythingDecoder(1024)  # defaults: out_channels [256, 512, 1024, 1024], features 256
        head = DepthAnythingDepthHead(256)
    assert n_params(decoder) == decoder_n and n_params(head) == head_n
    # transformers' independent implementation builds the unused resConfUnit1 of refinenet4 too
    config = DepthAnythingConfig(
        backbone_config=Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                     out_indices=[21, 22, 23, 24], apply_layernorm=True, reshape_hidden_states=False),
        reassemble_hidden_size=1024,
        neck_hidden_sizes=[256, 512, 1024, 1024],
        fusion_hidden_size=256,
    )
    with torch.device("meta"):
        hf = DepthAnythingForDepthEstimation(config)
    unused_rcu = 2 * (256 * 256 * 9 + 256)
    assert n_params(hf.neck) + n_params(hf.head) == decoder_n + head_n + unused_rcu


def test_vitl_depth_anything_build_model_wiring(monkeypatch):
    spec = BACKBONES["depth_anything_vitl14"]
    assert spec.decoder == "depth_anything"
    assert BACKBONES["dinov2_vitg14"].decoder == "dinov2" and BACKBONES["tiny"].decoder == "dinov2"
    # a pretrained row keeps its reading when the decoder type is overridden
    assert resolve_spec("depth_anything_vitl14", "dinov2").out_indices == (21, 22, 23, 24)
    assert resolve_spec("dinov2_vitg14", "depth_anything").readout_type == "project"
    with pytest.raises(ValueError, match="decoder_type"):
        resolve_spec("tiny", "midas")


# ---------------------------------------------------------------- structure and names


def expected_da_keys(with_head: bool = True) -> set[str]:
    """Depth Anything's depth_head.* state-dict keys (depth_anything/dpt.py, blocks.py), minus the never
    called refinenet4.resConfUnit1."""
    keys = set()
    for i in range(4):
        keys |= {f"projects.{i}.weight", f"projects.{i}.bias", f"scratch.layer{i + 1}_rn.weight"}
    for i in (0, 1, 3):
        keys |= {f"resize_layers.{i}.weight", f"resize_layers.{i}.bias"}
    for r in range(1, 5):
        keys |= {f"scratch.refinenet{r}.out_conv.weight", f"scratch.refinenet{r}.out_conv.bias"}
        for unit in ("resConfUnit1", "resConfUnit2") if r < 4 else ("resConfUnit2",):
            for conv in ("conv1", "conv2"):
                keys |= {f"scratch.refinenet{r}.{unit}.{conv}.{t}" for t in ("weight", "bias")}
    if with_head:
        keys |= {"scratch.output_conv1.weight", "scratch.output_conv1.bias"}
        keys |= {f"scratch.output_conv2.{i}.{t}" for i in (0, 2) for t in ("weight", "bias")}
    return keys


def test_state_dict_keys_mirror_depth_anything():
    model = da_model(aux_heads={"ade20k": 5})
    decoder_keys, head_keys = set(model.decoder.state_dict()), set(model.depth_head.state_dict())
    assert decoder_keys == expected_da_keys(with_head=False)
    assert decoder_keys | head_keys == expected_da_keys()
    assert set(model.aux_heads["ade20k"].state_dict()) == {f"head.{i}.{t}" for i in (0, 2) for t in ("weight", "bias")}
    assert isinstance(model.decoder, DepthAnythingDecoder) and isinstance(model.depth_head, DepthAnythingDepthHead)
    assert isinstance(model.aux_heads["ade20k"], ClassHead)
    assert model.decoder.scratch.refinenet4.resConfUnit1 is None
    assert model.decoder.scratch.refinenet1.align_corners


def test_tiny_depth_anything_reads_last_four_layers_with_layernorm():
    model = da_model()
    assert model.backbone.out_indices == (3, 4, 5, 6)  # last four of 6 blocks
    assert model.backbone.model.config.apply_layernorm
    assert model.decoder.readout_type == "ignore" and not hasattr(model.decoder, "readout_projects")
    assert model.decoder.post_process_channels == [8, 16, 32, 32]  # ViT-L ratio [C/4, C/2, C, C]
    assert model.depth_head.min_depth == 0.001
    # the default (DINOv2) decoder on the same tiny backbone keeps DINOv2's reading
    dino = build_model({"backbone": "tiny", "tiny": TINY, "decoder_channels": 16})
    assert isinstance(dino.decoder, DPTDecoder) and isinstance(dino.depth_head, DepthHead)
    assert dino.backbone.out_indices == (2, 3, 5, 6)  # spread: ceil(6 * k / 4)
    assert not dino.backbone.model.config.apply_layernorm
    assert dino.decoder.post_process_channels == [4, 8, 16, 32]
    explicit = build_model({"backbone": "tiny", "tiny": TINY, "decoder_channels": 16, "decoder_type": "dinov2"})
    assert set(explicit.state_dict()) == set(dino.state_dict())
    # taps given explicitly win
    custom = da_model(tiny={**TINY, "out_indices": [1, 2, 3, 5]})
    assert custom.backbone.out_indices == (1, 2, 3, 5)


def test_decoder_type_errors_and_readouts():
    with pytest.raises(ValueError, match="decoder_type"):
        da_model(decoder_type="dpt_hybrid")
    with pytest.raises(ValueError, match="readout_type 'add'"):
        da_model(readout_type="add")
    model = da_model(readout_type="project")  # use_clstoken=True
    assert len(model.decoder.readout_projects) == 4
    assert model.depth(torch.randn(1, 3, 28, 42)).shape == (1, 1, 28, 42)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "size, grid",
    [((28, 42), (2, 3)), ((42, 70), (3, 5)), ((14, 14), (1, 1)), ((30, 44), (3, 4)), ((56, 98), (4, 7))],
)
def test_output_shapes_for_odd_and_even_grids(size, grid):
    torch.manual_seed(0)
    model = da_model(aux_heads={"seg": 4})
    x = torch.randn(2, 3, *size)
    h, w = grid
    assert model.features(x).shape == (2, 16, 8 * h, 8 * w)  # path_1
    depth = model.depth(x)
    assert depth.shape == (2, 1, 14 * h, 14 * w)  # the padded input size (depth_anything/dpt.py)
    assert depth.min().item() >= 0.001
    assert model(x, "seg").shape == model.aux(x, "seg").shape == (2, 4, 8 * h, 8 * w)
    assert torch.equal(model(x), depth)


def test_depth_head_rejects_a_non_multiple_of_8():
    with pytest.raises(ValueError, match="8x the patch grid"):
        DepthAnythingDepthHead(16)(torch.randn(1, 16, 12, 16))


# ---------------------------------------------------------------- same numbers as transformers' Depth Anything


def _copy_into_hf(decoder: DepthAnythingDecoder, head: DepthAnythingDepthHead, hf) -> None:
    """Load our weights into transformers' DepthAnything neck/head (its own module names)."""
    sd = {}
    for name, t in decoder.state_dict().items():
        parts = name.split(".")
        if parts[0] == "projects":
            sd[f"neck.reassemble_stage.layers.{parts[1]}.projection.{parts[2]}"] = t
        elif parts[0] == "resize_layers":
            sd[f"neck.reassemble_stage.layers.{parts[1]}.resize.{parts[2]}"] = t
        elif parts[1].endswith("_rn"):
            sd[f"neck.convs.{int(parts[1][5]) - 1}.{parts[2]}"] = t
        else:  # scratch.refinenet{r}.<unit>...: transformers runs them deepest first (refinenet4 = layer 0)
            layer = 4 - int(parts[1][-1])
            unit = {"out_conv": "projection", "resConfUnit1": "residual_layer1", "resConfUnit2": "residual_layer2"}
            rest = [unit[parts[2]]] + [{"conv1": "convolution1", "conv2": "convolution2"}.get(p, p) for p in parts[3:]]
            sd[f"neck.fusion_stage.layers.{layer}.{'.'.join(rest)}"] = t
    head_map = {"scratch.output_conv1": "head.conv1", "scratch.output_conv2.0": "head.conv2",
                "scratch.output_conv2.2": "head.conv3"}
    for name, t in head.state_dict().items():
        module, kind = name.rsplit(".", 1)
        sd[f"{head_map[module]}.{kind}"] = t
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected
    assert all(k.startswith("backbone.") or "layers.0.residual_layer1" in k for k in missing), missing


@pytest.mark.parametrize("grid", [(2, 3), (3, 5)])
def test_matches_transformers_depth_anything(grid):
    torch.manual_seed(0)
    embed, out, f = 24, [6, 12, 24, 24], 16
    config = DepthAnythingConfig(
        backbone_config=Dinov2Config(hidden_size=embed, num_hidden_layers=4, num_attention_heads=2,
                                     out_indices=[1, 2, 3, 4], apply_layernorm=True, reshape_hidden_states=False),
        reassemble_hidden_size=embed,
        neck_hidden_sizes=out,
        fusion_hidden_size=f,
        head_hidden_size=32,
    )
    hf = DepthAnythingForDepthEstimation(config).eval()
    decoder, head = DepthAnythingDecoder(embed, out, channels=f), DepthAnythingDepthHead(f, min_depth=0.0)
    with torch.no_grad():  # lift the last bias so the final ReLU keeps most pixels (random init gives all 0)
        head.scratch.output_conv2[2].bias.fill_(1.0)
    _copy_into_hf(decoder, head, hf)
    h, w = grid
    sequences = [torch.randn(2, 1 + h * w, embed) for _ in range(4)]
    inputs = [(s[:, 1:].reshape(2, h, w, embed).permute(0, 3, 1, 2), s[:, 0]) for s in sequences]
    with torch.no_grad():
        fused = hf.neck(sequences, h, w)
        path_1 = decoder(inputs)
        torch.testing.assert_close(path_1, fused[-1])
        expected = hf.head(fused, h, w)  # (B, 14h, 14w), ReLU, max_depth 1 for "relative"
        assert expected.shape == (2, 14 * h, 14 * w) and (expected > 0).float().mean() > 0.5
        torch.testing.assert_close(head(path_1)[:, 0], expected)
        shifted = DepthAnythingDepthHead(f, min_depth=0.25)
        shifted.load_state_dict(head.state_dict())
        torch.testing.assert_close(shifted(path_1)[:, 0], expected + 0.25)  # relu(.) + min_depth


# ---------------------------------------------------------------- training


def test_gradient_reaches_decoder_and_heads():
    torch.manual_seed(0)
    model = da_model(aux_heads={"seg": 3, "recon": 3})
    model.train()
    x = torch.randn(2, 3, 42, 56)
    loss = model.depth(x).log().mean() + model.aux(x, "seg").square().mean()
    loss.backward()
    for part in (model.decoder, model.depth_head, model.aux_heads["seg"]):
        for name, p in part.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.aux_heads["recon"].parameters())
    assert all(p.grad is None for p in model.backbone.parameters())


@pytest.mark.parametrize("decoder_type", ["dinov2", "depth_anything"])
def test_backbone_runs_in_inference_mode_and_decoder_trains(decoder_type):
    torch.manual_seed(0)
    model = build_model({"backbone": "tiny", "tiny": TINY, "decoder_channels": 8, "decoder_type": decoder_type,
                         "aux_heads": {"seg": 3}})
    seen = []
    model.backbone.model.register_forward_hook(lambda *_: seen.append(torch.is_inference_mode_enabled()))
    model.train()
    assert not model.backbone.training and not any(m.training for m in model.backbone.modules())
    frozen = copy.deepcopy(model.backbone.state_dict())
    decoder_before = copy.deepcopy(model.decoder.state_dict())
    # one optimizer over the whole model, backbone included: it must get no gradient and stay unchanged
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(2, 3, 28, 28)
    target = torch.rand(2, 1, 28, 28) + 0.5
    losses = []
    for _ in range(5):
        pred = torch.nn.functional.interpolate(model.depth(x), size=(28, 28), mode="bilinear", align_corners=False)
        loss = (pred - target).abs().mean() + model.aux(x, "seg").square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert seen and all(seen)  # the ViT ran under torch.inference_mode
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in model.backbone.parameters())
    after = model.backbone.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    assert not all(torch.equal(decoder_before[k], v) for k, v in model.decoder.state_dict().items())
    assert not model.backbone.training
    feats = model.backbone(x)
    assert not any(t.is_inference() or t.requires_grad for level in feats for t in level)


def test_backbone_outputs_are_ordinary_tensors_for_a_1x1_grid():
    # a 1x1 grid makes the permuted patch map contiguous already: .contiguous() would hand back the
    # inference tensor, which autograd cannot save; the decoder must still train on it
    model = da_model()
    feats = model.backbone(torch.randn(1, 3, 14, 14))
    assert all(not p.is_inference() and not c.is_inference() for p, c in feats)
    loss = model.depth_head(model.decoder(feats)).mean()
    loss.backward()
    assert model.decoder.projects[0].weight.grad is not None


@pytest.mark.parametrize("head_cls, last", [
    (DepthAnythingDepthHead, lambda h: h.scratch.output_conv2[2]),
    (DepthHead, lambda h: h.head[4]),
])
def test_positive_output_init_keeps_the_final_relu_alive(head_cls, last):
    """Features that vary little (a random decoder on a frozen backbone) give a default-initialised head
    one sign everywhere: for some seeds all zeros (no gradient ever); ``positive`` never does."""
    feats = 1.0 + 0.01 * torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    dead = 0
    for seed in range(8):
        torch.manual_seed(seed)
        default = head_cls(16, min_depth=0.001)
        torch.manual_seed(seed)
        positive = head_cls(16, min_depth=0.001, output_init="positive")
        out = positive(feats)
        assert (out > 0.001).all()
        out.log().mean().backward()
        assert last(positive).weight.grad.abs().sum() > 0
        dead += bool((default(feats) == 0.001).all())
    assert dead >= 2  # what the switch is for
    with pytest.raises(ValueError, match="output_init"):
        head_cls(16, output_init="zeros")
