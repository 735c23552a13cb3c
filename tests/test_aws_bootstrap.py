"""No internet at cluster start: ``emr/bootstrap.sh`` executed for real with ``--wheelhouse``,
pip's index pointing at a closed port (with a token in its URL that must never be printed).

The wheelhouse is made by the code ``emr stage`` uses (:func:`fruits_tools.wheelhouse.build`:
``pip download`` for manylinux x86-64 and CPython 3.11), with a few of the bootstrap's pins
instead of all of them (TensorFlow alone is 0.25 GB); it is cached under
``~/.cache/fruits/wheelhouse``, so only the first run downloads. The bootstrap's path is the
one EMR runs: ``--no-index --find-links`` and the wheelhouse's requirement files.

As on EMR, the node starts from the bucket: ``emr stage`` (the operator) uploads the bootstrap,
the wheel and the wheelhouse to the local S3 server, and the node, with the nodes' role only
(``emr/iam/instance-profile-policy.json``, every request decided by the IAM simulator behind
tests/s3gate.py), fetches the script and runs it with the arguments ``emr create`` gives it; the
script's own ``aws s3 cp`` (the AWS CLI, as on the nodes) copies the wheel and the wheelhouse.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess

import pytest

from fruits_tools import emr, iam, s3_staging, wheelhouse
from tests import emr_box
from tests.conftest import ROOT
from tests.iamsim import ACCOUNT, OWNER, Principal
from tests.ports import free_port
from tests.s3gate import replay

pytestmark = pytest.mark.rehearsal

TOKEN = "t0ken-never-printed"
#: A subset of the bootstrap's pins: a pure wheel, a manylinux one, and the primary node's
#: notebook runner with its kernel (pyzmq, tornado, psutil, debugpy... as manylinux wheels).
NODE_PINS = ["pyyaml>=6.0", "pillow==11.3.0"]


def closed_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture(scope="module")
def small_wheelhouse():
    if platform.machine() != "x86_64":
        pytest.skip("the wheelhouse is made for EMR's x86-64 nodes")
    pinned, primary = wheelhouse.bootstrap_pins()
    assert set(NODE_PINS) <= set(pinned)
    return wheelhouse.build(NODE_PINS, primary)


SPEC = emr.ClusterSpec(bucket="bootstrap-rehearsal")
NODE_ROLE = Principal.role(iam.INSTANCE_ROLE, **{"fruits-s3": emr.render_policy(SPEC)})


@pytest.fixture(scope="module")
def staged(s3_gate, small_wheelhouse, tmp_path_factory):
    """``emr stage`` by the bucket's owner: bootstrap, wheel and wheelhouse under code/."""
    owner = s3_gate.client(s3_gate.admit("OWNERKEY", OWNER)["AWS_ACCESS_KEY_ID"], SPEC.region)
    s3_staging.ensure_bucket(SPEC.bucket, SPEC.region, client=owner, expected_owner=ACCOUNT)
    wheel = emr_box.build_wheel(tmp_path_factory.mktemp("dist"))
    assert wheel.name == SPEC.wheel_name
    emr.Launcher(SPEC, s3=owner, owner=ACCOUNT).stage(wheel, wheelhouse=small_wheelhouse)
    return s3_gate


