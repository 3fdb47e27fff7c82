"""The append-only, hash-chained audit log of every served prediction (torch-free).

Compliance relies on three properties:

* **Durable**: `append` returns only after the record is committed (SQLite WAL with
  synchronous=FULL fsyncs the WAL on commit; PostgreSQL with synchronous_commit=on).
* **Tamper-evident**: each record stores ``hash = sha256(canonical record incl. prev_hash, seq)``
  (rules in `models/audit/chain.py`); triggers refuse UPDATE/DELETE, and `verify_chain` reports
  the first modified, deleted, inserted or reordered record even if someone drops the triggers.
* **Fast under concurrency**: one writer thread drains a queue and commits every pending entry in
  one transaction (group commit), so N concurrent requests cost about one fsync, not N.

Failures are all-or-nothing per batch: if the database cannot be written every caller in the
batch gets `AuditUnavailable` and nothing of the batch is stored. The chain head is always read
inside the write transaction, so several processes can append to one database.

Usage::

    log = AuditLog("audit/audit.db")
    rec = log.append({"request_id": "9f..", "caller": "desk-a", "endpoint": "/predict", ...})
    rec["seq"], rec["hash"]
    verify_chain(log).ok
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from adaptive_beta.models.audit.anchors import (
    Anchorer,
    AnchorError,
    AnchorSettings,
    check_anchors,
    default_paths,
    load_key,
    read_anchors,
)
from adaptive_beta.models.audit.chain import (
    COLUMNS,
    ENTRY_FIELDS,
    GENESIS_HASH,
    PAYLOAD_FIELDS,
    TEXT_FIELDS,
    CanonicalText,
    describe,
    plain_payload,
    record_hash,
    to_json_value,
)
from adaptive_beta.models.audit.export import FORMATS, write_export
from adaptive_beta.models.audit.store import Filters, Head, SqliteStore, Store, StoreMissing, open_store

__all__ = [
    "AnchorMismatch",
    "AnchorSettings",
    "AuditLog",
    "AuditReader",
    "AuditStats",
    "AuditUnavailable",
    "DuplicateRequest",
    "GENESIS_HASH",
    "VerifyResult",
    "parse_time",
    "record_hash",
    "verify_chain",
]

log_ = logging.getLogger(__name__)
MAX_QUERY_LIMIT = 10_000


class AuditUnavailable(RuntimeError):
    """The audit database cannot be written (or read): the prediction must not be served."""


class AnchorMismatch(AuditUnavailable):
    """The database does not match its signed anchors (truncated, rewritten, or bad anchor lines):
    the log refuses to open for writing."""


class DuplicateRequest(ValueError):
    """An entry's request_id is already in the log (request ids are unique)."""


