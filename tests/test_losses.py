"""Tests for mdeaux.training.losses against hand-computed values."""

import math

import pytest
import torch

from mdeaux.training.losses import (
    GradientLoss,
    SigLoss,
    dominant_class,
    mldc_loss,
    multi_hot,
    seg_ce_loss,
    slc_loss,
)

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


def test_sigloss_iteration_argument_decides_warm_up():
    loss = SigLoss(warm_iter=3)
    loss.train()
    assert loss(PRED, GT, it=2).item() == pytest.approx(_warm(G), rel=1e-6)
    assert loss(PRED, GT, it=3).item() == pytest.approx(_full(G), rel=1e-6)  # counter is still 0
    assert int(loss.warm_up_counter) == 0  # left unchanged when it is given
    assert loss(PRED, GT, it=0).item() == pytest.approx(_warm(G), rel=1e-6)
    # a resumed run: the counter was not saved (0), the iteration says warm-up is over
    assert SigLoss(warm_iter=3).train()(PRED, GT, it=50).item() == pytest.approx(_full(G), rel=1e-6)
    assert SigLoss(warm_up=False)(PRED, GT, it=0).item() == pytest.approx(_full(G), rel=1e-6)
    # without it the counter behaviour is unchanged
    assert loss(PRED, GT).item() == pytest.approx(_warm(G), rel=1e-6)
    assert int(loss.warm_up_counter) == 1
    with pytest.raises(ValueError, match="0-based iteration"):
        loss(PRED, GT, it=-1)


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


def test_mldc_sigmoid_mode_averages_per_pixel_sigmoids():
    pix = [[1.0, 0.5, -2.0], [2.0, 0.5, 0.0], [0.0, 0.5, 3.0], [-1.0, 0.5, 3.0]]  # LOGITS per pixel (K = 3)
    y = [sum(_sigmoid(p[c]) for p in pix) / 4 for c in range(3)]
    expected = sum(_bce(yc, t) for yc, t in zip(y, [1, 0, 1])) / 3
    assert mldc_loss(LOGITS, LABEL, average="sigmoid").item() == pytest.approx(expected, rel=1e-5)
    # two classes present over the whole map: sigmoid averages can reach both targets, softmax ones cannot
    both = torch.tensor([[[[20.0]], [[20.0]], [[-20.0]]]]).expand(1, 3, 2, 2)
    label = torch.tensor([[[0, 1], [0, 1]]])
    assert mldc_loss(both, label, average="sigmoid").item() < 1e-5
    assert mldc_loss(both, label, average="probs").item() > 0.2


@pytest.mark.parametrize("average", ["logits", "probs", "sigmoid"])
def test_mldc_a_map_of_ignored_pixels_is_skipped_or_all_absent(average):
    empty = torch.full((1, 2, 2), 255)
    logits = torch.cat([LOGITS, torch.randn(1, 3, 2, 2)])
    labels = torch.cat([LABEL, empty])
    alone = mldc_loss(LOGITS, LABEL, average=average)
    assert mldc_loss(logits, labels, average=average).item() == pytest.approx(alone.item(), rel=1e-6)  # skip
    absent = mldc_loss(logits[1:], empty, average=average, ignored_only="absent")
    both = mldc_loss(logits, labels, average=average, ignored_only="absent")
    assert both.item() == pytest.approx((alone.item() + absent.item()) / 2, rel=1e-5) and absent.item() > 0
    none = mldc_loss(logits[1:].requires_grad_(), empty, average=average)
    assert none.item() == 0 and none.requires_grad  # every image skipped: a zero that keeps the graph


def test_mldc_rejects_bad_mode():
    with pytest.raises(ValueError, match="average"):
        mldc_loss(LOGITS, LABEL, average="max")
    with pytest.raises(ValueError, match="ignored_only"):
        mldc_loss(LOGITS, LABEL, ignored_only="zero")


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
    from mdeaux.training.losses import recon_loss

    image = torch.zeros(1, 3, 4, 4)
    image[:, :, :, 2:] = 1.0
    pred = torch.zeros(1, 3, 4, 4)
    assert recon_loss(pred, image).item() == pytest.approx(0.5)  # half the pixels off by 1
    small = torch.full((1, 3, 2, 2), 0.5)  # constant: resizing keeps 0.5 everywhere
    assert recon_loss(small, image).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="must be \\(B, 3, h, w\\)"):
        recon_loss(torch.zeros(1, 4, 2, 2), image)


