"""SIGKILL during a bar feed and stored-state reads (issue 12: the service's promises cover the new
endpoints too): every bar a feeder got a 200 for is in the store, every stored-state forecast a
desk received is in the audit log, the chain verifies, and a restarted server on the same files
answers from the stored bars at the last acknowledged bar.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import httpx
import pandas as pd
import pytest

from tests.serving.conftest import Server, auth, request_body

pytestmark = pytest.mark.slow

KILL_AFTER_S = 1.5
HEAD = 40  # bars posted before the feed starts; the rest arrive one per request


def _one_bar(full: dict, i: int) -> dict:
    """Bar i of every asset and of the composite (factors: every point, duplicates are harmless)."""
    out = copy.deepcopy(full)
    for a in out["assets"]:
        a["history"] = a["history"][i : i + 1]
    out["series"] = {"CRYPTO_EW": out["series"]["CRYPTO_EW"][i : i + 1], "SPY": out["series"]["SPY"]}
    return out


def test_acknowledged_bars_and_stored_forecasts_survive_sigkill(tiny_bundle, tmp_path):
    from adaptive_beta.models.audit.log import AuditReader, verify_chain
    from adaptive_beta.models.market.store import open_market_store

    full = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])
    n = len(full["assets"][0]["history"])
    head = copy.deepcopy(full)
    for a in head["assets"]:
        a["history"] = a["history"][:HEAD]
    head["series"]["CRYPTO_EW"] = head["series"]["CRYPTO_EW"][:HEAD]
    db = tmp_path / "audit" / "audit.db"
    srv = Server(tiny_bundle["path"], db, tmp_path / "server.log")
    acked: list[str] = []  # timestamps of bars a feeder got a 200 for
    answered: list[str] = []  # request ids of stored-state forecasts a desk received
    stop = threading.Event()

    def feed() -> None:
        with httpx.Client(timeout=10) as c:
            for i in range(HEAD, n):
                if stop.is_set():
                    return
                try:
                    r = c.post(srv.url + "/bars", json=_one_bar(full, i), headers=auth("feeder"))
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append(full["assets"][0]["history"][i]["timestamp"])
                time.sleep(0.05)

    def desk() -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post(srv.url + "/forecast", json={"universe": True}, headers=auth())
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    answered.append(r.json()["request_id"])

    try:
        srv.wait_ready()
        assert httpx.post(srv.url + "/bars", json=head, headers=auth("feeder"), timeout=60).status_code == 200
        threads = [
            threading.Thread(target=feed),
            threading.Thread(target=desk),
            threading.Thread(target=desk),
        ]
        for t in threads:
            t.start()
        time.sleep(KILL_AFTER_S)
        pids = srv.worker_pids()
        for pgid in dict.fromkeys(os.getpgid(p) for p in pids):
            os.killpg(pgid, signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
    finally:
        srv.stop()
    assert acked and len(answered) >= 3, (len(acked), len(answered))
    market = db.parent / "market.db"
    with open_market_store(market) as store:
        us, _ = store.bars("SOLUSDT")
        stored = {t.isoformat() for t in pd.to_datetime(us, unit="us", utc=True)}
    assert [t for t in acked if t not in stored] == []  # every acknowledged bar is durable
    with AuditReader(db) as reader:
        assert [rid for rid in answered if reader.get(rid) is None] == []
    assert verify_chain(db).ok
    # a restarted server rebuilds from the same store and answers at the last stored bar
    srv2 = Server(tiny_bundle["path"], db, tmp_path / "server2.log")
    try:
        srv2.wait_ready()
        r = httpx.post(srv2.url + "/forecast", json={"symbols": ["SOLUSDT"]}, headers=auth(), timeout=60)
    finally:
        srv2.stop()
    assert r.status_code == 200, r.text
    assert r.json()["forecasts"][0]["as_of"] == max(stored)
