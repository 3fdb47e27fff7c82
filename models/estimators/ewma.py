"""Exponentially weighted betas: EWMA cov/var and Welch's slope-winsorised beta.

Both are weighted least squares with an intercept and weights decay^(t-s) on the valid rows
s <= t, decay = 0.5 ** (1 / halflife).  Weights keep decaying across missing rows (pandas'
`ignore_na=False`).  Computed with causal IIR filters over the masked sums, vectorised across
assets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from adaptive_beta.models.estimators.common import (
    as_frame,
    halflife_decay,
    pair_products,
    prepare_pair,
    prepare_pair_arrays,
    regressor_columns,
    stacked_ewm_sums,
)

_DEGENERATE = 1e-10


def _default_min_periods(halflife: float, min_periods: int | None) -> int:
    if min_periods is None:
        return max(3, int(np.ceil(halflife)))
    if min_periods < 2:
        raise ValueError(f"min_periods must be at least 2 valid rows, got {min_periods!r}")
    return int(min_periods)


_EWM_SUMS = ("sw", "sx", "sy", "sxx", "sxy", "syy")  # the sums of `pair_products`, in its order


def _ewm_sums(
    Y: np.ndarray, X: np.ndarray, M: np.ndarray, decay: float, rows: int = 5
) -> dict[str, np.ndarray]:
    """The exponentially weighted sums of the pairs (rows=6 adds syy for a correlation), each
    (T, N): the products in one filter call while small (`stacked_ewm_sums`)."""
    return dict(zip(_EWM_SUMS, stacked_ewm_sums(pair_products(Y, X, M, rows), decay), strict=False))


def _ewm_slopes(
    Y: np.ndarray, X: np.ndarray, M: np.ndarray, halflives: Sequence[float], min_periods: int | None
) -> list[np.ndarray]:
    """The EWMA slope at each half-life from one set of prepared pairs (the running count of
    valid pairs is the same for all; each half-life is one filter call over its five sums)."""
    count = np.cumsum(M, axis=0)
    return [
        _ewm_slope_from(_ewm_sums(Y, X, M, halflife_decay(h)), count, _default_min_periods(h, min_periods))
        for h in halflives
    ]


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
    return as_frame(_ewm_slopes(*prepare_pair(y, x), (halflife,), min_periods)[0], y)


def ewma_beta_array(
    y: np.ndarray, x: np.ndarray, halflife: float, min_periods: int | None = None
) -> np.ndarray:
    """`ewma_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): the same numbers."""
    return _ewm_slopes(*prepare_pair_arrays(y, x), (halflife,), min_periods)[0]


def winsorise_to_band_array(
    y: np.ndarray, x: np.ndarray, lower: float = -2.0, upper: float = 4.0
) -> np.ndarray:
    """`winsorise_to_band` on aligned float64 arrays (y (T, N), x (T,) or one per column of y's
    shape, as `prepare_pair_arrays`); the frame version delegates here."""
    if not lower < upper:
        raise ValueError(f"welch band needs lower < upper, got lower={lower!r}, upper={upper!r}")
    xs = regressor_columns(y, x)
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
    return welch_betas_array(y, x, (halflife,), lower, upper, min_periods)[0]


def welch_betas_array(
    y: np.ndarray,
    x: np.ndarray,
    halflives: Sequence[float],
    lower: float = -2.0,
    upper: float = 4.0,
    min_periods: int | None = None,
) -> list[np.ndarray]:
    """`welch_beta_array` at each half-life: the winsorised pairs are built once for all of them
    (the feature pipeline's base beta and its longer-memory variants)."""
    return _ewm_slopes(
        *prepare_pair_arrays(winsorise_to_band_array(y, x, lower, upper), x), halflives, min_periods
    )


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
