"""The chain killed (SIGKILL of its process group) at random moments of every stage, on a local
output: each dataset whole, the output coherent or refused in one line, the next run complete
and no orphaned bytes (tests/chaos.py). ``make chaos`` runs 24 kills; CI 6
(``FRUITS_CHAOS_KILLS``), seeded (``FRUITS_CHAOS_SEED``)."""

from __future__ import annotations

import os

import pytest

from tests import chaos, chaos_checks

pytestmark = [pytest.mark.spark, pytest.mark.slow]

KILLS = int(os.environ.get("FRUITS_CHAOS_KILLS", "6"))
SEED = int(os.environ.get("FRUITS_CHAOS_SEED", "29"))


def test_killed_runs_leave_a_coherent_or_refused_output_and_no_orphans(tmp_path, mobilenet_weights):
    backend = chaos_checks.LocalBackend(tmp_path / "output")
    env = chaos.env_for()
    source = chaos_checks.make_input(tmp_path / "input")
    outcomes = chaos_checks.run_chaos(
        backend, env, KILLS, SEED, (str(source), "--weights", mobilenet_weights)
    )
    chaos_checks.write_outcomes("local", outcomes)
    assert {o.stage for o in outcomes} >= {s for _, s in chaos.RUN_ANCHORS} or KILLS < 6
