"""Request validation without a server: each bad input names the field and the asset."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from adaptive_beta.serving.schemas import (
    MAX_ASSETS,
    ForecastRequest,
    HedgeRequest,
    RequestError,
    check_against_model,
)


def _hist(n=5, start="2025-01-01", step="1D", close=100.0):
    idx = pd.date_range(start, periods=n, freq=step, tz="UTC")
    return [{"timestamp": t.isoformat(), "close": close + i} for i, t in enumerate(idx)]


def _req(**kw):
    body = {"assets": [{"symbol": "SOLUSDT", "history": _hist()}], "series": {"CRYPTO_EW": _hist()}}
    body.update(kw)
    return body


def test_valid_request_parses_and_naive_timestamps_are_utc():
    r = ForecastRequest.model_validate(_req())
    assert r.assets[0].history[0].timestamp.tzinfo is not None
    h = [
        {"timestamp": "2025-01-01T00:00:00", "close": 1.0},
        {"timestamp": "2025-01-02T00:00:00", "close": 2.0},
    ]
    check_against_model(
        ForecastRequest.model_validate(_req(assets=[{"symbol": "X", "history": h}])),
        pd.Timedelta("1D"),
        2,
        [],
    )


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda h: h.__setitem__(2, {**h[2], "timestamp": h[1]["timestamp"]}), "history[2].timestamp"),
        (lambda h: h.__setitem__(2, {**h[2], "close": 0.0}), "history[2].close must be > 0"),
        (lambda h: h.__setitem__(3, {**h[3], "close": float("inf")}), "history[3].close is not a finite"),
        (lambda h: h.__setitem__(1, {**h[1], "volume": -1.0}), "history[1].volume must be >= 0"),
        (lambda h: h.reverse(), "not sorted"),
    ],
)
def test_shape_errors_name_asset_and_row(edit, needle):
    body = _req()
    edit(body["assets"][0]["history"])
    with pytest.raises(ValidationError) as exc:
        ForecastRequest.model_validate(body)
    assert needle in str(exc.value) and "SOLUSDT" in str(exc.value)


def test_batch_and_symbol_limits():
    too_many = [{"symbol": f"A{i}", "history": _hist()} for i in range(MAX_ASSETS + 1)]
    with pytest.raises(ValidationError, match="assets"):
        ForecastRequest.model_validate(_req(assets=too_many))
    with pytest.raises(ValidationError, match="appears twice"):
        ForecastRequest.model_validate(_req(assets=[{"symbol": "A", "history": _hist()}] * 2))
    with pytest.raises(ValidationError, match="symbol"):
        ForecastRequest.model_validate(_req(assets=[{"symbol": "A B;", "history": _hist()}]))


def test_model_checks_history_gaps_and_series():
    freq = pd.Timedelta("1D")
    r = ForecastRequest.model_validate(_req())
    with pytest.raises(RequestError) as exc:
        check_against_model(r, freq, 6, [])
    assert exc.value.field == "assets[0].history" and "5 bars" in exc.value.message
    with pytest.raises(RequestError) as exc:
        check_against_model(r, freq, 5, ["SPY"])
    assert exc.value.field == "series.SPY"
    gap = _hist(6)
    del gap[3]
    r = ForecastRequest.model_validate(_req(assets=[{"symbol": "SOLUSDT", "history": gap}]))
    with pytest.raises(RequestError) as exc:
        check_against_model(r, freq, 5, [])
    assert exc.value.field == "assets[0].history[3].timestamp" and "missing bar" in exc.value.message
    r = ForecastRequest.model_validate(_req(series={"CRYPTO_EW": _hist(5, step="2D")}))
    with pytest.raises(RequestError, match="CRYPTO_EW"):
        check_against_model(r, freq, 5, ["CRYPTO_EW"])


def test_a_model_benchmark_series_off_the_grid_is_refused_whatever_its_name():
    """Bar series are the model's benchmarks, the composite and crypto names (`is_bar_series`).

    The request check once left the model's benchmarks out, so a benchmark whose name is not a
    crypto name (e.g. XBTUSD, chosen with a manifest's `btc`) skipped the grid check while the
    panel builder aligned it bar for bar: gaps became silent NaN instead of a 422 naming them.
    """
    freq = pd.Timedelta("1D")
    gap = _hist(6)
    del gap[2]
    r = ForecastRequest.model_validate(_req(series={"CRYPTO_EW": _hist(), "XBTUSD": gap}))
    with pytest.raises(RequestError) as exc:
        check_against_model(r, freq, 5, ["XBTUSD"], benchmarks=["XBTUSD", "CRYPTO_EW"])
    assert exc.value.field == "series.XBTUSD[2].timestamp" and "missing bar" in exc.value.message
    check_against_model(r, freq, 5, ["XBTUSD"])  # not a benchmark of this model: a factor, any stamps


def test_app_state_feature_spec_hash_is_the_bundles_one_hash():
    """No fallback: load_bundle refuses a bundle whose meta hash differs from its spec's
    (tests/models/test_bundle.py), so serving reports the recorded hash."""
    from types import SimpleNamespace

    from adaptive_beta.serving.app_state import AppState

    prop = AppState.feature_spec_hash.fget
    assert (
        prop(SimpleNamespace(bundle=SimpleNamespace(meta=SimpleNamespace(feature_spec_hash="abc")))) == "abc"
    )


def test_hedge_request_must_have_histories_for_positions_and_instruments():
    base = _req(positions={"SOLUSDT": 1e6}, target={"BTCUSDT": 0.0}, instruments=[{"symbol": "BTCUSDT"}])
    with pytest.raises(ValidationError, match="instruments\\[0\\].symbol BTCUSDT"):
        HedgeRequest.model_validate(base)
    base["instruments"] = [{"symbol": "SOLUSDT", "min_notional": 5.0, "max_notional": 1.0}]
    with pytest.raises(ValidationError, match="min_notional is above max_notional"):
        HedgeRequest.model_validate(base)
