"""Issue 11 item 7: a caller cannot bloat the audit log.

Series names follow the symbol rule (`schemas.Symbol`), a series the model (or the endpoint) does
not use is a 422 naming `series.<name>`, and a record above `ServeConfig.max_record_bytes`
(ABETA_MAX_RECORD_BYTES) is refused with a 422 naming the limit: nothing is logged, nothing is
truncated.  In-process on the tiny bundle (AppState + the endpoint functions), no server.
"""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from adaptive_beta.models.audit.chain import canonical_json
from adaptive_beta.serving.app_state import AppState, ServeConfig
from adaptive_beta.serving.endpoints.forecast import forecast
from adaptive_beta.serving.endpoints.stress import stress
from adaptive_beta.serving.schemas import ForecastRequest, RequestError
from adaptive_beta.serving.stress_schemas import StressRequest
from tests.serving.conftest import request_body


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


@pytest.fixture()
def state(tiny_bundle, tmp_path):
    st = AppState.load(ServeConfig(model=str(tiny_bundle["path"]), audit_db=str(tmp_path / "a.db")))
    yield st
    st.audit.close()


def _with_series(body: dict, name: str) -> dict:
    out = copy.deepcopy(body)
    out["series"][name] = copy.deepcopy(body["series"]["SPY"])
    return out


@pytest.mark.parametrize("name", ["X" * 100_000, "S P Y", "SPY\n", "", "a/b", "é"])
def test_a_series_name_that_is_not_a_symbol_is_a_shape_error_naming_series(body, name):
    with pytest.raises(ValidationError) as err:
        ForecastRequest.model_validate(_with_series(body, name))
    first = err.value.errors()[0]
    assert first["loc"][0] == "series" and first["type"] == "string_pattern_mismatch"


def test_symbol_like_series_names_parse(body):
    for name in ("^GSPC", "BTC-USD", "DX=F", "US10Y", "GLD"):
        ForecastRequest.model_validate(_with_series(body, name))


def test_a_series_the_model_does_not_use_is_a_422_naming_it_and_nothing_is_logged(state, body):
    req = ForecastRequest.model_validate(_with_series(body, "GLD"))
    with pytest.raises(RequestError) as err:
        forecast(state, req, "t")
    assert err.value.field == "series.GLD"
    assert "GLD" in err.value.message and "SPY" in err.value.message  # says what the model uses
    assert state.audit.query(limit=5) == []


def test_stress_accepts_a_series_its_scenarios_shock_and_refuses_others(state, body):
    book = {"positions": {"SOLUSDT": 1e6}}
    gld = {"name": "gold -5%", "kind": "benchmark_shock", "shocks": {"GLD": -0.05}}
    ok = StressRequest.model_validate({**_with_series(body, "GLD"), **book, "scenarios": [gld]})
    assert stress(state, ok, "t")["scenarios"][0]["name"] == "gold -5%"
    btc = {"name": "btc", "kind": "benchmark_shock", "shocks": {"BTCUSDT": -0.3}}
    bad = StressRequest.model_validate({**_with_series(body, "GLD"), **book, "scenarios": [btc]})
    with pytest.raises(RequestError) as err:
        stress(state, bad, "t")
    assert err.value.field == "series.GLD"


def test_a_record_above_the_cap_is_refused_whole_not_truncated(tiny_bundle, tmp_path, body):
    st = AppState.load(
        ServeConfig(model=str(tiny_bundle["path"]), audit_db=str(tmp_path / "c.db"), max_record_bytes=20_000)
    )
    try:
        with pytest.raises(RequestError) as err:
            forecast(st, ForecastRequest.model_validate(body), "t")
        assert err.value.field == "body"
        assert "20000 bytes" in err.value.message and "ABETA_MAX_RECORD_BYTES" in err.value.message
        assert st.audit.query(limit=5) == []
        one = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["BTCUSDT"])
        rid = forecast(st, ForecastRequest.model_validate(one), "t")["request_id"]
        assert len(canonical_json(st.audit.get(rid))) < 20_000
    finally:
        st.audit.close()


def test_the_record_cap_is_a_setting_with_a_default(monkeypatch):
    monkeypatch.setenv("ABETA_MAX_RECORD_BYTES", "12345")
    assert ServeConfig.from_env().max_record_bytes == 12345
    monkeypatch.delenv("ABETA_MAX_RECORD_BYTES")
    assert ServeConfig.from_env().max_record_bytes == ServeConfig.max_record_bytes >= 256 * 1024
