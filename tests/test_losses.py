"""Tests for mdeaux.losses against hand-computed values."""

import math

import pytest
import torch

from mdeaux.losses import SigLoss, mldc_loss, multi_hot, seg_ce_loss

EPS = 1e-3


def _g(pred, gt):
    return [math.log(p + EPS) - math.log(t + EPS) for p, t in zip(pred, gt)]


def _full(g):
    n = len(g)
    mean = sum(g) / n
    var = sum((x - mean) ** 2 for x in g) / (n - 1)  # unbiased
    return math.sqrt(var + 0.15 * mean**2)


def _warm(g):
    return math.sqrt(0.15 * (sum(g) / len(g)) ** 2)


PRED = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
GT = torch.tensor([[[[1.5, 1.0], [2.0, 0.0]]]])  # last pixel invalid (gt = 0)
G = _g([1.0, 2.0, 3.0], [1.5, 1.0, 2.0])


# ---------------------------------------------------------------------------------------------- SigLoss
def test_sigloss_full_formula_2x2():
    loss = SigLoss(warm_up=False)
    assert loss(PRED, GT).item() == pytest.approx(_full(G), rel=1e-6)


def test_sigloss_warm_up_then_full_and_counter():
    loss = SigLoss()  # DINOv2 config: warm_up=True, warm_iter=100
    loss.train()
    for i in range(100):
        assert loss(PRED, GT).item() == pytest.approx(_warm(G), rel=1e-6), i
    assert int(loss.warm_up_counter) == 100
    assert loss(PRED, GT).item() == pytest.approx(_full(G), rel=1e-6)
    assert int(loss.warm_up_counter) == 100  # stops counting after warm-up


def test_sigloss_counter_saved_and_restored():
    loss = SigLoss()
    loss.train()
    for _ in range(100):
        loss(PRED, GT)
    state = loss.state_dict()
    assert "warm_up_counter" in state and int(state["warm_up_counter"]) == 100
    resumed = SigLoss()
    resumed.load_state_dict(state)
    resumed.train()
    assert resumed(PRED, GT).item() == pytest.approx(_full(G), rel=1e-6)
    fresh = SigLoss()
    fresh.train()
    assert fresh(PRED, GT).item() == pytest.approx(_warm(G), rel=1e-6)


def test_sigloss_eval_mode_does_not_advance_counter():
    loss = SigLoss().eval()
    loss(PRED, GT)
    assert int(loss.warm_up_counter) == 0


def test_sigloss_max_depth_masks_far_pixels():
    loss = SigLoss(warm_up=False, max_depth=1.75)  # keeps gt 1.5 and 1.0, drops gt 2.0 and 0
    g = _g([1.0, 2.0], [1.5, 1.0])
    assert loss(PRED, GT).item() == pytest.approx(_full(g), rel=1e-6)


def test_sigloss_pools_over_batch():
    pred = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 5.0]]]])
    gt = torch.tensor([[[[2.0, 2.0]]], [[[1.0, 0.0]]]])
    g = _g([1.0, 2.0, 3.0], [2.0, 2.0, 1.0])
    assert SigLoss(warm_up=False)(pred, gt).item() == pytest.approx(_full(g), rel=1e-6)


def test_sigloss_gradient_flows_and_weight():
    pred = PRED.clone().requires_grad_(True)
    out = SigLoss(warm_up=False, loss_weight=2.0)(pred, GT)
    assert out.item() == pytest.approx(2 * _full(G), rel=1e-6)
    out.backward()
    assert pred.grad[0, 0, 1, 1] == 0 and pred.grad.abs().sum() > 0  # invalid pixel gets no gradient


def test_sigloss_empty_and_bad_shapes():
    gt = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="valid depth pixel"):
        SigLoss()(PRED, gt)
    pred = PRED.clone().requires_grad_(True)
    out = SigLoss(on_empty="zero")(pred, gt)
    assert out.item() == 0.0
    out.backward()
    assert torch.all(pred.grad == 0)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        SigLoss()(PRED, GT[..., :1])


