"""The numpy panel fast path equals build_panel frame by frame, and serving's entry point
(`panel_from_observations`) publishes factors by the same calendar and lag rules as the loaders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.data.panel_columns import COLUMNS, panel_from_columns, panel_from_observations
from adaptive_beta.models.data.publication import bar_length, publication_ns_many, publication_times
from adaptive_beta.models.data.schema import FactorSeries, build_panel
from adaptive_beta.models.durations import parse_duration

FRAMES = ("close", "volume", "funding_rate", "open_interest", "factors", "factor_staleness", "benchmarks")


def _us(start: str, n: int, step: str, drop: tuple[int, ...] = ()) -> np.ndarray:
    idx = pd.date_range(start, periods=n, freq=step, tz="UTC")
    keep = [i for i in range(n) if i not in drop]
    return idx.as_unit("ns").asi8[keep] // 1000


def _observations(freq: str, btc_as_asset: bool, seed: int):
    """(assets, bar series, factors with their rules) as serving passes them."""
    rng = np.random.default_rng(seed)

    def hist(start, n, extras=True, drop=()):
        us = _us(start, n, freq, drop)
        cols = {"close": rng.uniform(1, 100, len(us))}
        if extras:
            cols |= {"volume": rng.uniform(0, 9, len(us)), "funding_rate": rng.normal(0, 1e-4, len(us))}
        return us, cols

    assets = {"SOLUSDT": hist("2024-01-01", 40), "ETHUSDT": hist("2024-01-03", 30, extras=False, drop=(5, 6))}
    if btc_as_asset:
        assets["BTCUSDT"] = hist("2024-01-02", 35)
    bars = {"CRYPTO_EW": (_us("2024-01-01", 40, freq), rng.uniform(1, 2, 40))}
    if not btc_as_asset:
        bars["BTCUSDT"] = (_us("2024-01-01", 40, freq), rng.uniform(1, 2, 40))
    days = pd.bdate_range("2023-12-20", "2024-03-01", tz="UTC").as_unit("ns").asi8 // 1000  # no weekends
    factors = {
        "SPX": (days, rng.uniform(4000, 5000, len(days)), "equity", "us_close", None),
        "DGS10": (days, rng.normal(4, 0.1, len(days)), "rates", "us_close", "1d"),
        "VIX": (days, rng.uniform(12, 20, len(days)), "volatility", "us_close", "15min"),
        "TICK": (_us("2023-12-29 13:30", 60, "1D"), rng.normal(0, 1, 60), "other", "timestamp", None),
    }
    return assets, bars, factors


def _general(assets, bars, factors, freq, btc, max_staleness="5d"):
    """build_panel on pandas frames, factors published one series at a time by `publication_times`."""
    frames = {
        s: pd.DataFrame(
            {c: cols.get(c, np.full(len(us), np.nan)) for c in COLUMNS},
            index=pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC"),
        )
        for s, (us, cols) in assets.items()
    }
    bench = {
        n: pd.Series(v, index=pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC"))
        for n, (us, v) in bars.items()
    }
    series = {}
    for name, (us, vals, cat, cal, lag) in factors.items():
        idx = pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC")
        pub = publication_times(idx, cal, parse_duration(lag) if lag else None)
        series[name] = FactorSeries(pd.Series(vals, index=pub), cat, cal, lag)
    return build_panel(
        frames, series, freq=freq, btc_symbol=btc, benchmark_series=bench, max_staleness=max_staleness
    )


def _assert_same(got, want):
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=True)
        assert getattr(got, name).index.freq == getattr(want, name).index.freq
    assert got.factor_categories == want.factor_categories
    assert got.freq == want.freq and got.meta == want.meta
    assert got.fingerprint() == want.fingerprint()


@pytest.mark.parametrize("freq", ["1D", "8h"])
@pytest.mark.parametrize("btc_as_asset", [False, True])
def test_fast_panel_equals_build_panel_frame_by_frame(freq, btc_as_asset):
    assets, bars, factors = _observations(freq, btc_as_asset, seed=3)
    want = _general(assets, bars, factors, pd.Timedelta(freq), "BTCUSDT")
    pubs = publication_ns_many(
        [(us * 1000, cal, parse_duration(lag) if lag else None) for us, _, _, cal, lag in factors.values()]
    )
    published = {n: (p, f[1], f[2]) for (n, f), p in zip(factors.items(), pubs, strict=True)}
    full = {
        s: (us, {c: cols.get(c, np.full(len(us), np.nan)) for c in COLUMNS})
        for s, (us, cols) in assets.items()
    }
    rules = {n: (f[3], f[4]) for n, f in factors.items()}
    got = panel_from_columns(full, dict(bars), published, pd.Timedelta(freq), "BTCUSDT", "5d", rules)
    assert got is not None
    _assert_same(got, want)
    assert np.isnan(got.close["ETHUSDT"]).sum() >= 2  # the two bars missing from ETHUSDT stay NaN


@pytest.mark.parametrize("freq", ["1D", "8h"])
def test_panel_from_observations_publishes_by_calendar_and_lag_as_the_loaders(freq):
    assets, bars, factors = _observations(freq, True, seed=5)
    got = panel_from_observations(assets, bars, factors, pd.Timedelta(freq), "BTCUSDT", "3d")
    _assert_same(got, _general(assets, bars, factors, pd.Timedelta(freq), "BTCUSDT", "3d"))
    assert got.meta["factor_publication"]["DGS10"] == {"calendar": "us_close", "lag": "1d"}
    assert got.meta["max_staleness"] == "3d"
    # Friday 2024-01-05 close: SPX is known at the bar closing 2024-01-06 00:00 UTC (published
    # 21:00 UTC), DGS10 of the same date only a day later (lag 1d)
    t = pd.Timestamp("2024-01-05", tz="UTC") if freq == "1D" else pd.Timestamp("2024-01-05 16:00", tz="UTC")
    spx_day = factors["SPX"][1][list(factors["SPX"][0]).index(pd.Timestamp("2024-01-05").value // 1000)]
    assert got.factors.at[t, "SPX"] == spx_day
    dgs_prev = factors["DGS10"][1][list(factors["DGS10"][0]).index(pd.Timestamp("2024-01-04").value // 1000)]
    assert got.factors.at[t, "DGS10"] == dgs_prev


def test_request_without_the_composite_takes_build_panel():
    assets, bars, factors = _observations("1D", True, seed=1)
    del bars["CRYPTO_EW"]
    full = {
        s: (us, {c: cols.get(c, np.full(len(us), np.nan)) for c in COLUMNS})
        for s, (us, cols) in assets.items()
    }
    assert panel_from_columns(full, bars, {}, pd.Timedelta("1D"), "BTCUSDT") is None
    got = panel_from_observations(assets, bars, factors, pd.Timedelta("1D"), "BTCUSDT", "5d")
    _assert_same(got, _general(assets, bars, factors, pd.Timedelta("1D"), "BTCUSDT"))


def test_us_close_is_16h_new_york_with_the_dates_own_dst_offset_plus_lag():
    dates = pd.DatetimeIndex(["2024-01-02", "2024-03-08", "2024-03-11", "2024-07-01"], tz="UTC")
    got = publication_times(dates, "us_close", pd.Timedelta("15min"))
    assert [t.strftime("%m-%d %H:%M") for t in got] == [
        "01-02 21:15",
        "03-08 21:15",
        "03-11 20:15",
        "07-01 20:15",
    ]
    assert publication_times(dates[:1], "utc_close")[0] == pd.Timestamp("2024-01-03", tz="UTC")
    intraday = pd.DatetimeIndex(["2024-01-02 13:30"], tz="UTC")
    assert publication_times(intraday, "timestamp")[0] == intraday[0]


def test_publication_ns_many_equals_one_series_at_a_time():
    jan2, day = pd.Timestamp("2024-01-02").value, 86_400 * 10**9
    series = [
        (np.array([jan2, jan2 + day]), "us_close", None),
        (np.array([jan2 + 3_600 * 10**9]), "timestamp", pd.Timedelta("1h")),
        (np.array([], dtype=np.int64), "us_close", None),
        (np.array([pd.Timestamp("2024-07-01").value]), "us_close", pd.Timedelta("1D")),
        (np.array([jan2, jan2 + 8 * 3_600 * 10**9]), "bar_open", None),
        (np.array([jan2 + 5]), "utc_close", None),
    ]

    def reference(idx: pd.DatetimeIndex, cal: str) -> pd.DatetimeIndex:  # the rules, written in pandas
        if cal == "us_close":
            local = (idx.tz_localize(None).normalize() + pd.Timedelta(hours=16)).tz_localize(
                "America/New_York"
            )
            return local.tz_convert("UTC")
        if cal == "utc_close":
            return idx.normalize() + pd.Timedelta("1D")
        return idx + bar_length(idx) if cal == "bar_open" else idx

    many = publication_ns_many(series)
    for (a, cal, lag), m in zip(series, many, strict=True):
        want = reference(pd.DatetimeIndex(a, tz="UTC"), cal) + (lag or pd.Timedelta(0))
        assert m.tolist() == want.as_unit("ns").asi8.tolist()
        assert publication_times(pd.DatetimeIndex(a, tz="UTC"), cal, lag).asi8.tolist() == m.tolist()
    assert many[0][0] == jan2 + 21 * 3_600 * 10**9  # EST


@settings(max_examples=30, deadline=None)
@given(
    freq=st.sampled_from(["1D", "8h", "1h"]),
    seed=st.integers(0, 10_000),
    nan_share=st.sampled_from([0.0, 0.1, 0.5]),
    max_staleness=st.sampled_from(["1d", "3d", "5d"]),
)
def test_fast_panel_equals_build_panel_with_missing_values_and_shared_calendars(
    freq, seed, nan_share, max_staleness
):
    """Factors with NaN values (dropped before the as-of join, so VIX then has its own
    publication times), one with no value at all, SPX's calendar again after another one
    (joined separately) and late-starting prints, on several grids."""
    assets, bars, factors = _observations(freq, seed % 2 == 0, seed)
    rng = np.random.default_rng(seed)
    days, spx = factors["SPX"][0], factors["SPX"][1]
    vix = factors["VIX"][1].copy()
    vix[rng.random(len(vix)) < nan_share] = np.nan
    factors["VIX"] = (days, vix, "volatility", "us_close", None)
    factors["EMPTY"] = (days, np.full(len(days), np.nan), "equity", "us_close", None)
    factors["SPX2"] = (days, spx * 2, "equity", "us_close", None)
    factors["LATE"] = (days[30:], spx[30:], "equity", "us_close", None)
    want = _general(assets, bars, factors, pd.Timedelta(freq), "BTCUSDT", max_staleness)
    got = panel_from_observations(assets, bars, factors, pd.Timedelta(freq), "BTCUSDT", max_staleness)
    _assert_same(got, want)
    assert got.factors["EMPTY"].isna().all() and got.factors["LATE"].iloc[0] != got.factors["LATE"].iloc[0]
    pubs = publication_ns_many([(us * 1000, cal, None) for us, _, _, cal, _ in factors.values()])
    published = {n: (p, f[1], f[2]) for (n, f), p in zip(factors.items(), pubs, strict=True)}
    full = {
        s: (us, {c: cols.get(c, np.full(len(us), np.nan)) for c in COLUMNS})
        for s, (us, cols) in assets.items()
    }
    assert panel_from_columns(full, dict(bars), published, pd.Timedelta(freq), "BTCUSDT") is not None


def test_unsorted_publication_times_leave_the_fast_path_with_the_same_panel():
    assets, bars, factors = _observations("1D", True, seed=2)
    us, vals, *rule = factors["TICK"]
    order = np.r_[1, 0, 2 : len(us)]  # two prints swapped
    factors["TICK"] = (us[order], vals[order], *rule)
    pubs = publication_ns_many([(u * 1000, cal, None) for u, _, _, cal, _ in factors.values()])
    published = {n: (p, f[1], f[2]) for (n, f), p in zip(factors.items(), pubs, strict=True)}
    full = {
        s: (u, {c: cols.get(c, np.full(len(u), np.nan)) for c in COLUMNS}) for s, (u, cols) in assets.items()
    }
    assert panel_from_columns(full, dict(bars), published, pd.Timedelta("1D"), "BTCUSDT") is None
    got = panel_from_observations(assets, bars, factors, pd.Timedelta("1D"), "BTCUSDT", "5d")
    _assert_same(got, _general(assets, bars, factors, pd.Timedelta("1D"), "BTCUSDT"))


def test_panels_share_no_mutable_labels():
    """The cached label and grid indexes are handed out as views: naming one panel's columns or
    index names no other panel's."""
    assets, bars, factors = _observations("1D", True, seed=4)
    a = panel_from_observations(assets, bars, factors, pd.Timedelta("1D"), "BTCUSDT", "5d")
    b = panel_from_observations(assets, bars, factors, pd.Timedelta("1D"), "BTCUSDT", "5d")
    a.close.columns.name, a.factors.columns.name, a.close.index.name = "symbol", "factor", "time"
    assert b.close.columns.name is None and b.factors.columns.name is None and b.close.index.name is None
    assert a.volume.columns.name == "symbol"  # one panel's four asset frames share their labels, as before
    assert b.close.index.freq == pd.Timedelta("1D") and list(b.factors.columns) == list(factors)
