"""POST /bars: the endpoint function in-process on the tiny bundle (append rules, statuses, the
audited restatement), then the real server for roles, the route table and `abeta audit verify`."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import httpx
import pytest

from adaptive_beta.models.audit.log import AuditReader, verify_chain
from adaptive_beta.models.market.store import open_market_store
from adaptive_beta.serving.bars_schemas import BarsConflict, BarsRequest
from adaptive_beta.serving.endpoints.bars import bars
from adaptive_beta.serving.schemas import RequestError
from tests.serving.conftest import auth, request_body

N = 10  # bars per asset in the first post


@pytest.fixture
def state(inproc_state):
    return inproc_state


@pytest.fixture
def body(tiny_bundle):
    b = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], n_last=N)
    b["series"]["SPY"] = b["series"]["SPY"][-40:]
    return b


def post(state, body, caller="feed-a"):
    return bars(state, BarsRequest.model_validate(body), caller)


def stored_hash(state):
    with open_market_store(state.market_db) as store:
        return store.window(["SOLUSDT", "BTCUSDT"], ["CRYPTO_EW", "SPY"], last=50).sha256


def test_first_post_appends_and_the_same_post_again_is_all_duplicates(state, body):
    out = post(state, body)["series"]
    assert {s: out[s]["appended"] for s in out} == {
        "BTCUSDT": N,
        "ETHUSDT": N,
        "SOLUSDT": N,
        "DOGEUSDT": N,
        "CRYPTO_EW": N,
        "SPY": 40,
    }
    assert out["SOLUSDT"]["last"] == "2025-03-01T00:00:00+00:00" and out["SOLUSDT"]["kind"] == "asset"
    h = stored_hash(state)
    again = post(state, body)["series"]
    assert all(
        (c["appended"], c["duplicate"], c["restated"]) == (0, c["duplicate"], 0) for c in again.values()
    )
    assert again["SOLUSDT"]["duplicate"] == N and again["SPY"]["duplicate"] == 40
    assert stored_hash(state) == h


def test_a_changed_bar_is_409_naming_series_and_time_and_nothing_changes(state, body):
    post(state, body)
    h = stored_hash(state)
    changed = copy.deepcopy(body)
    changed["assets"][2]["history"][-1]["close"] *= 1.01
    with pytest.raises(BarsConflict) as err:
        post(state, changed)
    assert err.value.status == 409 and err.value.field == f"assets[2].history[{N - 1}].timestamp"
    assert "SOLUSDT" in err.value.message and "2025-03-01T00:00:00+00:00" in err.value.message
    assert stored_hash(state) == h


def test_restatement_is_applied_audited_and_the_chain_verifies(state, body):
    post(state, body)
    h = stored_hash(state)
    old = body["assets"][2]["history"][-1]["close"]
    changed = copy.deepcopy(body)
    changed["assets"][2]["history"][-1]["close"] = old * 1.01
    changed["restate"] = True
    out = post(state, changed, caller="feed-b")
    assert out["series"]["SOLUSDT"]["restated"] == 1 and out["series"]["BTCUSDT"]["duplicate"] == N
    assert stored_hash(state) != h
    rec = state.audit.get(out["restatement_record"])
    assert (rec["endpoint"], rec["caller"], rec["symbols"]) == ("/bars", "feed-b", ["SOLUSDT"])
    (change,) = rec["features"]["restatements"]
    assert rec["features"]["kind"] == "bar-restatement"
    assert change["timestamp"] == "2025-03-01T00:00:00+00:00"
    assert (change["old"]["close"], change["new"]["close"]) == (old, old * 1.01)
    assert verify_chain(state.audit.url).ok
    with open_market_store(state.market_db) as store:
        assert store.bars("SOLUSDT", last=1)[1]["close"][0] == old * 1.01


def test_gap_and_out_of_order_bars_are_409_with_the_series_and_timestamp(state, body, tiny_bundle):
    post(state, body)
    sol = tiny_bundle["assets"]["SOLUSDT"]
    old = {"assets": [{"symbol": "SOLUSDT", "history": [_bar(sol, len(sol) - N - 2)]}]}
    with pytest.raises(BarsConflict) as err:
        post(state, old)
    assert "out of order" in err.value.message and "SOLUSDT" in err.value.message
    assert "2025-02-18T00:00:00+00:00" in err.value.message
    assert err.value.field == "assets[0].history[0].timestamp"
    spy_gap = {"series": {"CRYPTO_EW": [{"timestamp": "2025-03-03T00:00:00+00:00", "close": 1.0}]}}
    with pytest.raises(BarsConflict) as err:
        post(state, spy_gap)
    assert "gap" in err.value.message and "CRYPTO_EW" in err.value.message
    assert (
        "2025-03-03T00:00:00+00:00" in err.value.message
        and err.value.field == "series.CRYPTO_EW[0].timestamp"
    )


def test_the_forecast_checks_apply_future_jump_unused_series_and_grid(state, body):
    post(state, body)
    last = body["assets"][2]["history"][-1]
    future = {"assets": [{"symbol": "SOLUSDT", "history": [{**last, "timestamp": "2099-01-01T00:00:00Z"}]}]}
    with pytest.raises(RequestError, match="in the future") as err:
        post(state, future)
    assert not isinstance(err.value, BarsConflict)
    jump = {
        "assets": [
            {
                "symbol": "SOLUSDT",
                "history": [{**last, "timestamp": "2025-03-02T00:00:00Z", "close": last["close"] * 50}],
            }
        ]
    }
    with pytest.raises(RequestError, match="implausible jump") as err:
        post(state, jump)
    assert err.value.field == "assets[0].history[0].close" and not isinstance(err.value, BarsConflict)
    with pytest.raises(RequestError, match="not used by the model"):
        post(state, {"series": {"GLD": [{"timestamp": "2025-03-01", "close": 180.0}]}})
    two = [{**last, "timestamp": "2025-03-02T00:00:00Z"}, {**last, "timestamp": "2025-03-02T12:00:00Z"}]
    with pytest.raises(RequestError, match="off the grid"):
        post(state, {"assets": [{"symbol": "SOLUSDT", "history": two}]})
    with pytest.raises(Exception, match="no bars"):
        BarsRequest.model_validate({"assets": [], "series": {}})


def _bar(frame, i):
    t, r = frame.index[i], frame.iloc[i]
    return {
        "timestamp": t.isoformat(),
        "close": float(r.close),
        "volume": float(r.volume),
        "funding_rate": float(r.funding_rate),
    }


# ------------------------------------------------------------------------- the real server


@pytest.mark.slow
def test_roles_on_the_real_server_and_abeta_audit_verify_after_a_restatement(server, body):
    def call(role, path="/bars", payload=body):
        return httpx.post(server.url + path, json=payload, headers=auth(role), timeout=60)

    r = call("feeder")
    assert r.status_code == 200, r.text
    assert r.json()["series"]["SOLUSDT"]["appended"] == N
    assert call("trader").status_code == 403 and call("compliance").status_code == 403
    assert call("feeder", "/forecast").status_code == 403
    assert httpx.get(server.url + "/model", headers=auth("feeder"), timeout=30).status_code == 403
    again = call("admin")
    assert again.status_code == 200 and again.json()["series"]["SOLUSDT"]["duplicate"] == N
    changed = copy.deepcopy(body)
    changed["assets"][2]["history"][-1]["close"] *= 1.02
    refused = call("feeder", payload=changed)
    assert refused.status_code == 409 and "SOLUSDT" in refused.json()["error"]
    assert refused.json()["field"] == f"assets[2].history[{N - 1}].timestamp"
    restated = call("feeder", payload={**changed, "restate": True})
    assert restated.status_code == 200 and restated.json()["series"]["SOLUSDT"]["restated"] == 1
    with AuditReader(server.audit_db) as reader:
        assert reader.get(restated.json()["restatement_record"])["caller"] == "feeder-desk"
    env = {**os.environ, "ABETA_AUDIT_DB": str(server.audit_db)}
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "audit", "verify"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("OK"), res.stdout + res.stderr
    spec = httpx.get(server.url + "/openapi.json", headers=auth("admin"), timeout=30).json()
    assert "409" in spec["paths"]["/bars"]["post"]["responses"]


def test_stored_window_builds_the_panel_the_stateless_request_builds(state, tiny_bundle):
    """Bars posted to /bars and read back give the same Panel as the same bars in a /forecast body."""
    import pandas as pd

    from adaptive_beta.serving.schemas import ForecastRequest

    n = 30
    body = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], n_last=n)
    end = pd.Timestamp(body["assets"][0]["history"][-1]["timestamp"])
    start = pd.Timestamp(body["assets"][0]["history"][0]["timestamp"]) - pd.Timedelta("7D")
    body["series"]["SPY"] = [
        p for p in body["series"]["SPY"] if start <= pd.Timestamp(p["timestamp"], tz="UTC") <= end
    ]
    post(state, body)
    symbols = [a["symbol"] for a in body["assets"]]
    with open_market_store(state.market_db) as store:
        window = store.window(symbols, ["CRYPTO_EW", "SPY"], last=n)
    stored = window.panel(state.bundle.meta)
    direct = state.panel_from_request(ForecastRequest.model_validate(body))
    for name in ("close", "volume", "funding_rate", "factors", "factor_staleness", "benchmarks"):
        pd.testing.assert_frame_equal(getattr(stored, name), getattr(direct, name), check_exact=True)
    assert window.ranges()["SOLUSDT"] == {
        "n": n,
        "first": "2025-01-31T00:00:00+00:00",
        "last": "2025-03-01T00:00:00+00:00",
    }


def test_a_restatement_record_is_readable_on_the_compliance_pages_and_feeders_cannot_log_in(
    state, body, tiny_bundle
):
    from tests.serving.test_compliance_pages import login, make_client

    post(state, body)
    changed = copy.deepcopy(body)
    changed["assets"][2]["history"][-1]["close"] *= 1.01
    rid = post(state, {**changed, "restate": True})["restatement_record"]
    client = make_client(state.audit.url, tiny_bundle["path"])
    refused = login(client, "feeder")
    assert refused.status_code == 403 and "feeder" in refused.text
    assert login(client).status_code in (200, 303)
    page = client.get(f"/records/{rid}")
    assert page.status_code == 200 and "SOLUSDT" in page.text and "/bars" in page.text
    assert client.get("/").status_code == 200
