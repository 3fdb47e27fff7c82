"""The audit log: hash chain, tamper detection, durability failures, group commit, queries, export."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.audit import store as audit_store
from adaptive_beta.models.audit.chain import canonical_json, to_json_value
from adaptive_beta.models.audit.log import (
    GENESIS_HASH,
    AuditLog,
    AuditReader,
    AuditUnavailable,
    DuplicateRequest,
    parse_time,
    record_hash,
    verify_chain,
)

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def entry(i: int | str, **kw) -> dict:
    e = {
        "request_id": f"req-{i:05d}" if isinstance(i, int) else i,
        "caller": "desk-a",
        "endpoint": "/predict",
        "symbols": ["BTCUSDT", "ETHUSDT"] if isinstance(i, int) and i % 2 else ["SOLUSDT"],
        "model_name": "beta-gru",
        "model_version": "3",
        "bundle_sha256": "b" * 64,
        "run_id": "run1",
        "feature_spec_hash": "f" * 16,
        "input_sha256": "1" * 64,
        "features": {"ret": [0.1, -0.25, 1e-7], "n": 3},
        "output": {"beta": {"BTCUSDT": 1.0 + (i if isinstance(i, int) else 0) / 100}},
        "explanation": None,
    }
    e.update(kw)
    return e


def filled(path: Path, n: int = 20) -> Path:
    with AuditLog(path) as log:
        for i in range(1, n + 1):
            log.append(entry(i))
    return path


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection with the append-only triggers dropped, as a tamperer would do."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_records_no_update")
    conn.execute("DROP TRIGGER audit_records_no_delete")
    return conn


# ------------------------------------------------------------------------------ chain format


def test_record_hash_is_sha256_of_the_documented_canonical_json():
    rec = {
        "seq": 1,
        "ts": "2026-01-01T00:00:00.000000Z",
        "request_id": "r1",
        "caller": "c",
        "endpoint": "/predict",
        "symbols": ["BTCUSDT"],
        "model_name": "m",
        "model_version": "3",
        "bundle_sha256": "ab",
        "run_id": None,
        "feature_spec_hash": "fs",
        "input_sha256": "in",
        "payload": {
            "features": {"x": [0.1, 1e-07, 2, 1e16]},
            "output": {"beta": [1.25]},
            "explanation": None,
        },
        "prev_hash": GENESIS_HASH,
        "hash": "not part of the hash",
    }
    literal = (
        '{"bundle_sha256":"ab","caller":"c","endpoint":"/predict","feature_spec_hash":"fs",'
        '"input_sha256":"in","model_name":"m","model_version":"3","payload":{"explanation":null,'
        '"features":{"x":[0.1,1e-07,2,1e+16]},"output":{"beta":[1.25]}},"prev_hash":"' + "0" * 64 + '",'
        '"request_id":"r1","run_id":null,"seq":1,"symbols":["BTCUSDT"],"ts":"2026-01-01T00:00:00.000000Z"}'
    )
    assert record_hash(rec) == hashlib.sha256(literal.encode()).hexdigest()
    # frozen: a change of the canonical form would orphan every stored chain
    assert record_hash(rec) == "975f9dfca8ca1b6fae49f528cd0186149a54303b3f3aa0306ce452cf05616802"
    assert GENESIS_HASH == "0" * 64


def test_non_finite_and_numpy_values_are_stored_as_plain_json():
    np = pytest.importorskip("numpy")
    value = {"a": float("nan"), "b": [float("inf"), -float("inf")], "c": np.float32(0.5), "d": np.arange(3)}
    assert to_json_value(value) == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 0.5, "d": [0, 1, 2]}
    with pytest.raises(TypeError, match=r"entry\.x"):
        to_json_value({"x": object()}, "entry")


@settings(max_examples=80, deadline=None)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=4) | st.tuples(c, c) | st.dictionaries(st.text(max_size=5), c, max_size=4)
        ),
        max_leaves=25,
    )
)
def test_fast_conversion_equals_the_path_naming_reference(payload):
    """to_json_value converts without building paths (chain._plain); the result, and so the stored
    text and its hash, is the reference walk's, numpy values and a timestamp included."""
    np = pytest.importorskip("numpy")
    import pandas as pd

    from adaptive_beta.models.audit.chain import _with_paths

    value = {"p": payload, "n": [np.float64(np.nan), np.float32(-np.inf), np.int64(7), np.arange(2.0)]}
    value["t"] = pd.Timestamp("2026-01-01T08:00:00Z")
    assert canonical_json(to_json_value(value)) == canonical_json(_with_paths(value, "entry"))
    with pytest.raises(TypeError, match=r"entry\.p\[1\]"):
        to_json_value({"p": [payload, object()]})


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory):
    with AuditLog(tmp_path_factory.mktemp("prop") / "p.db") as log:
        yield log


