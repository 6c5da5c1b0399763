"""The pretrain stage: the mini profile's tiny ViT/14 pretrained by masked patch prediction, written as a
Hugging Face folder and loaded by the code path that loads DINOv2 (model/pretrain.py)."""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import torch
from conftest import smoke_params
from safetensors.torch import load_file

from mdeaux.model import pretrain as P
from mdeaux.model.backbone import build_backbone
from mdeaux.model.depth_aux import frozen_backbone
from mdeaux.model.specs import PATCH_SIZE
from mdeaux.model.weights import verify_folder
from mdeaux.params import load, parse
from mdeaux.paths import Paths
from mdeaux.runs.ids import weights_version

TINY = {"hidden_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "mlp_ratio": 4}


def cfg(**changes):
    base = dict(seed=0, iterations=80, warmup_iters=5, batch_size=8, lr=3e-3, weight_decay=0.05, mask_ratio=0.6,
                short_side=56, crop=42)
    return types.SimpleNamespace(**{**base, **changes})


def images(n=8, seed=0):
    """Images of one random colour each: a masked patch has its visible neighbours' colour, which a model that
    reads them can predict, and the colours' spread is what a model that cannot see them is left with."""
    rng = np.random.default_rng(seed)
    return [np.broadcast_to(rng.integers(0, 256, size=3), (56, 70, 3)).astype(np.uint8).copy() for _ in range(n)]


def hub_name(key: str) -> str:
    """A key of the in-memory Dinov2Backbone as save_pretrained writes it (transformers 5 renames the attention)."""
    for new, old in (("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                     ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense")):
        key = key.replace(new, old)
    return key


def test_the_stage_writes_a_folder_that_loads_as_dinov2_does(tiny_world):
    folder = Paths(tiny_world).pretrained
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "config.json", "losses.json", "model.safetensors"]
    assert verify_folder(folder) == []  # the manifest `mdeaux weights` writes and checks: sizes and sha256
    assert len(json.loads((folder / "losses.json").read_text())["loss"]) == 4  # pipeline/smoke.yaml pretrain.iterations
    saved = load_file(folder / "model.safetensors")
    backbone = build_backbone("tiny", weights_dir=folder, tiny=TINY)  # Dinov2Backbone.from_pretrained, as ViT-g/14
    loaded = {hub_name(k): v for k, v in backbone.model.state_dict().items()}
    assert set(saved) == set(loaded) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    random = {hub_name(k): v for k, v in build_backbone("tiny", tiny=TINY).model.state_dict().items()}
    assert not torch.equal(random["encoder.layer.0.attention.attention.query.weight"],
                           loaded["encoder.layer.0.attention.attention.query.weight"])  # the weights, not an init
    assert backbone.out_indices == (1, 2, 3, 4) and backbone.embed_dim == 48
    da = build_backbone("tiny", weights_dir=folder, tiny=TINY, decoder_type="depth_anything")
    assert da.out_indices == (1, 2, 3, 4) and da.model.config.apply_layernorm  # taps and norm follow the decoder
    # runs load it: the smoke world's params name it, relative to the project root, not the current folder
    settings = parse(smoke_params()).model.model_dump()
    assert settings["weights_dir"] == "models/tiny-pretrained"
    run_backbone = frozen_backbone(settings, root=tiny_world)
    assert all(torch.equal(a, b) for a, b in zip(run_backbone.state_dict().values(), backbone.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="weights folder does not exist"):
        frozen_backbone(settings, root=tiny_world / "data")


def test_settings_other_than_model_tiny_are_refused(tiny_world):
    with pytest.raises(ValueError, match=r"hidden_size 48 \(model.tiny: 64\).*`dvc repro pretrain`"):
        build_backbone("tiny", weights_dir=Paths(tiny_world).pretrained, tiny={**TINY, "hidden_size": 64})
    with pytest.raises(ValueError, match=r"num_hidden_layers 4 \(model.tiny: 6\)"):
        build_backbone("tiny", weights_dir=Paths(tiny_world).pretrained, tiny={**TINY, "num_hidden_layers": 6})


def test_run_ids_follow_the_weights(tiny_world, tmp_path):
    paths = Paths(tiny_world)
    version = weights_version(paths, "models/tiny-pretrained")
    manifest = json.loads((paths.pretrained / "MANIFEST.json").read_text())
    assert weights_version(paths, None) == {}
    copy = tmp_path / "copy"
    shutil.copytree(paths.pretrained, copy)
    assert weights_version(paths, str(copy)) == version  # the content counts, not the folder's name
    manifest["files"]["model.safetensors"]["sha256"] = "0" * 64
    (copy / "MANIFEST.json").write_text(json.dumps(manifest))
    assert weights_version(paths, str(copy)) != version
    (copy / "MANIFEST.json").unlink()  # a folder copied by hand: its files are read
    hashed = weights_version(paths, str(copy))
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert weights_version(paths, str(copy)) != hashed
    hashed = weights_version(paths, str(copy))
    (copy / "model-00002-of-00002.safetensors").write_bytes(b"a shard")  # every weight file counts
    assert weights_version(paths, str(copy)) != hashed
    (copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="holds no Hugging Face model"):
        weights_version(paths, str(copy))
    with pytest.raises(FileNotFoundError, match="models/nothing.*`dvc repro pretrain`"):
        weights_version(paths, "models/nothing")
    (copy / "MANIFEST.json").write_text("{}")
    with pytest.raises(ValueError, match="MANIFEST.json is damaged"):
        weights_version(paths, str(copy))


def test_patches_are_in_token_order():
    x = torch.arange(2 * 3 * 28 * 42, dtype=torch.float32).reshape(2, 3, 28, 42)
    p = P.patches(x)
    assert p.shape == (2, 6, 3 * PATCH_SIZE * PATCH_SIZE)
    for row in range(2):
        for col in range(3):  # token row * 3 + col covers pixels (14 row.., 14 col..), channels first
            block = x[:, :, 14 * row:14 * row + 14, 14 * col:14 * col + 14].reshape(2, -1)
            assert torch.equal(p[:, row * 3 + col], block)


def test_masks_hide_exactly_the_masked_patches():
    rng = np.random.default_rng(0)
    mask = P.random_mask(5, 16, 0.6, rng)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [10] * 5 and len({tuple(m.tolist()) for m in mask}) > 1
    assert P.random_mask(2, 16, 0.01, rng).sum(1).tolist() == [1, 1]
    torch.manual_seed(0)
    model = P.MaskedPatchModel(P.tiny_config(TINY)).eval()
    x = torch.randn(1, 3, 28, 28)
    mask = torch.tensor([[True, False, False, True]])
    changed = x.clone()
    changed[:, :, :14, :14] += 5.0  # only the first (masked) patch
    with torch.no_grad():
        a = model.vit(pixel_values=x, bool_masked_pos=mask).last_hidden_state
        b = model.vit(pixel_values=changed, bool_masked_pos=mask).last_hidden_state
        assert torch.equal(a, b)  # no token sees a masked patch: it has to be predicted from the others
        assert not torch.equal(a, model.vit(pixel_values=changed).last_hidden_state)
        # the loss is over the masked patches only
        target = P.patches(x)
        pred = model.head(a[:, 1:])
        assert model.loss(x, mask).item() == pytest.approx((pred - target)[mask].abs().mean().item(), rel=1e-6)


def test_pretraining_learns_and_is_seeded():
    imgs = images()
    model, losses = P.pretrain(imgs, TINY, cfg(), progress=False)
    # masked patches predicted from the visible ones: 1.11 -> 0.30 (a model blind to them stays near 1.1)
    assert len(losses) == 80 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    again, losses_again = P.pretrain(imgs, TINY, cfg(), progress=False)
    assert losses_again == losses
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    _, other = P.pretrain(imgs, TINY, cfg(seed=1, iterations=3), progress=False)
    assert other != losses[:3]
    assert P.lr_at(0, cfg()) == pytest.approx(3e-3 / 5) and P.lr_at(4, cfg()) == pytest.approx(3e-3)
    assert P.lr_at(5, cfg()) == pytest.approx(3e-3) and P.lr_at(80, cfg()) == pytest.approx(0.0, abs=1e-12)
    assert P.lr_at(42, cfg(warmup_iters=4)) == pytest.approx(1.5e-3)  # halfway through the cosine
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        P.pretrain(imgs, TINY, cfg(crop=40), progress=False)
    with pytest.raises(ValueError, match="at most pretrain.short_side"):
        P.pretrain(imgs, TINY, cfg(crop=70), progress=False)
    with pytest.raises(FloatingPointError, match="lower pretrain.lr"):
        P.pretrain(imgs, TINY, cfg(lr=1e30, iterations=4, warmup_iters=0), progress=False)


def test_training_images_are_the_training_split_resized(tiny_world):
    paths = Paths(tiny_world)
    params = load(tiny_world / "params.yaml")  # datasets: nyuv2, ade20k
    imgs = P.training_images(paths, params, 60, progress=False)
    assert len(imgs) == 6 + 6  # pipeline/smoke.yaml: 6 NYUv2 and 6 ADE20K training images, no test image
    assert all(min(img.shape[:2]) == 60 and img.dtype == np.uint8 and img.shape[2] == 3 for img in imgs)
    with pytest.raises(ValueError, match="no dataset of params `datasets` has an `augment` entry"):
        P.training_images(paths, params.model_copy(update={"augment": {}}), 60, progress=False)


def test_the_paper_profile_pretrains_nothing(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    params = parse(smoke_params({"profile": "paper"}))
    dest = P.write(Paths(tmp_path), params, progress=False)
    assert [p.name for p in dest.iterdir()] == ["README.md"] and "mdeaux weights" in (dest / "README.md").read_text()
