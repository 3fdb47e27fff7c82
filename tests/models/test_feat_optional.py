"""Optional FeatureSpec features (issue 10 items 2-3): off by default, each against an independent
computation on the same data, causal, and inside `min_history` / `serving_history`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from adaptive_beta.models.data.schema import build_panel
from adaptive_beta.models.estimators.baselines import welch_beta
from adaptive_beta.models.features.compute import GROUPS, FeatureSpec, compute_features
from adaptive_beta.models.features.spec import OPTIONAL_FIELDS
from tests.models.test_causality import _build, _factors, _perturb_after, _truth
from tests.models.test_features import make_assets, make_panel

# FeatureSpec().hash() when the optional fields were added: bundles written before must still load
SHIPPED_HASH = "9a02b4b33088a31a955c7e408ad253b31882d0fd6b4dc69859d5672b8e1afcbe"
ALL_ON = dict(
    welch_extra_halflives=("120d",),
    long_beta_windows=("7d", "365d"),
    factor_levels=("SPY", "DGS10"),
    vol_ratio=True,
    funding_z_window="30d",
    oi_z_window="30d",
    high_vol_beta_window="90d",
)


# --- the default is untouched ----------------------------------------------------------------
def test_the_default_spec_hash_and_json_are_those_shipped():
    spec = FeatureSpec()
    assert spec.hash() == SHIPPED_HASH
    assert not set(OPTIONAL_FIELDS) & set(spec.to_dict())
    assert set(OPTIONAL_FIELDS) == set(ALL_ON)
    explicit_off = FeatureSpec(**{name: FeatureSpec.model_fields[name].default for name in OPTIONAL_FIELDS})
    assert explicit_off.hash() == SHIPPED_HASH


@pytest.fixture(scope="module")
def panels():
    panel = make_panel(500)
    return panel, compute_features(panel), compute_features(panel, FeatureSpec(**ALL_ON))


def test_enabling_them_only_adds_columns_and_leaves_every_default_column_bit_for_bit(panels):
    _, default, extended = panels
    kept = [c for c in extended.frame.columns if c in default.frame.columns]
    assert kept == list(default.frame.columns)  # the default columns in their order, new ones beside
    pd.testing.assert_frame_equal(extended.frame[default.frame.columns], default.frame, check_exact=True)
    assert extended.base_columns == default.base_columns
    new = [c for c in extended.frame.columns if c not in default.frame.columns]
    assert set(new) == {
        *(f"{k}_{b}_120d" for k in ("beta_welch", "rel_welch") for b in ("BTCUSDT", "CRYPTO_EW")),
        *(
            f"{k}_{b}_{w}"
            for k in ("beta_ols", "corr", "rel_ols")
            for b in ("BTCUSDT", "CRYPTO_EW")
            for w in ("7d", "365d")
        ),
        *(f"{k}_{b}_90d" for k in ("beta_hivol", "rel_hivol") for b in ("BTCUSDT", "CRYPTO_EW")),
        *(f"vol_ratio_{b}_{w}" for b in ("BTCUSDT", "CRYPTO_EW") for w in ("7d", "30d", "90d")),
        "funding_z_30d",
        "oi_chg_z_30d",
        "fac_SPY_log_level",
        "fac_DGS10_level",
    }
    groups = extended.groups
    assert set(groups) == set(extended.frame.columns) and set(groups.values()) <= set(GROUPS)
    assert groups["fac_SPY_log_level"] == "equity" and groups["fac_DGS10_level"] == "fx_rates"
    assert groups["funding_z_30d"] == groups["oi_chg_z_30d"] == "funding_leverage"
    assert groups["beta_hivol_BTCUSDT_90d"] == groups["vol_ratio_CRYPTO_EW_30d"] == "crypto_benchmark"


def test_an_extended_spec_round_trips_and_hashes_differently():
    spec = FeatureSpec(**ALL_ON)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert FeatureSpec.from_dict(spec.to_dict()).hash() == spec.hash() != SHIPPED_HASH
    hashes = {FeatureSpec(**{name: value}).hash() for name, value in ALL_ON.items()}
    assert len(hashes) == len(ALL_ON) and SHIPPED_HASH not in hashes


def test_spec_rejects_repeated_windows_and_names():
    with pytest.raises(ValueError, match="long_beta_windows repeats beta_windows"):
        FeatureSpec(long_beta_windows=("30d", "365d"))
    with pytest.raises(ValueError, match="welch_extra_halflives repeats welch_halflife"):
        FeatureSpec(welch_extra_halflives=("60d",))
    with pytest.raises(ValueError, match="distinct"):
        FeatureSpec(factor_levels=("VIX", "VIX"))
    with pytest.raises(ValueError, match="oi_z_window"):
        FeatureSpec(oi_z_window="30 days")


def test_new_windows_enter_min_history_and_serving_history():
    assert FeatureSpec(long_beta_windows=("365d",)).min_history("1d") == 366
    assert FeatureSpec(high_vol_beta_window="200d").min_history("1d") == 400  # flags need their own window
    assert FeatureSpec(funding_z_window="200d").min_history("8h") == 601
    assert FeatureSpec(oi_z_window="200d").min_history("1d") == 201
    assert FeatureSpec(welch_extra_halflives=("120d",)).min_history("1d") == 181  # 180d beta is longer
    assert FeatureSpec(welch_extra_halflives=("120d",)).serving_history("1d") == int(
        np.ceil(120 * np.log2(100))
    )


# --- values against independent computations ---------------------------------------------------
def _wide(ft, column, panel):
    return ft.frame[column].unstack("symbol").reindex(index=panel.index, columns=sorted(panel.symbols))


def _ols_slope(y: np.ndarray, x: np.ndarray) -> float:
    ok = np.isfinite(y) & np.isfinite(x)
    return float(sm.OLS(y[ok], sm.add_constant(x[ok])).fit().params[1])


@pytest.mark.parametrize(("window", "bars"), [("7d", 7), ("365d", 365)])
def test_long_and_short_rolling_betas_are_statsmodels_ols_on_the_window(panels, window, bars):
    panel, _, ft = panels
    r, x = panel.returns()["SOLUSDT"].to_numpy(), panel.benchmark_returns()["BTCUSDT"].to_numpy()
    got = _wide(ft, f"beta_ols_BTCUSDT_{window}", panel)["SOLUSDT"]
    for t in (420, 499):
        win = slice(t - bars + 1, t + 1)
        assert got.iloc[t] == pytest.approx(_ols_slope(r[win], x[win]), rel=1e-9)
    assert got.iloc[: (bars + 1) // 2].isna().all()  # half the window before the first value
    rel = _wide(ft, f"rel_ols_BTCUSDT_{window}", panel) - (
        _wide(ft, f"beta_ols_BTCUSDT_{window}", panel) - _wide(ft, "beta_welch_BTCUSDT", panel)
    )
    assert np.nanmax(np.abs(rel.to_numpy())) == 0.0


def test_extra_welch_half_life_is_the_welch_estimator(panels):
    panel, _, ft = panels
    r, x = panel.returns()[sorted(panel.symbols)], panel.benchmark_returns()["CRYPTO_EW"]
    expected = welch_beta(r, x, 120.0)
    np.testing.assert_allclose(_wide(ft, "beta_welch_CRYPTO_EW_120d", panel), expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(
        _wide(ft, "rel_welch_CRYPTO_EW_120d", panel), expected - welch_beta(r, x, 60.0), rtol=0, atol=1e-14
    )


def test_high_vol_beta_is_ols_on_bars_above_their_trailing_median(panels):
    panel, _, ft = panels
    r, x = panel.returns()["ETHUSDT"].to_numpy(), panel.benchmark_returns()["CRYPTO_EW"].to_numpy()
    n, t = 90, 480
    flags = []
    for s in range(t - n + 1, t + 1):  # each bar against the median of the n bars up to it
        past = np.abs(x[s - n + 1 : s + 1])
        flags.append(abs(x[s]) > np.median(past[np.isfinite(past)]))
    win = slice(t - n + 1, t + 1)
    flags = np.array(flags)
    assert 0.3 < flags.mean() < 0.7
    expected = _ols_slope(r[win][flags], x[win][flags])
    assert _wide(ft, "beta_hivol_CRYPTO_EW_90d", panel)["ETHUSDT"].iloc[t] == pytest.approx(
        expected, rel=1e-9
    )


def test_vol_ratio_is_the_ratio_of_realised_vols(panels):
    panel, _, ft = panels
    t, sym = 300, "SOLUSDT"
    r = panel.returns()[sym].iloc[t - 29 : t + 1].to_numpy()
    m = panel.benchmark_returns()["BTCUSDT"].iloc[t - 29 : t + 1].to_numpy()
    got = _wide(ft, "vol_ratio_BTCUSDT_30d", panel)[sym].iloc[t]
    assert got == pytest.approx(np.sqrt(np.mean(r**2) / np.mean(m**2)), rel=1e-12)
    assert _wide(ft, "vol_ratio_BTCUSDT_30d", panel)["BTCUSDT"].iloc[40:].to_numpy() == pytest.approx(1.0)


def test_funding_and_open_interest_z_scores_by_hand(panels):
    panel, _, ft = panels
    t, sym = 333, "ETHUSDT"
    fund = panel.funding_rate[sym].iloc[t - 29 : t + 1] * 365.0
    z = (fund.iloc[-1] - fund.mean()) / fund.std(ddof=1)
    assert _wide(ft, "funding_z_30d", panel)[sym].iloc[t] == pytest.approx(z, rel=1e-9)
    d = np.log(panel.open_interest[sym]).diff().iloc[t - 29 : t + 1]
    z = (d.iloc[-1] - d.mean()) / d.std(ddof=1)
    assert _wide(ft, "oi_chg_z_30d", panel)[sym].iloc[t] == pytest.approx(z, rel=1e-9)


def test_factor_levels_are_log_levels_or_rate_levels_and_a_missing_factor_is_named(panels):
    panel, _, ft = panels
    spy = _wide(ft, "fac_SPY_log_level", panel)
    np.testing.assert_allclose(spy["ETHUSDT"], np.log(panel.factors["SPY"]), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(_wide(ft, "fac_DGS10_level", panel)["BTCUSDT"], panel.factors["DGS10"])
    with pytest.raises(ValueError, match=r"factor_levels names \['VIX'\].*SPY"):
        compute_features(panel, FeatureSpec(factor_levels=("VIX",)))


# --- causality and bounded history ----------------------------------------------------------------
SMALL_ON = FeatureSpec(
    beta_windows=("20d",),
    vol_windows=("7d", "30d"),
    factor_beta_windows=("20d",),
    welch_extra_halflives=("40d",),
    long_beta_windows=("7d", "120d"),
    factor_levels=("SPY", "DGS10", "WTI"),
    vol_ratio=True,
    funding_z_window="20d",
    oi_z_window="20d",
    high_vol_beta_window="30d",
)


@pytest.mark.parametrize(("freq", "n_bars", "cuts"), [("1D", 260, (130, 230)), ("8h", 600, (400,))])
def test_nothing_after_the_cut_moves_an_optional_column(freq, n_bars, cuts):
    assets, factors = make_assets(n_bars, freq, seed=21), _factors()
    truth = _truth(build_panel(assets, factors).index, sorted(assets), seed=22)
    base = _build(assets, factors, truth)
    new = [c for c in compute_features(base, SMALL_ON).frame.columns if c not in compute_features(base).frame]
    f0 = compute_features(base, SMALL_ON).frame[new]
    assert f0.notna().mean().min() > 0.2
    for k, cut_pos in enumerate(cuts):
        cut = base.index[cut_pos]
        pert = _build(*_perturb_after(assets, factors, truth, cut, base.freq, seed=100 + k))
        f1 = compute_features(pert, SMALL_ON).frame[new]
        assert not f1.equals(f0)
        keep0, keep1 = (f.index.get_level_values("timestamp") <= cut for f in (f0, f1))
        np.testing.assert_array_equal(f0[keep0].to_numpy(), f1[keep1].to_numpy(), err_msg=f"{freq} {cut}")


def test_a_request_of_min_history_bars_reproduces_the_windowed_columns_and_serving_history_the_welch():
    spec = FeatureSpec(
        beta_windows=("20d",),
        ewma_halflives=("10d",),
        welch_halflife="8d",
        welch_extra_halflives=("15d",),
        long_beta_windows=("100d",),
        high_vol_beta_window="60d",
        funding_z_window="30d",
        oi_z_window="30d",
        vol_ratio=True,
    )
    full = make_panel(420, factors=False)
    last = full.index[-1]
    ref = compute_features(full, spec).frame.xs(last, level="timestamp")
    n = spec.min_history("1d")
    assert n == 120  # the high-vol beta: 60 bars, each flagged against the 60 bars before it
    got = compute_features(full.slice(full.index[-n], None), spec).frame.xs(last, level="timestamp")
    for col in ("beta_ols_CRYPTO_EW_100d", "beta_hivol_BTCUSDT_60d", "funding_z_30d", "oi_chg_z_30d"):
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-9, atol=1e-12, err_msg=col)
    n = spec.serving_history("1d", tolerance=1e-3)
    got = compute_features(full.slice(full.index[-n], None), spec).frame.xs(last, level="timestamp")
    np.testing.assert_allclose(got["beta_welch_BTCUSDT_15d"], ref["beta_welch_BTCUSDT_15d"], atol=5e-3)
