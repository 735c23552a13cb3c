"""Input sizes and inference runtimes: how features are computed (FeatureSpec), NumPy
preprocessing equal to Keras's, OpenVINO equal to Keras, and the same answers at every size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import config, defaults
from helpers.core import inference, runtimes
from helpers.core import predict as recognize
from helpers.core.backbones import BACKBONES, get_backbone
from helpers.core.recipe import FeatureSpec, Recipe, Weights


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_numpy_preprocessing_is_keras_preprocess_input(name):
    import keras

    backbone = get_backbone(name)
    module = {
        "mobilenet_v2": keras.applications.mobilenet_v2,
        "resnet50": keras.applications.resnet50,
        "vgg16": keras.applications.vgg16,
        "efficientnet_b0": keras.applications.efficientnet,
    }[name]
    batch = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    expected = np.asarray(module.preprocess_input(batch.astype(np.float32)))
    np.testing.assert_allclose(backbone.preprocess(batch), expected, rtol=0, atol=1e-4)


def test_feature_spec_defaults_and_choices():
    spec = FeatureSpec()
    assert (spec.model_name, spec.input_size, spec.runtime, spec.precision) == (
        defaults.MODEL_NAME, defaults.INPUT_SIZE, defaults.RUNTIME, defaults.PRECISION,
    )  # fmt: skip
    assert FeatureSpec(input_size=128).backbone.input_size == (128, 128)
    assert FeatureSpec(input_size=128).backbone.feature_dim == 1280
    with pytest.raises(ValueError, match="input_size 100 is not supported by mobilenet_v2"):
        FeatureSpec(input_size=100)
    with pytest.raises(ValueError, match="input_size 128 is not supported by resnet50"):
        FeatureSpec("resnet50", 128)
    with pytest.raises(ValueError, match="unknown runtime 'onnx'"):
        FeatureSpec(runtime="onnx")
    with pytest.raises(ValueError, match="precision bf16 needs runtime openvino"):
        FeatureSpec(precision="bf16")


def test_manifests_without_the_new_fields_read_as_what_made_them():
    old = {
        "backbone": "mobilenet_v2",
        "input_size": [224, 224],
        "precision": "float32",
        "runtime": {"tensorflow": "2.21.0", "spark": "4.0.1", "python": "3.11.7"},
    }
    assert Recipe.from_manifest(old).spec == FeatureSpec()
    assert Recipe.from_manifest({"backbone": "mobilenet_v2"}).spec == FeatureSpec()
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        Recipe.from_manifest({**old, "precision": "int4"})
    recipe = Recipe(FeatureSpec(input_size=96, runtime="openvino"), Weights("imagenet"))
    assert Recipe.from_manifest(recipe.to_manifest()) == recipe


def _recognizer_meta(runtime="openvino", precision="fp32", size=128) -> dict:
    return {
        "model_name": "mobilenet_v2",
        "settings": {"input_size": size, "runtime": runtime, "precision": precision},
    }


def _spec(meta: dict, runtime, precision, allow: bool) -> FeatureSpec:
    return recognize._spec(recognize.recognizer_recipe(meta).spec, runtime, precision, allow)


def test_predict_uses_the_recognizers_spec_and_refuses_another():
    meta = _recognizer_meta()
    expected = FeatureSpec(input_size=128, runtime="openvino")
    assert _spec(meta, None, None, False) == expected
    with pytest.raises(ValueError, match="made with runtime openvino, not runtime tensorflow"):
        _spec(meta, "tensorflow", None, False)
    with pytest.raises(ValueError, match="--allow-mismatch"):
        _spec(meta, None, "bf16", False)
    allowed = _spec(meta, "tensorflow", None, True)
    assert (allowed.runtime, allowed.input_size) == ("tensorflow", 128)
    # recognizers saved before sizes and runtimes were recorded: 224, TensorFlow
    assert _spec({"model_name": "mobilenet_v2"}, None, None, False) == FeatureSpec()


def test_bf16_runs_where_the_cpu_has_it_and_says_why_not_elsewhere():
    import openvino

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precision, reason = runtimes.effective_precision("bf16")
    if "BF16" in capabilities:
        assert (precision, reason) == ("bf16", None)
    else:
        assert precision == "fp32"
        assert "needs BF16 instructions" in reason and "running fp32" in reason
    assert runtimes.effective_precision("fp32") == ("fp32", None)


def _fixed_set(sample: Path) -> tuple[list[str], list[Path], dict[str, list[Path]]]:
    """One query photo per class, and five other photos per class as references."""
    classes = sorted(p.name for p in sample.iterdir() if p.is_dir())
    files = {c: sorted((sample / c).glob("*.jpg")) for c in classes}
    return classes, [files[c][0] for c in classes], {c: files[c][1:6] for c in classes}


def _features(spec: FeatureSpec, infer, paths: list[Path]) -> np.ndarray:
    out = inference.featurize_batch(spec.backbone, infer, [p.read_bytes() for p in paths], 32)
    assert out["error"].isna().all()
    return np.stack(out["features"])


@pytest.mark.slow
def test_openvino_fp32_features_equal_keras(
    fruits_sample, mobilenet_weights, tmp_path, monkeypatch
):
    monkeypatch.setenv(config.ENV_CACHE_DIR, str(tmp_path / "cache"))
    _, queries, _ = _fixed_set(fruits_sample)
    for size in (224, 128):
        keras_spec = FeatureSpec(input_size=size)
        ov_spec = FeatureSpec(input_size=size, runtime="openvino")
        keras_fn = inference.load_inference_fn(keras_spec, mobilenet_weights)
        ov_fn = inference.load_inference_fn(ov_spec, mobilenet_weights)
        keras_out = _features(keras_spec, keras_fn, queries)
        ov_out = _features(ov_spec, ov_fn, queries)
        assert ov_out.shape == keras_out.shape == (len(queries), 1280)
        np.testing.assert_allclose(ov_out, keras_out, rtol=0, atol=1e-4)
    converted = sorted(p.name for p in (tmp_path / "cache" / "openvino").iterdir())
    assert len(converted) == 4 and all(n.startswith("mobilenet_v2_") for n in converted)
    # a second load reuses the converted model instead of converting again
    ir = runtimes.openvino_ir(FeatureSpec(input_size=128).backbone, mobilenet_weights)
    before = ir.stat().st_mtime_ns
    inference.load_inference_fn(FeatureSpec(input_size=128, runtime="openvino"), mobilenet_weights)
    assert ir.stat().st_mtime_ns == before


@pytest.mark.slow
def test_every_size_gives_the_documented_dimension_and_the_same_labels(
    fruits_sample, mobilenet_weights
):
    """Nearest class centroid (cosine) of one held-out photo per class, at each size: the
    documented dimension, and the same (right) label for every photo of the fixed set. (OpenVINO
    at a size gives Keras's features within 1e-4: the test above.)"""
    runtime = "tensorflow"
    classes, queries, refs = _fixed_set(fruits_sample)
    answers = {}
    for size in get_backbone("mobilenet_v2").sizes:
        spec = FeatureSpec(input_size=size, runtime=runtime)
        infer = inference.load_inference_fn(spec, mobilenet_weights, 2)
        query = _features(spec, infer, queries)
        assert query.shape[1] == spec.backbone.feature_dim == 1280
        centroids = np.stack([_features(spec, infer, refs[c]).mean(axis=0) for c in classes])
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        answers[size] = [classes[i] for i in (query @ centroids.T).argmax(axis=1)]
    assert all(labels == classes for labels in answers.values()), answers


@pytest.mark.slow
def test_openvino_workers_never_import_tensorflow(fruits_sample, mobilenet_weights):
    """A worker handed the converted model decodes and featurizes without TensorFlow or Keras,
    whose import is most of a TensorFlow worker's first-batch latency."""

    ir = runtimes.openvino_ir(FeatureSpec(input_size=128).backbone, mobilenet_weights)
    photo = next(fruits_sample.rglob("*.jpg"))
    code = (
        "import json, sys, time\n"
        "started = time.perf_counter()\n"
        "from helpers.core import inference\n"
        "from helpers.core.recipe import FeatureSpec\n"
        "spec = FeatureSpec(input_size=128, runtime='openvino')\n"
        f"infer = inference.load_inference_fn(spec, {str(ir)!r}, 1)\n"
        f"photo = open({str(photo)!r}, 'rb').read()\n"
        "out = inference.featurize_batch(spec.backbone, infer, [photo], 8)\n"
        "seconds = time.perf_counter() - started\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'pyspark') if m in sys.modules)\n"
        "dim = len(out['features'][0])\n"
        "print(json.dumps({'dim': dim, 'seconds': seconds, 'loaded': loaded}))\n"
    )
    result, stderr = _python_json(code, timeout=120)
    assert result["loaded"] == [] and result["dim"] == 1280, stderr
    print(f"OpenVINO worker: first features {result['seconds']:.2f} s after start")


def test_openvino_refuses_random_weights_before_any_work():
    with pytest.raises(ValueError, match="runtime openvino needs pretrained weights"):
        inference.load_inference_fn(FeatureSpec(runtime="openvino"), None)
    with pytest.raises(ValueError, match="runtime openvino needs pretrained weights"):
        runtimes.openvino_ir(FeatureSpec().backbone, None)


@pytest.mark.slow
@pytest.mark.spark
def test_warmed_workers_have_the_runtime_before_the_first_featurize_task():
    """``warm_workers`` starts a Python worker per task slot and imports the runtime there, so
    the featurization's tasks (reusing those workers) skip that first-task latency. A fresh
    session in its own process: no earlier test has warmed its workers."""

    code = (
        "import json, sys\n"
        "from helpers.spark.session import get_spark\n"
        "from helpers.spark import featurize\n"
        "from helpers.core.recipe import FeatureSpec\n"
        "spark = get_spark('local[2]')\n"
        "def probe(batches):\n"
        "    import pandas as pd, sys\n"
        "    for _ in batches:\n"
        "        yield pd.DataFrame({'loaded': ['tensorflow' in sys.modules]})\n"
        "def loaded():\n"
        "    rows = spark.range(2, numPartitions=2).mapInPandas(probe, 'loaded boolean')\n"
        "    return [r.loaded for r in rows.collect()]\n"
        "before = loaded()\n"
        "featurize.warm_workers(spark, FeatureSpec(runtime='tensorflow')).result()\n"
        "print(json.dumps({'before': before, 'after': loaded()}))\n"
        "spark.stop()\n"
    )
    result, stderr = _python_json(code, timeout=300)
    assert result == {"before": [False, False], "after": [True, True]}, stderr


def _python_json(code: str, timeout: int) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter from the project root; its last stdout line (JSON)
    and the tail of its stderr."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr[-2000:]
