"""Cohorts: runs that read the same batches train in one process with one backbone pass per batch, and
each gives exactly the numbers it gives alone (CPU, fp32, tiny world), also after a kill in the middle
of the cohort and when some of its runs are already done."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import clean_env, mdeaux

from mdeaux.params import Cohort as CohortSettings
from mdeaux.runs import cohorts
from mdeaux.training.cohort import aux_key

pytestmark = pytest.mark.slow


def listing(world: Path, store: Path) -> dict[str, tuple[str, str]]:
    """`mdeaux runs --write`: run id -> (state or cohort id, label)."""
    out = mdeaux(["runs", "--write"], world, clean_env(MDEAUX_STORE=str(store))).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[0]) == 16 and parts[1] in ("done", "cohort"):
            rows[parts[0]] = (parts[2] if parts[1] == "cohort" else "done", parts[3] if parts[1] == "cohort" else parts[2])
    return rows


def results(store: Path, run_id: str) -> dict:
    """What a run's training produced: curves, evaluations, best and final metrics, predictions."""
    run = store / "runs" / run_id
    metrics = json.loads((run / "metrics.json").read_text())
    with np.load(run / "predictions.npz") as npz:
        shown = {k: npz[k].tobytes() for k in npz.files}
    return {"curves": (run / "curves.csv").read_text(), "evals": (run / "evals.csv").read_text(),
            "best": metrics["best"], "final": metrics["final"], "best_step": metrics["best_step"], "predictions": shown}


@pytest.fixture(scope="module")
def alone(tiny_world, tmp_path_factory):
    """Every run of the tiny world's Table 3 trained by itself (training/loop.py ``train_run``, here in
    this process with one torch thread, as `mdeaux run-one` trains), its files written as run-one writes them."""
    from mdeaux.paths import Paths
    from mdeaux.runs.execute import write_result
    from mdeaux.runs.plan import load_run
    from mdeaux.runs.store import RunStore
    from mdeaux.training.loop import train_run

    store = tmp_path_factory.mktemp("alone")
    rows = listing(tiny_world, store)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDEAUX_STORE", str(store))
        paths = Paths(tiny_world)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # params.yaml runner.torch_threads
        try:
            for run_id in rows:
                folder = RunStore(paths.runs)[run_id]
                run = load_run(folder)
                write_result(folder, train_run(run.config, run_id, paths, folder / "checkpoint.pt", progress=False,
                                               n_predictions=2))  # params.yaml runner.save_predictions (mini)
        finally:
            torch.set_num_threads(threads)
    return {run_id: results(store, run_id) for run_id in rows}


def test_the_plan_puts_runs_that_share_their_batches_in_one_cohort(tiny_world, alone, tmp_path):
    rows = listing(tiny_world, tmp_path)
    assert set(rows) == set(alone) and len(rows) == 4  # baseline, MLDC, segmentation, reconstruction
    assert len({cohort for cohort, _ in rows.values()}) == 1
    cid = next(iter(rows.values()))[0]
    assert json.loads((tmp_path / "runs" / "cohorts" / cid / "members.json").read_text()) == list(rows)


def test_a_cohort_gives_each_run_its_numbers_alone_bit_for_bit(tiny_world, alone, tmp_path):
    rows = listing(tiny_world, tmp_path)
    cid = next(iter(rows.values()))[0]
    mdeaux(["run-cohort", cid, "--no-progress"], tiny_world, clean_env(MDEAUX_STORE=str(tmp_path)))
    for run_id in rows:
        assert results(tmp_path, run_id) == alone[run_id], rows[run_id]
    done = tmp_path / "runs" / "cohorts" / cid / "done.json"
    assert json.loads(done.read_text()) == list(rows)
    assert listing(tiny_world, tmp_path) == {i: ("done", label) for i, (_, label) in rows.items()}


