"""The recognition engine on the real Fruits-360 sample: a stratified split, the classifier
through its saved pipeline, `predict` without Spark against the Spark pipeline, clusters."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics

from helpers.core import arrays
from helpers.core.predict import PhotoRecognizer
from helpers.spark import classify, clustering, maps, reduce
from tests.clirun import run_cli
from tests.conftest import ROOT

# the 960 real images featurized through Spark: the full suite's, not the fast tier's
pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def features_df(spark, sample_features, tmp_path_factory):
    """The 960 sample images' Spark features as a Spark DataFrame (path, label, features)."""
    target = tmp_path_factory.mktemp("recognition") / "features.parquet"
    sample_features[["path", "label", "features"]].to_parquet(target)
    return spark.read.parquet(str(target)).cache()


@pytest.fixture(scope="module")
def split(features_df):
    return classify.stratified_split(features_df, test_fraction=0.25, seed=7)


@pytest.fixture(scope="module")
def saved_recognizer(split, tmp_path_factory):
    """Logistic regression recognizer trained on the 75 % split, saved to disk."""
    train, _ = split
    recognizer = classify.fit_recognizer(train, "logistic_regression")
    target = tmp_path_factory.mktemp("recognizer") / "recognizer"
    classify.save_recognizer(recognizer, str(target))
    return recognizer, target


@pytest.fixture(scope="module")
def spark_scores(saved_recognizer, split):
    """The saved pipeline, loaded by Spark, applied to the held-out rows."""
    _, target = saved_recognizer
    _, test = split
    scored = classify.predict(classify.load_pipeline(str(target)), test)
    return scored.select("path", "label", classify.PREDICTED_COL, "probability").toPandas()


def test_stratified_split_is_stratified_disjoint_and_repeatable(split, features_df):
    train, test = split
    train_counts = train.groupBy("label").count().toPandas().set_index("label")["count"]
    test_counts = test.groupBy("label").count().toPandas().set_index("label")["count"]
    assert len(test_counts) == 24 and set(test_counts) == {10} and set(train_counts) == {30}
    test_paths = {r.path for r in test.select("path").collect()}
    assert not test_paths & {r.path for r in train.select("path").collect()}
    again = classify.stratified_split(features_df, 0.25, seed=7)[1]
    assert {r.path for r in again.select("path").collect()} == test_paths
    other = classify.stratified_split(features_df, 0.25, seed=8)[1]
    assert {r.path for r in other.select("path").collect()} != test_paths


def test_saved_pipeline_accuracy_on_held_out_images(saved_recognizer, spark_scores):
    recognizer, target = saved_recognizer
    ev = classify.evaluate(
        spark_scores["label"], spark_scores[classify.PREDICTED_COL], recognizer.labels
    )
    print(
        f"\nheld-out accuracy {ev['accuracy']:.4f}, macro-F1 {ev['macro_f1']:.4f}, k={recognizer.k}"
    )
    assert len(spark_scores) == 240
    assert ev["accuracy"] >= 0.9 and ev["macro_f1"] >= 0.9
    meta = json.loads((target / arrays.META_FILE).read_text())
    assert meta["labels"] == sorted(meta["labels"]) and len(meta["labels"]) == 24
    assert meta["model_name"] == "mobilenet_v2" and meta["k"] == recognizer.k


def test_predict_without_spark_matches_spark_and_finds_the_label(
    saved_recognizer, spark_scores, mobilenet_weights
):
    """`predict` decodes the photo files itself; its probabilities equal the Spark pipeline's
    (Spark-computed features -> saved PipelineModel) within 1e-5."""
    _, target = saved_recognizer
    photos = [p.removeprefix("file:") for p in spark_scores["path"]]
    recognizer = PhotoRecognizer(str(target), weights=mobilenet_weights)
    answers = recognizer.predict(photos, top=3)
    assert [a.photo for a in answers] == photos and all(a.error is None for a in answers)
    ours = np.stack([a.probabilities for a in answers])
    theirs = np.stack(spark_scores["probability"].to_numpy())
    diff = float(np.abs(ours - theirs).max())
    in_top3 = np.mean([t in [lab for lab, _ in a.top] for a, t in zip(answers, spark_scores.label)])
    print(f"\npredict vs Spark: max |dp| = {diff:.2e}; true label in top-3: {in_top3:.4f}")
    assert diff <= 1e-5
    assert in_top3 >= 0.95
    assert all(len(a.top) == 3 and a.top[0][1] >= a.top[1][1] >= a.top[2][1] for a in answers)


