"""A progress line while images are featurized: images done / total, images/s, ETA.

Driven by Spark's status tracker (``SparkContext.statusTracker()``, public in Spark 3.5 and
4): the jobs the block starts in the caller's job group, and the tasks their last stage (the
one that featurizes and writes) has finished. A finished task accounts for its share of the
images, so the count moves one partition at a time.

Where it shows (:func:`reporter`): in a notebook kernel, one output line updated in place; in
a terminal, one stderr line rewritten in place; in a log (stderr not a terminal), nothing
unless asked for, then a line every ``every_s`` seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from pyspark.sql import SparkSession

_GROUP = "spark.jobGroup.id"


@dataclass(frozen=True)
class Snapshot:
    """Where the featurization stands."""

    done: int
    total: int
    elapsed_s: float
    finished: bool = False

    @property
    def images_per_s(self) -> float | None:
        return self.done / self.elapsed_s if self.done and self.elapsed_s > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.images_per_s
        return (self.total - self.done) / rate if rate else None

    def line(self) -> str:
        """``featurize: 480/960 images (50%), 31.2 images/s, ETA 15 s``."""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        rate = self.images_per_s
        speed = f"{rate:.1f} images/s" if rate else "-- images/s"
        if self.finished:
            tail = f"done in {self.elapsed_s:.0f} s"
        else:
            tail = f"ETA {self.eta_s:.0f} s" if self.eta_s is not None else "ETA --"
        return f"featurize: {self.done:,}/{self.total:,} images{share}, {speed}, {tail}"


Show = Callable[[Snapshot], None]


class FeaturizeProgress:
    """Context manager: polls the status tracker in a thread and hands snapshots to ``show``.

    Args:
        spark: the session the block's jobs run in.
        total: images the block featurizes.
        show: called with each snapshot, and once more with the final one.
        interval_s: seconds between polls.
    """

    def __init__(self, spark: SparkSession, total: int, show: Show, interval_s: float = 1.0):
        self.sc = spark.sparkContext
        self.total = int(total)
        self.show = show
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FeaturizeProgress:
        tracker = self.sc.statusTracker()
        self._group = self.sc.getLocalProperty(_GROUP)
        known = tracker.getJobIdsForGroup(self._group)
        self._first_job = max(known, default=-1) + 1  # job ids only grow
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._poll, name="featurize-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        snapshot = self.snapshot()
        if kind is None:
            snapshot = Snapshot(self.total, self.total, snapshot.elapsed_s, finished=True)
        self.show(snapshot)

    def snapshot(self) -> Snapshot:
        """Images in finished tasks of the block's jobs' last stages."""
        tracker = self.sc.statusTracker()
        done_tasks = all_tasks = 0
        for job_id in tracker.getJobIdsForGroup(self._group):
            if job_id < self._first_job:
                continue
            job = tracker.getJobInfo(job_id)
            if job is None or not job.stageIds:
                continue
            stage = tracker.getStageInfo(max(job.stageIds))
            if stage is None:
                continue
            done_tasks += stage.numCompletedTasks
            all_tasks += stage.numTasks
        done = round(self.total * done_tasks / all_tasks) if all_tasks else 0
        return Snapshot(done, self.total, time.monotonic() - self._started)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.show(self.snapshot())
            except Exception:  # the session is stopping: the final snapshot says the rest
                return


def console(stream: TextIO, in_place: bool, every_s: float = 10.0) -> Show:
    """Show snapshots on ``stream``: one line rewritten in place (a terminal), or a new line
    at most every ``every_s`` seconds (a log)."""
    last = [float("-inf")]

    def show(snapshot: Snapshot) -> None:
        if in_place:
            end = "\n" if snapshot.finished else ""
            stream.write(f"\r{snapshot.line():<79}{end}")
        elif snapshot.finished or snapshot.elapsed_s - last[0] >= every_s:
            last[0] = snapshot.elapsed_s
            stream.write(snapshot.line() + "\n")
        stream.flush()

    return show


def notebook() -> Show:
    """Show snapshots as one notebook output line, updated in place."""
    from IPython.display import Pretty, display

    handle = display(Pretty("featurize: starting"), display_id=True)

    def show(snapshot: Snapshot) -> None:
        handle.update(Pretty(snapshot.line()))

    return show


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def reporter(wanted: bool | None, stream: TextIO | None = None) -> Show | None:
    """Where progress goes: None (auto) shows it in a notebook or a terminal only; True shows
    it everywhere (a log gets a line every 10 s); False never."""
    if wanted is False:
        return None
    if _in_notebook():
        return notebook()
    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    if interactive or wanted:
        return console(stream, in_place=interactive)
    return None
