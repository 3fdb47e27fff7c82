"""Feature pipeline: the spec's identity, column values against independent computations, missing inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.data.schema import FactorSeries, build_panel
from adaptive_beta.models.estimators.baselines import ewma_beta, rolling_ols_beta, welch_beta
from adaptive_beta.models.features.compute import GROUPS, FeatureSpec, compute_features

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def make_assets(
    n_bars: int = 300,
    freq: str = "1D",
    symbols=SYMBOLS,
    seed: int = 0,
    funding: bool = True,
    start: str = "2021-01-01",
) -> dict[str, pd.DataFrame]:
    """Asset frames with a common market factor (loadings 1, 1.5, 2, ...) and idiosyncratic noise."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n_bars, freq=freq, tz="UTC")
    mkt = rng.normal(0.0, 0.02, n_bars)
    out = {}
    for i, sym in enumerate(symbols):
        r = (1.0 + 0.5 * i) * mkt + rng.normal(0.0, 0.01, n_bars)
        frame = pd.DataFrame(
            {"close": 100.0 * np.cumprod(1.0 + r), "volume": rng.lognormal(10.0, 0.4, n_bars)}, index=idx
        )
        if funding:
            frame["funding_rate"] = rng.normal(1e-4, 5e-5, n_bars)
            frame["open_interest"] = rng.lognormal(12.0, 0.05, n_bars)
        out[sym] = frame
    return out