# ---------------------------------------------------------------------------------------------- GradientLoss
def _d(p, t):
    return math.log(p + EPS) - math.log(t + EPS)


def _ref_gradient_dinov2(pred, gt):
    """DINOv2's gradientloss on (B, 1, H, W) nested lists, written out: strides act on the batch axis (and on
    the one-element channel axis, which keeps channel 0), v = image b vs image b + 2 pixel by pixel, h (channel
    axis) is empty."""
    total = 0.0
    for s in (1, 2, 4, 6):
        imgs = list(range(0, len(pred), s))
        flat = lambda x, b: [v for row in x[b][0] for v in row]  # noqa: E731
        n = sum(1 for b in imgs for t in flat(gt, b) if t > 0)
        v = 0.0
        for j in range(len(imgs) - 2):
            b0, b2 = imgs[j], imgs[j + 2]
            for p0, t0, p2, t2 in zip(flat(pred, b0), flat(gt, b0), flat(pred, b2), flat(gt, b2)):
                if t0 > 0 and t2 > 0:
                    v += abs(_d(p0, t0) - _d(p2, t2))
        total += v / n if n else 0.0
    return total


def _ref_gradient_spatial(pred, gt):
    """The same formula on H and W of every image, N and sums pooled over the batch."""
    total = 0.0
    for s in (1, 2, 4, 6):
        n, acc = 0, 0.0
        for b in range(len(pred)):
            P = [row[::s] for row in pred[b][0][::s]]
            T = [row[::s] for row in gt[b][0][::s]]
            n += sum(1 for row in T for t in row if t > 0)
            for i in range(len(T)):
                for j in range(len(T[0])):
                    if T[i][j] <= 0:
                        continue
                    if i + 2 < len(T) and T[i + 2][j] > 0:
                        acc += abs(_d(P[i][j], T[i][j]) - _d(P[i + 2][j], T[i + 2][j]))
                    if j + 2 < len(T[0]) and T[i][j + 2] > 0:
                        acc += abs(_d(P[i][j], T[i][j]) - _d(P[i][j + 2], T[i][j + 2]))
        total += acc / n if n else 0.0
    return total


def _rand_depth(b, h, w, seed, holes=True):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(b, 1, h, w, generator=g) * 4 + 0.1
    gt = torch.rand(b, 1, h, w, generator=g) * 4 + 0.1
    if holes:
        gt[torch.rand(b, 1, h, w, generator=g) < 0.3] = 0.0
    return pred, gt


def test_gradient_loss_dinov2_batch3_by_hand():
    # images 0 and 2 differ by log-ratio differences; image 1 never enters (it has no partner at distance 2)
    pred = torch.tensor([[[[1.0, 2.0]]], [[[7.0, 7.0]]], [[[3.0, 1.0]]]])
    gt = torch.tensor([[[[2.0, 2.0]]], [[[1.0, 0.0]]], [[[1.0, 0.0]]]])  # image 2 pixel 1 invalid
    n = 4  # valid pixels over the whole batch at stride 1
    expected = abs(_d(1.0, 2.0) - _d(3.0, 1.0)) / n  # only pixel 0 has both ends valid
    # strides 2, 4, 6 keep images {0, 2}, {0}, {0}: no pair at distance 2, numerator 0
    out = GradientLoss(loss_weight=1.0)(pred, gt)
    assert out.item() == pytest.approx(expected, rel=1e-6)
    assert GradientLoss()(pred, gt).item() == pytest.approx(0.5 * expected, rel=1e-6)  # DINOv2 weight 0.5
    # changing image 1 (no partner) changes nothing
    other = pred.clone()
    other[1] = 0.5
    assert GradientLoss(loss_weight=1.0)(other, gt).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("batch", [3, 4, 5, 7, 13])
