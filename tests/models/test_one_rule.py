"""Behaviour of the rules that had several copies, now written once (see tests/test_one_rule.py)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

from adaptive_beta.models.audit.chain import COLUMNS
from adaptive_beta.models.audit.store import SqliteStore
from adaptive_beta.models.bundle.inference import forecast_windows
from adaptive_beta.models.data.manifest import FactorSpec, Manifest
from adaptive_beta.models.data.schema import btc_benchmark, build_panel, find_btc, is_bar_series, is_btc
from adaptive_beta.models.durations import Duration, ZeroOrDuration, parse_duration_or_zero
from adaptive_beta.models.features.spec import FeatureSpec, feature_spec_hash
from adaptive_beta.models.features.windows import (
    gather_windows,
    n_steps,
    sample_index,
    window_geometry,
    window_span,
)
from adaptive_beta.models.monitoring.monitor import MonitorConfig
from adaptive_beta.models.portfolio.book import default_hedges, is_core_default
from adaptive_beta.models.portfolio.stress import factor_betas, replay_covered

# --- which symbol is BTC ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "btc"),
    [
        (["ETHUSDT", "BTCUSDT", "BTCUSDC"], "BTCUSDT"),  # the first BTC one
        (["eth", "btc-usd"], "btc-usd"),  # any case, any quote
        (["BTC/USDT:USDT"], "BTC/USDT:USDT"),
        (["ETHUSDT", "XBTUSD", "CRYPTO_EW"], None),  # XBT is not spelled BTC
        ([], None),
    ],
)
def test_find_btc_is_the_first_name_starting_with_btc(names, btc):
    assert find_btc(names) == btc
    assert find_btc(iter(names)) == btc  # any iterable (dict keys, generators)


def _asset(n=10, start="2024-01-01", freq="1D", scale=1.0):
    idx = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    return pd.DataFrame({"close": scale * (100.0 + np.arange(n))}, index=idx)


def test_build_panel_takes_btc_from_the_assets_then_from_given_series():
    p = build_panel({"ETHUSDT": _asset(), "btcusdt": _asset(scale=2.0)})
    assert p.meta["btc_symbol"] == "btcusdt" and p.benchmark_names == ["btcusdt", "CRYPTO_EW"]
    given = {"BTCUSDT": _asset(scale=3.0)["close"]}
    p = build_panel({"ETHUSDT": _asset()}, benchmark_series=given)
    assert p.meta["btc_symbol"] == "BTCUSDT"
    np.testing.assert_allclose(p.benchmarks["BTCUSDT"].to_numpy(), given["BTCUSDT"].to_numpy())
    p = build_panel({"ETHUSDT": _asset(), "SOLUSDT": _asset()}, btc_symbol="SOLUSDT")  # a manifest's choice
    assert p.meta["btc_symbol"] == "SOLUSDT"


def test_btc_benchmark_is_the_panels_btc_else_its_first_benchmark():
    p = build_panel({"ETHUSDT": _asset(), "BTCUSDT": _asset()})
    assert btc_benchmark(p) == "BTCUSDT"
    p = build_panel({"ETHUSDT": _asset(), "SOLUSDT": _asset()})  # no BTC: the composite
    assert p.meta["btc_symbol"] is None and btc_benchmark(p) == "CRYPTO_EW"


def test_default_hedges_and_core_book_use_the_same_btc_rule():
    syms = ["SOLUSDT", "ethusdt", "btcusdt", "BTCUSDC", "ADAUSDT"]
    assert default_hedges(syms) == ["btcusdt", "ethusdt"]
    assert [s for s in syms if is_core_default(s)] == ["SOLUSDT", "ADAUSDT"]
    assert default_hedges(["SOLUSDT"]) == []
    assert is_btc("btcusdt") and not is_btc("WBTCUSDT")


# --- bar series or factor ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "benchmarks", "bar"),
    [
        ("CRYPTO_EW", (), True),  # the composite
        ("BTCUSDT", (), True),  # a crypto benchmark by name
        ("TOTAL", (), True),
        ("SPY", (), False),  # factors
        ("DGS10", (), False),
        ("XBTUSD", (), False),  # an unknown name is a factor ...
        ("XBTUSD", ("XBTUSD", "CRYPTO_EW"), True),  # ... unless it is one of the model's benchmarks
    ],
)
def test_is_bar_series_benchmarks_composite_and_crypto_names(name, benchmarks, bar):
    assert is_bar_series(name, benchmarks) is bar


# --- window span ------------------------------------------------------------------------------


@pytest.mark.parametrize(("bars", "stride"), [(1, 1), (6, 2), (7, 2), (64, 2), (90, 3), (5, 8)])
def test_window_span_is_first_to_last_row_of_a_window(bars, stride):
    span = window_span(bars, stride)
    assert span == (n_steps(bars, stride) - 1) * stride + 1
    cube = np.arange(200, dtype=np.float32).reshape(200, 1, 1)
    w = gather_windows(cube, np.array([[span - 1, 0]]), bars, stride)  # the first row a window fits
    assert w[0, 0, 0] == 0.0 and w[0, -1, 0] == span - 1 and w.shape[1] == n_steps(bars, stride)
    with pytest.raises(ValueError, match=f"need t >= {span - 1}"):
        gather_windows(cube, np.array([[span - 2, 0]]), bars, stride)
    pairs = sample_index(np.ones((200, 1), dtype=bool), bars, stride)
    assert pairs[0, 0] == span - 1


def test_window_geometry_span_is_window_span():
    geo = window_geometry("64d", pd.Timedelta("8h"), max_steps=32)  # 192 bars, stride 6, 32 steps
    assert (geo.lookback_bars, geo.stride, geo.steps) == (192, 6, 32)
    assert geo.span == window_span(192, 6) == 187


# --- feature-spec hash ------------------------------------------------------------------------


def test_feature_spec_hash_is_canonical_whatever_form_the_spec_comes_in():
    spec = FeatureSpec(beta_windows=("20d", "60d"))
    d = spec.to_dict()
    shuffled = json.loads(json.dumps(dict(reversed(list(d.items())))))
    assert feature_spec_hash(spec) == spec.hash() == feature_spec_hash(d) == feature_spec_hash(shuffled)
    # the old serving fallback hashed json.dumps(dict) (key order, spaces): a different identity
    import hashlib

    assert hashlib.sha256(json.dumps(shuffled).encode()).hexdigest() != spec.hash()


def test_default_feature_spec_hash_did_not_change():
    """Bundles record this hash; a change to the spec's field types must not move it."""
    assert FeatureSpec().hash() == "9a02b4b33088a31a955c7e408ad253b31882d0fd6b4dc69859d5672b8e1afcbe"


