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


# -- evaluation, best-during-training and data streams ---------------------------------------------
import numpy as np  # noqa: E402

from mdeaux.datasets.registry import NYUV2  # noqa: E402
from mdeaux.train import Best, Stream, evaluate  # noqa: E402


class StubData:
    """A prepared-dataset stand-in: 480x640 images with a constant ground-truth depth."""

    def __init__(self, gt_value: float, n: int = 2):
        self.gt_value, self.n = gt_value, n

    def ids(self):
        return [f"s{i}" for i in range(self.n)]

    def decode(self, sample_id):
        return {"image": np.zeros((480, 640, 3), np.uint8), "depth": np.full((480, 640), self.gt_value, np.float32), "label": None}


class LeftRight(torch.nn.Module):
    """Predicts `left` on the left half of the output and `right` on the right half."""

    def __init__(self, left, right):
        super().__init__()
        self.left, self.right = left, right

    def depth(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        out = torch.full((x.shape[0], 1, h, w), self.right)
        out[..., : w // 2] = self.left
        return out


def test_flip_tta_averages_the_flipped_prediction():
    data = StubData(2.0)
    model = LeftRight(1.0, 3.0)
    without = evaluate(model, data, data.ids(), NYUV2, flip=False)
    with_flip = evaluate(model, data, data.ids(), NYUV2, flip=True)
    assert without["abs_rel"] == pytest.approx(0.5, abs=0.02)  # |2-1|/2 and |2-3|/2 everywhere but the seam
    assert with_flip["abs_rel"] == pytest.approx(0.0, abs=1e-6)  # (1 + 3) / 2 = 2 everywhere
    assert with_flip["a1"] == pytest.approx(1.0)


def test_each_prediction_is_clamped_before_the_flip_average():
    # left 20 m is clamped to max_depth 10 first (DINOv2 encode_decode), so the average is (10 + 0.5) / 2
    data = StubData(5.25)
    metrics = evaluate(LeftRight(20.0, 0.5), data, data.ids(), NYUV2, flip=True)
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def test_best_keeps_the_best_value_of_each_metric_and_its_step():
    best = Best.empty()
    best.update({"abs_rel": 0.5, "a1": 0.6, "rmse": float("nan")}, 10)
    best.update({"abs_rel": 0.4, "a1": 0.5, "rmse": 2.0}, 20)
    best.update({"abs_rel": 0.45, "a1": 0.7, "rmse": 3.0}, 30)
    assert best.values == {"abs_rel": 0.4, "a1": 0.7, "rmse": 2.0}
    assert best.steps == {"abs_rel": 20, "a1": 30, "rmse": 20}


def test_streams_are_seeded_and_visit_every_sample_each_epoch():
    class Data:
        def decode(self, sample_id):
            v = float(sample_id)
            return {"image": np.full((2, 2, 3), v, np.uint8), "depth": np.full((2, 2), v, np.float32), "label": None}

    ids = [str(i) for i in range(6)]
    ident = lambda img, target, rng: (img, target)  # noqa: E731

    def draws(seed, name, n=3):
        s = Stream(Data(), ids, "depth", ident, 2, seed, name)
        return [tuple(int(v) for v in next(s)[1][:, 0, 0, 0]) for _ in range(n)]

    first = draws(0, "nyuv2")
    assert first == draws(0, "nyuv2")
    assert first != draws(1, "nyuv2") or first != draws(0, "other")
    assert sorted(v for batch in first for v in batch) == list(range(6))  # one epoch = every sample once
    with pytest.raises(ValueError, match="no training samples"):
        Stream(Data(), [], "depth", ident, 2, 0, "nyuv2")


@pytest.mark.parametrize("task", ["mldc", "segmentation", "reconstruction"])
def test_each_auxiliary_task_trains_the_shared_decoder(task):
    from mdeaux.datasets.registry import ADE20K
    from mdeaux.train import aux_loss, aux_outputs

    cfg, _, _, _ = setup(alpha=0.5, task=task, warmup_iters=0)
    torch.manual_seed(0)
    model = build_model(dict(cfg["model"], aux_heads={"ade20k": aux_outputs(task, ADE20K)}))
    _, opt_aux = build_optimizers(model, cfg)
    schedule(opt_aux, 0, cfg["train"])
    x = torch.randn(2, 3, 56, 56)
    label = torch.randint(0, 150, (2, 56, 56))
    label[:, :4] = 255
    out = model.aux(x, "ade20k")
    assert out.shape[1] == (3 if task == "reconstruction" else 150)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    loss = step(opt_aux, aux_loss(task, out, x, label, ADE20K, cfg["train"]), 35.0, task, 0)
    assert loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.decoder.parameters(), strict=True))


def test_task_only_settings_do_not_reach_other_tasks():
    seg, _, _, _ = setup(task="segmentation")
    mldc, _, _, _ = setup(task="mldc")
    assert "mldc_average" not in seg["train"] and "mldc_average" in mldc["train"]