@pytest.fixture(scope="module")
def offline_node(tmp_path_factory, staged):
    gate = staged
    prefix = tmp_path_factory.mktemp("offline-node")
    info = prefix / "instance.json"
    info.write_text(json.dumps({"isMaster": True}))
    index = f"http://fruits:{TOKEN}@127.0.0.1:{closed_port()}/simple"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(PIP_INDEX_URL=index, PIP_RETRIES="0", PIP_TIMEOUT="2", PIP_NO_CACHE_DIR="1",
               PATH=emr_box.aws_on_path(prefix / "bin", os.environ["PATH"]))  # fmt: skip
    # the nodes' role, as the instance profile gives it; S3 at the gate
    nodes = gate.admit("NODEROLEKEY", NODE_ROLE)
    env.update({k: v for k, v in nodes.items() if k != "AWS_ENDPOINT_URL"})
    env["AWS_ENDPOINT_URL_S3"] = nodes["AWS_ENDPOINT_URL"]
    (action,) = emr.run_job_flow_request(SPEC)["BootstrapActions"]
    script = action["ScriptBootstrapAction"]
    fetched = subprocess.run(
        ["aws", "s3", "cp", "--region", SPEC.region, "--only-show-errors", script["Path"],
         str(prefix / "bootstrap.sh")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    done = subprocess.run(
        ["bash", str(prefix / "bootstrap.sh"), *script["Args"],
         "--work-dir", str(prefix / "work"), "--venv", str(prefix / "venv"),
         "--python", "python3.11", "--instance-info", str(info),
         "--spark-home", str(prefix / "spark"), "--no-sudo",
         "--pip-args", f"--extra-index-url https://fruits:{TOKEN}@index.invalid/simple"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    return {
        "prefix": prefix,
        "done": done,
        "env": env,
        "gate": gate,
        "python": prefix / "venv" / "bin" / "python",
    }


def test_the_locks_pin_every_wheel_by_version_and_hash(small_wheelhouse):
    wheels = {p.name.split("-")[0].lower() for p in small_wheelhouse.glob("*.whl")}
    primary = (small_wheelhouse / "requirements-primary.lock").read_text().splitlines()
    nodes = (small_wheelhouse / "requirements.lock").read_text().splitlines()
    assert {line.split("==")[0].lower() for line in primary} == wheels
    assert set(nodes) < set(primary) and any(line.startswith("pillow==11.3.0 ") for line in nodes)
    assert all(re.fullmatch(r"\S+==\S+ --hash=sha256:[0-9a-f]{64}", line) for line in primary)


def test_a_wheel_changed_after_staging_is_refused(small_wheelhouse, tmp_path):
    """pip's hash-checking mode on the node: one byte of a wheel changed, nothing installed."""
    changed = tmp_path / "wheelhouse"
    shutil.copytree(small_wheelhouse, changed)
    (victim,) = [p for p in changed.glob("*.whl") if p.name.lower().startswith("pyyaml-")]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["bash", str(ROOT / "emr" / "bootstrap.sh"), "--wheel", str(tmp_path / "x.whl"),
         "--wheelhouse", str(changed), "--venv", str(tmp_path / "venv"),
         "--python", "python3.11", "--no-sudo"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr, done.stderr[-2000:]
    assert "bootstrap: done" not in done.stdout


def test_bootstrap_builds_the_environment_from_the_wheelhouse_with_no_index(offline_node):
    done = offline_node["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "--no-index --find-links" in done.stdout
    freeze = subprocess.run(
        [offline_node["python"], "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout.lower()
    for name in ("pyyaml==", "pillow==11.3.0", "papermill==2.6.0", "ipykernel==",
                 "fruits-helpers @ file"):  # fmt: skip
        assert name in freeze, (name, freeze)
    # the primary node's kernel, in the environment, for the notebooks step
    kernel = offline_node["prefix"] / "venv" / "share" / "jupyter" / "kernels" / "fruits"
    assert (kernel / "kernel.json").is_file()


def test_the_index_was_really_unreachable(offline_node):
    """The same environment cannot fetch anything: the wheelhouse was the only source."""
    tried = subprocess.run(
        [offline_node["python"], "-m", "pip", "download", "--no-deps", "six",
         "-d", str(offline_node["prefix"] / "fetched")],
        capture_output=True, text=True, timeout=120, env=offline_node["env"],
    )  # fmt: skip
    assert tried.returncode != 0
    assert TOKEN not in tried.stdout + tried.stderr  # pip masks it too


def test_the_bootstrap_never_prints_the_index_token(offline_node):
    done = offline_node["done"]
    assert TOKEN not in done.stdout + done.stderr
    assert "https://***@index.invalid/simple" in done.stdout


def test_wheelhouse_holds_only_wheels_for_the_nodes(small_wheelhouse):
    wheels = sorted(p.name for p in small_wheelhouse.glob("*.whl"))
    assert wheels and not list(small_wheelhouse.glob("*.tar.gz"))  # binary only: nothing built
    for name in wheels:
        tags = name[:-4].split("-")[-3:]
        assert tags[0] in ("py3", "py2.py3", "cp311") or tags[0].startswith("cp3"), name
        assert tags[2] == "any" or "x86_64" in tags[2] and "linux" in tags[2], name
    assert (small_wheelhouse / "requirements.txt").read_text().split() == NODE_PINS


def test_the_node_fetched_the_code_with_the_nodes_role_only(offline_node):
    """The bootstrap and its copies (the wheel, the wheelhouse: a listing, then each file) as
    AWS would answer the nodes' role: nothing refused, through the regional endpoint."""
    done, gate = offline_node["done"], offline_node["gate"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"aws s3 cp --region {SPEC.region} --recursive" in done.stdout
    assert gate.denied(iam.INSTANCE_ROLE) == []
    counts = gate.counts(iam.INSTANCE_ROLE)
    print("nodes' role at start:", dict(sorted(counts.items())))
    assert counts[("s3:ListBucket", 200)] >= 1
    fetched = {r.key for r in gate.records if r.principal == iam.INSTANCE_ROLE and r.status == 200}
    assert SPEC.key("code", "bootstrap.sh") in fetched
    assert SPEC.key("code", SPEC.wheel_name) in fetched
    assert SPEC.key("code", "wheelhouse", "requirements.lock") in fetched


def test_without_read_access_to_the_code_the_node_stops_naming_the_key(offline_node):
    """The same requests, the policy without its ``ReadInputAndCode`` statement: the first
    refused request is a read of the staged code."""
    gate = offline_node["gate"]
    records = [r for r in gate.records if r.principal == iam.INSTANCE_ROLE]
    refused = replay(records, NODE_ROLE.without("fruits-s3", "ReadInputAndCode"), gate.simulator)
    assert refused is not None and refused.action == "s3:GetObject"
    assert refused.key == SPEC.key("code", "bootstrap.sh"), refused
