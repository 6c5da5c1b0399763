"""The cost model (`mdeaux runs --cost`): GPU hours alone and in cohorts, checked by hand, and the
command on a fresh paper-profile project without any data."""

import shutil

import pytest
import yaml
from conftest import ROOT, clean_env, mdeaux

from mdeaux.params import Cost, parse
from mdeaux.runs import cost
from mdeaux.runs.plan import resolve_config

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
PAPER = parse({**RAW, "profile": "paper"}, "params.yaml")
C = Cost(step_seconds=0.1, backbone_image_seconds=0.01, eval_image_seconds=0.03, eval_backbone_seconds=0.02,
         test_images={"nyuv2": 654})


def config(task="mldc", alpha=0.9, aux="ade20k"):
    if task == "baseline":
        return resolve_config(PAPER, depth="nyuv2", task="baseline", seed=0)
    return resolve_config(PAPER, depth="nyuv2", task=task, aux=aux, seed=0, alpha=alpha)


def test_a_run_alone_by_hand():
    cfg = config()
    it, every, batch = cfg.train.iterations, cfg.train.eval_every, cfg.train.batch_size
    assert (it, every, batch) == (38400, 800, 2)  # params.yaml paper profile (DINOv2 NYU DPT config)
    h = cost.alone(cfg, C, 654)
    assert h.train == pytest.approx(38400 * 0.1 / 3600)
    assert h.eval == pytest.approx(48 * 654 * 0.03 / 3600)  # 48 evaluations of the 654 images
    base = cost.alone(config("baseline"), C, 654)
    # the baseline: one backbone pass (2 images) and half of the run's own part (0.1 - 4 x 0.01)
    assert base.train == pytest.approx(38400 * (2 * 0.01 + 0.06 / 2) / 3600)


def test_a_cohort_pays_each_distinct_batch_once():
    runs = [config(alpha=0.9), config(alpha=0.8), config(task="segmentation"), config("baseline")]
    h = cost.together(runs, C, 654)
    # depth batch + one auxiliary batch (ADE20K, same draw for all three auxiliary runs): 2 passes of 2 images;
    # own parts: 3 x 0.06 + 0.03 (baseline)
    assert h.train == pytest.approx(38400 * (2 * 2 * 0.01 + 3 * 0.06 + 0.03) / 3600)
    # per test image: the backbone once, each run's decoder (0.03 - 0.02) four times
    assert h.eval == pytest.approx(48 * 654 * (0.02 + 4 * 0.01) / 3600)
    mixed = cost.together([config(aux="ade20k"), config(aux="voc")], C, 654)
    assert mixed.train == pytest.approx(38400 * (3 * 2 * 0.01 + 2 * 0.06) / 3600)  # two auxiliary batches
    with pytest.raises(ValueError, match="must exceed the two backbone passes"):
        cost.alone(config(), C.model_copy(update={"step_seconds": 0.03}), 654)


def test_cost_needs_no_data_and_counts_the_published_test_sizes(tmp_path):
    project = tmp_path / "fresh"
    project.mkdir()
    shutil.copy2(ROOT / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump({**RAW, "profile": "paper"}, sort_keys=False))
    out = mdeaux(["runs", "--cost"], project, clean_env(MDEAUX_STORE=str(tmp_path / "store"))).stdout
    assert not (project / "data").exists()
    assert "800 run(s) planned (paper profile)" in out, out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "498000 test images" in rows["taskonomy"] and "19200 test images" in rows["matterport3d"], out
    total = next(line for line in out.splitlines() if line.startswith("all studies"))
    assert total.split()[2:4] == ["1012", "800"], total  # README: the paper profile, 800 runs for 1,012 study cells
    solo, grouped, ratio = float(total.split()[5]), float(total.split()[9]), float(total.split()[-1])
    assert grouped < solo and ratio == pytest.approx(grouped / solo, abs=0.006)
    assert "missing runs" not in out  # nothing can be planned against data yet


def test_paper_test_sizes_cover_every_depth_dataset():
    depth = {name for study in PAPER.studies.values() for name in study.depth}
    assert depth <= set(PAPER.runner.cost.test_images)
    with pytest.raises(ValueError, match="part of eval_image_seconds"):
        Cost(**{**C.model_dump(), "eval_backbone_seconds": 0.05})



def test_the_mini_grid_has_the_run_and_cell_counts_the_readme_states(tmp_path):
    project = tmp_path / "fresh"
    project.mkdir()
    shutil.copy2(ROOT / "dvc.yaml", project / "dvc.yaml")
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    out = mdeaux(["runs", "--cost"], project, clean_env(MDEAUX_STORE=str(tmp_path / "store"))).stdout
    assert "37 run(s) planned (mini profile)" in out, out
    total = next(line for line in out.splitlines() if line.startswith("all studies"))
    assert total.split()[2:4] == ["48", "37"], total  # README: 37 runs for 48 study cells