# --- durations in configs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "field", "kwargs"),
    [
        (MonitorConfig, "window", {}),
        (MonitorConfig, "shift_period", {}),
        (MonitorConfig, "error_window", {}),
        (FeatureSpec, "welch_halflife", {}),
        (FeatureSpec, "drawdown_window", {}),
        (FactorSpec, "lag", {"name": "SPY", "path": "spy.csv"}),
        (Manifest, "freq", {}),
        (Manifest, "max_staleness", {}),
    ],
)
def test_a_bad_duration_is_an_error_naming_the_field(cls, field, kwargs):
    with pytest.raises(ValidationError) as exc:
        cls(**kwargs, **{field: "soon"})
    err = exc.value.errors()[0]
    assert err["loc"] == (field,) and "invalid duration 'soon'" in err["msg"]
    assert field in str(exc.value)
    cls(**kwargs, **{field: "3d"})  # a good one passes unchanged


def test_duration_tuples_name_the_element_and_must_be_distinct():
    with pytest.raises(ValidationError) as exc:
        FeatureSpec(vol_windows=("7d", "x"))
    assert exc.value.errors()[0]["loc"] == ("vol_windows", 1)
    assert "invalid duration 'x'" in str(exc.value)
    with pytest.raises(ValidationError, match="durations must be distinct"):
        FeatureSpec(vol_windows=("7d", "7d"))
    assert FeatureSpec(vol_windows=["7d", "30d"]).vol_windows == ("7d", "30d")


def test_optional_durations_accept_none_and_zero_or_duration_accepts_0d():
    assert FactorSpec(name="SPY", path="x", lag=None).lag is None
    assert Manifest(freq=None).freq is None

    class M(BaseModel):
        d: Duration = "1d"
        z: ZeroOrDuration = "0d"

    assert M(z="0d").z == "0d" and M(z="2h").z == "2h"
    with pytest.raises(ValidationError, match="invalid duration"):
        M(z="later")
    with pytest.raises(ValidationError, match="must be positive"):
        M(d="0d")
    assert parse_duration_or_zero("0d") == pd.Timedelta(0)
    assert parse_duration_or_zero("90d") == pd.Timedelta("90D")


# --- forecast at every window end ------------------------------------------------------------


def _fake_predict(calls):
    def predict(x):
        calls.append(len(x))
        last = x[:, -1, 0].astype(np.float32)  # the window's newest value of feature 0
        return {
            "beta": last[:, None],
            "beta_lo": last[:, None] - 1,
            "beta_hi": last[:, None] + 1,
            "regime_prob": np.tile(np.array([0.5, 0.3, 0.2], np.float32), (len(x), 1)),
        }

    return predict


