"""The environment archive for a cluster you don't own (``python -m fruits_tools pack``).

A virtual environment holding the runtime wheel and the nodes' locked dependencies (the
wheelhouse ``emr stage`` builds: manylinux x86-64 wheels for CPython 3.11, installed with
``--no-index --require-hashes``), packed by venv-pack into ``fruits-env.tar.gz``. Spark unpacks
it in every YARN container (``--archives ...#environment``) or EMR Serverless worker
(``spark.archives``) and runs ``./environment/bin/python``.

The interpreter is not inside: the archive's ``bin/python`` is a link to the nodes' own
``/usr/bin/python3.11`` (EMR 7.x on EC2 ships it; for EMR Serverless see docs/shared-clusters.md),
and pyspark is not inside either: the cluster's Spark puts its own on the workers' path.

Why venv-pack: it packs a real venv that pip built and that is checked here before packing
(``import helpers`` and the runtimes), it re-points the interpreter links at the nodes' prefix
(``--python-prefix``) and makes the scripts' shebangs relative, and its output is a plain
tar.gz that YARN and EMR Serverless unpack natively, with nothing extracted at first start.
Spark's "Python Package Management" guide and AWS's EMR Serverless guide both name it for this
job. (conda-pack would bring conda and its own interpreter; a PEX re-extracts itself into a home
folder in every new container.) Its 0.2.0 rewrites a link only when it points at
``<prefix>/bin/python`` (one to ``.../python3.11`` becomes ``/usr/bin/python3.113.11``), so the
venv is made by that ``bin/python``, and the archive's links are checked after packing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fruits_tools import wheelhouse

ARCHIVE_NAME = "fruits-env.tar.gz"
#: The folder name the archive is unpacked under in each container (``#environment``).
ALIAS = "environment"
#: The interpreter Spark runs in each container, inside the unpacked archive.
ENV_PYTHON = f"./{ALIAS}/bin/python"
#: Where EMR 7.x nodes have Python 3.11 (``/usr/bin/python3.11``, Amazon Linux 2023's package).
NODE_PYTHON_PREFIX = "/usr"
#: Left out of the archive: C headers (TensorFlow's alone are 12,000 files) and the packages'
#: own test suites, which nothing imports at run time. Each file costs every container that
#: unpacks the archive (a NodeManager sets each file's permissions one by one).
EXCLUDE = ("lib/python3.*/site-packages/*/include/*", "lib/python3.*/site-packages/*/tests/*")
#: What the archive must import before it is packed: the chain and both runtimes.
CHECK_IMPORTS = ("helpers", "numpy", "pandas", "pyarrow", "PIL", "sklearn", "tensorflow",
                 "openvino", "boto3")  # fmt: skip


@dataclass
class Packed:
    """What ``pack`` built: the archive, and the facts a user (and ``fruits-env.json``) needs."""

    archive: str
    bytes: int
    unpacked_bytes: int
    files: int
    sha256: str
    python: str
    python_prefix: str
    interpreter: str
    packages: dict
    seconds: float

    def line(self) -> str:
        return (
            f"pack: {self.archive}: {self.bytes / 1e6:.0f} MB ({self.unpacked_bytes / 1e6:.0f} MB "
            f"unpacked, {self.files} files), Python {self.python} at {self.interpreter} on the "
            f"nodes, built in {self.seconds:.0f} s"
        )


def check_platform() -> None:
    """Refuse, in one line, a machine whose wheels could not run on EMR's nodes: the venv is
    built and checked here, then runs there (Linux x86-64)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ValueError(
            f"pack builds for EMR's Linux x86-64 nodes and must run on one "
            f"(this is {sys.platform} {platform.machine()}): run it in a Linux x86-64 shell, "
            "e.g. a container, CloudShell or the cluster's primary node"
        )


def interpreter_facts(python: str) -> dict:
    """Version and base prefix of ``python``, asked of the interpreter itself."""
    found = shutil.which(python) or python
    probe = "import json, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], " \
            "'base_prefix': sys.base_prefix}))"  # fmt: skip
    try:
        done = subprocess.run([found, "-c", probe], capture_output=True, text=True, timeout=60)
    except OSError:
        raise ValueError(f"no Python interpreter {python!r}: pass --python PATH") from None
    if done.returncode != 0:
        raise ValueError(f"{python} does not run: {done.stderr.strip()[-200:]}")
    facts = json.loads(done.stdout)
    if facts["version"] != wheelhouse.PYTHON_VERSION:
        raise ValueError(
            f"{python} is Python {facts['version']}; the nodes run {wheelhouse.PYTHON_VERSION} "
            f"and the wheels are built for it: pass --python python{wheelhouse.PYTHON_VERSION}"
        )
    return facts


