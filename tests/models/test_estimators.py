"""Properties of every classical estimator (causality, recovery, equivariance) and the baseline family."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.estimators.baselines import (
    BaselineConfig,
    baseline_forecasts,
    ewma_beta,
    kalman_beta,
    multifactor_ols_beta,
    rolling_ols_beta,
    rolling_ols_beta_se,
    welch_beta,
)


def _market(T=500, N=4, freq="1D", seed=0, betas=(0.6, 1.0, 1.4, 2.0)):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2023-01-01", periods=T, freq=freq, tz="UTC")
    s = 0.03 * np.sqrt(pd.Timedelta(freq) / pd.Timedelta("1D"))
    bench = pd.DataFrame(rng.normal(0, s, (T, 2)), index=idx, columns=["BTCUSDT", "CRYPTO_EW"])
    bench["CRYPTO_EW"] += 0.3 * bench["BTCUSDT"]
    factors = pd.DataFrame(rng.normal(0, s / 3, (T, 3)), index=idx, columns=["SPY", "GLD", "DXY"])
    factors.iloc[: T // 4, 0] = np.nan  # a factor that starts later
    factors.iloc[rng.choice(T, 20, replace=False), 1] = np.nan
    b = np.asarray(betas[:N])
    y = pd.DataFrame(
        bench["BTCUSDT"].to_numpy()[:, None] * b + rng.normal(0, s, (T, N)),
        index=idx,
        columns=[f"C{i}" for i in range(N)],
    )
    y.iloc[: T // 5, 0] = np.nan  # listed later
    y.iloc[rng.choice(T, 15, replace=False), 2] = np.nan
    return y, bench, factors


ESTIMATORS = {
    "rolling_ols": lambda y, x: rolling_ols_beta(y, x, 60),
    "rolling_se": lambda y, x: rolling_ols_beta_se(y, x, 60)[1],
    "ewma": lambda y, x: ewma_beta(y, x, 20.0),
    "welch": lambda y, x: welch_beta(y, x, 30.0),
    "kalman": lambda y, x: kalman_beta(y, x, 1e-3),
    "multifactor": lambda y, x: multifactor_ols_beta(
        y, pd.concat([x, x.shift(1).fillna(0.0)], axis=1, keys=["m", "l"]), 60, "m"
    ),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_output_at_t_ignores_rows_after_t(name):
    y, bench, _ = _market(T=300)
    x = bench["BTCUSDT"]
    base = ESTIMATORS[name](y, x)
    t = 180
    y2, x2 = y.copy(), x.copy()
    rng = np.random.default_rng(1)
    y2.iloc[t + 1 :] = rng.normal(0, 0.5, y2.iloc[t + 1 :].shape)
    x2.iloc[t + 1 :] = rng.normal(0, 0.5, len(x2) - t - 1)
    moved = ESTIMATORS[name](y2, x2)
    np.testing.assert_array_equal(base.iloc[: t + 1].to_numpy(), moved.iloc[: t + 1].to_numpy())
    assert not np.allclose(base.iloc[t + 1 :].fillna(0).to_numpy(), moved.iloc[t + 1 :].fillna(0).to_numpy())
    assert base.iloc[t].notna().sum() >= 3


@settings(max_examples=25, deadline=None)
@given(
    c=st.floats(-1.5, 3.5),
    noise=st.floats(0.0, 0.3),
    seed=st.integers(0, 10_000),
)
def test_beta_of_c_times_x_plus_noise_is_recovered(c, noise, seed):
    rng = np.random.default_rng(seed)
    T = 400
    x = pd.Series(rng.normal(0, 0.02, T))
    y = pd.DataFrame({"a": c * x + noise * 0.02 * rng.normal(size=T)})
    tol = 0.05 + 0.6 * noise  # ~4 s.e. of the slope over the effective sample
    assert rolling_ols_beta(y, x, 200)["a"].iloc[-1] == pytest.approx(c, abs=tol)
    assert ewma_beta(y, x, 80.0)["a"].iloc[-1] == pytest.approx(c, abs=tol)
    assert kalman_beta(y, x, 1e-4)["a"].iloc[-1] == pytest.approx(c, abs=tol + 0.05)
    if noise < 0.05:  # inside the winsorising band nothing is clipped
        assert welch_beta(y, x, 80.0)["a"].iloc[-1] == pytest.approx(c, abs=tol)


@settings(max_examples=25, deadline=None)
@given(k=st.floats(-50.0, 50.0).filter(lambda v: abs(v) > 1e-3), seed=st.integers(0, 10_000))
def test_ols_ewma_and_multifactor_betas_scale_with_the_asset_return(k, seed):
    rng = np.random.default_rng(seed)
    T = 150
    X = pd.DataFrame(rng.normal(0, 0.02, (T, 2)), columns=["m", "f"])
    y = pd.DataFrame({"a": 0.8 * X["m"] + rng.normal(0, 0.02, T), "b": rng.normal(0, 0.02, T)})
    x = X["m"]
    for f in (
        lambda yy: rolling_ols_beta(yy, x, 50),
        lambda yy: rolling_ols_beta_se(yy, x, 50)[0],
        lambda yy: ewma_beta(yy, x, 15.0),
        lambda yy: multifactor_ols_beta(yy, X, 50, "m"),
    ):
        np.testing.assert_allclose(f(k * y).to_numpy(), k * f(y).to_numpy(), rtol=1e-9, atol=1e-12)
    se1, se2 = rolling_ols_beta_se(y, x, 50)[1], rolling_ols_beta_se(k * y, x, 50)[1]
    np.testing.assert_allclose(se2.to_numpy(), abs(k) * se1.to_numpy(), rtol=1e-8)


EXPECTED_NAMES = {
    "rolling_ols_30d",
    "rolling_ols_60d",
    "rolling_ols_90d",
    "rolling_ols_180d",
    "rolling_ols_365d",
    "ewma_hl30d",
    "ewma_hl90d",
    "welch_hl60d",
    "welch_hl120d",
    "kalman_rw",
    "kalman_mf",
    "vasicek_90d",
    "blume_90d",
    "multifactor_ols_180d",
}


def test_baseline_forecasts_names_shapes_and_recovered_betas_on_daily_data():
    y, bench, factors = _market(T=600)
    out = baseline_forecasts(y, bench, factors, pd.Timedelta("1D"))
    assert set(out) == EXPECTED_NAMES
    truth = np.array([0.6, 1.0, 1.4, 2.0])
    for name, per_bench in out.items():
        assert set(per_bench) == {"BTCUSDT", "CRYPTO_EW"}
        frame = per_bench["BTCUSDT"]
        assert (
            frame.shape == y.shape and frame.index.equals(y.index) and list(frame.columns) == list(y.columns)
        )
        last = frame.iloc[-1].to_numpy()
        if name.startswith("blume"):
            last = (last - 1 / 3) * 1.5
        tol = 0.45 if name in {"rolling_ols_30d", "ewma_hl30d"} else 0.3
        assert np.all(np.abs(last - truth) < tol), (name, last)
    # duration conversion: 30d on daily bars is a 30-bar window with min_periods 15
    np.testing.assert_array_equal(
        out["rolling_ols_30d"]["BTCUSDT"].to_numpy(), rolling_ols_beta(y, bench["BTCUSDT"], 30, 15).to_numpy()
    )
    # the asset listed at row 120 has no 90d beta before 45 valid rows
    assert out["rolling_ols_90d"]["BTCUSDT"]["C0"].first_valid_index() == y.index[120 + 44]


def test_baseline_forecasts_convert_durations_to_8h_bars():
    y, bench, factors = _market(T=900, freq="8h")
    cfg = BaselineConfig(
        rolling_windows=("30d",), ewma_halflives=("1.5d",), welch_halflives=("60d",), kalman_mf=False
    )
    out = baseline_forecasts(y, bench, factors, pd.Timedelta("8h"), cfg)
    assert set(out) == {
        "rolling_ols_30d",
        "ewma_hl1.5d",
        "welch_hl60d",
        "kalman_rw",
        "vasicek_90d",
        "blume_90d",
        "multifactor_ols_180d",
    }
    x = bench["CRYPTO_EW"]
    np.testing.assert_array_equal(
        out["rolling_ols_30d"]["CRYPTO_EW"].to_numpy(), rolling_ols_beta(y, x, 90, 45).to_numpy()
    )
    np.testing.assert_allclose(
        out["ewma_hl1.5d"]["CRYPTO_EW"].to_numpy(), ewma_beta(y, x, 4.5).to_numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        out["kalman_rw"]["CRYPTO_EW"].to_numpy(),
        kalman_beta(y, x, 1e-4 / 3, var_halflife=180.0, min_periods=90).to_numpy(),
        rtol=1e-12,
    )


def test_baseline_config_rejects_bad_durations_with_the_field():
    with pytest.raises(ValueError, match="invalid duration '30 days'"):
        BaselineConfig(rolling_windows=("30 days",))
    with pytest.raises(ValueError, match="min_frac"):
        BaselineConfig(min_frac=0.0)


def test_every_baseline_at_t_ignores_all_inputs_after_t():
    y, bench, factors = _market(T=400)
    cfg = BaselineConfig(rolling_windows=("30d", "90d"), multifactor_window="60d", kalman_min_periods="10d")
    base = baseline_forecasts(y, bench, factors, pd.Timedelta("1D"), cfg)
    t = 250
    rng = np.random.default_rng(7)
    y2, b2, f2 = y.copy(), bench.copy(), factors.copy()
    for frame in (y2, b2, f2):
        frame.iloc[t + 1 :] = rng.normal(0, 0.2, frame.iloc[t + 1 :].shape)
    moved = baseline_forecasts(y2, b2, f2, pd.Timedelta("1D"), cfg)
    for name in base:
        for b in base[name]:
            before, after = base[name][b].to_numpy(), moved[name][b].to_numpy()
            np.testing.assert_array_equal(before[: t + 1], after[: t + 1], err_msg=f"{name}/{b}")
            assert np.isfinite(before[t]).sum() >= 3, name


@pytest.mark.realdata
def test_baselines_on_real_binance_8h_perps_are_finite_and_plausible(real_data_dir):
    from pathlib import Path

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.durations import to_periods

    manifest = Path(__file__).resolve().parents[2] / "docs" / "datasets" / "binance-perps-8h.toml"
    panel = load_dataset(manifest).slice(start="2024-01-01")
    out = baseline_forecasts(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq)
    assert set(out) == EXPECTED_NAMES
    warm = to_periods("365d", panel.freq)
    for name, per_bench in out.items():
        for b, frame in per_bench.items():
            vals = frame.iloc[warm:].to_numpy()
            assert not np.isinf(vals).any(), (name, b)
            assert np.isfinite(vals).mean() > 0.8, (name, b)
        btc = per_bench["BTCUSDT"]["BTCUSDT"].iloc[warm:]
        np.testing.assert_allclose(btc, 1.0, atol=1e-9, err_msg=name)  # BTC's beta to itself
        eth = per_bench["BTCUSDT"]["ETHUSDT"].iloc[warm:]
        assert 0.8 < eth.median() < 1.8, (name, eth.median())  # ETH moves more than BTC
