"""Database plumbing shared by the service's stores (the audit log, the market-data store).

Both keep their tables in "the same kind of database": one SQLite file (stdlib sqlite3, WAL with
synchronous=FULL so each commit is durable) or PostgreSQL through SQLAlchemy (a URL).  What is
the same for both lives here once: reading a store URL, the SQLite connection settings and the
PostgreSQL engine with an installed driver.  Each store keeps its own tables, locks and SQL.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
from pathlib import Path
from typing import Any

PG_PREFIXES = ("postgresql:", "postgresql+", "postgres:")


def is_postgres(url: str | os.PathLike[str]) -> bool:
    return os.fspath(url).startswith(PG_PREFIXES)


def sqlite_file(url: str | os.PathLike[str], what: str = "audit log") -> Path | None:
    """The SQLite file a store url names (a path or sqlite:///path), None for PostgreSQL.

    Raises ValueError naming `what` for any other scheme.
    """
    text = os.fspath(url)
    if is_postgres(text):
        return None
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
        # sqlite:////abs/path (SQLAlchemy style) leaves "/abs/path"; sqlite:///rel leaves "rel".
    elif "://" in text:
        raise ValueError(f"{what} url {text!r}: expected a file path, sqlite:///path or postgresql://...")
    return Path(text)


def sqlite_connect(path: str | os.PathLike[str], busy_timeout_s: float) -> sqlite3.Connection:
    """A writer connection: autocommit (transactions are explicit BEGIN IMMEDIATE), WAL, and
    synchronous=FULL (each commit fsyncs the WAL: durable), waiting up to the timeout for locks."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    return conn


def close_connections(conns: list[sqlite3.Connection]) -> None:
    """Close every per-thread SQLite connection a store opened (errors of a dead one ignored) and
    forget them; the caller holds its write lock and resets its thread-local afterwards."""
    for conn in conns:
        try:
            conn.close()
        except sqlite3.Error:
            pass
    conns.clear()


def postgres_driver() -> str | None:
    """SQLAlchemy driver name for an installed PostgreSQL DB-API module, or None."""
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2"), ("pg8000", "pg8000")):
        if importlib.util.find_spec(module) is not None:
            return driver
    return None


def create_database(server_url: str, prefix: str) -> str:
    """CREATE DATABASE `<prefix>_<12 hex>` on a PostgreSQL server (`postgresql://user@host:port`)
    and return its URL: a fresh, empty database for a test or a benchmark run."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        f"{server_url}/postgres".replace("postgresql://", f"postgresql+{postgres_driver()}://")
    )
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return f"{server_url}/{name}"


def postgres_engine(url: str, what: str = "audit log") -> tuple[Any, str]:
    """(SQLAlchemy engine, the URL without its password) for postgresql://... with the installed
    driver filled in; ModuleNotFoundError naming `what` when no driver is installed."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        driver = postgres_driver()
        if driver is None:
            raise ModuleNotFoundError(
                f"no PostgreSQL driver is installed for the {what}: pip install 'psycopg[binary]'"
            )
        parsed = parsed.set(drivername=f"postgresql+{driver}")
    return create_engine(parsed, pool_pre_ping=True), parsed.render_as_string(hide_password=True)
