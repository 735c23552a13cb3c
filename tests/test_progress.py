"""The featurization's progress line: images done / total, images/s, ETA, from Spark's status
tracker; in a terminal by default, in a log only when asked for."""

from __future__ import annotations

import io
import os
import pty
import re
import shutil
import subprocess
import threading
import time

import pandas as pd
import pytest

from helpers.observe import progress
from tests.clirun import cli_command, cli_env
from tests.conftest import ROOT


def _slow_rows(batches):
    for batch in batches:
        time.sleep(0.5)
        yield batch


@pytest.mark.spark
def test_progress_follows_the_tasks_of_the_blocks_jobs(spark):
    """A real job of 8 tasks on 2 slots: the count rises with finished tasks, one partition's
    share at a time, jobs started before the block are not counted, and the block ends at the
    total."""
    sc = spark.sparkContext
    sc.setLocalProperty("spark.jobGroup.id", "progress-test")
    try:
        spark.range(10).count()  # an earlier job of the same group
        seen: list[progress.Snapshot] = []
        rows = spark.range(0, 80, numPartitions=8).mapInPandas(_slow_rows, "id long")
        with progress.FeaturizeProgress(spark, 80, seen.append, interval_s=0.2):
            rows.write.format("noop").mode("overwrite").save()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    done = [s.done for s in seen]
    assert done == sorted(done), done
    assert set(done) <= {10 * n for n in range(9)}, done
    assert any(0 < n < 80 for n in done), done  # seen moving, not only at the end
    final = seen[-1]
    assert final.finished and final.done == final.total == 80
    assert "featurize: 80/80 images (100%)" in final.line() and "images/s" in final.line()
    middle = next(s for s in seen if 0 < s.done < 80)
    assert middle.eta_s is not None and f"ETA {middle.eta_s:.0f} s" in middle.line()


def test_progress_is_off_in_a_log_unless_asked_for():
    log = io.StringIO()  # not a terminal
    assert progress.reporter(None, log) is None
    assert progress.reporter(False, log) is None
    show = progress.reporter(True, log)
    show(progress.Snapshot(10, 100, 1.0))
    show(progress.Snapshot(20, 100, 2.0))  # within 10 s of the last line: not repeated
    show(progress.Snapshot(100, 100, 9.0, finished=True))
    lines = log.getvalue().splitlines()
    assert lines == [
        "featurize: 10/100 images (10%), 10.0 images/s, ETA 9 s",
        "featurize: 100/100 images (100%), 11.1 images/s, done in 9 s",
    ]


@pytest.mark.slow
@pytest.mark.spark
def test_progress_line_in_an_interactive_cli_run(tmp_path):
    """``helpers run`` with its stderr on a pseudo-terminal shows the progress line, rewritten
    in place, with images/s and an ETA; stdout (a pipe) keeps only the JSON summary."""
    images = tmp_path / "images"
    for label in ("Banana", "Lemon"):
        shutil.copytree(ROOT / "data_sample" / "Training" / label, images / label)
    total = sum(1 for _ in images.rglob("*.jpg"))
    primary, secondary = pty.openpty()
    command = cli_command(
        "helpers", "run", "--input", images, "--output", tmp_path / "out",
        "--input-size", "96", "--partitions", "4", "--batch-size", "8",
    )  # fmt: skip
    # stderr on the terminal, not captured: started here rather than by run_cli
    proc = subprocess.Popen(
        command, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=secondary,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(secondary)
    terminal = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            terminal.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=900)
    reader.join(timeout=10)
    os.close(primary)
    text = terminal.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert f"featurize: {total}/{total} images (100%)" in text, text[-3000:]
    assert re.search(r"\rfeaturize: \d+/\d+ images \(\d+%\), [\d.-]+ images/s, ETA", text)
    assert re.search(r"images/s, done in \d+ s", text)
    assert "featurize:" not in stdout.decode()
    assert pd.read_parquet(tmp_path / "out" / "features").shape[0] == total