def test_gradient_loss_dinov2_matches_reference_loops(batch):
    pred, gt = _rand_depth(batch, 3, 4, seed=batch)
    expected = _ref_gradient_dinov2(pred.tolist(), gt.tolist())
    assert expected > 0
    assert GradientLoss(loss_weight=1.0)(pred, gt).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_loss_dinov2_batch5_uses_stride_2():
    pred, gt = _rand_depth(5, 2, 2, seed=0, holes=False)
    s1 = sum(abs(_d(pred[b, 0, i, j].item(), gt[b, 0, i, j].item()) - _d(pred[b + 2, 0, i, j].item(), gt[b + 2, 0, i, j].item()))
             for b in range(3) for i in range(2) for j in range(2)) / 20
    s2 = sum(abs(_d(pred[0, 0, i, j].item(), gt[0, 0, i, j].item()) - _d(pred[4, 0, i, j].item(), gt[4, 0, i, j].item()))
             for i in range(2) for j in range(2)) / 12  # stride 2 keeps images 0, 2, 4: pair (0, 4), N = 12
    assert GradientLoss(loss_weight=1.0)(pred, gt).item() == pytest.approx(s1 + s2, rel=1e-6)


@pytest.mark.parametrize("batch", [1, 2])
def test_gradient_loss_dinov2_is_zero_for_batch_up_to_2(batch):
    pred, gt = _rand_depth(batch, 5, 6, seed=1)
    pred.requires_grad_(True)
    out = GradientLoss()(pred, gt)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.all(pred.grad == 0) and not torch.isnan(pred.grad).any()


def test_gradient_loss_spatial_by_hand():
    pred = torch.tensor([[[[1.0, 2.0, 4.0], [1.0, 1.0, 1.0], [3.0, 1.0, 2.0]]]])
    gt = torch.tensor([[[[1.0, 1.0, 1.0], [2.0, 2.0, 0.0], [1.0, 0.0, 1.0]]]])
    D = [[_d(p, t) for p, t in zip(pr, gr)] for pr, gr in zip(pred[0, 0].tolist(), gt[0, 0].tolist())]
    # stride 1: 7 valid; h pairs (row, 0 vs 2): row 0 valid-valid, row 1 gt 0 at col 2, row 2 valid-valid;
    # v pairs (col, row 0 vs 2): col 0 both valid, col 1 row 2 invalid, col 2 both valid
    s1 = (abs(D[0][0] - D[0][2]) + abs(D[2][0] - D[2][2]) + abs(D[0][0] - D[2][0]) + abs(D[0][2] - D[2][2])) / 7
    # stride 2 keeps the four corners (all valid) as a 2x2 map: no pair at distance 2; strides 4, 6: one pixel
    assert GradientLoss(mode="spatial", loss_weight=1.0)(pred, gt).item() == pytest.approx(s1, rel=1e-6)
    assert _ref_gradient_spatial(pred.tolist(), gt.tolist()) == pytest.approx(s1, rel=1e-12)


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_gradient_loss_spatial_matches_reference_loops_and_has_gradient(batch):
    pred, gt = _rand_depth(batch, 13, 14, seed=10 + batch)
    pred.requires_grad_(True)
    out = GradientLoss(mode="spatial", loss_weight=1.0)(pred, gt)
    assert out.item() == pytest.approx(_ref_gradient_spatial(pred.tolist(), gt.tolist()), rel=1e-5)
    out.backward()
    assert pred.grad.abs().sum() > 0
    assert torch.all(pred.grad[gt == 0] == 0)  # invalid pixels get no gradient


def test_gradient_loss_masks_invalid_and_max_depth():
    pred, gt = _rand_depth(2, 6, 6, seed=3)
    loss = GradientLoss(mode="spatial", loss_weight=1.0)
    base = loss(pred, gt).item()
    other = pred.clone()
    other[gt == 0] = 9.0  # predictions on invalid pixels do not matter
    assert loss(other, gt).item() == pytest.approx(base, rel=1e-6)
    capped = GradientLoss(mode="spatial", loss_weight=1.0, max_depth=2.0)(pred, gt).item()
    masked = gt.clone()
    masked[masked > 2.0] = 0.0
    assert capped == pytest.approx(_ref_gradient_spatial(pred.tolist(), masked.tolist()), rel=1e-5)
    every = GradientLoss(mode="spatial", loss_weight=1.0, valid_mask=False)(pred, gt + 1).item()
    assert every == pytest.approx(_ref_gradient_spatial(pred.tolist(), (gt + 1).tolist()), rel=1e-5)


