"""Rolling OLS, EWMA and Welch betas against independent references (statsmodels, pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from adaptive_beta.models.estimators.baselines import (
    ewma_beta,
    rolling_ols_beta,
    rolling_ols_beta_se,
    welch_beta,
    winsorise_to_band,
)


def _data(T=400, N=3, seed=0, gaps=True):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=T, freq="D", tz="UTC")
    x = pd.Series(rng.standard_t(4, T) * 0.02, index=idx, name="BTC")
    betas = np.array([1.3, 0.5, -0.4][:N])
    y = pd.DataFrame(
        x.to_numpy()[:, None] * betas + rng.normal(0, 0.015, (T, N)) + 1e-3,
        index=idx,
        columns=[f"A{i}" for i in range(N)],
    )
    if gaps:
        y.iloc[30:45, 0] = np.nan  # a listing gap
        y.iloc[rng.choice(T, 25, replace=False), 1] = np.nan  # scattered missing bars
        x.iloc[[100, 101, 250]] = np.nan
    return y, x


def _ols_ref(y, x, t, window, col):
    sl = slice(max(0, t - window + 1), t + 1)
    d = pd.concat([y.iloc[sl, col], x.iloc[sl]], axis=1).dropna()
    fit = sm.OLS(d.iloc[:, 0].to_numpy(), sm.add_constant(d.iloc[:, 1].to_numpy())).fit()
    return fit.params[1], fit.bse[1], len(d)


@pytest.mark.parametrize("window", [20, 60, 90])
def test_rolling_ols_slope_and_se_match_statsmodels_on_random_windows_with_gaps(window):
    y, x = _data()
    beta, se = rolling_ols_beta_se(y, x, window)
    plain = rolling_ols_beta(y, x, window)
    rng = np.random.default_rng(window)
    checked = 0
    for t in rng.choice(np.arange(window, len(y)), 15, replace=False):
        for col in range(y.shape[1]):
            b_ref, se_ref, n = _ols_ref(y, x, t, window, col)
            if n < (window + 1) // 2:
                assert np.isnan(beta.iloc[t, col])
                continue
            assert beta.iloc[t, col] == pytest.approx(b_ref, rel=1e-9, abs=1e-12)
            assert plain.iloc[t, col] == pytest.approx(b_ref, rel=1e-9, abs=1e-12)
            assert se.iloc[t, col] == pytest.approx(se_ref, rel=1e-8)
            checked += 1
    assert checked >= 30


def test_rolling_ols_is_nan_until_min_periods_valid_pairs():
    y, x = _data(gaps=False)
    beta = rolling_ols_beta(y, x, 30, min_periods=10)
    assert beta.iloc[:9].isna().all().all()
    assert beta.iloc[9].notna().all()


def test_rolling_ols_constant_benchmark_window_gives_nan_not_inf():
    y, x = _data(gaps=False)
    x.iloc[100:140] = 0.0  # a stale benchmark
    beta = rolling_ols_beta(y, x, 30)
    assert beta.iloc[129:140].isna().all().all()
    assert np.isfinite(beta.iloc[128]).all() and np.isfinite(beta.iloc[150]).all()


@pytest.mark.parametrize("halflife", [5.0, 22.5, 60.0])
def test_ewma_beta_matches_pandas_ewm_cov_over_var_on_pairwise_valid_rows(halflife):
    y, x = _data()
    got = ewma_beta(y, x, halflife, min_periods=5)
    for col in y.columns:
        ym, xm = y[col].where(x.notna()), x.where(y[col].notna())
        ref = (
            ym.ewm(halflife=halflife, min_periods=5).cov(xm) / xm.ewm(halflife=halflife, min_periods=5).var()
        )
        np.testing.assert_allclose(got[col].to_numpy(), ref.to_numpy(), rtol=1e-9, atol=1e-12)
        assert got[col].notna().sum() >= 300


def test_welch_winsorisation_clips_to_the_band_between_minus_2x_and_4x():
    idx = pd.RangeIndex(4)
    x = pd.Series([0.01, -0.01, 0.01, 0.0], index=idx)
    y = pd.DataFrame({"a": [0.10, 0.10, -0.05, 0.03]}, index=idx)
    got = winsorise_to_band(y, x)["a"].to_numpy()
    np.testing.assert_allclose(got, [0.04, 0.02, -0.02, 0.0])


def test_welch_beta_equals_statsmodels_wls_with_exponential_weights_on_winsorised_returns():
    y, x = _data(T=300)
    halflife = 40.0
    got = welch_beta(y, x, halflife)
    yw = winsorise_to_band(y, x)
    decay = 0.5 ** (1 / halflife)
    for t in (120, 200, 299):
        for col in range(y.shape[1]):
            d = pd.concat([yw.iloc[: t + 1, col], x.iloc[: t + 1]], axis=1)
            age = (t - np.arange(t + 1)).astype(float)
            keep = d.notna().all(axis=1).to_numpy()
            fit = sm.WLS(
                d.iloc[:, 0].to_numpy()[keep],
                sm.add_constant(d.iloc[:, 1].to_numpy()[keep]),
                weights=decay ** age[keep],
            ).fit()
            assert got.iloc[t, col] == pytest.approx(fit.params[1], rel=1e-9)
    # winsorising matters: the heavy-tailed data moved the slope
    assert not np.allclose(got.iloc[-1], ewma_beta(y, x, halflife).iloc[-1], rtol=1e-6)
