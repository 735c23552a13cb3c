"""The files the launcher stages: ``emr/`` (bootstrap, configurations, entry point, IAM
policy) and ``notebooks/``.

``_assets/`` links to them in a clone, and a wheel built from ``tools/`` carries copies, so the
same paths work from an editable install and from an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "_assets"


def asset(*parts: str) -> Path:
    """``_assets/<parts>``; one clear error when an installation lacks it."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{'/'.join(parts)} is missing from {ASSETS}; reinstall fruits-tools "
            "(pip install -e tools from a clone, or its wheel)"
        )
    return path


def emr_file(name: str) -> Path:
    """A file of ``emr/`` (``bootstrap.sh``, ``configurations.json``, ``iam/...``)."""
    return asset("emr", name)


def notebooks() -> list[Path]:
    """The pipeline's notebooks, in order."""
    return sorted(asset("notebooks").glob("*.ipynb"))
