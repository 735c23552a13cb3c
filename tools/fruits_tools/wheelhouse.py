"""The wheelhouse the bootstrap installs from with ``--no-index``: no node needs the internet.

:func:`build` runs ``pip download`` for EMR's nodes (manylinux x86-64, CPython 3.11, binary
wheels only) into ``~/.cache/fruits/wheelhouse/<key>/``, once per set of pins, and writes the
requirement files: ``requirements.txt`` / ``requirements-primary.txt`` (the pins asked for:
``emr/bootstrap.sh``'s ``PINNED`` and ``PRIMARY_ONLY``, the same as ``pyproject.toml``'s) and the
locks the bootstrap installs from with ``pip --require-hashes``: ``requirements.lock`` (every
node: each wheel the pins resolved to, by exact version and SHA-256) and
``requirements-primary.lock`` (the same plus the primary node's notebook runner). A wheel changed
in the bucket after staging is refused by pip on the node.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fruits_tools import assets

PYTHON_VERSION = "3.11"
#: Bumped when the wheelhouse's layout changes (2: the hash locks), so a cached one is rebuilt.
LAYOUT = "2"
#: Amazon Linux 2023 has glibc 2.34: every manylinux tag up to it installs there. Spelled out
#: one by one: pip matches ``--platform`` tags exactly (TensorFlow's wheel is 2_27 only).
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(34, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)


def cache_root() -> Path:
    """``$FRUITS_WHEELHOUSE_DIR`` or ``~/.cache/fruits/wheelhouse``."""
    env = os.environ.get("FRUITS_WHEELHOUSE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fruits" / "wheelhouse"


def bootstrap_pins() -> tuple[list[str], list[str]]:
    """``PINNED`` and ``PRIMARY_ONLY`` of ``emr/bootstrap.sh``."""
    text = assets.emr_file("bootstrap.sh").read_text()

    def array(name: str) -> list[str]:
        body = re.search(rf"^{name}=\((.*?)\)", text, re.S | re.M)
        if body is None:
            raise ValueError(f"emr/bootstrap.sh has no {name}=(...) array")
        return re.findall(r'"([^"]+)"', body.group(1))

    return array("PINNED"), array("PRIMARY_ONLY")


def build(
    packages: list[str] | None = None,
    primary_packages: list[str] | None = None,
    dest: Path | None = None,
    pip_args: list[str] | None = None,
) -> Path:
    """Download the wheels (default: the bootstrap's pins) and write the requirement files.

    Cached: a folder holding ``.complete`` is reused as it is. ``pip_args`` (e.g. an internal
    index) are passed to pip and never written anywhere.
    """
    if packages is None:
        packages, default_primary = bootstrap_pins()
        primary_packages = default_primary if primary_packages is None else primary_packages
    primary_packages = list(primary_packages or [])
    key = hashlib.sha256(
        "\n".join([*packages, "--", *primary_packages, *PLATFORMS, PYTHON_VERSION, LAYOUT]).encode()
    ).hexdigest()[:16]
    dest = Path(dest) if dest else cache_root() / key
    if (dest / ".complete").is_file():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    # the nodes' set first, then the primary's on top: each lock names exactly its wheels
    _download(dest, packages, pip_args)
    nodes = sorted(dest.glob("*.whl"))
    _download(dest, [*packages, *primary_packages], pip_args)
    (dest / "requirements.txt").write_text("\n".join(packages) + "\n")
    (dest / "requirements-primary.txt").write_text("\n".join(primary_packages) + "\n")
    (dest / "requirements.lock").write_text(lock(nodes))
    (dest / "requirements-primary.lock").write_text(lock(sorted(dest.glob("*.whl"))))
    (dest / ".complete").write_text("")
    return dest


def _download(dest: Path, packages: list[str], pip_args: list[str] | None) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest),
        "--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION,
        *[a for p in PLATFORMS for a in ("--platform", p)],
        *(pip_args or []), *packages,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise RuntimeError(f"wheelhouse: {last}")


def lock(wheels: list[Path]) -> str:
    """``name==version --hash=sha256:...`` for each wheel (pip's hash-checking mode); one
    version per name, or the sets disagree and the wheelhouse is refused."""
    lines, seen = [], {}
    for wheel in wheels:
        name, version = wheel.name.split("-")[:2]
        key = name.lower().replace("_", "-")
        if key in seen and seen[key] != version:
            raise RuntimeError(
                f"wheelhouse: two versions of {name} ({seen[key]}, {version}): the primary's "
                "packages need another version than the nodes'"
            )
        seen[key] = version
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"
