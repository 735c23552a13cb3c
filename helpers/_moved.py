"""Old module paths, still importable: Spark ML pipelines saved before the package was split
into layers name their Python stages by module path (``helpers.chain.reduce.Projection``), and
Spark's reader imports that path to load them. A meta-path finder maps each old path to its
module's new home, lazily, so importing :mod:`helpers` imports nothing else."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module path -> where it lives now
MOVED = {
    "helpers.chain.images": "helpers.core.images",
    "helpers.chain.inputs": "helpers.core.inputs",
    "helpers.chain.models": "helpers.core.backbones",
    "helpers.chain.inference": "helpers.core.inference",
    "helpers.chain.runtimes": "helpers.core.runtimes",
    "helpers.chain.report": "helpers.core.report",
    "helpers.chain.ingest": "helpers.spark.ingest",
    "helpers.chain.featurize": "helpers.spark.featurize",
    "helpers.chain.reduce": "helpers.spark.reduce",
    "helpers.chain.inventory": "helpers.spark.inventory",
    "helpers.chain.pipeline": "helpers.steps.extraction",
    "helpers.recognition.augment": "helpers.core.augment",
    "helpers.recognition.arrays": "helpers.core.arrays",
    "helpers.recognition.recognize": "helpers.core.predict",
    "helpers.recognition.clutter": "helpers.spark.clutter",
    "helpers.recognition.classify": "helpers.spark.classify",
    "helpers.recognition.clustering": "helpers.spark.clustering",
    "helpers.recognition.maps": "helpers.spark.maps",
    "helpers.recognition.engine": "helpers.steps.recognition",
}
_OLD_PACKAGES = {"helpers.chain", "helpers.recognition"}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str | None) -> None:
        self.target = target

    def create_module(self, spec):
        if self.target is None:  # an old package: an empty namespace for its old modules
            return None
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        if self.target is None:
            module.__path__ = []
        else:  # the import system stamped the old name's spec on the module: give its own back
            module.__spec__ = self._spec


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in _OLD_PACKAGES:
            return importlib.util.spec_from_loader(fullname, _Alias(None), is_package=True)
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
