"""Two real service replicas on one PostgreSQL (issue 14 item 3): one audit chain, one market store.

A throwaway PostgreSQL server (the `pg_server` fixture of test_audit_pg.py: skips without the
server binaries or a driver) holds one database; two `bentoml serve` processes, each on its own
port, point ABETA_AUDIT_DB and ABETA_MARKET_DB at it.

1. Forecast load on both replicas at once; replica A is SIGKILLed (every process group) mid-load
   while B keeps answering.  Every request_id a client got a 200 for, from either replica, is in
   the log; the sequence numbers are exactly 1..N; the chain verifies, and so do both replicas'
   signed anchor files (`abeta audit verify --db postgresql://... --anchors FILE`).  The kill comes
   once both replicas have answered MIN_ANSWERS; the load stops once the survivor has answered
   MIN_ANSWERS more (or after WAIT_S, or MAX_REQUESTS in all).
2. The same bars posted through both replicas concurrently: every post is a 200, each bar is
   stored once, and both replicas then forecast the same asset at the same last bar identically.
   Stopped one after the other, A's anchor file ends in `leave` (B was still appending) and B's in
   `close`; both verify.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pandas as pd
import pytest

from tests.serving.conftest import Server, auth, request_body
from tests.serving.test_audit_pg import pg_server  # noqa: F401 (the throwaway server fixture)

pytestmark = pytest.mark.slow

THREADS_PER_REPLICA = 6
MAX_REQUESTS = 1500  # bounded: the load stops at this count or at the time cap, whichever first
MIN_ANSWERS = 10  # per replica before the kill, and on the survivor after it
WAIT_S = 60.0  # the most each phase waits for them (a shared, busy machine is slow)
HEAD = 40  # bars posted before the concurrent feed


@pytest.fixture
def shared_db(pg_server):  # noqa: F811
    """A fresh database on the throwaway server, as the replicas' URL."""
    from adaptive_beta.models.database import create_database

    return create_database(pg_server, "replicas")


def _replicas(bundle, url: str, tmp_path) -> list[Server]:
    """Two servers on one database: each its own port, log, BentoML home and anchor file."""
    out = []
    for name in ("a", "b"):
        env = {
            "ABETA_MARKET_DB": url,
            "ABETA_AUDIT_ANCHORS": str(tmp_path / f"{name}.anchors"),
            "ABETA_AUDIT_ANCHOR_KEY": str(tmp_path / "anchor-key"),
            "ABETA_AUDIT_ANCHOR_EVERY": "5",
        }
        out.append(Server(bundle, url, tmp_path / f"{name}.log", extra_env=env))
    for srv in out:
        srv.wait_ready()
    return out


def _kill(srv: Server) -> None:
    """SIGKILL every process group of the replica (the arbiter's first: no respawn)."""
    pids = srv.worker_pids()
    for pgid in dict.fromkeys(os.getpgid(p) for p in pids):
        os.killpg(pgid, signal.SIGKILL)
    srv.proc.wait(10)


def _load(url: str, body: dict, stop: threading.Event, results: list, lock: threading.Lock) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            with lock:
                if len(results) >= MAX_REQUESTS:
                    return
            try:
                r = client.post(url + "/forecast", json=body, headers=auth())
                item = (url, r.status_code, r.json().get("request_id") if r.status_code == 200 else None)
            except (httpx.HTTPError, ValueError):
                item = (url, "error", None)  # connection cut by the kill
            with lock:
                results.append(item)


def _answered(results: list, lock: threading.Lock, url: str) -> int:
    with lock:
        return sum(1 for u, s, _ in results if u == url and s == 200)


