"""The served audit log is anchored (open, interval, close on shutdown) and a server started on a
truncated copy of its database refuses to serve: /readyz 503 and one clear log line."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx

from tests.serving.conftest import Server, auth, request_body


def _anchor_lines(db: Path) -> list[dict]:
    return [json.loads(x) for x in Path(f"{db}.anchors").read_text().splitlines()]


def _wait_up(srv: Server, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"server exited: {srv.log.read_text()[-3000:]}")
        try:
            if httpx.get(srv.url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not up in {timeout}s: {srv.log.read_text()[-3000:]}")


def test_a_server_restarted_on_a_truncated_copy_is_not_ready(tiny_bundle, tmp_path):
    db = tmp_path / "audit" / "audit.db"
    env = {"ABETA_AUDIT_ANCHOR_EVERY": "2"}
    srv = Server(tiny_bundle["path"], db, tmp_path / "first.log", extra_env=env)
    need = tiny_bundle["meta"]["required_history"]["min_periods"]
    body = request_body(
        tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["SOLUSDT", "BTCUSDT"], need
    )
    try:
        srv.wait_ready()
        for _ in range(3):
            assert httpx.post(srv.url + "/forecast", json=body, headers=auth(), timeout=30).status_code == 200
    finally:
        srv.stop()
    lines = _anchor_lines(db)
    assert [(x["event"], x["seq"]) for x in lines] == [("open", 0), ("interval", 2), ("close", 3)]
    assert len({x["writer"] for x in lines}) == 1  # one worker wrote them, the last on shutdown

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_records_no_delete")
    conn.execute("DELETE FROM audit_records WHERE seq = 3")
    conn.close()
    srv = Server(tiny_bundle["path"], db, tmp_path / "second.log", extra_env=env)
    try:
        _wait_up(srv)
        time.sleep(1.0)
        assert httpx.get(srv.url + "/readyz", timeout=5).status_code == 503
        r = httpx.post(srv.url + "/forecast", json=body, headers=auth(), timeout=30)
        assert r.status_code == 503
    finally:
        srv.stop()
    said = [x for x in srv.log.read_text().splitlines() if "does not match its anchors" in x]
    assert len(said) == 1, srv.log.read_text()[-3000:]
    assert "truncated: the log ends at seq 2" in said[0] and "record seq 3 removed" in said[0]
    assert [x["seq"] for x in _anchor_lines(db)] == [0, 2, 3]  # the refused server anchored nothing
