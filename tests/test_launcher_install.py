"""The launcher alone: ``fruits-tools`` installed in a fresh virtual environment, without the
runtime's extra, runs its commands without TensorFlow, OpenVINO or pyspark installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import ROOT

HEAVY = {"pyspark", "tensorflow", "tensorflow-cpu", "openvino", "keras", "numpy", "pandas"}


@pytest.fixture(scope="module")
def launcher_venv(tmp_path_factory) -> Path:
    """A fresh venv with the runtime's base and the launcher installed from the clone."""
    venv = tmp_path_factory.mktemp("launcher") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    from tests.emr_box import building_from_the_clone

    with building_from_the_clone():
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             str(ROOT), str(ROOT / "tools")],
            capture_output=True, text=True, timeout=900, cwd=venv.parent,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def _installed(python: Path) -> set[str]:
    done = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return {line.split("==")[0].lower() for line in done.stdout.splitlines()}


def _launcher(
    python: Path, *args: str, env: dict | None = None, cwd: Path
) -> subprocess.CompletedProcess:
    base = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run(
        [str(python.parent / "fruits-tools"), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, env={**base, **(env or {})},
    )  # fmt: skip


@pytest.mark.slow
def test_the_launcher_installs_without_the_runtime(launcher_venv):
    installed = _installed(launcher_venv)
    assert {"fruits-tools", "fruits-helpers", "boto3"} <= installed
    assert not installed & HEAVY, installed & HEAVY


@pytest.mark.slow
def test_emr_run_dry_run_from_the_launcher_alone(launcher_venv, tmp_path):
    done = _launcher(
        launcher_venv, "emr", "run", "--bucket", "fruits-example", "--dry-run",
        "--run-args", "--batch-size 32", "--recognize-args", "--augment-copies 1",
        cwd=tmp_path,
        env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
             "AWS_DEFAULT_REGION": "eu-west-3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RunJobFlow" in done.stdout and "--batch-size" in done.stdout
    # the chain's own parser, from the light module, still refuses a bad argument
    bad = _launcher(
        launcher_venv, "emr", "run", "--bucket", "fruits-example", "--dry-run",
        "--recognize-args", "--augment-copies three", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2 and "invalid int value: 'three'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_s3_ls_from_the_launcher_alone(launcher_venv, aws_local, tmp_path):
    s3 = boto3.client("s3", region_name="eu-west-3")
    s3.create_bucket(
        Bucket="fruits-launcher", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    s3.put_object(Bucket="fruits-launcher", Key="in/Apple/1.jpg", Body=b"x")
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    done = _launcher(launcher_venv, "s3", "ls", "s3://fruits-launcher/in", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("1 objects"), done.stdout
