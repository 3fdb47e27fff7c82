"""End-to-end with a REAL bundle: simulated market -> fit_model -> export_bundle -> `bentoml serve`.

The request is built by `adaptive_beta.serving.client.forecast_request` from what GET /model says, exactly as a
client (and the main job) does.  The served beta must equal the in-process ONNX Runtime
prediction on features computed by the training code on the same bars (1e-5): request parsing,
panel building and the feature pipeline are the training ones.  Against features computed on the
whole history (what the network saw in training) the gap is the EWMA/Welch truncation that
`required_history.min_periods` (FeatureSpec.serving_history, 1 % lost weight) bounds.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.serving.conftest import Server, auth, build_real_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("e2e")
    facts = build_real_bundle(root)
    srv = Server(facts["bundle"], root / "audit" / "audit.db", root / "server.log")
    srv.audit_db = root / "audit" / "audit.db"
    try:
        srv.wait_ready(timeout=120)
        facts["server"] = srv
        yield facts
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def card(real):
    r = httpx.get(real["server"].url + "/model", headers=auth(), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def body(real, card):
    from adaptive_beta.serving.client import forecast_request, raw_factor_series

    panel = real["panel"]
    symbols = [s for s in panel.symbols if s not in card["required_history"]["series"]][:3]
    return forecast_request(panel, card["required_history"], symbols, raw_factor_series(real["data"]))


def _post(real, path, payload):
    return httpx.post(real["server"].url + path, json=payload, headers=auth(), timeout=60)


def _in_process(real, body, panel):
    """Training-code features (adaptive_beta.models.features.compute via make_inputs) + ORT on `panel`, for the request's assets."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.inference import make_inputs
    from adaptive_beta.models.bundle.predictor import Predictor

    bundle = load_bundle(real["bundle"])
    symbols = [a["symbol"] for a in body["assets"]]
    inputs = make_inputs(panel, bundle, symbols=symbols)
    return inputs, Predictor(bundle).predict(inputs.x), list(bundle.meta.benchmarks)


def test_model_card_advertises_serving_history_not_just_the_feature_warm_up(card, real):
    req = card["required_history"]
    spec = real["spec"]
    # 10d half-lives, 1 % lost weight: ceil(10 * log2(100)) = 67 bars, + a 15-bar window span
    assert spec.serving_history("1d") == 67 and spec.min_history("1d") == 41
    assert req["min_periods"] == 67 + 15
    assert req["series"][:2] == ["BTCUSDT", "CRYPTO_EW"] and "SPX" in req["series"]


def test_served_beta_equals_in_process_prediction_on_the_same_bars(real, body):
    r = _post(real, "/forecast", body)
    assert r.status_code == 200, r.text
    served = {f["symbol"]: f for f in r.json()["forecasts"]}
    panel = real["panel"]
    first = body["assets"][0]["history"][0]["timestamp"]
    inputs, out, benches = _in_process(real, body, panel.slice(start=first))
    assert inputs.as_of[0] == panel.index[-1]
    for i, sym in enumerate(inputs.symbols):
        assert served[sym]["as_of"] == inputs.as_of[i].isoformat()
        for k, b in enumerate(benches):
            got = served[sym]["betas"][b]
            assert abs(got["beta"] - float(out["beta"][i, k])) < 1e-5
            assert abs(got["lo"] - float(out["beta_lo"][i, k])) < 1e-5
            assert abs(got["hi"] - float(out["beta_hi"][i, k])) < 1e-5
        probs = [served[sym]["regime_probabilities"][r] for r in ("calm", "volatile", "crash")]
        np.testing.assert_allclose(probs, out["regime_prob"][i], atol=1e-5)


def test_served_inputs_are_close_to_full_history_training_features(real, body):
    """min_periods bars vs the whole history: base (Welch) betas within 1e-2, betas within 2e-2."""
    from adaptive_beta.models.bundle.folder import load_bundle

    bundle = load_bundle(real["bundle"])
    panel = real["panel"]
    first = body["assets"][0]["history"][0]["timestamp"]
    cut, out_cut, benches = _in_process(real, body, panel.slice(start=first))
    full, out_full, _ = _in_process(real, body, panel)
    base = [bundle.feature_columns.index(bundle.meta.base_columns[b]) for b in benches]
    gap = np.abs(cut.x[:, -1, base] - full.x[:, -1, base])
    assert gap.max() < 1e-2
    assert np.abs(out_cut["beta"] - out_full["beta"]).max() < 2e-2


def test_explain_contributions_sum_to_forecast_minus_baseline(real, body):
    fc = _post(real, "/forecast", body).json()
    r = _post(real, "/explain", {**body, "top_groups": 1})
    assert r.status_code == 200, r.text
    for e, f in zip(r.json()["explanations"], fc["forecasts"], strict=True):
        for b, ex in e["benchmarks"].items():
            total = sum(g["contribution"] for g in ex["groups"])
            assert abs(total - (ex["forecast"] - ex["baseline_forecast"])) < 1e-4
            assert abs(ex["forecast"] - f["betas"][b]["beta"]) < 1e-5


def test_hedge_residual_beta_reaches_target(real, body):
    syms = [a["symbol"] for a in body["assets"]]
    payload = {
        **body,
        "positions": {syms[0]: 1_000_000.0, syms[1]: -400_000.0},
        "target": {"BTCUSDT": 0.1},
        "instruments": [{"symbol": syms[2]}],
    }
    r = _post(real, "/hedge", payload)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["reachable"]
    assert abs(out["residual_beta"]["BTCUSDT"] - 0.1) < 1e-6
    orders = {o["symbol"]: o["notional"] for o in out["orders"]}
    used = out["betas_used"]
    dollar = sum(n * used[s]["BTCUSDT"] for s, n in {**payload["positions"], **orders}.items())
    assert abs(dollar / out["nav"] - 0.1) < 1e-6


def test_response_request_id_is_the_one_in_the_audit_log(real, body):
    from adaptive_beta.models.audit.log import AuditReader, verify_chain

    rid = _post(real, "/forecast", body).json()["request_id"]
    with AuditReader(real["server"].audit_db) as reader:
        rows = reader.query(request_id=rid)
        assert len(rows) == 1 and rows[0]["endpoint"] == "/forecast"
        assert rows[0]["model_version"] == "e2e-1"
        assert verify_chain(reader).ok


def test_client_command_writes_the_same_body_from_the_bundle_alone(real, body, tmp_path):
    import json

    from adaptive_beta.serving.client import main

    out = tmp_path / "request.json"
    symbols = ",".join(a["symbol"] for a in body["assets"])
    assert (
        main(
            [
                "--data",
                str(real["data"]),
                "--model",
                str(real["bundle"]),
                "--symbols",
                symbols,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text()) == body
