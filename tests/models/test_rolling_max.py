"""`rolling_max` (scipy's running max) gives pandas' `rolling(window, min_periods=1).max()` of the
finite values bit for bit: NaN and +-inf ignored, NaN where the window holds no finite value,
windows shorter and longer than the series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.features.rolling import rolling_max


def _pandas(a: np.ndarray, window: int) -> np.ndarray:
    a = a[:, None] if a.ndim == 1 else a
    return pd.DataFrame(np.where(np.isfinite(a), a, np.nan)).rolling(window, min_periods=1).max().to_numpy()


@pytest.mark.parametrize(("t_len", "n"), [(661, 1), (300, 20), (3, 2)])
@pytest.mark.parametrize("window", [1, 2, 7, 90, 91, 700])
def test_rolling_max_is_pandas_bit_for_bit(t_len, n, window):
    rng = np.random.default_rng(t_len + window)
    a = 100.0 * np.exp(rng.normal(0.0, 0.05, (t_len, n)).cumsum(axis=0))
    a[rng.random(a.shape) < 0.2] = np.nan
    a[rng.random(a.shape) < 0.02] = np.inf
    a[rng.random(a.shape) < 0.02] = -np.inf
    a[: min(5, t_len)] = np.nan  # a start with no finite value: NaN, not -inf
    got, want = rolling_max(a, window), _pandas(a, window)
    assert got.shape == want.shape == (t_len, n)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert got.tobytes() == want.tobytes()
    assert np.isnan(got[: min(5, t_len)]).all()


def test_rolling_max_of_a_known_series():
    a = np.array([np.nan, 3.0, 1.0, np.inf, 2.0, np.nan, np.nan, 0.5])
    got = rolling_max(a, 3)[:, 0]
    np.testing.assert_array_equal(got, [np.nan, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 0.5])
