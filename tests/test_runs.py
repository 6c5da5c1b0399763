"""Run ids: stable for the same inputs, new for a changed parameter, data version, backbone weights or training code."""

import copy
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mdeaux.params import parse
from mdeaux.paths import Paths
from mdeaux.runs import ids
from mdeaux.runs import plan as runs
from mdeaux.runs.store import RunDir, RunStore

ROOT = Path(__file__).resolve().parents[1]
FULL = yaml.safe_load((ROOT / "params.yaml").read_text())
# the first slice: Table 3's NYUv2 row with ADE20K as the auxiliary set
RAW = copy.deepcopy(FULL)
RAW["studies"] = {"table3": dict(FULL["studies"]["table3"], depth=["nyuv2"], aux=["ade20k"])}


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("MDEAUX_STORE", raising=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(RAW))
    paths = Paths(tmp_path)
    for name in ("nyuv2", "ade20k"):
        set_data(paths, name, f"{name}-v1")
    set_weights(paths, "v1")
    return paths


def set_weights(paths, version):
    """The pretrained tiny ViT the mini profile loads (model.weights_dir), as far as planning reads it: its manifest."""
    paths.pretrained.mkdir(parents=True, exist_ok=True)
    files = {n: {"sha256": hashlib.sha256(f"{n}-{version}".encode()).hexdigest(), "size": 1}
             for n in ("config.json", "model.safetensors")}
    (paths.pretrained / "MANIFEST.json").write_text(json.dumps({"files": files, "commit": version}))


def set_data(paths, name, version, fractions=None):
    paths.prepared_of(name).mkdir(parents=True, exist_ok=True)
    (paths.prepared_of(name) / "manifest.json").write_text(json.dumps({"data_version": version}))
    paths.splits.mkdir(parents=True, exist_ok=True)
    fractions = fractions or {"1.0": [f"{name}/a", f"{name}/b"]}
    paths.split_of(name).write_text(json.dumps({"dataset": name, "fractions": fractions, "test": [f"{name}/t"],
                                                "data_version": version}))


def params(**changes):
    raw = copy.deepcopy(RAW)
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return parse(raw)


def study_counts(planned) -> dict[str, int]:
    return dict(Counter(s for r in planned for s in r.studies))


def ids_by_label(paths, p):
    return {r.label: r.id for r in runs.plan(paths, p, write=False)}


def test_plan_slice_and_stable_ids(project):
    first = ids_by_label(project, params())
    # NYUv2: the baseline and each auxiliary task, two seeds each
    assert sorted(first) == [
        "nyuv2/baseline/a1/s0", "nyuv2/baseline/a1/s1",
        "nyuv2/mldc+ade20k/a0.9/s0", "nyuv2/mldc+ade20k/a0.9/s1",
        "nyuv2/reconstruction+ade20k/a0.9/s0", "nyuv2/reconstruction+ade20k/a0.9/s1",
        "nyuv2/segmentation+ade20k/a0.9/s0", "nyuv2/segmentation+ade20k/a0.9/s1",
    ]  # fmt: skip
    assert ids_by_label(project, params()) == first
    assert len(set(first.values())) == 8


def test_alpha_changes_only_auxiliary_runs(project):
    before = ids_by_label(project, params())
    after = {label.replace("a0.8", "a0.9"): rid for label, rid in ids_by_label(project, params(alpha=0.8)).items()}
    for label in before:
        same = before[label] == after[label]
        assert same == ("baseline" in label), label


def test_aux_only_parameter_does_not_touch_baselines(project):
    before = ids_by_label(project, params())
    after = ids_by_label(project, params(**{"train.mldc_average": "probs"}))
    assert {k for k in before if before[k] != after[k]} == {k for k in before if "mldc" in k}


def test_shared_parameter_changes_every_run(project):
    before = ids_by_label(project, params())
    after = ids_by_label(project, params(**{"train.lr": 2e-4}))
    assert all(before[k] != after[k] for k in before)


def test_data_version_changes_the_runs_that_read_it(project):
    before = ids_by_label(project, params())
    set_data(project, "ade20k", "ade20k-v2")
    after = ids_by_label(project, params())
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {k for k in before if "ade20k" in k}


def test_the_backbone_weights_change_every_run(project):
    before = ids_by_label(project, params())
    set_weights(project, "v2")  # the pretrain stage wrote other weights (`mdeaux weights`: another commit)
    after = ids_by_label(project, params())
    assert all(before[k] != after[k] for k in before)
    set_weights(project, "v1")
    assert ids_by_label(project, params()) == before
    random = ids_by_label(project, params(**{"model.weights_dir": None}))  # a random tiny ViT: no weights to read
    assert not set(random.values()) & set(before.values())
    shutil.rmtree(project.pretrained)
    assert ids_by_label(project, params(**{"model.weights_dir": None})) == random
    with pytest.raises(FileNotFoundError, match="models/tiny-pretrained.*`dvc repro pretrain`"):
        ids_by_label(project, params())