def test_predict_matches_spark_for_a_recognizer_made_in_fast_mode(
    spark, fruits_sample, mobilenet_weights, split, tmp_path
):
    """Features at 128 through OpenVINO in Spark -> recognizer; ``predict`` rebuilds the same
    runtime and size from recognizer.json and gives Spark's probabilities within 1e-5."""
    from helpers.core.recipe import FeatureSpec, Recipe
    from tests.conftest import featurize_to_pandas

    spec = FeatureSpec(input_size=128, runtime="openvino")
    fast = featurize_to_pandas(spark, fruits_sample, mobilenet_weights, spec)
    assert fast["error"].isna().all() and len(fast["features"][0]) == 1280
    fast_df = spark.createDataFrame(fast[["path", "label", "features"]])
    train_paths, test_paths = (s.select("path") for s in split)
    train = fast_df.join(train_paths, "path")
    test = fast_df.join(test_paths, "path")
    recognizer = classify.fit_recognizer(train, "logistic_regression")
    # as the recognition step does: the features' recipe, embedded
    made = Recipe.resolve(input_size=128, runtime="openvino", weights=mobilenet_weights)
    recognizer.settings["recipe"] = made.to_manifest()
    classify.save_recognizer(recognizer, str(tmp_path))
    scored = classify.predict(classify.load_pipeline(str(tmp_path)), test).toPandas()

    answers = PhotoRecognizer(str(tmp_path), weights=mobilenet_weights).predict(
        [p.removeprefix("file:") for p in scored["path"]]
    )
    ours = np.stack([a.probabilities for a in answers])
    diff = float(np.abs(ours - np.stack(scored["probability"].to_numpy())).max())
    accuracy = float(np.mean([a.label == t for a, t in zip(answers, scored["label"])]))
    print(f"\nfast mode (128, OpenVINO): predict vs Spark max |dp| = {diff:.2e}, acc {accuracy}")
    assert diff <= 1e-5
    assert accuracy >= 0.9
    with pytest.raises(ValueError, match="made with runtime openvino"):
        PhotoRecognizer(str(tmp_path), weights=mobilenet_weights, runtime="tensorflow")


def test_mlp_pipeline_read_without_spark_gives_sparks_probabilities(split, tmp_path):
    train, test = split
    recognizer = classify.fit_recognizer(
        train, "mlp", k=40, hidden_layers=(16,), max_iter=30, seed=3
    )
    classify.save_recognizer(recognizer, str(tmp_path))
    scored = classify.predict(classify.load_pipeline(str(tmp_path)), test).toPandas()
    loaded = arrays.RecognizerArrays.from_bytes((tmp_path / arrays.ARRAYS_FILE).read_bytes())
    ours = loaded.probabilities(np.stack(scored["features"].to_numpy()))
    assert [w.shape for w, _ in loaded.layers] == [(40, 16), (16, 24)]
    assert np.abs(ours - np.stack(scored["probability"].to_numpy())).max() < 1e-9
    assert [loaded.labels[i] for i in ours.argmax(axis=1)] == scored[
        classify.PREDICTED_COL
    ].tolist()


def test_bad_classifier_settings_are_refused(split):
    train, _ = split
    with pytest.raises(ValueError, match="unknown head 'forest'"):
        classify.fit_recognizer(train, "forest")
    with pytest.raises(ValueError, match="unknown head 'auto'"):  # a choice among fits, not one
        classify.fit_recognizer(train, "auto")
    with pytest.raises(ValueError, match="two labels"):
        classify.fit_recognizer(train.filter("label = 'Kiwi'"))


def test_kmeans_clusters_agree_with_labels(features_df):
    reduction = reduce.fit_reduction(features_df, variance_threshold=0.9)
    reduced = reduction.transform(features_df).cache()
    fitted = clustering.fit_kmeans(reduced)
    assert fitted.k == 24 and list(fitted.silhouettes) == [24]
    assigned = fitted.assign(reduced)
    table = clustering.cluster_label_table(assigned)
    assert table.to_numpy().sum() == 960 and table.shape[1] == 24
    scores = clustering.agreement(table)
    rows = assigned.select("label", "cluster").toPandas()
    assert scores["adjusted_rand_index"] == pytest.approx(
        metrics.adjusted_rand_score(rows["label"], rows["cluster"])
    )
    print(f"\nKMeans k=24 on PCA features: {scores}")
    assert scores["adjusted_rand_index"] > 0.4 and scores["homogeneity"] > 0.7

    searched = clustering.fit_kmeans(reduced, k_range=(22, 24))
    assert sorted(searched.silhouettes) == [22, 23, 24]
    assert searched.silhouettes[searched.k] == max(searched.silhouettes.values())

    sample = maps.stratified_sample(assigned, max_points=48).toPandas()
    assert len(sample) == 48 and set(sample["label"].value_counts()) == {2}


