"""Shared fixtures: one local Spark session, the real Fruits-360 sample, their features."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import config
from helpers.core.backbones import get_backbone
from helpers.core.recipe import Recipe, resolve_weights
from tests.ports import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent

# Spark binds to the first non-loopback address when the host name resolves to 127.0.0.1;
# the tests' drivers, executors and clusters stay on loopback.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# TensorFlow's kernels as the project's workers and `predict` choose them
# (helpers.core.inference), also when a test imports TensorFlow before loading a model.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _require(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        pytest.fail(
            f"{what} not found: put the shared folder beside the project (../shared) "
            f"or set ${config.ENV_SHARED_DIR}"
        )
    return path


@pytest.fixture(scope="session")
def fruits_sample() -> Path:
    """The 960 real Fruits-360 images (24 classes x 40) from the shared folder."""
    return _require(config.fruits360_sample_dir(), "fruits360-sample")


@pytest.fixture(scope="session")
def mobilenet_weights() -> str:
    """Path of the ImageNet MobileNetV2 no-top weights, found without network."""
    return resolve_weights(get_backbone("mobilenet_v2"), "imagenet", download=False)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local Spark session with two task slots, shared by the whole test run."""
    from helpers.spark.session import get_spark

    session = get_spark(
        "local[2]",
        app_name="fruits-tests",
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.local.dir": str(tmp_path_factory.mktemp("spark-local")),
        },
    )
    yield session
    session.stop()


def featurize_to_pandas(spark, folder: Path, weights: str, model_name="mobilenet_v2"):
    """Features of every image under ``folder`` computed through Spark, as a pandas frame
    (``model_name``: a backbone name or a :class:`helpers.core.recipe.FeatureSpec`)."""
    from helpers.core.recipe import FeatureSpec
    from helpers.spark.featurize import add_features
    from helpers.spark.ingest import list_images

    listing = tempfile.mkdtemp(prefix="listing-")
    images = list_images(spark, str(folder), listing).images
    spec = model_name if isinstance(model_name, FeatureSpec) else FeatureSpec(model_name)
    recipe = Recipe.resolve(*dataclasses.astuple(spec), weights=weights)
    df = add_features(images, recipe, batch_size=32)
    pdf = df.select("path", "label", "features", "error").toPandas()
    return pdf.sort_values("path").reset_index(drop=True)


@pytest.fixture(scope="session")
def sample_features(spark, fruits_sample, mobilenet_weights) -> pd.DataFrame:
    """ImageNet MobileNetV2 features of the 960 sample images, computed through Spark."""
    return featurize_to_pandas(spark, fruits_sample, mobilenet_weights)


def feature_matrix(pdf: pd.DataFrame) -> np.ndarray:
    return np.stack(pdf["features"].to_numpy()).astype(np.float64)


@pytest.fixture
def small_real_set(tmp_path, fruits_sample) -> Path:
    """A Fruits-360-layout folder with 4 real images of 3 classes (12 files)."""
    target = tmp_path / "real"
    for cls in ("Banana", "Kiwi", "Lemon"):
        files = sorted((fruits_sample / cls).glob("*.jpg"))[:4]
        (target / "Training" / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, target / "Training" / cls / f.name)
    return target


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's standalone server) on 127.0.0.1, random port.

    Yields its endpoint URL; boto3 reaches it through ``AWS_ENDPOINT_URL`` like any endpoint.
    """
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_http(endpoint + "/moto-api/", server, "the local S3 server")
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def iam_simulator():
    """The IAM policy simulator (tests/iamsim.py), one Node process per session."""
    from tests.iamsim import Simulator

    simulator = Simulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def s3_gate(s3_server, iam_simulator):
    """The local S3 server as AWS answers each admitted principal (tests/s3gate.py); one gate,
    and its record of requests, per test module."""
    from tests.s3gate import S3Gate

    gate = S3Gate(s3_server, iam_simulator).start()
    yield gate
    gate.stop()


@pytest.fixture
def operator_calls(request, iam_simulator):
    """Every AWS call the tooling makes during the test, decided at its end against
    ``emr/iam/operator-policy.json`` for each bucket it worked with: a call the operator's
    policy refuses fails the test, naming the action and the resource."""
    import boto3

    from tests.operator import Calls, operator

    boto3.setup_default_session()
    calls = Calls(region="eu-west-3").install(boto3.DEFAULT_SESSION)
    yield calls
    principal = operator(calls.buckets() or ("none",), calls.region, calls.prefixes)
    refused = calls.refused(principal, iam_simulator)
    assert not refused, f"the operator's policy refuses: {refused}"


@pytest.fixture
def ipython_kernel(monkeypatch):
    """Inside an IPython kernel, as Jupyter's Python kernel is: IPython imported and a shell
    running (helpers.faces.show looks it up, never imports it)."""
    import IPython

    shell = object()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    return shell


@pytest.fixture
def aws_local(s3_server, monkeypatch):
    """Point boto3 at the local server with throwaway credentials (no real account)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(s3_server + "/moto-api/reset", method="POST"))
    return s3_server


#: Test modules that take minutes, started first so that the two workers of ``make test`` end
#: together (each is one unit of work, see :func:`pytest_xdist_make_scheduler`).
LONGEST_FIRST = ("test_emr_rehearsal", "test_chaos_s3a", "test_notebooks", "notebooks",
                 "test_chaos_local", "test_chaos_recognize", "test_s3a", "test_cli",
                 "test_worker_loss")  # fmt: skip


def _unit(path: Path) -> str:
    """The unit of work a test belongs to: its module, or "notebooks" for the notebooks (nbval
    runs them 01 -> 05, each reading what the one before wrote)."""
    return "notebooks" if path.suffix == ".ipynb" else path.stem


def pytest_collection_modifyitems(config, items):
    """The longest units first, the rest in their order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_unit(item.path), len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """``make test``'s workers (pytest-xdist) take whole units: a test module, or the notebooks
    in order, so a module's clusters and servers start once and nbval's order holds."""
    from xdist.scheduler import LoadScopeScheduling

    class WholeModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(Path(nodeid.split("::", 1)[0]))

    return WholeModules(config, log)
