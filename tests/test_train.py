"""The alternating scheme's optimizers (paper Eq. 4-5): decoder LR alpha*eta / (1-alpha)*eta."""

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml

from mdeaux.model.depth_aux import build_model
from mdeaux.params import parse
from mdeaux.runs.plan import resolve_config
from mdeaux.training import tasks
from mdeaux.training.runtime import Runtime
from mdeaux.training.scheme import Trainer, build_optimizers, schedule, update

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
RAW["model"]["weights_dir"]["mini"] = None  # the step on a random tiny ViT (the pretrained one: tests/test_pretrain.py)


def setup(alpha=0.9, task="mldc", **train):
    raw = copy.deepcopy(RAW)
    raw["alpha"] = alpha
    raw["train"].update(train)
    cfg = resolve_config(parse(raw), depth="nyuv2", task=task, aux="ade20k", seed=0)
    model_cfg = dict(cfg.model.model_dump(), aux_heads={} if task == "baseline" else {"ade20k": 150})
    torch.manual_seed(0)
    model = build_model(model_cfg)
    return cfg, model, *build_optimizers(model, cfg)


def one_global_step(cfg, model, opt_depth, opt_aux, it=0):
    schedule(opt_depth, it, cfg.train)
    schedule(opt_aux, it, cfg.train)
    x = torch.randn(1, 3, 28, 28)
    update(opt_depth, model.depth(x).mean(), 35.0, "depth", it)
    update(opt_aux, model.aux(x, "ade20k").mean(), 35.0, "aux", it)


def mmcv_lr(base: float, it: int, t) -> float:
    """The learning rate at iteration ``it`` as mmcv 1.x computes it for DINOv2's NYU DPT config
    (lr_config policy CosineAnnealing by iteration, linear warm-up), written out here independently of
    training/schedule.py: mmcv CosineAnnealingLrUpdaterHook.get_lr -> annealing_cos(base, base * min_lr_ratio,
    it / max_iters); LrUpdaterHook.get_warmup_lr("linear"): k = (1 - it / warmup_iters) * (1 - warmup_ratio),
    lr * (1 - k) while it < warmup_iters."""
    end = base * t.min_lr_ratio
    lr = end + (base - end) / 2 * (math.cos(math.pi * it / t.iterations) + 1)
    if it < t.warmup_iters:
        lr *= 1 - (1 - it / t.warmup_iters) * (1 - t.warmup_ratio)
    return lr


def trainer_step(cfg, it: int) -> dict:
    """Global step ``it`` of a fresh Trainer (the training loop's own step) on random features and targets."""
    trainer = Trainer(cfg, Runtime())
    x = torch.rand(2, 3, 28, 28)
    feats = trainer.model.backbone(x)
    depth = (feats, torch.rand(2, 1, 28, 28) * 5 + 0.5)
    aux = None if cfg.baseline else ("ade20k", feats, x, torch.randint(0, 150, (2, 28, 28)))
    return trainer.step_on(it, depth, aux)


