"""The whole chain on small real folders, bad files included."""

import json
import shutil

import pytest

from helpers.steps import extraction as pipeline
from helpers.steps.extraction import RunParams
from tests import imagefactory as mk

BAD_FILES = {
    "zero.jpg": (b"", "empty file"),
    "truncated.jpg": (mk.truncated_jpeg(), "corrupt or truncated image"),
    "page.jpg": (mk.TEXT_AS_JPEG, "not an image"),
}
ODD_BUT_GOOD = {
    "alpha.png": mk.rgba_png(alpha=128),
    "grey.jpg": mk.grey_jpeg(),
    "cmyk.jpg": mk.cmyk_jpeg(),
}


@pytest.mark.spark
@pytest.mark.slow
def test_bad_inputs_get_a_row_each_and_good_ones_are_featurized(
    spark, small_real_set, tmp_path, mobilenet_weights
):
    odd = small_real_set / "Training" / "Odd"
    odd.mkdir()
    for name, (data, _) in BAD_FILES.items():
        (odd / name).write_bytes(data)
    for name, data in ODD_BUT_GOOD.items():
        (odd / name).write_bytes(data)
    (odd / "notes.txt").write_text("a note next to the images")
    out = tmp_path / "out"

    result = pipeline.run(RunParams(str(small_real_set), str(out), k=3), spark)

    features = spark.read.parquet(str(out / "features")).toPandas()
    by_name = {p.rsplit("/", 1)[-1]: row for p, row in zip(features["path"], features.itertuples())}
    assert len(features) == 12 + len(BAD_FILES) + len(ODD_BUT_GOOD)
    for name, (_, reason) in BAD_FILES.items():
        assert by_name[name].features is None
        assert by_name[name].error.startswith(reason)
    good = features[features["error"].isna()]
    assert len(good) == 12 + len(ODD_BUT_GOOD)
    assert all(len(f) == 1280 for f in good["features"])

    report = json.loads((out / "run_report.json").read_text())
    assert report == result.report
    assert report["images"]["total"] == 18 and report["images"]["failed"] == 3
    assert report["failures"]["by_reason"] == {
        "empty file (0 bytes)": 1,
        "corrupt or truncated image": 1,
        "not an image": 1,
    }
    assert {f["path"].rsplit("/", 1)[-1] for f in report["failures"]["listed"]} == set(BAD_FILES)
    assert report["files"]["ignored"] == 1
    assert report["files"]["ignored_listed"][0]["path"].endswith("Odd/notes.txt")
    assert report["files"]["found"] == 18 + 1
    assert result.pca_report["pca"]["k"] == 3
    assert json.loads((out / "pca_report.json").read_text()) == result.pca_report

    reduced = spark.read.parquet(str(out / "reduced"))
    assert reduced.count() == 15
    assert reduced.columns == ["path", "label", "split", "pca"]


@pytest.mark.spark
@pytest.mark.slow
def test_rerun_overwrites_and_writes_every_output(spark, small_real_set, tmp_path):
    out = tmp_path / "out"
    params = RunParams(str(small_real_set), str(out), variance_threshold=0.9, batch_size=5)
    pipeline.run(params, spark)
    shutil.rmtree(small_real_set / "Training" / "Kiwi")
    result = pipeline.run(params, spark)

    assert spark.read.parquet(str(out / "features")).count() == 8
    assert spark.read.parquet(str(out / "reduced")).count() == 8
    assert (out / "explained_variance.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "reduction_model" / "stages").is_dir()
    report = result.report
    assert report["images"]["labels"] == 2
    assert result.pca_report["pca"]["explained_variance"] >= 0.9
    assert result.pca_report["features"]["backbone"] == "mobilenet_v2"
    assert set(report["timings_s"]) == {"featurize", "inventory"}
    assert set(result.pca_report["timings_s"]) == {"reduce"} and result.seconds > 0
    assert report["throughput_images_per_s"] > 0


# no Spark marker: the parameters are checked before any session starts
@pytest.mark.parametrize(
    "override,message",
    [
        ({"model_name": "alexnet"}, "unknown model_name"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"variance_threshold": 1.5}, "variance_threshold must be in"),
        ({"k": 0}, "k must be >= 1"),
    ],
)
def test_bad_parameters_are_named(override, message, small_real_set, tmp_path):
    params = RunParams(str(small_real_set), str(tmp_path / "out"), **override)
    with pytest.raises(ValueError, match=message):
        params.validate()
