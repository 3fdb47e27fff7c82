"""Overlay backtest: hand-checked accounting, no look-ahead, true betas beat a lagging rolling OLS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.estimators.baselines import rolling_ols_beta
from adaptive_beta.models.portfolio.backtest import UNHEDGED, BacktestConfig, run_backtest
from adaptive_beta.models.portfolio.book import DataError, default_hedges, default_portfolio, load_portfolio
from adaptive_beta.models.portfolio.metrics import max_drawdown, realised_beta, rolling_beta, summary_table

DAY = pd.Timedelta("1D")


def const_forecasts(index, betas: dict[str, float], bench="B"):
    return {bench: pd.DataFrame({s: np.full(len(index), b) for s, b in betas.items()}, index=index)}


def test_fees_and_funding_match_hand_computation():
    idx = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    rets = pd.DataFrame({"A": [np.nan, 0.10, -0.05, 0.0], "H": [np.nan, 0.05, 0.0, 0.0]}, index=idx)
    fund = pd.DataFrame({"A": [0.0, 0.001, 0.0, 0.0], "H": [0.0, -0.0002, 0.0, 0.0]}, index=idx)
    bench = pd.DataFrame({"B": rets["H"]})
    fc = {"est": const_forecasts(idx, {"A": 2.0, "H": 1.0})}
    cfg = BacktestConfig(fee_bps=10.0, benchmarks=("B",), rebalance="1d")
    res = run_backtest(rets, bench, fund, {"A": 1.0}, fc, DAY, cfg, hedges=["H"])
    f = res.paths["est"].frame
    pos = res.paths["est"].positions
    # row 0: core A = 1, overlay H = -2 (beta 2 book, beta 1 hedge), traded 3 -> fee 0.003
    assert pos.iloc[0].tolist() == pytest.approx([1.0, -2.0])
    assert f["fee"].iloc[0] == pytest.approx(0.003)
    # bar 1: gross 1 * 0.10 - 2 * 0.05 = 0; funding 1 * 0.001 + (-2) * (-0.0002) = 0.0014 paid
    assert f["ret_gross"].iloc[0] == pytest.approx(0.0, abs=1e-15)
    assert f["funding"].iloc[0] == pytest.approx(0.0014)
    assert f["ret"].iloc[0] == pytest.approx(-0.0044)
    assert f["equity"].iloc[0] == pytest.approx(0.9956)
    # row 1: drifted A = 1.1, H = -2.1; new A = 0.9956, H = -1.9912 -> traded 0.2132
    assert pos.iloc[1].tolist() == pytest.approx([0.9956, -1.9912])
    assert f["turnover"].iloc[1] == pytest.approx(0.2132 / 0.9956)
    assert f["fee"].iloc[1] == pytest.approx(0.0002132 / 0.9956)
    # bar 2: 0.9956 * -0.05 market, fee 0.0002132
    assert f["equity"].iloc[1] == pytest.approx(0.9956 - 0.04978 - 0.0002132)
    # unhedged core only: fee on 1 notional at start, then on the drift back to target
    u = res.paths[UNHEDGED].frame
    assert u["fee"].iloc[0] == pytest.approx(0.001)
    assert u["ret"].iloc[0] == pytest.approx(0.10 - 0.001 - 0.001)


def _jump_market(seed: int = 0, n: int = 720, noise: float = 0.004):
    """BTC-like benchmark x; alts with betas that jump every 120 bars; ETH with beta 1.2."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-01-01", periods=n, freq="D", tz="UTC")
    x = rng.normal(0, 0.03, n)
    beta = {}
    for k, s in enumerate(["SOL", "ADA", "DOT"]):
        levels = rng.choice([0.4, 1.0, 2.2], size=n // 120 + 1)
        beta[s] = np.repeat(levels, 120)[:n] + 0.1 * k
    beta["ETH"] = np.full(n, 1.2)
    beta["BTC"] = np.ones(n)
    rets = pd.DataFrame(
        {s: beta[s] * x + (0 if s == "BTC" else noise) * rng.normal(size=n) for s in beta}, idx
    )
    rets.iloc[0] = np.nan
    truth = {"BTC": pd.DataFrame(beta, index=idx).shift(-1)}  # row t: beta of bar t+1
    return rets, pd.DataFrame({"BTC": rets["BTC"]}), truth


def test_true_beta_overlay_realised_beta_closer_to_target_than_rolling_ols_30d():
    rets, bench, truth = _jump_market()
    ols = {"BTC": rolling_ols_beta(rets, bench["BTC"], 30, 15)}
    cfg = BacktestConfig(benchmarks=("BTC",), fee_bps=0.0, funding=False)
    res = run_backtest(
        rets,
        bench,
        None,
        {"SOL": 0.4, "ADA": 0.3, "DOT": 0.3},
        {"truth": truth, "ols": ols},
        DAY,
        cfg,
        ["BTC", "ETH"],
    )
    tab = summary_table(res, DAY)
    mad_truth = tab.loc[("truth", "full"), "roll_mad_BTC"]
    mad_ols = tab.loc[("ols", "full"), "roll_mad_BTC"]
    mad_none = tab.loc[(UNHEDGED, "full"), "roll_mad_BTC"]
    assert mad_truth < 0.05  # only the idiosyncratic noise is left
    assert mad_ols > 3 * mad_truth  # a 30d window lags every beta jump
    assert mad_none > 1.0
    assert abs(tab.loc[("truth", "full"), "beta_BTC"]) < 0.02
    # hedged volatility: the oracle's is the smallest
    assert tab.loc[("truth", "full"), "vol_ann"] < tab.loc[("ols", "full"), "vol_ann"]


def test_no_look_ahead_perturbing_the_future_leaves_the_past_unchanged():
    rets, bench, _ = _jump_market(seed=1, n=300)
    cut = 200
    pert = rets.copy()
    rng = np.random.default_rng(9)
    pert.iloc[cut + 1 :] = pert.iloc[cut + 1 :] * 3.0 + rng.normal(0, 0.05, size=pert.iloc[cut + 1 :].shape)
    pbench = pd.DataFrame({"BTC": pert["BTC"]})
    cfg = BacktestConfig(benchmarks=("BTC",), fee_bps=5.0, rebalance="1d")
    weights = {"SOL": 0.5, "ADA": 0.5}

    def run(r, b):
        fc = {"ols": {"BTC": rolling_ols_beta(r, b["BTC"], 30, 15)}}
        return run_backtest(r, b, None, weights, fc, DAY, cfg, ["BTC", "ETH"]).paths["ols"]

    a, p = run(rets, bench), run(pert, pbench)
    t_cut = rets.index[cut]
    # every bar up to and including the cut, and the positions held over bar cut+1 (decided at cut)
    pd.testing.assert_frame_equal(a.frame.loc[:t_cut], p.frame.loc[:t_cut])
    nxt = rets.index[cut + 1]
    pd.testing.assert_series_equal(a.positions.loc[nxt], p.positions.loc[nxt])
    assert not np.isclose(a.frame.loc[nxt, "ret"], p.frame.loc[nxt, "ret"])


def test_skipped_rebalance_keeps_positions_when_forecast_missing():
    idx = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    rets = pd.DataFrame({"A": [np.nan, 0.01, 0.02, -0.01, 0.0, 0.01], "H": 0.0}, index=idx)
    fc = const_forecasts(idx, {"A": 1.0, "H": 1.0})
    fc["B"].loc[idx[2], "A"] = np.nan
    cfg = BacktestConfig(benchmarks=("B",), fee_bps=0.0)
    res = run_backtest(rets, pd.DataFrame({"B": rets["H"]}), None, {"A": 1.0}, {"e": fc}, DAY, cfg, ["H"])
    path = res.paths["e"]
    assert path.skipped_rebalances == 1
    assert path.frame["rebalanced"].tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]


