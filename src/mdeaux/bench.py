"""``mdeaux bench``: is training as fast as its parts allow?

For a configuration (``mini``: the mini profile; ``real``: the paper profile's sizes with a randomly
initialised backbone of the real size, so no weights are needed), one run of this command measures:

* the time of a global step as ``train_run`` executes it (batches from the loader, depth step +
  auxiliary step with losses, clipping, AdamW, schedule) against its **floor**: backbone forward +
  decoder and head forward and backward, for both steps, on batches already in memory. The ratio is
  our overhead (loss, optimizer, data waits);
* the loader's throughput (global steps per second prepared by the configured workers, alone) against
  what training consumes;
* the peak memory (process RSS on CPU, allocated memory on a GPU);
* on a GPU: the backbone's images per second in bf16 and the fraction of the GPU's bf16 dense peak
  that this reaches (FLOPs counted analytically);
* with ``--cohort K``: the per-run time of a global step and of an evaluation when K runs share the
  backbone passes (training/cohort.py) against the same run alone, and the split of a step into
  backbone and decoder time (``cohort_bench``); with ``--vmap`` also the K decoders batched by
  ``torch.func.vmap`` against one after the other (``vmap_bench``);
* with ``--agreement K`` (mini): how far K runs trained as a cohort lie from the same runs trained
  alone, beside how far two trainings alone lie from each other (``agreement``), e.g. in bf16 on a GPU.

Everything is measured in one run, so the ratios are meaningful on any machine. The data are the
project's prepared NYUv2 and ADE20K (the mini world after ``dvc repro``), cropped to the chosen
configuration's sizes.
"""

from __future__ import annotations

import copy
import logging
import resource
import statistics
import time
from dataclasses import dataclass

import torch
import yaml

from mdeaux.data.datasets.registry import get as get_spec
from mdeaux.model.backbone import FrozenBackbone
from mdeaux.model.depth_aux import build_model
from mdeaux.model.specs import BACKBONES, PATCH_SIZE
from mdeaux.params import parse
from mdeaux.runs.plan import resolve_config
from mdeaux.training import tasks
from mdeaux.training.config import RunConfig
from mdeaux.training.runtime import Runtime
from mdeaux.training.scheme import Trainer
from mdeaux.training.stream import step_data, step_loader

log = logging.getLogger(__name__)

# Architectures of the real backbones, for random initialisation (no weights needed to time them):
# dinov2/hub/backbones.py and the Hugging Face configs of facebook/dinov2-*.
ARCH = {
    "dinov2_vits14": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, use_swiglu_ffn=False),
    "dinov2_vitb14": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, use_swiglu_ffn=False),
    "dinov2_vitl14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, use_swiglu_ffn=False),
    "dinov2_vitg14": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True),
    "depth_anything_vitl14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, use_swiglu_ffn=False),
}
# bf16 dense tensor-core peaks (NVIDIA data sheets, without sparsity), TFLOP/s
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                    "A100": 312.0, "L40S": 362.0}


def random_backbone(name: str) -> FrozenBackbone:
    """A randomly initialised backbone with the architecture and taps of ``name``."""
    from transformers import Dinov2Backbone, Dinov2Config

    spec = BACKBONES[name]
    config = Dinov2Config(**ARCH[name], mlp_ratio=4, patch_size=PATCH_SIZE, image_size=518,
                          out_indices=list(spec.out_indices), apply_layernorm=spec.apply_layernorm,
                          reshape_hidden_states=False)
    return FrozenBackbone(Dinov2Backbone(config))


def vit_flops(name: str, height: int, width: int) -> float:
    """Forward FLOPs of one image through every block (multiply-add = 2 FLOPs), padded to 14."""
    a = ARCH[name]
    d, layers = a["hidden_size"], a["num_hidden_layers"]
    h, w = -(-height // PATCH_SIZE), -(-width // PATCH_SIZE)
    n = 1 + h * w
    mlp = 2 * n * d * 2 * hidden_swiglu(d) + 2 * n * hidden_swiglu(d) * d if a["use_swiglu_ffn"] else 2 * n * d * 4 * d * 2
    block = 2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * n * d + mlp
    return 2 * h * w * 3 * PATCH_SIZE**2 * d + layers * block


def hidden_swiglu(d: int, mlp_ratio: int = 4) -> int:
    # SwiGLU hidden width: int(d * mlp_ratio * 2 / 3) rounded up to a multiple of 8 (dinov2 layers/swiglu_ffn.py)
    return (int(d * mlp_ratio * 2 / 3) + 7) // 8 * 8


def bench_config(raw: dict, config: str, backbone: str) -> RunConfig:
    """The resolved config of an MLDC run on NYUv2 with ADE20K, at the chosen configuration's sizes."""
    raw = copy.deepcopy(raw)
    raw["profile"] = "mini" if config == "mini" else "paper"
    raw["datasets"] = ["nyuv2", "ade20k"]  # what this benchmark reads; paper profile checks nothing else here
    raw["studies"] = {}  # the studies may name other datasets: the benchmark plans no study
    params = parse(raw)
    cfg = resolve_config(params, depth="nyuv2", task="mldc", aux="ade20k", seed=0)
    if config == "real":
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"backbone": backbone, "weights_dir": None})})
    return cfg


