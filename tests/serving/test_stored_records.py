"""Issue 12 item 3: a stored-state audit record names the stored bars instead of copying the
feature rows, is spliced from per-asset fragments made once per bar (one serialisation), still
verifies, exports and renders, and reproduces from the store.  In-process on the tiny bundle
(AppState + the endpoint functions), a real SQLite store and audit log."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.audit.chain import canonical_json, record_hash
from adaptive_beta.models.audit.log import AuditReader, verify_chain
from adaptive_beta.models.audit.store import TABLE
from adaptive_beta.models.market.store import open_market_store
from adaptive_beta.serving.endpoints.forecast import forecast, forecast_http, stored_answer
from adaptive_beta.serving.live import bars_chain
from adaptive_beta.serving.reproduce import reproduce
from adaptive_beta.serving.schemas import ForecastRequest, ForecastResponse, RequestError
from tests.serving.stored_feed import head, post, stored, tail

runner = CliRunner()


@pytest.fixture
def state(inproc_state):
    return inproc_state


def fed(state, body) -> None:
    """The store fed as a feed does: all but two bars at start-up, then one bar at a time, so the
    record names a replay and appended bars."""
    post(state, head(body, 2))
    post(state, tail(head(body, 1), 1))
    post(state, tail(body, 1))


def test_the_universe_record_names_the_stored_bars_and_holds_no_feature_rows(state, tiny_body):
    fed(state, tiny_body)
    ans = stored(state, universe=True)
    rec = state.audit.get(ans["request_id"])
    feats = rec["features"]
    assert "rows" not in feats and feats["inputs"] == {}
    b = feats["bars"]
    assets = sorted(a["symbol"] for a in tiny_body["assets"])
    assert b["assets"] == assets and b["n_assets"] == len(assets)
    assert b["first"] < b["replayed_to"] < b["last"]
    with open_market_store(state.market_db) as store:
        assert bars_chain(store, state.bundle.meta, b["assets"], b, state.freq) == b["sha256"]
    # the record keeps what was answered, exactly (numbers through JSON unchanged)
    assert rec["output"]["forecasts"] == json.loads(json.dumps(ans["forecasts"]))
    assert rec["explanation"] == {  # the drivers' numbers; their text is in output.forecasts
        f["symbol"]: {
            b: [{"group": d["group"], "contribution": d["contribution"]} for d in ds]
            for b, ds in f["drivers"].items()
        }
        for f in ans["forecasts"]
    }
    assert feats["as_of"] == {f["symbol"]: f["as_of"] for f in ans["forecasts"]}
    base = state.live.model.latest[assets[0]].base
    assert feats["baseline_forecast"] == {
        b: float(base[k]) for k, b in enumerate(state.bundle.meta.benchmarks)
    }


def test_the_spliced_record_is_canonical_verifies_and_exports(state, tiny_body, tmp_path):
    fed(state, tiny_body)
    ids = [stored(state, universe=True)["request_id"], stored(state, symbols=["ETHUSDT"])["request_id"]]
    stateless = forecast(state, ForecastRequest.model_validate(tiny_body), "desk")["request_id"]
    with AuditReader(state.audit.url) as reader:
        for rid in ids:
            rec = reader._store.select(reader._filters(request_id=rid), 1, 0)[0]  # the stored form
            raw = reader._store._fetch(f"SELECT payload FROM {TABLE} WHERE request_id = :r", {"r": rid})[0][0]
            assert raw == canonical_json(json.loads(raw))  # the spliced text is the canonical text
            assert record_hash(rec) == rec["hash"]
        assert "rows" in reader.get(stateless)["features"]  # stateless records keep their rows
        n = reader.export(tmp_path / "out.jsonl", fmt="jsonl")
    assert n == 3
    for line in (tmp_path / "out.jsonl").read_text().splitlines():
        r = json.loads(line)
        assert record_hash(r) == r["hash"]
    assert verify_chain(state.audit.url).ok
    out = runner.invoke(app, ["audit", "verify", "--db", state.audit.url])
    assert out.exit_code == 0 and "OK: 3 records, chain intact" in out.output


def test_reproducing_from_the_store_gives_the_logged_forecast(state, tiny_body, tiny_bundle):
    fed(state, tiny_body)
    ans = stored(state, universe=True)
    rec = state.audit.get(ans["request_id"])
    with open_market_store(state.market_db) as store:
        found = reproduce(state, store, rec)
    assert found.bars_match and found.missing == []
    assert sorted(found.recomputed) == sorted(f["symbol"] for f in ans["forecasts"])
    assert found.max_abs_diff <= 1e-9
    for f in ans["forecasts"]:
        got = found.recomputed[f["symbol"]]
        assert got["as_of"] == f["as_of"]
        for bench, v in f["betas"].items():
            assert got["betas"][bench]["beta"] == pytest.approx(v["beta"], abs=1e-9)
    cli = [
        "audit", "reproduce", "--request-id", ans["request_id"], "--db", state.audit.url,
        "--market-db", state.market_db, "--model", str(tiny_bundle["path"]),
    ]  # fmt: skip
    out = runner.invoke(app, cli)
    assert out.exit_code == 0, out.output
    assert f"{len(ans['forecasts'])} forecasts recomputed from the store" in out.output
    # a restatement of a bar the forecast used: the store no longer holds its bars (exit 1)
    changed = tail(tiny_body, 3)
    changed["assets"][0]["history"][0]["close"] *= 1.01
    changed["restate"] = True
    post(state, changed)
    with open_market_store(state.market_db) as store:
        assert not reproduce(state, store, rec).bars_match
    assert runner.invoke(app, cli).exit_code == 1


def test_reproduce_refuses_a_stateless_record_with_exit_2(state, tiny_body, tiny_bundle):
    rid = forecast(state, ForecastRequest.model_validate(tiny_body), "desk")["request_id"]
    out = runner.invoke(
        app,
        ["audit", "reproduce", "--request-id", rid, "--db", state.audit.url, "--market-db", state.market_db,
         "--model", str(tiny_bundle["path"])],
    )  # fmt: skip
    assert out.exit_code == 2 and "not a stored-state /forecast record" in out.output
    missing = runner.invoke(app, ["audit", "reproduce", "--request-id", "nope", "--db", state.audit.url])
    assert missing.exit_code == 2 and "no record with request id 'nope'" in missing.output


def test_the_http_answer_bytes_parse_to_the_validated_response(state, tiny_body):
    post(state, tiny_body)
    for form in ({"universe": True}, {"symbols": ["SOLUSDT", "BTCUSDT"]}):
        body, raw = stored_answer(state, ForecastRequest.model_validate(form), "desk")
        assert json.loads(raw) == ForecastResponse.model_validate(body).model_dump(mode="json")
    http = forecast_http(state, ForecastRequest.model_validate({"symbols": ["ETHUSDT"]}), "desk")
    assert http.media_type == "application/json"
    got = json.loads(http.body)
    assert [f["symbol"] for f in got["forecasts"]] == ["ETHUSDT"] and state.audit.get(got["request_id"])


def test_answers_are_made_once_per_bar_and_shared_by_requests(state, tiny_body):
    post(state, head(tiny_body, 1))
    one = stored(state, universe=True)
    two = stored(state, symbols=["SOLUSDT", "ETHUSDT"])
    by_sym = {f["symbol"]: f for f in one["forecasts"]}
    assert two["forecasts"][0] is by_sym["SOLUSDT"] and two["forecasts"][1] is by_sym["ETHUSDT"]
    post(state, tail(tiny_body, 1))
    made = state.answers.cache["SOLUSDT"]  # made by POST /bars with the forecast, before any request
    assert (
        made.forecast is state.live.model.latest["SOLUSDT"]
        and made.response["as_of"] > by_sym["SOLUSDT"]["as_of"]
    )
    three = stored(state, symbols=["SOLUSDT"])
    assert three["forecasts"][0] is made.response
    assert three["forecasts"][0] is not by_sym["SOLUSDT"]
    assert three["forecasts"][0]["as_of"] > by_sym["SOLUSDT"]["as_of"]


def test_a_non_finite_kept_forecast_is_refused_naming_it_and_nothing_is_logged(state, tiny_body):
    post(state, tiny_body)
    n = len(state.audit.query(limit=100))
    latest = state.live.model.latest
    latest["ETHUSDT"] = dataclasses.replace(
        latest["ETHUSDT"], beta=np.full_like(latest["ETHUSDT"].beta, np.nan)
    )
    with pytest.raises(RequestError) as bad:
        stored(state, symbols=["SOLUSDT", "ETHUSDT"])
    assert bad.value.field == "symbols[1]" and "ETHUSDT" in bad.value.message
    assert "not a finite number" in bad.value.message
    assert len(state.audit.query(limit=100)) == n
    assert stored(state, symbols=["SOLUSDT"])["forecasts"][0]["symbol"] == "SOLUSDT"  # others still served


def test_a_200_asset_universe_record_fits_the_default_limit(state, tiny_body):
    """The record grows by one asset's outputs and drivers per asset: measured on the tiny
    bundle's universe, 200 assets stay far below ABETA_MAX_RECORD_BYTES' default of 1 MiB."""
    post(state, tiny_body)
    one = stored(state, symbols=["SOLUSDT"])
    uni = stored(state, universe=True)
    size = {
        k: len(canonical_json(state.audit.get(r["request_id"])["output"]).encode())
        + len(canonical_json(state.audit.get(r["request_id"])["explanation"]).encode())
        for k, r in (("one", one), ("uni", uni))
    }
    per_asset = (size["uni"] - size["one"]) / (len(uni["forecasts"]) - 1)
    assert state.max_record_bytes == 1024 * 1024
    assert 200 * per_asset * 1.5 < state.max_record_bytes  # 1.5: a model with more groups or benchmarks


def test_the_record_page_renders_a_stored_universe_record_with_its_bars_and_reproduce_command(
    state, tiny_body
):
    from starlette.testclient import TestClient

    from adaptive_beta.serving.auth import KeyStore
    from adaptive_beta.serving.compliance.app import ComplianceConfig, create_app
    from tests.serving.conftest import API_KEYS_ENV, KEYS

    fed(state, tiny_body)
    ans = stored(state, universe=True)
    b = state.audit.get(ans["request_id"])["features"]["bars"]
    app_ = create_app(
        ComplianceConfig(audit_db=state.audit.url, model=""), store=KeyStore.parse(API_KEYS_ENV)
    )
    client = TestClient(app_, base_url="http://testserver")
    assert (
        client.post("/login", data={"api_key": KEYS["compliance"]}, follow_redirects=False).status_code == 303
    )
    page = client.get(f"/records/{ans['request_id']}")
    assert page.status_code == 200
    text = page.text
    assert 'id="stored-bars"' in text and b["sha256"] in text and b["first"] in text and b["last"] in text
    assert f"abeta audit reproduce --request-id {ans['request_id']}" in text
    assert text.count("features reproduced from the stored bars") == len(ans["forecasts"])
    for f in ans["forecasts"]:  # every asset's betas, as the page rounds them
        assert f">{f['betas']['CRYPTO_EW']['beta']:.3f}<" in text
    n_bench = len(
        state.bundle.meta.benchmarks
    )  # a waterfall per asset and benchmark, from the logged drivers
    assert text.count('<canvas class="waterfall"') == len(ans["forecasts"]) * n_bench