@settings(max_examples=60, deadline=None)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    )
)
def test_any_json_payload_round_trips_exactly_and_rehashes(shared_log, payload):
    rid = f"prop-{shared_log.count()}"
    stored = shared_log.append(entry(rid, features=payload))
    back = shared_log.get(rid)
    assert back == stored
    assert canonical_json(back["features"]) == canonical_json(to_json_value(payload))
    assert verify_chain(shared_log).ok


# ------------------------------------------------------------------------------ appending


def test_appends_form_a_chain_from_genesis_that_verifies(tmp_path):
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        recs = [log.append(entry(i)) for i in range(1, 201)]
        result = verify_chain(log)
    assert [r["seq"] for r in recs] == list(range(1, 201))
    assert recs[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(recs, recs[1:], strict=False))
    assert all(TS_RE.match(r["ts"]) for r in recs)
    assert [r["ts"] for r in recs] == sorted(r["ts"] for r in recs)
    assert result.ok and result.n_records == 200 and result.first_bad_seq is None
    assert result.head_hash == recs[-1]["hash"]
    assert verify_chain(str(path)) == result
    assert verify_chain(f"sqlite:///{path}") == result


def test_sqlite_is_wal_with_full_sync_and_triggers_reject_update_and_delete(tmp_path):
    path = filled(tmp_path / "a.db", 3)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.DatabaseError, match="append-only: UPDATE"):
        conn.execute("UPDATE audit_records SET caller = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE"):
        conn.execute("DELETE FROM audit_records WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE"):
        conn.execute("DELETE FROM audit_records")
    conn.rollback()
    assert conn.execute("SELECT COUNT(*), MIN(caller) FROM audit_records").fetchone() == (3, "desk-a")
    with AuditLog(path) as log:  # the writer's own connection uses synchronous=FULL (2)
        conn_w = log._store.connect_writer()
        assert conn_w.execute("PRAGMA synchronous").fetchone()[0] == 2
        conn_w.close()


def test_reopening_resumes_the_chain_from_the_last_record(tmp_path):
    path = filled(tmp_path / "a.db", 5)
    head = verify_chain(path).head_hash
    with AuditLog(path) as log:
        assert log.head.seq == 5 and log.head.hash == head
        rec = log.append(entry(6))
    assert (rec["seq"], rec["prev_hash"]) == (6, head)
    assert verify_chain(path).n_records == 6


def test_bad_entries_are_refused_before_anything_is_written(tmp_path):
    with AuditLog(tmp_path / "a.db") as log:
        with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
            log.append({**entry(1), "colour": "red"})
        with pytest.raises(ValueError, match="request_id"):
            log.append({**entry(1), "request_id": ""})
        with pytest.raises(TypeError, match=r"entry\.output"):
            log.append({**entry(1), "output": object()})
        with pytest.raises(ValueError, match="field caller must be a string"):
            log.append({**entry(1), "caller": ["x"]})
        assert log.count() == 0 and log.stats.commits == 0
        assert log.append({**entry(1), "model_version": 7})["model_version"] == "7"


def test_duplicate_request_id_fails_alone_and_the_rest_of_the_batch_is_stored(tmp_path):
    with AuditLog(tmp_path / "a.db") as log:
        log.append(entry(1))
        with pytest.raises(DuplicateRequest, match="req-00001"):
            log.append(entry(1))
        results: dict[int, object] = {}

        def worker(i: int) -> None:
            try:
                results[i] = log.append(entry(1 if i == 0 else 100 + i))
            except DuplicateRequest as exc:
                results[i] = exc

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert isinstance(results[0], DuplicateRequest)
        assert sorted(r["seq"] for i, r in results.items() if i) == list(range(2, 9))
        assert verify_chain(log).ok and log.count() == 8


