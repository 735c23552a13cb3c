"""No internet at cluster start: ``emr/bootstrap.sh`` executed for real with ``--wheelhouse``,
pip's index pointing at a closed port (with a token in its URL that must never be printed).

The wheelhouse is made by the code ``emr stage`` uses (:func:`fruits_tools.wheelhouse.build`:
``pip download`` for manylinux x86-64 and CPython 3.11), with a few of the bootstrap's pins
instead of all of them (TensorFlow alone is 0.25 GB); it is cached under
``~/.cache/fruits/wheelhouse``, so only the first run downloads. The bootstrap's path is the
one EMR runs: ``--no-index --find-links`` and the wheelhouse's requirement files.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess

import pytest

from fruits_tools import wheelhouse
from tests import emr_box
from tests.conftest import ROOT
from tests.ports import free_port

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


@pytest.fixture(scope="module")
def offline_node(tmp_path_factory, small_wheelhouse):
    prefix = tmp_path_factory.mktemp("offline-node")
    wheel = emr_box.build_wheel(prefix / "dist")
    info = prefix / "instance.json"
    info.write_text(json.dumps({"isMaster": True}))
    index = f"http://fruits:{TOKEN}@127.0.0.1:{closed_port()}/simple"
    env = {**os.environ, "PIP_INDEX_URL": index, "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
           "PIP_NO_CACHE_DIR": "1"}  # fmt: skip
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["bash", str(ROOT / "emr" / "bootstrap.sh"), "--wheel", str(wheel),
         "--wheelhouse", str(small_wheelhouse), "--venv", str(prefix / "venv"),
         "--python", "python3.11", "--instance-info", str(info),
         "--spark-home", str(prefix / "spark"), "--no-sudo",
         "--pip-args", f"--extra-index-url https://fruits:{TOKEN}@index.invalid/simple"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    return {
        "prefix": prefix,
        "done": done,
        "env": env,
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
