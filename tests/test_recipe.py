"""The feature recipe, its one owner (helpers/core/recipe.py): resolved once, written to the
manifest, embedded in the recognizer, read back by every later step; the previous format (1,
``tests/data/format1/``: a features manifest and a recognizer saved by the release before the
recipe, from ``make run``'s chain on data_sample/ at 128 px with OpenVINO) still read."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from helpers import storage
from helpers.core import recipe as recipe_module
from helpers.core.recipe import (
    FORMAT,
    FeatureSpec,
    Recipe,
    RecipeFormatError,
    Weights,
    WeightsNotFoundError,
)
from tests.conftest import ROOT

FORMAT1 = Path(__file__).parent / "data" / "format1"


def test_resolve_records_kind_uri_and_digest(mobilenet_weights, tmp_path):
    given = tmp_path / "mine.h5"
    shutil.copy(mobilenet_weights, given)
    made = Recipe.resolve(input_size=128, weights=str(given))
    assert made.spec == FeatureSpec(input_size=128)
    assert made.weights == Weights("file", str(given), "mine.h5", storage.sha256(str(given)))
    found = Recipe.resolve()  # the lookup of Keras's file
    assert found.weights.kind == "imagenet" and found.weights.uri == mobilenet_weights
    assert found.weights.sha256 == made.weights.sha256
    assert Recipe.resolve(weights="random").weights == Weights("random")
    with pytest.raises(ValueError, match="openvino needs pretrained weights"):
        Recipe.resolve(runtime="openvino", weights="random")
    with pytest.raises(WeightsNotFoundError, match="weights file not found"):
        Recipe.resolve(weights=str(tmp_path / "nope.h5"))


def test_manifest_round_trip_in_the_current_format(mobilenet_weights):
    made = Recipe.resolve(input_size=96, runtime="openvino")
    manifest = made.to_manifest()
    assert manifest["format"] == FORMAT == 2
    assert manifest["input_size"] == 96  # one way to store the size
    assert manifest["weights"]["uri"] == mobilenet_weights
    assert Recipe.from_manifest(json.loads(json.dumps(manifest))) == made


def test_a_saved_format_1_manifest_reads_as_what_made_it():
    manifest = json.loads((FORMAT1 / "features" / "_manifest.json").read_text())
    assert "format" not in manifest and manifest["input_size"] == [128, 128]
    read = Recipe.from_manifest(manifest)
    assert read.spec == FeatureSpec("mobilenet_v2", 128, "openvino", "fp32")
    assert read.weights == Weights(
        "imagenet", None, manifest["weights_file"], manifest["weights_sha256"]
    )


def test_a_newer_format_is_refused_in_one_line():
    with pytest.raises(RecipeFormatError, match="format 3; this release reads formats 1 and 2"):
        Recipe.from_manifest({"format": 3, "backbone": "mobilenet_v2"})


def test_located_finds_the_recorded_file_or_an_identical_copy(mobilenet_weights, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copy(mobilenet_weights, copy)
    made = Recipe.resolve(weights=str(copy))
    assert made.located() == made  # the recorded file is still there
    moved = tmp_path / "moved.h5"
    copy.rename(moved)
    with pytest.raises(WeightsNotFoundError, match="give the same file as weights"):
        made.located()  # a file the user gave: never replaced by a lookup
    assert made.located(str(moved)).weights.uri == str(moved)
    other = tmp_path / "other.h5"
    other.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="not the weight file the features were made with"):
        made.located(str(other))
    # Keras's file recorded on another machine: found here by the lookup, same digest
    elsewhere = Recipe.from_manifest(
        {**Recipe.resolve().to_manifest(), "weights": {**Recipe.resolve().to_manifest()["weights"],
                                                       "uri": "/elsewhere/w.h5"}}
    )  # fmt: skip
    assert elsewhere.located().weights.uri == mobilenet_weights


def test_the_recognizer_embeds_the_recipe_and_reads_format_1():
    from helpers.core.predict import recognizer_recipe

    old = json.loads((FORMAT1 / "recognizer" / "recognizer.json").read_text())
    assert "format" not in old and "recipe" not in old["settings"]
    read = recognizer_recipe(old)
    assert read.spec == FeatureSpec("mobilenet_v2", 128, "openvino", "fp32")
    assert (read.weights.kind, read.weights.name) == ("imagenet", old["settings"]["weights_file"])
    made = Recipe(FeatureSpec(input_size=160), Weights("imagenet", "/w.h5", "w.h5", "ab" * 32))
    current = {
        "format": 2,
        "model_name": "mobilenet_v2",
        "settings": {"recipe": made.to_manifest()},
    }
    assert recognizer_recipe(current) == made


def test_predict_answers_with_a_saved_format_1_recognizer(mobilenet_weights):
    """The previous release's recognizer (OpenVINO, 128 px) answers data_sample's test photos."""
    from helpers.core.predict import PhotoRecognizer

    recognizer = PhotoRecognizer(str(FORMAT1 / "recognizer"))
    assert recognizer.spec == FeatureSpec("mobilenet_v2", 128, "openvino", "fp32")
    photos = sorted((ROOT / "data_sample" / "Test").glob("*/*"))
    answers = recognizer.predict([str(p) for p in photos])
    right = sum(a.label == p.parent.name for a, p in zip(answers, photos))
    assert right / len(photos) >= 0.9, (right, len(photos))


def test_a_newer_recognizer_format_is_refused(tmp_path):
    from helpers.core.predict import PhotoRecognizer

    shutil.copytree(FORMAT1 / "recognizer", tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "recognizer.json").read_text())
    (tmp_path / "r" / "recognizer.json").write_text(json.dumps({**meta, "format": 9}))
    with pytest.raises(ValueError, match="format 9; this release reads formats 1 and 2"):
        PhotoRecognizer(str(tmp_path / "r"))


def _calls(path: Path, name: str) -> int:
    """Calls of ``name`` (a function, or ``Owner.method``) in a file."""
    owner, _, func = name.rpartition(".")
    count = 0
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if owner:
            count += (
                isinstance(f, ast.Attribute)
                and f.attr == func
                and (isinstance(f.value, ast.Name) and f.value.id == owner)
            )
        else:
            count += getattr(f, "id", getattr(f, "attr", None)) == func
    return count


def test_weights_are_looked_up_in_one_place_and_recipes_resolved_at_the_edge():
    """``resolve_weights``: only the recipe and the launcher's staging call it; ``Recipe.resolve``
    (the edge): only the command-line parameters' object of the extraction (called by the CLI and
    the notebooks) in the runtime."""
    sources = [*(ROOT / "helpers").rglob("*.py"), *(ROOT / "tools" / "fruits_tools").rglob("*.py")]
    lookups = {p.relative_to(ROOT).as_posix(): _calls(p, "resolve_weights") for p in sources}
    assert {p for p, n in lookups.items() if n} == {
        "helpers/core/recipe.py", "tools/fruits_tools/cli.py",
    }  # fmt: skip
    resolves = {p.relative_to(ROOT).as_posix(): _calls(p, "Recipe.resolve") for p in sources}
    assert {p for p, n in resolves.items() if n} == {"helpers/steps/extraction.py"}
    assert recipe_module.resolve_weights.__module__ == "helpers.core.recipe"
