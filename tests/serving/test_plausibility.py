"""Issue 11 item 9: well-formed but implausible request data is refused, naming the point.

Before: `"close": true`, `"close": "123.5"`, one close of 1e308 mid-history, a constant price and
bars dated 2124 all validated (and got a confident 200).  A non-number is a request-shape error
(400, pydantic's field path, like every type error); the plausibility checks need the model's bar
length ("now plus one bar"), so they run with the checks against the model: 422 and `field`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from pydantic import ValidationError

from adaptive_beta.serving.errors import _field_of
from adaptive_beta.serving.schemas import (
    CLOCK_SKEW_S,
    MAX_PRICE_JUMP,
    ForecastRequest,
    RequestError,
    check_against_model,
)

DAY = pd.Timedelta("1D")


def _body(closes, start=datetime(2024, 1, 1, tzinfo=UTC), step=timedelta(days=1)) -> dict:
    hist = [{"timestamp": (start + i * step).isoformat(), "close": c} for i, c in enumerate(closes)]
    return {"assets": [{"symbol": "SOLUSDT", "history": hist}]}


def _check(body: dict) -> None:
    req = ForecastRequest.model_validate_json(json.dumps(body))
    check_against_model(req, DAY, 2, [])


def _refused(body: dict) -> RequestError:
    with pytest.raises(RequestError) as exc:
        _check(body)
    return exc.value


@pytest.mark.parametrize("bad", [True, "123.5", None, [1.0]])
def test_a_close_must_be_a_json_number(bad):
    with pytest.raises(ValidationError) as exc:
        ForecastRequest.model_validate_json(json.dumps(_body([10.0, bad, 11.0])))
    # pydantic's loc names the form of the history ("rows"); the service's path leaves it out
    assert exc.value.errors()[0]["loc"] == ("assets", 0, "history", "rows", 1, "close")
    assert _field_of(exc.value.errors()[0]["loc"]) == "assets[0].history[1].close"


def test_integers_are_numbers():
    req = ForecastRequest.model_validate_json(json.dumps(_body([10, 11, 12])))
    assert [b.close for b in req.assets[0].history] == [10.0, 11.0, 12.0]


def test_one_absurd_print_mid_history_names_the_point():
    err = _refused(_body([10.0, 10.5, 1e308, 10.2]))
    assert err.field == "assets[0].history[2].close" and "implausible jump" in err.message
    assert MAX_PRICE_JUMP == 10.0


def test_a_collapse_just_inside_the_limit_is_accepted_and_just_outside_refused():
    _check(_body([100.0, 10.5, 10.0]))  # 9.5x in one bar: a real crash
    err = _refused(_body([100.0, 9.5, 10.0]))  # 10.5x
    assert err.field == "assets[0].history[1].close" and "close 9.5 is 10.5x away" in err.message


def test_a_constant_price_has_no_beta():
    err = _refused(_body([42.0] * 5))
    assert err.field == "assets[0].history" and "every close is 42" in err.message


def test_bars_after_now_plus_one_bar_are_refused():
    err = _refused(_body([10.0, 10.1, 10.2], start=datetime(2124, 1, 1, tzinfo=UTC)))
    assert err.field == "assets[0].history[0].timestamp" and "in the future" in err.message
    now = datetime.now(UTC)
    _check(_body([10.0, 10.1], start=now - DAY + timedelta(hours=12)))  # the open bar: fine
    late = now + DAY + timedelta(seconds=CLOCK_SKEW_S + 120)  # opens after now + one bar
    err = _refused(_body([10.0, 10.1, 10.2], start=late - 2 * DAY))
    assert err.field == "assets[0].history[2].timestamp"


def test_series_points_are_checked_too_but_rates_may_be_flat_or_negative():
    body = _body([10.0, 10.1, 10.2])
    body["series"] = {
        "SPY": [{"timestamp": "2024-01-01", "close": 400.0}, {"timestamp": "2024-01-02", "close": 1e6}]
    }
    assert _refused(body).field == "series.SPY[1].close"
    body["series"] = {
        "DGS10": [{"timestamp": "2024-01-01", "close": -0.1}, {"timestamp": "2024-01-02", "close": 4.2}]
    }
    _check(body)
