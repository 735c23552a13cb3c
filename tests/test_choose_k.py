import numpy as np
import pytest

from helpers.chain.reduce import choose_k, validate_threshold


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
