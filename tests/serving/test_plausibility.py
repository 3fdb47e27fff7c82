"""Issue 11 item 9: well-formed but implausible request data is refused, naming the point.

Before: `"close": true`, `"close": "123.5"`, one close of 1e308 mid-history, a constant price and
bars dated 2124 all validated (and got a confident 200)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from adaptive_beta.serving.schemas import CLOCK_SKEW_S, MAX_PRICE_JUMP, ForecastRequest


def _body(closes, start=datetime(2024, 1, 1, tzinfo=UTC), step=timedelta(days=1)) -> dict:
    hist = [{"timestamp": (start + i * step).isoformat(), "close": c} for i, c in enumerate(closes)]
    return {"assets": [{"symbol": "SOLUSDT", "history": hist}]}


def _error(body: dict) -> str:
    with pytest.raises(ValidationError) as exc:
        ForecastRequest.model_validate_json(json.dumps(body))
    return str(exc.value)


@pytest.mark.parametrize("bad", [True, "123.5", None, [1.0]])
def test_a_close_must_be_a_json_number(bad):
    msg = _error(_body([10.0, bad, 11.0]))
    assert "history.1.close" in msg


def test_integers_are_numbers():
    req = ForecastRequest.model_validate_json(json.dumps(_body([10, 11, 12])))
    assert [b.close for b in req.assets[0].history] == [10.0, 11.0, 12.0]


def test_one_absurd_print_mid_history_names_the_point():
    msg = _error(_body([10.0, 10.5, 1e308, 10.2]))
    assert "history[2].close 1e+308" in msg and "implausible jump" in msg
    assert MAX_PRICE_JUMP == 10.0


def test_a_collapse_just_inside_the_limit_is_accepted_and_just_outside_refused():
    ForecastRequest.model_validate_json(json.dumps(_body([100.0, 10.5, 10.0])))  # 9.5x: a real crash
    msg = _error(_body([100.0, 9.5, 10.0]))  # 10.5x down in one bar
    assert "history[1].close 9.5 is 10.5x away" in msg


def test_a_constant_price_has_no_beta():
    msg = _error(_body([42.0] * 5))
    assert "asset SOLUSDT: history: every close is 42" in msg


def test_bars_from_the_future_are_refused_and_the_clock_skew_allowance_holds():
    far = _error(_body([10.0, 10.1, 10.2], start=datetime(2124, 1, 1, tzinfo=UTC)))
    assert "history[0].timestamp 2124-01-01T00:00:00+00:00 is in the future" in far
    now = datetime.now(UTC)
    ok = now - timedelta(minutes=1)
    ForecastRequest.model_validate_json(json.dumps(_body([10.0, 10.1], start=ok - timedelta(days=1))))
    late = now + timedelta(seconds=CLOCK_SKEW_S + 120)
    msg = _error(_body([10.0, 10.1, 10.2], start=late - timedelta(days=2)))
    assert "history[2].timestamp" in msg and "in the future" in msg


def test_series_points_are_checked_too_but_rates_may_be_flat_or_negative():
    body = _body([10.0, 10.1, 10.2])
    body["series"] = {
        "SPY": [{"timestamp": "2024-01-01", "close": 400.0}, {"timestamp": "2024-01-02", "close": 1e6}]
    }
    assert "series SPY[1].close" in _error(body)
    body["series"] = {
        "DGS10": [{"timestamp": "2024-01-01", "close": -0.1}, {"timestamp": "2024-01-02", "close": 4.2}]
    }
    ForecastRequest.model_validate_json(json.dumps(body))
