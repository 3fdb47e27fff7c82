"""SIGKILL in the middle of a concurrent load: every forecast a client received is in the audit log.

1. 8 client threads post /forecast to a real `bentoml serve`; after ~1.5 s the serve process and
   its workers (each in its own process group) are SIGKILLed (no shutdown hooks run).
2. As an operator runs it: 4 clients against `abeta serve` for at most 3 s; after ~1.5 s only
   `abeta serve`'s process group is SIGKILLed (`kill -9 -PGID`).  The workers, in their own
   sessions, must stop by themselves (serving/parent_watch.py): no process may hold the port
   within a bounded wait.

A 200 is sent only after the audit entry committed (SQLite WAL, synchronous=FULL), so every
request_id a client saw must be in the log afterwards, and the hash chain must verify.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from adaptive_beta.serving.client import process_tree
from tests.serving.conftest import API_KEYS_ENV, Server, _free_port, auth, request_body
from tests.serving.test_serve_signals import _port_free

pytestmark = pytest.mark.slow

THREADS = 8
MAX_REQUESTS = 300
MAX_SECONDS = 3.0
KILL_AFTER_S = 1.5


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _load(
    url: str,
    body: dict,
    stop: threading.Event,
    results: list,
    lock: threading.Lock,
    limit: int = MAX_REQUESTS,
) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            with lock:
                if len(results) >= limit:
                    return
            try:
                r = client.post(url + "/forecast", json=body, headers=auth())
                item = (r.status_code, r.json().get("request_id") if r.status_code == 200 else None)
            except (httpx.HTTPError, ValueError):
                item = ("error", None)  # connection reset by the kill
            with lock:
                results.append(item)


def test_every_answered_forecast_survives_sigkill_of_the_process_group(tiny_bundle, tmp_path):
    from adaptive_beta.models.audit.log import AuditReader, verify_chain

    db = tmp_path / "audit" / "audit.db"
    srv = Server(tiny_bundle["path"], db, tmp_path / "server.log")
    try:
        srv.wait_ready()
        need = tiny_bundle["meta"]["required_history"]["min_periods"]
        body = request_body(
            tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["SOLUSDT", "BTCUSDT"], need
        )
        t = time.perf_counter()
        first = httpx.post(srv.url + "/forecast", json=body, headers=auth(), timeout=30)
        first_s = time.perf_counter() - t
        assert first.status_code == 200
        # the warm-up at start-up took the lazy imports and ORT's first run (2.4 s without it)
        assert first_s < 1.0, f"first request on a fresh server took {first_s:.2f} s"
        stop, lock, results = threading.Event(), threading.Lock(), []
        threads = [
            threading.Thread(target=_load, args=(srv.url, body, stop, results, lock)) for _ in range(THREADS)
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(KILL_AFTER_S)
        pids = srv.worker_pids()
        assert len(pids) >= 2  # the serve (circus arbiter) process and at least one API worker
        # BentoML starts each worker in its own session: killing the serve process group alone
        # leaves the workers serving.  Kill every group, the arbiter's first (no respawn).
        for pgid in dict.fromkeys(os.getpgid(p) for p in pids):
            os.killpg(pgid, signal.SIGKILL)
        killed_at = time.monotonic() - t0
        srv.proc.wait(10)
        time.sleep(0.2)
        assert not [p for p in pids if _alive(p)], "a server process survived SIGKILL"
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
    assert "error" in statuses  # the kill did cut the load
    assert len(set(ok_ids)) == len(ok_ids)  # unique request ids
    with AuditReader(db) as reader:
        missing = [rid for rid in ok_ids if reader.get(rid) is None]
        assert missing == [], f"{len(missing)} of {len(ok_ids)} answered forecasts are not in the audit log"
        rows = reader.query(limit=10_000)
        assert len(rows) >= len(ok_ids)  # the log may also hold requests killed before their answer
        assert {r["endpoint"] for r in rows} == {"/forecast"}
        result = verify_chain(reader)
    print(
        f"killed at {killed_at:.2f}s: {len(ok_ids)} answered, {len(rows)} logged, {len(results)} sent, alive threads {sum(t.is_alive() for t in threads)}"
    )
    assert result.ok, result.problem
    assert result.n_records == len(rows)


# ----------------------------------------------------------------------------- 2. abeta serve, kill -9 -PGID
CLIENTS = 4
LOAD_S = 3.0
PORT_FREE_WITHIN_S = 20.0


def _start_abeta_serve(bundle, db, port: int, log) -> subprocess.Popen:
    env = {
        **os.environ,
        "ABETA_API_KEYS": API_KEYS_ENV,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(log.parent / "bentoml-home"),
    }
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "serve", "--model", str(bundle)]
    cmd += ["--audit-db", str(db), "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )  # noqa: SIM115
    deadline = time.time() + 90
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("abeta serve not ready: " + log.read_text()[-3000:])


def _load_then_kill_group(url: str, body: dict, proc: subprocess.Popen) -> tuple[list, list[int], float]:
    """CLIENTS threads for at most LOAD_S; SIGKILL to the serve process group after KILL_AFTER_S."""
    stop, lock, results = threading.Event(), threading.Lock(), []
    threads = [
        threading.Thread(target=_load, args=(url, body, stop, results, lock, 10_000)) for _ in range(CLIENTS)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(KILL_AFTER_S)
    pids = process_tree(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)  # the group of `abeta serve` only: workers have their own
    time.sleep(max(0.0, LOAD_S - (time.monotonic() - t0)))
    stop.set()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads)
    return results, pids, time.monotonic() - t0


def test_sigkill_of_abeta_serve_under_load_frees_the_port_and_loses_no_answer(tiny_bundle, tmp_path):
    from adaptive_beta.models.audit.log import AuditReader

    db, port = tmp_path / "audit.db", _free_port()
    proc = _start_abeta_serve(tiny_bundle["path"], db, port, tmp_path / "serve.log")
    pids: list[int] = []
    try:
        need = tiny_bundle["meta"]["required_history"]["min_periods"]
        body = request_body(
            tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"], ["SOLUSDT", "BTCUSDT"], need
        )
        results, pids, took = _load_then_kill_group(f"http://127.0.0.1:{port}", body, proc)
        assert len(pids) >= 2  # abeta serve (exec'd into bentoml serve) and at least one worker
        proc.wait(10)
        deadline = time.time() + PORT_FREE_WITHIN_S
        while time.time() < deadline and not (_port_free(port) and not any(_alive(p) for p in pids)):
            time.sleep(0.2)
        survivors = [p for p in pids if _alive(p)]
        assert survivors == [] and _port_free(port), f"{survivors} alive / port {port} held after kill -9"
    finally:
        for p in [proc.pid, *pids]:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    ok_ids = [rid for status, rid in results if status == 200]
    assert len(ok_ids) >= 5, f"too few forecasts before the kill: {len(ok_ids)} ({ {s for s, _ in results} })"
    assert {s for s, _ in results} <= {200, "error"}
    with AuditReader(db) as reader:
        missing = [rid for rid in ok_ids if reader.get(rid) is None]
    assert missing == [], f"{len(missing)} of {len(ok_ids)} answered forecasts are not in the audit log"
    verify = [sys.executable, "-m", "adaptive_beta.cli.main", "audit", "verify", "--db", str(db)]
    res = subprocess.run(verify, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    print(f"{len(ok_ids)} answered in {took:.1f} s; {res.stdout.strip()[-200:]}")
