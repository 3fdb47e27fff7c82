"""End-to-end: a real `bentoml serve` subprocess on 127.0.0.1, called over HTTP (httpx)."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import Server, auth, request_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


def post(server, path, payload, role="trader", **kw):
    """JSON as Python writes it (NaN and Infinity literals allowed: clients send them)."""
    headers = {**auth(role), "content-type": "application/json"}
    return httpx.post(server.url + path, content=json.dumps(payload), headers=headers, timeout=30, **kw)


def audit_rows(server, **filters):
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(server.audit_db) as r:
        return r.query(limit=1000, **filters)


def test_forecast_returns_betas_intervals_regimes_and_drivers(server, body, tiny_bundle):
    r = post(server, "/forecast", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert re.fullmatch(r"[0-9a-f]{32}", out["request_id"])
    assert out["model"]["version"] == "test-1"
    assert [f["symbol"] for f in out["forecasts"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]
    for f in out["forecasts"]:
        assert f["as_of"].startswith("2025-03-01")
        for b in ("BTCUSDT", "CRYPTO_EW"):
            beta = f["betas"][b]
            assert beta["lo"] == pytest.approx(beta["beta"] - 0.2, abs=1e-6)
            assert beta["hi"] == pytest.approx(beta["beta"] + 0.2, abs=1e-6)
        assert sum(f["regime_probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert "beta to BTCUSDT" in f["summary"]
        assert len(f["drivers"]["BTCUSDT"]) == 3
    # BTC's beta to itself: its Welch base beta is ~1 plus a bounded correction (|0.3 tanh| <= 0.3)
    btc = out["forecasts"][0]["betas"]["BTCUSDT"]["beta"]
    assert 0.69 < btc < 1.31


def test_explain_contributions_add_up_to_forecast_minus_baseline(server, body):
    r = post(server, "/explain", body)
    assert r.status_code == 200, r.text
    out = r.json()
    fc = post(server, "/forecast", body).json()
    for e, f in zip(out["explanations"], fc["forecasts"], strict=True):
        for b, ex in e["benchmarks"].items():
            total = sum(g["contribution"] for g in ex["groups"])
            assert abs(total - (ex["forecast"] - ex["baseline_forecast"])) < 1e-4
            assert ex["forecast"] == pytest.approx(f["betas"][b]["beta"], abs=1e-6)
            assert {g["group"] for g in ex["groups"]} == {
                "crypto_benchmark",
                "equity",
                "funding_leverage",
                "own_history",
            }
            assert any(g["features"] for g in ex["groups"])  # per-feature detail in the top groups
    assert "training mean" in out["baseline"]


def test_hedge_brings_residual_beta_to_target(server, body):
    payload = {
        **body,
        "positions": {"SOLUSDT": 1_000_000.0, "DOGEUSDT": -250_000.0},
        "target": {"BTCUSDT": 0.0, "CRYPTO_EW": 0.5},
        "instruments": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}],
    }
    r = post(server, "/hedge", payload)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["reachable"] and out["method"] == "closed_form"
    assert out["residual_beta"]["BTCUSDT"] == pytest.approx(0.0, abs=1e-6)
    assert out["residual_beta"]["CRYPTO_EW"] == pytest.approx(0.5, abs=1e-6)
    # recompute from the betas used: dollar beta of positions + orders = target x NAV
    nav = 1_250_000.0
    assert out["nav"] == pytest.approx(nav)
    orders = {o["symbol"]: o["notional"] for o in out["orders"]}
    used = out["betas_used"]
    for b, t in payload["target"].items():
        dollar = sum(n * used[s][b] for s, n in payload["positions"].items())
        dollar += sum(n * used[s][b] for s, n in orders.items())
        assert dollar / nav == pytest.approx(t, abs=1e-6)
        lo, hi = out["residual_interval"][b]
        assert lo < out["residual_beta"][b] < hi


def test_hedge_with_binding_limit_reports_unreachable(server, body):
    payload = {
        **body,
        "positions": {"SOLUSDT": 1_000_000.0},
        "target": {"BTCUSDT": 0.0},
        "instruments": [{"symbol": "BTCUSDT", "min_notional": -100_000.0, "max_notional": 0.0}],
    }
    out = post(server, "/hedge", payload).json()
    assert out["orders"][0]["notional"] == pytest.approx(-100_000.0)
    assert not out["reachable"] and out["method"] == "bounded_lsq"


def test_model_card_required_history_builds_a_valid_request(server, tiny_bundle):
    r = httpx.get(server.url + "/model", headers=auth("trader"), timeout=10)
    assert r.status_code == 200, r.text
    card = r.json()
    req = card["required_history"]
    assert req == {"frequency": "1d", "min_periods": 26, "series": ["BTCUSDT", "CRYPTO_EW", "SPY"]}
    assert card["version"] == "test-1" and card["training_period"]["start"] == "2025-01-01"
    # a client uses exactly min_periods bars of each asset and series -> 200
    small = request_body(
        tiny_bundle["assets"],
        tiny_bundle["spy"],
        tiny_bundle["composite"],
        ["SOLUSDT", "BTCUSDT"],
        req["min_periods"],
    )
    assert post(server, "/forecast", small).status_code == 200
    # one bar fewer -> 422 naming the asset
    short = request_body(
        tiny_bundle["assets"],
        tiny_bundle["spy"],
        tiny_bundle["composite"],
        ["SOLUSDT", "BTCUSDT"],
        req["min_periods"] - 1,
    )
    r = post(server, "/forecast", short)
    assert r.status_code == 422
    assert r.json()["field"] == "assets[0].history" and "SOLUSDT" in r.json()["error"]


def _bad(body, mutate):
    b = copy.deepcopy(body)
    mutate(b)
    return b


def _drop_bar(b):
    del b["assets"][1]["history"][30]


def _dup_bar(b):
    b["assets"][2]["history"][40]["timestamp"] = b["assets"][2]["history"][39]["timestamp"]


def _unsorted(b):
    h = b["assets"][2]["history"]
    h[40], h[41] = h[41], h[40]


def _neg_close(b):
    b["assets"][3]["history"][10]["close"] = -1.0


def _nan_close(b):
    b["assets"][3]["history"][10]["close"] = float("nan")  # the JSON literal NaN


def _string_close(b):
    b["assets"][3]["history"][10]["close"] = "123.5"  # a number in a string: a client bug


def _missing_series(b):
    del b["series"]["SPY"]


def _extra_field(b):
    b["assets"][0]["colour"] = "red"


def _bad_ts(b):
    b["assets"][0]["history"][3]["timestamp"] = "yesterday"


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (_drop_bar, 422, "ETHUSDT: missing bar"),
        (_dup_bar, 400, "asset SOLUSDT: history[40].timestamp"),
        (_unsorted, 400, "not sorted"),
        (_neg_close, 400, "asset DOGEUSDT: history[10].close must be > 0"),
        (_nan_close, 400, "DOGEUSDT: history[10].close is not a finite"),
        (_string_close, 400, '"field": "assets[3].history[10].close"'),
        (_missing_series, 422, "series 'SPY'"),
        (_extra_field, 400, "colour"),
        (_bad_ts, 400, "timestamp"),
    ],
    ids=[
        "gap",
        "duplicate",
        "unsorted",
        "non-positive",
        "non-finite",
        "string-number",
        "missing-series",
        "extra-field",
        "bad-ts",
    ],
)
def test_bad_input_gets_4xx_naming_field_and_asset(server, body, mutate, status, needle):
    r = post(server, "/forecast", _bad(body, mutate))
    assert r.status_code == status, r.text
    assert needle in r.text


def test_too_many_assets_and_non_json_are_rejected(server, body):
    b = copy.deepcopy(body)
    b["assets"] = [dict(b["assets"][0], symbol=f"X{i}USDT") for i in range(65)]
    r = post(server, "/forecast", b)
    assert r.status_code == 400 and "assets" in r.text
    r = httpx.post(
        server.url + "/forecast", content=b"{not json", headers={**auth(), "content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500


def test_hedge_unknown_benchmark_is_422(server, body):
    payload = {
        **body,
        "positions": {"SOLUSDT": 1e6},
        "target": {"SPY": 0.0},
        "instruments": [{"symbol": "BTCUSDT"}],
    }
    r = post(server, "/hedge", payload)
    assert r.status_code == 422 and r.json()["field"] == "target.SPY"


def test_auth_missing_invalid_and_wrong_role(server, body):
    assert httpx.post(server.url + "/forecast", json=body, timeout=10).status_code == 401
    r = httpx.post(server.url + "/forecast", json=body, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401
    assert post(server, "/forecast", body, role="compliance").status_code == 403
    assert post(server, "/forecast", {"assets": []}, role="admin").status_code == 400  # admin passes auth
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200


def test_body_over_limit_is_413_by_header_and_by_stream(server):
    big = b"{" + b" " * (2 * 1024 * 1024 + 10) + b"}"
    h = {**auth(), "content-type": "application/json"}
    assert httpx.post(server.url + "/forecast", content=big, headers=h, timeout=30).status_code == 413

    def chunks():
        for _ in range(3):
            yield b" " * (1024 * 1024)

    r = httpx.post(server.url + "/forecast", content=chunks(), headers=h, timeout=30)
    assert r.status_code == 413 and "limit" in r.text


def test_readyz_and_metrics_with_model_version_label(server, body):
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    assert post(server, "/forecast", body).status_code == 200
    line = None
    deadline = time.time() + 10  # worker metrics reach /metrics through prometheus' multiprocess files
    while line is None and time.time() < deadline:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        line = next(
            (
                ln
                for ln in text.splitlines()
                if ln.startswith("abeta_request_duration_seconds_count")
                and 'endpoint="/forecast"' in ln
                and 'status="200"' in ln
            ),
            None,
        )
        if line is None:
            time.sleep(0.5)
    assert line is not None, "no /forecast latency series in /metrics"
    assert 'model_version="test-1"' in line and float(line.split()[-1]) >= 1


def test_every_call_is_audited_before_the_response(server, body):
    r = post(server, "/forecast", body)
    rid = r.json()["request_id"]
    rows = audit_rows(server, request_id=rid)
    assert len(rows) == 1
    rec = rows[0]
    assert rec["caller"] == "trader-desk" and rec["endpoint"] == "/forecast"
    assert rec["model_version"] == "test-1" and rec["symbols"] == [
        "BTCUSDT",
        "ETHUSDT",
        "SOLUSDT",
        "DOGEUSDT",
    ]
    got = {f["symbol"]: f["betas"]["BTCUSDT"]["beta"] for f in rec["output"]["forecasts"]}
    assert got == {f["symbol"]: f["betas"]["BTCUSDT"]["beta"] for f in r.json()["forecasts"]}
    before = len(audit_rows(server))
    post(server, "/explain", body)
    post(server, "/forecast", {"assets": []})  # rejected -> not logged
    assert len(audit_rows(server)) == before + 1


def test_torch_is_never_loaded_in_the_server_processes(server, body):
    assert post(server, "/explain", body).status_code == 200
    pids = server.worker_pids()
    assert len(pids) >= 2  # the serve process and at least one worker
    maps = {pid: Path(f"/proc/{pid}/maps").read_text() for pid in pids}
    assert any("onnxruntime" in m for m in maps.values())  # the worker that served is among them
    for pid, m in maps.items():
        assert "libtorch" not in m, f"process {pid} mapped libtorch"


def test_audit_unwritable_gives_503_and_no_forecast(tiny_bundle, body, tmp_path):
    srv = Server(tiny_bundle["path"], tmp_path / "audit.db", tmp_path / "server.log")
    try:
        srv.wait_ready()
        assert post(srv, "/forecast", body).status_code == 200
        for p in tmp_path.glob("audit.db*"):
            p.unlink()  # the log the server holds is gone: appends must fail
        r = post(srv, "/forecast", body)
        assert r.status_code == 503
        assert "forecasts" not in r.json() and "audit" in r.json()["error"]
        deadline = time.time() + 10
        while httpx.get(srv.url + "/readyz", timeout=5).status_code == 200 and time.time() < deadline:
            time.sleep(0.2)
        assert httpx.get(srv.url + "/readyz", timeout=5).status_code != 200
    finally:
        srv.stop()


def test_openapi_fuzzing_with_schemathesis_never_gives_500(server):
    schemathesis = pytest.importorskip(
        "schemathesis", reason="schemathesis is not installed: add 'schemathesis>=4.1,<5' to the dev extras"
    )
    schema = schemathesis.openapi.from_url(server.url + "/docs.json", headers=auth("admin"))
    from hypothesis import HealthCheck, given, settings

    for path in ("/forecast", "/explain", "/hedge"):
        op = schema[path]["POST"]

        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            resp = case.call(headers=auth("trader"))
            assert resp.status_code < 500, (case.path, resp.status_code, resp.text)
            # 409: a stored-state body ({"symbols"} / {"universe"}) while the store is empty
            stored = case.path in ("/forecast", "/explain") and resp.status_code == 409
            assert stored or resp.status_code in (200, 400, 413, 422), (
                case.path,
                resp.status_code,
                resp.text,
            )
            if stored:
                assert "POST /bars first" in resp.json()["error"]

        check()
