"""The simulator: determinism, exact truth vs sample estimates, regimes, tails, calendar, writer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.data.schema import COMPOSITE_NAME, composite_index, infer_category
from adaptive_beta.models.sim.config import (
    FACTOR_NAMES,
    FACTOR_START,
    PRESETS,
    REGIME_NAMES,
    SimConfig,
    stationary_shares,
)
from adaptive_beta.models.sim.simulator import simulate, simulate_regimes, us_trading_dates
from adaptive_beta.models.sim.write import write_simulation


def _driftless_regimes(preset: str = "calibrated"):
    """A preset's regimes without drifts, so 50k pinned bars do not drive prices to 0 or infinity."""
    return tuple(
        dataclasses.replace(rp, mkt_drift=0.0, factor_drifts=(0.0,) * len(FACTOR_NAMES))
        for rp in SimConfig.from_preset(preset).regimes
    )


# every time-varying part of the loadings and vols switched off
STILL = {
    "loading_drift_sd": (0.0, 0.0, 0.0),
    "loading_slow_sd": (0.0, 0.0, 0.0),
    "alt_common_sd": 0.0,
    "mkt_logvol_sd": 0.0,
    "btc_spec_logvol_sd": 0.0,
    "idio_logvol_sd": 0.0,
}


def flat(preset: str = "calibrated") -> dict:
    """Constant truth within a pinned regime, and prices that stay finite over very long samples."""
    return {**STILL, "regimes": _driftless_regimes(preset)}


FLAT = flat()


@pytest.fixture(scope="module")
def default_result():
    return simulate(SimConfig())