# points of the schedule: start, mid warm-up, last warm-up step, first after it, cosine middle, last step
POINTS = {"start": lambda w, n: 0, "warmup": lambda w, n: w // 2, "last_warmup": lambda w, n: w - 1,
          "after_warmup": lambda w, n: w, "cosine": lambda w, n: (w + n) // 2, "last": lambda w, n: n - 1}


@pytest.mark.parametrize("point", POINTS)
def test_each_step_gives_the_decoder_alpha_eta_and_one_minus_alpha_eta(point):
    """Paper Eq. 4-5 on Trainer.step_on: the depth step's decoder at alpha * eta_t, the auxiliary step's at
    (1 - alpha) * eta_t, both heads at eta_h,t (paper §3: eta_phi = eta_psi), all along DINOv2's schedule."""
    cfg, *_ = setup(alpha=0.9)
    t = cfg.train
    it = POINTS[point](t.warmup_iters, t.iterations)
    row = trainer_step(cfg, it)
    assert row["lr_decoder_depth"] == pytest.approx(0.9 * mmcv_lr(t.lr, it, t), rel=1e-12)
    assert row["lr_decoder_aux"] == pytest.approx(0.1 * mmcv_lr(t.lr, it, t), rel=1e-12)
    assert row["lr_head_depth"] == row["lr_head_aux"] == pytest.approx(mmcv_lr(t.head_lr, it, t), rel=1e-12)


def test_without_warmup_the_first_step_runs_at_alpha_eta():
    cfg, *_ = setup(alpha=0.9, warmup_iters=0)
    row = trainer_step(cfg, 0)
    assert row["lr_decoder_depth"] == pytest.approx(0.9 * cfg.train.lr, rel=1e-12)  # cos(0): the base rate
    assert row["lr_decoder_aux"] == pytest.approx(0.1 * cfg.train.lr, rel=1e-12)


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
    assert opt_aux is None and cfg.alpha == 1.0
    row = trainer_step(cfg, 0)
    assert row["lr_decoder_depth"] == pytest.approx(cfg.train.lr, rel=1e-12) and "lr_decoder_aux" not in row


def test_non_finite_loss_stops_before_updating():
    cfg, model, opt_depth, _ = setup(warmup_iters=0)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    with pytest.raises(RuntimeError, match="depth loss is nan at iteration 7"):
        update(opt_depth, torch.tensor(float("nan"), requires_grad=True), 35.0, "depth", 7)
    assert all(torch.equal(a, b) for a, b in zip(before, model.decoder.parameters(), strict=True))


# -- evaluation, best-during-training and data streams ---------------------------------------------
import numpy as np  # noqa: E402

from mdeaux.data.datasets.registry import NYUV2  # noqa: E402
from mdeaux.training.evaluate import Best, evaluate  # noqa: E402
from mdeaux.training.scheme import decoder_lrs  # noqa: E402
from mdeaux.training.stream import AuxStream, SampleSource, StepData, aux_plan, step_loader  # noqa: E402

NYU_AUG = parse(copy.deepcopy(RAW)).augment["nyuv2"]  # no resize, no KB crop


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

    backbone = torch.nn.Identity()  # evaluate() passes the backbone's output to depth(feats=...)

    def depth(self, x=None, feats=None):
        x = feats
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        out = torch.full((x.shape[0], 1, h, w), self.right)
        out[..., : w // 2] = self.left
        return out


def test_flip_tta_averages_the_flipped_prediction():
    data = StubData(2.0)
    model = LeftRight(1.0, 3.0)
    without = evaluate([model], data, data.ids(), NYUV2, flip=False, aug=NYU_AUG)[0]
    with_flip = evaluate([model], data, data.ids(), NYUV2, flip=True, aug=NYU_AUG)[0]
    assert without["abs_rel"] == pytest.approx(0.5, abs=0.02)  # |2-1|/2 and |2-3|/2 everywhere but the seam
    assert with_flip["abs_rel"] == pytest.approx(0.0, abs=1e-6)  # (1 + 3) / 2 = 2 everywhere
    assert with_flip["a1"] == pytest.approx(1.0)


class ReadsImage(LeftRight):
    """Predicts from the image: 2 m where it is bright, 4 m where it is dark, then -0.5 m on the left half
    of the output and +0.5 m on the right half (LeftRight), at half resolution."""

    def depth(self, x=None, feats=None):
        bright = feats.mean(1, keepdim=True)[..., ::2, ::2] > 0  # feats: the normalised image (Identity backbone)
        return torch.where(bright, 2.0, 4.0) + super().depth(feats=feats)


class DarkLeftQuarter(StubData):
    """A dark left quarter at 4 m, the rest bright at 2 m: not symmetric, so a flip shows."""

    def decode(self, sample_id):
        image = np.full((480, 640, 3), 255, np.uint8)
        image[:, :160] = 0
        depth = np.full((480, 640), 2.0, np.float32)
        depth[:, :160] = 4.0
        return {"image": image, "depth": depth, "label": None}


def test_flip_tta_predicts_on_the_mirrored_image_and_flips_the_prediction_back():
    """With the input flipped and the prediction flipped back, the image-dependent part lands where it
    belongs and the left/right offsets cancel: exact but for the resize at the seams. Forgetting either
    flip puts 3 m (the average of 2 and 4 m) on half the image."""
    data = DarkLeftQuarter(0.0)
    without = evaluate([ReadsImage(-0.5, 0.5)], data, data.ids(), NYUV2, flip=False, aug=NYU_AUG)[0]
    with_flip = evaluate([ReadsImage(-0.5, 0.5)], data, data.ids(), NYUV2, flip=True, aug=NYU_AUG)[0]
    assert without["abs_rel"] > 0.15
    assert with_flip["abs_rel"] < 0.01


def test_each_prediction_is_clamped_before_the_flip_average():
    # left 20 m is clamped to max_depth 10 first (DINOv2 encode_decode), so the average is (10 + 0.5) / 2
    data = StubData(5.25)
    metrics = evaluate([LeftRight(20.0, 0.5)], data, data.ids(), NYUV2, flip=True, aug=NYU_AUG)[0]
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def test_best_keeps_the_best_value_of_each_metric_and_its_step():
    best = Best.empty()
    best.update({"abs_rel": 0.5, "a1": 0.6, "rmse": float("nan")}, 10)
    best.update({"abs_rel": 0.4, "a1": 0.5, "rmse": 2.0}, 20)
    best.update({"abs_rel": 0.45, "a1": 0.7, "rmse": 3.0}, 30)
    assert best.values == {"abs_rel": 0.4, "a1": 0.7, "rmse": 2.0}
    assert best.steps == {"abs_rel": 20, "a1": 30, "rmse": 20}


class IdData:
    """Samples whose pixels hold their id."""

    def decode(self, sample_id):
        v = float(sample_id)
        return {"image": np.full((2, 2, 3), v, np.uint8), "depth": np.full((2, 2), v, np.float32), "label": np.full((2, 2), v, np.uint8)}


def ident(img, target, rng):
    return img, target


def source(seed=0, name="nyuv2", n=6):
    return SampleSource(IdData(), [str(i) for i in range(n)], "depth", ident, seed, name)


def ids_of(batch):
    return [int(v) for v in batch[1][:, 0, 0, 0]]


def test_sources_are_seeded_and_visit_every_sample_each_epoch():
    first = ids_of(source().batch(range(6)))
    assert first == ids_of(source().batch(range(6)))
    # the order depends on the run's seed and, separately, on the dataset's name (two sources of one run differ)
    assert first != ids_of(source(seed=1).batch(range(6)))
    assert first != ids_of(source(name="other").batch(range(6)))
    assert sorted(first) == list(range(6))  # one epoch = every sample once
    assert sorted(ids_of(source().batch(range(6, 12)))) == list(range(6))
    # any sample can be drawn alone (resume, several processes): sample k does not depend on what came before
    assert ids_of(source().batch(range(3, 5))) == first[3:5]
    with pytest.raises(ValueError, match="no training samples"):
        SampleSource(IdData(), [], "depth", ident, 0, "nyuv2")


def noisy_image(img, target, rng):
    """An augmentation that draws from the sample's generator (module level: loader workers pickle it)."""
    return (img + rng.integers(0, 50, img.shape)).astype(np.uint8), target + rng.random()


def test_any_number_of_loader_workers_gives_the_same_batches():
    """runner.loader_workers: 0, 1 or 2 background processes (and a loader started at a resumed step) give
    the same depth and auxiliary batches, augmentation draws included."""
    def batches(workers, start=0):
        depth = SampleSource(IdData(), [str(i) for i in range(5)], "depth", noisy_image, 0, "nyuv2")
        sources = {name: SampleSource(IdData(), [str(i) for i in range(3)], "segmentation", noisy_image, 0, name)
                   for name in ("ade20k", "voc")}
        plan = aux_plan(list(sources), [3, 3], 8, "cycle", 0)
        data = StepData(depth, [AuxStream(sources, plan)], batch_size=2)
        return [(b["step"], b["depth"], b["aux"]) for b in step_loader(data, start, 8, workers)]

    def flat(items):
        out = []
        for step, depth, aux in items:
            out += [torch.tensor(step), *depth] + [t for name, pair in aux for t in (torch.tensor(len(name)), *pair)]
        return out

    alone = flat(batches(0))
    for got in (flat(batches(1)), flat(batches(2)), flat(batches(0)[:3]) + flat(batches(2, start=3))):
        assert len(got) == len(alone) and all(torch.equal(a, b) for a, b in zip(alone, got))


def test_augmentation_draws_depend_only_on_the_sample_number():
    def noisy(img, target, rng):
        return img, target + rng.random()

    def depth_of(k, start):
        src = SampleSource(IdData(), [str(i) for i in range(4)], "depth", noisy, 0, "nyuv2")
        if start < k:
            src.batch(range(start, k))  # whatever was drawn before
        return float(src.batch(range(k, k + 1))[1][0, 0, 0, 0])

    assert depth_of(5, 0) == depth_of(5, 5)


def test_two_processes_split_each_global_batch_in_halves():
    aux = {"ade20k": SampleSource(IdData(), [str(i) for i in range(10, 15)], "segmentation", ident, 0, "ade20k")}
    plan = aux_plan(["ade20k"], [5], 4, "cycle", 0)
    streams = [AuxStream(aux, plan)]
    single = StepData(source(), streams, batch_size=2)
    halves = [StepData(source(), streams, batch_size=2, rank=r, world=2) for r in (0, 1)]
    for s in range(4):
        whole = single[s]
        assert ids_of(whole["depth"]) == ids_of(halves[0][s]["depth"]) + ids_of(halves[1][s]["depth"])
        (name, (_, labels)), = whole["aux"]
        assert name == "ade20k" and torch.equal(labels, torch.cat([h[s]["aux"][0][1][1] for h in halves]))
    with pytest.raises(ValueError, match="divisible"):
        StepData(source(), streams, batch_size=3, world=2)


def test_aux_plan_modes():
    names, sizes = ["a", "b", "c"], [1, 1, 98]
    assert aux_plan(names, sizes, 7, "cycle", 0) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1), ("a", 2)]
    rand = aux_plan(names, sizes, 300, "random", 0)
    assert rand == aux_plan(names, sizes, 300, "random", 0) and rand != aux_plan(names, sizes, 300, "random", 1)
    assert all(sum(n == x for n, _ in rand) > 60 for x in names)  # uniform: ~100 each
    prop = aux_plan(names, sizes, 300, "proportional", 0)
    assert sum(n == "c" for n, _ in prop) > 270  # 98 % of the draws
    counts = {}
    for n, draw in prop:  # draw numbers count each dataset's own draws
        assert draw == counts.get(n, 0)
        counts[n] = draw + 1
    with pytest.raises(ValueError, match="aux_draw"):
        aux_plan(names, sizes, 3, "mixed", 0)


