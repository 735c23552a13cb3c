"""EMR launch: requests valid for EMR's API, a run against a local EMR endpoint, the bootstrap
script, the IAM policy, and no secret anywhere in the repository."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import boto3
import pytest
import tomllib

from fruits_tools import emr, s3_staging
from tests.awsmodels import assert_valid_request
from tests.clirun import assert_one_line_error, run_cli
from tests.conftest import ROOT

SPEC = emr.ClusterSpec(bucket="fruits-bucket", task_count=2)


def test_cluster_request_matches_the_emr_service_model():
    request = emr.run_job_flow_request(SPEC)
    assert_valid_request("emr", "RunJobFlow", request)
    groups = {g["InstanceRole"]: g for g in request["Instances"]["InstanceGroups"]}
    assert groups["TASK"]["Market"] == "SPOT" and groups["CORE"]["InstanceCount"] == 2
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert request["ReleaseLabel"].startswith("emr-7.")
    # the v2 service role acts only on resources carrying this tag
    assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in request["Tags"]
    assert request["ServiceRole"] == "fruits-emr-service"
    assert request["JobFlowRole"] == "fruits-emr-ec2"
    assert request["SecurityConfiguration"] == "fruits-security"
    for group in request["Instances"]["InstanceGroups"]:
        volume = group["EbsConfiguration"]["EbsBlockDeviceConfigs"][0]["VolumeSpecification"]
        assert volume == {"VolumeType": "gp3", "SizeInGB": 64}
    bootstrap = request["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]
    assert (
        bootstrap[bootstrap.index("--wheelhouse") + 1]
        == "s3://fruits-bucket/fruits/code/wheelhouse"
    )
    spark_defaults = next(
        c for c in request["Configurations"] if c["Classification"] == "spark-defaults"
    )
    assert spark_defaults["Properties"]["spark.pyspark.python"] == emr.VENV_PYTHON
    assert "${" not in json.dumps(request)


def test_one_shot_request_runs_the_steps_and_ends():
    steps = emr.pipeline_steps(SPEC)
    request = emr.run_job_flow_request(SPEC, steps)
    assert_valid_request("emr", "RunJobFlow", request)
    assert request["Steps"] == steps
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert "AutoTerminationPolicy" not in request  # it ends with its last step


JAR = "s3://fruits-bucket/fruits/code/jars/spark-measure_2.12-0.24.jar"


def test_staged_jars_reach_every_step():
    """sparkMeasure's staged jar: ``--jars`` of both spark-submit steps (driver and executors in
    cluster mode); the notebooks step copies it to the node and names it to the kernels."""
    for run, recognize in [emr.pipeline_steps(SPEC, jars=[JAR])]:
        for step in (run, recognize):
            args = step["HadoopJarStep"]["Args"]
            assert args[:5] == ["spark-submit", "--deploy-mode", "cluster", "--jars", JAR]
    (notebooks,) = emr.pipeline_steps(SPEC, mode="notebooks", jars=[JAR])
    script = notebooks["HadoopJarStep"]["Args"][2]
    local = f"{emr.JARS_DIR}/spark-measure_2.12-0.24.jar"
    assert f"FRUITS_SPARKMEASURE_JAR={local} " in script
    copy = f"aws s3 cp --region {SPEC.region} --only-show-errors {JAR} {emr.JARS_DIR}/ && "
    assert copy in script
    other = "s3://fruits-bucket/fruits/code/jars/another.jar"  # any other staged jar: not it
    (both,) = emr.pipeline_steps(SPEC, mode="notebooks", jars=[other, JAR])
    assert f"FRUITS_SPARKMEASURE_JAR={local} " in both["HadoopJarStep"]["Args"][2]
    assert "--jars" not in " ".join(emr.pipeline_steps(SPEC)[0]["HadoopJarStep"]["Args"])
    assert "FRUITS_SPARKMEASURE_JAR" not in str(emr.pipeline_steps(SPEC, mode="notebooks"))


def test_chain_arguments_reach_their_steps_and_are_checked_before_anything_is_sent():
    run, recognize = emr.pipeline_steps(
        SPEC, extra_args=["--runtime", "openvino"], recognize_args=["--augment-copies", "1"]
    )
    assert run["HadoopJarStep"]["Args"][-2:] == ["--runtime", "openvino"]
    assert recognize["HadoopJarStep"]["Args"][-2:] == ["--augment-copies", "1"]
    (books,) = emr.pipeline_steps(SPEC, mode="notebooks", extra_args=["-p", "NOTE", "a b"])
    assert books["HadoopJarStep"]["Args"][2].endswith("-p NOTE 'a b'")  # one shell word
    refused = [
        ({"extra_args": ["--batch-size", "many"]}, "run arguments: "),
        ({"extra_args": ["--output", "s3://elsewhere"]}, "--output is set by the launcher"),
        ({"recognize_args": ["--classifier", "svm"]}, "recognize arguments: "),
        ({"recognize_args": ["--master=local"]}, "--master is set by the launcher"),
        ({"mode": "notebooks", "recognize_args": ["--augment-copies", "1"]}, "no recognize"),
    ]
    for kwargs, message in refused:
        with pytest.raises(ValueError, match=message) as err:
            emr.pipeline_steps(SPEC, **kwargs)
        assert "\n" not in str(err.value)
    done = run_cli(
        "fruits_tools", "emr", "run", "--bucket", "fruits-bucket", "--dry-run",
        "--recognize-args", "--augment-copies three", timeout=120,
    )  # fmt: skip
    assert_one_line_error(done, "invalid int value: 'three'")
    assert "RunJobFlow" not in done.stdout


def test_weights_are_looked_up_in_the_staged_folder_on_the_cluster():
    """``FRUITS_MODELS_URI`` names the staged weights wherever a process looks them up: the
    driver of a cluster-mode step (YARN's application master), the executors, and what reads
    spark-env.sh (client-mode drivers, the notebooks' kernels)."""
    staged = "s3://fruits-bucket/fruits/code/models"
    configurations = {c["Classification"]: c for c in emr.render_configurations(SPEC)}
    spark_defaults = configurations["spark-defaults"]["Properties"]
    assert spark_defaults.get("spark.yarn.appMasterEnv.FRUITS_MODELS_URI") == staged
    assert spark_defaults.get("spark.executorEnv.FRUITS_MODELS_URI") == staged
    exports = [
        nested["Properties"]
        for nested in configurations["spark-env"].get("Configurations", [])
        if nested["Classification"] == "export"
    ]
    assert [e.get("FRUITS_MODELS_URI") for e in exports] == [staged]
    # the notebooks step's own process reads no spark-env.sh: its command line sets it
    (notebooks,) = emr.pipeline_steps(SPEC, mode="notebooks")
    assert f"FRUITS_MODELS_URI={staged} " in notebooks["HadoopJarStep"]["Args"][2]


@pytest.mark.parametrize("mode", ["cli", "notebooks"])
def test_step_requests_match_the_emr_service_model(mode):
    steps = emr.pipeline_steps(SPEC, mode=mode)
    assert_valid_request("emr", "AddJobFlowSteps", {"JobFlowId": "j-1", "Steps": steps})
    command = " ".join(steps[0]["HadoopJarStep"]["Args"])
    assert (
        "s3://fruits-bucket/fruits/input" in command
        and "s3://fruits-bucket/fruits/output" in command
    )
    if mode == "cli":  # run, then recognize on its output; a failed run cancels recognize
        assert [s["HadoopJarStep"]["Args"][4] for s in steps] == ["run", "recognize"]
        assert steps[0]["ActionOnFailure"] == "CANCEL_AND_WAIT"
        assert "--output s3://fruits-bucket/fruits/output" in " ".join(
            steps[1]["HadoopJarStep"]["Args"]
        )
    else:
        assert len(steps) == 1
        assert "FRUITS_MODELS_URI=s3://fruits-bucket/fruits/code/models " in command


def test_dry_run_prints_exactly_the_requests():
    done = run_cli(
        "fruits_tools", "emr", "create", "--bucket", "fruits-bucket", "--task-count", "2",
        "--dry-run", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["operation"] == "RunJobFlow"
    assert printed["params"] == emr.run_job_flow_request(SPEC)
    assert_valid_request("emr", "RunJobFlow", printed["params"])


def test_launcher_against_a_local_emr_endpoint(aws_local, tmp_path, operator_calls):
    """Stage, create, submit, status, terminate through boto3 against the local server."""
    s3_staging.ensure_bucket(SPEC.bucket, SPEC.region)
    wheel = tmp_path / SPEC.wheel_name
    wheel.write_bytes(b"wheel bytes")
    weights = tmp_path / "mobilenet_v2_weights.h5"
    weights.write_bytes(b"weights")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "requirements.txt").write_text("six==1.17.0\n")
    client = boto3.client("emr", region_name=SPEC.region)
    launcher = emr.Launcher(SPEC, client=client)

    jar = tmp_path / "spark-measure_2.12-0.24.jar"
    jar.write_bytes(b"jar")
    assert launcher.staged_jars() == []
    staged = launcher.stage(wheel, wheelhouse, weights, [jar])
    keys = {o["key"] for o in s3_staging.list_prefix(f"s3://{SPEC.bucket}/fruits/code")}
    assert {u.split(f"{SPEC.bucket}/", 1)[1] for u in staged if not u.endswith("/")} | {
        "fruits/code/wheelhouse/requirements.txt"
    } == keys
    assert "fruits/code/bootstrap.sh" in keys and "fruits/code/notebooks/03_pca.ipynb" in keys
    assert "fruits/code/models/mobilenet_v2_weights.h5" in keys
    assert launcher.staged_jars() == [JAR]
    # EMR Studio's copies declare the PySpark kernel; the committed notebooks keep python3
    studio = json.loads(
        boto3.client("s3")
        .get_object(Bucket=SPEC.bucket, Key="fruits/code/notebooks-studio/03_pca.ipynb")["Body"]
        .read()
    )
    assert studio["metadata"]["kernelspec"]["name"] == "pysparkkernel"
    committed = json.loads((ROOT / "notebooks" / "03_pca.ipynb").read_text())
    assert committed["metadata"]["kernelspec"]["name"] == "python3"
    # the same cells, each figure cell ending with Livy's %matplot (tests/test_show.py)
    assert studio == json.loads(emr.studio_notebook(ROOT / "notebooks" / "03_pca.ipynb"))
    assert [c["id"] for c in studio["cells"]] == [c["id"] for c in committed["cells"]]

    cluster_id = launcher.create()
    assert cluster_id.startswith("j-")
    described = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert described["ReleaseLabel"] == SPEC.release
    step_ids = launcher.submit(cluster_id, emr.pipeline_steps(SPEC, mode="cli"))
    status = launcher.status(cluster_id)
    assert set(status["steps"]) == set(step_ids)
    assert status["output"] == "s3://fruits-bucket/fruits/output/"
    launcher.terminate(cluster_id)
    state = client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state.startswith("TERMINAT")


def test_instance_profile_policy_is_least_privilege():
    policy = emr.render_policy(SPEC)
    actions = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions <= {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        # a killed writer's unfinished uploads under output/_staging/, found to be aborted
        # (the action has no prefix condition: key names of in-progress uploads only)
        "s3:ListBucketMultipartUploads",
    }
    for statement in policy["Statement"]:
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for resource in resources:
            # besides the project's bucket, only reading the region's EMR and Amazon Linux
            # package repositories (S3 buckets of AWS, used from a private subnet)
            assert resource.startswith("arn:aws:s3:::fruits-bucket") or (
                statement["Action"] == "s3:GetObject"
                and re.match(
                    r"arn:aws:s3:::(repo|packages)\.eu-west-3\.emr\.amazonaws\.com/\*$|"
                    r"arn:aws:s3:::al2023-repos-eu-west-3-de612dc2/\*$",
                    resource,
                )
            ), resource
        writes = {"s3:PutObject", "s3:DeleteObject"} & set(statement["Action"])
        if writes:  # writing only under output/ and logs/, and EMRFS folder markers
            assert all(
                re.search(r"/fruits/(output|logs/emr|logs/spark-events)/\*$", r)
                or r.endswith("_$folder$")
                for r in resources
            ), resources
    assert "${" not in json.dumps(policy)


BOOTSTRAP = ROOT / "emr" / "bootstrap.sh"


def test_bootstrap_is_valid_bash_and_shellcheck_clean():
    assert subprocess.run(["bash", "-n", str(BOOTSTRAP)]).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed (Debian package 'shellcheck'; .ci/run installs it)"
    done = subprocess.run([shellcheck, str(BOOTSTRAP)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def region_work(tmp_path):
    return ["--region", "eu-west-3", "--work-dir", str(tmp_path / "work")]


def test_bootstrap_dry_run_installs_the_pinned_packages(tmp_path):
    done = subprocess.run(
        ["bash", str(BOOTSTRAP), "--dry-run", "--wheel", "s3://b/p/code/x.whl",
         *region_work(tmp_path),
         "--venv", str(tmp_path / "venv"), "--python", "python3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"] + project["optional-dependencies"]["runtime"]
    expected = [d for d in runtime if not d.startswith("pyspark")]
    install = next(line for line in done.stdout.splitlines() if "tensorflow" in line)
    assert sorted(re.findall(r"\S+(?:==|>=)\S+", install)) == sorted(expected)
    work = tmp_path / "work"
    assert f"aws s3 cp --region eu-west-3 --only-show-errors s3://b/p/code/x.whl {work}/x.whl" in (
        done.stdout
    )
    assert "--no-deps --force-reinstall" in done.stdout
    assert done.stdout.rstrip().endswith(
        "bootstrap: done (environment " + str(tmp_path / "venv") + ")"
    )


def test_bootstrap_dry_run_installs_from_the_wheelhouse_with_no_index(tmp_path):
    done = subprocess.run(
        ["bash", str(BOOTSTRAP), "--dry-run", "--wheel", "s3://b/p/code/x.whl",
         *region_work(tmp_path),
         "--wheelhouse", "s3://b/p/code/wheelhouse",
         "--venv", str(tmp_path / "venv"), "--python", "python3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (
        "aws s3 cp --region eu-west-3 --recursive --only-show-errors s3://b/p/code/wheelhouse "
        in out
    )
    local = tmp_path / "work" / "wheelhouse"
    installs = [line for line in out.splitlines() if " -m pip install" in line]
    assert installs and all(f"--no-index --find-links {local}" in i for i in installs)
    assert f"--require-hashes -r {local}/requirements.lock" in out
    assert f"--require-hashes -r {local}/requirements-primary.lock" not in out  # not a primary
    assert "--upgrade pip" not in out and "tensorflow" not in out


def test_bootstrap_never_echoes_index_credentials(tmp_path):
    secret = "s3cr3t-t0ken"
    done = subprocess.run(
        ["bash", str(BOOTSTRAP), "--dry-run", "--wheel", "s3://b/p/code/x.whl",
         *region_work(tmp_path),
         "--pip-args", f"--extra-index-url https://__token__:{secret}@pypi.example/simple",
         "--venv", str(tmp_path / "venv"), "--python", "python3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    assert "https://***@pypi.example/simple" in done.stdout


def test_bootstrap_refuses_bad_arguments():
    missing = subprocess.run(["bash", str(BOOTSTRAP), "--dry-run"], capture_output=True, text=True)
    assert missing.returncode == 2 and "--wheel is required" in missing.stderr
    unknown = subprocess.run(["bash", str(BOOTSTRAP), "--bogus"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown argument" in unknown.stderr


SECRET_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # access key ids
    re.compile(r"aws_secret_access_key\s*[=:]\s*\S{20,}", re.I),
    re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    re.compile(r"\b[A-Za-z0-9/+]{40}\b(?=.*secret)", re.I),
]


def test_no_credentials_in_the_repository():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert files, "not a git checkout"
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in (".jpg", ".png", ".h5") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {p.pattern}" for p in SECRET_PATTERNS if p.search(text)]
    assert found == []


def test_recognition_step_takes_none_of_the_runs_options():
    """The recognition step featurizes by the features' recipe (features/_manifest.json names
    the run's weights): none of the run's options reach it."""
    spec = emr.ClusterSpec(bucket="b")
    extra = ["--input-size", "96", "--weights", "s3://b/fruits/code/models/w.h5"]
    run, recognize = (
        s["HadoopJarStep"]["Args"] for s in emr.pipeline_steps(spec, extra_args=extra)
    )
    assert run[-4:] == extra
    assert recognize[-2:] == ["--output", "s3://b/fruits/output"]
    assert "--input-size" not in recognize and "--weights" not in recognize


def test_the_notebooks_step_points_notebook_04_at_the_history_server():
    """On EMR the kernels' event logs are the cluster's (hdfs), not under the s3:// output:
    notebook 04 reads notebook 02's application from the primary node's History Server, unless
    told where else."""
    (step,) = emr.pipeline_steps(SPEC, mode="notebooks")
    script = step["HadoopJarStep"]["Args"][2]
    assert f"-p SPARK_UI_URL {emr.EMR_HISTORY_SERVER} " in script
    for own in (["-p", "EVENT_LOG_DIR", "/mnt/events"], ["-p", "SPARK_UI_URL", "http://h:18080"]):
        (step,) = emr.pipeline_steps(SPEC, mode="notebooks", extra_args=own)
        assert emr.EMR_HISTORY_SERVER not in step["HadoopJarStep"]["Args"][2]
