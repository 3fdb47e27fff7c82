"""Storage backends of the audit log: SQLite (stdlib sqlite3) and PostgreSQL (SQLAlchemy).

Both store the same single table `audit_records`, refuse UPDATE/DELETE with triggers, and take
the chain head *inside* the write transaction under a table-wide write lock (SQLite
``BEGIN IMMEDIATE``, PostgreSQL ``LOCK TABLE ... SHARE ROW EXCLUSIVE``), so several processes
appending to one database extend one chain instead of forking it.

Records cross this module in their stored form: a dict with the columns of
`audit_chain.COLUMNS`, `symbols` a list and `payload` a dict.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from adaptive_beta.models.audit.chain import COLUMNS, canonical_json
from adaptive_beta.models.database import (
    close_connections,
    postgres_driver,
    postgres_engine,
    sqlite_connect,
    sqlite_file,
)

__all__ = ["open_store", "postgres_driver", "sqlite_file"]  # the last two live in models/database.py

TABLE = "audit_records"
_COLS = ", ".join(COLUMNS)
_INSERT = f"INSERT INTO {TABLE} ({_COLS}) VALUES ({', '.join(':' + c for c in COLUMNS)})"
# Constraints of the stored columns (`COLUMNS` is the one list; every other column is plain TEXT).
_CONSTRAINTS = {
    "ts": "NOT NULL",
    "request_id": "NOT NULL UNIQUE",
    "symbols": "NOT NULL",
    "payload": "NOT NULL",
    "prev_hash": "NOT NULL",
    "hash": "NOT NULL UNIQUE",
}
assert set(_CONSTRAINTS) <= set(COLUMNS), "a constraint names a column COLUMNS does not have"


def _column_ddl(seq_type: str, indent: str) -> str:
    """The table's column definitions, in COLUMNS order: `seq` the integer key, the rest TEXT."""
    defs = [
        f"seq {seq_type} PRIMARY KEY" if c == "seq" else f"{c} TEXT {_CONSTRAINTS.get(c, '')}".rstrip()
        for c in COLUMNS
    ]
    return (",\n" + indent).join(defs)


class StoreMissing(FileNotFoundError):
    """The audit database does not exist (raised only when asked not to create it)."""


@dataclass(frozen=True)
class Head:
    """The last stored record's position in the chain."""

    seq: int
    ts: str
    hash: str


@dataclass(frozen=True)
class Filters:
    """Row filters shared by query, count, export. Times are canonical UTC strings; until exclusive."""

    since: str | None = None
    until: str | None = None
    symbol: str | None = None
    endpoint: str | None = None
    model_version: str | None = None
    caller: str | None = None
    request_id: str | None = None


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """Stored record -> database row (symbols and payload as canonical JSON text)."""
    row = dict(record)
    row["symbols"] = canonical_json(record["symbols"])
    row["payload"] = str(canonical_json(record["payload"]))  # a plain str for the drivers
    return row


def from_row(row: Sequence[Any]) -> dict[str, Any]:
    """Database row in COLUMNS order -> stored record. Unparseable JSON stays a string (verify flags it)."""
    rec = dict(zip(COLUMNS, row, strict=True))
    for key in ("symbols", "payload"):
        try:
            rec[key] = json.loads(rec[key])
        except (TypeError, ValueError):
            pass
    rec["seq"] = int(rec["seq"])
    return rec


