"""Issue 12 item 4: the stateless path takes histories and series as columns
(`{"timestamps": [...], "close": [...]}`) beside lists of bar objects.

The two forms of the same data must be the same request: the same checked columns, the same audit
hash, the same forecast; a bad column gets the same checks with a path naming the column and index.
In-process on the tiny bundle (AppState + the endpoint functions), no server.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydantic import ValidationError

from adaptive_beta.serving.client import as_columns as to_columns
from adaptive_beta.serving.endpoints.explain import explain
from adaptive_beta.serving.endpoints.forecast import forecast
from adaptive_beta.serving.errors import _field_of
from adaptive_beta.serving.schemas import (
    ExplainRequest,
    ForecastRequest,
    RequestError,
    history_columns,
    request_sha256,
)


@pytest.fixture(scope="module")
def body(tiny_body):
    return tiny_body


@pytest.fixture()
def state(inproc_state):
    return inproc_state


def test_both_forms_give_the_same_columns_and_the_same_audit_hash(body):
    rows, cols = ForecastRequest.model_validate(body), ForecastRequest.model_validate(to_columns(body))
    for a, b in zip(rows.assets, cols.assets, strict=True):
        ca, cb = history_columns(a), history_columns(b)
        assert np.array_equal(ca.us, cb.us) and np.array_equal(ca.close, cb.close)
        assert ca.extras.keys() == cb.extras.keys()
        for k in ca.extras:
            assert np.array_equal(ca.extras[k], cb.extras[k], equal_nan=True)
        assert not ca.columnar and cb.columnar
    for name in body["series"]:
        assert np.array_equal(history_columns(rows.series[name]).us, history_columns(cols.series[name]).us)
    assert request_sha256(rows) == request_sha256(cols)
    mixed = copy.deepcopy(body)
    mixed["series"] = to_columns(body)["series"]  # forms can be mixed within one request
    assert request_sha256(ForecastRequest.model_validate(mixed)) == request_sha256(rows)


def test_forecast_and_explain_are_identical_for_both_forms(state, body):
    a = forecast(state, ForecastRequest.model_validate(body), "t")
    b = forecast(state, ForecastRequest.model_validate(to_columns(body)), "t")
    assert a["request_id"] != b["request_id"]
    assert a["forecasts"] == b["forecasts"] and len(a["forecasts"]) == len(body["assets"])
    ea = explain(state, ExplainRequest.model_validate(body), "t")
    eb = explain(state, ExplainRequest.model_validate(to_columns(body)), "t")
    assert ea["explanations"] == eb["explanations"]
    # the audit records of both forms carry the same input hash and the same input summary
    recs = {r["request_id"]: r for r in state.audit.query(limit=10)}
    ra, rb = recs[a["request_id"]], recs[b["request_id"]]
    assert ra["input_sha256"] == rb["input_sha256"]
    assert ra["features"]["inputs"] == rb["features"]["inputs"] and ra["features"]["inputs"]
    assert ra["features"]["rows"] == rb["features"]["rows"]


def _columns_error(body: dict, mutate) -> str:
    bad = to_columns(body)
    mutate(bad)
    with pytest.raises(ValidationError) as exc:
        ForecastRequest.model_validate(bad)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda b: b["assets"][0]["history"]["close"].pop(), "history.close has 59 values for 60 timestamps"),
        (lambda b: b["assets"][0]["history"]["close"].__setitem__(5, -1.0), "history.close[5] must be > 0"),
        (
            lambda b: b["assets"][1]["history"]["volume"].__setitem__(7, -3.0),
            "history.volume[7] must be >= 0",
        ),
        (
            lambda b: b["assets"][0]["history"]["timestamps"].__setitem__(
                3, b["assets"][0]["history"]["timestamps"][2]
            ),
            "history.timestamps[3] 2025-01-03T00:00:00+00:00 duplicates the previous bar",
        ),
        (
            lambda b: b["series"]["CRYPTO_EW"]["timestamps"].reverse(),
            "series CRYPTO_EW.timestamps[1]",
        ),
    ],
)
def test_a_bad_column_names_the_column_and_the_index(body, mutate, expect):
    assert expect in _columns_error(body, mutate)


def test_a_non_number_in_a_column_is_a_type_error_with_the_service_path(body):
    bad = to_columns(body)
    bad["assets"][0]["history"]["close"][4] = "123.5"
    with pytest.raises(ValidationError) as exc:
        ForecastRequest.model_validate(bad)
    err = exc.value.errors()[0]
    assert _field_of(err["loc"]) == "assets[0].history.close[4]" and err["type"] == "float_type"


def test_an_unknown_column_is_refused(body):
    bad = to_columns(body)
    bad["assets"][0]["history"]["price"] = bad["assets"][0]["history"]["close"]
    with pytest.raises(ValidationError) as exc:
        ForecastRequest.model_validate(bad)
    assert _field_of(exc.value.errors()[0]["loc"]) == "assets[0].history.price"


def test_a_missing_bar_in_columns_is_a_422_naming_the_timestamp_index(state, body):
    bad = to_columns(body)
    h = bad["assets"][0]["history"]
    for key in list(h):
        del h[key][10]
    with pytest.raises(RequestError) as exc:
        forecast(state, ForecastRequest.model_validate(bad), "t")
    assert exc.value.field == "assets[0].history.timestamps[10]" and "missing bar" in exc.value.message
    assert state.audit.query(limit=5) == []
