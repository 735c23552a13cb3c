"""On EMR the weights come from the bucket, not the internet: ``emr stage`` uploads the file
the local lookup finds, and the cluster's lookup (``FRUITS_MODELS_URI``, set by the cluster
configuration) finds it there, against a local S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from fruits_tools import emr, s3_staging
from helpers import config, storage
from helpers.core.backbones import get_backbone
from helpers.core.recipe import WeightsNotFoundError, resolve_weights

BUCKET = "fruits-weights"


@pytest.fixture
def no_local_weights(monkeypatch, tmp_path):
    """A node: no Keras cache, no shared folder, no models folder."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(config.ENV_SHARED_DIR, str(tmp_path / "no-shared"))
    monkeypatch.delenv(config.ENV_MODELS_DIR, raising=False)


def _cluster_models_uri(spec: emr.ClusterSpec) -> str:
    spark_env = next(
        c for c in emr.render_configurations(spec) if c["Classification"] == "spark-env"
    )
    return spark_env["Configurations"][0]["Properties"][config.ENV_MODELS_URI]


def test_the_cluster_finds_the_staged_weights_in_the_bucket(
    aws_local, no_local_weights, monkeypatch, tmp_path
):
    backbone = get_backbone("mobilenet_v2")
    spec = emr.ClusterSpec(bucket=BUCKET)
    s3_staging.ensure_bucket(BUCKET, spec.region)
    local = tmp_path / backbone.weights_file
    local.write_bytes(b"h5 bytes")
    staged = [u for u in emr.staging_files(spec, tmp_path / "w.whl", local) if "/models/" in u]
    storage.write_bytes(staged[0], local.read_bytes())  # what `emr stage` uploads

    monkeypatch.setenv(config.ENV_MODELS_URI, _cluster_models_uri(spec))
    found = resolve_weights(backbone, "imagenet", download=False)
    assert found == staged[0] == f"s3://{BUCKET}/fruits/code/models/{backbone.weights_file}"


def test_missing_staged_weights_name_the_bucket_folder(aws_local, no_local_weights, monkeypatch):
    s3_staging.ensure_bucket(BUCKET, "eu-west-3")
    uri = f"s3://{BUCKET}/fruits/code/models"
    monkeypatch.setenv(config.ENV_MODELS_URI, uri)
    with pytest.raises(WeightsNotFoundError, match=uri):
        resolve_weights(get_backbone("mobilenet_v2"), "imagenet", download=False)


@pytest.mark.slow
def test_a_model_is_built_from_weights_on_s3(aws_local, monkeypatch, tmp_path, mobilenet_weights):
    """``predict`` with a recognizer whose features used the staged weights (their recipe names
    the s3:// file): Keras reads local files only, so the file is copied into the cache once."""
    import numpy as np

    from helpers.core import inference
    from helpers.core.recipe import FeatureSpec

    monkeypatch.setenv(config.ENV_CACHE_DIR, str(tmp_path / "cache"))
    s3_staging.ensure_bucket(BUCKET, "eu-west-3")
    uri = f"s3://{BUCKET}/fruits/code/models/{get_backbone('mobilenet_v2').weights_file}"
    storage.write_bytes(uri, Path(mobilenet_weights).read_bytes())
    infer = inference.load_inference_fn(FeatureSpec("mobilenet_v2", 96), uri)
    assert infer(np.zeros((1, 96, 96, 3), dtype=np.float32)).shape == (1, 1280)
    (copied,) = (tmp_path / "cache" / "weights").iterdir()
    assert copied.name.endswith(get_backbone("mobilenet_v2").weights_file)
