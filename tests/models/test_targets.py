"""Forward targets against statsmodels and hand calculations; regime labels on hand-made series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from adaptive_beta.models.data.schema import DataError, build_panel
from adaptive_beta.models.features.targets import (
    REGIME_NAMES,
    forward_betas,
    forward_betas_wide,
    forward_moments,
    forward_sum,
    regime_labels,
    true_forward_betas,
)
from tests.models.test_features import make_panel


def test_regime_names_and_codes():
    assert REGIME_NAMES == ("calm", "volatile", "crash")


def test_forward_sum_uses_rows_after_t_only():
    a = np.arange(1.0, 7.0)  # 1..6
    out = forward_sum(a, 2)
    np.testing.assert_array_equal(out[:4], [2 + 3, 3 + 4, 4 + 5, 5 + 6])
    assert np.isnan(out[4:]).all()


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 3)), elements=st.floats(-1e3, 1e3)),
    st.integers(1, 45),
)
def test_forward_sum_equals_the_naive_sum_of_the_next_h_rows(a, h):
    out = forward_sum(a, h)
    for t in range(a.shape[0]):
        if t + h < a.shape[0]:
            np.testing.assert_allclose(out[t], a[t + 1 : t + h + 1].sum(axis=0), rtol=1e-9, atol=1e-9)
        else:
            assert np.isnan(out[t]).all()


@pytest.fixture(scope="module")
def panel():
    p = make_panel(200, factors=False)
    # holes: ETH misses a few bars inside one forward window
    p.close.loc[p.index[50:53], "ETHUSDT"] = np.nan
    return p


@pytest.mark.parametrize("t", [0, 37, 45, 120, 169])
def test_forward_betas_match_statsmodels_ols_on_rows_t_plus_1_to_t_plus_h(panel, t):
    fb = forward_betas(panel, "30d")
    r, br = panel.returns(), panel.benchmark_returns()
    for sym in ("ETHUSDT", "SOLUSDT"):
        for bench in ("BTCUSDT", "CRYPTO_EW"):
            y, x = r[sym].iloc[t + 1 : t + 31], br[bench].iloc[t + 1 : t + 31]
            ok = y.notna() & x.notna()
            fit = sm.OLS(y[ok].to_numpy(), sm.add_constant(x[ok].to_numpy())).fit()
            got = fb.loc[(panel.index[t], sym), bench]
            assert got == pytest.approx(fit.params[1], rel=1e-9), (t, sym, bench)


def test_forward_betas_are_nan_past_the_end_and_with_too_few_pairs(panel):
    wide = forward_betas_wide(panel, "30d", min_fraction=0.95)
    eth = wide["BTCUSDT"]["ETHUSDT"]
    assert eth.iloc[-30:].isna().all() and np.isfinite(eth.iloc[-31])
    # rows 50..52 have NaN closes -> returns 50..53 are NaN: 4 of 30 missing (< 95 % valid)
    assert np.isnan(eth.iloc[49]) and np.isfinite(eth.iloc[19])  # window 50..79 vs 20..49
    loose = forward_betas_wide(panel, "30d", min_fraction=0.8)["BTCUSDT"]["ETHUSDT"]
    assert np.isfinite(loose.iloc[49])


def test_forward_moments_give_the_forward_beta_and_hedge_variance(panel):
    fm = forward_moments(panel, "30d")
    fb = forward_betas(panel, "30d")
    beta = fm["cov_CRYPTO_EW"] / fm["var_bench_CRYPTO_EW"]
    np.testing.assert_allclose(beta.to_numpy(), fb["CRYPTO_EW"].to_numpy(), rtol=1e-12, equal_nan=True)
    t, sym = 60, "SOLUSDT"
    y = panel.returns()[sym].iloc[t + 1 : t + 31].to_numpy()
    x = panel.benchmark_returns()["CRYPTO_EW"].iloc[t + 1 : t + 31].to_numpy()
    row = fm.loc[(panel.index[t], sym)]
    assert row["var_asset_CRYPTO_EW"] == pytest.approx(np.var(y), rel=1e-10)
    assert row["var_bench_CRYPTO_EW"] == pytest.approx(np.var(x), rel=1e-10)
    assert row["n_CRYPTO_EW"] == 30
    b = 0.7  # hedge variance identity: var(y - b x) = var_y - 2 b cov + b^2 var_x
    hv = row["var_asset_CRYPTO_EW"] - 2 * b * row["cov_CRYPTO_EW"] + b * b * row["var_bench_CRYPTO_EW"]
    assert hv == pytest.approx(np.var(y - b * x), rel=1e-10)


def _with_truth(panel, beta_fn, var_fn, regimes=None):
    idx = panel.index
    rows = pd.MultiIndex.from_product([idx, panel.symbols], names=["timestamp", "symbol"])
    tb = pd.DataFrame(
        {f"beta_{b}": beta_fn(rows.get_level_values(0), b) for b in panel.benchmark_names}, index=rows
    )
    tm = pd.DataFrame({f"var_{b}": var_fn(idx) for b in panel.benchmark_names}, index=idx)
    codes = np.zeros(len(idx), dtype=int) if regimes is None else np.asarray(regimes)
    tm["regime"] = codes
    tm["regime_name"] = [REGIME_NAMES[c] for c in codes]
    panel.meta["truth_betas"], panel.meta["truth_market"] = tb, tm
    return panel


def test_true_forward_betas_equal_a_constant_truth():
    p = _with_truth(
        make_panel(100, factors=False),
        lambda ts, b: np.full(len(ts), 1.3),
        lambda ts: np.linspace(1, 3, len(ts)),
    )
    tfb = true_forward_betas(p, "10d")
    finite = tfb.dropna()
    assert len(finite) == (100 - 10) * 3
    np.testing.assert_allclose(finite.to_numpy(), 1.3, rtol=0, atol=1e-14)


def test_true_forward_betas_weight_by_benchmark_variance():
    """beta 1 for 5 bars at variance 1, then beta 2 for 5 bars at variance 3: (5 + 30) / (5 + 15)."""
    p = make_panel(40, factors=False)
    step = lambda ts: np.where(np.arange(len(ts)) % 10 < 5, 1.0, 0.0)  # noqa: E731
    p = _with_truth(
        p,
        lambda ts, b: np.where(np.arange(len(ts)) // 3 % 10 < 5, 1.0, 2.0),
        lambda ts: 1 + 2 * (1 - step(ts)),
    )
    tfb = true_forward_betas(p, "10d")
    # row t = -1 + 10k: the window t+1..t+10 covers bars 10k..10k+9: first five beta 1 / var 1, then beta 2 / var 3
    assert tfb.loc[(p.index[9], "ETHUSDT"), "BTCUSDT"] == pytest.approx(35.0 / 20.0, rel=1e-12)


def test_true_forward_betas_need_truth():
    with pytest.raises(DataError, match="no simulated ground truth"):
        true_forward_betas(make_panel(50, factors=False), "7d")


def test_regime_labels_from_truth_take_the_modal_regime_and_the_worse_on_ties():
    p = make_panel(12, factors=False)
    codes = [0, 0, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1]
    p = _with_truth(p, lambda ts, b: np.ones(len(ts)), lambda ts: np.ones(len(ts)), regimes=codes)
    lab = regime_labels(p, "4d")
    # windows (t-4, t]: t=3 0011 tie -> 1; t=4 0112 -> 1; t=5 1122 tie -> 2; t=8 2200 tie -> 2; t=9 2000 -> 0
    assert lab["current"].tolist() == [-1, -1, -1, 1, 1, 2, 2, 2, 2, 0, 0, 1]
    assert lab["forward"].tolist() == [1, 2, 2, 2, 2, 0, 0, 1, -1, -1, -1, -1]
    assert lab.index.name == "timestamp"


def _composite_panel(path: np.ndarray, freq: str = "1D"):
    """A one-asset panel whose composite is exactly `path` (relative to its first value)."""
    idx = pd.date_range("2022-01-01", periods=len(path), freq=freq, tz="UTC")
    return build_panel({"BTCUSDT": pd.DataFrame({"close": path}, index=idx)})


def test_rule_regimes_on_hand_made_composites():
    n = 40
    calm = 100 * 1.001 ** np.arange(n)  # +0.1 %/day: vol 1.9 % a year
    lab = regime_labels(_composite_panel(calm), "7d", source="rule")["current"].to_numpy()
    assert (lab[:7] == -1).all() and (lab[7:] == 0).all()
    # +-6 % alternating: annualised vol 0.06 * sqrt(365) = 115 %, no big drawdown -> volatile
    vol = 100 * np.cumprod(np.r_[1.0, np.tile([1.06, 1 / 1.06], n // 2)][:n])
    assert (regime_labels(_composite_panel(vol), "7d", source="rule")["current"].to_numpy()[7:] == 1).all()
    # a 25 % fall over three days inside calm: crash in the windows that contain it
    crash = calm.copy()
    crash[20:] *= 0.75
    cur = regime_labels(_composite_panel(crash), "7d", source="rule")["current"].to_numpy()
    assert (cur[20:27] == 2).all() and cur[19] == 0 and cur[27] == 0
    # a -20 % 30d return is not a crash over 30 days (threshold -15 % x sqrt(30/7) = -31 %)
    slow = 100 * (0.8 ** (1 / 30)) ** np.arange(n)
    assert regime_labels(_composite_panel(slow), "30d", source="rule")["current"].iloc[35] == 0


@pytest.mark.realdata
def test_rule_labels_luna_and_ftx_as_crashes_on_real_perps(real_data_dir):
    root = real_data_dir / "pietroc21_binance_perps" / "ohlcv_perp"
    assets = {}
    for f in sorted(root.glob("*.parquet")):
        frame = pd.read_parquet(f, columns=["close"])
        frame.index.name = None
        assets[f.stem] = frame
    p = build_panel(assets, freq="8h")
    cur = pd.Series(regime_labels(p, "7d")["current"].to_numpy(), index=p.index)
    assert (cur["2022-05-12":"2022-05-14"] == 2).all()  # LUNA
    assert (cur["2022-11-10":"2022-11-12"] == 2).all()  # FTX
    shares = cur[cur >= 0].value_counts(normalize=True)
    assert 0.6 < shares[0] < 0.85 and 0.03 < shares[2] < 0.12


def test_forward_multifactor_betas_match_statsmodels():
    from adaptive_beta.models.features.targets import forward_multifactor_betas

    p = make_panel(200)  # daily, factors SPY (equity) and DGS10 (rates)
    fmb = forward_multifactor_betas(p, "60d", ["BTCUSDT", "SPY", "DGS10"])
    x = pd.DataFrame(
        {
            "BTCUSDT": p.benchmark_returns()["BTCUSDT"],
            "SPY": p.factors["SPY"].pct_change(),
            "DGS10": p.factors["DGS10"].diff(),
        }
    )
    for t in (10, 100, 130):
        y = p.returns()["SOLUSDT"].iloc[t + 1 : t + 61]
        xx = x.iloc[t + 1 : t + 61]
        ok = y.notna() & xx.notna().all(axis=1)
        fit = sm.OLS(y[ok].to_numpy(), sm.add_constant(xx[ok].to_numpy())).fit()
        got = fmb.loc[(p.index[t], "SOLUSDT")].to_numpy()
        np.testing.assert_allclose(got, fit.params[1:], rtol=1e-8)
    assert fmb.xs(p.index[-60], level="timestamp").isna().all().all()


def test_forward_beta_of_the_benchmark_asset_to_itself_is_not_a_target(panel):
    """BTCUSDT vs BTCUSDT is identically 1: it must not enter training, alpha or calibration."""
    fb = forward_betas(panel, "30d")
    btc = fb.xs("BTCUSDT", level="symbol")
    assert btc["BTCUSDT"].isna().all()
    assert btc["CRYPTO_EW"].iloc[:-30].notna().all()  # BTC against the composite stays a target
    eth = fb.xs("ETHUSDT", level="symbol")["BTCUSDT"]
    assert eth.iloc[:40].notna().all()
    assert forward_betas_wide(panel, "30d")["BTCUSDT"]["BTCUSDT"].isna().all()