def build(cfg: RunConfig, config: str, rt: Runtime):
    """The benchmark's model, initialised directly on the device (a random ViT-g is 1.1 B parameters)."""
    model_cfg = {**cfg.model.model_dump(), "aux_heads": {"ade20k": tasks.get("mldc").head_channels(get_spec("ade20k"))}}
    torch.manual_seed(0)
    with torch.device(rt.device):
        if config == "mini":
            return build_model(model_cfg)
        return build_model(model_cfg, backbone=random_backbone(cfg.model.backbone))


def _sync(rt: Runtime) -> None:
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)


@dataclass
class Result:
    step_ms: float
    floor_ms: float
    loader_steps_s: float
    peak_mib: float

    @property
    def overhead(self) -> float:
        return self.step_ms / self.floor_ms - 1


def _timed(fn, rt: Runtime, repeats: int, warmup: int = 0) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(rt)
        t0 = time.perf_counter()
        fn()
        _sync(rt)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def floor_pass(trainer: Trainer, batch: dict) -> None:
    """What a global step cannot avoid: backbone forward, decoder + head forward and backward, twice."""
    model = trainer.model
    aux_name, aux = batch["aux"][0]
    for x, head in ((batch["depth"][0], model.depth_head), (aux[0], model.aux_heads[aux_name])):
        x = x.to(trainer.rt.device)
        with trainer.rt.autocast(trainer.train.precision):
            out = head(model.decoder(model.backbone(x)))
        out.float().mean().backward()
    model.zero_grad(set_to_none=True)