def test_gradient_loss_empty_scale_and_all_invalid():
    # batch 3, image 0 all invalid: strides 4 and 6 keep image 0 only -> N = 0 there; DINOv2 would give nan,
    # here those scales contribute 0 and the loss is the stride-1 term
    pred, gt = _rand_depth(3, 2, 2, seed=4, holes=False)
    gt[0] = 0.0
    out = GradientLoss(loss_weight=1.0)(pred, gt)
    assert math.isfinite(out.item())
    assert out.item() == pytest.approx(_ref_gradient_dinov2(pred.tolist(), gt.tolist()), rel=1e-6)
    # nothing valid at all: raise by default, zero with a graph on request
    with pytest.raises(ValueError, match="valid depth pixel"):
        GradientLoss()(pred, torch.zeros_like(gt))
    p = pred.clone().requires_grad_(True)
    zero = GradientLoss(mode="spatial", on_empty="zero")(p, torch.zeros_like(gt))
    assert zero.item() == 0.0
    zero.backward()
    assert torch.all(p.grad == 0)


def test_gradient_loss_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        GradientLoss(mode="hw")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        GradientLoss()(torch.ones(2, 2, 3, 3), torch.ones(2, 2, 3, 3))


# ---------------------------------------------------------------------------------------------- single-label
def test_dominant_class_ties_and_ignore():
    label = torch.tensor(
        [
            [[2, 2], [1, 255]],  # 2 wins
            [[3, 1], [1, 3]],  # tie 1 vs 3 -> 1
            [[255, 255], [255, 255]],  # no valid pixel
            [[0, 255], [255, 255]],
        ]
    )
    cls, has = dominant_class(label, 4)
    assert cls[has].tolist() == [2, 1, 0] and has.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="label value 4"):
        dominant_class(torch.tensor([[[4]]]), 4)


def test_slc_loss_by_hand():
    logits = torch.tensor(
        [
            [[[1.0, 3.0]], [[0.0, 0.0]], [[2.0, -2.0]]],  # means [2, 0, 0]
            [[[0.5, 0.5]], [[1.0, 3.0]], [[-1.0, 1.0]]],  # means [0.5, 2, 0]
            [[[9.0, 9.0]], [[9.0, 9.0]], [[9.0, 9.0]]],  # skipped (no valid pixel)
        ]
    )
    label = torch.tensor([[[2, 2, 0]], [[1, 0, 0]], [[255, 255, 255]]])  # targets 2 (two votes) and 0 (two votes against one)
    expected = (_ce([2.0, 0.0, 0.0], 2) + _ce([0.5, 2.0, 0.0], 0)) / 2
    assert slc_loss(logits, label).item() == pytest.approx(expected, rel=1e-6)
    tie = torch.tensor([[[1, 2, 255]]])  # tie 1 vs 2 -> 1
    assert slc_loss(logits[:1], tie).item() == pytest.approx(_ce([2.0, 0.0, 0.0], 1), rel=1e-6)


def test_slc_loss_all_skipped_is_zero_with_graph():
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    out = slc_loss(logits, torch.full((2, 4, 4), 255))
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()
    assert torch.all(logits.grad == 0)
    with pytest.raises(ValueError, match="\\(B, H, W\\)"):
        slc_loss(logits, torch.zeros(3, 2, 2, dtype=torch.long))


def test_depth_loss_follows_train_grad_loss_and_its_weight():
    """train.grad_loss picks DINOv2's GradientLoss (`dinov2`: batch and channel axes, zero at batch 2),
    the spatial one, or none; train.grad_loss_weight scales it; SigLoss is always there."""
    from types import SimpleNamespace

    from mdeaux.training.losses import DepthLoss, GradientLoss, SigLoss

    torch.manual_seed(0)
    gt = torch.rand(3, 1, 16, 16) * 4 + 0.5
    pred = gt * (1 + 0.3 * torch.randn_like(gt)).clamp(min=0.2)
    sig = SigLoss(warm_up=False)(pred, gt, it=10).item()
    spatial = GradientLoss(mode="spatial", loss_weight=1.0)(pred, gt).item()
    across = GradientLoss(mode="dinov2", loss_weight=1.0)(pred, gt).item()
    assert spatial > 0 and across > 0 and spatial != pytest.approx(across)

    def loss(mode, weight=0.5, batch=3):
        train = SimpleNamespace(sigloss_warmup_iters=0, grad_loss=mode, grad_loss_weight=weight)
        return DepthLoss(train)(pred[:batch], gt[:batch], 10).item()

    assert loss("none") == pytest.approx(sig, rel=1e-6)
    assert loss("spatial") == pytest.approx(sig + 0.5 * spatial, rel=1e-6)
    assert loss("spatial", weight=0.25) == pytest.approx(sig + 0.25 * spatial, rel=1e-6)
    assert loss("dinov2") == pytest.approx(sig + 0.5 * across, rel=1e-6)
    two = SigLoss(warm_up=False)(pred[:2], gt[:2], it=10).item()
    assert loss("dinov2", batch=2) == pytest.approx(two, rel=1e-6)  # DINOv2's indexing: zero at batch 2


