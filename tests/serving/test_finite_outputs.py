"""Issue 11 item 5: every number a response carries is finite and the audit record equals the response."""

from __future__ import annotations

import json

import pytest

from tests.serving.conftest import audit_record, hedge_body, request_body
from tests.serving.conftest import json_post as post

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


# ----------------------------------------------------------------------------- 5. finite numbers
@pytest.mark.parametrize(
    "extra, field",
    [
        ({"target": {"BTCUSDT": 1e308}}, "target.BTCUSDT"),
        ({"positions": {"SOLUSDT": 1e308, "DOGEUSDT": 1.0}}, "positions.SOLUSDT"),
        ({"nav": 1e308}, "nav"),
        ({"instruments": [{"symbol": "BTCUSDT", "max_notional": 1e308}]}, "instruments[0].max_notional"),
    ],
)
def test_extreme_hedge_numbers_are_422_naming_the_field(server, body, extra, field):
    r = post(server, "/hedge", hedge_body(body, **extra))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()


def test_every_hedge_number_is_finite_and_the_record_equals_the_response(server, body):
    r = post(server, "/hedge", hedge_body(body, target={"BTCUSDT": 5.0}, positions={"SOLUSDT": 1e11}))
    assert r.status_code == 200, r.text
    out = r.json()
    rec = audit_record(server, out["request_id"])
    assert json.dumps(rec["output"], allow_nan=False)  # no Infinity / NaN in the record
    assert all(o["notional"] is not None for o in out["orders"])
    for key in ("orders", "portfolio_beta", "residual_beta", "target", "nav"):
        assert rec["output"][key] == out[key], key


def test_the_finite_check_names_the_first_non_finite_number():
    from adaptive_beta.serving.finite import require_finite
    from adaptive_beta.serving.schemas import RequestError

    require_finite({"a": [1.0, {"b": 2}], "c": None, "d": "x", "e": True})
    with pytest.raises(RequestError) as err:
        require_finite(
            {"orders": [{"symbol": "X", "notional": 1.0}, {"symbol": "Y", "notional": float("inf")}]}
        )
    assert err.value.field == "orders[1].notional"
    assert "not a finite number" in err.value.message