def test_a_killed_cohort_resumes_exactly_and_a_done_run_is_not_trained_again(tiny_world, alone, tmp_path):
    rows = listing(tiny_world, tmp_path)
    cid = next(iter(rows.values()))[0]
    first = next(i for i, (_, label) in rows.items() if "baseline" in label)
    mdeaux(["run-one", first, "--no-progress"], tiny_world, clean_env(MDEAUX_STORE=str(tmp_path)))
    assert results(tmp_path, first) == alone[first]  # `mdeaux run-one` in its own process, as the fixture
    before = (tmp_path / "runs" / first / "metrics.json").stat().st_mtime_ns
    # the cohort of the runs still missing (the baseline is done): three runs that also share the aux batch
    rest = {i: r for i, r in listing(tiny_world, tmp_path).items() if r[0] != "done"}
    assert len(rest) == 3 and len({c for c, _ in rest.values()}) == 1
    cid = next(iter(rest.values()))[0]
    checkpoints = [tmp_path / "runs" / i / "checkpoint.pt" for i in rest]
    proc = subprocess.Popen([sys.executable, "-m", "mdeaux", "run-cohort", cid, "--no-progress"], cwd=tiny_world,
                            env=clean_env(MDEAUX_STORE=str(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while not all(c.exists() for c in checkpoints):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        proc.kill()  # SIGKILL in the middle of the cohort
    finally:
        proc.wait()
    steps = {torch.load(c, weights_only=True)["next_step"] for c in checkpoints}
    assert len(steps) == 1 and 0 < steps.pop() < 12  # every run checkpoints at the same step
    out = mdeaux(["run-cohort", cid, "--no-progress"], tiny_world, clean_env(MDEAUX_STORE=str(tmp_path)))
    assert out.stderr.count("resuming from") == 3
    for run_id in rows:
        assert results(tmp_path, run_id) == alone[run_id], rows[run_id]
    assert (tmp_path / "runs" / first / "metrics.json").stat().st_mtime_ns == before


def test_form_groups_by_batches_splits_evenly_and_keeps_aux_settings_together():
    from mdeaux.params import parse
    from mdeaux.runs.plan import Run, planned_configs

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params = parse({**raw, "profile": "paper"}, "params.yaml")
    configs = [c for c, _ in planned_configs(params)]
    runs = list({c.label: Run(c.label, c, {}, "code") for c in configs}.values())
    formed = cohorts.form(runs, CohortSettings(max_runs=8, memory_gb=None, backbone_memory_gb=None, run_memory_gb=None))
    assert sorted(r.id for c in formed for r in c.runs) == sorted(r.id for r in runs)  # each run once
    for cohort in formed:
        cfgs = [r.config for r in cohort.runs]
        assert len(cfgs) <= 8
        assert len({(c.depth_dataset, c.seed, c.fraction, c.model.backbone, c.model.decoder_type) for c in cfgs}) == 1
    # a group of n > cap runs is split into ceil(n / cap) parts of even size
    sizes = {}
    for cohort in formed:
        c = cohort.runs[0].config
        sizes.setdefault((c.depth_dataset, c.seed, c.fraction, c.model.backbone), []).append(len(cohort.runs))
    for parts in sizes.values():
        assert max(parts) - min(parts) <= 1
    # runs with the same auxiliary setting are consecutive within a cohort's group
    group = [r for c in formed for r in c.runs if r.config.depth_dataset == "nyuv2" and r.config.seed == 0
             and r.config.fraction == 1.0 and r.config.model.backbone == "dinov2_vitg14"]
    seen, last = set(), None
    for run in group:
        key = aux_key(run.config)
        if key != last:
            assert key not in seen, f"{key} split in two places"
            seen.add(key)
            last = key
    # the memory cap: (78 - 7) // 6 = 11 decoders fit beside the backbone
    assert CohortSettings(max_runs=16, memory_gb=78, backbone_memory_gb=7, run_memory_gb=6).cap == 11
    with pytest.raises(ValueError, match="no room for one run"):
        CohortSettings(max_runs=16, memory_gb=8, backbone_memory_gb=7, run_memory_gb=6).cap  # noqa: B018


def test_predictions_hold_the_first_test_images_their_ground_truth_and_a_prediction_each(tiny_world, alone):
    """runs/<id>/predictions.npz (runner.save_predictions = 2): the first two test ids, each image as the
    model viewed it, its ground truth (float16) and the final model's flip-TTA prediction at the ground
    truth's size (float16), from which the qualitative figures are drawn."""
    from mdeaux.data.prepare import PreparedDataset
    from mdeaux.data.split import SplitFile

    data = PreparedDataset(tiny_world / "data" / "prepared" / "nyuv2")
    ids = SplitFile(tiny_world / "data" / "splits" / "nyuv2.json").test[:2]
    for run_id, result in alone.items():
        shown = result["predictions"]
        assert set(shown) == {"ids", "image_0", "gt_0", "pred_0", "image_1", "gt_1", "pred_1"}, run_id
        assert shown["ids"] == np.array(ids).tobytes()
        for i, sample_id in enumerate(ids):
            sample = data.decode(sample_id)
            assert shown[f"image_{i}"] == sample["image"].tobytes()  # NYUv2: no resize, no crop before the model
            assert shown[f"gt_{i}"] == sample["depth"].astype(np.float16).tobytes()
            pred = np.frombuffer(shown[f"pred_{i}"], np.float16)
            assert pred.size == sample["depth"].size and np.isfinite(pred).all() and pred.min() >= np.float16(0.001)
    preds = [result["predictions"]["pred_0"] for result in alone.values()]
    assert len(set(preds)) == len(preds)  # each run its own model's prediction


def test_a_large_test_split_is_scored_on_a_subset_then_in_full(tiny_world, alone, tmp_path, monkeypatch):
    from mdeaux.paths import Paths
    from mdeaux.runs.plan import load_run
    from mdeaux.runs.store import RunStore
    from mdeaux.training.loop import train_run

    rows = listing(tiny_world, tmp_path)
    run_id = next(i for i, (_, label) in rows.items() if "/mldc+" in label)
    monkeypatch.setenv("MDEAUX_STORE", str(tmp_path))
    paths = Paths(tiny_world)
    run = load_run(RunStore(paths.runs)[run_id])
    # 3 NYUv2 test images: periodic evaluations on 2 of them, the reported ones on all 3
    cfg = run.config.model_copy(update={"train": run.config.train.model_copy(update={"periodic_eval_images": 2})})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixture trains
    try:
        result = train_run(cfg, run_id, paths, tmp_path / "checkpoint.pt", progress=False)
    finally:
        torch.set_num_threads(threads)
    m = result.metrics
    assert m["test_images"] == 3 and m["periodic"]["test_images"] == 2
    assert m["final"] == alone[run_id]["final"]  # the final model on the whole split, as without a subset
    assert [e["step"] for e in result.evals] == [6, 12]
    full = [dict(zip(*[line.split(",") for line in (alone[run_id]["evals"].splitlines()[0], row)])) for row in
            alone[run_id]["evals"].splitlines()[1:]]
    assert [e["abs_rel"] for e in result.evals] != [float(f["abs_rel"]) for f in full]  # the subset scores differ
    step = m["periodic"]["best_step"]["abs_rel"]
    assert set(m["best_step"].values()) == {step}  # every reported metric from the best subset checkpoint
    if step == 12:
        assert m["best"] == m["final"]
    else:  # the snapshot of step 6 scored on the whole split: as the run alone scored it at step 6
        assert m["best"] == {k: float(v) for k, v in full[0].items() if k != "step"}

    # train.eval_max_images: every evaluation scores only the first N test images of the split
    cfg = run.config.model_copy(update={"train": run.config.train.model_copy(update={"eval_max_images": 2})})
    torch.set_num_threads(1)
    try:
        two = train_run(cfg, run_id, paths, tmp_path / "checkpoint-2.pt", progress=False).metrics
    finally:
        torch.set_num_threads(threads)
    assert two["test_images"] == 2 and "periodic" not in two
    assert two["final"] != alone[run_id]["final"]  # same training, scored on 2 of the 3 images
