"""Signed anchors of the audit chain head: every tamper class of the issue-11 probe is detected by
the real `abeta audit verify` on a real SQLite log written by `AuditLog(..., anchors=...)`, and a
log that is behind or differs from its anchors refuses to open for writing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.audit import store as audit_store
from adaptive_beta.models.audit.anchors import check_anchors, load_key, read_anchors
from adaptive_beta.models.audit.chain import record_hash
from adaptive_beta.models.audit.log import AnchorMismatch, AnchorSettings, AuditLog, verify_chain

runner = CliRunner()
N = 1200
EVERY = 100
SETTINGS = AnchorSettings(every_records=EVERY, every_seconds=3600)


def entry(i: int) -> dict:
    return {
        "request_id": f"r{i:05d}",
        "caller": "desk-a",
        "endpoint": "/forecast",
        "output": {"beta": i / 100},
    }


async def _append_all(log: AuditLog, lo: int, hi: int) -> None:
    for start in range(lo, hi, 100):  # 100 concurrent appends at a time: group commits
        await asyncio.gather(*(log.append_async(entry(i)) for i in range(start, min(start + 100, hi))))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A closed log of N records with its anchor file and key, written by the real AuditLog."""
    path = tmp_path_factory.mktemp("pristine") / "audit.db"
    with AuditLog(path, anchors=SETTINGS) as log:
        asyncio.run(_append_all(log, 1, N + 1))
    return path


@pytest.fixture
def db(pristine, tmp_path) -> Path:
    """A fresh copy of the pristine database, anchors and key (same names, another folder)."""
    for suffix in ("", ".anchors", ".anchor-key"):
        shutil.copy2(f"{pristine}{suffix}", tmp_path / f"audit.db{suffix}")
    return tmp_path / "audit.db"


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection with the append-only triggers dropped, as a tamperer would do."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_records_no_update")
    conn.execute("DROP TRIGGER audit_records_no_delete")
    return conn


def rows(path: Path, after: int = 0) -> list[dict]:
    store = audit_store.SqliteStore(path, create=False)
    try:
        return list(store.iter_chain(start_after=after))
    finally:
        store.close()


def write_rows(conn: sqlite3.Connection, records: list[dict]) -> None:
    cols = audit_store.COLUMNS
    for rec in records:
        conn.execute(f"DELETE FROM audit_records WHERE seq = {int(rec['seq'])}")
        row = audit_store.to_row(rec)
        conn.execute(
            f"INSERT INTO audit_records ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
            tuple(row[c] for c in cols),
        )


def rechain(records: list[dict], prev: str) -> list[dict]:
    """The records with every prev_hash and hash recomputed from `prev`: a perfect forgery."""
    out = []
    for rec in records:
        rec = {**rec, "prev_hash": prev}
        rec["hash"] = prev = record_hash(rec)
        out.append(rec)
    return out


def verify(db: Path, *extra: str):
    return runner.invoke(app, ["audit", "verify", "--db", str(db), *extra])


# ------------------------------------------------------------------------------ writing


def test_anchors_are_signed_lines_at_the_interval_and_on_open_and_close(pristine):
    lines = [json.loads(x) for x in Path(f"{pristine}.anchors").read_text().splitlines()]
    assert lines[0]["event"] == "open" and lines[0]["seq"] == 0
    assert lines[-1]["event"] == "close" and lines[-1]["seq"] == N
    interval = [x["seq"] for x in lines if x["event"] == "interval"]
    assert interval and all(b - a >= EVERY for a, b in zip([0, *interval], interval, strict=False))
    assert max(b - a for a, b in zip([0, *interval], [*interval, N], strict=False)) < EVERY + 100
    assert set(lines[0]) == {"v", "seq", "hash", "time", "event", "writer", "mac"}
    last = rows(pristine, after=N - 1)[0]
    assert lines[-1]["hash"] == last["hash"]


def test_a_missing_key_is_generated_0600_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING), AuditLog(tmp_path / "a.db", anchors=SETTINGS) as log:
        log.append(entry(1))
    key = tmp_path / "a.db.anchor-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(load_key(key)) == 32
    assert any("generated a new one" in r.getMessage() for r in caplog.records)