@dataclass
class AuditStats:
    """Counters of the writer: `commits` transactions committed holding `records` records."""

    commits: int = 0
    records: int = 0
    failed_batches: int = 0
    max_batch: int = 0


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify_chain`.

    n_records: records stored; first_bad_seq: seq of the first record that is not genuine (for a
    deletion, the first missing seq); problem: one sentence for people; kind: modified | deleted |
    inserted | reordered (None if ok); head_hash: hash of the last record when the chain is intact.
    """

    ok: bool
    n_records: int
    first_bad_seq: int | None
    problem: str | None
    kind: str | None = None
    head_hash: str | None = None


def utc_now_iso() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (fixed width, so text order is time order)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | datetime | date | None, name: str = "time") -> str | None:
    """A time bound as the log's canonical UTC text. Dates mean midnight UTC; naive times are UTC.

    Raises ValueError naming `name` if `value` is not ISO 8601.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an ISO 8601 date or time (e.g. 2026-01-31)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _prepare(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an entry and turn it into a stored record without seq, ts, prev_hash, hash."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"audit entry must be a dict, got {type(entry).__name__}")
    prepared = entry.get("payload")
    if type(prepared) is not CanonicalText or any(k in entry for k in PAYLOAD_FIELDS):
        prepared = None
    unknown = sorted(set(entry) - ENTRY_FIELDS - ({"payload"} if prepared is not None else set()))
    if unknown:
        raise ValueError(f"audit entry has unknown fields {unknown}; allowed: {sorted(ENTRY_FIELDS)}")
    rid = entry.get("request_id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 200:
        raise ValueError(
            f"audit entry field request_id must be a non-empty string (<= 200 chars), got {rid!r}"
        )
    rec: dict[str, Any] = {"request_id": rid}
    for key in TEXT_FIELDS:
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # e.g. an MLflow model version given as a number
        if value is not None and not isinstance(value, str):
            raise ValueError(f"audit entry field {key} must be a string or None, got {type(value).__name__}")
        rec[key] = value
    symbols = entry.get("symbols") or []
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = to_json_value(symbols, "entry.symbols")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ValueError(f"audit entry field symbols must be a list of strings, got {entry.get('symbols')!r}")
    rec["symbols"] = symbols
    if prepared is not None:  # already the canonical text of {features, output, explanation}
        rec["payload"] = prepared
    else:
        rec["payload"] = plain_payload(entry)
    return rec


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Stored record -> the dict callers see: entry fields (features/output/explanation at top level)
    plus seq, ts, prev_hash, hash.  A record appended with a prepared `CanonicalText` payload
    comes back from `append` with them None (the caller has them; parsing ~0.4 MB of a universe
    record on the writer thread would cost what the prepared text saves)."""
    out = {k: record[k] for k in COLUMNS if k != "payload"}
    payload = record["payload"] if isinstance(record["payload"], dict) else {}
    for key in PAYLOAD_FIELDS:
        out[key] = payload.get(key)
    return out


class _Job:
    __slots__ = ("record", "future", "probe")

    def __init__(self, record: dict[str, Any] | None, probe: bool = False):
        self.record = record
        self.future: Future[dict[str, Any] | None] = Future()
        self.probe = probe


_STOP = object()


class AuditReader:
    """Read-only view of an existing audit log (query, get, count, export); never creates a database.

    Raises StoreMissing (a FileNotFoundError) if the database or its table does not exist.
    """

    def __init__(self, url: str | os.PathLike[str], *, busy_timeout_s: float = 5):
        self.url = os.fspath(url)
        self.busy_timeout_s = busy_timeout_s
        self._store: Store = open_store(url, busy_timeout_s, create=False)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._store.description!r})"

    # ------------------------------------------------------------------ reading

    def _filters(self, since: Any = None, until: Any = None, **filters: Any) -> Filters:
        allowed = {"symbol", "endpoint", "model_version", "caller", "request_id"}
        unknown = sorted(set(filters) - allowed)
        if unknown:
            raise ValueError(f"audit filters {unknown} are unknown; allowed: {sorted(allowed)}")
        return Filters(since=parse_time(since, "since"), until=parse_time(until, "until"), **filters)

    def _read(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            raise AuditUnavailable(f"audit database {self._store.description} cannot be read: {exc}") from exc

    def query(
        self,
        since: Any = None,
        until: Any = None,
        symbol: str | None = None,
        endpoint: str | None = None,
        model_version: str | None = None,
        caller: str | None = None,
        request_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Records newest first; `since` inclusive, `until` exclusive (UTC); `symbol` matches any
        of a record's symbols; page with limit (<= 10000) and offset."""
        if not 0 <= int(limit) <= MAX_QUERY_LIMIT or int(offset) < 0:
            raise ValueError(f"audit query: limit must be in 0..{MAX_QUERY_LIMIT} and offset >= 0")
        f = self._filters(
            since,
            until,
            symbol=symbol,
            endpoint=endpoint,
            model_version=model_version,
            caller=caller,
            request_id=request_id,
        )
        return [flatten(r) for r in self._read(self._store.select, f, int(limit), int(offset))]

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The record of one request, or None."""
        rows = self.query(request_id=request_id, limit=1)
        return rows[0] if rows else None

    def count(self, since: Any = None, until: Any = None, **filters: Any) -> int:
        """Number of records matching the same filters as `query`."""
        return int(self._read(self._store.count, self._filters(since, until, **filters)))

    def export(
        self,
        path: str | os.PathLike[str],
        since: Any = None,
        until: Any = None,
        fmt: str = "parquet",
        **filters: Any,
    ) -> int:
        """Write matching records, oldest first, to `path` as parquet, csv or jsonl (atomically).

        Returns the number of records written. The stored text is kept, so exports re-verify.
        """
        if fmt not in FORMATS:
            raise ValueError(f"audit export: format {fmt!r} is not one of {', '.join(FORMATS)}")
        f = self._filters(since, until, **filters)
        return int(self._read(write_export, self._store.iter_select(f), Path(path), fmt))


class AuditLog(AuditReader):
    """Append-only hash-chained log on SQLite (a path or sqlite:///path) or PostgreSQL (postgresql://).

    group_commit_window_ms: after a batch of more than one entry (a sign of concurrent callers),
        the writer waits up to this long for more entries before writing the next batch; a lone
        sequential caller never waits. 0 disables waiting (batches still form during each commit).
    busy_timeout_s: how long a write waits for another process's write lock before failing.
    max_batch: most entries per transaction.
    anchors: write signed checkpoints of the chain head (`models/audit/anchors.py`); on opening,
        raises AnchorMismatch if the database is behind its last anchor or differs from an anchor.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        group_commit_window_ms: float = 2.0,
        busy_timeout_s: float = 5,
        max_batch: int = 1024,
        anchors: AnchorSettings | None = None,
    ):
        self.url = os.fspath(url)
        self.window_s = max(0.0, group_commit_window_ms) / 1000.0
        self.busy_timeout_s = busy_timeout_s
        self.max_batch = max(1, int(max_batch))
        try:
            self._store: Store = open_store(url, busy_timeout_s, create=True)
            self._store.attach_writer()
            self._head: Head | None = self._store.head()
        except (ValueError, ImportError):
            raise
        except Exception as exc:
            raise AuditUnavailable(f"audit log {self.url} cannot be opened: {exc}") from exc
        self._anchorer = self._open_anchors(anchors) if anchors is not None else None
        self._stats = AuditStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._enqueue_lock = threading.Lock()  # nothing is queued after the stop marker
        self._last_batch = 1
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ anchors

    def _open_anchors(self, settings: AnchorSettings) -> Anchorer:
        """Check the database against its anchor file, then anchor the head found ("open")."""
        try:
            path, key_path = default_paths(self.url, settings.file, settings.key_file)
            key = load_key(key_path, create=True)
            read = read_anchors(path, key)
        except (AnchorError, OSError) as exc:
            self._store.close()
            raise AuditUnavailable(f"audit log {self.url}: anchors unusable: {exc}") from exc
        if read.torn:
            log_.warning(
                "audit anchor file %s: lines %s are not JSON (cut short by a crash?); ignored",
                path,
                read.torn,
            )
        check = check_anchors(self._store, read, self._head)
        if not check.ok and check.kind != "appended-while-closed":
            self._store.close()
            raise AnchorMismatch(
                f"audit log {self._store.description} does not match its anchors in {path}: "
                f"{check.problem}; refusing to write (check with `abeta audit verify`)"
            )
        if not check.ok:  # kept as evidence in the anchor file: `abeta audit verify` reports it
            log_.error("audit log %s: %s", self._store.description, check.problem)
        elif not read.anchors and self._head is not None:
            log_.warning(
                "audit anchor file %s has no anchors yet: anchoring from seq %d", path, self._head.seq
            )
        anchorer = Anchorer(path, key, settings.every_records, settings.every_seconds)
        try:
            anchorer.write(self._head, "open", utc_now_iso())
        except OSError as exc:
            self._store.close()
            raise AuditUnavailable(f"audit anchor file {path} cannot be written: {exc}") from exc
        return anchorer

    def _anchor(self, event: str, head: Head | None) -> None:
        """Write an anchor; a failure is logged (the records are committed already) and retried
        after the interval."""
        a = self._anchorer
        if a is None:
            return
        try:
            a.write(head, event, utc_now_iso())
        except OSError as exc:
            a.last_time = time.monotonic()
            log_.error("audit anchor could not be written to %s: %s", a.path, exc)

    def _anchor_if_due(self) -> None:
        if self._anchorer is not None and self._anchorer.due(self._head):
            self._anchor("interval", self._head)

    def _next_job(self) -> Any:
        """The next queued item, or None when an interval anchor falls due first."""
        wait = self._anchorer.wait_s(self._head) if self._anchorer is not None else None
        if wait is None:
            return self._queue.get()
        try:
            return self._queue.get(timeout=wait)
        except queue.Empty:
            return None

    # ------------------------------------------------------------------ appending

    def _enqueue(self, job: _Job) -> None:
        with self._enqueue_lock:
            if self._closed:
                raise AuditUnavailable(f"audit log {self.url} is closed")
            if not self._writer.is_alive():
                raise AuditUnavailable(f"audit log {self.url}: the writer thread has stopped")
            self._queue.put(job)

    def _submit(self, entry: Mapping[str, Any]) -> Future[Any]:
        job = _Job(_prepare(entry))
        self._enqueue(job)
        return job.future

    def append(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Store `entry` durably; returns it with seq, ts, prev_hash and hash added.

        `entry` holds `features`, `output` and `explanation`, or instead `payload`: a
        `CanonicalText` of {"explanation", "features", "output"} serialised by the caller (then
        stored and hashed as is, without another serialisation).

        Raises AuditUnavailable if it could not be stored (then nothing of it is stored),
        DuplicateRequest if its request_id is already logged, ValueError/TypeError for a bad entry.
        """
        return self._submit(entry).result()

    async def append_async(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """`append` for asyncio code: awaits the group commit without blocking the event loop.

        Cancelling the awaiting task does not withdraw the entry: once submitted it is written.
        """
        fut = self._submit(entry)
        return await asyncio.shield(asyncio.wrap_future(fut))

    # ------------------------------------------------------------------ the writer thread

    def _collect(self, first: Any) -> tuple[list[_Job], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.window_s if self._last_batch > 1 else None
        while len(batch) < self.max_batch:
            try:
                if deadline is None:
                    item = self._queue.get_nowait()
                else:
                    remaining = deadline - time.monotonic()
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        conn = None
        while True:
            first = self._next_job()
            if first is None:  # idle, and an interval anchor fell due
                self._anchor_if_due()
                continue
            if first is _STOP:
                break
            batch, stop = self._collect(first)
            try:
                conn = self._write(conn, batch)
            except BaseException as exc:  # never let the writer die with callers waiting
                log_.exception("audit writer: unexpected failure")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(AuditUnavailable(f"audit writer failed: {exc}"))
            self._anchor_if_due()
            if stop:
                break
        if conn is not None and isinstance(self._store, SqliteStore):
            conn.close()

    def _check_file(self) -> None:
        if isinstance(self._store, SqliteStore):
            ident = self._store.file_identity()
            if ident is None:
                raise AuditUnavailable(
                    f"audit database {self._store.path} no longer exists (file or folder deleted)"
                )
            if ident != self._store.identity:
                raise AuditUnavailable(f"audit database {self._store.path} was replaced by another file")

    def _write(self, conn: Any, batch: list[_Job]) -> Any:
        probes = [j for j in batch if j.probe]
        jobs = [j for j in batch if not j.probe]
        try:
            self._check_file()
            if conn is None:
                conn = self._store.connect_writer()
            if probes and not jobs:  # a batch with appends is its own probe
                self._store.probe(conn)
            done: list[tuple[_Job, dict[str, Any]]] = []
            if jobs:
                with self._store.write_transaction(conn) as tx:
                    head = tx.head()
                    seq, prev, last_ts = (head.seq, head.hash, head.ts) if head else (0, GENESIS_HASH, "")
                    seen: set[str] = set()
                    records = []
                    for job in jobs:
                        rec = dict(job.record)
                        rid = rec["request_id"]
                        if rid in seen or tx.exists(rid):
                            job.future.set_exception(
                                DuplicateRequest(f"audit: request_id {rid!r} is already logged")
                            )
                            continue
                        seen.add(rid)
                        last_ts = max(utc_now_iso(), last_ts)  # never earlier than its predecessor
                        seq += 1
                        rec.update(seq=seq, ts=last_ts, prev_hash=prev)
                        rec["hash"] = prev = record_hash(rec)
                        records.append(rec)
                        done.append((job, rec))
                    if records:
                        tx.insert(records)
                # the file must still be the one we committed to (not unlinked while we wrote)
                self._check_file()
                if records:
                    self._head = Head(seq, last_ts, prev)
        except Exception as exc:
            cause = exc if isinstance(exc, AuditUnavailable) else None
            msg = (
                str(cause) if cause else f"audit database {self._store.description} cannot be written: {exc}"
            )
            with self._stats_lock:
                self._stats.failed_batches += 1
            if conn is not None and isinstance(self._store, SqliteStore):
                try:
                    conn.close()
                except Exception:
                    pass
            conn = None
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(AuditUnavailable(f"{msg}; the entry was not stored"))
            try:
                self._head = self._store.head()
            except Exception:
                pass
            return None
        self._last_batch = len(done)
        if done:
            with self._stats_lock:
                self._stats.commits += 1
                self._stats.records += len(done)
                self._stats.max_batch = max(self._stats.max_batch, len(done))
        for job, rec in done:
            job.future.set_result(flatten(rec))
        for job in probes:
            job.future.set_result(None)
        return conn

    # ------------------------------------------------------------------ health and state

    @property
    def stats(self) -> AuditStats:
        """A snapshot of the writer's counters."""
        with self._stats_lock:
            return replace(self._stats)

    @property
    def head(self) -> Head | None:
        """Last record written or read by this log (other processes may have appended since)."""
        return self._head

    def writable(self, timeout_s: float | None = None) -> bool:
        """True if an append would be stored now: for /readyz. Takes and releases the write lock."""
        if self._closed or not self._writer.is_alive():
            return False
        if isinstance(self._store, SqliteStore):
            if self._store.file_identity() != self._store.identity:
                return False
            try:
                st = os.statvfs(self._store.path.parent)
            except OSError:
                return False
            if st.f_flag & os.ST_RDONLY or st.f_bavail * st.f_frsize < 64 * 1024:
                return False
        job = _Job(None, probe=True)
        try:
            self._enqueue(job)
            job.future.result(timeout=timeout_s if timeout_s is not None else self.busy_timeout_s + 1.0)
        except (AuditUnavailable, FutureTimeout):
            return False
        return True

    def close(self) -> None:
        """Finish pending appends, stop the writer and close connections. Idempotent."""
        with self._enqueue_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._writer.join(timeout=self.busy_timeout_s + 5)
        if self._anchorer is not None:
            try:
                head = self._store.head()
            except Exception:
                head = self._head
            self._anchor(self._closing_event(), head)
        self._store.close()

    def _closing_event(self) -> str:
        """`close` claims nothing is appended after it; while other replicas still append to the
        same PostgreSQL log this writer only `leave`s (the last one out closes)."""
        try:
            return "leave" if self._store.other_writers() > 0 else "close"
        except Exception:
            return "close"


# ---------------------------------------------------------------------------- verification


def _diagnose(store: Store, rec: dict[str, Any], prev: dict[str, Any] | None) -> tuple[str, int, str]:
    """Classify the first record that does not continue the chain: (kind, first_bad_seq, sentence)."""
    who = describe(rec)
    expected_seq = prev["seq"] + 1 if prev else 1
    expected_prev = prev["hash"] if prev else GENESIS_HASH
    if rec["seq"] > expected_seq:
        last = rec["seq"] - 1
        span = f"seq {expected_seq}" if last == expected_seq else f"seq {expected_seq}..{last}"
        return "deleted", expected_seq, f"record {span} missing (deleted): the chain jumps to {who}"
    try:
        content_ok = record_hash(rec) == rec["hash"]
    except (TypeError, ValueError, KeyError):
        content_ok = False
    if rec["prev_hash"] == expected_prev:
        return "modified", rec["seq"], f"{who}: content modified: stored hash does not match its contents"
    # The record does not link to its predecessor: find the record it was written after.
    origin = None if rec["prev_hash"] == GENESIS_HASH else store.find_by_hash(rec["prev_hash"])
    written_after = 0 if rec["prev_hash"] == GENESIS_HASH else (origin["seq"] if origin else None)
    if written_after is not None and written_after >= rec["seq"]:  # links to a record stored after it
        after = describe(origin) if origin else "nothing (it was the first record)"
        return (
            "reordered",
            rec["seq"],
            f"{who}: reordered: it was written right after {after}, which is stored after it",
        )
    if written_after is not None and written_after < expected_seq - 1:
        first = written_after + 1
        span = f"seq {first}" if first == rec["seq"] - 1 else f"seq {first}..{rec['seq'] - 1}"
        return (
            "inserted",
            first,
            f"record {span} inserted: {who} was written right after record seq {written_after}, "
            f"not after the record(s) now stored before it",
        )
    if content_ok:
        return (
            "inserted",
            rec["seq"],
            f"{who}: inserted: its prev_hash does not match record seq {expected_seq - 1} or any stored record",
        )
    return (
        "inserted",
        rec["seq"],
        f"{who}: inserted or forged: neither its hash nor its prev_hash fits the chain",
    )


def verify_chain(log_or_url: AuditReader | str | os.PathLike[str], *, batch: int = 1000) -> VerifyResult:
    """Walk the whole chain in seq order (streaming) and report the first broken link.

    A chain on its own cannot show records removed from the *end*, or a complete rewrite by someone
    who recomputes every hash: compare `head_hash` with a value recorded elsewhere for that.
    Raises StoreMissing (a FileNotFoundError) if a database path does not exist; never creates one.
    """
    own = not isinstance(log_or_url, AuditReader)
    store = open_store(log_or_url, create=False) if own else log_or_url._store
    try:
        prev: dict[str, Any] | None = None
        n = 0
        for rec in store.iter_chain(batch=batch):
            n += 1
            expected_seq = prev["seq"] + 1 if prev else 1
            expected_prev = prev["hash"] if prev else GENESIS_HASH
            try:
                content_ok = record_hash(rec) == rec["hash"]
            except (TypeError, ValueError, KeyError):
                content_ok = False
            if not (rec["seq"] == expected_seq and rec["prev_hash"] == expected_prev and content_ok):
                kind, bad_seq, problem = _diagnose(store, rec, prev)
                total = store.count_all()
                return VerifyResult(False, total, bad_seq, problem, kind, None)
            prev = rec
        return VerifyResult(True, n, None, None, None, prev["hash"] if prev else GENESIS_HASH)
    finally:
        if own:
            store.close()


__all__ += ["StoreMissing", "flatten", "utc_now_iso"]