def test_sixteen_threads_share_commits_and_keep_one_chain(tmp_path):
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        barrier = threading.Barrier(16)
        seqs: list[int] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            barrier.wait()
            for i in range(50):
                rec = log.append(entry(f"t{k}-{i}"))
                with lock:
                    seqs.append(rec["seq"])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = log.stats
    assert sorted(seqs) == list(range(1, 801))
    assert stats.records == 800
    assert stats.commits < 300, stats  # group commit: measured ~100 here
    assert stats.max_batch > 1
    result = verify_chain(path)
    assert result.ok and result.n_records == 800


def test_append_async_awaits_the_group_commit_without_blocking_the_loop(tmp_path):
    async def main(log: AuditLog) -> tuple[list[dict], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        recs = await asyncio.gather(*(log.append_async(entry(i)) for i in range(1, 65)))
        task.cancel()
        return list(recs), ticks

    with AuditLog(tmp_path / "a.db") as log:
        recs, ticks = asyncio.run(main(log))
        assert sorted(r["seq"] for r in recs) == list(range(1, 65))
        assert log.stats.commits < 64
        assert ticks > 5  # the loop kept running while the writer committed
        assert verify_chain(log).ok


def _append_many(path: str, tag: str, n: int) -> None:
    with AuditLog(path, busy_timeout_s=30) as log:
        for i in range(n):
            log.append(entry(f"{tag}-{i}"))


def test_two_processes_appending_to_one_file_keep_one_chain(tmp_path):
    path = str(tmp_path / "shared.db")
    AuditLog(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, tag, 150)) for tag in ("p1", "p2")]
    for p in procs:
        p.start()
    _append_many(path, "p0", 150)
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    result = verify_chain(path)
    assert result.ok, result.problem
    assert result.n_records == 450
    with AuditReader(path) as r:
        assert {r.count(request_id=f"{t}-149") for t in ("p0", "p1", "p2")} == {1}


# ------------------------------------------------------------------------------ tampering


def test_modified_field_is_reported_at_its_seq(tmp_path):
    path = filled(tmp_path / "a.db")
    raw(path).execute("UPDATE audit_records SET model_version = '4' WHERE seq = 12")
    r = verify_chain(path)
    assert (r.ok, r.kind, r.first_bad_seq, r.n_records) == (False, "modified", 12, 20)
    assert (
        r.problem
        == "record seq 12 (request req-00012): content modified: stored hash does not match its contents"
    )


def test_modified_payload_number_is_reported(tmp_path):
    path = filled(tmp_path / "a.db")
    conn = raw(path)
    payload = conn.execute("SELECT payload FROM audit_records WHERE seq = 3").fetchone()[0]
    conn.execute("UPDATE audit_records SET payload = ? WHERE seq = 3", (payload.replace("1.03", "0.93"),))
    r = verify_chain(path)
    assert (r.kind, r.first_bad_seq) == ("modified", 3)


def test_deleted_middle_record_is_reported_at_the_missing_seq(tmp_path):
    path = filled(tmp_path / "a.db")
    raw(path).execute("DELETE FROM audit_records WHERE seq = 10")
    r = verify_chain(path)
    assert (r.ok, r.kind, r.first_bad_seq, r.n_records) == (False, "deleted", 10, 19)
    assert (
        r.problem == "record seq 10 missing (deleted): the chain jumps to record seq 11 (request req-00011)"
    )


def test_deleted_first_records_are_reported(tmp_path):
    path = filled(tmp_path / "a.db")
    raw(path).execute("DELETE FROM audit_records WHERE seq <= 2")
    r = verify_chain(path)
    assert (r.kind, r.first_bad_seq) == ("deleted", 1)
    assert "seq 1..2 missing" in r.problem


