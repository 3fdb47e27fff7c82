"""Hedge overlay: hand examples, exact residual when reachable, limits, and interval arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.portfolio.hedge import hedge_overlay


def test_one_benchmark_one_instrument_matches_hand_formula():
    # SOL long 1_000_000 with beta 1.4 to BTC; hedge with BTC perp (beta 1.0); target 0
    r = hedge_overlay(
        positions={"SOLUSDT": 1_000_000.0},
        betas={"SOLUSDT": {"BTCUSDT": 1.4}},
        beta_intervals=None,
        hedge_instruments=["BTCUSDT"],
        instrument_betas={"BTCUSDT": {"BTCUSDT": 1.0}},
        target={"BTCUSDT": 0.0},
    )
    # n = -(beta_p - target) * NAV / beta_h = -(1.4 - 0) * 1e6 / 1
    assert r.orders["BTCUSDT"] == pytest.approx(-1_400_000.0)
    assert r.portfolio_beta["BTCUSDT"] == pytest.approx(1.4)
    assert r.residual_beta["BTCUSDT"] == pytest.approx(0.0, abs=1e-12)
    assert r.reachable and r.method == "closed_form"


def test_nonzero_target_with_explicit_nav_and_instrument_beta():
    # two longs, NAV 2e6 given; beta_p = (1e6*1.2 + 5e5*0.8)/2e6 = 0.8; target 0.5; hedge beta 1.1
    r = hedge_overlay(
        {"ETHUSDT": 1e6, "SOLUSDT": 5e5},
        {"ETHUSDT": {"B": 1.2}, "SOLUSDT": {"B": 0.8}},
        None,
        ["H"],
        {"H": {"B": 1.1}},
        {"B": 0.5},
        nav=2e6,
    )
    assert r.portfolio_beta["B"] == pytest.approx(0.8)
    assert r.orders["H"] == pytest.approx(-(0.8 - 0.5) * 2e6 / 1.1)
    assert r.residual_beta["B"] == pytest.approx(0.5)


def test_two_benchmarks_two_instruments_solve_exactly():
    betas = {"SOL": {"BTC": 1.3, "EW": 1.1}, "DOGE": {"BTC": 0.9, "EW": 1.4}}
    inst = {"BTC": {"BTC": 1.0, "EW": 0.8}, "ETH": {"BTC": 0.7, "EW": 1.2}}
    r = hedge_overlay({"SOL": 2e6, "DOGE": -5e5}, betas, None, ["BTC", "ETH"], inst, {"BTC": 0.0, "EW": 0.25})
    nav = 2.5e6
    D = np.array([2e6 * 1.3 - 5e5 * 0.9, 2e6 * 1.1 - 5e5 * 1.4])
    C = np.array([[1.0, 0.8], [0.7, 1.2]])
    h = np.linalg.solve(C.T, np.array([0.0, 0.25]) * nav - D)
    assert [r.orders["BTC"], r.orders["ETH"]] == pytest.approx(h.tolist())
    assert r.residual_beta["BTC"] == pytest.approx(0.0, abs=1e-9)
    assert r.residual_beta["EW"] == pytest.approx(0.25, abs=1e-9)
    assert r.reachable


def test_more_benchmarks_than_instruments_gives_least_squares_gap():
    # one instrument (beta 1 to both), portfolio betas 1.0 and 0.0 -> best h makes residuals +-0.5
    r = hedge_overlay(
        {"A": 1.0}, {"A": {"X": 1.0, "Y": 0.0}}, None, ["H"], {"H": {"X": 1.0, "Y": 1.0}}, {"X": 0, "Y": 0}
    )
    assert r.orders["H"] == pytest.approx(-0.5)
    assert r.residual_beta == pytest.approx({"X": 0.5, "Y": -0.5})
    assert not r.reachable


def test_limits_bind_and_bounded_solver_is_used():
    r = hedge_overlay(
        {"SOL": 1e6},
        {"SOL": {"BTC": 1.4}},
        None,
        ["BTC"],
        {"BTC": {"BTC": 1.0}},
        {"BTC": 0.0},
        limits={"BTC": (-1e6, 1e6)},
    )
    assert r.orders["BTC"] == pytest.approx(-1e6)
    assert r.residual_beta["BTC"] == pytest.approx(0.4)
    assert r.method == "bounded_lsq" and not r.reachable


def test_worst_case_interval_by_interval_arithmetic():
    r = hedge_overlay(
        {"SOL": 1e6},
        {"SOL": {"BTC": 1.4}},
        {"SOL": {"BTC": (1.2, 1.7)}, "BTC": {"BTC": (0.95, 1.05)}},
        ["BTC"],
        {"BTC": {"BTC": 1.0}},
        {"BTC": 0.0},
    )
    # weights: SOL +1, BTC -1.4 -> lo = 1.2 - 1.4*1.05, hi = 1.7 - 1.4*0.95
    lo, hi = r.residual_interval["BTC"]
    assert lo == pytest.approx(1.2 - 1.47)
    assert hi == pytest.approx(1.7 - 1.33)
    r2 = hedge_overlay(
        {"SOL": 1e6},
        {"SOL": {"BTC": 1.4}},
        {"SOL": {"BTC": (1.2, 1.6)}, "BTC": {"BTC": (0.95, 1.05)}},
        ["BTC"],
        {"BTC": {"BTC": 1.0}},
        {"BTC": 0.0},
        interval_method="independent",
    )
    half = np.hypot(0.2, 1.4 * 0.05)
    assert r2.residual_interval["BTC"] == pytest.approx((-half, half))


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="no beta of 'ETH'"):
        hedge_overlay({"SOL": 1.0}, {"SOL": {"B": 1.0}}, None, ["ETH"], None, {"B": 0.0})
    with pytest.raises(ValueError, match="limits\\['X'\\]"):
        hedge_overlay(
            {"SOL": 1.0}, {"SOL": {"B": 1.0}, "H": {"B": 1}}, None, ["H"], None, {"B": 0.0}, {"X": (0, 1)}
        )
    with pytest.raises(ValueError, match="nav"):
        hedge_overlay({"SOL": 0.0}, {"SOL": {"B": 1.0}, "H": {"B": 1}}, None, ["H"], None, {"B": 0.0})


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 100_000), k=st.integers(1, 3), extra=st.integers(0, 2))
def test_residual_hits_target_whenever_instruments_span_the_benchmarks(seed, k, extra):
    rng = np.random.default_rng(seed)
    benches = [f"B{i}" for i in range(k)]
    n_assets, n_inst = 4, k + extra
    betas = {f"A{i}": dict(zip(benches, rng.uniform(0.2, 2.0, k), strict=True)) for i in range(n_assets)}
    C = rng.uniform(0.2, 2.0, (n_inst, k)) + np.eye(n_inst, k)  # full column rank a.s.
    inst = {f"H{j}": dict(zip(benches, C[j], strict=True)) for j in range(n_inst)}
    pos = {f"A{i}": float(rng.normal(scale=1e6)) for i in range(n_assets)}
    target = dict(zip(benches, rng.uniform(-0.5, 1.0, k), strict=True))
    r = hedge_overlay(pos, betas, None, list(inst), inst, target)
    for b in benches:
        assert r.residual_beta[b] == pytest.approx(target[b], abs=1e-8)
    assert r.reachable
