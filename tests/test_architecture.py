"""How the package is put together: import directions, Spark-free commands, one set of
defaults. Static (``ast``) where possible; fresh processes where imports must be observed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fruits_tools import cli as tools_cli
from helpers import defaults
from helpers.faces import cli
from tests.conftest import ROOT

PACKAGE = ROOT / "helpers"
TOOLS = ROOT / "tools" / "fruits_tools"

#: The layers, lowest first: each may import the ones before it, never one after it.
BASE = {"_moved", "config", "defaults", "storage", "layout", "generation"}
LAYERS = ["core.", "spark.", "steps.", "faces."]
#: Modules that run where Spark is absent (the app, ``predict``, the decoding inside workers,
#: the launcher): they must not import pyspark, even inside a function.
SPARK_FREE_PACKAGES = ("core.",)
#: module (or package, ending in ".") -> modules or packages it must not import
FORBIDDEN = {
    **{base: {"core.", "spark.", "steps.", "faces.", "observe."} for base in BASE},
    "core.": {"spark.", "steps.", "faces.", "observe."},
    "spark.": {"steps.", "faces.", "observe."},
    "steps.": {"faces."},
    # the two steps never call each other: what both need is a building block
    "steps.extraction": {"steps.recognition"},
    "steps.recognition": {"steps.extraction"},
    "observe.": {"spark.", "steps.", "faces."},
    "core.inputs": {"core.backbones", "core.inference"},
    "core.images": {"storage", "core.inputs", "core.backbones", "core.inference"},
}
#: What the launcher (tools/fruits_tools) may import from the runtime: light modules that import
#: neither Spark nor TensorFlow, nor anything its own wheel does not install.
LAUNCHER_MAY_IMPORT = {
    "helpers", "helpers.defaults", "helpers.config", "helpers.storage",
    "helpers.core.backbones", "helpers.core.recipe", "helpers.faces.args",
}  # fmt: skip


def _spark_free() -> set[str]:
    return {m for m in _modules() if m in BASE or m.startswith(SPARK_FREE_PACKAGES)} | {
        "observe.plots"
    }


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in its code (top level or lazily); names imported
    from a package count as modules of it (``from helpers.spark import ingest``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, Path]:
    """``chain.pipeline`` -> its file, for every module of the runtime package."""
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts): p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.stem != "__init__"
    }


def _matches(module: str, rule: str) -> bool:
    return module.startswith(rule) if rule.endswith(".") else module == rule


def _helpers_imports(module: str) -> set[str]:
    return {
        m.removeprefix("helpers.") for m in _imports(_modules()[module]) if m.startswith("helpers.")
    }


def test_the_package_shows_its_parts():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == {
        "core", "spark", "steps", "faces", "observe",
    }  # fmt: skip
    top = {m for m in _modules() if "." not in m}
    assert top == BASE | {"__main__"}, "a module outside the layers"


def test_every_module_is_in_a_layer_or_beside_them():
    for module in _modules():
        assert module in BASE | {"__main__"} or module.startswith((*LAYERS, "observe.")), module


@pytest.mark.parametrize("module", sorted(_spark_free()))
def test_spark_free_modules_import_no_spark(module):
    spark = {m for m in _imports(_modules()[module]) if m.split(".")[0] == "pyspark"}
    assert not spark, f"{module} imports {spark}"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_flow_one_way(module):
    imported = _helpers_imports(module)
    for rule, forbidden in FORBIDDEN.items():
        if _matches(module, rule):
            bad = {m for m in imported for f in forbidden if _matches(m, f) and m != module}
            assert not bad, f"{module} imports {bad}"


def test_nothing_imports_the_command_line():
    for module in _modules():
        if module not in ("__main__", "faces.cli"):
            assert "faces.cli" not in _helpers_imports(module), module


def test_the_rules_catch_the_arrows_they_forbid():
    """The rules themselves: an import the layers forbid is named (the three arrows mended in
    this layout among them)."""

    def bad(module: str, imported: str) -> bool:
        return any(
            _matches(module, rule) and any(_matches(imported, f) for f in forbidden)
            for rule, forbidden in FORBIDDEN.items()
        )

    assert bad("core.inference", "observe.logs")  # pure inference reaching for logging setup
    assert bad("steps.recognition", "steps.extraction")
    assert bad("spark.featurize", "steps.extraction")
    assert bad("storage", "core.backbones")
    assert not bad("steps.recognition", "spark.featurize")
    assert not _launcher_may_import("helpers.core.inference")  # TensorFlow's module
    assert not _launcher_may_import("helpers.spark.session")  # pyspark's


def _as_module(name: str) -> str:
    """``helpers.core.recipe.Recipe`` -> ``helpers.core.recipe`` (a name imported from a module
    counts as that module)."""
    known = {f"helpers.{m}" for m in _modules()} | {"helpers"}
    known |= {f"helpers.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _launcher_may_import(module: str) -> bool:
    return module.split(".")[0] != "helpers" or _as_module(module) in LAUNCHER_MAY_IMPORT


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported when the file is imported (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(TOOLS.rglob("*.py")), ids=lambda p: p.name)
def test_the_launcher_imports_only_light_runtime_modules(path):
    heavy = {m for m in _imports(path) if not _launcher_may_import(m)}
    assert not heavy, f"{path.name} imports {heavy}"


@pytest.mark.parametrize("module", sorted(LAUNCHER_MAY_IMPORT - {"helpers"}))
def test_the_launchers_runtime_modules_import_only_light_ones(module):
    path = _modules()[module.removeprefix("helpers.")]
    imported = {_as_module(m) for m in _imports(path) if m.startswith("helpers.")}
    assert imported <= LAUNCHER_MAY_IMPORT, imported
    # what the launcher's wheel does not install may only be imported where it is used (Keras's
    # download, NumPy's preprocessing), never when the module loads
    third_party = {m.split(".")[0] for m in _top_level_imports(path)}
    heavy = {"pyspark", "tensorflow", "keras", "openvino", "numpy", "pandas", "PIL"}
    assert not third_party & heavy, third_party & heavy


def test_the_runtime_never_imports_the_tooling():
    for module, path in _modules().items():
        tooling = {m for m in _imports(path) if m.split(".")[0] == "fruits_tools"}
        assert not tooling, f"{module} imports {tooling}"


@pytest.mark.parametrize(
    "argv",
    [
        ["helpers.faces", "predict", "no-such-photo.jpg", "--recognizer", "no-such-recognizer"],
        ["fruits_tools", "emr", "create", "--bucket", "fruits-example", "--dry-run"],
        ["fruits_tools", "s3", "ls"],
    ],
)
def test_spark_free_commands_start_no_spark(argv):
    """Run in a fresh process: whatever the command answers, pyspark stays unimported."""
    package, *args = argv
    code = (
        "import sys, json\n"
        f"from {package} import cli\n"
        f"code = cli.main({args!r})\n"
        "print(json.dumps({'pyspark': 'pyspark' in sys.modules,"
        " 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
             "PYTHONPATH": f"{ROOT}:{ROOT / 'tools'}",
             "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
             "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"pyspark": False, "tensorflow": False}, done.stderr[-2000:]


def test_command_line_defaults_are_the_defaults():
    parser = cli.build_parser()
    run = parser.parse_args(["run"])
    assert (run.model, run.weights, run.batch_size, run.variance_threshold) == (
        defaults.MODEL_NAME, defaults.WEIGHTS, defaults.BATCH_SIZE, defaults.VARIANCE_THRESHOLD,
    )  # fmt: skip
    assert (run.input_size, run.runtime, run.precision) == (
        defaults.INPUT_SIZE, defaults.RUNTIME, defaults.PRECISION,
    )  # fmt: skip
    recognize = parser.parse_args(["recognize"])
    assert (recognize.classifier, recognize.test_fraction) == (
        defaults.CLASSIFIER,
        defaults.TEST_FRACTION,
    )
    assert parser.parse_args(["predict", "x.jpg"]).top == defaults.TOP_LABELS
    tools = tools_cli.build_parser()
    assert tools.parse_args(["s3", "ls"]).region == defaults.REGION
    assert tools.parse_args(["emr", "create", "--bucket", "b"]).region == defaults.REGION


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """The runtime wheel (what EMR nodes install) and the tooling wheel, built from the clone."""
    out = tmp_path_factory.mktemp("wheels")
    from tests.emr_box import building_from_the_clone

    for project in (ROOT, ROOT / "tools"):
        with building_from_the_clone():
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                 "-w", str(out), str(project)],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
    return {w.name.split("-")[0]: w for w in out.glob("*.whl")}


def test_the_runtime_wheel_holds_the_pipeline_only(wheels):
    import zipfile

    names = zipfile.ZipFile(wheels["fruits_helpers"]).namelist()
    assert "helpers/steps/extraction.py" in names and "helpers/core/predict.py" in names
    assert not [n for n in names if n.startswith(("fruits_tools/", "tests/"))]
    assert not [n for n in names if n.rsplit("/", 1)[-1] in {"emr.py", "s3_staging.py"}]


def test_the_tooling_works_from_its_installed_wheels_without_a_clone(wheels, tmp_path):
    """Both wheels unpacked in a folder outside the clone: the launcher still finds the
    bootstrap, configurations, policy and notebooks it stages (its dry run prints them)."""
    import zipfile

    site = tmp_path / "site"
    for wheel in wheels.values():
        zipfile.ZipFile(wheel).extractall(site)
    assert (site / "fruits_tools" / "_assets" / "emr" / "bootstrap.sh").is_file()
    assert not (site / "fruits_tools" / "_assets" / "emr" / "bootstrap.sh").is_symlink()
    done = subprocess.run(
        [sys.executable, "-m", "fruits_tools", "emr", "stage", "--bucket", "fruits-example",
         "--wheel", str(wheels["fruits_helpers"]), "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONPATH": str(site)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    staged = done.stdout
    for name in ("bootstrap.sh", "run_pipeline.py", "05_recognition.ipynb", "fruits_helpers-"):
        assert name in staged, staged
    assert str(ROOT) not in staged  # nothing read from the clone
