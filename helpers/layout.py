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
  _staging/                 datasets being written (see :func:`OutputLayout.staged`)
```
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from helpers import storage

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
        the folder stays for inspection."""
        run = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        staging = OutputLayout(self.path(STAGING, run))
        yield staging
        storage.commit_datasets(staging.root, self.root, list(names))

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
