"""Rolling-window OLS betas: single benchmark (with standard errors) and multi-factor.

The textbook market-model beta: OLS of the asset return on an intercept and the benchmark
return over the last `window` bars.  Vectorised over time and assets with rolling sums of
x, y, xy, x^2, y^2 on masked arrays (a row counts only where y_i and x are both finite), so a
window with gaps uses exactly its valid pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.est_common import as_frame, check_window, prepare_pair, rolling_sum

# A centred sum of squares below this fraction of the raw one is round-off: the regressor is
# constant over the window and the slope is not identified.
_DEGENERATE = 1e-10


def _rolling_moments(y: pd.DataFrame, x: pd.Series, window: int) -> dict[str, np.ndarray]:
    Y, X, M = prepare_pair(y, x)
    return {
        "n": rolling_sum(M, window),
        "sx": rolling_sum(X * M, window),
        "sy": rolling_sum(Y, window),
        "sxx": rolling_sum(X * X * M, window),
        "sxy": rolling_sum(X * Y, window),
        "syy": rolling_sum(Y * Y, window),
    }


def _slope(m: dict[str, np.ndarray], min_periods: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta, centred Sxx, centred Sxy); beta NaN where fewer than min_periods pairs or x constant."""
    n = m["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx_c = m["sxx"] - m["sx"] ** 2 / n
        sxy_c = m["sxy"] - m["sx"] * m["sy"] / n
        ok = (n >= min_periods) & (sxx_c > _DEGENERATE * m["sxx"])
        beta = np.where(ok, sxy_c / np.where(ok, sxx_c, 1.0), np.nan)
    return beta, sxx_c, sxy_c


def rolling_ols_beta(
    y: pd.DataFrame, x: pd.Series, window: int, min_periods: int | None = None
) -> pd.DataFrame:
    """OLS slope of y_i on (1, x) over the last `window` bars, for every asset and row.

    window: bars (callers convert durations with `to_periods`).
    min_periods: valid (y_i, x) pairs needed in the window; default half the window (>= 3), so
        a single missing bar does not blank the estimate for a whole window.
    Row t uses rows t-window+1 .. t only.
    """
    window, min_periods = check_window(window, min_periods, least=2)
    beta, _, _ = _slope(_rolling_moments(y, x, window), min_periods)
    return as_frame(beta, y)


def rolling_ols_beta_se(
    y: pd.DataFrame, x: pd.Series, window: int, min_periods: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(beta, standard error) of the rolling OLS slope; the classical (homoskedastic) OLS s.e.

    se^2 = s^2 / Sxx_c with s^2 = RSS / (n - 2) and RSS = Syy_c - Sxy_c^2 / Sxx_c (clipped at 0
    against round-off for near-perfect fits), as statsmodels' `OLS(...).fit().bse`.
    """
    window, min_periods = check_window(window, min_periods, least=3)
    m = _rolling_moments(y, x, window)
    beta, sxx_c, sxy_c = _slope(m, min_periods)
    n = m["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        syy_c = m["syy"] - m["sy"] ** 2 / n
        rss = np.maximum(syy_c - sxy_c * beta, 0.0)
        se = np.sqrt(rss / (n - 2.0) / sxx_c)
    se = np.where(np.isfinite(beta), se, np.nan)
    return as_frame(beta, y), as_frame(se, y)
