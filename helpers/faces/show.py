"""Figures, tables and widgets in both notebook kernels, from one notebook source.

- Jupyter's own Python kernel (a laptop, papermill, nbval, the cluster's notebooks step): the
  cell's last value is shown richly (a figure as PNG, a DataFrame as an HTML table).
- EMR's PySpark kernel (EMR Studio, EMR's JupyterHub: sparkmagic sends each cell to a Livy
  session on the cluster): a cell's value comes back as text, and a figure only through Livy's
  ``%matplot plt`` magic, which draws pyplot's current figure. IPython does not exist there
  (the driver may run on a core node, which has no notebook packages).

The committed notebooks end each figure cell with :func:`figure` and tag it ``figure``; the
EMR Studio copies that ``emr stage`` writes (``fruits_tools.emr.studio_notebook``) add
``%matplot plt`` at the end of those cells. Nothing here imports IPython.
"""

from __future__ import annotations

import sys
from typing import Any


def rich() -> bool:
    """True inside an IPython kernel, where Jupyter renders a cell's value (figure, HTML).

    Looked up, never imported: an IPython kernel has imported it already, and a Livy session
    has no IPython (importing it there would fail, or start a shell that renders nothing)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get is not None and get() is not None


def figure(fig: Any) -> Any:
    """Show ``fig`` (a matplotlib figure, or None for nothing to show).

    In an IPython kernel: returns it, and Jupyter renders it as the cell's value. Elsewhere:
    makes it pyplot's current figure, for the ``%matplot plt`` that follows the cell in the
    EMR Studio copies, and returns None (a figure's text is noise)."""
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    if rich():
        plt.close(fig)  # shown once, as the value (not again as an open pyplot figure)
        return fig
    plt.close("all")  # %matplot draws the current figure: only this one
    plt.figure(fig)  # attached to pyplot again (the plots module detaches its figures)
    return None


class Text(str):
    """A string shown as itself, not as its repr (no quotes in either kernel)."""

    def __repr__(self) -> str:
        return str(self)
