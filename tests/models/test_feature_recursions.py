"""The O(1) building blocks of the incremental features, against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.estimators.common import ewm_sum, rolling_sum
from adaptive_beta.models.features.recursions import (
    EwmSums,
    Lags,
    RollingMax,
    RollingMedian,
    StateArrays,
    WindowSums,
)


def test_window_sums_stay_exact_over_50k_bars_where_cumulative_differences_drift():
    """Values ~1e3 +- 1 (a large mean, like log volume x 50): after 50,000 bars the rebased totals
    are within 1e-9 of math.fsum of each window; the batch's global cumulative sums are not."""
    rng = np.random.default_rng(3)
    a = 1000.0 + rng.normal(0, 1, (50_000, 2))
    w = 90
    sums = WindowSums(StateArrays(), "x", w, (2,), asset_axis=True)
    got = np.stack([sums.push(t, a[t]).copy() for t in range(len(a))])
    ends = np.arange(49_000, 50_000, 37)
    exact = np.array([[math.fsum(a[t - w + 1 : t + 1, j]) for j in range(2)] for t in ends])
    mine = np.max(np.abs(got[ends] - exact))
    batch = np.max(np.abs(rolling_sum(a, w)[ends] - exact))
    assert mine < 1e-9
    assert batch > 10 * mine  # the drift the rebasing avoids
    np.testing.assert_array_equal(got[:w], rolling_sum(a[:w], w))  # before the first rebase: bit-equal


def test_window_of_zeros_sums_to_exactly_zero():
    sums = WindowSums(StateArrays(), "x", 5, (1,), asset_axis=True)
    values = [0.1, 0.7, 1e-9, 3.3] + [0.0] * 12
    out = [float(sums.push(t, np.array([v]))[0]) for t, v in enumerate(values)]
    assert out[-8:] == [0.0] * 8


def test_ewm_sums_are_the_batch_filter_bit_for_bit():
    a = np.random.default_rng(1).normal(0, 1, (500, 3))
    ewm = EwmSums(StateArrays(), "e", 0.97, (3,), asset_axis=True)
    got = np.stack([ewm.push(row).copy() for row in a])
    np.testing.assert_array_equal(got, ewm_sum(a, 0.97))


def test_lags_give_nan_before_the_first_bar_and_refuse_beyond_depth():
    lags = Lags(StateArrays(), "l", 3, (1,), asset_axis=True)
    seen = []
    for t in range(6):
        lags.push(t, np.array([float(t)]))
        seen.append(float(lags.get(t, 3)[0]))
    assert np.isnan(seen[:3]).all() and seen[3:] == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="lag 4 is beyond the kept depth 3"):
        lags.get(5, 4)


def _with_gaps(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (n, 2))
    a[rng.random((n, 2)) < 0.2] = np.nan
    a[40:70, 0] = np.nan  # a run longer than the window: no value at all
    return a


@pytest.mark.parametrize("window", [1, 2, 7, 25])
def test_rolling_max_is_pandas(window):
    a = _with_gaps(300, window)
    rmax = RollingMax(StateArrays(), "m", window, (2,), asset_axis=True)
    got = np.stack([rmax.push(t, a[t]) for t in range(len(a))])
    want = pd.DataFrame(a).rolling(window, min_periods=1).max().to_numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("window", [4, 9, 20])
def test_rolling_median_is_pandas_and_survives_a_restore(window):
    a = _with_gaps(300, window)
    store = StateArrays()
    med = RollingMedian(store, "m", window, window // 2, 2)
    got = []
    for t in range(len(a)):
        if t == 150:  # restore into a fresh structure midway
            saved = {k: v.copy() for k, v in store.arrays().items()}
            store = StateArrays()
            med = RollingMedian(store, "m", window, window // 2, 2)
            store.load(saved)
            med.rebuild()
        got.append(med.push(t, a[t]))
    want = pd.DataFrame(a).rolling(window, min_periods=window // 2).median().to_numpy()
    np.testing.assert_allclose(np.array(got), want, rtol=0, atol=1e-15)
