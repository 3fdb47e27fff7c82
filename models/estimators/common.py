"""Shared plumbing of the classical beta estimators: aligning inputs, masks and causal sums.

Every estimator takes wide frames (y: T x N asset returns, x: T benchmark returns) and works
on float64 arrays with a validity mask: a row counts for asset i only where both y_i and x
are finite.  Invalid rows are zero-filled *and* masked out, so sums over windows see exactly
the valid pairs without any Python loop over time.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    xv = regressor_columns(Y, x)
    M = np.isfinite(Y) & np.isfinite(xv)
    Mf = M.astype(np.float64)
    return np.where(M, Y, 0.0), np.where(M, xv, 0.0), Mf


def regressor_columns(Y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x as the regressor of each column of Y: an x of Y's own shape gives one per column (several
    (asset, benchmark) pairs batched in one call), any other x one (T, 1) column shared by all."""
    return x if x.ndim == 2 and x.shape == Y.shape else x.reshape(-1, 1)


def pair_products(Y: np.ndarray, X: np.ndarray, M: np.ndarray, rows: int = 6) -> tuple[np.ndarray, ...]:
    """(M, X*M, Y, X*X*M, X*Y, Y*Y)[:rows]: what the pair estimators sum (count, sx, sy, sxx, sxy,
    syy) over windows or with decaying weights, from the arrays of `prepare_pair_arrays`.

    Written once so the rolling, exponentially weighted and incremental sums add the same numbers.
    """
    parts = (M, X * M, Y, X * X * M, X * Y, Y * Y)
    return parts[:rows]


def rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last `window` rows (inclusive) along axis 0; partial sums for the first rows.

    Cumulative-sum differences: O(T) and causal (row t never sees rows > t).  In float64 the
    round-off is about eps * (cumulative total / window total), i.e. ~1e-13 relative for
    return-sized data over tens of thousands of bars.
    """
    return rolling_sums(a, (window,))[0]


def rolling_sums(a: np.ndarray, windows: Sequence[int], axis: int = 0) -> np.ndarray:
    """`rolling_sum(a, w)` for each w of `windows`, as one (W, *a.shape) array (time along `axis`).

    One cumulative sum serves every window: each is that sum minus itself w rows up, the very
    operations `rolling_sum` does for one window, so every number is bit-equal.  Several
    arrays of one shape stacked on a leading axis (time then on axis 1) share the call too: a
    cumulative sum runs down each series on its own.  A one-asset request computes ~100 window
    sums of 661 numbers: the numpy call, not the arithmetic, is the cost.
    """
    c = np.add.accumulate(np.ascontiguousarray(a), axis=axis)  # np.cumsum's own steps, minus its wrapper
    out = np.empty((len(windows), *c.shape), dtype=c.dtype)
    before = (slice(None),) * axis
    for j, window in enumerate(windows):
        out[j] = c
        if window < c.shape[axis]:
            out[j][(*before, slice(window, None))] -= c[(*before, slice(None, -window))]
    return out


# Several sums of one shape go through one numpy call, stacked on a leading axis, while each has
# at most this many numbers: that saves the per-call cost (microseconds), which is what a
# request-sized array costs.  A large stack would cost an extra copy and fresh memory (page
# faults) instead, so large arrays are summed one by one.  The numbers are the same either way.
STACK_NUMBERS = 1 << 16


def stacked_rolling_sums(arrays: Sequence[np.ndarray], windows: Sequence[int]) -> list[np.ndarray]:
    """[`rolling_sums(a, windows)` for a in arrays] (each (W, T, ...)), in one call while small."""
    if arrays[0].size > STACK_NUMBERS:
        return [rolling_sums(a, windows) for a in arrays]
    sums = rolling_sums(_stack(arrays), windows, axis=1)  # (W, len(arrays), T, ...)
    return [sums[:, i] for i in range(len(arrays))]


def stacked_ewm_sums(arrays: Sequence[np.ndarray], decay: float) -> list[np.ndarray]:
    """[`ewm_sum(a, decay)` for a in arrays], in one filter call while small."""
    if arrays[0].size > STACK_NUMBERS:
        return [ewm_sum(a, decay) for a in arrays]
    return list(ewm_sum(_stack(arrays), decay, axis=1))


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """np.stack(arrays) for arrays of one shape, without its checks (half its cost at this size)."""
    out = np.empty((len(arrays), *arrays[0].shape))
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def ewm_sum(a: np.ndarray, decay: float, axis: int = 0) -> np.ndarray:
    """S_t = sum_{s<=t} decay^(t-s) a_s along `axis` (a causal first-order IIR filter, in C).

    Each series is filtered on its own, so arrays of one shape stacked on a leading axis (time
    then on axis 1) are filtered in one call with the numbers of one call each
    (tests/models/test_feat_shared_sums.py).
    """
    return lfilter([1.0], [1.0, -decay], a, axis=axis)


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
