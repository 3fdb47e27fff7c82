"""Exact conditional moments of the simulated returns, and the true betas they imply.

The simulator's bar-t returns are linear in the latent drivers g_t (DRIVERS order) plus
independent idiosyncratic noise:

    r_t = B_t g_t + e_t,        Cov(g_t) = Omega_t,  Cov(e_t) = D_t (diagonal),
    f_t = g_t[2:]               (the six observed cross-market factor returns)

so the conditional covariance of (r_t, f_t) is Sigma_t = B~_t Omega_t B~_t' + D~_t with
B~_t = [B_t; 0 I].  Everything here is vectorised over t with einsum; no loops over bars
(only over blocks of assets, to bound memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_CRYPTO_DRIVERS = 2  # MKT, BTC_SPEC come before the factors in DRIVERS
# Largest block of the covariance (numbers) built at once: ~100 MB of float64
_BLOCK_NUMBERS = 1.25e7


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


def _covariance_rows(
    bo: np.ndarray, loadings: np.ndarray, idio_var: np.ndarray, btc: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(var_assets, cov(r_i, r_btc), cov(r_i, r_ew)), each (T, N), from Sigma_t one asset block at a time.

    Why blocks: the full Sigma is (T, N, N), 5.6 GB for 200 assets x 2 years hourly, while each
    asset's moments need only its own row of Sigma.  A block of rows is computed with the same
    einsum and reduced with the same mean as the full array, so the numbers are bit-identical.
    """
    T, n, _ = bo.shape
    block = max(1, int(_BLOCK_NUMBERS // max(1, T * n)))
    var_assets = np.empty((T, n))
    cov_btc = np.empty((T, n))
    cov_ew = np.empty((T, n))
    for s in range(0, n, block):
        e = min(n, s + block)
        rows = np.arange(e - s)
        sigma = np.einsum("tne,tme->tnm", bo[:, s:e], loadings)  # (T, block, N): rows s..e of Sigma
        sigma[:, rows, s + rows] += idio_var[:, s:e]
        var_assets[:, s:e] = sigma[:, rows, s + rows]
        cov_btc[:, s:e] = sigma[:, :, btc]
        cov_ew[:, s:e] = sigma.mean(axis=2)  # Sigma w with w = 1/N
    return var_assets, cov_btc, cov_ew


def true_moments(loadings: np.ndarray, omega: np.ndarray, idio_var: np.ndarray, btc: int = 0) -> TrueMoments:
    """True betas of every asset to BTC, to the equal-weighted composite, and to the factors.

    loadings: (T, N, D) B_t; omega: (T, D, D); idio_var: (T, N) diagonal of D_t.
    The factor betas are the coefficients of the population regression of r_i on all six
    factor returns jointly, Omega_ff^-1 Cov(f, r_i): what a long multi-factor OLS estimates,
    and (unlike the direct loadings) identified from observable data even though the crypto
    market factor is correlated with equities.
    """
    bo = np.einsum("tnd,tde->tne", loadings, omega)  # (T, N, D)
    var_assets, cov_btc, cov_ew = _covariance_rows(bo, loadings, idio_var, btc)
    var_btc = var_assets[:, btc]
    beta_btc = cov_btc / var_btc[:, None]
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
