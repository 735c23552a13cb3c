"""EMR rehearsed on this machine, for real (``make rehearse-emr``):

- the bootstrap action executed into a prefix before Spark exists there, then EMR 7.13's
  Spark 3.5.6 installed where EMR puts it;
- the exact ``run`` and ``recognize`` steps that ``fruits_tools.emr`` builds, submitted with
  spark-submit in YARN cluster deploy mode to a real ResourceManager + NodeManager on loopback,
  with ``spark-defaults.conf`` rendered from ``emr/configurations.json``;
- their ``s3://`` input, output and staged weights on a local S3 server, read and written with
  the nodes' role only (``emr/iam/instance-profile-policy.json``): S3A stands in for EMRFS
  (closed source) with the hadoop-aws of Spark 3.5.6's Hadoop, and a gate answers every request
  as AWS would for that role (tests/s3gate.py: the IAM simulator, AWS's 404 rule);
- their features, k and accuracy against the local Spark 4 environment;
- the notebooks step (papermill in the bootstrap's environment, YARN client mode), on ``s3://``
  as the nodes' role too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fruits_tools import emr, iam, s3_staging
from tests import emr_box
from tests.clirun import run_cli
from tests.conftest import ROOT
from tests.iamsim import ACCOUNT, OWNER, Principal
from tests.livy import same_shape, shape
from tests.s3gate import replay

# (the tests on the YARN minicluster also carry spark and slow: Spark in extra JVMs)
pytestmark = pytest.mark.rehearsal

INPUT = ROOT / "data_sample"
#: Recognition options, given as `emr run --recognize-args` gives them (the option must reach
#: the driver in cluster mode): one head and one cluttered copy, as the rehearsal checks the
#: environment the steps run in; the default (three heads compared, three copies) and its
#: targets are checked on real photos by test_notebooks.
RECOGNIZE_ARGS = ["--classifier", "logistic_regression", "--augment-copies", "1"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SPEC = emr.ClusterSpec(bucket="rehearsal")
#: The principal the nodes run as: exactly the policy ``emr roles create`` attaches.
NODE_ROLE = Principal.role(iam.INSTANCE_ROLE, **{"fruits-s3": emr.render_policy(SPEC)})


@pytest.fixture(scope="module")
def node(tmp_path_factory, mobilenet_weights):
    """A primary node: bootstrap run before Spark exists, then Spark installed (as on EMR)."""
    prefix = tmp_path_factory.mktemp("emr-node")
    wheel = emr_box.build_wheel(prefix / "dist")
    done = emr_box.run_bootstrap(prefix, wheel)
    assert done.returncode == 0, f"bootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    python = prefix / "venv" / "bin" / "python"
    before = subprocess.run([python, "-c", "import pyspark"], capture_output=True, text=True)
    spark_home = emr_box.install_spark(prefix)
    return {
        "prefix": prefix,
        "wheel": wheel,
        "python": python,
        "spark_home": spark_home,
        "bootstrap": done,
        "pyspark_before_spark": before,
        "weights": mobilenet_weights,
    }


@pytest.fixture(scope="module")
def yarn(node):
    cluster = emr_box.YarnMiniCluster(node["prefix"] / "yarn").start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def aws(s3_gate):
    """The local S3 server behind the gate: the owner's and the nodes' credentials."""
    gate = s3_gate
    owner_env = gate.admit("OWNERKEY", OWNER)
    nodes_env = gate.admit("NODEROLEKEY", NODE_ROLE)
    owner = gate.client("OWNERKEY", SPEC.region)
    s3_staging.ensure_bucket(SPEC.bucket, SPEC.region, client=owner, expected_owner=ACCOUNT)
    return {"gate": gate, "owner": owner, "owner_env": owner_env, "nodes_env": nodes_env}


@pytest.fixture(scope="module")
def staged(aws, node):
    """What the operator puts in the bucket before a launch: the input (``s3 upload``) and
    the code (``emr stage``: the entry point, the weights, the jar, the notebooks)."""
    owner = aws["owner"]
    s3_staging.upload_folder(INPUT, SPEC.uri("input"), client=owner, expected_owner=ACCOUNT)
    launcher = emr.Launcher(SPEC, s3=owner, owner=ACCOUNT)
    launcher.stage(node["wheel"], weights=Path(node["weights"]), jars=[_sparkmeasure_jar()])
    return SPEC


@pytest.fixture(scope="module")
def emr_env(node, yarn, aws) -> dict:
    """The environment of a step on the primary node: EMR's Spark, its configuration, S3
    through S3A as the nodes' role."""
    conf = emr_box.emr_conf_dir(
        node["prefix"] / "spark-conf",
        venv=node["prefix"] / "venv",
        spark_home=node["spark_home"],
        event_log_dir=node["prefix"] / "var-log-spark-apps",
        extra=emr_box.s3a_settings(aws["gate"].url, SPEC.region, aws["nodes_env"]),
        classpath=emr_box.s3a_classpath(),
    )
    return _step_env(node, yarn, aws, conf, aws["nodes_env"])


def _step_env(node: dict, yarn, aws: dict, conf: Path, nodes_env: dict) -> dict:
    """A step's environment on the primary node: EMR's Spark with ``conf``, the cluster's YARN,
    S3 through the gate with ``nodes_env``'s credentials (as the instance profile gives them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env.update(
        SPARK_HOME=str(node["spark_home"]),
        SPARK_CONF_DIR=str(conf),
        HADOOP_CONF_DIR=str(yarn.conf_dir),
        JAVA_HOME=emr_box.java_home(),
        SPARK_LOCAL_IP="127.0.0.1",
        AWS_REGION=SPEC.region,
        AWS_ENDPOINT_URL_S3=aws["gate"].url,
    )
    env.update({k: v for k, v in nodes_env.items() if k != "AWS_ENDPOINT_URL"})
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        env.pop(name, None)
    return env


def _submit(args: list[str], env: dict, cwd: Path, yarn, **extra) -> dict:
    """Run one spark-submit; its outcome and the YARN applications it started."""
    before = set(yarn.application_ids())
    started = time.monotonic()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)
    elapsed = time.monotonic() - started
    new = sorted(set(yarn.application_ids()) - before)
    return {"args": args, "done": done, "apps": new, "s": elapsed, **extra}


def _sparkmeasure_jar() -> Path:
    """sparkMeasure's build for Spark 3.5 (Scala 2.12): what ``emr stage`` uploads."""
    (jar,) = emr_box.fetch_jars("sparkmeasure").glob("spark-measure_2.12-*.jar")
    return jar


