"""validate_dataset: GX suite over the stats table, results.json + offline index.html, ValidationError."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import yaml
from test_prepare import H, W, depth_mm, make_ade, make_nyu, prep

from mdeaux.data.datasets.registry import ADE20K, NYUV2
from mdeaux.data.validate import ValidationError, validate_dataset

# the tiny hand-made NYU samples are 6x8, not the official 480x640
NYU_TINY = replace(NYUV2, image_sizes=((6, 8),))


def _report(out):
    results = json.loads((out / "results.json").read_text())
    page = (out / "index.html").read_text()
    assert not re.search(r"https?://", page), "the report must render offline"
    assert "<script" not in page
    assert '<a href="../../index.html">' in page  # reports/validation/<ds>/ links back to reports/index.html
    return results, page


def _failed(results):
    return {r["column"] or r["condition"]: r for r in results["expectations"] if not r["success"]}


def test_good_depth_dataset_passes(tmp_path):
    make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    results = validate_dataset(
        NYU_TINY, tmp_path / "prep", tmp_path / "report", expected_counts={"train": 3, "test": 2}, max_depth_sanity=10
    )
    assert results["success"] and results["counts"] == {"train": 3, "test": 2}
    on_disk, page = _report(tmp_path / "report")
    assert on_disk["success"] is True
    assert len(on_disk["expectations"]) >= 10
    assert "PASSED" in page and "nyuv2" in page and "FAIL</td>" not in page


def test_corrupted_jpeg_stops_validation_naming_sample(tmp_path):
    sid = "kitchen_0001a/rgb_00001"
    make_nyu(tmp_path / "raw", images={sid: b"\xff\xd8 truncated"})
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError, match=rf"^nyuv2: 1 sample\(s\) failed to decode: {sid} \(image: "):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    results, page = _report(tmp_path / "report")
    assert results["success"] is False
    failed = _failed(results)
    assert list(failed) == ["decode_error"]
    assert [o["id"] for o in failed["decode_error"]["offending"]] == [sid]
    assert failed["decode_error"]["unexpected_count"] == 1
    assert sid in page and "FAILED" in page


def test_depth_shape_mismatch_names_sample(tmp_path):
    sid = "bathroom_0003/rgb_00002"
    make_nyu(tmp_path / "raw", depth_maps={sid: depth_mm(7, shape=(H, W + 2))})
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError) as err:
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    message = str(err.value)
    assert f"have depth width != image width: {sid} (depth {H}x{W + 2}, image {H}x{W})" in message
    assert "kitchen_0001a" not in message and "height" not in message
    failed = _failed(_report(tmp_path / "report")[0])
    assert list(failed) == ["depth_width"]
    assert failed["depth_width"]["offending"] == [
        {"id": sid, "split": "test", "detail": f"depth {H}x{W + 2}, image {H}x{W}"}
    ]


def test_depth_range_and_valid_fraction(tmp_path):
    far, empty = "kitchen_0001a/rgb_00002", "kitchen_0001a/rgb_00003"
    far_map = depth_mm(1)
    far_map[2, 2] = 60000  # 60 m
    make_nyu(tmp_path / "raw", depth_maps={far: far_map, empty: np.zeros((H, W), np.uint16)})
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError) as err:
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report", max_depth_sanity=20)
    message = str(err.value)
    assert f"have depth above 20 m: {far} (depth_max 60 m)" in message
    assert f"valid depth pixels (0.001 < d < 10.0 m): {empty} (valid fraction 0)" in message
    assert set(_failed(_report(tmp_path / "report")[0])) == {"depth_max", "depth_valid_frac"}
    # without the sanity bound only the empty map fails
    with pytest.raises(ValidationError) as err:
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    assert far not in str(err.value)


def test_row_counts_per_split(tmp_path):
    make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError, match=r"train split: expected 24231 sample\(s\), found 3"):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report", expected_counts={"train": 24231, "test": 2})
    failed = _failed(_report(tmp_path / "report")[0])
    assert list(failed) == ["train"] and failed["train"]["observed_value"] == 3
    with pytest.raises(ValueError, match="unknown split"):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report", expected_counts={"val": 1})


def test_label_id_out_of_range_names_sample(tmp_path):
    bad = "training/ADE_train_00000002"
    lab = np.full((H, W), 3, np.uint8)
    lab[4, 4] = 201  # -> class 200 >= 150
    make_ade(tmp_path / "raw", labels={bad: lab})
    prep(ADE20K, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError) as err:
        validate_dataset(ADE20K, tmp_path / "prep", tmp_path / "report")
    message = str(err.value)
    assert message.startswith("ade20k: ")
    assert f"have a class id >= num_classes (150): {bad} (label_max 200)" in message
    assert f"{bad} (1 bad pixels, label_max 200)" in message
    assert "ADE_train_00000001" not in message
    results, page = _report(tmp_path / "report")
    assert set(_failed(results)) == {"label_max", "label_bad_count"}
    assert bad in page


def test_good_segmentation_dataset_passes_and_label_shape_checked(tmp_path):
    make_ade(tmp_path / "raw")
    prep(ADE20K, tmp_path / "raw", tmp_path / "prep")
    assert validate_dataset(ADE20K, tmp_path / "prep", tmp_path / "report")["success"]

    sid = "validation/ADE_val_00000001"
    make_ade(tmp_path / "raw2", labels={sid: np.full((H + 1, W), 4, np.uint8)})
    prep(ADE20K, tmp_path / "raw2", tmp_path / "prep2")
    with pytest.raises(ValidationError, match=rf"label height != image height: {sid}"):
        validate_dataset(ADE20K, tmp_path / "prep2", tmp_path / "report")


def test_missing_prepared_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="mdeaux prepare nyuv2"):
        validate_dataset(NYU_TINY, tmp_path / "nothing", tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_undecodable_depth_reported_once(tmp_path):
    sid = "kitchen_0001a/rgb_00003"
    make_nyu(tmp_path / "raw")
    (tmp_path / "raw" / "nyu" / "kitchen_0001a" / "sync_depth_00003.png").write_bytes(b"\x89PNG broken")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError, match=rf"1 sample\(s\) failed to decode: {sid} \(depth: "):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    assert list(_failed(_report(tmp_path / "report")[0])) == ["decode_error"]  # null stats skip other checks


def test_image_size_other_than_the_official_one_is_flagged(tmp_path):
    make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError, match=r"image height other than the official 480 px"):
        validate_dataset(NYUV2, tmp_path / "prep", tmp_path / "report")


def test_a_failed_validation_stops_split_runs_and_run_one(tiny_world, tmp_path):
    """Issue 13 #7: outside DVC's stage order, `mdeaux split`, `runs` and `run-one` must not use data
    whose validation failed."""
    from conftest import clean_env, mdeaux
    from test_snakemake import project

    root = project(tiny_world, tmp_path / "world", tasks=["baseline"])
    env = clean_env(MDEAUX_STORE=str(tmp_path / "store"))
    run_id = next(line.split()[0] for line in mdeaux(["runs", "--write"], root, env).stdout.splitlines()
                  if len(line.split()) > 1 and line.split()[1] == "cohort")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["validate"]["max_depth_sanity"] = 0.5  # every NYUv2 depth above it: the real validation fails
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    failed = mdeaux(["validate"], root, env, check=False)  # as the validate stage runs it: every dataset
    assert failed.returncode != 0 and json.loads((root / "reports/validation/nyuv2/results.json").read_text())["success"] is False
    # the failure does not stop the other datasets' validation; the stage fails at the end naming it
    assert json.loads((root / "reports/validation/ade20k/results.json").read_text())["success"] is True
    assert "1 of 2 dataset(s) failed validation:\nnyuv2: " in failed.stderr, failed.stderr[-2000:]
    reason = failed.stderr.split("failed validation:\nnyuv2: ")[1].splitlines()[0]
    assert failed.stderr.count(reason) == 1, failed.stderr[-2000:]  # the reason is printed once, at the end
    assert "nyuv2: validation failed (the reason follows at the end)" in failed.stderr
    for args in (["split"], ["runs"], ["run-one", run_id, "--no-progress"]):
        out = mdeaux(args, root, env, check=False)
        assert out.returncode != 0, args
        assert "nyuv2: the prepared data (version" in out.stderr and "failed validation" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "store" / "runs" / run_id / "checkpoint.pt").exists()


@pytest.mark.parametrize("bad, mode", [(np.full((H, W), 40, np.uint8), "L"), (np.full((H, W, 3), 40, np.uint8), "RGB")])
def test_an_8_bit_or_rgb_png_as_depth_fails_naming_the_sample(tmp_path, bad, mode):
    """Issue 13 #4: an 8-bit PNG stored as NYUv2 depth decoded to 0.04 m and validated; an RGB one
    validated and crashed training without naming the sample."""
    sid = "kitchen_0001a/rgb_00002"
    make_nyu(tmp_path / "raw", depth_maps={sid: bad})
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError, match=rf"failed to decode: {sid} \(depth: ValueError: nyuv2: depth PNG has mode "
                                              rf"'{mode}', expected single-channel 16-bit"):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")


def test_a_depth_map_without_any_far_reading_fails(tmp_path):
    near = "kitchen_0001a/rgb_00003"
    make_nyu(tmp_path / "raw", depth_maps={near: np.full((H, W), 180, np.uint16)})  # 0.18 m everywhere
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError) as err:
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report", min_depth_max_sanity=1.0)
    assert f"have no depth beyond 1.0 m: {near} (depth_max 0.18 m)" in str(err.value)
    assert "rgb_00001" not in str(err.value)


def test_negative_depth_with_mask_1_reaches_the_negative_depth_check():
    """Issue 13 #4: depth_min was taken over pixels > 0, so DIODE depth of -5 m under mask 1 passed."""
    import io

    from mdeaux.data.datasets.lidar_depth import DIODE_INDOOR, decode_diode_depth, pack_diode_depth
    from mdeaux.data.prepare import _depth_stats

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    depth = np.full((4, 5), 3.0, np.float32)
    depth[1, 1] = -5.0
    mask = np.ones((4, 5), np.float32)
    stats = _depth_stats(DIODE_INDOOR, decode_diode_depth(pack_diode_depth(npy(depth), npy(mask))))
    assert stats["depth_min"] == -5.0 and stats["depth_max"] == 3.0


