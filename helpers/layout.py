"""The output folder: every name in it, the staged writes into it, and the features' manifest.

One owner for where things are: steps ask an :class:`OutputLayout` for a path instead of joining
names themselves, so a renamed folder is renamed here only.

```
<output>/
  listing/                  every entry found under the input, with its outcome
  features/                 one row per image read; features/_manifest.json says how they were made
  reduced/  reduction_model/  explained_variance.png
  recognizer/  recognition_report.json  confusion_matrix.png  maps.png
  cluttered/                the recognizer's cluttered pictures: training copies, evaluation
  run_report.json           what the extraction did, for people (written, never read back)
  pca_report.json           what the PCA did: k, explained variance, timings
  spark-events/             event logs of local runs
  notebooks/                executed notebooks and their metrics
  _output.json              which run wrote each dataset, and do they agree (helpers.generation)
  _staging/                 datasets being written (see :func:`OutputLayout.staged`), each
                            folder with its writer's lease (orphans: :func:`remove_orphans`)
```
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from helpers import storage

log = logging.getLogger(__name__)

LISTING = "listing"
FEATURES = "features"
REDUCED = "reduced"
REDUCTION_MODEL = "reduction_model"
VARIANCE_FIGURE = "explained_variance.png"
RUN_REPORT = "run_report.json"
PCA_REPORT = "pca_report.json"
RECOGNIZER = "recognizer"
RECOGNITION_REPORT = "recognition_report.json"
CLUTTERED = "cluttered"
CONFUSION_FIGURE = "confusion_matrix.png"
MAPS_FIGURE = "maps.png"
SPARK_EVENTS = "spark-events"
NOTEBOOKS = "notebooks"
STAGING = storage.STAGING_DIR
#: Inside ``features/``: Spark skips names starting with ``_`` when it reads the dataset, and the
#: manifest moves with the dataset it describes.
MANIFEST = "_manifest.json"
#: Inside ``cluttered/``: what the pictures were made from, so a rerun with the same plan reuses
#: them.
CLUTTER_PLAN = "_plan.json"
#: Log files of local runs (``<name>-<UTC time>-<pid>.log``).
LOGS = "logs"
#: Inside ``notebooks/``: the figures an executed notebook records for checks.
NOTEBOOK_METRICS = "{notebook}.metrics.json"
#: Inside ``notebooks/``: notebook 01's listing of the input (a dataset of its own).
NOTEBOOK_LISTING = "01_ingestion.listing"
#: The output's record: which run wrote each dataset (:mod:`helpers.generation`).
OUTPUT_RECORD = "_output.json"
#: Inside each staging folder: who writes it, refreshed while it does.
LEASE = "_lease.json"
#: How often a writer refreshes its lease, and after how long without a refresh (by the
#: storage's clock) a staging folder whose writer cannot be asked is taken for an orphan.
HEARTBEAT_S = 30.0
ORPHAN_AFTER_S = 600.0


def new_run_id() -> str:
    """A run's id: sortable by start time, unique."""
    return f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"


