"""The environment archive's launcher side, without building one (that is the rehearsal's:
tests/test_emr_rehearsal.py packs the real one and runs the chain from it on YARN): the steps
and the Studio cell that use it, the staging, and ``pack``'s one-line refusals."""

from __future__ import annotations

import json
import stat

import pytest

from fruits_tools import emr, pack
from tests.awsmodels import assert_valid_request
from tests.clirun import assert_one_line_error, run_cli

SPEC = emr.ClusterSpec(bucket="fruits-bucket")
ARCHIVE = f"s3://fruits-bucket/fruits/code/{pack.ARCHIVE_NAME}#environment"


def test_archive_steps_carry_the_archive_and_the_projects_settings():
    steps = emr.pipeline_steps(
        SPEC, environment="archive", recognize_args=["--augment-copies", "1"]
    )
    assert_valid_request("emr", "AddJobFlowSteps", {"JobFlowId": "j-1", "Steps": steps})
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
        assert args[args.index("--archives") + 1] == ARCHIVE
        conf = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
        assert conf["spark.pyspark.python"] == "./environment/bin/python"
        # what configurations.json gives the project's cluster, which a shared one lacks
        assert conf["spark.yarn.appMasterEnv.FRUITS_MODELS_URI"] == SPEC.uri("code", "models")
        assert conf["spark.executorEnv.FRUITS_MODELS_URI"] == SPEC.uri("code", "models")
        assert conf["spark.executor.memoryOverhead"] == "4g"
        assert "/opt/fruits-venv" not in " ".join(args)
    # the project's own cluster keeps its bootstrap's environment
    plain = emr.pipeline_steps(SPEC)[0]["HadoopJarStep"]["Args"]
    assert "--archives" not in plain and not any("pyspark.python" in a for a in plain)


def test_the_notebooks_mode_refuses_the_archive():
    with pytest.raises(ValueError, match="notebooks mode needs the bootstrap"):
        emr.pipeline_steps(SPEC, mode="notebooks", environment="archive")


def test_studio_configure_cell_is_the_same_settings():
    cell = emr.studio_configure_cell(SPEC)
    first, _, body = cell.partition("\n")
    assert first == "%%configure -f"
    conf = json.loads(body)["conf"]
    assert conf == emr.archive_settings(SPEC) and conf["spark.archives"] == ARCHIVE


def test_submit_dry_run_with_the_archive_prints_valid_steps():
    done = run_cli("fruits_tools", "emr", "submit", "--bucket", SPEC.bucket, "--environment",
                   "archive", "--dry-run")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout[done.stdout.index("{") :])
    assert printed["operation"] == "AddJobFlowSteps"
    words = " ".join(printed["params"]["Steps"][0]["HadoopJarStep"]["Args"])
    assert f"--archives {ARCHIVE}" in words


def test_stage_uploads_the_archive_and_its_json_and_refuses_a_missing_one(tmp_path):
    archive = tmp_path / pack.ARCHIVE_NAME
    archive.write_bytes(b"x")
    pack.manifest(archive).write_text("{}")
    lines = []
    launcher = emr.Launcher(SPEC, dry_run=True, echo=lines.append)
    uploaded = launcher._stage_archive(archive)
    assert uploaded == [SPEC.uri("code", pack.ARCHIVE_NAME), SPEC.uri("code", "fruits-env.json")]
    pack.manifest(archive).unlink()
    with pytest.raises(FileNotFoundError, match="no fruits-env.json at .*run pack first"):
        launcher._stage_archive(archive)


def test_pack_refuses_bad_input_in_one_line(tmp_path):
    wheel = tmp_path / "fruits_helpers-0.1.0-py3-none-any.whl"
    done = run_cli("fruits_tools", "pack", "--wheel", str(wheel), "--wheelhouse", str(tmp_path))
    assert_one_line_error(done, "no wheel at")
    wheel.write_bytes(b"")
    done = run_cli("fruits_tools", "pack", "--wheel", str(wheel), "--wheelhouse", str(tmp_path))
    assert_one_line_error(done, "no wheelhouse at")
    (tmp_path / "requirements.lock").write_text("")
    done = run_cli("fruits_tools", "pack", "--wheel", str(wheel), "--wheelhouse", str(tmp_path),
                   "--python-prefix", "usr")  # fmt: skip
    assert_one_line_error(done, "--python-prefix must be an absolute path")
    # an interpreter of another version than the nodes' (a stand-in that answers as one would)
    other = tmp_path / "python3.12"
    other.write_text('#!/bin/sh\necho \'{"version": "3.12", "base_prefix": "/opt/py"}\'\n')
    other.chmod(other.stat().st_mode | stat.S_IEXEC)
    done = run_cli("fruits_tools", "pack", "--wheel", str(wheel), "--wheelhouse", str(tmp_path),
                   "--python", str(other))  # fmt: skip
    assert_one_line_error(done, "is Python 3.12; the nodes run 3.11")
    done = run_cli("fruits_tools", "pack", "--wheel", str(wheel), "--wheelhouse", str(tmp_path),
                   "--python", str(tmp_path / "nothing"))  # fmt: skip
    assert_one_line_error(done, "no Python interpreter")
