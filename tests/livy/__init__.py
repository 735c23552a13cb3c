"""EMR's PySpark kernel, rehearsed: sparkmagic's kernel (the PyPI package, in an environment
of its own as in EMR Studio and EMR's JupyterHub) against a Livy-protocol server
(:mod:`tests.livy.server`) whose sessions are PySpark drivers on the YARN minicluster
(:mod:`tests.livy.repl`)."""

from __future__ import annotations

import json
from pathlib import Path

SHAPES = Path(__file__).parent / "shapes"


def shape(name: str) -> dict:
    return json.loads((SHAPES / f"{name}.json").read_text())


def same_shape(answer, expected, where: str = "") -> None:
    """Same keys, and values of the same JSON kinds (None matches anything: Livy's nullable;
    an empty object any object: a free-form map such as ``conf``)."""
    if isinstance(expected, dict):
        assert isinstance(answer, dict), where
        if not expected:
            return
        assert set(answer) == set(expected), (where, sorted(set(answer) ^ set(expected)))
        for key, value in expected.items():
            same_shape(answer[key], value, f"{where}.{key}")
    elif expected is not None and answer is not None:
        kinds = (int, float) if isinstance(expected, (int, float)) else type(expected)
        assert isinstance(answer, kinds), (where, answer, expected)
