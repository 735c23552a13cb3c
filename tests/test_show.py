"""One notebook source for both kernels (helpers/faces/show.py, the EMR Studio copies):
Jupyter's Python kernel renders a cell's figure, EMR's PySpark kernel (sparkmagic, Livy) only
through ``%matplot plt`` after the cell, which the staged copies add to cells tagged figure."""

from __future__ import annotations

import ast
import json
import sys

import matplotlib
import pytest

from fruits_tools import emr
from helpers.faces import show
from helpers.observe import plots
from tests.conftest import ROOT

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _figure():
    return plots.explained_variance_figure([0.5, 0.3, 0.2], 2, 0.75)


def test_in_an_ipython_kernel_the_figure_is_the_cells_value_once(ipython_kernel):
    plt.close("all")
    fig = _figure()
    assert show.figure(fig) is fig
    assert plt.get_fignums() == []  # not also an open pyplot figure: shown once


def test_elsewhere_the_figure_is_pyplots_current_one_for_matplot(monkeypatch):
    """A Livy session (no IPython): nothing returned, the figure is what ``%matplot plt``
    draws (Livy's magic saves ``plt.gcf()``), and the only open one."""
    monkeypatch.setitem(sys.modules, "IPython", None)
    plt.close("all")
    stray = plt.figure()  # an earlier cell's figure must not be drawn instead
    fig = _figure()
    assert show.figure(fig) is None
    assert plt.gcf() is fig and plt.get_fignums() == [fig.number]
    assert stray.number not in plt.get_fignums()
    plt.close("all")
    assert show.figure(None) is None and plt.get_fignums() == []


def test_show_imports_no_ipython():
    tree = ast.parse((ROOT / "helpers" / "faces" / "show.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.split(".")[0] in ("IPython", "ipywidgets")}


def _code_cells(book: dict) -> list[dict]:
    return [c for c in book["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_cell_is_tagged_and_shown_through_show(notebook):
    """A cell ending with a figure ends with ``show.figure(...)`` and carries the tag, so its
    Studio copy shows it; a tagged cell always ends so (else %matplot would draw an empty
    figure), and prints nothing (it would be lost there). No cell imports IPython itself."""
    book = json.loads(notebook.read_text())
    ids = [c["id"] for c in book["cells"]]
    assert len(ids) == len(set(ids)), "cell ids must be unique (nbformat renames duplicates)"
    for cell in _code_cells(book):
        text = _source(cell)
        last = text.rstrip().splitlines()[-1] if text.strip() else ""
        tagged = emr.FIGURE_TAG in cell.get("metadata", {}).get("tags", [])
        assert tagged == last.startswith("show.figure("), (notebook.name, text[-200:])
        assert "IPython" not in text, (notebook.name, text[:200])
        if tagged:  # sparkmagic shows a statement's image/png and drops its printed text
            assert "print(" not in text, (notebook.name, text[:200])
        if not tagged:  # no figure left as a bare value (it would print as text in Studio)
            assert not last.startswith(("plots.", "showcase.answers_figure")), last


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_studio_copies_draw_each_tagged_cell_with_matplot(notebook):
    source = json.loads(notebook.read_text())
    copy = json.loads(emr.studio_notebook(notebook))
    assert copy["metadata"]["kernelspec"]["name"] == "pysparkkernel"
    pairs = list(zip(_code_cells(source), _code_cells(copy), strict=True))
    for before, after in pairs:
        if emr.FIGURE_TAG in before.get("metadata", {}).get("tags", []):
            assert _source(after) == (
                _source(before).rstrip("\n") + "\nimport matplotlib.pyplot as plt\n%matplot plt"
            )
        else:
            assert _source(after) == _source(before)
    figures = sum(_source(a).endswith(emr.MATPLOT) for _, a in pairs)
    expected = {"01_ingestion": 2, "02_feature_extraction": 0, "03_pca": 2,
                "04_spark_ui_monitoring": 4, "05_recognition": 3}  # fmt: skip
    assert figures == expected[notebook.stem]


def test_a_local_output_is_refused_where_the_driver_runs_in_a_container():
    """EMR Studio with Livy in cluster mode: ``output/`` would be written inside the driver's
    YARN container and lost; an s3:// output, or a driver on this machine, is fine."""
    from helpers.faces.notebooks import check_output_outlives_driver

    with pytest.raises(ValueError, match="^OUTPUT_URI output is a folder.*give an s3:// OUTPUT"):
        check_output_outlives_driver("cluster", "output")
    check_output_outlives_driver("cluster", "s3://bucket/fruits/output")
    check_output_outlives_driver("client", "output")
