"""The output's record, ``_output.json``: which run wrote each dataset, and whether they agree.

Each dataset is whole on its own (the journaled commit, :func:`helpers.storage.commit_datasets`),
but a run killed between two commits leaves datasets of two runs side by side: new features
beside the previous run's PCA. The record tells them apart. Datasets come in groups, each
written by one step:

- ``features``: ``listing/``, ``features/`` (its ``_manifest.json`` says how they were made),
  ``run_report.json``;
- ``reduction``: ``reduced/``, ``reduction_model/``, the figure, ``pca_report.json``, made
  from the ``features`` group;
- ``recognition``: ``recognizer/``, ``cluttered/``, the report and figures, made from the
  ``features`` and ``reduction`` groups.

A step marks its group ``writing`` (its run id and process) before it writes anything, and
``complete`` with each dataset's digest (:func:`helpers.storage.tree_digest`) after its last
write. The record is one small object written in one PUT: on S3 no rename is needed, and a
reader sees the last version written (S3's read-after-write consistency).

Readers :func:`require` the groups they use: complete, made from the groups they depend on, and
with their datasets still as recorded; otherwise they stop with one line naming what is stale
and how to repair it (``helpers run`` rewrites every group; ``--incremental`` keeps the
committed features). The judgement itself is the pure :func:`problems`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from helpers import layout, storage

log = logging.getLogger(__name__)

FORMAT = 1
GROUPS: dict[str, tuple[str, ...]] = {
    "features": (layout.LISTING, layout.FEATURES, layout.RUN_REPORT),
    "reduction": (layout.REDUCED, layout.REDUCTION_MODEL, layout.VARIANCE_FIGURE,
                  layout.PCA_REPORT),
    "recognition": (layout.RECOGNIZER, layout.CLUTTERED, layout.RECOGNITION_REPORT,
                    layout.CONFUSION_FIGURE, layout.MAPS_FIGURE),
}  # fmt: skip
#: group -> the groups it is made from
MADE_FROM: dict[str, tuple[str, ...]] = {
    "features": (),
    "reduction": ("features",),
    "recognition": ("features", "reduction"),
}
#: what rewrites a group, for the one-line reasons
REPAIR = {
    "features": "run `helpers run` again (--incremental keeps the committed features)",
    "reduction": "run `helpers run` again (--incremental keeps the committed features)",
    "recognition": "run `helpers recognize` again",
}


class MixedOutputError(ValueError):
    """The output's datasets do not all belong to runs that agree (one line: what and why)."""


def read(root: str) -> dict | None:
    """The record, or None for an output without one (new, or written before records)."""
    try:
        record = json.loads(storage.read_bytes(storage.join(root, layout.OUTPUT_RECORD)))
    except FileNotFoundError:
        return None
    except ValueError:
        raise MixedOutputError(
            f"{storage.redact(storage.join(root, layout.OUTPUT_RECORD))} is not JSON"
        ) from None
    return record


def _write(root: str, record: dict) -> None:
    data = json.dumps(record, indent=1, sort_keys=True).encode("utf-8")
    storage.write_bytes(storage.join(root, layout.OUTPUT_RECORD), data, "application/json")


def begin(root: str, group: str, run_id: str) -> None:
    """Mark ``group`` as being written by this process (before anything of it is written)."""
    record = read(root) or {"format": FORMAT, "groups": {}, "datasets": {}}
    record["groups"][group] = {
        "run": run_id, "state": "writing", "started": _now(), "writer": layout.writer(),
        "made_from": {g: record["groups"].get(g, {}).get("run") for g in MADE_FROM[group]},
    }  # fmt: skip
    _write(root, record)


def finish(root: str, group: str) -> dict:
    """Mark ``group`` complete, with the digest of each of its datasets as they are now."""
    record = read(root)
    if record is None or record["groups"].get(group, {}).get("state") != "writing":
        raise MixedOutputError(f"{group}: finished without having begun (no record)")
    for name in GROUPS[group]:
        digest = storage.tree_digest(storage.join(root, name))
        if digest is None:
            record["datasets"].pop(name, None)
        else:
            record["datasets"][name] = {"digest": digest, "group": group,
                                        "run": record["groups"][group]["run"]}  # fmt: skip
    entry = record["groups"][group]
    entry.update(state="complete", finished=_now())
    entry.pop("writer", None)
    _write(root, record)
    return record


def problems(
    record: Mapping | None,
    needs: Iterable[str],
    digests: Mapping[str, str | None],
    alive: Callable[[dict | None], bool | None] = layout.writer_alive,
) -> list[str]:
    """Why the groups ``needs`` cannot be used as they stand (empty: they can). Pure: the
    record, the datasets' current digests (name -> digest or None) and a liveness check of a
    writer process are given."""
    found = []
    groups = (record or {}).get("groups", {})
    for group in needs:
        entry = groups.get(group)
        if entry is None:  # written by other means, or before records: nothing to compare
            continue
        if entry.get("state") != "complete":
            live = alive(entry.get("writer"))
            since = entry.get("started", "?")
            if live:
                found.append(f"{group} is being written now (run {entry['run']}, since {since})")
            else:
                found.append(
                    f"{group} was left half-written by an interrupted run ({entry['run']}, "
                    f"started {since}): {REPAIR[group]}"
                )
            continue
        for source, run in entry.get("made_from", {}).items():
            now = groups.get(source, {}).get("run")
            if run is not None and now != run:
                found.append(
                    f"{group} was made from the {source} of run {run}, which run {now} "
                    f"replaced: {REPAIR[group]}"
                )
        for name in GROUPS[group]:
            recorded = (record.get("datasets", {}).get(name) or {}).get("digest")
            if name in digests and digests[name] != recorded:
                what = "is missing" if digests[name] is None else "changed"
                found.append(f"{name} {what} since run {entry['run']} wrote it: {REPAIR[group]}")
    return found


def check(root: str, needs: Iterable[str]) -> list[str]:
    """:func:`problems` of the output at ``root`` (digests taken now); ``[]`` for an output
    without a record (written before records: nothing to check, a warning says so)."""
    needs = list(needs)
    record = read(root)
    if record is None:
        log.warning(
            "%s has no %s (written before output records): its datasets are not checked",
            storage.redact(root), layout.OUTPUT_RECORD,
        )  # fmt: skip
        return []
    names = [n for g in needs for n in GROUPS[g]]
    digests = {n: storage.tree_digest(storage.join(root, n)) for n in names}
    return problems(record, needs, digests)


def require(root: str, needs: Iterable[str], reader: str) -> None:
    """Stop ``reader`` with one line when the groups it needs are stale or half-written."""
    found = check(root, needs)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise MixedOutputError(
            f"{reader}: the output {storage.redact(root)} is mixed: {found[0]}{more}"
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
