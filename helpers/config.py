"""Where things are: project folders, the shared folder of models and sample images.

Every location can be overridden with an environment variable, so the same code runs from a
clone, from an installed wheel on EMR, or from a notebook started in another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Environment variables read by the project.
ENV_SHARED_DIR = "FRUITS_SHARED_DIR"  # folder holding models/ and fruits360-sample/
ENV_MODELS_DIR = "FRUITS_MODELS_DIR"  # extra folders searched for weight files (os.pathsep list)
ENV_MODELS_URI = "FRUITS_MODELS_URI"  # a folder URI (s3://) searched after them (EMR's staged copy)
ENV_CACHE_DIR = "FRUITS_CACHE_DIR"  # models converted for another inference runtime


def default_input() -> str:
    """The dataset the project ships: ``data_sample/`` in Fruits-360 layout."""
    return str(PROJECT_ROOT / "data_sample")


def default_output() -> str:
    """Local results folder (ignored by git)."""
    return str(PROJECT_ROOT / "output")


def cache_dir() -> Path:
    """Where converted models are kept: ``$FRUITS_CACHE_DIR``, else ``$XDG_CACHE_HOME/fruits``
    or ``~/.cache/fruits``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fruits"


def shared_dir() -> Path | None:
    """The shared folder beside the project (``../shared``), or ``$FRUITS_SHARED_DIR``.

    Returns None when neither exists.
    """
    env = os.environ.get(ENV_SHARED_DIR)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    cwd = Path.cwd()
    candidates = [PROJECT_ROOT.parent / "shared"] + [p / "shared" for p in (cwd, *cwd.parents)]
    for candidate in candidates:
        if (candidate / "models").is_dir() or (candidate / "fruits360-sample").is_dir():
            return candidate
    return None


def models_dirs() -> list[Path]:
    """Folders searched for pretrained weight files, in order."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_MODELS_DIR, "").split(os.pathsep) if p]
    shared = shared_dir()
    if shared is not None:
        dirs.append(shared / "models")
    return [d for d in dirs if d.is_dir()]


def models_uri() -> str | None:
    """A remote folder (``s3://...``) searched for weight files after the local ones."""
    return os.environ.get(ENV_MODELS_URI) or None


def fruits360_sample_dir() -> Path | None:
    """The 960 real Fruits-360 images kept beside the project, if present."""
    shared = shared_dir()
    if shared is None:
        return None
    path = shared / "fruits360-sample"
    return path if path.is_dir() else None


#: sparkMeasure's version, the same for the PyPI package (pyproject.toml) and the jar
#: (emr/rehearsal/pom-sparkmeasure.xml): the newest built for Scala 2.12 that Maven Central
#: serves this project. Spark 4's Scala 2.13 has no served build (helpers.observe.stagemetrics).
SPARKMEASURE_VERSION = "0.24"
ENV_SPARKMEASURE_JAR = "FRUITS_SPARKMEASURE_JAR"  # a jar to load (EMR's notebooks step)
ENV_JARS_DIR = "FRUITS_JARS_DIR"  # the jars `make jars` caches (default ~/.cache/fruits/jars)


def explicit_sparkmeasure_jar() -> Path | None:
    """The jar ``$FRUITS_SPARKMEASURE_JAR`` names, when it is a file."""
    if os.environ.get(ENV_SPARKMEASURE_JAR):
        path = Path(os.environ[ENV_SPARKMEASURE_JAR]).expanduser()
        return path if path.is_file() else None
    return None


def cached_sparkmeasure_jar(scala: str) -> Path | None:
    """sparkMeasure's jar for a Scala binary version (``2.12``: EMR 7's Spark 3.5) cached under
    ``~/.cache/fruits/jars/sparkmeasure`` by ``make jars``; None when absent."""
    folder = Path(os.environ.get(ENV_JARS_DIR, "~/.cache/fruits/jars")).expanduser()
    found = sorted((folder / "sparkmeasure").glob(f"spark-measure_{scala}-*.jar"))
    return found[-1] if found else None
