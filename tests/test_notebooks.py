"""The notebooks: committed clean, run headless by papermill, regression-checked by nbval,
and the monitoring notebook's numbers match what a real run did."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap

import nbformat
import pandas as pd
import pytest

from helpers.faces.notebooks import CHECK_MARKER, PIPELINE_NOTEBOOKS, read_metrics, run_notebooks
from helpers.observe import monitoring
from tests.clirun import run_cli
from tests.conftest import ROOT

NOTEBOOKS = [ROOT / "notebooks" / name for name in PIPELINE_NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    book = nbformat.read(str(path), as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be parameters"
    for cell in code:
        if CHECK_MARKER not in cell.source:
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    text = path.read_text()
    assert not re.search(r"(/work/|/home/|/Users/|/root/|[A-Z]:\\\\)", text), "absolute path"
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key", text, re.I)
    # notebooks stay thin: no function or class defined in a notebook
    assert not any(re.search(r"^\s*(def|class) ", c.source, re.M) for c in code)


def _errors(executed) -> list[str]:
    book = nbformat.read(str(executed), as_version=4)
    return [
        o.get("ename", "")
        for c in book.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


@pytest.fixture(scope="module")
def fruits_run(tmp_path_factory, fruits_sample):
    """The main job (`make run`: ``python -m helpers notebooks``) on the real Fruits-360 sample,
    notebooks 01-05 with parameters injected by papermill. The notebooks' run on data_sample is
    nbval's (``notebooks/`` in the test paths), so the chain runs once per input."""
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True)
    assert "-m helpers notebooks -p INPUT_URI" in dry.stdout
    out = tmp_path_factory.mktemp("fruits-run")
    done = run_cli(
        "helpers", "notebooks", "-p", "INPUT_URI", fruits_sample,
        "-p", "BATCH_SIZE", "32", "-p", "VARIANCE_THRESHOLD", "0.9",
        "-p", "PHOTO_URI", _asked_photo(fruits_sample), "--output", out, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    written = [str(out / "notebooks" / name) for name in PIPELINE_NOTEBOOKS]
    return out, written


def _asked_photo(fruits_sample):
    """The photo notebook 05 is asked about ("what fruit is this")."""
    return sorted((fruits_sample / "Banana").glob("*.jpg"))[0]


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.spark
def test_papermill_pipeline_on_real_images(fruits_run, spark):
    out, written = fruits_run
    assert [p.rsplit("/", 1)[-1] for p in written] == list(PIPELINE_NOTEBOOKS)
    for path in written:
        assert _errors(path) == []
        book = nbformat.read(path, as_version=4)
        injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1
    assert "BATCH_SIZE = 32" in nbformat.read(written[1], as_version=4).cells[2].source

    ingestion = read_metrics(str(out), "01_ingestion")
    assert ingestion["images"] == 960 and ingestion["labels"] == 24 and ingestion["unreadable"] == 0
    extraction = read_metrics(str(out), "02_feature_extraction")
    assert extraction["featurized"] == 960 and extraction["feature_size"] == 1280
    pca = read_metrics(str(out), "03_pca")
    assert pca["reduced_rows"] == 960 and pca["explained_variance"] >= 0.9

    recognition = read_metrics(str(out), "05_recognition")
    assert recognition["split"]["how"].startswith("stratified")  # no Training/Test folders
    assert recognition["split"]["test_rows"] == 240 and recognition["accuracy"] >= 0.9
    assert recognition["clusters"] == 24
    assert (out / "recognizer" / "recognizer.json").is_file()
    # "what fruit is this", asked through PHOTO_URI
    assert recognition["photo"]["photo"].endswith(".jpg")
    assert recognition["photo"]["top"][0]["label"] == "Banana"
    assert (out / "maps.png").read_bytes()[:4] == b"\x89PNG"

    assert spark.read.parquet(str(out / "features")).count() == 960
    assert spark.read.parquet(str(out / "reduced")).count() == 960
    assert (out / "explained_variance.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "run_report.json").read_text())
    assert report["images"]["total"] == 960 and report["files"]["found"] >= 960
    assert json.loads((out / "pca_report.json").read_text())["pca"]["k"] >= 1
    scored = json.loads((out / "recognition_report.json").read_text())
    assert scored["classifier"]["accuracy"] >= 0.9
    assert (out / "features" / "_SUCCESS").exists() and (out / "reduced" / "_SUCCESS").exists()


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.spark
def test_monitoring_matches_the_featurization_run(fruits_run):
    """The event log of notebook 02's application, read as notebook 04 reads it, against
    what that run did: 960 images in, 960 rows written, one Parquet file per writing task; and
    notebook 04 showed that application by default."""
    out, _ = fruits_run
    app_id = read_metrics(str(out), "02_feature_extraction")["app_id"]
    metrics = monitoring.load(event_log_dir=str(out / "spark-events"), app_id=app_id)
    assert metrics.app_id == app_id and metrics.app_name == "02_feature_extraction"
    assert set(metrics.jobs["status"]) == {"SUCCEEDED"}

    summary = monitoring.stage_summary(metrics)
    write = summary[summary["output_records"] > 0]
    assert len(write) == 1  # the features/ write is the only stage that writes
    write = write.iloc[0]
    assert write["output_records"] == 960
    # the images come to the writing stage through the repartition of the input's listing
    assert write["input_records"] == 0 and write["shuffle_read_bytes"] > 0
    listed = len(pd.read_parquet(out / "listing"))
    assert listed >= 960 and (summary["input_records"] == listed).any()
    part_files = list((out / "features").glob("part-*.parquet"))
    tasks = metrics.tasks[metrics.tasks["stage_id"] == write["stage_id"]]
    assert len(tasks) == write["tasks_run"]
    assert (tasks["output_records"] > 0).sum() == len(part_files)  # empty tasks write no file
    assert metrics.tasks["output_records"].sum() == 960
    assert summary["tasks_run"].sum() == len(metrics.tasks)

    # notebook 04 showed, by default, the featurization's application (notebook 02's, not the
    # later ones of notebooks 03 and 05), its stages named, and the featurizing stage's images/s
    seen = read_metrics(str(out), "04_spark_ui_monitoring")
    assert (seen["app_id"], seen["app_name"]) == (app_id, "02_feature_extraction")
    assert seen["named_jobs"] == seen["jobs"] == len(metrics.jobs) and seen["tasks"] > 0
    assert seen["featurize_stage"] == (
        "featurize: mobilenet_v2 224 tensorflow fp32 on 960 images, write features"
    )
    assert seen["images"] == 960
    assert seen["images_per_s"] == pytest.approx(960 / write["duration_s"], rel=0.01)
    executed = (out / "notebooks" / "04_spark_ui_monitoring.ipynb").read_text()
    assert "featurizing stage: featurize: mobilenet_v2 224" in executed


LIVE_APP = textwrap.dedent(
    """
    import json, sys
    from helpers.observe import monitoring
    from helpers.spark.session import get_spark
    spark = get_spark("local[2]", app_name="live", conf={"spark.ui.port": "0"},
                      event_log_dir=sys.argv[1])
    assert spark.range(0, 1000, numPartitions=7).selectExpr("sum(id)").first()[0] == 499500
    live = monitoring.load(ui_url="active")
    app_id = spark.sparkContext.applicationId
    spark.stop()
    logged = monitoring.load(event_log_dir=sys.argv[1], app_id=app_id)
    print(json.dumps({
        "live_tasks": len(live.tasks), "logged_tasks": len(logged.tasks),
        # stages that ran tasks (the REST API also lists skipped ones)
        "live_stages": sorted(int(n) for n in live.stages["tasks_run"] if n > 0),
        "logged_stages": sorted(int(n) for n in logged.stages["tasks_run"] if n > 0),
        "live_jobs": live.jobs["status"].tolist(),
    }))
    """
)


@pytest.mark.spark
@pytest.mark.slow
def test_rest_api_and_event_log_agree_on_a_live_application(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", LIVE_APP, str(tmp_path / "events")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["live_jobs"] and set(seen["live_jobs"]) == {"SUCCEEDED"}
    assert seen["live_tasks"] == seen["logged_tasks"] >= 7
    assert 7 in seen["live_stages"]
    assert seen["live_stages"] == seen["logged_stages"]


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.spark
def test_nbval_fails_when_a_stored_output_changes(tmp_path):
    """nbval really compares: the ingestion notebook with one stored number changed fails."""
    copy = tmp_path / "01_ingestion.ipynb"
    shutil.copy(NOTEBOOKS[0], copy)
    book = nbformat.read(str(copy), as_version=4)
    checked = next(c for c in book.cells if CHECK_MARKER in c.source)
    original = "".join(checked.outputs[0]["text"])
    assert original.startswith("132 images")
    checked.outputs[0]["text"] = original.replace("132 images", "133 images")
    nbformat.write(book, str(copy))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         "-c", str(ROOT / "pyproject.toml"), str(copy), "-o", f"cache_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:]
    assert "133 images" in done.stdout and "132 images" in done.stdout


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.spark
def test_notebook_02_incremental_rerun_featurizes_nothing_new(tmp_path):
    """INCREMENTAL = True in notebook 02: the second run on unchanged input reuses every row."""
    out = tmp_path / "incremental"
    params = {"INPUT_URI": str(ROOT / "data_sample"), "INCREMENTAL": True}
    seen = []
    for _ in range(2):
        run_notebooks(params, output_uri=str(out), notebooks=("02_feature_extraction.ipynb",))
        seen.append(read_metrics(str(out), "02_feature_extraction"))
    assert seen[0]["featurized_this_run"] == 132
    assert seen[1]["featurized_this_run"] == 0 and seen[1]["featurized"] == 132


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.spark
def test_augmented_recognizer_on_cluttered_photos(fruits_run, spark, mobilenet_weights):
    """The recognizer notebook 05 trained with cluttered copies: the targets on the sample,
    training and evaluation kept apart by path, ``predict`` equal to the Spark pipeline (plain
    photos and remade cluttered ones), and pictures without fruit under the "not sure"
    threshold at the rate the report gives."""
    import numpy as np

    from helpers.core import augment
    from helpers.core.predict import PhotoRecognizer
    from helpers.faces import showcase
    from helpers.spark import classify

    out, _ = fruits_run
    report = json.loads((out / "recognition_report.json").read_text())
    cluttered, unknowns = report["cluttered"], report["unknowns"]
    print(
        f"\n{report['classifier']['classifier']}: plain top-1 {report['classifier']['accuracy']}"
        f", cluttered top-1 {cluttered['top1']} top-3 {cluttered['top3']}; "
        f"no fruit under {unknowns['threshold']}: {unknowns['unknown_below_threshold']}"
    )
    assert report["classifier"]["accuracy"] >= 0.98
    assert cluttered["top1"] >= 0.90 and cluttered["top3"] >= 0.97
    assert cluttered["pictures"] == 240 * 3
    assert report["head_choice"]["chosen"] == report["classifier"]["classifier"]
    assert set(report["head_choice"]["scores"]) == {
        "logistic_regression", "mlp", "logistic_regression_full",
    }  # fmt: skip

    # no test photo in training, by path; the evaluation is exactly the test split
    features = spark.read.parquet(str(out / "features"))
    train, test = classify.stratified_split(features, 0.25, seed=360)
    train_paths = {r.path for r in train.select("path").collect()}
    test_paths = {r.path for r in test.select("path").collect()}
    made = spark.read.parquet(str(out / "cluttered")).toPandas()
    by_role = {
        role: set(made.loc[made.role == role, "path"].dropna()) for role in made.role.unique()
    }
    assert by_role["train"] == train_paths and not by_role["train"] & test_paths
    assert by_role["test"] == test_paths
    assert made.loc[made.role.str.startswith("unknown"), "path"].isna().all()
    assert made["features"].notna().all()

    # predict == the Spark pipeline, on plain photos and on cluttered pictures remade in-process
    recognizer = PhotoRecognizer(str(out / "recognizer"), weights=mobilenet_weights)
    pipeline = classify.load_pipeline(str(out / "recognizer"))
    some = test.orderBy("path").limit(48)
    spark_p = np.stack(classify.predict(pipeline, some).toPandas()["probability"].to_numpy())
    ours = recognizer.predict([r.path.removeprefix("file:") for r in some.collect()])
    assert np.abs(np.stack([a.probabilities for a in ours]) - spark_p).max() <= 1e-5
    examples = cluttered["examples"]
    _, answered = showcase.cluttered_examples(examples, recognizer)
    rows = spark.createDataFrame(
        made[(made["role"] == "test") & (made["copy"] == 0)][["path", "label", "features"]]
    )
    scored = classify.predict(pipeline, rows).toPandas().set_index("path")
    spark_c = np.stack([scored.loc[e["path"], "probability"] for e in examples])
    diff = np.abs(np.stack([a.probabilities for a in answered]) - spark_c).max()
    print(f"cluttered pictures remade by predict vs Spark's: max |dp| = {diff:.1e}")
    assert diff <= 1e-5

    # pictures without fruit, remade: under the threshold at the reported rate
    settings = recognizer.metadata["settings"]
    spec = augment.evaluation_spec(settings["augmentation"]["seed"])
    size = recognizer.backbone.input_size
    empty = [(f"nothing {i}", showcase._png(spec.render(None, None, i, size)))
             for i in range(unknowns["pictures"])]  # fmt: skip
    answers = recognizer.predict_bytes(empty)
    unsure = np.mean([a.sure is False for a in answers])
    assert unsure == pytest.approx(unknowns["unknown_below_threshold"], abs=0.011)
    assert unknowns["unknown_below_threshold"] >= 0.5  # most are flagged "not sure"
