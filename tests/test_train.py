"""The alternating scheme's optimizers (paper Eq. 4-5): decoder LR alpha*eta / (1-alpha)*eta."""

import copy
from pathlib import Path

import pytest
import torch
import yaml

from mdeaux.model import build_model
from mdeaux.params import parse
from mdeaux.runs import resolve_config
from mdeaux.schedule import lr_factor
from mdeaux.train import build_optimizers, lr_of, schedule, step

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def setup(alpha=0.9, task="mldc", **train):
    raw = copy.deepcopy(RAW)
    raw["alpha"] = alpha
    raw["train"].update(train)
    cfg = resolve_config(parse(raw), depth="nyuv2", task=task, aux=["ade20k"], seed=0)
    model_cfg = dict(cfg["model"], aux_heads={} if task == "baseline" else {"ade20k": 150})
    torch.manual_seed(0)
    model = build_model(model_cfg)
    return cfg, model, *build_optimizers(model, cfg)


def one_global_step(cfg, model, opt_depth, opt_aux, it=0):
    schedule(opt_depth, it, cfg["train"])
    schedule(opt_aux, it, cfg["train"])
    x = torch.randn(1, 3, 28, 28)
    step(opt_depth, model.depth(x).mean(), 35.0, "depth", it)
    step(opt_aux, model.aux(x, "ade20k").mean(), 35.0, "aux", it)


def test_decoder_lr_is_alpha_eta_and_one_minus_alpha_eta_without_warmup():
    cfg, model, opt_depth, opt_aux = setup(alpha=0.9, warmup_iters=0)
    one_global_step(cfg, model, opt_depth, opt_aux)
    eta = cfg["train"]["lr"] * lr_factor(0, cfg["train"]["iterations"], 0, min_lr_ratio=cfg["train"]["min_lr_ratio"])
    assert lr_of(opt_depth, "decoder") == pytest.approx(0.9 * eta, rel=1e-12)
    assert lr_of(opt_aux, "decoder") == pytest.approx(0.1 * eta, rel=1e-12)
    # heads keep their own eta_h in both optimizers (paper §3: eta_phi = eta_psi)
    eta_h = cfg["train"]["head_lr"] * lr_factor(0, cfg["train"]["iterations"], 0, min_lr_ratio=cfg["train"]["min_lr_ratio"])
    assert lr_of(opt_depth, "head") == pytest.approx(eta_h) and lr_of(opt_aux, "head") == pytest.approx(eta_h)


@pytest.mark.parametrize("it", [0, 5, 39, 40, 90, 119])
def test_ratio_holds_over_the_whole_duplicated_schedule(it):
    cfg, model, opt_depth, opt_aux = setup(alpha=0.9)
    schedule(opt_depth, it, cfg["train"])
    schedule(opt_aux, it, cfg["train"])
    t = cfg["train"]
    eta = t["lr"] * lr_factor(it, t["iterations"], t["warmup_iters"], t["warmup_ratio"], t["min_lr_ratio"])
    assert lr_of(opt_depth, "decoder") == pytest.approx(0.9 * eta, rel=1e-12)
    assert lr_of(opt_aux, "decoder") == pytest.approx(0.1 * eta, rel=1e-12)


def test_both_steps_update_the_shared_decoder_each_with_its_own_adam_state():
    cfg, model, opt_depth, opt_aux = setup(alpha=0.5, warmup_iters=0)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    one_global_step(cfg, model, opt_depth, opt_aux)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.decoder.parameters(), strict=True))
    shared = next(iter(model.decoder.parameters()))
    assert shared in opt_depth.state and shared in opt_aux.state
    assert opt_depth.state[shared]["exp_avg"] is not opt_aux.state[shared]["exp_avg"]
    # the frozen backbone is in neither optimizer and receives no gradient
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())


def test_baseline_has_no_auxiliary_optimizer_and_full_decoder_lr():
    cfg, model, opt_depth, opt_aux = setup(task="baseline", warmup_iters=0)
    assert opt_aux is None and cfg["alpha"] == 1.0
    schedule(opt_depth, 0, cfg["train"])
    assert lr_of(opt_depth, "decoder") == pytest.approx(cfg["train"]["lr"] * lr_factor(0, cfg["train"]["iterations"], 0, min_lr_ratio=1e-8))


def test_non_finite_loss_stops_before_updating():
    cfg, model, opt_depth, _ = setup(warmup_iters=0)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    with pytest.raises(RuntimeError, match="depth loss is nan at iteration 7"):
        step(opt_depth, torch.tensor(float("nan"), requires_grad=True), 35.0, "depth", 7)
    assert all(torch.equal(a, b) for a, b in zip(before, model.decoder.parameters(), strict=True))
