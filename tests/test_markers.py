"""Markers tell the truth: a test that uses a fixture starting Spark (or the whole chain, a
cluster, the notebooks) carries the markers that `make test-fast` and ``-m`` select on
(pyproject.toml says what each marker means).

The whole test tree is collected (not run) in a child pytest with this module as a plugin: its
collection hook lists, per test, the fixtures it uses (directly or through other fixtures) and
its markers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from tests.conftest import ROOT

#: fixture -> the markers every test using it must carry
REQUIRED = {
    "spark": {"spark"},  # the shared local session (conftest)
    "sample_features": {"spark", "slow"},  # the 960 real images through Spark
    "fruits_run": {"notebooks", "spark", "slow"},  # notebooks 01-05 on the real sample
    "s3a": {"s3a", "spark", "slow"},  # the chain's processes against S3 through S3A
    "yarn": {"rehearsal", "spark", "slow"},  # the YARN minicluster and EMR's Spark
}
_OUT = "FRUITS_MARKERS_OUT"  # where the child's collection hook writes what it found


def problems(items) -> list[str]:
    """``<node id>: uses <fixture> without marker(s) ...`` for every test missing one."""
    found = []
    for item in items:
        markers = {m.name for m in item.iter_markers()}
        for fixture, needed in REQUIRED.items():
            missing = needed - markers
            if fixture in item.fixturenames and missing:
                found.append(f"{item.nodeid}: uses {fixture} without {sorted(missing)}")
    return found


def pytest_collection_modifyitems(config, items):
    """Active only in the child pytest (``-p tests.test_markers``)."""
    if os.environ.get(_OUT):
        uses = {f: sum(f in i.fixturenames for i in items) for f in REQUIRED}
        report = {"items": len(items), "uses": uses, "problems": problems(items)}
        with open(os.environ[_OUT], "w", encoding="utf-8") as f:
            json.dump(report, f)


def _item(nodeid: str, fixtures: list[str], markers: list[str]):
    marks = [SimpleNamespace(name=m) for m in markers]
    return SimpleNamespace(nodeid=nodeid, fixturenames=fixtures, iter_markers=lambda: iter(marks))


def test_the_rule_names_each_missing_marker():
    items = [
        _item("a.py::ok", ["spark", "tmp_path"], ["spark"]),
        _item("a.py::unmarked", ["spark"], []),
        _item("a.py::fast", ["sample_features", "spark"], ["spark"]),
        _item("a.py::plain", ["tmp_path"], []),
    ]
    assert problems(items) == [
        "a.py::unmarked: uses spark without ['spark']",
        "a.py::fast: uses sample_features without ['slow']",
    ]


def test_every_test_carries_the_markers_of_the_fixtures_it_uses(tmp_path):
    out = tmp_path / "markers.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "tests.test_markers", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
         str(ROOT / "tests")],
        cwd=ROOT, env={**os.environ, _OUT: str(out)}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and out.exists(), (done.stdout + done.stderr)[-3000:]
    report = json.loads(out.read_text())
    # the check saw the suite: the shared session and the real sample are used
    assert report["items"] > 100 and report["uses"]["spark"] > 0, report
    assert report["uses"]["sample_features"] > 0, report
    assert report["problems"] == [], "\n".join(report["problems"])
