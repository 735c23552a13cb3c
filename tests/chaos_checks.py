"""The chaos tests' backends (a local folder, S3 through S3A) and the loop they share: the
reference run, then each kill, the invariants, the next run (tests/chaos.py drives the
processes)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tests import chaos
from tests.conftest import ROOT

SAMPLE = ROOT / "data_sample"
#: Three of the sample's classes (66 images, one folder name with a space): short runs, so that
#: many kills fit in the suite, and every stage still takes a measurable time.
CLASSES = ("Apple Red", "Banana", "Lemon")
IMAGES = sum(
    1 for split in ("Training", "Test") for c in CLASSES for p in (SAMPLE / split / c).iterdir()
    if p.suffix.lower() in (".jpg", ".png")
)  # fmt: skip


def make_input(folder: Path) -> Path:
    """The chaos tests' input: :data:`CLASSES` of the sample, copied under ``folder``."""
    for split in ("Training", "Test"):
        for name in CLASSES:
            shutil.copytree(SAMPLE / split / name, folder / split / name)
    return folder


#: Two recipes the runs alternate between, so that a kill leaves datasets of two runs that can
#: be told apart (the input size is in the features' manifest); the fast mode keeps runs short.
SIZES = ("128", "96")
FAST = ("--runtime", "openvino", "--master", "local[2]")


@dataclass
class LocalBackend:
    root: Path

    @property
    def out(self) -> str:
        return str(self.root)

    def parquet(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.root / name)

    def json(self, name: str) -> dict | None:
        path = self.root / name
        return json.loads(path.read_text()) if path.is_file() else None

    def staging_bytes(self) -> int:
        staging = self.root / "_staging"
        return (
            sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
            if staging.is_dir()
            else 0
        )


@dataclass
class S3Backend:
    client: object
    bucket: str
    prefix: str

    @property
    def out(self) -> str:
        return f"s3a://{self.bucket}/{self.prefix}"

    def _keys(self, prefix: str) -> list[dict]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=prefix)  # fmt: skip
        return [o for page in pages for o in page.get("Contents", [])]

    def parquet(self, name: str) -> pd.DataFrame:
        folder = Path(tempfile.mkdtemp(prefix="chaos-"))
        try:
            for obj in self._keys(f"{self.prefix}/{name}/"):
                relative = obj["Key"][len(self.prefix) + len(name) + 2 :]
                if relative.endswith(".parquet") or relative.startswith("part-"):
                    target = folder / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.client.download_file(self.bucket, obj["Key"], str(target))
            return pd.read_parquet(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def json(self, name: str) -> dict | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}")["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        return json.load(io.BytesIO(body.read()))

    def staging_bytes(self) -> int:
        staging = f"{self.prefix}/_staging/"
        size = sum(o["Size"] for o in self._keys(staging))
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=staging)
        for upload in uploads.get("Uploads", []):
            listed = self.client.list_parts(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            parts = listed.get("Parts", [])
            size += sum(p["Size"] for p in parts)
        return size


def state(backend) -> tuple[bool, str]:
    """(coherent, what was found): each dataset whole, and whether the PCA was fitted on the
    features that are there (its report names the features' creation time; the reduced rows are
    the featurized images)."""
    features = backend.parquet("features")
    assert len(features) == IMAGES and features["path"].is_unique, "features/ is not whole"
    listing = backend.parquet("listing")
    assert len(listing) >= IMAGES, "listing/ is not whole"
    manifest = backend.json("features/_manifest.json")
    assert manifest is not None, "features/ has no manifest"
    size = manifest.get("input_size") or manifest.get("spec", {}).get("input_size")
    pca = backend.json("pca_report.json")
    reduced = backend.parquet("reduced")
    featurized = set(features.loc[features["features"].notna(), "path"])
    assert reduced["path"].is_unique, "reduced/ is not whole"
    same = pca is not None and pca["features"]["created"] == manifest["created"]
    coherent = same and set(reduced["path"]) == featurized
    return coherent, (
        f"features {size} px, PCA of " + ("these" if same else "earlier") + " features"
    )


def run_chaos(backend, env: dict, kills: int, seed: int, run_args: tuple = ()) -> list:
    """The reference run, then ``kills`` kills of ``helpers run``; each followed by the checks
    and the next (complete) run. Returns the outcomes; raises at the end if one check failed."""

    def argv(size: str) -> list[str]:
        return chaos.helpers_argv("run", "--input", run_args[0], "--output", backend.out,
                                  "--input-size", size, *FAST, *run_args[1:])  # fmt: skip

    reference = chaos.watch(argv(SIZES[0]), env, chaos.RUN_ANCHORS)
    assert reference.returncode == 0, "".join(reference.stderr[-30:])
    lengths = chaos.windows(reference, chaos.RUN_ANCHORS)
    moments = chaos.plan(seed, kills, lengths)
    print(f"\nreference run {reference.ended_s:.1f} s; stage lengths "
          + ", ".join(f"{s} {t:.1f} s" for s, t in lengths.items())
          + f"; seed {seed}: {moments}")  # fmt: skip
    outcomes, failures = [], []
    for i, (stage, delay) in enumerate(moments):
        size = SIZES[(i + 1) % 2]
        killed = chaos.watch(argv(size), env, chaos.RUN_ANCHORS, kill=(stage, delay))
        at = killed.killed_at[1] if killed.killed_at else None
        coherent, found = state(backend)
        refused = chaos.refusal(backend.out, ["features", "reduction"], "recognize")
        orphans = backend.staging_bytes()
        if not coherent and refused is None:
            failures.append(f"kill {i + 1} ({stage} +{delay} s): mixed output, not marked: {found}")
        if refused is not None and "\n" in refused:
            failures.append(f"kill {i + 1}: the refusal is not one line: {refused!r}")
        again = chaos.watch(argv(size), env, chaos.RUN_ANCHORS)
        ok = again.returncode == 0
        if not ok:
            failures.append(f"kill {i + 1}: the next run failed: {''.join(again.stderr[-15:])}")
        after_coherent, _ = state(backend)
        after_refused = chaos.refusal(backend.out, ["features", "reduction"], "recognize")
        left = backend.staging_bytes()
        if not after_coherent or after_refused is not None:
            failures.append(f"kill {i + 1}: after the next run, not coherent: {after_refused}")
        if left:
            failures.append(f"kill {i + 1}: {left} bytes left under _staging after the next run")
        outcomes.append(chaos.Outcome(
            stage, delay, at, ("coherent: " if coherent else "mixed: ") + found,
            "refused: " + refused.split(": ", 2)[-1].split(" (")[0] if refused else "accepted",
            f"completed in {again.ended_s:.0f} s" if ok else "FAILED", orphans, left,
        ))  # fmt: skip
    print(chaos.table(outcomes))
    assert not failures, "\n".join(failures)
    return outcomes


def write_outcomes(name: str, outcomes: list) -> None:
    """Keep the table for a person (output/chaos/<name>.md) when asked (make chaos)."""
    folder = os.environ.get("FRUITS_CHAOS_REPORT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.md").write_text(chaos.table(outcomes) + "\n")
