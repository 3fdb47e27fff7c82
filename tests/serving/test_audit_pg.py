"""The audit log on PostgreSQL: a throwaway server started by the fixture (initdb + pg_ctl).

Skips with the reason when the PostgreSQL 15 server binaries (Debian package `postgresql`,
installed by scripts/test-system-deps.sh) or a Python driver (`psycopg[binary]`) are missing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from adaptive_beta.models.audit.log import AuditLog, AuditReader, verify_chain
from adaptive_beta.models.audit.store import postgres_driver


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_server():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (run scripts/test-system-deps.sh: apt-get install postgresql)"
        )
    if postgres_driver() is None:
        pytest.skip("no PostgreSQL driver in the venv: the project needs the dependency psycopg[binary]")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    root = Path(tempfile.mkdtemp(prefix="abeta-pg-"))  # not under pytest's 0700 root-owned tmp
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 60}
    try:
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            ),
            **run,
        )
        opts = f"-p {port} -h 127.0.0.1 -k {root}"
        subprocess.run(
            _as_postgres(
                [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "start"]
            ),
            **run,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(
            f"could not start a throwaway PostgreSQL: {exc.stderr.decode(errors='replace').strip()[:300]}"
        )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the throwaway server for each test."""
    from adaptive_beta.models.database import create_database

    return create_database(pg_server, "audit")


def _engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(url.replace("postgresql://", f"postgresql+{postgres_driver()}://"))


def entry(i, **kw):
    e = {
        "request_id": f"r{i}",
        "caller": "desk",
        "endpoint": "/predict",
        "symbols": ["BTCUSDT"] if i % 2 else ["SOLUSDT"],
    }
    e.update(features={"x": [0.1, 1e-7, float("nan")]}, output={"beta": 1 + i / 100}, explanation=None, **kw)
    return e


def test_pg_chain_verifies_and_resumes_after_reopen(pg_url):
    with AuditLog(pg_url) as log:
        recs = [log.append(entry(i)) for i in range(1, 21)]
    with AuditLog(pg_url) as log:
        rec = log.append(entry(21))
        assert (rec["seq"], rec["prev_hash"]) == (21, recs[-1]["hash"])
        assert log.writable() is True
        assert log.count(symbol="BTCUSDT") == 11
        assert [r["seq"] for r in log.query(symbol="SOLUSDT", limit=3)] == [20, 18, 16]
        assert log.get("r7")["output"] == {"beta": 1.07}
    result = verify_chain(pg_url)
    assert result.ok and result.n_records == 21 and result.head_hash == rec["hash"]


def test_pg_triggers_reject_update_delete_and_truncate(pg_url):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with AuditLog(pg_url) as log:
        log.append(entry(1))
    engine = _engine(pg_url)
    for stmt in (
        "UPDATE audit_records SET caller = 'x'",
        "DELETE FROM audit_records",
        "TRUNCATE audit_records",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(stmt))
    engine.dispose()
    assert verify_chain(pg_url).n_records == 1


def test_pg_tampering_is_detected_after_disabling_triggers(pg_url):
    from sqlalchemy import text

    with AuditLog(pg_url) as log:
        for i in range(1, 11):
            log.append(entry(i))
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE audit_records SET model_version = 'forged' WHERE seq = 6"))
    r = verify_chain(pg_url)
    assert (r.ok, r.kind, r.first_bad_seq) == (False, "modified", 6)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq = 3"))
    engine.dispose()
    r = verify_chain(pg_url)
    assert (r.kind, r.first_bad_seq, r.n_records) == ("deleted", 3, 9)


def test_pg_group_commit_and_two_logs_keep_one_chain(pg_url):
    logs = [
        AuditLog(pg_url),
        AuditLog(pg_url),
    ]  # two engines: like two processes, serialised by the table lock
    try:

        def worker(k: int) -> None:
            for i in range(25):
                logs[k % 2].append(entry(1000 * (k + 1) + i))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        commits = sum(log.stats.commits for log in logs)
        assert sum(log.stats.records for log in logs) == 200
        assert commits < 200
    finally:
        for log in logs:
            log.close()
    r = verify_chain(pg_url)
    assert r.ok and r.n_records == 200