def test_deleted_and_renumbered_record_is_still_caught(tmp_path):
    path = filled(tmp_path / "a.db")
    conn = raw(path)
    conn.execute("DELETE FROM audit_records WHERE seq = 10")
    conn.execute("UPDATE audit_records SET seq = seq + 1000 WHERE seq > 10")
    conn.execute("UPDATE audit_records SET seq = seq - 1001 WHERE seq > 1000")
    r = verify_chain(path)
    assert not r.ok and r.first_bad_seq == 10 and r.kind == "inserted"  # its predecessor is gone


def test_forged_row_at_the_end_is_reported_as_inserted(tmp_path):
    path = filled(tmp_path / "a.db")
    conn = raw(path)
    row = dict(
        zip(
            audit_store.COLUMNS,
            conn.execute("SELECT * FROM audit_records WHERE seq = 20").fetchone(),
            strict=True,
        )
    )
    row.update(seq=21, request_id="forged", prev_hash="f" * 64, hash="e" * 64)
    conn.execute(f"INSERT INTO audit_records VALUES ({','.join('?' * len(row))})", tuple(row.values()))
    r = verify_chain(path)
    assert (r.kind, r.first_bad_seq, r.n_records) == ("inserted", 21, 21)
    assert r.problem.startswith("record seq 21 (request forged): inserted")


def test_well_forged_row_inserted_in_the_middle_is_reported_at_its_seq(tmp_path):
    """The forger links the row to seq 9 and hashes it correctly, then shifts later rows up."""
    path = filled(tmp_path / "a.db")
    conn = raw(path)
    conn.execute("UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 10")
    conn.execute("UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000")
    prev = conn.execute("SELECT hash FROM audit_records WHERE seq = 9").fetchone()[0]
    src = next(
        audit_store.SqliteStore(path, create=False).iter_chain(start_after=10)
    )  # a genuine row as a template
    forged = {**src, "seq": 10, "request_id": "forged", "prev_hash": prev}
    forged["payload"] = {**forged["payload"], "output": {"beta": {"BTCUSDT": 0.0}}}
    forged["hash"] = record_hash(forged)
    row = audit_store.to_row(forged)
    conn.execute(
        f"INSERT INTO audit_records ({','.join(audit_store.COLUMNS)}) VALUES ({','.join('?' * 15)})",
        tuple(row[c] for c in audit_store.COLUMNS),
    )
    r = verify_chain(path)
    assert (r.kind, r.first_bad_seq, r.n_records) == ("inserted", 10, 21)
    assert r.problem.startswith("record seq 10 inserted: record seq 11 (request req-00010)")


@pytest.mark.parametrize(("a", "b"), [(5, 9), (7, 8)])
def test_swapped_records_are_reported_as_reordered_at_the_first(tmp_path, a, b):
    path = filled(tmp_path / "a.db")
    conn = raw(path)
    conn.execute("UPDATE audit_records SET seq = -1 WHERE seq = ?", (a,))
    conn.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (a, b))
    conn.execute("UPDATE audit_records SET seq = ? WHERE seq = -1", (b,))
    r = verify_chain(path)
    assert (r.ok, r.kind, r.first_bad_seq) == (False, "reordered", a)
    assert r.problem == (
        f"record seq {a} (request req-{b:05d}): reordered: it was written right after "
        f"record seq {b - 1 if b - 1 != a else b} (request req-{b - 1:05d}), which is stored after it"
    )


def test_removing_the_tail_changes_the_head_hash_that_verify_prints(tmp_path):
    """A chain cannot show its own truncation; the printed head hash, kept elsewhere, can."""
    path = filled(tmp_path / "a.db")
    before = verify_chain(path)
    raw(path).execute("DELETE FROM audit_records WHERE seq = 20")
    after = verify_chain(path)
    assert after.ok and after.n_records == 19 and after.head_hash != before.head_hash


def test_verify_streams_in_pages(tmp_path):
    path = filled(tmp_path / "a.db", 25)
    raw(path).execute("DELETE FROM audit_records WHERE seq = 23")
    r = verify_chain(path, batch=4)
    assert (r.kind, r.first_bad_seq) == ("deleted", 23)


