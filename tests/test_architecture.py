"""How the package is put together: import directions, Spark-free commands, one set of
defaults. Static (``ast``) where possible; fresh processes where imports must be observed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli, defaults
from tests.conftest import ROOT

PACKAGE = ROOT / "helpers"

#: Modules that run where Spark is absent (the app, ``predict``, the decoding inside workers):
#: they must not import pyspark, even inside a function.
SPARK_FREE = {
    "config", "defaults", "storage", "images", "inputs", "models", "inference", "recognize",
    "saved_pipeline", "report", "layout", "plots", "maps_math",
}  # fmt: skip
#: module -> modules it must not import (directly or inside functions)
FORBIDDEN = {
    "recognition": {"pipeline", "cli", "notebooks"},
    "pipeline": {"cli", "notebooks", "recognition"},
    "layout": {"pipeline", "recognition", "cli", "notebooks"},
    "storage": {"pipeline", "layout", "ingest", "inputs", "cli"},
    "inputs": {"pipeline", "ingest", "featurize", "cli"},
    "images": {"storage", "inputs", "models", "inference"},
}


def _imports(module: str) -> set[str]:
    """Every module a helpers module imports, anywhere in its code (top level or lazily)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "helpers":
                found.update(f"helpers.{alias.name}" for alias in node.names)
    return found


def _modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", sorted(SPARK_FREE & set(_modules())))
def test_spark_free_modules_import_no_spark(module):
    spark = {m for m in _imports(module) if m.split(".")[0] == "pyspark"}
    assert not spark, f"{module} imports {spark}"


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_imports_flow_one_way(module):
    imported = {m.removeprefix("helpers.") for m in _imports(module) if m.startswith("helpers.")}
    assert not imported & FORBIDDEN[module]


def test_nothing_imports_the_command_line():
    for module in _modules():
        if module not in ("__main__", "cli"):
            assert "helpers.cli" not in _imports(module), module


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "no-such-photo.jpg", "--recognizer", "no-such-recognizer"],
        ["emr", "create", "--bucket", "fruits-example", "--dry-run"],
        ["s3", "ls"],
    ],
)
def test_spark_free_commands_start_no_spark(argv):
    """Run in a fresh process: whatever the command answers, pyspark stays unimported."""
    code = (
        "import sys, json\n"
        "from helpers import cli\n"
        f"code = cli.main({argv!r})\n"
        "print(json.dumps({'pyspark': 'pyspark' in sys.modules,"
        " 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONPATH": str(ROOT),
             "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
             "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"pyspark": False, "tensorflow": False}, done.stderr[-2000:]


def _parameters(notebook: Path) -> dict:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    (cell,) = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


#: notebook parameter -> the default it stands for
NOTEBOOK_DEFAULTS = {
    "MODEL_NAME": defaults.MODEL_NAME, "WEIGHTS": defaults.WEIGHTS,
    "BATCH_SIZE": defaults.BATCH_SIZE, "VARIANCE_THRESHOLD": defaults.VARIANCE_THRESHOLD,
    "CLASSIFIER": defaults.CLASSIFIER, "TEST_FRACTION": defaults.TEST_FRACTION,
    "MAP_POINTS": defaults.MAP_POINTS, "SEED": defaults.SEED, "REG_PARAM": defaults.REG_PARAM,
    "MAX_ITER": defaults.MAX_ITER, "HIDDEN_LAYERS": list(defaults.HIDDEN_LAYERS),
}  # fmt: skip


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=str)
def test_notebook_parameters_agree_with_the_defaults(notebook):
    params = _parameters(notebook)
    for name, value in params.items():
        if name in NOTEBOOK_DEFAULTS:
            assert value == NOTEBOOK_DEFAULTS[name], f"{notebook.name}: {name}"


def test_command_line_defaults_are_the_defaults():
    parser = cli.build_parser()
    run = parser.parse_args(["run"])
    assert (run.model, run.weights, run.batch_size, run.variance_threshold) == (
        defaults.MODEL_NAME, defaults.WEIGHTS, defaults.BATCH_SIZE, defaults.VARIANCE_THRESHOLD,
    )  # fmt: skip
    recognize = parser.parse_args(["recognize"])
    assert (recognize.classifier, recognize.test_fraction) == (
        defaults.CLASSIFIER,
        defaults.TEST_FRACTION,
    )
    assert parser.parse_args(["predict", "x.jpg"]).top == defaults.TOP_LABELS
    assert parser.parse_args(["s3", "ls"]).region == defaults.REGION