def test_pg_export_and_missing_table(pg_url, pg_server, tmp_path):
    with AuditLog(pg_url) as log:
        for i in range(1, 6):
            log.append(entry(i))
    with AuditReader(pg_url) as reader:
        assert reader.export(tmp_path / "a.jsonl", fmt="jsonl") == 5
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["payload"]["features"]["x"] == [0.1, 1e-7, "NaN"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        verify_chain(f"{pg_server}/postgres")


def test_pg_truncation_and_forged_append_are_detected_with_anchors(pg_url, tmp_path):
    """PostgreSQL has no file to put anchors beside: they go where the settings say, and the same
    checks run through the PostgreSQL store (record_at, head)."""
    from sqlalchemy import text
    from typer.testing import CliRunner

    from adaptive_beta.cli.main import app
    from adaptive_beta.models.audit.anchors import AnchorError, default_paths
    from adaptive_beta.models.audit.chain import record_hash
    from adaptive_beta.models.audit.log import AnchorMismatch, AnchorSettings
    from adaptive_beta.models.audit.store import COLUMNS, open_store, to_row

    with pytest.raises(AnchorError, match="PostgreSQL"):
        default_paths(pg_url)
    anchors = tmp_path / "pg.anchors"
    settings = AnchorSettings(file=anchors, every_records=5, every_seconds=3600)
    with AuditLog(pg_url, anchors=settings) as log:
        for i in range(1, 21):
            log.append(entry(i))
    assert (tmp_path / "pg.anchor-key").exists()  # the key defaults beside the anchor file

    def verify() -> str:
        res = CliRunner().invoke(app, ["audit", "verify", "--db", pg_url, "--anchors", str(anchors)])
        return f"{res.exit_code} {res.output}"

    assert verify().startswith("0 OK: 20 records")
    engine = _engine(pg_url)
    store = open_store(pg_url, create=False)
    stored = store.record_at(20)
    store.close()
    forged = {**stored, "seq": 21, "request_id": "forged", "prev_hash": stored["hash"]}
    forged["hash"] = record_hash(forged)
    row = to_row(forged)
    with engine.begin() as conn:  # a forged, well-chained append after the log was closed
        conn.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
        conn.execute(
            text(
                f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})"
            ),
            row,
        )
    assert verify_chain(pg_url).ok
    assert verify().startswith("1 ") and "appended while closed" in verify() and "seq 21)" in verify()
    with engine.begin() as conn:  # truncate the tail by 3 (the forged row included)
        conn.execute(text("DELETE FROM audit_records WHERE seq > 18"))
    engine.dispose()
    assert "truncated: the log ends at seq 18" in verify() and "(first bad record: seq 19)" in verify()
    with pytest.raises(AnchorMismatch, match="truncated"):
        AuditLog(pg_url, anchors=settings)


def test_pg_replica_stopping_while_another_appends_is_no_false_alarm(pg_url, tmp_path, caplog):
    """Two writers (replicas) on one PostgreSQL log, each with its own anchor file: one stopping
    while the other keeps appending writes `leave`, not `close`, so its file does not report the
    other's records as appended while closed; the last writer to stop writes `close`, which still
    catches a forged append after it."""
    import logging

    from sqlalchemy import text

    from adaptive_beta.models.audit.anchors import verify_anchors
    from adaptive_beta.models.audit.log import AnchorSettings

    def settings(name):
        return AnchorSettings(
            file=tmp_path / name, key_file=tmp_path / "key", every_records=5, every_seconds=3600
        )

    a = AuditLog(pg_url, anchors=settings("a.anchors"))
    b = AuditLog(pg_url, anchors=settings("b.anchors"))
    for i in range(1, 11):
        (a if i % 2 else b).append(entry(i))
    a.close()  # a rolling restart of replica A: B keeps serving
    for i in range(11, 18):
        b.append(entry(i))
    events = [json.loads(x)["event"] for x in (tmp_path / "a.anchors").read_text().splitlines()]
    assert events[0] == "open" and events[-1] == "leave"
    check = verify_anchors(pg_url, tmp_path / "a.anchors", tmp_path / "key")
    assert check.ok, check.problem
    with caplog.at_level(logging.ERROR, logger="adaptive_beta.models.audit.log"):
        a = AuditLog(pg_url, anchors=settings("a.anchors"))  # A back: no "appended while closed"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    a.append(entry(18))
    a.close()
    b.close()  # the last writer out closes
    assert [json.loads(x)["event"] for x in (tmp_path / "b.anchors").read_text().splitlines()][-1] == "close"
    assert verify_anchors(pg_url, tmp_path / "b.anchors", tmp_path / "key").ok
    stored = AuditReader(pg_url)
    last = stored._store.record_at(18)
    stored.close()
    from adaptive_beta.models.audit.chain import record_hash
    from adaptive_beta.models.audit.store import COLUMNS, to_row

    forged = {**last, "seq": 19, "request_id": "forged", "prev_hash": last["hash"]}
    forged["hash"] = record_hash(forged)
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
        cols = ", ".join(COLUMNS)
        conn.execute(
            text(f"INSERT INTO audit_records ({cols}) VALUES ({', '.join(':' + c for c in COLUMNS)})"),
            to_row(forged),
        )
    engine.dispose()
    check = verify_anchors(pg_url, tmp_path / "b.anchors", tmp_path / "key")
    assert not check.ok and check.kind == "appended-while-closed" and check.first_bad_seq == 19


def test_pg_a_prepared_canonical_payload_is_stored_as_is_and_verifies(pg_url):
    from adaptive_beta.models.audit.chain import CanonicalText, canonical_json

    payload = {"explanation": None, "features": {"x": [0.1, 1e-7]}, "output": {"beta": 1.25, "é": "ü"}}
    text = CanonicalText(canonical_json(payload))
    with AuditLog(pg_url) as log:
        log.append(entry(1))
        rec = log.append({"request_id": "p2", "symbols": ["SOLUSDT"], "payload": text})
        log.append(entry(3))
        assert rec["seq"] == 2 and rec["output"] is None  # not parsed back on the writer thread
        assert log.get("p2")["output"] == payload["output"]
    result = verify_chain(pg_url)
    assert result.ok and result.n_records == 3
