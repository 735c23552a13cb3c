"""The notebooks' parameters cells agree with helpers/defaults.py: every parameter stands for a
default and has its value, or is listed here as having none; a parameter this file does not
know fails, so a new or renamed one is looked at rather than skipped."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from helpers import defaults
from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: notebook parameter -> the name of the default (in helpers.defaults) it stands for
DEFAULTS = {
    "MODEL_NAME": "MODEL_NAME",
    "WEIGHTS": "WEIGHTS",
    "BATCH_SIZE": "BATCH_SIZE",
    "INPUT_SIZE": "INPUT_SIZE",
    "RUNTIME": "RUNTIME",
    "PRECISION": "PRECISION",
    "VARIANCE_THRESHOLD": "VARIANCE_THRESHOLD",
    "CLASSIFIER": "CLASSIFIER",
    "TEST_FRACTION": "TEST_FRACTION",
    "AUGMENT_COPIES": "AUGMENT_COPIES",
    "HIDDEN_LAYERS": "HIDDEN_LAYERS",
    "REG_PARAM": "REG_PARAM",
    "MAX_ITER": "MAX_ITER",
    "MAP_POINTS": "MAP_POINTS",
    "SEED": "SEED",
}

#: notebook parameter -> why it has no default in helpers.defaults
NO_DEFAULT = {
    "INPUT_URI": "a path or URI; None: data_sample/",
    "OUTPUT_URI": "a path or URI; None: output/",
    "PHOTO_URI": "a photo to answer; None: an upload box",
    "BACKGROUNDS": "a folder or URI of photos; None: drawn backgrounds only",
    "HELD_OUT_BACKGROUNDS": "a folder or URI of photos; None: drawn backgrounds only",
    "EVENT_LOG_DIR": "a folder; None: <output>/spark-events",
    "SPARK_UI_URL": "a URL; None: read the event logs",
    "APP_ID": "an application id; None: the latest that featurized",
    "SPARK_MASTER": "None: the kernel's session or local[*]",
    "SAMPLE_FRACTION": "an option of the notebook: every image unless asked (1.0)",
    "NUM_PARTITIONS": "None: Spark's file packing",
    "INCREMENTAL": "an option of the notebook: off unless asked",
    "K": "None: the variance threshold chooses k",
    "N_CLUSTERS": "None: one cluster per label",
    "CLUSTER_K_RANGE": "None: N_CLUSTERS rather than a silhouette search",
    "THUMBNAILS_PER_LABEL": "how much notebook 01 shows",
    "SCATTER_POINTS": "how much notebook 03 draws",
    "TOP_STAGES": "how much notebook 04 draws",
}

#: (notebook, parameter) -> why, in that notebook, a parameter of DEFAULTS has no default
NO_DEFAULT_IN = {
    ("05_recognition", "WEIGHTS"): "None: the weight file the features' recipe names",
}


def _parameters(notebook: Path) -> dict:
    """The names and values of the notebook's one cell tagged ``parameters``."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: {len(tagged)} cells tagged 'parameters'"
    values = {}
    for node in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, (
            f"{notebook.name}: not a plain assignment: {ast.unparse(node)}"
        )
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _plain(value):
    """Tuples as the lists a notebook writes (``HIDDEN_LAYERS = [256]``)."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def test_there_are_notebooks_to_check():
    assert [n.name for n in NOTEBOOKS][:1] == ["01_ingestion.ipynb"] and len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_agree_with_the_defaults(notebook):
    params = _parameters(notebook)
    own = {name for stem, name in NO_DEFAULT_IN if stem == notebook.stem}
    unknown = sorted(set(params) - set(DEFAULTS) - set(NO_DEFAULT) - own)
    assert not unknown, (
        f"{notebook.name}: parameters {unknown} are in neither DEFAULTS nor NO_DEFAULT of "
        f"{Path(__file__).name}: map each to its default in helpers/defaults.py or say why it "
        "has none"
    )
    differ = {
        name: (value, getattr(defaults, DEFAULTS[name]))
        for name, value in params.items()
        if name in DEFAULTS
        and name not in own
        and _plain(value) != _plain(getattr(defaults, DEFAULTS[name]))
    }
    assert not differ, f"{notebook.name}: (notebook, helpers.defaults) differ: {differ}"


def test_the_tables_name_real_defaults_and_real_parameters():
    params = {notebook.stem: _parameters(notebook) for notebook in NOTEBOOKS}
    used = {name for values in params.values() for name in values}
    assert not set(DEFAULTS) & set(NO_DEFAULT)
    for stem, name in NO_DEFAULT_IN:  # an exception where the notebook keeps the default is stale
        assert name in DEFAULTS and name in params.get(stem, {}), (stem, name)
        assert _plain(params[stem][name]) != _plain(getattr(defaults, DEFAULTS[name])), (stem, name)
    assert not [a for a in DEFAULTS.values() if not hasattr(defaults, a)]
    # an entry no notebook has any more is stale
    assert sorted((set(DEFAULTS) | set(NO_DEFAULT)) - used) == []
    # a parameter named like a default is that default, not one without
    assert sorted(n for n in NO_DEFAULT if hasattr(defaults, n)) == []