def test_metrics_realised_beta_and_drawdown_numbers():
    x = np.array([0.01, -0.02, 0.03, 0.0, -0.01])
    assert realised_beta(0.5 * x + 0.001, x) == pytest.approx(0.5)
    assert max_drawdown([1.0, 1.2, 0.9, 1.1, 0.6], start=1.0) == pytest.approx(0.5)
    s = pd.Series(x)
    rb = rolling_beta(2.0 * s, s, 3, 3)
    assert rb.iloc[2:].tolist() == pytest.approx([2.0, 2.0, 2.0])


def test_portfolio_files_and_defaults(tmp_path):
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT"]
    d = default_portfolio(syms)
    assert d.weights() == {"SOLUSDT": 0.5, "ADAUSDT": 0.5}
    assert default_hedges(syms) == ["BTCUSDT", "ETHUSDT"]
    p = tmp_path / "book.csv"
    p.write_text("symbol,notional\nSOLUSDT,3000\nADAUSDT,-1000\n")
    book = load_portfolio(p)
    assert book.weights() == {"SOLUSDT": 0.75, "ADAUSDT": -0.25}
    t = tmp_path / "book.toml"
    t.write_text('units = "weight"\n[positions]\nSOLUSDT = 0.6\nXYZUSDT = 0.4\n')
    with pytest.raises(DataError, match="portfolio symbol 'XYZUSDT' is not in the data"):
        load_portfolio(t).check_symbols(syms)
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,weight\nSOLUSDT,abc\n")
    with pytest.raises(DataError, match=r"row 1, column 'weight'"):
        load_portfolio(bad)