def test_non_finite_depth_is_counted_and_fails_validation_naming_the_sample(tmp_path):
    """A decoder that yields nan or inf (a float depth format such as DIODE's .npy): prepare records it
    (depth_finite False, the statistics over the finite readings), and validation fails naming the sample."""
    from mdeaux.data.prepare import _depth_stats

    depth = np.full((4, 5), 3.0, np.float32)
    depth[0, 0], depth[0, 1] = np.nan, np.inf
    stats = _depth_stats(NYUV2, depth)
    assert stats["depth_finite"] is False and (stats["depth_min"], stats["depth_max"]) == (3.0, 3.0)
    bad = "kitchen_0001a/rgb_00002"
    make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    def non_finite(table):
        table.loc[table["id"] == bad, "depth_finite"] = False  # what prepare writes for such a map
        return table

    _edit_stats(tmp_path / "prep", non_finite)
    with pytest.raises(ValidationError, match=rf"have non-finite depth values: {bad}"):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    assert set(_failed(_report(tmp_path / "report")[0])) == {"depth_finite"}


# -- found by mutation testing (make mutate; docs/mutation.md) --------------------------------------------
def test_refuse_if_failed_only_for_a_failed_report_of_this_data_version(tmp_path):
    from mdeaux.data.validate import refuse_if_failed

    report = tmp_path / "nyuv2"
    refuse_if_failed(report, "nyuv2", "b" * 32)  # never validated: nothing to refuse
    report.mkdir()
    for version, success in (("a" * 32, False), ("c" * 32, False), ("b" * 32, True)):  # other versions sort both sides
        (report / "results.json").write_text(json.dumps({"data_version": version, "success": success}))
        refuse_if_failed(report, "nyuv2", "b" * 32)
    (report / "results.json").write_text(json.dumps({"data_version": "b" * 32, "success": False}))
    with pytest.raises(ValidationError, match=rf"^nyuv2: the prepared data \(version {'b' * 12}\) failed validation "
                                              rf"\(report: {re.escape(str(report / 'index.html'))}\); fix the data"):
        refuse_if_failed(report, "nyuv2", "b" * 32)
    (report / "results.json").write_text('{"data_version": ')
    with pytest.raises(ValidationError, match=rf"^{re.escape(str(report / 'results.json'))}: unreadable validation results"):
        refuse_if_failed(report, "nyuv2", "b" * 32)


