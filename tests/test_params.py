"""params.yaml schema: the repository's file loads; bad values stop with an error naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from mdeaux.params import ParamsError, load, parse, resolve_profile

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(change):
    raw = copy.deepcopy(RAW)
    change(raw)
    return raw


def test_repository_params_load_in_both_profiles():
    mini = load(ROOT / "params.yaml")
    assert mini.profile == "mini" and mini.model.backbone == "tiny"
    paper = parse(with_change(lambda r: r.update(profile="paper")))
    assert paper.model.backbone == "dinov2_vitg14"
    assert paper.train.iterations == 38400 and paper.train.warmup_iters == 12800  # DINOv2 depth config max_iters, warmup_iters
    assert paper.augment["nyuv2"].crop_size == [416, 544]
    assert paper.studies["table3"].seeds == [0, 1, 2, 3]


def test_profile_values_resolve_recursively():
    raw = {"a": {"mini": 1, "paper": 2}, "b": [{"mini": "x", "paper": "y"}], "c": {"d": 3}}
    assert resolve_profile(raw, "paper") == {"a": 2, "b": ["y"], "c": {"d": 3}}
    with pytest.raises(ParamsError, match=r"train\.x: no value for profile 'paper'"):
        resolve_profile({"train": {"x": {"mini": 1}}}, "paper")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(alpha=1.5), r"alpha: Input should be less than or equal to 1 \(got 1.5\)"),
        (lambda r: r.update(alpha=-0.1), r"alpha: Input should be greater than or equal to 0"),
        (lambda r: r.update(alpha="high"), r"alpha: Input should be a valid number \(got 'high'\)"),
        (lambda r: r["train"].update(lrr=1), r"train\.lrr: unknown key"),
        (lambda r: r["train"].update(lr="abc"), r"train\.lr: Input should be a valid number"),
        (lambda r: r["train"].update(lr=float("inf")), r"train\.lr: Input should be a finite number \(got inf\)"),
        (lambda r: r["train"].update(grad_clip=float("nan")), r"train\.grad_clip: Input should be a finite number"),
        (lambda r: r["studies"]["table3"].update(depth=["nyu"]), r"studies\.table3\.depth\[0\]: unknown dataset 'nyu'; allowed: ade20k, cityscapes, "),
        (lambda r: r["studies"]["table3"].update(aux=["nyuv2"]), r"'nyuv2' is a depth dataset; allowed here: ade20k, cityscapes, cityscapes19, cocostuff, pascal_context"),
        (lambda r: r.update(datasets=["nyuv2", "kitty"]), r"datasets\[1\]: unknown dataset 'kitty'"),
        (lambda r: r["augment"]["nyuv2"].update(crop_size=[416]), r"augment\.nyuv2\.crop_size: List should have at least 2 items"),
        (lambda r: r["augment"]["recipes"]["toolbox_nyu"].update(crop_size=[416]), r"augment\.nyuv2\.crop_size: List should have at least 2 items"),
        (lambda r: r["augment"]["ade20k"].update(rotate_prob=0.5), r"augment\.ade20k\.rotate_prob: unknown key"),
        (lambda r: r.update(profile="big"), r"profile: 'big' is not allowed; allowed: mini, paper"),
        (lambda r: r["train"].update(mldc_average="median"), r"train\.mldc_average: Input should be 'logits', 'probs' or 'sigmoid'"),
        (lambda r: r["split"].update(fractions=[0.5]), r"split\.fractions: must include 1\.0"),
        (lambda r: r["train"].update(warmup_iters={"mini": 500, "paper": 12800}), r"warmup_iters \(500\) must not exceed iterations \(36\)"),
        (lambda r: r["report"]["ours"].update(aux="mix7"), r"report\.ours\.aux \(mix7\): unknown dataset 'mix7'"),
        (lambda r: r["report"]["ours"].update(task="baseline"), r"report\.ours\.task: unknown task 'baseline'; allowed: mldc, segmentation"),
        (lambda r: r["studies"]["table3"].update(tasks=["depth"]), r"studies\.table3\.tasks: unknown task 'depth'; allowed: baseline, mldc, segmentation, reconstruction, slc"),
        (lambda r: r["studies"]["table3"].pop("render"), r"studies\.table3\.render: Field required"),
        (lambda r: r["augment"]["kitti"].update(recipe="toolbox_kitti"), r"augment\.kitti\.recipe: 'toolbox_kitti' is not a recipe; allowed: toolbox_nyu, mmseg_ade20k"),
        (lambda r: r["augment"]["ade20k"].update(recipe="toolbox_nyu"), r"augment\.ade20k\.(img_scale|ratio_range): Field required"),
    ],
)
def test_bad_values_name_the_key(change, message):
    with pytest.raises(ParamsError, match=message):
        parse(with_change(change))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("alpha: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load(tmp_path / "params.yaml")


def test_recipes_resolve_to_each_datasets_transform_settings():
    """A dataset's settings are its base recipe with its own differences; one edit of a recipe reaches
    every dataset that uses it, and a dataset's own value wins."""
    paper = parse(with_change(lambda r: r.update(profile="paper"))).augment
    # toolbox configs/_base_/datasets/nyu.py and kitti.py train pipelines
    assert paper["nyuv2"].model_dump() == {
        "resize_to": None, "kb_crop": False, "nyu_crop": True, "view_scale": 1.0, "crop_size": [416, 544], "rotate_prob": 0.5,
        "rotate_degree": 2.5, "flip_prob": 0.5, "color_prob": 0.5, "gamma_range": [0.9, 1.1],
        "brightness_range": [0.75, 1.25], "color_range": [0.9, 1.1]}
    assert paper["kitti"].model_dump() == dict(paper["nyuv2"].model_dump(), kb_crop=True, nyu_crop=False,
                                                crop_size=[352, 704], brightness_range=[0.9, 1.1])
    # mmsegmentation 0.27 configs/_base_/datasets/ade20k.py and cityscapes.py
    assert paper["ade20k"].model_dump() == {"img_scale": [2048, 512], "ratio_range": [0.5, 2.0], "crop_size": [512, 512],
                                            "cat_max_ratio": 0.75, "flip_prob": 0.5, "photometric": True}
    assert paper["cityscapes"].img_scale == [2048, 1024] and paper["cityscapes"].crop_size == [512, 1024]
    # the mini profile: the same pipeline at a quarter of the resolution (params.yaml view_scale)
    mini = parse(with_change(lambda r: None)).augment
    assert mini["nyuv2"].view_scale == 0.25 and mini["nyuv2"].crop_size == [104, 136]
    assert mini["ade20k"].img_scale == [512, 128] and mini["ade20k"].crop_size == [128, 128]
    edited = parse(with_change(lambda r: r["augment"]["recipes"]["toolbox_nyu"].update(flip_prob=0.0))).augment
    depth = [n for n, a in edited.items() if hasattr(a, "nyu_crop")]
    assert len(depth) == 7 and all(edited[n].flip_prob == 0.0 for n in depth)
    assert all(edited[n].flip_prob == 0.5 for n in edited if n not in depth)


def test_every_task_in_the_registry_reaches_studies_and_configs():
    """A task added to training/tasks.py is accepted by studies and keeps the auxiliary-only settings
    (aux_draw) in its configs without being listed anywhere else."""
    from mdeaux.runs.plan import resolve_config
    from mdeaux.training import tasks

    new = tasks.Task("depthless", "classes", tasks.TASKS["mldc"].loss, tasks.Display("New", "#000000", "x"))
    params = parse(with_change(lambda r: r["studies"]["table3"].update(tasks=["baseline", "mldc"])))
    try:
        tasks.TASKS["depthless"] = new
        raw = with_change(lambda r: r["studies"]["table3"].update(tasks=["baseline", "depthless"]))
        assert parse(raw).studies["table3"].tasks == ["baseline", "depthless"]
        cfg = resolve_config(params, depth="nyuv2", task="depthless", aux="ade20k", seed=0)
    finally:
        del tasks.TASKS["depthless"]
    assert cfg.train.aux_draw == "cycle" and cfg.train.mldc_average is None