def writer() -> dict:
    """Who this process is, in a way another process can check: host, pid and the pid's start
    (a pid reused by another process later does not pass for this one)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid())}


def writer_alive(who: dict | None) -> bool | None:
    """Whether the process ``who`` (:func:`writer`) still runs: True or False when it ran on
    this host, None when it ran elsewhere (only its lease's age can tell then)."""
    if not who or who.get("host") != socket.gethostname():
        return None
    pid = who.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    start = _pid_start(pid)
    return start is None or who.get("pid_start") in (None, start)


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux's /proc); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class _Heartbeat:
    """Writes the lease, then rewrites it every ``HEARTBEAT_S`` seconds until stopped."""

    uri: str
    body: dict
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> _Heartbeat:
        self.beat()
        threading.Thread(target=self._loop, name="staging-lease", daemon=True).start()
        return self

    def beat(self) -> None:
        data = json.dumps({**self.body, "beat": time.time()}).encode("utf-8")
        storage.write_bytes(self.uri, data, "application/json")

    def _loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception as err:  # a missed beat only ages the lease
                log.warning("could not refresh %s: %s", storage.redact(self.uri), err)


@dataclass(frozen=True)
class OutputLayout:
    """Paths under one output folder or URI."""

    root: str

    def path(self, *names: str) -> str:
        """A path under the output, as the project's own I/O takes it."""
        return storage.join(self.root, *names)

    def spark(self, *names: str) -> str:
        """The same path as Spark takes it (absolute ``file:`` URI for local outputs)."""
        return storage.to_spark_uri(self.path(*names))

    @property
    def listing(self) -> str:
        return self.path(LISTING)

    @property
    def features(self) -> str:
        return self.path(FEATURES)

    @property
    def run_report(self) -> str:
        return self.path(RUN_REPORT)

    @property
    def pca_report(self) -> str:
        return self.path(PCA_REPORT)

    @property
    def spark_events(self) -> str:
        return self.path(SPARK_EVENTS)

    def local_event_logs(self) -> str | None:
        """Where local runs keep their event logs; None for outputs on S3 (clusters keep
        theirs where the cluster does)."""
        return self.spark_events if storage.is_local(self.root) else None

    @contextmanager
    def staged(self, *names: str) -> Iterator[OutputLayout]:
        """A staging folder of its own under ``_staging``: write the datasets ``names`` into
        the layout it yields; when the block succeeds they are moved to the output together,
        by a journaled commit that a killed run's successor finishes
        (:func:`helpers.storage.commit_datasets`). When the block fails, nothing is moved and
        the folder stays for inspection until :func:`remove_orphans` takes it.

        The folder holds a lease naming this process, refreshed every ``HEARTBEAT_S`` while the
        block runs, so that no other run takes it for an orphan."""
        staging = OutputLayout(self.path(STAGING, new_run_id()))
        heartbeat = _Heartbeat(staging.path(LEASE), {**writer(), "datasets": list(names)}).start()
        log.info("writing %s (staged in %s)", ", ".join(names), storage.redact(staging.root))
        try:
            yield staging
        finally:
            heartbeat.stop.set()
        log.info("commit: moving %s into %s", ", ".join(names), storage.redact(self.root))
        storage.commit_datasets(staging.root, self.root, list(names))
        log.info("commit: %s in place", ", ".join(names))

    def write_manifest(self, manifest: dict) -> None:
        """Write the features' manifest (inside ``features/``, so it moves with them)."""
        data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        storage.write_bytes(self.path(FEATURES, MANIFEST), data, "application/json")

    def read_manifest(self) -> dict:
        """How the features were made (see :func:`helpers.steps.extraction.features_manifest`).

        Raises:
            FileNotFoundError: no features, or features written before manifests existed.
        """
        return json.loads(storage.read_bytes(self.path(FEATURES, MANIFEST)).decode("utf-8"))


@dataclass
class Orphans:
    """What :func:`remove_orphans` found under ``_staging``."""

    removed: dict[str, int] = field(default_factory=dict)  # folder -> bytes
    kept: dict[str, str] = field(default_factory=dict)  # folder -> why

    @property
    def bytes(self) -> int:
        return sum(self.removed.values())


def remove_orphans(root: str, max_age_s: float = ORPHAN_AFTER_S) -> Orphans:
    """Remove the staging folders of runs that no longer exist (after
    :func:`helpers.storage.recover_commits`, which finishes the journaled ones).

    A folder is an orphan when its lease names a process of this host that is gone, or when its
    lease (or, without one, its newest file) was last written more than ``max_age_s`` ago by the
    storage's own clock. A folder whose writer is alive, or whose lease is fresh, is kept: a
    live run is using it. On S3 its unfinished multipart uploads go too.
    """
    found = Orphans()
    staging = storage.join(root, STAGING)
    names = storage.subfolders(staging)
    if not names:
        return found
    now = None
    for name in names:
        folder = storage.join(staging, name)
        if storage.has_journal(folder):
            found.kept[name] = "an unfinished commit"
            continue
        lease = _read_lease(storage.join(folder, LEASE))
        alive = writer_alive(lease)
        if alive:
            found.kept[name] = f"its writer runs (pid {lease['pid']})"
            continue
        if alive is None:
            now = now if now is not None else storage.storage_now(staging)
            written = storage.modified(storage.join(folder, LEASE)) if lease else None
            written = written or storage.newest_modified(folder)
            age = now - written if written is not None else max_age_s + 1
            if age <= max_age_s:
                found.kept[name] = f"written {age:.0f} s ago: may be in use"
                continue
        found.removed[name] = storage.delete_tree(folder)
    if found.removed:
        log.warning(
            "removed %d orphaned staging folder(s) of runs that no longer exist (%d bytes) "
            "under %s",
            len(found.removed), found.bytes, storage.redact(staging),
        )  # fmt: skip
    return found


def _read_lease(uri: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except (FileNotFoundError, ValueError):
        return None