# found by mutation testing (make mutate; docs/mutation.md): inputs that tell the surviving mutants of
# training/losses.py apart
def test_every_loss_refuses_bad_settings_and_shapes_on_both_sides():
    from mdeaux.training.losses import recon_loss

    for bad in ({"eps": -0.5}, {"warm_iter": -1}, {"on_empty": "nan"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SigLoss(**bad)
    assert SigLoss(eps=0.0, warm_iter=0)(PRED, GT).item() > 0  # both bounds are valid
    for bad in ({"eps": -0.5}, {"on_empty": "nan"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GradientLoss(**bad)
    for it in (True, 1.0, -1):  # a bool is an int to Python, not an iteration number
        with pytest.raises(ValueError, match="0-based iteration"):
            SigLoss()(PRED, GT, it=it)
    for pair in ((torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2)), (torch.ones(2, 2), torch.ones(2, 2))):
        with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):  # two channels; 2-D
            SigLoss()(*pair)
    logits, label = torch.zeros(2, 3, 4, 5), torch.zeros(2, 4, 5, dtype=torch.long)  # B = 2 is no other size
    for loss in (mldc_loss, slc_loss, seg_ce_loss):
        for bad_logits in (logits[0], logits[None]):  # 3-D and 5-D
            with pytest.raises(ValueError, match=r"logits must be \(B, K, h, w\)"):
                loss(bad_logits, label)
        for bad_label in (label[0], label[None], label[:1], torch.zeros(3, 4, 5, dtype=torch.long),
                          torch.zeros(2, 20, dtype=torch.long), torch.zeros(2, 4, 5, 1, dtype=torch.long)):
            with pytest.raises(ValueError, match=r"label must be \(B, H, W\) with B = 2,"):
                loss(logits, bad_label)
        for value in (-1, 3):  # outside [0, K) and not the ignore index
            with pytest.raises(ValueError, match=f"label value {value} is outside"):
                loss(logits, torch.full((2, 4, 5), value))
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(ValueError, match="integer class indices"):
            multi_hot(torch.zeros(1, 2, 2, dtype=dtype), 3)
    image = torch.zeros(2, 3, 4, 4)
    for bad_image in (image[:1], torch.zeros(3, 3, 4, 4), torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, 4),
                      image[..., None], image[:, :, 0]):  # 5-D, 3-D
        with pytest.raises(ValueError, match="input must be"):
            recon_loss(torch.zeros(2, 3, 2, 2), bad_image)


def test_sigloss_leaves_out_negative_depths_and_names_the_pixels_it_needs():
    # a negative depth is invalid (DINOv2: valid_mask = target > 0), as a zero is
    gt = torch.cat([GT.flatten(), torch.tensor([-1.0])]).reshape(1, 1, 1, -1)
    pred = torch.cat([PRED.flatten(), torch.tensor([1.0])]).reshape(1, 1, 1, -1)
    assert SigLoss(warm_up=False)(pred, gt).item() == pytest.approx(_full(G), rel=1e-6)
    one = torch.tensor([[[[2.0, 0.0]]]])  # one valid pixel: enough for warm-up, not for the variance
    assert SigLoss(warm_iter=1)(one, one, it=0).item() == 0.0
    with pytest.raises(ValueError, match=r"at least 2 valid depth pixel\(s\) \(gt > 0\) in the batch, got 1"):
        SigLoss(warm_iter=1)(one, one, it=1)
    with pytest.raises(ValueError, match=r"at least 1 valid depth pixel\(s\) \(gt > 0\) in the batch, got 0"):
        SigLoss(warm_iter=1)(one, torch.zeros_like(one), it=0)


def test_depth_loss_warms_sigloss_up_for_train_sigloss_warmup_iters():
    from types import SimpleNamespace

    from mdeaux.training.losses import DepthLoss

    loss = DepthLoss(SimpleNamespace(sigloss_warmup_iters=2, grad_loss="none", grad_loss_weight=0.5))
    assert loss(PRED, GT, 1).item() == pytest.approx(_warm(G), rel=1e-6)
    assert loss(PRED, GT, 2).item() == pytest.approx(_full(G), rel=1e-6)
    none = DepthLoss(SimpleNamespace(sigloss_warmup_iters=0, grad_loss="none", grad_loss_weight=0.5))
    assert none(PRED, GT, 0).item() == pytest.approx(_full(G), rel=1e-6)


@pytest.mark.parametrize("average", ["probs", "sigmoid"])
def test_mldc_probabilities_are_clamped_to_eps_and_one_minus_eps(average):
    # one class, always predicted: the average probability is 1; with the class absent (an ignored-only
    # map kept as all absent) BCE(1 - eps, 0) = -log(eps), not PyTorch's clamp of log(0) at -100
    logits, label = torch.full((1, 1, 2, 2), 50.0), torch.full((1, 2, 2), 255)
    loss = mldc_loss(logits, label, average=average, ignored_only="absent", eps=1e-3)
    assert loss.item() == pytest.approx(-math.log(1e-3), rel=1e-4)
    for eps in (0.0, 0.5, 0.7, -0.1):
        with pytest.raises(ValueError, match="eps must be in"):
            mldc_loss(LOGITS, LABEL, average=average, eps=eps)
    with pytest.raises(ValueError, match="average must be"):
        mldc_loss(LOGITS, LABEL, average="a")  # sorts before "logits"


def test_seg_ce_shrinks_larger_logits_and_gives_a_zero_with_graph_when_every_pixel_is_ignored():
    logits = torch.tensor([[[[2.0, 2.0], [2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # constant 2x2 -> 1x1
    assert seg_ce_loss(logits, torch.tensor([[[1]]])).item() == pytest.approx(_ce([2.0, 0.0], 1), rel=1e-6)
    logits = logits.clone().requires_grad_(True)
    out = seg_ce_loss(logits, torch.full((1, 2, 2), 255), avg_non_ignore=True)
    assert out.item() == 0.0 and out.grad_fn is not None


def test_masks_messages_and_labels_at_their_edges():
    from types import SimpleNamespace

    from mdeaux.training.losses import DepthLoss, recon_loss

    # the depth range is inclusive and negative depths are invalid, in GradientLoss as in SigLoss
    gt = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 2.0]]]]).repeat(1, 1, 5, 1)
    pred = gt * torch.linspace(0.5, 1.5, 25).reshape(1, 1, 5, 5)
    spatial = GradientLoss(mode="spatial", loss_weight=1.0, max_depth=4.0)
    assert spatial(pred, gt).item() > 0
    with_negative = gt.clone()
    with_negative[..., 0] = -1.0
    zeroed = gt.clone()
    zeroed[..., 0] = 0.0
    assert spatial(pred, with_negative).item() == pytest.approx(spatial(pred, zeroed).item(), rel=1e-6)
    assert spatial(pred, gt).item() != pytest.approx(GradientLoss(mode="spatial", loss_weight=1.0, max_depth=3.9)(pred, gt).item())
    # the depth range appears in the message only when it is set
    empty = torch.zeros(1, 1, 2, 2)
    for loss in (SigLoss(max_depth=10.0), GradientLoss(max_depth=10.0)):
        with pytest.raises(ValueError, match=r"gt > 0 and gt <= 10.0\)"):
            loss(torch.ones(1, 1, 2, 2), empty)
    for loss in (SigLoss(), GradientLoss()):
        with pytest.raises(ValueError, match=r"\(gt > 0\) in the batch"):
            loss(torch.ones(1, 1, 2, 2), empty)
        with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):  # a prediction smaller than the ground truth
            loss(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
    # settings read from params.yaml are strings built at run time, not literals: compared by value
    zero = "".join(["ze", "ro"])
    assert SigLoss(on_empty=zero)(torch.ones(1, 1, 2, 2), empty).item() == 0.0
    assert GradientLoss(on_empty=zero)(torch.ones(1, 1, 2, 2), empty).item() == 0.0
    no_grad = DepthLoss(SimpleNamespace(sigloss_warmup_iters=0, grad_loss="".join(["no", "ne"]), grad_loss_weight=0.5))
    assert no_grad.grad is None
    # labels: the rank, the class count, values above the ignore index, and the first bad value named
    with pytest.raises(ValueError, match=r"label must be \(B, H, W\)"):
        multi_hot(torch.zeros(1, 1, 2, 2, dtype=torch.long), 3)
    for k in (0, -1):
        with pytest.raises(ValueError, match="num_classes must be positive"):
            multi_hot(torch.zeros(1, 2, 2, dtype=torch.long), k)
    for loss in (multi_hot, dominant_class):
        with pytest.raises(ValueError, match="label value 7 is outside"):
            loss(torch.tensor([[[7, 300]]]), 3)
        with pytest.raises(ValueError, match="label value 300 is outside"):
            loss(torch.tensor([[[300, 1]]]), 3)
    with pytest.raises(ValueError, match="label value 300 is outside"):
        seg_ce_loss(torch.zeros(1, 3, 1, 2), torch.tensor([[[300, 1]]]))
    with pytest.raises(ValueError, match="reconstruction output must be"):
        recon_loss(torch.zeros(2, 3, 2, 2, 1), torch.zeros(2, 3, 2, 2))


def test_recon_resizes_without_aligning_corners_and_mldc_compares_its_setting_by_value():
    from mdeaux.training.losses import recon_loss

    # [0, 1] to 4 columns, align_corners=False (mmseg resize): [0, 0.25, 0.75, 1]; against zeros the MSE
    # is (0 + 0.0625 + 0.5625 + 1) / 4 (align_corners=True would give [0, 1/3, 2/3, 1])
    pred = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2).repeat(1, 3, 1, 1)
    assert recon_loss(pred, torch.zeros(1, 3, 1, 4)).item() == pytest.approx(0.40625, rel=1e-6)
    with pytest.raises(ValueError, match=r"with B = 2, got shape \(1, 3, 4, 5\)"):
        recon_loss(torch.zeros(2, 3, 4, 5), torch.zeros(1, 3, 4, 5))
    label = torch.tensor([[[0, 1]], [[255, 255]]])  # the second map has no valid pixel
    logits = torch.randn(2, 3, 1, 2)
    assert mldc_loss(logits, label, ignored_only="".join(["sk", "ip"])).item() == pytest.approx(
        mldc_loss(logits, label, ignored_only="skip").item(), rel=1e-6)


