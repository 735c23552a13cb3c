"""``recognize`` killed (SIGKILL of its process group) while it writes ``cluttered/`` and the
recognizer: the previous recognizer stays whole and answers ``predict``, the next ``recognize``
completes, and nothing is left under ``_staging`` (tests/chaos.py)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests import chaos, chaos_checks

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SEED = int(os.environ.get("FRUITS_CHAOS_SEED", "29"))
#: one kill in the suite (its stage drawn by the seed), 7 in make chaos
KILLS = max(1, int(os.environ.get("FRUITS_CHAOS_KILLS", "6")) // 3 - 1)
#: one head, one cluttered copy: the chaos is in the writes, not in the model
RECOGNIZE = ("--classifier", "logistic_regression", "--augment-copies", "1", "--master", "local[2]")
PHOTO = chaos_checks.SAMPLE / "Test" / "Banana"


def _predict(out, env) -> list[dict]:
    photo = next(p for p in sorted(PHOTO.iterdir()) if p.suffix.lower() in (".jpg", ".png"))
    done = subprocess.run(chaos.helpers_argv("predict", "--json", "--recognizer",
                                             str(out / "recognizer"), str(photo)),
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_killed_recognize_keeps_the_previous_recognizer_usable(tmp_path, mobilenet_weights):
    out, env = tmp_path / "output", chaos.env_for()
    source = chaos_checks.make_input(tmp_path / "input")
    run = chaos.watch(chaos.helpers_argv("run", "--input", str(source), "--output",
                                         str(out), "--weights", mobilenet_weights,
                                         *chaos_checks.FAST), env, chaos.RUN_ANCHORS)  # fmt: skip
    assert run.returncode == 0, "".join(run.stderr[-30:])
    argv = chaos.helpers_argv("recognize", "--output", str(out), *RECOGNIZE)
    reference = chaos.watch(argv, env, chaos.RECOGNIZE_ANCHORS)
    assert reference.returncode == 0, "".join(reference.stderr[-30:])
    lengths = chaos.windows(reference, chaos.RECOGNIZE_ANCHORS)
    writes = {s: t for s, t in lengths.items() if s in ("cluttered", "recognizer")}
    moments = chaos.plan(SEED, KILLS, writes)
    print(f"\nreference recognize {reference.ended_s:.1f} s; {lengths}; kills {moments}")
    outcomes = []
    for stage, delay in moments:
        before = (out / "recognizer" / "recognizer.json").read_bytes()
        killed = chaos.watch(argv, env, chaos.RECOGNIZE_ANCHORS, kill=(stage, delay))
        orphans = chaos_checks.LocalBackend(out).staging_bytes()
        # the previous recognizer, whole, answers
        assert (out / "recognizer" / "recognizer.json").read_bytes() == before
        answers = _predict(out, env)
        assert len(answers) == 1 and answers[0]["top"][0]["label"], answers
        again = chaos.watch(argv, env, chaos.RECOGNIZE_ANCHORS)
        assert again.returncode == 0, "".join(again.stderr[-30:])
        assert chaos.refusal(str(out), ["features", "reduction", "recognition"], "predict") is None
        left = chaos_checks.LocalBackend(out).staging_bytes()
        assert left == 0, f"{left} bytes left under _staging"
        at = killed.killed_at[1] if killed.killed_at else None
        answered = f"predict answered {answers[0]['top'][0]['label']}"
        recovered = f"completed in {again.ended_s:.0f} s"
        outcomes.append(chaos.Outcome(stage, delay, at, "previous recognizer whole", answered,
                                      recovered, orphans, left))  # fmt: skip
    print(chaos.table(outcomes))
    chaos_checks.write_outcomes("recognize", outcomes)
