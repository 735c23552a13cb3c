"""Kill the chain at random moments and check what it leaves (tests/test_chaos_*.py,
``make chaos``).

A reference run gives each stage's window, from the log lines that open it (the anchors); each
kill then waits for its stage's anchor in a new run and sends SIGKILL to the run's whole process
group (Python and the JVM) after a random share of that stage's reference length. Stages are
taken in turn, so every one is hit; the moments come from a seeded generator and are printed.

After each kill, the invariants: every dataset readable and whole; the output coherent (one run's
features under one run's PCA), or marked so that readers refuse it in one line; the next run
succeeds; after it, no byte left under ``_staging`` (nor, on S3, an unfinished upload). Coherence
is judged from the datasets' own content (the PCA report names the features it was fitted on,
the reduced rows are the featurized images), so the check means the same with or without the
output's record.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tests.conftest import ROOT

#: log line (start of its text after the logger's name) -> the stage it opens, in order
RUN_ANCHORS = (
    ("writing listing, features", "listing"),
    ("listed ", "featurize"),
    ("commit: moving listing, features", "features commit"),
    ("stage reduce: started", "PCA"),
    ("commit: moving reduced, reduction_model", "reduced commit"),
    ("commit: reduced, reduction_model in place", "reports"),
)
RECOGNIZE_ANCHORS = (
    ("writing cluttered", "cluttered"),
    ("commit: moving cluttered", "cluttered commit"),
    ("writing recognizer", "recognizer"),
    ("commit: moving recognizer", "recognizer commit"),
)


@dataclass
class Watched:
    """One command run while its stderr is read: when each anchor appeared (s from start)."""

    seen: dict[str, float] = field(default_factory=dict)
    ended_s: float = 0.0
    returncode: int | None = None
    killed_at: tuple[str, float] | None = None
    stderr: list[str] = field(default_factory=list)


def watch(
    argv: Sequence[str],
    env: dict,
    anchors: Sequence[tuple[str, str]],
    kill: tuple[str, float] | None = None,
    timeout: float = 900,
) -> Watched:
    """Run ``argv`` in a process group of its own; with ``kill`` = (stage, seconds), SIGKILL the
    group that many seconds after the stage's anchor appears."""
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    found = Watched()
    timer: threading.Timer | None = None

    def fire(stage: str, delay: float) -> None:
        found.killed_at = (stage, round(time.monotonic() - started, 2))
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            found.killed_at = None  # it had ended

    deadline = threading.Timer(timeout, lambda: os.killpg(process.pid, signal.SIGKILL))
    deadline.start()
    try:
        for line in process.stderr:
            found.stderr.append(line)
            text = line.split(": ", 1)[-1]
            for prefix, stage in anchors:
                if text.startswith(prefix) and stage not in found.seen:
                    found.seen[stage] = time.monotonic() - started
                    if kill and kill[0] == stage and timer is None:
                        timer = threading.Timer(kill[1], fire, (stage, kill[1]))
                        timer.start()
        process.wait()
    finally:
        deadline.cancel()
        if timer is not None:
            timer.join()
    found.ended_s = time.monotonic() - started
    found.returncode = process.returncode
    return found


def windows(reference: Watched, anchors: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Each stage's length in the reference run: from its anchor to the next one's (the last
    to the end)."""
    stages = [stage for _, stage in anchors]
    missing = [s for s in stages if s not in reference.seen]
    if missing:
        raise AssertionError(f"the reference run logged no anchor for {missing}: "
                             + "".join(reference.stderr[-20:]))  # fmt: skip
    times = [reference.seen[s] for s in stages] + [reference.ended_s]
    return {s: max(times[i + 1] - times[i], 0.05) for i, s in enumerate(stages)}


def plan(seed: int, kills: int, lengths: dict[str, float]) -> list[tuple[str, float]]:
    """(stage, seconds after its anchor) for each kill: the stages in turn, the moment drawn
    uniformly inside the stage's reference length."""
    rng = random.Random(seed)
    stages = list(lengths)
    return [(stages[i % len(stages)], round(rng.uniform(0, lengths[stages[i % len(stages)]]), 2))
            for i in range(kills)]  # fmt: skip


@dataclass
class Outcome:
    stage: str
    delay_s: float
    killed_at_s: float | None
    found: str
    refused: str
    recovered: str
    orphan_bytes_before: int
    orphan_bytes_after: int


def table(outcomes: Sequence[Outcome]) -> str:
    lines = ["| # | stage | kill at | found after the kill | readers | next run | orphans "
             "before -> after |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for i, o in enumerate(outcomes, 1):
        when = f"{o.killed_at_s:.1f} s" if o.killed_at_s is not None else "(ended first)"
        lines.append(f"| {i} | {o.stage} (+{o.delay_s:.2f} s) | {when} | {o.found} | "
                     f"{o.refused} | {o.recovered} | {o.orphan_bytes_before:,} -> "
                     f"{o.orphan_bytes_after:,} B |")  # fmt: skip
    return "\n".join(lines)


def refusal(root: str, needs: Sequence[str], reader: str) -> str | None:
    """The one-line refusal a reader gives this output now, or None when it would go on (also
    when the output has no record: then nothing would refuse it)."""
    try:
        from helpers import generation
    except ImportError:
        return None
    try:
        generation.require(root, needs, reader)
    except generation.MixedOutputError as err:
        return str(err)
    return None


def env_for(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env.update(PYSPARK_PYTHON=sys.executable, PYTHONPATH=str(ROOT), **(extra or {}))
    return env


def helpers_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "helpers", *args]


def summary(outcomes: Sequence[Outcome]) -> dict:
    return json.loads(json.dumps([o.__dict__ for o in outcomes]))


Check = Callable[[], tuple[str, str]]