def _wait_for(condition, timeout: float = WAIT_S) -> None:
    """Poll until `condition()` (bounded: the asserts after the load say what was missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)


def _verify_cli(url: str, anchors) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "audit", "verify", "--db", url]
    cmd += ["--anchors", str(anchors), "--key", str(anchors.parent / "anchor-key")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_sigkill_of_one_replica_loses_no_acknowledged_record(tiny_bundle, shared_db, tmp_path):
    from adaptive_beta.models.audit.log import AuditReader, verify_chain

    need = tiny_bundle["meta"]["required_history"]["min_periods"]
    body = request_body(
        tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["SOLUSDT", "BTCUSDT"], need
    )
    a, b = _replicas(tiny_bundle["path"], shared_db, tmp_path)
    stop, lock, results = threading.Event(), threading.Lock(), []
    try:
        threads = [
            threading.Thread(target=_load, args=(srv.url, body, stop, results, lock))
            for srv in (a, b)
            for _ in range(THREADS_PER_REPLICA)
        ]
        for t in threads:
            t.start()
        _wait_for(
            lambda: min(_answered(results, lock, a.url), _answered(results, lock, b.url)) >= MIN_ANSWERS
        )
        _kill(a)  # mid-load: A's clients have requests in flight
        b_at_kill = _answered(results, lock, b.url)
        _wait_for(lambda: _answered(results, lock, b.url) >= b_at_kill + MIN_ANSWERS)
        stop.set()
        for t in threads:
            t.join(20)
    finally:
        stop.set()
        a.stop()
        b.stop()
    ok = {srv.url: [rid for u, s, rid in results if u == srv.url and s == 200] for srv in (a, b)}
    ok_ids = ok[a.url] + ok[b.url]
    print(f"answered: A {len(ok[a.url])}, B {len(ok[b.url])} ({len(ok[b.url]) - b_at_kill} after the kill)")
    assert len(ok[a.url]) >= MIN_ANSWERS and b_at_kill >= MIN_ANSWERS, {u: len(v) for u, v in ok.items()}
    assert len(ok[b.url]) - b_at_kill >= MIN_ANSWERS  # the survivor kept answering
    assert {s for u, s, _ in results if u == b.url} == {200}  # the kill of A cost B nothing
    assert {s for u, s, _ in results if u == a.url} == {200, "error"}  # the kill cut requests in flight
    assert len(set(ok_ids)) == len(ok_ids)
    with AuditReader(shared_db) as reader:
        missing = [rid for rid in ok_ids if reader.get(rid) is None]
        seqs = [r["seq"] for r in reader._store.iter_chain()]
        n = reader.count()
    assert missing == [], f"{len(missing)} of {len(ok_ids)} acknowledged forecasts are not in the log"
    assert seqs == list(range(1, n + 1)), "duplicate or skipped sequence numbers"
    assert n >= len(ok_ids)  # also requests whose answer the kill cut off
    result = verify_chain(shared_db)
    assert result.ok and result.n_records == n, result.problem
    for name in ("a", "b"):  # each replica's signed checkpoints match the shared chain
        res = _verify_cli(shared_db, tmp_path / f"{name}.anchors")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        anchors = (tmp_path / f"{name}.anchors").read_text().splitlines()
        assert len(anchors) >= 2  # "open" and at least one "interval" (every 5 records)


def _one_bar(full: dict, i: int) -> dict:
    """Bar i of every asset and of the composite (SPY: every point; duplicates are harmless)."""
    out = copy.deepcopy(full)
    for asset in out["assets"]:
        asset["history"] = asset["history"][i : i + 1]
    out["series"] = {"CRYPTO_EW": out["series"]["CRYPTO_EW"][i : i + 1], "SPY": out["series"]["SPY"]}
    return out


def test_bars_posted_through_both_replicas_are_stored_once(tiny_bundle, shared_db, tmp_path):
    from adaptive_beta.models.market.store import open_market_store

    full = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])
    n = len(full["assets"][0]["history"])
    head = copy.deepcopy(full)
    for asset in head["assets"]:
        asset["history"] = asset["history"][:HEAD]
    head["series"]["CRYPTO_EW"] = head["series"]["CRYPTO_EW"][:HEAD]
    replicas = _replicas(tiny_bundle["path"], shared_db, tmp_path)
    statuses: list = []
    barrier = threading.Barrier(2)

    def feed(srv: Server, first: dict) -> None:
        with httpx.Client(timeout=30) as c:
            barrier.wait()
            statuses.append(c.post(srv.url + "/bars", json=first, headers=auth("feeder")).status_code)
            for i in range(HEAD, n):
                barrier.wait()  # both replicas get bar i at the same moment
                r = c.post(srv.url + "/bars", json=_one_bar(full, i), headers=auth("feeder"))
                statuses.append(r.status_code if r.status_code == 200 else (r.status_code, r.text[:300]))

    try:
        threads = [threading.Thread(target=feed, args=(srv, head)) for srv in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        answers = [
            httpx.post(srv.url + "/forecast", json={"symbols": ["SOLUSDT"]}, headers=auth(), timeout=60)
            for srv in replicas
        ]
    finally:
        for srv in replicas:  # in order: B is still serving when A stops
            srv.stop()
    assert statuses == [200] * (2 * (n - HEAD + 1)), [s for s in statuses if s != 200][:3]
    last = full["assets"][0]["history"][-1]["timestamp"]
    with open_market_store(shared_db) as store:
        for asset in full["assets"]:
            us, values = store.bars(asset["symbol"])
            stamps = [t.isoformat() for t in pd.to_datetime(us, unit="us", utc=True)]
            assert stamps == [h["timestamp"] for h in asset["history"]], asset[
                "symbol"
            ]  # once each, in order
        counts = {i.name: i.n_bars for i in store.info()}
    assert counts["SOLUSDT"] == counts["BTCUSDT"] == counts["CRYPTO_EW"] == n
    assert [r.status_code for r in answers] == [200, 200], [r.text[:300] for r in answers]
    fa, fb = (r.json()["forecasts"][0] for r in answers)
    assert fa["as_of"] == fb["as_of"] == last
    assert fa["betas"] == fb["betas"]  # the same state, rebuilt from the same store
    # stopped one after the other (SIGTERM): A left while B was still attached, B closed the log
    events = {
        n: [json.loads(x)["event"] for x in (tmp_path / f"{n}.anchors").read_text().splitlines()]
        for n in "ab"
    }
    assert (events["a"][-1], events["b"][-1]) == ("leave", "close"), events
    for name in ("a", "b"):
        res = _verify_cli(shared_db, tmp_path / f"{name}.anchors")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
