"""SIGKILL in the middle of a concurrent load: every forecast a client received is in the audit log.

8 client threads post /forecast to a real `bentoml serve` process group; after ~1.5 s the whole
group is SIGKILLed (no shutdown hooks run).  A 200 is sent only after the audit entry committed
(SQLite WAL, synchronous=FULL), so every request_id a client saw must be in the log afterwards,
and the hash chain must verify.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from tests.serving.conftest import Server, auth, request_body

pytestmark = pytest.mark.slow

THREADS = 8
MAX_REQUESTS = 300
MAX_SECONDS = 3.0
KILL_AFTER_S = 1.5


def _load(url: str, body: dict, stop: threading.Event, results: list, lock: threading.Lock) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            with lock:
                if len(results) >= MAX_REQUESTS:
                    return
            try:
                r = client.post(url + "/forecast", json=body, headers=auth())
                item = (r.status_code, r.json().get("request_id") if r.status_code == 200 else None)
            except (httpx.HTTPError, ValueError):
                item = ("error", None)  # connection reset by the kill
            with lock:
                results.append(item)


def test_every_answered_forecast_survives_sigkill_of_the_process_group(tiny_bundle, tmp_path):
    from serving.audit import AuditReader, verify_chain

    db = tmp_path / "audit" / "audit.db"
    srv = Server(tiny_bundle["path"], db, tmp_path / "server.log")
    try:
        srv.wait_ready()
        need = tiny_bundle["meta"]["required_history"]["min_periods"]
        body = request_body(
            tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["SOLUSDT", "BTCUSDT"], need
        )
        stop, lock, results = threading.Event(), threading.Lock(), []
        threads = [
            threading.Thread(target=_load, args=(srv.url, body, stop, results, lock)) for _ in range(THREADS)
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(KILL_AFTER_S)
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        killed_at = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(MAX_SECONDS + 10)
    finally:
        srv.stop()
    ok_ids = [rid for status, rid in results if status == 200]
    statuses = {s for s, _ in results}
    assert killed_at < MAX_SECONDS
    assert len(ok_ids) >= 5, f"too few forecasts before the kill: {len(ok_ids)} ({statuses})"
    assert statuses <= {200, "error"}, statuses  # no 4xx/5xx: only answers or cut connections
    assert len(set(ok_ids)) == len(ok_ids)  # unique request ids
    with AuditReader(db) as reader:
        missing = [rid for rid in ok_ids if reader.get(rid) is None]
        assert missing == [], f"{len(missing)} of {len(ok_ids)} answered forecasts are not in the audit log"
        rows = reader.query(limit=10_000)
        assert len(rows) >= len(ok_ids)  # the log may also hold requests killed before their answer
        assert {r["endpoint"] for r in rows} == {"/forecast"}
        result = verify_chain(reader)
    print(f"killed at {killed_at:.2f}s: {len(ok_ids)} answered, {len(rows)} logged, {len(results)} sent")
    assert result.ok, result.problem
    assert result.n_records == len(rows)
