"""Exact conditional moments of the simulated returns, and the true betas they imply.

The simulator's bar-t returns are linear in the latent drivers g_t (DRIVERS order) plus
independent idiosyncratic noise:

    r_t = B_t g_t + e_t,        Cov(g_t) = Omega_t,  Cov(e_t) = D_t (diagonal),
    f_t = g_t[2:]               (the six observed cross-market factor returns)

so the conditional covariance of (r_t, f_t) is Sigma_t = B~_t Omega_t B~_t' + D~_t with
B~_t = [B_t; 0 I].  Everything here is vectorised over t with einsum; no loops over bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_CRYPTO_DRIVERS = 2  # MKT, BTC_SPEC come before the factors in DRIVERS


@dataclass(frozen=True)
class TrueMoments:
    """Per-bar conditional moments and betas (T rows)."""

    var_assets: np.ndarray  # (T, N) variance of each asset's bar return
    beta_btc: np.ndarray  # (T, N) cov(r_i, r_btc) / var(r_btc)
    beta_ew: np.ndarray  # (T, N) cov(r_i, r_ew) / var(r_ew), r_ew = mean of the N simple returns
    var_btc: np.ndarray  # (T,)
    var_ew: np.ndarray  # (T,)
    factor_betas: np.ndarray  # (T, N, M) population multiple-regression coefficients of r_i on f_t


def driver_covariance(vols: np.ndarray, chol: np.ndarray, regime: np.ndarray) -> np.ndarray:
    """Omega_t = S_t C_k S_t from per-bar vols S_t (T, D) and regime correlation Cholesky factors."""
    corr = np.einsum("kij,klj->kil", chol, chol)[regime]  # (T, D, D)
    return vols[:, :, None] * corr * vols[:, None, :]


def true_moments(loadings: np.ndarray, omega: np.ndarray, idio_var: np.ndarray, btc: int = 0) -> TrueMoments:
    """True betas of every asset to BTC, to the equal-weighted composite, and to the factors.

    loadings: (T, N, D) B_t; omega: (T, D, D); idio_var: (T, N) diagonal of D_t.
    The factor betas are the coefficients of the population regression of r_i on all six
    factor returns jointly, Omega_ff^-1 Cov(f, r_i): what a long multi-factor OLS estimates,
    and (unlike the direct loadings) identified from observable data even though the crypto
    market factor is correlated with equities.
    """
    bo = np.einsum("tnd,tde->tne", loadings, omega)  # (T, N, D)
    sigma = np.einsum("tne,tme->tnm", bo, loadings)  # (T, N, N)
    n = loadings.shape[1]
    diag = np.arange(n)
    sigma[:, diag, diag] += idio_var
    var_assets = sigma[:, diag, diag]
    var_btc = sigma[:, btc, btc]
    beta_btc = sigma[:, :, btc] / var_btc[:, None]
    cov_ew = sigma.mean(axis=2)  # Sigma w with w = 1/N
    var_ew = cov_ew.mean(axis=1)  # w' Sigma w
    beta_ew = cov_ew / var_ew[:, None]
    k = N_CRYPTO_DRIVERS
    omega_ff = omega[:, k:, k:]  # (T, M, M)
    cov_fr = bo[:, :, k:]  # (T, N, M): Cov(r_i, f) = B Omega[:, f]
    factor_betas = np.linalg.solve(omega_ff, np.swapaxes(cov_fr, 1, 2))  # (T, M, N)
    return TrueMoments(
        var_assets=var_assets,
        beta_btc=beta_btc,
        beta_ew=beta_ew,
        var_btc=var_btc,
        var_ew=var_ew,
        factor_betas=np.swapaxes(factor_betas, 1, 2),
    )
