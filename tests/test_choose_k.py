import numpy as np
import pytest

from helpers.spark.reduce import choose_k, validate_threshold


@pytest.mark.parametrize(
    "threshold,expected",
    [(0.5, 1), (0.5000001, 2), (0.8, 2), (0.95, 4), (1.0, 5)],
)
def test_smallest_k_reaching_threshold(threshold, expected):
    ratios = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    assert choose_k(ratios, threshold) == expected


def test_threshold_one_is_reached_despite_rounding():
    ratios = np.full(10, 0.1)  # sums to 0.9999999999999999
    assert choose_k(ratios, 1.0) == 10


def test_unreachable_threshold_keeps_all_components():
    assert choose_k(np.array([0.4, 0.3]), 0.9) == 2


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01, 2])
def test_threshold_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="variance_threshold"):
        validate_threshold(bad)


def test_moments_merged_by_partition_equal_the_whole():
    """Partitions of any size (an empty one too), merged in any order, give the moments and
    the standardized covariance of the whole matrix, even far from the origin."""
    from helpers.spark.reduce import Moments

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * [1, 2, 3, 4, 5, 6] + 1e6
    x[:, 5] = 0.1  # a constant column whose mean is not exact in binary
    parts = [x[:1], x[1:1], x[1:120], x[120:500]]
    merged = Moments.of(parts[3])
    for part in parts[:3]:
        merged = Moments.of(part).merge(merged)
    mean, std, covariance = merged.standardized()
    assert merged.n == 500
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=0, ddof=1), rtol=1e-9, atol=1e-9)
    expected = np.corrcoef(x[:, :5], rowvar=False)
    np.testing.assert_allclose(covariance[:5, :5], expected, atol=1e-9)
    assert np.all(covariance[5] == 0) and np.all(covariance[:, 5] == 0)
