"""Stress scenarios: P&L arithmetic, the overlay under shocks and beta shifts, replays, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.data.schema import DataError, build_panel
from adaptive_beta.models.portfolio.scenarios import default_scenarios_path, load_scenarios, parse_scenarios
from adaptive_beta.models.portfolio.stress import run_scenarios

BETAS = {
    "SOLUSDT": {"BTCUSDT": 1.5, "CRYPTO_EW": 1.2},
    "ADAUSDT": {"BTCUSDT": 1.2, "CRYPTO_EW": 1.0},
    "BTCUSDT": {"BTCUSDT": 1.0, "CRYPTO_EW": 0.9},
}


def shock(shocks, driver=None, kind="benchmark_shock", **extra):
    return parse_scenarios([{"name": "s", "kind": kind, "shocks": shocks, "driver": driver, **extra}])


@settings(max_examples=40, deadline=None)
@given(
    notional=st.floats(-1e7, 1e7, allow_nan=False).filter(lambda v: abs(v) > 1.0),
    beta=st.floats(-3, 3, allow_nan=False),
    move=st.floats(-0.9, 2.0, allow_nan=False),
)
def test_one_asset_pnl_equals_notional_times_beta_times_shock(notional, beta, move):
    betas = {"SOLUSDT": {"BTCUSDT": beta}, "BTCUSDT": {"BTCUSDT": 1.0}}
    rep = run_scenarios({"SOLUSDT": notional}, betas, {"BTCUSDT": 0.0}, shock({"BTCUSDT": move}))
    s = rep.scenarios[0]
    assert s.position_pnl["SOLUSDT"] == pytest.approx(notional * beta * move, rel=1e-12, abs=1e-9)
    assert s.pnl_unhedged == pytest.approx(notional * beta * move, rel=1e-12, abs=1e-9)


def test_overlay_makes_beta_neutral_book_flat_when_betas_hold():
    pos = {"SOLUSDT": 1e6, "ADAUSDT": 2e6}
    rep = run_scenarios(pos, BETAS, None, shock({"BTCUSDT": -0.3}))
    s = rep.scenarios[0]
    # overlay: -(1.5 * 1e6 + 1.2 * 2e6) of the BTC perp
    assert rep.hedge_source == "overlay"
    assert s.hedge["BTCUSDT"] == pytest.approx(-3.9e6)
    assert s.pnl_unhedged == pytest.approx(-0.3 * 3.9e6)
    assert s.hedge_pnl["BTCUSDT"] == pytest.approx(0.3 * 3.9e6)
    assert abs(s.pnl_hedged) < 1e-6
    assert s.residual_beta_after_shift["BTCUSDT"] == pytest.approx(0.0, abs=1e-12)


def test_beta_shift_x15_leaves_half_the_original_exposure():
    pos = {"SOLUSDT": 1e6}
    sc = shock({"BTCUSDT": -0.2}, kind="beta_shift", multipliers=[{"assets": "book", "factor": 1.5}])
    s = run_scenarios(pos, BETAS, None, sc).scenarios[0]
    # residual P&L = 0.5 x beta x notional x shock = 0.5 * 1.5 * 1e6 * -0.2
    assert s.pnl_hedged == pytest.approx(-150_000.0)
    assert s.residual_beta_after_shift["BTCUSDT"] == pytest.approx(0.5 * 1.5 * 1e6 / 1e6)
    assert s.hedge_after_shift["BTCUSDT"] == pytest.approx(-2.25e6)  # 1.5 x 1.5 x 1e6


def test_altcoin_decoupling_changes_btc_beta_only():
    pos = {"SOLUSDT": 1e6}
    sc = shock(
        {"BTCUSDT": -0.2},
        kind="beta_shift",
        multipliers=[{"assets": "altcoins", "benchmark": "BTCUSDT", "factor": 0.5}],
    )
    s = run_scenarios(pos, BETAS, None, sc).scenarios[0]
    assert s.asset_returns["SOLUSDT"] == pytest.approx(0.75 * -0.2)
    assert s.asset_returns["BTCUSDT"] == pytest.approx(-0.2)  # the hedge perp is the benchmark itself
    assert s.pnl_hedged == pytest.approx(1e6 * (0.75 - 1.5) * -0.2)


def test_correlation_breakdown_hedge_earns_btc_move_book_loses_composite_move():
    pos = {"SOLUSDT": 1e6}
    sc = shock({"BTCUSDT": -0.15, "CRYPTO_EW": -0.35}, driver="CRYPTO_EW", kind="correlation_breakdown")
    s = run_scenarios(pos, BETAS, None, sc).scenarios[0]
    assert s.position_pnl["SOLUSDT"] == pytest.approx(1e6 * 1.2 * -0.35)
    assert s.hedge_pnl["BTCUSDT"] == pytest.approx(-1.5e6 * -0.15)
    assert s.pnl_hedged == pytest.approx(-420_000 + 225_000)


def test_historical_replay_reproduces_compounded_panel_returns():
    idx = pd.date_range("2022-05-01", periods=20, freq="D", tz="UTC")
    rng = np.random.default_rng(0)
    r_sol = rng.normal(0, 0.05, len(idx))
    r_btc = rng.normal(0, 0.03, len(idx))
    assets = {
        "SOLUSDT": pd.DataFrame({"close": 50 * np.cumprod(1 + r_sol)}, index=idx),
        "BTCUSDT": pd.DataFrame({"close": 3e4 * np.cumprod(1 + r_btc)}, index=idx),
    }
    panel = build_panel(assets)
    sc = parse_scenarios([{"name": "luna", "kind": "historical", "start": "2022-05-05", "end": "2022-05-13"}])
    rep = run_scenarios({"SOLUSDT": 1e6}, BETAS, {"BTCUSDT": -1.5e6}, sc, history=panel)
    s = rep.scenarios[0]
    rows = (idx >= "2022-05-05") & (idx <= "2022-05-13")
    expect_sol = float(np.prod(1 + r_sol[rows]) - 1)
    expect_btc = float(np.prod(1 + r_btc[rows]) - 1)
    assert s.asset_returns["SOLUSDT"] == pytest.approx(expect_sol, rel=1e-10)
    assert s.asset_returns["BTCUSDT"] == pytest.approx(expect_btc, rel=1e-10)
    assert s.pnl_hedged == pytest.approx(1e6 * expect_sol - 1.5e6 * expect_btc, rel=1e-10)


def test_scenario_validation_error_names_the_field():
    with pytest.raises(DataError, match=r"scenario\[1\] field 'shocks'"):
        parse_scenarios(
            [
                {"name": "ok", "kind": "benchmark_shock", "shocks": {"BTCUSDT": -0.3}},
                {"name": "bad", "kind": "benchmark_shock", "shocks": {"BTCUSDT": -1.5}},
            ],
            "f.toml",
        )
    with pytest.raises(DataError, match=r"scenario\[0\] field 'multipliers'"):
        parse_scenarios([{"name": "x", "kind": "beta_shift", "shocks": {"BTCUSDT": -0.2}}])
    with pytest.raises(DataError, match="'kind'"):
        parse_scenarios([{"name": "x", "kind": "meteor", "shocks": {"BTCUSDT": -0.2}}])


def test_scenario_file_error_names_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[[scenario]]\nname = "x"\nkind = "historical"\nstart = 2022-05-13\nend = 2022-05-05\n')
    with pytest.raises(DataError, match=r"s\.toml: scenario\[0\].*end 2022-05-05 is before start"):
        load_scenarios(p)


def test_default_scenarios_validate_and_cover_every_kind():
    kinds = {s.kind for s in load_scenarios(default_scenarios_path())}
    assert kinds == {"benchmark_shock", "beta_shift", "correlation_breakdown", "historical"}


def test_report_is_json_serialisable():
    import json

    rep = run_scenarios({"SOLUSDT": 1e6}, BETAS, None, shock({"BTCUSDT": -0.3}))
    data = json.loads(json.dumps(rep.model_dump(mode="json")))
    assert data["scenarios"][0]["pnl_unhedged"] == pytest.approx(-450_000.0)


def test_missing_beta_is_an_error_naming_symbol_and_series():
    with pytest.raises(ValueError, match="no beta of 'SOLUSDT' to 'SPY'"):
        run_scenarios({"SOLUSDT": 1e6}, BETAS, {"BTCUSDT": 0.0}, shock({"SPY": -0.1}))