def build(
    wheel: Path,
    wheels: Path,
    output: Path,
    python: str = f"python{wheelhouse.PYTHON_VERSION}",
    python_prefix: str = NODE_PYTHON_PREFIX,
    workdir: Path | None = None,
    echo=print,
) -> Packed:
    """Build the venv from ``wheels`` (a wheelhouse: ``requirements.lock``) and ``wheel``,
    check it imports the chain, pack it to ``output`` pointing at ``python_prefix``'s
    interpreter, and write ``<output without .tar.gz>.json`` beside it."""
    check_platform()
    wheel, wheels, output = Path(wheel), Path(wheels), Path(output)
    if not wheel.is_file():
        raise FileNotFoundError(f"no wheel at {wheel} (pip wheel --no-deps -w dist .)")
    if not (wheels / "requirements.lock").is_file():
        raise FileNotFoundError(f"no wheelhouse at {wheels} (no requirements.lock)")
    if not os.path.isabs(python_prefix):
        raise ValueError(f"--python-prefix must be an absolute path, got {python_prefix!r}")
    facts = interpreter_facts(python)
    # venv-pack re-points only a link to <base>/bin/python (see the module's docstring)
    base_python = Path(facts["base_prefix"]) / "bin" / "python"
    if not base_python.exists():
        raise ValueError(
            f"{python} has no {base_python}: venv-pack can re-point only a venv made by it; "
            "pass --python with an installation that has bin/python (e.g. pyenv's, conda's)"
        )
    started = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fruits-pack-", dir=workdir) as tmp:
        env = Path(tmp) / "env"
        echo(f"pack: venv from {base_python}, packages from {wheels}")
        _run([str(base_python), "-m", "venv", "--without-pip", str(env)], "venv")
        # not compiled: a file more per module for every container to unpack, while the
        # first Python worker of a container caches what it compiles for the others (YARN
        # leaves the unpacked folders writable by their user)
        pip = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install",
               "--quiet", "--no-index", "--no-compile"]  # fmt: skip
        _run([*pip, "--find-links", str(wheels), "--require-hashes",
              "-r", str(wheels / "requirements.lock")], "pip install")  # fmt: skip
        _run([*pip, "--no-deps", str(wheel)], "pip install (the wheel)")
        packages = _check_imports(env / "bin" / "python")
        echo(f"pack: {len(packages)} packages, imports checked; packing {output.name}")
        _pack(env, output, python_prefix)
    listed = inspect(output)
    interpreter = f"{python_prefix.rstrip('/')}/bin/python{wheelhouse.PYTHON_VERSION}"
    if listed["links"].get("bin/python") != interpreter:
        raise RuntimeError(
            f"pack: the archive's bin/python points to {listed['links'].get('bin/python')!r}, "
            f"not {interpreter}"
        )
    if listed["home"] != f"{python_prefix.rstrip('/')}/bin":
        raise RuntimeError(f"pack: the archive's pyvenv.cfg says home = {listed['home']!r}")
    packed = Packed(
        archive=str(output), bytes=output.stat().st_size, unpacked_bytes=listed["bytes"],
        files=listed["files"], sha256=_sha256(output), python=wheelhouse.PYTHON_VERSION,
        python_prefix=python_prefix, interpreter=interpreter, packages=packages,
        seconds=time.monotonic() - started,
    )  # fmt: skip
    manifest(output).write_text(json.dumps(asdict(packed), indent=1, sort_keys=True) + "\n")
    return packed


def manifest(archive: Path) -> Path:
    """The JSON beside the archive (``fruits-env.json``)."""
    return Path(archive).with_name(Path(archive).name.removesuffix(".tar.gz") + ".json")


def inspect(archive: Path) -> dict:
    """The archive's links (``bin/...``), ``pyvenv.cfg``'s home, its file count and bytes."""
    links, home, files, size = {}, None, 0, 0
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            files += 1
            size += member.size
            if member.issym() and member.name.startswith("bin/"):
                links[member.name] = member.linkname
            if member.name == "pyvenv.cfg":
                text = tar.extractfile(member).read().decode()
                home = next((v.strip() for k, _, v in (line.partition("=") for line in
                             text.splitlines()) if k.strip() == "home"), None)  # fmt: skip
    return {"links": links, "home": home, "files": files, "bytes": size}


def _pack(env: Path, output: Path, python_prefix: str) -> None:
    import venv_pack

    try:
        packed = venv_pack.Env(str(env))
        for pattern in EXCLUDE:
            packed = packed.exclude(pattern)
        packed.pack(output=str(output), python_prefix=python_prefix, force=True, verbose=False)
    except venv_pack.VenvPackException as err:
        raise RuntimeError(f"venv-pack: {str(err).splitlines()[0]}") from None


def _check_imports(python: Path) -> dict:
    """Import the chain in the new venv, alone (no PYTHONPATH): its packages' versions."""
    probe = (
        "import importlib, json, importlib.metadata as m;"
        f"[importlib.import_module(n) for n in {list(CHECK_IMPORTS)!r}];"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"pack: the environment does not import the chain: {last}")
    return dict(sorted(json.loads(done.stdout.strip().splitlines()[-1]).items()))


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"{what} failed"])[-1]
        raise RuntimeError(f"pack: {what}: {last}")


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
