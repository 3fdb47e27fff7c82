"""Exponentially weighted betas: EWMA cov/var and Welch's slope-winsorised beta.

Both are weighted least squares with an intercept and weights decay^(t-s) on the valid rows
s <= t, decay = 0.5 ** (1 / halflife).  Weights keep decaying across missing rows (pandas'
`ignore_na=False`).  Computed with causal IIR filters over the masked sums, vectorised across
assets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.estimators.common import (
    as_frame,
    ewm_sum,
    halflife_decay,
    prepare_pair,
    prepare_pair_arrays,
)

_DEGENERATE = 1e-10


def _default_min_periods(halflife: float, min_periods: int | None) -> int:
    if min_periods is None:
        return max(3, int(np.ceil(halflife)))
    if min_periods < 2:
        raise ValueError(f"min_periods must be at least 2 valid rows, got {min_periods!r}")
    return int(min_periods)


def _ewm_sums(Y: np.ndarray, X: np.ndarray, M: np.ndarray, decay: float) -> dict[str, np.ndarray]:
    return {
        "sw": ewm_sum(M, decay),
        "sx": ewm_sum(X * M, decay),
        "sy": ewm_sum(Y, decay),
        "sxx": ewm_sum(X * X * M, decay),
        "sxy": ewm_sum(X * Y, decay),
    }


def _ewm_slope(Y: np.ndarray, X: np.ndarray, M: np.ndarray, decay: float, min_periods: int) -> np.ndarray:
    return _ewm_slope_from(_ewm_sums(Y, X, M, decay), np.cumsum(M, axis=0), min_periods)


def _ewm_slope_from(s: dict[str, np.ndarray], count: np.ndarray, min_periods: int) -> np.ndarray:
    """Slope from the weighted sums of `_ewm_sums` and the running count of valid pairs."""
    sw, sx, sy, sxx, sxy = s["sw"], s["sx"], s["sy"], s["sxx"], s["sxy"]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = sxx * sw - sx * sx  # sw^2 * weighted variance of x
        cov = sxy * sw - sx * sy
        ok = (count >= min_periods) & (var > _DEGENERATE * sxx * sw)
        return np.where(ok, cov / np.where(ok, var, 1.0), np.nan)


def ewma_beta(y: pd.DataFrame, x: pd.Series, halflife: float, min_periods: int | None = None) -> pd.DataFrame:
    """EWMA beta: exponentially weighted cov(y_i, x) / var(x) over the rows where both are valid.

    Equals `y_i.ewm(halflife).cov(x) / x.ewm(halflife).var()` in pandas (adjust=True, demeaned)
    computed on the pairwise-valid rows; the bias corrections cancel in the ratio.
    halflife: in bars (float allowed).  min_periods: valid pairs seen so far before a value is
        given; default ceil(halflife) (at least 3).
    """
    decay = halflife_decay(halflife)
    Y, X, M = prepare_pair(y, x)
    return as_frame(_ewm_slope(Y, X, M, decay, _default_min_periods(halflife, min_periods)), y)


def ewma_beta_array(
    y: np.ndarray, x: np.ndarray, halflife: float, min_periods: int | None = None
) -> np.ndarray:
    """`ewma_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): the same numbers."""
    decay = halflife_decay(halflife)
    Y, X, M = prepare_pair_arrays(y, x)
    return _ewm_slope(Y, X, M, decay, _default_min_periods(halflife, min_periods))


def winsorise_to_band_array(
    y: np.ndarray, x: np.ndarray, lower: float = -2.0, upper: float = 4.0
) -> np.ndarray:
    """`winsorise_to_band` on aligned float64 arrays (y (T, N), x (T,)); the frame version delegates here."""
    if not lower < upper:
        raise ValueError(f"welch band needs lower < upper, got lower={lower!r}, upper={upper!r}")
    xs = x.reshape(-1, 1)
    a, b = lower * xs, upper * xs
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.clip(y, lo, hi)


def welch_beta_array(
    y: np.ndarray,
    x: np.ndarray,
    halflife: float,
    lower: float = -2.0,
    upper: float = 4.0,
    min_periods: int | None = None,
) -> np.ndarray:
    """`welch_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): the same numbers."""
    return ewma_beta_array(winsorise_to_band_array(y, x, lower, upper), x, halflife, min_periods)


def winsorise_to_band(y: pd.DataFrame, x: pd.Series, lower: float = -2.0, upper: float = 4.0) -> pd.DataFrame:
    """Clip each asset return to the band between lower*x_t and upper*x_t (Welch 2022).

    The band is [min(lower*x, upper*x), max(lower*x, upper*x)]: on a market-up bar of +1 % the
    asset return is kept within [-2 %, +4 %]; on a -1 % bar within [-4 %, +2 %].
    """
    xs = x.reindex(y.index).to_numpy(dtype=np.float64, na_value=np.nan)
    Y = y.to_numpy(dtype=np.float64, na_value=np.nan)
    return as_frame(winsorise_to_band_array(Y, xs, lower, upper), y)


def welch_beta(
    y: pd.DataFrame,
    x: pd.Series,
    halflife: float,
    lower: float = -2.0,
    upper: float = 4.0,
    min_periods: int | None = None,
) -> pd.DataFrame:
    """Welch (2022, "Simply better market betas") slope-winsorised, age-weighted beta.

    Each asset return is first clipped to [min(lower*x_t, upper*x_t), max(...)] (outlier days
    cannot drag the slope beyond -2..4 per bar), then the exponentially weighted OLS slope with
    intercept and the given half-life (bars) is taken: `ewma_beta` on the winsorised returns.
    """
    return ewma_beta(winsorise_to_band(y, x, lower, upper), x, halflife, min_periods)