def test_offenders_beyond_the_listed_ones_are_counted(tmp_path, monkeypatch, capfd):
    import mdeaux.data.validate as V

    empty = np.zeros((H, W), np.uint16)
    # listed, bad, more: 3 - 2 and 2 - 1 give 1, where >>, &, /, ^ and % give 0, 2, 1.5, 3 and 0 in one of them
    for listed, n_bad, more in ((2, 2, None), (2, 3, 1), (1, 2, 1)):
        monkeypatch.setattr(V, "MAX_OFFENDERS", listed)
        raw, prepared = tmp_path / f"raw{listed}{n_bad}", tmp_path / f"prep{listed}{n_bad}"
        make_nyu(raw, depth_maps={f"kitchen_0001a/rgb_0000{k}": empty for k in range(1, n_bad + 1)})
        prep(NYUV2, raw, prepared)
        with pytest.raises(ValidationError) as err:
            validate_dataset(NYU_TINY, prepared, tmp_path / "report")
        page = _report(tmp_path / "report")[1]
        assert f"{n_bad} sample(s) have less than 5% valid depth pixels" in str(err.value)
        assert f"{n_bad} of 5 unexpected" in page
        if more is None:
            assert "more" not in str(err.value) and "more</li>" not in page
        else:
            assert str(err.value).endswith(f"(valid fraction 0), ... and {more} more (report: {tmp_path / 'report' / 'index.html'})")
            assert f"<li>… and {more} more</li>" in page
    # a per-sample check reads "samples that ...", a count check states its condition and what it observed
    assert "<td>samples that have less than 5% valid depth pixels" in page
    assert "<td>samples that train split" not in page
    assert "Calculating Metrics" not in capfd.readouterr().err  # no GX progress bars: DAG logs stay readable


