"""Metrics against closed forms and statsmodels: hedge identity, DM vs HAC OLS, block bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from adaptive_beta.training.metrics import (
    block_bootstrap_ratio,
    diebold_mariano,
    excess_hedge_var,
    hedge_error,
    loss_differential,
    mae,
    newey_west_lrv,
    r2_oos,
    rmse,
)


def test_rmse_mae_on_a_hand_example_ignore_non_finite_pairs():
    pred = np.array([1.0, 2.0, 3.0, np.nan])
    true = np.array([1.5, 1.0, 3.0, 7.0])
    assert rmse(pred, true) == pytest.approx(np.sqrt((0.25 + 1.0 + 0.0) / 3))
    assert mae(pred, true) == pytest.approx(0.5)


def test_r2_oos_centres_sst_on_the_training_mean_not_the_test_mean():
    true = np.array([1.0, 2.0, 3.0])
    pred = np.array([1.5, 2.0, 2.5])
    # SSE = 0.5; SST around training mean 1.0 = 0 + 1 + 4 = 5
    assert r2_oos(pred, true, 1.0) == pytest.approx(1 - 0.5 / 5)
    # the training mean itself scores 0; the test mean scores > 0 (it peeks)
    assert r2_oos(np.full(3, 1.0), true, 1.0) == pytest.approx(0.0)
    assert r2_oos(np.full(3, 2.0), true, 1.0) == pytest.approx(1 - 2 / 5)


def test_hedge_error_on_a_hand_example():
    # var_i = 4, cov = 1.5, var_b = 1: beta 1 -> 4 - 3 + 1 = 2; beta 2 -> 4 - 6 + 4 = 2
    assert hedge_error([1.0, 2.0], [4.0, 4.0], [1.5, 1.5], [1.0, 1.0]) == pytest.approx(2.0)
    assert hedge_error([1.5], [4.0], [1.5], [1.0]) == pytest.approx(1.75)  # the minimum, at cov/var_b


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 5.0))
def test_excess_hedge_var_is_hedge_error_above_the_realised_beta_hedge(seed, scale):
    rng = np.random.default_rng(seed)
    rb = rng.normal(0, 0.02 * scale, size=(50, 30))  # 50 samples of 30-bar forward windows
    ri = 1.3 * rb + rng.normal(0, 0.03, size=rb.shape)
    var_b, var_i = rb.var(axis=1), ri.var(axis=1)
    cov = ((ri - ri.mean(1, keepdims=True)) * (rb - rb.mean(1, keepdims=True))).mean(axis=1)
    beta = cov / var_b
    beta_hat = beta + rng.normal(0, 0.3, size=beta.shape)
    # direct: the variance of the hedged series over each window
    direct = np.mean((ri - beta_hat[:, None] * rb).var(axis=1))
    assert hedge_error(beta_hat, var_i, cov, var_b) == pytest.approx(direct, rel=1e-10)
    gap = hedge_error(beta_hat, var_i, cov, var_b) - hedge_error(beta, var_i, cov, var_b)
    assert excess_hedge_var(beta_hat, beta, var_b) == pytest.approx(gap, rel=1e-8, abs=1e-14)


def _ma_series(rng, n, q, mean):
    e = rng.normal(size=n + q)
    return np.convolve(e, np.ones(q + 1) / (q + 1), "valid")[:n] + mean


@pytest.mark.parametrize("h", [1, 5, 20])
def test_dm_raw_statistic_equals_statsmodels_hac_t_value_and_pvalue_uses_hln(h):
    rng = np.random.default_rng(h)
    n = 250
    d = _ma_series(rng, n, max(h - 1, 0), 0.15)
    res = sm.OLS(d, np.ones(n)).fit(cov_type="HAC", cov_kwds={"maxlags": 2 * h, "use_correction": False})
    out = diebold_mariano(d, np.zeros(n), h=h)
    assert out.stat_raw == pytest.approx(res.tvalues[0], rel=1e-10)
    hln = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    assert out.stat == pytest.approx(res.tvalues[0] * hln, rel=1e-10)
    assert out.pvalue == pytest.approx(2 * stats.t.sf(abs(res.tvalues[0] * hln), n - 1), rel=1e-10)
    assert out.n == n and out.lags == 2 * h


@pytest.mark.parametrize("h", [10, 30, 90])
def test_dm_default_bandwidth_captures_most_of_the_long_run_variance(h):
    """Overlapping h-bar losses are MA(h-1); a Bartlett bandwidth of h captures ~2/3 of their LRV."""
    rng = np.random.default_rng(h)
    n = 400_000
    d = _ma_series(rng, n, h - 1, 0.0)  # mean of h iid N(0, 1): MA(h-1) with true LRV = 1
    out = diebold_mariano(d, np.zeros(n), h=h)
    lrv = (out.mean_diff / out.stat_raw) ** 2 * n
    assert out.lags == 2 * h
    assert 0.78 <= lrv <= 0.9
    assert newey_west_lrv(d, h) < 0.7  # the old default


def test_dm_averages_the_cross_section_per_timestamp_before_the_hac_variance():
    rng = np.random.default_rng(3)
    la = rng.exponential(size=(120, 5))
    lb = rng.exponential(size=(120, 5))
    la[0, :3] = np.nan  # row 0 averages the two assets with both losses
    d = loss_differential(la, lb)
    assert d[0] == pytest.approx(np.mean(la[0, 3:] - lb[0, 3:]))
    res = sm.OLS(d, np.ones(120)).fit(cov_type="HAC", cov_kwds={"maxlags": 20, "use_correction": False})
    assert diebold_mariano(la, lb, h=10).stat_raw == pytest.approx(res.tvalues[0], rel=1e-10)


def test_dm_rejects_a_clearly_worse_forecaster_and_not_equal_ones():
    rng = np.random.default_rng(0)
    err = rng.normal(size=(300, 4))
    good, bad = err**2, (err + 1.0) ** 2
    assert diebold_mariano(good, bad, h=5).pvalue < 1e-6
    assert diebold_mariano(good, good, h=5).pvalue == 1.0
    same_dist = rng.normal(size=(300, 4)) ** 2
    assert diebold_mariano(good, same_dist, h=5).pvalue > 0.01


def test_bootstrap_ratio_of_identical_losses_is_one_with_ci_containing_one():
    loss = np.random.default_rng(1).exponential(size=(200, 6))
    ratio, lo, hi = block_bootstrap_ratio(loss, loss, block=20, n_boot=300, seed=1)
    assert ratio == 1.0 and lo <= 1.0 <= hi


def test_bootstrap_ratio_recovers_a_known_scale_factor():
    rng = np.random.default_rng(2)
    base = rng.exponential(size=(400, 5))
    ratio, lo, hi = block_bootstrap_ratio(2.5 * base, base, block=30, n_boot=300, seed=0)
    assert ratio == pytest.approx(2.5) and lo == pytest.approx(2.5) and hi == pytest.approx(2.5)
    noisy = base * rng.uniform(2.0, 3.0, size=base.shape)
    ratio, lo, hi = block_bootstrap_ratio(noisy, base, block=30, n_boot=500, seed=0)
    assert ratio == pytest.approx(2.5, abs=0.1)
    assert lo < ratio < hi and lo > 2.2 and hi < 2.8


def test_bootstrap_interval_is_wider_for_autocorrelated_losses_with_blocks_than_without():
    rng = np.random.default_rng(4)
    n = 600
    shared = np.repeat(rng.exponential(size=n // 30), 30)  # losses persistent over 30 rows
    la = (shared * rng.uniform(0.5, 1.5, size=n))[:, None]
    lb = np.ones((n, 1))
    _, lo1, hi1 = block_bootstrap_ratio(la, lb, block=1, n_boot=400, seed=0)
    _, lo30, hi30 = block_bootstrap_ratio(la, lb, block=60, n_boot=400, seed=0)
    assert (hi30 - lo30) > 2.0 * (hi1 - lo1)
