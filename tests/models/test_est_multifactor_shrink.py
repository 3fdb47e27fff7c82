"""Multi-factor rolling OLS against statsmodels; Vasicek and Blume shrinkage on hand examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from adaptive_beta.models.estimators.baselines import (
    blume_beta,
    factor_implied_beta,
    multifactor_ols_beta,
    multifactor_ols_coefs,
    rolling_ols_beta,
    vasicek_beta,
)


def _factors(T=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(0, 0.02, (T, 4)), columns=["BTC", "EW", "SPY", "DXY"])
    X["EW"] += 0.5 * X["BTC"]  # correlated benchmarks, as in the product
    y = pd.DataFrame(
        {
            "A": X @ [1.1, 0.4, -0.3, 0.2] + rng.normal(0, 0.01, T),
            "B": X @ [0.3, 0.9, 0.0, -0.5] + rng.normal(0, 0.02, T),
        }
    )
    return y, X


def test_multifactor_coefficients_match_statsmodels_ols_on_windows_with_gaps():
    y, X = _factors()
    y.iloc[20:50, 0] = np.nan
    y.iloc[[70, 90, 91], 1] = np.nan
    X.iloc[[120, 121], 2] = np.nan  # a missing factor row drops the row for every asset
    window = 80
    coefs = multifactor_ols_coefs(y, X, window)
    checked = 0
    for t in (40, 60, 99, 130, 250, 399):
        for col in range(2):
            sl = slice(max(0, t - window + 1), t + 1)
            d = pd.concat([y.iloc[sl, col], X.iloc[sl]], axis=1).dropna()
            if len(d) < window // 2:  # default min_periods: half the window
                assert np.isnan(coefs["BTC"].iloc[t, col])
                continue
            checked += 1
            ref = sm.OLS(d.iloc[:, 0], sm.add_constant(d.iloc[:, 1:])).fit().params
            for name in X.columns:
                assert coefs[name].iloc[t, col] == pytest.approx(ref[name], rel=1e-9, abs=1e-12)
    assert checked == 10
    assert multifactor_ols_beta(y, X, window, "BTC").equals(coefs["BTC"])


def test_multifactor_window_with_a_stale_factor_is_nan_or_drops_that_factor():
    y, X = _factors()
    X.iloc[150:260, 2] = 0.0  # SPY not moving (weekend / holiday-like stale stretch)
    window = 60
    strict = multifactor_ols_beta(y, X, window, "BTC")
    assert strict.iloc[209:260].isna().all().all()
    assert strict.iloc[208].notna().all() and strict.iloc[320].notna().all()
    loose = multifactor_ols_coefs(y, X, window, drop_constant=True)
    t = 240
    d = pd.concat(
        [y.iloc[t - window + 1 : t + 1, 0], X.iloc[t - window + 1 : t + 1].drop(columns="SPY")], axis=1
    )
    ref = sm.OLS(d.iloc[:, 0], sm.add_constant(d.iloc[:, 1:])).fit().params
    assert np.isnan(loose["SPY"].iloc[t, 0])
    for name in ("BTC", "EW", "DXY"):
        assert loose[name].iloc[t, 0] == pytest.approx(ref[name], rel=1e-9)


def test_multifactor_collinear_regressors_give_nan_not_garbage():
    y, X = _factors(T=200)
    X["EW2"] = 2.0 * X["EW"]
    got = multifactor_ols_beta(y, X, 50, "BTC")
    assert got.isna().all().all()


def test_vasicek_hand_example():
    beta = pd.DataFrame([[0.5, 1.0, 1.5, np.nan]], columns=list("abcd"))
    se = pd.DataFrame([[0.1, 0.2, 0.3, 0.1]], columns=list("abcd"))
    # mean 1.0; cs var (ddof=1) 0.25; mean se^2 = (0.01+0.04+0.09)/3 = 0.14/3; prior var 0.25-0.046667
    pv = 0.25 - 0.14 / 3
    want = [
        pv / (pv + s2) * b + (1 - pv / (pv + s2)) * 1.0 for b, s2 in [(0.5, 0.01), (1.0, 0.04), (1.5, 0.09)]
    ]
    got = vasicek_beta(beta, se)
    np.testing.assert_allclose(got.iloc[0, :3], want, rtol=1e-12)
    np.testing.assert_allclose(
        want, [0.5234375, 1.0, 1.3465909], atol=1e-7
    )  # 0.5*61/64+3/64, 1, 1.5*61/88+27/88
    assert np.isnan(got.iloc[0, 3])


def test_vasicek_floor_and_given_prior():
    beta = pd.DataFrame([[0.9, 1.1]], columns=["a", "b"])
    se = pd.DataFrame([[1.0, 1.0]], columns=["a", "b"])  # noise swamps the spread: floor binds
    got = vasicek_beta(beta, se, floor_frac=0.1)
    w = 0.1 * 0.02 / (0.1 * 0.02 + 1.0)
    np.testing.assert_allclose(got.iloc[0], [1.0 - 0.1 * w, 1.0 + 0.1 * w], rtol=1e-12)
    given = vasicek_beta(beta, se, prior_mean=1.2, prior_var=1.0)
    np.testing.assert_allclose(given.iloc[0], [0.5 * 0.9 + 0.6, 0.5 * 1.1 + 0.6], rtol=1e-12)
    single = vasicek_beta(beta[["a"]], se[["a"]])
    assert single.iloc[0, 0] == 0.9  # one asset: no cross-section, unchanged


def test_blume_adjusts_two_thirds_toward_one():
    beta = pd.DataFrame({"a": [1.6, 0.1, np.nan]})
    np.testing.assert_allclose(blume_beta(beta)["a"], [1.4, 0.4, np.nan], rtol=1e-12)
    np.testing.assert_allclose(blume_beta(beta, 0.5)["a"], [1.3, 0.55, np.nan], rtol=1e-12)


def test_factor_implied_beta_with_same_sample_moments_equals_the_univariate_ols_slope():
    # omitted-variable identity: loadings and factor slopes from the same (expanding, equally
    # weighted) sample give back the plain OLS slope on the benchmark
    y, X = _factors(T=300)
    coefs = multifactor_ols_coefs(y, X, window=300, min_periods=30)
    got = factor_implied_beta(coefs, X, "BTC", halflife=1e15, min_periods=3)
    ref = rolling_ols_beta(y, X["BTC"], window=300, min_periods=30)
    np.testing.assert_allclose(got.to_numpy()[30:], ref.to_numpy()[30:], rtol=1e-7)
    # ... and the partial loading alone is a different number (EW is half BTC)
    assert abs(coefs["BTC"].iloc[-1, 0] - ref.iloc[-1, 0]) > 0.1


def test_factor_implied_beta_hand_example_with_pandas_ewm_slopes():
    y, X = _factors(T=200)
    idx, cols = y.index, y.columns
    coefs = {
        "BTC": pd.DataFrame(1.0, index=idx, columns=cols),
        "EW": pd.DataFrame(0.5, index=idx, columns=cols),
        "SPY": pd.DataFrame(np.nan, index=idx, columns=cols),  # left out: contributes nothing
        "DXY": pd.DataFrame(-2.0, index=idx, columns=cols),
    }
    got = factor_implied_beta(coefs, X, "BTC", halflife=20.0)
    slope = {c: X[c].ewm(halflife=20).cov(X["BTC"]) / X["BTC"].ewm(halflife=20).var() for c in ("EW", "DXY")}
    want = 1.0 + 0.5 * slope["EW"] - 2.0 * slope["DXY"]
    np.testing.assert_allclose(got["A"].to_numpy()[20:], want.to_numpy()[20:], rtol=1e-9)
    assert slope["EW"].iloc[-1] == pytest.approx(0.5, abs=0.1)  # EW = 0.5 BTC + noise: the data are live


def test_multifactor_in_asset_blocks_equals_all_at_once(monkeypatch):
    import adaptive_beta.models.estimators.rolling as est_rolling

    y, X = _factors(T=300)
    y["C"] = y["A"].where(np.arange(300) > 100)
    whole = multifactor_ols_coefs(y, X, 60)
    monkeypatch.setattr(est_rolling, "_BLOCK_NUMBERS", 1)  # one asset per block
    blocks = multifactor_ols_coefs(y, X, 60)
    for name in X.columns:
        np.testing.assert_array_equal(whole[name].to_numpy(), blocks[name].to_numpy())