def test_one_class_larger_or_5d_predictions_and_the_first_bad_label_of_seg_ce():
    assert multi_hot(torch.zeros(1, 2, 2, dtype=torch.long), 1).tolist() == [[1.0]]  # one class is valid
    for pred, gt in ((torch.ones(1, 1, 2, 3), torch.ones(1, 1, 2, 2)), (torch.ones(1, 1, 2, 2, 1), torch.ones(1, 1, 2, 2, 1))):
        for loss in (SigLoss(), GradientLoss()):
            with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
                loss(pred, gt)
    with pytest.raises(ValueError, match="label value 7 is outside"):
        seg_ce_loss(torch.zeros(1, 3, 1, 2), torch.tensor([[[7, 300]]]))
    logits = torch.randn(1, 3, 2, 2)
    assert mldc_loss(logits, LABEL, average="".join(["log", "its"])).item() == pytest.approx(
        mldc_loss(logits, LABEL, average="logits").item(), rel=1e-6)


def test_resize_and_seg_ce_upsample_without_aligning_corners():
    from mdeaux.training.losses import resize_to

    # [0, 1] to 4 columns, align_corners=False (DINOv2 and mmseg resize): [0, 0.25, 0.75, 1]
    # (align_corners=True would give [0, 1/3, 2/3, 1])
    row = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    assert resize_to(row, (1, 4)).flatten().tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])
    # seg CE: logits of class 0 grow 0 -> 4 across two columns, class 1 stays 0; label 1 at all 4 pixels
    logits = torch.cat([row * 4.0, torch.zeros_like(row)], dim=1)
    expected = sum(_ce([4.0 * x, 0.0], 1) for x in (0.0, 0.25, 0.75, 1.0)) / 4
    assert seg_ce_loss(logits, torch.ones(1, 1, 4, dtype=torch.long)).item() == pytest.approx(expected, rel=1e-6)