def test_only_the_ids_a_run_reads_are_in_its_id(project):
    before = ids_by_label(project, params())
    # another fraction in the split file: no run reads it, no id changes
    set_data(project, "nyuv2", "nyuv2-v1", {"0.5": ["nyuv2/a"], "1.0": ["nyuv2/a", "nyuv2/b"]})
    assert ids_by_label(project, params()) == before
    # a different set of training ids for the fraction the runs read: every NYU run changes
    set_data(project, "nyuv2", "nyuv2-v1", {"1.0": ["nyuv2/a", "nyuv2/c"]})
    after = ids_by_label(project, params())
    assert all(before[k] != after[k] for k in before)


def copy_training_code(dest: Path) -> Path:
    for f in ids.training_modules():
        target = dest / f.relative_to(ids.PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_run_ids_follow_the_behaviour_of_the_training_code(project, tmp_path, monkeypatch):
    """Comments, docstrings, a moved module and task display keep every id; a behaviour change does not."""
    before = ids_by_label(project, params())
    pkg = copy_training_code(tmp_path / "pkg")
    monkeypatch.setattr(ids, "PACKAGE", pkg)
    assert ids_by_label(project, params()) == before  # an identical copy: same ids
    losses = pkg / "training" / "losses.py"
    edit(losses, '"""Training losses:', '"""The training losses (reworded):')  # a docstring
    edit(losses, "import torch\n", "import torch  # a comment\n\n\n")  # a comment and blank lines
    edit(pkg / "training" / "tasks.py", '"#1f77b4"', '"#000000"')  # how reports draw MLDC
    # a module moved: losses.py becomes training/objectives/depth.py, and every import follows it
    (pkg / "training" / "objectives").mkdir()
    losses.rename(pkg / "training" / "objectives" / "depth.py")
    for f in pkg.rglob("*.py"):
        f.write_text(f.read_text().replace("mdeaux.training.losses", "mdeaux.training.objectives.depth"))
    assert ids_by_label(project, params()) == before
    # a change of behaviour: DINOv2 GradientLoss's scales
    edit(pkg / "training" / "objectives" / "depth.py", "GRADIENT_LOSS_STRIDES = (1, 2, 4, 6)", "GRADIENT_LOSS_STRIDES = (1, 2, 4)")
    after = ids_by_label(project, params())
    assert all(before[k] != after[k] for k in before)


def test_code_outside_the_training_modules_keeps_ids():
    modules = {f.relative_to(ids.PACKAGE).as_posix() for f in ids.training_modules()}
    assert {"training/scheme.py", "training/losses.py", "model/dpt.py", "data/prepare.py", "data/datasets/registry.py"} <= modules
    assert not modules & {"cli.py", "runs/plan.py", "report/build.py", "data/validate.py", "model/weights.py", "params.py"}


def test_studies_sharing_a_run_train_it_once(project):
    raw = copy.deepcopy(RAW)
    raw["studies"]["table3"]["tasks"] = ["baseline", "mldc"]
    raw["studies"]["other"] = {"title": "x", "render": "table", "depth": ["nyuv2"], "aux": ["ade20k"], "tasks": ["baseline", "mldc"],
                               "seeds": {"mini": [1, 2], "paper": [0]}}
    planned = runs.plan(project, parse(raw), write=True)
    labels = sorted(r.label for r in planned)
    # seeds 0,1 (table3) and 1,2 (other): seed 1 is shared -> 3 seeds x 2 tasks = 6 runs, not 8
    assert len(runs.planned_configs(parse(raw))) == 8 and len(planned) == 6
    assert study_counts(planned) == {"table3": 4, "other": 4}
    shared = [r for r in planned if r.config.seed == 1]
    assert all(set(r.studies) == {"table3", "other"} for r in shared)
    assert labels[0] == "nyuv2/baseline/a1/s0"
    for r in planned:  # configs and studies written for Snakemake jobs
        folder = RunStore(project.runs)[r.id]
        assert folder.read_json(RunDir.CONFIG)["id"] == r.id and folder.studies() == list(r.studies)
        assert runs.load_run(folder) == r


def test_missing_prepared_data_says_what_to_run(project):
    (project.prepared_of("nyuv2") / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="dvc repro prepare"):
        runs.plan(project, params(), write=False)


def test_a_split_file_of_other_prepared_data_is_refused(project):
    doc = json.loads(project.split_of("ade20k").read_text())
    (project.prepared_of("ade20k") / "manifest.json").write_text(json.dumps({"data_version": "ade20k-v2"}))  # prepared again
    with pytest.raises(ValueError, match=r"ade20k.json was written for data version ade20k-v1 of ade20k, but .* holds "
                                         r"version ade20k-v2: run `dvc repro split`"):
        runs.plan(project, params(), write=False)
    project.split_of("ade20k").write_text(json.dumps({**doc, "data_version": "ade20k-v2"}))
    assert runs.plan(project, params(), write=False)


def test_every_study_of_the_mini_profile_expands_and_dedups(project):
    p = parse(copy.deepcopy(FULL))
    for name in p.datasets:
        set_data(project, name, f"{name}-v1", {k: [f"{name}/a"] for k in ("0.2", "0.5", "1.0")})
    planned = runs.plan(project, p, write=False)
    counts = study_counts(planned)
    configs = runs.planned_configs(p)
    assert set(counts) == set(p.studies) and len(planned) < len(configs)
    by_label = {r.label: r for r in planned}
    assert len(by_label) == len(planned)  # labels tell runs apart
    # the NYUv2 baseline is shared by every study that has one
    base = by_label["nyuv2/baseline/a1/s0"]
    assert set(base.studies) == {n for n, s in p.studies.items() if "nyuv2" in s.depth and "baseline" in s.tasks and not s.model}
    # axes reach the configs: alpha sweep, fractions, gamma, beta, MIX6, Depth Anything, single-label
    assert by_label["nyuv2/mldc+mix6/a0.5/s0"].config.alpha == 0.5
    assert by_label["nyuv2/mldc+mix6/a0.9/f0.2/s0"].config.fraction == 0.2
    assert by_label["nyuv2/baseline/a1g2/s0"].config.gamma == 2.0
    beta = by_label["nyuv2/mldc+mix6/b0.05/s0"].config
    assert beta.beta == 0.05 and beta.alpha is None
    assert by_label["nyuv2/mldc+mix6/a0.9/s0"].config.aux_datasets == p.aux_sets["mix6"]
    assert by_label["nyuv2/depth-anything/mldc+mix6/a0.9/s0"].config.model.decoder_type == "depth_anything"
    assert "nyuv2/slc+mix6/a0.9/s0" in by_label and "nyuv2/mldc+ade20k/a0.9/s0" in by_label


def test_alpha_experiment_retrains_exactly_the_alpha_dependent_runs(project):
    p, q = parse(copy.deepcopy(FULL)), None
    for name in p.datasets:
        set_data(project, name, f"{name}-v1", {k: [f"{name}/a"] for k in ("0.2", "0.5", "1.0")})
    raw = copy.deepcopy(FULL)
    raw["alpha"] = 0.8
    q = parse(raw)
    before = {r.id for r in runs.plan(project, p, write=False)}
    after = runs.plan(project, q, write=False)
    new = [r for r in after if r.id not in before]
    # alpha-dependent: auxiliary-task runs of studies without their own alpha or beta list
    dependent = [r for r in after if r.config.alpha == 0.8]
    assert {r.id for r in new} == {r.id for r in dependent} and len(new) > 0
    assert all(r.config.alpha == 0.8 for r in new)


def test_bad_study_axes_are_refused():
    raw = copy.deepcopy(FULL)
    raw["studies"]["fig4_fraction"]["fraction"] = [0.3]
    with pytest.raises(Exception, match="0.3 is not in split.fractions"):
        parse(raw)
    raw = copy.deepcopy(FULL)
    raw["studies"]["table3"]["aux"] = ["mix7"]
    with pytest.raises(Exception, match="mix7"):
        parse(raw)
    raw = copy.deepcopy(FULL)
    raw["studies"]["fig5_beta"]["alpha"] = [0.9]
    with pytest.raises(Exception, match="either `alpha` or `beta`"):
        parse(raw)


def test_only_run_and_cohort_ids_of_the_store_form_are_accepted(tiny_world, tmp_path):
    """Issue 13 #7: `run-one ../../x` read a config outside the store and wrote a run there."""
    from conftest import clean_env, mdeaux

    store = RunStore(tmp_path / "runs")
    for bad in ("../../x", "0123456789abcdeg", "0123456789ABCDEF", "0123456789abcde"):
        with pytest.raises(ValueError, match="is not a run id"):
            store[bad]
        with pytest.raises(ValueError, match="is not a cohort id"):
            store.cohort(bad)
    for command in ("run-one", "run-cohort"):
        out = mdeaux([command, "../../x"], tiny_world, clean_env(MDEAUX_STORE=str(tmp_path)), check=False)
        assert out.returncode == 1 and "'../../x' is not a" in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
    assert not (tmp_path.parent / "x").exists()
