"""Limits of a real server: batch size (400 naming the field), body size (413), concurrency (429),
unique request ids, and never a 5xx under any of them."""

from __future__ import annotations

import asyncio
import copy

import httpx
import pytest

from tests.serving.conftest import Server, auth, request_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


def test_too_many_assets_is_a_400_naming_the_assets_field(server, tiny_bundle):
    from adaptive_beta.serving.schemas import MAX_ASSETS

    one = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["SOLUSDT"], 3)
    asset = one["assets"][0]
    many = {**one, "assets": [{**asset, "symbol": f"A{i}USDT"} for i in range(MAX_ASSETS + 1)]}
    r = httpx.post(server.url + "/forecast", json=many, headers=auth(), timeout=30)
    assert r.status_code == 400, r.text
    assert "assets" in r.text and str(MAX_ASSETS) in r.text


def test_body_over_the_limit_is_413_before_parsing(server, body):
    from adaptive_beta.serving.limits import DEFAULT_MAX_BODY_BYTES

    big = copy.deepcopy(body)
    big["series"]["PAD"] = [{"timestamp": "2025-01-01", "close": 1.0}] * (DEFAULT_MAX_BODY_BYTES // 30)
    r = httpx.post(server.url + "/forecast", json=big, headers=auth(), timeout=30)
    assert r.status_code == 413
    assert r.json() == {
        "error": f"request body larger than the limit of {DEFAULT_MAX_BODY_BYTES} bytes",
        "field": "body",
    }


def test_request_ids_are_unique_and_each_logged_once(server, body):
    from adaptive_beta.models.audit.log import AuditReader

    async def burst():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(
                *[c.post(server.url + "/forecast", json=body, headers=auth()) for _ in range(12)]
            )

    rs = asyncio.run(burst())
    assert [r.status_code for r in rs] == [200] * 12
    ids = [r.json()["request_id"] for r in rs]
    assert len(set(ids)) == 12
    with AuditReader(server.audit_db) as reader:
        assert all(len(reader.query(request_id=i)) == 1 for i in ids)


def test_a_colliding_request_id_is_redrawn_not_an_error(tiny_bundle, body, tmp_path):
    """The id source repeats an id: the second forecast is logged and answered under a fresh id."""
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.endpoints.forecast import forecast
    from adaptive_beta.serving.schemas import ForecastRequest

    state = AppState.load(ServeConfig(model=str(tiny_bundle["path"]), audit_db=str(tmp_path / "a.db")))
    ids = iter(["a" * 32, "a" * 32, "a" * 32, "b" * 32])
    state.new_request_id = lambda: next(ids)
    req = ForecastRequest.model_validate(body)
    first = forecast(state, req, "t")
    second = forecast(state, req, "t")
    assert (first["request_id"], second["request_id"]) == ("a" * 32, "b" * 32)
    assert state.audit.get("b" * 32)["request_id"] == "b" * 32
    state.audit.close()


@pytest.fixture(scope="module")
def narrow_server(tiny_bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("narrow")
    srv = Server(
        tiny_bundle["path"], d / "audit.db", d / "server.log", extra_env={"ABETA_MAX_CONCURRENCY": "2"}
    )
    srv.audit_db = d / "audit.db"
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_beyond_max_concurrency_some_requests_get_429_and_none_a_5xx(narrow_server, body):
    explain = {**body, "top_groups": 3}  # the slowest endpoint: keeps requests in flight

    async def burst():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=24)) as c:
            return await asyncio.gather(
                *[c.post(narrow_server.url + "/explain", json=explain, headers=auth()) for _ in range(24)]
            )

    codes = [r.status_code for r in asyncio.run(burst())]
    assert codes.count(429) >= 1, codes
    assert codes.count(200) >= 2, codes
    assert set(codes) <= {200, 429}, codes
    # and the server is fine afterwards
    r = httpx.post(narrow_server.url + "/forecast", json=body, headers=auth(), timeout=30)
    assert r.status_code == 200


def test_warm_up_forecasts_a_synthetic_window_without_logging_it(tiny_bundle, tmp_path):
    from adaptive_beta.serving.app_state import AppState, ServeConfig

    state = AppState.load(ServeConfig(model=str(tiny_bundle["path"]), audit_db=str(tmp_path / "w.db")))
    req = state.warm_up_request()
    assert len(req.assets[0].history) == tiny_bundle["meta"]["required_history"]["min_periods"]
    assert set(req.series) == set(tiny_bundle["meta"]["required_history"]["series"])
    seconds = state.warm_up()
    assert 0.0 < seconds < 30.0
    assert state.audit.query(limit=10) == []
    state.audit.close()