def us_factor(
    first: str, last: str, seed: int = 1, scale: float = 0.01, start_level: float = 300.0
) -> pd.Series:
    """A US daily close series published at 16:00 New York on business days."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(first, last)
    pub = (days + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC")
    return pd.Series(start_level * np.cumprod(1.0 + rng.normal(0.0, scale, len(days))), index=pub)


def make_panel(n_bars=300, freq="1D", seed=0, funding=True, factors=True, symbols=SYMBOLS):
    assets = make_assets(n_bars, freq, symbols, seed, funding)
    facs = None
    if factors:
        facs = {
            "SPY": FactorSeries(us_factor("2020-11-01", "2022-12-31", seed + 1), "equity"),
            "DGS10": FactorSeries(us_factor("2020-11-01", "2022-12-31", seed + 2, 0.003, 1.5), "rates"),
        }
    return build_panel(assets, facs)


# --- spec ----------------------------------------------------------------------------------
def test_spec_hash_is_stable_across_processes():
    code = "from adaptive_beta.models.features.spec import FeatureSpec; print(FeatureSpec().hash())"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == FeatureSpec().hash()
    assert len(other) == 64


def _changed(value):
    if value is None:  # an optional window, off by default
        return "45d"
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return (*value, "365d")
    if isinstance(value, float):
        return value + 0.25
    if value.endswith("d"):
        return "45d"
    return value + "x"


@pytest.mark.parametrize("name", list(FeatureSpec.model_fields))
def test_spec_hash_changes_when_any_field_changes(name):
    base = FeatureSpec()
    changed = FeatureSpec(**{**base.to_dict(), name: _changed(getattr(base, name))})
    assert changed.hash() != base.hash()


def test_spec_round_trips_through_dict_and_json():
    spec = FeatureSpec(beta_windows=("20d", "60d"), version="7")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert FeatureSpec.from_json(spec.to_json()).hash() == spec.hash()


def test_spec_rejects_unknown_fields_and_bad_durations():
    with pytest.raises(ValueError, match="beta_window"):
        FeatureSpec.from_dict({"beta_window": ["30d"]})
    with pytest.raises(ValueError, match="30 days"):
        FeatureSpec(vol_windows=("30 days",))


def test_min_history_counts_bars_of_the_longest_window():
    spec = FeatureSpec()
    assert spec.min_history("1d") == 181  # 180d beta window + the bar its first return needs
    assert spec.min_history("8h") == 541
    assert spec.min_history("1h") == 180 * 24 + 1


# --- values -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def daily():
    panel = make_panel()
    return panel, compute_features(panel)


def test_frame_is_sorted_long_with_groups_and_base_columns(daily):
    panel, ft = daily
    assert ft.frame.index.names == ["timestamp", "symbol"]
    assert ft.frame.index.is_monotonic_increasing
    assert len(ft.frame) == 300 * 3
    assert set(ft.groups) == set(ft.frame.columns)
    assert set(ft.groups.values()) <= set(GROUPS)
    assert ft.base_columns == {"BTCUSDT": "beta_welch_BTCUSDT", "CRYPTO_EW": "beta_welch_CRYPTO_EW"}
    assert ft.groups["beta_SPY_30d"] == "equity" and ft.groups["fac_DGS10_stale"] == "fx_rates"
    assert ft.groups["funding_ann"] == "funding_leverage" and ft.groups["vol_30d"] == "own_history"
    assert ft.spec_hash == FeatureSpec().hash()
    assert all(ft.frame[c].dtype == np.float64 for c in ft.frame.columns)


def _wide(ft, column, panel):
    return ft.frame[column].unstack("symbol").reindex(index=panel.index, columns=sorted(panel.symbols))


def test_benchmark_betas_match_the_estimators_and_relative_columns_subtract_welch(daily):
    panel, ft = daily
    r, x = panel.returns()[sorted(panel.symbols)], panel.benchmark_returns()["CRYPTO_EW"]
    welch = welch_beta(r, x, 60.0)
    ols = rolling_ols_beta(r, x, 90)
    ewma = ewma_beta(r, x, 30.0)
    np.testing.assert_allclose(_wide(ft, "beta_welch_CRYPTO_EW", panel), welch, rtol=0, atol=1e-14)
    np.testing.assert_allclose(_wide(ft, "beta_ols_CRYPTO_EW_90d", panel), ols, rtol=0, atol=1e-14)
    np.testing.assert_allclose(_wide(ft, "beta_ewma_CRYPTO_EW_30d", panel), ewma, rtol=0, atol=1e-14)
    np.testing.assert_allclose(_wide(ft, "rel_ols_CRYPTO_EW_90d", panel), ols - welch, rtol=0, atol=1e-14)
    # BTC against itself is exactly 1 once the window is filled
    assert _wide(ft, "beta_ols_BTCUSDT_30d", panel)["BTCUSDT"].iloc[-1] == pytest.approx(1.0, abs=1e-12)


def test_rolling_correlation_matches_pandas(daily):
    panel, ft = daily
    r, x = panel.returns()["SOLUSDT"], panel.benchmark_returns()["BTCUSDT"]
    expected = r.rolling(30, min_periods=15).corr(x)
    got = _wide(ft, "corr_BTCUSDT_30d", panel)["SOLUSDT"]
    np.testing.assert_allclose(got.iloc[40:], expected.iloc[40:], atol=1e-10)


def test_downside_beta_is_ols_on_bars_where_the_benchmark_fell(daily):
    panel, ft = daily
    r, x = panel.returns()["ETHUSDT"], panel.benchmark_returns()["BTCUSDT"]
    t = 250
    win = slice(t - 89, t + 1)
    yy, xx = r.iloc[win], x.iloc[win]
    down = (xx < 0) & yy.notna()
    fit = sm.OLS(yy[down].to_numpy(), sm.add_constant(xx[down].to_numpy())).fit()
    got = _wide(ft, "beta_down_BTCUSDT_90d", panel)["ETHUSDT"].iloc[t]
    assert got == pytest.approx(fit.params[1], rel=1e-10)


def test_realised_vol_drawdown_and_volume_z_by_hand(daily):
    panel, ft = daily
    t, sym = 200, "SOLUSDT"
    r = panel.returns()[sym].iloc[t - 29 : t + 1].to_numpy()
    assert _wide(ft, "vol_30d", panel)[sym].iloc[t] == pytest.approx(
        np.sqrt(np.mean(r**2) * 365.0), rel=1e-12
    )
    close = panel.close[sym].iloc[t - 89 : t + 1]
    assert _wide(ft, "drawdown_90d", panel)[sym].iloc[t] == pytest.approx(
        close.iloc[-1] / close.max() - 1, rel=1e-12
    )
    logv = np.log(panel.volume[sym].iloc[t - 29 : t + 1])
    z = (logv.iloc[-1] - logv.mean()) / logv.std(ddof=1)
    assert _wide(ft, "volume_z_30d", panel)[sym].iloc[t] == pytest.approx(z, rel=1e-9)
    close_all = panel.close[sym]
    assert _wide(ft, "ret_7d", panel)[sym].iloc[t] == pytest.approx(
        close_all.iloc[t] / close_all.iloc[t - 7] - 1
    )


def test_funding_is_annualised_by_bar_length():
    assets = make_assets(120, "8h", seed=3)
    for frame in assets.values():
        frame["funding_rate"] = 1e-4  # per 8h bar
    ft = compute_features(build_panel(assets))
    assert ft.frame["funding_ann"].to_numpy() == pytest.approx(1e-4 * 3 * 365)
    assert np.nanmax(np.abs(ft.frame["funding_ann_chg_7d"].to_numpy())) == 0.0


def test_panel_without_funding_or_factors_still_gives_features():
    panel = make_panel(200, funding=False, factors=False)
    ft = compute_features(panel)
    assert not any(c.startswith(("fac_", "beta_SPY")) for c in ft.frame.columns)
    assert ft.frame["funding_ann"].isna().all() and ft.frame["oi_chg_7d"].isna().all()
    assert "funding_ann" not in ft.available_columns()
    assert ft.frame["beta_welch_BTCUSDT"].notna().sum() > 100


def test_rows_only_where_the_asset_trades():
    assets = make_assets(200, seed=4)
    assets["SOLUSDT"] = assets["SOLUSDT"].iloc[120:]  # listed later
    ft = compute_features(build_panel(assets))
    counts = ft.frame.groupby(level="symbol").size()
    assert counts.to_dict() == {"BTCUSDT": 200, "ETHUSDT": 200, "SOLUSDT": 80}


def test_factor_beta_recovers_loading_on_daily_and_8h_bars():
    """An asset that moves 2x the US index over each US session: beta ~ 2 on both clocks."""
    rng = np.random.default_rng(7)
    spy = us_factor("2021-01-01", "2021-12-31", seed=8)
    for freq, per_day in (("1D", 1), ("8h", 3)):
        idx = pd.date_range("2021-01-04", "2021-12-20", freq=freq, tz="UTC")
        # asset level = SPY^2 as known at each bar close, times small noise
        known = spy.reindex(idx + pd.Timedelta(freq), method="ffill").to_numpy()
        noise = np.cumprod(1.0 + rng.normal(0.0, 0.001, len(idx)))
        assets = {
            s: pd.DataFrame({"close": (known / 300.0) ** 2 * noise * (1 + i)}, index=idx)
            for i, s in enumerate(SYMBOLS)
        }
        ft = compute_features(build_panel(assets, {"SPY": FactorSeries(spy, "equity")}))
        beta = ft.frame["beta_SPY_90d"].xs("ETHUSDT", level="symbol").dropna()
        assert len(beta) > 100 * per_day
        assert beta.iloc[-1] == pytest.approx(2.0, abs=0.1), freq
        corr = ft.frame["corr_SPY_90d"].xs("ETHUSDT", level="symbol").dropna()
        assert corr.iloc[-1] > 0.95


def test_factor_returns_are_clipped_per_bar_and_undefined_through_negative_prices():
    """WTI fell to 8, settled at -36.98 on 2020-04-20, then came back: clipped, NaN, NaN, clipped."""
    idx = pd.bdate_range("2020-04-01", "2020-04-30")
    wti = pd.Series(18.0, index=idx)
    wti["2020-04-17"], wti["2020-04-20"], wti["2020-04-21"] = 8.0, -36.98, 10.0
    wti["2020-04-22":] = 20.0
    wti.index = (idx + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC")
    assets = make_assets(40, start="2020-03-25", seed=5)
    spec = FeatureSpec(factor_windows=("1d", "7d"))
    ft = compute_features(build_panel(assets, {"WTI": FactorSeries(wti, "commodity")}), spec)
    ret1 = ft.frame["fac_WTI_ret_1d"].xs("BTCUSDT", level="symbol")
    ret1.index = ret1.index.strftime("%m-%d")  # daily bar D closes at D+1 00:00, after the D close
    assert ret1["04-17"] == pytest.approx(-0.5)  # 18 -> 8 is -55.6 %, clipped
    assert np.isnan(ret1["04-20"]) and np.isnan(ret1["04-21"])
    assert ret1["04-22"] == pytest.approx(0.5)  # 10 -> 20 is +100 %, clipped
    assert ret1["04-18"] == 0.0  # Saturday: no new print
    assert ft.groups["fac_WTI_ret_1d"] == "commodity"


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["1D", "8h", "4h"]))
def test_features_are_finite_or_nan_and_correlations_bounded(seed, freq):
    ft = compute_features(make_panel(120, freq, seed=seed, factors=False))
    values = ft.frame.to_numpy()
    assert not np.isinf(values).any()
    corr_cols = [c for c in ft.frame.columns if c.startswith("corr_")]
    corr = ft.frame[corr_cols].to_numpy()
    assert np.nanmax(np.abs(corr)) <= 1.0


# --- the CLI ------------------------------------------------------------------------------------
def _run_cli(monkeypatch, tmp_path, panel, *args):
    from typer.testing import CliRunner

    import adaptive_beta.models.data.loaders
    from adaptive_beta.cli.main import app

    monkeypatch.setattr(adaptive_beta.models.data.loaders, "load_dataset", lambda path: panel)
    out = tmp_path / "feat.parquet"
    result = CliRunner().invoke(app, ["data", "features", "--data", "unused", "--out", str(out), *args])
    return result, out


def test_cli_writes_features_targets_and_spec(monkeypatch, tmp_path):
    import json

    from adaptive_beta.models.features.targets import forward_betas

    panel = make_panel(150)
    (tmp_path / "spec.json").write_text(FeatureSpec(beta_windows=("20d",)).to_json())
    result, out = _run_cli(
        monkeypatch, tmp_path, panel, "--horizon", "10d", "--spec", str(tmp_path / "spec.json")
    )
    assert result.exit_code == 0, result.output
    assert "450 rows" in result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns[:2]) == ["timestamp", "symbol"] and len(frame) == 450
    assert "beta_ols_BTCUSDT_20d" in frame.columns and "beta_ols_BTCUSDT_90d" not in frame.columns
    expected = forward_betas(panel, "10d")["CRYPTO_EW"].to_numpy()
    np.testing.assert_array_equal(frame["target_CRYPTO_EW"].to_numpy(), expected)
    assert set(frame["regime_forward"].unique()) <= {-1, 0, 1, 2}
    spec = FeatureSpec.from_json((tmp_path / "feat.spec.json").read_text())
    meta = json.loads((tmp_path / "feat.meta.json").read_text())
    assert spec.beta_windows == ("20d",) and meta["spec_hash"] == spec.hash()
    assert meta["base_columns"]["BTCUSDT"] == "beta_welch_BTCUSDT"
    assert meta["target_columns"][:2] == ["target_BTCUSDT", "target_CRYPTO_EW"]


def test_cli_leaves_nothing_half_written_when_writing_fails(monkeypatch, tmp_path):
    from pathlib import Path

    def broken(self, path, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    (tmp_path / "feat.parquet").write_bytes(b"previous")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    result, out = _run_cli(monkeypatch, tmp_path, make_panel(60, factors=False))
    assert result.exit_code != 0
    assert [p.name for p in tmp_path.iterdir() if "feat" in p.name] == [
        "feat.parquet"
    ]  # no temp, no sidecars
    assert out.read_bytes() == b"previous"


def test_cli_reports_a_bad_spec_file_with_its_field(monkeypatch, tmp_path):
    (tmp_path / "spec.json").write_text('{"vol_windows": ["7 days"]}')
    result, _ = _run_cli(monkeypatch, tmp_path, make_panel(60), "--spec", str(tmp_path / "spec.json"))
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError) and "vol_windows" in str(result.exception)


def test_serving_history_makes_truncated_ewma_features_match_the_full_history():
    spec = FeatureSpec(
        ewma_halflives=("10d",), welch_halflife="8d", beta_windows=("20d",), vol_windows=("7d",)
    )
    n = spec.serving_history("1d", tolerance=1e-3)
    assert n == int(np.ceil(10 * np.log2(1e3)))  # 100 bars for a 10-bar half-life
    assert FeatureSpec().serving_history("1d") == 598
    full = make_panel(400, factors=False)
    cut = full.slice(full.index[-n], None)
    last = full.index[-1]
    a = compute_features(full, spec).frame.xs(last, level="timestamp")
    b = compute_features(cut, spec).frame.xs(last, level="timestamp")
    for col in ("beta_ewma_BTCUSDT_10d", "beta_welch_CRYPTO_EW", "beta_ols_CRYPTO_EW_20d"):
        np.testing.assert_allclose(b[col], a[col], atol=5e-3, err_msg=col)