def test_an_idle_log_anchors_its_head_after_the_time_interval(tmp_path):
    settings = AnchorSettings(every_records=10_000, every_seconds=0.2)
    with AuditLog(tmp_path / "a.db", anchors=settings) as log:
        log.append(entry(1))
        time.sleep(0.6)
        events = [json.loads(x)["event"] for x in Path(f"{tmp_path}/a.db.anchors").read_text().splitlines()]
        assert events == ["open", "interval"]


def test_the_key_and_anchor_file_can_live_elsewhere(tmp_path):
    elsewhere = tmp_path / "vault"
    settings = AnchorSettings(elsewhere / "x.anchors", elsewhere / "x.key", 1, 3600)
    with AuditLog(tmp_path / "a.db", anchors=settings) as log:
        log.append(entry(1))
    assert not Path(f"{tmp_path}/a.db.anchors").exists()
    assert (
        verify(
            tmp_path / "a.db", "--anchors", str(elsewhere / "x.anchors"), "--key", str(elsewhere / "x.key")
        ).exit_code
        == 0
    )


# ------------------------------------------------------------------------------ verify: intact


def test_an_intact_log_verifies_with_its_anchors(db):
    res = verify(db)
    assert res.exit_code == 0, res.output
    assert (
        res.output.splitlines()[1].startswith("OK: ")
        and "signed anchors match; last anchor seq 1200" in res.output
    )


def test_records_after_the_last_anchor_of_a_running_log_are_named_but_not_a_failure(db):
    log = AuditLog(db, anchors=SETTINGS)
    try:
        log.append(entry(N + 1))
        res = verify(db)
    finally:
        log.close()
    assert res.exit_code == 0, res.output
    assert f"note: records seq {N + 1}..{N + 1} were stored after the last anchor" in res.output


# ------------------------------------------------------------------------------ verify: tampering


def test_edit_is_detected(db):
    raw(db).execute("UPDATE audit_records SET caller = 'someone' WHERE seq = 700")
    res = verify(db)
    assert res.exit_code == 1 and "FAILED: record seq 700 (request r00700): content modified" in res.output


def test_delete_is_detected(db):
    raw(db).execute("DELETE FROM audit_records WHERE seq = 700")
    res = verify(db)
    assert res.exit_code == 1 and "FAILED: record seq 700 missing (deleted)" in res.output


def test_reorder_is_detected(db):
    conn = raw(db)
    conn.execute("UPDATE audit_records SET seq = -1 WHERE seq = 700")
    conn.execute("UPDATE audit_records SET seq = 700 WHERE seq = 701")
    conn.execute("UPDATE audit_records SET seq = 701 WHERE seq = -1")
    res = verify(db)
    assert res.exit_code == 1 and "FAILED: record seq 700 (request r00701): reordered" in res.output


@pytest.mark.parametrize("cut", [1, 500])
def test_truncating_the_tail_is_detected(db, cut):
    raw(db).execute(f"DELETE FROM audit_records WHERE seq > {N - cut}")
    assert verify_chain(db).ok  # the chain alone cannot see it
    res = verify(db)
    assert res.exit_code == 1, res.output
    assert f"FAILED: anchors: truncated: the log ends at seq {N - cut}" in res.output
    assert f"(first bad record: seq {N - cut + 1})" in res.output


def test_rewriting_a_suffix_with_recomputed_hashes_is_detected(db):
    tail = rows(db, after=1149)
    tail[0] = {**tail[0], "payload": {**tail[0]["payload"], "output": {"beta": 0.0}}}
    write_rows(raw(db), rechain(tail, rows(db, after=1148)[0]["hash"]))
    assert verify_chain(db).ok
    res = verify(db)
    assert res.exit_code == 1, res.output
    assert "FAILED: anchors: rewritten: record seq 1200 has another hash" in res.output
    assert "(first bad record: seq 1101)" in res.output  # the last anchor that still matches is seq 1100


def test_truncating_then_forging_back_to_the_anchored_length_is_detected(db):
    """Cut 500 records and forge 500 well-chained ones in their place: the seq matches, the hash not."""
    forged = [{**r, "request_id": f"forged-{r['seq']}"} for r in rows(db, after=700)]
    write_rows(raw(db), rechain(forged, rows(db, after=699)[0]["hash"]))
    res = verify(db)
    assert res.exit_code == 1 and "(first bad record: seq 701)" in res.output