def _where(f: Filters, symbol_sql: str) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if f.since is not None:
        clauses.append("ts >= :since")
        params["since"] = f.since
    if f.until is not None:
        clauses.append("ts < :until")
        params["until"] = f.until
    for key in ("endpoint", "model_version", "caller", "request_id"):
        value = getattr(f, key)
        if value is not None:
            clauses.append(f"{key} = :{key}")
            params[key] = value
    if f.symbol is not None:
        clauses.append(symbol_sql)
        params["symbol"] = f.symbol
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class Store:
    """Common reads; subclasses provide `_fetch(sql, params)`, `write_transaction()` and DDL."""

    symbol_sql = ""
    description = ""

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def head(self) -> Head | None:
        rows = self._fetch(f"SELECT seq, ts, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1", {})
        return Head(int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    def iter_chain(self, batch: int = 1000, start_after: int = -(2**62)) -> Iterator[dict[str, Any]]:
        """Every record in seq order, fetched `batch` rows at a time (keyset paging, bounded memory)."""
        last = start_after
        while True:
            rows = self._fetch(
                f"SELECT {_COLS} FROM {TABLE} WHERE seq > :last ORDER BY seq LIMIT :n",
                {"last": last, "n": batch},
            )
            for row in rows:
                yield from_row(row)
            if len(rows) < batch:
                return
            last = int(rows[-1][0])

    def record_at(self, seq: int) -> dict[str, Any] | None:
        """The record stored at `seq`, or None."""
        rows = self._fetch(f"SELECT {_COLS} FROM {TABLE} WHERE seq = :s", {"s": int(seq)})
        return from_row(rows[0]) if rows else None

    def find_by_hash(self, digest: str) -> dict[str, Any] | None:
        rows = self._fetch(f"SELECT {_COLS} FROM {TABLE} WHERE hash = :h LIMIT 1", {"h": digest})
        return from_row(rows[0]) if rows else None

    def count_all(self) -> int:
        return int(self._fetch(f"SELECT COUNT(*) FROM {TABLE}", {})[0][0])

    def select(self, f: Filters, limit: int, offset: int, newest_first: bool = True) -> list[dict[str, Any]]:
        where, params = _where(f, self.symbol_sql)
        order = "DESC" if newest_first else "ASC"
        params.update(n=limit, o=offset)
        sql = f"SELECT {_COLS} FROM {TABLE}{where} ORDER BY seq {order} LIMIT :n OFFSET :o"
        return [from_row(r) for r in self._fetch(sql, params)]

    def iter_select(self, f: Filters, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Matching records oldest first, keyset-paged."""
        where, params = _where(f, self.symbol_sql)
        joiner = " AND " if where else " WHERE "
        last = -(2**62)
        while True:
            sql = f"SELECT {_COLS} FROM {TABLE}{where}{joiner}seq > :last ORDER BY seq LIMIT :n"
            rows = self._fetch(sql, {**params, "last": last, "n": batch})
            for row in rows:
                yield from_row(row)
            if len(rows) < batch:
                return
            last = int(rows[-1][0])

    def count(self, f: Filters) -> int:
        where, params = _where(f, self.symbol_sql)
        return int(self._fetch(f"SELECT COUNT(*) FROM {TABLE}{where}", params)[0][0])

    def attach_writer(self) -> None:
        """Mark this process as a writer of the log (see `other_writers`)."""

    def other_writers(self) -> int:
        """Writers of the same log still attached besides this one: 0 for SQLite, whose writers
        (the workers of one service) share one anchor file and stop together."""
        return 0

    def close(self) -> None:
        pass


class WriteTx:
    """Operations available inside a write transaction (the table is locked for writers)."""

    def head(self) -> Head | None: ...
    def exists(self, request_id: str) -> bool: ...
    def insert(self, records: list[dict[str, Any]]) -> None: ...


# ----------------------------------------------------------------------------------- SQLite

_SQLITE_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    {_column_ddl("INTEGER", "    ")}
);
CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE}(ts);
CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: UPDATE is not allowed'); END;
CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE is not allowed'); END;
"""


class _SqliteTx(WriteTx):
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def head(self) -> Head | None:
        row = self.conn.execute(f"SELECT seq, ts, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
        return Head(int(row[0]), row[1], row[2]) if row else None

    def exists(self, request_id: str) -> bool:
        sql = f"SELECT 1 FROM {TABLE} WHERE request_id = :r"
        return self.conn.execute(sql, {"r": request_id}).fetchone() is not None

    def insert(self, records: list[dict[str, Any]]) -> None:
        self.conn.executemany(_INSERT, [to_row(r) for r in records])


class SqliteStore(Store):
    """One SQLite file in WAL mode with synchronous=FULL (each commit fsyncs the WAL).

    The writer connection belongs to the log's writer thread; readers get one connection per
    thread. `create=False` opens an existing file read-only and never creates one.
    """

    symbol_sql = "EXISTS (SELECT 1 FROM json_each(symbols) WHERE json_each.value = :symbol)"

    def __init__(self, path: str | os.PathLike[str], busy_timeout_s: float = 5.0, create: bool = True):
        self.path = Path(path).expanduser().absolute()
        self.description = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        self.readonly = not create
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not create:
            if not self.path.is_file():
                raise StoreMissing(f"audit database {self.path} does not exist")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.connect_writer()
        try:
            conn.executescript(_SQLITE_DDL)
        finally:
            conn.close()
        self.identity = self.file_identity()

    def file_identity(self) -> tuple[int, int] | None:
        """(device, inode) of the database file, None if it is gone: detects deletion/replacement."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def connect_writer(self) -> sqlite3.Connection:
        return sqlite_connect(self.path, self.busy_timeout_s)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = self._connect_readonly()
            else:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """mode=ro; on read-only media (no -shm can be created) fall back to immutable=1, which is
        exact only when no write-ahead log is pending, so refuse if a non-empty -wal exists."""
        base = f"file:{quote(str(self.path))}"
        conn = sqlite3.connect(
            base + "?mode=ro", uri=True, timeout=self.busy_timeout_s, check_same_thread=False
        )
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            wal = Path(f"{self.path}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise
        return sqlite3.connect(base + "?immutable=1", uri=True, check_same_thread=False)

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        conn = self._reader()
        cur = conn.execute(sql, params)
        try:
            return cur.fetchall()
        finally:
            cur.close()
            if conn.in_transaction:
                conn.rollback()

    @contextmanager
    def write_transaction(self, conn: sqlite3.Connection) -> Iterator[WriteTx]:
        """BEGIN IMMEDIATE (waits up to busy_timeout for other writers) ... COMMIT, or ROLLBACK."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    def probe(self, conn: sqlite3.Connection) -> None:
        """Take and release the write lock: raises if another writer holds it beyond the timeout."""
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            close_connections(self._conns)
        self._local = threading.local()


# ------------------------------------------------------------------------------- PostgreSQL

_PG_DDL = [
    "SELECT pg_advisory_xact_lock(7302114409)",  # two processes creating the schema at once
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        {_column_ddl("BIGINT", "        ")}
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE}(ts)",
    f"""CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = '{TABLE} is append-only: ' || TG_OP || ' is not allowed';
    END
    $fn$""",
    f"""CREATE OR REPLACE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
    f"""CREATE OR REPLACE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()""",
]


# Held shared by every open writer (see PostgresStore.attach_writer); objsubid 1 in pg_locks.
_WRITERS_LOCK = 7302114411


class _PgTx(WriteTx):
    def __init__(self, conn: Any):
        from sqlalchemy import text

        self.conn, self.text = conn, text

    def head(self) -> Head | None:
        sql = f"SELECT seq, ts, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1"
        row = self.conn.execute(self.text(sql)).fetchone()
        return Head(int(row[0]), row[1], row[2]) if row else None

    def exists(self, request_id: str) -> bool:
        sql = self.text(f"SELECT 1 FROM {TABLE} WHERE request_id = :r")
        return self.conn.execute(sql, {"r": request_id}).fetchone() is not None

    def insert(self, records: list[dict[str, Any]]) -> None:
        self.conn.execute(self.text(_INSERT), [to_row(r) for r in records])


class PostgresStore(Store):
    """PostgreSQL through SQLAlchemy. Commits are durable with the server's default
    synchronous_commit=on; the table lock serialises appenders across processes."""

    symbol_sql = "jsonb_exists(symbols::jsonb, :symbol)"

    def __init__(self, url: str, busy_timeout_s: float = 5.0, create: bool = True):
        from sqlalchemy import text

        self.engine, self.description = postgres_engine(url, "audit log")
        self.busy_timeout_s = busy_timeout_s
        self._writer_conn: Any = None
        self.text = text
        if create:
            with self.engine.begin() as conn:
                for stmt in _PG_DDL:
                    conn.execute(text(stmt))
        else:
            with self.engine.connect() as conn:
                found = conn.execute(text("SELECT to_regclass(:t)"), {"t": TABLE}).scalar()
            if found is None:
                raise StoreMissing(f"audit table {TABLE} does not exist in {self.description}")

    def connect_writer(self) -> Any:
        return self.engine

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(self.text(sql), params).fetchall())

    @contextmanager
    def write_transaction(self, engine: Any) -> Iterator[WriteTx]:
        with engine.begin() as conn:
            ms = int(self.busy_timeout_s * 1000)
            conn.execute(self.text(f"SET LOCAL lock_timeout = {ms}"))
            conn.execute(self.text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
            yield _PgTx(conn)

    def probe(self, engine: Any) -> None:
        with engine.connect() as conn:
            sql = "SELECT pg_is_in_recovery(), has_table_privilege(current_user, :t, 'INSERT')"
            in_recovery, can_insert = conn.execute(self.text(sql), {"t": TABLE}).one()
        if in_recovery or not can_insert:
            raise PermissionError(f"PostgreSQL {self.description} does not accept inserts into {TABLE}")

    def file_identity(self) -> None:
        return None

    def attach_writer(self) -> None:
        """Hold a shared advisory lock on a dedicated session while the log is open: replicas on
        other machines show up in pg_locks, and a replica killed outright drops out with its session."""
        if self._writer_conn is None:
            conn = self.engine.connect()
            conn.execute(self.text(f"SELECT pg_advisory_lock_shared({_WRITERS_LOCK})"))
            conn.commit()
            self._writer_conn = conn

    def other_writers(self) -> int:
        """Other sessions holding the writers' lock on this database (replicas still appending)."""
        sql = """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = :hi AND objid = :lo AND objsubid = 1 AND pid <> pg_backend_pid()"""
        params = {"hi": _WRITERS_LOCK >> 32, "lo": _WRITERS_LOCK & 0xFFFFFFFF}
        if self._writer_conn is None:
            return int(self._fetch(sql, params)[0][0])
        n = self._writer_conn.execute(self.text(sql), params).scalar()
        self._writer_conn.commit()
        return int(n)

    def close(self) -> None:
        if self._writer_conn is not None:
            try:
                self._writer_conn.execute(self.text(f"SELECT pg_advisory_unlock_shared({_WRITERS_LOCK})"))
                self._writer_conn.close()
            except Exception:
                pass
            self._writer_conn = None
        self.engine.dispose()


def open_store(url: str | os.PathLike[str], busy_timeout_s: float = 5.0, create: bool = True) -> Store:
    """A path or sqlite:///path -> SqliteStore; postgresql://... -> PostgresStore."""
    path = sqlite_file(url)
    if path is None:
        return PostgresStore(os.fspath(url), busy_timeout_s, create)
    return SqliteStore(path, busy_timeout_s, create)