def test_beta_variant_and_gamma_scale_the_decoder_lr():
    cfg, *_ = setup(alpha=0.9)
    eta = cfg.train.lr
    assert decoder_lrs(cfg) == pytest.approx((0.9 * eta, 0.1 * eta))
    assert decoder_lrs(cfg.model_copy(update={"beta": 0.05, "alpha": None})) == pytest.approx((eta, 0.05 * eta))  # paper §5.1, Fig. 5 right
    base, *_ = setup(task="baseline")
    assert decoder_lrs(base.model_copy(update={"gamma": 0.5})) == (0.5 * eta, None)  # Fig. 5 left


@pytest.mark.parametrize("point", POINTS)
def test_beta_variant_lrs_follow_the_schedule(point):
    raw = copy.deepcopy(RAW)
    cfg = resolve_config(parse(raw), depth="nyuv2", task="mldc", aux="ade20k", seed=0, beta=0.1)
    assert cfg.alpha is None and cfg.beta == 0.1
    t = cfg.train
    it = POINTS[point](t.warmup_iters, t.iterations)
    row = trainer_step(cfg, it)  # paper §5.1: the depth step's decoder at eta_t, the auxiliary step's at beta * eta_t
    assert row["lr_decoder_depth"] == pytest.approx(mmcv_lr(t.lr, it, t), rel=1e-12)
    assert row["lr_decoder_aux"] == pytest.approx(0.1 * mmcv_lr(t.lr, it, t), rel=1e-12)


