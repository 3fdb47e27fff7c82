"""Kalman betas against statsmodels' state-space filter and a plain per-asset textbook loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.statespace.mlemodel import MLEModel

from adaptive_beta.models.estimators.baselines import kalman_beta, kalman_multifactor_beta, rolling_ols_beta


def _statsmodels_filter(y, H, Q, R, a0, P0):
    """Filtered states (T, d) of y_t = H_t s_t + e_t, s_t = s_{t-1} + u_t with statsmodels."""
    T, d = H.shape
    mod = MLEModel(y, k_states=d)
    mod["design"] = H.T[None]
    mod["obs_cov"] = [[R]]
    mod["transition"] = np.eye(d)
    mod["selection"] = np.eye(d)
    mod["state_cov"] = Q
    mod.ssm.initialize_known(np.asarray(a0, float), np.asarray(P0, float))
    return mod.ssm.filter().filtered_state.T


def _series(T=300, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, T)
    beta = 1.0 + np.cumsum(rng.normal(0, 0.03, T))
    y = 0.001 + beta * x + rng.normal(0, 0.01, T)
    return x, y, beta


@pytest.mark.parametrize("intercept", [True, False])
def test_kalman_beta_with_fixed_variances_equals_statsmodels_filtered_state(intercept):
    x, y, _ = _series()
    y[[0, 7, 50, 51, 52, 200]] = np.nan  # missing observations are skipped (prediction only)
    y[0] = 0.01  # the filter starts at the first valid row, as the statsmodels initial state
    R, V, delta, ad = 1e-4, 4e-4, 2e-3, 1e-2
    got = kalman_beta(
        pd.DataFrame({"a": y}),
        pd.Series(x),
        delta,
        intercept=intercept,
        alpha_delta=ad,
        obs_var=R,
        x_var=V,
        beta0=0.8,
        beta_var0=0.5,
        min_periods=1,
    )["a"].to_numpy()
    if intercept:
        H, Q, a0, P0 = (
            np.column_stack([np.ones_like(x), x]),
            np.diag([ad * R, delta * R / V]),
            [0, 0.8],
            np.diag([R, 0.5]),
        )
    else:
        H, Q, a0, P0 = x[:, None], np.array([[delta * R / V]]), [0.8], np.array([[0.5]])
    ref = _statsmodels_filter(y, H, Q, R, a0, P0)[:, -1]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)
    assert np.ptp(got) > 0.5  # the beta really moves


def test_kalman_multifactor_with_fixed_variances_equals_statsmodels_filtered_states():
    rng = np.random.default_rng(3)
    T, P = 250, 3
    X = rng.normal(0, 0.02, (T, P))
    y = X @ [1.2, -0.5, 0.3] + rng.normal(0, 0.01, T)
    y[[30, 31, 100]] = np.nan
    R, delta, ad = 1e-4, 1e-3, 1e-3
    V = {"f0": 4e-4, "f1": 3e-4, "f2": 5e-4}
    cols = list(V)
    got = kalman_multifactor_beta(
        pd.DataFrame({"a": y}),
        pd.DataFrame(X, columns=cols),
        delta,
        alpha_delta=ad,
        obs_var=R,
        x_var=V,
        beta0={"f0": 1.0},
        beta_var0=2.0,
        min_periods=1,
    )
    H = np.column_stack([np.ones(T), X])
    Q = np.diag([ad * R] + [delta * R / V[c] for c in cols])
    ref = _statsmodels_filter(y, H, Q, R, [0, 1.0, 0, 0], np.diag([R, 2.0, 2.0, 2.0]))
    for j, c in enumerate(cols):
        np.testing.assert_allclose(got[c]["a"].to_numpy(), ref[:, j + 1], rtol=0, atol=1e-8)
    assert got["f1"]["a"].iloc[-1] == pytest.approx(-0.5, abs=0.15)


def _textbook_loop(y, x, delta, halflife, beta0=1.0, beta_var0=1.0):
    """Per-asset, per-bar textbook filter with the documented causal variance estimates."""
    lam = 0.5 ** (1 / halflife)
    V = pd.Series(x**2).ewm(halflife=halflife).mean().to_numpy()  # pandas: adjust=True, incl. row t
    V = np.maximum(V, 1e-2 * np.maximum.accumulate(V))
    out = np.full(len(y), np.nan)
    started, num, den = False, 0.0, 0.0
    a = P = None
    for t in range(len(y)):
        valid = np.isfinite(y[t]) and np.isfinite(x[t])
        h = np.array([1.0, x[t]])
        if valid and not started:
            R = (y[t] - beta0 * x[t]) ** 2
            a, P, started = np.array([0.0, beta0]), np.diag([R, beta_var0]), True
        elif started:
            R = num / den
            P = P + np.diag([delta * R, delta * R / V[t]])
        if valid:
            S = h @ P @ h + R
            K = P @ h / S
            v = y[t] - h @ a
            a = a + K * v
            P = P - np.outer(K, K) * S
            num, den = lam * num + v * v, lam * den + 1.0
        if started:
            out[t] = a[1]
    return out


def test_kalman_beta_with_estimated_variances_equals_a_plain_per_asset_loop():
    rng = np.random.default_rng(5)
    T = 400
    x = rng.normal(0, 0.02, T) * np.where(np.arange(T) > 200, 3.0, 1.0)  # a volatility regime shift
    Y = np.column_stack([_series(T, s)[1] for s in (6, 7, 8)])
    Y[:60, 1] = np.nan  # listed later
    Y[rng.choice(T, 20, replace=False), 2] = np.nan
    got = kalman_beta(pd.DataFrame(Y), pd.Series(x), 1e-3, var_halflife=30.0, min_periods=1)
    for i in range(3):
        ref = _textbook_loop(Y[:, i], x, 1e-3, 30.0)
        np.testing.assert_allclose(got[i].to_numpy(), ref, rtol=1e-10, atol=1e-12)
    assert got[1].iloc[:60].isna().all() and got[1].iloc[60:].notna().all()


def test_kalman_tracks_a_random_walk_beta_better_than_a_90_bar_rolling_ols():
    x, y, beta = _series(T=1500, seed=11)
    yf, xs = pd.DataFrame({"a": y}), pd.Series(x)
    k = kalman_beta(yf, xs, delta=(0.03**2) * 0.02**2 / 0.01**2, min_periods=90)["a"].to_numpy()
    ols = rolling_ols_beta(yf, xs, 90, min_periods=90)["a"].to_numpy()
    rmse_k = np.sqrt(np.nanmean((k[200:] - beta[200:]) ** 2))
    rmse_ols = np.sqrt(np.nanmean((ols[200:] - beta[200:]) ** 2))
    assert rmse_k < 0.8 * rmse_ols, (rmse_k, rmse_ols)
    assert rmse_k < 0.3


def test_kalman_multifactor_survives_a_long_stale_factor_and_recovers_loadings():
    rng = np.random.default_rng(2)
    T = 3000
    X = rng.normal(0, 0.02, (T, 2))
    X[:1500, 1] = 0.0  # a factor that has not started yet (zero-filled), then moves
    y = X @ [0.9, 0.6] + rng.normal(0, 0.01, T)
    got = kalman_multifactor_beta(
        pd.DataFrame({"a": y}), pd.DataFrame(X, columns=["b", "f"]), 1e-5, beta0={"b": 1.0}
    )
    assert np.isfinite(got["b"]["a"].iloc[20:]).all() and np.isfinite(got["f"]["a"].iloc[20:]).all()
    assert got["f"]["a"].iloc[1400] == 0.0  # no information yet: the prior mean
    assert got["b"]["a"].iloc[-1] == pytest.approx(0.9, abs=0.05)
    assert got["f"]["a"].iloc[-1] == pytest.approx(0.6, abs=0.05)


def test_kalman_is_nan_until_min_periods_and_carries_through_gaps():
    x, y, _ = _series(T=100)
    y[40:50] = np.nan
    got = kalman_beta(pd.DataFrame({"a": y}), pd.Series(x), 1e-3, min_periods=10)["a"]
    assert got.iloc[:9].isna().all() and got.iloc[9:].notna().all()
    assert (got.iloc[40:50] == got.iloc[39]).all()


def test_kalman_beta_of_the_benchmark_on_itself_is_exactly_one_without_warnings():
    x, y, _ = _series(T=200)
    frame = pd.DataFrame({"bench": x, "other": y})
    with np.errstate(all="raise"):
        got = kalman_beta(frame, pd.Series(x), 1e-3)
    np.testing.assert_allclose(got["bench"].iloc[9:], 1.0, atol=1e-9)
    assert got["other"].iloc[9:].notna().all()


@pytest.mark.parametrize(
    ("intercept", "obs_var", "alpha_var0"),
    [(True, None, None), (False, None, None), (True, None, 0.2), (True, 1e-4, None), (False, 1e-4, None)],
)
def test_assets_listed_at_different_bars_filter_as_if_each_were_alone(intercept, obs_var, alpha_var0):
    """Assets share the time loop but not their state: each starts from the prior at its own first bar."""
    rng = np.random.default_rng(11)
    T = 250
    x = rng.normal(0, 0.02, T)
    Y = np.column_stack([_series(T, s)[1] for s in (21, 22, 23, 24)])
    Y[:40, 1] = np.nan  # listed at bar 40
    Y[:41, 2] = np.nan  # and the bar after
    Y[rng.choice(T, 25, replace=False), 3] = np.nan
    kw = dict(intercept=intercept, obs_var=obs_var, alpha_var0=alpha_var0, var_halflife=20.0, min_periods=3)
    together = kalman_beta(pd.DataFrame(Y), pd.Series(x), 1e-3, beta0=0.7, beta_var0=0.4, **kw)
    for i in range(Y.shape[1]):
        alone = kalman_beta(pd.DataFrame({i: Y[:, i]}), pd.Series(x), 1e-3, beta0=0.7, beta_var0=0.4, **kw)
        np.testing.assert_allclose(together[i].to_numpy(), alone[i].to_numpy(), rtol=1e-12, atol=1e-15)
    assert together[1].iloc[:42].isna().all() and together[1].iloc[42:].notna().all()


def test_multifactor_assets_listed_at_different_bars_filter_as_if_each_were_alone():
    rng = np.random.default_rng(12)
    T = 200
    X = pd.DataFrame({"m": rng.normal(0, 0.02, T), "f": rng.normal(0, 0.01, T)})
    Y = 0.9 * X["m"].to_numpy()[:, None] - 0.5 * X["f"].to_numpy()[:, None] + rng.normal(0, 0.01, (T, 3))
    Y[:30, 1] = np.nan
    Y[:75, 2] = np.nan
    kw = dict(beta0={"m": 1.0}, var_halflife=25.0, min_periods=5)
    together = kalman_multifactor_beta(pd.DataFrame(Y), X, 1e-3, **kw)
    for i in range(3):
        alone = kalman_multifactor_beta(pd.DataFrame({i: Y[:, i]}), X, 1e-3, **kw)
        for c in X.columns:
            np.testing.assert_allclose(
                together[c][i].to_numpy(), alone[c][i].to_numpy(), rtol=1e-12, atol=1e-15
            )
    assert together["f"][2].iloc[:79].isna().all() and abs(together["f"][2].iloc[-1] + 0.5) < 0.2