def test_depth_range_ends_warm_up_edges_and_run_time_settings():
    from types import SimpleNamespace

    from mdeaux.training.losses import DepthLoss

    # SigLoss keeps a pixel at exactly max_depth (DINOv2: target <= max_depth): gt 2.0 with max_depth 2.0
    assert SigLoss(warm_up=False, max_depth=2.0)(PRED, GT).item() == pytest.approx(_full(G), rel=1e-6)
    # one warm-up iteration is a warm-up
    one = DepthLoss(SimpleNamespace(sigloss_warmup_iters=1, grad_loss="none", grad_loss_weight=0.5))
    assert one(PRED, GT, 0).item() == pytest.approx(_warm(G), rel=1e-6)
    assert one(PRED, GT, 1).item() == pytest.approx(_full(G), rel=1e-6)
    # a counter restored past warm_iter (a run resumed with a shorter warm-up) is past the warm-up
    loss = SigLoss(warm_iter=3)
    loss.warm_up_counter.fill_(5)
    assert loss(PRED, GT).item() == pytest.approx(_full(G), rel=1e-6)
    assert GradientLoss(eps=0.0)(PRED, GT).item() == 0.0  # eps 0 is valid (batch of 1: DINOv2's loss is 0)
    # modes read from params.yaml are strings built at run time, compared by value
    pred, gt = _rand_depth(3, 4, 5, seed=3)
    dinov2 = GradientLoss(mode="dinov2")(pred, gt).item()
    assert dinov2 != pytest.approx(GradientLoss(mode="spatial")(pred, gt).item())
    assert GradientLoss(mode="".join(["dino", "v2"]))(pred, gt).item() == pytest.approx(dinov2, rel=1e-6)
    assert mldc_loss(LOGITS, LABEL, average="".join(["pro", "bs"])).item() == pytest.approx(
        mldc_loss(LOGITS, LABEL, average="probs").item(), rel=1e-6)