def test_gamma_and_beta_only_where_they_apply():
    params = parse(copy.deepcopy(RAW))
    plain = resolve_config(params, depth="nyuv2", task="baseline", seed=0)
    assert plain.gamma is None and plain.beta is None  # gamma = 1 keeps the baseline's id
    assert resolve_config(params, depth="nyuv2", task="baseline", seed=0, gamma=2.0).gamma == 2.0
    with pytest.raises(ValueError, match="beta"):
        resolve_config(params, depth="nyuv2", task="baseline", seed=0, beta=0.1)
    with pytest.raises(ValueError, match="gamma"):
        resolve_config(params, depth="nyuv2", task="mldc", aux="ade20k", seed=0, gamma=2.0)


def test_non_finite_gradient_norm_stops_before_updating():
    cfg, model, opt_depth, _ = setup(warmup_iters=0)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    x = torch.randn(1, 3, 28, 28)
    d = model.depth(x).mean()
    loss = torch.sqrt(d - d.detach())  # value 0 (finite), gradient 1 / (2 sqrt(0)) = inf
    with pytest.raises(RuntimeError, match="gradient norm is (inf|nan) at iteration 3"):
        update(opt_depth, loss, 35.0, "depth", 3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.decoder.parameters(), strict=True))


def test_evaluation_resizes_the_image_but_scores_at_the_original_size():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shapes = []

        backbone = torch.nn.Identity()

        def depth(self, x=None, feats=None):
            x = feats
            self.shapes.append(tuple(x.shape[-2:]))
            return torch.full((1, 1, x.shape[-2] // 2, x.shape[-1] // 2), 2.0)

    data = StubData(2.0)
    for change, seen in [({"resize_to": [240, 320], "view_scale": 1.0}, (240, 320)),
                         ({"resize_to": None, "view_scale": 0.25}, (120, 160)),  # the mini profile's quarter view
                         ({"resize_to": [240, 320], "view_scale": 0.25}, (60, 80))]:  # the resize first, then the scale
        model = Recorder()
        metrics = evaluate([model], data, data.ids(), NYUV2, flip=False, aug=NYU_AUG.model_copy(update=change))[0]
        assert set(model.shapes) == {seen} and metrics["abs_rel"] == pytest.approx(0.0)


def test_sun_rgbd_clips_prediction_and_gt_to_8_m():
    from mdeaux.data.datasets.sunrgbd import SUNRGBD
    from mdeaux.training.metrics import evaluate_depth

    gt = np.full((480, 640), 9.0, np.float32)  # toolbox: GT 9 m -> 8 m, prediction 9.5 m -> 8 m: no error
    assert evaluate_depth(gt, np.full_like(gt, 9.5), SUNRGBD)["abs_rel"] == pytest.approx(0.0)
    assert evaluate_depth(gt, np.full_like(gt, 9.5), NYUV2)["abs_rel"] == pytest.approx(0.5 / 9.0)


@pytest.mark.parametrize("task", ["mldc", "segmentation", "reconstruction"])
def test_each_auxiliary_task_trains_the_shared_decoder(task):
    from mdeaux.data.datasets.registry import ADE20K

    cfg, _, _, _ = setup(alpha=0.5, task=task, warmup_iters=0)
    torch.manual_seed(0)
    model = build_model(dict(cfg.model.model_dump(), aux_heads={"ade20k": tasks.get(task).head_channels(ADE20K)}))
    _, opt_aux = build_optimizers(model, cfg)
    schedule(opt_aux, 0, cfg.train)
    x = torch.randn(2, 3, 56, 56)
    label = torch.randint(0, 150, (2, 56, 56))
    label[:, :4] = 255
    out = model.aux(x, "ade20k")
    assert out.shape[1] == (3 if task == "reconstruction" else 150)
    before = [p.detach().clone() for p in model.decoder.parameters()]
    loss = update(opt_aux, tasks.get(task).loss(out, x, label, ADE20K, cfg.train), 35.0, task, 0)
    assert loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.decoder.parameters(), strict=True))