def _localize(args: list[str], spark_home: Path) -> list[str]:
    """The step's arguments with EMR's spark-submit mapped to this machine's; its entry point
    and jars stay the staged ``s3://`` copies, which spark-submit reads as the nodes' role."""
    return [str(spark_home / "bin" / "spark-submit") if a == "spark-submit" else a for a in args]


def _measured_by_sparkmeasure(output: Path) -> None:
    """The featurization's stage metrics in the run report come from sparkMeasure's listener."""
    measured = json.loads((output / "run_report.json").read_text())["stage_metrics"]
    assert measured["featurize"] is not None, measured["note"]
    assert measured["featurize"]["source"].startswith("sparkMeasure "), measured
    assert measured["featurize"]["executor_cpu_time_ms"] > 0


def _event_log(folders: list[Path], app_id: str) -> list[dict]:
    path = next(p for f in folders if f.is_dir() for p in f.iterdir() if p.name.startswith(app_id))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _features(output: Path) -> pd.DataFrame:
    frame = pd.read_parquet(output / "features", columns=["path", "features"])
    return frame.sort_values("path").reset_index(drop=True)


@pytest.fixture(scope="module")
def yarn_steps(node, yarn, emr_env, staged, aws):
    """``run`` (incremental: the first run of an output is a full one) then ``recognize``, as
    ``emr submit`` sends them, in YARN cluster mode, on ``s3://`` as the nodes' role; the
    weights from the staged copy (FRUITS_MODELS_URI). The output is then downloaded by the
    owner for the assertions."""
    jars = [SPEC.uri("code", "jars", _sparkmeasure_jar().name)]
    steps = emr.pipeline_steps(
        SPEC, SPEC.uri("input"), SPEC.uri("output"), extra_args=["--incremental"], jars=jars,
        recognize_args=RECOGNIZE_ARGS,
    )  # fmt: skip
    return _run_steps(steps, emr_env, node, yarn, aws, SPEC.uri("output"), "output")


def _run_steps(steps, env: dict, node: dict, yarn, aws: dict, output_uri: str, name: str) -> dict:
    """The steps one after the other (stopping at a failed one), then their output downloaded
    by the bucket's owner into ``node prefix/name``."""
    results = []
    for step in steps:
        args = _localize(step["HadoopJarStep"]["Args"], node["spark_home"])
        results.append(_submit(args, env, node["prefix"], yarn, step=step, name=step["Name"]))
        if results[-1]["done"].returncode != 0:
            break
    output = node["prefix"] / name
    s3_staging.download_prefix(output_uri, output, client=aws["owner"], expected_owner=ACCOUNT)
    return {"output": output, "results": results}


