"""Names and threads of Spark jobs: what the Spark UI, the event log and the monitoring
notebook call each job, and threads that keep their caller's job group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession


def default_parallelism(spark: SparkSession) -> int:
    """Number of task slots Spark reports (at least 1)."""
    return max(1, int(spark.sparkContext.defaultParallelism))


#: Local properties Spark shows as a job's group and description (UI, event log, REST API).
_GROUP, _DESCRIPTION = "spark.jobGroup.id", "spark.job.description"


@contextmanager
def jobs_named(spark: SparkSession, description: str, group: str | None = None) -> Iterator[None]:
    """Name the Spark jobs started inside the block, so the Spark UI, the event log and the
    monitoring notebook say what each job did ("featurize: ...", "PCA: covariance pass").

    ``group`` (a short stage name) is set only when the thread has no job group yet: a notebook
    server (Livy in EMR Studio, for one) runs each cell under its own group to cancel it and
    show its progress, and that group must stay. The previous names are restored on exit. Jobs
    started from other threads get these names when the thread runs an
    :func:`inheritable` target.
    """
    sc = spark.sparkContext
    previous = sc.getLocalProperty(_GROUP), sc.getLocalProperty(_DESCRIPTION)
    if group is not None and previous[0] is None:
        sc.setLocalProperty(_GROUP, group)
    sc.setLocalProperty(_DESCRIPTION, description)
    try:
        yield
    finally:
        sc.setLocalProperty(_GROUP, previous[0])
        sc.setLocalProperty(_DESCRIPTION, previous[1])


def inheritable(spark: SparkSession, target):
    """``target`` for a new thread that starts Spark jobs: PySpark runs each Python thread on its
    own JVM thread, which would otherwise start without the caller's job group, description
    and scheduler pool (a notebook's cancel would miss its jobs) and keep its connection open."""
    import pyspark
    from pyspark import inheritable_thread_target

    if int(pyspark.__version__.split(".")[0]) >= 4:
        # Spark 4 also carries the session's job tags, given the session.
        return inheritable_thread_target(spark)(target)
    return inheritable_thread_target(target)  # Spark 3.5 (EMR 7): the function only