def test_forecast_windows_every_valid_window_end_in_batches():
    t_len, syms = 12, ["A", "B"]
    ts = pd.date_range("2024-01-01", periods=t_len, freq="1D", tz="UTC")
    cube = np.zeros((t_len, 2, 2), dtype=np.float32)
    cube[:, :, 0] = np.arange(t_len)[:, None] * np.array([1, 10])  # feature 0: row number (x10 for B)
    cube[:, :, 1] = 1.0  # the base beta
    cube[7, 1, 1] = np.nan  # B has no base beta at row 7
    keep = np.ones(t_len, dtype=bool)
    keep[10:] = False
    calls: list[int] = []
    out = forecast_windows(cube, ts, syms, [1], 6, 2, _fake_predict(calls), ["BTCUSDT"], keep=keep, batch=3)
    # span 5: rows 4..9 for A; B without row 7
    a = out.xs("A", level="symbol")["BTCUSDT"]
    b = out.xs("B", level="symbol")["BTCUSDT"]
    assert list(a.index) == list(ts[4:10]) and a.tolist() == [4, 5, 6, 7, 8, 9]
    assert b.tolist() == [40, 50, 60, 80, 90]
    assert list(out.columns) == ["BTCUSDT", "BTCUSDT_lo", "BTCUSDT_hi"]
    assert calls == [3, 3, 3, 2] and out.index.is_monotonic_increasing
    whole = forecast_windows(
        cube,
        ts,
        syms,
        [1],
        6,
        2,
        _fake_predict([]),
        ["BTCUSDT"],
        keep=keep,
        regimes=["calm", "volatile", "crash"],
    )
    pd.testing.assert_frame_equal(whole[out.columns], out)
    assert whole["regime_crash"].tolist() == pytest.approx([0.2] * len(out))


def test_forecast_windows_with_nothing_to_forecast_is_an_empty_typed_frame():
    ts = pd.date_range("2024-01-01", periods=3, freq="1D", tz="UTC")
    calls: list[int] = []
    out = forecast_windows(np.ones((3, 1, 1), np.float32), ts, ["A"], [0], 6, 2, _fake_predict(calls), ["B"])
    assert out.empty and calls == [] and list(out.columns) == ["B", "B_lo", "B_hi"]
    assert out.index.names == ["timestamp", "symbol"]


# --- stress helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "start", "end", "covered"),
    [
        (40, "2024-01-05", "2024-01-10", True),
        (40, "2024-01-01", "2024-01-10", False),  # no bar before the window
        (40, "2024-02-01", "2024-02-09", True),  # the last bar opens on the end date
        (40, "2024-02-01", "2024-02-10", False),  # the end date is past the data
        (1, "2023-12-01", "2023-12-02", False),  # one bar: never (the CLI's copy raised IndexError)
        (0, "2023-12-01", "2023-12-02", False),
    ],
)
def test_replay_covered_needs_a_bar_before_and_bars_through_the_end(n, start, end, covered):
    idx = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")
    assert replay_covered(idx, pd.Timestamp(start).date(), pd.Timestamp(end).date()) is covered


def test_factor_betas_are_the_latest_90d_rolling_ols_and_nan_without_history():
    from adaptive_beta.models.data.schema import FactorSeries
    from adaptive_beta.models.estimators.rolling import rolling_ols_beta

    rng = np.random.default_rng(0)
    n = 200
    idx = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")
    # published at the close of each asset bar (open + 1 day), so row t's factor return is bar t's
    f = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), index=idx + pd.Timedelta("1D"))
    fr = f.pct_change()
    a = 100 * np.exp(np.cumsum(0.7 * fr.fillna(0).to_numpy() + rng.normal(0, 0.001, n)))
    assets = {"SOLUSDT": pd.DataFrame({"close": a}, index=idx), "BTCUSDT": _asset(n)}
    panel = build_panel(assets, {"SPY": FactorSeries(f, "equity")}, freq="1D")
    got = factor_betas(panel, ["SOLUSDT"])
    want = rolling_ols_beta(panel.returns()[["SOLUSDT"]], panel.factor_returns()["SPY"], 90, 45)
    assert got["SOLUSDT"]["SPY"] == pytest.approx(float(want["SOLUSDT"].ffill().iloc[-1]))
    assert got["SOLUSDT"]["SPY"] == pytest.approx(0.7, abs=0.05)
    short = build_panel(
        {k: v.iloc[:20] for k, v in assets.items()}, {"SPY": FactorSeries(f, "equity")}, freq="1D"
    )
    assert np.isnan(factor_betas(short, ["SOLUSDT"])["SOLUSDT"]["SPY"])


# --- audit columns ----------------------------------------------------------------------------


def test_the_audit_table_has_exactly_the_chain_columns_with_their_constraints(tmp_path):
    store = SqliteStore(tmp_path / "audit.db")
    store.close()
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        info = conn.execute("PRAGMA table_info(audit_records)").fetchall()
        unique = {
            conn.execute(f"PRAGMA index_info({row[1]!r})").fetchone()[2]
            for row in conn.execute("PRAGMA index_list(audit_records)").fetchall()
            if row[2]
        }
    assert tuple(r[1] for r in info) == COLUMNS
    types = {r[1]: r[2] for r in info}
    assert types["seq"] == "INTEGER" and {t for c, t in types.items() if c != "seq"} == {"TEXT"}
    assert {r[1] for r in info if r[5]} == {"seq"}  # the primary key
    assert {r[1] for r in info if r[3]} == {"ts", "request_id", "symbols", "payload", "prev_hash", "hash"}
    assert unique == {"request_id", "hash"}