def test_count_check_on_the_page(tmp_path):
    make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(ValidationError):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report", expected_counts={"train": 4, "test": 2})
    page = _report(tmp_path / "report")[1]
    assert "<td>train split: expected 4 sample(s)<br>" in page and "<td>observed 3</td>" in page
    # counts for some of the splits only: the others are not checked
    assert validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report", expected_counts={"train": 3})["success"]


def test_at_most_twenty_offenders_listed():
    from types import SimpleNamespace

    import pandas as pd

    from mdeaux.data.validate import Check, _summarise

    df = pd.DataFrame({"id": [f"s{k}" for k in range(25)], "split": ["train"] * 25})
    result = SimpleNamespace(result={"unexpected_count": 25, "unexpected_index_list": list(range(25))},
                             exception_info={}, success=False, expectation_config=SimpleNamespace(type="expect_x"))
    record = _summarise(Check(None, "are bad", "id"), result, df)
    assert [o["id"] for o in record["offending"]] == [f"s{k}" for k in range(20)] and record["unexpected_count"] == 25


def test_the_bounds_of_valid_depth_and_labels(tmp_path):
    near = depth_mm(1)
    near[3, 3] = 500  # 0.5 m: a reading below 1 m is not negative
    make_nyu(tmp_path / "nyu", depth_maps={"kitchen_0001a/rgb_00001": near})
    prep(NYUV2, tmp_path / "nyu", tmp_path / "nyu_prep")
    assert validate_dataset(NYU_TINY, tmp_path / "nyu_prep", tmp_path / "report")["success"]
    # ADE20K: raw 150 -> class 149, the last one (reduce_zero_label); raw 151 -> 150 fails both label checks
    for raw_id, ok in ((150, True), (151, False)):
        lab = np.full((H, W), 3, np.uint8)
        lab[2, 2] = raw_id
        make_ade(tmp_path / f"ade{raw_id}", labels={"training/ADE_train_00000001": lab})
        prep(ADE20K, tmp_path / f"ade{raw_id}", tmp_path / f"ade{raw_id}_prep")
        if ok:
            assert validate_dataset(ADE20K, tmp_path / f"ade{raw_id}_prep", tmp_path / "report")["success"]
        else:
            with pytest.raises(ValidationError, match=r"have a class id >= num_classes \(150\): training/ADE_train_00000001 \(label_max 150\)"):
                validate_dataset(ADE20K, tmp_path / f"ade{raw_id}_prep", tmp_path / "report")
            assert set(_failed(_report(tmp_path / "report")[0])) == {"label_max", "label_bad_count"}


