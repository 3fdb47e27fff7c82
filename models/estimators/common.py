"""Shared plumbing of the classical beta estimators: aligning inputs, masks and causal sums.

Every estimator takes wide frames (y: T x N asset returns, x: T benchmark returns) and works
on float64 arrays with a validity mask: a row counts for asset i only where both y_i and x
are finite.  Invalid rows are zero-filled *and* masked out, so sums over windows see exactly
the valid pairs without any Python loop over time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter


def prepare_pair(y: pd.DataFrame, x: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, x, M): Y (T, N) and x (T, 1) zero-filled where invalid, M (T, N) float mask of valid pairs.

    `x` is aligned on `y`'s index (rows of y missing in x count as invalid).
    """
    if not isinstance(y, pd.DataFrame):
        raise TypeError(f"y must be a DataFrame of asset returns (T x N), got {type(y).__name__}")
    if isinstance(x, pd.DataFrame):
        if x.shape[1] != 1:
            raise TypeError(
                f"x must be a Series of benchmark returns, got a DataFrame with {x.shape[1]} columns"
            )
        x = x.iloc[:, 0]
    xs = x.reindex(y.index) if not x.index.equals(y.index) else x
    Y = y.to_numpy(dtype=np.float64, na_value=np.nan)
    return prepare_pair_arrays(Y, xs.to_numpy(dtype=np.float64, na_value=np.nan))


def prepare_pair_arrays(Y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`prepare_pair` on aligned float64 arrays: Y (T, N), x (T,) or (T, 1), NaN where missing
    (or x (T, N): a regressor per column, for batching several pairs in one call).

    The numpy core the frame version delegates to, so the feature pipeline (arrays) and the
    estimators' frame API give the same numbers by construction.
    """
    xv = x if x.ndim == 2 and x.shape == Y.shape else x.reshape(-1, 1)  # one x per column, or shared
    M = np.isfinite(Y) & np.isfinite(xv)
    Mf = M.astype(np.float64)
    return np.where(M, Y, 0.0), np.where(M, xv, 0.0), Mf


def rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last `window` rows (inclusive) along axis 0; partial sums for the first rows.

    Cumulative-sum differences: O(T) and causal (row t never sees rows > t).  In float64 the
    round-off is about eps * (cumulative total / window total), i.e. ~1e-13 relative for
    return-sized data over tens of thousands of bars.
    """
    c = np.cumsum(a, axis=0)
    out = c.copy()
    if window < a.shape[0]:
        out[window:] -= c[:-window]
    return out


def ewm_sum(a: np.ndarray, decay: float) -> np.ndarray:
    """S_t = sum_{s<=t} decay^(t-s) a_s along axis 0 (a causal first-order IIR filter, in C)."""
    return lfilter([1.0], [1.0, -decay], a, axis=0)


def halflife_decay(halflife: float) -> float:
    """Per-bar decay factor of an exponential weight with this half-life in bars (pandas convention)."""
    if not np.isfinite(halflife) or halflife <= 0:
        raise ValueError(f"halflife must be a positive number of bars, got {halflife!r}")
    return float(0.5 ** (1.0 / halflife))


def as_frame(values: np.ndarray, like: pd.DataFrame) -> pd.DataFrame:
    """Wrap a (T, N) array with the index and columns of `like`."""
    return pd.DataFrame(values, index=like.index, columns=like.columns)


def check_window(window: int, min_periods: int | None, least: int) -> tuple[int, int]:
    """Validate a window in bars and resolve min_periods (default: half the window, at least `least`)."""
    if int(window) != window or window < least:
        raise ValueError(f"window must be an integer number of bars >= {least}, got {window!r}")
    window = int(window)
    if min_periods is None:
        min_periods = max(least, (window + 1) // 2)
    if min_periods < least or min_periods > window:
        raise ValueError(
            f"min_periods must be between {least} and the window ({window}), got {min_periods!r}"
        )
    return window, int(min_periods)