def run_bench(paths, raw: dict, config: str, backbone: str, steps: int, warmup: int, rt: Runtime) -> Result:
    cfg = bench_config(raw, config, backbone)
    trainer = Trainer(cfg, rt, model=build(cfg, config, rt))
    data, _ = step_data([cfg], paths)
    total = warmup + steps
    # loader alone, with the configured workers (first item excluded: worker start-up)
    loader = iter(step_loader(data, 0, total, rt.workers))
    next(loader)
    t0 = time.perf_counter()
    for _ in range(total - 1):
        next(loader)
    loader_steps_s = (total - 1) / (time.perf_counter() - t0)
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    # the training step as train_run runs it: loader in the loop, medians of per-step wall time
    times = []
    _sync(rt)
    t0 = time.perf_counter()
    for batch in step_loader(data, 0, total, rt.workers, rt.device.type == "cuda"):
        trainer.step(batch)
        _sync(rt)
        t1 = time.perf_counter()
        if batch["step"] >= warmup:
            times.append((t1 - t0) * 1000)
        t0 = t1
    step_ms = statistics.median(times)
    # the floor, on one batch already in memory
    batch = data[0]
    floor_pass(trainer, batch)
    floor_ms = _timed(lambda: floor_pass(trainer, batch), rt, steps)
    if rt.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(rt.device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Result(step_ms, floor_ms, loader_steps_s, peak)


@dataclass
class CohortResult:
    k: int
    alone_ms: float  # one run's global step alone (its own two backbone passes)
    cohort_ms: float  # the cohort's global step: two backbone passes, then each run's decoder steps
    backbone_ms: float  # the two backbone passes (depth and auxiliary batch)
    eval_alone_ms: float  # one test image (flip TTA) for one run alone
    eval_cohort_ms: float  # one test image for the whole cohort
    peak_mib: float
    vmap: tuple[float, float] | str | None = None  # (loop ms, vmap ms) of the K decoders, or why vmap failed

    @property
    def decoder_ms(self) -> float:
        """A run's own share of a step: its decoder and heads, forward and backward, and its updates."""
        return (self.cohort_ms - self.backbone_ms) / self.k


def vmap_bench(models: list, feats: list, rt: Runtime, precision: str, steps: int, warmup: int) -> tuple[float, float] | str:
    """(loop ms, vmap ms) of the forward and backward of K runs' decoders and depth heads on one shared
    backbone output: one after the other (as ``train_cohort`` does) against one batched call over their
    stacked parameters (``torch.func.stack_module_state`` + ``vmap``, issue 12 item 4). A string says why
    vmap could not run."""
    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    parts = [nn.Sequential(m.decoder, m.depth_head) for m in models]
    params, buffers = stack_module_state(parts)
    skeleton = copy.deepcopy(parts[0]).to("meta")

    def loop():
        for part in parts:
            with rt.autocast(precision):
                loss = part(feats).float().mean()
            loss.backward()

    def one(p, b):
        with rt.autocast(precision):
            return functional_call(skeleton, (p, b), (feats,)).float().mean()

    def batched():
        vmap(one)(params, buffers).sum().backward()

    loop_ms = _timed(loop, rt, steps, warmup)
    try:
        vmap_ms = _timed(batched, rt, steps, warmup)
    except Exception as err:  # noqa: BLE001 - an op without a batching rule: report it, the loop stays
        return f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return loop_ms, vmap_ms


def cohort_bench(paths, raw: dict, config: str, backbone: str, k: int, steps: int, warmup: int, rt: Runtime,
                 with_vmap: bool = False) -> CohortResult:
    """K MLDC runs that differ only in alpha (so they share the depth and the auxiliary batch, as Fig. 1's
    alpha sweep does), on one batch already in memory, timed in one process."""
    from mdeaux.data.prepare import PreparedDataset
    from mdeaux.data.split import SplitFile
    from mdeaux.model.depth_aux import frozen_backbone
    from mdeaux.training.evaluate import evaluate
    from mdeaux.training.scheme import backbone_features, build_run_model

    base = bench_config(raw, config, backbone)
    with torch.device(rt.device):
        shared = frozen_backbone(base.model.model_dump()) if config == "mini" else random_backbone(base.model.backbone)
        trainers = [Trainer(cfg, rt, build_run_model(cfg, shared))
                    for cfg in (base.model_copy(update={"alpha": round(0.9 - 0.05 * i, 2)}) for i in range(k))]
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    data, _ = step_data([base], paths)
    batch = data[0]
    (x, y), (name, pair) = trainers[0].to_device(batch["depth"]), batch["aux"][0]
    xa, ya = trainers[0].to_device(pair)
    precision = base.train.precision

    def passes():
        return backbone_features(shared, x, rt, precision), backbone_features(shared, xa, rt, precision)

    def cohort_step():
        feats, feats_a = passes()
        for trainer in trainers:
            trainer.step_on(0, (feats, y), (name, feats_a, xa, ya))

    alone_ms = _timed(lambda: trainers[0].step(batch), rt, steps, warmup)
    cohort_ms = _timed(cohort_step, rt, steps, warmup)
    backbone_ms = _timed(passes, rt, steps, warmup)
    test = PreparedDataset(paths.prepared_of("nyuv2"))
    ids = SplitFile(paths.split_of("nyuv2")).test[:2]
    spec, aug = get_spec("nyuv2"), base.augment["nyuv2"]
    models = [t.model for t in trainers]
    eval_alone = _timed(lambda: evaluate(models[:1], test, ids, spec, True, aug, rt, precision), rt, max(1, steps // 4))
    eval_cohort = _timed(lambda: evaluate(models, test, ids, spec, True, aug, rt, precision), rt, max(1, steps // 4))
    if rt.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(rt.device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    vmapped = vmap_bench(models, passes()[0], rt, precision, steps, warmup) if with_vmap else None
    return CohortResult(k, alone_ms, cohort_ms, backbone_ms, eval_alone / len(ids), eval_cohort / len(ids), peak,
                        vmapped)


def cohort_lines(r: CohortResult) -> list[str]:
    per_run, eval_per_run = r.cohort_ms / r.k, r.eval_cohort_ms / r.k
    return [
        f"  cohort of {r.k} (MLDC runs differing in alpha: one depth and one auxiliary backbone pass per step)",
        f"    global step per run  alone {r.alone_ms:9.1f} ms, in the cohort {per_run:9.1f} ms  "
        f"(ratio {per_run / r.alone_ms:.2f})",
        f"    step split           backbone {r.backbone_ms:9.1f} ms (both batches), decoder + heads + updates "
        f"{r.decoder_ms:9.1f} ms per run",
        f"    evaluation per run   alone {r.eval_alone_ms:9.1f} ms, in the cohort {eval_per_run:9.1f} ms per test image "
        f"(ratio {eval_per_run / r.eval_alone_ms:.2f})",
        f"    peak memory          {r.peak_mib:9.0f} MiB",
    ] + vmap_lines(r)


def vmap_lines(r: CohortResult) -> list[str]:
    if r.vmap is None:
        return []
    if isinstance(r.vmap, str):
        return [f"    decoders batched     vmap failed ({r.vmap}); the cohort runs its decoders one after the other"]
    loop_ms, vmap_ms = r.vmap
    return [f"    decoders batched     {r.k} depth decoders + heads fwd+bwd: one after the other {loop_ms:9.1f} ms, "
            f"vmap over stacked parameters {vmap_ms:9.1f} ms (ratio {vmap_ms / loop_ms:.2f})"]


@dataclass
class Agreement:
    k: int
    precision: str
    cohort_vs_alone: float  # largest relative difference of a metrics.json value (best and final), cohort vs alone
    alone_vs_alone: float  # the same between two trainings of each run alone: the device's own run-to-run spread
    loss_vs_alone: float  # largest relative difference of a training loss at any step, cohort vs alone
    loss_alone_vs_alone: float

    def lines(self) -> list[str]:
        return [
            f"  agreement: {self.k} mini runs (MLDC on NYUv2, alphas 0.9, 0.85, ...), {self.precision}, each trained "
            "alone twice and once in one cohort; largest relative difference",
            f"    metrics.json values (best and final)  cohort vs alone {self.cohort_vs_alone:.3g}, "
            f"alone vs alone again {self.alone_vs_alone:.3g}",
            f"    training losses at every step         cohort vs alone {self.loss_vs_alone:.3g}, "
            f"alone vs alone again {self.loss_alone_vs_alone:.3g}",
        ]


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b)) if a != b else 0.0


def _differences(first: list, second: list) -> tuple[float, float]:
    """(metrics, losses): the largest relative difference between two trainings of the same runs."""
    metrics = [_relative(a.metrics[part][k], b.metrics[part][k])
               for a, b in zip(first, second) for part in ("best", "final") for k in a.metrics[part]]
    losses = [_relative(x[key], y[key]) for a, b in zip(first, second) for x, y in zip(a.curves, b.curves)
              for key in x if key.startswith("loss")]
    return max(metrics, default=0.0), max(losses, default=0.0)


def agreement(paths, raw: dict, k: int, precision: str | None, rt: Runtime) -> Agreement:
    """Train K mini runs that differ only in alpha each alone, then again alone, then together as one
    cohort (training/loop.py), on ``rt``'s device at ``precision`` (default: the mini profile's): how
    far a cohort's numbers lie from the same runs' numbers alone, beside how far two trainings alone lie
    from each other (issue 12 item 3: bit-identical on CPU in fp32, a stated tolerance in bf16 on a GPU)."""
    import tempfile
    from pathlib import Path

    from mdeaux.training.loop import Member, train_cohort, train_run

    base = bench_config(raw, "mini", "tiny")
    if precision:
        base = base.model_copy(update={"train": base.train.model_copy(update={"precision": precision})})
    cfgs = [base.model_copy(update={"alpha": round(0.9 - 0.05 * i, 2)}) for i in range(k)]
    with tempfile.TemporaryDirectory() as tmp:
        def alone(tag: str) -> list:
            return [train_run(c, f"{tag}{i}", paths, Path(tmp) / f"{tag}{i}.pt", progress=False, rt=rt)
                    for i, c in enumerate(cfgs)]

        solo, again = alone("alone"), alone("again")
        together = train_cohort([Member(c, f"cohort{i}", Path(tmp) / f"cohort{i}.pt") for i, c in enumerate(cfgs)],
                                paths, progress=False, rt=rt)
    together = [together[f"cohort{i}"] for i in range(k)]
    for r in together:
        if isinstance(r, BaseException):
            raise r
    (cohort_metrics, cohort_losses), (noise_metrics, noise_losses) = _differences(solo, together), _differences(solo, again)
    return Agreement(k, base.train.precision, cohort_metrics, noise_metrics, cohort_losses, noise_losses)


def backbone_throughput(name: str, rt: Runtime, batch: int, height: int, width: int, repeats: int) -> tuple[float, float]:
    """(images/s, achieved TFLOP/s) of the backbone forward in bf16 under inference_mode."""
    with torch.device(rt.device):
        backbone = random_backbone(name)
    x = torch.randn(batch, 3, height, width, device=rt.device)

    def forward():
        with torch.autocast(rt.device.type, dtype=torch.bfloat16):
            backbone(x)

    forward()
    ms = _timed(forward, rt, repeats)
    images_s = batch / (ms / 1000)
    return images_s, images_s * vit_flops(name, height, width) / 1e12


def peak_tflops(rt: Runtime) -> tuple[str, float | None]:
    name = torch.cuda.get_device_name(rt.device)
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return name, value
    return name, None


def report(paths, raw: dict, configs: list[str], backbone: str, steps: int, warmup: int, rt: Runtime,
           peak: float | None = None, gpu_batch: int = 16, cohort: int = 0, with_vmap: bool = False,
           agree: int = 0, precision: str | None = None):
    """The report's lines, each group yielded as soon as it is measured."""
    yield f"device {rt.device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), loader workers {rt.workers}"
    for config in configs:
        cfg = bench_config(raw, config, backbone)
        aug = cfg.augment
        what = cfg.model.backbone + (" (random weights)" if config == "real" else "")
        yield (
            f"\n[{config}] {what}, decoder {cfg.model.decoder_channels} ch, depth crop "
            f"{'x'.join(map(str, aug['nyuv2'].crop_size))}, aux crop {'x'.join(map(str, aug['ade20k'].crop_size))}, "
            f"batch {cfg.train.batch_size} + {cfg.train.batch_size}, {cfg.train.precision}"
        )
        r = run_bench(paths, raw, config, backbone, steps, warmup, rt)
        consumed = 1000 / r.step_ms
        yield from [
            f"  global step   {r.step_ms:9.1f} ms  (median of {steps}, loader in the loop)",
            f"  floor         {r.floor_ms:9.1f} ms  (backbone fwd + decoder/head fwd+bwd, depth and aux)",
            f"  overhead      {100 * r.overhead:+9.1f} %",
            f"  loader        {r.loader_steps_s:9.1f} steps/s vs {consumed:.1f} consumed ({r.loader_steps_s / consumed:.1f}x)",
            f"  peak memory   {r.peak_mib:9.0f} MiB ({'GPU allocated' if rt.device.type == 'cuda' else 'process RSS'})",
        ]
        if cohort > 1:
            yield from cohort_lines(cohort_bench(paths, raw, config, backbone, cohort, steps, warmup, rt, with_vmap))
        if config == "mini" and agree > 1:
            yield from agreement(paths, raw, agree, precision, rt).lines()
    if rt.device.type == "cuda":
        name, table_peak = peak_tflops(rt)
        peak = peak or table_peak
        crop = bench_config(raw, "real", backbone).augment["nyuv2"].crop_size
        images_s, tflops = backbone_throughput(backbone, rt, gpu_batch, crop[0], crop[1], steps)
        frac = (f", {100 * tflops / peak:.1f} % of the {peak:g} TFLOP/s bf16 peak" if peak
                else " (unknown peak: pass --peak-tflops)")
        yield (f"\n[gpu] {name}: {backbone} forward, bf16, batch {gpu_batch} at {crop[0]}x{crop[1]}: "
               f"{images_s:.1f} images/s, {tflops:.1f} TFLOP/s{frac}")


def command(paths, params, args) -> None:
    """``mdeaux bench``: print (and with ``--out`` write) the report."""
    from mdeaux import atomic

    torch.set_num_threads(params.runner.torch_threads)
    rt = Runtime.setup(args.device or params.runner.device,
                       params.runner.loader_workers if args.workers is None else args.workers, args.compile)
    configs = ["mini", "real"] if args.config == "both" else [args.config]
    raw = yaml.safe_load(paths.params.read_text())
    lines = []
    for line in report(paths, raw, configs, args.backbone, args.steps, args.warmup, rt, args.peak_tflops, args.gpu_batch,
                       args.cohort, args.vmap, args.agreement, args.precision):
        print(line, flush=True)
        lines.append(line)
    if args.out:
        atomic.write_text(args.out, "\n".join(lines) + "\n")
