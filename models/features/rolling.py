"""NaN-aware causal window statistics on (T, N) arrays, vectorised over assets and time.

Each statistic at row t uses rows <= t only (cumulative sums differenced, or causal IIR
filters), so perturbing rows after t cannot move it: the causality test checks this exactly.
Missing values are masked out, and a value is given only where the window holds at least
`min_periods` valid observations.  The beta estimators themselves live in `adaptive_beta.models.estimators.baselines`;
this module has what the feature pipeline needs beyond them (means, vols, correlations).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import maximum_filter1d

from adaptive_beta.models.estimators.common import (
    ewm_sum,
    halflife_decay,
    prepare_pair_arrays,
    rolling_sum,
    rolling_sums,
    stacked_rolling_sums,
)


def as_2d(a: np.ndarray) -> np.ndarray:
    """A (T,) series as a (T, 1) column; (T, N) unchanged."""
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def shift(a: np.ndarray, k: int) -> np.ndarray:
    """Rows moved down by k >= 0 (row t holds row t-k), NaN-filled at the top."""
    a = as_2d(a)
    out = np.full_like(a, np.nan)
    if k == 0:
        return a.copy()
    if k < a.shape[0]:
        out[k:] = a[:-k]
    return out


def _masked(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.isfinite(a)
    return np.where(m, a, 0.0), m.astype(np.float64)


def _per_window(values: Sequence[float]) -> np.ndarray:
    """One value per window as a (W, 1, 1) array, to compare with sums of shape (W, T, N)."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


def rolling_count(a: np.ndarray, window: int) -> np.ndarray:
    """Number of finite values among the last `window` rows."""
    return rolling_counts(a, (window,))[0]


def rolling_counts(a: np.ndarray, windows: Sequence[int]) -> np.ndarray:
    """`rolling_count` for several windows, (W, T, N), from one cumulative sum."""
    return rolling_sums(np.isfinite(as_2d(a)).astype(np.float64), windows)