def test_a_forged_append_after_the_log_was_closed_is_detected(db):
    last = rows(db, after=N - 1)[0]
    write_rows(raw(db), rechain([{**last, "seq": N + 1, "request_id": "forged"}], last["hash"]))
    assert verify_chain(db).ok
    res = verify(db)
    assert res.exit_code == 1, res.output
    assert (
        f"FAILED: anchors: appended while closed: record seq {N + 1} stored after the log was closed"
        in res.output
    )
    assert f"(first bad record: seq {N + 1})" in res.output


def test_a_forged_append_stays_detected_after_the_service_reopens_and_anchors_it(db, caplog):
    last = rows(db, after=N - 1)[0]
    write_rows(raw(db), rechain([{**last, "seq": N + 1, "request_id": "forged"}], last["hash"]))
    with caplog.at_level(logging.ERROR), AuditLog(db, anchors=SETTINGS) as log:
        log.append(entry(N + 2))
    assert any("appended while closed" in r.getMessage() for r in caplog.records)
    res = verify(db)
    assert res.exit_code == 1 and f"(first bad record: seq {N + 1})" in res.output


def test_an_altered_anchor_line_is_reported(db):
    path = Path(f"{db}.anchors")
    lines = path.read_text().splitlines()
    doc = json.loads(lines[3])
    doc["seq"] -= 1
    lines[3] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")
    res = verify(db)
    assert res.exit_code == 1 and "line 4: bad signature" in res.output


def test_a_copy_of_the_anchors_kept_elsewhere_catches_a_truncated_anchor_file(db, tmp_path):
    """An attacker with write access to both files cuts the log and the anchor file alike."""
    copy = tmp_path / "compliance-copy.anchors"
    shutil.copy(f"{db}.anchors", copy)
    raw(db).execute(f"DELETE FROM audit_records WHERE seq > {N - 500}")
    path = Path(f"{db}.anchors")
    kept = [x for x in path.read_text().splitlines() if json.loads(x)["seq"] <= N - 500]
    path.write_text("\n".join(kept) + "\n")
    assert verify(db).exit_code == 0  # the doctored pair agrees with itself
    res = verify(db, "--anchors", str(copy))
    assert res.exit_code == 1 and f"(first bad record: seq {N - 499})" in res.output


def test_verify_without_the_key_exits_2(db):
    os.unlink(f"{db}.anchor-key")
    res = verify(db)
    assert res.exit_code == 2 and "anchor key" in res.output and "does not exist" in res.output


# ------------------------------------------------------------------------------ refusing to write


@pytest.mark.parametrize("cut", [1, 500])
def test_a_truncated_log_refuses_to_open_for_writing(db, cut):
    raw(db).execute(f"DELETE FROM audit_records WHERE seq > {N - cut}")
    with pytest.raises(AnchorMismatch, match=f"truncated: the log ends at seq {N - cut}"):
        AuditLog(db, anchors=SETTINGS)
    assert rows(db, after=N - cut - 1)[-1]["seq"] == N - cut  # nothing was appended


def test_a_rewritten_log_refuses_to_open_for_writing(db):
    tail = rows(db, after=1149)
    tail[0] = {**tail[0], "caller": "someone"}
    write_rows(raw(db), rechain(tail, rows(db, after=1148)[0]["hash"]))
    with pytest.raises(AnchorMismatch, match="rewritten: record seq 1200"):
        AuditLog(db, anchors=SETTINGS)


def test_check_anchors_reads_torn_last_lines_as_a_crash_not_tampering(db):
    path = Path(f"{db}.anchors")
    with open(path, "a") as fh:
        fh.write('{"event":"interval","ha')
    read = read_anchors(path, load_key(Path(f"{db}.anchor-key")))
    assert read.torn == [len(read.anchors) + 1] and not read.bad
    store = audit_store.SqliteStore(db, create=False)
    try:
        assert check_anchors(store, read).ok
    finally:
        store.close()
    with AuditLog(db, anchors=SETTINGS) as log:  # the next line starts on a line of its own
        log.append(entry(N + 1))
    assert verify(db).exit_code == 0
