"""environment.yml and pyproject.toml describe the same dependencies."""

import re

import tomllib
import yaml

from tests.conftest import ROOT


def _norm(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {_norm(r) for r in pip_section if not r.startswith("-e")}
    runtime = project["dependencies"] + project["optional-dependencies"]["runtime"]
    assert pinned == {_norm(r) for r in runtime}
    extras = next(r for r in pip_section if r.startswith("-e"))
    assert set(re.search(r"\[(.*)\]", extras).group(1).split(",")) == set(
        project["optional-dependencies"]
    )
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "openjdk=17" in conda
    python = next(d for d in conda if d.startswith("python="))
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))