def _ols(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Coefficients (without the intercept) of y on x with an intercept."""
    return _ols_se(y, x)[0]


def _ols_se(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS slopes of y on x (with an intercept) and their classical standard errors."""
    design = np.column_stack([np.ones(len(x)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    s2 = resid @ resid / (len(y) - design.shape[1])
    se = np.sqrt(s2 * np.diag(np.linalg.inv(design.T @ design)))
    return coef[1:], se[1:]


# --- determinism and the written folder ---------------------------------------------------------


def test_same_seed_writes_identical_files_and_other_seed_differs(tmp_path):
    cfg = SimConfig(seed=3, n_assets=3, days=40)
    a = write_simulation(simulate(cfg), tmp_path / "a")
    b = write_simulation(simulate(cfg), tmp_path / "b")
    c = write_simulation(simulate(dataclasses.replace(cfg, seed=4)), tmp_path / "c")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "README.md",
        "assets/BTCUSDT.csv",
        "assets/ETHUSDT.csv",
        "assets/SOLUSDT.csv",
        "dataset.toml",
        *[f"factors/{n}.csv" for n in sorted(FACTOR_NAMES)],
        "simulation.toml",
        "truth/betas.parquet",
        "truth/market.parquet",
    ]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "assets/ETHUSDT.csv").read_bytes() != (c / "assets/ETHUSDT.csv").read_bytes()
    assert (a / "factors/SPX.csv").read_bytes() != (c / "factors/SPX.csv").read_bytes()


def test_written_folder_has_contract_columns_and_round_trips(tmp_path):
    res = simulate(SimConfig(n_assets=3, days=30, freq="8h"))
    out = write_simulation(res, tmp_path / "sim")
    eth = pd.read_csv(out / "assets/ETHUSDT.csv")
    assert list(eth.columns) == [
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "funding_rate",
        "open_interest",
    ]
    assert eth["timestamp"].iloc[:2].tolist() == ["2021-01-01T00:00:00Z", "2021-01-01T08:00:00Z"]
    assert len(eth) == 90
    np.testing.assert_allclose(eth["close"], res.assets["ETHUSDT"]["close"], rtol=1e-9)
    spx = pd.read_csv(out / "factors/SPX.csv")
    assert list(spx.columns) == ["date", "close"]
    betas = pd.read_parquet(out / "truth/betas.parquet")
    assert list(betas.columns[:4]) == ["timestamp", "symbol", "beta_BTCUSDT", f"beta_{COMPOSITE_NAME}"]
    assert [c for c in betas.columns if c.startswith("beta_")][2:] == [f"beta_{n}" for n in FACTOR_NAMES]
    assert str(betas["timestamp"].dt.tz) == "UTC" and len(betas) == 90 * 3
    market = pd.read_parquet(out / "truth/market.parquet")
    assert list(market.columns) == [
        "timestamp",
        "regime",
        "regime_name",
        "var_BTCUSDT",
        f"var_{COMPOSITE_NAME}",
    ]
    assert set(market["regime_name"]) <= set(REGIME_NAMES)
    assert (market["regime_name"] == np.asarray(REGIME_NAMES)[market["regime"]]).all()


def test_writer_refuses_non_empty_folder_unless_forced_and_leaves_no_temp(tmp_path):
    res = simulate(SimConfig(n_assets=2, days=10))
    out = tmp_path / "sim"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_simulation(res, out)
    assert (out / "keep.txt").exists()
    write_simulation(res, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "assets/BTCUSDT.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]  # no temp or backup folders left
    empty = tmp_path / "empty"
    empty.mkdir()
    write_simulation(res, empty)  # an empty folder is fine without force
    assert (empty / "truth/market.parquet").exists()


# --- truth vs estimates -------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("regime", REGIME_NAMES)
def test_true_betas_match_sample_ols_over_50k_bars_in_one_regime(regime, preset):
    res = simulate(
        SimConfig.from_preset(preset, seed=11, n_assets=4, days=50_000, pin_regime=regime, **flat(preset))
    )
    r = res.returns().to_numpy()
    tb = res.truth_betas
    syms = res.config.symbols
    ew = r.mean(axis=1)
    f = res.drivers[list(FACTOR_NAMES)].to_numpy()
    log_vix = (
        np.log(FACTOR_START["VIX"]) + np.r_[0.0, np.cumsum(np.log1p(res.drivers["VIX"].to_numpy()))[:-1]]
    )
    dgs10 = FACTOR_START["DGS10"] + np.r_[0.0, np.cumsum(res.drivers["DGS10"].to_numpy())[:-1]]
    state = np.column_stack([log_vix, dgs10])  # levels before the bar
    for i, sym in enumerate(syms):
        truth = tb.xs(sym, level="symbol")
        assert truth["beta_BTCUSDT"].std() < 1e-12  # constant truth in a pinned regime without drift
        b_btc = _ols(r[:, i], r[:, 0])[0]
        b_ew = _ols(r[:, i], ew)[0]
        assert b_btc == pytest.approx(truth["beta_BTCUSDT"].iloc[0], rel=0.03), sym
        assert b_ew == pytest.approx(truth[f"beta_{COMPOSITE_NAME}"].iloc[0], rel=0.03), sym
        # structural loadings = multiple regression on the six observed factor returns
        # The truth is conditional: control for the lagged VIX / DGS10 levels that set their
        # mean-reversion drifts. Factor vols are small next to crypto vols: judge by standard errors.
        b_f, se_f = _ols_se(r[:, i], np.column_stack([f, state]))
        b_f, se_f = b_f[: len(FACTOR_NAMES)], se_f[: len(FACTOR_NAMES)]
        want = truth[[f"beta_{n}" for n in FACTOR_NAMES]].iloc[0].to_numpy()
        assert np.all(np.abs(b_f - want) < 4.0 * se_f + 0.02 * np.abs(want)), (sym, b_f, want, se_f)
    var_btc = res.truth_market["var_BTCUSDT"].iloc[0]
    assert np.var(r[:, 0]) == pytest.approx(var_btc, rel=0.03)


@pytest.mark.parametrize("preset", PRESETS)
def test_drifting_true_betas_match_ols_as_variance_weighted_average(preset):
    """With loadings and vols moving, a long OLS estimates sum(cov_t) / sum(var_t), not the plain mean."""
    res = simulate(
        SimConfig.from_preset(
            preset, seed=5, n_assets=4, days=50_000, pin_regime="volatile", regimes=_driftless_regimes(preset)
        )
    )
    r = res.returns()
    var_b = res.truth_market["var_BTCUSDT"].to_numpy()
    beta = res.truth_betas["beta_BTCUSDT"].unstack("symbol")[res.config.symbols].to_numpy()
    assert beta[:, 1:].std(axis=0).min() > 0.05  # the truth really moves
    weighted = (beta * var_b[:, None]).sum(axis=0) / var_b.sum()
    for i in range(1, 4):
        assert _ols(r.iloc[:, i].to_numpy(), r.iloc[:, 0].to_numpy())[0] == pytest.approx(
            weighted[i], rel=0.03
        )


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_assets=st.integers(2, 15),
    freq=st.sampled_from(["1d", "8h", "1h"]),
)
def test_cross_sectional_mean_of_ew_betas_is_exactly_one(seed, n_assets, freq):
    res = simulate(SimConfig(seed=seed, n_assets=n_assets, days=6, freq=freq))
    ew = res.truth_betas[f"beta_{COMPOSITE_NAME}"].unstack("symbol")
    np.testing.assert_allclose(ew.mean(axis=1), 1.0, atol=1e-12)
    btc = res.truth_betas.xs("BTCUSDT", level="symbol")["beta_BTCUSDT"]
    np.testing.assert_allclose(btc, 1.0, atol=1e-12)


def test_ew_benchmark_is_the_schema_composite_of_the_simulated_returns(default_result):
    closes = pd.DataFrame({s: df["close"] for s, df in default_result.assets.items()})
    comp = composite_index(closes.pct_change(fill_method=None)).pct_change(fill_method=None)
    # atol: a bar whose mean return is ~1e-6 differs by rounding (~1e-16) only, beyond rtol alone
    np.testing.assert_allclose(
        comp.iloc[2:], default_result.returns().mean(axis=1).iloc[2:], rtol=1e-10, atol=1e-14
    )


def test_intraday_truth_variance_scales_with_bar_length():
    daily = simulate(SimConfig(n_assets=3, days=5, pin_regime="calm", **FLAT)).truth_market
    hourly = simulate(SimConfig(n_assets=3, days=5, freq="1h", pin_regime="calm", **FLAT)).truth_market
    eight = simulate(SimConfig(n_assets=3, days=5, freq="8h", pin_regime="calm", **FLAT)).truth_market
    assert hourly["var_BTCUSDT"].iloc[0] * 24 == pytest.approx(daily["var_BTCUSDT"].iloc[0], rel=1e-12)
    assert eight["var_CRYPTO_EW"].iloc[0] * 3 == pytest.approx(daily["var_CRYPTO_EW"].iloc[0], rel=1e-12)
    assert len(hourly) == 120 and len(eight) == 15


# --- regimes, tails, microstructure ------------------------------------------------------------


@pytest.mark.parametrize(
    "preset,long_run", [("calibrated", [0.670, 0.296, 0.034]), ("legacy", [0.615, 0.323, 0.062])]
)
@pytest.mark.parametrize("freq,days", [("1d", 600_000), ("1h", 150_000)])
def test_regime_durations_and_shares_match_config(freq, days, preset, long_run):
    cfg = SimConfig.from_preset(preset, freq=freq, days=days)
    codes = simulate_regimes(cfg, cfg.n_bars, np.random.default_rng(1))
    change = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(codes)]
    spell_codes, lengths = codes[starts][1:-1], (ends - starts)[1:-1] * cfg.bar_days  # drop censored
    for k, rp in enumerate(cfg.regimes):
        mean_days = lengths[spell_codes == k].mean()
        assert mean_days == pytest.approx(rp.duration_days, rel=0.08), REGIME_NAMES[k]
    shares = np.bincount(codes, minlength=3) / len(codes)
    np.testing.assert_allclose(shares, stationary_shares(cfg.regimes), atol=0.03)
    assert stationary_shares(cfg.regimes) == pytest.approx(long_run, abs=0.002)


def test_default_dataset_visits_every_regime(default_result):
    shares = default_result.truth_market["regime_name"].value_counts(normalize=True)
    assert set(shares.index) == set(REGIME_NAMES)
    # calibrated crashes are short and rare (long-run share 3.4 %, legacy 6.2 %): seed 7 holds 1.8 %
    assert shares.to_dict() == pytest.approx({"calm": 0.901, "volatile": 0.081, "crash": 0.018}, abs=0.001)
    assert len(default_result.truth_market) == 1460 and len(default_result.assets) == 12
    legacy = simulate(SimConfig.from_preset("legacy")).truth_market["regime_name"]
    assert legacy.value_counts(normalize=True).min() > 0.05


def test_idiosyncratic_tails_are_fat_while_drivers_are_gaussian():
    res = simulate(SimConfig(seed=2, n_assets=4, days=40_000, pin_regime="calm", **FLAT))
    r = res.returns().to_numpy()
    g = res.drivers.to_numpy()
    design = np.column_stack([np.ones(len(g)), g])
    resid = r - design @ np.linalg.lstsq(design, r, rcond=None)[0]
    kurt = pd.DataFrame(resid).kurt()  # excess kurtosis; Student-t(4) has infinite kurtosis
    assert kurt.min() > 1.0
    assert res.drivers["SPX"].kurt() == pytest.approx(0.0, abs=0.2)


# calibrated altcoins carry more idiosyncratic and BTC-specific risk: their bar correlation with
# BTC is lower (real 8h perps before 2021-05: 0.55 on average), legacy ones correlate above 0.8
@pytest.mark.parametrize("preset,volatile_corr", [("calibrated", (0.70, 0.75)), ("legacy", (0.83, 0.87))])
def test_altcoins_decouple_from_btc_in_crash(preset, volatile_corr):
    corr = {}
    for regime in ("volatile", "crash"):
        cfg = SimConfig.from_preset(
            preset, seed=4, n_assets=6, days=20_000, pin_regime=regime, **flat(preset)
        )
        r = simulate(cfg).returns()
        corr[regime] = r.corr()["BTCUSDT"].drop("BTCUSDT").mean()
    assert volatile_corr[0] < corr["volatile"] < volatile_corr[1]
    assert corr["crash"] < corr["volatile"] - 0.05


def test_funding_positive_in_calm_negative_in_crash_and_prices_consistent(default_result):
    reg = default_result.truth_market["regime_name"]
    funding = pd.DataFrame({s: df["funding_rate"] for s, df in default_result.assets.items()})
    by_regime = funding.mean(axis=1).groupby(reg).mean()
    assert by_regime["calm"] > 1e-4  # per day = three 8h prints
    assert by_regime["crash"] < -1e-4
    assert funding.abs().max().max() <= 3 * 0.003 + 1e-15
    for df in default_result.assets.values():
        assert (df["low"] > 0).all()
        assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
        assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
        np.testing.assert_allclose(df["open"].iloc[1:], df["close"].iloc[:-1].to_numpy())
        assert (df["volume"] > 0).all() and (df["open_interest"] > 0).all()


def test_hourly_funding_prints_only_on_8h_boundaries():
    eth = simulate(SimConfig(n_assets=2, days=3, freq="1h")).assets["ETHUSDT"]
    closes_hour = (eth.index + pd.Timedelta("1h")).hour
    assert (eth["funding_rate"][closes_hour % 8 != 0] == 0).all()
    assert (eth["funding_rate"][closes_hour % 8 == 0] != 0).all()


# --- factors and calendar ----------------------------------------------------------------------


def test_factor_names_are_categorised_by_the_schema():
    assert {n: infer_category(n) for n in FACTOR_NAMES} == {
        "SPX": "equity",
        "GOLD": "commodity",
        "WTI": "commodity",
        "DXY": "fx",
        "DGS10": "rates",
        "VIX": "volatility",
    }


def test_factor_files_hold_us_trading_dates_only(default_result):
    dates = pd.DatetimeIndex(default_result.factors["SPX"]["date"])
    assert (dates.dayofweek < 5).all()
    assert not dates.strftime("%m-%d").isin(["01-01", "06-19", "07-04", "12-25"]).any()
    assert dates[0] == pd.Timestamp("2021-01-04")  # Jan 1 2021 is a holiday, then a weekend
    assert len(us_trading_dates(pd.Timestamp("2024-07-01"), pd.Timestamp("2024-07-07"))) == 4
    for name in FACTOR_NAMES:
        assert default_result.factors[name]["date"].equals(default_result.factors["SPX"]["date"])
        assert np.isfinite(default_result.factors[name]["close"]).all()
    assert (default_result.factors["VIX"]["close"] > 5).all()


def test_factor_closes_are_synchronous_with_the_daily_crypto_bar(default_result):
    """Tuesday's published close / Monday's = the driver return of Tuesday's UTC bar (16:00 NY is inside it)."""
    spx = default_result.factors["SPX"].set_index("date")["close"]
    drv = default_result.drivers
    tuesdays = [d for d in spx.index if d.dayofweek == 1 and d - pd.Timedelta("1D") in spx.index][:50]
    assert len(tuesdays) == 50
    for d in tuesdays:
        published = spx[d] / spx[d - pd.Timedelta("1D")] - 1.0
        assert published == pytest.approx(drv.loc[pd.Timestamp(d, tz="UTC"), "SPX"], rel=1e-9)
    dgs = default_result.factors["DGS10"].set_index("date")["close"]
    d = tuesdays[0]
    assert dgs[d] - dgs[d - pd.Timedelta("1D")] == pytest.approx(drv.loc[pd.Timestamp(d, tz="UTC"), "DGS10"])


# --- config -------------------------------------------------------------------------------------


def test_symbols_extend_with_numbered_altcoins():
    cfg = SimConfig(n_assets=14)
    assert cfg.symbols[:2] == ["BTCUSDT", "ETHUSDT"] and cfg.symbols[10] == "DOTUSDT"
    assert cfg.symbols[11:] == ["ALT12USDT", "ALT13USDT", "ALT14USDT"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_assets": 1}, "n_assets"),
        ({"freq": "4h"}, "freq"),
        ({"pin_regime": "boom"}, "boom"),
        ({"idio_df": 2.0}, "idio_df"),
    ],
)
def test_config_rejects_bad_values_with_the_field_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimConfig(**kwargs)