def test_task_only_settings_do_not_reach_other_tasks():
    seg, _, _, _ = setup(task="segmentation")
    mldc, _, _, _ = setup(task="mldc")
    assert seg.train.mldc_average is None and mldc.train.mldc_average == "logits"
    assert seg.train.aux_draw == mldc.train.aux_draw == "cycle"  # every auxiliary task reads aux_draw
    base, _, _, _ = setup(task="baseline")
    assert base.train.aux_draw is None and base.train.mldc_average is None


class _Planted:
    """Unpickling this runs code: what a checkpoint read with weights_only=False would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_is_read_as_weights_only_and_code_in_it_never_runs(tmp_path):
    from mdeaux.training.checkpoint import load_checkpoint

    cfg, model, opt_depth, opt_aux = setup()
    marker, path = tmp_path / "code-ran", tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "run_id": "r", "model": {}, "planted": _Planted(marker)}, path)
    with pytest.raises(RuntimeError, match="not a checkpoint written by mdeaux.*delete it to restart run r from scratch"):
        load_checkpoint(path, model, opt_depth, opt_aux, "r")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the same file read without the guard runs the planted code
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true but no accelerator:UserWarning")
def test_the_gpu_switches_reach_the_step_and_keep_the_cpu_numbers():
    """train.precision bf16 reaches the forward passes (autocast: the step's losses move by bf16 rounding
    only); the fused AdamW kernel (used on CUDA) makes the same update as the default one; a pinned loader
    (runner device cuda) gives the same batches. TF32 and torch.compile act on CUDA only (README)."""
    cfg, *_ = setup(alpha=0.9, warmup_iters=0)
    fp32 = trainer_step(cfg, 0)
    bf16 = trainer_step(cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "bf16"})}), 0)
    for key in ("loss_depth", "loss_aux"):
        assert bf16[key] != fp32[key] and bf16[key] == pytest.approx(fp32[key], rel=0.05), key

    after = []
    for fused in (False, True):
        _, model, opt_depth, opt_aux = setup(alpha=0.9, warmup_iters=0)
        optimizers = build_optimizers(model, cfg, fused=fused)
        assert all(group["fused"] is (True if fused else None) for group in optimizers[0].param_groups)
        torch.manual_seed(1)
        x = torch.rand(2, 3, 28, 28)
        update(optimizers[0], model.depth(x).mean(), 35.0, "depth", 0)
        after.append([p.detach().clone() for p in model.decoder.parameters()])
    assert all(torch.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(*after))

    depth = SampleSource(IdData(), [str(i) for i in range(4)], "depth", noisy_image, 0, "nyuv2")
    plain, pinned = (list(step_loader(StepData(depth, [], batch_size=2), 0, 3, 0, pin=pin)) for pin in (False, True))
    assert all(torch.equal(a, b) for p, q in zip(plain, pinned) for a, b in zip(p["depth"], q["depth"]))


# found by mutation testing (make mutate; docs/mutation.md): what the surviving mutants of training/evaluate.py changed
class RecordsMode(ReadsImage):
    """ReadsImage that records whether it was in training mode, and whether autograd was on, each time it
    predicted."""

    def __init__(self):
        super().__init__(-0.5, 0.5)
        self.modes, self.grads = [], []

    def depth(self, x=None, feats=None):
        self.modes.append(self.training)
        self.grads.append(torch.is_grad_enabled())
        return super().depth(feats=feats)


def test_predictions_are_flip_tta_in_eval_mode_and_evaluation_restores_training_mode():
    from mdeaux.training.evaluate import predictions

    data, model = DarkLeftQuarter(0.0), RecordsMode()
    model.train()
    (saved,) = predictions([model], data, data.ids(), NYUV2, NYU_AUG, Runtime())
    assert sorted(saved) == ["gt_0", "gt_1", "ids", "image_0", "image_1", "pred_0", "pred_1"]
    assert saved["ids"].tolist() == data.ids() and saved["pred_0"].dtype == saved["gt_0"].dtype == np.float16
    # with the flip, the prediction is the depth map up to the resize at the seams (without it, 3 m on half the image)
    assert np.mean(np.abs(saved["pred_0"].astype(np.float32) - saved["gt_0"]) > 0.1) < 0.05
    assert model.modes == [False] * 2 and model.training  # eval mode while predicting, training mode after
    evaluate([model], data, data.ids(), NYUV2, flip=True, aug=NYU_AUG)
    assert model.modes == [False] * 4 and model.training
    assert model.grads == [False] * 4  # no autograd graph while predicting or evaluating


def test_every_evaluation_scores_the_first_eval_max_images_or_all():
    from types import SimpleNamespace

    from mdeaux.training.evaluate import scored_ids

    split = SimpleNamespace(test=["a", "b", "c"])
    assert scored_ids(split, 2) == ["a", "b"]
    assert scored_ids(split, None) == ["a", "b", "c"]


def test_the_periodic_subset_is_all_images_up_to_n_else_n_fixed_by_the_dataset_name():
    from mdeaux.training.evaluate import periodic_subset

    ids = [f"s{i:03d}" for i in range(100)]
    assert periodic_subset(ids, None, "taskonomy") == periodic_subset(ids, 100, "taskonomy") == ids
    assert periodic_subset(ids[:5], 10, "taskonomy") == ids[:5]
    subset = periodic_subset(ids, 10, "taskonomy")
    assert len(set(subset)) == 10 and subset == sorted(subset) and set(subset) < set(ids)
    assert periodic_subset(ids, 10, "taskonomy") == subset != periodic_subset(ids, 10, "matterport3d")
    assert len(set(periodic_subset(ids, 90, "taskonomy"))) == 90  # drawn without replacement
    # the subset a dataset name gives is part of every run's numbers: these are the images mdeaux scores
    # today (first 4 bytes of the name's SHA-256 as the seed); a change of seeding must show here
    assert periodic_subset(ids, 5, "taskonomy") == ["s032", "s065", "s066", "s085", "s098"]


# found by mutation testing (make mutate; docs/mutation.md): what the surviving mutants of training/scheme.py changed
class PixelData:
    """28x28 samples: random pixels seeded by the id, depth 1 + id metres, every label the id."""

    def decode(self, sample_id):
        v = int(sample_id)
        image = np.random.default_rng(v).integers(0, 256, (28, 28, 3), dtype=np.uint8)
        return {"image": image, "depth": np.full((28, 28), 1.0 + v, np.float32), "label": np.full((28, 28), v, np.uint8)}


@pytest.mark.parametrize("task", ["baseline", "mldc"])
def test_trainer_step_on_a_loader_item_is_step_on_its_backbone_features(task):
    cfg, *_ = setup(alpha=0.9, task=task, warmup_iters=0)
    ids = [str(i) for i in range(4)]
    aux = [] if task == "baseline" else [AuxStream({"ade20k": SampleSource(PixelData(), ids, "seg", ident, 0, "ade20k")},
                                                   aux_plan(["ade20k"], [4], 4, "cycle", 0))]
    item = StepData(SampleSource(PixelData(), ids, "depth", ident, 0, "nyuv2"), aux, batch_size=2)[1]
    row = Trainer(cfg, Runtime()).step(item)
    twin = Trainer(cfg, Runtime())  # the same seed: the same decoder and heads
    x, y = item["depth"]
    by_hand = None
    if task != "baseline":
        name, (xa, ya) = item["aux"][0]
        by_hand = (name, twin.model.backbone(xa), xa, ya)
    assert row == twin.step_on(1, (twin.model.backbone(x), y), by_hand)
    assert row["step"] == 2 and ("loss_aux" in row) is (task != "baseline")
    assert row["beta1"] == twin.opt_depth.param_groups[0]["betas"][0] != twin.opt_depth.param_groups[0]["betas"][1]
    assert twin.step_on(4, (twin.model.backbone(x), y), by_hand)["step"] == 5  # the number of steps done


def test_on_the_cpu_the_cuda_only_switches_stay_off():
    cfg, *_ = setup(alpha=0.9, tf32=True)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        trainer = Trainer(cfg, Runtime())
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32  # TF32: CUDA only
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert all(group["fused"] is None for opt in (trainer.opt_depth, trainer.opt_aux) for group in opt.param_groups)
    assert all(group["fused"] is None for opt in build_optimizers(trainer.model, cfg) for group in opt.param_groups)
