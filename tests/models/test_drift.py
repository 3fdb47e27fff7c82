"""PSI and beta-shift runs: hand-computed values, the normal-shift closed form, and properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from adaptive_beta.models.monitoring.drift import (
    beta_shift_runs,
    bin_shares,
    build_reference,
    feature_psi,
    group_psi,
    psi,
    psi_from_samples,
    psi_status,
    quantile_edges,
)


def test_psi_matches_hand_computed_value():
    e = np.array([0.25, 0.25, 0.25, 0.25])
    a = np.array([0.10, 0.20, 0.30, 0.40])
    by_hand = sum((ai - ei) * np.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert by_hand == pytest.approx(0.228217, abs=1e-6)  # 0.137444 + 0.011157 + 0.009116 + 0.070500
    assert psi(e, a) == pytest.approx(by_hand, abs=1e-12)


def test_bin_shares_counts_ties_upward_and_missing_last():
    edges = np.array([1.0, 2.0])
    shares = bin_shares(np.array([0.5, 1.0, 1.5, 2.0, 3.0, np.nan, np.inf, 2.5]), edges)
    # bins (-inf,1), [1,2), [2,inf), missing
    np.testing.assert_allclose(shares, [1 / 8, 2 / 8, 3 / 8, 2 / 8])


def test_quantile_edges_collapse_ties():
    x = np.array([0.0] * 80 + [1.0] * 20)
    np.testing.assert_array_equal(quantile_edges(x, 10), [0.0, 1.0])
    assert quantile_edges(np.array([np.nan, np.nan]), 10).size == 0


def test_psi_of_shifted_normal_matches_binned_jeffreys_divergence():
    """Independent reference: N(0,1) vs N(mu,1) on the N(0,1) deciles, shares from the normal cdf."""
    rng = np.random.default_rng(0)
    mu, n_bins = 0.5, 10
    ref = rng.standard_normal(400_000)
    cur = rng.standard_normal(400_000) + mu
    cuts = norm.ppf(np.arange(1, n_bins) / n_bins)
    e = np.diff(np.concatenate([[0.0], norm.cdf(cuts), [1.0]]))
    a = np.diff(np.concatenate([[0.0], norm.cdf(cuts - mu), [1.0]]))
    exact = float(np.sum((a - e) * np.log(a / e)))
    assert exact == pytest.approx(0.2377, abs=1e-4)  # a bit under the unbinned value mu^2 = 0.25
    assert psi_from_samples(ref, cur, n_bins) == pytest.approx(exact, rel=0.02)


def test_missing_values_count_as_drift():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(5000)
    cur = ref.copy()
    cur[: len(cur) // 2] = np.nan  # half the feed goes dead
    # shares: missing 0 -> 0.5 (floored at eps), every finite bin halves
    expected = 0.5 * np.log(0.5 / 1e-4) + 10 * (0.05 - 0.1) * np.log(0.5)
    assert psi_from_samples(ref, cur) == pytest.approx(expected, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shift=st.floats(-2, 2),
    scale=st.floats(0.2, 5),
)
def test_psi_is_nonnegative_symmetric_and_invariant_to_increasing_transforms(seed, shift, scale):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(500)
    cur = rng.standard_normal(300) * scale + shift
    edges = quantile_edges(ref)
    e, a = bin_shares(ref, edges), bin_shares(cur, edges)
    v = psi(e, a)
    assert v >= 0
    assert psi(a, e) == pytest.approx(v, rel=1e-12, abs=1e-12)
    assert psi(e, e) == 0.0
    # quantile bins follow a strictly increasing map applied to both samples
    assert psi_from_samples(np.exp(ref), np.exp(cur)) == pytest.approx(psi_from_samples(ref, cur), abs=1e-9)


def test_feature_and_group_psi_tables():
    rng = np.random.default_rng(2)
    train = pd.DataFrame(
        {"a": rng.standard_normal(2000), "b": rng.standard_normal(2000), "c": rng.random(2000)}
    )
    groups = {"a": "volatility", "b": "volatility", "c": "own_history"}
    ref = build_reference(train, groups)
    recent = pd.DataFrame({"a": rng.standard_normal(1000) + 1.0, "b": rng.standard_normal(1000)})
    table = feature_psi(ref, recent)
    by = table.set_index("feature")
    assert by.loc["a", "psi"] > 0.5 and by.loc["b", "psi"] < 0.05
    # c is absent in the recent data: every row missing -> shares (eps.., 1) vs (0.1.., 0)
    assert by.loc["c", "missing_current"] == 1.0 and by.loc["c", "psi"] > 5
    g = group_psi(table).set_index("group")
    assert g.loc["volatility", "psi"] == pytest.approx((by.loc["a", "psi"] + by.loc["b", "psi"]) / 2)
    assert g.loc["volatility", "worst_feature"] == "a" and g.loc["volatility", "n_drift"] == 1
    assert g.loc["volatility", "status"] == "drift"
    assert [psi_status(x) for x in (0.05, 0.1, 0.2, 0.3, float("nan"))] == [
        "stable",
        "stable",
        "watch",
        "drift",
        "n/a",
    ]


def _completed(realised: list[float], lo=0.8, hi=1.2, start="2024-01-01", symbol="ETH"):
    ts = pd.date_range(start, periods=len(realised), freq="1D", tz="UTC")
    return pd.DataFrame(
        {
            "as_of": ts,
            "symbol": symbol,
            "benchmark": "BTC",
            "beta": 1.0,
            "lo": lo,
            "hi": hi,
            "realised": realised,
        }
    )


def test_beta_shift_needs_consecutive_periods_on_one_side():
    week = pd.Timedelta("7d")
    inside, below, above = [1.0] * 7, [0.5] * 7, [1.5] * 7
    # weeks: in, below, below, below, in -> one run of 3 below
    df = _completed(inside + below + below + below + inside)
    r = beta_shift_runs(df, week, consecutive=3).iloc[0]
    assert (r.longest_run, r.direction, r.flagged, r.outside_periods) == (3, "below", True, 3)
    assert r.run_end == "2024-01-22T00:00:00+00:00"
    # a side switch breaks the run
    r = beta_shift_runs(_completed(below + below + above + above), week, consecutive=3).iloc[0]
    assert (r.longest_run, r.flagged) == (2, False)
    # a majority inside the week (3 of 7 outside) is not an outside week
    mixed = [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    r = beta_shift_runs(_completed(mixed * 4), week, consecutive=1).iloc[0]
    assert (r.longest_run, r.outside_periods, r.direction) == (0, 0, None)


def test_beta_shift_gap_in_periods_breaks_the_run():
    df = _completed([0.5] * 14 + [1.0] * 7 + [0.5] * 14)
    df = df[(df.as_of < "2024-01-15") | (df.as_of >= "2024-01-22")]  # the inside week has no forecasts
    r = beta_shift_runs(df, pd.Timedelta("7d"), consecutive=3).iloc[0]
    assert (r.periods, r.longest_run, r.flagged) == (4, 2, False)
    assert beta_shift_runs(df.iloc[:0], pd.Timedelta("7d")).empty
