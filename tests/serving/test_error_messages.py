"""Issue 11 item 10: error messages name the right field, say what to do, and are JSON."""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from tests.serving.conftest import auth, hedge_body, request_body
from tests.serving.conftest import json_post as post

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


# ----------------------------------------------------------------------------- 10. messages
def test_duplicate_hedge_instrument_is_reported_on_instruments_in_words(server, body):
    r = post(server, "/hedge", hedge_body(body, instruments=[{"symbol": "BTCUSDT"}, {"symbol": "BTCUSDT"}]))
    assert r.status_code in (400, 422), r.text
    out = r.json()
    assert out["field"].startswith("instruments"), out
    assert "twice" in out["error"]


def test_min_equal_max_zero_for_every_instrument_is_a_clear_message(server, body):
    instruments = [{"symbol": "BTCUSDT", "min_notional": 0, "max_notional": 0}]
    r = post(server, "/hedge", hedge_body(body, instruments=instruments))
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["field"].startswith("instruments"), out
    assert "scipy" not in out["error"].lower() and "bounds" not in out["error"].lower(), out
    assert "no room" in out["error"], out


def test_fee_bps_nan_says_it_is_not_a_finite_number(server, body):
    raw = json.dumps({**copy.deepcopy(body), "portfolio": {"SOLUSDT": 1.0}, "fee_bps": 0.0})
    raw = raw.replace('"fee_bps": 0.0', '"fee_bps": NaN')
    h = {**auth(), "content-type": "application/json"}
    r = httpx.post(server.url + "/backtest", content=raw, headers=h, timeout=60)
    assert r.status_code in (400, 422), r.text
    assert "finite" in r.text and "less than or equal" not in r.text, r.text


def test_a_book_wiped_out_by_50_50_weights_says_weights_are_fractions_of_nav(server, body):
    payload = {**copy.deepcopy(body), "portfolio": {"SOLUSDT": 50.0, "DOGEUSDT": 50.0}}
    payload.update(include_model=False, estimators=["rolling_ols_30d"])
    r = post(server, "/backtest", payload)
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["field"] == "portfolio"
    assert "fractions of NAV" in out["error"] and "0.5" in out["error"], out
    assert "must be a positive number" not in out["error"]


def test_a_rebalance_shorter_than_the_bar_is_422(server, body):
    r = post(server, "/backtest", {**copy.deepcopy(body), "portfolio": {"SOLUSDT": 1.0}, "rebalance": "8h"})
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["field"] == "rebalance" and "1d" in out["error"], out


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/no-such-page", 404), ("GET", "/forecast", 405), ("GET", "/compliance/no-such-page", 404)],
)
def test_404_and_405_are_json(server, method, path, status):
    r = httpx.request(method, server.url + path, headers=auth("admin"), timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert isinstance(r.json()["error"], str)