def test_verify_of_a_missing_file_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        verify_chain(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------------------ failures


def test_locked_database_makes_the_whole_batch_unavailable_and_stores_nothing(tmp_path):
    path = tmp_path / "a.db"
    with AuditLog(path, busy_timeout_s=0.2) as log:
        for i in range(1, 4):
            log.append(entry(i))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        errors: list[Exception] = []

        def worker(i: int) -> None:
            try:
                log.append(entry(i))
            except AuditUnavailable as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(10, 16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 6
        assert "database is locked" in str(errors[0]) and "not stored" in str(errors[0])
        assert log.writable(timeout_s=2) is False
        other.execute("ROLLBACK")
        other.close()
        assert log.writable() is True
        assert log.count() == 3
        rec = log.append(entry(4))
        assert rec["seq"] == 4 and rec["prev_hash"] == log.query(limit=2)[1]["hash"]
    assert verify_chain(path).n_records == 4


def test_failure_inside_the_transaction_rolls_back_the_partial_batch(tmp_path, monkeypatch):
    path = tmp_path / "a.db"
    with AuditLog(path) as log:
        log.append(entry(1))
        real_insert = audit_store._SqliteTx.insert

        def insert_then_fail(self, records):
            real_insert(self, records)
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(audit_store._SqliteTx, "insert", insert_then_fail)
        with pytest.raises(AuditUnavailable, match="disk I/O error"):
            log.append(entry(2))
        monkeypatch.setattr(audit_store._SqliteTx, "insert", real_insert)
        assert log.count() == 1 and log.head.seq == 1
        assert log.append(entry(3))["seq"] == 2
        assert log.stats.failed_batches == 1
    assert verify_chain(path).ok


def test_deleted_folder_makes_appends_unavailable(tmp_path):
    folder = tmp_path / "audit"
    log = AuditLog(folder / "a.db")
    log.append(entry(1))
    shutil.rmtree(folder)
    with pytest.raises(AuditUnavailable, match="no longer exists"):
        log.append(entry(2))
    assert log.writable() is False
    log.close()
    assert not folder.exists()  # nothing silently recreated


def test_closed_log_refuses_appends(tmp_path):
    log = AuditLog(tmp_path / "a.db")
    log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        log.append(entry(1))
    assert log.writable() is False


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount here: {res.stderr.decode().strip()}")


@pytest.fixture
def small_mount(tmp_path):
    """A 768 KiB tmpfs (root only) to run out of space."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=768k", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_makes_appends_unavailable_and_keeps_stored_records(small_mount):
    path = small_mount / "a.db"
    stored = 0
    with AuditLog(path) as log:
        with pytest.raises(AuditUnavailable, match="full"):
            for i in range(1, 10_000):
                log.append(entry(i, features={"blob": "x" * 20_000}))
                stored += 1
        assert stored > 5
        assert log.count() == stored
        assert log.writable() is False
    r = verify_chain(path)
    assert r.ok and r.n_records == stored


def test_read_only_volume_is_unavailable_for_writing_but_verifies(tmp_path):
    """A database on read-only media (a bind mount remounted ro; root only), before and after a
    reader left its -shm/-wal files next to it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a read-only bind mount")
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    ro.mkdir()
    with AuditLog(rw / "a.db") as log:
        for i in range(1, 5):
            log.append(entry(i))
        head = log.head.hash
    assert sorted(p.name for p in rw.iterdir()) == ["a.db"]  # clean close: no -wal left
    _mount("--bind", str(rw), str(ro))
    try:
        _mount("-o", "remount,bind,ro", str(ro))
        with pytest.raises(AuditUnavailable, match="cannot be opened: unable to open database file"):
            AuditLog(ro / "a.db")
        r = verify_chain(ro / "a.db")
        assert r.ok and r.n_records == 4 and r.head_hash == head
        with AuditReader(rw / "a.db") as reader:  # a reader on the writable side leaves -shm/-wal
            assert reader.count() == 4
            with AuditLog(ro / "a.db") as log:  # now it opens, but cannot write
                with pytest.raises(AuditUnavailable, match="readonly database; the entry was not stored"):
                    log.append(entry(5))
                assert log.writable() is False
        assert verify_chain(rw / "a.db").n_records == 4
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


# ------------------------------------------------------------------------------ reading


@pytest.fixture
def log30(tmp_path):
    log = AuditLog(tmp_path / "q.db")
    for i in range(1, 31):
        log.append(entry(i, caller="desk-b" if i > 20 else "desk-a", model_version="4" if i > 25 else "3"))
    yield log
    log.close()


def test_query_is_newest_first_with_filters_and_paging(log30):
    assert [r["seq"] for r in log30.query(limit=3)] == [30, 29, 28]
    assert [r["seq"] for r in log30.query(limit=3, offset=3)] == [27, 26, 25]
    assert [r["seq"] for r in log30.query(caller="desk-b", model_version="3")] == [25, 24, 23, 22, 21]
    eth = log30.query(symbol="ETHUSDT", limit=1000)
    assert len(eth) == 15 and all(r["seq"] % 2 for r in eth)
    assert log30.query(symbol="ETH") == []  # whole symbols only
    assert log30.count() == 30 and log30.count(symbol="SOLUSDT") == 15 and log30.count(caller="desk-b") == 10
    rec = log30.get("req-00007")
    assert rec["seq"] == 7 and rec["output"] == {"beta": {"BTCUSDT": 1.07}} and rec["explanation"] is None
    assert rec["symbols"] == ["BTCUSDT", "ETHUSDT"] and rec["features"]["ret"] == [0.1, -0.25, 1e-7]
    assert log30.get("nope") is None
    with pytest.raises(ValueError, match="limit"):
        log30.query(limit=10_001)
    with pytest.raises(ValueError, match="unknown"):
        log30.count(colour="red")


def test_time_filters_are_utc_since_inclusive_until_exclusive(log30):
    ts = [r["ts"] for r in log30.query(limit=100)][::-1]
    assert log30.count(since=ts[10]) == 20
    assert log30.count(until=ts[10]) == 10
    assert log30.count(since=ts[10], until=ts[20]) == 10
    assert log30.count(since="2000-01-01", until="2999-01-01T00:00:00+02:00") == 30
    assert log30.count(since="2999-01-01") == 0
    assert parse_time("2026-01-31") == "2026-01-31T00:00:00.000000Z"
    assert parse_time("2026-01-31T02:00:00+02:00") == "2026-01-31T00:00:00.000000Z"
    with pytest.raises(ValueError, match="since='31/01/2026'"):
        log30.count(since="31/01/2026")


def test_export_round_trips_in_every_format_and_reverifies(log30, tmp_path):
    ts = [r["ts"] for r in log30.query(limit=100)][::-1]
    n = log30.export(tmp_path / "all.parquet")
    table = pq.read_table(tmp_path / "all.parquet").to_pylist()
    assert n == 30 and [r["seq"] for r in table] == list(range(1, 31))
    assert json.loads(table[6]["payload"])["output"] == {"beta": {"BTCUSDT": 1.07}}

    assert log30.export(tmp_path / "part.csv", since=ts[5], until=ts[15], fmt="csv") == 10
    with open(tmp_path / "part.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seq"]) for r in rows] == list(range(6, 16))
    assert json.loads(rows[0]["symbols"]) == ["SOLUSDT"]

    assert log30.export(tmp_path / "b.jsonl", fmt="jsonl", caller="desk-b") == 10
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["seq"] for x in lines] == list(range(21, 31))
    assert all(record_hash(x) == x["hash"] for x in lines)  # each exported line re-verifies offline
    # the exported rows chain exactly like the stored ones
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(lines, lines[1:], strict=False))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_export_leaves_no_file(log30, tmp_path, monkeypatch):
    import adaptive_beta.models.audit.export as ex

    def boom(records, tmp):
        raise OSError("disk full")

    monkeypatch.setitem(ex._WRITERS, "csv", boom)
    with pytest.raises(AuditUnavailable, match="disk full"):
        log30.export(tmp_path / "x.csv", fmt="csv")
    assert list(tmp_path.glob("*x.csv*")) == []
    with pytest.raises(ValueError, match="format 'xml'"):
        log30.export(tmp_path / "x.xml", fmt="xml")
