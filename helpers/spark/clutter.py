"""Cluttered pictures for the recognizer, featurized in Spark through the features' own UDF.

One dataset, ``<output>/cluttered/``, one row per picture: ``path`` (the source photo, null for
a picture with no fruit), ``label``, ``copy``, ``role``, ``features``, ``error``. Roles:

- ``train``: copies of training photos on the training background families (augmentation;
  with no augmentation, one copy of each validation photo only, to choose the head on);
- ``test``: copies of test photos on the held-out families (the cluttered evaluation);
- ``unknown_validation`` / ``unknown_test``: backgrounds with nothing pasted, of the training
  and held-out families, for the "not sure" threshold and its measured rate.

Training and evaluation never share a background family, a background photo, or a photo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from helpers import defaults, storage
from helpers.core import augment
from helpers.core.recipe import Recipe
from helpers.spark import featurize

log = logging.getLogger(__name__)

TRAIN, TEST = "train", "test"
UNKNOWN_VALIDATION, UNKNOWN_TEST = "unknown_validation", "unknown_test"
ROLES = (TRAIN, TEST, UNKNOWN_VALIDATION, UNKNOWN_TEST)

#: Fewest pictures without fruit made for the threshold and for its test (when asked for any).
MIN_UNKNOWN = 20

ROW_SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType(), True),
        T.StructField("label", T.StringType(), True),
        T.StructField("copy", T.IntegerType(), False),
        T.StructField("role", T.StringType(), False),
    ]
)


@dataclass(frozen=True)
class ClutterParams:
    """How many cluttered pictures to make, and from what.

    Attributes:
        copies: cluttered copies of each training photo added to training (0: none).
        test_copies: cluttered copies of each test photo in the evaluation.
        unknown_photos: pictures with no fruit, for validation and again for the test (at
            most; no more than the test photos, and at least :data:`MIN_UNKNOWN`).
        backgrounds: a folder (local or s3://) of background photos for training, besides
            the procedural ones.
        held_out_backgrounds: a folder of background photos for the evaluation only.
        seed: seed of every copy.
    """

    copies: int = defaults.AUGMENT_COPIES
    test_copies: int = defaults.CLUTTERED_TEST_COPIES
    unknown_photos: int = defaults.UNKNOWN_PHOTOS
    backgrounds: str | None = None
    held_out_backgrounds: str | None = None
    seed: int = defaults.SEED

    def validate(self) -> ClutterParams:
        if int(self.copies) < 0:
            raise ValueError(f"copies must be >= 0, got {self.copies}")
        if int(self.test_copies) < 1:
            raise ValueError("test_copies must be >= 1: the cluttered evaluation needs copies")
        if int(self.unknown_photos) < 1:
            raise ValueError("unknown_photos must be >= 1: the 'not sure' threshold needs them")
        if self.backgrounds and self.backgrounds == self.held_out_backgrounds:
            raise ValueError("backgrounds and held_out_backgrounds must be different folders")
        return self

    def specs(self, photos: list[str]) -> tuple[augment.AugmentSpec, augment.AugmentSpec]:
        """The training and the evaluation :class:`~helpers.core.augment.AugmentSpec`.

        Raises:
            ValueError: a background photo is one of ``photos`` (the dataset's), or the two
                background folders share a file.
        """
        train_bg = augment.list_backgrounds(self.backgrounds)
        test_bg = augment.list_backgrounds(self.held_out_backgrounds)
        for folder, found in ((self.backgrounds, train_bg), (self.held_out_backgrounds, test_bg)):
            leaked = augment.overlapping(found, photos)
            if leaked:
                raise ValueError(
                    f"{len(leaked)} background photos under {storage.redact(str(folder))} are "
                    f"photos of the dataset (first: {storage.redact(leaked[0])})"
                )
        shared = augment.overlapping(train_bg, test_bg)
        if shared:
            raise ValueError(f"{len(shared)} background photos are in both folders")
        return augment.training_spec(self.seed, train_bg), augment.evaluation_spec(
            self.seed, test_bg
        )


def plan(
    train: DataFrame, validation_paths: list[str], test: DataFrame, params: ClutterParams
) -> tuple[DataFrame, DataFrame]:
    """The rows to render: ``(training-family rows, held-out-family rows)``, each with
    ``path, label, copy, role``."""
    spark = train.sparkSession
    train_rows = train.select("path", "label")
    if int(params.copies) > 0:
        copies = _numbers(params.copies)
    else:  # no augmentation: one copy of each validation photo, to choose the head on
        train_rows = train_rows.filter(F.col("path").isin(validation_paths))
        copies = _numbers(1)
    trained = train_rows.select("path", "label", copies.alias("copy"))
    held = test.select("path", "label", _numbers(params.test_copies).alias("copy"))
    # as many pictures without fruit as test photos (a small dataset's threshold needs no
    # more), at least MIN_UNKNOWN, at most unknown_photos
    n = min(int(params.unknown_photos), max(MIN_UNKNOWN, test.count()))

    def nothing(role: str) -> DataFrame:
        rows = [(None, None, i, role) for i in range(n)]
        return spark.createDataFrame(rows, ROW_SCHEMA)

    with_role = [
        trained.withColumn("role", F.lit(TRAIN)).unionByName(nothing(UNKNOWN_VALIDATION)),
        held.withColumn("role", F.lit(TEST)).unionByName(nothing(UNKNOWN_TEST)),
    ]
    return with_role[0], with_role[1]


def _numbers(n: int):
    """A generator column: one row per copy number 0 .. n - 1 (int)."""
    return F.explode(F.sequence(F.lit(0), F.lit(int(n) - 1)).cast("array<int>"))


def featurize_rows(
    rows: tuple[DataFrame, DataFrame],
    specs: tuple[augment.AugmentSpec, augment.AugmentSpec],
    recipe: Recipe,
    batch_size: int = defaults.BATCH_SIZE,
) -> DataFrame:
    """Features of the pictures of :func:`plan`'s rows, made by the matching spec's
    ``render`` inside the features' UDF (:func:`helpers.spark.featurize.add_features`)."""
    parts = []
    for part, made_by in zip(rows, specs):
        partitions = max(1, part.sparkSession.sparkContext.defaultParallelism)
        parts.append(
            featurize.add_features(
                part.repartition(partitions), recipe, batch_size, render=made_by.render
            )
        )
    return parts[0].unionByName(parts[1])
