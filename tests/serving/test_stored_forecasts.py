"""Issue 12 item 3: stored-state forecasts. Bars posted to `/bars` are kept; each new bar is
forecast once; `{"symbols": [...]}` / `{"universe": true}` read the kept forecasts, which equal
the stateless forecast of the same bars; the audit record names the stored bars (range and a hash
that `bars_chain` recomputes from the store).  In-process on the tiny bundle (AppState + the
endpoint functions), a real SQLite store.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydantic import ValidationError

from adaptive_beta.models.market.store import open_market_store
from adaptive_beta.serving.app_state import AppState, ServeConfig
from adaptive_beta.serving.endpoints.explain import explain
from adaptive_beta.serving.endpoints.forecast import forecast
from adaptive_beta.serving.live import StoreEmpty, bars_chain
from adaptive_beta.serving.market_stores import close_stores
from adaptive_beta.serving.schemas import ExplainRequest, ForecastRequest, HedgeRequest, RequestError
from tests.serving.stored_feed import head, post, stored, tail


@pytest.fixture
def state(inproc_state):
    return inproc_state


@pytest.fixture(scope="module")
def full(tiny_body):
    return tiny_body


def betas(answer: dict) -> dict:
    return {f["symbol"]: {b: v["beta"] for b, v in f["betas"].items()} for f in answer["forecasts"]}


def test_stored_forecasts_equal_the_stateless_forecast_of_the_same_bars(state, full):
    out = post(state, full)
    n_assets = len(full["assets"])
    assert out["forecasts"]["updated"] == n_assets
    got = stored(state, universe=True)
    ref = forecast(state, ForecastRequest.model_validate(full), "desk")
    assert [f["symbol"] for f in got["forecasts"]] == sorted(a["symbol"] for a in full["assets"])
    b_got, b_ref = betas(got), betas(ref)
    for sym in b_ref:
        for bench, v in b_ref[sym].items():
            assert b_got[sym][bench] == pytest.approx(v, abs=1e-5)
    assert {f["symbol"]: f["as_of"] for f in got["forecasts"]} == {
        f["symbol"]: f["as_of"] for f in ref["forecasts"]
    }
    # drivers come from the kept exact group Shapley values: the same as the stateless ones
    d_got = {f["symbol"]: f["drivers"] for f in got["forecasts"]}
    for f in ref["forecasts"]:
        for bench, drivers in f["drivers"].items():
            assert [d["group"] for d in d_got[f["symbol"]][bench]] == [d["group"] for d in drivers]


def test_a_new_bar_is_forecast_once_and_moves_as_of(state, full):
    post(state, head(full, 1))
    before = stored(state, symbols=["SOLUSDT"])
    out = post(state, tail(full, 1))
    assert out["series"]["SOLUSDT"]["appended"] == 1 and out["forecasts"]["updated"] == len(full["assets"])
    after = stored(state, symbols=["SOLUSDT", "ETHUSDT"])
    assert [f["symbol"] for f in after["forecasts"]] == ["SOLUSDT", "ETHUSDT"]  # the order asked for
    assert after["forecasts"][0]["as_of"] > before["forecasts"][0]["as_of"]
    ref = betas(forecast(state, ForecastRequest.model_validate(full), "desk"))
    for f in after["forecasts"]:
        for bench, v in f["betas"].items():
            assert v["beta"] == pytest.approx(ref[f["symbol"]][bench], abs=1e-5)
    # the same bar posted again: a duplicate, nothing recomputed
    again = post(state, tail(full, 1))
    assert again["series"]["SOLUSDT"]["duplicate"] == 1 and again["forecasts"]["updated"] == 0


def test_the_audit_record_names_the_stored_bars_and_the_hash_recomputes_from_the_store(state, full):
    post(state, head(full, 2))
    post(state, tail(full, 2))
    ans = stored(state, symbols=["DOGEUSDT"])
    rec = state.audit.get(ans["request_id"])
    b = rec["features"]["bars"]
    assert b["source"] == "market-data store" and b["last"] == ans["forecasts"][0]["as_of"]
    assert b["first"] < b["replayed_to"] < b["last"]
    assert rec["symbols"] == ["DOGEUSDT"] and rec["features"]["inputs"] == {}
    with open_market_store(state.market_db) as store:
        assets = sorted(a["symbol"] for a in full["assets"])
        assert bars_chain(store, state.bundle.meta, assets, b, state.freq) == b["sha256"]
        # a restatement of a bar the forecast used breaks the match
        changed = tail(full, 3)
        changed["assets"][3]["history"][0]["close"] *= 1.01  # DOGEUSDT
        changed["restate"] = True
        post(state, changed)
        assert bars_chain(store, state.bundle.meta, assets, b, state.freq) != b["sha256"]
    # and the state was rebuilt on the restated bars: the forecast moved
    moved = stored(state, symbols=["DOGEUSDT"])
    assert moved["forecasts"][0]["betas"] != ans["forecasts"][0]["betas"]


def test_after_a_restatement_the_rebuilt_state_forecasts_the_restated_history(state, full):
    """A restatement rebuilds the live state (through the replay process); its forecasts then equal
    the stateless forecasts of the same history with the restated close, not the original one."""
    import copy

    post(state, full)
    original = stored(state, universe=True)
    changed = tail(full, 3)
    changed["assets"][1]["history"][0]["close"] *= 1.02  # one bar of one asset, 3 bars back
    changed["restate"] = True
    assert post(state, changed)["series"][changed["assets"][1]["symbol"]]["restated"] == 1
    restated_full = copy.deepcopy(full)
    stamp = changed["assets"][1]["history"][0]["timestamp"]
    for point in restated_full["assets"][1]["history"]:
        if point["timestamp"] == stamp:
            point["close"] = changed["assets"][1]["history"][0]["close"]
    after = stored(state, universe=True)
    ref = betas(forecast(state, ForecastRequest.model_validate(restated_full), "desk"))
    old = betas(forecast(state, ForecastRequest.model_validate(full), "desk"))
    sym = changed["assets"][1]["symbol"]
    moved = max(abs(ref[sym][b] - old[sym][b]) for b in ref[sym])
    assert moved > 1e-4  # the restated close changes this asset's forecast
    for f in after["forecasts"]:
        for bench, v in f["betas"].items():
            assert v["beta"] == pytest.approx(ref[f["symbol"]][bench], abs=1e-5)
    assert [f["symbol"] for f in after["forecasts"]] == [f["symbol"] for f in original["forecasts"]]


def test_explain_reads_the_kept_forecast_too(state, full):
    post(state, full)
    ex = explain(state, ExplainRequest.model_validate({"symbols": ["ETHUSDT"], "top_groups": 1}), "desk")
    fc = stored(state, symbols=["ETHUSDT"])
    for bench, e in ex["explanations"][0]["benchmarks"].items():
        total = e["baseline_forecast"] + sum(g["contribution"] for g in e["groups"])
        assert total == pytest.approx(fc["forecasts"][0]["betas"][bench]["beta"], abs=1e-4)


def test_unknown_symbols_an_empty_store_and_mixed_forms_are_refused(state, full):
    with pytest.raises(StoreEmpty) as empty:
        stored(state, universe=True)
    assert empty.value.status == 409 and "POST /bars" in empty.value.message
    post(state, full)
    with pytest.raises(RequestError) as unknown:
        stored(state, symbols=["SOLUSDT", "NOPEUSDT"])
    assert unknown.value.field == "symbols[1]" and "not in the market-data store" in unknown.value.message
    for bad in (
        {"symbols": ["SOLUSDT"], "universe": True},
        {**full, "symbols": ["SOLUSDT"]},
        {"symbols": []},
        {"symbols": ["SOLUSDT", "SOLUSDT"]},
        {},
    ):
        with pytest.raises(ValidationError):
            ForecastRequest.model_validate(bad)
    with pytest.raises(ValidationError) as hedge:
        HedgeRequest.model_validate({"symbols": ["SOLUSDT"], "positions": {"SOLUSDT": 1.0}})
    assert "symbols" in str(hedge.value)
    assert state.audit.query(limit=5) == []  # nothing refused was logged


def test_a_restart_rebuilds_the_state_from_the_store(state, full, tiny_bundle, tmp_path):
    post(state, full)
    first = betas(stored(state, universe=True))
    close_stores()
    cfg = ServeConfig(
        model=str(tiny_bundle["path"]), audit_db=str(tmp_path / "audit2.db"), market_db=state.market_db
    )
    st2 = AppState.load(cfg)
    try:
        assert st2.warm_up_live() is not None  # built at start-up from the stored bars
        again = betas(stored(st2, universe=True))
    finally:
        st2.audit.close()
    assert again.keys() == first.keys()
    for sym in first:
        assert np.allclose(list(again[sym].values()), list(first[sym].values()), atol=1e-12)


def test_the_compliance_record_page_shows_the_stored_bars(state, full):
    from starlette.testclient import TestClient

    from adaptive_beta.serving.auth import KeyStore
    from adaptive_beta.serving.compliance.app import ComplianceConfig, create_app
    from tests.serving.conftest import API_KEYS_ENV, KEYS

    post(state, full)
    ans = stored(state, symbols=["ETHUSDT"])
    bars_logged = state.audit.get(ans["request_id"])["features"]["bars"]
    app = create_app(ComplianceConfig(audit_db=state.audit.url, model=""), store=KeyStore.parse(API_KEYS_ENV))
    client = TestClient(app, base_url="http://testserver")
    assert (
        client.post("/login", data={"api_key": KEYS["compliance"]}, follow_redirects=False).status_code == 303
    )
    page = client.get(f"/records/{ans['request_id']}")
    assert page.status_code == 200
    assert 'id="stored-bars"' in page.text and bars_logged["sha256"] in page.text
    assert bars_logged["last"] in page.text


def test_an_asset_listed_after_the_build_is_forecast_by_every_worker(state, full, tiny_bundle, tmp_path):
    """A new listing rebuilds the live state: on the worker that stored its bars (POST /bars) and
    on another worker of the same store when it is first asked for the symbol."""
    three = copy.deepcopy(full)
    three["assets"] = [a for a in full["assets"] if a["symbol"] != "DOGEUSDT"]
    post(state, three)
    other = AppState.load(
        ServeConfig(
            model=str(tiny_bundle["path"]), audit_db=str(tmp_path / "w2.db"), market_db=state.market_db
        )
    )
    try:
        assert sorted(f["symbol"] for f in stored(other, universe=True)["forecasts"]) == [
            "BTCUSDT",
            "ETHUSDT",
            "SOLUSDT",
        ]
        with pytest.raises(RequestError) as before:
            stored(state, symbols=["DOGEUSDT"])
        assert "not in the market-data store" in before.value.message
        out = post(state, {"assets": [a for a in full["assets"] if a["symbol"] == "DOGEUSDT"]})
        assert out["forecasts"]["updated"] == len(full["assets"])  # rebuilt with the new listing
        ref = betas(forecast(state, ForecastRequest.model_validate(full), "desk"))["DOGEUSDT"]
        for st in (state, other):  # the other worker rescans when asked for the unknown symbol
            got = betas(stored(st, symbols=["DOGEUSDT"]))["DOGEUSDT"]
            assert got == pytest.approx(ref, abs=1e-5)
    finally:
        other.audit.close()