# ---------------------------------------------------------------------------------------------- multi-hot / MLDC
def test_multi_hot_excludes_ignore():
    label = torch.tensor([[[0, 2], [255, 2]], [[1, 1], [1, 255]]])
    out = multi_hot(label, 4)
    assert out.dtype == torch.float32
    assert out.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]]
    assert multi_hot(torch.full((1, 2, 2), 255), 3).tolist() == [[0, 0, 0]]


def test_multi_hot_out_of_range_value():
    with pytest.raises(ValueError, match="label value 7"):
        multi_hot(torch.tensor([[[0, 7]]]), 4)
    with pytest.raises(ValueError, match="label value -1"):
        multi_hot(torch.tensor([[[0, -1]]]), 4)


def _bce(p, t):
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


LOGITS = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]], [[0.5, 0.5], [0.5, 0.5]], [[-2.0, 0.0], [3.0, 3.0]]]])
LABEL = torch.tensor([[[0, 0], [2, 255]]])  # classes 0 and 2 present -> target [1, 0, 1]


def test_mldc_logits_mode():
    means = [0.5, 0.5, 1.0]  # spatial means of the three channels
    expected = sum(_bce(_sigmoid(m), t) for m, t in zip(means, [1, 0, 1])) / 3
    assert mldc_loss(LOGITS, LABEL).item() == pytest.approx(expected, rel=1e-6)


def test_mldc_probs_mode():
    pix = [[1.0, 0.5, -2.0], [2.0, 0.5, 0.0], [0.0, 0.5, 3.0], [-1.0, 0.5, 3.0]]
    probs = []
    for z in pix:
        e = [math.exp(v) for v in z]
        probs.append([v / sum(e) for v in e])
    y = [sum(p[c] for p in probs) / 4 for c in range(3)]
    expected = sum(_bce(yc, t) for yc, t in zip(y, [1, 0, 1])) / 3
    assert mldc_loss(LOGITS, LABEL, average="probs").item() == pytest.approx(expected, rel=1e-5)


def test_mldc_rejects_bad_mode():
    with pytest.raises(ValueError, match="average"):
        mldc_loss(LOGITS, LABEL, average="max")


# ---------------------------------------------------------------------------------------------- CE
def _ce(z, c):
    return math.log(sum(math.exp(v) for v in z)) - z[c]


def test_seg_ce_ignores_255_and_averages_like_mmseg():
    pix = [[1.0, 0.5, -2.0], [2.0, 0.5, 0.0], [0.0, 0.5, 3.0], [-1.0, 0.5, 3.0]]
    labels = [0, 0, 2, 255]
    terms = [_ce(z, c) for z, c in zip(pix, labels) if c != 255]
    # mmseg 0.27 default (avg_non_ignore=False): divide by all 4 pixels
    assert seg_ce_loss(LOGITS, LABEL).item() == pytest.approx(sum(terms) / 4, rel=1e-6)
    assert seg_ce_loss(LOGITS, LABEL, avg_non_ignore=True).item() == pytest.approx(sum(terms) / 3, rel=1e-6)
    # changing the logits of the ignored pixel changes nothing
    other = LOGITS.clone()
    other[0, :, 1, 1] = torch.tensor([9.0, -9.0, 4.5])
    assert seg_ce_loss(other, LABEL).item() == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_seg_ce_resizes_logits_to_label():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # 1x1 map -> bilinear to 3x3 stays constant
    label = torch.tensor([[[0, 1, 0], [0, 0, 0], [255, 255, 1]]])
    expected = (5 * _ce([2.0, 0.0], 0) + 2 * _ce([2.0, 0.0], 1)) / 9
    assert seg_ce_loss(logits, label).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="label value 5"):
        seg_ce_loss(logits, torch.tensor([[[5]]]))


def test_recon_loss_is_mse_against_the_input_after_resizing():
    from mdeaux.losses import recon_loss

    image = torch.zeros(1, 3, 4, 4)
    image[:, :, :, 2:] = 1.0
    pred = torch.zeros(1, 3, 4, 4)
    assert recon_loss(pred, image).item() == pytest.approx(0.5)  # half the pixels off by 1
    small = torch.full((1, 3, 2, 2), 0.5)  # constant: resizing keeps 0.5 everywhere
    assert recon_loss(small, image).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="must be \\(B, 3, h, w\\)"):
        recon_loss(torch.zeros(1, 4, 2, 2), image)