PREDICT_IN_PROCESS = textwrap.dedent(
    """
    import json, sys
    from helpers.core.predict import predict
    answers = predict(sys.argv[3:], sys.argv[1], weights=sys.argv[2])
    print(json.dumps({"spark_imported": any(m.startswith("pyspark") for m in sys.modules),
                      "answers": [a.as_dict() for a in answers]}))
    """
)


def test_predict_needs_no_spark_and_answers_s3_photos(
    saved_recognizer, spark_scores, mobilenet_weights, aws_local, tmp_path
):
    """A recognizer and a photo on S3 (local S3 server), answered by a process that never
    imports pyspark."""
    import boto3

    _, target = saved_recognizer
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="fruits", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    for path in target.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "fruits", f"models/recognizer/{path.relative_to(target)}")
    photo = spark_scores["path"][0].removeprefix("file:")
    s3.upload_file(photo, "fruits", "photos/one.jpg")
    done = subprocess.run(
        [sys.executable, "-c", PREDICT_IN_PROCESS, "s3://fruits/models/recognizer",
         mobilenet_weights, "s3://fruits/photos/one.jpg", "s3://fruits/photos/missing.jpg"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["spark_imported"] is False
    first, missing = seen["answers"]
    assert first["top"][0]["label"] == spark_scores["label"][0]
    assert missing == {"photo": "s3://fruits/photos/missing.jpg", "error": "file not found"}


def test_predict_command_answers_good_photos_and_names_bad_ones(
    saved_recognizer, spark_scores, mobilenet_weights, tmp_path
):
    _, target = saved_recognizer
    good = spark_scores["path"][0].removeprefix("file:")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(good, folder / "copy.JPG")
    done = run_cli(
        "helpers", "predict", good, corrupt, tmp_path / "missing.jpg", folder,
        "--recognizer", target, "--weights", mobilenet_weights, "--json", timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["photo"] for line in lines] == [
        good,
        str(corrupt),
        str(tmp_path / "missing.jpg"),
        str(folder / "copy.JPG"),
    ]
    assert lines[0]["top"][0]["label"] == spark_scores["label"][0] and len(lines[0]["top"]) == 3
    # the same photo twice: the same labels; probabilities equal to float precision (they are
    # printed rounded to 6 digits, and a batch's rows may differ in the last bit)
    assert [t["label"] for t in lines[3]["top"]] == [t["label"] for t in lines[0]["top"]]
    for copy, original in zip(lines[3]["top"], lines[0]["top"]):
        assert copy["probability"] == pytest.approx(original["probability"], abs=2e-6)
    assert "error" in lines[1] and "Traceback" not in done.stderr
    assert lines[2]["error"] == "file not found"
    assert "2 of 4 photos answered" in done.stderr

    absent = run_cli("helpers", "predict", good, "--recognizer", tmp_path / "no", timeout=300)
    assert absent.returncode == 2
    assert absent.stderr.strip().splitlines()[-1].startswith("error: no recognizer at")


def test_held_out_photos_on_textured_backgrounds_are_still_recognized(
    saved_recognizer, spark_scores, mobilenet_weights
):
    """Sample images of one fruit are near twins; pasting the held-out ones on textured
    backgrounds checks the recognizer looks at the fruit, not at matching pixels."""
    from tests import imagefactory as mk

    _, target = saved_recognizer
    photos = [p.removeprefix("file:") for p in spark_scores["path"]]
    swapped = [
        (photo, mk.on_textured_background(Path(photo).read_bytes(), seed))
        for seed, photo in enumerate(photos)
    ]
    answers = PhotoRecognizer(str(target), weights=mobilenet_weights).predict_bytes(swapped)
    truth = spark_scores["label"].tolist()
    top1 = np.mean([a.label == t for a, t in zip(answers, truth)])
    top3 = np.mean([t in [lab for lab, _ in a.top] for a, t in zip(answers, truth)])
    print(
        f"\ntextured backgrounds, {len(answers)} held-out photos: "
        f"top-1 {top1:.3f}, top-3 {top3:.3f}"
    )
    assert top1 >= 0.85 and top3 >= 0.95


def test_a_recognizer_trained_on_random_weight_features_is_refused(saved_recognizer, tmp_path):
    from helpers.core.recipe import FeatureSpec, Recipe, Weights

    _, target = saved_recognizer
    copy = tmp_path / "recognizer"
    shutil.copytree(target, copy)
    meta = json.loads((copy / arrays.META_FILE).read_text())
    meta["settings"]["recipe"] = Recipe(FeatureSpec(), Weights("random")).to_manifest()
    (copy / arrays.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="randomly initialised"):
        PhotoRecognizer(str(copy))