def test_config_rejects_a_non_positive_definite_correlation():
    regimes = SimConfig().regimes
    bad = dataclasses.replace(
        regimes[2], corr={**regimes[2].corr, ("MKT", "SPX"): 0.99, ("MKT", "VIX"): 0.99}
    )
    with pytest.raises(ValueError, match=r"regimes\[2\] \(crash\)\.corr is not positive definite"):
        SimConfig(regimes=(regimes[0], regimes[1], bad))


# --- integration with the schema and targets ----------------------------------------------------


def test_regime_names_match_models_targets():
    targets = pytest.importorskip("adaptive_beta.models.features.targets")
    assert targets.REGIME_NAMES == REGIME_NAMES


def test_panel_built_from_a_simulation_has_synchronous_factors_and_usable_truth(default_result):
    from adaptive_beta.models.data.publication import us_close_utc
    from adaptive_beta.models.data.schema import FactorSeries, build_panel

    res = default_result
    factors = {
        name: FactorSeries(
            pd.Series(df["close"].to_numpy(), index=us_close_utc(pd.DatetimeIndex(df["date"]))),
            infer_category(name),
        )
        for name, df in res.factors.items()
    }
    panel = build_panel(
        res.assets, factors, meta={"truth_betas": res.truth_betas, "truth_market": res.truth_market}
    )
    assert panel.benchmark_names == ["BTCUSDT", COMPOSITE_NAME]
    fr = panel.factor_returns()
    trading = pd.DatetimeIndex(res.factors["SPX"]["date"]).tz_localize("UTC")
    tue_fri = trading[trading.isin(trading + pd.Timedelta("1D"))]  # the previous day traded too
    assert len(tue_fri) > 800
    np.testing.assert_allclose(fr.loc[tue_fri, "SPX"], res.drivers.loc[tue_fri, "SPX"], rtol=1e-9)
    np.testing.assert_allclose(fr.loc[tue_fri, "DGS10"], res.drivers.loc[tue_fri, "DGS10"], atol=1e-12)
    targets = pytest.importorskip("adaptive_beta.models.features.targets")
    tfb = targets.true_forward_betas(panel, "30d")
    assert set(tfb.columns) >= {"BTCUSDT", COMPOSITE_NAME}
    ew = tfb[COMPOSITE_NAME].dropna().groupby(level="timestamp").mean()
    np.testing.assert_allclose(ew, 1.0, atol=1e-9)  # a variance-weighted average keeps the EW identity