def test_labels_above_the_ignore_index_count_and_rank_and_channels_are_checked():
    from mdeaux.training.losses import recon_loss

    # ignore index 1 among 3 classes: label 2 is a valid class, above the ignore index
    label = torch.tensor([[[2, 2]], [[0, 1]]])
    logits = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]], [[-1.0, -1.0]]], [[[0.0, 0.0]], [[2.0, 2.0]], [[0.0, 0.0]]]])
    target = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    sig = [_sigmoid(v) for v in (1.0, 0.0, -1.0, 0.0, 2.0, 0.0)]
    expected = sum(_bce(p, t) for p, t in zip(sig, target[0] + target[1])) / 6
    assert mldc_loss(logits, label, ignore_index=1).item() == pytest.approx(expected, rel=1e-6)
    ce = (2 * _ce([1.0, 0.0, -1.0], 2) + _ce([0.0, 2.0, 0.0], 0)) / 3  # three non-ignored pixels
    assert seg_ce_loss(logits, label, ignore_index=1, avg_non_ignore=True).item() == pytest.approx(ce, rel=1e-6)
    for fn in (multi_hot, dominant_class):
        with pytest.raises(ValueError, match=r"label must be \(B, H, W\)"):
            fn(torch.zeros(2, 2, dtype=torch.long), 3)  # 2-D
    # a prediction with 0 channels, or 3-D with one channel, is refused by its shape
    for shape in ((1, 0, 2, 2), (2, 1, 3)):
        for loss in (SigLoss(), GradientLoss()):
            with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
                loss(torch.ones(shape), torch.ones(shape))
    for shape in ((2, 2, 4, 4), (2, 3, 4)):
        with pytest.raises(ValueError, match="reconstruction output must be"):
            recon_loss(torch.zeros(shape), torch.zeros(2, 3, 4, 4))
    # a prediction larger than the input is shrunk to it: 2x2 of 1s and 0s halves to the 1x1 mean
    pred = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(1, 3, 2, 2)
    assert recon_loss(pred, torch.zeros(1, 3, 1, 1)).item() == pytest.approx(0.25, rel=1e-6)
