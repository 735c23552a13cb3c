"""The one-pass standardize + PCA agrees with NumPy on the same matrix; models saved by
earlier releases (Spark's StandardScaler stage, then the projection) still load and project."""

import numpy as np
import pytest
from pyspark.sql import types as T

from helpers.spark.reduce import Projection, choose_k, fit_reduction
from tests.conftest import feature_matrix

# the 960 real images featurized through Spark: the full suite's, not the fast tier's
pytestmark = [pytest.mark.spark, pytest.mark.slow]

SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType()),
        T.StructField("features", T.ArrayType(T.FloatType())),
    ]
)


@pytest.fixture(scope="module")
def features_df(spark, sample_features):
    rows = [
        (p, [float(x) for x in f])
        for p, f in zip(sample_features["path"], sample_features["features"])
    ]
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="module")
def numpy_pca(sample_features):
    x = feature_matrix(sample_features)
    std = x.std(axis=0, ddof=1)
    # Constant columns standardize to 0 (as Spark's StandardScaler) instead of dividing by 0.
    z = np.where(std > 0, (x - x.mean(axis=0)) / np.where(std > 0, std, 1), 0.0)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    return z, s**2 / np.sum(s**2), vt


@pytest.fixture(scope="module")
def reduction_90(features_df):
    return fit_reduction(features_df, variance_threshold=0.9)


def test_explained_variance_matches_numpy_svd(reduction_90, numpy_pca):
    _, ratios, _ = numpy_pca
    spark_ratios = reduction_90.explained_variance_ratio
    # every component carrying variance (the matrix has rank <= n - 1 = 959)
    meaningful = ratios > 1e-9
    n = int(meaningful.sum())
    assert n > 500
    rel = np.abs(spark_ratios[:n] - ratios[:n]) / ratios[:n]
    assert rel.max() < 1e-6


def test_k_is_smallest_reaching_threshold(reduction_90, numpy_pca):
    _, ratios, _ = numpy_pca
    cumulative = np.cumsum(ratios)
    k = reduction_90.k
    assert cumulative[k - 1] >= 0.9 > cumulative[k - 2]
    assert reduction_90.explained_variance == pytest.approx(cumulative[k - 1], rel=1e-6)
    # the kept model really has k components
    projection = reduction_90.model.stages[-1]
    assert len(projection.getOrDefault(projection.explainedVariance)) == k
    for threshold in (0.5, 0.8, 0.95, 0.99):
        chosen = choose_k(reduction_90.explained_variance_ratio, threshold)
        assert cumulative[chosen - 1] >= threshold > cumulative[chosen - 2]


def test_projection_matches_numpy_up_to_sign(features_df, numpy_pca):
    z, _, vt = numpy_pca
    reduction = fit_reduction(features_df, k=5)
    out = reduction.transform(features_df).orderBy("path").toPandas()
    got = np.stack(out["pca"].to_numpy())
    expected = z @ vt[:5].T
    assert got.shape == (960, 5)
    for i in range(5):
        sign = np.sign(got[:, i] @ expected[:, i])
        np.testing.assert_allclose(
            sign * got[:, i], expected[:, i], atol=1e-6 * np.abs(expected).max()
        )


def test_fixed_k_out_of_range_is_refused(features_df):
    with pytest.raises(ValueError, match="k must be between 1 and the feature size 1280"):
        fit_reduction(features_df, k=5000)


def test_saved_reduction_projects_the_same_after_loading(features_df, tmp_path):
    """Saved and loaded with Spark ML persistence (public APIs only): same numbers."""
    from pyspark.ml import PipelineModel

    from helpers.spark.reduce import project

    reduction = fit_reduction(features_df, k=7)
    reduction.model.write().overwrite().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))
    assert [type(s).__name__ for s in loaded.stages] == ["Projection"]
    before = np.stack(reduction.transform(features_df).orderBy("path").toPandas()["pca"])
    after = np.stack(project(loaded, features_df).orderBy("path").toPandas()["pca"])
    np.testing.assert_array_equal(before, after)


def test_an_earlier_release_model_still_projects_the_same(features_df, numpy_pca, tmp_path):
    """Earlier releases saved Spark's StandardScalerModel, then a Projection without
    mean/scale; such a model loads and projects as NumPy does."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import StandardScaler

    from helpers.spark.reduce import PCA_COL, VECTOR_COL, as_vectors, project

    z, _, vt = numpy_pca
    scaler = StandardScaler(inputCol=VECTOR_COL, outputCol="_scaled", withMean=True, withStd=True)
    scaler_model = scaler.fit(as_vectors(features_df))
    old_projection = Projection(
        inputCol="_scaled", outputCol=PCA_COL, components=vt[:3].T.ravel().tolist(), dim=1280,
        explainedVariance=[0.1, 0.1, 0.1],
    )  # fmt: skip
    PipelineModel(stages=[scaler_model, old_projection]).save(str(tmp_path / "old"))
    loaded = PipelineModel.load(str(tmp_path / "old"))
    assert loaded.stages[-1].standardization is None
    got = np.stack(project(loaded, features_df).orderBy("path").toPandas()["pca"])
    np.testing.assert_allclose(got, z @ vt[:3].T, atol=1e-6 * np.abs(z @ vt[:3].T).max())


def test_features_that_do_not_vary_are_a_clear_error(spark):
    one_row = spark.createDataFrame([("a", [1.0, 2.0, 3.0])], SCHEMA)
    with pytest.raises(ValueError, match="the features of the 1 rows do not vary"):
        fit_reduction(one_row, k=1)
    with pytest.raises(ValueError, match="no rows with features"):
        fit_reduction(spark.createDataFrame([("a", None)], SCHEMA), k=1)


def test_job_names_keep_a_notebook_servers_group_and_reach_worker_threads(spark):
    """A notebook server's cell group (how it cancels a cell) survives the pipeline's names,
    and threads started through ``inheritable`` carry both."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers.spark.jobs import inheritable, jobs_named

    sc = spark.sparkContext
    sc.setJobGroup("cell-7", "a notebook cell")
    try:
        with jobs_named(spark, "featurize: something", group="featurize"):
            seen = (sc.getLocalProperty("spark.jobGroup.id"),
                    sc.getLocalProperty("spark.job.description"))  # fmt: skip
            with ThreadPoolExecutor(1) as pool:
                in_thread = pool.submit(inheritable(spark,
                    lambda: sc.getLocalProperty("spark.jobGroup.id"))).result()  # fmt: skip
        assert seen == ("cell-7", "featurize: something") and in_thread == "cell-7"
        assert sc.getLocalProperty("spark.job.description") == "a notebook cell"
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    with jobs_named(spark, "reduce: x", group="reduce"):
        assert sc.getLocalProperty("spark.jobGroup.id") == "reduce"
    assert sc.getLocalProperty("spark.jobGroup.id") is None


def test_components_of_rounding_noise_are_dropped(spark):
    """Fewer rows than features: past the rank, components explain only rounding noise;
    ``min_ratio`` leaves them out even when every component is asked for."""
    rng = np.random.default_rng(0)
    rows = [(f"r{i}", [float(x) for x in rng.normal(size=40)]) for i in range(12)]
    df = spark.createDataFrame(rows, SCHEMA)
    everything = fit_reduction(df, k=40)
    assert everything.k == 40 and everything.explained_variance_ratio[11:].sum() < 1e-9
    varying = fit_reduction(df, variance_threshold=1.0, min_ratio=1e-6)
    assert varying.k == 11  # 12 centred rows span 11 dimensions