def test_written_folder_loads_into_a_panel_with_the_truth_attached(tmp_path):
    loaders = pytest.importorskip("adaptive_beta.models.data.loaders")
    res = simulate(SimConfig(seed=9, n_assets=5, days=120))
    out = write_simulation(res, tmp_path / "sim")
    panel = loaders.load_dataset(out)
    assert sorted(panel.symbols) == sorted(res.config.symbols)
    assert panel.freq == pd.Timedelta("1D") and len(panel.index) == 120
    assert panel.benchmark_names == ["BTCUSDT", COMPOSITE_NAME]
    assert panel.factor_categories == {n: infer_category(n) for n in FACTOR_NAMES}
    closes = pd.DataFrame({s: df["close"] for s, df in res.assets.items()})[panel.symbols]
    np.testing.assert_allclose(panel.close.to_numpy(), closes.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        panel.funding_rate.to_numpy(),
        pd.DataFrame({s: df["funding_rate"] for s, df in res.assets.items()})[panel.symbols].to_numpy(),
        rtol=1e-9,
    )
    tb, tm = panel.meta["truth_betas"], panel.meta["truth_market"]
    assert tb.index.names == ["timestamp", "symbol"] and str(tb.index.levels[0].tz) == "UTC"
    pd.testing.assert_frame_equal(tb.sort_index(), res.truth_betas.sort_index(), check_index_type=False)
    assert (tm["regime"].to_numpy() == res.truth_market["regime"].to_numpy()).all()
    np.testing.assert_allclose(tm["var_CRYPTO_EW"], res.truth_market["var_CRYPTO_EW"])
    # the panel's own composite is the EW benchmark the truth describes
    np.testing.assert_allclose(
        panel.benchmark_returns()[COMPOSITE_NAME].iloc[1:], res.returns().mean(axis=1).iloc[1:], atol=1e-10
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(2, 6))
def test_true_moments_match_an_explicit_full_covariance(seed, n):
    """Reference: build the full (N+M) covariance of one bar by hand and read the betas off it."""
    from adaptive_beta.models.sim.truth import true_moments

    rng = np.random.default_rng(seed)
    d, m = 8, 6
    a = rng.normal(size=(d, d))
    omega = a @ a.T / d + 0.1 * np.eye(d)
    loadings = rng.normal(size=(n, d))
    idio = rng.uniform(0.1, 1.0, n)
    tm = true_moments(loadings[None], omega[None], idio[None])
    b_full = np.vstack([loadings, np.hstack([np.zeros((m, 2)), np.eye(m)])])
    sigma = b_full @ omega @ b_full.T + np.diag(np.r_[idio, np.zeros(m)])
    w = np.r_[np.full(n, 1.0 / n), np.zeros(m)]
    for i in range(n):
        assert tm.beta_btc[0, i] == pytest.approx(sigma[i, 0] / sigma[0, 0], rel=1e-10)
        assert tm.beta_ew[0, i] == pytest.approx((sigma @ w)[i] / (w @ sigma @ w), rel=1e-10)
        coef = np.linalg.solve(sigma[n:, n:], sigma[n:, i])  # population regression of r_i on f
        np.testing.assert_allclose(tm.factor_betas[0, i], coef, rtol=1e-9, atol=1e-12)
    assert tm.var_ew[0] == pytest.approx(w @ sigma @ w, rel=1e-12)