def test_bootstrap_builds_the_environment_before_spark_exists(node):
    assert "bootstrap: done" in node["bootstrap"].stdout
    # before Spark is installed, the environment has no pyspark and does not break
    assert "No module named 'pyspark'" in node["pyspark_before_spark"].stderr
    probe = (
        "import json, numpy, pandas, pyarrow, py4j, pyspark, tensorflow, helpers;"
        "print(json.dumps({'pyspark': pyspark.__version__, 'numpy': numpy.__version__,"
        "'pyspark_file': pyspark.__file__, 'py4j_file': py4j.__file__}))"
    )
    done = subprocess.run([node["python"], "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["pyspark"] == emr_box.EMR_SPARK_VERSION
    assert found["numpy"] == "1.26.4"  # pyspark 3.5 declares numpy<2
    spark_python = str(node["prefix"] / "spark" / "python")
    assert found["pyspark_file"].startswith(spark_python)
    assert found["py4j_file"].startswith(spark_python + "/lib/py4j-")


def test_bootstrap_installs_exactly_the_pinned_versions(node):
    text = (ROOT / "emr" / "bootstrap.sh").read_text()
    pins = [
        line.strip().strip('"')
        for line in text.split("PINNED=(", 1)[1].split(")", 1)[0].splitlines()
        if "==" in line
    ]
    freeze = subprocess.run(
        [node["python"], "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout.lower()
    for pin in pins:
        assert pin.lower() in freeze.replace("_", "-") or pin.lower() in freeze, pin


def test_release_and_spark_version_in_step():
    """The rehearsal's Spark is the Spark of the release the launcher defaults to."""
    assert emr.DEFAULT_RELEASE == "emr-7.13.0" and emr_box.EMR_SPARK_VERSION == "3.5.6"


@pytest.mark.spark
@pytest.mark.slow
def test_run_and_recognize_steps_succeed_on_yarn_in_cluster_mode(yarn_steps, yarn):
    for result in yarn_steps["results"]:
        assert result["done"].returncode == 0, result["done"].stderr[-4000:]
    assert [r["args"][1:3] for r in yarn_steps["results"]] == [["--deploy-mode", "cluster"]] * 2
    assert all(len(r["apps"]) == 1 for r in yarn_steps["results"])
    for result in yarn_steps["results"]:
        report = yarn.application_report(result["apps"][0])
        assert report["State"] == "FINISHED" and report["Final-State"] == "SUCCEEDED", report
        print(
            f"{result['step']['Name']}: {report['Application-Id']} {report['State']} "
            f"{report['Final-State']} in {result['s']:.0f} s "
            f"({report['Aggregate Resource Allocation']})"
        )


@pytest.mark.spark
@pytest.mark.slow
def test_the_steps_ran_on_yarn_with_executors_in_nodemanager_containers(node, yarn_steps, yarn):
    # `run` logs under its output (given a local output); `recognize` where the cluster does
    events_dirs = [yarn_steps["output"] / "spark-events", node["prefix"] / "var-log-spark-apps"]
    for result in yarn_steps["results"]:
        app_id = result["apps"][0]
        events = _event_log(events_dirs, app_id)
        env = next(e for e in events if e["Event"] == "SparkListenerEnvironmentUpdate")
        props = env["Spark Properties"]
        props = dict(props) if isinstance(props, list) else props
        assert props["spark.master"] == "yarn"
        assert props["spark.submit.deployMode"] == "cluster"
        executors = [e for e in events if e["Event"] == "SparkListenerExecutorAdded"]
        assert executors, f"{app_id}: no executor"
        container_prefix = "container_" + app_id.removeprefix("application_")
        for added in executors:
            urls = " ".join(added["Executor Info"]["Log Urls"].values())
            assert container_prefix in urls, urls
            print(
                f"{app_id}: master {props['spark.master']} ({props['spark.submit.deployMode']}),"
                f" executor {added['Executor ID']} on {added['Executor Info']['Host']}: {urls}"
            )
        # and those containers really ran: their logs are in the NodeManager's log folders
        assert any(container_prefix in str(p) for p in yarn.container_logs(app_id))


@pytest.mark.spark
@pytest.mark.slow
def test_yarn_outputs_are_complete(yarn_steps):
    output = yarn_steps["output"]
    images = [p for p in INPUT.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    report = json.loads((output / "run_report.json").read_text())
    assert report["images"]["total"] == len(images)
    assert len(_features(output)) == len(images)
    assert pd.read_parquet(output / "reduced").shape[0] == report["images"]["featurized"]
    for name in ("reduction_model/metadata", "recognizer/pipeline", "explained_variance.png",
                 "recognizer/recognizer.json", "recognition_report.json", "maps.png"):  # fmt: skip
        assert (output / name).exists(), name
    assert not any((output / "_staging").iterdir()) if (output / "_staging").exists() else True
    _measured_by_sparkmeasure(output)
    settings = json.loads((output / "recognizer" / "recognizer.json").read_text())["settings"]
    # --recognize-args reached the step
    assert settings["augmentation"]["copies"] == 1
    assert set(settings["head_choice"]["scores"]) == {"logistic_regression"}


@pytest.mark.spark
@pytest.mark.slow
def test_the_nodes_role_is_enough_for_the_steps(yarn_steps, aws):
    """Every S3 request of the steps, as AWS would answer it for the nodes' role: none refused
    (the gate turns a denied action, or a 404 AWS would hide, into 403)."""
    gate = aws["gate"]
    assert all(r["done"].returncode == 0 for r in yarn_steps["results"])
    denied = sorted({(r.action, r.key, r.note) for r in gate.denied(iam.INSTANCE_ROLE)})
    assert denied == [], denied[:20]
    counts = gate.counts(iam.INSTANCE_ROLE)
    for (action, status), n in sorted(counts.items()):
        print(f"nodes' role: {action} {status}: {n}")
    actions = {action for action, _ in counts}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"} <= actions
    # existence checks of missing keys happened, and AWS would have answered them 404
    assert counts[("s3:GetObject", 404)] > 0
    # spark-submit read the staged entry point and jar, the driver the staged weights
    mine = [r for r in gate.records if r.principal == iam.INSTANCE_ROLE]
    read = {r.key for r in mine if (r.action, r.status) == ("s3:GetObject", 200)}
    for key in (SPEC.key("code", "run_pipeline.py"),
                SPEC.key("code", "jars", _sparkmeasure_jar().name)):  # fmt: skip
        assert key in read, key
    assert any(k.startswith(SPEC.key("code", "models") + "/") for k in read), sorted(read)[:20]


@pytest.mark.spark
@pytest.mark.slow
def test_one_statement_less_and_the_steps_fail_naming_the_action_and_the_key(yarn_steps, aws):
    """The same requests against the policy without one statement: refused, and the refusal
    names the action and the key. Statements the steps never use are listed (the bootstrap's
    package repositories, EMR's own logs, EMRFS's folder markers)."""
    records = [r for r in aws["gate"].records if r.principal == iam.INSTANCE_ROLE]
    simulator = aws["gate"].simulator
    needed = {}
    for statement in emr.render_policy(SPEC)["Statement"]:
        refused = replay(records, NODE_ROLE.without("fruits-s3", statement["Sid"]), simulator)
        needed[statement["Sid"]] = refused
        if refused:
            where = refused.key or f"{refused.bucket} {dict(refused.context)}"
            print(f"without {statement['Sid']}: {refused.action} on {where} refused")
    write = needed["WriteOutputAndItsStaging"]
    assert write is not None and write.key.startswith("fruits/output/"), write
    assert write.action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")
    read = needed["ReadInputAndCode"]
    assert read is not None and read.action == "s3:GetObject"
    assert read.key.startswith(("fruits/input/", "fruits/code/"))
    listing = needed["ListOnlyTheProjectPrefixes"]
    assert listing is not None and listing.action in ("s3:ListBucket", "s3:GetObject")


@pytest.mark.spark
@pytest.mark.slow
def test_predict_reads_s3_photos_and_the_recognizer_as_the_nodes_role(node, yarn_steps, aws):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYSPARK_"))}
    env.pop("PYTHONPATH", None)
    env.update(aws["nodes_env"], AWS_REGION=SPEC.region)
    env["AWS_ENDPOINT_URL_S3"] = env.pop("AWS_ENDPOINT_URL")
    photos = SPEC.uri("input", "Test")
    done = subprocess.run(
        [
            node["python"],
            "-m",
            "helpers",
            "predict",
            "--json",
            "--recognizer",
            SPEC.uri("output", "recognizer"),
            photos,
        ],
        env=env,
        cwd=node["prefix"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip  (not the clone's folder: the environment's installed helpers answer)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    photos = [p for p in (INPUT / "Test").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    assert len(answers) == len(photos)
    assert aws["gate"].denied(iam.INSTANCE_ROLE) == []


@pytest.fixture(scope="module", autouse=True)
def _local_spark4_in_background(request, tmp_path_factory, mobilenet_weights):
    """The same chain in the local environment (pyspark 4.x, the project's venv), started when
    the module starts if a selected test compares with it: it runs while the bootstrap and YARN
    wait on each other, so the module takes less wall time (the comparison waits for it)."""
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    if not any("local_spark4_run" in i.fixturenames for i in items):
        yield None
        return
    output = tmp_path_factory.mktemp("spark4") / "output"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    commands = (
        ["run", "--input", str(INPUT), "--output", str(output), "--weights", mobilenet_weights,
         "--master", "local[2]"],
        ["recognize", "--output", str(output), "--master", "local[2]", *RECOGNIZE_ARGS],
    )  # fmt: skip
    done: list[subprocess.CompletedProcess] = []

    def chain() -> None:
        for command in commands:
            done.append(run_cli("helpers", *command, env=env, timeout=1200))
            if done[-1].returncode != 0:
                return

    thread = threading.Thread(target=chain, daemon=True)
    thread.start()
    yield {"output": output, "thread": thread, "done": done}
    thread.join(timeout=1300)


@pytest.fixture(scope="module")
def local_spark4_run(_local_spark4_in_background):
    started = _local_spark4_in_background
    started["thread"].join(timeout=1300)
    assert len(started["done"]) == 2, "the local Spark 4 chain did not finish"
    for done in started["done"]:
        assert done.returncode == 0, done.stderr[-3000:]
    return started["output"]


@pytest.mark.spark
@pytest.mark.slow
def test_spark35_on_yarn_matches_spark4_locally(yarn_steps, local_spark4_run):
    emr_out, local_out = yarn_steps["output"], local_spark4_run
    a, b = _features(emr_out), _features(local_out)
    # the same photos: on S3 for the steps, in the clone for the local run
    relative = [p.split("/fruits/input/", 1)[1] for p in a["path"]]
    assert relative == [p.split("/data_sample/", 1)[1] for p in b["path"]]
    readable = a["features"].notna() & b["features"].notna()
    assert (a["features"].notna() == b["features"].notna()).all()
    diff = np.abs(
        np.stack(a.loc[readable, "features"].to_numpy()) - np.stack(b.loc[readable, "features"])
    ).max()
    assert diff <= 1e-4, diff
    reports = [json.loads((o / "pca_report.json").read_text()) for o in (emr_out, local_out)]
    assert reports[0]["pca"]["k"] == reports[1]["pca"]["k"]
    scores = [
        json.loads((o / "recognition_report.json").read_text())["classifier"]
        for o in (emr_out, local_out)
    ]
    assert scores[0]["accuracy"] == pytest.approx(scores[1]["accuracy"], abs=1e-9)
    print(
        f"Spark 3.5.6 on YARN vs Spark 4 local: max feature diff {diff:.2e}, "
        f"k {reports[0]['pca']['k']} vs {reports[1]['pca']['k']}, "
        f"accuracy {scores[0]['accuracy']:.4f} vs {scores[1]['accuracy']:.4f}"
    )
    (emr_out / "spark35_vs_spark4.json").write_text(
        json.dumps(
            {
                "max_feature_diff": float(diff),
                "k": reports[0]["pca"]["k"],
                "accuracy": [s["accuracy"] for s in scores],
                "spark": [
                    json.loads((o / "run_report.json").read_text()).get("spark_version")
                    for o in (emr_out, local_out)
                ],
            }
        )  # fmt: skip
    )


@pytest.mark.spark
@pytest.mark.slow
def test_notebooks_step_in_the_bootstrap_environment(
    node, yarn, emr_env, staged, aws, history_server, tmp_path
):
    """The notebooks step's command as ``emr submit`` sends it, with the kernel the bootstrap
    registered and ``SPARK_MASTER yarn``: its ``aws s3 cp`` of the staged jar and notebooks, the
    input, the weights (FRUITS_MODELS_URI) and the output on ``s3://``, all as the nodes' role;
    every notebook runs against the minicluster; notebook 04 reads notebook 02's application
    from the History Server (its event log is the cluster's, not under the output)."""
    jar = _sparkmeasure_jar()
    jars = [SPEC.uri("code", "jars", jar.name)]
    output_uri = SPEC.uri("output", "notebooks-step")
    # the fast mode (OpenVINO, 96 px): the run step rehearses the default mode on YARN, this
    # one the bootstrap's OpenVINO in YARN's executors; one head, one cluttered copy
    parameters = ["-p", "RUNTIME", "openvino", "-p", "INPUT_SIZE", "96", "-p", "CLASSIFIER",
                  "logistic_regression", "-p", "AUGMENT_COPIES", "1"]  # fmt: skip
    step = emr.pipeline_steps(
        SPEC, SPEC.uri("input"), output_uri, mode="notebooks", jars=jars, extra_args=parameters
    )[0]
    script = step["HadoopJarStep"]["Args"][2]
    books, jars_dir = tmp_path / "books", tmp_path / "jars"
    command = (
        script.replace("/usr/lib/spark", str(node["spark_home"]))
        .replace(emr.NOTEBOOKS_DIR, str(books))
        .replace(emr.JARS_DIR, str(jars_dir))
        .replace(emr.VENV_PYTHON, str(node["python"]))
        .replace(emr.EMR_HISTORY_SERVER, history_server)
    )
    env = {**emr_env, "PATH": emr_box.aws_on_path(tmp_path / "bin", emr_env["PATH"])}
    # no weights on the node but the staged ones (an empty Keras cache, no models folder)
    env["KERAS_HOME"] = str(tmp_path / "keras")
    env.pop("FRUITS_MODELS_DIR", None)
    before = set(yarn.application_ids())
    done = subprocess.run(
        ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=2400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in books.glob("*.ipynb")) == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb")
    )  # what the step's `aws s3 cp` fetched: the staged notebooks
    output = tmp_path / "output"
    s3_staging.download_prefix(output_uri, output, client=aws["owner"], expected_owner=ACCOUNT)
    executed = sorted(p.name for p in (output / "notebooks").glob("*.ipynb"))
    assert executed == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    apps = sorted(set(yarn.application_ids()) - before)
    assert apps, "the notebooks started no YARN application"
    for app in apps:
        assert yarn.application_report(app)["Final-State"] == "SUCCEEDED"
    recognition = json.loads((output / "recognition_report.json").read_text())
    assert recognition["classifier"]["accuracy"] > 0.5
    assert recognition["augmentation"]["copies"] == 1
    recipe = json.loads((output / "features" / "_manifest.json").read_text())
    assert (recipe["runtime"], recipe["input_size"]) == ("openvino", 96), recipe
    assert recipe["weights"]["uri"].startswith(SPEC.uri("code", "models")), recipe["weights"]
    _measured_by_sparkmeasure(output)
    denied = sorted({(r.action, r.key, r.note) for r in aws["gate"].denied(iam.INSTANCE_ROLE)})
    assert denied == [], denied[:20]


# -- EMR Studio's and JupyterHub's PySpark kernel ------------------------------------------------


@pytest.fixture(scope="module")
def livy(node, yarn, emr_env, tmp_path_factory):
    """EMR's Livy on the primary node (tests/livy/server.py): each session a PySpark driver
    submitted with EMR's Spark in the deploy mode the cluster's ``livy-conf`` sets (cluster, as
    AWS advises for EMR Studio: the driver in a YARN container, on a core node)."""
    from tests.livy.server import LivyServer

    conf = {c["Classification"]: c for c in emr.render_configurations(SPEC)}
    mode = conf["livy-conf"]["Properties"].get("livy.spark.deploy-mode", "client")  # Livy's
    work = tmp_path_factory.mktemp("livy")
    server = LivyServer(str(node["spark_home"] / "bin" / "spark-submit"), emr_env, mode, work)
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def history_server(node, emr_env):
    """EMR's Spark History Server on the primary node, over the cluster's event logs (what
    notebook 04's ``SPARK_UI_URL`` points at on EMR)."""
    from tests.ports import free_port, wait_for_http

    port = free_port()
    events = node["prefix"] / "var-log-spark-apps"
    env = {**emr_env, "SPARK_HISTORY_OPTS": (
        f"-Dspark.history.fs.logDirectory={events.as_uri()} -Dspark.history.ui.port={port} "
        "-Dspark.history.fs.update.interval=2s")}  # fmt: skip
    process = subprocess.Popen(
        [str(node["spark_home"] / "bin" / "spark-class"),
         "org.apache.spark.deploy.history.HistoryServer"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/api/v1/applications", process, "the Spark History Server", 90, 1)
    yield url
    process.terminate()
    process.wait(timeout=30)


#: the shape (tests/livy/shapes/) of each answer sparkmagic reads, by route
LIVY_SHAPES = {("GET", "/sessions/N"): "session", ("GET", "/sessions"): "sessions",
               ("POST", "/sessions"): "session", ("GET", "/sessions/N/log"): "log",
               ("POST", "/sessions/N/statements"): "statement_waiting"}  # fmt: skip
#: one of the sample's test photos, asked "what fruit is this" through PHOTO_URI
PHOTO = "Test/Banana/0_100.jpg"


@pytest.fixture(scope="module")
def studio_run(node, yarn, livy, history_server, staged, aws, tmp_path_factory):
    """The five EMR Studio copies ``emr stage`` uploaded (the ones ``emr notebooks-execution``
    runs), executed in order by papermill with ``-k pysparkkernel``: sparkmagic's kernel sends
    each cell, the injected parameters included, to a Livy session on the minicluster; S3 as
    the nodes' role."""
    import papermill

    from tests.livy import kernel

    work = tmp_path_factory.mktemp("studio")
    env = {**os.environ, **kernel.install(work / "kernel", livy.url)}
    books = work / "staged"
    s3_staging.download_prefix(SPEC.uri("code", "notebooks-studio"), books,
                               client=aws["owner"], expected_owner=ACCOUNT)  # fmt: skip
    output_uri = SPEC.uri("output", "studio")
    given = {"INPUT_URI": SPEC.uri("input"), "OUTPUT_URI": output_uri, "RUNTIME": "openvino",
             "INPUT_SIZE": 96, "CLASSIFIER": "logistic_regression", "AUGMENT_COPIES": 1,
             "SPARK_UI_URL": history_server, "PHOTO_URI": SPEC.uri("input", PHOTO)}  # fmt: skip
    executed, runs = work / "executed", []
    executed.mkdir()
    for book in sorted(books.glob("*.ipynb")):
        declared = set(papermill.inspect_notebook(str(book)))
        params = {k: v for k, v in given.items() if k in declared}
        before = set(yarn.application_ids())
        done = kernel.papermill(
            [str(book), str(executed / book.name), "-k", "pysparkkernel",
             "-y", json.dumps(params), "--no-progress-bar"], env=env, cwd=work, timeout=1500,
        )  # fmt: skip
        runs.append({"book": book.name, "done": done,
                     "apps": sorted(set(yarn.application_ids()) - before)})  # fmt: skip
        if done.returncode != 0:
            break
    output = work / "output"
    s3_staging.download_prefix(output_uri, output, client=aws["owner"], expected_owner=ACCOUNT)
    return {"runs": runs, "executed": executed, "output": output, "output_uri": output_uri}


def _outputs(path: Path, marker: str) -> list[dict]:
    """The outputs of the code cell whose source contains ``marker``."""
    import nbformat

    book = nbformat.read(str(path), as_version=4)
    (cell,) = [c for c in book.cells if c.cell_type == "code" and marker in c.source]
    return cell.outputs


def _png(outputs: list[dict]) -> bytes | None:
    import base64

    shown = [o for o in outputs if "image/png" in o.get("data", {})]
    return base64.b64decode(shown[-1]["data"]["image/png"]) if shown else None


@pytest.mark.spark
@pytest.mark.slow
def test_studio_copies_run_through_the_pyspark_kernel_on_livy(studio_run, livy, yarn):
    for run in studio_run["runs"]:
        assert run["done"].returncode == 0, (run["book"], run["done"].stderr[-4000:])
    assert [r["book"] for r in studio_run["runs"]] == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb")
    )
    # each notebook: one Livy session, one YARN application, its driver in a container
    assert len(livy.sessions) == 5 and livy.deploy_mode == "cluster"
    for session in livy.sessions.values():
        report = yarn.application_report(session.app_id)
        assert report["Final-State"] == "SUCCEEDED", report
    # the injected parameters ran in the remote session (they reached the notebooks' code)
    posted = [asked.get("code", "") for method, path, _, asked, _ in livy.requests
              if method == "POST" and path.endswith("/statements")]  # fmt: skip
    assert any(c.startswith("# Parameters") and SPEC.uri("output", "studio") in c for c in posted)
    # every answer in the shape Livy 0.8 documents (tests/livy/shapes/)
    checked = 0
    for method, path, status, _, answer in livy.requests:
        route = re.sub(r"\d+", "N", path.split("?")[0])
        expected = LIVY_SHAPES.get((method, route))
        if expected and status in (200, 201):
            same_shape(answer, shape(expected), f"{method} {path}")
            checked += 1
        if (method, route) == ("GET", "/sessions/N/statements/N"):
            assert set(answer) == set(shape("statement_ok")), answer
            if answer["state"] == "available":
                assert answer["output"]["status"] in ("ok", "error"), answer
    assert checked > 20


@pytest.mark.spark
@pytest.mark.slow
def test_studio_copies_hold_the_figures_as_png_and_the_answer_as_text(studio_run, tmp_path):
    executed = studio_run["executed"]
    figures = {
        "03_pca.ipynb": "explained_variance_figure(",
        "05_recognition.ipynb": "maps_figure(",
        "04_spark_ui_monitoring.ipynb": "stage_timeline(",
    }
    figures_05 = {"confusion_figure(": "05_recognition.ipynb"}
    for book, marker in [*figures.items(), *((b, m) for m, b in figures_05.items())]:
        png = _png(_outputs(executed / book, marker))
        assert png is not None and png[:4] == b"\x89PNG", (book, marker)
        (tmp_path / f"{Path(book).stem}-{marker.rstrip('(')}.png").write_bytes(png)
    text = "".join(o.get("text", "") for o in _outputs(executed / "05_recognition.ipynb",
                                                       "photo_answer = photo_figure"))  # fmt: skip
    assert f"{SPEC.uri('input', PHOTO)}: " in text, text
    upload = _outputs(executed / "05_recognition.ipynb", "photo_answer = photo_figure")
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   and "FileUpload" in str(o) for o in upload)  # fmt: skip


@pytest.mark.spark
@pytest.mark.slow
def test_studio_copies_record_the_metrics_the_local_notebooks_record(studio_run, aws):
    from helpers.faces.notebooks import read_metrics

    output = studio_run["output"]
    images = [p for p in INPUT.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    labels = {p.parent.name for p in images}

    def metrics(name: str) -> dict:
        return read_metrics(str(output), name)

    ingestion = metrics("01_ingestion")
    assert ingestion["images"] == len(images) and ingestion["labels"] == len(labels)
    assert ingestion["unreadable"] == 0
    extraction = metrics("02_feature_extraction")
    assert extraction["featurized"] == len(images) and extraction["feature_size"] == 1280
    pca = metrics("03_pca")
    assert pca["reduced_rows"] == len(images) and 0 < pca["explained_variance"] <= 1
    # notebook 04 read notebook 02's application from the History Server
    seen = metrics("04_spark_ui_monitoring")
    assert seen["app_id"] == extraction["app_id"] and seen["images"] == len(images)
    assert seen["featurize_stage"].startswith("featurize: mobilenet_v2 96 openvino")
    recognition = metrics("05_recognition")
    assert recognition["accuracy"] > 0.5 and recognition["clusters"] == len(labels)
    assert recognition["photo"]["photo"] == SPEC.uri("input", PHOTO)
    assert recognition["photo"]["top"][0]["label"]
    assert (output / "recognizer" / "recognizer.json").is_file()
    denied = sorted({(r.action, r.key, r.note) for r in aws["gate"].denied(iam.INSTANCE_ROLE)})
    assert denied == [], denied[:20]


# -- a cluster you don't own: the environment archive, no bootstrap ---------------------------

#: A cluster someone else made: no bootstrap, no project configuration; its nodes' role grants
#: the project's S3 prefixes, as docs/shared-clusters.md asks the cluster's owner to.
SHARED = emr.ClusterSpec(bucket="rehearsal", prefix="shared")
SHARED_ROLE = "shared-cluster-nodes"
SHARED_NODES = Principal.role(SHARED_ROLE, **{"fruits-s3": emr.render_policy(SHARED)})
#: The interpreter the archive's bin/python points to (EMR 7.x's /usr/bin/python3.11): here
#: the system's, which has none of the project's packages.
BARE_PYTHON = "/usr/bin/python3.11"


@pytest.fixture(scope="module")
def packed(node):
    """``pack``: the venv built from the wheelhouse ``emr stage`` uses and the wheel, packed."""
    from fruits_tools import pack, wheelhouse

    output = node["prefix"] / "pack" / pack.ARCHIVE_NAME
    return pack.build(node["wheel"], wheelhouse.build(), output, echo=lambda line: None)


@pytest.fixture(scope="module")
def shared_cluster(node, yarn, aws, packed, staged):
    """What the operator stages for a cluster they don't own (``s3 upload``, ``emr stage
    --archive``), and spark-submit's environment on its primary node: EMR's Spark with EMR's
    defaults only, and S3 as that cluster's nodes' role."""
    owner = aws["owner"]
    s3_staging.upload_folder(INPUT, SHARED.uri("input"), client=owner, expected_owner=ACCOUNT)
    launcher = emr.Launcher(SHARED, s3=owner, owner=ACCOUNT)
    staged_uris = launcher.stage(
        node["wheel"], weights=Path(node["weights"]), jars=[_sparkmeasure_jar()],
        archive=Path(packed.archive),
    )  # fmt: skip
    nodes_env = aws["gate"].admit("SHAREDNODESKEY", SHARED_NODES)
    conf = emr_box.emr_conf_dir(
        node["prefix"] / "shared-spark-conf",
        venv=node["prefix"] / "no-venv",
        spark_home=node["spark_home"],
        event_log_dir=node["prefix"] / "shared-spark-apps",
        extra=emr_box.s3a_settings(aws["gate"].url, SHARED.region, nodes_env),
        classpath=emr_box.s3a_classpath(),
        project_configuration=False,
    )
    return {"env": _step_env(node, yarn, aws, conf, nodes_env), "conf": conf,
            "staged": staged_uris}  # fmt: skip


@pytest.fixture(scope="module")
def shared_steps(node, yarn, aws, shared_cluster):
    """On the shared cluster, in YARN cluster mode with the archive: ``run`` and ``recognize``
    as ``emr submit --environment archive`` sends them."""
    env = shared_cluster["env"]
    jars = [SHARED.uri("code", "jars", _sparkmeasure_jar().name)]
    steps = emr.pipeline_steps(SHARED, jars=jars, recognize_args=RECOGNIZE_ARGS,
                               environment="archive")  # fmt: skip
    return _run_steps(steps, env, node, yarn, aws, SHARED.uri("output"), "shared-output")


def _localization_seconds(yarn) -> dict[str, float]:
    """Per container, the seconds the NodeManager spent localizing its resources (LOCALIZING
    to SCHEDULED in its log): the archive's copy from the application's staging folder and its
    unpacking, paid by an application's first container on a node; the others share it."""
    from datetime import datetime

    pattern = re.compile(r"^(\S+ \S+) .*Container (container_\S+) transitioned from "
                         r"(NEW to LOCALIZING|LOCALIZING to SCHEDULED)")  # fmt: skip
    seen: dict[str, dict[str, datetime]] = {}
    for line in (yarn.workdir / "minicluster.log").read_text(errors="replace").splitlines():
        found = pattern.search(line)
        if found:
            when = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
            seen.setdefault(found.group(2), {})[found.group(3).split()[0]] = when
    return {c: (s["LOCALIZING"] - s["NEW"]).total_seconds()
            for c, s in seen.items() if {"NEW", "LOCALIZING"} <= set(s)}  # fmt: skip


def test_the_bare_interpreter_has_none_of_the_projects_packages():
    """The containers' only Python with the chain's packages must be the archive's: the
    interpreter it points to has none of them (and is the same minor version)."""
    version = "import sys; print('.'.join(map(str, sys.version_info[:2])))"
    # (not from the clone, whose helpers/ the interpreter would find in its working folder)
    done = subprocess.run([BARE_PYTHON, "-c", version], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd="/")  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "3.11", done
    for package in ("numpy", "helpers", "tensorflow", "pyarrow"):
        done = subprocess.run([BARE_PYTHON, "-c", f"import {package}"], capture_output=True,
                              env={"PATH": "/usr/bin:/bin"}, cwd="/")  # fmt: skip
        assert done.returncode != 0, f"{BARE_PYTHON} imports {package}"


def test_pack_builds_one_archive_over_the_nodes_interpreter(packed):
    from fruits_tools import pack

    listed = pack.inspect(Path(packed.archive))
    assert listed["links"]["bin/python"] == BARE_PYTHON
    assert listed["home"] == "/usr/bin"
    assert not any(name.startswith("bin/python") and not link.startswith(("/usr/", "python"))
                   for name, link in listed["links"].items())  # fmt: skip
    assert packed.packages["fruits-helpers"] == "0.1.0"
    assert packed.packages["numpy"] == "1.26.4" and "pyspark" not in packed.packages
    manifest = json.loads(pack.manifest(Path(packed.archive)).read_text())
    assert manifest["sha256"] == packed.sha256 and manifest["bytes"] == packed.bytes
    print(packed.line())


@pytest.mark.spark
@pytest.mark.slow
def test_a_shared_cluster_runs_the_chain_from_the_archive(shared_steps, shared_cluster, yarn):
    conf = shared_cluster["conf"]
    assert "fruits-venv" not in (conf / "spark-defaults.conf").read_text()
    assert "PYSPARK_PYTHON" not in (conf / "spark-env.sh").read_text()
    assert any(u.endswith("/shared/code/fruits-env.tar.gz") for u in shared_cluster["staged"])
    for result in shared_steps["results"]:
        assert result["done"].returncode == 0, result["done"].stderr[-4000:]
    assert [r["name"] for r in shared_steps["results"]] == [
        "fruits: featurize + PCA", "fruits: recognition"]  # fmt: skip
    for result in shared_steps["results"]:
        assert "--archives" in result["args"] and "--deploy-mode" in result["args"]
        (app_id,) = result["apps"]
        report = yarn.application_report(app_id)
        assert report["State"] == "FINISHED" and report["Final-State"] == "SUCCEEDED", report
        print(f"{result['name']}: {app_id} {report['Final-State']} in {result['s']:.0f} s")
    output = shared_steps["output"]
    for name in ("features", "reduced", "pca_report.json", "recognizer/recognizer.json",
                 "recognition_report.json"):  # fmt: skip
        assert (output / name).exists(), name
    _measured_by_sparkmeasure(output)


@pytest.mark.spark
@pytest.mark.slow
def test_inside_tasks_helpers_numpy_and_the_runtimes_come_from_the_archive(shared_studio):
    """The session's driver and two tasks (YARN containers of the shared cluster) say where
    their Python and each package come from: ``./environment`` over the bare ``/usr``."""
    assert shared_studio["done"].returncode == 0, shared_studio["done"].stderr[-4000:]
    sides = shared_studio["sides"]
    assert sorted(s["side"] for s in sides) == ["driver", "task 0", "task 1"], sides
    host_prefix = sys.base_prefix  # the interpreter the archive was built from, here
    for side in sides:
        environment = side["cwd"] + "/environment"
        assert side["executable"].endswith("/environment/bin/python"), side["executable"]
        assert side["prefix"] == environment and side["base_prefix"] == "/usr", side
        assert side["version"].startswith("3.11.")
        for package in ("helpers", "numpy", "pyarrow", "tensorflow", "openvino"):
            assert side["files"][package].startswith(environment + "/lib/python3.11/"), (
                side["side"], package, side["files"][package])  # fmt: skip
        # pyspark is the cluster's (Spark 3.5.6's pyspark.zip), not inside the archive
        assert "/pyspark.zip/" in side["files"]["pyspark"], side["files"]["pyspark"]
        leaked = [p for p in side["path"] if str(ROOT / ".venv") in p or p.startswith(host_prefix)]
        assert leaked == [], leaked
        print(f"{side['side']}: {side['executable']} (base {side['base_prefix']}), "
              f"numpy {side['files']['numpy']}")  # fmt: skip


@pytest.mark.spark
@pytest.mark.slow
def test_features_from_the_archive_equal_the_bootstrapped_rehearsal(shared_steps, yarn_steps):
    a, b = _features(yarn_steps["output"]), _features(shared_steps["output"])
    relative = [p.split("/fruits/input/", 1)[1] for p in a["path"]]
    assert relative == [p.split("/shared/input/", 1)[1] for p in b["path"]]
    assert (a["features"].notna() == b["features"].notna()).all()
    readable = a["features"].notna()
    diff = float(np.abs(np.stack(a.loc[readable, "features"].to_numpy())
                        - np.stack(b.loc[readable, "features"].to_numpy())).max())  # fmt: skip
    print(f"archive vs bootstrap: {int(readable.sum())} images, max feature diff {diff:.3g}")
    assert diff <= 1e-6, diff


@pytest.mark.spark
@pytest.mark.slow
def test_the_archive_size_and_its_unpack_time_per_container(shared_steps, packed, yarn):
    seconds = _localization_seconds(yarn)
    apps = [app for r in shared_steps["results"] for app in r["apps"]]
    print(packed.line())
    for app in apps:
        prefix = "container_" + app.removeprefix("application_")
        mine = {c: s for c, s in seconds.items() if c.startswith(prefix)}
        assert mine, (app, sorted(seconds)[:5])
        first, *others = [mine[c] for c in sorted(mine)]
        print(f"{app}: its first container localized the archive (copy and unpack) in "
              f"{first:.1f} s; its {len(others)} other container(s) on the node reused it "
              f"({max(others, default=0):.1f} s at most)")  # fmt: skip
        assert all(o < first for o in others)
    assert packed.bytes < 1_000_000_000


@pytest.mark.spark
@pytest.mark.slow
def test_the_shared_nodes_role_is_enough(shared_steps, aws):
    assert all(r["done"].returncode == 0 for r in shared_steps["results"])
    denied = sorted({(r.action, r.key, r.note) for r in aws["gate"].denied(SHARED_ROLE)})
    assert denied == [], denied[:20]
    mine = [r for r in aws["gate"].records if r.principal == SHARED_ROLE]
    read = {r.key for r in mine if (r.action, r.status) == ("s3:GetObject", 200)}
    assert SHARED.key("code", "fruits-env.tar.gz") in read


@pytest.fixture(scope="module")
def shared_studio(node, yarn, shared_cluster, shared_steps, tmp_path_factory):
    """A notebook in an EMR Studio workspace attached to the shared cluster: sparkmagic's
    PySpark kernel, a Livy session in cluster mode, the archive given by the first cell
    (``emr configure``'s %%configure); its second cell runs the probe in the session."""
    import inspect

    import nbformat

    from tests import emr_probe
    from tests.livy import kernel
    from tests.livy.server import LivyServer

    work = tmp_path_factory.mktemp("shared-studio")
    (work / "livy").mkdir()
    server = LivyServer(str(node["spark_home"] / "bin" / "spark-submit"), shared_cluster["env"],
                        "cluster", work / "livy").start()  # fmt: skip
    try:
        probe = "\n".join([
            "import json, sys", f"PACKAGES = {emr_probe.PACKAGES!r}",
            inspect.getsource(emr_probe.where),
            'print("PROBE " + json.dumps(where("driver")))',
            "for line in sc.parallelize(range(2), 2).map("
            "lambda i: json.dumps(where(f'task {i}'))).collect():",
            '    print("PROBE " + line)',
        ])  # fmt: skip
        book = nbformat.v4.new_notebook()
        book.metadata["kernelspec"] = emr.STUDIO_KERNELSPEC
        book.cells = [nbformat.v4.new_code_cell(emr.studio_configure_cell(SHARED)),
                      nbformat.v4.new_code_cell(probe)]  # fmt: skip
        path, executed = work / "shared.ipynb", work / "shared-executed.ipynb"
        nbformat.write(book, str(path))
        env = {**os.environ, **kernel.install(work / "kernel", server.url)}
        before = set(yarn.application_ids())
        done = kernel.papermill(
            [str(path), str(executed), "-k", "pysparkkernel", "--no-progress-bar"],
            env=env, cwd=work, timeout=900,
        )  # fmt: skip
        apps = sorted(set(yarn.application_ids()) - before)
    finally:
        server.stop()
    sides = []
    if executed.exists():
        outputs = _outputs(executed, "PROBE")
        text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                       for o in outputs)  # fmt: skip
        # each "PROBE {...}" wherever it is in the text (Livy joins a statement's output)
        decoder, at = json.JSONDecoder(), 0
        while (at := text.find("PROBE {", at)) != -1:
            side, end = decoder.raw_decode(text, at + len("PROBE "))
            sides.append(side)
            at = end
    return {"done": done, "executed": executed, "apps": apps, "sides": sides}


@pytest.mark.spark
@pytest.mark.slow
def test_a_studio_session_on_the_shared_cluster_gets_the_archive_from_configure(
    shared_studio, yarn
):
    assert shared_studio["done"].returncode == 0, shared_studio["done"].stderr[-4000:]
    assert len(shared_studio["apps"]) == 1, shared_studio["apps"]
    report = yarn.application_report(shared_studio["apps"][0])
    assert report["Final-State"] in ("SUCCEEDED", "KILLED"), report  # Livy ends it at stop
    # the session's driver and tasks answered (where their packages come from: the test above)
    assert len(shared_studio["sides"]) == 3, shared_studio["sides"]
    print(f"Studio session {shared_studio['apps'][0]}: %%configure gave it the archive")


@pytest.mark.spark
@pytest.mark.slow
def test_the_serverless_job_role_allows_every_request_of_the_shared_steps(shared_steps, aws):
    """EMR Serverless's job role (emr/iam/serverless-job-policy.json) holds the same S3 prefixes:
    every request the shared cluster's steps made, decided again for that policy, is allowed."""
    records = [r for r in aws["gate"].records if r.principal == SHARED_ROLE]
    assert records
    job_role = Principal.role(
        "fruits-serverless-job", s3=iam.serverless_job_policy(SHARED.bucket, SHARED.prefix)
    )
    refused = replay(records, job_role, aws["gate"].simulator)
    assert refused is None, (refused.action, refused.key, refused.context)
