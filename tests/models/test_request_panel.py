"""A request's Panel and model inputs, the service's path (`observation_panel` -> `make_inputs`),
equal the previous code path on awkward requests: `build_panel` on pandas frames with each factor
published on its own by `publication_times`, then the long-frame windows (`compute_features` ->
`latest_windows` -> `.loc`).  Gaps, a late listing, an asset that stopped trading (windows
ending at different rows), factors skipping holidays and weekends, a factor gone stale, factors
sharing or not sharing their publication times; and the same errors on requests that fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.bundle.folder import load_bundle
from adaptive_beta.models.bundle.inference import make_inputs
from adaptive_beta.models.bundle.panel_frame import observation_panel
from adaptive_beta.models.data.schema import DataError
from tests.models.test_features_fast import reference_inputs
from tests.models.test_panel_columns import _assert_same, _general
from tests.serving.conftest import build_tiny_bundle, synthetic_market

N = 120  # bars per asset; the tiny bundle needs 26
HOLIDAYS = ("2025-01-20", "2025-02-17", "2025-04-18")  # MLK, Presidents' Day, Good Friday


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    build_tiny_bundle(out)
    return load_bundle(out)


def _us(index: pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(index).as_unit("us").asi8


def request(seed: int, gaps=0, late=0, stopped=0, holidays=True, stale=0, weekends=True):
    """(assets, series, the factors with their rules) of a request on a synthetic market.

    gaps: bars dropped at random from two assets (not their last 3); late: bars ETHUSDT is
    missing at the start; stopped: bars DOGEUSDT is missing at the end; stale: days before the
    last bar that SPY, VIX, QQQ and FNG stop printing; weekends: FNG (category other: utc_close,
    published at midnight: exactly at a bar close) prints every calendar day.
    """
    rng = np.random.default_rng(seed)
    frames, _ = synthetic_market(seed=seed, n=N)
    assets = {}
    for sym, df in frames.items():
        keep = np.ones(N, dtype=bool)
        if sym in ("SOLUSDT", "ETHUSDT") and gaps:
            keep[rng.choice(N - 3, gaps, replace=False)] = False
        if sym == "ETHUSDT":
            keep[:late] = False
        if sym == "DOGEUSDT" and stopped:
            keep[N - stopped :] = False
        cols = {c: df[c].to_numpy()[keep] for c in ("close", "volume", "funding_rate")}
        assets[sym] = (_us(df.index[keep]), cols)
    grid = frames["BTCUSDT"].index
    composite = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, N)))
    series = {"CRYPTO_EW": (_us(grid), {"close": composite})}
    days = pd.bdate_range(grid[0] - pd.Timedelta("10D"), grid[-1], tz="UTC")
    if holidays:
        days = days[~days.isin(pd.DatetimeIndex(HOLIDAYS, tz="UTC"))]
    us_days = days[days <= grid[-1] - pd.Timedelta(days=stale)] if stale else days
    rates_days = days[rng.random(len(days)) > 0.05]  # its own holidays: not joined with SPY/VIX
    factors = {  # VIX: SPY's instants (joined with it); QQQ too, after another calendar
        "SPY": (_us(us_days), 500 * np.exp(np.cumsum(rng.normal(0, 0.01, len(us_days)))), "equity"),
        "VIX": (_us(us_days), rng.uniform(12, 30, len(us_days)), "volatility"),
        "DGS10": (_us(rates_days), 4 + np.cumsum(rng.normal(0, 0.02, len(rates_days))), "rates"),
        "QQQ": (_us(us_days), rng.uniform(300, 400, len(us_days)), "equity"),
    }
    calendars = {name: "us_close" for name in factors}
    if weekends:
        # from the 6th bar on (published at a bar close: the first bars see none), stale too
        every = pd.date_range(grid[5], grid[-1] - pd.Timedelta(days=stale), freq="1D", tz="UTC")
        factors["FNG"] = (_us(every), rng.uniform(0, 100, len(every)), "other")
        calendars["FNG"] = "utc_close"
    for name, (us, vals, _) in factors.items():
        series[name] = (us, {"close": vals})
    rules = {name: (us, vals, cat, calendars[name], None) for name, (us, vals, cat) in factors.items()}
    return assets, series, rules


def served_and_reference(bundle, assets, series, rules):
    panel = observation_panel(bundle.meta, assets, series)
    bars = {"CRYPTO_EW": (series["CRYPTO_EW"][0], series["CRYPTO_EW"][1]["close"])}
    ref = _general(assets, bars, rules, pd.Timedelta("1D"), "BTCUSDT", bundle.meta.max_staleness)
    return panel, ref


CASES = {
    "plain": {},
    "gaps": {"gaps": 12},
    "late listing": {"late": 40},
    "stopped trading": {"stopped": 4},
    "stale factors": {"stale": 7},
    "everything": {"gaps": 8, "late": 30, "stopped": 2, "stale": 7},
    "no holidays, no weekend series": {"holidays": False, "weekends": False},
}


@pytest.mark.parametrize("case", list(CASES))
def test_request_panel_and_inputs_equal_the_previous_path(bundle, case):
    assets, series, rules = request(seed=3, **CASES[case])
    panel, ref = served_and_reference(bundle, assets, series, rules)
    _assert_same(panel, ref)
    symbols = [s for s in assets if s != "BTCUSDT"]
    got = make_inputs(panel, bundle, symbols=symbols)
    x, as_of, rows = reference_inputs(ref, bundle, symbols)
    np.testing.assert_array_equal(got.x, x)
    assert got.x.dtype == np.float32 and got.symbols == symbols and got.as_of == as_of
    np.testing.assert_array_equal(got.rows.to_numpy(), rows)
    assert list(got.rows.columns) == bundle.feature_columns and got.rows.index.name == "symbol"
    stopped = CASES[case].get("stopped", 0)
    assert as_of[symbols.index("DOGEUSDT")] == panel.index[-1 - stopped]
    fng = panel.factor_staleness["FNG"] if "FNG" in rules else None
    if fng is not None:  # the day's print is known at the close of that day's bar, not before
        assert fng.iloc[:5].isna().all() and fng.iloc[5] == 0.0
    if CASES[case].get("stale"):  # unknown at the last bars: too old
        assert np.isnan(panel.factors["SPY"].iloc[-1]) and np.isnan(panel.factor_staleness["SPY"].iloc[-1])
        # FNG's last print (7 days before the last bar's date) is known from the close of bar -8
        assert fng.iloc[-3] == 5.0 and np.isnan(fng.iloc[-2])  # 5d old: still known; 6d: not


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    gaps=st.integers(0, 15),
    late=st.integers(0, 90),
    stopped=st.integers(0, 5),
    stale=st.integers(0, 12),
    holidays=st.booleans(),
)
def test_random_requests_equal_the_previous_path(bundle, seed, gaps, late, stopped, stale, holidays):
    assets, series, rules = request(seed, gaps, late, stopped, holidays, stale)
    panel, ref = served_and_reference(bundle, assets, series, rules)
    _assert_same(panel, ref)
    symbols = ["SOLUSDT", "DOGEUSDT", "ETHUSDT"]
    got = make_inputs(panel, bundle, symbols=symbols)
    x, as_of, rows = reference_inputs(ref, bundle, symbols)
    np.testing.assert_array_equal(got.x, x)
    assert got.as_of == as_of
    np.testing.assert_array_equal(got.rows.to_numpy(), rows)


def test_errors_name_the_same_asset_in_the_same_order(bundle):
    assets, series, _ = request(seed=5, late=N - 10)  # ETHUSDT: 10 bars
    panel = observation_panel(bundle.meta, assets, series)
    need = bundle.meta.required_history.min_periods
    msg = f"asset ETHUSDT: 10 bars of 1d history, the model needs {need} ({need - 10} missing)"
    with pytest.raises(DataError) as short:
        make_inputs(panel, bundle, symbols=["SOLUSDT", "ETHUSDT", "NOPEUSDT"])
    assert short.value.message == msg and short.value.column == "ETHUSDT"
    with pytest.raises(KeyError, match="NOPEUSDT"):  # an unknown asset first: the frame's KeyError
        make_inputs(panel, bundle, symbols=["NOPEUSDT", "ETHUSDT"])
    del series["SPY"]
    with pytest.raises(DataError, match=r"request lacks series \['SPY'\] required by the model \(it has \["):
        make_inputs(observation_panel(bundle.meta, assets, series), bundle, symbols=["SOLUSDT"])
    stale = observation_panel(bundle.meta, *request(seed=5)[:2])
    stale.close.loc[stale.index[-1], "SOLUSDT"] = np.inf  # a last bar whose base beta is not finite
    with pytest.raises(DataError, match="asset SOLUSDT: base beta not available at its last bar"):
        make_inputs(stale, bundle, symbols=["SOLUSDT"])
