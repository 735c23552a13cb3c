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
from tests.iamsim import ACCOUNT, Principal
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
#: The account that owns the bucket: makes it and uploads the input and the code.
OWNER = Principal.role("owner", all={"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})  # fmt: skip


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
    # the nodes' credentials, as the instance profile gives them on EMR
    env.update({k: v for k, v in aws["nodes_env"].items() if k != "AWS_ENDPOINT_URL"})
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        env.pop(name, None)
    return env


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
    results = []
    for step in steps:
        before = set(yarn.application_ids())
        args = _localize(step["HadoopJarStep"]["Args"], node["spark_home"])
        started = time.monotonic()
        done = subprocess.run(
            args, env=emr_env, cwd=node["prefix"], capture_output=True, text=True, timeout=1200
        )
        elapsed = time.monotonic() - started
        new = sorted(set(yarn.application_ids()) - before)
        results.append({"step": step, "args": args, "done": done, "apps": new, "s": elapsed})
        if done.returncode != 0:
            break
    output = node["prefix"] / "output"
    s3_staging.download_prefix(SPEC.uri("output"), output, client=aws["owner"],
                               expected_owner=ACCOUNT)  # fmt: skip
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
        done = subprocess.run(
            [sys.executable, "-m", "papermill", str(book), str(executed / book.name),
             "-k", "pysparkkernel", "-y", json.dumps(params), "--no-progress-bar"],
            env=env, cwd=work, capture_output=True, text=True, timeout=1500,
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
