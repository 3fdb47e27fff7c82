"""Classical beta estimators: the baselines the network must beat, and inputs it may use.

Pure functions on wide frames (y: T x N asset returns, x: T benchmark returns, X: T x P factor
returns); windows and half-lives are in bars (callers convert durations with
`models.durations.to_periods`); the value at row t uses rows <= t only; a row counts for asset
i only where y_i and the regressors are finite.  The implementations live in small modules
(`est_rolling`, `est_ewma`, ...); this module is the public surface.
"""

from __future__ import annotations

from models.est_ewma import ewma_beta, welch_beta, winsorise_to_band
from models.est_rolling import rolling_ols_beta, rolling_ols_beta_se

__all__ = [
    "ewma_beta",
    "rolling_ols_beta",
    "rolling_ols_beta_se",
    "welch_beta",
    "winsorise_to_band",
]
