"""Issue 11 item 8: failed authentication is rate limited per client and logged.

After `max_failures` wrong keys within `window_s` (ABETA_AUTH_MAX_FAILURES / ABETA_AUTH_WINDOW_S) a
client gets 429 with Retry-After on the API (wrong bearer key) and on the compliance login, even
with a right key, until the window has passed; every failure is one log line without the key.
Bounded: 30 attempts per test, in-process (starlette TestClient), a fake clock for the window.
"""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from adaptive_beta.serving.auth import APIKeyMiddleware, AuthLimitConfig, FailedAuthLimiter, KeyStore
from tests.serving.conftest import API_KEYS_ENV, KEYS

WRONG = "wrong-key-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def clock():
    return Clock()


def api_client(limiter, client=("10.0.0.1", 5000)) -> TestClient:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = APIKeyMiddleware(app, store=KeyStore.parse(API_KEYS_ENV), limiter=limiter)
    return TestClient(mw, client=client)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_wrong_bearer_keys_get_429_with_retry_after_then_recover(clock, caplog):
    limiter = FailedAuthLimiter(AuthLimitConfig(max_failures=5, window_s=60), clock=clock)
    c = api_client(limiter)
    with caplog.at_level(logging.WARNING, logger="abeta.auth"):
        codes = [c.get("/model", headers=bearer(WRONG)).status_code for _ in range(30)]
    assert codes == [401] * 5 + [429] * 25
    r = c.get("/model", headers=bearer(KEYS["trader"]))  # a right key does not unlock a blocked client
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert "retry" in r.json()["error"].lower()
    failures = [rec for rec in caplog.records if "authentication failed" in rec.getMessage()]
    assert len(failures) == 5
    assert all("10.0.0.1" in f.getMessage() and WRONG not in f.getMessage() for f in failures)
    assert all(WRONG not in rec.getMessage() for rec in caplog.records)
    # another client is not affected; the blocked one recovers after the window
    assert (
        api_client(limiter, ("10.0.0.2", 5000)).get("/model", headers=bearer(KEYS["trader"])).status_code
        == 200
    )
    clock.t += 61
    assert c.get("/model", headers=bearer(KEYS["trader"])).status_code == 200


def test_probes_and_right_keys_are_not_counted(clock):
    limiter = FailedAuthLimiter(AuthLimitConfig(max_failures=3, window_s=60), clock=clock)
    c = api_client(limiter)
    for _ in range(10):
        assert c.get("/model", headers=bearer(KEYS["trader"])).status_code == 200
        assert c.get("/healthz").status_code == 200
    assert c.get("/model", headers=bearer(WRONG)).status_code == 401


def test_compliance_login_is_rate_limited_and_logged(tmp_path, clock, caplog):
    from adaptive_beta.serving.compliance.app import ComplianceConfig, create_app

    limiter = FailedAuthLimiter(AuthLimitConfig(max_failures=10, window_s=300), clock=clock)
    app = create_app(
        ComplianceConfig(audit_db=str(tmp_path / "a.db"), model=""),
        store=KeyStore.parse(API_KEYS_ENV),
        limiter=limiter,
    )
    c = TestClient(app, client=("10.0.0.9", 1234))
    with caplog.at_level(logging.WARNING, logger="abeta.auth"):
        codes = [
            c.post("/login", data={"api_key": WRONG}, follow_redirects=False).status_code for _ in range(30)
        ]
    assert codes == [401] * 10 + [429] * 20
    r = c.post("/login", data={"api_key": KEYS["compliance"]}, follow_redirects=False)
    assert r.status_code == 429 and "set-cookie" not in r.headers
    assert 1 <= int(r.headers["retry-after"]) <= 300
    failures = [rec.getMessage() for rec in caplog.records if "authentication failed" in rec.getMessage()]
    assert len(failures) == 10 and all("10.0.0.9" in m and "/login" in m and WRONG not in m for m in failures)
    clock.t += 301
    assert c.post("/login", data={"api_key": KEYS["compliance"]}, follow_redirects=False).status_code == 303


def test_the_limits_are_settings(monkeypatch):
    monkeypatch.setenv("ABETA_AUTH_MAX_FAILURES", "7")
    monkeypatch.setenv("ABETA_AUTH_WINDOW_S", "90")
    assert AuthLimitConfig.from_env() == AuthLimitConfig(max_failures=7, window_s=90.0)


def test_the_client_table_is_bounded(clock):
    limiter = FailedAuthLimiter(AuthLimitConfig(max_failures=2, window_s=10, max_clients=100), clock=clock)
    for i in range(1000):
        limiter.failure(f"10.1.{i // 250}.{i % 250}", "/model", "unknown API key")
        clock.t += 0.05
    assert len(limiter) <= 100
