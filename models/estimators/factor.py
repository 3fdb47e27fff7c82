"""From multi-factor loadings to the total beta on one benchmark.

A partial coefficient (the loading on BTC holding the crypto composite and the macro factors
fixed) is not the beta a hedger trades against: the forward target is the plain OLS slope on
the benchmark.  Under the factor model y = a + sum_j c_j f_j + e (e uncorrelated with the
factors), the total beta on benchmark b = f_b is

    beta_b = Cov(y, f_b) / Var(f_b) = c_b + sum_{j != b} c_j * Cov(f_j, f_b) / Var(f_b),

so slow structural loadings combine with the *current* factor co-movement (an EWMA slope of
each factor on the benchmark).  With the loadings and covariances from the same sample this is
exactly the univariate OLS slope (the omitted-variable identity); different horizons for the
two make it a distinct forecast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.estimators.ewma import ewma_beta


def factor_implied_beta(
    coefs: dict[str, pd.DataFrame],
    X: pd.DataFrame,
    target: str,
    halflife: float,
    min_periods: int | None = None,
) -> pd.DataFrame:
    """Total beta on `target` implied by loadings `coefs` (column -> T x N) and factor co-movement.

    coefs: loadings on every column of X (as from `multifactor_ols_coefs` or
        `kalman_multifactor_beta`); a NaN loading on a non-target factor (e.g. a factor left
        out of a window because it was constant) contributes nothing.
    halflife: bars of the EWMA slope of each other factor on the target (causal, rows <= t).
    Result NaN where the target loading is NaN or a needed factor slope is not yet defined.
    """
    if target not in X.columns or target not in coefs:
        raise ValueError(f"target {target!r} must be a column of X and a key of coefs")
    out = coefs[target].to_numpy(dtype=np.float64, na_value=np.nan).copy()
    others = [c for c in X.columns if c != target]
    if others:
        slopes = ewma_beta(X[others], X[target], halflife, min_periods).to_numpy()  # (T, P-1)
        for j, name in enumerate(others):
            c = coefs[name].to_numpy(dtype=np.float64, na_value=np.nan)
            s = slopes[:, j : j + 1]
            contrib = np.where(np.isnan(c), 0.0, c) * s  # NaN slope (too early) -> NaN result
            out = out + contrib
    ref = coefs[target]
    return pd.DataFrame(out, index=ref.index, columns=ref.columns)
