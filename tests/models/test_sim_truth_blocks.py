"""The true moments computed one block of assets at a time equal the full-covariance formulas bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_beta.models.sim import truth


def _inputs(T=300, n=9, d=8, seed=3):
    rng = np.random.default_rng(seed)
    loadings = rng.normal(0.5, 0.4, (T, n, d))
    a = rng.normal(0, 0.01, (T, d, d))
    omega = a @ np.swapaxes(a, 1, 2) + 1e-5 * np.eye(d)
    idio = rng.uniform(1e-5, 4e-4, (T, n))
    return loadings, omega, idio


def _full(loadings, omega, idio, btc=0):
    """The (T, N, N) formulas of the simulator before blocking."""
    bo = np.einsum("tnd,tde->tne", loadings, omega)
    sigma = np.einsum("tne,tme->tnm", bo, loadings)
    diag = np.arange(loadings.shape[1])
    sigma[:, diag, diag] += idio
    cov_ew = sigma.mean(axis=2)
    return (
        sigma[:, diag, diag],
        sigma[:, :, btc] / sigma[:, btc, btc][:, None],
        cov_ew / cov_ew.mean(axis=1)[:, None],
    )


@pytest.mark.parametrize("block", [1, 2, 4, 9, 50])
def test_blocked_true_moments_are_bit_identical_to_the_full_covariance(monkeypatch, block):
    loadings, omega, idio = _inputs()
    T, n, _ = loadings.shape
    monkeypatch.setattr(truth, "_BLOCK_NUMBERS", block * T * n)
    got = truth.true_moments(loadings, omega, idio, btc=0)
    var_assets, beta_btc, beta_ew = _full(loadings, omega, idio)
    assert np.array_equal(got.var_assets, var_assets)
    assert np.array_equal(got.beta_btc, beta_btc)
    assert np.array_equal(got.beta_ew, beta_ew)
    assert np.array_equal(got.var_btc, var_assets[:, 0])
    assert got.beta_btc[:, 0] == pytest.approx(np.ones(T), abs=1e-15)  # BTC's beta to itself
    assert got.beta_ew.mean(axis=1) == pytest.approx(np.ones(T), rel=1e-12)  # EW betas average to 1