def rolling_mean(a: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Mean of the finite values among the last `window` rows."""
    return rolling_means(a, (window,), (min_periods,))[0]


def rolling_means(a: np.ndarray, windows: Sequence[int], min_periods: Sequence[int]) -> np.ndarray:
    """`rolling_mean` for each (window, min_periods) pair, (W, T, N): one cumulative sum of the
    values and one of the mask serve every window (bit-equal per window), both in one call
    while small (`stacked_rolling_sums`)."""
    v, m = _masked(as_2d(a))
    total, n = stacked_rolling_sums((v, m), windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= _per_window(min_periods), total / n, np.nan)


def rolling_std(a: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the finite values among the last `window` rows.

    Each column is first shifted by its first finite value (a constant from the past, so still
    causal) to keep the sum-of-squares formula accurate for series with a large mean (log volume).
    """
    a = as_2d(a)
    first = np.argmax(np.isfinite(a), axis=0)
    ref = a[first, np.arange(a.shape[1])]
    ref = np.where(np.isfinite(ref), ref, 0.0)
    v, m = _masked(a - ref)
    n, s, ss = (sums[0] for sums in stacked_rolling_sums((m, v, v * v), (window,)))
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(ss - s * s / n, 0.0) / (n - 1.0)
        return np.where(n >= max(min_periods, 2), np.sqrt(var), np.nan)


def realised_vol(r: np.ndarray, window: int, min_periods: int, bars_per_year: float) -> np.ndarray:
    """Annualised realised volatility sqrt(mean(r^2) * bars_per_year) over the last `window` rows.

    Uncentred (the usual realised-variance convention: a drift is part of the risk) and in
    calendar time, so daily, 8h and hourly bars give comparable numbers.
    """
    return realised_vols(r, (window,), (min_periods,), bars_per_year)[0]


def realised_vols(
    r: np.ndarray, windows: Sequence[int], min_periods: Sequence[int], bars_per_year: float
) -> np.ndarray:
    """`realised_vol` for each (window, min_periods) pair, (W, T, N), from one cumulative sum."""
    return np.sqrt(rolling_means(as_2d(r) ** 2, windows, min_periods) * bars_per_year)


def rolling_corr(y: np.ndarray, x: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Pearson correlation of each column of y with x over the valid pairs of the last `window` rows."""
    y, x = as_2d(y), as_2d(x)
    m = np.isfinite(y) & np.isfinite(x)
    mf = m.astype(np.float64)
    yv = np.where(m, y, 0.0)
    xv = np.where(m, np.broadcast_to(x, y.shape), 0.0)
    n = rolling_sum(mf, window)
    sx, sy = rolling_sum(xv, window), rolling_sum(yv, window)
    sxx, syy, sxy = rolling_sum(xv * xv, window), rolling_sum(yv * yv, window), rolling_sum(xv * yv, window)
    return _corr(n, sx, sy, sxx, syy, sxy, n >= min_periods)


def ewma_corr(y: np.ndarray, x: np.ndarray, halflife: float, min_periods: int) -> np.ndarray:
    """Exponentially weighted correlation (weights decay^(t-s) on valid pairs, as `ewma_beta`)."""
    y, x = as_2d(y), as_2d(x)
    decay = halflife_decay(halflife)
    m = np.isfinite(y) & np.isfinite(x)
    mf = m.astype(np.float64)
    yv = np.where(m, y, 0.0)
    xv = np.where(m, np.broadcast_to(x, y.shape), 0.0)
    sw = ewm_sum(mf, decay)
    sx, sy = ewm_sum(xv, decay), ewm_sum(yv, decay)
    sxx, syy, sxy = ewm_sum(xv * xv, decay), ewm_sum(yv * yv, decay), ewm_sum(xv * yv, decay)
    return _corr(sw, sx, sy, sxx, syy, sxy, np.cumsum(mf, axis=0) >= min_periods)


def rolling_beta_and_corr(
    y: np.ndarray, x: np.ndarray, window: int, beta_min_periods: int | None, corr_min_periods: int
) -> tuple[np.ndarray, np.ndarray]:
    """(`rolling_ols_beta_array(y, x, window, beta_min_periods)`, `rolling_corr(y, x, window, corr_min_periods)`).

    Both are functions of the same six masked window sums (the OLS moments include syy); the
    sums are bit-for-bit those each function builds on its own (zero-filled invalid pairs, x*1.0
    and x*x*1.0 are exact), so sharing them changes no number and halves the cumulative sums.
    """
    beta, corr = rolling_betas_and_corrs(y, x, (window,), (beta_min_periods,), (corr_min_periods,))
    return beta[0], corr[0]


def rolling_betas_and_corrs(
    y: np.ndarray,
    x: np.ndarray,
    windows: Sequence[int],
    beta_min_periods: Sequence[int | None],
    corr_min_periods: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """`rolling_beta_and_corr` for several windows at once: (beta, corr), each (W, T, N).

    The moments of every window come from one cumulative sum (`_moments_multi`) and the slope
    and correlation formulas run once over all windows (elementwise, so each window's numbers
    are those of its own call).
    """
    from adaptive_beta.models.estimators.common import check_window
    from adaptive_beta.models.estimators.rolling import _moments_multi, _slope

    checked = [check_window(w, mp, least=2) for w, mp in zip(windows, beta_min_periods, strict=True)]
    Y, X, M = prepare_pair_arrays(as_2d(y), np.asarray(x, dtype=np.float64))
    m = _moments_multi(Y, X, M, [w for w, _ in checked])
    beta, _, _ = _slope(m, _per_window([mp for _, mp in checked]))
    n = m["n"]
    corr = _corr(n, m["sx"], m["sy"], m["sxx"], m["syy"], m["sxy"], n >= _per_window(corr_min_periods))
    return beta, corr


def ewma_beta_and_corr(
    y: np.ndarray, x: np.ndarray, halflife: float, min_periods: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(`ewma_beta_array(y, x, halflife)`, `ewma_corr(y, x, halflife, min_periods)`) from shared sums.

    min_periods defaults as in `ewma_beta` (ceil(halflife), at least 3) and applies to both.
    The exponentially weighted sums are the ones each function builds on its own (bit-equal).
    """
    return ewma_betas_and_corrs(y, x, (halflife,), min_periods)[0]


def ewma_betas_and_corrs(
    y: np.ndarray, x: np.ndarray, halflives: Sequence[float], min_periods: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`ewma_beta_and_corr` at each half-life: the pairs and their running count are built once,
    each half-life's six sums are one filter call."""
    from adaptive_beta.models.estimators.ewma import _default_min_periods, _ewm_slope_from, _ewm_sums

    Y, X, M = prepare_pair_arrays(as_2d(y), np.asarray(x, dtype=np.float64))
    count = np.cumsum(M, axis=0)
    out = []
    for halflife in halflives:
        mp = _default_min_periods(halflife, min_periods)
        s = _ewm_sums(Y, X, M, halflife_decay(halflife), rows=6)
        beta = _ewm_slope_from(s, count, mp)
        out.append((beta, _corr(s["sw"], s["sx"], s["sy"], s["sxx"], s["syy"], s["sxy"], count >= mp)))
    return out


def _corr(w, sx, sy, sxx, syy, sxy, ok) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        vx = sxx * w - sx * sx
        vy = syy * w - sy * sy
        c = sxy * w - sx * sy
        good = ok & (vx > 1e-10 * sxx * w) & (vy > 1e-10 * syy * w)
        out = np.where(good, c / np.sqrt(np.where(good, vx * vy, 1.0)), np.nan)
    return np.clip(out, -1.0, 1.0)


def rolling_max(a: np.ndarray, window: int) -> np.ndarray:
    """Max of the finite values among the last `window` rows (NaN if none).

    scipy's O(T) running max over the values with every non-finite one at -inf (the trailing
    window by `origin`, -inf before the first row), -inf back to NaN: the numbers of pandas'
    `rolling(window, min_periods=1).max()` (a max is exact), without building a frame
    (~0.1 ms of a request's ~6 ms of features; tests/models/test_rolling_max.py).
    """
    a = as_2d(a)
    m = np.where(np.isfinite(a), a, -np.inf)
    out = maximum_filter1d(m, size=window, axis=0, mode="constant", cval=-np.inf, origin=(window - 1) // 2)
    return np.where(out == -np.inf, np.nan, out)
