"""Cross-sectional shrinkage of betas: Vasicek (1973) Bayesian and Blume (1971) adjustments.

Noisy betas regress toward the cross-sectional mean; shrinking by the ratio of signal to total
variance is the Bayes posterior mean under a normal prior centred on the cross-section.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def vasicek_beta(
    beta: pd.DataFrame,
    se: pd.DataFrame,
    prior_mean: float | pd.Series | None = None,
    prior_var: float | pd.Series | None = None,
    floor_frac: float = 0.1,
) -> pd.DataFrame:
    """Vasicek posterior mean: w * beta + (1 - w) * prior_mean, w = s_p^2 / (s_p^2 + se^2).

    At each row t (only row t is used, so causality follows from the inputs):
    prior_mean: default the cross-sectional mean of the finite betas at t.
    prior_var: default the cross-sectional variance of the betas (ddof=1) minus the mean of
        se^2 over the same assets (the part of the dispersion not explained by estimation
        noise), floored at `floor_frac` times the cross-sectional variance so that a noisy
        cross-section is shrunk hard but never collapsed onto the mean.
    Numbers or per-row Series may be given instead.  Rows with fewer than two finite betas keep
    the beta unchanged when the prior is estimated; cells with NaN beta or se stay NaN.
    """
    if not beta.index.equals(se.index) or not beta.columns.equals(se.columns):
        raise ValueError("vasicek_beta: beta and se must have the same index and columns")
    if not 0.0 <= floor_frac <= 1.0:
        raise ValueError(f"floor_frac must be in [0, 1], got {floor_frac!r}")
    B = beta.to_numpy(dtype=np.float64, na_value=np.nan)
    S2 = se.to_numpy(dtype=np.float64, na_value=np.nan) ** 2
    ok = np.isfinite(B) & np.isfinite(S2)
    Bm = np.where(ok, B, np.nan)
    k = ok.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows before any estimate
        if prior_mean is None:
            mu = np.nanmean(Bm, axis=1)
        else:
            mu = _per_row(prior_mean, beta.index)
        if prior_var is None:
            cs_var = np.nanvar(Bm, axis=1, ddof=1)
            noise = np.nanmean(np.where(ok, S2, np.nan), axis=1)
            pv = np.maximum(cs_var - noise, floor_frac * cs_var)
            pv = np.where(k >= 2, pv, np.nan)
        else:
            pv = _per_row(prior_var, beta.index)
        w = pv[:, None] / (pv[:, None] + S2)
        w = np.where((pv[:, None] + S2) > 0, w, 1.0)  # no noise and no prior spread: keep beta
        out = w * B + (1.0 - w) * mu[:, None]
        out = np.where(np.isfinite(pv)[:, None] & np.isfinite(mu)[:, None], out, B)
    return pd.DataFrame(np.where(ok, out, np.nan), index=beta.index, columns=beta.columns)


def blume_beta(beta: pd.DataFrame, weight: float = 2.0 / 3.0) -> pd.DataFrame:
    """Blume adjustment: weight * beta + (1 - weight) * 1 (the classical 2/3, 1/3 rule)."""
    return weight * beta + (1.0 - weight)


def _per_row(value: float | pd.Series, index: pd.Index) -> np.ndarray:
    if isinstance(value, pd.Series):
        return value.reindex(index).to_numpy(dtype=np.float64, na_value=np.nan)
    return np.full(len(index), float(value))
