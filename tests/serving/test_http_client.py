"""Issue 12 item 5: the Python client for trading systems (`adaptive_beta.serving.http_client`).

Against the real service (forecast as a DataFrame, typed errors with the field the service names)
and against a small scripted HTTP server on 127.0.0.1 (retries with backoff on 429/503 only,
`Retry-After` honoured, the last answer becoming a typed error).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from adaptive_beta.serving.client import as_columns
from adaptive_beta.serving.http_client import (
    BetaClient,
    Forbidden,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from tests.serving.conftest import KEYS


@pytest.fixture(scope="module")
def body(tiny_body):
    return tiny_body


def test_forecast_comes_back_as_one_row_per_symbol_and_benchmark(server, body):
    with BetaClient(server.url, KEYS["trader"]) as c:
        info = c.model()
        df = c.forecast(body)
        cols = c.forecast(as_columns(body))
    benches, regimes = info["benchmarks"], info["regimes"]
    assert len(df) == len(body["assets"]) * len(benches)
    assert set(df["benchmark"]) == set(benches) and set(df["symbol"]) == {a["symbol"] for a in body["assets"]}
    assert (df["lo"] <= df["beta"]).all() and (df["beta"] <= df["hi"]).all()
    p = df[[f"p_{r}" for r in regimes]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert str(df["as_of"].dt.tz) == "UTC" and df["request_id"].nunique() == 1
    assert df["model_version"].iloc[0] == info["version"]
    # the columnar form of the same request: the same numbers, another request id
    assert np.allclose(cols["beta"].to_numpy(), df["beta"].to_numpy(), rtol=0, atol=1e-12)
    assert cols["request_id"].iloc[0] != df["request_id"].iloc[0]


def test_service_errors_are_typed_and_name_the_field(server, body):
    with BetaClient(server.url, "x" * 32) as c, pytest.raises(Unauthorized) as e401:
        c.forecast(body)
    assert e401.value.status == 401
    with BetaClient(server.url, KEYS["compliance"]) as c, pytest.raises(Forbidden):
        c.forecast(body)
    short = json.loads(json.dumps(body))
    short["assets"][0]["history"] = short["assets"][0]["history"][-5:]
    with BetaClient(server.url, KEYS["trader"]) as c, pytest.raises(Unprocessable) as e422:
        c.forecast(short)
    assert e422.value.field == "assets[0].history" and "bars" in e422.value.message


class _Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, headers) and counts them."""

    script: list = []
    calls: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append(time.monotonic())
        status, headers = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
        payload = (
            json.dumps({"request_id": "r", "model": {"version": "1"}, "forecasts": []})
            if status == 200
            else json.dumps({"error": f"scripted {status}", "field": "body"})
        ).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def scripted():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    _Scripted.calls = []
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_503_then_200_is_retried_with_retry_after(scripted):
    _, url = scripted
    _Scripted.script = [(503, {"Retry-After": "1"}), (503, {"Retry-After": "1"}), (200, {})]
    with BetaClient(url, "k" * 32, backoff=0.01) as c:
        df = c.forecast({"assets": []})
    calls = _Scripted.calls
    assert len(calls) == 3 and df.empty
    assert calls[1] - calls[0] >= 0.9 and calls[2] - calls[1] >= 0.9  # Retry-After: 1 s honoured


def test_429_exhausting_the_retries_raises_rate_limited_after_retries_plus_one_calls(scripted):
    _, url = scripted
    _Scripted.script = [(429, {"Retry-After": "0"})]
    with BetaClient(url, "k" * 32, retries=3, backoff=0.001) as c, pytest.raises(RateLimited) as err:
        c.forecast({"assets": []})
    assert len(_Scripted.calls) == 4 and err.value.status == 429 and err.value.field == "body"


@pytest.mark.parametrize("status, exc", [(422, Unprocessable), (403, Forbidden)])
def test_other_errors_are_not_retried(scripted, status, exc):
    _, url = scripted
    _Scripted.script = [(status, {})]
    with BetaClient(url, "k" * 32, backoff=0.001) as c, pytest.raises(exc):
        c.forecast({"assets": []})
    assert len(_Scripted.calls) == 1


def test_unavailable_after_the_last_503(scripted):
    _, url = scripted
    _Scripted.script = [(503, {})]
    with BetaClient(url, "k" * 32, retries=1, backoff=0.001) as c, pytest.raises(Unavailable):
        c.forecast({"assets": []})
    assert len(_Scripted.calls) == 2


def test_send_bars_then_forecast_by_symbol_from_the_stored_state(server, body):
    with BetaClient(server.url, KEYS["feeder"]) as feed:
        sent = feed.send_bars(body)
    assert sent["series"]["SOLUSDT"]["appended"] + sent["series"]["SOLUSDT"]["duplicate"] == len(
        body["assets"][0]["history"]
    )
    with BetaClient(server.url, KEYS["trader"]) as c:
        kept = c.forecast(symbols=["SOLUSDT", "ETHUSDT"])
        everything = c.forecast(universe=True)
        ref = c.forecast(body)
        with pytest.raises(ValueError):
            c.forecast(body, symbols=["SOLUSDT"])
    assert list(dict.fromkeys(kept["symbol"])) == ["SOLUSDT", "ETHUSDT"]
    assert set(everything["symbol"]) == {a["symbol"] for a in body["assets"]}
    merged = kept.merge(ref, on=["symbol", "benchmark"], suffixes=("", "_ref"))
    assert len(merged) == len(kept) and np.allclose(merged["beta"], merged["beta_ref"], atol=1e-5)
    assert (merged["as_of"] == merged["as_of_ref"]).all()