def _edit_stats(prepared, edit):
    """Rewrite prepared/stats.parquet through ``edit(table) -> table`` (what prepare would write for bad data)."""
    import pyarrow.parquet as pq

    path = prepared / "stats.parquet"
    table = edit(pq.read_table(path).to_pandas())
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)


def test_stats_that_fail_the_lower_bounds_or_cannot_be_checked(tmp_path):
    make_nyu(tmp_path / "raw")
    prep(NYUV2, tmp_path / "raw", tmp_path / "prep")
    bad = "kitchen_0001a/rgb_00002"

    def negative(t):
        t.loc[t["id"] == bad, "depth_min"] = -0.5  # a reading of -0.5 m
        return t

    _edit_stats(tmp_path / "prep", negative)
    with pytest.raises(ValidationError, match=rf"1 sample\(s\) have negative depth: {bad} \(depth_min -0.5 m\)"):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    _edit_stats(tmp_path / "prep", lambda t: t[t["split"] != "test"])  # no test sample at all
    with pytest.raises(ValidationError, match=r"test split: expected >= 1 sample\(s\), found 0"):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    _edit_stats(tmp_path / "prep", lambda t: t.drop(columns=["depth_valid_frac"]))
    with pytest.raises(ValidationError, match=r"expectation expect_column_values_to_be_between on depth_valid_frac could not run: "):
        validate_dataset(NYU_TINY, tmp_path / "prep", tmp_path / "report")
    assert "error: " in _report(tmp_path / "report")[1]


def test_a_prepared_folder_of_another_dataset_is_refused(tmp_path):
    make_nyu(tmp_path / "nyu")
    prep(NYUV2, tmp_path / "nyu", tmp_path / "nyu_prep")
    make_ade(tmp_path / "ade")
    prep(ADE20K, tmp_path / "ade", tmp_path / "ade_prep")
    for spec, prepared, held in ((ADE20K, "nyu_prep", "nyuv2"), (NYU_TINY, "ade_prep", "ade20k")):  # names sort both ways
        with pytest.raises(ValueError, match=rf"holds dataset '{held}', expected '{spec.name}'"):
            validate_dataset(spec, tmp_path / prepared, tmp_path / "report")


def test_numbers_in_messages():
    from mdeaux.data.validate import _num

    assert [_num(None), _num(float("nan")), _num(3.0), _num(0.123456), _num(7)] == ["?", "?", "3", "0.1235", "7"]
